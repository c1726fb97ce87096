/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * verify — one implementation of every provider's signature scheme
 * (../shared/spec/providers.md), used by knock-ingress and knockctl alike.
 *
 * Promises:
 *  - verification runs over the raw body bytes exactly as received;
 *  - MACs are compared in constant time (CRYPTO_memcmp) after a length check;
 *  - header names are matched case-insensitively; a signature header present
 *    twice is malformed unless the scheme defines a list;
 *  - timestamps are strict base-10 integers; tolerance is checked against
 *    the request's receive time (req->now_ms, injectable in tests);
 *  - every configured secret is tried against every signature (rotation);
 *  - metadata (dedupe id, event type) is extracted before verification, so a
 *    rejected delivery still records what it claimed to be;
 *  - handshakes (Slack url_verification, Discord PING, Meta GET challenge)
 *    are reported in the result only after the request verified.
 *
 * The result is KNOCK_VERIFY_OK (0), a positive KNOCK_VERIFY_E_* (an expected
 * outcome: the request is not authentic; result->reason says why in a few
 * words, never containing a secret or a signature), or a negative errno.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"

typedef enum knock_provider {
        KNOCK_PROVIDER_INVALID = -1,
        KNOCK_PROVIDER_NONE = 0,
        KNOCK_PROVIDER_STRIPE,
        KNOCK_PROVIDER_GITHUB,
        KNOCK_PROVIDER_STANDARD,
        KNOCK_PROVIDER_SHOPIFY,
        KNOCK_PROVIDER_SLACK,
        KNOCK_PROVIDER_HMAC,
        KNOCK_PROVIDER_TOKEN,
        KNOCK_PROVIDER_BASIC,
        KNOCK_PROVIDER_BEARER,
        /* issue 8 */
        KNOCK_PROVIDER_TWILIO,
        KNOCK_PROVIDER_PADDLE,
        KNOCK_PROVIDER_LINEAR,
        KNOCK_PROVIDER_POSTMARK,
        KNOCK_PROVIDER_RESEND,
        KNOCK_PROVIDER_CLERK,
        KNOCK_PROVIDER_LEMONSQUEEZY,
        KNOCK_PROVIDER_META,
        KNOCK_PROVIDER_INTERCOM,
        KNOCK_PROVIDER_ZENDESK,
        KNOCK_PROVIDER_HUBSPOT,
        KNOCK_PROVIDER_SENDGRID,
        KNOCK_PROVIDER_DISCORD,
        KNOCK_PROVIDER_GITLAB,
        _KNOCK_PROVIDER_MAX,
} knock_provider;

typedef enum knock_encoding {
        KNOCK_ENC_HEX = 0,
        KNOCK_ENC_BASE64,
} knock_encoding;

typedef struct knock_verify_config {
        knock_provider provider;
        knock_secret *secrets; /* as written in the config/credential, less one trailing \n */
        size_t n_secrets;
        int64_t tolerance_ms;  /* -1: the provider's default; INT64_MAX: no check */
        bool allow_unverified; /* required for provider=none */

        /* provider options (§6); NULL/defaults when unset */
        char *url;              /* twilio, hubspot: the exact public URL */
        char *header;           /* hmac, token: signature/token header */
        char *prefix;           /* hmac: e.g. "sha256=" */
        knock_hmac_alg algorithm;
        knock_encoding encoding;
        char *timestamp_header; /* hmac: optional */
        char *dedupe;           /* "header:NAME" | "json:/pointer" | NULL (provider default) */
        char *type;             /* "header:NAME" | "json:/pointer" | NULL (provider default) */
        char *verify_token;     /* meta: hub.verify_token */
} knock_verify_config;

typedef struct knock_header {
        const char *name;
        const char *value;
} knock_header;

typedef struct knock_request {
        const char *method;       /* "POST", "GET" */
        const char *uri;          /* path and query as received: "/hook?x=1" */
        const knock_header *headers;
        size_t n_headers;
        const unsigned char *body;
        size_t body_len;
        int64_t now_ms;           /* receive time */
} knock_request;

enum {
        KNOCK_VERIFY_OK = 0,
        KNOCK_VERIFY_E_MISSING = 1,   /* signature/timestamp header missing */
        KNOCK_VERIFY_E_MALFORMED,     /* header present but unparseable or duplicated */
        KNOCK_VERIFY_E_MISMATCH,      /* no secret matches any signature */
        KNOCK_VERIFY_E_EXPIRED,       /* timestamp too old */
        KNOCK_VERIFY_E_FUTURE,        /* timestamp too far ahead */
        KNOCK_VERIFY_E_UNVERIFIED,    /* provider none without allow_unverified */
};

typedef struct knock_verify_result {
        char *provider_event_id; /* dedupe id, or NULL; malloc'd */
        char *event_type;        /* or NULL; malloc'd */
        char reason[128];        /* why it failed, "" on success */

        /* Handshake: when handshake is true the ingress answers with exactly
         * this response, stores the delivery, and creates no event. */
        bool handshake;
        int handshake_status;
        char *handshake_content_type; /* malloc'd */
        char *handshake_body;         /* malloc'd */
} knock_verify_result;

/* Runs the provider's scheme. Fills *result (caller clears it with verify_result_clear). */
int verify_request(const knock_verify_config *cfg, const knock_request *req,
                   knock_verify_result *result);
void verify_result_clear(knock_verify_result *r);

/* "stripe" → KNOCK_PROVIDER_STRIPE; KNOCK_PROVIDER_INVALID when unknown. */
knock_provider provider_from_string(const char *s);
const char *provider_to_string(knock_provider p);

/* Turns one configured secret text into key bytes by the provider's rule
 * (keys.h: standard/svix/resend/clerk: base64 of the text after "whsec_",
 * or an Ed25519 public key after "whpk_"; discord: hex Ed25519 public key;
 * sendgrid: PEM or base64 DER public key; everything else, stripe included:
 * the bytes as written). -EINVAL when the text does not fit the rule. The
 * caller wipes and frees ret->data (verify_config_clear does). */
int verify_secret_from_text(knock_provider p, const char *text, knock_secret *ret);
void verify_config_clear(knock_verify_config *c);
/* Case-insensitive header lookup. Returns the number of occurrences; *ret the first. */
size_t request_header(const knock_request *req, const char *name, const char **ret);

