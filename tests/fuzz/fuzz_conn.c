/* libFuzzer target: arbitrary byte streams, split at arbitrary points, from up to four
 * clients at once through the connections of one ring (see fuzz.h for the world it runs in).
 *
 * Input layout: 16 control bytes, then the bytes the clients send (the payload): one
 * client's bytes, "~~~~", the next one's, ... (up to FZ_MAX_STREAMS clients; no separator:
 * one client, as the fuzzer always had). With several clients, bytes 0xF0..0xF7 of client j
 * become FZ_TAG(j): a request or a response carrying another client's tag is a leak between
 * connections.
 *   ctrl[0]   bit 0: hand input to conn_feed directly (else: multishot recv completions into
 *                    provided buffers, which exercises holding and read back-pressure)
 *             bit 1: small limits from ctrl[1..4] (else the defaults)
 *             bits 2-3: how the connections end: peer EOF, peer reset, the server closes
 *                    them, or a graceful stop (idle connections close) then EOF; clients
 *                    after the first end (EOF or reset) as soon as their input is sent
 *             bit 4: the worker is draining (every response closes)
 *             bits 5-6: how the clients take turns (enum turns; '@' one piece each)
 *             bit 7: one connection slot fewer than clients (accepts find the slab full)
 *   ctrl[1]   max_header_size = 24 + 32 * b     ctrl[2]  max_uri = min(1 + 4 * b, header)
 *   ctrl[3]   max_body = 3 * b                   ctrl[4]  max_headers = b % 20
 *   ctrl[5]   bits 0-1: recv buffer size 4096/1024/256/64; bits 2-3: 16/8/4/16 buffers
 *             (one ring of them, shared by every connection);
 *             bits 4-6: each payload is sent REPEAT[] times over (more than the 16 KiB input
 *             block even with -max_len=16384: compaction, holding, bodies streaming through)
 *   ctrl[6..15] the schedule, used in a cycle by all clients: one byte per piece of input;
 *             bits 0-4 pick the piece's length (PIECE[], capped by the buffer size),
 *             bits 5-7 what else happens in that loop iteration (enum step_op).
 * Printable control bytes mean something: '@' is "defaults, whole pieces, sent once", 'A'
 * feed mode, 'B' small limits; in the schedule, uppercase is a plain step, lowercase also
 * answers a parked request, digits and punctuation leave the send in flight.
 *
 * A client connects when it first takes a turn (the first one before anything else), in an
 * iteration where the others' completions arrive too; one whose connection closes sends the
 * rest on a new one (fd numbers and slots are reused); one refused (slab full) retries, then
 * gives up. After each iteration the world is checked (world_sane, invariants.c); at the end
 * every connection must close, every request must have ended exactly once, every op must
 * have completed, every buffer must be back and every slot free. A failed check aborts,
 * which libFuzzer reports as a crash. */
#include <errno.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/ctrl_limits.h"
#include "base/freelist.h"

enum { CTRL_LEN = 16, SCHED_OFF = 6, SCHED_LEN = 10 };
enum { MAX_CONNS_PER_CLIENT = 8, MAX_REFUSALS = 4 }; /* then the client gives up */

enum step_op {
    OP_SHORT_WRITE, /* the send completes partly (fails with a reset for length index 0) */
    OP_SEND_STALLS, /* the send stays in flight this iteration */
    OP_PLAIN,       /* the send completes in full */
    OP_ANSWER,      /* plain, and the oldest parked request is answered */
    OP_RECV_FINAL,  /* the piece ends the multishot recv (re-armed at the next flush) */
    OP_NOBUFS,      /* the multishot recv ends with -ENOBUFS before the piece */
    OP_BURST,       /* the next piece arrives in the same iteration (two completions), and
                     * every other connected client's next piece too (buffers run dry) */
    OP_TIME,        /* time passes: 1.6 s (linger) for an even length index, else 61 s */
};

static const uint32_t PIECE[32] = {4096, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16,
                                   17, 20, 24, 31, 32, 33, 48, 64, 100, 127, 128, 255, 256,
                                   512, 1000, 2048};
static const unsigned REPEAT[8] = {5, 6, 7, 8, 1, 2, 3, 4}; /* '@'..'O': once */

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

/* A request carries only its own client's tag bytes (see FZ_TAG). */
static void check_tags(struct world *W, const struct fz_sock *s, rh_str v)
{
    if (W->nstreams < 2)
        return;
    for (size_t i = 0; i < v.len; i++)
        FZ_CHECK(!FZ_IS_TAG(v.ptr[i]) || (unsigned char)v.ptr[i] == FZ_TAG(s->stream),
                 "a request on stream %u's connection carries stream %u's byte", s->stream,
                 (unsigned char)v.ptr[i] - 0xF0u);
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
    struct world *W = world_of(r->w);
    if (r->conn)
        check_tags(W, sock_of_conn(W, r->conn), body);
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
    struct world *W = world_of(r->w);
    struct fz_sock *s = sock_of_conn(W, c);
    unsigned n = rh_req_header_count(r);
    rh_str name, value;
    check_tags(W, s, rh_req_url(r));
    for (unsigned i = 0; i < n && rh_req_header_at(r, i, &name, &value) == 0; i++) {
        check_tags(W, s, name);
        check_tags(W, s, value);
    }
    return RH_MW_NEXT;
}

static void check_after(rh_req *r, int status, void *u)
{
    struct rh_conn *c = r->conn;
    struct world *W = world_of(r->w);
    FZ_CHECK(c && c >= W->conns && c < W->conns + W->srv.cfg.max_conns && conn_live(c) &&
                 c->req == r,
             "a head written for a connection gone");
    struct fz_sock *s = sock_of_conn(W, c);
    FZ_CHECK(!(c->flags & (C_CLOSE_AFTER_SEND | C_CLOSING)),
             "a response head queued after a Connection: close one (flags 0x%x)", c->flags);
    /* Where this head lands in the stream: sent and acknowledged, in flight, then pending. */
    uint64_t offset = s->acked + (c->wbuf.len - c->wbuf.sent) + c->pbuf.len;
    verify_record(&s->v, offset, status, r->flags & R_HEAD);
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

/* Wrapped (-Wl,--wrap=h1_req_acquire): a context slot whose destructor runs when it ends. */
struct rh_req *__real_h1_req_acquire(struct rh_worker *w, struct rh_conn *c);
struct rh_req *__wrap_h1_req_acquire(struct rh_worker *w, struct rh_conn *c);
struct rh_req *__wrap_h1_req_acquire(struct rh_worker *w, struct rh_conn *c)
{
    struct rh_req *r = __real_h1_req_acquire(w, c);
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
    tmpl.routes = app_router_new();
    srv_wire(&tmpl);
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

static void configure(rh_config *cfg, const uint8_t *ctrl, unsigned nstreams)
{
    static const unsigned buf_size[4] = {4096, 1024, 256, 64};
    static const unsigned nbufs[4] = {16, 8, 4, 16};
    cfg->recv_buffer_size = buf_size[ctrl[5] & 3];
    cfg->recv_buffers = nbufs[(ctrl[5] >> 2) & 3];
    /* bit 7: one slot fewer than clients, so an accept finds the slab full */
    cfg->max_conns = nstreams > 1 && (ctrl[0] & 128) ? nstreams - 1 : nstreams;
    fuzz_ctrl_limits(cfg, ctrl);
    /* What rh_server_new's check_config insists on. */
    FZ_CHECK(cfg->max_header_size + cfg->recv_buffer_size <= RH_IN_BLOCK &&
                 cfg->max_uri <= cfg->max_header_size,
             "a configuration the server would refuse");
}

static struct world *world_new(const uint8_t *ctrl, unsigned nstreams)
{
    struct world *W = calloc(1, sizeof(*W));
    FZ_CHECK(W, "out of memory");
    W->srv = tmpl;
    W->nstreams = nstreams;
    configure(&W->srv.cfg, ctrl, nstreams);
    struct rh_worker *w = &W->w;
    w->srv = &W->srv;
    w->loop.owner = w;
    w->loop.now_ms = 1000;
    rh_wheel_init(&w->loop.wheel, w->loop.now_ms);
    conn_register_ops(&w->loop);
    h1_refresh_date(w);
    w->conns = W->conns;
    w->free_idx = W->free_idx;
    for (uint32_t i = 0; i < W->srv.cfg.max_conns; i++) /* as server.c: lowest slot first */
        W->free_idx[i] = W->srv.cfg.max_conns - 1 - i;
    w->free_top = W->srv.cfg.max_conns;
    w->held_next = W->held_next;
    w->held_len = W->held_len;
    w->listen_fd = -1; /* the accept is not re-armed: the harness posts each one */
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
    struct rh_req *r;
    while ((r = RH_FREELIST_POP(w->free_reqs, next_free)))
        free(r);
    free_blocks(&w->free_in);
    free_blocks(&w->free_out);
    ring_fini(W);
    fz_current = NULL;
    free(W);
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

/* ---- the clients ---- */

/* One client: its payload (sent `repeat` times over), and the socket it is on now. A
 * client whose connection closes mid-input sends the rest on a new one. */
struct client {
    char *data; /* a copy, tag bytes rewritten (FZ_TAG) */
    size_t len;
    uint64_t pos, total;
    struct fz_sock *sock; /* NULL until first connected */
    unsigned conns, refusals;
};

struct input {
    struct client cl[FZ_MAX_STREAMS];
    unsigned n; /* clients */
    const uint8_t *sched;
    unsigned next; /* schedule index, shared by all clients */
    unsigned steps;
    unsigned mode; /* how clients take turns (enum turns) */
    bool feed;
    unsigned end_style;
};

/* The client's connection, if the server still has it. */
static struct rh_conn *client_conn(struct world *W, const struct client *cl)
{
    return conn_of_sock(W, cl->sock);
}

/* The next piece into out (a copy: a piece may wrap around the payload); its schedule byte
 * in *sched_byte. */
static uint32_t next_piece(struct input *in, struct client *cl, uint32_t max, char *out,
                           uint8_t *sched_byte)
{
    uint8_t sb = in->sched[in->next++ % SCHED_LEN];
    uint64_t n = PIECE[sb & 31];
    if (n > max)
        n = max; /* one recv's worth at most: what the server sizes its input block for */
    if (n > cl->total - cl->pos)
        n = cl->total - cl->pos;
    for (uint64_t i = 0; i < n; i++)
        out[i] = cl->data[(cl->pos + i) % cl->len];
    cl->pos += n;
    *sched_byte = sb;
    return (uint32_t)n;
}

/* The payload after the control bytes, cut at SEP into up to FZ_MAX_STREAMS clients. */
static void input_split(struct input *in, const uint8_t *p, size_t len, unsigned repeat)
{
    static const char SEP[] = "~~~~";
    const size_t seplen = sizeof(SEP) - 1;
    in->n = 0;
    for (;;) {
        const uint8_t *cut = NULL;
        if (in->n + 1 < FZ_MAX_STREAMS)
            cut = memmem(p, len, SEP, seplen);
        size_t n = cut ? (size_t)(cut - p) : len;
        struct client *cl = &in->cl[in->n++];
        cl->data = malloc(n ? n : 1);
        FZ_CHECK(cl->data, "out of memory");
        memcpy(cl->data, p, n);
        cl->len = n;
        cl->total = (uint64_t)n * repeat;
        if (!cut)
            break;
        p += n + seplen;
        len -= n + seplen;
    }
    if (in->n > 1) /* tag every client's bytes: a leak between connections is visible */
        for (unsigned j = 0; j < in->n; j++)
            for (size_t i = 0; i < in->cl[j].len; i++)
                if (FZ_IS_TAG(in->cl[j].data[i]))
                    in->cl[j].data[i] = (char)FZ_TAG(j);
}

/* ---- one loop iteration, as rh_loop_run_once orders it ---- */

/* Flush (one send per connection, recv re-arms) and submit; a new client's accept, if
 * any, comes in with this iteration's first completions. */
static void iter_begin(struct world *W, struct client *accepting, unsigned stream)
{
    W->w.loop.before_submit(&W->w.loop);
    ring_submit(W);
    if (accepting) {
        bool draining = W->w.draining;
        W->w.draining = false; /* a draining worker refuses connections: accept first */
        accepting->sock = ring_accept(W, stream);
        ring_dispatch(W);
        W->w.draining = draining;
        if (accepting->sock && accepting->sock->refused)
            accepting->refusals++;
        else if (accepting->sock)
            accepting->conns++;
    }
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
    iter_begin(W, NULL, 0);
    ring_complete_sends(W, true);
    ring_dispatch(W);
    if (answer)
        answer_one(W);
    iter_end(W, pass_ms);
}

/* Hands a piece to the client's connection: false if it cannot take it now. A closing or
 * lingering connection (or none: refused, or gone) drops input, as conn_take_input does. */
static bool try_input(struct world *W, struct client *cl, bool feed, const char *p,
                      uint32_t n, bool final)
{
    struct rh_conn *c = client_conn(W, cl);
    if (!c || (c->flags & C_CLOSING) || c->phase == PH_LINGER)
        return true;
    if (!feed)
        return ring_recv(W, cl->sock, p, n, final);
    bool ok = conn_feed(c, p, n);
    if (!ok) /* conn_feed refuses only while the buffer is full of unparsed input: a
              * handler runs, a close is queued, or output is past the high-water mark */
        FZ_CHECK(c->flags & (C_PAUSED | C_CLOSE_AFTER_SEND | C_OUT_FULL),
                 "conn_feed refused %u bytes with nothing to wait for (in_len %u, "
                 "in_off %u, flags 0x%x)", n, c->in_len, c->in_off, c->flags);
    return ok;
}

/* The input cannot go in: let the server make room (answer parked requests, complete
 * every send) until it can. No progress with nothing left to answer is a stuck
 * connection (the other clients' held buffers and starved recvs included). */
static void deliver_stalled(struct world *W, struct client *cl, bool feed, const char *p,
                            uint32_t n)
{
    for (unsigned idle = 0;; idle++) {
        struct rh_conn *c = client_conn(W, cl);
        FZ_CHECK(idle < 8 + 2 * W->nstreams, "input stalled: recv never re-armed or conn_feed "
                 "keeps refusing (flags 0x%x phase %d nheld %u)", c ? c->flags : 0,
                 c ? (int)c->phase : -1, c ? c->nheld : 0);
        if (W->nparked)
            idle = 0;
        iter_begin(W, NULL, 0);
        ring_complete_sends(W, true);
        ring_dispatch(W);
        answer_one(W);
        bool in = try_input(W, cl, feed, p, n, false);
        iter_end(W, 0);
        if (in)
            return;
    }
}

enum turns {
    TURN_SCHED,      /* the schedule byte picks the client */
    TURN_RUNS,       /* four pieces each, in turn */
    TURN_ROUND,      /* one piece each, in turn ('@') */
    TURN_SEQUENTIAL, /* each client to its end, then the next (the others stay connected) */
};

static unsigned pick_client(struct input *in)
{
    uint8_t sb = in->sched[in->next % SCHED_LEN];
    unsigned j = 0;
    switch (in->mode) {
    case TURN_SCHED: j = (unsigned)(sb ^ (sb >> 3) ^ (sb >> 6)) % in->n; break;
    case TURN_RUNS: j = (in->steps / 4) % in->n; break;
    case TURN_ROUND: j = in->steps % in->n; break;
    case TURN_SEQUENTIAL: break;
    }
    while (in->cl[j].pos == in->cl[j].total)
        j = (j + 1) % in->n; /* the caller made sure one has input left */
    return j;
}

/* A client that needs a connection: a new one, unless its budget is spent (it gives up). */
static bool wants_accept(struct world *W, struct client *cl)
{
    if (client_conn(W, cl))
        return false;
    if (cl->conns >= MAX_CONNS_PER_CLIENT || cl->refusals >= MAX_REFUSALS ||
        W->k.nsocks == FZ_MAX_SOCKS) {
        cl->pos = cl->total;
        return false;
    }
    return true;
}

/* A client other than the first ends as soon as its input is sent: EOF or reset, by the
 * input's end style, while the others go on. */
static void client_done(struct world *W, struct input *in, unsigned j)
{
    struct client *cl = &in->cl[j];
    if (j == 0 || cl->pos < cl->total || !cl->sock || cl->sock->ended)
        return;
    cl->sock->ended = true;
    if ((in->end_style + j) & 1)
        cl->sock->rst_pending = true;
    else
        cl->sock->eof_pending = true;
}

/* A piece of a client's input on its way in this iteration. */
struct piece {
    struct client *cl;
    uint32_t n;
    bool final, in;
    char data[4096]; /* at most one recv buffer */
};

static void step(struct world *W, struct input *in, unsigned j)
{
    struct client *cl = &in->cl[j];
    static struct piece p[FZ_MAX_STREAMS + 1];
    unsigned np = 0;
    uint8_t sb, sb2;
    bool accept = wants_accept(W, cl);
    if (cl->pos == cl->total)
        return; /* gave up: no connection left to try */
    p[np] = (struct piece){.cl = cl};
    p[np].n = next_piece(in, cl, W->k.buf_size, p[np].data, &sb);
    enum step_op op = (enum step_op)(sb >> 5);
    p[np++].final = op == OP_RECV_FINAL;
    if (op == OP_BURST && cl->pos < cl->total) {
        p[np] = (struct piece){.cl = cl};
        p[np].n = next_piece(in, cl, W->k.buf_size, p[np].data, &sb2);
        np++;
    }
    for (unsigned i = 1; op == OP_BURST && i < in->n; i++) { /* the others, at once */
        struct client *o = &in->cl[(j + i) % in->n];
        if (o->pos == o->total || !client_conn(W, o))
            continue;
        p[np] = (struct piece){.cl = o};
        p[np].n = next_piece(in, o, W->k.buf_size, p[np].data, &sb2);
        np++;
    }
    in->steps++;
    iter_begin(W, accept ? cl : NULL, j);
    struct fz_sock *s = cl->sock;
    if (s && s->send_armed) {
        s->stalled = op == OP_SEND_STALLS;
        if (op == OP_SHORT_WRITE && (sb & 31) == 0)
            ring_fail_send(W, s, -ECONNRESET);
        else if (op == OP_SHORT_WRITE)
            ring_complete_send(W, s, 1 + p[0].n % 61);
    }
    ring_complete_sends(W, false);
    if (op == OP_NOBUFS && s)
        ring_recv_nobufs(W, s);
    /* In order; a client's second piece only after its first went in. */
    for (unsigned i = 0; i < np; i++)
        p[i].in = in->feed || ((i == 0 || p[i].cl != p[i - 1].cl || p[i - 1].in) &&
                               try_input(W, p[i].cl, false, p[i].data, p[i].n, p[i].final));
    ring_dispatch(W);
    for (unsigned i = 0; in->feed && i < np; i++)
        p[i].in = (i == 0 || p[i].cl != p[i - 1].cl || p[i - 1].in) &&
                  try_input(W, p[i].cl, true, p[i].data, p[i].n, false);
    if (op == OP_ANSWER)
        answer_one(W);
    iter_end(W, op != OP_TIME ? 0 : (sb & 1) ? 61000 : 1600);
    for (unsigned i = 0; i < np; i++)
        if (!p[i].in)
            deliver_stalled(W, p[i].cl, in->feed, p[i].data, p[i].n);
    for (unsigned i = 0; i < in->n; i++)
        client_done(W, in, i);
}

static bool any_conn_up(struct world *W)
{
    for (uint32_t i = 0; i < W->srv.cfg.max_conns; i++)
        if (conn_live(&W->conns[i]))
            return true;
    return false;
}

/* The clients go away (or the server stops); everything must wind down. */
static void finish(struct world *W, unsigned end_style)
{
    struct fz_ring *k = &W->k;
    for (unsigned round = 0; any_conn_up(W); round++) {
        FZ_CHECK(round < 64, "a connection never closes (slot 0: flags 0x%x phase %d)",
                 W->conns[0].flags, W->conns[0].phase);
        if (round == 0 && end_style >= 2)
            conn_close_all(&W->w, end_style == 3);
        for (unsigned i = 0; round == 0 && i < k->nsocks; i++) {
            struct fz_sock *s = &k->socks[i];
            if (!s->fd_open || !s->bound || s->ended)
                continue;
            s->ended = true;
            s->eof_pending = end_style != 1;
            s->rst_pending = end_style == 1;
        }
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
    FZ_CHECK(W->w.free_top == W->srv.cfg.max_conns && W->w.open_conns == 0,
             "%u of %u slots free after every close", W->w.free_top, W->srv.cfg.max_conns);
    for (unsigned i = 0; i < k->nsocks; i++)
        FZ_CHECK(!k->socks[i].fd_open, "socket %u (fd %d) never closed", i, k->socks[i].fd);
}

static bool input_left(const struct input *in)
{
    for (unsigned j = 0; j < in->n; j++)
        if (in->cl[j].pos < in->cl[j].total)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t ctrl[CTRL_LEN] = {0};
    size_t nctrl = size < CTRL_LEN ? size : CTRL_LEN;
    memcpy(ctrl, data, nctrl);
    static struct input in;
    memset(&in, 0, sizeof(in));
    in.feed = ctrl[0] & 1;
    in.end_style = (ctrl[0] >> 2) & 3;
    in.mode = (ctrl[0] >> 5) & 3;
    in.sched = ctrl + SCHED_OFF;
    input_split(&in, data + nctrl, size - nctrl, REPEAT[(ctrl[5] >> 4) & 7]);
    struct world *W = world_new(ctrl, in.n);
    bool draining = ctrl[0] & 16;
    /* The first client connects before anything else happens (as it always did). */
    iter_begin(W, &in.cl[0], 0);
    FZ_CHECK(client_conn(W, &in.cl[0]), "the first connection was not opened");
    W->w.draining = draining;
    iter_end(W, 0);
    while (input_left(&in))
        step(W, &in, pick_client(&in));
    finish(W, in.end_style);
    world_free(W);
    for (unsigned j = 0; j < in.n; j++)
        free(in.cl[j].data);
    return 0;
}
