/* SPDX-License-Identifier: MIT */
/*
 * util — the small pieces every module shares; util.h states each one's
 * promise. They are: string and secret helpers, the config value grammar
 * (sizes, durations, rates, strict integers), the clocks, RFC 3339
 * formatting and knock's one RFC 3339 parser, time-ordered ids, endpoint
 * names and the directories, reading a small file whole, histograms, hex
 * and base64.
 *
 * What this module never does:
 *  - log or print: a failure is a negative errno (-EINVAL for what does not
 *    parse, -ERANGE for what overflows, -ENOMEM, or the errno of a system
 *    call) for the caller to report;
 *  - accept more than its grammar: no sign, no blank, no trailing byte, no
 *    date that does not exist, no value that wrapped around;
 *  - read past the bytes it is given: a function that takes (s, n) needs no
 *    NUL and reads exactly n bytes;
 *  - keep state, but for id_new()'s last (time, random) pair behind a mutex,
 *    which keeps ids monotonic within a process;
 *  - read the environment, but for KNOCK_FAKE_NOW_MS (now_ms), KNOCK_HOST
 *    (knock_host) and the directories' KNOCK_*_DIR variables;
 *  - touch a file, but the one read_file_full() is asked for (O_CLOEXEC).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "util.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *strdup_printf(const char *fmt, ...)
{
        va_list ap;
        char *s;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? NULL : s;
}

bool strcaseeq(const char *a, const char *b)
{
        return strcasecmp(a, b) == 0;
}

bool startswith(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

void *secret_free(char *s)
{
        if (!s)
                return NULL;
        explicit_bzero(s, strlen(s));
        free(s);
        return NULL;
}

int parse_u64_strict(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t)(*p - '0');
        }
        *ret = v;
        return 0;
}

/* Splits "123abc" into the number and its unit suffix. */
static int split_number(const char *s, uint64_t *ret_num, const char **ret_unit)
{
        char digits[32];
        size_t n = 0;

        while (s[n] >= '0' && s[n] <= '9')
                n++;
        if (n == 0 || n >= sizeof(digits))
                return -EINVAL;
        memcpy(digits, s, n);
        digits[n] = 0;
        if (parse_u64_strict(digits, ret_num) < 0)
                return -ERANGE;
        *ret_unit = s + n;
        return 0;
}

static int mul_checked(uint64_t a, uint64_t b, uint64_t *ret)
{
        if (b != 0 && a > UINT64_MAX / b)
                return -ERANGE;
        *ret = a * b;
        return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
        uint64_t n, mul;
        const char *unit;
        int r;

        if (!s)
                return -EINVAL;
        r = split_number(s, &n, &unit);
        if (r < 0)
                return r;
        if (streq(unit, "") || streq(unit, "B"))
                mul = 1;
        else if (streq(unit, "K") || streq(unit, "k") || streq(unit, "KiB"))
                mul = 1024;
        else if (streq(unit, "M") || streq(unit, "m") || streq(unit, "MiB"))
                mul = 1024 * 1024;
        else if (streq(unit, "G") || streq(unit, "g") || streq(unit, "GiB"))
                mul = 1024ULL * 1024 * 1024;
        else
                return -EINVAL;
        return mul_checked(n, mul, ret);
}

int parse_rate(const char *s, knock_rate *ret)
{
        const char *slash;
        char num[24];
        uint64_t n, per = 1000;
        size_t len;
        int r;

        if (!s)
                return -EINVAL;
        slash = strchr(s, '/');
        len = slash ? (size_t)(slash - s) : strlen(s);
        if (slash) {
                if (streq(slash + 1, "s"))
                        per = 1000;
                else if (streq(slash + 1, "m"))
                        per = 60 * 1000;
                else if (streq(slash + 1, "h"))
                        per = 3600 * 1000;
                else
                        return -EINVAL;
        }
        if (len >= sizeof(num))
                return -EINVAL;
        memcpy(num, s, len);
        num[len] = 0;
        r = parse_u64_strict(num, &n);
        if (r < 0)
                return r;
        *ret = (knock_rate){n, per};
        return 0;
}

int parse_duration_ms(const char *s, bool allow_never, uint64_t *ret)
{
        uint64_t n, mul;
        const char *unit;
        int r;

        if (!s)
                return -EINVAL;
        if (streq(s, "never")) {
                if (!allow_never)
                        return -EINVAL;
                *ret = UINT64_MAX;
                return 0;
        }
        r = split_number(s, &n, &unit);
        if (r < 0)
                return r;
        if (streq(unit, "ms"))
                mul = 1;
        else if (streq(unit, "") || streq(unit, "s"))
                mul = 1000;
        else if (streq(unit, "m") || streq(unit, "min"))
                mul = 60 * 1000;
        else if (streq(unit, "h"))
                mul = 3600 * 1000;
        else if (streq(unit, "d"))
                mul = 86400ULL * 1000;
        else
                return -EINVAL;
        return mul_checked(n, mul, ret);
}

int64_t now_ms(void)
{
        const char *fake = getenv("KNOCK_FAKE_NOW_MS");
        struct timespec ts;
        uint64_t v;

        if (fake && parse_u64_strict(fake, &v) == 0)
                return (int64_t)v;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t mono_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

char *format_rfc3339(int64_t ms, char *buf, size_t len)
{
        /* floor division, so times before 1970 get a positive millisecond part */
        int64_t sec = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
        int frac = (int)(ms - sec * 1000);
        time_t t = (time_t)sec;
        struct tm tm;

        gmtime_r(&t, &tm);
        snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
        return buf;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

/* The value of n decimal digits at p, or -1 when one of them is not a digit. */
static int digits_at(const char *p, int n)
{
        int v = 0;

        for (int i = 0; i < n; i++) {
                if (p[i] < '0' || p[i] > '9')
                        return -1;
                v = v * 10 + (p[i] - '0');
        }
        return v;
}

static bool leap_year(int y)
{
        return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

/* "YYYY-MM-DD" at p (10 bytes there): a date that exists, as days since the epoch. */
static int parse_date(const char *p, int64_t *ret_days)
{
        static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int y = digits_at(p, 4), mo = digits_at(p + 5, 2), d = digits_at(p + 8, 2);

        if (p[4] != '-' || p[7] != '-' || y < 0 || mo < 1 || mo > 12 || d < 1 ||
                d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap_year(y)))
                return -EINVAL;
        *ret_days = days_from_civil(y, mo, d);
        return 0;
}

/* "Thh:mm:ss" at p (9 bytes there), then an optional fraction up to end, kept to the
 * millisecond. Returns the ms into the day and leaves *p after what it read. */
static int parse_time_of_day(const char **p, const char *end, int64_t *ret_ms)
{
        const char *t = *p;
        int h = digits_at(t + 1, 2), mi = digits_at(t + 4, 2), sec = digits_at(t + 7, 2);
        int64_t frac = 0, scale = 100;

        if ((t[0] != 'T' && t[0] != 't') || t[3] != ':' || t[6] != ':' || h < 0 || h > 23 ||
                mi < 0 || mi > 59 || sec < 0 || sec > 59)
                return -EINVAL;
        t += 9;
        if (t < end && *t == '.') {
                const char *f = ++t;

                for (; t < end && *t >= '0' && *t <= '9'; t++) {
                        frac += (*t - '0') * scale;
                        scale /= 10;
                }
                if (t == f)
                        return -EINVAL;
        }
        *p = t;
        *ret_ms = ((int64_t)h * 60 + mi) * 60000 + (int64_t)sec * 1000 + frac;
        return 0;
}

/* The zone from p to end: "Z", or with RFC3339_OFFSET "+hh:mm"/"-hh:mm", as the ms to
 * subtract for UTC. */
static int parse_zone(const char *p, const char *end, unsigned flags, int64_t *ret_ms)
{
        int h, m;

        if (end - p == 1 && (*p == 'Z' || *p == 'z')) {
                *ret_ms = 0;
                return 0;
        }
        if (!(flags & RFC3339_OFFSET) || end - p != 6 || (*p != '+' && *p != '-') || p[3] != ':')
                return -EINVAL;
        h = digits_at(p + 1, 2);
        m = digits_at(p + 4, 2);
        if (h < 0 || h > 23 || m < 0 || m > 59)
                return -EINVAL;
        *ret_ms = ((int64_t)h * 60 + m) * 60000 * (*p == '-' ? -1 : 1);
        return 0;
}

int parse_rfc3339_ms(const char *s, size_t n, unsigned flags, int64_t *ret_ms)
{
        bool partial = flags & RFC3339_PARTIAL;
        int64_t days, ms = 0, offset = 0;
        const char *p, *end;

        if (!s || n < 10 || parse_date(s, &days) < 0)
                return -EINVAL;
        p = s + 10;
        end = s + n;
        if (p == end && partial)
                goto done;
        if (end - p < 9 || parse_time_of_day(&p, end, &ms) < 0)
                return -EINVAL;
        if (p == end && partial)
                goto done;
        if (parse_zone(p, end, flags, &offset) < 0)
                return -EINVAL;
done:
        *ret_ms = days * 86400000 + ms - offset;
        return 0;
}

int parse_time_spec(const char *s, int64_t now, int64_t *ret_ms)
{
        uint64_t d;
        int r;

        if (!s || !*s)
                return -EINVAL;
        if (s[0] == '@') {
                if (parse_u64_strict(s + 1, &d) < 0 || d > INT64_MAX / 1000)
                        return -EINVAL;
                *ret_ms = (int64_t)d * 1000;
                return 0;
        }
        r = parse_duration_ms(s, false, &d);
        if (r == 0) {
                if (d > (uint64_t)INT64_MAX)
                        return -ERANGE;
                *ret_ms = now - (int64_t)d;
                return 0;
        }
        if (r == -ERANGE)
                return r;
        /* An operator's time: any offset, and without one (or without a time of day) UTC. */
        return parse_rfc3339_ms(s, strlen(s), RFC3339_OFFSET | RFC3339_PARTIAL, ret_ms);
}

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void id_new(const char *prefix, char buf[static KNOCK_ID_MAX])
{
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        static uint64_t last_ms;
        static unsigned char last_rand[10];
        unsigned char bytes[16];
        uint64_t ms;
        size_t pl, i;

        /* Monotonic within the process: within one millisecond the random
         * part is incremented, so ids still sort in creation order. */
        pthread_mutex_lock(&lock);
        ms = (uint64_t)now_ms();
        if (ms <= last_ms) {
                ms = last_ms;
                for (i = 10; i-- > 0;)
                        if (++last_rand[i] != 0)
                                break;
        } else {
                if (getrandom(last_rand, sizeof(last_rand), 0) != sizeof(last_rand)) {
                        /* Fallback: mix the clock; uniqueness still holds via
                         * monotonic increment. */
                        uint64_t x = mono_us() ^ (uint64_t)getpid() << 32;
                        memcpy(last_rand, &x, sizeof(x));
                }
                last_rand[0] &= 0x7f; /* room to increment without overflow */
                last_ms = ms;
        }
        for (i = 0; i < 6; i++)
                bytes[i] = (unsigned char)(ms >> (40 - 8 * i));
        memcpy(bytes + 6, last_rand, 10);
        pthread_mutex_unlock(&lock);

        pl = strlen(prefix);
        if (pl > KNOCK_ID_MAX - 28)
                pl = KNOCK_ID_MAX - 28;
        memcpy(buf, prefix, pl);
        buf[pl++] = '_';
        /* 128 bits → 26 base32 characters, most significant first. */
        for (i = 0; i < 26; i++) {
                int bit = (int)i * 5 - 2; /* first char has 3 bits */
                unsigned v = 0;
                for (unsigned b = 0; b < 5; b++) {
                        int pos = bit + (int)b;
                        if (pos < 0)
                                continue;
                        v |= ((bytes[pos / 8] >> (7 - pos % 8)) & 1u) << (4 - b);
                }
                buf[pl + i] = crockford[v];
        }
        buf[pl + 26] = 0;
}

bool endpoint_name_valid(const char *name)
{
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n < 1 || n > 63)
                return false;
        if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
                return false;
        for (size_t i = 1; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

static const char *env_or(const char *var, const char *def)
{
        const char *v = getenv(var);
        return v && *v ? v : def;
}

const char *knock_config_dir(void)
{
        return env_or("KNOCK_CONFIG_DIR", "/etc/knock");
}

const char *knock_state_dir(void)
{
        return env_or("KNOCK_STATE_DIR", "/var/lib/knock");
}

const char *knock_runtime_dir(void)
{
        return env_or("KNOCK_RUNTIME_DIR", "/run/knock");
}

static char host_name[KNOCK_HOST_MAX + 1];

static void host_init(void)
{
        const char *e = getenv("KNOCK_HOST");
        char buf[256] = "";

        /* Cut to KNOCK_HOST_MAX bytes, on purpose (the precision says so). */
        if (e && *e)
                snprintf(host_name, sizeof(host_name), "%.*s", KNOCK_HOST_MAX, e);
        else if (gethostname(buf, sizeof(buf) - 1) == 0 && buf[0])
                snprintf(host_name, sizeof(host_name), "%.*s", KNOCK_HOST_MAX, buf);
        else
                snprintf(host_name, sizeof(host_name), "localhost");
        /* It goes into claim holders and heartbeat keys: no blank, no control. */
        for (char *c = host_name; *c; c++)
                if ((unsigned char)*c <= ' ' || *c == 0x7f)
                        *c = '_';
}

const char *knock_host(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        pthread_once(&once, host_init);
        return host_name;
}

int read_file_full(const char *path, size_t max, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        struct stat st;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        if ((uint64_t)st.st_size > max)
                return -EFBIG;
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len == (size_t)st.st_size)
                        break;
        }
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

void hex_encode(const unsigned char *in, size_t len, char *out)
{
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < len; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * len] = 0;
}

int unhexchar(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int hex_decode(const char *in, size_t len, unsigned char *out, size_t out_max, size_t *ret_len)
{
        if (len % 2 != 0 || len / 2 > out_max)
                return -EINVAL;
        for (size_t i = 0; i < len / 2; i++) {
                int hi = unhexchar(in[2 * i]), lo = unhexchar(in[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (unsigned char)(hi << 4 | lo);
        }
        *ret_len = len / 2;
        return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encode(const unsigned char *in, size_t len, char *out)
{
        size_t o = 0, i = 0;

        for (; i + 2 < len; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
                out[o++] = b64[v >> 18];
                out[o++] = b64[(v >> 12) & 63];
                out[o++] = b64[(v >> 6) & 63];
                out[o++] = b64[v & 63];
        }
        if (i < len) {
                uint32_t v = (uint32_t)in[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)in[i + 1] << 8;
                out[o++] = b64[v >> 18];
                out[o++] = b64[(v >> 12) & 63];
                out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
                out[o++] = '=';
        }
        out[o] = 0;
        return o;
}

static int unb64(char c)
{
        const char *p;

        if (c == 0)
                return -1;
        p = strchr(b64, c);
        return p ? (int)(p - b64) : -1;
}

int base64_decode(const char *in, size_t len, unsigned char *out, size_t out_max,
                  size_t *ret_len)
{
        uint32_t acc = 0;
        size_t o = 0;
        int bits = 0;

        while (len > 0 && in[len - 1] == '=')
                len--;
        if (len % 4 == 1)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                int v = unb64(in[i]);
                if (v < 0)
                        return -EINVAL;
                acc = acc << 6 | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (o >= out_max)
                                return -ENOBUFS;
                        out[o++] = (unsigned char)(acc >> bits);
                }
        }
        *ret_len = o;
        return 0;
}

const double knock_duration_bounds[KNOCK_HIST_BUCKETS] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30,
};

void hist_observe(uint64_t *buckets, const double *bounds, double value)
{
        for (size_t i = 0; i < KNOCK_HIST_BUCKETS; i++)
                if (value <= bounds[i]) {
                        buckets[i]++;
                        return;
                }
}
