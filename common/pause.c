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
        _cleanup_reset_ db_stmt *st = NULL;
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
        _cleanup_reset_ db_stmt *st = NULL;
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
        _cleanup_reset_ db_stmt *st = NULL;
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
                        .since = stmt_col_i64(st, 2),
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

int pause_claim_filter(knock_store *s, int64_t now, bool *ret_all, char **ret_routes,
        char ***ret_probes, size_t *ret_n_probes)
{
        _cleanup_reset_ db_stmt *st = NULL;
        json_t *routes = NULL;
        bool all = false;
        int r;

        if (ret_probes) {
                *ret_probes = NULL;
                *ret_n_probes = 0;
        }
        r = store_cached(s,
                "SELECT route, kind = 'breaker' AND probing = 0 AND probe_at <= ?1 FROM pauses",
                &st);
        if (r < 0)
                return r;
        stmt_bind_i64(st, 1, now);
        while ((r = stmt_step(st)) > 0) {
                const char *route = stmt_col_text(st, 0);

                if (!route || !*route) {
                        all = true;
                        continue;
                }
                if (ret_probes && stmt_col_int(st, 1)) {
                        char **v = reallocarray(*ret_probes, *ret_n_probes + 1, sizeof(*v));

                        if (!v || !(v[*ret_n_probes] = strdup(route))) {
                                if (v)
                                        *ret_probes = v;
                                r = -ENOMEM;
                                break;
                        }
                        *ret_probes = v;
                        (*ret_n_probes)++;
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

int pause_breaker_probing(knock_store *s, const char *route)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s, "UPDATE pauses SET probing = 1 WHERE route = ?1 AND kind = 'breaker'",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, route);
        return stmt_run(st);
}

int pause_breaker_open(knock_store *s, const char *route, int64_t now, int64_t cooldown_ms,
        uint64_t failures, bool *ret_opened)
{
        _cleanup_reset_ db_stmt *st = NULL;
        char reason[96];
        int r;

        r = store_cached(s,
                "INSERT INTO pauses (route, kind, since, paused_by, reason, probe_at) "
                "VALUES (?1, 'breaker', ?2, 'breaker', ?3, ?4) ON CONFLICT (route) DO NOTHING",
                &st);
        if (r < 0)
                return r;
        snprintf(reason, sizeof(reason), "%llu failed attempts in a row",
                (unsigned long long)failures);
        stmt_bind_text(st, 1, route);
        stmt_bind_i64(st, 2, now);
        stmt_bind_text(st, 3, reason);
        stmt_bind_i64(st, 4, now + cooldown_ms);
        r = stmt_run(st);
        if (r >= 0 && ret_opened)
                *ret_opened = store_changes(s) > 0;
        return r;
}

int pause_breaker_result(knock_store *s, const char *route, bool success, int64_t now,
        int64_t cooldown_ms, int *ret_changed)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                success ? "DELETE FROM pauses WHERE route = ?1 AND kind = 'breaker' AND "
                          "probing = 1"
                        : "UPDATE pauses SET probing = 0, since = ?2, probe_at = ?2 + ?3 "
                          "WHERE route = ?1 AND kind = 'breaker' AND probing = 1",
                &st);
        if (r < 0)
                return r;
        stmt_bind_text(st, 1, route);
        if (!success) {
                stmt_bind_i64(st, 2, now);
                stmt_bind_i64(st, 3, cooldown_ms);
        }
        r = stmt_run(st);
        if (r >= 0 && ret_changed)
                *ret_changed = store_changes(s) > 0 ? (success ? 1 : -1) : 0;
        return r;
}

int pause_next_probe(knock_store *s, int64_t *ret)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s,
                "SELECT min(probe_at) FROM pauses WHERE kind = 'breaker' AND probing = 0", &st);
        if (r < 0)
                return r;
        r = stmt_step(st);
        if (r < 0)
                return r;
        *ret = r > 0 && stmt_col_type(st, 0) != DB_NULL ? stmt_col_i64(st, 0)
                                                                  : INT64_MAX;
        return 0;
}

int pause_breaker_reset_probes(knock_store *s)
{
        _cleanup_reset_ db_stmt *st = NULL;
        int r;

        r = store_cached(s, "UPDATE pauses SET probing = 0 WHERE probing = 1", &st);
        return r < 0 ? r : stmt_run(st);
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
