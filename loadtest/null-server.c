/*
 * The limit for PING-like commands (issue 17): one thread, epoll, frames RESP requests
 * (arrays of bulk strings, or inline lines) and answers each with +PONG, storing nothing.
 * What a server can reach on this machine when the client shares its cores; not shipped,
 * only benchmarked (scripts/bench-null.sh builds and runs it).
 *
 *   cc -O2 -o null-server loadtest/null-server.c && ./null-server PORT [SECONDS]
 *
 * Binds 127.0.0.1:PORT and exits after SECONDS (default 300), so a forgotten one stops.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>
#include <arpa/inet.h>

#define BUF 65536
#define MAXFD 65536

struct conn {
    char in[BUF];
    size_t len;
};

static struct conn *conns[MAXFD];

/* Length of the first complete request in buf[0..len), 0 when incomplete, -1 when malformed. */
static long frame(const char *buf, size_t len) {
    const char *end = buf + len, *p = buf;
    const char *nl = memchr(p, '\n', len);
    if (!nl) return 0;
    if (*p != '*') return nl + 1 - buf; /* an inline command: one line */
    long n = strtol(p + 1, NULL, 10);
    p = nl + 1;
    for (long i = 0; i < n; i++) {
        if (p >= end) return 0;
        if (*p != '$') return -1;
        nl = memchr(p, '\n', end - p);
        if (!nl) return 0;
        long blen = strtol(p + 1, NULL, 10);
        if (blen < 0) return -1;
        p = nl + 1;
        if (end - p < blen + 2) return 0;
        p += blen + 2;
    }
    return p - buf;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [SECONDS]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int seconds = argc > 2 ? atoi(argv[2]) : 300;
    time_t deadline = time(NULL) + seconds;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) {
        perror("bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    static char out[BUF * 8];
    while (time(NULL) < deadline) {
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAXFD) { close(c); continue; }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[c] = calloc(1, sizeof(struct conn));
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            struct conn *k = conns[fd];
            ssize_t r = read(fd, k->in + k->len, BUF - k->len);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close(fd);
                free(k);
                conns[fd] = NULL;
                continue;
            }
            k->len += r;
            size_t used = 0, olen = 0;
            long f;
            while ((f = frame(k->in + used, k->len - used)) > 0) {
                used += f;
                memcpy(out + olen, "+PONG\r\n", 7);
                olen += 7;
            }
            if (f < 0 || (used == 0 && k->len == BUF)) { /* malformed, or a request too big */
                close(fd);
                free(k);
                conns[fd] = NULL;
                continue;
            }
            memmove(k->in, k->in + used, k->len - used);
            k->len -= used;
            if (olen && write(fd, out, olen) < 0 && errno != EAGAIN) {
                close(fd);
                free(k);
                conns[fd] = NULL;
            }
        }
    }
    return 0;
}
