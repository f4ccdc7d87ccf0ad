/* What conn.c keeps true between loop iterations, over every connection of the ring at
 * once (sqlite's pcache-style sanity check): each live connection's own books, and the
 * books they share: the slab (every slot live, free or waiting on the flush list, exactly
 * once), the provided buffers (each lent one is held by exactly one live connection), the
 * ring's in-flight count, the timer wheel, and the worker's lists (flush, starved, idle,
 * writable, orphans), each well linked and holding only what it should. */
#include <string.h>

#include "tests/fuzz/fuzz.h"

/* A cancel queued for the socket's recv (by fd, or by the recv's user_data). */
static bool cancel_queued(const struct world *W, const struct fz_sock *s)
{
    for (unsigned i = 0; i < W->k.nsqes; i++) {
        const struct io_uring_sqe *sqe = &W->k.sqes[i];
        if (sqe->opcode == IORING_OP_ASYNC_CANCEL &&
            (sqe->fd == s->fd || (s->recv_armed && sqe->addr == s->recv_ud)))
            return true;
    }
    return false;
}

/* The slab: live, on the free stack, or freed-while-dirty (C_FREE_PENDING), once each. */
static void slots_sane(struct world *W)
{
    struct rh_worker *w = &W->w;
    uint32_t max = W->srv.cfg.max_conns;
    bool on_free[FZ_MAX_STREAMS] = {false};
    FZ_CHECK(w->free_top <= max, "free stack %u deep for %u slots", w->free_top, max);
    for (uint32_t i = 0; i < w->free_top; i++) {
        uint32_t idx = w->free_idx[i];
        FZ_CHECK(idx < max && !on_free[idx], "slot %u freed twice (or out of range)", idx);
        on_free[idx] = true;
        FZ_CHECK(!conn_live(&W->conns[idx]), "slot %u is live and on the free stack", idx);
        FZ_CHECK(!(W->conns[idx].flags & C_FREE_PENDING), "slot %u free and free-pending", idx);
    }
    unsigned live = 0, dirty = 0;
    for (uint32_t i = 0; i < max; i++) {
        const struct rh_conn *c = &W->conns[i];
        live += conn_live(c);
        dirty += !!(c->flags & C_DIRTY);
        if (!conn_live(c) && !on_free[i])
            FZ_CHECK(c->flags & C_FREE_PENDING && c->flags & C_DIRTY,
                     "slot %u closed but neither free nor waiting on the flush list", i);
        if (conn_live(c))
            FZ_CHECK(!(c->flags & C_FREE_PENDING), "live slot %u marked free-pending", i);
    }
    FZ_CHECK(live == w->open_conns, "%u live slots, the worker counts %u", live,
             w->open_conns);
    unsigned n = 0;
    for (const struct rh_conn *c = w->dirty; c; c = c->dirty_next) {
        FZ_CHECK(++n <= max, "the flush list loops");
        FZ_CHECK(c->flags & C_DIRTY, "slot %u on the flush list without C_DIRTY", c->idx);
    }
    FZ_CHECK(n == dirty, "%u slots marked dirty, %u on the flush list", dirty, n);
}

/* The starved list (recvs that ended with -ENOBUFS): live, open connections, linked both
 * ways, each once. */
static void starved_sane(struct world *W)
{
    struct rh_worker *w = &W->w;
    unsigned n = 0, flagged = 0;
    const struct rh_conn *prev = NULL;
    for (const struct rh_conn *c = w->starved_head; c; prev = c, c = c->starved_next) {
        FZ_CHECK(++n <= W->srv.cfg.max_conns, "the starved list loops");
        FZ_CHECK(c->starved_prev == prev, "starved list: broken back link at slot %u", c->idx);
        FZ_CHECK((c->flags & C_STARVED) && conn_live(c) && !(c->flags & C_CLOSING),
                 "slot %u on the starved list: flags 0x%x live %d", c->idx, c->flags,
                 conn_live(c));
    }
    FZ_CHECK(w->starved_tail == prev, "starved list: the tail is not the last");
    for (uint32_t i = 0; i < W->srv.cfg.max_conns; i++)
        flagged += !!(W->conns[i].flags & C_STARVED);
    FZ_CHECK(n == flagged, "%u slots flagged starved, %u on the list", flagged, n);
}

/* The idle list (what the connection limit reclaims, oldest first): live connections not
 * closing, linked both ways, each once; and every idle connection on it, or the limit
 * would refuse a client while a connection it could close sits idle. */
static void idle_sane(struct world *W)
{
    struct rh_worker *w = &W->w;
    unsigned n = 0, flagged = 0;
    const struct rh_conn *prev = NULL;
    for (const struct rh_conn *c = w->idle_head; c; prev = c, c = c->idle_next) {
        FZ_CHECK(++n <= W->srv.cfg.max_conns, "the idle list loops");
        FZ_CHECK(c->idle_prev == prev, "idle list: broken back link at slot %u", c->idx);
        FZ_CHECK((c->flags & C_IDLE_LISTED) && conn_live(c) && !(c->flags & C_CLOSING),
                 "slot %u on the idle list: flags 0x%x live %d", c->idx, c->flags,
                 conn_live(c));
    }
    FZ_CHECK(w->idle_tail == prev, "idle list: the tail is not the last");
    for (uint32_t i = 0; i < W->srv.cfg.max_conns; i++) {
        const struct rh_conn *c = &W->conns[i];
        flagged += !!(c->flags & C_IDLE_LISTED);
        FZ_CHECK(!conn_is_idle(c) || (c->flags & C_IDLE_LISTED),
                 "slot %u is idle but not on the idle list (flags 0x%x): the limit cannot "
                 "reclaim it", i, c->flags);
    }
    FZ_CHECK(n == flagged, "%u slots flagged idle-listed, %u on the list", flagged, n);
}

/* Requests the worker keeps lists of: streaming writers to call, orphans. */
static void req_lists_sane(struct world *W)
{
    unsigned n = 0;
    for (const struct rh_req *r = W->w.writable_head; r; r = r->writable_next) {
        FZ_CHECK(++n <= FZ_MAX_PARKED + FZ_MAX_STREAMS, "the writable list loops");
        FZ_CHECK(r->flags & R_WRITABLE_QUEUED, "a writer listed without R_WRITABLE_QUEUED");
        FZ_CHECK(r->writable_next || W->w.writable_tail == r, "writable list: the tail");
    }
    n = 0;
    const struct rh_req *prev = NULL;
    for (const struct rh_req *r = W->w.orphans; r; prev = r, r = r->orphan_next) {
        FZ_CHECK(++n <= FZ_MAX_PARKED, "the orphan list loops");
        FZ_CHECK(r->orphan_listed && !r->conn && r->orphan_prev == prev,
                 "orphan list: listed %d conn %p", r->orphan_listed, (void *)r->conn);
    }
}

/* Provided buffers: every one lent out is held by exactly one live connection (after a
 * dispatch nothing else may keep one), within the per-connection and per-ring bounds. */
static void buffers_sane(struct world *W)
{
    struct fz_ring *k = &W->k;
    bool held[FZ_MAX_BUFS] = {false};
    unsigned total = 0;
    for (uint32_t i = 0; i < W->srv.cfg.max_conns; i++) {
        const struct rh_conn *c = &W->conns[i];
        if (!conn_live(c))
            continue;
        unsigned n = 0;
        for (unsigned b = c->held_head; b != RH_NO_BUF; b = W->held_next[b]) {
            FZ_CHECK(b < k->nbufs && k->buf_lent[b] && !held[b] && n < k->nbufs,
                     "slot %u's held list broken at buffer %u (held elsewhere: %d)", i, b,
                     b < FZ_MAX_BUFS && held[b]);
            held[b] = true;
            FZ_CHECK(W->held_next[b] != RH_NO_BUF || c->held_tail == b, "held tail");
            n++;
        }
        FZ_CHECK(n == c->nheld && c->nheld <= RH_HELD_MAX, "slot %u holds %u, counts %u", i,
                 n, c->nheld);
        total += n;
    }
    FZ_CHECK(total == W->w.held_total && total == ring_bufs_lent(W),
             "held %u, worker counts %u, lent %u", total, W->w.held_total, ring_bufs_lent(W));
    /* a quarter of the ring at most: the rest keeps cycling for everyone else */
    FZ_CHECK(total <= k->nbufs / 4, "%u of %u provided buffers held", total, k->nbufs);
}

static void conn_sane(struct world *W, struct rh_conn *c)
{
    struct fz_sock *s = sock_of_conn(W, c);
    FZ_CHECK(c->in_off <= c->in_len && c->in_len <= RH_IN_BLOCK, "in_off %u in_len %u",
             c->in_off, c->in_len);
    FZ_CHECK(c->in || c->in_len == 0, "bytes counted with no input buffer");
    FZ_CHECK(!(c->flags & C_PAUSED) || c->req, "paused with no request");
    FZ_CHECK(!c->req || c->req->conn == c, "the connection's request points elsewhere");
    FZ_CHECK(c->wbuf.sent <= c->wbuf.len && c->pbuf.len <= c->pbuf.cap, "output buffers");
    /* conn_close forgets the recv once its cancel is queued (it fills only provided
     * buffers); otherwise the flag and the kernel agree. */
    bool recv_dropped = (c->flags & C_CLOSING) && cancel_queued(W, s);
    bool recv_kernel = s->recv_armed || ring_pending(W, IORING_OP_RECV, s->fd);
    FZ_CHECK(!!(c->flags & C_RECV_ARMED) == recv_kernel ||
                 (recv_dropped && !(c->flags & C_RECV_ARMED)),
             "C_RECV_ARMED %d, kernel recv %d", !!(c->flags & C_RECV_ARMED), s->recv_armed);
    /* A send's final completion may be posted and not dispatched yet (a close's shutdown
     * from a timer, after the iteration's dispatch): still in flight for the server. */
    bool send_kernel = s->send_armed || ring_pending(W, IORING_OP_SEND, s->fd) ||
                       ring_posted(W, s->send_ud);
    FZ_CHECK(!!(c->flags & C_SEND_INFLIGHT) == send_kernel,
             "C_SEND_INFLIGHT %d, kernel send %d (flags 0x%x)", !!(c->flags & C_SEND_INFLIGHT),
             s->send_armed, c->flags);
    FZ_CHECK(c->spill_off <= c->spill_len && c->spill_len <= RH_SPILL_MAX, "spill %u/%u",
             c->spill_off, c->spill_len);
    /* Bounded whatever the client does: one response past the high-water mark at most. */
    FZ_CHECK(conn_out_queued(c) <= RH_OUT_HIGH + 20000 + 1024,
             "%zu bytes of output queued: back-pressure failed", conn_out_queued(c));
    /* Every phase that waits on the peer has a deadline (no slow-loris, no idle leak). */
    bool waiting = (c->phase == PH_HEAD || c->phase == PH_BODY || c->phase == PH_LINGER ||
                    (c->phase == PH_IDLE && !c->req && !(c->flags & C_DIRTY) &&
                     c->pbuf.len == 0)) &&
                   !(c->flags & C_CLOSING);
    FZ_CHECK(!waiting || rh_timer_armed(&c->timer),
             "no timer armed in phase %d (flags 0x%x): the peer can hold the slot forever",
             c->phase, c->flags);
    /* A request with its handler and unanswered has a deadline (--handler-timeout). */
    FZ_CHECK(c->phase != PH_HANDLER || !c->req || (c->req->flags & R_RESP_STARTED) ||
                 (c->flags & C_CLOSING) || rh_timer_armed(&c->timer),
             "an unanswered request with no handler deadline armed (flags 0x%x)", c->flags);
    /* Once an answer that closes is queued, the rest of the input is never parsed. */
    uint32_t unparsed = c->in_len - c->in_off;
    if (c->flags & C_CLOSE_AFTER_SEND) {
        if (s->close_seen)
            FZ_CHECK(unparsed >= s->unparsed_at_close, "input parsed after Connection: close");
        s->close_seen = true;
        s->unparsed_at_close = unparsed;
    }
}

/* The kernel's side: ops in flight match the count, closed connections left nothing
 * behind on their sockets. */
static void sockets_sane(struct world *W)
{
    struct fz_ring *k = &W->k;
    unsigned armed = 0;
    for (unsigned i = 0; i < k->nsocks; i++) {
        struct fz_sock *s = &k->socks[i];
        armed += s->recv_armed + s->send_armed;
        if (!s->bound || conn_of_sock(W, s))
            continue;
        /* Its slot was freed (or reused). A send reads the slot's buffers: waited for. The
         * multishot recv fills only provided buffers: the slot may go once its cancel is
         * queued (conn_close). */
        FZ_CHECK(!s->send_armed, "slot freed with a send in flight (fd %d)", s->fd);
        FZ_CHECK(!s->recv_armed || cancel_queued(W, s),
                 "slot freed, its recv still armed and not cancelled (fd %d)", s->fd);
        FZ_CHECK(!s->fd_open || ring_pending(W, IORING_OP_CLOSE, s->fd),
                 "slot freed, fd %d left open", s->fd);
    }
    FZ_CHECK(W->w.loop.inflight == armed + k->nsqes + ring_finals_posted(W),
             "inflight %u, kernel has %u ops armed, %u SQEs queued, %u finals posted",
             W->w.loop.inflight, armed, k->nsqes, ring_finals_posted(W));
}

void world_sane(struct world *W)
{
    slots_sane(W);
    starved_sane(W);
    idle_sane(W);
    req_lists_sane(W);
    buffers_sane(W);
    sockets_sane(W);
    unsigned live_reqs = 0, timers = 0;
    for (uint32_t i = 0; i < W->srv.cfg.max_conns; i++) {
        struct rh_conn *c = &W->conns[i];
        if (!conn_live(c)) {
            FZ_CHECK(!rh_timer_armed(&c->timer), "a timer armed on closed slot %u", i);
            continue;
        }
        conn_sane(W, c);
        live_reqs += c->req != NULL;
        timers += rh_timer_armed(&c->timer);
    }
    FZ_CHECK(W->w.loop.wheel.count == timers, "%u timers on the wheel, %u connections' armed",
             W->w.loop.wheel.count, timers);
    for (unsigned i = 0; i < W->nparked; i++) {
        const struct rh_req *r = W->parked[i].req;
        FZ_CHECK(!r->conn || (conn_live(r->conn) && r->conn->req == r),
                 "a parked request attached to a connection that does not hold it");
        live_reqs += r->conn == NULL; /* orphans: their connection closed under them */
    }
    FZ_CHECK(W->live_reqs == live_reqs, "%u requests live, %u accounted for", W->live_reqs,
             live_reqs);
}
