/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * sockets — the ingress's two listeners (knock-ingress(8), SOCKETS).
 *
 * Promises:
 *  - socket activation by name (style.md "one daemon skeleton"): the fd
 *    named "public" (or a single unnamed one) serves webhooks through
 *    conn.c, the one named "admin" serves /healthz, /readyz and /metrics
 *    through evhttp; an fd of any other name is closed, with a warning;
 *  - without an activated public socket, cfg->listen is bound ("host:port",
 *    "[v6]:port", or an absolute path for a unix socket, mode 0666);
 *    without an activated admin socket, cfg->admin is bound the same way
 *    (a unix socket gets mode 0660: the knock group, knockctl and
 *    scrapers). What it binds is non-blocking and close-on-exec;
 *  - the public listener is required, the admin one is not: failing to
 *    bind it is a warning, never a reason not to receive webhooks.
 */

#include <event2/http.h>

#include "config.h"
#include "conn.h"

/* Returns 0, or a negative errno (logged) when there is no public listener. */
int sockets_open(conn_server *srv, struct evhttp *admin_http, const knock_config *cfg);
