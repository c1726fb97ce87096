/* SPDX-License-Identifier: MIT */
/*
 * keys — secrets into key bytes, HMACs, public-key checks, Standard Webhooks
 * signing (the contract is in keys.h).
 *
 * What a secret's text is follows one of four rules; verify's provider table
 * names the rule of each provider, so keys knows no provider. OpenSSL is
 * reached only through this file and verify.c (which compares MACs and
 * digests the twilio body): the HMAC implementation is fetched once per
 * process, its contexts kept per thread (hmac_ctx), and public keys parsed
 * once, when the secret is read.
 */
#include "keys.h"

#include <ctype.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>

#include "util.h"

_Static_assert(KEY_MAC_MAX >= EVP_MAX_MD_SIZE, "KEY_MAC_MAX holds every digest");

/* ---- HMAC and public-key signatures ------------------------------------------------------- */

static const char *hmac_digest_name(knock_hmac_alg alg)
{
        return alg == KNOCK_HMAC_SHA512 ? "SHA512" : alg == KNOCK_HMAC_SHA1 ? "SHA1" : "SHA256";
}

/* The HMAC implementation is fetched once. Each thread keeps one context per digest,
 * made on first use: setting the digest (a fetch by name) costs more than an HMAC of a
 * small body, and EVP_MAC_init with a new key and no parameters reuses it. So
 * verify_request() stays safe to call from several threads. */
#define HMAC_ALGS (KNOCK_HMAC_SHA1 + 1)

static EVP_MAC *hmac_impl;
static pthread_key_t hmac_key;
static bool hmac_key_ok;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_ctxs_free(void *p)
{
        EVP_MAC_CTX **ctxs = p;

        for (size_t i = 0; i < HMAC_ALGS; i++)
                EVP_MAC_CTX_free(ctxs[i]);
        free(ctxs);
}

static void hmac_fetch(void)
{
        hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
        hmac_key_ok = pthread_key_create(&hmac_key, hmac_ctxs_free) == 0;
}

/* This thread's context for alg, its digest set; NULL when out of memory. */
static EVP_MAC_CTX *hmac_ctx(knock_hmac_alg alg)
{
        EVP_MAC_CTX **ctxs;
        OSSL_PARAM params[2];

        pthread_once(&hmac_once, hmac_fetch);
        if (!hmac_impl || !hmac_key_ok || (unsigned)alg >= HMAC_ALGS)
                return NULL;
        ctxs = pthread_getspecific(hmac_key);
        if (!ctxs) {
                ctxs = calloc(HMAC_ALGS, sizeof(*ctxs));
                if (!ctxs || pthread_setspecific(hmac_key, ctxs) != 0) {
                        free(ctxs);
                        return NULL;
                }
        }
        if (!ctxs[alg]) {
                EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_impl);

                params[0] = OSSL_PARAM_construct_utf8_string(
                        OSSL_MAC_PARAM_DIGEST, (char *)hmac_digest_name(alg), 0);
                params[1] = OSSL_PARAM_construct_end();
                if (!ctx || EVP_MAC_CTX_set_params(ctx, params) != 1) {
                        EVP_MAC_CTX_free(ctx);
                        return NULL;
                }
                ctxs[alg] = ctx;
        }
        return ctxs[alg];
}

/* Without building the concatenation. */
int key_hmac(knock_hmac_alg alg, const unsigned char *key, size_t key_len, const key_part *parts,
        size_t n_parts, unsigned char out[static KEY_MAC_MAX], size_t *ret_len)
{
        EVP_MAC_CTX *ctx = hmac_ctx(alg);

        if (!ctx)
                return hmac_impl ? -ENOMEM : -ENOSYS;
        /* A zero-length key still (re)keys: OpenSSL takes NULL as "keep the old key". */
        if (EVP_MAC_init(ctx, key_len ? key : (const unsigned char *)"", key_len, NULL) != 1)
                return -EIO;
        for (size_t i = 0; i < n_parts; i++)
                if (parts[i].n > 0 &&
                        EVP_MAC_update(ctx, (const unsigned char *)parts[i].p, parts[i].n) != 1)
                        return -EIO;
        if (EVP_MAC_final(ctx, out, ret_len, KEY_MAC_MAX) != 1)
                return -EIO;
        return 0;
}

static EVP_PKEY *parse_pkey(knock_key_kind kind, const unsigned char *data, size_t len)
{
        if (kind == KNOCK_KEY_ED25519)
                return len == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, data, len)
                                 : NULL;
        return d2i_PUBKEY(NULL, &data, (long)len);
}

/* Ed25519 signs the whole message (no streaming), so the parts are joined here; ECDSA
 * P-256 is over SHA-256 of the same bytes. */
int key_verify_signature(const knock_secret *key, const key_part *parts, size_t n_parts,
        const unsigned char *sig, size_t sig_len)
{
        _cleanup_free_ unsigned char *msg = NULL;
        EVP_PKEY *pkey = NULL;
        EVP_MD_CTX *md = NULL;
        size_t len = 0, o = 0;
        int r;

        for (size_t i = 0; i < n_parts; i++)
                len += parts[i].n;
        msg = malloc(len + 1);
        if (!msg)
                return -ENOMEM;
        for (size_t i = 0; i < n_parts; i++) {
                if (parts[i].n > 0)
                        memcpy(msg + o, parts[i].p, parts[i].n);
                o += parts[i].n;
        }

        if (key->kind == KNOCK_KEY_ED25519 && sig_len != 64)
                return 0;
        /* Parsed once by key_from_text (the OpenSSL 3 decoders cost more than the
         * verification itself); a hand-built secret is parsed here. */
        if (key->pkey) {
                pkey = key->pkey;
                if (EVP_PKEY_up_ref(pkey) != 1)
                        return -ENOMEM;
        } else
                pkey = parse_pkey(key->kind, key->data, key->len);
        if (!pkey)
                return 0;
        md = EVP_MD_CTX_new();
        if (!md) {
                EVP_PKEY_free(pkey);
                return -ENOMEM;
        }
        r = EVP_DigestVerifyInit(md, NULL, key->kind == KNOCK_KEY_ED25519 ? NULL : EVP_sha256(),
                    NULL, pkey) == 1 &&
            EVP_DigestVerify(md, sig, sig_len, msg, len) == 1;
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pkey);
        return r;
}

/* ---- secrets ------------------------------------------------------------------------------ */

void verify_secret_clear(knock_secret *s)
{
        if (!s)
                return;
        EVP_PKEY_free(s->pkey);
        if (s->data) {
                OPENSSL_cleanse(s->data, s->len);
                free(s->data);
        }
        *s = (knock_secret){};
}

/* base64 text into a fresh buffer; whitespace (PEM-style line breaks) is skipped. */
static int b64_to_bytes(const char *text, unsigned char **ret, size_t *ret_len)
{
        _cleanup_free_ char *clean = malloc(strlen(text) + 1);
        _cleanup_free_ unsigned char *out = NULL;
        size_t n = 0, on = 0;
        int r = 0;

        if (!clean)
                return -ENOMEM;
        for (const char *p = text; *p; p++)
                if (!isspace((unsigned char)*p))
                        clean[n++] = *p;
        if (n == 0)
                return -EINVAL;
        out = malloc(n);
        if (!out)
                r = -ENOMEM;
        else if (base64_decode(clean, n, out, n, &on) < 0 || on == 0) {
                OPENSSL_cleanse(out, n);
                r = -EINVAL;
        }
        OPENSSL_cleanse(clean, n); /* the secret's text, as written */
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        *ret_len = on;
        return 0;
}

/* SendGrid shows its key as base64 DER; a PEM file is accepted too. The key must be an
 * EC P-256 key; it is kept as DER SubjectPublicKeyInfo. */
static int ec_p256_key(const char *text, knock_secret *ret)
{
        _cleanup_free_ unsigned char *der = NULL;
        EVP_PKEY *pkey = NULL;
        size_t n = 0;
        char group[32] = "";
        int r;

        if (strstr(text, "-----BEGIN")) {
                BIO *bio = BIO_new_mem_buf(text, -1);
                unsigned char *p = NULL;
                int len;

                if (!bio)
                        return -ENOMEM;
                pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
                BIO_free(bio);
                if (!pkey)
                        return -EINVAL;
                len = i2d_PUBKEY(pkey, &p);
                if (len <= 0) {
                        EVP_PKEY_free(pkey);
                        return -EINVAL;
                }
                der = malloc((size_t)len);
                if (der)
                        memcpy(der, p, (size_t)len);
                OPENSSL_free(p);
                n = (size_t)len;
                if (!der) {
                        EVP_PKEY_free(pkey);
                        return -ENOMEM;
                }
        } else {
                const unsigned char *p;

                r = b64_to_bytes(text, &der, &n);
                if (r < 0)
                        return r;
                p = der;
                pkey = d2i_PUBKEY(NULL, &p, (long)n);
                if (!pkey || p != der + n) {
                        EVP_PKEY_free(pkey);
                        return -EINVAL;
                }
        }
        r = EVP_PKEY_is_a(pkey, "EC") &&
            EVP_PKEY_get_utf8_string_param(
                    pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) == 1 &&
            streq(group, "prime256v1");
        EVP_PKEY_free(pkey);
        if (!r)
                return -EINVAL;
        ret->data = TAKE_PTR(der);
        ret->len = n;
        ret->kind = KNOCK_KEY_ECDSA_P256;
        return 0;
}

static int bytes_from_text(key_text_rule rule, const char *text, knock_secret *ret)
{
        unsigned char *data = NULL;
        size_t n = 0;
        int r;

        if (!text || !*text || !ret)
                return -EINVAL;
        switch (rule) {
        case KEY_TEXT_STANDARD:
                /* Rule 6: the key is the base64 decoding of what follows "whsec_" (the
                 * prefix is optional, as in the reference libraries); "whpk_" is an
                 * Ed25519 public key for v1a signatures. */
                if (startswith(text, "whpk_")) {
                        r = b64_to_bytes(text + 5, &data, &n);
                        if (r < 0)
                                return r;
                        if (n != 32) {
                                free(data);
                                return -EINVAL;
                        }
                        *ret = (knock_secret){data, n, KNOCK_KEY_ED25519};
                        return 0;
                }
                r = b64_to_bytes(startswith(text, "whsec_") ? text + 6 : text, &data, &n);
                if (r < 0)
                        return r;
                *ret = (knock_secret){data, n, KNOCK_KEY_SHARED};
                return 0;
        case KEY_TEXT_ED25519_HEX:
                data = malloc(32);
                if (!data)
                        return -ENOMEM;
                if (hex_decode(text, strlen(text), data, 32, &n) < 0 || n != 32) {
                        free(data);
                        return -EINVAL;
                }
                *ret = (knock_secret){data, n, KNOCK_KEY_ED25519};
                return 0;
        case KEY_TEXT_EC_P256:
                return ec_p256_key(text, ret);
        case KEY_TEXT_RAW:
                n = strlen(text);
                data = malloc(n);
                if (!data)
                        return -ENOMEM;
                memcpy(data, text, n);
                *ret = (knock_secret){data, n, KNOCK_KEY_SHARED};
                return 0;
        default:
                return -EINVAL;
        }
}

int key_from_text(key_text_rule rule, const char *text, knock_secret *ret)
{
        knock_secret k = {};
        int r;

        if (!ret)
                return -EINVAL;
        r = bytes_from_text(rule, text, &k);
        if (r < 0)
                return r;
        if (k.kind != KNOCK_KEY_SHARED) {
                k.pkey = parse_pkey(k.kind, k.data, k.len);
                if (!k.pkey) {
                        verify_secret_clear(&k);
                        return -EINVAL;
                }
        }
        *ret = k;
        return 0;
}

int standard_sign(const knock_secret *key, const char *id, const char *ts,
        const unsigned char *body, size_t len, char *out, size_t out_len)
{
        unsigned char mac[KEY_MAC_MAX];
        size_t mac_len = 0;
        key_part parts[5] = {
                {id, strlen(id)},
                {".", 1},
                {ts, strlen(ts)},
                {".", 1},
                {(const char *)body, len},
        };
        int r;

        if (!key || !key->data || key->kind != KNOCK_KEY_SHARED)
                return -EINVAL;
        if (out_len < 3 + 4 * ((32 + 2) / 3) + 1)
                return -ENOBUFS;
        r = key_hmac(KNOCK_HMAC_SHA256, key->data, key->len, parts, 5, mac, &mac_len);
        if (r < 0)
                return r;
        memcpy(out, "v1,", 3);
        base64_encode(mac, mac_len, out + 3);
        OPENSSL_cleanse(mac, sizeof(mac));
        return 0;
}
