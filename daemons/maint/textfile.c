/* SPDX-License-Identifier: MIT */
/*
 * textfile — knock-maint's Prometheus textfile (see textfile.h): one
 * series per endpoint from the meta values maintenance keeps and the
 * database's file sizes, written to a fresh temporary name, fsynced and
 * renamed over the old file, so the node exporter never reads half of it.
 */
#define _GNU_SOURCE
#include "textfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "maint.h"
#include "store.h"
#include "util.h"

typedef struct prom_row {
        char name[64];
        bool have_db;
        uint64_t db_bytes, wal_bytes;
        char *last_backup, *last_prune, *prune_rows, *prune_total;
} prom_row;

static void prom_series(FILE *f, const char *metric, const char *type, const char *help,
        const prom_row *rows, size_t n, size_t field)
{
        bool header = false;

        for (size_t i = 0; i < n; i++) {
                const prom_row *p = &rows[i];
                char value[64];
                uint64_t v;

                if (!p->have_db)
                        continue;
                switch (field) {
                case 0:
                case 1: {
                        const char *ms = field == 0 ? p->last_backup : p->last_prune;

                        if (!ms || parse_u64_strict(ms, &v) < 0)
                                continue;
                        snprintf(
                                value, sizeof(value), "%" PRIu64 ".%03" PRIu64, v / 1000, v % 1000);
                        break;
                }
                case 2:
                case 3: {
                        const char *t = field == 2 ? p->prune_rows : p->prune_total;

                        if (parse_u64_strict(t ? t : "0", &v) < 0)
                                v = 0;
                        snprintf(value, sizeof(value), "%" PRIu64, v);
                        break;
                }
                default:
                        snprintf(value, sizeof(value), "%" PRIu64,
                                field == 4 ? p->db_bytes : p->wal_bytes);
                }
                if (!header) {
                        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, type);
                        header = true;
                }
                fprintf(f, "%s{endpoint=\"%s\"} %s\n", metric, p->name, value);
        }
}

int maint_write_textfile(const char *dir)
{
        _cleanup_free_ char *tmp = NULL, *final = NULL;
        prom_row *rows = NULL;
        char **names = NULL;
        size_t n = 0;
        FILE *f = NULL;
        int r, fd;

        r = config_list_endpoints(&names, &n);
        if (r < 0)
                return r;
        rows = calloc(n ? n : 1, sizeof(*rows));
        if (!rows) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_(store_closep) knock_store *s = NULL;
                _cleanup_free_ char *db = config_store_location_of(names[i]);
                bool pg = db && store_location_is_postgresql(db);

                snprintf(rows[i].name, sizeof(rows[i].name), "%s", names[i]);
                if (!db || (!pg && access(db, F_OK) < 0))
                        continue;
                /* A PostgreSQL endpoint's sizes are its server's to report. */
                if (!pg)
                        (void)maint_db_sizes(db, &rows[i].db_bytes, &rows[i].wal_bytes);
                if (store_open(db, 0, &s) < 0)
                        continue;
                rows[i].have_db = true;
                (void)store_meta_get(s, "last_backup_at", &rows[i].last_backup);
                (void)store_meta_get(s, "last_prune_at", &rows[i].last_prune);
                (void)store_meta_get(s, "last_prune_rows", &rows[i].prune_rows);
                (void)store_meta_get(s, "prune_rows_deleted_total", &rows[i].prune_total);
        }

        if (asprintf(&final, "%s/knock_maint.prom", dir) < 0 ||
                asprintf(&tmp, "%s/.knock_maint.prom.XXXXXX", dir) < 0) {
                r = -ENOMEM;
                goto out;
        }
        /* mkostemp: O_CREAT|O_EXCL, a fresh name nothing can be planted at. */
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd >= 0)
                (void)fchmod(fd, 0644);
        if (fd < 0 || !(f = fdopen(fd, "w"))) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                goto out;
        }
        prom_series(f, "knock_backup_last_success_timestamp_seconds", "gauge",
                "Time of the endpoint's last successful backup.", rows, n, 0);
        prom_series(f, "knock_prune_last_run_timestamp_seconds", "gauge",
                "Time of the endpoint's last prune run.", rows, n, 1);
        prom_series(f, "knock_prune_last_rows_deleted", "gauge",
                "Rows deleted by the endpoint's last prune run.", rows, n, 2);
        prom_series(f, "knock_prune_rows_deleted_total", "counter",
                "Rows deleted by prune runs (kept in the database).", rows, n, 3);
        prom_series(f, "knock_database_bytes", "gauge", "Size of the endpoint's database file.",
                rows, n, 4);
        prom_series(f, "knock_wal_bytes", "gauge", "Size of the endpoint's WAL file.", rows, n, 5);
        if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) < 0)
                r = -(errno ? errno : EIO);
        if (fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r >= 0 && rename(tmp, final) < 0)
                r = -errno;
        if (r < 0)
                (void)unlink(tmp);
out:
        for (size_t i = 0; rows && i < n; i++) {
                free(rows[i].last_backup);
                free(rows[i].last_prune);
                free(rows[i].prune_rows);
                free(rows[i].prune_total);
        }
        free(rows);
        strv_free(names, n);
        return r < 0 ? r : 0;
}
