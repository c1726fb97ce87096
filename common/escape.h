/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * escape — text a client chose, made safe for a terminal or a log line.
 *
 * Webhook ids, event types, header values and handler output are chosen by
 * whoever sends the request (an unauthenticated client can pick the event
 * type header of a 401). Printed raw, an ESC sequence retitles or clears the
 * operator's terminal, and a newline in stderr log mode forges a log line.
 * The escaping is systemd's (cescape): what a terminal or a line reader could
 * act on becomes visible text, everything else is left as it is.
 *
 * Promises:
 *  - C0 controls and DEL become \a \b \t \n \v \f \r or \xNN, and a
 *    backslash becomes \\, so the output reads back unambiguously;
 *  - bytes that are not valid UTF-8 become \xNN; valid UTF-8 stays as it is
 *    (names, accents, emoji), except C1 controls (U+0080..U+009F), the line
 *    and paragraph separators and the bidirectional overrides
 *    (U+202A..U+202E, U+2066..U+2069), which become \uXXXX;
 *  - ESCAPE_KEEP_NEWLINE keeps \n and \t as they are (a multi-line block
 *    such as a handler's output), everything else is still escaped;
 *  - ESCAPE_HTML also writes & < > " ' as character references (&amp; &lt;
 *    &gt; &quot; &#39;), so the text is safe as an HTML element's content
 *    and as a quoted attribute value (the web console);
 *  - the output never contains a byte below 0x20 (but kept \n and \t) or 0x7f;
 *  - no allocation in escape_buf(); never logs.
 */

#include <stdbool.h>
#include <stddef.h>

enum {
        ESCAPE_KEEP_NEWLINE = 1 << 0,
        ESCAPE_HTML = 1 << 1,
};

/* Length of the valid UTF-8 sequence at p (at most left bytes), 0 if invalid. */
size_t utf8_valid_len(const unsigned char *p, size_t left);
/* Whether len bytes at s are UTF-8 without a NUL. */
bool utf8_valid(const char *s, size_t len);
/* A copy of len bytes at s (NUL-terminated) with U+FFFD for each byte that
 * is not part of valid UTF-8, and with nul for each NUL byte too (text for a
 * store whose text holds only UTF-8: PostgreSQL); *ret_changed says whether
 * anything was replaced. NULL: no memory. Both ret_ may be NULL. */
char *utf8_lossy(const char *s, size_t len, bool nul, size_t *ret_len, bool *ret_changed);

/* Escapes len bytes of s into out (out_len > 0 bytes, NUL-terminated). A
 * sequence that does not fit is left out whole. Returns the length the full
 * escaped text needs (excluding the NUL), like snprintf. */
size_t escape_buf(const char *s, size_t len, unsigned flags, char *out, size_t out_len);

/* The escaped text, malloc'd; NULL when out of memory. */
char *escape_text(const char *s, size_t len, unsigned flags);

/*
 * JSON text for stored values (the headers of a delivery): s as a quoted
 * JSON string in jansson's JSON_ENSURE_ASCII form, so that what was stored
 * through jansson before reads back byte for byte the same: \" \\ \b \f
 * \n \r \t, other controls and every code point above U+007F as \uXXXX
 * (upper-case hex, UTF-16 surrogate pairs above U+FFFF). A byte that is not
 * valid UTF-8 is taken as Latin-1 (HTTP's obs-text) and becomes \u00XX —
 * jansson refused the whole string. Writes to out when out is not NULL (the
 * caller sized it by a first call with NULL); returns the length, without a
 * NUL. No allocation.
 */
size_t json_quote_ascii(const char *s, size_t len, char *out);
