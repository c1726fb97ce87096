/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * sandbox — what an exec: handler may not touch, enforced with Landlock.
 *
 * Handlers run as the worker's user (knock), which owns the endpoint's
 * database. Rather than a second user (`[worker] user =`, which would give the
 * worker CAP_SETUID/CAP_SETGID for its whole life and cost it PrivateUsers=;
 * see knock-worker(8)), every handler is started under a Landlock domain that
 * takes away, beneath knock's state directory (the database, its WAL,
 * backups, OOM watchdog files) and beneath /run/credentials (the daemons'
 * secrets), every right to read, list, write, create, remove, rename or
 * truncate. Everything else the worker's unit allows stays allowed.
 *
 * Promises:
 *  - sandbox_init() builds the ruleset once, at worker start: Landlock denies
 *    what it handles unless a rule allows it, so the rule set is "everything
 *    beside the protected directories": each entry of each directory on the
 *    way down to them ("/", "/var", "/var/lib", "/run" …) other than that way
 *    itself gets a rule. What is created later directly in one of those
 *    directories ("/var/lib/NEW") is not writable by handlers;
 *  - sandbox_enter() applies it to the calling thread only (Landlock domains
 *    are per thread): the spawner threads enter it, so every handler they
 *    spawn inherits it, and the worker's loop and writer threads are not
 *    restricted. It sets no_new_privs on that thread first (systemd's
 *    NoNewPrivileges= already did for the whole process);
 *  - without Landlock (a kernel before Linux 5.13, Landlock not among the
 *    enabled LSMs, or a container whose seccomp filter refuses it)
 *    sandbox_init() returns -EOPNOTSUPP; the caller logs it once and
 *    handlers run without the restriction. Once initialised, a failing
 *    sandbox_enter() fails every spawn: a handler never runs outside it.
 */

#include <stdint.h>

typedef struct handler_sandbox {
        int ruleset_fd; /* -1: none */
        int abi;        /* Landlock ABI version of the kernel */
        unsigned rules; /* entries allowed, for the start record */
} handler_sandbox;

/* Builds the ruleset protecting the NULL-terminated list of absolute paths
 * (those that do not exist are skipped). 0, -EOPNOTSUPP, or a negative errno. */
int sandbox_init(handler_sandbox *sb, const char *const *protect);
/* Restricts the calling thread. 0 or a negative errno; 0 when sb has no ruleset. */
int sandbox_enter(const handler_sandbox *sb);
void sandbox_done(handler_sandbox *sb);
