/* SPDX-License-Identifier: MIT */
/*
 * fuzz-keys — key_from_text() on any secret text: what an operator's secret
 * file or credential holds, decoded by each of the four rules (keys.h), PEM
 * and DER public keys through OpenSSL's decoders included.
 *
 * An input is one selector byte (the rule, modulo 4: raw, standard,
 * ed25519-hex, ec-p256), then the text, cut at its first NUL as config.c
 * hands it over.
 *
 * Beyond what ASan and UBSan catch (and LeakSanitizer: every rejected text
 * frees what it decoded), it aborts when key_from_text() breaks its
 * contract: an errno other than -EINVAL, a key of a kind its rule does not
 * make, a public key without its parsed form or of the wrong size, raw
 * bytes that are not the text, a shared key that cannot sign, a public key
 * that "verifies" a signature of zeros, or a cleared secret that is not
 * zeroed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static _noreturn_ void fail(const char *what)
{
        fprintf(stderr, "fuzz-keys: %s\n", what);
        abort();
}

static void check_shared(const knock_secret *k)
{
        static const key_part msg[] = {{"id", 2}, {".", 1}, {"1700000000", 10}};
        unsigned char mac[KEY_MAC_MAX];
        char sig[128];
        size_t n = 0;

        if (key_hmac(KNOCK_HMAC_SHA256, k->data, k->len, msg, ELEMENTSOF(msg), mac, &n) != 0 ||
                n != 32)
                fail("a shared key does not make an HMAC-SHA256");
        if (standard_sign(
                    k, "id", "1700000000", (const unsigned char *)"{}", 2, sig, sizeof(sig)) != 0 ||
                !startswith(sig, "v1,") || strlen(sig) != 3 + 44)
                fail("a shared key does not sign the Standard Webhooks way");
}

static void check_public(const knock_secret *k)
{
        static const key_part msg[] = {{"ts", 2}, {"body", 4}};
        unsigned char zeros[72] = {};

        if (!k->pkey)
                fail("a public key without its parsed form");
        if (k->kind == KNOCK_KEY_ED25519 && k->len != 32)
                fail("an Ed25519 key of another size");
        if (key_verify_signature(k, msg, ELEMENTSOF(msg), zeros,
                    k->kind == KNOCK_KEY_ED25519 ? 64 : sizeof(zeros)) != 0)
                fail("a signature of zeros verifies (or fails with an errno)");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
        _cleanup_free_ char *text = NULL;
        key_text_rule rule;
        knock_secret k = {};
        int r;

        if (size < 1)
                return -1;
        rule = (key_text_rule)(data[0] % 4);
        text = strndup((const char *)data + 1, size - 1);
        if (!text)
                abort();

        r = key_from_text(rule, text, &k);
        if (r == -EINVAL) {
                if (k.data || k.pkey)
                        fail("a rejected text left key material behind");
                return 0;
        }
        if (r != 0)
                fail("an errno other than -EINVAL");

        switch (rule) {
        case KEY_TEXT_RAW:
                if (k.kind != KNOCK_KEY_SHARED || k.len != strlen(text) ||
                        memcmp(k.data, text, k.len) != 0)
                        fail("raw key bytes are not the text as written");
                break;
        case KEY_TEXT_STANDARD:
                if (k.kind == KNOCK_KEY_ED25519 && !startswith(text, "whpk_"))
                        fail("a Standard Webhooks public key without whpk_");
                if (k.kind != KNOCK_KEY_SHARED && k.kind != KNOCK_KEY_ED25519)
                        fail("a Standard Webhooks key of another kind");
                break;
        case KEY_TEXT_ED25519_HEX:
                if (k.kind != KNOCK_KEY_ED25519)
                        fail("a hex Ed25519 key of another kind");
                break;
        case KEY_TEXT_EC_P256:
                if (k.kind != KNOCK_KEY_ECDSA_P256)
                        fail("an EC P-256 key of another kind");
                break;
        }
        if (k.kind == KNOCK_KEY_SHARED) {
                if (k.len == 0 || k.pkey)
                        fail("an empty shared key, or one with a parsed public key");
                check_shared(&k);
        } else
                check_public(&k);

        verify_secret_clear(&k);
        if (k.data || k.len || k.pkey || k.kind)
                fail("a cleared secret is not zeroed");
        return 0;
}
