/* The fake kernel: plays the SQEs conn.c prepares the way io_uring would, for every socket
 * of the input at once, and posts completions the harness dispatches through the loop's
 * real handlers. The provided buffers are one ring shared by all sockets, as in the server.
 * It checks what a kernel cannot: one multishot recv and one send at most per socket, every
 * op on a socket carrying that socket's connection (slot and generation: an op meant for a
 * closed connection must not land on the fd's next owner), nothing submitted on a closed fd
 * or sent after shutdown(SHUT_WR), the fd closed only once no send reads our memory and its
 * recv is cancelled or ended by a close's shutdown(SHUT_RD), every provided buffer recycled exactly once (and not read after). */
#include <errno.h>
#include <sanitizer/asan_interface.h>
#include <string.h>
#include <sys/socket.h>

#include "tests/fuzz/fuzz.h"

static struct world *loop_world(struct rh_loop *loop) { return world_of(loop->owner); }
static void post(struct fz_ring *k, uint64_t ud, int32_t res, uint32_t flags, int sock);

struct fz_sock *sock_by_fd(struct world *W, int fd)
{
    for (unsigned i = 0; i < W->k.nsocks; i++)
        if (W->k.socks[i].fd == fd && W->k.socks[i].fd_open)
            return &W->k.socks[i];
    return NULL;
}

struct fz_sock *sock_of_conn(struct world *W, const struct rh_conn *c)
{
    struct fz_sock *s = sock_by_fd(W, c->fd);
    FZ_CHECK(s && s->bound && s->idx == c->idx && s->gen == c->gen,
             "slot %u (gen %u) has fd %d, which is not the socket accepted into it", c->idx,
             c->gen, c->fd);
    return s;
}

struct rh_conn *conn_of_sock(struct world *W, const struct fz_sock *s)
{
    if (!s || !s->bound)
        return NULL;
    struct rh_conn *c = &W->conns[s->idx];
    return conn_live(c) && c->gen == s->gen && c->fd == s->fd ? c : NULL;
}

/* ---- wrapped: what conn.c calls ---- */

struct io_uring_sqe *__wrap_rh_loop_sqe(struct rh_loop *loop);
struct io_uring_sqe *__wrap_rh_loop_sqe(struct rh_loop *loop)
{
    struct fz_ring *k = &loop_world(loop)->k;
    FZ_CHECK(k->nsqes < FZ_MAX_SQES, "more SQEs in one iteration than any path prepares");
    struct io_uring_sqe *sqe = &k->sqes[k->nsqes++];
    memset(sqe, 0, sizeof(*sqe));
    return sqe;
}

void __wrap_rh_loop_buf_recycle(struct rh_loop *loop, unsigned bid);
void __wrap_rh_loop_buf_recycle(struct rh_loop *loop, unsigned bid)
{
    struct fz_ring *k = &loop_world(loop)->k;
    FZ_CHECK(bid < k->nbufs && k->buf_lent[bid], "recycled buffer %u twice or never lent", bid);
    k->buf_lent[bid] = false;
    ASAN_POISON_MEMORY_REGION(k->bufs + (size_t)bid * k->buf_size, k->buf_size);
}

int __real_shutdown(int fd, int how);
int __wrap_shutdown(int fd, int how);
int __wrap_shutdown(int fd, int how)
{
    if (fd < FZ_FD_BASE)
        return __real_shutdown(fd, how);
    struct world *W = fz_current;
    struct fz_sock *s = sock_by_fd(W, fd);
    FZ_CHECK(s && s->bound, "shutdown of fd %d: no connection's socket", fd);
    struct rh_conn *c = conn_of_sock(W, s);
    FZ_CHECK(c, "shutdown of fd %d: its connection is gone", fd);
    if (how == SHUT_RD || how == SHUT_RDWR) { /* a close: wakes the socket's ops, they end */
        FZ_CHECK(c->flags & C_CLOSING, "shutdown(%d) of a connection not closing", how);
        if (s->recv_armed) {
            post(&W->k, s->recv_ud, 0, 0, (int)(s - W->k.socks));
            s->recv_armed = false;
        }
        if (how == SHUT_RDWR && s->send_armed) {
            post(&W->k, s->send_ud, -EPIPE, 0, (int)(s - W->k.socks));
            s->send_armed = false;
        }
        s->close_shut = true;
        return 0;
    }
    FZ_CHECK(how == SHUT_WR, "shutdown how=%d", how);
    FZ_CHECK(!s->send_armed, "shutdown(SHUT_WR) with a send in flight");
    FZ_CHECK(!c->req, "write side shut while a request is still being answered");
    FZ_CHECK(verify_at_close(&s->v),
             "write side shut before the response stream ended (state %d at byte %llu)",
             s->v.st, (unsigned long long)s->v.pos);
    s->wr_shut = true;
    return 0;
}

/* close(2) on a fake fd: only an accepted socket the server refused (no free slot, or
 * draining); a connection's fd is closed by a ring op, after its ops. */
int __real_close(int fd);
int __wrap_close(int fd);
int __wrap_close(int fd)
{
    if (fd < FZ_FD_BASE)
        return __real_close(fd);
    struct fz_sock *s = sock_by_fd(fz_current, fd);
    FZ_CHECK(s && !s->bound, "close(2) of fd %d, %s", fd,
             s ? "a connection's socket (ring close only)" : "not open");
    s->fd_open = false;
    s->refused = true;
    return 0;
}

/* ---- set-up ---- */

void ring_init(struct world *W, unsigned nbufs, unsigned buf_size)
{
    struct fz_ring *k = &W->k;
    memset(k, 0, sizeof(*k));
    k->nbufs = nbufs;
    k->buf_size = buf_size;
    k->bufs = malloc((size_t)nbufs * buf_size);
    ASAN_POISON_MEMORY_REGION(k->bufs, (size_t)nbufs * buf_size);
    W->w.loop.bufs.bufs = k->bufs; /* rh_loop_buf() reads these two */
    W->w.loop.bufs.size = buf_size;
    W->w.loop.bufs.count = nbufs;
}

void ring_fini(struct world *W)
{
    struct fz_ring *k = &W->k;
    for (unsigned i = 0; i < k->nsocks; i++)
        verify_free(&k->socks[i].v);
    ASAN_UNPOISON_MEMORY_REGION(k->bufs, (size_t)k->nbufs * k->buf_size);
    free(k->bufs);
    k->bufs = NULL;
}

/* The listener's multishot accept yields one connection and ends (the loop counted it in
 * flight while armed). The fd is the lowest one free, as the kernel picks it: a closed
 * connection's number comes back for the next client. */
struct fz_sock *ring_accept(struct world *W, unsigned stream)
{
    struct fz_ring *k = &W->k;
    if (k->nsocks == FZ_MAX_SOCKS)
        return NULL;
    int fd = FZ_FD_BASE;
    while (sock_by_fd(W, fd))
        fd++;
    struct fz_sock *s = &k->socks[k->nsocks++];
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->stream = stream;
    s->fd_open = true;
    W->w.accept_armed = true;
    W->w.loop.inflight++;
    post(k, rh_ud_make(CONN_OP_ACCEPT, 0, 0), fd, 0, (int)(s - k->socks));
    return s;
}

/* After the server saw the accept: the slot it took the socket into, or its refusal. */
static void bind_accepted(struct world *W, struct fz_sock *s)
{
    for (uint32_t i = 0; i < W->srv.cfg.max_conns; i++) {
        struct rh_conn *c = &W->conns[i];
        if (conn_live(c) && c->fd == s->fd && !(c->flags & C_CLOSING) && s->fd_open) {
            s->bound = true;
            s->idx = c->idx;
            s->gen = c->gen;
            return;
        }
    }
    FZ_CHECK(s->refused, "accepted fd %d neither opened nor closed", s->fd);
}

/* ---- the queues ---- */

static void post(struct fz_ring *k, uint64_t ud, int32_t res, uint32_t flags, int sock)
{
    FZ_CHECK(k->cq_tail - k->cq_head < FZ_MAX_CQES, "completion queue overflow");
    k->cqes[k->cq_tail++ % FZ_MAX_CQES] = (struct fz_cqe){ud, res, flags, sock};
}

static void ignore_cqe(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        rh_loop_op_done(loop); /* as loop.c does for ops nobody waits for */
}

void ring_dispatch(struct world *W)
{
    struct fz_ring *k = &W->k;
    struct rh_loop *loop = &W->w.loop;
    while (k->cq_head != k->cq_tail) {
        struct fz_cqe e = k->cqes[k->cq_head++ % FZ_MAX_CQES];
        struct io_uring_cqe cqe = {.user_data = e.ud, .res = e.res, .flags = e.flags};
        unsigned op = rh_ud_op(e.ud);
        if (op == CONN_OP_SEND && e.res > 0) /* the server's wbuf.sent moves in this dispatch */
            k->socks[e.sock].acked += (uint64_t)e.res;
        FZ_CHECK(loop->inflight > 0 || (e.flags & IORING_CQE_F_MORE),
                 "a final completion with no op counted in flight (op %d)", op);
        rh_cqe_fn fn = op < RH_OP_MAX ? loop->handlers[op] : NULL;
        (fn ? fn : ignore_cqe)(loop, &cqe);
        if (op == CONN_OP_ACCEPT)
            bind_accepted(W, &k->socks[e.sock]);
    }
}

/* ---- the kernel ---- */

static int sock_index(struct world *W, const struct fz_sock *s) { return (int)(s - W->k.socks); }

/* An op on a socket must name the connection the socket was accepted into. */
static struct fz_sock *op_sock(struct world *W, const struct io_uring_sqe *sqe, const char *what)
{
    struct fz_sock *s = sock_by_fd(W, sqe->fd);
    FZ_CHECK(s && s->bound, "%s on fd %d: no open connection socket", what, sqe->fd);
    uint64_t ud = sqe->user_data;
    FZ_CHECK(rh_ud_idx(ud) == s->idx && rh_ud_gen(ud) == (s->gen & 0xffffff),
             "%s on fd %d for slot %u gen %u: the socket is slot %u gen %u's", what, sqe->fd,
             rh_ud_idx(ud), rh_ud_gen(ud), s->idx, s->gen & 0xffffff);
    return s;
}

static int cancel(struct world *W, const struct io_uring_sqe *sqe)
{
    struct fz_ring *k = &W->k;
    bool by_fd = sqe->cancel_flags & IORING_ASYNC_CANCEL_FD;
    int n = 0;
    struct fz_sock *only = NULL;
    if (by_fd) {
        only = sock_by_fd(W, sqe->fd);
        FZ_CHECK(only, "cancel on fd %d: not open", sqe->fd);
    }
    for (unsigned i = 0; i < k->nsocks; i++) {
        struct fz_sock *s = &k->socks[i];
        if (only && s != only)
            continue;
        if (s->recv_armed && (by_fd || sqe->addr == s->recv_ud)) {
            post(k, s->recv_ud, -ECANCELED, 0, (int)i);
            s->recv_armed = false;
            n++;
        }
        if (s->send_armed && (by_fd || sqe->addr == s->send_ud)) {
            post(k, s->send_ud, -ECANCELED, 0, (int)i);
            s->send_armed = false;
            n++;
        }
    }
    int res = n ? (by_fd ? n : 0) : -ENOENT;
    post(k, sqe->user_data, res, 0, -1);
    return res;
}

/* One SQE; its result when it completes at once (cancel, close), else 0. */
static int submit_one(struct world *W, const struct io_uring_sqe *sqe)
{
    struct fz_ring *k = &W->k;
    struct fz_sock *s;
    switch (sqe->opcode) {
    case IORING_OP_RECV:
        s = op_sock(W, sqe, "recv");
        FZ_CHECK((sqe->ioprio & IORING_RECV_MULTISHOT) && (sqe->flags & IOSQE_BUFFER_SELECT),
                 "recv is not multishot from the buffer ring");
        FZ_CHECK(!s->recv_armed, "a second multishot recv armed on one socket");
        if (s->close_shut) { /* read side shut by the close: recvmsg says 0 at once */
            post(k, sqe->user_data, 0, 0, sock_index(W, s));
            return 0;
        }
        s->recv_armed = true;
        s->recv_ud = sqe->user_data;
        return 0;
    case IORING_OP_SEND:
        s = op_sock(W, sqe, "send");
        FZ_CHECK(!s->wr_shut, "send after shutdown(SHUT_WR): the peer never gets it");
        if (s->close_shut) { /* queued before the close's shutdown: fails at once */
            const struct rh_conn *c = &W->conns[s->idx];
            FZ_CHECK(c->gen != s->gen || (c->flags & C_CLOSING), "send after a close's shutdown");
            post(k, sqe->user_data, -EPIPE, 0, sock_index(W, s));
            return 0;
        }
        FZ_CHECK(!s->send_armed, "two sends in flight on one socket");
        FZ_CHECK(sqe->len > 0, "empty send");
        s->send_armed = true;
        s->send_ud = sqe->user_data;
        s->send_addr = (const char *)(uintptr_t)sqe->addr;
        s->send_len = sqe->len;
        return 0;
    case IORING_OP_ASYNC_CANCEL:
        return cancel(W, sqe);
    case IORING_OP_CLOSE:
        s = sock_by_fd(W, sqe->fd);
        FZ_CHECK(s && s->bound, "close of fd %d: no open connection socket", sqe->fd);
        FZ_CHECK(!conn_of_sock(W, s), "fd %d closed under its live connection", sqe->fd);
        FZ_CHECK(!s->send_armed, "fd closed with a send in flight (it reads our buffer)");
        FZ_CHECK(!s->recv_armed, "fd closed with its multishot recv never cancelled: the "
                 "recv holds the socket open");
        s->fd_open = false; /* its number is free for the next accept */
        post(k, sqe->user_data, 0, 0, sock_index(W, s));
        return 0;
    default:
        FZ_CHECK(false, "unexpected opcode %u", sqe->opcode);
        return 0;
    }
}

/* In order, with io_uring's link rule: an op that fails breaks its chain (IOSQE_IO_LINK),
 * and the rest of the chain completes with -ECANCELED without running (a hard link goes
 * on). */
void ring_submit(struct world *W)
{
    struct fz_ring *k = &W->k;
    bool broken = false;
    for (unsigned i = 0; i < k->nsqes; i++) {
        const struct io_uring_sqe *sqe = &k->sqes[i];
        int res;
        if (broken) {
            post(k, sqe->user_data, -ECANCELED, 0, -1);
            res = -ECANCELED;
        } else {
            res = submit_one(W, sqe);
        }
        if (sqe->flags & IOSQE_IO_HARDLINK)
            continue;
        broken = (sqe->flags & IOSQE_IO_LINK) && (broken || res < 0);
    }
    k->nsqes = 0;
}

unsigned ring_pending(const struct world *W, uint8_t opcode, int fd)
{
    unsigned n = 0;
    for (unsigned i = 0; i < W->k.nsqes; i++)
        n += W->k.sqes[i].opcode == opcode && W->k.sqes[i].fd == fd;
    return n;
}

unsigned ring_finals_posted(const struct world *W)
{
    unsigned n = 0;
    for (unsigned i = W->k.cq_head; i != W->k.cq_tail; i++)
        n += !(W->k.cqes[i % FZ_MAX_CQES].flags & IORING_CQE_F_MORE);
    return n;
}

bool ring_posted(const struct world *W, uint64_t ud)
{
    for (unsigned i = W->k.cq_head; i != W->k.cq_tail; i++)
        if (W->k.cqes[i % FZ_MAX_CQES].ud == ud)
            return true;
    return false;
}

unsigned ring_bufs_lent(const struct world *W)
{
    unsigned n = 0;
    for (unsigned i = 0; i < W->k.nbufs; i++)
        n += W->k.buf_lent[i];
    return n;
}

/* Data arrives: one provided buffer's worth. false if no recv is armed (nothing consumed);
 * with every buffer lent out (to any socket), the kernel ends the multishot with -ENOBUFS. */
bool ring_recv(struct world *W, struct fz_sock *s, const char *data, uint32_t n, bool final)
{
    struct fz_ring *k = &W->k;
    if (!s->recv_armed)
        return false;
    unsigned bid = 0;
    while (bid < k->nbufs && k->buf_lent[bid])
        bid++;
    if (bid == k->nbufs) {
        ring_recv_nobufs(W, s);
        return false;
    }
    FZ_CHECK(n > 0 && n <= k->buf_size, "recv of %u bytes into %u-byte buffers", n, k->buf_size);
    char *buf = k->bufs + (size_t)bid * k->buf_size;
    ASAN_UNPOISON_MEMORY_REGION(buf, k->buf_size);
    memcpy(buf, data, n);
    k->buf_lent[bid] = true;
    uint32_t flags = IORING_CQE_F_BUFFER | (bid << IORING_CQE_BUFFER_SHIFT);
    post(k, s->recv_ud, (int32_t)n, final ? flags : flags | IORING_CQE_F_MORE,
         sock_index(W, s));
    if (final)
        s->recv_armed = false;
    return true;
}

void ring_recv_nobufs(struct world *W, struct fz_sock *s)
{
    if (!s->recv_armed)
        return;
    post(&W->k, s->recv_ud, -ENOBUFS, 0, sock_index(W, s));
    s->recv_armed = false;
}

void ring_deliver_eof(struct world *W)
{
    struct fz_ring *k = &W->k;
    for (unsigned i = 0; i < k->nsocks; i++) {
        struct fz_sock *s = &k->socks[i];
        if (!s->recv_armed || !(s->eof_pending || s->rst_pending))
            continue;
        post(k, s->recv_ud, s->rst_pending ? -ECONNRESET : 0, 0, (int)i);
        s->recv_armed = false;
        s->eof_pending = s->rst_pending = false;
    }
}

/* The send in flight completes with up to max bytes (a short write when fewer). The bytes
 * are read here, at completion: until then the buffer is the kernel's. */
void ring_complete_send(struct world *W, struct fz_sock *s, uint32_t max)
{
    if (!s->send_armed || max == 0)
        return;
    uint32_t n = s->send_len < max ? s->send_len : max;
    if (W->nstreams > 1)
        for (uint32_t i = 0; i < n; i++)
            FZ_CHECK(!FZ_IS_TAG(s->send_addr[i]) ||
                         (unsigned char)s->send_addr[i] == FZ_TAG(s->stream),
                     "stream %u's response carries stream %u's byte (at %llu)", s->stream,
                     (unsigned char)s->send_addr[i] - 0xF0u,
                     (unsigned long long)(s->v.pos + i));
    verify_bytes(&s->v, s->send_addr, n);
    post(&W->k, s->send_ud, (int32_t)n, 0, sock_index(W, s));
    s->send_armed = false;
}

void ring_complete_sends(struct world *W, bool stalled_too)
{
    for (unsigned i = 0; i < W->k.nsocks; i++) {
        struct fz_sock *s = &W->k.socks[i];
        if (stalled_too)
            s->stalled = false;
        if (!s->stalled)
            ring_complete_send(W, s, UINT32_MAX);
    }
}

void ring_fail_send(struct world *W, struct fz_sock *s, int err)
{
    if (!s->send_armed)
        return;
    post(&W->k, s->send_ud, err, 0, sock_index(W, s));
    s->send_armed = false;
}
