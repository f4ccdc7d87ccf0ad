/* conn/: the transport. Connections (slots, generations), recv/send/close on the
 * ring, input and output buffers with the back-pressure marks, accept, the idle list, the
 * spill and starved lists. Its types are in conn/conn_types.h. Includes and calls only
 * uring/, base/ and the server object (core/server.h: cfg and proto); never sees a
 * request's fields: it calls up through srv->proto (struct conn_proto), which asks the
 * protocol about c->req (HTTP/1: http1/conn_hooks.c, http1/body_rate.c): input, "can take
 * more output" (on_writable: whatever sends a body above goes on), close. */
#ifndef RH_CONN_CONN_H
#define RH_CONN_CONN_H

#include "conn/conn_types.h"
#include "core/server.h"

/* conn.c */
void conn_register_ops(struct rh_loop *loop);
void conn_mark_dirty(struct rh_conn *c);
/* Arms the head or body deadline (ms from now); a send's write timeout stands in for it
 * while the send is out, and the deadline is restored, not extended, when it completes. */
void conn_arm_phase_deadline(struct rh_conn *c, unsigned ms);
void conn_request_done(struct rh_conn *c); /* the current request ended: resume input */
/* Output queued on the connection: pending plus the part of the send in flight not sent. */
static inline size_t conn_out_queued(const struct rh_conn *c)
{
    return (c->wbuf.len - c->wbuf.sent) + c->pbuf.len;
}
void conn_process(struct rh_conn *c);
/* Bytes in, as a recv delivers them: appends and processes. false if they do not fit now
 * (the caller holds them). The entry point for unit tests and the fuzzer too. */
bool conn_feed(struct rh_conn *c, const char *data, uint32_t n);
void conn_fail(struct rh_conn *c, int status); /* answer status, then close */
void conn_close(struct rh_conn *c);
/* Completes a close once no op of ours references the fd (a body source calls it when its
 * last op on a closing connection comes back: C_BODY_INFLIGHT). */
void conn_finish_close(struct rh_conn *c);
void conn_flush_dirty(struct rh_loop *loop);
void conn_close_all(struct rh_worker *w, bool idle_only);
void conn_abandon_requests(struct rh_worker *w); /* the ring is gone: orphan them all */
void conn_open(struct rh_worker *w, int fd); /* a slot must be free */

/* accept.c */
void conn_arm_accept(struct rh_worker *w);
void conn_accept_on_completion(struct rh_loop *loop, const struct io_uring_cqe *cqe);

/* conn_idle.c: idle (keep-alive or fresh, nothing pending) connections, oldest first */
bool conn_is_idle(const struct rh_conn *c);
void conn_idle_push(struct rh_conn *c);   /* it went idle now: to the tail, if idle */
void conn_idle_remove(struct rh_conn *c); /* O(1); no-op if not listed */
struct rh_conn *conn_idle_pop(struct rh_worker *w); /* the oldest idle, unlisted, or NULL */

/* conn_bufs.c: input waiting for room, and connections waiting for provided buffers */
bool conn_spill_append(struct rh_conn *c, const char *data, uint32_t n); /* false past the bound */
uint32_t conn_spill_take(struct rh_conn *c, char *dst, uint32_t room); /* bytes moved to dst */
void conn_spill_free(struct rh_conn *c);
void conn_starved_push(struct rh_conn *c); /* recv ended with -ENOBUFS: wait for buffers */
void conn_starved_remove(struct rh_conn *c);
struct rh_conn *conn_starved_pop(struct rh_worker *w); /* the oldest, or NULL */
unsigned conn_starved_free_buffers(const struct rh_worker *w);

/* conn_bufs.c: output buffers */
void conn_obuf_release(struct rh_worker *w, struct rh_obuf *b);
char *conn_obuf_reserve(struct rh_worker *w, struct rh_obuf *b, size_t n);

#endif
