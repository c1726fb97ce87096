/* SPDX-License-Identifier: MIT */
/*
 * sandbox — see sandbox.h.
 *
 * Why a walk and not one rule: a Landlock rule allows rights beneath a
 * directory and nothing can take them back deeper down, so "all but
 * /var/lib/knock" is "each sibling on the way down": /'s entries but var,
 * /var's entries but lib, /var/lib's entries but knock. Rules are taken on
 * open O_PATH descriptors, so they hold the objects found at start even if
 * a name is later replaced.
 */
#define _GNU_SOURCE
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

#define PROTECT_MAX 8

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

typedef struct walk {
        int ruleset_fd;
        uint64_t dir_rights, file_rights;
        char *protect[PROTECT_MAX];
        size_t n_protect;
        unsigned rules;
} walk;

/* Everything a handler could do to a file or directory's contents, per ABI.
 * EXECUTE is not handled: programs run from anywhere they ran before. */
static uint64_t handled_rights(int abi)
{
        uint64_t r = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
                LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
                LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;

        if (abi >= 2)
                r |= LANDLOCK_ACCESS_FS_REFER;
        if (abi >= 3)
                r |= LANDLOCK_ACCESS_FS_TRUNCATE;
        return r;
}

static bool is_protected(const walk *w, const char *path)
{
        for (size_t i = 0; i < w->n_protect; i++)
                if (streq(w->protect[i], path))
                        return true;
        return false;
}

/* Is path a proper ancestor of a protected directory? */
static bool leads_to_protected(const walk *w, const char *path)
{
        size_t n = strlen(path);

        for (size_t i = 0; i < w->n_protect; i++)
                if (strncmp(w->protect[i], path, n) == 0 &&
                        (w->protect[i][n] == '/' || (n == 1 && path[0] == '/')) &&
                        !streq(w->protect[i], path))
                        return true;
        return false;
}

static void allow(walk *w, const char *path)
{
        struct landlock_path_beneath_attr attr = {0};
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return;
        /* A symlink is followed on use, to a target covered by its own rule. */
        if (S_ISLNK(st.st_mode))
                return;
        attr.parent_fd = fd;
        attr.allowed_access = S_ISDIR(st.st_mode) ? w->dir_rights : w->file_rights;
        if (syscall(SYS_landlock_add_rule, w->ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, &attr, 0) ==
                0)
                w->rules++;
}

/* Allows every entry of dir but the protected ones, descending into those
 * that lead to one. */
static int walk_dir(walk *w, const char *dir, unsigned depth)
{
        DIR *d;
        struct dirent *de;

        if (depth > 64)
                return -ELOOP;
        d = opendir(dir);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char path[PATH_MAX];

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (snprintf(path, sizeof(path), "%s/%s", streq(dir, "/") ? "" : dir,
                            de->d_name) >= (int)sizeof(path))
                        continue;
                if (is_protected(w, path))
                        continue;
                if (leads_to_protected(w, path))
                        (void)walk_dir(w, path, depth + 1);
                else
                        allow(w, path);
        }
        closedir(d);
        return 0;
}

int sandbox_init(handler_sandbox *sb, const char *const *protect)
{
        struct landlock_ruleset_attr rs = {0};
        walk w = {.ruleset_fd = -1};
        int abi, r;

        sb->ruleset_fd = -1;
        sb->abi = 0;
        sb->rules = 0;
        abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
        /* ENOSYS: a kernel before 5.13; EOPNOTSUPP: Landlock not among the
         * enabled LSMs; EPERM: a container's seccomp filter (systemd-nspawn
         * 252's, for one) refuses the system call. */
        if (abi < 0)
                return errno == ENOSYS || errno == EOPNOTSUPP || errno == EPERM ? -EOPNOTSUPP
                                                                                : -errno;

        for (size_t i = 0; protect[i] && w.n_protect < PROTECT_MAX; i++) {
                char *p = realpath(protect[i], NULL);

                if (p)
                        w.protect[w.n_protect++] = p;
        }
        w.dir_rights = handled_rights(abi);
        w.file_rights = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
                (abi >= 3 ? LANDLOCK_ACCESS_FS_TRUNCATE : 0);
        rs.handled_access_fs = w.dir_rights;
        w.ruleset_fd = (int)syscall(SYS_landlock_create_ruleset, &rs, sizeof(rs), 0);
        if (w.ruleset_fd < 0) {
                r = -errno;
                goto out;
        }
        r = walk_dir(&w, "/", 0);
        if (r < 0) {
                close(w.ruleset_fd);
                goto out;
        }
        sb->ruleset_fd = w.ruleset_fd;
        sb->abi = abi;
        sb->rules = w.rules;
out:
        for (size_t i = 0; i < w.n_protect; i++)
                free(w.protect[i]);
        return r;
}

int sandbox_enter(const handler_sandbox *sb)
{
        if (sb->ruleset_fd < 0)
                return 0;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return -errno;
        if (syscall(SYS_landlock_restrict_self, sb->ruleset_fd, 0) < 0)
                return -errno;
        return 0;
}

void sandbox_done(handler_sandbox *sb)
{
        if (sb->ruleset_fd >= 0)
                close(sb->ruleset_fd);
        sb->ruleset_fd = -1;
}
