/* Input a connection cannot take yet, and connections waiting for provided buffers: the
 * spill (input copied out of provided buffers, so a busy connection gives them back at
 * once instead of holding them) and the starved list (recvs that ended with -ENOBUFS, re-armed
 * oldest first when buffers are back), and the output buffers (pbuf/wbuf blocks, recycled
 * on the worker's free list). conn.c decides when; this file keeps the books. */
#include <mimalloc.h>
#include <string.h>

#include "base/freelist.h"
#include "conn/conn.h"

/* ---- the spill ---- */

bool conn_spill_append(struct rh_conn *c, const char *data, uint32_t n)
{
    if (c->spill_len + n > RH_SPILL_MAX)
        return false;
    if (c->spill_len + n > c->spill_cap) {
        uint32_t cap = c->spill_cap ? c->spill_cap * 2 : RH_IN_BLOCK;
        while (cap < c->spill_len + n)
            cap *= 2;
        char *ns = mi_realloc(c->spill, cap); /* owner: the connection, until drained */
        if (!ns)
            return false;
        c->spill = ns;
        c->spill_cap = cap;
    }
    memcpy(c->spill + c->spill_len, data, n);
    c->spill_len += n;
    return true;
}

uint32_t conn_spill_take(struct rh_conn *c, char *dst, uint32_t room)
{
    uint32_t left = c->spill_len - c->spill_off;
    uint32_t n = room < left ? room : left;
    memcpy(dst, c->spill + c->spill_off, n);
    c->spill_off += n;
    if (c->spill_off == c->spill_len)
        conn_spill_free(c); /* rare and short-lived: not kept */
    return n;
}

void conn_spill_free(struct rh_conn *c)
{
    mi_free(c->spill);
    c->spill = NULL;
    c->spill_len = c->spill_off = c->spill_cap = 0;
}

/* ---- the starved list ---- */

void conn_starved_push(struct rh_conn *c)
{
    struct rh_worker *w = c->w;
    if (c->flags & C_STARVED)
        return;
    c->flags |= C_STARVED;
    c->starved_next = NULL;
    c->starved_prev = w->starved_tail;
    if (w->starved_tail)
        w->starved_tail->starved_next = c;
    else
        w->starved_head = c;
    w->starved_tail = c;
}

void conn_starved_remove(struct rh_conn *c)
{
    struct rh_worker *w = c->w;
    if (!(c->flags & C_STARVED))
        return;
    c->flags &= ~C_STARVED;
    if (c->starved_prev)
        c->starved_prev->starved_next = c->starved_next;
    else
        w->starved_head = c->starved_next;
    if (c->starved_next)
        c->starved_next->starved_prev = c->starved_prev;
    else
        w->starved_tail = c->starved_prev;
    c->starved_prev = c->starved_next = NULL;
}

/* Between loop iterations every provided buffer is either held by a connection or back in
 * the ring (published right after the flush), so the count is exact. */
unsigned conn_starved_free_buffers(const struct rh_worker *w)
{
    return w->loop.bufs.count - w->held_total;
}

struct rh_conn *conn_starved_pop(struct rh_worker *w)
{
    struct rh_conn *c = w->starved_head;
    if (c)
        conn_starved_remove(c);
    return c;
}

/* ---- output buffers ---- */

char *conn_obuf_reserve(struct rh_worker *w, struct rh_obuf *b, size_t n)
{
    if (b->len + n <= b->cap)
        return b->data + b->len;
    size_t need = b->len + n;
    if (!b->data && need <= RH_OUT_BLOCK) {
        /* the common case: a recycled block, no allocation */
        b->data = rh_freelist_pop(&w->free_out, &w->nfree_out);
        if (!b->data)
            b->data = mi_malloc(RH_OUT_BLOCK); /* owner: connection, then free list */
        b->cap = RH_OUT_BLOCK;
        return b->data ? b->data : NULL;
    }
    size_t cap = b->cap ? b->cap : RH_OUT_BLOCK;
    while (cap < need)
        cap *= 2;
    char *nd = mi_malloc(cap); /* owner: the connection; freed by conn_obuf_release */
    if (!nd)
        return NULL;
    size_t len = b->len, sent = b->sent;
    if (len)
        memcpy(nd, b->data, len);
    conn_obuf_release(w, b);
    b->data = nd;
    b->cap = cap;
    b->len = len;
    b->sent = sent;
    return b->data + b->len;
}

void conn_obuf_release(struct rh_worker *w, struct rh_obuf *b)
{
    if (b->data) {
        if (b->cap != RH_OUT_BLOCK ||
            !rh_freelist_push(&w->free_out, &w->nfree_out, RH_FREE_BLOCKS_MAX, b->data))
            mi_free(b->data);
    }
    b->data = NULL;
    b->len = b->cap = b->sent = 0;
}
