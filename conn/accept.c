/* Accepting: an accept per listener slot, and what a new connection meets at the
 * connection limit (the longest-idle connection is closed to admit it; refused only when
 * none is idle). Moved out of conn.c, which keeps the connections themselves. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn/conn.h"

/* An accept per listener slot not armed yet (listeners.c). A ring's own listener gets a
 * multishot accept. On a socket shared by every ring a multishot accept would stay first in
 * the socket's wait queue and take every connection: a single-shot one re-queues behind
 * the other rings' after each connection, so they take turns. */
void conn_arm_accept(struct rh_worker *w)
{
    for (unsigned i = 0; i < w->naccept && !w->accept_stopped; i++) {
        if (w->accept_armed & (1u << i))
            continue;
        struct io_uring_sqe *sqe = rh_loop_sqe(&w->loop);
        if (w->srv->nlisten)
            io_uring_prep_accept(sqe, w->accept_fds[i], NULL, NULL, SOCK_CLOEXEC);
        else
            io_uring_prep_multishot_accept(sqe, w->accept_fds[i], NULL, NULL, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, rh_ud_make(CONN_OP_ACCEPT, i, 0));
        w->loop.inflight++;
        w->accept_armed |= 1u << i;
    }
}

static void accept_retry(struct rh_timer *t);

/* At the limit: closes the longest-idle connections until a slot is free. A closed slot is
 * free at once unless it waits on the flush list (then the next is tried); bounded, so a
 * burst of new clients reclaims about one each. */
static bool reclaim_idle(struct rh_worker *w)
{
    for (unsigned tries = 0; w->free_top == 0 && tries < 16; tries++) {
        struct rh_conn *c = conn_idle_pop(w);
        if (!c)
            break;
        conn_close(c);
        conn_stat_add(&w->stats.conn_reclaimed, 1);
    }
    return w->free_top > 0;
}

void conn_accept_on_completion(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    struct rh_worker *w = loop->owner;
    uint32_t slot = 1u << rh_ud_idx(cqe->user_data);
    w->accept_seen |= slot; /* the slot's wake-ups arrive (listeners.c) */
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        rh_loop_op_done(loop);
        w->accept_armed &= ~slot;
    }
    if (cqe->res >= 0) {
        /* Accepted before the accept's cancel landed: served even while draining (with
         * Connection: close), since a successor sharing the socket cannot take it over. */
        if (loop->finishing) {
            close(cqe->res); /* the ring's end: refuse */
        } else if (w->free_top == 0 && !reclaim_idle(w)) {
            close(cqe->res); /* over the limit, none idle: refuse rather than fail later */
            conn_stat_add(&w->stats.conn_refused, 1);
        } else {
            conn_open(w, cqe->res);
        }
    }
    if ((w->accept_armed & slot) || w->accept_stopped || w->naccept == 0)
        return;
    if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOMEM ||
        cqe->res == -ENOBUFS) {
        if (loop->now_ms >= w->accept_warned_ms + 10000) { /* once per 10 s, not per failure */
            fprintf(stderr, "ringhttp: ring %u: accept: %s; serving open connections, "
                            "retrying every 100 ms\n", w->id, strerror(-cqe->res));
            w->accept_warned_ms = loop->now_ms;
        }
        w->accept_timer.fn = accept_retry; /* back off instead of spinning */
        rh_loop_timer_arm(loop, &w->accept_timer, 100);
        return;
    }
    conn_arm_accept(w);
}

static void accept_retry(struct rh_timer *t)
{
    struct rh_worker *w = (struct rh_worker *)((char *)t - offsetof(struct rh_worker, accept_timer));
    conn_arm_accept(w); /* the slots not armed, unless accepting stopped */
}
