/* Static file transfers: a transfer's life (new, the ops it owns, free) and the body pump
 * that sends a file body after its head, one step at a time, paced by the socket. The pump
 * is the transfer's HTTP/1 body source (h1_body_attach): proceed when the connection has
 * sent the head (and each time it can take more), stop when it goes away mid-body.
 *
 * Bodies above COPY_MAX take one of three paths (static.c handles the smaller ones):
 *   M_SENDFILE (the default): sendfile(2) from the ring thread, on the non-blocking socket,
 *     of a window whose pages cachestat(2) finds resident (a 1-byte preadv2(RWF_NOWAIT) at
 *     the window's end also catches pages still being read in); a full socket returns at
 *     once and POLL_ADD(POLLOUT) on the ring waits for room. The head goes out with
 *     MSG_MORE right before the first sendfile, so head and body fill the same segments.
 *     A window that is not resident (a cold file) goes through io-wq once, as below, and
 *     the next window is checked again: the ring thread never waits for a disk.
 *   M_SPLICE (--no-sendfile, or a cold window, from splice_min on): SPLICE file -> pipe
 *     linked to SPLICE pipe -> socket, both through io-wq.
 *   M_SEND (--no-sendfile, or a cold window, below splice_min): READ into a CHUNK_SIZE
 *     buffer, then SEND.
 * Each step is issued only when the previous one completed, so a slow reader holds at most
 * its socket buffer, one pipe or one chunk buffer.
 *
 * Which path, measured (2 vCPU VM, kernel 6.18, loopback, ringhttp --threads 1 on CPU 0,
 * wrk -t1 -c16 on CPU 1, 1 MiB file): see bench/results/ and the numbers in the commit
 * that made sendfile the default. */
#include <errno.h>
#include <mimalloc.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/freelist.h"
#include "static/static_priv.h"
#include "conn/conn.h"
#include "http1/http1.h"

#ifndef SENDFILE_MAX /* bytes asked of one sendfile(2), and the window checked resident */
#define SENDFILE_MAX (1u << 20)
#endif
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif
#define SYS_CACHESTAT 451 /* cachestat(2), Linux 6.5; absent from Debian 12's headers */

struct rh_cachestat_range {
    uint64_t off, len;
};
struct rh_cachestat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

static uint64_t xfer_ud(const struct static_xfer *x, enum step_kind k)
{
    return rh_ud_make(STATIC_OP_FILE, x->idx, (x->gen << 4) | k);
}

/* ---- transfers ---- */

struct static_xfer *static_xfer_new(struct static_ring *sr, struct rh_req *r,
                             const struct static_mount *m)
{
    struct static_xfer *x = RH_FREELIST_POP(sr->free_xfers, next_free);
    if (!x) {
        if (sr->nxfers == sr->xcap) {
            uint32_t cap = sr->xcap ? 2 * sr->xcap : 64;
            struct static_xfer **tab = mi_realloc(sr->xfers, sizeof(*tab) * cap);
            if (!tab)
                return NULL;
            sr->xfers = tab;
            sr->xcap = cap;
        }
        x = mi_zalloc(sizeof(*x)); /* owner: the ring's free list, from the first use on */
        if (!x)
            return NULL;
        x->idx = sr->nxfers;
        sr->xfers[sr->nxfers++] = x;
    }
    uint32_t idx = x->idx, gen = (x->gen + 1) & 0xfffff;
    memset(x, 0, offsetof(struct static_xfer, stx));
    x->idx = idx;
    x->gen = gen;
    x->sr = sr;
    x->req = r;
    x->m = m;
    x->fd = x->pipe[0] = x->pipe[1] = -1;
    x->xhdr_mark = r->xhdr_len;
    return x;
}

struct static_xfer *static_xfer_of(struct static_ring *sr, uint64_t ud)
{
    uint32_t idx = rh_ud_idx(ud);
    if (idx >= sr->nxfers)
        return NULL;
    struct static_xfer *x = sr->xfers[idx];
    return x->req && x->gen == (rh_ud_gen(ud) >> 4) ? x : NULL;
}

static void pipe_release(struct static_ring *sr, struct static_xfer *x)
{
    if (x->pipe[0] < 0)
        return;
    if (x->pipe_bytes == 0 && sr->npipes < SPARE_PIPES && !sr->stopping) {
        struct spare_pipe *s = &sr->pipes[sr->npipes++]; /* empty: fit for the next one */
        s->fd[0] = x->pipe[0];
        s->fd[1] = x->pipe[1];
        s->cap = x->pipe_cap;
    } else { /* bytes stranded in it (an aborted transfer): it goes */
        static_close_fd(sr, x->pipe[0]);
        static_close_fd(sr, x->pipe[1]);
    }
    x->pipe[0] = x->pipe[1] = -1;
}

static int pipe_acquire(struct static_ring *sr, struct static_xfer *x)
{
    if (sr->npipes) {
        struct spare_pipe *s = &sr->pipes[--sr->npipes];
        x->pipe[0] = s->fd[0];
        x->pipe[1] = s->fd[1];
        x->pipe_cap = s->cap;
        return 0;
    }
    if (pipe2(x->pipe, O_CLOEXEC) < 0) /* not a file system call: cannot block */
        return -errno;
    int cap = fcntl(x->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
    if (cap < 0)
        cap = fcntl(x->pipe[1], F_GETPIPE_SZ);
    x->pipe_cap = cap > 0 ? (uint32_t)cap : 65536u;
    return 0;
}

/* Releases everything the transfer holds and returns it to the free list. The request is
 * the caller's to end. */
void static_xfer_free(struct static_xfer *x)
{
    struct static_ring *sr = x->sr;
    if (x->e)
        static_fentry_put(sr, x->e);
    static_close_fd(sr, x->fd);
    pipe_release(sr, x);
    conn_obuf_release(sr->w, &x->block);
    if (x->chunk) {
        if (sr->nchunks < SPARE_CHUNKS && !sr->stopping)
            sr->chunks[sr->nchunks++] = x->chunk;
        else
            mi_free(x->chunk);
    }
    x->chunk = NULL;
    x->req = NULL;
    x->e = NULL;
    RH_FREELIST_PUSH(sr->free_xfers, x, next_free);
}

/* An SQE for one of x's ops, counted in flight; the prep comes next, then static_xfer_submit()
 * (the prep helpers clear user_data). */
struct io_uring_sqe *static_xfer_sqe(struct static_xfer *x)
{
    struct io_uring_sqe *sqe = rh_loop_sqe(&x->sr->w->loop);
    x->sr->w->loop.inflight++;
    x->inflight++;
    return sqe;
}

void static_xfer_submit(struct static_xfer *x, struct io_uring_sqe *sqe, enum step_kind k)
{
    io_uring_sqe_set_data64(sqe, xfer_ud(x, k));
}
/* ---- the body pump: one op at a time on the socket ---- */

static void arm_write_timer(struct rh_conn *c)
{
    rh_loop_timer_arm(&c->w->loop, &c->timer, c->w->srv->cfg.write_timeout_ms);
}

static void pump_send(struct static_xfer *x, struct rh_conn *c)
{
    struct static_ring *sr = x->sr;
    struct io_uring_sqe *sqe;
    if (x->chunk_sent < x->chunk_len) {
        sqe = static_xfer_sqe(x);
        io_uring_prep_send(sqe, c->fd, x->chunk + x->chunk_sent, x->chunk_len - x->chunk_sent,
                           MSG_NOSIGNAL);
        static_xfer_submit(x, sqe, K_SEND);
        arm_write_timer(c);
        return;
    }
    if (!x->chunk) {
        x->chunk = sr->nchunks ? sr->chunks[--sr->nchunks] : mi_malloc(CHUNK_SIZE);
        if (!x->chunk) { /* owner of a new one: this transfer, then the spare list */
            x->failed = true;
            return;
        }
    }
    uint32_t n = x->left < CHUNK_SIZE ? (uint32_t)x->left : CHUNK_SIZE;
    sqe = static_xfer_sqe(x);
    io_uring_prep_read(sqe, x->e->fd, x->chunk, n, x->off);
    static_xfer_submit(x, sqe, K_READ);
}

/* A non-blocking socket makes sendfile and the pipe -> socket splice return when the socket
 * is full instead of holding the ring thread or an io-wq worker until a slow reader drains
 * it; the ring's own send/recv ops do not depend on the flag. It stays for the connection's
 * life, so it is set once per connection, not once per body (one fcntl saved per request). */
static void socket_nonblocking(struct rh_conn *c)
{
    if (c->flags & C_NONBLOCK)
        return;
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    c->flags |= C_NONBLOCK;
}

static void pump_splice(struct static_xfer *x, struct rh_conn *c)
{
    struct io_uring_sqe *sqe;
    if (x->pipe[0] < 0) {
        if (pipe_acquire(x->sr, x) < 0) { /* out of fds: the copying path still works */
            x->mode = M_SEND;
            pump_send(x, c);
            return;
        }
        socket_nonblocking(c);
    }
    if (x->pipe_bytes && x->want_poll) {
        x->want_poll = false;
        sqe = static_xfer_sqe(x);
        io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
        static_xfer_submit(x, sqe, K_POLL);
        arm_write_timer(c);
        return;
    }
    if (x->pipe_bytes == 0) {
        uint32_t n = x->left < x->pipe_cap ? (uint32_t)x->left : x->pipe_cap;
        sqe = static_xfer_sqe(x);
        io_uring_prep_splice(sqe, x->e->fd, (int64_t)x->off, x->pipe[1], -1, n, 0);
        sqe->flags |= IOSQE_IO_LINK; /* the socket side follows at once; a short read
                                        breaks the link and the pump sends what came */
        static_xfer_submit(x, sqe, K_SPLICE_IN);
        x->splice_asked = n;
        x->pipe_bytes = n; /* provisional, corrected by the completion */
    }
    sqe = static_xfer_sqe(x);
    io_uring_prep_splice(sqe, x->pipe[0], -1, c->fd, -1, x->pipe_bytes, 0);
    static_xfer_submit(x, sqe, K_SPLICE_OUT);
    arm_write_timer(c);
}

/* Whether the pages of [x->off, x->off + len) are in the page cache and readable without
 * waiting: cachestat(2) counts them; pages present but still being read in (a readahead in
 * flight) would make sendfile wait, so a one-byte RWF_NOWAIT read of the window's last
 * byte must succeed too (readahead fills a window in order). A page evicted between this
 * check and the sendfile is read in on the ring thread: a rare, bounded stall. */
static bool window_resident(struct static_xfer *x, uint64_t len)
{
    struct static_ring *sr = x->sr;
    if (sr->no_cachestat)
        return false;
    struct rh_cachestat_range range = {.off = x->off, .len = len};
    struct rh_cachestat cs;
    if (syscall(SYS_CACHESTAT, x->e->fd, &range, &cs, 0) < 0) {
        if (errno == ENOSYS || errno == EPERM) /* an older kernel, or seccomp */
            sr->no_cachestat = true;
        return false;
    }
    uint64_t pages = (x->off + len - 1) / sr->page_size - x->off / sr->page_size + 1;
    if (cs.nr_cache < pages)
        return false;
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    return preadv2(x->e->fd, &iov, 1, (off_t)(x->off + len - 1), RWF_NOWAIT) == 1;
}

/* A window found cold: one unit through io-wq (a pipe-full spliced, or a chunk read and
 * sent), after which the pump checks the next window again. */
static void pump_cold(struct static_xfer *x, struct rh_conn *c)
{
    if (x->left >= x->m->splice_min || x->pipe_bytes)
        pump_splice(x, c);
    else
        pump_send(x, c);
}

static void poll_out(struct static_xfer *x, struct rh_conn *c)
{
    x->want_poll = false;
    struct io_uring_sqe *sqe = static_xfer_sqe(x);
    io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
    static_xfer_submit(x, sqe, K_POLL);
    arm_write_timer(c);
}

/* One sendfile(2) window, then POLLOUT through the ring for the next (it completes at once
 * while the socket has room); a cold window: one io-wq unit instead. Ends with an op in
 * flight, the body sent, or x->failed. checked: the first window was just found resident. */
static void pump_sendfile(struct static_xfer *x, struct rh_conn *c, bool checked)
{
    if (x->pipe_bytes || x->chunk_sent < x->chunk_len) { /* a cold unit still draining */
        pump_cold(x, c);
        return;
    }
    while (x->left && !x->failed) {
        if (x->want_poll) {
            poll_out(x, c);
            return;
        }
        uint64_t want = x->left < SENDFILE_MAX ? x->left : SENDFILE_MAX;
        if (!checked && !window_resident(x, want)) {
            pump_cold(x, c);
            return;
        }
        checked = false;
        off_t off = (off_t)x->off;
        ssize_t n = sendfile(c->fd, x->e->fd, &off, want);
        if (n > 0) {
            x->off += (uint64_t)n;
            x->left -= (uint64_t)n;
            /* Short: the socket buffer is full. Whole: the next window still waits for a
             * POLLOUT (at once when there is room), so one fast reader of a big file
             * cannot keep the ring thread from its other connections for more than a
             * window. */
            x->want_poll = true;
        } else if (n < 0 && errno == EAGAIN) {
            x->want_poll = true;
        } else if (!(n < 0 && errno == EINTR)) {
            x->failed = true; /* 0: the file shrank under us; else the peer left (EPIPE) */
        }
    }
}

/* The head waits in the connection's output (h1_resp_head_only); when nothing of the
 * connection is being sent it goes out here with MSG_MORE, and the first sendfile follows
 * at once: the kernel builds full segments from both instead of a small one for the head.
 * A head sent only in part leaves its rest to the connection's own send. */
static void send_head_more(struct static_xfer *x, struct rh_conn *c)
{
    struct rh_obuf *b = &c->pbuf;
    if ((c->flags & (C_SEND_INFLIGHT | C_BODY_INFLIGHT | C_CLOSING)) || b->len == b->sent)
        return;
    ssize_t n = send(c->fd, b->data + b->sent, b->len - b->sent,
                     MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0)
        return; /* EAGAIN and errors: the connection's send finds out */
    b->sent += (uint32_t)n;
    if (b->sent == b->len)
        b->len = b->sent = 0;
}

static void body_done(struct static_xfer *x);
static const struct h1_body_ops xfer_body_ops;

void static_xfer_body_start(struct static_xfer *x, uint64_t first, uint64_t len)
{
    struct rh_req *r = x->req;
    struct rh_conn *c = r->conn;
    x->off = first;
    x->left = len;
    x->mode = x->m->no_sendfile ? (len >= x->m->splice_min ? M_SPLICE : M_SEND) : M_SENDFILE;
    if (h1_resp_head_only(r, x->status, x->ctype, len) < 0) {
        static_xfer_free(x);
        if (c)
            conn_close(c); /* out of memory for the head: nothing sane to send */
        return;
    }
    h1_body_attach(r, &xfer_body_ops, x); /* proceeds once the head has drained */
    if (x->mode != M_SENDFILE)
        return;
    socket_nonblocking(c);
    uint64_t want = len < SENDFILE_MAX ? len : SENDFILE_MAX;
    if (!window_resident(x, want))
        return; /* cold: the pump starts it through io-wq once the head has gone */
    send_head_more(x, c);
    if (c->pbuf.len)
        return; /* the head (or earlier output) is still queued: the pump goes on after it */
    pump_sendfile(x, c, true);
    if (x->inflight)
        c->flags |= C_BODY_INFLIGHT;
    else if (!x->failed && x->left == 0)
        body_done(x);
    /* failed: the connection's next flush finds the head sent and calls the pump, which
     * closes it: nothing valid can follow. */
}

/* Ends a body sent in full: the connection goes on with the next request. */
static void body_done(struct static_xfer *x)
{
    struct rh_req *r = x->req;
    struct rh_conn *c = r->conn;
    rh_timer_cancel(&c->w->loop.wheel, &c->timer);
    static_xfer_free(x);
    h1_body_done(r);
}

/* The next piece of the body, once nothing of x is in flight: ends with an op in flight
 * (C_BODY_INFLIGHT), the body done, or the connection closing (failed mid-body). */
static void body_pump(struct static_xfer *x, struct rh_req *r)
{
    struct rh_conn *c = r->conn;
    if (x->inflight || (c->flags & C_CLOSING))
        return;
    if (x->failed) {
        conn_close(c); /* mid-body: nothing valid can follow; xfer_stop ends x */
        return;
    }
    if (x->left == 0 && x->pipe_bytes == 0 && x->chunk_sent == x->chunk_len) {
        body_done(x);
        return;
    }
    if (x->mode == M_SENDFILE)
        pump_sendfile(x, c, false);
    else if (x->mode == M_SPLICE)
        pump_splice(x, c);
    else
        pump_send(x, c);
    if (x->inflight)
        c->flags |= C_BODY_INFLIGHT;
    else if (x->failed)
        conn_close(c);
    else if (x->left == 0 && x->pipe_bytes == 0 && x->chunk_sent == x->chunk_len)
        body_done(x); /* sendfile sent the rest at once */
}

/* Body source proceed (http1/body_source.c): the connection can take more. The body goes to
 * the socket by ops of its own, so only once everything queued before it (the head) has
 * been sent: below the low-water mark with output still queued is not yet. Ring thread. */
static void xfer_proceed(struct rh_req *r, void *self)
{
    struct rh_conn *c = r->conn;
    if ((c->flags & C_SEND_INFLIGHT) || c->pbuf.len)
        return;
    body_pump(self, r);
}

/* Body source stop: the connection went away between ops (none of x in flight); r is an
 * orphan already. Frees x and ends r. Ring thread. */
static void xfer_stop(struct rh_req *r, void *self)
{
    static_xfer_free(self);
    h1_body_done(r);
}

static const struct h1_body_ops xfer_body_ops = {.proceed = xfer_proceed, .stop = xfer_stop};

/* A streaming op completed: account for it, then go on, or finish a close. */
void static_xfer_on_streaming(struct static_xfer *x, enum step_kind k, int res)
{
    struct rh_req *r = x->req;
    struct rh_conn *c = r->conn;
    switch (k) {
    case K_SPLICE_IN: {
        /* pipe_bytes counted the whole request at submit (the linked splice out was sized
         * by it); take back what did not come. Order-independent of the out completion. */
        uint32_t got = res > 0 ? (uint32_t)res : 0;
        x->pipe_bytes -= x->splice_asked - got;
        x->off += got;
        x->left -= got;
        if (res <= 0)
            x->failed = true; /* 0: the file shrank under us; < 0: an I/O error */
        break;
    }
    case K_SPLICE_OUT:
        if (res > 0) {
            x->pipe_bytes -= (uint32_t)res;
            x->want_poll = x->pipe_bytes > 0; /* short: the socket is full */
        } else if (res == -EAGAIN) {
            x->want_poll = true;
        } else if (res != -ECANCELED) {
            x->failed = true; /* 0 too: the pipe was empty, our count is wrong: stop */
        }
        break;
    case K_POLL:
        if (res < 0)
            x->failed = true;
        break;
    case K_READ:
        if (res > 0) {
            x->chunk_len = (uint32_t)res;
            x->chunk_sent = 0;
            x->off += (uint64_t)res;
            x->left -= (uint64_t)res;
        } else {
            x->failed = true;
        }
        break;
    case K_SEND:
        if (res > 0)
            x->chunk_sent += (uint32_t)res;
        else
            x->failed = true;
        break;
    default:
        break;
    }
    if (x->inflight)
        return;
    c->flags &= ~C_BODY_INFLIGHT;
    if (c->flags & C_CLOSING) {
        conn_finish_close(c); /* the connection's close goes on: xfer_stop ends x and r */
        return;
    }
    body_pump(x, r);
}
