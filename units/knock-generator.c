/* SPDX-License-Identifier: MIT */

/*
 * knock-generator — systemd.generator(7) that makes the endpoint files the
 * single source of truth for the ingress listeners and credentials.
 *
 * Promises:
 *  - for every KNOCK_CONFIG_DIR/endpoints/NAME.conf (default /etc/knock) with
 *    a valid NAME, it writes into the normal generator directory (argv[1]):
 *      knock-ingress@NAME.socket.d/50-knock-listen.conf        (`listen =`)
 *      knock-ingress-admin@NAME.socket.d/50-knock-listen.conf  (`admin =`)
 *    each resetting ListenStream= and setting the configured address;
 *  - for every `secret = credential:ID` ([endpoint] and [hook]) it adds
 *    LoadCredential=ID to knock@NAME.service and the endpoint's ingress,
 *    worker and deliverer services (each loads the whole configuration), and
 *    the credentials of all endpoints to knock-{prune,backup,retention}.service
 *    (they run with --all). systemd looks ID up in /etc/credstore,
 *    /run/credstore and /usr/lib/credstore;
 *  - for an endpoint with `store = postgresql:...` (its database may be on
 *    another host), it lifts the network fences that assume a local file:
 *    IPAddressDeny= on knock-ingress@NAME.service, and PrivateNetwork=no,
 *    IPAddressDeny= and INET families on knock-failed@NAME.service and
 *    knock-{prune,backup,retention}.service (the last three once any
 *    endpoint is on PostgreSQL). A unix-socket server needs none of it, but
 *    the generator does not parse the conninfo;
 *  - knock.conf gives defaults key by key; an endpoint file's `secret` keys
 *    of a section replace knock.conf's, as in config_load();
 *  - parsing is deliberately minimal (inih, two keys and the secrets): at
 *    early boot nothing else is needed, and a value the generator cannot use
 *    safely (not an absolute path or host:port, or with characters that would
 *    change the meaning of a unit file) is skipped with a message, leaving the
 *    unit's default; `knockctl check-config`, which knock@NAME runs first,
 *    reports the full diagnosis;
 *  - it never blocks the boot: problems with one endpoint are logged to
 *    stderr (the kernel log at boot) and the others are still generated. The
 *    exit status is non-zero only when a drop-in could not be written.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#define MAX_CREDS 64

typedef struct endpoint_conf {
        char *listen;
        char *admin;
        /* credential IDs from `secret = credential:ID`, per section; set_* tells
         * whether this file had any secret key in that section (replacement). */
        char *creds_endpoint[MAX_CREDS];
        size_t n_creds_endpoint;
        bool set_endpoint;
        char *creds_hook[MAX_CREDS];
        size_t n_creds_hook;
        bool set_hook;
        bool store_pg; /* store = postgresql:... */
        const char *file;
} endpoint_conf;

static const char *arg_dest = NULL;

static void logf_(const char *fmt, ...) _printf_(1, 2);
static void logf_(const char *fmt, ...)
{
        va_list ap;

        fputs("knock-generator: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static void creds_clear(char **v, size_t *n)
{
        for (size_t i = 0; i < *n; i++)
                free(v[i]);
        *n = 0;
}

static void endpoint_conf_clear(endpoint_conf *c)
{
        free(c->listen);
        free(c->admin);
        creds_clear(c->creds_endpoint, &c->n_creds_endpoint);
        creds_clear(c->creds_hook, &c->n_creds_hook);
        *c = (endpoint_conf) {};
}

/* inih strips ';' comments only; the documented style also allows "  # ...". */
static char *value_dup(const char *value)
{
        char *v, *p;
        size_t n;

        v = strdup(value);
        if (!v)
                return NULL;
        for (p = v; *p; p++)
                if ((*p == '#' || *p == ';') && p > v && (p[-1] == ' ' || p[-1] == '\t')) {
                        *p = 0;
                        break;
                }
        n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                v[--n] = 0;
        return v;
}

/* A credential ID becomes part of a unit file and a file name: keep it plain. */
static bool credential_id_valid(const char *id)
{
        size_t n = strlen(id);

        if (n < 1 || n > 255 || id[0] == '.')
                return false;
        return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/*
 * An address for ListenStream=: an absolute unix-socket path or host:port
 * (IPv6 as [addr]:port). No whitespace, quotes, backslashes or '%'
 * (specifiers), so the value cannot be read as anything else by systemd.
 */
static bool listen_value_valid(const char *v)
{
        const char *colon;
        size_t n = strlen(v);

        if (n < 1 || n > 107)
                return false;
        for (const char *p = v; *p; p++)
                if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f ||
                    strchr("%\\\"'$`;#", *p))
                        return false;
        if (v[0] == '/')
                return true;
        colon = strrchr(v, ':');
        if (!colon || colon == v || colon[1] == 0)
                return false;
        return strspn(colon + 1, "0123456789") == strlen(colon + 1);
}

static int add_cred(char **v, size_t *n, const char *id)
{
        for (size_t i = 0; i < *n; i++)
                if (streq(v[i], id))
                        return 0;
        if (*n >= MAX_CREDS)
                return -E2BIG;
        v[*n] = strdup(id);
        if (!v[*n])
                return -ENOMEM;
        (*n)++;
        return 0;
}

static int on_ini_key(void *user, const char *section, const char *name, const char *value)
{
        endpoint_conf *c = user;
        _cleanup_free_ char *v = NULL;
        int r;

        v = value_dup(value);
        if (!v)
                return 0;

        if (streq(section, "endpoint") && (streq(name, "listen") || streq(name, "admin"))) {
                char **slot = streq(name, "listen") ? &c->listen : &c->admin;

                free(*slot);
                *slot = TAKE_PTR(v);
                return 1;
        }

        if (streq(section, "endpoint") && streq(name, "store")) {
                c->store_pg = startswith(v, "postgresql:");
                return 1;
        }

        if (streq(name, "secret") && (streq(section, "endpoint") || streq(section, "hook"))) {
                bool is_hook = streq(section, "hook");
                bool *set = is_hook ? &c->set_hook : &c->set_endpoint;
                char **creds = is_hook ? c->creds_hook : c->creds_endpoint;
                size_t *n = is_hook ? &c->n_creds_hook : &c->n_creds_endpoint;

                /* The first secret of a file replaces the defaults' secrets. */
                if (!*set) {
                        creds_clear(creds, n);
                        *set = true;
                }
                if (!startswith(v, "credential:"))
                        return 1;
                if (!credential_id_valid(v + strlen("credential:"))) {
                        logf_("%s: [%s] secret: unusable credential name, ignored", c->file,
                              section);
                        return 1;
                }
                r = add_cred(creds, n, v + strlen("credential:"));
                if (r < 0)
                        logf_("%s: [%s] secret: %s", c->file, section, strerror(-r));
        }
        return 1;
}

/* Parses FILE on top of *c. A missing file is not an error (knock.conf is optional). */
static int parse_file(const char *path, endpoint_conf *c)
{
        bool set_endpoint = c->set_endpoint, set_hook = c->set_hook;
        int r;

        c->file = path;
        c->set_endpoint = c->set_hook = false;
        r = ini_parse(path, on_ini_key, c);
        c->set_endpoint = c->set_endpoint || set_endpoint;
        c->set_hook = c->set_hook || set_hook;
        if (r == -1)
                return errno == ENOENT ? 0 : -errno;
        if (r != 0)
                /* Syntax errors are check-config's to report; keep what was read. */
                logf_("%s:%d: syntax error, rest of the line ignored", path, r);
        return 0;
}

static int copy_conf(endpoint_conf *dst, const endpoint_conf *src)
{
        *dst = (endpoint_conf) {.store_pg = src->store_pg};
        if ((src->listen && !(dst->listen = strdup(src->listen))) ||
            (src->admin && !(dst->admin = strdup(src->admin))))
                return -ENOMEM;
        for (size_t i = 0; i < src->n_creds_endpoint; i++)
                if (add_cred(dst->creds_endpoint, &dst->n_creds_endpoint,
                             src->creds_endpoint[i]) < 0)
                        return -ENOMEM;
        for (size_t i = 0; i < src->n_creds_hook; i++)
                if (add_cred(dst->creds_hook, &dst->n_creds_hook, src->creds_hook[i]) < 0)
                        return -ENOMEM;
        return 0;
}

/* Writes DEST/UNIT.d/50-knock-SUFFIX.conf with BODY. */
static int write_dropin(const char *unit, const char *suffix, const char *source,
                        const char *body)
{
        _cleanup_free_ char *dir = NULL, *path = NULL;
        FILE *f;
        int r = 0;

        if (asprintf(&dir, "%s/%s.d", arg_dest, unit) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        if (asprintf(&path, "%s/50-knock-%s.conf", dir, suffix) < 0)
                return -ENOMEM;
        f = fopen(path, "we");
        if (!f)
                return -errno;
        fprintf(f, "# Automatically generated by knock-generator from %s\n\n%s", source, body);
        if (fflush(f) != 0 || ferror(f))
                r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        return r;
}

static int write_listen(const char *name, const char *unit_prefix, const char *key,
                        const char *value, const char *source)
{
        _cleanup_free_ char *unit = NULL, *body = NULL;

        if (!value)
                return 0; /* the unit's default address stays */
        if (!listen_value_valid(value)) {
                logf_("%s: %s = %s: not an absolute path or host:port, unit default kept",
                      source, key, value);
                return 0;
        }
        if (asprintf(&unit, "%s@%s.socket", unit_prefix, name) < 0 ||
            asprintf(&body, "[Socket]\nListenStream=\nListenStream=%s\n%s", value,
                     value[0] == '/' ? "" : "FreeBind=yes\n") < 0)
                return -ENOMEM;
        return write_dropin(unit, "listen", source, body);
}

/* Appends "LoadCredential=ID" lines for V to *buf (starting "[Service]"), once per ID. */
static int append_creds(char **buf, char *const *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *line = NULL;
                char *s;

                /* Every line follows a newline, so this matches whole lines only. */
                if (asprintf(&line, "\nLoadCredential=%s\n", v[i]) < 0)
                        return -ENOMEM;
                if (*buf && strstr(*buf, line))
                        continue;
                if (asprintf(&s, "%s%s", *buf ? *buf : "[Service]", line + (*buf ? 1 : 0)) < 0)
                        return -ENOMEM;
                free(*buf);
                *buf = s;
        }
        return 0;
}

/* What a store on another host needs of the units that open it. */
#define NETWORK_INGRESS                                                                            \
        "[Service]\n# store = postgresql: its server may be on another host\nIPAddressDeny=\n"
#define NETWORK_SANDBOXED                                                                          \
        "[Service]\n# store = postgresql: its server may be on another host\nPrivateNetwork=no\n"  \
        "IPAddressDeny=\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"

static int generate_endpoint(const char *name, const endpoint_conf *defaults, char **all_creds,
                             bool *any_pg)
{
        static const char *const services[] = { "knock", "knock-ingress", "knock-worker",
                                                "knock-deliver" };
        _cleanup_free_ char *path = NULL, *creds = NULL;
        endpoint_conf c;
        int r;

        if (asprintf(&path, "%s/endpoints/%s.conf", knock_config_dir(), name) < 0)
                return -ENOMEM;
        r = copy_conf(&c, defaults);
        if (r >= 0)
                r = parse_file(path, &c);
        if (r < 0) {
                endpoint_conf_clear(&c);
                logf_("%s: %s", path, strerror(-r));
                return 0;
        }

        r = write_listen(name, "knock-ingress", "listen", c.listen, path);
        if (r >= 0)
                r = write_listen(name, "knock-ingress-admin", "admin", c.admin, path);
        if (r >= 0 && c.store_pg) {
                _cleanup_free_ char *ingress = NULL, *failed = NULL;

                *any_pg = true;
                if (asprintf(&ingress, "knock-ingress@%s.service", name) < 0 ||
                    asprintf(&failed, "knock-failed@%s.service", name) < 0)
                        r = -ENOMEM;
                if (r >= 0)
                        r = write_dropin(ingress, "network", path, NETWORK_INGRESS);
                if (r >= 0)
                        r = write_dropin(failed, "network", path, NETWORK_SANDBOXED);
        }
        if (r >= 0)
                r = append_creds(&creds, c.creds_endpoint, c.n_creds_endpoint);
        if (r >= 0)
                r = append_creds(&creds, c.creds_hook, c.n_creds_hook);
        for (size_t i = 0; r >= 0 && creds && i < ELEMENTSOF(services); i++) {
                _cleanup_free_ char *unit = NULL;

                if (asprintf(&unit, "%s@%s.service", services[i], name) < 0)
                        r = -ENOMEM;
                else
                        r = write_dropin(unit, "credentials", path, creds);
        }
        if (r >= 0)
                r = append_creds(all_creds, c.creds_endpoint, c.n_creds_endpoint);
        if (r >= 0)
                r = append_creds(all_creds, c.creds_hook, c.n_creds_hook);
        endpoint_conf_clear(&c);
        if (r < 0)
                logf_("endpoint %s: cannot write drop-ins: %s", name, strerror(-r));
        return r;
}

static int run(void)
{
        static const char *const maint[] = { "knock-prune.service", "knock-backup.service",
                                             "knock-retention.service" };
        _cleanup_free_ char *global = NULL, *dir = NULL, *all_creds = NULL;
        endpoint_conf defaults = {};
        struct dirent **names = NULL;
        bool any_pg = false;
        int n, r, ret = 0;

        if (asprintf(&global, "%s/knock.conf", knock_config_dir()) < 0 ||
            asprintf(&dir, "%s/endpoints", knock_config_dir()) < 0)
                return -ENOMEM;
        r = parse_file(global, &defaults);
        if (r < 0)
                logf_("%s: %s, ignored", global, strerror(-r));

        n = scandir(dir, &names, NULL, alphasort);
        if (n < 0) {
                endpoint_conf_clear(&defaults);
                return errno == ENOENT ? 0 : -errno;
        }
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *name = NULL;
                size_t len = strlen(names[i]->d_name);

                if (len > 5 && streq(names[i]->d_name + len - 5, ".conf")) {
                        name = strndup(names[i]->d_name, len - 5);
                        if (!name)
                                ret = -ENOMEM;
                        else if (!endpoint_name_valid(name))
                                logf_("%s/%s: not a valid endpoint name, ignored", dir,
                                      names[i]->d_name);
                        else if ((r = generate_endpoint(name, &defaults, &all_creds, &any_pg)) < 0)
                                ret = r;
                }
                free(names[i]);
        }
        free(names);
        endpoint_conf_clear(&defaults);

        for (size_t i = 0; any_pg && i < ELEMENTSOF(maint); i++) {
                r = write_dropin(maint[i], "network", dir, NETWORK_SANDBOXED);
                if (r < 0) {
                        logf_("%s: cannot write drop-in: %s", maint[i], strerror(-r));
                        ret = r;
                }
        }
        for (size_t i = 0; all_creds && i < ELEMENTSOF(maint); i++) {
                r = write_dropin(maint[i], "credentials", dir, all_creds);
                if (r < 0) {
                        logf_("%s: cannot write drop-in: %s", maint[i], strerror(-r));
                        ret = r;
                }
        }
        return ret;
}

int main(int argc, char *argv[])
{
        if (argc > 1 && argc != 4) {
                logf_("expected three arguments (normal, early, late directories)");
                return EXIT_FAILURE;
        }
        /* systemd passes the three directories; with none (manual runs) use /tmp. */
        arg_dest = argc > 1 ? argv[1] : "/tmp";
        umask(0022);
        return run() < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
