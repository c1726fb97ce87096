/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * copy — the rows of `knockctl copy-to-postgresql` (copy-rows.c): every
 * table of an SQLite endpoint into its PostgreSQL schema, and the check
 * that what PostgreSQL committed is what was sent. copy.c is the verb.
 *
 * Library-like: returns 0 or a negative errno, and says what failed in
 * the copy_state's message (copy_message()); prints nothing.
 */

#include <jansson.h>
#include <stdint.h>

#include "store.h"

typedef struct copy_state copy_state;

/* A copy from src (SQLite) into dst (PostgreSQL, schema current). */
int copy_new(knock_store *src, knock_store *dst, copy_state **ret);
copy_state *copy_free(copy_state *x);
void copy_freep(copy_state **x);

/* What the last failing call said ("" when none). */
const char *copy_message(copy_state *x);

/*
 * Inside the target's transaction, before anything is copied: locks every
 * table the copy writes against other writers (-EBUSY after the store's
 * busy timeout), then 0 when the target holds none of the endpoint's
 * events, deliveries, attempts, hooks and hook attempts, or -ENOTEMPTY
 * with *ret_table and *ret_rows naming the first table that holds some.
 */
int copy_target_empty(copy_state *x, const char **ret_table, int64_t *ret_rows);

/* Copies every table, inside the caller's transactions: a read snapshot on
 * src, one write transaction on dst. */
int copy_rows(copy_state *x);

/* After the target's COMMIT: reads every copied row back, in the order it
 * was sent, and compares row counts and SHA-256 digests of the values.
 * own_audit_rows: the audit rows the caller appended after copy_rows().
 * 0 when everything matches, -EBADMSG (copy_message() says where) when not. */
int copy_verify(copy_state *x, int64_t own_audit_rows);

/* {"events": N, ...}: rows copied per table, in copy order. */
json_t *copy_counts_json(copy_state *x);
/* {"meta": N, "pauses": N}: rows the target had, kept as they were. */
json_t *copy_kept_json(copy_state *x);
/* {"attempts.output": N, ...}: text values stored with U+FFFD; {} when none. */
json_t *copy_repaired_json(copy_state *x);
