/* SPDX-License-Identifier: MIT */
/*
 * fuzz-config — config_load() on any knock.conf and endpoint file.
 *
 * An input is an endpoint file; a line "%%" splits it into knock.conf (the
 * text before) and the endpoint file (the text after). Both are written to a
 * private KNOCK_CONFIG_DIR and loaded as endpoint "fuzz", as the daemons and
 * knockctl check-config do. CREDENTIALS_DIRECTORY holds two credentials,
 * "endpoint" and "hook", so `credential:` secrets resolve.
 *
 * Beyond what ASan and UBSan catch (and LeakSanitizer: every error path
 * frees what it made), it aborts when config_load() breaks its contract: 0
 * with errors or without a configuration, -EINVAL without an error message,
 * any other errno for files that exist, or a message that holds a
 * credential's text (which the input does not).
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "util.h"

#define CRED_ENDPOINT "fuzz-credential-secret"
#define CRED_HOOK "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

static char dir[64], global_path[128], endpoint_path[128];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void write_file(const char *path, const void *p, size_t n)
{
        FILE *f = fopen(path, "we");

        if (!f || (n > 0 && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
                perror(path);
                abort();
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        char path[128];
        int fd;

        snprintf(dir, sizeof(dir), "%s/knock-fuzz-config.XXXXXX",
                getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(dir))
                abort();
        snprintf(path, sizeof(path), "%s/endpoints", dir);
        if (mkdir(path, 0700) < 0)
                abort();
        snprintf(path, sizeof(path), "%s/creds", dir);
        if (mkdir(path, 0700) < 0)
                abort();
        snprintf(path, sizeof(path), "%s/creds/endpoint", dir);
        write_file(path, CRED_ENDPOINT "\n", strlen(CRED_ENDPOINT) + 1);
        snprintf(path, sizeof(path), "%s/creds/hook", dir);
        write_file(path, CRED_HOOK "\n", strlen(CRED_HOOK) + 1);
        snprintf(global_path, sizeof(global_path), "%s/knock.conf", dir);
        snprintf(endpoint_path, sizeof(endpoint_path), "%s/endpoints/fuzz.conf", dir);
        snprintf(path, sizeof(path), "%s/creds", dir);
        setenv("CREDENTIALS_DIRECTORY", path, 1);
        setenv("KNOCK_CONFIG_DIR", dir, 1);
        setenv("KNOCK_RUNTIME_DIR", dir, 1);
        setenv("KNOCK_STATE_DIR", dir, 1);
        /* A secret path may name /dev/stdin: it must not wait for a terminal. */
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || dup2(fd, 0) < 0)
                abort();
        close(fd);
        return 0;
}

static void check(int r, const knock_config *c, const knock_config_errors *e,
        const unsigned char *data, size_t size)
{
        static const char *const secrets[] = {CRED_ENDPOINT, CRED_HOOK};

        if ((r == 0) != (c != NULL) || (r == 0 && e->n > 0) || (r == -EINVAL && e->n == 0) ||
                (r < 0 && r != -EINVAL)) {
                fprintf(stderr, "fuzz-config: config_load %d with %zu errors\n", r, e->n);
                abort();
        }
        for (size_t i = 0; i < e->n; i++)
                for (size_t k = 0; k < ELEMENTSOF(secrets); k++)
                        /* one the input holds itself (as a route name, say) is no leak */
                        if (strstr(e->msgs[i], secrets[k]) &&
                                !memmem(data, size, secrets[k], strlen(secrets[k]))) {
                                fprintf(stderr, "fuzz-config: a secret in '%s'\n", e->msgs[i]);
                                abort();
                        }
        if (c && (!c->listen || !c->path || !c->admin ||
                         c->verify.provider == KNOCK_PROVIDER_INVALID)) {
                fprintf(stderr, "fuzz-config: a configuration without listen, path or provider\n");
                abort();
        }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
        const char *sep = NULL;
        knock_config *c = NULL;
        knock_config_errors e;
        int r;

        /* "%%" alone on a line, at the start or after a newline */
        for (size_t i = 0; i + 2 <= size && !sep; i++)
                if ((i == 0 || data[i - 1] == '\n') && memcmp(data + i, "%%", 2) == 0 &&
                        (i + 2 == size || data[i + 2] == '\n'))
                        sep = (const char *)data + i;
        if (sep) {
                size_t head = (size_t)(sep - (const char *)data), tail = MIN(size, head + 3);

                write_file(global_path, data, head);
                write_file(endpoint_path, data + tail, size - tail);
        } else {
                unlink(global_path);
                write_file(endpoint_path, data, size);
        }

        r = config_load("fuzz", &c, &e);
        check(r, c, &e, data, size);
        config_free(c);
        config_errors_clear(&e);
        return 0;
}
