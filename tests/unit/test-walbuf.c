/* SPDX-License-Identifier: MIT */
/*
 * test-walbuf — the gathered WAL writes keep synchronous=FULL's promise: a
 * child process commits values larger than one write of the unix VFS
 * (300 KB, so each commit's buffer goes out in several pieces), reports each
 * COMMIT that returned, and dies by SIGKILL without closing anything; every
 * reported value is then read back whole by a fresh connection on the
 * default VFS. A buffer flushed lazily (at close, or at the next write)
 * would lose the last commits; one written out of order would corrupt them.
 * And a reader on the default VFS sees each commit while the buffered writer
 * keeps its connection open.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "tap.h"
#include "util.h"
#include "walbuf.h"

#define VALUE_LEN (300 * 1024)
#define COMMITS 40

static char *value_for(int i)
{
        char *v = malloc(VALUE_LEN + 1);

        for (size_t k = 0; k < VALUE_LEN; k++)
                v[k] = (char)('a' + (k * 7 + (size_t)i * 13) % 26);
        v[VALUE_LEN] = '\0';
        return v;
}

static void child(const char *path, int fd)
{
        knock_store *s = NULL;

        if (store_open(path, STORE_WAL_BUFFER | STORE_NO_AUTOCHECKPOINT, &s) < 0)
                _exit(2);
        for (int i = 0; i < COMMITS; i++) {
                char key[32];
                _cleanup_free_ char *v = value_for(i);

                snprintf(key, sizeof(key), "walbuf-%d", i);
                if (store_meta_set(s, key, v) < 0)
                        _exit(3);
                /* COMMIT returned: tell the parent, then carry on. */
                if (write(fd, &i, sizeof(i)) != sizeof(i))
                        _exit(4);
        }
        pause(); /* killed here, the connection never closed */
        _exit(5);
}

int main(void)
{
        char dir[] = "/tmp/test-walbuf-XXXXXX", path[64];
        knock_store *s = NULL;
        int p[2], last = -1, got, intact = 0, status = 0;
        pid_t pid;

        ok(walbuf_vfs_name() != NULL, "the VFS registers over the default one");
        if (!mkdtemp(dir) || pipe(p) < 0)
                return 1;
        snprintf(path, sizeof(path), "%s/db", dir);
        if (store_open(path, STORE_CREATE, &s) < 0)
                return 1;
        s = store_close(s);

        pid = fork();
        if (pid == 0) {
                close(p[0]);
                child(path, p[1]);
        }
        close(p[1]);
        if (store_open(path, 0, &s) < 0)
                return 1;
        /* Read each commit as it is reported, through the default VFS. */
        while (read(p[0], &got, sizeof(got)) == sizeof(got)) {
                char key[32];
                _cleanup_free_ char *v = NULL, *want = value_for(got);

                snprintf(key, sizeof(key), "walbuf-%d", got);
                if (store_meta_get(s, key, &v) >= 0 && v && streq(v, want))
                        intact++;
                last = got;
                if (got == COMMITS - 1)
                        break;
        }
        is_int(intact, COMMITS, "a reader on the default VFS sees each commit whole while the writer runs");
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the writer died by SIGKILL");
        s = store_close(s);

        intact = 0;
        if (store_open(path, 0, &s) < 0)
                return 1;
        for (int i = 0; i <= last; i++) {
                char key[32];
                _cleanup_free_ char *v = NULL, *want = value_for(i);

                snprintf(key, sizeof(key), "walbuf-%d", i);
                if (store_meta_get(s, key, &v) >= 0 && v && streq(v, want))
                        intact++;
        }
        is_int(last, COMMITS - 1, "every commit was reported");
        is_int(intact, last + 1, "after the kill, every reported commit reads back whole");
        s = store_close(s);
        {
                char cmd[128];

                snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
                (void)!system(cmd);
        }
        return tap_done();
}
