/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * store-pg-internal — what the files of the PostgreSQL engine share, and
 * nothing else includes: store-pg.c (sessions, errors, kpg_exec, open and
 * close), store-pg-migrate.c (the schema and its migrations) and
 * store-pg-stmt.c (statements: SQLite's parameters, bindings, steps,
 * columns). store-pg.h has the promises.
 */

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "store-pg.h"

struct kpg_conn {
        PGconn *pg;
        char *schema;
        unsigned flags;      /* store.h's STORE_* */
        uint64_t generation; /* +1 at every reconnection */
        uint64_t next_name;  /* named statements: never reused in a session */
        int64_t changes;
        bool txn_lost;         /* the session died inside a transaction */
        bool session_ready;    /* session_setup() ran on this session */
        char lock_timeout[32]; /* the session's, restored inside migrations */
        bool lock_timeout_set; /* by kpg_lock_timeout(): kept over reconnections */
        char **dealloc;        /* named statements to DEALLOCATE when idle */
        size_t n_dealloc;
        kpg_stmt *stmts; /* open statements, detached by kpg_close() */
        char *listen_topic; /* kpg_listen(): LISTEN again in every new session */
        bool listening;     /* this session runs LISTEN */
        char errmsg[512];
};

/* store-pg.c */
void kpg_set_error(kpg_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool kpg_connection_ok(kpg_conn *c);
/* The errno of a statement's result (before: the transaction status before
 * it ran), recording its changes and its error. */
int kpg_result_errno(kpg_conn *c, PGresult *res, PGTransactionStatusType before);
/* Runs sql (no parameters) on the session as it is, no reconnection; the
 * result is handed out on success when ret is not NULL. */
int kpg_run(kpg_conn *c, const char *sql, PGresult **ret);
/* Before a statement: connected (reconnecting once, never inside a
 * transaction), the session set up, finalized statements deallocated. */
int kpg_ready(kpg_conn *c);
/* Deallocates the server-side statement name, now or once idle. */
void kpg_dealloc(kpg_conn *c, const char *name);

/* store-pg-migrate.c */
/* Creates the schema if missing and runs the migrations it lacks. */
int kpg_migrate(kpg_conn *c);

/* store-pg-stmt.c */
/* kpg_close(): the connection's statements stay, without it. */
void kpg_detach_statements(kpg_conn *c);
