/* SPDX-License-Identifier: MIT */
/*
 * pause — see pause.h. The table is tiny (one row per pause) and read once
 * per claim transaction, so an endpoint with nothing paused pays one
 * indexless SELECT on an empty table per claim, and its claims stay the
 * unfiltered statements they were.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pause.h"

/* The endpoint's own pause is the row whose route is ''. */
static const char *route_key(const char *route)
{
        return route ? route : "";
}

int pause_set(knock_store *s, const char *route, int64_t now, const char *by, const char *reason,
        bool *ret_changed)
{
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "INSERT INTO pauses (route, kind, since, paused_by, reason) "
                "VALUES (?1, 'operator', ?2, ?3, ?4) ON CONFLICT (route) DO NOTHING",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, route_key(route));
        stmt_bind_i64(st, 2, now);
        stmt_bind_text(st, 3, by);
        stmt_bind_text(st, 4, reason);
        r = stmt_run(st);
        if (r >= 0 && ret_changed)
                *ret_changed = store_changes(s) > 0;
        return r;
}

int pause_clear(knock_store *s, const char *route, bool *ret_changed)
{
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        r = store_cached(s, "DELETE FROM pauses WHERE route = ?1", &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, route_key(route));
        r = stmt_run(st);
        if (r >= 0 && ret_changed)
                *ret_changed = store_changes(s) > 0;
        return r;
}

void pause_list_free(knock_pause *v, size_t n)
{
        for (size_t i = 0; v && i < n; i++) {
                free(v[i].route);
                free(v[i].kind);
                free(v[i].paused_by);
                free(v[i].reason);
        }
        free(v);
}

int pause_list(knock_store *s, knock_pause **ret, size_t *ret_n)
{
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        knock_pause *v = NULL;
        size_t n = 0;
        int r;

        r = store_cached(s,
                "SELECT NULLIF(route, ''), kind, since, paused_by, reason FROM pauses "
                "ORDER BY route",
                &st);
        if (r < 0)
                return r;
        while ((r = stmt_step(st)) > 0) {
                knock_pause *nv = realloc(v, (n + 1) * sizeof(*v));

                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                v[n] = (knock_pause){
                        .route = stmt_strdup(st, 0),
                        .kind = stmt_strdup(st, 1),
                        .since = sqlite3_column_int64(st, 2),
                        .paused_by = stmt_strdup(st, 3),
                        .reason = stmt_strdup(st, 4),
                };
                n++;
                if (!v[n - 1].kind || !v[n - 1].paused_by) {
                        r = -ENOMEM;
                        break;
                }
        }
        if (r < 0) {
                pause_list_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int pause_claim_filter(knock_store *s, bool *ret_all, char **ret_routes)
{
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        json_t *routes = NULL;
        bool all = false;
        int r;

        r = store_cached(s, "SELECT route FROM pauses", &st);
        if (r < 0)
                return r;
        while ((r = stmt_step(st)) > 0) {
                const char *route = (const char *)sqlite3_column_text(st, 0);

                if (!route || !*route) {
                        all = true;
                        continue;
                }
                if (!routes && !(routes = json_array()))
                        r = -ENOMEM;
                if (r >= 0 && json_array_append_new(routes, json_string(route)) < 0)
                        r = -ENOMEM;
                if (r < 0)
                        break;
        }
        *ret_all = all;
        *ret_routes = NULL;
        if (r >= 0 && routes && !all && !(*ret_routes = json_dumps(routes, JSON_COMPACT)))
                r = -ENOMEM;
        json_decref(routes);
        return r < 0 ? r : 0;
}

void pause_summary(const knock_pause *v, size_t n, char *buf, size_t len)
{
        size_t at = 0, routes = 0;
        char t[64];

        if (len == 0)
                return;
        buf[0] = 0;
        for (size_t i = 0; i < n; i++)
                if (!v[i].route)
                        at = (size_t)snprintf(buf, len, "paused since %s by %s",
                                format_rfc3339(v[i].since, t, sizeof(t)), v[i].paused_by);
        for (size_t i = 0; i < n && at < len; i++) {
                if (!v[i].route)
                        continue;
                at += (size_t)snprintf(buf + at, len - at, "%s%s", routes == 0
                                        ? (at > 0 ? "; routes paused: " : "routes paused: ")
                                        : ", ", v[i].route);
                routes++;
        }
}
