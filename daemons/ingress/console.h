/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * console — the web console on the ingress's admin listener (knock-ingress(8),
 * CONSOLE): a dashboard, the events with filters, one event's trace, the
 * rejected deliveries, the hooks, the audit trail, a live view and the
 * probe. Read-only: every page names the knockctl command that acts on what
 * it shows, and nothing here writes to the database.
 *
 * Who may look. A unix-socket admin listener serves it to whoever can open
 * the socket (group knock; over SSH, a tunnel to the socket), for a Host
 * that is this machine's (localhost, a loopback address or a single-label
 * name), so a web page that rebinds its own name to the tunnel's port gets
 * nothing. A TCP admin listener serves it only when console_token is set,
 * to a request bearing one (Authorization: Bearer, or the cookie the login
 * form sets, an HMAC of the token), compared in constant time; without
 * console_token a TCP listener serves only /healthz, /readyz and /metrics.
 *
 * Where the work happens. The loop checks access, parses the request,
 * copies what the page needs (the configuration may be replaced by a
 * reload), runs the probe's verification (the ingress's own, as cheap as a
 * webhook's), and queues a job. The console's thread, with its own
 * read-only connection, runs the bounded queries (console-query.h, at most
 * CONSOLE_QUERY_MS each) and renders the HTML; the loop sends it. The live
 * view is Server-Sent Events: while a browser watches, the thread polls
 * the database twice a second for what is new, and the loop writes each
 * batch to every watcher whose unsent output is under LIVE_CLIENT_BUFFER;
 * a slower one misses batches (and is told how many), one that reads
 * nothing for LIVE_WRITE_TIMEOUT_S is closed. So a page costs the loop a
 * copy, and a slow browser costs it nothing.
 *
 * Every value that came from a client or the database is escaped
 * (ESCAPE_HTML); pages carry a Content-Security-Policy without inline
 * script or style, and the one script (the live view) and the style sheet
 * are files in $KNOCK_CONSOLE_DIR (default /usr/share/knock/console).
 */

#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>

#include "admin.h"

int console_new(admin *a, struct event_base *base, console **ret);
/* Stops the thread, ends the live streams, answers what was queued; NULL. */
console *console_free(console *c);
/* Serves req when path is one of the console's and this listener serves the
 * console; false to let the caller answer (404). */
bool console_handle(console *c, struct evhttp_request *req, const char *path);
