/* SPDX-License-Identifier: MIT */
/*
 * exec — runs an `exec:` handler for one job.
 *
 * Promises:
 *  - the loop never waits for a spawn: exec_start prepares the pipes, argv and
 *    environment and hands the job to a spawner thread (one per CPU, at most
 *    SPAWNER_THREADS_MAX, at most concurrency), which calls posix_spawnp and
 *    hands it back; exec_spawned then watches it on the loop;
 *  - no shell: the command line after "exec:" is split on whitespace into
 *    argv, argv[0] is the program (absolute path, or looked up in PATH);
 *  - posix_spawn in a new process group, signals reset to default and an
 *    empty signal mask, so the handler sees a clean process; the worker's
 *    own descriptors are all O_CLOEXEC and do not leak into it;
 *  - the event body is written to the handler's stdin through a
 *    non-blocking pipe (a handler that does not read it is fine: EPIPE
 *    just ends the write), stdout and stderr share one pipe and are captured
 *    up to [worker] max_output, the rest drained and counted;
 *  - exit is seen through ONE signalfd for SIGCHLD on the event loop
 *    (exec_setup blocks SIGCHLD in every thread of the worker; the handler
 *    gets an empty mask): each wake-up reaps every exited child with
 *    waitpid(-1, WNOHANG) and finds its job by pid, so a child costs no
 *    descriptor or epoll registration of its own, and no exit is missed
 *    when several signals coalesce. The job completes when the child is
 *    reaped, after the output pipe has been drained of what it wrote. A pid
 *    is signalled only while its zombie is not reaped yet, so it cannot have
 *    been reused;
 *  - on timeout the whole process group gets SIGTERM, then SIGKILL after
 *    KILL_GRACE_MS, so grandchildren do not outlive the attempt; when the
 *    handler exits, what is left of its process group gets SIGKILL before
 *    the handler is reaped (its group id cannot be reused until then). A
 *    child that left the group (setsid, setpgid) is not followed;
 *  - the handler's environment is the worker's allowed variables
 *    (main.c env_allowed) plus the event's KNOCK_* ones, and it runs in the
 *    Landlock domain of sandbox.h, entered by the spawner threads.
 *
 * Exit status contract (knock-worker(8)): 0 handled, 75 retry, 65 dead at
 * once, anything else (other codes, a signal, the timeout) retry.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

#define KILL_GRACE_MS 5000

#define EXIT_TEMPFAIL 75
#define EXIT_DATAERR 65

static void close_fd(int *fd)
{
        if (*fd >= 0) {
                close(*fd);
                *fd = -1;
        }
}

static void event_freep_(struct event **e)
{
        if (*e) {
                event_free(*e);
                *e = NULL;
        }
}

void exec_cleanup(job *j)
{
        event_freep_(&j->ev_in);
        event_freep_(&j->ev_out);
        event_freep_(&j->ev_timeout);
        close_fd(&j->in_fd);
        close_fd(&j->out_fd);
}

void exec_kill(job *j, int sig)
{
        if (j->pid > 0)
                (void)kill(-j->pid, sig);
}

/* Splits "exec:/path a b" into a NULL-terminated argv inside one buffer. */
static int split_command(const char *handler, char **ret_buf, char ***ret_argv)
{
        _cleanup_free_ char *buf = NULL;
        char **argv = NULL, *save = NULL, *tok;
        size_t n = 0;

        if (!startswith(handler, "exec:"))
                return -EINVAL;
        buf = strdup(handler + 5);
        if (!buf)
                return -ENOMEM;
        for (tok = strtok_r(buf, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
                char **nv = realloc(argv, (n + 2) * sizeof(*argv));

                if (!nv) {
                        free(argv);
                        return -ENOMEM;
                }
                argv = nv;
                argv[n++] = tok;
                argv[n] = NULL;
        }
        if (n == 0) {
                free(argv);
                return -EINVAL;
        }
        *ret_buf = TAKE_PTR(buf);
        *ret_argv = argv;
        return 0;
}

static char *env_pair(const char *key, const char *value)
{
        char *s;

        if (asprintf(&s, "%s=%s", key, value ? value : "") < 0)
                return NULL;
        return s;
}

static void drain_output(job *j)
{
        char buf[16384];

        while (j->out_fd >= 0) {
                ssize_t k = read(j->out_fd, buf, sizeof(buf));

                if (k > 0) {
                        job_output(j, buf, (size_t)k);
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return;
                /* EOF or error: nothing more will come */
                event_freep_(&j->ev_out);
                close_fd(&j->out_fd);
        }
}

static void on_output(evutil_socket_t fd, short what, void *userdata)
{
        drain_output(userdata);
}

static void on_input(evutil_socket_t fd, short what, void *userdata);

static void write_input(job *j)
{
        while (j->in_fd >= 0 && j->in_off < j->claim.body_len) {
                ssize_t k =
                        write(j->in_fd, j->claim.body + j->in_off, j->claim.body_len - j->in_off);

                if (k > 0) {
                        j->in_off += (size_t)k;
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN) {
                        if (!j->ev_in) {
                                j->ev_in = event_new(j->w->d->base, j->in_fd, EV_WRITE | EV_PERSIST,
                                        on_input, j);
                                if (!j->ev_in || event_add(j->ev_in, NULL) < 0)
                                        break;
                        }
                        return;
                }
                /* EPIPE: the handler does not want (more of) the body. */
                break;
        }
        event_freep_(&j->ev_in);
        close_fd(&j->in_fd);
}

static void on_input(evutil_socket_t fd, short what, void *userdata)
{
        write_input(userdata);
}

/* The child of j was reaped with this wait status. */
static void exec_reaped(job *j, int status)
{
        /* What the child wrote is in the pipe already; grandchildren that
         * keep it open are not waited for (on_sigchld killed its group). */
        drain_output(j);

        j->exit_code = -1;
        j->signal = 0;
        if (j->timed_out) {
                j->outcome = EVENT_OUTCOME_TIMEOUT;
                if (WIFSIGNALED(status))
                        j->signal = WTERMSIG(status);
                else if (WIFEXITED(status))
                        j->exit_code = WEXITSTATUS(status);
                j->error = strdup_printf("timed out after %llu ms, process group killed",
                        (unsigned long long)j->w->d->cfg->timeout_ms);
        } else if (WIFEXITED(status)) {
                j->exit_code = WEXITSTATUS(status);
                if (j->exit_code == 0)
                        j->outcome = EVENT_OUTCOME_SUCCESS;
                else if (j->exit_code == EXIT_DATAERR) {
                        j->outcome = EVENT_OUTCOME_PERMANENT;
                        j->error = strdup_printf(
                                "exit status %d (permanent failure)", j->exit_code);
                } else {
                        j->outcome = EVENT_OUTCOME_TEMPFAIL;
                        j->error = strdup_printf("exit status %d", j->exit_code);
                }
        } else if (WIFSIGNALED(status)) {
                j->signal = WTERMSIG(status);
                j->outcome = EVENT_OUTCOME_TEMPFAIL;
                j->error = strdup_printf("killed by signal %s", sigabbrev_np(j->signal) ?: "?");
        } else {
                j->outcome = EVENT_OUTCOME_TEMPFAIL;
                j->error = strdup_printf("unexpected wait status 0x%x", status);
        }
        j->pid = 0;
        exec_cleanup(j);
        job_complete(j);
}

static void on_kill(evutil_socket_t fd, short what, void *userdata)
{
        job *j = userdata;

        exec_kill(j, SIGKILL);
}

static void on_timeout(evutil_socket_t fd, short what, void *userdata)
{
        job *j = userdata;
        struct timeval tv = {KILL_GRACE_MS / 1000, (KILL_GRACE_MS % 1000) * 1000};

        /* SIGTERM to the group first, SIGKILL after the grace period. */
        j->timed_out = true;
        exec_kill(j, SIGTERM);
        event_freep_(&j->ev_timeout);
        j->ev_timeout = evtimer_new(j->w->d->base, on_kill, j);
        if (j->ev_timeout)
                evtimer_add(j->ev_timeout, &tv);
        else
                exec_kill(j, SIGKILL);
}

/* ---- spawning off the loop ----------------------------------------------------------- */

/* Everything posix_spawnp needs for one job, made on the loop, used by the spawner
 * thread, freed on the loop when the job comes back. */
struct exec_spawn {
        char *cmd;   /* the strings argv points into */
        char **argv; /* NULL-terminated */
        char **envp; /* the base environment, then extra[] */
        char *extra[6];
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        int child_in, child_out; /* the child's pipe ends: closed once it runs */
        /* set by the spawner thread */
        pid_t pid;
        int r;
};

static void spawn_free(struct exec_spawn *sp)
{
        if (!sp)
                return;
        posix_spawn_file_actions_destroy(&sp->fa);
        posix_spawnattr_destroy(&sp->attr);
        close_fd(&sp->child_in);
        close_fd(&sp->child_out);
        for (size_t i = 0; i < ELEMENTSOF(sp->extra); i++)
                free(sp->extra[i]);
        free(sp->envp);
        free(sp->argv);
        free(sp->cmd);
        free(sp);
}

static int spawn_env(struct exec_spawn *sp, worker *w, const knock_claim *c)
{
        char attempt[32];
        size_t ne = 0;

        snprintf(attempt, sizeof(attempt), "%lld", (long long)c->attempt);
        sp->extra[0] = env_pair("KNOCK_ENDPOINT", w->d->name);
        sp->extra[1] = env_pair("KNOCK_EVENT_ID", c->id);
        sp->extra[2] = env_pair("KNOCK_EVENT_TYPE", c->event_type);
        sp->extra[3] = env_pair("KNOCK_PROVIDER_EVENT_ID", c->provider_event_id);
        sp->extra[4] = env_pair("KNOCK_DELIVERY_ID", c->delivery_id);
        sp->extra[5] = env_pair("KNOCK_ATTEMPT", attempt);
        sp->envp = calloc(w->n_base_env + ELEMENTSOF(sp->extra) + 1, sizeof(char *));
        if (!sp->envp)
                return -ENOMEM;
        for (size_t i = 0; i < w->n_base_env; i++)
                sp->envp[ne++] = w->base_env[i];
        for (size_t i = 0; i < ELEMENTSOF(sp->extra); i++) {
                if (!sp->extra[i])
                        return -ENOMEM;
                sp->envp[ne++] = sp->extra[i];
        }
        sp->envp[ne] = NULL;
        return 0;
}

/* The job's pipes (our ends non-blocking in j, the child's in sp) and the spawn
 * attributes: stdin, stdout+stderr, a new process group, default signals, empty mask. */
static int spawn_io(struct exec_spawn *sp, job *j)
{
        int in[2], out[2];
        sigset_t all, none;

        if (pipe2(in, O_CLOEXEC) < 0)
                return -errno;
        j->in_fd = in[1];
        sp->child_in = in[0];
        if (pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        j->out_fd = out[0];
        sp->child_out = out[1];
        /* Only our ends are non-blocking; the child gets ordinary pipes. */
        if (fcntl(j->in_fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(j->out_fd, F_SETFL, O_NONBLOCK) < 0)
                return -errno;

        posix_spawn_file_actions_adddup2(&sp->fa, sp->child_in, STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&sp->fa, sp->child_out, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&sp->fa, sp->child_out, STDERR_FILENO);
        sigfillset(&all);
        sigdelset(&all, SIGKILL);
        sigdelset(&all, SIGSTOP);
        sigemptyset(&none);
        posix_spawnattr_setsigdefault(&sp->attr, &all);
        posix_spawnattr_setsigmask(&sp->attr, &none);
        posix_spawnattr_setpgroup(&sp->attr, 0);
        posix_spawnattr_setflags(&sp->attr,
                POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
        return 0;
}

static int spawner_start(worker *w);

int exec_start(job *j)
{
        exec_spawner *spr = &j->w->spawner;
        struct exec_spawn *sp;
        int r;

        j->pid = 0;
        j->in_fd = j->out_fd = -1;
        if (!spr->started) {
                r = spawner_start(j->w);
                if (r < 0)
                        return r;
        }
        sp = calloc(1, sizeof(*sp));
        if (!sp)
                return -ENOMEM;
        sp->child_in = sp->child_out = -1;
        posix_spawn_file_actions_init(&sp->fa);
        posix_spawnattr_init(&sp->attr);

        r = split_command(j->claim.handler, &sp->cmd, &sp->argv);
        if (r >= 0)
                r = spawn_env(sp, j->w, &j->claim);
        if (r >= 0)
                r = spawn_io(sp, j);
        if (r < 0) {
                spawn_free(sp);
                exec_cleanup(j);
                return r;
        }

        /* The spawner thread runs it; exec_spawned() takes it back on the loop. */
        j->spawn = sp;
        j->snext = NULL;
        pthread_mutex_lock(&spr->lock);
        *spr->todo_tail = j;
        spr->todo_tail = &j->snext;
        pthread_cond_signal(&spr->cond);
        pthread_mutex_unlock(&spr->lock);
        return 0;
}

/*
 * The spawner thread: posix_spawnp() returns only once the child has called execve
 * (glibc's CLONE_VFORK), hundreds of microseconds for a small program on a busy
 * machine, and the calling thread waits all that time. Here it is this thread that
 * waits, not the loop, which meanwhile reaps, records and forwards. It touches only
 * j->spawn (and j->snext under the lock) of the jobs it is handed.
 */
static void *spawner_main(void *userdata)
{
        exec_spawner *spr = userdata;
        /* Every handler this thread spawns inherits its Landlock domain; a
         * thread that could not enter it spawns nothing. */
        int sandboxed = sandbox_enter(&spr->sandbox);

        pthread_mutex_lock(&spr->lock);
        for (;;) {
                struct exec_spawn *sp;
                job *j;

                while (!spr->todo && !spr->stop)
                        pthread_cond_wait(&spr->cond, &spr->lock);
                if (spr->stop)
                        break; /* what is left is cancelled by exec_stop_spawner */
                j = spr->todo;
                spr->todo = j->snext;
                if (!spr->todo)
                        spr->todo_tail = &spr->todo;
                pthread_mutex_unlock(&spr->lock);

                sp = j->spawn;
                sp->r = sandboxed < 0 ? sandboxed
                                      : -posix_spawnp(&sp->pid, sp->argv[0], &sp->fa, &sp->attr,
                                                sp->argv, sp->envp);

                pthread_mutex_lock(&spr->lock);
                j->snext = NULL;
                *spr->done_tail = j;
                spr->done_tail = &j->snext;
                event_active(spr->ev_done, EV_READ, 0);
        }
        pthread_mutex_unlock(&spr->lock);
        return NULL;
}

/* An exit the reaper saw before the spawner's answer: held for exec_spawned. */
static int orphan_add(worker *w, pid_t pid, int status)
{
        if (w->n_orphans == w->cap_orphans) {
                size_t cap = w->cap_orphans ? w->cap_orphans * 2 : 8;
                exec_exit *v = reallocarray(w->orphans, cap, sizeof(*v));

                if (!v)
                        return -ENOMEM;
                w->orphans = v;
                w->cap_orphans = cap;
        }
        w->orphans[w->n_orphans++] = (exec_exit){.pid = pid, .status = status};
        return 0;
}

static bool orphan_take(worker *w, pid_t pid, int *status)
{
        for (size_t i = 0; i < w->n_orphans; i++)
                if (w->orphans[i].pid == pid) {
                        *status = w->orphans[i].status;
                        w->orphans[i] = w->orphans[--w->n_orphans];
                        return true;
                }
        return false;
}

/* Back on the loop: the child runs (or could not be started). */
static void exec_spawned(job *j)
{
        worker *w = j->w;
        struct exec_spawn *sp = TAKE_PTR(j->spawn);
        struct timeval tv;
        int r = sp->r, status;
        bool exited;

        j->pid = r < 0 ? 0 : sp->pid;
        spawn_free(sp); /* closes the child's pipe ends: EOF comes when it exits */
        if (r < 0) {
                exec_cleanup(j);
                job_start_failed(j, r);
                return;
        }
        exited = orphan_take(w, j->pid, &status);
        if (exited)
                log_debug("Handler %d of event %s ended before its start was reported", (int)j->pid,
                        j->claim.id);

        j->ev_out = event_new(w->d->base, j->out_fd, EV_READ | EV_PERSIST, on_output, j);
        j->ev_timeout = evtimer_new(w->d->base, on_timeout, j);
        if (!j->ev_out || !j->ev_timeout) {
                if (!exited) {
                        exec_kill(j, SIGKILL);
                        (void)waitpid(j->pid, NULL, 0);
                }
                j->pid = 0;
                exec_cleanup(j);
                job_start_failed(j, -ENOMEM);
                return;
        }
        event_add(j->ev_out, NULL);
        tv.tv_sec = (time_t)(w->d->cfg->timeout_ms / 1000);
        tv.tv_usec = (suseconds_t)((w->d->cfg->timeout_ms % 1000) * 1000);
        evtimer_add(j->ev_timeout, &tv);
        write_input(j);

        if (exited)
                exec_reaped(j, status);
        else if (j->interrupted)
                exec_kill(j, SIGKILL); /* the stop deadline passed while it was spawned */
}

static void on_spawned(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;
        exec_spawner *spr = &w->spawner;
        job *l;

        pthread_mutex_lock(&spr->lock);
        l = spr->done;
        spr->done = NULL;
        spr->done_tail = &spr->done;
        pthread_mutex_unlock(&spr->lock);
        for (job *j = l, *next; j; j = next) {
                next = j->snext;
                j->snext = NULL;
                exec_spawned(j);
        }
}

/* Spawns waiting for one another would cap exec handlers at one spawn latency each
 * (a few hundred microseconds under load): one thread per CPU, at most
 * SPAWNER_THREADS_MAX, never more than the handlers that may run. */
static size_t spawner_threads(worker *w)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t n = cpus > 0 ? (size_t)cpus : 1;

        n = MIN(n, (size_t)SPAWNER_THREADS_MAX);
        n = MIN(n, (size_t)MAX(w->d->cfg->concurrency, 1));
        return MAX(n, (size_t)1);
}

/* Made with the first exec: job (an HTTP-only endpoint has no spawner threads);
 * tried again by the next job while no thread could be started. */
static int spawner_start(worker *w)
{
        exec_spawner *spr = &w->spawner;
        size_t want;
        int r = 0;

        if (!spr->ev_done) {
                spr->ev_done = event_new(w->d->base, -1, 0, on_spawned, w);
                if (!spr->ev_done)
                        return -ENOMEM;
                pthread_mutex_init(&spr->lock, NULL);
                pthread_cond_init(&spr->cond, NULL);
                spr->todo_tail = &spr->todo;
                spr->done_tail = &spr->done;
        }
        /* Threads made here inherit the loop thread's mask: SIGCHLD blocked. */
        want = spawner_threads(w);
        while (spr->n_threads < want) {
                r = -pthread_create(&spr->threads[spr->n_threads], NULL, spawner_main, spr);
                if (r < 0)
                        break;
                spr->n_threads++;
        }
        spr->started = spr->n_threads > 0;
        return spr->started ? 0 : r;
}

void exec_stop_spawner(worker *w)
{
        exec_spawner *spr = &w->spawner;

        if (!spr->started)
                return;
        pthread_mutex_lock(&spr->lock);
        spr->stop = true;
        pthread_cond_broadcast(&spr->cond);
        pthread_mutex_unlock(&spr->lock);
        for (size_t i = 0; i < spr->n_threads; i++)
                pthread_join(spr->threads[i], NULL);
        spr->started = false;
        /* Spawned: settled as usual. Never spawned: cancelled, the job fails to start. */
        on_spawned(-1, 0, w);
        for (job *j = spr->todo, *next; j; j = next) {
                next = j->snext;
                j->snext = NULL;
                j->spawn->r = -ECANCELED;
                exec_spawned(j);
        }
        spr->todo = NULL;
        spr->todo_tail = &spr->todo;
}

/* ---- reaping -------------------------------------------------------------------------- */

static job *running_child(worker *w, pid_t pid)
{
        for (job *j = w->running; j; j = j->next)
                if (!j->is_http && j->pid == pid)
                        return j;
        return NULL;
}

static void on_sigchld(evutil_socket_t fd, short what, void *userdata)
{
        struct signalfd_siginfo si[16];
        worker *w = userdata;

        /* Coalesced signals: the signalfd only says "some child changed". */
        while (read(fd, si, sizeof(si)) > 0)
                ;
        for (;;) {
                siginfo_t si_exit = {0};
                int status;
                pid_t p;
                job *j;

                /* Look first, reap after: while the handler is a zombie its
                 * process group id cannot be reused, so what is left of its
                 * group (a "(sleep 300 &)" it started) is killed now, and
                 * nothing else can be hit. */
                if (waitid(P_ALL, 0, &si_exit, WEXITED | WNOHANG | WNOWAIT) < 0) {
                        if (errno == EINTR)
                                continue;
                        break; /* no children left (ECHILD) */
                }
                if (si_exit.si_pid <= 0)
                        break; /* none exited */
                (void)kill(-si_exit.si_pid, SIGKILL);
                p = waitpid(si_exit.si_pid, &status, WNOHANG);
                if (p < 0 && errno == EINTR)
                        continue;
                if (p <= 0)
                        break;
                j = running_child(w, p);
                if (j)
                        exec_reaped(j, status);
                else if (orphan_add(w, p, status) < 0)
                        /* Its job would wait for its timeout, then for ever. */
                        log_error_errno(-ENOMEM, "Cannot keep the exit status of handler %d: %m",
                                (int)p);
        }
}

int exec_setup(worker *w)
{
        sigset_t chld;
        int r;

        w->chld_fd = -1;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        /* Before the writer thread starts: it inherits the mask. */
        r = -pthread_sigmask(SIG_BLOCK, &chld, NULL);
        if (r < 0)
                return r;
        w->chld_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
        if (w->chld_fd < 0)
                return -errno;
        w->ev_chld = event_new(w->d->base, w->chld_fd, EV_READ | EV_PERSIST, on_sigchld, w);
        if (!w->ev_chld || event_add(w->ev_chld, NULL) < 0)
                return -ENOMEM;
        return 0;
}

void exec_teardown(worker *w)
{
        exec_stop_spawner(w);
        if (w->spawner.ev_done) {
                event_free(w->spawner.ev_done);
                w->spawner.ev_done = NULL;
                pthread_mutex_destroy(&w->spawner.lock);
                pthread_cond_destroy(&w->spawner.cond);
        }
        event_freep_(&w->ev_chld);
        close_fd(&w->chld_fd);
        sandbox_done(&w->spawner.sandbox);
        free(w->orphans);
        w->orphans = NULL;
        w->n_orphans = w->cap_orphans = 0;
}
