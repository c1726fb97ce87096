/* SPDX-License-Identifier: MIT */
/*
 * order-key — see order-key.h. The same readers the ingress uses for dedupe
 * and type (jsonscan, form), so a key means what an operator already knows
 * from those keys.
 */
#include "order-key.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "jsonscan.h"
#include "util.h"

bool order_key_from_headers(const char *source)
{
        return source && startswith(source, "header:");
}

/* A value as a key: non-empty and at most ORDER_KEY_MAX bytes, else none. */
static int key_dup(const char *v, char **ret)
{
        size_t n = strlen(v);

        if (n == 0 || n > ORDER_KEY_MAX)
                return 0;
        *ret = strdup(v);
        return *ret ? 0 : -ENOMEM;
}

static int from_headers(const char *name, const char *headers, char **ret)
{
        json_t *a = json_loads(headers, 0, NULL), *pair;
        size_t i;
        int r = 0;

        json_array_foreach(a, i, pair) {
                const char *n = json_string_value(json_array_get(pair, 0));
                const char *v = json_string_value(json_array_get(pair, 1));

                if (n && v && strcaseeq(n, name)) {
                        r = key_dup(v, ret);
                        break;
                }
        }
        json_decref(a);
        return r;
}

int order_key_extract(
        const char *source, const void *body, size_t len, const char *headers, char **ret)
{
        *ret = NULL;
        if (order_key_from_headers(source))
                return headers ? from_headers(source + 7, headers, ret) : 0;
        if (!source || !body)
                return 0;
        if (startswith(source, "json:")) {
                const char *ptr = source + 5;
                json_span v;
                bool have = false;

                if (!json_scan(body, len, &ptr, 1, &v, &have) || !have)
                        return 0;
                return json_scan_text(v, ORDER_KEY_MAX, ret);
        }
        if (startswith(source, "form:")) {
                form f = {};
                int r = 0;

                if (form_parse(body, len, &f) < 0)
                        return 0;
                for (size_t i = 0; i < f.n; i++)
                        if (streq(f.p[i].name, source + 5)) {
                                r = key_dup(f.p[i].value, ret);
                                break;
                        }
                form_free(&f);
                return r;
        }
        return 0;
}
