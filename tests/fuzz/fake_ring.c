/* The fake kernel: plays the SQEs conn.c prepares the way io_uring would for one socket, and
 * posts completions the harness dispatches through the loop's real handlers. It checks what
 * a kernel cannot: one multishot recv and one send at most per socket, nothing submitted on
 * a closed fd or sent after shutdown(SHUT_WR), the fd closed only once no send reads our
 * memory and its recv is cancelled or ended by shutdown(SHUT_RD), every provided buffer recycled exactly once (and not
 * read after). */
#include <errno.h>
#include <sanitizer/asan_interface.h>
#include <string.h>
#include <sys/socket.h>

#include "tests/fuzz/fuzz.h"

static struct world *loop_world(struct rh_loop *loop) { return world_of(loop->owner); }
static void post(struct fz_ring *k, uint64_t ud, int32_t res, uint32_t flags);

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
    struct fz_ring *k = &W->k;
    FZ_CHECK(fd == k->fd && k->fd_open, "shutdown of fd %d (socket %d, open %d)", fd, k->fd,
             k->fd_open);
    if (how == SHUT_RD || how == SHUT_RDWR) { /* a close: wakes the socket's ops, they end */
        FZ_CHECK(W->conns[0].flags & C_CLOSING, "shutdown(%d) of a connection not closing", how);
        if (k->recv_armed) {
            post(k, k->recv_ud, 0, 0);
            k->recv_armed = false;
        }
        if (how == SHUT_RDWR && k->send_armed) {
            post(k, k->send_ud, -EPIPE, 0);
            k->send_armed = false;
        }
        k->close_shut = true;
        return 0;
    }
    FZ_CHECK(how == SHUT_WR, "shutdown how=%d", how);
    FZ_CHECK(!k->send_armed, "shutdown(SHUT_WR) with a send in flight");
    FZ_CHECK(!W->conns[0].req, "write side shut while a request is still being answered");
    FZ_CHECK(verify_at_close(&W->v),
             "write side shut before the response stream ended (state %d at byte %llu)",
             W->v.st, (unsigned long long)W->v.pos);
    k->wr_shut = true;
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
    ASAN_UNPOISON_MEMORY_REGION(k->bufs, (size_t)k->nbufs * k->buf_size);
    free(k->bufs);
    k->bufs = NULL;
}

static void post(struct fz_ring *k, uint64_t ud, int32_t res, uint32_t flags);

/* The listener's multishot accept yields one connection and ends (the loop counted it in
 * flight while armed). */
void ring_accept(struct world *W, int fd)
{
    struct fz_ring *k = &W->k;
    FZ_CHECK(!k->fd_open && !k->recv_armed && !k->send_armed, "new socket over a live one");
    k->fd = fd;
    k->fd_open = true;
    k->wr_shut = k->close_shut = k->eof_pending = k->rst_pending = false;
    k->acked = 0;
    W->w.accept_armed = true;
    W->w.loop.inflight++;
    post(k, rh_ud_make(CONN_OP_ACCEPT, 0, 0), fd, 0);
}

/* ---- the queues ---- */

static void post(struct fz_ring *k, uint64_t ud, int32_t res, uint32_t flags)
{
    FZ_CHECK(k->cq_tail - k->cq_head < FZ_MAX_CQES, "completion queue overflow");
    k->cqes[k->cq_tail++ % FZ_MAX_CQES] = (struct fz_cqe){ud, res, flags};
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
        if (op == CONN_OP_SEND && e.res > 0)
            k->acked += (uint64_t)e.res; /* the server's wbuf.sent moves in this dispatch */
        FZ_CHECK(loop->inflight > 0 || (e.flags & IORING_CQE_F_MORE),
                 "a final completion with no op counted in flight (op %d)", op);
        rh_cqe_fn fn = op < RH_OP_MAX ? loop->handlers[op] : NULL;
        (fn ? fn : ignore_cqe)(loop, &cqe);
    }
}

/* ---- the kernel ---- */

static void cancel(struct fz_ring *k, const struct io_uring_sqe *sqe)
{
    bool by_fd = sqe->cancel_flags & IORING_ASYNC_CANCEL_FD;
    int n = 0;
    if (by_fd)
        FZ_CHECK(sqe->fd == k->fd && k->fd_open, "cancel on fd %d (socket %d)", sqe->fd, k->fd);
    if (k->recv_armed && (by_fd || sqe->addr == k->recv_ud)) {
        post(k, k->recv_ud, -ECANCELED, 0);
        k->recv_armed = false;
        n++;
    }
    if (k->send_armed && (by_fd || sqe->addr == k->send_ud)) {
        post(k, k->send_ud, -ECANCELED, 0);
        k->send_armed = false;
        n++;
    }
    post(k, sqe->user_data, n ? (by_fd ? n : 0) : -ENOENT, 0);
}

void ring_submit(struct world *W)
{
    struct fz_ring *k = &W->k;
    for (unsigned i = 0; i < k->nsqes; i++) {
        const struct io_uring_sqe *sqe = &k->sqes[i];
        switch (sqe->opcode) {
        case IORING_OP_RECV:
            FZ_CHECK(sqe->fd == k->fd && k->fd_open, "recv on fd %d (socket %d, open %d)",
                     sqe->fd, k->fd, k->fd_open);
            FZ_CHECK((sqe->ioprio & IORING_RECV_MULTISHOT) &&
                         (sqe->flags & IOSQE_BUFFER_SELECT),
                     "recv is not multishot from the buffer ring");
            FZ_CHECK(!k->recv_armed, "a second multishot recv armed on one socket");
            if (k->close_shut) { /* read side shut by the close: recvmsg says 0 at once */
                post(k, sqe->user_data, 0, 0);
                break;
            }
            k->recv_armed = true;
            k->recv_ud = sqe->user_data;
            break;
        case IORING_OP_SEND:
            FZ_CHECK(sqe->fd == k->fd && k->fd_open, "send on fd %d (socket %d, open %d)",
                     sqe->fd, k->fd, k->fd_open);
            FZ_CHECK(!k->wr_shut, "send after shutdown(SHUT_WR): the peer never gets it");
            if (k->close_shut) { /* queued before the close's shutdown: fails at once */
                FZ_CHECK(W->conns[0].flags & C_CLOSING, "send after a close's shutdown");
                post(k, sqe->user_data, -EPIPE, 0);
                break;
            }
            FZ_CHECK(!k->send_armed, "two sends in flight on one socket");
            FZ_CHECK(sqe->len > 0, "empty send");
            k->send_armed = true;
            k->send_ud = sqe->user_data;
            k->send_addr = (const char *)(uintptr_t)sqe->addr;
            k->send_len = sqe->len;
            break;
        case IORING_OP_ASYNC_CANCEL:
            cancel(k, sqe);
            break;
        case IORING_OP_CLOSE:
            FZ_CHECK(sqe->fd == k->fd && k->fd_open, "close of fd %d (socket %d, open %d)",
                     sqe->fd, k->fd, k->fd_open);
            FZ_CHECK(!k->send_armed, "fd closed with a send in flight (it reads our buffer)");
            FZ_CHECK(!k->recv_armed, "fd closed with its multishot recv never cancelled: the "
                     "recv holds the socket open");
            k->fd_open = false;
            post(k, sqe->user_data, 0, 0);
            break;
        default:
            FZ_CHECK(false, "unexpected opcode %u", sqe->opcode);
        }
    }
    k->nsqes = 0;
}

unsigned ring_pending(const struct world *W, uint8_t opcode)
{
    unsigned n = 0;
    for (unsigned i = 0; i < W->k.nsqes; i++)
        n += W->k.sqes[i].opcode == opcode;
    return n;
}

unsigned ring_finals_posted(const struct world *W)
{
    unsigned n = 0;
    for (unsigned i = W->k.cq_head; i != W->k.cq_tail; i++)
        n += !(W->k.cqes[i % FZ_MAX_CQES].flags & IORING_CQE_F_MORE);
    return n;
}

unsigned ring_bufs_lent(const struct world *W)
{
    unsigned n = 0;
    for (unsigned i = 0; i < W->k.nbufs; i++)
        n += W->k.buf_lent[i];
    return n;
}

/* Data arrives: one provided buffer's worth. false if no recv is armed (nothing consumed);
 * with every buffer lent out, the kernel ends the multishot with -ENOBUFS instead. */
bool ring_recv(struct world *W, const char *data, uint32_t n, bool final)
{
    struct fz_ring *k = &W->k;
    if (!k->recv_armed)
        return false;
    unsigned bid = 0;
    while (bid < k->nbufs && k->buf_lent[bid])
        bid++;
    if (bid == k->nbufs) {
        ring_recv_nobufs(W);
        return false;
    }
    FZ_CHECK(n > 0 && n <= k->buf_size, "recv of %u bytes into %u-byte buffers", n, k->buf_size);
    char *buf = k->bufs + (size_t)bid * k->buf_size;
    ASAN_UNPOISON_MEMORY_REGION(buf, k->buf_size);
    memcpy(buf, data, n);
    k->buf_lent[bid] = true;
    uint32_t flags = IORING_CQE_F_BUFFER | (bid << IORING_CQE_BUFFER_SHIFT);
    post(k, k->recv_ud, (int32_t)n, final ? flags : flags | IORING_CQE_F_MORE);
    if (final)
        k->recv_armed = false;
    return true;
}

void ring_recv_nobufs(struct world *W)
{
    struct fz_ring *k = &W->k;
    if (!k->recv_armed)
        return;
    post(k, k->recv_ud, -ENOBUFS, 0);
    k->recv_armed = false;
}

void ring_deliver_eof(struct world *W)
{
    struct fz_ring *k = &W->k;
    if (!k->recv_armed || !(k->eof_pending || k->rst_pending))
        return;
    post(k, k->recv_ud, k->rst_pending ? -ECONNRESET : 0, 0);
    k->recv_armed = false;
    k->eof_pending = k->rst_pending = false;
}

/* The send in flight completes with up to max bytes (a short write when fewer). The bytes
 * are read here, at completion: until then the buffer is the kernel's. */
void ring_complete_send(struct world *W, uint32_t max)
{
    struct fz_ring *k = &W->k;
    if (!k->send_armed || max == 0)
        return;
    uint32_t n = k->send_len < max ? k->send_len : max;
    verify_bytes(&W->v, k->send_addr, n);
    post(k, k->send_ud, (int32_t)n, 0);
    k->send_armed = false;
}

void ring_fail_send(struct world *W, int err)
{
    struct fz_ring *k = &W->k;
    if (!k->send_armed)
        return;
    post(k, k->send_ud, err, 0);
    k->send_armed = false;
}
