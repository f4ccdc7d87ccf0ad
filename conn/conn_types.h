/* conn/conn_types.h: the transport's types. A connection (struct rh_conn: slot,
 * generation, input and output buffers, the phase and its timer), the per-ring object
 * (struct rh_worker: the ring and the connection slots, with the per-ring state of the
 * layers above held as plain fields or opaque pointers), the ring's counters, and the
 * protocol table through which the transport calls the layer above (struct conn_proto).
 *
 * Sees only uring/ and the public header: a request (struct rh_req, http1/), the server
 * object (struct rh_server, core/server.h) and the upper layers' per-ring state are named
 * here only as pointers. */
#ifndef RH_CONN_CONN_TYPES_H
#define RH_CONN_CONN_TYPES_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "include/ringhttp.h"
#include "uring/loop.h"

struct rh_req;        /* http1/http1_types.h */
struct rh_server;     /* core/server.h */
struct rh_access_log; /* obs/obs.h */
struct static_ring;   /* static/static_priv.h */
struct offload;       /* app/offload.c */

/* The transport's completion kinds (conn_register_ops); the layers above number theirs
 * from CONN_OP_NEXT (static/: STATIC_OP_FILE, obs/: LOG_OP_WRITE). */
enum conn_op {
    CONN_OP_ACCEPT = RH_OP_FIRST_USER,
    CONN_OP_RECV,
    CONN_OP_SEND,
    CONN_OP_NEXT, /* the first kind of the layers above */
};

#define RH_IN_BLOCK 16384u  /* connection input buffer; > max_header_size + one recv */
#define RH_OUT_BLOCK 4096u /* connection output buffer, first size: 16 pipelined answers */
/* Blocks kept on a worker's free lists; a burst's extra blocks go back to mimalloc, so
 * memory after the burst follows the connections that are busy, not the peak. */
#define RH_FREE_BLOCKS_MAX 256u
#define RH_NO_BUF 0xffffu
#define RH_LINGER_MS 1500u
/* Output back-pressure per connection: past RH_OUT_HIGH bytes queued (pending + in flight)
 * the connection parses no further request and stops reading; below RH_OUT_LOW it resumes
 * and a streaming writer waiting in rh_resp_on_writable is called. A stream is refused past
 * RH_OUT_MAX (rh_resp_write: -ENOBUFS), so a writer that ignores the signal stays bounded. */
#define RH_OUT_HIGH (256u * 1024u)
#define RH_OUT_LOW (64u * 1024u)
#define RH_OUT_MAX (16u * 1024u * 1024u)
/* Provided buffers a connection may hold (input that does not fit its input block yet);
 * past it, or past a quarter of the ring held by all connections, input is copied into the
 * connection's spill buffer and the buffer goes back at once, so buffers keep cycling for
 * every other connection. The spill is bounded too: reading stops when it is first used. */
#define RH_HELD_MAX 2u
#define RH_SPILL_MAX (1024u * 1024u)
#define RH_CONN_PROTO_STATE 192u /* bytes: see rh_conn.proto_state */

/* An output buffer. A block of RH_OUT_BLOCK comes from the worker's free list; larger ones
 * from mimalloc. Owner: the connection, until released when the connection goes idle. */
struct rh_obuf {
    char *data;
    size_t len, cap, sent; /* size_t: a large streamed body must not wrap a 32-bit count */
};

enum rh_phase {
    PH_IDLE,    /* between requests: idle (keep-alive) timer */
    PH_HEAD,    /* reading a request head: header timer */
    PH_BODY,    /* reading a body: body timer, re-armed on progress */
    PH_HANDLER, /* dispatched, not answered: the handler deadline (--handler-timeout) */
    PH_LINGER,  /* answered with close: write shut, draining input briefly */
};

enum rh_conn_flag {
    C_RECV_ARMED = 1u << 0,     /* multishot recv outstanding */
    C_SEND_INFLIGHT = 1u << 1,  /* a send outstanding (wbuf is the kernel's) */
    C_CLOSING = 1u << 2,        /* close started: waiting for ops, then free */
    C_CLOSE_AFTER_SEND = 1u << 3, /* answer queued, then shut write and linger */
    C_PAUSED = 1u << 4,         /* a request is with its handler: parse no further */
    C_READ_STOPPED = 1u << 5,   /* recv cancelled for back-pressure (held buffers) */
    C_PEER_EOF = 1u << 6,       /* the peer shut its write side */
    C_PROCESSING = 1u << 7,     /* inside conn_process (reentrancy guard) */
    C_DIRTY = 1u << 8,          /* on the worker's flush list */
    C_WANT_RECV = 1u << 9,      /* re-arm recv at the next flush */
    C_BODY_INFLIGHT = 1u << 10, /* a body source's own op on the socket; close waits for it */
    C_LINGER_NEEDED = 1u << 11, /* failed mid-input: the client may still be sending */
    C_FREE_PENDING = 1u << 12,  /* closed while on the flush list: freed when popped */
    C_STARVED = 1u << 13,       /* recv ended with -ENOBUFS: on the worker's starved list */
    C_OUT_FULL = 1u << 14,      /* output past RH_OUT_HIGH: parse and read no further */
    C_NONBLOCK = 1u << 15,      /* static/: the socket was made O_NONBLOCK (once per connection) */
    C_IDLE_LISTED = 1u << 20,   /* on the worker's idle list (conn_idle.c) */
};

struct rh_conn {
    struct rh_worker *w;
    int fd;
    uint32_t idx, gen;
    uint32_t flags;
    enum rh_phase phase;
    /* The protocol's state on this connection, never read by the transport (HTTP/1: its
     * parser, struct h1_parser of http1/parse.h, which input.c checks fits). */
    _Alignas(8) unsigned char proto_state[RH_CONN_PROTO_STATE];
    struct rh_req *req; /* the request being read or handled (at most one: see C_PAUSED) */

    char *in; /* RH_IN_BLOCK from the worker's free list while bytes are pending */
    uint32_t in_len, in_off; /* bytes held / bytes given to the parser */
    uint16_t held_head, held_tail, nheld; /* provided buffers waiting for room in `in` */
    char *spill; /* input after the held buffers, copied (mimalloc; freed once drained) */
    uint32_t spill_len, spill_off, spill_cap;
    struct rh_conn *starved_prev, *starved_next; /* the worker's starved list (C_STARVED) */

    struct rh_obuf wbuf; /* being sent (the kernel's while C_SEND_INFLIGHT) */
    struct rh_obuf pbuf; /* being filled by responses */

    struct rh_timer timer;       /* the phase's deadline, or the write timeout meanwhile */
    uint64_t phase_deadline_ms;  /* head or body deadline, restored after a send */
    struct rh_conn *dirty_next;
    struct rh_conn *idle_prev, *idle_next; /* the worker's idle list, oldest first */
    uint32_t requests; /* served on this connection */
    char peer[INET6_ADDRSTRLEN]; /* filled on first use (access log), one getpeername */
};

/* Per-worker counters: written by the worker alone (relaxed load+store, no RMW), read by
 * whoever renders /metrics. */
#define RH_LAT_BUCKETS 10
struct rh_stats {
    _Atomic uint64_t by_class[6]; /* [1..5]: 1xx..5xx */
    _Atomic uint64_t latency[RH_LAT_BUCKETS + 1]; /* le bucket counts, last is +Inf */
    _Atomic uint64_t latency_sum_ms;
    _Atomic uint64_t accepted;
    _Atomic uint64_t recv_enobufs; /* the provided-buffer ring ran dry (back-pressure) */
    _Atomic uint64_t conn_reclaimed; /* idle connections closed at the limit for a new one */
    _Atomic uint64_t conn_refused;   /* new connections closed at the limit (none idle) */
    _Atomic uint64_t close_forced;   /* closes that gave up on a lost send completion */
    _Atomic uint64_t body_too_slow;  /* 408 for a body below the minimum rate */
    _Atomic uint32_t open_conns;
};

static inline void conn_stat_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* The per-ring object: one per ring thread (server.c starts them), touched only on that
 * thread except the counters (read by /metrics) and what server.c reads once the thread
 * has ended. Its fields are laid out as before the split (hot ones together); who owns
 * which: the transport (conn/) the ring, the slots, the input/output block free lists, the
 * held/starved/idle/dirty lists and the accept state it shares with server/listeners.c;
 * http1/ free_reqs, the writable and orphan lists and the Date line; app/ free_offloads;
 * static/ fstatic and obs/ log (opaque pointers to their own per-ring state); server/ id,
 * thread, error, the grace and drain state (grace and draining are read by http1/ and obs/
 * to retire kept-alive connections). A layer's fields are named here only with types the
 * transport may see (pointers to the upper layers' types are opaque). */
struct rh_worker {
    struct rh_loop loop;
    struct rh_stats stats;
    struct rh_access_log *log;
    struct static_ring *fstatic; /* static.c: the open-file cache and transfers, or NULL */
    struct rh_server *srv;
    unsigned id;
    pthread_t thread;
    int listen_fd;
    int error; /* why the thread ended, -errno */
    /* listeners.c: the sockets this ring accepts from (&listen_fd, or the server's shared
     * ones), one multishot accept each (user_data idx = slot); accept_stopped ends them. */
    const int *accept_fds;
    unsigned naccept;
    uint32_t accept_armed; /* a bit per slot */
    uint32_t accept_seen;  /* slots with a completion since the last nudge */
    struct rh_timer accept_nudge;
    bool accept_stopped;
    bool grace; /* drain.c: stopping after a grace; responses carry Connection: close */
    uint64_t grace_deadline_ms;
    struct rh_timer grace_timer;
    struct rh_timer accept_timer; /* back-off after EMFILE and friends */
    uint64_t accept_warned_ms;
    bool draining;
    uint64_t drain_deadline_ms;

    struct rh_conn *conns; /* max_conns slots (mmap: pages are touched as used) */
    uint32_t *free_idx, free_top;
    unsigned open_conns;

    struct rh_conn *dirty; /* connections with output or a recv to arm this iteration */
    struct rh_conn *idle_head, *idle_tail; /* idle connections, longest idle first */
    struct rh_req *free_reqs;
    struct offload *free_offloads;
    char *free_in, *free_out; /* free lists of RH_IN_BLOCK / RH_OUT_BLOCK blocks */
    unsigned nfree_in, nfree_out;
    uint16_t *held_next;     /* per provided buffer: next in a connection's held list */
    uint32_t *held_len;
    unsigned held_total;     /* provided buffers held by all connections */
    struct rh_conn *starved_head, *starved_tail; /* waiting for buffers, oldest first */
    struct rh_req *writable_head, *writable_tail; /* streaming writers to call back */
    struct rh_req *orphans; /* detached from their connection, not yet answered */

    char date_line[48]; /* "Date: ...\r\n", refreshed once per second */
    uint32_t date_len;
    int64_t date_sec;
};

/* The protocol over a connection (HTTP/1 today), called by the transport (conn.c). */
struct conn_proto {
    void (*on_open)(struct rh_conn *c);  /* a fresh connection, before its first recv */
    int (*on_input)(struct rh_conn *c);  /* parse from c->in_off; > 0: fail with that status */
    const char *(*input_keep)(struct rh_conn *c); /* where input compaction may start */
    /* c->req is set and the connection can take more output: all of it sent (drained), or
     * below RH_OUT_LOW after a send; its body source, if any, goes on */
    void (*on_writable)(struct rh_conn *c);
    void (*input_moved)(struct rh_conn *c, uint32_t drop); /* compacted: c->req's head moved */
    bool (*resp_started)(const struct rh_req *r); /* its answer's head is out */
    bool (*only_waiting)(const struct rh_req *r); /* unanswered, waiting for pool or timer */
    /* The request body's minimum rate (PH_BODY): the deadline of the current window (the
     * earlier of it and the gap's), bytes read, the body timer fired (true: it may go on). */
    uint64_t (*body_deadline)(struct rh_conn *c, uint64_t gap_deadline_ms);
    void (*body_progress)(struct rh_conn *c, uint32_t bytes);
    bool (*body_timer)(struct rh_conn *c);
    void (*on_deadline)(struct rh_req *r); /* the handler deadline passed */
    int (*on_fail)(struct rh_conn *c, int status); /* an error page; < 0: could not */
    void (*on_closed)(struct rh_conn *c, bool abandoned); /* c->req ends or is orphaned */
    void (*before_flush)(struct rh_worker *w); /* the Date line, streaming writers */
    void (*after_flush)(struct rh_worker *w);  /* after the sends: wake pool threads */
    void (*on_stop)(struct rh_worker *w);      /* the ring has exited: free the orphans */
};

/* A slot in use. Slots never used are all zero (their pages untouched), freed ones have
 * fd -1; generation 0 is never handed out. */
static inline bool conn_live(const struct rh_conn *c) { return c->gen != 0 && c->fd >= 0; }

#endif
