/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * util — small helpers every module shares.
 *
 * Promises:
 *  - cleanup attributes in the systemd style: _cleanup_(x_freep) frees an
 *    owned object at scope exit; TAKE_PTR()/TAKE_FD() move ownership out.
 *  - parsers for the config value grammar (sizes K/M/G, durations
 *    ms/s/m/h/d, "never"), strict: no sign, no junk, overflow is an error.
 *  - time in milliseconds since the epoch (wall clock, injectable for tests
 *    with KNOCK_FAKE_NOW_MS), RFC 3339 UTC formatting, and the one RFC 3339
 *    parser (parse_rfc3339_ms: signature headers and knockctl alike).
 *  - time-ordered identifiers: "<prefix>_" + 26 Crockford base32 characters
 *    (48-bit millisecond time, 80 bits random, monotonic within a process),
 *    so primary keys are appended in order and sort by creation time.
 *
 * Functions return 0 or a negative errno; they never log.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _pure_ __attribute__((pure))

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _p_ = (p);                                                           \
                (p) = NULL;                                                                        \
                _p_;                                                                               \
        })
#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _fd_ = (fd);                                                                   \
                (fd) = -1;                                                                         \
                _fd_;                                                                              \
        })

static inline void *mfree(void *p)
{
        free(p);
        return NULL;
}

static inline void freep(void *p)
{
        free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline bool streq(const char *a, const char *b)
{
        return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
bool strcaseeq(const char *a, const char *b);
/* A formatted string (malloc'd), or NULL when out of memory: asprintf()
 * without its undefined output on failure and its unused-result warning. */
char *strdup_printf(const char *fmt, ...) _printf_(1, 2);
bool startswith(const char *s, const char *prefix);

/* Wipes and frees a secret. Accepts NULL, returns NULL. */
void *secret_free(char *s);

/* "1M" → 1048576. Plain digits are bytes. */
int parse_size(const char *s, uint64_t *ret);
/* "5m" → 300000 ms. Plain digits are seconds. "never" → UINT64_MAX when allow_never. */
int parse_duration_ms(const char *s, bool allow_never, uint64_t *ret);
/* N events per per_ms milliseconds. */
typedef struct knock_rate {
        uint64_t n;
        uint64_t per_ms;
} knock_rate;

/* "10/s", "600/m", "3600/h" (N alone: per second; "0": none). */
int parse_rate(const char *s, knock_rate *ret);
/* Strict base-10 unsigned integer: digits only, no sign, no space, no junk. */
int parse_u64_strict(const char *s, uint64_t *ret);

/* Wall clock in ms since the epoch; KNOCK_FAKE_NOW_MS overrides for tests. */
int64_t now_ms(void);
/* Monotonic clock in microseconds. */
uint64_t mono_us(void);
/* RFC 3339 UTC with milliseconds: "2026-11-26T12:00:00.123Z". buf ≥ 32 bytes. */
char *format_rfc3339(int64_t ms, char *buf, size_t len);
/* Parses "2h", "30m" (relative, before now), "@<unix>" or an RFC 3339 time, which may
 * have an offset, or none (UTC), or no time of day (its midnight UTC). */
int parse_time_spec(const char *s, int64_t now, int64_t *ret_ms);

enum {
        RFC3339_OFFSET = 1 << 0,  /* "+01:30" or "-05:00" may stand where "Z" does */
        RFC3339_PARTIAL = 1 << 1, /* the zone may be left out (UTC), and the time of
                                   * day with it (a date alone is its midnight UTC) */
};
/* The one RFC 3339 parser: "2021-07-25T10:00:00Z", the n bytes at s (no NUL needed), as
 * ms since the epoch. Exactly that shape (T and Z in either case), a date that exists,
 * hours 00-23, no leap second, an optional fraction kept to the millisecond; with flags
 * 0 the zone is Z, nothing else. -EINVAL for anything else. */
int parse_rfc3339_ms(const char *s, size_t n, unsigned flags, int64_t *ret_ms);

#define KNOCK_ID_MAX 40
/* Writes "<prefix>_<26 chars>" into buf (KNOCK_ID_MAX). Thread-safe. */
void id_new(const char *prefix, char buf[static KNOCK_ID_MAX]);

/* Endpoint names: [a-z0-9][a-z0-9_-]{0,62}. */
bool endpoint_name_valid(const char *name);

/* Directories from the environment (KNOCK_CONFIG_DIR, …) or their defaults. */
const char *knock_config_dir(void);
const char *knock_state_dir(void);
const char *knock_runtime_dir(void);
/* This host's name where several hosts share one store (lease.h, the daemons'
 * heartbeats): $KNOCK_HOST when set (tests; containers sharing a hostname),
 * else gethostname(); never empty, at most KNOCK_HOST_MAX bytes, blanks and
 * control characters as '_'. Read once per process. */
#define KNOCK_HOST_MAX 64
const char *knock_host(void);

/* Reads a whole small file (≤ max bytes) into a NUL-terminated buffer. */
int read_file_full(const char *path, size_t max, char **ret, size_t *ret_len);

/* Histograms as /metrics shows them: per-bucket counts (the last bound's
 * bucket and above are only in the count); the duration bounds are seconds. */
#define KNOCK_HIST_BUCKETS 12
extern const double knock_duration_bounds[KNOCK_HIST_BUCKETS];
void hist_observe(uint64_t *buckets, const double *bounds, double value);

/* Hex and base64 encoders/decoders (standard alphabet, padding optional on decode). */
int unhexchar(char c); /* 0..15, or -1 when c is not a hex digit */
void hex_encode(const unsigned char *in, size_t len, char *out /* 2*len+1 */);
int hex_decode(const char *in, size_t len, unsigned char *out, size_t out_max, size_t *ret_len);
size_t base64_encode(const unsigned char *in, size_t len, char *out /* 4*((len+2)/3)+1 */);
int base64_decode(const char *in, size_t len, unsigned char *out, size_t out_max,
                  size_t *ret_len);
