/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * lease — what the worker (events) and the deliverer (hooks) share about
 * claims held as leases: a row is held by claimed_by = "ROLE:PID" until
 * claim_until, and a holder that is provably gone need not be waited for.
 *
 * Promises:
 *  - lease_holder_gone() says "gone" only when it is certain: the holder's
 *    name is ROLE:PID for the asking role and that PID is not a live
 *    knock-ROLE (process_alive(): our own PID, a PID that does not exist, or
 *    one running something else). A holder of another role, a malformed
 *    name, or a PID whose command cannot be read is never gone: its lease
 *    runs out on its own;
 *  - lease_take_over_gone() expires, at once, the claims of every gone
 *    holder through the caller's table functions (events.h, hooks.h), so a
 *    restart after kill -9 resumes at once instead of after a whole lease.
 *
 * Never logs: lease_take_over_gone() reports each expiry to a callback.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

bool lease_holder_gone(const char *holder, const char *role);

/* The claim holders of a table (strings the caller frees), and expiring one
 * holder's claims at now (how many in *ret_n). */
typedef int (*lease_holders_fn)(knock_store *s, char ***ret, size_t *ret_n);
typedef int (*lease_expire_fn)(knock_store *s, const char *holder, int64_t now, size_t *ret_n);
/* One gone holder: r < 0 when expiring failed, else n claims were expired. */
typedef void (*lease_report_fn)(const char *holder, int r, size_t n, void *userdata);

/* Returns 0, or the negative errno of listing the holders (nothing expired). */
int lease_take_over_gone(knock_store *s, const char *role, lease_holders_fn holders,
                         lease_expire_fn expire, int64_t now, lease_report_fn report,
                         void *userdata);
