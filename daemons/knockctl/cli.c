/* SPDX-License-Identifier: MIT */
/*
 * cli — the options every verb accepts, wherever they are written
 * (`knockctl -l events` and `knockctl events -l` alike), the way
 * systemctl's and journalctl's are:
 *
 *   --json                one JSON document (handled by verb_getopt)
 *   --help, -h            the verb's usage; needs no endpoint
 *   --wide, --full, -l    human tables never truncate a cell
 *   --no-pager            accepted and ignored: knockctl never pages, so a
 *                         script or a runbook that passes it (as it would to
 *                         systemctl) still works
 */
#include "knockctl.h"

size_t verb_common_options(struct option *o)
{
        size_t n = 0;

        o[n++] = (struct option){"json", no_argument, NULL, VERB_OPT_JSON};
        o[n++] = (struct option){"help", no_argument, NULL, VERB_OPT_HELP};
        o[n++] = (struct option){"wide", no_argument, NULL, 'l'};
        o[n++] = (struct option){"full", no_argument, NULL, 'l'};
        o[n++] = (struct option){"no-pager", no_argument, NULL, VERB_OPT_NO_PAGER};
        o[n] = (struct option){0};
        return n;
}

bool verb_common_option(int o)
{
        switch (o) {
        case 'l':
                arg_wide = true;
                return true;
        case VERB_OPT_NO_PAGER:
                return true;
        default:
                return false;
        }
}

bool verb_wants_help(int argc, char **argv)
{
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--"))
                        return false;
                if (streq(argv[i], "--help") || streq(argv[i], "-h"))
                        return true;
        }
        return false;
}
