/* SPDX-License-Identifier: MIT */
/*
 * test-util — the value parsers (sizes, durations, strict integers, time
 * specs), RFC 3339 parsing and formatting, time-ordered ids (format, order,
 * uniqueness across threads), endpoint names, hex and base64; an order key
 * read from a body or from stored headers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "order-key.h"
#include "tap.h"
#include "util.h"

static void test_u64(void)
{
        uint64_t v = 7;

        ok(parse_u64_strict("0", &v) == 0 && v == 0, "u64 0");
        ok(parse_u64_strict("18446744073709551615", &v) == 0 && v == UINT64_MAX, "u64 max");
        is_int(parse_u64_strict("18446744073709551616", &v), -ERANGE, "u64 max+1 overflows");
        is_int(parse_u64_strict("99999999999999999999", &v), -ERANGE, "u64 far overflow");
        static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "1a", "0x10", "1.0"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = 7;
                ok(parse_u64_strict(bad[i], &v) == -EINVAL && v == 7, "u64 rejects '%s'", bad[i]);
        }
        is_int(parse_u64_strict(NULL, &v), -EINVAL, "u64 NULL");
}

static void test_size(void)
{
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                {"0", 0},
                {"1", 1},
                {"10B", 10},
                {"1K", 1024},
                {"1k", 1024},
                {"64K", 65536},
                {"1KiB", 1024},
                {"1M", 1048576},
                {"1m", 1048576},
                {"1MiB", 1048576},
                {"100M", 104857600},
                {"3G", 3221225472ULL},
                {"1g", 1073741824},
                {"1GiB", 1073741824},
        };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 0;
                ok(parse_size(good[i].s, &v) == 0 && v == good[i].v, "size '%s' = %" PRIu64,
                        good[i].s, good[i].v);
        }
        static const char *const bad[] = {"", "K", "1X", "1KB", "1 K", " 1K", "-1", "1.5M", "1T"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                is_int(parse_size(bad[i], &v), -EINVAL, "size rejects '%s'", bad[i]);
        is_int(parse_size("17179869184G", &v), -ERANGE, "size overflow");
        is_int(parse_size("99999999999999999999", &v), -ERANGE, "size number overflow");
        is_int(parse_size(NULL, &v), -EINVAL, "size NULL");
}

static void test_duration(void)
{
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                {"0", 0},
                {"5", 5000},
                {"5s", 5000},
                {"250ms", 250},
                {"5m", 300000},
                {"1min", 60000},
                {"2h", 7200000},
                {"1d", 86400000},
                {"30d", 2592000000ULL},
                {"365d", 31536000000ULL},
        };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 1;
                ok(parse_duration_ms(good[i].s, false, &v) == 0 && v == good[i].v,
                        "duration '%s' = %" PRIu64 " ms", good[i].s, good[i].v);
        }
        ok(parse_duration_ms("never", true, &v) == 0 && v == UINT64_MAX, "never when allowed");
        is_int(parse_duration_ms("never", false, &v), -EINVAL, "never when not allowed");
        static const char *const bad[] = {"", "s", "5x", "5 s", "1.5h", "-5s", "5S", "1w", "Never"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                is_int(parse_duration_ms(bad[i], true, &v), -EINVAL, "duration rejects '%s'",
                        bad[i]);
        is_int(parse_duration_ms("999999999999999999d", false, &v), -ERANGE, "duration overflow");
        is_int(parse_duration_ms(NULL, false, &v), -EINVAL, "duration NULL");
}

static void test_time_spec(void)
{
        const int64_t now = 1795694400000LL + 5000; /* 2026-11-26T12:00:05Z */
        const int64_t noon = 1795694400000LL;       /* 2026-11-26T12:00:00Z */
        int64_t t = 0;
        char buf[64];

        ok(parse_time_spec("2h", now, &t) == 0 && t == now - 7200000, "relative 2h");
        ok(parse_time_spec("30m", now, &t) == 0 && t == now - 1800000, "relative 30m");
        ok(parse_time_spec("@1700000000", now, &t) == 0 && t == 1700000000000LL, "@unix");
        ok(parse_time_spec("2026-11-26T12:00:00Z", now, &t) == 0 && t == noon, "RFC 3339 Z");
        ok(parse_time_spec("2026-11-26T12:00:00", now, &t) == 0 && t == noon, "no offset is UTC");
        ok(parse_time_spec("2026-11-26T12:00:00.123Z", now, &t) == 0 && t == noon + 123,
                "milliseconds kept");
        ok(parse_time_spec("2026-11-26T12:00:00.5Z", now, &t) == 0 && t == noon + 500,
                "one fraction digit is tenths");
        ok(parse_time_spec("2026-11-26T12:00:00.123456Z", now, &t) == 0 && t == noon + 123,
                "microseconds truncated to ms");
        ok(parse_time_spec("2026-11-26T14:30:00+02:30", now, &t) == 0 && t == noon,
                "positive offset");
        ok(parse_time_spec("2026-11-26T07:00:00-05:00", now, &t) == 0 && t == noon,
                "negative offset");
        ok(parse_time_spec("2026-11-26T12:00:00+00:00", now, &t) == 0 && t == noon, "+00:00");
        ok(parse_time_spec("2026-11-26", now, &t) == 0 && t == noon - 12 * 3600000LL, "date only");
        static const char *const bad[] = {"", "yesterday", "@", "@-5", "@12x",
                "2026-11-26T12:00:00X", "2026-11-26T12:00:00.Z", "2026-11-26T12:00:00+2",
                "2026-11-26T12:00:00+25:00", "2026-11-26T25:00:00Z", "2026-11-26 junk",
                " 2026-11-26", "2h ago"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ok(parse_time_spec(bad[i], now, &t) < 0, "time spec rejects '%s'", bad[i]);
        ok(parse_time_spec("999999999999999999d", now, &t) < 0, "huge relative time rejected");

        is_str(format_rfc3339(noon + 123, buf, sizeof(buf)), "2026-11-26T12:00:00.123Z",
                "format_rfc3339");
        is_str(format_rfc3339(0, buf, sizeof(buf)), "1970-01-01T00:00:00.000Z", "epoch");
        is_str(format_rfc3339(-1, buf, sizeof(buf)), "1969-12-31T23:59:59.999Z",
                "before the epoch");
        bool round_trip = true;
        for (int64_t ms = -2500; ms <= noon + 2500; ms += noon / 7 + 499) {
                format_rfc3339(ms, buf, sizeof(buf));
                if (parse_time_spec(buf, now, &t) != 0 || t != ms)
                        round_trip = false;
        }
        ok(round_trip, "format → parse round trip to the millisecond");

        setenv("KNOCK_FAKE_NOW_MS", "1234567", 1);
        is_int(now_ms(), 1234567, "KNOCK_FAKE_NOW_MS fixes the clock");
        unsetenv("KNOCK_FAKE_NOW_MS");
        ok(now_ms() > 1700000000000LL, "real clock otherwise");
}

/* The one RFC 3339 parser, with the cases of both its callers: a signature header's
 * timestamp (flags 0: zendesk) and an operator's --since/--until (parse_time_spec). */
static void test_rfc3339(void)
{
        const int64_t noon = 1795694400000LL; /* 2026-11-26T12:00:00Z */
        const unsigned all = RFC3339_OFFSET | RFC3339_PARTIAL;
        int64_t t = 0;

#define P(s, flags) parse_rfc3339_ms(s, strlen(s), flags, &t)
        ok(P("2026-11-26T12:00:00Z", 0) == 0 && t == noon, "rfc3339: Z");
        ok(P("2026-11-26t12:00:00z", 0) == 0 && t == noon, "rfc3339: t and z in lower case");
        ok(P("2023-11-14T22:13:20Z", 0) == 0 && t == 1700000000000LL,
                "rfc3339: the epoch arithmetic (zendesk's vector)");
        ok(P("1970-01-01T00:00:00Z", 0) == 0 && t == 0, "rfc3339: the epoch");
        ok(P("1969-12-31T23:59:59.999Z", 0) == 0 && t == -1, "rfc3339: before the epoch");
        ok(P("0000-01-01T00:00:00Z", 0) == 0 && t == -62167219200000LL, "rfc3339: year 0");
        ok(P("9999-12-31T23:59:59.999Z", 0) == 0 && t == 253402300799999LL,
                "rfc3339: year 9999");
        ok(P("2026-11-26T12:00:00.5Z", 0) == 0 && t == noon + 500, "rfc3339: tenths");
        ok(P("2026-11-26T12:00:00.123456789Z", 0) == 0 && t == noon + 123,
                "rfc3339: a long fraction kept to the ms");
        ok(P("2024-02-29T00:00:00Z", 0) == 0, "rfc3339: Feb 29 of a leap year");
        ok(P("2000-02-29T00:00:00Z", 0) == 0, "rfc3339: Feb 29 of 2000");

        /* Signature headers (flags 0): only Z, only the full form. */
        static const char *const strict_bad[] = {"2026-11-26T12:00:00+00:00",
                "2026-11-26T12:00:00", "2026-11-26", "2023-02-29T00:00:00Z",
                "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-26T24:00:00Z",
                "2026-11-26T12:60:00Z", "2026-11-26T12:00:60Z", "2026-13-01T00:00:00Z",
                "2026-00-01T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-26 12:00:00Z",
                "2026-11-26T12:00:00.Z", "2026-11-26T12:00:00ZZ", "2026-11-26T12:00Z",
                "2026-1-26T12:00:00Z", "+2026-11-26T12:00:00Z", " 2026-11-26T12:00:00Z",
                "2026-11-26T12:00:00Z ", "2026-11-26T1:00:00Z", "2026-11-26T12:00:00X", ""};
        for (size_t i = 0; i < ELEMENTSOF(strict_bad); i++)
                ok(P(strict_bad[i], 0) == -EINVAL, "rfc3339 (strict) rejects '%s'",
                        strict_bad[i]);

        /* knockctl's times (every flag): offsets, no zone, a date alone. */
        ok(P("2026-11-26T14:30:00+02:30", all) == 0 && t == noon, "rfc3339: +02:30");
        ok(P("2026-11-26T07:00:00-05:00", all) == 0 && t == noon, "rfc3339: -05:00");
        ok(P("2026-11-26T12:00:00-00:00", all) == 0 && t == noon, "rfc3339: -00:00 is UTC");
        ok(P("2026-11-26T12:00:00.250+00:00", all) == 0 && t == noon + 250,
                "rfc3339: fraction and offset");
        ok(P("2026-11-26T12:00:00", all) == 0 && t == noon, "rfc3339: no zone is UTC");
        ok(P("2026-11-26T12:00:00.5", all) == 0 && t == noon + 500,
                "rfc3339: no zone after a fraction");
        ok(P("2026-11-26", all) == 0 && t == noon - 12 * 3600000LL,
                "rfc3339: a date alone is its midnight");
        ok(P("2026-11-26T12:00:00+02:30", RFC3339_OFFSET) == 0 &&
                        P("2026-11-26T12:00:00", RFC3339_OFFSET) == -EINVAL,
                "rfc3339: RFC3339_OFFSET alone still wants a zone");
        ok(P("2026-11-26", RFC3339_PARTIAL) == 0 &&
                        P("2026-11-26T12:00:00+02:30", RFC3339_PARTIAL) == -EINVAL,
                "rfc3339: RFC3339_PARTIAL alone takes no offset");
        static const char *const spec_bad[] = {"2026-11-26T12:00:00+2",
                "2026-11-26T12:00:00+25:00", "2026-11-26T12:00:00+02:60",
                "2026-11-26T12:00:00+0230", "2026-11-26T12:00:00+02:30Z", "2026-11-26T",
                "2026-11-26T12", "2026-11-26T12:00", "2026-02-30", "2026-11-26 junk",
                "2026-11-26T12:00:00 +02:00"};
        for (size_t i = 0; i < ELEMENTSOF(spec_bad); i++)
                ok(P(spec_bad[i], all) == -EINVAL, "rfc3339 (every flag) rejects '%s'",
                        spec_bad[i]);
#undef P

        /* The bytes given and no more: a header's span is not NUL-terminated. */
        ok(parse_rfc3339_ms("2026-11-26T12:00:00Zjunk", 20, 0, &t) == 0 && t == noon,
                "rfc3339: reads exactly n bytes");
        ok(parse_rfc3339_ms("2026-11-26T12:00:00Z", 19, 0, &t) == -EINVAL,
                "rfc3339: a span one byte short has no zone");
        ok(parse_rfc3339_ms("2026-11-26T12:00:00.1\0Z", 23, 0, &t) == -EINVAL,
                "rfc3339: a NUL inside the span is not skipped");
        ok(parse_rfc3339_ms(NULL, 0, 0, &t) == -EINVAL, "rfc3339: NULL");

        /* parse_time_spec reads its RFC 3339 times with this parser, every flag set. */
        ok(parse_time_spec("2026-02-30", noon, &t) < 0, "time spec: Feb 30 rejected");
        ok(parse_time_spec("2026-11-26T12:00:00t", noon, &t) < 0, "time spec: trailing junk");
        ok(parse_time_spec("2026-11-26t14:30:00+02:30", noon, &t) == 0 && t == noon,
                "time spec: lower-case t with an offset");
}

static bool id_well_formed(const char *id, const char *prefix)
{
        static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        size_t pl = strlen(prefix);

        if (strncmp(id, prefix, pl) != 0 || id[pl] != '_' || strlen(id) != pl + 27)
                return false;
        if (id[pl + 1] > '7') /* 128 bits: the first character carries 3 */
                return false;
        return strspn(id + pl + 1, alphabet) == 26;
}

/* Decodes the 48-bit millisecond time from the first 10 characters after the prefix. */
static uint64_t id_time(const char *id)
{
        static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        const char *p = strchr(id, '_') + 1;
        unsigned __int128 v = 0;

        for (int i = 0; i < 26; i++)
                v = v << 5 | (unsigned)(strchr(alphabet, p[i]) - alphabet);
        return (uint64_t)(v >> 80);
}

#define N_THREADS 4
#define N_PER_THREAD 5000

static char thread_ids[N_THREADS][N_PER_THREAD][KNOCK_ID_MAX];

static void *id_thread(void *arg)
{
        char(*ids)[KNOCK_ID_MAX] = arg;
        for (int i = 0; i < N_PER_THREAD; i++)
                id_new("evt", ids[i]);
        return NULL;
}

static int cmp_id(const void *a, const void *b)
{
        return strcmp(a, b);
}

static void test_ids(void)
{
        char a[KNOCK_ID_MAX], b[KNOCK_ID_MAX];
        bool ordered = true, formed = true, unique = true;
        pthread_t th[N_THREADS];

        id_new("evt", a);
        ok(id_well_formed(a, "evt"), "id format: %s", a);
        id_new("hka", b);
        ok(id_well_formed(b, "hka"), "id format with another prefix: %s", b);

        /* time first: the leading characters encode the clock */
        setenv("KNOCK_FAKE_NOW_MS", "4102444800000", 1);
        id_new("dlv", a);
        is_int(id_time(a), 4102444800000LL, "id encodes the millisecond time");
        /* same millisecond, and then a clock that goes back: still increasing */
        for (int i = 0; i < 2000; i++) {
                if (i == 1000)
                        setenv("KNOCK_FAKE_NOW_MS", "4102444700000", 1);
                id_new("dlv", b);
                if (strcmp(a, b) >= 0)
                        ordered = false;
                if (!id_well_formed(b, "dlv"))
                        formed = false;
                memcpy(a, b, sizeof(a));
        }
        ok(ordered, "ids increase within one millisecond and when the clock goes back");
        ok(formed, "all well formed");
        setenv("KNOCK_FAKE_NOW_MS", "4102444800001", 1);
        id_new("dlv", b);
        ok(strcmp(a, b) < 0 && id_time(b) == 4102444800001LL, "the next millisecond sorts after");
        unsetenv("KNOCK_FAKE_NOW_MS");

        /* unique and ordered per thread across concurrent callers */
        for (int t = 0; t < N_THREADS; t++)
                pthread_create(&th[t], NULL, id_thread, thread_ids[t]);
        for (int t = 0; t < N_THREADS; t++)
                pthread_join(th[t], NULL);
        ordered = true;
        for (int t = 0; t < N_THREADS; t++)
                for (int i = 1; i < N_PER_THREAD; i++)
                        if (strcmp(thread_ids[t][i - 1], thread_ids[t][i]) >= 0)
                                ordered = false;
        ok(ordered, "each thread sees increasing ids");
        qsort(thread_ids, N_THREADS * N_PER_THREAD, KNOCK_ID_MAX, cmp_id);
        for (int i = 1; i < N_THREADS * N_PER_THREAD; i++)
                if (streq(((char(*)[KNOCK_ID_MAX])thread_ids)[i - 1],
                            ((char(*)[KNOCK_ID_MAX])thread_ids)[i]))
                        unique = false;
        ok(unique, "%d ids from %d threads are unique", N_THREADS * N_PER_THREAD, N_THREADS);
}

static void test_names(void)
{
        char n63[64], n64[65];

        memset(n63, 'a', 63);
        n63[63] = 0;
        memset(n64, 'a', 64);
        n64[64] = 0;
        static const char *const good[] = {"a", "0", "stripe", "shop-eu_2", "9lives"};
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ok(endpoint_name_valid(good[i]), "name '%s' valid", good[i]);
        ok(endpoint_name_valid(n63), "63 characters valid");
        static const char *const bad[] = {
                "", "-a", "_a", "A", "shopA", "a.b", "a/b", "..", "a b", "ä"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ok(!endpoint_name_valid(bad[i]), "name '%s' invalid", bad[i]);
        ok(!endpoint_name_valid(n64), "64 characters invalid");
        ok(!endpoint_name_valid(NULL), "NULL invalid");
}

static void test_hex(void)
{
        unsigned char in[64], out[64];
        char text[129];
        size_t n = 0;
        bool all = true;

        hex_encode((const unsigned char *)"\x00\xff\x10\xab", 4, text);
        is_str(text, "00ff10ab", "hex encode lower-case");
        ok(hex_decode("00FF10aB", 8, out, sizeof(out), &n) == 0 && n == 4 &&
                        memcmp(out, "\x00\xff\x10\xab", 4) == 0,
                "hex decode mixed case");
        is_int(hex_decode("abc", 3, out, sizeof(out), &n), -EINVAL, "odd length");
        is_int(hex_decode("zz", 2, out, sizeof(out), &n), -EINVAL, "bad digit");
        is_int(hex_decode("0011", 4, out, 1, &n), -EINVAL, "output too small");
        for (size_t len = 0; len <= sizeof(in); len++) {
                if (getrandom(in, len, 0) != (ssize_t)len)
                        exit(2);
                hex_encode(in, len, text);
                if (strlen(text) != 2 * len ||
                        hex_decode(text, 2 * len, out, sizeof(out), &n) != 0 || n != len ||
                        memcmp(in, out, len) != 0)
                        all = false;
        }
        ok(all, "hex round trip, lengths 0..64");
}

static void test_base64(void)
{
        static const struct {
                const char *raw, *enc;
        } rfc4648[] = {
                {"", ""},
                {"f", "Zg=="},
                {"fo", "Zm8="},
                {"foo", "Zm9v"},
                {"foob", "Zm9vYg=="},
                {"fooba", "Zm9vYmE="},
                {"foobar", "Zm9vYmFy"},
        };
        unsigned char in[100], out[100];
        char text[200];
        size_t n;
        bool all = true;

        for (size_t i = 0; i < ELEMENTSOF(rfc4648); i++) {
                const char *raw = rfc4648[i].raw, *enc = rfc4648[i].enc;
                size_t rl = strlen(raw), el = strlen(enc), unpadded = el;

                base64_encode((const unsigned char *)raw, rl, text);
                is_str(text, enc, "base64 encode '%s'", raw);
                n = 99;
                ok(base64_decode(enc, el, out, sizeof(out), &n) == 0 && n == rl &&
                                memcmp(out, raw, rl) == 0,
                        "base64 decode '%s'", enc);
                while (unpadded > 0 && enc[unpadded - 1] == '=')
                        unpadded--;
                n = 99;
                ok(base64_decode(enc, unpadded, out, sizeof(out), &n) == 0 && n == rl &&
                                memcmp(out, raw, rl) == 0,
                        "base64 decode '%.*s' without padding", (int)unpadded, enc);
        }
        is_int(base64_decode("Zm9v!", 5, out, sizeof(out), &n), -EINVAL, "bad character");
        is_int(base64_decode("Zm9vY", 5, out, sizeof(out), &n), -EINVAL, "one dangling character");
        is_int(base64_decode("Zm=9v", 5, out, sizeof(out), &n), -EINVAL, "padding in the middle");
        is_int(base64_decode("Zm9v-_", 6, out, sizeof(out), &n), -EINVAL,
                "url-safe alphabet rejected");
        is_int(base64_decode("Zm9vYmFy", 8, out, 5, &n), -ENOBUFS, "output too small");
        ok(base64_decode("Zm9vYmFy", 8, out, 6, &n) == 0 && n == 6, "output exactly large enough");
        for (size_t len = 0; len <= 96; len++) {
                size_t el;
                if (getrandom(in, len, 0) != (ssize_t)len)
                        exit(2);
                el = base64_encode(in, len, text);
                if (el != 4 * ((len + 2) / 3) || strlen(text) != el ||
                        base64_decode(text, el, out, sizeof(out), &n) != 0 || n != len ||
                        memcmp(in, out, len) != 0)
                        all = false;
        }
        ok(all, "base64 round trip, lengths 0..96");
}

static void test_misc(void)
{
        char path[] = "/tmp/test-util-XXXXXX";
        char *buf = NULL;
        size_t len = 0;
        int fd;

        ok(startswith("credential:x", "credential:") && !startswith("cred", "credential:"),
                "startswith");
        ok(strcaseeq("Stripe-Signature", "stripe-signature"), "strcaseeq");
        ok(streq_ptr(NULL, NULL) && !streq_ptr("a", NULL) && streq_ptr("a", "a"), "streq_ptr");
        ok(secret_free(NULL) == NULL, "secret_free(NULL)");

        fd = mkstemp(path);
        if (fd < 0 || write(fd, "hello\n", 6) != 6)
                exit(2);
        close(fd);
        ok(read_file_full(path, 100, &buf, &len) == 0 && len == 6 && streq(buf, "hello\n"),
                "read_file_full");
        free(buf);
        is_int(read_file_full(path, 5, &buf, &len), -EFBIG, "read_file_full over the limit");
        unlink(path);
        is_int(read_file_full(path, 100, &buf, &len), -ENOENT, "read_file_full missing file");
        is_int(read_file_full("/tmp", 100, &buf, &len), -EBADF, "read_file_full on a directory");

        setenv("KNOCK_STATE_DIR", "/srv/s", 1);
        is_str(knock_state_dir(), "/srv/s", "KNOCK_STATE_DIR");
        setenv("KNOCK_STATE_DIR", "", 1);
        is_str(knock_state_dir(), "/var/lib/knock", "empty KNOCK_STATE_DIR means the default");
        unsetenv("KNOCK_CONFIG_DIR");
        unsetenv("KNOCK_RUNTIME_DIR");
        is_str(knock_config_dir(), "/etc/knock", "config dir default");
        is_str(knock_runtime_dir(), "/run/knock", "runtime dir default");
}

static void test_strdup_printf(void)
{
        _cleanup_free_ char *a = strdup_printf("exit status %d%s", 75, " (retry)");
        _cleanup_free_ char *b = strdup_printf("%s", "");

        is_str(a, "exit status 75 (retry)", "strdup_printf formats");
        is_str(b, "", "strdup_printf of an empty string");
}

/* order_key_extract: header:NAME from the stored [name, value] array. */
static void test_order_key(void)
{
        const char *hdrs = "[[\"Content-Type\",\"application/json\"],[\"x-customer\",\"c1\"],"
                           "[\"X-Customer\",\"c2\"],[\"X-Empty\",\"\"]]";
        const char body[] = "{\"c\":\"b1\"}";
        char *k = NULL, big[600];

        is_int(order_key_extract("header:X-CUSTOMER", body, strlen(body), hdrs, &k), 0,
                "header key read");
        is_str(k, "c1", "… case-insensitively, the first of its name");
        free(k);
        order_key_extract("header:X-Empty", body, strlen(body), hdrs, &k);
        ok(!k, "an empty header value is no key");
        order_key_extract("header:X-None", body, strlen(body), hdrs, &k);
        ok(!k, "a missing header is no key");
        order_key_extract("header:X-Customer", body, strlen(body), "not json", &k);
        ok(!k, "unreadable headers: no key");
        order_key_extract("header:X-Customer", body, strlen(body), NULL, &k);
        ok(!k, "no headers: no key");
        snprintf(big, sizeof(big), "[[\"X-Customer\",\"%0300d\"]]", 7);
        order_key_extract("header:X-Customer", body, strlen(body), big, &k);
        ok(!k, "a header over 256 bytes is no key");
        is_int(order_key_extract("json:/c", body, strlen(body), hdrs, &k), 0, "json key read");
        is_str(k, "b1", "… from the body, not the headers");
        free(k);
        ok(order_key_from_headers("header:A") && !order_key_from_headers("json:/a") &&
                   !order_key_from_headers(NULL),
                "only header: sources read headers");
}

int main(void)
{
        test_u64();
        test_size();
        test_duration();
        test_time_spec();
        test_rfc3339();
        test_ids();
        test_names();
        test_hex();
        test_base64();
        test_misc();
        test_strdup_printf();
        test_order_key();
        return tap_done();
}
