/* SPDX-License-Identifier: MIT */
/*
 * walbuf — an SQLite VFS that writes a transaction's WAL frames with one
 * system call instead of two per page.
 *
 * SQLite appends every WAL frame as two writes (the 24-byte frame header,
 * then the page): at 64 connections the ingress writer made 140 pwrite(2)
 * calls per commit, 5.3 per receipt, each paying ext4's per-call work
 * (inode lock, write checks, timestamps, dirty accounting). Gathered, a
 * commit is one write per 124 KiB (the unix VFS's largest). This VFS wraps
 * the default one ("unix") and, for WAL files only, gathers writes that
 * continue one another in a memory buffer; the buffer goes to the file as
 * one write before anything that must see the file as written: xSync,
 * xRead, xTruncate, xFileSize, xFileControl, xClose, a write elsewhere, or
 * the buffer reaching WALBUF_MAX.
 *
 * Why this keeps every promise of synchronous=FULL: a commit's frames are
 * visible to other connections only once SQLite updates the wal-index,
 * which sqlite3WalFrames does after its xSync of the WAL returned — and
 * xSync writes the buffer first, then calls the real fsync. A frame is
 * therefore on disk before anyone can read it, exactly as without the
 * buffer. This holds only when every commit syncs the WAL, i.e. under
 * synchronous=FULL, which store_open always sets; with a lower level a
 * committed frame could sit in the buffer while another process reads the
 * wal-index. A failed write surfaces at xSync as the write's own error
 * (SQLITE_FULL for a full disk), so the COMMIT fails and the transaction is
 * rolled back, as it would have at the write.
 *
 * Main database files and journals are the real VFS's files untouched (the
 * wrapper's xOpen hands them the caller's memory); only WAL handles carry
 * the buffer. Never logs.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "walbuf.h"

#define WALBUF_MAX (4u << 20)

typedef struct walbuf_file {
        sqlite3_file base; /* pMethods = &walbuf_io */
        sqlite3_file *real;
        unsigned char *buf;
        size_t len, cap;
        sqlite3_int64 off; /* file offset of buf[0] */
} walbuf_file;

/* The real file follows the wrapper, 8-byte aligned. */
#define REAL_OFFSET ((sizeof(walbuf_file) + 7) & ~(size_t)7)

static sqlite3_vfs walbuf_vfs;
static sqlite3_io_methods walbuf_io;

static sqlite3_vfs *real_vfs(void)
{
        return walbuf_vfs.pAppData;
}

/* The unix VFS writes at most 0x1ffff bytes per call (its seekAndWriteFd
 * masks the length with it): the buffer goes out in pieces below that. */
#define REAL_WRITE_MAX (0x1ffffu & ~4095u)

static int wb_flush(walbuf_file *f)
{
        int rc = SQLITE_OK;

        for (size_t at = 0; at < f->len && rc == SQLITE_OK; at += REAL_WRITE_MAX) {
                size_t n = f->len - at < REAL_WRITE_MAX ? f->len - at : REAL_WRITE_MAX;

                rc = f->real->pMethods->xWrite(f->real, f->buf + at, (int)n,
                                               f->off + (sqlite3_int64)at);
        }
        f->len = 0;
        return rc;
}

static int wb_close(sqlite3_file *p)
{
        walbuf_file *f = (walbuf_file *)p;
        int rc = wb_flush(f), rc2 = f->real->pMethods->xClose(f->real);

        free(f->buf);
        f->buf = NULL;
        f->cap = 0;
        return rc != SQLITE_OK ? rc : rc2;
}

static int wb_read(sqlite3_file *p, void *out, int amt, sqlite3_int64 off)
{
        walbuf_file *f = (walbuf_file *)p;
        int rc = wb_flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, out, amt, off);
}

static int wb_write(sqlite3_file *p, const void *data, int amt, sqlite3_int64 off)
{
        walbuf_file *f = (walbuf_file *)p;
        size_t n = (size_t)amt;
        int rc;

        if (f->len > 0 && (off != f->off + (sqlite3_int64)f->len || f->len + n > WALBUF_MAX)) {
                rc = wb_flush(f);
                if (rc != SQLITE_OK)
                        return rc;
        }
        if (f->len == 0)
                f->off = off;
        if (f->len + n > f->cap) {
                size_t cap = f->cap ? f->cap : 64u << 10;
                unsigned char *b;

                while (cap < f->len + n)
                        cap *= 2;
                if (cap > WALBUF_MAX || !(b = realloc(f->buf, cap))) {
                        /* Too large to gather, or no memory: write through
                         * (SQLite's own writes are a frame at most). */
                        rc = wb_flush(f);
                        return rc != SQLITE_OK ? rc
                                               : f->real->pMethods->xWrite(f->real, data, amt, off);
                }
                f->buf = b;
                f->cap = cap;
        }
        memcpy(f->buf + f->len, data, n);
        f->len += n;
        return SQLITE_OK;
}

static int wb_truncate(sqlite3_file *p, sqlite3_int64 size)
{
        walbuf_file *f = (walbuf_file *)p;
        int rc = wb_flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wb_sync(sqlite3_file *p, int flags)
{
        walbuf_file *f = (walbuf_file *)p;
        int rc = wb_flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wb_file_size(sqlite3_file *p, sqlite3_int64 *size)
{
        walbuf_file *f = (walbuf_file *)p;
        int rc = wb_flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wb_lock(sqlite3_file *p, int lock)
{
        walbuf_file *f = (walbuf_file *)p;

        return f->real->pMethods->xLock(f->real, lock);
}

static int wb_unlock(sqlite3_file *p, int lock)
{
        walbuf_file *f = (walbuf_file *)p;

        return f->real->pMethods->xUnlock(f->real, lock);
}

static int wb_check_reserved(sqlite3_file *p, int *out)
{
        walbuf_file *f = (walbuf_file *)p;

        return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wb_file_control(sqlite3_file *p, int op, void *arg)
{
        walbuf_file *f = (walbuf_file *)p;
        int rc = wb_flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wb_sector_size(sqlite3_file *p)
{
        walbuf_file *f = (walbuf_file *)p;

        return f->real->pMethods->xSectorSize(f->real);
}

static int wb_device_characteristics(sqlite3_file *p)
{
        walbuf_file *f = (walbuf_file *)p;

        return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static sqlite3_io_methods walbuf_io = {
        .iVersion = 1,
        .xClose = wb_close,
        .xRead = wb_read,
        .xWrite = wb_write,
        .xTruncate = wb_truncate,
        .xSync = wb_sync,
        .xFileSize = wb_file_size,
        .xLock = wb_lock,
        .xUnlock = wb_unlock,
        .xCheckReservedLock = wb_check_reserved,
        .xFileControl = wb_file_control,
        .xSectorSize = wb_sector_size,
        .xDeviceCharacteristics = wb_device_characteristics,
};

static int wb_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *p, int flags,
                   int *out_flags)
{
        walbuf_file *f = (walbuf_file *)p;
        int rc;

        (void)vfs;
        if (!(flags & SQLITE_OPEN_WAL))
                /* Not a WAL: the real VFS's file in the caller's memory. */
                return real_vfs()->xOpen(real_vfs(), name, p, flags, out_flags);
        memset(f, 0, sizeof(*f));
        f->real = (sqlite3_file *)((char *)p + REAL_OFFSET);
        rc = real_vfs()->xOpen(real_vfs(), name, f->real, flags, out_flags);
        if (rc != SQLITE_OK)
                return rc; /* base.pMethods stays NULL: SQLite will not close it */
        f->base.pMethods = &walbuf_io;
        return SQLITE_OK;
}

/* The rest of the VFS is the real one's. */
static int wb_delete(sqlite3_vfs *v, const char *name, int dirsync)
{
        (void)v;
        return real_vfs()->xDelete(real_vfs(), name, dirsync);
}

static int wb_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
        (void)v;
        return real_vfs()->xAccess(real_vfs(), name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
        (void)v;
        return real_vfs()->xFullPathname(real_vfs(), name, n, out);
}

static void *wb_dlopen(sqlite3_vfs *v, const char *name)
{
        (void)v;
        return real_vfs()->xDlOpen(real_vfs(), name);
}

static void wb_dlerror(sqlite3_vfs *v, int n, char *out)
{
        (void)v;
        real_vfs()->xDlError(real_vfs(), n, out);
}

static void (*wb_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
        (void)v;
        return real_vfs()->xDlSym(real_vfs(), h, sym);
}

static void wb_dlclose(sqlite3_vfs *v, void *h)
{
        (void)v;
        real_vfs()->xDlClose(real_vfs(), h);
}

static int wb_randomness(sqlite3_vfs *v, int n, char *out)
{
        (void)v;
        return real_vfs()->xRandomness(real_vfs(), n, out);
}

static int wb_sleep(sqlite3_vfs *v, int us)
{
        (void)v;
        return real_vfs()->xSleep(real_vfs(), us);
}

static int wb_current_time(sqlite3_vfs *v, double *out)
{
        (void)v;
        return real_vfs()->xCurrentTime(real_vfs(), out);
}

static int wb_last_error(sqlite3_vfs *v, int n, char *out)
{
        (void)v;
        return real_vfs()->xGetLastError(real_vfs(), n, out);
}

static int wb_current_time_i64(sqlite3_vfs *v, sqlite3_int64 *out)
{
        (void)v;
        return real_vfs()->xCurrentTimeInt64(real_vfs(), out);
}

static int register_rc = SQLITE_ERROR;

static void walbuf_register(void)
{
        sqlite3_vfs *real = sqlite3_vfs_find(NULL);

        if (!real || real->iVersion < 2)
                return;
        walbuf_vfs = (sqlite3_vfs){
                .iVersion = 2,
                .szOsFile = (int)(REAL_OFFSET + (size_t)real->szOsFile),
                .mxPathname = real->mxPathname,
                .zName = WALBUF_VFS_NAME,
                .pAppData = real,
                .xOpen = wb_open,
                .xDelete = wb_delete,
                .xAccess = wb_access,
                .xFullPathname = wb_full_pathname,
                .xDlOpen = wb_dlopen,
                .xDlError = wb_dlerror,
                .xDlSym = wb_dlsym,
                .xDlClose = wb_dlclose,
                .xRandomness = wb_randomness,
                .xSleep = wb_sleep,
                .xCurrentTime = wb_current_time,
                .xGetLastError = wb_last_error,
                .xCurrentTimeInt64 = wb_current_time_i64,
        };
        register_rc = sqlite3_vfs_register(&walbuf_vfs, 0);
}

const char *walbuf_vfs_name(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        pthread_once(&once, walbuf_register);
        return register_rc == SQLITE_OK ? WALBUF_VFS_NAME : NULL;
}
