/* SPDX-License-Identifier: MIT */
/*
 * exec — the runner of `exec:` handlers: one child process per job.
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
 *    (env_allowed) plus the event's KNOCK_* ones, and it runs in the
 *    Landlock domain of sandbox.h, entered by the spawner threads;
 *  - its fields are its own: an exec_job is a struct job followed by the
 *    pid, pipes and timers, and the state of the whole runner (spawner
 *    threads, signalfd, environment, sandbox) is one exec_state the rest of
 *    the worker never looks into. The worker calls it through exec_runner.
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
#include "sandbox.h"
#include "worker.h"

#define KILL_GRACE_MS 5000
#define SPAWNER_THREADS_MAX 4

#define EXIT_TEMPFAIL 75
#define EXIT_DATAERR 65

extern char **environ;

typedef struct exec_job exec_job;

/* A job of this runner: the common head, then what one child needs. */
struct exec_job {
        job j; /* first: a job of exec_runner is an exec_job */
        pid_t pid; /* 0 until spawned, and once reaped */
        struct exec_spawn *spawn; /* with the spawner thread until it comes back */
        exec_job *snext;          /* in the spawner's lists, under its lock */
        int in_fd, out_fd;
        size_t in_off;
        struct event *ev_in, *ev_out, *ev_timeout;
        bool timed_out;
};

/* The spawner threads: jobs to spawn and spawned ones, by snext. */
typedef struct exec_spawner {
        pthread_t threads[SPAWNER_THREADS_MAX];
        size_t n_threads;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop;
        exec_job *todo, **todo_tail;
        exec_job *done, **done_tail;
        struct event *ev_done; /* activated on the loop's base for each spawn */
        handler_sandbox sandbox; /* entered by every spawner thread (sandbox.h) */
} exec_spawner;

typedef struct exec_exit {
        pid_t pid;
        int status;
} exec_exit;

/* The runner's state, for the whole worker (w->exec). */
struct exec_state {
        char **base_env; /* what handlers get of environ: the allowed variables */
        size_t n_base_env;
        int chld_fd; /* signalfd for SIGCHLD: exec handlers are reaped from it */
        struct event *ev_chld;
        exec_spawner spawner;
        exec_exit *orphans; /* reaped before the spawner said whose they are */
        size_t n_orphans, cap_orphans;
};

static exec_job *exec_job_of(job *j)
{
        return (exec_job *)j;
}

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

static void exec_init(job *j)
{
        exec_job *x = exec_job_of(j);

        x->in_fd = x->out_fd = -1;
}

static void exec_cleanup(job *j)
{
        exec_job *x = exec_job_of(j);

        event_freep_(&x->ev_in);
        event_freep_(&x->ev_out);
        event_freep_(&x->ev_timeout);
        close_fd(&x->in_fd);
        close_fd(&x->out_fd);
}

static void exec_kill(exec_job *x, int sig)
{
        if (x->pid > 0)
                (void)kill(-x->pid, sig);
}

/* The stop deadline: the job completes when its child is reaped. */
static void exec_cancel(job *j)
{
        exec_kill(exec_job_of(j), SIGKILL);
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

static void drain_output(exec_job *x)
{
        char buf[16384];

        while (x->out_fd >= 0) {
                ssize_t k = read(x->out_fd, buf, sizeof(buf));

                if (k > 0) {
                        job_output(&x->j, buf, (size_t)k);
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return;
                /* EOF or error: nothing more will come */
                event_freep_(&x->ev_out);
                close_fd(&x->out_fd);
        }
}

static void on_output(evutil_socket_t fd, short what, void *userdata)
{
        drain_output(userdata);
}

static void on_input(evutil_socket_t fd, short what, void *userdata);

static void write_input(exec_job *x)
{
        const knock_claim *c = &x->j.claim;

        while (x->in_fd >= 0 && x->in_off < c->body_len) {
                ssize_t k = write(x->in_fd, c->body + x->in_off, c->body_len - x->in_off);

                if (k > 0) {
                        x->in_off += (size_t)k;
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN) {
                        if (!x->ev_in) {
                                x->ev_in = event_new(x->j.w->d->base, x->in_fd,
                                        EV_WRITE | EV_PERSIST, on_input, x);
                                if (!x->ev_in || event_add(x->ev_in, NULL) < 0)
                                        break;
                        }
                        return;
                }
                /* EPIPE: the handler does not want (more of) the body. */
                break;
        }
        event_freep_(&x->ev_in);
        close_fd(&x->in_fd);
}

static void on_input(evutil_socket_t fd, short what, void *userdata)
{
        write_input(userdata);
}

/* The child of x was reaped with this wait status. */
static void exec_reaped(exec_job *x, int status)
{
        job *j = &x->j;

        /* What the child wrote is in the pipe already; grandchildren that
         * keep it open are not waited for (on_sigchld killed its group). */
        drain_output(x);

        j->exit_code = -1;
        j->signal = 0;
        if (x->timed_out) {
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
        x->pid = 0;
        exec_cleanup(j);
        job_complete(j);
}

static void on_kill(evutil_socket_t fd, short what, void *userdata)
{
        exec_kill(userdata, SIGKILL);
}

static void on_timeout(evutil_socket_t fd, short what, void *userdata)
{
        exec_job *x = userdata;
        struct timeval tv = {KILL_GRACE_MS / 1000, (KILL_GRACE_MS % 1000) * 1000};

        /* SIGTERM to the group first, SIGKILL after the grace period. */
        x->timed_out = true;
        exec_kill(x, SIGTERM);
        event_freep_(&x->ev_timeout);
        x->ev_timeout = evtimer_new(x->j.w->d->base, on_kill, x);
        if (x->ev_timeout)
                evtimer_add(x->ev_timeout, &tv);
        else
                exec_kill(x, SIGKILL);
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
        exec_state *es = w->exec;
        char attempt[32];
        size_t ne = 0;

        snprintf(attempt, sizeof(attempt), "%lld", (long long)c->attempt);
        sp->extra[0] = env_pair("KNOCK_ENDPOINT", w->d->name);
        sp->extra[1] = env_pair("KNOCK_EVENT_ID", c->id);
        sp->extra[2] = env_pair("KNOCK_EVENT_TYPE", c->event_type);
        sp->extra[3] = env_pair("KNOCK_PROVIDER_EVENT_ID", c->provider_event_id);
        sp->extra[4] = env_pair("KNOCK_DELIVERY_ID", c->delivery_id);
        sp->extra[5] = env_pair("KNOCK_ATTEMPT", attempt);
        sp->envp = calloc(es->n_base_env + ELEMENTSOF(sp->extra) + 1, sizeof(char *));
        if (!sp->envp)
                return -ENOMEM;
        for (size_t i = 0; i < es->n_base_env; i++)
                sp->envp[ne++] = es->base_env[i];
        for (size_t i = 0; i < ELEMENTSOF(sp->extra); i++) {
                if (!sp->extra[i])
                        return -ENOMEM;
                sp->envp[ne++] = sp->extra[i];
        }
        sp->envp[ne] = NULL;
        return 0;
}

/* The job's pipes (our ends non-blocking in x, the child's in sp) and the spawn
 * attributes: stdin, stdout+stderr, a new process group, default signals, empty mask. */
static int spawn_io(struct exec_spawn *sp, exec_job *x)
{
        int in[2], out[2];
        sigset_t all, none;

        if (pipe2(in, O_CLOEXEC) < 0)
                return -errno;
        x->in_fd = in[1];
        sp->child_in = in[0];
        if (pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        x->out_fd = out[0];
        sp->child_out = out[1];
        /* Only our ends are non-blocking; the child gets ordinary pipes. */
        if (fcntl(x->in_fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(x->out_fd, F_SETFL, O_NONBLOCK) < 0)
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

static int exec_start(job *j)
{
        exec_job *x = exec_job_of(j);
        exec_spawner *spr = &j->w->exec->spawner;
        struct exec_spawn *sp;
        int r;

        x->pid = 0;
        x->in_fd = x->out_fd = -1;
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
                r = spawn_io(sp, x);
        if (r < 0) {
                spawn_free(sp);
                exec_cleanup(j);
                return r;
        }

        /* The spawner thread runs it; exec_spawned() takes it back on the loop. */
        x->spawn = sp;
        x->snext = NULL;
        pthread_mutex_lock(&spr->lock);
        *spr->todo_tail = x;
        spr->todo_tail = &x->snext;
        pthread_cond_signal(&spr->cond);
        pthread_mutex_unlock(&spr->lock);
        return 0;
}

/*
 * The spawner thread: posix_spawnp() returns only once the child has called execve
 * (glibc's CLONE_VFORK), hundreds of microseconds for a small program on a busy
 * machine, and the calling thread waits all that time. Here it is this thread that
 * waits, not the loop, which meanwhile reaps, records and forwards. It touches only
 * x->spawn (and x->snext under the lock) of the jobs it is handed.
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
                exec_job *x;

                while (!spr->todo && !spr->stop)
                        pthread_cond_wait(&spr->cond, &spr->lock);
                if (spr->stop)
                        break; /* what is left is cancelled by exec_stop_spawner */
                x = spr->todo;
                spr->todo = x->snext;
                if (!spr->todo)
                        spr->todo_tail = &spr->todo;
                pthread_mutex_unlock(&spr->lock);

                sp = x->spawn;
                sp->r = sandboxed < 0 ? sandboxed
                                      : -posix_spawnp(&sp->pid, sp->argv[0], &sp->fa, &sp->attr,
                                                sp->argv, sp->envp);

                pthread_mutex_lock(&spr->lock);
                x->snext = NULL;
                *spr->done_tail = x;
                spr->done_tail = &x->snext;
                event_active(spr->ev_done, EV_READ, 0);
        }
        pthread_mutex_unlock(&spr->lock);
        return NULL;
}

/* An exit the reaper saw before the spawner's answer: held for exec_spawned. */
static int orphan_add(exec_state *es, pid_t pid, int status)
{
        if (es->n_orphans == es->cap_orphans) {
                size_t cap = es->cap_orphans ? es->cap_orphans * 2 : 8;
                exec_exit *v = reallocarray(es->orphans, cap, sizeof(*v));

                if (!v)
                        return -ENOMEM;
                es->orphans = v;
                es->cap_orphans = cap;
        }
        es->orphans[es->n_orphans++] = (exec_exit){.pid = pid, .status = status};
        return 0;
}

static bool orphan_take(exec_state *es, pid_t pid, int *status)
{
        for (size_t i = 0; i < es->n_orphans; i++)
                if (es->orphans[i].pid == pid) {
                        *status = es->orphans[i].status;
                        es->orphans[i] = es->orphans[--es->n_orphans];
                        return true;
                }
        return false;
}

/* Back on the loop: the child runs (or could not be started). */
static void exec_spawned(exec_job *x)
{
        job *j = &x->j;
        worker *w = j->w;
        struct exec_spawn *sp = TAKE_PTR(x->spawn);
        struct timeval tv;
        int r = sp->r, status;
        bool exited;

        x->pid = r < 0 ? 0 : sp->pid;
        spawn_free(sp); /* closes the child's pipe ends: EOF comes when it exits */
        if (r < 0) {
                exec_cleanup(j);
                job_start_failed(j, r);
                return;
        }
        exited = orphan_take(w->exec, x->pid, &status);
        if (exited)
                log_debug("Handler %d of event %s ended before its start was reported", (int)x->pid,
                        j->claim.id);

        x->ev_out = event_new(w->d->base, x->out_fd, EV_READ | EV_PERSIST, on_output, x);
        x->ev_timeout = evtimer_new(w->d->base, on_timeout, x);
        if (!x->ev_out || !x->ev_timeout) {
                if (!exited) {
                        exec_kill(x, SIGKILL);
                        (void)waitpid(x->pid, NULL, 0);
                }
                x->pid = 0;
                exec_cleanup(j);
                job_start_failed(j, -ENOMEM);
                return;
        }
        event_add(x->ev_out, NULL);
        tv.tv_sec = (time_t)(w->d->cfg->timeout_ms / 1000);
        tv.tv_usec = (suseconds_t)((w->d->cfg->timeout_ms % 1000) * 1000);
        evtimer_add(x->ev_timeout, &tv);
        write_input(x);

        if (exited)
                exec_reaped(x, status);
        else if (j->interrupted)
                exec_kill(x, SIGKILL); /* the stop deadline passed while it was spawned */
}

static void on_spawned(evutil_socket_t fd, short what, void *userdata)
{
        worker *w = userdata;
        exec_spawner *spr = &w->exec->spawner;
        exec_job *l;

        pthread_mutex_lock(&spr->lock);
        l = spr->done;
        spr->done = NULL;
        spr->done_tail = &spr->done;
        pthread_mutex_unlock(&spr->lock);
        for (exec_job *x = l, *next; x; x = next) {
                next = x->snext;
                x->snext = NULL;
                exec_spawned(x);
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
        exec_spawner *spr = &w->exec->spawner;
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

/* Joins the spawner; what it had not spawned yet fails to start (ECANCELED). */
static void exec_stop_spawner(worker *w)
{
        exec_spawner *spr = &w->exec->spawner;

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
        for (exec_job *x = spr->todo, *next; x; x = next) {
                next = x->snext;
                x->snext = NULL;
                x->spawn->r = -ECANCELED;
                exec_spawned(x);
        }
        spr->todo = NULL;
        spr->todo_tail = &spr->todo;
}

/* ---- reaping ------------------------------------------------------------------------- */

static exec_job *running_child(worker *w, pid_t pid)
{
        for (job *j = w->running; j; j = j->next)
                if (j->runner == &exec_runner && exec_job_of(j)->pid == pid)
                        return exec_job_of(j);
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
                exec_job *x;

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
                x = running_child(w, p);
                if (x)
                        exec_reaped(x, status);
                else if (orphan_add(w->exec, p, status) < 0)
                        /* Its job would wait for its timeout, then for ever. */
                        log_error_errno(-ENOMEM, "Cannot keep the exit status of handler %d: %m",
                                (int)p);
        }
}

/* After the loop: handlers being spawned get their pid (and are killed) or never
 * start; running ones are killed and reaped here, synchronously. */
static void exec_abandon(worker *w)
{
        if (!w->exec)
                return;
        exec_stop_spawner(w);
        for (job *j = w->running; j; j = j->next) {
                exec_job *x = exec_job_of(j);

                if (j->runner != &exec_runner || x->pid <= 0)
                        continue;
                exec_kill(x, SIGKILL);
                (void)waitpid(x->pid, NULL, 0);
                x->pid = 0;
        }
}

/* ---- the runner's start and end ------------------------------------------------------ */

/*
 * The environment an exec: handler gets from the worker's: only these
 * variables (knock-worker(8), HANDLERS, exec:), then the KNOCK_*
 * ones of the event. Nothing systemd gives the worker reaches a handler:
 * not CREDENTIALS_DIRECTORY (the secrets), NOTIFY_SOCKET, WATCHDOG_*,
 * LISTEN_*, INVOCATION_ID, JOURNAL_STREAM, nor knock's own KNOCK_* settings.
 */
static bool env_allowed(const char *e)
{
        static const char *const allowed[] = {
                "PATH=", "HOME=", "USER=", "LOGNAME=", "SHELL=", "LANG=", "LANGUAGE=", "LC_",
                "TZ=", "TMPDIR=", "SSL_CERT_FILE=", "SSL_CERT_DIR=",
        };
        for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
                if (startswith(e, allowed[i]))
                        return true;
        return false;
}

static int base_env_init(exec_state *es)
{
        size_t n = 0;

        for (char **e = environ; e && *e; e++)
                n++;
        es->base_env = calloc(n + 1, sizeof(char *));
        if (!es->base_env)
                return -ENOMEM;
        for (char **e = environ; e && *e; e++)
                if (env_allowed(*e))
                        es->base_env[es->n_base_env++] = *e;
        return 0;
}

/* Handlers get no access to knock's state directory nor to the secrets
 * (sandbox.h). Without Landlock in the kernel they run without it, said once. */
static int handler_sandbox_setup(exec_state *es)
{
        const char *protect[] = {knock_state_dir(), "/run/credentials",
                getenv("CREDENTIALS_DIRECTORY"), NULL};
        handler_sandbox *sb = &es->spawner.sandbox;
        int r;

        r = sandbox_init(sb, protect);
        if (r == -EOPNOTSUPP) {
                log_warning("Landlock is not available (kernel without it, or refused by a "
                            "container's seccomp filter): exec handlers can read and write %s "
                            "(the database) as this worker can",
                            knock_state_dir());
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Cannot build the exec handlers' sandbox: %m");
        log_debug("exec handlers sandboxed (Landlock ABI %d, %u rules): no access beneath %s "
                  "and /run/credentials",
                  sb->abi, sb->rules, knock_state_dir());
        return 0;
}

/* SIGCHLD blocked in every thread and read from a signalfd on the loop. */
static int sigchld_setup(worker *w)
{
        exec_state *es = w->exec;
        sigset_t chld;
        int r;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        /* Before the writer thread starts: it inherits the mask. */
        r = -pthread_sigmask(SIG_BLOCK, &chld, NULL);
        if (r < 0)
                return r;
        es->chld_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
        if (es->chld_fd < 0)
                return -errno;
        es->ev_chld = event_new(w->d->base, es->chld_fd, EV_READ | EV_PERSIST, on_sigchld, w);
        if (!es->ev_chld || event_add(es->ev_chld, NULL) < 0)
                return -ENOMEM;
        return 0;
}

/* Before the writer thread starts. The spawner threads come with the first exec: job. */
static int exec_setup(worker *w)
{
        exec_state *es;
        int r;

        es = w->exec = calloc(1, sizeof(*es));
        if (!es)
                return log_error_errno(-ENOMEM, "Out of memory");
        es->chld_fd = -1;
        es->spawner.sandbox.ruleset_fd = -1;
        r = base_env_init(es);
        if (r < 0)
                return log_error_errno(r, "Out of memory");
        r = handler_sandbox_setup(es);
        if (r < 0)
                return r;
        r = sigchld_setup(w);
        if (r < 0)
                return log_error_errno(r, "Cannot watch for exiting handlers: %m");
        return 0;
}

static void exec_teardown(worker *w)
{
        exec_state *es = w->exec;

        if (!es)
                return;
        exec_stop_spawner(w);
        if (es->spawner.ev_done) {
                event_free(es->spawner.ev_done);
                pthread_mutex_destroy(&es->spawner.lock);
                pthread_cond_destroy(&es->spawner.cond);
        }
        event_freep_(&es->ev_chld);
        close_fd(&es->chld_fd);
        sandbox_done(&es->spawner.sandbox);
        free(es->orphans);
        free(es->base_env);
        w->exec = mfree(es);
}

const job_runner exec_runner = {
        .prefixes = (const char *const[]){"exec:", NULL},
        .size = sizeof(exec_job),
        .setup = exec_setup,
        .teardown = exec_teardown,
        .init = exec_init,
        .start = exec_start,
        .cancel = exec_cancel,
        .abandon = exec_abandon,
        .cleanup = exec_cleanup,
};
