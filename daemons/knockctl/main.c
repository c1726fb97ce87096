/* SPDX-License-Identifier: MIT */
/*
 * knockctl — main: global options, endpoint resolution, verb dispatch.
 *
 * Promises:
 *  - `knockctl [-e NAME] [--json] VERB [ARGS]`; -e may be left out when
 *    exactly one endpoint is configured; --json may also follow the verb;
 *  - exit 0 on success, 1 on failure (unknown id, rejected transition,
 *    configuration errors, storage errors), 2 on a usage error;
 *  - read verbs open the database read-only and never create it; only
 *    `migrate` creates or upgrades a database;
 *  - run by root, every verb but check-config first becomes the owner and
 *    group of the state directory (user knock), so whatever it writes there
 *    (the database and its -wal/-shm, backups, a restored copy) belongs to
 *    the daemons with their modes, and root never writes into a directory
 *    another user can change;
 *  - verbs live in the "knockctl_verbs" linker section (KNOCKCTL_VERB), so
 *    the dispatch table is whatever files were linked in.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "knock-build.h"
#include "knockctl.h"

#define OPT_VERSION 0x1100

/* Bounds of the verb section, provided by the linker. */
extern const knockctl_verb *const __start_knockctl_verbs[];
extern const knockctl_verb *const __stop_knockctl_verbs[];

static const char *const section_titles[_SECTION_MAX] = {
        [SECTION_READ] = "Inspect",
        [SECTION_OPERATE] = "Operate on events",
        [SECTION_HOOKS] = "Completion hooks",
        [SECTION_MAINTENANCE] = "Maintenance",
};

static const knockctl_verb *verb_find(const char *name)
{
        for (const knockctl_verb *const *v = __start_knockctl_verbs; v < __stop_knockctl_verbs; v++)
                if (streq((*v)->name, name))
                        return *v;
        return NULL;
}

static int verb_cmp(const void *a, const void *b)
{
        const knockctl_verb *x = *(const knockctl_verb *const *)a;
        const knockctl_verb *y = *(const knockctl_verb *const *)b;

        if (x->section != y->section)
                return (int)x->section - (int)y->section;
        return strcmp(x->name, y->name);
}

static void help(FILE *f)
{
        size_t n = (size_t)(__stop_knockctl_verbs - __start_knockctl_verbs);
        _cleanup_free_ const knockctl_verb **v = calloc(n ? n : 1, sizeof(*v));

        fprintf(f, "Usage: knockctl [-e NAME] [--json] COMMAND [ARGS...]\n"
                   "\n"
                   "Inspect and operate a knock endpoint's database.\n"
                   "\n"
                   "Options:\n"
                   "  -e, --endpoint=NAME  the endpoint (optional when only one is configured)\n"
                   "      --json           print one JSON document\n"
                   "  -l, --wide, --full   never truncate a table cell\n"
                   "      --no-pager       accepted; knockctl never pages its output\n"
                   "  -h, --help           show this help\n"
                   "      --version        show the version\n");
        if (!v)
                return;
        memcpy(v, __start_knockctl_verbs, n * sizeof(*v));
        qsort(v, n, sizeof(*v), verb_cmp);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *syn = NULL;

                if (i == 0 || v[i]->section != v[i - 1]->section)
                        fprintf(f, "\n%s:\n", section_titles[v[i]->section]);
                if (asprintf(&syn, "%s%s%s", v[i]->name, *v[i]->synopsis ? " " : "",
                            v[i]->synopsis) < 0) {
                        syn = NULL;
                        continue;
                }
                if (strlen(syn) <= 38)
                        fprintf(f, "  %-38s  %s\n", syn, v[i]->help);
                else
                        fprintf(f, "  %s\n  %-38s  %s\n", syn, "", v[i]->help);
        }
        fprintf(f, "\nExit status: 0 success, 1 failure, 2 usage error. See knockctl(1).\n");
}

int verb_getopt(
        knockctl *c, int argc, char **argv, const char *shortopts, const struct option *options)
{
        struct option all[48];
        char so[32];
        size_t n = 0;
        int o;

        for (; options && options[n].name && n < ELEMENTSOF(all) - 7; n++)
                all[n] = options[n];
        n += verb_common_options(all + n);
        snprintf(so, sizeof(so), "hl%s", shortopts);

        for (;;) {
                o = getopt_long(argc, argv, so, all, NULL);
                if (verb_common_option(o))
                        continue;
                if (o == VERB_OPT_JSON) {
                        c->json = true;
                        continue;
                }
                if (o == VERB_OPT_HELP || o == 'h') {
                        const knockctl_verb *v = verb_find(argv[0]);

                        printf("Usage: knockctl [-e NAME] [--json] %s %s\n\n%s\n", argv[0],
                                v ? v->synopsis : "", v ? v->help : "");
                        return KNOCKCTL_HELPED;
                }
                if (o == '?' || o == ':')
                        return KNOCKCTL_USAGE;
                return o;
        }
}

int ctl_open_store(knockctl *c, bool write)
{
        _cleanup_free_ char *path = NULL;
        struct stat stb;
        int r;

        if (c->store)
                return 0;
        path = ctl_store_location(c);
        if (!path)
                return -ENOMEM;
        if (!store_location_is_postgresql(path) && stat(path, &stb) < 0) {
                if (errno == ENOENT) {
                        ctl_error("no database for endpoint %s at %s (has knock-ingress run?)",
                                c->endpoint, path);
                        return KNOCKCTL_FAILED;
                }
                ctl_error("%s: %s", path, strerror(errno));
                return KNOCKCTL_FAILED;
        }
        r = store_open(path, write ? 0 : STORE_READONLY, &c->store);
        if (r == -ENOMEDIUM && store_location_is_postgresql(path)) {
                _cleanup_free_ char *where = store_location_describe(path);

                ctl_error("no database for endpoint %s in %s, or one older than this knockctl "
                          "(schema version %d) (has knock-ingress run? 'knockctl -e %s migrate' "
                          "creates or upgrades it)",
                        c->endpoint, where ?: path, STORE_SCHEMA_VERSION, c->endpoint);
                return KNOCKCTL_FAILED;
        }
        if (r == -ENOMEDIUM) {
                ctl_error("%s: the database schema is older than this knockctl (version %d); "
                          "run 'knockctl -e %s migrate'",
                        path, STORE_SCHEMA_VERSION, c->endpoint);
                return KNOCKCTL_FAILED;
        }
        if (r == -EPROTO) {
                ctl_error("%s: the database is newer than this knockctl (schema version %d)", path,
                        STORE_SCHEMA_VERSION);
                return KNOCKCTL_FAILED;
        }
        if (r < 0) {
                ctl_error("%s: cannot open the database: %s", path, strerror(-r));
                return KNOCKCTL_FAILED;
        }
        return 0;
}

char *ctl_store_location(knockctl *c)
{
        const knock_config *cfg = ctl_config(c);

        return cfg ? config_store_location(cfg) : config_db_path(c->endpoint);
}

const knock_config *ctl_config(knockctl *c)
{
        knock_config_errors errs = {0};

        if (!c->cfg_tried && c->endpoint) {
                c->cfg_tried = true;
                if (config_load(c->endpoint, &c->cfg, &errs) < 0)
                        c->cfg = NULL;
                config_errors_clear(&errs);
        }
        return c->cfg;
}

/* Who ran knockctl, before ctl_drop_to_state_owner(): the audit rows name them. */
static uid_t invoking_uid;

void ctl_actor(char *buf, size_t len)
{
        uid_t uid = invoking_uid;
        struct passwd *pw = getpwuid(uid);

        if (pw && pw->pw_name)
                snprintf(buf, len, "%s(%u)", pw->pw_name, (unsigned)uid);
        else
                snprintf(buf, len, "%u(%u)", (unsigned)uid, (unsigned)uid);
}

void ctl_bind_common(knockctl *c, db_stmt *st)
{
        int i;

        i = stmt_param(st, ":endpoint");
        if (i > 0)
                stmt_bind_text(st, i, c->endpoint);
        i = stmt_param(st, ":now");
        if (i > 0)
                stmt_bind_i64(st, i, c->now);
        i = stmt_param(st, ":max_attempts");
        if (i > 0) {
                const knock_config *cfg = ctl_config(c);

                /* From the configuration: the database does not store it per event. */
                stmt_bind_i64_or_null(st, i, cfg ? (int64_t)MIN(cfg->max_attempts, INT64_MAX) : -1);
        }
}

void ctl_bind_text(db_stmt *st, const char *name, const char *v)
{
        int i = stmt_param(st, name);

        if (i > 0)
                stmt_bind_text(st, i, v);
}

void ctl_bind_i64(db_stmt *st, const char *name, int64_t v, bool null)
{
        int i = stmt_param(st, name);

        if (i <= 0)
                return;
        if (null)
                stmt_bind_null(st, i);
        else
                stmt_bind_i64(st, i, v);
}

int ctl_parse_limit(const char *s, int64_t *ret)
{
        uint64_t v;

        if (parse_u64_strict(s, &v) < 0) {
                ctl_error("invalid --limit '%s': expected a number (0 for no limit)", s);
                return KNOCKCTL_USAGE;
        }
        *ret = v > INT64_MAX ? INT64_MAX : (int64_t)v;
        return 0;
}

int ctl_parse_time(const char *opt, const char *s, int64_t now, int64_t *ret)
{
        if (parse_time_spec(s, now, ret) < 0) {
                ctl_error("invalid %s '%s': expected a duration before now (2h, 30m, 7d), "
                          "an RFC 3339 time (2026-01-31T12:00:00Z) or @UNIXTIME",
                        opt, s);
                return KNOCKCTL_USAGE;
        }
        return 0;
}

/*
 * Root becomes the state directory's owner (user and group knock) before a
 * verb touches anything: a restore run as root used to leave NAME.db owned
 * by root and read-only to the daemons, and a backup run as root made a
 * backups/NAME that the timer's backups could no longer write into.
 * Returns 0 or KNOCKCTL_FAILED (reported).
 */
int ctl_drop_to_state_owner(void)
{
        const char *dir = knock_state_dir();
        struct passwd *pw;
        struct stat stb;

        if (geteuid() != 0)
                return 0;
        if (stat(dir, &stb) < 0) {
                if (errno == ENOENT)
                        return 0; /* nothing to protect yet; migrate creates it */
                ctl_error("%s: %s", dir, strerror(errno));
                return KNOCKCTL_FAILED;
        }
        if (stb.st_uid == 0)
                return 0;
        pw = getpwuid(stb.st_uid);
        if ((pw ? initgroups(pw->pw_name, stb.st_gid) : setgroups(1, &stb.st_gid)) < 0 ||
                setresgid(stb.st_gid, stb.st_gid, stb.st_gid) < 0 ||
                setresuid(stb.st_uid, stb.st_uid, stb.st_uid) < 0) {
                ctl_error("cannot become the owner of %s (uid %u): %s", dir,
                        (unsigned)stb.st_uid, strerror(errno));
                return KNOCKCTL_FAILED;
        }
        if (setuid(0) == 0) {
                ctl_error("dropping root failed");
                return KNOCKCTL_FAILED;
        }
        return 0;
}

/* -e NAME, or the only configured endpoint. Returns 0 or an exit code. */
static int resolve_endpoint(knockctl *c, const knockctl_verb *v, const char *arg_endpoint)
{
        char **names = NULL;
        size_t n = 0;
        int r;

        if (arg_endpoint) {
                if (!endpoint_name_valid(arg_endpoint)) {
                        ctl_error("invalid endpoint name '%s' (expected [a-z0-9][a-z0-9_-]{0,62})",
                                arg_endpoint);
                        return KNOCKCTL_USAGE;
                }
                c->endpoint = arg_endpoint;
                c->endpoint_explicit = true;
                return 0;
        }
        if (v->flags & VERB_ENDPOINT_OPTIONAL)
                return 0;

        r = config_list_endpoints(&names, &n);
        if (r < 0) {
                ctl_error("cannot list endpoints in %s/endpoints: %s", knock_config_dir(),
                        strerror(-r));
                return KNOCKCTL_FAILED;
        }
        if (n == 1) {
                /* argv outlives the context; the one name must too. */
                static char only[64];

                snprintf(only, sizeof(only), "%s", names[0]);
                c->endpoint = only;
                r = 0;
        } else if (n == 0) {
                ctl_error(
                        "no endpoint configured in %s/endpoints; use -e NAME", knock_config_dir());
                r = KNOCKCTL_FAILED;
        } else {
                ctl_error("%zu endpoints are configured; choose one with -e NAME "
                          "(see 'knockctl endpoints')",
                        n);
                r = KNOCKCTL_USAGE;
        }
        strv_free(names, n);
        return r;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"endpoint", required_argument, NULL, 'e'},
                {"json", no_argument, NULL, VERB_OPT_JSON},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, OPT_VERSION},
                {"wide", no_argument, NULL, 'l'},
                {"full", no_argument, NULL, 'l'},
                {"no-pager", no_argument, NULL, VERB_OPT_NO_PAGER},
                {0},
        };
        knockctl c = {0};
        const char *arg_endpoint = NULL;
        const knockctl_verb *v;
        int o, r;

        /* "+": stop at the verb; its own options are parsed by the verb. */
        while ((o = getopt_long(argc, argv, "+e:hl", options, NULL)) >= 0)
                switch (o) {
                case 'l':
                case VERB_OPT_NO_PAGER:
                        verb_common_option(o);
                        break;
                case 'e':
                        arg_endpoint = optarg;
                        break;
                case VERB_OPT_JSON:
                        c.json = true;
                        break;
                case 'h':
                        help(stdout);
                        return 0;
                case OPT_VERSION:
                        printf("knockctl %s\n", KNOCK_VERSION);
                        return 0;
                default:
                        return KNOCKCTL_USAGE;
                }
        if (optind >= argc) {
                ctl_error("missing command (see 'knockctl --help')");
                return KNOCKCTL_USAGE;
        }
        v = verb_find(argv[optind]);
        if (!v) {
                ctl_error("unknown command '%s' (see 'knockctl --help')", argv[optind]);
                return KNOCKCTL_USAGE;
        }

        c.now = now_ms();
        invoking_uid = getuid();
        /* The daemons' umask (UMask=0007): what an operator of group knock
         * creates in the state directory stays writable to the daemons. */
        umask(0007);
        /* `knockctl VERB --help` needs no endpoint, even when several exist. */
        r = verb_wants_help(argc - optind, argv + optind) && !arg_endpoint
                    ? 0
                    : resolve_endpoint(&c, v, arg_endpoint);
        if (r != 0)
                return r;
        if (!(v->flags & VERB_KEEPS_ROOT)) {
                r = ctl_drop_to_state_owner();
                if (r != 0)
                        return r;
        }

        /* The verb sees argv starting at its own name; getopt starts afresh. */
        {
                int verb_argc = argc - optind;
                char **verb_argv = argv + optind;

                optind = 0;
                r = v->run(&c, verb_argc, verb_argv);
        }
        if (r < 0) {
                ctl_error("%s: %s", v->name, strerror(-r));
                r = KNOCKCTL_FAILED;
        } else if (r == KNOCKCTL_HELPED)
                r = 0;

        if (fflush(stdout) != 0 || ferror(stdout)) {
                ctl_error("cannot write output: %s", strerror(errno));
                r = KNOCKCTL_FAILED;
        }
        store_close(c.store);
        config_free(c.cfg);
        return r;
}
