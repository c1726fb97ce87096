/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * verify-internal — what the two halves of verify share, and nothing else
 * includes: verify.c (the provider table, the scheme families,
 * verify_request) and verify-meta.c (what a request says it is: its dedupe
 * id, its event type, a handshake, read from headers and from the body,
 * which is scanned at most once per request). The rest of knock sees
 * verify.h.
 *
 * A request is verified with one vctx on the stack: the provider's scheme
 * row, the JSON values and form fields read from the body so far, and the
 * signatures decoded from its headers. Nothing in it outlives
 * verify_request().
 */

#include <stdarg.h>
#include <stdio.h>

#include "form.h"
#include "jsonscan.h"
#include "util.h"
#include "verify.h"

#define MAX_SIGS 16       /* signatures considered in one request */
#define MAX_SIG_BYTES 160 /* decoded signature: HMAC ≤ 64, Ed25519 64, ECDSA DER ≤ 72 */
#define MAX_META 512      /* longer ids/types are dropped, never truncated */
#define JSON_MAX_PTRS JSON_SCAN_MAX_PTRS /* JSON values one request reads */
#define MAX_CHALLENGE 2048               /* echoed handshake challenge */

/* ---- a provider's scheme: one row of verify.c's table -------------------------------------- */

typedef enum family {
        FAM_NONE,
        FAM_SIMPLE,   /* one signature header [+ timestamp header] over pre ts mid body */
        FAM_TS_LIST,  /* "t=…,v1=…,v1=…" (stripe) / "ts=…;h1=…" (paddle) */
        FAM_STANDARD, /* webhook-id/-timestamp/-signature or svix-*: "v1,… v1a,…" */
        FAM_TWILIO,   /* URL + sorted form params, HMAC-SHA1 */
        FAM_TOKEN,    /* header equals secret */
        FAM_BASIC,    /* Authorization: Basic */
        FAM_BEARER,   /* Authorization: Bearer */
} family;

typedef enum ts_kind {
        TS_NONE,
        TS_UNIX_S,
        TS_UNIX_MS,
        TS_RFC3339,
} ts_kind;

typedef enum msg_layout {
        MSG_PRE_TS_MID_BODY, /* msg_pre ts msg_mid body (body alone without timestamp) */
        MSG_HUBSPOT,         /* method url body ts */
} msg_layout;

typedef struct scheme {
        family family;
        const char *sig_header;
        const char *sig_header_alt; /* another accepted name; both at once is a duplicate */
        const char *ts_header;
        const char *prefix; /* text before the signature in its header */
        knock_hmac_alg alg;
        knock_encoding enc;
        knock_key_kind key;     /* what verifies a signature */
        key_text_rule key_text; /* how a configured secret becomes key bytes (keys.h) */
        ts_kind ts;
        int64_t tolerance_ms; /* default; 0: no timestamp */
        bool future;          /* reject timestamps too far ahead as well */
        msg_layout layout;
        const char *msg_pre, *msg_mid;
        char list_sep; /* FAM_TS_LIST */
        const char *list_ts, *list_sig;
        const char *body_ts;   /* JSON pointer to a ms timestamp inside the body (linear) */
        const char *dedupe[3]; /* "header:NAME" | "json:/ptr" | "form:NAME", first found wins */
        const char *type[3];
        const char *type_suffix; /* appended as ".value" when present */
} scheme;

/* ---- text ---------------------------------------------------------------------------------- */

/* A piece of the request's text; the signed message is made of them (keys.h). */
typedef key_part span;

static inline span span_trim(const char *p, size_t n)
{
        while (n > 0 && (*p == ' ' || *p == '\t'))
                p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                n--;
        return (span){p, n};
}

static inline bool span_eq(span s, const char *lit)
{
        size_t l = strlen(lit);
        return s.n == l && memcmp(s.p, lit, l) == 0;
}

/* The query string of req->uri (after '?', before '#'), or an empty span. */
static inline span request_query(const knock_request *req)
{
        const char *q = req->uri ? strchr(req->uri, '?') : NULL;
        if (!q)
                return (span){"", 0};
        q++;
        return (span){q, strcspn(q, "#")};
}

/* ---- the per-request context --------------------------------------------------------------- */

typedef struct sig {
        unsigned char b[MAX_SIG_BYTES];
        size_t n;
        knock_key_kind kind;
} sig;

typedef struct vctx {
        const knock_verify_config *cfg;
        const knock_request *req;
        knock_verify_result *res;
        const scheme *s;
        int64_t tolerance_ms;
        /* JSON pointers this request reads, resolved together in one pass */
        const char *jptr[JSON_MAX_PTRS];
        json_span jval[JSON_MAX_PTRS];
        bool jhave[JSON_MAX_PTRS];
        size_t n_jptr;
        bool json_scanned;
        /* the form body, parsed once (twilio) */
        form form;
        int form_state; /* 0 not parsed, 1 parsed, -1 not a form */
        sig sigs[MAX_SIGS];
        size_t n_sigs;
} vctx;

/* Writes the reason for an expected outcome; returns code. */
_printf_(3, 4) static inline int fail(vctx *c, int code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->res->reason, sizeof(c->res->reason), fmt, ap);
        va_end(ap);
        return code;
}

/* ---- verify-meta.c --------------------------------------------------------------------------- */

/* Registers every JSON value the request may read (metadata, the body timestamp, a
 * handshake), so the first lookup resolves them all in one scan. */
void meta_want(vctx *c);
/* Fills the result's dedupe id and event type (rule 8: before verification); a missing
 * or unreadable source leaves them NULL. 0 or -ENOMEM. */
int meta_extract(vctx *c);
/* After a request verified: a Slack or Discord handshake in its body goes into the result. */
int meta_handshake(vctx *c);
/* Meta's subscription check, a GET: authentic when hub.verify_token is the verify_token
 * option; then the challenge is the handshake's answer. 0, a KNOCK_VERIFY_E_*, -ENOMEM. */
int verify_meta_get(vctx *c);
/* The raw text of the body's JSON value at ptr (RFC 6901): true with *ret, or false. */
bool body_lookup(vctx *c, const char *ptr, span *ret);
/* The body as form parameters, parsed once per request: 1 with the list, 0 when the body
 * is not a form, or -ENOMEM. The list stays the request's (it may be reordered). */
int body_form(vctx *c, form_param **ret, size_t *ret_n);
