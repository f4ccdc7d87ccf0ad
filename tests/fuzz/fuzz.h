/* tests/fuzz/: the connection state machine and the parser under libFuzzer.
 *
 * One "world" per input: a server, one worker, a slab of up to FZ_MAX_STREAMS connections
 * (several clients at once, interleaved), and a fake ring standing in for the kernel. The real code runs unchanged from the accept completion to the
 * close: conn.c's recv/send/close paths, llhttp, request, router, middleware, handlers and
 * the response writer. The fake ring is reached by link-time wrapping (-Wl,--wrap=, see
 * CMakeLists.txt), never by editing the server:
 *   rh_loop_sqe          SQEs land in an array that fake_ring.c plays like a kernel would
 *   rh_loop_buf_recycle  provided buffers are tracked (each handed out, recycled once)
 *   shutdown, close      on our fake fds: recorded and checked, no syscall
 *   h1_req_acquire          counts live requests (a context slot's destructor counts them down)
 *   mi_*                 libc malloc, so ASan sees every block (it cannot see into mimalloc)
 *
 * Why not a real ring (rh_loop_init on the fuzzing thread)? It needs io_uring in the sandbox
 * (container seccomp profiles often refuse it), its close(2)s would run on fd numbers that
 * may be libFuzzer's own, and completion order would be the kernel's rather than the
 * input's, so a crash would not replay. The fake ring is deterministic, needs no kernel
 * support, lets the input choose short writes, resets, ENOBUFS and cancellation races, and
 * checks what a kernel silently tolerates (a second multishot recv, a send after shutdown).
 *
 * Owns nothing outside the world; no thread but the fuzzer's. */
#ifndef RH_TESTS_FUZZ_H
#define RH_TESTS_FUZZ_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "app/app.h"
#include "conn/conn.h"
#include "http1/http1.h"
#include "obs/obs.h"
#include "server/srv.h"
#include "static/static.h"

#define FZ_FD_BASE (1 << 30) /* fake socket fds: never open here, so they can't alias a real one */
#define FZ_MAX_BUFS 16
#define FZ_MAX_SQES 256
#define FZ_MAX_CQES 256
#define FZ_MAX_STREAMS 4 /* clients at once on the one ring */
#define FZ_MAX_SOCKS 24  /* sockets accepted per input (each stream reconnects after a close) */
/* Parked requests: one live per connection, plus orphans (their connection closed, or the
 * handler deadline passed) kept until answered, across the input's connections. */
#define FZ_MAX_PARKED 64
#define FZ_HEAD_MAX 8192 /* a response head we produce is far smaller */
/* Bytes 0xF0..0xF7 of stream j's payload are rewritten to FZ_TAG(j) when several streams
 * run: a tag byte of another stream in a request or a response is a cross-connection leak. */
#define FZ_TAG(j) (0xF0u + (unsigned)(j))
#define FZ_IS_TAG(b) (((unsigned char)(b) & 0xF8u) == 0xF0u)

/* A failed invariant is a crash for libFuzzer: say which, then abort. */
#define FZ_CHECK(cond, ...)                                                                   \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz_conn: %s:%d: invariant failed: %s: ", __FILE__, __LINE__,  \
                    #cond);                                                                   \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

struct fz_cqe {
    uint64_t ud;
    int32_t res;
    uint32_t flags;
    int sock; /* the socket it is about (k->socks), or -1 */
};

/* A response head as the middleware's after hook saw it being written. */
struct fz_record {
    uint64_t offset; /* in the connection's output stream */
    int status;
    bool head_req;
};

enum fz_vstate {
    V_HEAD,       /* collecting a response head */
    V_BODY,       /* Content-Length bytes left in remain */
    V_CHUNK_SIZE, /* collecting a chunk-size line */
    V_CHUNK_DATA,
    V_CHUNK_CRLF,
    V_CHUNK_END, /* after "0\r\n": the final CRLF */
    V_REST,      /* close-delimited body: everything until the close */
    V_CLOSED,    /* a Connection: close response ended: nothing may follow */
};

/* Checks the bytes the kernel was given, as a client would parse them. */
struct fz_verify {
    enum fz_vstate st;
    uint64_t pos, head_start, remain;
    char head[FZ_HEAD_MAX];
    uint32_t head_len;
    char line[32];
    uint32_t line_len;
    bool closes;
    struct fz_record *rec; /* heads written, in order (malloc, reset per connection) */
    unsigned nrec, cap, next;
};

enum fz_park_kind { PARK_RESPOND, PARK_STREAM_END, PARK_NEXT };

struct fz_parked {
    rh_req *req;
    enum fz_park_kind kind;
};

/* The kernel's side of one accepted socket, and the client's view of its response stream.
 * Sockets are never forgotten within an input (late ops on a closed one are caught); fd
 * numbers are reused once closed, lowest first, as the kernel does. */
struct fz_sock {
    int fd;
    unsigned stream;     /* the client (payload) it belongs to */
    bool fd_open;        /* until the server's close op (or close(2) of a refused accept) */
    bool bound;          /* accepted into a slot: idx and gen are the server's conn */
    bool refused;        /* the server closed it at accept (no free slot, draining) */
    bool wr_shut, stalled;
    bool close_shut;     /* shutdown(SHUT_RD or SHUT_RDWR) by a close: later ops end at once */
    bool recv_armed, send_armed;
    bool eof_pending, rst_pending; /* delivered on the next armed recv */
    bool ended;          /* the client sent its EOF or reset (or was told to) */
    uint32_t idx, gen;
    uint64_t recv_ud, send_ud;
    const char *send_addr; /* the server's wbuf: the kernel's until the completion */
    uint32_t send_len;
    uint64_t acked; /* send bytes whose completion the server has dispatched */
    struct fz_verify v;
    bool close_seen;            /* C_CLOSE_AFTER_SEND was seen on this connection */
    uint32_t unparsed_at_close; /* input left unparsed then: it may only grow */
};

/* The ring's queues and the provided buffers all sockets share. */
struct fz_ring {
    struct io_uring_sqe sqes[FZ_MAX_SQES]; /* prepared, not yet submitted */
    unsigned nsqes;
    struct fz_cqe cqes[FZ_MAX_CQES]; /* posted, not yet dispatched */
    unsigned cq_head, cq_tail;

    struct fz_sock socks[FZ_MAX_SOCKS];
    unsigned nsocks;

    char *bufs; /* provided buffers, ASan-poisoned while the kernel owns them */
    unsigned nbufs, buf_size;
    bool buf_lent[FZ_MAX_BUFS]; /* true: in a completion the server has not recycled */
};

struct world {
    rh_server srv;
    struct rh_worker w;
    struct rh_conn conns[FZ_MAX_STREAMS];
    uint32_t free_idx[FZ_MAX_STREAMS];
    uint16_t held_next[FZ_MAX_BUFS];
    uint32_t held_len[FZ_MAX_BUFS];
    struct fz_ring k;
    struct fz_parked parked[FZ_MAX_PARKED];
    unsigned nparked;
    unsigned live_reqs; /* acquired and not yet ended */
    unsigned nstreams;
};

/* The world of the input being run: shutdown(2) carries only an fd. */
extern struct world *fz_current;

static inline struct world *world_of(struct rh_worker *w)
{
    return (struct world *)((char *)w - offsetof(struct world, w));
}

/* fake_ring.c */
void ring_init(struct world *W, unsigned nbufs, unsigned buf_size);
void ring_fini(struct world *W);
/* The listener yields a new socket for stream; NULL past FZ_MAX_SOCKS. Bound (or found
 * refused) when its completion is dispatched. */
struct fz_sock *ring_accept(struct world *W, unsigned stream);
void ring_submit(struct world *W);   /* what io_uring_submit would hand the kernel */
void ring_dispatch(struct world *W); /* every posted completion, in order */
bool ring_recv(struct world *W, struct fz_sock *s, const char *data, uint32_t n, bool final);
void ring_recv_nobufs(struct world *W, struct fz_sock *s);
void ring_deliver_eof(struct world *W); /* EOF or reset, on every socket with a recv armed */
void ring_complete_send(struct world *W, struct fz_sock *s, uint32_t max);
void ring_complete_sends(struct world *W, bool stalled_too); /* every socket's, in full */
void ring_fail_send(struct world *W, struct fz_sock *s, int err); /* the peer reset */
unsigned ring_pending(const struct world *W, uint8_t opcode, int fd);
/* Final completions posted but not dispatched yet (a close's shutdown from a timer posts
 * its recv's end after the iteration's dispatch: the next one takes it). */
unsigned ring_finals_posted(const struct world *W);
bool ring_posted(const struct world *W, uint64_t ud); /* a completion for ud awaits dispatch */
unsigned ring_bufs_lent(const struct world *W);
struct fz_sock *sock_by_fd(struct world *W, int fd); /* the open socket, or NULL */
/* The socket a live connection is on (checked: the slot and generation match). */
struct fz_sock *sock_of_conn(struct world *W, const struct rh_conn *c);
/* The connection a socket was accepted into, if that slot still holds it. */
struct rh_conn *conn_of_sock(struct world *W, const struct fz_sock *s);

/* invariants.c: every check between loop iterations; a failure aborts */
void world_sane(struct world *W);

/* resp_check.c */
void verify_reset(struct fz_verify *v);
void verify_free(struct fz_verify *v);
void verify_record(struct fz_verify *v, uint64_t offset, int status, bool head_req);
void verify_bytes(struct fz_verify *v, const char *p, uint32_t n);
bool verify_at_close(const struct fz_verify *v); /* everything queued ended cleanly */

#endif
