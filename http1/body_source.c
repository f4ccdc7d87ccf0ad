/* Body sources: what sends a response's body after its head, pulled by the connection as it
 * can take more output, as h2o's generators are (proceed/stop). A static file transfer
 * (static/static_xfer.c) and a streaming writer waiting for room (rh_resp_on_writable,
 * response.c) are both one: the connection calls up once (conn_proto.on_writable), HTTP/1
 * calls the request's current source, and neither conn/ nor the server wiring knows which.
 *
 * The contract, for a source attached to req (h1_body_attach), all on req's ring thread:
 *   proceed(req, self): req's connection can take more output: everything queued before
 *     has been sent (drained), or what is queued fell to RH_OUT_LOW or below after a send.
 *     The source writes or submits its next piece, or returns at once if it cannot go on
 *     yet (a source that writes to the socket itself waits for the drained case). It may
 *     be called again before its previous piece has gone: it must be idempotent then.
 *   stop(req, self): the connection went away before the body ended. req is already
 *     detached (req->conn is NULL: an orphan); the source releases what it holds, never
 *     touches the connection again, and ends its part with h1_body_done: at once (a file),
 *     or once the code above it is told (a streaming writer, called with -ECONNRESET, ends
 *     the response with rh_resp_end).
 *   h1_body_done(req): the source has sent (or given up) its last byte; the request is
 *     answered in full and the connection goes on with the next pipelined request.
 * A request with no source pays one pointer test on the paths that call up. */
#include "http1/http1.h"

/* conn_proto.on_writable: c->req may go on. Ring thread; c->req is set. */
void h1_on_writable(struct rh_conn *c)
{
    struct rh_req *r = c->req;
    if (r->body_src.ops)
        r->body_src.ops->proceed(r, r->body_src.self);
}

/* The connection of r (now detached, an orphan) went away with a source still attached:
 * tells it (stop). Returns true if there was one (it ends r, now or later), false if not
 * (whoever else holds r ends it). Ring thread. */
bool h1_body_stop(struct rh_req *r)
{
    struct h1_body_source src = r->body_src;
    if (!src.ops)
        return false;
    src.ops->stop(r, src.self);
    return true;
}

/* The source is finished: detaches it and completes r (which may be freed on return; the
 * connection, if any, resumes its input). Ring thread. */
void h1_body_done(struct rh_req *r)
{
    r->body_src.ops = NULL;
    h1_req_complete(r);
}
