/* SPDX-License-Identifier: MIT */
/*
 * notify — see notify.h. sd_notify() is a no-op without NOTIFY_SOCKET, so
 * the same code runs under systemd, under tests and by hand.
 */
#define _GNU_SOURCE
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "util.h"

void notify_ready(const char *status)
{
        if (status)
                sd_notifyf(0, "READY=1\nSTATUS=%s", status);
        else
                sd_notify(0, "READY=1");
}

void notify_status(const char *fmt, ...)
{
        char buf[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        sd_notifyf(0, "STATUS=%s", buf);
}

void notify_reloading(void)
{
        /* systemd 253+ wants MONOTONIC_USEC with RELOADING=1; 252 ignores it. */
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)mono_us());
}

void notify_stopping(void)
{
        sd_notify(0, "STOPPING=1");
}

void notify_watchdog(void)
{
        sd_notify(0, "WATCHDOG=1");
}

void notify_extend_timeout(uint64_t usec)
{
        sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
}

uint64_t notify_watchdog_interval_us(void)
{
        uint64_t usec = 0;

        if (sd_watchdog_enabled(0, &usec) <= 0)
                return 0;
        return usec / 2;
}

/*
 * Opens the watchdog file left by the previous run and reads it into buf,
 * or returns -ENOENT. The state directory is writable by group knock, so
 * only our own plain file is used: never through a symlink, never a file
 * with other links, never a FIFO (O_NONBLOCK: opening one does not wait).
 */
static int oomfile_open_previous(const char *path, char *buf, size_t len)
{
        struct stat st;
        ssize_t k;
        int fd;

        fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
            st.st_uid != geteuid()) {
                close(fd);
                return -EPERM;
        }
        k = read(fd, buf, len - 1);
        buf[k > 0 ? k : 0] = 0;
        if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
                close(fd);
                return -errno;
        }
        return fd;
}

int oomfile_start(oomfile *f, const char *state_dir, const char *name, const char *daemon,
                  oomfile_state *ret_state)
{
        char *path = NULL, content[4096];
        int fd, r;

        f->path = NULL;
        f->fd = -1;
        if (asprintf(&path, "%s/%s.%s.watchdog", state_dir, name, daemon) < 0)
                return -ENOMEM;

        /* A file left behind READY but without CLEAN_EXIT means the previous
         * run never reached its clean stop: OOM kill, SIGKILL, watchdog abort.
         * Without READY it never got going: a start that failed, said in
         * its own records. (A file of a version before READY reads so too.) */
        *ret_state = OOMFILE_FRESH;
        fd = oomfile_open_previous(path, content, sizeof(content));
        if (fd >= 0 && !strstr(content, "CLEAN_EXIT"))
                *ret_state = strstr(content, "\nREADY\n") ? OOMFILE_UNCLEAN : OOMFILE_NEVER_READY;
        if (fd < 0) {
                /* None, or not ours to use: whatever is at that name goes
                 * (a symlink is removed, not followed) and ours is made. */
                if (fd != -ENOENT)
                        (void)unlink(path);
                fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        }
        if (fd < 0) {
                r = -errno;
                free(path);
                *ret_state = OOMFILE_DISABLED;
                return r;
        }
        dprintf(fd, "PID=%d\nSTARTED=%lld\n", (int)getpid(), (long long)now_ms());
        (void)fsync(fd);
        f->path = path;
        f->fd = fd;
        return 0;
}

void oomfile_ready(oomfile *f)
{
        if (f->fd < 0)
                return;
        (void)!write(f->fd, "READY\n", 6);
        (void)fsync(f->fd);
}

void oomfile_clean_exit(oomfile *f)
{
        if (!f->path)
                return;
        if (f->fd >= 0) {
                /* CLEAN_EXIT first and durable, then unlink: a crash between the
                 * two still reads as clean. */
                (void)!write(f->fd, "CLEAN_EXIT\n", 11);
                (void)fsync(f->fd);
                close(f->fd);
                f->fd = -1;
        }
        (void)unlink(f->path);
        free(f->path);
        f->path = NULL;
}
