/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * walbuf — an SQLite VFS gathering a transaction's WAL writes into one
 * write(2) before each sync (see walbuf.c for why it is safe under
 * synchronous=FULL, and only under it).
 */

#define WALBUF_VFS_NAME "knock-walbuf"

/* Registers the VFS (once, thread-safe) and returns its name for
 * sqlite3_open_v2, or NULL when it could not be registered (then open with
 * the default VFS). */
const char *walbuf_vfs_name(void);
