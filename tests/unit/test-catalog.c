/* SPDX-License-Identifier: MIT */

/*
 * test-catalog — common/catalog-ids.h and units/knock.catalog list the same
 * MESSAGE_IDs.
 *
 * Both files are parsed as text (SOURCE_ROOT): every `#define MSGID_* "id"` of
 * the header must have a catalog entry `-- id` and every catalog entry must be
 * an id of the header; ids are 128-bit lower-case hex, unique on each side,
 * and every entry has a Subject:, a Defined-By: and a body.
 */

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#define MAX_IDS 256

typedef struct id_entry {
        char id[33];
        char label[64];   /* macro name, or "line N" of the catalog */
        bool has_subject;
        bool has_defined_by;
        size_t body_lines;
} id_entry;

static bool id_valid(const char *s, size_t n)
{
        if (n != 32)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isxdigit((unsigned char) s[i]) || isupper((unsigned char) s[i]))
                        return false;
        return true;
}

static FILE *open_source(const char *rel)
{
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", SOURCE_ROOT, rel);
        return fopen(path, "re");
}

/* Collects `#define MSGID_NAME "id"`; returns the count, -1 on an unusable line. */
static int parse_header(id_entry *out, size_t max)
{
        char line[512];
        FILE *f = open_source("common/catalog-ids.h");
        int n = 0;

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                char name[64], id[64];

                if (strncmp(line, "#define MSGID_", 14) != 0)
                        continue;
                if (sscanf(line, "#define %63s \"%63[^\"]\"", name, id) != 2 ||
                    (size_t) n >= max) {
                        n = -1;
                        break;
                }
                snprintf(out[n].label, sizeof(out[n].label), "%s", name);
                out[n].id[0] = 0;
                if (id_valid(id, strlen(id)))
                        memcpy(out[n].id, id, sizeof(out[n].id));
                n++;
        }
        fclose(f);
        return n;
}

/* Collects catalog entries ("-- id" lines) and what follows each. */
static int parse_catalog(id_entry *out, size_t max)
{
        char line[1024];
        FILE *f = open_source("units/knock.catalog");
        int n = 0, lineno = 0;
        id_entry *cur = NULL;

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                size_t len;

                lineno++;
                line[strcspn(line, "\n")] = 0;
                len = strlen(line);
                if (strncmp(line, "-- ", 3) == 0) {
                        if ((size_t) n >= max) {
                                n = -1;
                                break;
                        }
                        cur = &out[n++];
                        *cur = (id_entry) {};
                        snprintf(cur->label, sizeof(cur->label), "catalog line %d", lineno);
                        if (id_valid(line + 3, len - 3))
                                memcpy(cur->id, line + 3, 33);
                } else if (cur && strncmp(line, "Subject: ", 9) == 0 && len > 9) {
                        cur->has_subject = true;
                } else if (cur && strncmp(line, "Defined-By: ", 12) == 0 && len > 12) {
                        cur->has_defined_by = true;
                } else if (cur && len > 0 && !strchr(line, ':')) {
                        cur->body_lines++;
                } else if (cur && len > 0 && cur->has_subject && cur->body_lines > 0) {
                        cur->body_lines++; /* prose that happens to contain a colon */
                }
        }
        fclose(f);
        return n;
}

static const id_entry *find(const id_entry *v, int n, const char *id)
{
        for (int i = 0; i < n; i++)
                if (v[i].id[0] && strcmp(v[i].id, id) == 0)
                        return &v[i];
        return NULL;
}

static int count_dupes(const id_entry *v, int n)
{
        int d = 0;

        for (int i = 0; i < n; i++)
                for (int j = i + 1; j < n; j++)
                        if (v[i].id[0] && strcmp(v[i].id, v[j].id) == 0)
                                d++;
        return d;
}

int main(void)
{
        static id_entry hdr[MAX_IDS], cat[MAX_IDS];
        int nh, nc;

        nh = parse_header(hdr, MAX_IDS);
        nc = parse_catalog(cat, MAX_IDS);
        ok(nh > 0, "catalog-ids.h parsed: %d MESSAGE_IDs", nh);
        ok(nc > 0, "knock.catalog parsed: %d entries", nc);
        if (nh <= 0 || nc <= 0)
                return tap_done();

        for (int i = 0; i < nh; i++)
                ok(hdr[i].id[0], "%s is 32 lower-case hex digits", hdr[i].label);
        for (int i = 0; i < nc; i++)
                ok(cat[i].id[0], "%s: entry id is 32 lower-case hex digits", cat[i].label);
        is_int(count_dupes(hdr, nh), 0, "no id repeated in catalog-ids.h");
        is_int(count_dupes(cat, nc), 0, "no id repeated in knock.catalog");

        for (int i = 0; i < nh; i++) {
                const id_entry *e = hdr[i].id[0] ? find(cat, nc, hdr[i].id) : NULL;

                ok(e, "%s has a catalog entry", hdr[i].label);
                if (e)
                        ok(e->has_subject && e->has_defined_by && e->body_lines > 0,
                           "%s entry has Subject:, Defined-By: and a body", hdr[i].label);
        }
        for (int i = 0; i < nc; i++)
                if (cat[i].id[0])
                        ok(find(hdr, nh, cat[i].id), "catalog entry %s (%s) is in catalog-ids.h",
                           cat[i].id, cat[i].label);
        return tap_done();
}
