/* What the transport asks HTTP/1 about the request on a connection (its struct conn_proto
 * entries, wired in server/wire.c), so conn/ never reads a request's fields: the head's
 * anchor when the input is compacted, whether the answer started, whether a request only
 * waits, and whether a streaming writer waits for room. */
#include "http1/http1.h"

/* The connection's input was compacted: a head still in it moved back by drop bytes. */
void h1_req_input_moved(struct rh_conn *c, uint32_t drop)
{
    if (c->req->base && !c->req->head_copy)
        c->req->base -= drop;
}

bool h1_req_resp_started(const struct rh_req *r)
{
    return (r->flags & R_RESP_STARTED) != 0;
}

/* Unanswered, and waiting only for a pool task or its ring timer (a peer's EOF gives it up). */
bool h1_req_only_waiting(const struct rh_req *r)
{
    return !(r->flags & R_RESP_STARTED) && (r->offload || r->app_timer_fn);
}
