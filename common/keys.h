/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * keys — the key material of the signature schemes: a configured secret's
 * text turned into key bytes by one of four rules (verify's provider table
 * says which rule a provider's secrets follow), HMACs over a message
 * given in parts, public-key signature checks (Ed25519, ECDSA P-256), and
 * Standard Webhooks signing (knock-deliver's hooks).
 *
 * Promises:
 *  - a secret's text is decoded once, when it is read; a public key is
 *    parsed then too (the OpenSSL 3 decoders cost more than a verification)
 *    and is shared read-only by every request afterwards;
 *  - text that does not fit the provider's rule is -EINVAL, never a key of
 *    another kind: a discord key is 32 hex-decoded bytes, a sendgrid key an
 *    EC P-256 public key, a "whpk_" key 32 bytes;
 *  - secret bytes (a shared key, and the text it was decoded from) are
 *    wiped (OPENSSL_cleanse) wherever they are dropped, error paths
 *    included; a MAC written for a caller is the caller's to wipe;
 *  - nothing here compares a MAC (verify.c does, in constant time, after a
 *    length check); key_verify_signature() says only whether one signature
 *    verifies;
 *  - safe to call from several threads: each thread keeps its own HMAC
 *    contexts, made on first use.
 *
 * Functions return 0 (or 1/0 for a yes/no) or a negative errno; they never
 * log.
 */

#include <stdbool.h>
#include <stddef.h>

typedef enum knock_hmac_alg {
        KNOCK_HMAC_SHA256 = 0,
        KNOCK_HMAC_SHA512,
        KNOCK_HMAC_SHA1,
} knock_hmac_alg;

/* What a secret's bytes are. Zero (HMAC) is the default, so a secret built
 * by hand as {data, len} is a shared secret used as written. */
typedef enum knock_key_kind {
        KNOCK_KEY_SHARED = 0, /* HMAC key, token, "user:pass" */
        KNOCK_KEY_ED25519,    /* 32-byte raw public key (discord, standard "whpk_") */
        KNOCK_KEY_ECDSA_P256, /* DER SubjectPublicKeyInfo (sendgrid) */
} knock_key_kind;

typedef struct knock_secret {
        unsigned char *data; /* the key bytes (already decoded where the scheme says so) */
        size_t len;
        knock_key_kind kind;
        void *pkey; /* public keys: the parsed EVP_PKEY, owned (freed by
                     * verify_config_clear); NULL means parse per request */
} knock_secret;

/* One piece of a signed message: the message is the pieces in order, never
 * joined by the caller. */
typedef struct key_part {
        const char *p;
        size_t n;
} key_part;

/* The largest MAC key_hmac() writes (SHA-512). */
#define KEY_MAC_MAX 64

/* HMAC of the parts joined, into out; *ret_len its length. */
int key_hmac(knock_hmac_alg alg, const unsigned char *key, size_t key_len, const key_part *parts,
        size_t n_parts, unsigned char out[static KEY_MAC_MAX], size_t *ret_len);

/* Whether sig is key's signature over the parts joined (Ed25519; ECDSA P-256
 * over SHA-256, DER). 1 yes, 0 no (a key that does not parse included), or a
 * negative errno. */
int key_verify_signature(const knock_secret *key, const key_part *parts, size_t n_parts,
        const unsigned char *sig, size_t sig_len);

/* How a secret's text becomes key bytes. */
typedef enum key_text_rule {
        KEY_TEXT_RAW = 0,     /* the bytes as written (stripe's "whsec_…" included) */
        KEY_TEXT_STANDARD,    /* Standard Webhooks: base64 after an optional "whsec_", or
                               * an Ed25519 public key as base64 after "whpk_" */
        KEY_TEXT_ED25519_HEX, /* a 32-byte Ed25519 public key in hex (discord) */
        KEY_TEXT_EC_P256,     /* an EC P-256 public key, PEM or base64 DER (sendgrid) */
} key_text_rule;

/* One configured secret text into key bytes by rule; a public key is parsed
 * (ret->pkey) as well. -EINVAL when the text does not fit the rule. The
 * caller clears ret with verify_secret_clear(). */
int key_from_text(key_text_rule rule, const char *text, knock_secret *ret);
/* Wipes and frees one secret's bytes and parsed key; leaves *s zeroed. */
void verify_secret_clear(knock_secret *s);

/* Standard Webhooks signing, also used by knock-deliver for hooks:
 * writes "v1,<base64>" for id.ts.body into out (≥ 64 bytes). */
int standard_sign(const knock_secret *key, const char *id, const char *ts,
        const unsigned char *body, size_t len, char *out, size_t out_len);
