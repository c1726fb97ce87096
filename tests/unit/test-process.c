/* SPDX-License-Identifier: MIT */
/*
 * test-process — process_alive(): our own PID, PID 0 and a PID that no
 * longer exists are not alive; a live PID is alive only under the exact
 * command asked for (not a prefix of it). maint_endpoint_running(), its
 * other user: a watchdog file NAME.DAEMON.watchdog counts only while its PID
 * is a live knock-DAEMON, and not once it says CLEAN_EXIT.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maint.h"
#include "process.h"
#include "child.h"
#include "tap.h"


static void write_watchdog(const char *dir, const char *daemon, pid_t pid, bool clean)
{
        char p[512];
        FILE *f;

        snprintf(p, sizeof(p), "%s/demo.%s.watchdog", dir, daemon);
        f = fopen(p, "w");
        if (!f)
                return;
        fprintf(f, "PID=%d\nSTARTED=1\n%s", (int)pid, clean ? "CLEAN_EXIT\n" : "");
        fclose(f);
}

int main(void)
{
        char dir[] = "/tmp/knock-test-process-XXXXXX", cmd[600], daemon[32] = "";
        pid_t ingress, other, gone, pid = 0;

        ok(!process_alive(getpid(), "test-process"), "our own PID is not another live process");
        ok(!process_alive(0, "knock-worker"), "PID 0 is not alive");

        ingress = child_named("knock-ingress");
        other = child_named("knock-ingressx");
        gone = child_named(NULL);
        kill(gone, SIGKILL);
        (void)waitpid(gone, NULL, 0);
        usleep(50 * 1000); /* let the children set their names */

        ok(process_alive(ingress, "knock-ingress"), "a live knock-ingress is alive as knock-ingress");
        ok(!process_alive(ingress, "knock-worker"), "but not as a knock-worker");
        ok(!process_alive(ingress, "knock-"), "a prefix of its command is not its command");
        ok(!process_alive(other, "knock-ingress"), "a longer command is not the one asked for");
        ok(!process_alive(gone, "knock-ingress"), "a PID that no longer exists is not alive");

        if (!mkdtemp(dir))
                return tap_done();
        setenv("KNOCK_STATE_DIR", dir, 1);
        write_watchdog(dir, "worker", ingress, false);
        is_int(maint_endpoint_running("demo", NULL, &pid, daemon, sizeof(daemon)), 0,
               "a watchdog file whose PID is a knock-ingress, not the knock-worker it names: "
               "not running");
        write_watchdog(dir, "ingress", ingress, true);
        is_int(maint_endpoint_running("demo", NULL, &pid, daemon, sizeof(daemon)), 0,
               "a knock-ingress whose file says CLEAN_EXIT: not running");
        write_watchdog(dir, "ingress", ingress, false);
        is_int(maint_endpoint_running("demo", NULL, &pid, daemon, sizeof(daemon)),
               MAINT_E_RUNNING, "a live knock-ingress under demo.ingress.watchdog: running");
        is_int(pid, ingress, "its PID is reported");
        is_str(daemon, "ingress", "and its daemon");

        kill(ingress, SIGKILL);
        kill(other, SIGKILL);
        (void)waitpid(ingress, NULL, 0);
        (void)waitpid(other, NULL, 0);
        is_int(maint_endpoint_running("demo", NULL, &pid, daemon, sizeof(daemon)), 0,
               "once it is gone: not running");

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        (void)!system(cmd);
        return tap_done();
}
