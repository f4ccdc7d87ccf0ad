/* The in-process test client: one request over loopback to a server running in this
 * process, the whole answer read and parsed. Blocking sockets with poll timeouts; used by
 * tests, never on a ring thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/app.h"

struct rbuf {
    char *data;
    size_t len, cap;
};

static int rbuf_add(struct rbuf *b, const void *p, size_t n)
{
    if (n > (1u << 30))
        return -EMSGSIZE; /* more than any test answer */
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nd = realloc(b->data, cap); /* owner: the response, or freed on error */
        if (!nd)
            return -ENOMEM;
        b->data = nd;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int connect_loopback(rh_server *srv)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(rh_server_port(srv))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno != EINTR)
            return -errno;
        if (w > 0)
            p += w, n -= (size_t)w;
    }
    return 0;
}

/* Reads until the peer closes (every request is sent with Connection: close). */
static int recv_all(int fd, struct rbuf *in, uint64_t deadline)
{
    char buf[16384];
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(deadline - now));
        if (pr < 0 && errno != EINTR)
            return -errno;
        if (pr <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return errno == ECONNRESET && in->len ? 0 : -errno;
        if (n > 0 && rbuf_add(in, buf, (size_t)n) < 0)
            return -ENOMEM;
    }
}

static int dechunk(const char *p, const char *end, struct rbuf *body)
{
    for (;;) {
        char *num_end;
        unsigned long n = strtoul(p, &num_end, 16);
        const char *line_end = strstr(num_end, "\r\n");
        if (num_end == p || !line_end || line_end + 2 + n > end)
            return -EPROTO;
        if (n == 0)
            return 0;
        if (rbuf_add(body, line_end + 2, n) < 0)
            return -ENOMEM;
        p = line_end + 2 + n + 2;
    }
}

static int parse_answer(const struct rbuf *in, rh_test_response *out)
{
    const char *head_end = in->data ? strstr(in->data, "\r\n\r\n") : NULL;
    if (!head_end || sscanf(in->data, "HTTP/1.%*d %d", &out->status) != 1)
        return -EPROTO;
    size_t head_len = (size_t)(head_end - in->data) + 2;
    out->head = strndup(in->data, head_len); /* owner: out, rh_test_response_free */
    struct rbuf body = {0};
    const char *b = head_end + 4, *end = in->data + in->len;
    char te[32];
    int ret = 0;
    if (rh_test_header(out, "Transfer-Encoding", te, sizeof(te)) >= 0 &&
        strcasecmp(te, "chunked") == 0)
        ret = dechunk(b, end, &body);
    else
        ret = rbuf_add(&body, b, (size_t)(end - b));
    if (!body.data && ret == 0)
        ret = rbuf_add(&body, "", 0);
    out->body = body.data;
    out->body_len = body.len;
    return out->head ? ret : -ENOMEM;
}

int rh_test_request(rh_server *srv, const char *method, const char *target,
                    const char *headers, const void *body, size_t len, unsigned timeout_ms,
                    rh_test_response *out)
{
    memset(out, 0, sizeof(*out));
    struct rbuf req = {0}, in = {0};
    char line[256];
    int n = snprintf(line, sizeof(line), " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n", len);
    int ret = rbuf_add(&req, method, strlen(method));
    ret = ret ? ret : rbuf_add(&req, " ", 1);
    ret = ret ? ret : rbuf_add(&req, target, strlen(target));
    ret = ret ? ret : rbuf_add(&req, line, n > 0 ? (size_t)n : 0);
    ret = ret ? ret : rbuf_add(&req, headers ? headers : "", headers ? strlen(headers) : 0);
    ret = ret ? ret : rbuf_add(&req, "\r\n", 2);
    ret = ret ? ret : rbuf_add(&req, body, len);
    int fd = ret ? ret : connect_loopback(srv);
    if (fd >= 0) {
        ret = send_all(fd, req.data, req.len);
        if (ret == 0)
            ret = recv_all(fd, &in, now_ms() + (timeout_ms ? timeout_ms : 5000));
        close(fd);
    } else {
        ret = fd;
    }
    if (ret == 0)
        ret = parse_answer(&in, out);
    free(req.data);
    free(in.data);
    if (ret < 0)
        rh_test_response_free(out);
    return ret;
}

int rh_test_header(const rh_test_response *resp, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *p = resp->head ? strstr(resp->head, "\r\n") : NULL; p && p[2];
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
            continue;
        const char *v = line + nlen + 1, *ve = strstr(v, "\r\n");
        while (*v == ' ')
            v++;
        size_t vlen = ve ? (size_t)(ve - v) : strlen(v);
        if (vlen + 1 > cap)
            return -ENOSPC;
        memcpy(out, v, vlen);
        out[vlen] = 0;
        return (int)vlen;
    }
    return -ENOENT;
}

void rh_test_response_free(rh_test_response *resp)
{
    free(resp->head);
    free(resp->body);
    resp->head = resp->body = NULL;
}
