/* Idle connections, longest idle first: what the connection limit reclaims instead of
 * refusing a new client (as nginx closes its "reusable" connections). A connection joins
 * the tail when it goes idle (accepted, or its last answer sent); listing, unlisting and
 * picking the oldest are O(1). The list may hold a connection that has since become busy:
 * the reclaim re-checks and drops such entries, and each entry is dropped at most once per
 * listing, so the walk is O(1) amortised. */
#include "conn/conn.h"

/* Between requests with nothing buffered, queued or in flight: closing it loses nothing. */
bool conn_is_idle(const struct rh_conn *c)
{
    return conn_live(c) && c->phase == PH_IDLE && !c->req && c->in_off == c->in_len &&
           c->held_head == RH_NO_BUF && c->pbuf.len == 0 &&
           !(c->flags & (C_CLOSING | C_SEND_INFLIGHT | C_BODY_INFLIGHT | C_CLOSE_AFTER_SEND |
                         C_PAUSED | C_PEER_EOF));
}

void conn_idle_remove(struct rh_conn *c)
{
    if (!(c->flags & C_IDLE_LISTED))
        return;
    struct rh_worker *w = c->w;
    if (c->idle_prev)
        c->idle_prev->idle_next = c->idle_next;
    else
        w->idle_head = c->idle_next;
    if (c->idle_next)
        c->idle_next->idle_prev = c->idle_prev;
    else
        w->idle_tail = c->idle_prev;
    c->idle_prev = c->idle_next = NULL;
    c->flags &= ~C_IDLE_LISTED;
}

void conn_idle_push(struct rh_conn *c)
{
    conn_idle_remove(c);
    if (!conn_is_idle(c))
        return;
    struct rh_worker *w = c->w;
    c->idle_prev = w->idle_tail;
    c->idle_next = NULL;
    if (w->idle_tail)
        w->idle_tail->idle_next = c;
    else
        w->idle_head = c;
    w->idle_tail = c;
    c->flags |= C_IDLE_LISTED;
}

/* Unlists and returns the longest-idle connection, for the caller to close; entries that
 * are busy now are dropped on the way (they rejoin when idle again). NULL if none. */
struct rh_conn *conn_idle_pop(struct rh_worker *w)
{
    while (w->idle_head) {
        struct rh_conn *c = w->idle_head;
        conn_idle_remove(c);
        if (conn_is_idle(c))
            return c;
    }
    return NULL;
}
