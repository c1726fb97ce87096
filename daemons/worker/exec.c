/* SPDX-License-Identifier: MIT */
/*
 * exec — runs an `exec:` handler for one job.
 *
 * Promises:
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
 *    KILL_GRACE_MS, so grandchildren do not outlive the attempt.
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
         * keep it open are not waited for. */
        drain_output(j);
        if (j->timed_out)
                exec_kill(j, SIGKILL); /* the rest of its process group */

        j->exit_code = -1;
        j->signal = 0;
        if (j->timed_out) {
                j->outcome = EVENT_OUTCOME_TIMEOUT;
                if (WIFSIGNALED(status))
                        j->signal = WTERMSIG(status);
                else if (WIFEXITED(status))
                        j->exit_code = WEXITSTATUS(status);
                (void)asprintf(&j->error, "timed out after %llu ms, process group killed",
                        (unsigned long long)j->w->d->cfg->timeout_ms);
        } else if (WIFEXITED(status)) {
                j->exit_code = WEXITSTATUS(status);
                if (j->exit_code == 0)
                        j->outcome = EVENT_OUTCOME_SUCCESS;
                else if (j->exit_code == EXIT_DATAERR) {
                        j->outcome = EVENT_OUTCOME_PERMANENT;
                        (void)asprintf(
                                &j->error, "exit status %d (permanent failure)", j->exit_code);
                } else {
                        j->outcome = EVENT_OUTCOME_TEMPFAIL;
                        (void)asprintf(&j->error, "exit status %d", j->exit_code);
                }
        } else if (WIFSIGNALED(status)) {
                j->signal = WTERMSIG(status);
                j->outcome = EVENT_OUTCOME_TEMPFAIL;
                (void)asprintf(&j->error, "killed by signal %s", sigabbrev_np(j->signal) ?: "?");
        } else {
                j->outcome = EVENT_OUTCOME_TEMPFAIL;
                (void)asprintf(&j->error, "unexpected wait status 0x%x", status);
        }
        j->pid = 0;
        exec_cleanup(j);
        job_complete(j);
}

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
                int status;
                pid_t p = waitpid(-1, &status, WNOHANG);
                job *j;

                if (p < 0 && errno == EINTR)
                        continue;
                if (p <= 0)
                        break; /* none exited (0) or no children left (ECHILD) */
                j = running_child(w, p);
                if (j)
                        exec_reaped(j, status);
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
        event_freep_(&w->ev_chld);
        close_fd(&w->chld_fd);
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

int exec_start(job *j)
{
        worker *w = j->w;
        knock_claim *c = &j->claim;
        _cleanup_free_ char *cmd = NULL;
        _cleanup_free_ char **argv = NULL;
        _cleanup_free_ char **envp = NULL;
        char *extra[6] = {};
        char attempt[32];
        int in[2] = {-1, -1}, out[2] = {-1, -1};
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t all, none;
        struct timeval tv;
        size_t ne = 0;
        int r;

        j->pid = 0;
        j->in_fd = j->out_fd = -1;

        r = split_command(c->handler, &cmd, &argv);
        if (r < 0)
                return r;

        snprintf(attempt, sizeof(attempt), "%lld", (long long)c->attempt);
        extra[0] = env_pair("KNOCK_ENDPOINT", w->d->name);
        extra[1] = env_pair("KNOCK_EVENT_ID", c->id);
        extra[2] = env_pair("KNOCK_EVENT_TYPE", c->event_type);
        extra[3] = env_pair("KNOCK_PROVIDER_EVENT_ID", c->provider_event_id);
        extra[4] = env_pair("KNOCK_DELIVERY_ID", c->delivery_id);
        extra[5] = env_pair("KNOCK_ATTEMPT", attempt);
        envp = calloc(w->n_base_env + ELEMENTSOF(extra) + 1, sizeof(char *));
        if (!envp) {
                r = -ENOMEM;
                goto finish_env;
        }
        for (size_t i = 0; i < w->n_base_env; i++)
                envp[ne++] = w->base_env[i];
        for (size_t i = 0; i < ELEMENTSOF(extra); i++) {
                if (!extra[i]) {
                        r = -ENOMEM;
                        goto finish_env;
                }
                envp[ne++] = extra[i];
        }
        envp[ne] = NULL;

        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
                r = -errno;
                goto finish_pipes;
        }
        /* Only our ends are non-blocking; the child gets ordinary pipes. */
        if (fcntl(in[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(out[0], F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                goto finish_pipes;
        }

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out[1], STDERR_FILENO);
        posix_spawnattr_init(&attr);
        sigfillset(&all);
        sigdelset(&all, SIGKILL);
        sigdelset(&all, SIGSTOP);
        sigemptyset(&none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setflags(
                &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
        r = -posix_spawnp(&j->pid, argv[0], &fa, &attr, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r < 0) {
                j->pid = 0;
                goto finish_pipes;
        }

        close(in[0]);
        close(out[1]);
        in[0] = out[1] = -1;
        j->in_fd = in[1];
        j->out_fd = out[0];

        j->ev_out = event_new(w->d->base, j->out_fd, EV_READ | EV_PERSIST, on_output, j);
        j->ev_timeout = evtimer_new(w->d->base, on_timeout, j);
        if (!j->ev_out || !j->ev_timeout) {
                r = -ENOMEM;
                exec_kill(j, SIGKILL);
                (void)waitpid(j->pid, NULL, 0);
                j->pid = 0;
                goto finish_started;
        }
        event_add(j->ev_out, NULL);
        tv.tv_sec = (time_t)(w->d->cfg->timeout_ms / 1000);
        tv.tv_usec = (suseconds_t)((w->d->cfg->timeout_ms % 1000) * 1000);
        evtimer_add(j->ev_timeout, &tv);

        write_input(j);
        r = 0;
        goto finish_env;

finish_started:
        exec_cleanup(j);
        goto finish_env;
finish_pipes:
        for (size_t i = 0; i < 2; i++) {
                close_fd(&in[i]);
                close_fd(&out[i]);
        }
finish_env:
        for (size_t i = 0; i < ELEMENTSOF(extra); i++)
                free(extra[i]);
        return r;
}
