/* Connections: accept, multishot recv into the connection's input buffer, the send path
 * (one send per connection per loop iteration, covering every response queued), timers,
 * and the close sequence (cancel -> wait for in-flight ops -> close fd -> free slot). */
#include <assert.h>
#include <errno.h>
#include <mimalloc.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/freelist.h"
#include "conn/conn.h"

static struct rh_worker *loop_worker(struct rh_loop *loop) { return loop->owner; }

/* The slot a completion names, or NULL if it is stale (the slot was freed and reused). */
static struct rh_conn *conn_of(struct rh_worker *w, uint64_t ud)
{
    uint32_t idx = rh_ud_idx(ud);
    if (idx >= w->srv->cfg.max_conns)
        return NULL;
    struct rh_conn *c = &w->conns[idx];
    return (conn_live(c) && (c->gen & 0xffffff) == rh_ud_gen(ud)) ? c : NULL;
}

static uint64_t conn_ud(const struct rh_conn *c, unsigned op)
{
    return rh_ud_make(op, c->idx, c->gen);
}

/* ---- input buffers ---- */

static char *in_block_get(struct rh_worker *w)
{
    char *b = rh_freelist_pop(&w->free_in, &w->nfree_in);
    if (b)
        return b;
    return mi_malloc(RH_IN_BLOCK); /* owner: a connection, then the worker's free list */
}

static void in_block_put(struct rh_worker *w, char *b)
{
    if (!rh_freelist_push(&w->free_in, &w->nfree_in, RH_FREE_BLOCKS_MAX, b))
        mi_free(b);
}

static void compact_input(struct rh_conn *c)
{
    const char *from = c->w->srv->proto->input_keep(c);
    uint32_t drop = (uint32_t)(from - c->in);
    if (drop == 0)
        return;
    memmove(c->in, from, c->in_len - drop);
    c->in_len -= drop;
    c->in_off -= drop;
    if (c->req)
        c->w->srv->proto->input_moved(c, drop);
}

/* Copies n bytes into the input buffer if they fit (compacting first if needed). */
static bool input_append(struct rh_conn *c, const char *data, uint32_t n)
{
    if (!c->in)
        c->in = in_block_get(c->w);
    if (c->in_len + n > RH_IN_BLOCK)
        compact_input(c);
    if (c->in_len + n > RH_IN_BLOCK)
        return false;
    memcpy(c->in + c->in_len, data, n);
    c->in_len += n;
    return true;
}

static void hold_buffer(struct rh_conn *c, unsigned bid, uint32_t len)
{
    struct rh_worker *w = c->w;
    w->held_total++;
    w->held_next[bid] = RH_NO_BUF;
    w->held_len[bid] = len;
    if (c->held_tail == RH_NO_BUF)
        c->held_head = (uint16_t)bid;
    else
        w->held_next[c->held_tail] = (uint16_t)bid;
    c->held_tail = (uint16_t)bid;
    c->nheld++;
}

/* Moves as much of the spill as fits into the input buffer. */
static void drain_spill(struct rh_conn *c)
{
    uint32_t left = c->spill_len - c->spill_off;
    if (left == 0)
        return;
    if (!c->in)
        c->in = in_block_get(c->w);
    if (c->in_len + left > RH_IN_BLOCK)
        compact_input(c);
    c->in_len += conn_spill_take(c, c->in + c->in_len, RH_IN_BLOCK - c->in_len);
}

static bool input_pending(const struct rh_conn *c)
{
    return c->held_head != RH_NO_BUF || c->spill_off != c->spill_len;
}

/* Moves held provided buffers, then the spill, into the input buffer while they fit, in
 * arrival order. */
static void drain_held(struct rh_conn *c)
{
    struct rh_worker *w = c->w;
    while (c->held_head != RH_NO_BUF) {
        unsigned bid = c->held_head;
        if (!input_append(c, rh_loop_buf(&w->loop, bid), w->held_len[bid]))
            return;
        c->held_head = w->held_next[bid];
        if (c->held_head == RH_NO_BUF)
            c->held_tail = RH_NO_BUF;
        c->nheld--;
        w->held_total--;
        rh_loop_buf_recycle(&w->loop, bid);
    }
    drain_spill(c);
}

static void drop_held(struct rh_conn *c)
{
    while (c->held_head != RH_NO_BUF) {
        unsigned bid = c->held_head;
        c->held_head = c->w->held_next[bid];
        rh_loop_buf_recycle(&c->w->loop, bid);
    }
    c->w->held_total -= c->nheld;
    c->held_tail = RH_NO_BUF;
    c->nheld = 0;
    conn_spill_free(c);
}

/* ---- timers ---- */

static void conn_arm_timer(struct rh_conn *c, unsigned ms)
{
    rh_loop_timer_arm(&c->w->loop, &c->timer, ms);
}

void conn_arm_phase_deadline(struct rh_conn *c, unsigned ms)
{
    c->phase_deadline_ms = c->w->loop.now_ms + ms;
    if (c->phase == PH_BODY) /* the minimum body rate's window may end first */
        c->phase_deadline_ms = c->w->srv->proto->body_deadline(c, c->phase_deadline_ms);
    if (!(c->flags & C_SEND_INFLIGHT)) /* else the write timeout runs; restored after */
        rh_timer_arm(&c->w->loop.wheel, &c->timer, c->phase_deadline_ms);
}

/* A request is with its handler, unanswered, under a deadline. */
static bool handler_waiting(const struct rh_conn *c)
{
    return c->phase == PH_HANDLER && c->req && !c->w->srv->proto->resp_started(c->req) &&
           c->w->srv->cfg.handler_timeout_ms;
}

/* After a send: the head or body being read keeps its own deadline (regression: a
 * pipelined partial head was left with none, a slow-loris hole). */
static void restore_phase_timer(struct rh_conn *c)
{
    if (c->phase == PH_HEAD || c->phase == PH_BODY || handler_waiting(c))
        rh_timer_arm(&c->w->loop.wheel, &c->timer, c->phase_deadline_ms);
    else
        rh_timer_cancel(&c->w->loop.wheel, &c->timer);
}

/* A closing connection waits for its send's final completion (the kernel reads our buffer
 * until then). It was cancelled when the close began, so it comes back at once; if it has
 * not within close_wait_ms(), the kernel dropped it (CQ overflow it could not keep): stop
 * waiting rather than hold the slot for ever. */
static void close_wait_expired(struct rh_conn *c)
{
    if (!conn_live(c) || !(c->flags & C_SEND_INFLIGHT))
        return;
    c->flags &= ~C_SEND_INFLIGHT;
    struct rh_worker *w = c->w;
    conn_finish_close(c);
    conn_stat_add(&w->stats.close_forced, 1); /* after: a reader seeing it sees the slot free */
}

static void conn_on_timer(struct rh_timer *t)
{
    struct rh_conn *c = (struct rh_conn *)((char *)t - offsetof(struct rh_conn, timer));
    if (c->flags & C_CLOSING) {
        close_wait_expired(c);
        return;
    }
    /* no progress for write_timeout: give up (C_BODY_INFLIGHT: a body source's own op) */
    if (c->flags & (C_SEND_INFLIGHT | C_BODY_INFLIGHT)) {
        conn_close(c);
        return;
    }
    switch (c->phase) {
    case PH_BODY:
        if (c->w->srv->proto->body_timer(c))
            return; /* a rate window passed with enough bytes: the next one runs */
        conn_fail(c, 408);
        return;
    case PH_HEAD:
        conn_fail(c, 408);
        return;
    case PH_HANDLER:
        if (handler_waiting(c))
            c->w->srv->proto->on_deadline(c->req);
        return;
    case PH_IDLE:
    case PH_LINGER:
        conn_close(c);
        return;
    }
}

/* ---- recv ---- */

static void arm_recv(struct rh_conn *c)
{
    struct io_uring_sqe *sqe = rh_loop_sqe(&c->w->loop);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = RH_BUF_GROUP;
    io_uring_sqe_set_data64(sqe, conn_ud(c, CONN_OP_RECV));
    c->w->loop.inflight++;
    c->flags |= C_RECV_ARMED;
    c->flags &= ~(C_WANT_RECV | C_READ_STOPPED);
}

/* Ends the connection's socket ops for a close without IORING_OP_ASYNC_CANCEL: on this
 * kernel a cancel walks every armed poll request of the ring (by fd or by user_data alike),
 * O(connections) per close, so a wave of 16k closes took seconds at 100% CPU. shutdown(2)
 * wakes the socket instead: the multishot recv ends with 0 and a send stuck on a full
 * socket with -EPIPE, each a final completion that the generation check then ignores (and
 * whose buffer it recycles). A plain syscall, not IORING_OP_SHUTDOWN (io-wq: see
 * enter_linger). A body source's own ops (C_BODY_INFLIGHT: a static file's, rare) are
 * still cancelled by fd. */
static void end_ops(struct rh_conn *c)
{
    if (c->flags & (C_RECV_ARMED | C_SEND_INFLIGHT))
        shutdown(c->fd, (c->flags & C_SEND_INFLIGHT) ? SHUT_RDWR : SHUT_RD);
    if (c->flags & C_BODY_INFLIGHT) {
        struct io_uring_sqe *sqe = rh_loop_sqe(&c->w->loop);
        io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_IGNORE, 0, 0));
        c->w->loop.inflight++;
    }
}

/* Too much input waiting while a handler runs: stop reading (back-pressure, no data lost). */
static void stop_reading(struct rh_conn *c)
{
    if (!(c->flags & C_RECV_ARMED) || (c->flags & C_READ_STOPPED))
        return;
    struct io_uring_sqe *sqe = rh_loop_sqe(&c->w->loop);
    io_uring_prep_cancel64(sqe, conn_ud(c, CONN_OP_RECV), 0);
    io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_IGNORE, 0, 0));
    c->w->loop.inflight++;
    c->flags |= C_READ_STOPPED;
}

bool conn_feed(struct rh_conn *c, const char *data, uint32_t n)
{
    if (!input_append(c, data, n))
        return false;
    conn_process(c);
    return true;
}

static void conn_take_input(struct rh_conn *c, unsigned bid, uint32_t n)
{
    struct rh_worker *w = c->w;
    if (c->phase == PH_LINGER) {
        rh_loop_buf_recycle(&w->loop, bid);
        return;
    }
    const char *data = rh_loop_buf(&w->loop, bid);
    if (!input_pending(c) && input_append(c, data, n)) {
        rh_loop_buf_recycle(&w->loop, bid);
        return;
    }
    /* No room: hold the buffer while this connection and the ring can afford it, else copy
     * (a busy connection must not starve the others of buffers), and stop reading. */
    if (c->nheld < RH_HELD_MAX && c->spill_off == c->spill_len &&
        w->held_total < w->loop.bufs.count / 4) {
        hold_buffer(c, bid, n);
    } else {
        bool ok = conn_spill_append(c, data, n);
        rh_loop_buf_recycle(&w->loop, bid);
        if (!ok) {
            conn_close(c);
            return;
        }
    }
    stop_reading(c);
}

/* Re-arms connections whose recv found the buffer ring empty: at a flush, when buffers are
 * back (not in the pass that saw -ENOBUFS: that spins), oldest first, at most one per free
 * buffer so a burst of them cannot empty the ring again at once (see conn_bufs.c). */
static void rearm_starved(struct rh_worker *w)
{
    for (unsigned free_bufs = conn_starved_free_buffers(w); free_bufs > 0 && w->starved_head;
         free_bufs--) {
        struct rh_conn *c = conn_starved_pop(w);
        if (!(c->flags & (C_CLOSING | C_RECV_ARMED | C_PEER_EOF)))
            arm_recv(c);
    }
}

static void on_recv(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    struct rh_worker *w = loop_worker(loop);
    struct rh_conn *c = conn_of(w, cqe->user_data);
    bool final = !(cqe->flags & IORING_CQE_F_MORE);
    if (final)
        rh_loop_op_done(loop);
    if (!c) {
        if (cqe->flags & IORING_CQE_F_BUFFER)
            rh_loop_buf_recycle(loop, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        return;
    }
    if (final)
        c->flags &= ~C_RECV_ARMED;
    if (cqe->res == -ENOBUFS)
        conn_stat_add(&w->stats.recv_enobufs, 1);
    if (cqe->res > 0) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (c->flags & C_CLOSING)
            rh_loop_buf_recycle(loop, bid);
        else
            conn_take_input(c, bid, (uint32_t)cqe->res);
    } else if (cqe->res == 0) {
        c->flags |= C_PEER_EOF;
        /* A half-close (nc -N), not the client leaving: answers still go out, then it closes;
         * only one merely waiting for a pool task or its ring timer is given up (nginx: 499) */
        struct rh_req *r = c->req;
        if ((c->flags & C_PAUSED) && r && c->w->srv->proto->only_waiting(r) &&
            !(c->flags & C_CLOSING)) {
            conn_close(c);
            return;
        }
    } else if (cqe->res != -ENOBUFS && cqe->res != -ECANCELED && !(c->flags & C_CLOSING)) {
        conn_close(c); /* reset or error: this may free the slot at once */
        return;
    }
    if (c->flags & C_CLOSING) {
        conn_finish_close(c);
        return;
    }
    if (c->phase == PH_LINGER && (c->flags & C_PEER_EOF)) {
        conn_close(c);
        return;
    }
    if (c->phase == PH_BODY && cqe->res > 0) {
        c->w->srv->proto->body_progress(c, (uint32_t)cqe->res);
        conn_arm_phase_deadline(c, w->srv->cfg.body_timeout_ms);
    }
    conn_process(c);
    if (!final || (c->flags & (C_CLOSING | C_PEER_EOF | C_READ_STOPPED | C_RECV_ARMED)))
        return;
    if (input_pending(c) || (c->flags & C_OUT_FULL)) {
        c->flags |= C_READ_STOPPED; /* resumed by conn_process once there is room */
        return;
    }
    if (cqe->res == -ENOBUFS)
        conn_starved_push(c); /* re-armed once buffers are back (rearm_starved) */
    else
        conn_mark_dirty(c), c->flags |= C_WANT_RECV; /* a spent multishot */
}

/* ---- send ---- */

static void submit_send(struct rh_conn *c)
{
    struct rh_obuf *b = &c->wbuf;
    struct io_uring_sqe *sqe = rh_loop_sqe(&c->w->loop);
    io_uring_prep_send(sqe, c->fd, b->data + b->sent, b->len - b->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, conn_ud(c, CONN_OP_SEND));
    c->w->loop.inflight++;
    c->flags |= C_SEND_INFLIGHT;
    conn_arm_timer(c, c->w->srv->cfg.write_timeout_ms);
}

/* Starts a send of everything queued, unless one is already outstanding. */
static void conn_flush(struct rh_conn *c)
{
    /* C_BODY_INFLIGHT: a body source owns the socket's write side until its op is done */
    if ((c->flags & (C_SEND_INFLIGHT | C_BODY_INFLIGHT)) || c->pbuf.len == 0)
        return;
    struct rh_obuf spare = c->wbuf; /* empty, maybe with capacity: reuse it */
    c->wbuf = c->pbuf;
    c->pbuf = spare;
    c->pbuf.len = c->pbuf.sent = 0;
    submit_send(c);
}

static void enter_linger(struct rh_conn *c)
{
    c->phase = PH_LINGER;
    drop_held(c);
    /* A plain shutdown(2), not IORING_OP_SHUTDOWN: the ring hands that op to io-wq, which
     * looks the fd up later, by when it may be closed and reused by another connection. */
    shutdown(c->fd, SHUT_WR);
    conn_arm_timer(c, RH_LINGER_MS);
    if (c->flags & C_PEER_EOF)
        conn_close(c);
    else if (!(c->flags & C_RECV_ARMED))
        arm_recv(c);
}

/* Output is all sent: close, linger, or wait for the next request. */
static void conn_on_drained(struct rh_conn *c)
{
    struct rh_worker *w = c->w;
    if (c->req) { /* a body source above goes on, or a handler still runs (even if it closes) */
        w->srv->proto->on_writable(c);
        return;
    }
    if (c->flags & C_CLOSE_AFTER_SEND) {
        /* Linger (shut write, drain input briefly) only when the client may still be
         * sending: closing with unread data makes the kernel reset the connection, which
         * can destroy the answer before the client reads it. Otherwise close at once. */
        bool unread = (c->flags & C_LINGER_NEEDED) || c->in_off != c->in_len ||
                      input_pending(c);
        if (unread)
            enter_linger(c);
        else
            conn_close(c);
        return;
    }
    if ((c->flags & C_PEER_EOF) && c->in_off == c->in_len && !input_pending(c)) {
        conn_close(c); /* half-closed, and every request before the EOF answered */
        return;
    }
    conn_obuf_release(w, &c->wbuf);
    conn_obuf_release(w, &c->pbuf);
    if (c->in_len == c->in_off && c->phase == PH_IDLE) {
        conn_arm_timer(c, w->srv->cfg.idle_timeout_ms);
        conn_idle_push(c); /* reclaimable at the connection limit from now on */
    }
}

/* Output back-pressure (RH_OUT_HIGH / RH_OUT_LOW, hysteresis): whether this connection
 * must parse no further for now. Past the high-water mark it also stops reading, so a
 * client that sends requests and never reads answers holds a bounded amount of memory. */
static bool conn_out_full(struct rh_conn *c)
{
    size_t queued = conn_out_queued(c);
    if (c->flags & C_OUT_FULL) {
        if (queued > RH_OUT_LOW)
            return true;
        c->flags &= ~C_OUT_FULL;
        return false;
    }
    if (queued < RH_OUT_HIGH)
        return false;
    c->flags |= C_OUT_FULL;
    stop_reading(c);
    return true;
}

/* A send made progress, output still queued: below the low-water mark, the request's body
 * source above goes on (a streaming writer), and parsing (and reading) resumes. */
static void conn_out_progress(struct rh_conn *c)
{
    if (conn_out_queued(c) > RH_OUT_LOW || (c->flags & C_CLOSING))
        return;
    if (c->req)
        c->w->srv->proto->on_writable(c);
    if (c->flags & C_OUT_FULL)
        conn_process(c);
}

static void on_send(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    rh_loop_op_done(loop);
    struct rh_conn *c = conn_of(loop_worker(loop), cqe->user_data);
    if (!c)
        return;
    c->flags &= ~C_SEND_INFLIGHT;
    if (c->flags & C_CLOSING) {
        conn_finish_close(c);
        return;
    }
    if (cqe->res < 0) {
        conn_close(c);
        return;
    }
    c->wbuf.sent += (size_t)cqe->res;
    if (c->wbuf.sent < c->wbuf.len) { /* short write: the rest, at once */
        submit_send(c);
        conn_out_progress(c);
        return;
    }
    c->wbuf.len = c->wbuf.sent = 0;
    restore_phase_timer(c);
    if (c->pbuf.len) {
        conn_flush(c);
        conn_out_progress(c);
        return;
    }
    conn_on_drained(c); /* a body source above goes on from here (proto->on_writable) */
    if (!(c->flags & C_CLOSING) && c->phase != PH_LINGER)
        conn_process(c); /* held input may be waiting for room that output just freed */
}

void conn_mark_dirty(struct rh_conn *c)
{
    if (c->flags & C_DIRTY)
        return;
    c->flags |= C_DIRTY;
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
}

/* Before each submit: one send per connection with output, recv re-arms, date refresh. */
void conn_flush_dirty(struct rh_loop *loop)
{
    struct rh_worker *w = loop_worker(loop);
    const struct conn_proto *proto = w->srv->proto;
    proto->before_flush(w); /* streaming writers first: what they write goes out below */
    rearm_starved(w);
    while (w->dirty) {
        struct rh_conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->flags &= ~C_DIRTY;
        if (c->flags & C_FREE_PENDING) {
            c->flags &= ~C_FREE_PENDING;
            w->free_idx[w->free_top++] = c->idx;
            continue;
        }
        if (c->flags & C_CLOSING)
            continue;
        if ((c->flags & C_WANT_RECV) && !(c->flags & C_RECV_ARMED))
            arm_recv(c);
        conn_flush(c);
        if (!(c->flags & C_SEND_INFLIGHT) && c->pbuf.len == 0 && !(c->flags & C_CLOSING) &&
            c->phase != PH_LINGER)
            conn_on_drained(c);
    }
    proto->after_flush(w);
}

/* ---- request boundaries ---- */

void conn_request_done(struct rh_conn *c)
{
    c->flags &= ~C_PAUSED;
    c->requests++;
    c->phase = PH_IDLE;
    if (!(c->flags & (C_SEND_INFLIGHT | C_BODY_INFLIGHT)))
        rh_timer_cancel(&c->w->loop.wheel, &c->timer); /* the handler deadline ends */
    conn_mark_dirty(c);
    if (!(c->flags & C_PROCESSING))
        conn_process(c); /* answered later than dispatch: resume pipelined input */
}

void conn_fail(struct rh_conn *c, int status)
{
    if (c->flags & (C_CLOSING | C_CLOSE_AFTER_SEND))
        return;
    c->flags |= C_LINGER_NEEDED;
    if (c->w->srv->proto->on_fail(c, status) < 0)
        conn_close(c); /* mid-response: nothing valid can follow */
}

/* Parses what is buffered, as far as handlers allow; drains held input as room appears. */
void conn_process(struct rh_conn *c)
{
    if (c->flags & (C_PROCESSING | C_CLOSING))
        return;
    c->flags |= C_PROCESSING;
    for (;;) {
        drain_held(c);
        if (c->flags & (C_PAUSED | C_CLOSE_AFTER_SEND | C_CLOSING) || c->phase == PH_LINGER)
            break;
        if (conn_out_full(c) || c->in_off == c->in_len) /* first: it refreshes C_OUT_FULL */
            break;
        int status = c->w->srv->proto->on_input(c);
        if (status > 0)
            conn_fail(c, status);
    }
    c->flags &= ~C_PROCESSING;
    if (c->flags & C_CLOSING)
        return;
    if (!c->req && c->in_off == c->in_len && c->in && !input_pending(c)) {
        in_block_put(c->w, c->in); /* idle: give the buffer back */
        c->in = NULL;
        c->in_len = c->in_off = 0;
    }
    if ((c->flags & C_READ_STOPPED) && !input_pending(c) &&
        !(c->flags & (C_PEER_EOF | C_OUT_FULL))) {
        c->flags |= C_WANT_RECV;
        conn_mark_dirty(c);
    }
    bool unsent = (c->flags & C_SEND_INFLIGHT) || c->pbuf.len != 0;
    bool input_left = c->in_off != c->in_len || input_pending(c);
    if ((c->flags & C_PEER_EOF) && !c->req && !input_left && !unsent && c->phase != PH_LINGER)
        conn_close(c);
    else if ((c->flags & C_PEER_EOF) && (c->phase == PH_HEAD || c->phase == PH_BODY) &&
             !input_left && !unsent)
        conn_close(c); /* half-closed inside a request: it can never complete */
}

/* ---- open and close ---- */

void conn_open(struct rh_worker *w, int fd)
{
    uint32_t idx = w->free_idx[--w->free_top];
    struct rh_conn *c = &w->conns[idx];
    uint32_t gen = c->gen + 1;
    if ((gen & 0xffffff) == 0)
        gen++; /* generation 0 marks a slot never used */
    memset(c, 0, sizeof(*c));
    c->w = w;
    c->fd = fd;
    c->idx = idx;
    c->gen = gen;
    c->phase = PH_IDLE;
    c->held_head = c->held_tail = RH_NO_BUF;
    c->timer.fn = conn_on_timer;
    w->srv->proto->on_open(c);
    w->open_conns++;
    conn_stat_add(&w->stats.accepted, 1);
    atomic_store_explicit(&w->stats.open_conns, w->open_conns, memory_order_relaxed);
    arm_recv(c);
    conn_arm_phase_deadline(c, w->srv->cfg.header_timeout_ms); /* the first request's head */
    conn_idle_push(c); /* nothing sent yet: reclaimable, oldest first */
}

/* How long a close waits for its send's completion: the write timeout (the send had that
 * long to make progress anyway), at most 5 s. */
static unsigned close_wait_ms(const struct rh_conn *c)
{
    unsigned ms = c->w->srv->cfg.write_timeout_ms;
    return ms && ms < 5000u ? ms : 5000u;
}

void conn_close(struct rh_conn *c)
{
    if (c->flags & C_CLOSING)
        return;
    c->flags |= C_CLOSING;
    conn_idle_remove(c);
    rh_timer_cancel(&c->w->loop.wheel, &c->timer);
    conn_starved_remove(c);
    drop_held(c);
    end_ops(c);
    /* A multishot recv fills only provided buffers, which the kernel owns: its last
     * completion may come after the slot is freed, where the generation check ignores it
     * and recycles its buffer (the socket lives until then: the recv holds a reference).
     * So only a send or a body source's op (reading memory) is waited for, with a deadline in
     * case its completion is lost. */
    if (c->flags & (C_SEND_INFLIGHT | C_BODY_INFLIGHT))
        conn_arm_timer(c, close_wait_ms(c));
    c->flags &= ~C_RECV_ARMED;
    conn_finish_close(c);
}

/* Completes a close once no op of ours references the fd or the buffers. */
void conn_finish_close(struct rh_conn *c)
{
    struct rh_worker *w = c->w;
    if (!conn_live(c) || (c->flags & (C_RECV_ARMED | C_SEND_INFLIGHT | C_BODY_INFLIGHT)))
        return; /* already freed, or ops of ours still reference the fd */
    rh_timer_cancel(&w->loop.wheel, &c->timer); /* the close wait, if any */
    if (c->req)
        w->srv->proto->on_closed(c, false);
    struct io_uring_sqe *sqe = rh_loop_sqe(&w->loop);
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_IGNORE, 0, 0));
    w->loop.inflight++;
    if (c->in)
        in_block_put(w, c->in);
    conn_obuf_release(w, &c->wbuf);
    conn_obuf_release(w, &c->pbuf);
    c->in = NULL;
    c->fd = -1;
    if (c->flags & C_DIRTY) {
        /* Still linked on the flush list: reusing the slot now would cut the list behind
         * it (conn_open clears dirty_next). conn_flush_dirty frees it when it gets there. */
        c->flags |= C_FREE_PENDING;
    } else {
        assert(w->free_top < w->srv->cfg.max_conns);
        w->free_idx[w->free_top++] = c->idx;
    }
    w->open_conns--;
    atomic_store_explicit(&w->stats.open_conns, w->open_conns, memory_order_relaxed);
}

void conn_register_ops(struct rh_loop *loop)
{
    rh_loop_on(loop, CONN_OP_ACCEPT, conn_accept_on_completion);
    rh_loop_on(loop, CONN_OP_RECV, on_recv);
    rh_loop_on(loop, CONN_OP_SEND, on_send);
    loop->before_submit = conn_flush_dirty;
}

/* The ring has exited: no op of any connection is in flight any more (or never will
 * complete). Requests still out (on the pool) become orphans; the rest end here. */
void conn_abandon_requests(struct rh_worker *w)
{
    for (uint32_t i = 0; i < w->srv->cfg.max_conns; i++) {
        struct rh_conn *c = &w->conns[i];
        if (!conn_live(c))
            continue;
        if (c->req)
            w->srv->proto->on_closed(c, true);
        if (c->in)
            in_block_put(w, c->in);
        conn_spill_free(c);
        conn_obuf_release(w, &c->wbuf);
        conn_obuf_release(w, &c->pbuf);
        close(c->fd);
        c->fd = -1;
    }
    w->srv->proto->on_stop(w);
}

/* Graceful stop: idle connections go now; busy ones finish their request, then close. */
void conn_close_all(struct rh_worker *w, bool idle_only)
{
    for (uint32_t i = 0; i < w->srv->cfg.max_conns; i++) {
        struct rh_conn *c = &w->conns[i];
        if (!conn_live(c) || (c->flags & C_CLOSING))
            continue;
        /* A connection yet to send its first request is not idle: it was just accepted
         * (its bytes are on the way, TCP_DEFER_ACCEPT) and closing it would reset them. */
        bool idle = c->requests > 0 && c->phase == PH_IDLE && !c->req && c->in_off == c->in_len &&
                    !(c->flags & C_SEND_INFLIGHT) && c->pbuf.len == 0;
        if (!idle_only || idle)
            conn_close(c);
    }
}
