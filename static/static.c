/* Static files: the handler and the steps before the body. The mounts (rh_static_route) are
 * static_mount.c; the per-ring open-file cache is static_cache.c; the body paths above
 * COPY_MAX are static_xfer.c (sendfile from the ring thread while pages are resident, else
 * io-wq).
 *
 * A request for a file becomes a transfer (struct static_xfer) that walks these steps, each
 * one op on the ring (STATIC_OP_FILE; user_data carries the transfer's index and the step):
 *
 *   cache hit, checked < cache_valid_ms ago ........................ serve at once
 *   cache hit, older: STATX by path; same dev/ino/size/mtime ....... serve (else: miss)
 *   miss: OPENAT2 beneath the root -> STATX of the fd -> cache ...... serve
 *   serve: conditionals (304/412), Range (206/416), the head, then the body:
 *     <= COPY_MAX bytes: from the entry's memory if held, else READ (one byte past the end,
 *           to catch a file rewritten in place) and keep it; head and body in one send
 *     else: static_xfer.c: sendfile(2) of resident pages, head coalesced (MSG_MORE); cold
 *           pages (and --no-sendfile) through io-wq: READ -> SEND below splice_min, else
 *           SPLICE file -> pipe -> socket
 *   Each body op is issued only when the previous one completed, so the socket's progress
 *   paces the file (back-pressure: a slow reader holds one chunk buffer or one pipe).
 *
 * Which path for which size was measured before sendfile (it now replaces read/send and
 * splice for resident pages; their numbers below still pick the cold path; 2 vCPU VM,
 * kernel 6.18, loopback; ringhttp --threads 1 --no-request-id on CPU 0, wrk -t1 -c50 -d5s
 * on CPU 1; server CPU from /proc/PID/stat, io-wq workers included; medians of 2-4 runs,
 * noisy to +-20%):
 *   4 KiB    copy (READ once, then memory)  170k req/s  5.1 us/req
 *            copy, READ every time           95k req/s  9.3 us/req (before the memory copy)
 *            splice                          72-99k     9.9-13.4 us/req
 *   16 KiB+1 read/send 75k req/s 12.1 us;  splice 66k 14.1 us
 *   24-32 KiB even (within noise)
 *   64 KiB   read/send 39k 24.7 us;        splice 46k 19.9 us
 *   256 KiB  read/send 13k 70 us;          splice 17k 46 us
 *   1 MiB    read/send 3.1-3.5 GB/s 284-317 us;  splice 5.0-5.7 GB/s 175-200 us
 * hence COPY_MAX 16 KiB, splice from 32 KiB. Pipe size for 1 MiB: 64 KiB 3.6 GB/s 270 us,
 * 128 KiB 3.7-4.0 GB/s 250 us, 256 KiB 3.0-4.7 GB/s, 1 MiB 1.9-2.9 GB/s 85-110 us: big
 * pipes fill the socket buffer and leave the sending to the receiver's ACKs (softirq on the
 * client's CPU; less CPU here, more in total and less throughput), so the default 64 KiB.
 * nginx 1.22 in the same runs (sendfile on, 1 worker): 4 KiB 114-117k req/s 8.5 us
 * (open_file_cache: 139-143k, 7.0 us); 1 MiB 2.6-2.9 GB/s 320-360 us (open_file_cache:
 * either 3.0 GB/s 300 us or 7.0 GB/s 111 us, bimodal).
 *
 * Safety: every open is openat2(root_fd, path, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS [|
 * RESOLVE_NO_SYMLINKS]) of a path already percent-decoded and normalised (static_http.c),
 * with O_NONBLOCK so a FIFO or device cannot hang an io-wq worker in open (cleared again for
 * regular files); anything but a regular file or a directory is 403. Error pages never name
 * a file system path.
 *
 * The connection side (conn.c) knows only that while C_BODY_INFLIGHT is set an op of ours may
 * use the socket (close cancels it and waits). The body is an HTTP/1 body source
 * (static_xfer.c): proceed once the head has drained, stop when the connection dies with
 * the body pending; conn/ and the server's wiring do not know it is a file. */
#include <assert.h>
#include <errno.h>
#include <mimalloc.h>
#include <unistd.h>

#include "static/static_priv.h"
#include "app/app.h" /* the toolkit's error pages */

static void submit_open(struct static_xfer *x, const char *path, enum step_kind k,
                        uint64_t extra_flags)
{
    x->how = (struct open_how){
        .flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | extra_flags,
        .resolve = x->m->resolve,
    };
    struct io_uring_sqe *sqe = static_xfer_sqe(x);
    io_uring_prep_openat2(sqe, x->m->root_fd, path, &x->how);
    static_xfer_submit(x, sqe, k);
}

static void submit_statx(struct static_xfer *x, int dirfd, const char *path, int flags,
                         enum step_kind k)
{
    struct io_uring_sqe *sqe = static_xfer_sqe(x);
    io_uring_prep_statx(sqe, dirfd, path, flags, STATX_BASIC_STATS, &x->stx);
    static_xfer_submit(x, sqe, k);
}

/* ---- answers ---- */

static int status_of_errno(int err)
{
    switch (err) {
    case -ENOENT: case -ENOTDIR: case -ENAMETOOLONG:
        return 404;
    case -EACCES: case -EPERM: case -EXDEV: case -ELOOP:
        return 403; /* EXDEV/ELOOP: a symlink that leaves the root, or any with no_symlinks */
    case -EMFILE: case -ENFILE: case -ENOMEM: case -EAGAIN:
        return 503;
    default:
        return 500;
    }
}

/* An error page (a reason phrase, never a path); the connection stays open. */
static void answer_error(struct rh_req *r, int status)
{
    char body[48];
    const char *reason = rh_status_reason(status);
    size_t n = strlen(reason);
    memcpy(body, reason, n);
    body[n++] = '\n';
    if (status == 405)
        rh_resp_header(r, "Allow", "GET, HEAD");
    if (status == 503)
        rh_resp_header(r, "Retry-After", "1");
    if (!app_error(r, status, NULL)) /* the application's error page, if it has one */
        rh_respond(r, status, "text/plain; charset=utf-8", body, n);
}

static void xfer_fail(struct static_xfer *x, int status)
{
    struct rh_req *r = x->req;
    r->xhdr_len = x->xhdr_mark; /* no validators on an error page */
    static_xfer_free(x);
    answer_error(r, status);
}

static void redirect_to_dir(struct static_xfer *x)
{
    struct rh_req *r = x->req;
    const struct static_mount *m = x->m;
    char loc[3 * STATIC_PATH_MAX + 64];
    size_t n = 0;
    memcpy(loc, m->prefix, m->prefix_len);
    n += m->prefix_len;
    loc[n++] = '/';
    size_t enc = static_url_encode(x->path, x->dir_len, loc + n, sizeof(loc) - n - 2);
    if (x->dir_len && !enc) {
        xfer_fail(x, 414);
        return;
    }
    n += enc;
    if (x->dir_len)
        loc[n++] = '/';
    rh_str q = rh_req_query(r);
    if (q.len && n + 1 + q.len < sizeof(loc)) {
        loc[n++] = '?';
        memcpy(loc + n, q.ptr, q.len);
        n += q.len;
    }
    loc[n] = 0;
    static_xfer_free(x);
    static const char body[] = "Moved Permanently\n";
    if (rh_resp_header(r, "Location", loc) < 0) {
        answer_error(r, 400);
        return;
    }
    rh_respond(r, 301, "text/plain; charset=utf-8", body, sizeof(body) - 1);
}

/* ---- conditionals and ranges ---- */

static bool header_date(const struct rh_req *r, const char *name, int64_t *t)
{
    rh_str v = rh_req_header(r, name);
    return v.ptr && static_parse_http_date(v.ptr, v.len, t) == 0;
}

/* RFC 9110 13.2.2: If-Match, else If-Unmodified-Since (412); If-None-Match, else
 * If-Modified-Since (304). Returns the status that ends the request here, or 0. */
static int preconditions(const struct rh_req *r, const struct fentry *e)
{
    int64_t t;
    rh_str v = rh_req_header(r, "If-Match");
    if (v.ptr) {
        if (!static_etag_match(v.ptr, v.len, e->etag, e->etag_len, false))
            return 412;
    } else if (header_date(r, "If-Unmodified-Since", &t) && e->mtime > t) {
        return 412;
    }
    v = rh_req_header(r, "If-None-Match");
    if (v.ptr)
        return static_etag_match(v.ptr, v.len, e->etag, e->etag_len, true) ? 304 : 0;
    if (header_date(r, "If-Modified-Since", &t) && e->mtime <= t)
        return 304;
    return 0;
}

/* If-Range: the Range applies only if the validator still matches (strong comparison, or
 * the exact Last-Modified date). */
static bool if_range_holds(const struct rh_req *r, const struct fentry *e)
{
    rh_str v = rh_req_header(r, "If-Range");
    if (!v.ptr)
        return true;
    if (v.len && (v.ptr[0] == '"' || v.ptr[0] == 'W'))
        return static_etag_match(v.ptr, v.len, e->etag, e->etag_len, false);
    int64_t t;
    return static_parse_http_date(v.ptr, v.len, &t) == 0 && t == e->mtime;
}

static void add_content_range(struct rh_req *r, bool unsatisfiable, uint64_t first,
                              uint64_t last, uint64_t size)
{
    char line[96];
    char *p = PUT_LIT(line, "Content-Range: bytes ");
    if (unsatisfiable) {
        *p++ = '*';
    } else {
        p += rh_fmt_u64(p, first);
        *p++ = '-';
        p += rh_fmt_u64(p, last);
    }
    *p++ = '/';
    p += rh_fmt_u64(p, size);
    p = PUT_LIT(p, "\r\n");
    h1_resp_header_lines(r, line, (size_t)(p - line));
}

/* ---- bodies ---- */

static void body_start(struct static_xfer *x, uint64_t first, uint64_t len);

/* The file is known (x->e): answer from its validators and the request's headers. */
static void serve(struct static_xfer *x)
{
    struct rh_req *r = x->req;
    const struct fentry *e = x->e;
    int status = preconditions(r, e);
    x->xhdr_mark = r->xhdr_len;
    h1_resp_header_lines(r, e->hdrs, e->hdrs_len);
    if (x->m->cc_line)
        h1_resp_header_lines(r, x->m->cc_line, x->m->cc_len);
    if (status == 304 || status == 412) {
        static_xfer_free(x);
        if (status == 304)
            rh_respond(r, 304, NULL, NULL, 0);
        else
            rh_respond(r, 412, "text/plain; charset=utf-8", "Precondition Failed\n", 20);
        return;
    }
    uint64_t first = 0, last = e->size ? e->size - 1 : 0, len = e->size;
    rh_str range = rh_req_header(r, "Range");
    if (range.ptr && r->method_id == HTTP_GET && if_range_holds(r, e)) {
        switch (static_range_parse(range.ptr, range.len, e->size, &first, &last)) {
        case RANGE_ONE:
            status = 206;
            len = last - first + 1;
            add_content_range(r, false, first, last, e->size);
            break;
        case RANGE_UNSATISFIABLE:
            add_content_range(r, true, 0, 0, e->size);
            static_xfer_free(x);
            rh_respond(r, 416, "text/plain; charset=utf-8", "Range Not Satisfiable\n", 22);
            return;
        case RANGE_NONE:
        case RANGE_MANY: /* several ranges: the whole file (no multipart/byteranges) */
            first = 0;
            break;
        }
    }
    x->status = status ? status : 200;
    x->ctype = e->ctype;
    if ((r->flags & R_HEAD) || len == 0 || e->data) {
        /* HEAD: Content-Length, no body. A small file already in memory: no op on the ring
         * at all (rh_respond copies the bytes before the entry's reference goes). */
        rh_respond(r, x->status, x->ctype, e->data ? e->data + first : NULL, len);
        static_xfer_free(x);
        return;
    }
    body_start(x, first, len);
}

/* Whether the connection side lets us go on; a transfer whose connection died is ended by
 * its body source's stop (from conn_finish_close), so this is for the steps before the body. */
static bool orphaned(struct static_xfer *x)
{
    if (x->req->conn)
        return false;
    struct rh_req *r = x->req;
    static_xfer_free(x);
    rh_respond(r, 499, NULL, NULL, 0); /* nobody to answer: just end it */
    return true;
}

static void body_start(struct static_xfer *x, uint64_t first, uint64_t len)
{
    struct static_ring *sr = x->sr;
    if (len > COPY_MAX || len >= x->m->splice_min) {
        static_xfer_body_start(x, first, len); /* static_xfer.c: sendfile, splice or read/send */
        return;
    }
    x->off = first;
    x->left = len;
    /* Small: read first, then head and body go out in one send. Reading to the end asks
     * one byte more: a file rewritten in place since its statx (longer or shorter) is
     * then caught here, before any byte is sent, and opened afresh (copy_done). */
    uint32_t want = (uint32_t)len + (first + len == x->e->size);
    char *buf = conn_obuf_reserve(sr->w, &x->block, want);
    if (!buf) {
        xfer_fail(x, 503);
        return;
    }
    x->mode = M_COPY;
    struct io_uring_sqe *sqe = static_xfer_sqe(x);
    io_uring_prep_read(sqe, x->e->fd, buf, want, first);
    static_xfer_submit(x, sqe, K_READ);
}

/* The entry no longer describes the file (it changed in place since its last statx): drop
 * it and start over from the open, once; a file rewritten without pause gets a 503. */
static void reopen_stale(struct static_xfer *x)
{
    struct static_ring *sr = x->sr;
    struct fentry *e = x->e;
    if (x->retried) {
        xfer_fail(x, 503);
        return;
    }
    static_cache_unlink(sr, e);
    x->e = NULL;
    static_fentry_put(sr, e);
    conn_obuf_release(sr->w, &x->block);
    x->req->xhdr_len = x->xhdr_mark; /* serve() added the stale validators */
    x->mode = M_NONE;
    x->retried = true;
    submit_open(x, x->path, K_OPEN, 0);
}

static void copy_done(struct static_xfer *x, int res)
{
    struct rh_req *r = x->req;
    struct rh_worker *w = r->w;
    if (res < 0) {
        xfer_fail(x, status_of_errno(res));
        return;
    }
    if ((uint64_t)res != x->left) { /* shorter, or the byte past the end exists: longer */
        reopen_stale(x);
        return;
    }
    struct fentry *e = x->e;
    if (x->off == 0 && x->left == e->size && !e->data && e->linked) {
        /* The whole file, read to its end: keep it with the entry, so the next requests
         * for it cost no op at all. At most cache_entries * COPY_MAX bytes per ring; it
         * goes with the entry when a revalidation finds the file changed. */
        e->data = mi_malloc(e->size); /* owner: the entry */
        if (e->data)
            memcpy(e->data, x->block.data, e->size);
    }
    int status = x->status;
    const char *ctype = x->ctype;
    struct rh_obuf block = x->block;
    x->block = (struct rh_obuf){0}; /* keep it past static_xfer_free: rh_respond copies from it */
    static_xfer_free(x);
    rh_respond(r, status, ctype, block.data, (size_t)res);
    conn_obuf_release(w, &block);
}


/* ---- the steps before the body ---- */

static void lookup(struct static_xfer *x);

static void on_opened(struct static_xfer *x, int res)
{
    if (res < 0) {
        if (res == -ENOENT && x->index_try) { /* no index: 403 for a directory, else 404 */
            x->path[x->dir_len] = 0;
            submit_open(x, x->dir_len ? x->path : ".", K_PROBE, O_DIRECTORY);
            return;
        }
        xfer_fail(x, status_of_errno(res));
        return;
    }
    x->fd = res;
    submit_statx(x, x->fd, "", AT_EMPTY_PATH, K_STATX);
}

static void on_stat(struct static_xfer *x, int res)
{
    if (res < 0) {
        xfer_fail(x, status_of_errno(res));
        return;
    }
    mode_t mode = x->stx.stx_mode;
    if (S_ISDIR(mode) && !x->index_try) {
        redirect_to_dir(x);
        return;
    }
    if (!S_ISREG(mode)) { /* a directory named like the index, a FIFO, a device, a socket */
        xfer_fail(x, 403);
        return;
    }
    fcntl(x->fd, F_SETFL, 0); /* O_NONBLOCK only guarded the open: reads may wait for disk */
    struct fentry *e = static_cache_insert(x->sr, x);
    if (!e) {
        xfer_fail(x, 503);
        return;
    }
    x->e = static_fentry_get(e);
    serve(x);
}

static void on_checked(struct static_xfer *x, int res)
{
    struct fentry *e = x->e;
    if (res == 0 && static_fentry_same_file(e, &x->stx)) {
        e->checked_ms = x->sr->w->loop.now_ms;
        serve(x);
        return;
    }
    static_cache_unlink(x->sr, e); /* changed, replaced or gone: open it afresh */
    x->e = NULL;
    static_fentry_put(x->sr, e);
    submit_open(x, x->path, K_OPEN, 0);
}

static void on_probe(struct static_xfer *x, int res)
{
    if (res >= 0)
        static_close_fd(x->sr, res);
    xfer_fail(x, res >= 0 ? 403 : status_of_errno(res));
}

static void on_file_cqe(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    rh_loop_op_done(loop);
    struct static_ring *sr = ((struct rh_worker *)loop->owner)->fstatic;
    struct static_xfer *x = sr ? static_xfer_of(sr, cqe->user_data) : NULL;
    if (!x) { /* cannot happen: a transfer is freed only with nothing in flight */
        if (cqe->res >= 0 && (rh_ud_gen(cqe->user_data) & 15) == K_OPEN)
            close(cqe->res);
        return;
    }
    x->inflight--;
    enum step_kind k = (enum step_kind)(rh_ud_gen(cqe->user_data) & 15);
    struct rh_req *r = x->req;
    if (x->mode >= M_SEND) { /* M_SEND, M_SPLICE, M_SENDFILE */
        static_xfer_on_streaming(x, k, cqe->res);
        return;
    }
    if ((k == K_OPEN || k == K_PROBE) && cqe->res >= 0 && !r->conn)
        x->fd = cqe->res; /* an orphan's new fd: closed by static_xfer_free in orphaned() */
    if (k == K_CHECK)
        x->e->revalidating = false; /* whoever asked, the next stale hit may ask again */
    if (orphaned(x))
        return;
    struct rh_ctx *prev = h1_req_enter(r); /* middleware after-hooks run from here */
    switch (k) {
    case K_OPEN: on_opened(x, cqe->res); break;
    case K_STATX: on_stat(x, cqe->res); break;
    case K_CHECK: on_checked(x, cqe->res); break;
    case K_PROBE: on_probe(x, cqe->res); break;
    case K_READ: copy_done(x, cqe->res); break;
    default: xfer_fail(x, 500); break;
    }
    h1_req_leave(r, prev);
}

static void lookup(struct static_xfer *x)
{
    struct static_ring *sr = x->sr;
    struct fentry *e = static_cache_find(sr, x->m, x->path, x->path_len);
    if (!e) {
        submit_open(x, x->path, K_OPEN, 0);
        return;
    }
    static_cache_touch(sr, e);
    x->e = static_fentry_get(e);
    if (e->revalidating || sr->w->loop.now_ms - e->checked_ms < x->m->valid_ms) {
        serve(x); /* the hot path: no op on the ring before the body */
        return;
    }
    /* Once per valid_ms per entry: does the path still name this very file? statx follows
     * symlinks here, but only to compare: a mismatch means a fresh openat2 beneath root. */
    e->revalidating = true;
    submit_statx(x, x->m->root_fd, x->path, 0, K_CHECK);
}

/* ---- the handler ---- */

void static_handle(struct rh_req *r, const struct static_mount *m)
{
    struct static_ring *sr = r->w->fstatic;
    if (r->method_id != HTTP_GET && r->method_id != HTTP_HEAD) {
        answer_error(r, 405);
        return;
    }
    rh_str path = rh_req_path(r);
    if (path.len < m->prefix_len || memcmp(path.ptr, m->prefix, m->prefix_len) != 0) {
        answer_error(r, 404);
        return;
    }
    struct static_xfer *x = sr ? static_xfer_new(sr, r, m) : NULL;
    if (!x) {
        answer_error(r, 503);
        return;
    }
    const char *rest = path.ptr + m->prefix_len;
    size_t rest_len = path.len - m->prefix_len, n = 0;
    int ret = static_path_normalize(rest, rest_len, m->hidden, x->path,
                                    sizeof(x->path) - m->index_len - 1, &n, &x->dir);
    if (ret < 0) {
        xfer_fail(x, ret == -EINVAL ? 400 : ret == -ENOENT ? 404 : 414);
        return;
    }
    x->dir_len = (uint32_t)n;
    if (rest_len == 0) { /* "/assets" itself: relative links need "/assets/" */
        redirect_to_dir(x);
        return;
    }
    if (x->dir) {
        if (n)
            x->path[n++] = '/';
        memcpy(x->path + n, m->index, m->index_len + 1);
        n += m->index_len;
        x->index_try = true;
    }
    x->path_len = (uint32_t)n;
    lookup(x);
}

/* ---- the rings ---- */

void static_worker_start(struct rh_worker *w)
{
    const rh_server *srv = w->srv;
    if (!srv->static_mounts)
        return;
    unsigned cap = 0;
    for (const struct static_mount *m = srv->static_mounts; m; m = m->next)
        cap = m->cache_entries > cap ? m->cache_entries : cap;
    unsigned nb = 16;
    while (nb < 2 * cap)
        nb *= 2;
    struct static_ring *sr = mi_zalloc(sizeof(*sr)); /* owner: the worker, until stop */
    if (sr)
        sr->buckets = mi_calloc(nb, sizeof(*sr->buckets));
    if (!sr || !sr->buckets) { /* the handler answers 503 without it */
        mi_free(sr);
        return;
    }
    sr->w = w;
    long page = sysconf(_SC_PAGESIZE); /* start-up, not the hot path */
    sr->page_size = page > 0 ? (uint32_t)page : 4096u;
    sr->nbuckets = nb;
    sr->cap = cap;
    w->fstatic = sr;
    rh_loop_on(&w->loop, STATIC_OP_FILE, on_file_cqe);
}

/* After the ring's final drain, before the connections' requests are abandoned: transfers
 * still holding a request (ops that never completed) end it here, first, so that the
 * request is off its connection and off the orphan list when conn_abandon_requests and
 * h1_req_release_orphans run (each would otherwise end it a second time and push it on
 * the free list twice). */
void static_worker_abandon(struct rh_worker *w)
{
    struct static_ring *sr = w->fstatic;
    if (!sr)
        return;
    sr->stopping = true;
    for (uint32_t i = 0; i < sr->nxfers; i++) {
        struct static_xfer *x = sr->xfers[i];
        if (x->req) {
            struct rh_req *r = x->req;
            if (r->body_src.self == x)
                r->body_src.ops = NULL;
            static_xfer_free(x);
            h1_req_end(r); /* clears its connection's c->req and its orphan link */
        }
    }
}

/* After the ring's final drain and static_worker_abandon: every fd goes with close(2), the
 * ring takes no more ops. */
void static_worker_stop(struct rh_worker *w)
{
    struct static_ring *sr = w->fstatic;
    if (!sr)
        return;
    for (uint32_t i = 0; i < sr->nxfers; i++) /* ending one here would end it twice: */
        assert(!sr->xfers[i]->req);            /* the orphan release has run since */
    while (sr->lru_first)
        static_cache_unlink(sr, sr->lru_first);
    for (unsigned i = 0; i < sr->npipes; i++) {
        close(sr->pipes[i].fd[0]);
        close(sr->pipes[i].fd[1]);
    }
    for (unsigned i = 0; i < sr->nchunks; i++)
        mi_free(sr->chunks[i]);
    for (uint32_t i = 0; i < sr->nxfers; i++)
        mi_free(sr->xfers[i]);
    mi_free(sr->xfers);
    mi_free(sr->buckets);
    mi_free(sr);
    w->fstatic = NULL;
}
