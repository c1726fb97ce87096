/* SPDX-License-Identifier: MIT */
/*
 * knock-deliver NAME — sends the completion hooks of endpoint NAME
 * (contract §8, §11, §12; knock-deliver(8)).
 *
 * One event loop, shaped like the worker's: pump.c records the attempts
 * that ended and claims due hooks in one transaction, and starts each
 * claimed hook's attempt (send.c: a signed POST over the shared HTTP(S)
 * client); common/hooks.c holds the hooks table's statements, schedule.c
 * the pure retry decisions.
 *
 * Leases: a claim holds a hook for [hook] timeout plus a margin and needs
 * no renewal. After kill -9 the lease runs out and the hook is taken again,
 * with the lost attempt recorded (common/hooks.c); at start, leases held by a
 * deliverer of this host that is provably gone are expired at once, so a
 * restart resumes immediately (another host's, on a shared PostgreSQL
 * endpoint, run out: lease.h; their clock is the server's: store.h). Hooks
 * can thus be sent twice around a crash (same webhook-id, receivers
 * deduplicate), never marked delivered without a 2xx, and never sent again
 * once delivered.
 *
 * The story: the skeleton (common/daemon/) parses NAME, loads the config
 * and opens the store; here the [hook] URL and secrets are loaded, TLS and
 * the resolver set up, the pump's events made, a previous life's claims
 * taken over, and the first pump comes right after READY=1.
 *
 * Stop: SIGTERM stops claiming; attempts on the wire get until the stop
 * deadline (KNOCK_STOP_TIMEOUT, default 10 s, below TimeoutStopSec=), then
 * they are cancelled and their claims released without counting an attempt.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"
#include "lease.h"

#define STOP_TIMEOUT_DEFAULT_MS 10000

static knock_daemon daemon_;
static deliverer deliverer_;

static const char usage[] =
        "Usage: knock-deliver [OPTIONS] NAME\n"
        "\n"
        "Sends the completion hooks of endpoint NAME, with retries.\n"
        "\n"
        "  -h --help      Show this help\n"
        "  -V --version   Show the version\n"
        "\n"
        "See knock-deliver(8).\n";

/* ---- daemon ops ---------------------------------------------------------------------- */

static void op_stop(knock_daemon *d)
{
        deliverer *dl = d->userdata;

        dl->stopping = true;
        daemon_stop_work(d, dl->ev_wake, dl->ev_due, dl->n_running);
        listener_stop(&dl->listener);
        event_active(dl->ev_pump, EV_TIMEOUT, 0);
}

/* The stop deadline passed: the attempts still on the wire are cancelled. */
static size_t op_interrupt(knock_daemon *d)
{
        return pump_cancel_all(d->userdata);
}

static void op_status(knock_daemon *d, char *buf, size_t len)
{
        deliverer *dl = d->userdata;
        int64_t pending = 0, due = 0;

        if (hooks_pending(d->store, store_now_ms(d->store), &pending, &due) < 0) {
                snprintf(buf, len, "%zu hooks in flight; queue unknown", dl->n_running);
                return;
        }
        snprintf(buf, len,
                 "%s%zu hooks in flight; %lld pending (%lld due); delivered %llu, retried %llu, "
                 "failed %llu since start",
                 dl->stopping ? "stopping: " : "", dl->n_running, (long long)pending,
                 (long long)due, (unsigned long long)dl->n_delivered,
                 (unsigned long long)dl->n_retried, (unsigned long long)dl->n_failed);
}

static char *op_counters(knock_daemon *d)
{
        deliverer *dl = d->userdata;
        char *s;

        if (asprintf(&s,
                     "{\"in_flight\":%zu,\"claimed\":%llu,\"delivered\":%llu,\"retried\":%llu,"
                     "\"failed\":%llu,\"released\":%llu,\"lost\":%llu}",
                     dl->n_running, (unsigned long long)dl->n_claimed,
                     (unsigned long long)dl->n_delivered, (unsigned long long)dl->n_retried,
                     (unsigned long long)dl->n_failed, (unsigned long long)dl->n_released,
                     (unsigned long long)dl->n_lost) < 0)
                return NULL;
        return s;
}

static void keys_free(knock_secret *keys, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (keys[i].data) {
                        explicit_bzero(keys[i].data, keys[i].len);
                        free(keys[i].data);
                }
        }
        free(keys);
}

/* [hook] url and secrets into a target and key bytes. */
static int load_hook_config(const knock_config *cfg, http_target *ret_target,
                            knock_secret **ret_keys, size_t *ret_n)
{
        http_target t = {};
        knock_secret *keys = NULL;
        int r;

        if (cfg->hook_url && cfg->hook_url[0]) {
                r = http_target_parse(cfg->hook_url, &t);
                if (r < 0)
                        return log_error_errno(r, "[hook] url is not a usable http(s) URL");
        }
        keys = calloc(cfg->n_hook_secrets + 1, sizeof(*keys));
        if (!keys) {
                http_target_clear(&t);
                return log_error_errno(-ENOMEM, "Out of memory");
        }
        for (size_t i = 0; i < cfg->n_hook_secrets; i++) {
                r = verify_secret_from_text(KNOCK_PROVIDER_STANDARD, cfg->hook_secrets[i],
                                            &keys[i]);
                if (r < 0) {
                        keys_free(keys, cfg->n_hook_secrets);
                        http_target_clear(&t);
                        return log_error_errno(r, "[hook] secret %zu is not a Standard Webhooks "
                                                  "secret (whsec_...)",
                                               i + 1);
                }
        }
        *ret_target = t;
        *ret_keys = keys;
        *ret_n = cfg->n_hook_secrets;
        return 0;
}

static int op_reload(knock_daemon *d, knock_config *new_cfg)
{
        deliverer *dl = d->userdata;
        http_target t;
        knock_secret *keys;
        size_t n;
        int r;

        r = load_hook_config(new_cfg, &t, &keys, &n);
        if (r < 0)
                return r;
        /* Attempts on the wire keep their signed request; new ones use the
         * new target (pooled connections are keyed by URL). */
        http_target_clear(&dl->target);
        keys_free(dl->keys, dl->n_keys);
        dl->target = t;
        dl->keys = keys;
        dl->n_keys = n;
        dl->warned_no_url = false;
        event_active(dl->ev_pump, EV_TIMEOUT, 0);
        return 0;
}

static const knock_daemon_ops deliver_ops = {
        .status = op_status,
        .counters = op_counters,
        .stop = op_stop,
        .interrupt = op_interrupt,
        .work = "hook attempts",
        .cut = "cancelling",
        .stop_timeout_ms = STOP_TIMEOUT_DEFAULT_MS,
        .reload = op_reload,
};

/* ---- start --------------------------------------------------------------------------- */

static void report_taken_over(const char *holder, int r, size_t n, void *userdata)
{
        if (r < 0)
                log_warning_errno(r, "Cannot expire hook claims of %s: %m", holder);
        else if (n > 0)
                log_notice("%zu hooks were held by %s, which is gone; they are sent again now", n,
                           holder);
}

static void take_over_dead_holders(deliverer *dl)
{
        int r;

        r = lease_take_over_gone(dl->d->store, "deliver", lease_host(dl->d->store), hooks_holders,
                                 hooks_expire, store_now_ms(dl->d->store), report_taken_over, dl);
        if (r < 0)
                log_warning_errno(r, "Cannot list hook claim holders: %m");
}

static uint64_t min_slow_ms(void)
{
        const char *e = getenv("KNOCK_HOOK_MIN_BACKOFF_MS");
        uint64_t v;

        /* For tests only: production waits the contract's 60 s. */
        if (e && parse_u64_strict(e, &v) >= 0)
                return v;
        return HOOK_MIN_SLOW_DOWN_MS;
}

/*
 * The resolver: names are resolved without blocking the loop; numeric hosts
 * and /etc/hosts entries need no server. libevent's own reading of
 * /etc/resolv.conf (EVDNS_BASE_INITIALIZE_NAMESERVERS) gives up when the
 * file is missing or lists no nameserver (an empty file: containers, hosts
 * with only a local resolver), although it has then already done what glibc
 * does: ask 127.0.0.1. So the file is read here and those two outcomes are
 * normal (debug); only a file that cannot be read falls back to the blocking
 * resolver, with a warning.
 */
static struct evdns_base *resolver_new(struct event_base *base)
{
        struct evdns_base *dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        int r;

        if (!dns) {
                log_warning("Cannot set up the asynchronous resolver; using the system's "
                            "blocking one");
                return NULL;
        }
        /* 0: read; 1: no such file; 6: no nameserver in it (libevent's codes). */
        r = evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
        if (r == 1 || r == 6)
                log_debug("/etc/resolv.conf %s; names are resolved by 127.0.0.1, as glibc does",
                          r == 1 ? "is missing" : "lists no nameserver");
        else if (r != 0) {
                log_warning("Cannot read /etc/resolv.conf (libevent error %d); using the "
                            "system's blocking resolver",
                            r);
                evdns_base_free(dns, 0);
                return NULL;
        }
        return dns;
}

static int deliverer_setup(deliverer *dl, knock_daemon *d)
{
        int r;

        dl->d = d;
        d->userdata = dl;
        dl->wake_fd = -1;
        dl->retry_rl = (log_ratelimit)LOG_RATELIMIT_INIT(10, 20);
        lease_identity("deliver", lease_host(d->store), dl->identity);
        dl->min_slow_ms = min_slow_ms();

        r = load_hook_config(d->cfg, &dl->target, &dl->keys, &dl->n_keys);
        if (r < 0)
                return r;
        r = http_tls_context(getenv("KNOCK_HOOK_CA_FILE"), &dl->pool.ssl_ctx);
        if (r < 0)
                return log_error_errno(r, "Cannot set up TLS (trust store, KNOCK_HOOK_CA_FILE=%s)",
                                       getenv("KNOCK_HOOK_CA_FILE") ?: "");

        dl->dns = resolver_new(d->base);
        /* Response headers are bounded: a hostile receiver cannot grow our memory. */
        http_pool_init(&dl->pool, d->base, dl->dns, 64 * 1024);

        r = pump_events_new(dl);
        if (r < 0)
                return r;

        take_over_dead_holders(dl);
        /* First look at the queue right after READY=1. */
        event_active(dl->ev_pump, EV_TIMEOUT, 0);
        return 0;
}

static void deliverer_free(deliverer *dl)
{
        pump_free_sends(dl);
        http_pool_clear(&dl->pool);
        if (dl->dns) {
                evdns_base_free(dl->dns, 0);
                dl->dns = NULL;
        }
        pump_events_free(dl);
        http_target_clear(&dl->target);
        keys_free(dl->keys, dl->n_keys);
        dl->keys = NULL;
}

int main(int argc, char **argv)
{
        int r;

        r = daemon_setup(&daemon_, "deliver", usage, argc, argv, &deliver_ops, 0);
        if (r > 0)
                return EXIT_SUCCESS;
        if (r < 0) {
                daemon_finish(&daemon_, false);
                return EXIT_FAILURE;
        }

        r = deliverer_setup(&deliverer_, &daemon_);
        if (r >= 0)
                r = daemon_run(&daemon_);
        if (deliverer_.d) {
                pump_finish_remaining(&deliverer_);
                deliverer_free(&deliverer_);
        }
        daemon_finish(&daemon_, r >= 0);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
