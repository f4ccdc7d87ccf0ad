/* The access log, Combined Log Format plus the request id and the duration. Lines are
 * formatted (without printf) into a per-worker buffer and written through the ring, two
 * buffers alternating, so a ring never blocks on the disk. When both are busy a line is
 * dropped and counted rather than waiting. SIGHUP reopens: each worker gets its own dup of
 * the new file and closes its old one once no write uses it. */
#include <errno.h>
#include <fcntl.h>
#include <mimalloc.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "obs/obs.h"
#include "http1/http1.h"

#define LOG_BUF (64u * 1024u)
#define LOG_FLUSH_AT (48u * 1024u)
#define LOG_FLUSH_MS 500u
#define LOG_LINE_MAX 4096u


struct reopen_msg {
    struct rh_msg msg;
    int fd;
};

int obs_access_log_open(rh_server *srv)
{
    const char *path = srv->log_path;
    if (!path || strcmp(path, "off") == 0) {
        srv->log_fd = -1;
        return 0;
    }
    int fd = strcmp(path, "-") == 0 ? dup(STDOUT_FILENO)
                                    : open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    srv->log_fd = fd;
    return 0;
}

static void submit_write(struct rh_access_log *l)
{
    unsigned b = l->active ^ 1; /* the buffer being written */
    struct io_uring_sqe *sqe = rh_loop_sqe(&l->w->loop);
    io_uring_prep_write(sqe, l->fd, l->buf[b] + l->sent, l->len[b] - l->sent, (uint64_t)-1);
    io_uring_sqe_set_data64(sqe, rh_ud_make(LOG_OP_WRITE, 0, 0));
    l->w->loop.inflight++;
    l->inflight = true;
}

void obs_access_log_flush(struct rh_worker *w)
{
    struct rh_access_log *l = w->log;
    if (!l || l->inflight || l->len[l->active] == 0)
        return;
    l->active ^= 1; /* lines now go to the other buffer (empty: its write finished) */
    l->sent = 0;
    submit_write(l);
}

static void on_log_write(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    rh_loop_op_done(loop);
    struct rh_worker *w = loop->owner;
    struct rh_access_log *l = w->log;
    unsigned b = l->active ^ 1;
    l->inflight = false;
    if (cqe->res > 0 && l->sent + (uint32_t)cqe->res < l->len[b]) {
        l->sent += (uint32_t)cqe->res; /* short write: the rest */
        submit_write(l);
        return;
    }
    l->len[b] = 0; /* written, or failed (a full disk): lines are not kept to retry forever */
    if (l->old_fd >= 0) {
        close(l->old_fd);
        l->old_fd = -1;
    }
    if (l->len[l->active] >= LOG_FLUSH_AT || w->draining)
        obs_access_log_flush(w);
}

static void on_log_timer(struct rh_timer *t)
{
    struct rh_access_log *l = (struct rh_access_log *)((char *)t - offsetof(struct rh_access_log, timer));
    obs_access_log_flush(l->w);
    rh_loop_timer_arm(&l->w->loop, &l->timer, LOG_FLUSH_MS);
}

static void on_reopen(struct rh_loop *loop, struct rh_msg *msg)
{
    struct reopen_msg *m = (struct reopen_msg *)msg;
    struct rh_access_log *l = ((struct rh_worker *)loop->owner)->log;
    if (l->old_fd >= 0)
        close(l->old_fd);
    l->old_fd = -1;
    if (l->inflight)
        l->old_fd = l->fd; /* closed when that write completes */
    else
        close(l->fd);
    l->fd = m->fd;
    mi_free(m);
}

void obs_access_log_worker_start(struct rh_worker *w)
{
    if (w->srv->log_fd < 0)
        return;
    struct rh_access_log *l = mi_zalloc(sizeof(*l)); /* owner: the worker, until stop */
    l->w = w;
    l->fd = dup(w->srv->log_fd);
    l->old_fd = -1;
    l->buf[0] = mi_malloc(LOG_BUF);
    l->buf[1] = mi_malloc(LOG_BUF);
    l->timer.fn = on_log_timer;
    w->log = l;
    rh_loop_on(&w->loop, LOG_OP_WRITE, on_log_write);
    rh_loop_timer_arm(&w->loop, &l->timer, LOG_FLUSH_MS);
}

/* After the final drain: nothing in flight any more. */
void obs_access_log_worker_stop(struct rh_worker *w)
{
    struct rh_access_log *l = w->log;
    if (!l)
        return;
    for (unsigned i = 0; i < 2; i++) { /* whatever the drain could not write */
        if (l->len[i] && write(l->fd, l->buf[i], l->len[i]) < 0)
            break;
    }
    close(l->fd);
    if (l->old_fd >= 0)
        close(l->old_fd);
    rh_timer_cancel(&w->loop.wheel, &l->timer);
    mi_free(l->buf[0]);
    mi_free(l->buf[1]);
    mi_free(l);
    w->log = NULL;
}

int rh_server_reopen_logs(rh_server *srv)
{
    if (!srv->log_path || srv->log_fd < 0 || strcmp(srv->log_path, "-") == 0)
        return 0;
    int fd = open(srv->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct reopen_msg *m = mi_malloc(sizeof(*m)); /* owner: the worker that gets it */
        m->msg.fn = on_reopen;
        m->fd = dup(fd);
        rh_loop_post(&srv->workers[i].loop, &m->msg);
    }
    close(srv->log_fd);
    srv->log_fd = fd;
    return 0;
}

/* ---- formatting ---- */

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Quoted fields: quotes, backslashes and control bytes become \xHH (no log injection). */
static char *put_escaped(char *p, const char *end, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s || n == 0)
        return put(p, "-", 1);
    for (size_t i = 0; i < n && p + 4 < end; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        } else {
            *p++ = (char)ch;
        }
    }
    return p;
}

static void refresh_stamp(struct rh_access_log *l)
{
    if (l->stamp_sec == l->w->date_sec)
        return;
    time_t t = (time_t)l->w->date_sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(l->stamp, sizeof(l->stamp), "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
    l->stamp_sec = l->w->date_sec;
}

static char *put_header(char *p, const char *end, const struct rh_req *r, const char *name)
{
    rh_str v = r->base ? rh_req_header(r, name) : (rh_str){NULL, 0};
    *p++ = '"';
    p = put_escaped(p, end - 2, v.ptr, v.len);
    *p++ = '"';
    return p;
}

static size_t format_line(struct rh_access_log *l, struct rh_req *r, int status, char *out)
{
    char *p = out, *end = out + LOG_LINE_MAX - 64;
    const char *peer = rh_req_peer(r);
    p = put(p, peer, strlen(peer));
    p = put(p, " - - ", 5);
    refresh_stamp(l);
    p = put(p, l->stamp, strlen(l->stamp));
    p = put(p, " \"", 2);
    if (r->base && (r->flags & R_HEADERS_DONE)) {
        p = put_escaped(p, end - 600, r->base + r->method.off, r->method.len);
        *p++ = ' ';
        p = put_escaped(p, end - 600, r->base + r->url.off, r->url.len);
        p = put(p, r->http_minor ? " HTTP/1.1" : " HTTP/1.0", 9);
    } else {
        *p++ = '-';
    }
    p = put(p, "\" ", 2);
    p += rh_fmt_u64(p, (uint64_t)status);
    *p++ = ' ';
    if (r->resp_body_len >= 0 && !(r->flags & R_HEAD))
        p += rh_fmt_u64(p, (uint64_t)r->resp_body_len);
    else
        *p++ = '-';
    *p++ = ' ';
    p = put_header(p, end, r, "Referer");
    *p++ = ' ';
    p = put_header(p, end, r, "User-Agent");
    p = put(p, " rid=", 5);
    p = r->request_id[0] ? put(p, r->request_id, strlen(r->request_id)) : put(p, "-", 1);
    p = put(p, " dur_ms=", 8);
    p += rh_fmt_u64(p, r->w->loop.now_ms - r->started_ms);
    *p++ = '\n';
    return (size_t)(p - out);
}

void obs_access_log_line(struct rh_req *r, int status)
{
    struct rh_access_log *l = r->w->log;
    unsigned a = l->active;
    if (l->len[a] + LOG_LINE_MAX > LOG_BUF) {
        obs_access_log_flush(r->w);
        a = l->active;
        if (l->len[a] + LOG_LINE_MAX > LOG_BUF) {
            l->dropped++; /* both buffers busy: never block the ring for the log */
            return;
        }
    }
    l->len[a] += (uint32_t)format_line(l, r, status, l->buf[a] + l->len[a]);
    if (l->len[a] >= LOG_FLUSH_AT)
        obs_access_log_flush(r->w);
}
