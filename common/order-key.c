/* SPDX-License-Identifier: MIT */
/*
 * order-key — see order-key.h. The same readers the ingress uses for dedupe
 * and type (jsonscan, form), so a key means what an operator already knows
 * from those keys.
 */
#include "order-key.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "jsonscan.h"
#include "util.h"

int order_key_extract(const char *source, const void *body, size_t len, char **ret)
{
        *ret = NULL;
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
                                size_t n = strlen(f.p[i].value);

                                if (n > 0 && n <= ORDER_KEY_MAX && !(*ret = strdup(f.p[i].value)))
                                        r = -ENOMEM;
                                break;
                        }
                form_free(&f);
                return r;
        }
        return 0;
}
