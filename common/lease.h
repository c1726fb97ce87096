/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * lease — what the worker (events) and the deliverer (hooks) share about
 * claims held as leases: a row is held by claimed_by = its holder's identity
 * until claim_until, and a holder that is provably gone need not be waited
 * for.
 *
 * Identities: "ROLE:PID" on SQLite, where every holder runs on the one host
 * that has the file; "ROLE:PID@HOST" on PostgreSQL, where several hosts
 * share the endpoint (HOST: knock_host(), util.h). A PID means something
 * only on its own host: another host's PID may be free here, or belong to
 * anything, even to a knock-ROLE of ours.
 *
 * Promises:
 *  - lease_holder_gone() says "gone" only when it is certain: the holder's
 *    name is the asking role's identity on this host (ROLE:PID when host is
 *    NULL, ROLE:PID@HOST when host is this host) and that PID is not a live
 *    knock-ROLE (process_alive(): our own PID, a PID that does not exist, or
 *    one running something else). A holder of another role or of another
 *    host, a name with a host on SQLite or without one on PostgreSQL, a
 *    malformed name, or a PID whose command cannot be read is never gone:
 *    its lease runs out on its own;
 *  - lease_take_over_gone() expires, at once, the claims of every gone
 *    holder through the caller's table functions (events.h, hooks.h), so a
 *    restart after kill -9 resumes at once instead of after a whole lease.
 *    Another host's dead holder is taken over when its lease runs out.
 *
 * Never logs: lease_take_over_gone() reports each expiry to a callback.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* "deliver:" + a PID + "@" + a host name, and the NUL. */
#define LEASE_IDENTITY_MAX (24 + KNOCK_HOST_MAX)

/* The host part of the identities in s's claims: NULL on SQLite, knock_host() on
 * PostgreSQL. */
const char *lease_host(const knock_store *s);
/* This process's identity as a holder in role (buf: LEASE_IDENTITY_MAX bytes). */
void lease_identity(const char *role, const char *host, char buf[static LEASE_IDENTITY_MAX]);

bool lease_holder_gone(const char *holder, const char *role, const char *host);

/* The claim holders of a table (strings the caller frees), and expiring one
 * holder's claims at now (how many in *ret_n). */
typedef int (*lease_holders_fn)(knock_store *s, char ***ret, size_t *ret_n);
typedef int (*lease_expire_fn)(knock_store *s, const char *holder, int64_t now, size_t *ret_n);
/* One gone holder: r < 0 when expiring failed, else n claims were expired. */
typedef void (*lease_report_fn)(const char *holder, int r, size_t n, void *userdata);

/* Returns 0, or the negative errno of listing the holders (nothing expired).
 * host: lease_host() of s. */
int lease_take_over_gone(knock_store *s, const char *role, const char *host,
                         lease_holders_fn holders, lease_expire_fn expire, int64_t now,
                         lease_report_fn report, void *userdata);
