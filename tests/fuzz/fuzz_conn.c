/* libFuzzer target: arbitrary byte streams, split at arbitrary points, through a connection
 * (see fuzz.h for the world it runs in).
 *
 * Input layout: 16 control bytes, then the bytes the client sends (the payload).
 *   ctrl[0]   bit 0: hand input to conn_feed directly (else: multishot recv completions into
 *                    provided buffers, which exercises holding and read back-pressure)
 *             bit 1: small limits from ctrl[1..4] (else the defaults)
 *             bits 2-3: how the connection ends: peer EOF, peer reset, the server closes
 *                    it, or a graceful stop (idle connections close) then EOF
 *             bit 4: the worker is draining (every response closes)
 *   ctrl[1]   max_header_size = 24 + 32 * b     ctrl[2]  max_uri = min(1 + 4 * b, header)
 *   ctrl[3]   max_body = 3 * b                   ctrl[4]  max_headers = b % 20
 *   ctrl[5]   bits 0-1: recv buffer size 4096/1024/256/64; bits 2-3: 16/8/4/16 buffers;
 *             bits 4-6: the payload is sent REPEAT[] times over (more than the 16 KiB input
 *             block even with -max_len=16384: compaction, holding, bodies streaming through)
 *   ctrl[6..15] the schedule, used in a cycle: one byte per piece of input;
 *             bits 0-4 pick the piece's length (PIECE[], capped by the buffer size),
 *             bits 5-7 what else happens in that loop iteration (enum step_op).
 * Printable control bytes mean something: '@' is "defaults, whole pieces, sent once", 'A'
 * feed mode, 'B' small limits; in the schedule, uppercase is a plain step, lowercase also
 * answers a parked request, digits and punctuation leave the send in flight.
 *
 * After each iteration the world is checked (world_sane); at the end the connection must
 * close, every request must have ended exactly once, every op must have completed and every
 * buffer must be back. A failed check aborts, which libFuzzer reports as a crash. */
#include <errno.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"

enum { CTRL_LEN = 16, SCHED_OFF = 6, SCHED_LEN = 10, MAX_CONNS_PER_INPUT = 8 };

enum step_op {
    OP_SHORT_WRITE, /* the send completes partly (fails with a reset for length index 0) */
    OP_SEND_STALLS, /* the send stays in flight this iteration */
    OP_PLAIN,       /* the send completes in full */
    OP_ANSWER,      /* plain, and the oldest parked request is answered */
    OP_RECV_FINAL,  /* the piece ends the multishot recv (re-armed at the next flush) */
    OP_NOBUFS,      /* the multishot recv ends with -ENOBUFS before the piece */
    OP_BURST,       /* the next piece arrives in the same iteration (two completions) */
    OP_TIME,        /* time passes: 1.6 s (linger) for an even length index, else 61 s */
};

static const uint32_t PIECE[32] = {4096, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16,
                                   17, 20, 24, 31, 32, 33, 48, 64, 100, 127, 128, 255, 256,
                                   512, 1000, 2048};
static const unsigned REPEAT[8] = {5, 6, 7, 8, 1, 2, 3, 4}; /* '@'..'O': once */

/* The payload, sent `repeat` times over, cut into pieces by the schedule. */
struct stream {
    const char *data;
    size_t len;
    uint64_t pos, total;
    const uint8_t *sched;
    unsigned next; /* schedule index */
};

/* The next piece into out (a copy: a piece may wrap around the payload); its schedule byte
 * in *sched_byte. */
static uint32_t next_piece(struct stream *st, uint32_t max, char *out, uint8_t *sched_byte)
{
    uint8_t sb = st->sched[st->next++ % SCHED_LEN];
    uint64_t n = PIECE[sb & 31];
    if (n > max)
        n = max; /* one recv's worth at most: what the server sizes its input block for */
    if (n > st->total - st->pos)
        n = st->total - st->pos;
    for (uint64_t i = 0; i < n; i++)
        out[i] = st->data[(st->pos + i) % st->len];
    st->pos += n;
    *sched_byte = sb;
    return (uint32_t)n;
}

struct world *fz_current;
static rh_server tmpl; /* routes and middleware, built once; each world copies it */
static rh_ctx_key live_key;

/* ---- handlers ---- */

static volatile unsigned sink;

static void touch(rh_str s) /* every byte a slice claims must be readable */
{
    unsigned sum = 0;
    for (size_t i = 0; i < s.len; i++)
        sum += (unsigned char)s.ptr[i];
    sink += sum;
}

static void park(rh_req *r, enum fz_park_kind kind)
{
    struct world *W = world_of(r->w);
    FZ_CHECK(W->nparked < FZ_MAX_PARKED, "more parked requests than the input's connections allow");
    W->parked[W->nparked++] = (struct fz_parked){r, kind};
}

static void h_hello(rh_req *r, void *u) { rh_respond(r, 200, "text/plain", "hello\n", 6); }

/* Reads everything a request offers, then echoes the body. */
static void h_echo(rh_req *r, void *u)
{
    rh_str name, value, q;
    unsigned n = rh_req_header_count(r);
    for (unsigned i = 0; i < n; i++) {
        FZ_CHECK(rh_req_header_at(r, i, &name, &value) == 0, "header %u of %u", i, n);
        touch(name);
        touch(value);
    }
    FZ_CHECK(rh_req_header_at(r, n, &name, &value) == -ERANGE, "header past the count");
    touch(rh_req_header(r, "content-type"));
    touch(rh_req_method(r));
    rh_str url = rh_req_url(r), path = rh_req_path(r), query = rh_req_query(r);
    FZ_CHECK(path.ptr == url.ptr && path.len <= url.len, "path is not a prefix of the url");
    FZ_CHECK(query.ptr >= url.ptr && query.ptr + query.len <= url.ptr + url.len,
             "query outside the url");
    touch(url);
    if (rh_req_query_param(r, "q", &q) == 0)
        touch(q);
    rh_str body = rh_req_body(r);
    if (!(r->flags & R_CHUNKED))
        FZ_CHECK(body.len == r->content_length, "body %zu of a declared %llu", body.len,
                 (unsigned long long)r->content_length);
    touch(body);
    rh_respond(r, 200, "application/octet-stream", body.ptr, body.len);
}

/* Request bytes into response headers: the writer must refuse what would split them. */
static void copy_header(rh_req *r, const char *name, rh_str v)
{
    char buf[96];
    size_t n = v.len < sizeof(buf) - 1 ? v.len : sizeof(buf) - 1;
    memcpy(buf, v.ptr ? v.ptr : "", n);
    buf[n] = 0;
    int ret = rh_resp_header(r, name, buf);
    FZ_CHECK(ret == 0 || ret == -EINVAL, "rh_resp_header: %d", ret);
}

static void h_item(rh_req *r, void *u)
{
    rh_str id = rh_req_param(r, "id"), tag = rh_req_param(r, "tag");
    touch(id);
    touch(tag);
    copy_header(r, "X-Id", id);
    copy_header(r, "X-Echo", rh_req_header(r, "x-echo"));
    rh_str name; /* a header name from the query: refused unless it is a token */
    if (rh_req_query_param(r, "h", &name) == 0 && name.len && name.len < 64) {
        char buf[64];
        memcpy(buf, name.ptr, name.len);
        buf[name.len] = 0;
        int ret = rh_resp_header(r, buf, "v");
        FZ_CHECK(ret == 0 || ret == -EINVAL, "rh_resp_header: %d", ret);
    }
    rh_respond(r, 200, "text/plain", id.ptr, id.len);
}

/* A status from the query ("/status?404"); 1xx is left out: a handler that answers with an
 * interim status leaves the client waiting for a final one (API misuse, not a server bug). */
static void h_status(rh_req *r, void *u)
{
    rh_str q = rh_req_query(r);
    int status = 0;
    for (size_t i = 0; i < q.len && i < 4 && q.ptr[i] >= '0' && q.ptr[i] <= '9'; i++)
        status = status * 10 + (q.ptr[i] - '0');
    if (status >= 100 && status < 200)
        status = 200;
    int ret = rh_respond(r, status, "text/plain", "status\n", 7);
    FZ_CHECK(ret == 0 || (ret == -EINVAL && (status < 100 || status > 999)), "rh_respond(%d): %d",
             status, ret);
    if (ret < 0)
        rh_respond(r, 400, NULL, NULL, 0);
}

static void h_files(rh_req *r, void *u)
{
    rh_str rest = rh_req_param(r, "*");
    touch(rest);
    rh_respond(r, 200, "text/plain", rest.ptr, rest.len);
}

static void h_stream(rh_req *r, void *u)
{
    rh_str q = rh_req_query(r);
    FZ_CHECK(rh_resp_start(r, 200, "text/plain") == 0, "rh_resp_start");
    rh_resp_write(r, q.ptr, q.len);
    rh_resp_write(r, "-\n", 2);
    FZ_CHECK(rh_resp_end(r) == 0, "rh_resp_end");
}

/* Streams across loop iterations: the rest comes when the harness answers. */
static void h_slow(rh_req *r, void *u)
{
    FZ_CHECK(rh_resp_start(r, 200, "text/plain") == 0, "rh_resp_start");
    rh_resp_write(r, "slow ", 5);
    park(r, PARK_STREAM_END);
}

static void h_park(rh_req *r, void *u) { park(r, PARK_RESPOND); }

static char big[20000]; /* more than one output block */
static void h_big(rh_req *r, void *u) { rh_respond(r, 200, "text/plain", big, sizeof(big)); }

static void h_not_modified(rh_req *r, void *u) { rh_respond(r, 304, "text/plain", "x", 1); }

/* ---- middleware ---- */

/* First in the chain, so its after hook sees every head (RH_MW_ALL_RESPONSES: also those
 * rejected before the chain ran). */
static rh_mw_result check_before(rh_req *r, void *u)
{
    struct rh_conn *c = r->conn;
    FZ_CHECK(c && c->req == r, "dispatched without its connection");
    FZ_CHECK(!(c->flags & C_CLOSE_AFTER_SEND),
             "a request dispatched after a Connection: close answer was queued");
    FZ_CHECK((c->flags & C_PAUSED) && c->phase == PH_HANDLER, "dispatched but not paused");
    FZ_CHECK(r->flags & R_HEADERS_DONE, "dispatched before the head was complete");
    return RH_MW_NEXT;
}

static void check_after(rh_req *r, int status, void *u)
{
    struct rh_conn *c = r->conn;
    struct world *W = world_of(r->w);
    FZ_CHECK(c == &W->conns[0] && conn_live(c), "a head written for a connection gone");
    FZ_CHECK(!(c->flags & (C_CLOSE_AFTER_SEND | C_CLOSING)),
             "a response head queued after a Connection: close one (flags 0x%x)", c->flags);
    /* Where this head lands in the stream: sent and acknowledged, in flight, then pending. */
    uint64_t offset = W->k.acked + (c->wbuf.len - c->wbuf.sent) + c->pbuf.len;
    verify_record(&W->v, offset, status, r->flags & R_HEAD);
    FZ_CHECK(rh_resp_header(r, "X-Fuzz", "1") == 0, "after hook could not add a header");
}

/* X-Defer: suspend, resumed later with rh_next; X-Deny: answers itself; X-Lie: claims an
 * answer it did not give (the server answers 500). */
static rh_mw_result gate_before(rh_req *r, void *u)
{
    if (rh_req_header(r, "x-defer").ptr) {
        park(r, PARK_NEXT);
        return RH_MW_SUSPEND;
    }
    if (rh_req_header(r, "x-deny").ptr) {
        rh_respond(r, 403, "text/plain", "no\n", 3);
        return RH_MW_DONE;
    }
    return rh_req_header(r, "x-lie").ptr ? RH_MW_DONE : RH_MW_NEXT;
}

static void gate_after(rh_req *r, int status, void *u) { rh_resp_header(r, "X-Gate", "1"); }

static void live_destroy(void *v)
{
    struct world *W = v;
    FZ_CHECK(W->live_reqs > 0, "a request ended twice");
    W->live_reqs--;
}

/* Wrapped (-Wl,--wrap=req_acquire): a context slot whose destructor runs when it ends. */
struct rh_req *__real_req_acquire(struct rh_worker *w, struct rh_conn *c);
struct rh_req *__wrap_req_acquire(struct rh_worker *w, struct rh_conn *c);
struct rh_req *__wrap_req_acquire(struct rh_worker *w, struct rh_conn *c)
{
    struct rh_req *r = __real_req_acquire(w, c);
    struct world *W = world_of(w);
    W->live_reqs++;
    FZ_CHECK(rh_req_ctx_set(r, live_key, W) == 0, "context slot");
    return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    memset(big, 'b', sizeof(big));
    rh_config_init(&tmpl.cfg);
    tmpl.log_fd = -1;
    tmpl.routes = router_new();
    server_wire(&tmpl);
    rh_route(&tmpl, "GET", "/", h_hello, NULL);
    rh_route(&tmpl, "*", "/echo", h_echo, NULL);
    rh_route(&tmpl, "GET", "/items/:id", h_item, NULL);
    rh_route(&tmpl, "DELETE", "/items/:id", h_hello, NULL);
    rh_route(&tmpl, "GET", "/items/:id/tags/:tag", h_item, NULL);
    rh_route(&tmpl, "*", "/files/*", h_files, NULL);
    rh_route(&tmpl, "GET", "/stream", h_stream, NULL);
    rh_route(&tmpl, "GET", "/slow", h_slow, NULL);
    rh_route(&tmpl, "*", "/park", h_park, NULL);
    rh_route(&tmpl, "GET", "/big", h_big, NULL);
    rh_route(&tmpl, "GET", "/nc", h_not_modified, NULL);
    rh_route(&tmpl, "*", "/status", h_status, NULL);
    rh_metrics_route(&tmpl, NULL);
    rh_use(&tmpl, &(rh_middleware){.name = "check", .before = check_before,
                                   .after = check_after, .flags = RH_MW_ALL_RESPONSES});
    rh_use_request_id(&tmpl);
    rh_use(&tmpl, &(rh_middleware){.name = "gate", .before = gate_before, .after = gate_after});
    live_key = rh_ctx_key_new("fuzz-live", live_destroy);
    return live_key < 0;
}

/* ---- the world ---- */

static void configure(rh_config *cfg, const uint8_t *ctrl)
{
    static const unsigned buf_size[4] = {4096, 1024, 256, 64};
    static const unsigned nbufs[4] = {16, 8, 4, 16};
    cfg->recv_buffer_size = buf_size[ctrl[5] & 3];
    cfg->recv_buffers = nbufs[(ctrl[5] >> 2) & 3];
    cfg->max_conns = 1;
    if (ctrl[0] & 2) {
        cfg->max_header_size = 24 + 32u * ctrl[1];
        cfg->max_uri = 1 + 4u * ctrl[2] < cfg->max_header_size ? 1 + 4u * ctrl[2]
                                                               : cfg->max_header_size;
        cfg->max_body = 3u * ctrl[3];
        cfg->max_headers = ctrl[4] % 20;
    }
    /* What rh_server_new's check_config insists on. */
    FZ_CHECK(cfg->max_header_size + cfg->recv_buffer_size <= RH_IN_BLOCK &&
                 cfg->max_uri <= cfg->max_header_size,
             "a configuration the server would refuse");
}

static struct world *world_new(const uint8_t *ctrl)
{
    struct world *W = calloc(1, sizeof(*W));
    FZ_CHECK(W, "out of memory");
    W->srv = tmpl;
    configure(&W->srv.cfg, ctrl);
    struct rh_worker *w = &W->w;
    w->srv = &W->srv;
    w->loop.owner = w;
    w->loop.now_ms = 1000;
    rh_wheel_init(&w->loop.wheel, w->loop.now_ms);
    conn_register_ops(&w->loop);
    worker_refresh_date(w);
    w->conns = W->conns;
    w->free_idx = W->free_idx;
    w->free_top = 1;
    w->held_next = W->held_next;
    w->held_len = W->held_len;
    w->listen_fd = -1; /* the accept is not re-armed: one connection at a time */
    ring_init(W, W->srv.cfg.recv_buffers, W->srv.cfg.recv_buffer_size);
    fz_current = W;
    return W;
}

static void free_blocks(char **list) /* a worker's free list of raw blocks */
{
    while (*list) {
        char *b = *list;
        *list = *(char **)b;
        free(b);
    }
}

static void world_free(struct world *W)
{
    struct rh_worker *w = &W->w;
    while (w->free_reqs) {
        struct rh_req *r = w->free_reqs;
        w->free_reqs = r->next_free;
        free(r);
    }
    free_blocks(&w->free_in);
    free_blocks(&w->free_out);
    verify_free(&W->v);
    ring_fini(W);
    fz_current = NULL;
    free(W);
}

static bool conn_up(struct world *W) { return conn_live(&W->conns[0]); }

static void iter_plain(struct world *W, bool answer, uint64_t pass_ms);

static void open_conn(struct world *W, bool draining)
{
    if (W->k.fd_open) /* the last one's close is still queued: submit it first */
        iter_plain(W, false, 0);
    W->w.draining = false; /* a draining worker refuses connections: accept first */
    verify_reset(&W->v);
    W->close_seen = false;
    ring_accept(W, FZ_FD_BASE + (int)W->conns_opened++);
    ring_dispatch(W);
    FZ_CHECK(conn_up(W), "the accepted connection is not open");
    W->w.draining = draining;
}

/* What conn.c keeps true between loop iterations (sqlite's pcache-style sanity check). */
static void world_sane(struct world *W)
{
    struct rh_conn *c = &W->conns[0];
    struct fz_ring *k = &W->k;
    FZ_CHECK(W->w.loop.inflight == k->recv_armed + k->send_armed + k->nsqes +
                                       ring_finals_posted(W),
             "inflight %u, kernel has recv %d send %d, %u SQEs queued, %u finals posted",
             W->w.loop.inflight, k->recv_armed, k->send_armed, k->nsqes, ring_finals_posted(W));
    unsigned live = 0;
    for (unsigned i = 0; i < W->nparked; i++) {
        const struct rh_req *r = W->parked[i].req;
        FZ_CHECK(!r->conn || (r->conn == c && c->req == r && conn_live(c)),
                 "a parked request attached to a connection that does not hold it");
        live += r->conn == NULL; /* orphans: their connection closed under them */
    }
    if (!conn_live(c)) {
        /* Still on the flush list: freed when worker_flush pops it (C_FREE_PENDING). */
        FZ_CHECK(W->w.free_top == 1 || (c->flags & C_FREE_PENDING),
                 "the closed slot is not free");
        FZ_CHECK(!rh_timer_armed(&c->timer) && W->w.loop.wheel.count == 0,
                 "a timer armed on a closed slot");
        /* A send reads the slot's buffers: waited for. The multishot recv fills only
         * provided buffers: the slot may go once its cancel is queued (conn_close). */
        FZ_CHECK(!k->send_armed, "slot freed with a send in flight");
        FZ_CHECK(!k->recv_armed || ring_pending(W, IORING_OP_ASYNC_CANCEL),
                 "slot freed, its recv still armed and not cancelled");
        FZ_CHECK(!k->fd_open || ring_pending(W, IORING_OP_CLOSE), "slot freed, fd left open");
        FZ_CHECK(ring_bufs_lent(W) == 0, "%u provided buffers lost", ring_bufs_lent(W));
        FZ_CHECK(W->live_reqs == live, "%u requests live, %u parked orphans", W->live_reqs,
                 live);
        return;
    }
    FZ_CHECK(c->in_off <= c->in_len && c->in_len <= RH_IN_BLOCK, "in_off %u in_len %u",
             c->in_off, c->in_len);
    FZ_CHECK(c->in || c->in_len == 0, "bytes counted with no input buffer");
    FZ_CHECK(!(c->flags & C_PAUSED) || c->req, "paused with no request");
    FZ_CHECK(!c->req || c->req->conn == c, "the connection's request points elsewhere");
    FZ_CHECK(c->wbuf.sent <= c->wbuf.len && c->pbuf.len <= c->pbuf.cap, "output buffers");
    /* conn_close forgets the recv once its cancel is queued (it fills only provided
     * buffers); otherwise the flag and the kernel agree. */
    bool recv_dropped = (c->flags & C_CLOSING) && ring_pending(W, IORING_OP_ASYNC_CANCEL);
    FZ_CHECK(!!(c->flags & C_RECV_ARMED) == (k->recv_armed || ring_pending(W, IORING_OP_RECV)) ||
                 (recv_dropped && !(c->flags & C_RECV_ARMED)),
             "C_RECV_ARMED %d, kernel recv %d", !!(c->flags & C_RECV_ARMED), k->recv_armed);
    FZ_CHECK(!!(c->flags & C_SEND_INFLIGHT) ==
                 (k->send_armed || ring_pending(W, IORING_OP_SEND)),
             "C_SEND_INFLIGHT %d, kernel send %d", !!(c->flags & C_SEND_INFLIGHT),
             k->send_armed);
    unsigned held = 0;
    for (unsigned b = c->held_head; b != RH_NO_BUF; b = W->held_next[b]) {
        FZ_CHECK(b < k->nbufs && k->buf_lent[b] && held < k->nbufs, "held list broken");
        FZ_CHECK(W->held_next[b] != RH_NO_BUF || c->held_tail == b, "held tail");
        held++;
    }
    FZ_CHECK(held == c->nheld && held == ring_bufs_lent(W), "held %u, nheld %u, lent %u", held,
             c->nheld, ring_bufs_lent(W));
    /* Bounded whatever the client does: held buffers, the spill, the output queued (one
     * response past the high-water mark at most: parsing stops there). */
    FZ_CHECK(c->nheld <= RH_HELD_MAX && W->w.held_total == c->nheld, "held %u of at most %u, "
             "worker counts %u", c->nheld, RH_HELD_MAX, W->w.held_total);
    FZ_CHECK(c->spill_off <= c->spill_len && c->spill_len <= RH_SPILL_MAX, "spill %u/%u",
             c->spill_off, c->spill_len);
    FZ_CHECK(conn_out_queued(c) <= RH_OUT_HIGH + sizeof(big) + 1024,
             "%zu bytes of output queued: back-pressure failed", conn_out_queued(c));
    live += c->req != NULL;
    FZ_CHECK(W->live_reqs == live, "%u requests live, %u accounted for", W->live_reqs, live);
    FZ_CHECK(W->w.loop.wheel.count == rh_timer_armed(&c->timer), "stray timers");
    /* Every phase that waits on the peer has a deadline (no slow-loris, no idle leak). */
    bool waiting = (c->phase == PH_HEAD || c->phase == PH_BODY || c->phase == PH_LINGER ||
                    (c->phase == PH_IDLE && !c->req && !(c->flags & C_DIRTY) &&
                     c->pbuf.len == 0)) &&
                   !(c->flags & C_CLOSING);
    FZ_CHECK(!waiting || rh_timer_armed(&c->timer),
             "no timer armed in phase %d (flags 0x%x): the peer can hold the slot forever",
             c->phase, c->flags);
    /* A request with its handler and unanswered has a deadline (--handler-timeout): nobody
     * answering must not hold the connection forever. */
    FZ_CHECK(c->phase != PH_HANDLER || !c->req || (c->req->flags & R_RESP_STARTED) ||
                 (c->flags & C_CLOSING) || rh_timer_armed(&c->timer),
             "an unanswered request with no handler deadline armed (flags 0x%x)", c->flags);
    /* Once an answer that closes is queued, the rest of the input is never parsed. */
    uint32_t unparsed = c->in_len - c->in_off;
    if (c->flags & C_CLOSE_AFTER_SEND) {
        if (W->close_seen)
            FZ_CHECK(unparsed >= W->unparsed_at_close, "input parsed after Connection: close");
        W->close_seen = true;
        W->unparsed_at_close = unparsed;
    }
}

static void answer_one(struct world *W)
{
    if (W->nparked == 0)
        return;
    struct fz_parked p = W->parked[0];
    memmove(W->parked, W->parked + 1, --W->nparked * sizeof(p));
    switch (p.kind) {
    case PARK_RESPOND:
        FZ_CHECK(rh_respond(p.req, 200, "text/plain", "later\n", 6) == 0, "late answer");
        break;
    case PARK_STREAM_END:
        /* RH_RESP_FULL (> 0): queued, past the high-water mark */
        FZ_CHECK(rh_resp_write(p.req, "tail\n", 5) >= 0 && rh_resp_end(p.req) == 0,
                 "late stream end");
        break;
    case PARK_NEXT:
        rh_next(p.req);
        break;
    }
}

/* ---- one loop iteration, as rh_loop_run_once orders it ---- */

/* Flush (one send per connection, recv re-arms) and submit. */
static void iter_begin(struct world *W)
{
    W->w.loop.before_submit(&W->w.loop);
    ring_submit(W);
    ring_deliver_eof(W);
}

/* Dispatch what completed, let time pass, check. */
static void iter_end(struct world *W, uint64_t pass_ms)
{
    ring_dispatch(W);
    W->w.loop.now_ms += pass_ms;
    rh_wheel_advance(&W->w.loop.wheel, W->w.loop.now_ms);
    world_sane(W);
}

static void iter_plain(struct world *W, bool answer, uint64_t pass_ms)
{
    iter_begin(W);
    ring_complete_send(W, UINT32_MAX);
    ring_dispatch(W);
    if (answer)
        answer_one(W);
    iter_end(W, pass_ms);
}

/* Hands a piece to the connection: false if it cannot take it now. A closing or lingering
 * connection drops input, as conn_take_input does. */
static bool try_input(struct world *W, bool feed, const char *p, uint32_t n, bool final)
{
    struct rh_conn *c = &W->conns[0];
    if (!conn_live(c) || (c->flags & C_CLOSING) || c->phase == PH_LINGER)
        return true;
    if (!feed)
        return ring_recv(W, p, n, final);
    bool ok = conn_feed(c, p, n);
    if (!ok) /* conn_feed refuses only while the buffer is full of unparsed input */
        FZ_CHECK(c->flags & (C_PAUSED | C_CLOSE_AFTER_SEND), "conn_feed refused %u bytes "
                 "with nothing to wait for (in_len %u, in_off %u, flags 0x%x)", n, c->in_len,
                 c->in_off, c->flags);
    return ok;
}

/* The input cannot go in: let the server make room (answer parked requests, complete
 * sends) until it can. No progress with nothing left to answer is a stuck connection. */
static void deliver_stalled(struct world *W, bool feed, const char *p, uint32_t n)
{
    for (unsigned idle = 0;; idle++) {
        FZ_CHECK(idle < 8, "input stalled: recv never re-armed or conn_feed keeps refusing "
                 "(flags 0x%x phase %d nheld %u)", W->conns[0].flags, W->conns[0].phase,
                 W->conns[0].nheld);
        if (W->nparked)
            idle = 0;
        iter_begin(W);
        ring_complete_send(W, UINT32_MAX);
        ring_dispatch(W);
        answer_one(W);
        bool in = try_input(W, feed, p, n, false);
        iter_end(W, 0);
        if (in)
            return;
    }
}

static void step(struct world *W, bool feed, struct stream *st)
{
    char a[4096], b[4096]; /* at most one recv buffer each */
    uint8_t sb, sb2;
    uint32_t na = next_piece(st, W->k.buf_size, a, &sb), nb = 0;
    enum step_op op = (enum step_op)(sb >> 5);
    if (op == OP_BURST && st->pos < st->total)
        nb = next_piece(st, W->k.buf_size, b, &sb2);
    iter_begin(W);
    if (op == OP_SHORT_WRITE && (sb & 31) == 0)
        ring_fail_send(W, -ECONNRESET);
    else if (op == OP_SHORT_WRITE)
        ring_complete_send(W, 1 + na % 61);
    else if (op != OP_SEND_STALLS)
        ring_complete_send(W, UINT32_MAX);
    if (op == OP_NOBUFS)
        ring_recv_nobufs(W);
    bool in_a = feed || try_input(W, false, a, na, op == OP_RECV_FINAL);
    bool in_b = nb == 0 || feed || (in_a && try_input(W, false, b, nb, false));
    ring_dispatch(W);
    if (feed) {
        in_a = try_input(W, true, a, na, false);
        in_b = nb == 0 || (in_a && try_input(W, true, b, nb, false));
    }
    if (op == OP_ANSWER)
        answer_one(W);
    iter_end(W, op != OP_TIME ? 0 : (sb & 1) ? 61000 : 1600);
    if (!in_a)
        deliver_stalled(W, feed, a, na);
    if (!in_b)
        deliver_stalled(W, feed, b, nb);
}

/* The client goes away (or the server stops); everything must wind down. */
static void finish(struct world *W, unsigned end_style)
{
    struct fz_ring *k = &W->k;
    for (unsigned round = 0; conn_up(W); round++) {
        FZ_CHECK(round < 64, "the connection never closes (flags 0x%x phase %d)",
                 W->conns[0].flags, W->conns[0].phase);
        if (round == 0 && end_style == 0)
            k->eof_pending = true;
        else if (round == 0 && end_style == 1)
            k->rst_pending = true;
        else if (round == 0)
            worker_close_all(&W->w, end_style == 3);
        if (round == 0 && end_style == 3)
            k->eof_pending = true;
        /* One parked request waits through the first rounds: the end may find its
         * connection mid-handler (the request is orphaned, answered later into the void). */
        while (W->nparked > (round < 4 ? 1u : 0u))
            answer_one(W);
        iter_plain(W, true, round < 4 ? 0 : 61000);
    }
    while (W->nparked) /* orphans: answered into the void */
        answer_one(W);
    iter_plain(W, false, 0);
    FZ_CHECK(W->live_reqs == 0, "%u requests never ended", W->live_reqs);
    FZ_CHECK(W->w.loop.inflight == 0 && k->nsqes == 0, "%u ops still in flight",
             W->w.loop.inflight);
    FZ_CHECK(ring_bufs_lent(W) == 0, "provided buffers never recycled");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t ctrl[CTRL_LEN] = {0};
    size_t nctrl = size < CTRL_LEN ? size : CTRL_LEN;
    memcpy(ctrl, data, nctrl);
    bool feed = ctrl[0] & 1, draining = ctrl[0] & 16;
    struct stream st = {.data = (const char *)data + nctrl, .len = size - nctrl,
                        .sched = ctrl + SCHED_OFF};
    st.total = st.len * REPEAT[(ctrl[5] >> 4) & 7];
    struct world *W = world_new(ctrl);
    open_conn(W, draining);
    world_sane(W);
    while (st.pos < st.total) {
        if (!conn_up(W)) { /* closed mid-input: the rest arrives on a new connection */
            if (W->conns_opened == MAX_CONNS_PER_INPUT)
                break;
            open_conn(W, draining);
        }
        step(W, feed, &st);
    }
    finish(W, (ctrl[0] >> 2) & 3);
    world_free(W);
    return 0;
}
