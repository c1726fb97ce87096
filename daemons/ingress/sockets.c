/* SPDX-License-Identifier: MIT */
/*
 * sockets — the ingress's two listeners, adopted or bound; see sockets.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "sockets.h"

static int bind_address(const char *address, bool is_admin)
{
        _cleanup_close_ int fd = -1;
        int r;

        if (address[0] == '/') {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                if (strlen(address) >= sizeof(sa.sun_path))
                        return -ENAMETOOLONG;
                strcpy(sa.sun_path, address);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0)
                        return -errno;
                (void)unlink(address);
                if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        return -errno;
                /* The admin socket is for the knock group (knockctl, scrapers). */
                (void)chmod(address, is_admin ? 0660 : 0666);
        } else {
                struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
                struct addrinfo *ai = NULL;
                _cleanup_free_ char *host = NULL;
                const char *colon = strrchr(address, ':');
                int one = 1;

                if (!colon)
                        return -EINVAL;
                host = strndup(address, (size_t)(colon - address));
                if (!host)
                        return -ENOMEM;
                if (host[0] == '[' && host[strlen(host) - 1] == ']') {
                        memmove(host, host + 1, strlen(host));
                        host[strlen(host) - 1] = 0;
                }
                r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
                if (r != 0)
                        return -EADDRNOTAVAIL;
                fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0) {
                        freeaddrinfo(ai);
                        return -errno;
                }
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                        r = -errno;
                        freeaddrinfo(ai);
                        return r;
                }
                freeaddrinfo(ai);
        }
        if (listen(fd, 1024) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int sockets_open(conn_server *srv, struct evhttp *admin_http, const knock_config *cfg)
{
        char **names = NULL;
        bool have_admin = false;
        int n, r = 0;

        n = sd_listen_fds_with_names(1, &names);
        if (n < 0)
                return log_error_errno(n, "Cannot read LISTEN_FDS: %m");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *nm = names ? names[i] : "unknown";

                if (streq(nm, "public") || (n == 1 && streq(nm, "unknown"))) {
                        r = conn_server_listen(srv, fd);
                        if (r < 0)
                                log_error_errno(r, "Cannot serve the public socket: %m");
                } else if (streq(nm, "admin")) {
                        evutil_make_socket_nonblocking(fd);
                        if (evhttp_accept_socket_with_handle(admin_http, fd))
                                have_admin = true;
                } else {
                        log_warning("Closing unexpected socket-activated fd named '%s'", nm);
                        close(fd);
                }
        }
        if (names) {
                for (int i = 0; i < n; i++)
                        free(names[i]);
                free(names);
        }
        if (r < 0)
                return r;

        if (srv->n_listeners == 0) {
                int fd = bind_address(cfg->listen, false);
                if (fd < 0)
                        return log_error_errno(fd, "Cannot listen on %s: %m", cfg->listen);
                r = conn_server_listen(srv, fd);
                if (r < 0)
                        return log_error_errno(r, "Cannot serve %s: %m", cfg->listen);
        }
        if (!have_admin && cfg->admin) {
                int fd = bind_address(cfg->admin, true);
                if (fd < 0)
                        /* The admin listener is for operators; its absence must
                         * not stop webhooks from being received. */
                        log_warning_errno(fd, "Cannot listen on admin address %s: %m",
                                          cfg->admin);
                else if (!evhttp_accept_socket_with_handle(admin_http, fd))
                        close(fd);
        }
        return 0;
}
