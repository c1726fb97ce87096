/* SPDX-License-Identifier: MIT */
/*
 * store-floor — the storage ceiling for bench/ingest: receipt-shaped rows
 * (an event and a ~1.5 KB delivery, knock's real schema, indexes and
 * pragmas, the writer's gathered WAL writes, synchronous=FULL) inserted by one thread with no HTTP at all, in
 * transactions of BATCH receipts. No ingress can store faster than this on
 * the same disk, so run-ingest.sh prints it beside the ingress figures.
 *
 *   store-floor DIR BATCH SECONDS
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "store.h"
#include "util.h"

int main(int argc, char **argv)
{
        _cleanup_(store_closep) knock_store *s = NULL;
        db_stmt *ev = NULL, *dl = NULL;
        char path[512], body[1500], pid[64];
        uint64_t end, n = 0, seq = 0, t0;
        int batch, secs;
        struct rusage ru;

        if (argc != 4)
                return 2;
        batch = atoi(argv[2]);
        secs = atoi(argv[3]);
        snprintf(path, sizeof(path), "%s/floor.db", argv[1]);
        if (store_open(path, STORE_CREATE | STORE_NO_AUTOCHECKPOINT | STORE_WAL_BUFFER, &s) < 0)
                return 1;
        memset(body, 'x', sizeof(body));
        if (store_prepare(s, "INSERT INTO events(id,provider_event_id,event_type,status,delivery_id,"
                             "attempt_count,received_at,updated_at,next_attempt_at)"
                             " VALUES(?1,?2,'push','received',?3,0,?4,?4,?4)", &ev) < 0 ||
            store_prepare(s, "INSERT INTO deliveries(id,event_id,received_at,signature_valid,"
                             "http_status,provider_event_id,event_type,request_id,method,uri,"
                             "headers,body,body_bytes) VALUES(?1,?2,?3,1,200,?4,'push','req',"
                             "'POST','/','[]',?5,1500)", &dl) < 0)
                return 1;
        t0 = mono_us();
        end = t0 + (uint64_t)secs * 1000000;
        while (mono_us() < end) {
                if (store_begin(s) < 0)
                        return 1;
                for (int i = 0; i < batch; i++) {
                        char eid[KNOCK_ID_MAX], did[KNOCK_ID_MAX];
                        int64_t now = now_ms();

                        id_new("evt", eid);
                        id_new("dlv", did);
                        /* Provider ids arrive in no order, like real ones. */
                        snprintf(pid, sizeof(pid), "%016llx-%llu-%llu",
                                 (unsigned long long)(random() * 2654435761ULL),
                                 (unsigned long long)t0, (unsigned long long)++seq);
                        stmt_bind_text_static(ev, 1, eid);
                        stmt_bind_text_static(ev, 2, pid);
                        stmt_bind_text_static(ev, 3, did);
                        stmt_bind_i64(ev, 4, now);
                        stmt_bind_text_static(dl, 1, did);
                        stmt_bind_text_static(dl, 2, eid);
                        stmt_bind_i64(dl, 3, now);
                        stmt_bind_text_static(dl, 4, pid);
                        stmt_bind_blob_static(dl, 5, body, sizeof(body));
                        if (stmt_step(ev) != 0 || stmt_step(dl) != 0)
                                return 1;
                        stmt_reset(ev);
                        stmt_reset(dl);
                }
                if (store_commit(s) < 0)
                        return 1;
                n += (uint64_t)batch;
                /* Checkpoint like the ingress does, off the commit. */
                if (n % 4096 < (uint64_t)batch)
                        store_exec(s, "PRAGMA wal_checkpoint(PASSIVE)");
        }
        /* CPU per receipt, all of it storage: the part of knock's CPU per
         * receipt no HTTP work can remove. */
        getrusage(RUSAGE_SELF, &ru);
        printf("{\"batch\":%d,\"rps\":%.0f,\"cpu_us\":%.1f}\n", batch,
               (double)n * 1e6 / (double)(mono_us() - t0),
               n ? ((double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
                    (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec) / (double)n
                 : 0.0);
        stmt_finalize(ev);
        stmt_finalize(dl);
        return 0;
}
