/* ringhttp: an io_uring HTTP/1.1 server, as a library.
 *
 * One ring per core, each on its own thread with its own SO_REUSEPORT listener (or, with
 * sockets handed over by systemd or an upgrade, every ring accepting from each). A request is
 * handled on the ring thread that accepted its connection; handlers must not block (hand
 * blocking work to the pool with rh_offload, or register the route with rh_route_blocking).
 *
 * Conventions: opaque types; functions return 0 or a negative errno value; strings passed in
 * are copied unless said otherwise; rh_str slices point into the request and stay valid until
 * the request ends (its response is sent or it is abandoned).
 *
 * Threads. "Ring": the request's ring thread, inside a handler, a middleware's before or
 * after, a done callback. "Work": a pool thread while it runs the request's work function
 * or blocking handler; there the request is lent to that thread, and so it stays inside a
 * function run by rh_call_on_ring (on the ring, while the pool thread waits).
 *   rh_config_init, rh_status_reason ........ any thread
 *   rh_server_new, rh_route*, rh_use*, rh_lane_declare, rh_static_route, rh_metrics_route,
 *   rh_use_request_id, rh_ctx_key_new ........ set-up: before rh_server_start, one thread
 *   rh_server_start, _run, _wait, _free ..... the thread that owns the server, never a
 *                                              ring or pool thread (they wait for those)
 *   rh_server_stop ........................... any thread, signal handlers
 *   rh_server_reopen_logs, _port, _threads ... any thread (port, threads: after start)
 *   rh_req_* (reading the request) ........... ring or work (rh_req_peer gives "-" in work)
 *   rh_respond, rh_resp_header, rh_resp_started  ring or work; in work the answer is kept
 *                                              and sent by the ring once the work returns
 *   rh_resp_start, _write, _end .............. ring only: -ENOTSUP in work and in rh_call_on_ring
 *   rh_offload, rh_offload_lane, rh_next, rh_static_serve  ring only, never from work
 *   rh_offload_check, rh_call_on_ring ........ work only (0, and -EPERM, elsewhere)
 *   rh_ctx_get, rh_ctx_set, rh_current_req, rh_request_id(NULL)  any thread: they act on the
 *                                              calling thread's current request, if any
 *   rh_req_ctx_get, rh_req_ctx_set ........... ring or work of that request
 * A middleware whose before calls rh_offload (or _lane) and gets a negative value returns
 * RH_MW_DONE: the request is answered already (503 with Retry-After, 500 for an unknown
 * lane), its done callback never runs, and nothing may touch the request again. */
#ifndef RINGHTTP_H
#define RINGHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what is declared here is its whole ABI. */
#pragma GCC visibility push(default)

#define RH_VERSION_STRING "0.1.0"

typedef struct rh_server rh_server;
typedef struct rh_req rh_req;

/* A byte slice; not NUL-terminated. ptr is NULL when absent. */
typedef struct rh_str {
    const char *ptr;
    size_t len;
} rh_str;

typedef struct rh_config {
    const char *host;          /* "127.0.0.1" */
    uint16_t port;             /* 8080; 0 picks a free port (see rh_server_port) */
    unsigned threads;          /* rings; 0: one per online CPU */
    size_t max_body;           /* 413 above; default 1 MiB */
    size_t max_header_size;    /* request line + headers; 431 above (414 for the URI); 12 KiB */
    size_t max_uri;            /* 414 above; 8 KiB (at most max_header_size) */
    unsigned max_headers;      /* 431 above; 100 (at most 128) */
    unsigned max_conns;        /* per ring; default 16384 */
    unsigned header_timeout_ms; /* whole request head; 408; default 10 s */
    unsigned body_timeout_ms;   /* between body reads; 408; default 30 s */
    unsigned min_body_rate;     /* bytes/s a request body must average over each window of
                                 * body_rate_window_ms, else 408; default 500; 0: off */
    unsigned body_rate_window_ms; /* default 10 s */
    unsigned idle_timeout_ms;   /* keep-alive idle; close; default 60 s */
    unsigned write_timeout_ms;  /* a send that makes no progress; close; default 30 s */
    unsigned handler_timeout_ms; /* a request not answered this long after dispatch gets 500
                                  * (504 while out on the pool) and the connection closes
                                  * after it; 0: none; default 60 s. The request stays valid
                                  * for whoever holds it: answering it later (the answer is
                                  * dropped) releases it, as when the client leaves. */
    unsigned drain_timeout_ms;  /* graceful stop; default 10 s */
    unsigned pool_threads;      /* 0: 2x CPUs, at least 4 */
    unsigned pool_queue;        /* 0: 1024 */
    unsigned pool_timeout_ms;   /* 0: none */
    unsigned pool_group_share;  /* % of the pool's threads and of pool_queue one group may
                                 * hold (rounded up, >= 1 thread); default 50; 100: off */
    unsigned pool_shed_target_ms;   /* a task that waited this long is shed (503) once waits
                                     * in its group stayed this long for the interval;
                                     * default 100; 0: no delay shedding */
    unsigned pool_shed_interval_ms; /* default 500 */
    unsigned pool_spin_us;      /* a pool thread that just ran a task looks for the next this
                                 * long before sleeping, while its sleeps are that short;
                                 * default 10; 0: off */
    unsigned ring_entries;      /* SQ size; default 1024 */
    unsigned recv_buffers;      /* provided buffers per ring; default 1024 */
    unsigned recv_buffer_size;  /* default 4096 */
    bool no_defer_accept;       /* accept before the first bytes arrive (TCP_DEFER_ACCEPT
                                 * is on by default: fewer wake-ups per connection) */
    unsigned batch_wait_us;     /* under load, gather completions up to this long per
                                 * wake-up (kernel 6.12+; 0: off, the default) */
    const char *access_log;     /* a file path, "-" for stdout, NULL or "off": none */
    bool quiet;                 /* no start-up line on stderr */
    /* Deployment (see "drain, upgrade, socket activation" below). */
    unsigned drain_grace_ms;    /* rh_server_stop: /healthz says 503 and responses carry
                                 * Connection: close for this long while the server still
                                 * accepts, then the drain; 0 (the default): drain at once */
    const int *listen_fds;      /* listening sockets to serve instead of binding host:port
                                 * (every ring accepts from each); NULL: bind our own */
    unsigned listen_fds_count;  /* at most RH_MAX_LISTEN_FDS; the server owns them from
                                 * rh_server_new (closes them when it stops accepting) */
    const char *pid_file;       /* written once serving, removed at free if still ours */
} rh_config;

/* Fills cfg with the defaults above. */
void rh_config_init(rh_config *cfg);

/* Creates a server (nothing runs yet). */
int rh_server_new(const rh_config *cfg, rh_server **out);
/* Stops (if running), waits for the threads and frees everything. */
void rh_server_free(rh_server *srv);

typedef void (*rh_handler_fn)(rh_req *req, void *udata);

/* Routes: method "GET", "POST", ... or "*" for any. Pattern: exact "/a/b", with parameters
 * "/users/:id" (read with rh_req_param), or a prefix: a last segment "*", as in "/static/" +
 * "*" (rh_req_param(req, "*") is the rest). The most specific match wins: static segment > parameter > prefix.
 * A GET route also answers HEAD (the body is dropped). -EEXIST for a duplicate. */
int rh_route(rh_server *srv, const char *method, const char *pattern, rh_handler_fn fn,
             void *udata);

/* Binds the listeners (or takes rh_config.listen_fds) and starts the ring threads; returns
 * once they serve, after writing rh_config.pid_file. Started by rh_server_upgrade, it then
 * tells its predecessor that it serves. */
int rh_server_start(rh_server *srv);
/* Waits until the server has stopped; returns 0 or the first ring's error. */
int rh_server_wait(rh_server *srv);
/* rh_server_start + rh_server_wait. */
int rh_server_run(rh_server *srv);
/* Asks every ring to stop: after the grace (rh_config.drain_grace_ms, if any) stop
 * accepting, finish in-flight requests within the drain timeout, close. Returns at once. Any
 * thread; async-signal-safe. rh_server_shutdown(srv, RH_STOP_GRACEFUL). */
void rh_server_stop(rh_server *srv);
/* Reopens the access log file (after rotation; the binary does it on SIGHUP). Any thread. */
int rh_server_reopen_logs(rh_server *srv);
/* The number of rings (threads) serving, valid after rh_server_start. */
unsigned rh_server_threads(const rh_server *srv);
/* The bound port (useful with port 0), valid after rh_server_start. */
uint16_t rh_server_port(const rh_server *srv);

/* ---- drain, upgrade, socket activation ----
 * A balancer-friendly stop: with drain_grace_ms, rh_server_stop first starts the grace
 * (health routes answer 503 at once, responses carry Connection: close, listeners still
 * accept), then the drain of rh_server_stop. rh_server_shutdown picks how; a later call may
 * only make a running stop faster (GRACEFUL -> DRAIN). Any thread; async-signal-safe. */
typedef enum rh_stop_how {
    RH_STOP_GRACEFUL = 1, /* grace (drain_grace_ms), then drain: what rh_server_stop does */
    RH_STOP_DRAIN,        /* skip the grace: stop accepting and drain now */
    RH_STOP_HANDOFF,      /* a successor serves the same sockets: stop accepting now, keep
                           * health at 200, Connection: close for the grace, then drain */
} rh_stop_how;
void rh_server_shutdown(rh_server *srv, rh_stop_how how);
/* true once a GRACEFUL or DRAIN stop began: what a health check should report as 503. */
bool rh_server_draining(const rh_server *srv);
/* GET path (NULL: "/healthz"): 200 "ok" while serving, 503 "draining" once stopping. */
int rh_health_route(rh_server *srv, const char *path);

#define RH_MAX_LISTEN_FDS 32
/* Socket activation (the sd_listen_fds protocol, by hand): if LISTEN_PID is this process,
 * takes the LISTEN_FDS sockets from fd 3 on (they must be listening stream sockets; they get
 * FD_CLOEXEC), clears the variables and returns how many (0 if none were passed); put them
 * in rh_config.listen_fds. -EINVAL for a malformed or non-listening set, -E2BIG past cap. */
int rh_listen_fds_from_env(int *fds, unsigned cap);
/* The server's listening sockets (its own, or those it was given), to pass on: fills at
 * most cap and returns how many there are. Valid while running and not stopping. */
int rh_server_listen_fds(const rh_server *srv, int *fds, unsigned cap);
/* Zero-downtime upgrade (nginx's SIGUSR2): starts path with argv (and this environment)
 * inheriting the listening sockets as LISTEN_FDS, and waits up to timeout_ms until it
 * serves: a ringhttp server started on rh_listen_fds_from_env's sockets reports that from
 * rh_server_start (after writing its pid file). Returns the new process's pid; the caller
 * then stops this server with RH_STOP_HANDOFF. On failure (-errno: more sockets than
 * RH_MAX_LISTEN_FDS (-E2BIG), the exec failed, it exited, or the timeout passed and it was
 * killed) this server is untouched and serving. */
int rh_server_upgrade(rh_server *srv, const char *path, char *const argv[],
                      unsigned timeout_ms);

/* ---- the request ---- */
rh_str rh_req_method(const rh_req *req); /* "GET" */
rh_str rh_req_path(const rh_req *req);   /* raw path, without the query */
rh_str rh_req_query(const rh_req *req);  /* after '?', or empty */
rh_str rh_req_url(const rh_req *req);    /* request target, origin-form (absolute-form: from the path on) */
/* First header of that name (case-insensitive), or {NULL, 0}. */
rh_str rh_req_header(const rh_req *req, const char *name);
unsigned rh_req_header_count(const rh_req *req);
/* The i-th header in arrival order; 0 or -ERANGE. */
int rh_req_header_at(const rh_req *req, unsigned i, rh_str *name, rh_str *value);
/* Path parameter of the matched route ("id" for "/users/:id", "*" for a prefix route). */
rh_str rh_req_param(const rh_req *req, const char *name);
/* Raw value of a query parameter (not percent-decoded); 0 or -ENOENT. */
int rh_req_query_param(const rh_req *req, const char *name, rh_str *out);
rh_str rh_req_body(const rh_req *req);
int rh_req_http_minor(const rh_req *req); /* 0 or 1 */
/* The peer's address as text ("127.0.0.1"); valid until the request ends. */
const char *rh_req_peer(const rh_req *req);

/* ---- the response ---- */
/* Adds a response header. -EINVAL for a name that is not a token or a value with CR, LF or
 * NUL (no response splitting); -EALREADY once the head is sent. */
int rh_resp_header(rh_req *req, const char *name, const char *value);
/* Sends a whole response; body is copied. content_type may be NULL (no Content-Type).
 * Ends the request. -EALREADY if it was answered already. */
int rh_respond(rh_req *req, int status, const char *content_type, const void *body,
               size_t len);
/* Streaming: sends the head with chunked encoding (close-delimited for HTTP/1.0), then
 * rh_resp_write chunks, then rh_resp_end. Output is buffered and sent from the ring.
 * Back-pressure, like h2o's generators (proceed/stop): rh_resp_write copies the chunk and
 * returns 0 while the writer may go on, RH_RESP_FULL (> 0) once the connection's queued
 * output is past its high-water mark (256 KiB): the chunk is queued, but write no more;
 * call rh_resp_on_writable and continue from its callback. -ENOBUFS (nothing queued) past
 * a hard bound of 16 MiB queued, so a writer that ignores the signal cannot grow memory
 * without limit. Ring thread. */
enum { RH_RESP_FULL = 1 };
int rh_resp_start(rh_req *req, int status, const char *content_type);
int rh_resp_write(rh_req *req, const void *data, size_t len);
int rh_resp_end(rh_req *req);
/* Calls fn(req, status, udata) once, on the ring thread outside any handler, when the
 * queued output has drained below the low-water mark (64 KiB; at the next loop iteration if
 * it is below already): status 0, write more. status -ECONNRESET: the client has gone; end
 * the response (rh_resp_end) without writing more. One callback at a time (a new one
 * replaces the old). 0; -EINVAL before rh_resp_start; -ENOTSUP on a pool thread;
 * -ECONNRESET if the client has gone already (fn is not called); -EBUSY if the body is
 * sent by something else (a static file). */
typedef void (*rh_writable_fn)(rh_req *req, int status, void *udata);
int rh_resp_on_writable(rh_req *req, rh_writable_fn fn, void *udata);
/* Whether the request has been answered (rh_respond or rh_resp_start). */
bool rh_resp_started(const rh_req *req);

/* ---- leaving the ring: the blocking-task pool (our sync_to_async) ----
 * work runs on a pool thread with the request current (rh_ctx_get works there); done runs
 * afterwards on the request's ring thread, exactly once, and may answer, offload again or
 * rh_next. status: 0 (work ran), -ETIME (waited past --pool-timeout: not run), -ETIMEDOUT
 * (ran past the deadline and stopped via rh_offload_check), -ECANCELED (the client left or
 * the server stopped: not run), -EBUSY (shed: its group's queueing delay stayed too long,
 * see bulkheads below; not run). If done leaves the request unanswered after -ETIME,
 * -EBUSY or -ETIMEDOUT, ringhttp answers 503, 503 with Retry-After, or 504.
 * rh_offload returns 0, or -EAGAIN (queue full) / -ESHUTDOWN, in which case it has already
 * answered 503 with Retry-After: do not touch req again; done is not called. */
typedef void (*rh_work_fn)(rh_req *req, void *arg);
typedef void (*rh_done_fn)(rh_req *req, int status, void *arg);
int rh_offload(rh_req *req, rh_work_fn work, rh_done_fn done, void *arg);
/* The same on a lane (thread_sensitive): its tasks run one at a time, in order, always on
 * the lane's one thread. -ENOENT (and a 500) for an undeclared lane. */
int rh_offload_lane(rh_req *req, const char *lane, rh_work_fn work, rh_done_fn done,
                    void *arg);
/* Declares a lane before start; queue_cap 0: 1024. At most 8. */
int rh_lane_declare(rh_server *srv, const char *name, unsigned queue_cap);
/* A route whose handler runs whole on the pool (a WSGI-style synchronous handler): it may
 * block, and answers with rh_respond as usual; the ring sends the answer. lane NULL: the
 * shared pool. */
int rh_route_blocking(rh_server *srv, const char *method, const char *pattern,
                      rh_handler_fn fn, void *udata, const char *lane);
/* Bulkheads: every task on the shared pool belongs to a group with its own queue, and no
 * group holds more than its share of the pool's threads (rh_config.pool_group_share); idle
 * threads take from the groups' queues round-robin, so a flood on one group delays only
 * that group. A blocking route's group is named after its pattern ("/report"), rh_offload's
 * is "default". A task that waited pool_shed_target_ms, once its group's waits stayed that
 * long for pool_shed_interval_ms, is shed: done gets -EBUSY and, unanswered, the request a
 * 503 with Retry-After. /metrics shows each group (ringhttp_pool_group_*).
 * rh_pool_group sets a group's own share before start (0: the default for that figure);
 * -EINVAL for an empty name or "default", -ENOSPC past 64 groups. */
int rh_pool_group(rh_server *srv, const char *name, unsigned max_threads, unsigned queue_cap);
/* rh_route_blocking on the shared pool in the named group (NULL: the pattern's). */
int rh_route_blocking_group(rh_server *srv, const char *method, const char *pattern,
                            rh_handler_fn fn, void *udata, const char *group);
/* rh_offload in the named group (declared with rh_pool_group or a blocking route);
 * -ENOENT (and a 500) for an unknown group. */
int rh_offload_group(rh_req *req, const char *group, rh_work_fn work, rh_done_fn done,
                     void *arg);
/* From work (or a blocking handler): 0 to go on, -ETIMEDOUT past the deadline (stop; the
 * answer becomes 504), -ECANCELED if the client left. */
int rh_offload_check(void);
/* async_to_sync: from work, runs fn(arg) on the request's ring thread, with the request
 * current, and blocks this pool thread until it returns. -EPERM outside work. */
int rh_call_on_ring(void (*fn)(void *arg), void *arg);

/* ---- middleware ----
 * An ordered chain run before the route's handler. `before` may let the request go on
 * (RH_MW_NEXT), answer it itself (RH_MW_DONE, short-circuit), or suspend it
 * (RH_MW_SUSPEND: e.g. offload an auth check) and later, on the ring thread (a done
 * callback), call rh_next(req) to go on or answer it. `after` runs for every middleware
 * whose `before` ran, in reverse order, just before the response head is written: it may
 * add headers (rh_resp_header). With RH_MW_ALL_RESPONSES, `after` also sees responses to
 * requests rejected before the chain (parse errors, limits), e.g. for an access log. */
typedef enum rh_mw_result { RH_MW_NEXT = 0, RH_MW_DONE = 1, RH_MW_SUSPEND = 2 } rh_mw_result;
enum { RH_MW_ALL_RESPONSES = 1 };
typedef struct rh_middleware {
    const char *name;
    rh_mw_result (*before)(rh_req *req, void *udata); /* may be NULL */
    void (*after)(rh_req *req, int status, void *udata); /* may be NULL */
    void *udata;
    unsigned flags;
    /* May be NULL. Runs once when the request ends, however it ends (after the last byte
     * of a streamed body was queued, or when the client left), for every middleware whose
     * `before` ran (and, with RH_MW_ALL_RESPONSES, for early rejections): status is the
     * answer's (0: none was given); rh_resp_body_bytes and rh_req_elapsed_ms are final. */
    void (*finish)(rh_req *req, int status, void *udata);
} rh_middleware;
/* Appends to the chain (copied); -ENOSPC past 16, -EBUSY once started. */
int rh_use(rh_server *srv, const rh_middleware *mw);
/* Resumes the chain of a request whose middleware returned RH_MW_SUSPEND. Ring thread. */
void rh_next(rh_req *req);
/* Milliseconds since the request's first byte was parsed. */
uint64_t rh_req_elapsed_ms(const rh_req *req);

/* ---- per-request context (ContextVar) ----
 * Keys are registered before any server starts (at most 32 per process). A value lives in a
 * slot inside the request and follows it across threads: rh_ctx_get/rh_ctx_set act on the
 * current request of the calling thread (set by ringhttp while it runs a handler, a
 * middleware, a done callback, or the request's work on a pool thread). Setting a new value
 * destroys the one it replaces; every value still set is destroyed once when the request
 * ends, however it ends. Outside any request, rh_ctx_get returns NULL. */
typedef int rh_ctx_key;
/* A key, or -ENOSPC. destroy may be NULL. */
rh_ctx_key rh_ctx_key_new(const char *name, void (*destroy)(void *value));
void *rh_ctx_get(rh_ctx_key key);
/* 0, -EINVAL (bad key) or -ESRCH (no current request). */
int rh_ctx_set(rh_ctx_key key, void *value);
void *rh_req_ctx_get(const rh_req *req, rh_ctx_key key);
int rh_req_ctx_set(rh_req *req, rh_ctx_key key, void *value);
/* The request the calling thread works for, or NULL. */
rh_req *rh_current_req(void);

/* ---- built-in middleware and routes ----
 * Request id: takes a valid X-Request-Id (1..36 of [A-Za-z0-9._:-]) or generates one, keeps
 * it with the request (rh_request_id, also from a pool work function), echoes it back. */
int rh_use_request_id(rh_server *srv);
/* The request's id (req NULL: the current request), or NULL without the middleware. */
const char *rh_request_id(const rh_req *req);
/* Prometheus text metrics at path (NULL: "/metrics"): responses by class, a latency
 * histogram, connections, and the pool and lane figures. */
int rh_metrics_route(rh_server *srv, const char *path);

/* ---- static files ----
 * rh_static_route mounts the directory root_dir at the URL prefix ("/" or "/assets"): GET and
 * HEAD of prefix + "/a/b.css" serve root_dir/a/b.css, other methods get 405 (Allow: GET,
 * HEAD); exact routes still win over the mount. Safe by construction: the path is
 * percent-decoded (400 for a bad escape or a NUL) and normalised (400 for ".." above the
 * root), then opened through the ring with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
 * relative to a directory fd of root_dir, so no path and no symlink leaves it (403; relative
 * symlinks that stay beneath the root are followed, absolute ones are refused).
 * Names starting with '.' are 404 unless serve_hidden (".well-known" is always served).
 * Only regular files are served (403 for FIFOs, devices, sockets); error pages never show a
 * file system path.
 * HTTP: Content-Type from the extension (application/octet-stream when unknown),
 * Last-Modified, a strong ETag (inode-size-mtime), If-Match / If-Unmodified-Since (412),
 * If-None-Match / If-Modified-Since (304), one byte range with optional If-Range (206; 416
 * with the size in Content-Range when unsatisfiable; several ranges get the whole file, 200:
 * no multipart/byteranges), index.html for "/dir/" (403 without one), a 301 from "/dir"
 * to "/dir/". Cache-Control only if configured (default: none).
 * Each ring keeps an LRU cache of open files (fd + statx, and the bytes of files up to 16
 * KiB), re-checked with a statx by path at most once per cache_valid_ms: a file replaced or
 * changed is reopened after at most that long. Until then a file replaced by rename (a
 * deploy) is served whole in its old version; one rewritten in place may be served mixed,
 * as with nginx's open_file_cache, except files up to 16 KiB, whose change of size is caught
 * at once. Bodies go from the file to the socket through the ring, paced by the socket (a slow
 * reader holds one buffer or one pipe, never the file). A body spliced to a socket whose
 * peer has gone raises SIGPIPE (splice cannot take MSG_NOSIGNAL): rh_static_route sets
 * SIGPIPE to SIG_IGN if it was SIG_DFL. Before start. -EINVAL (bad prefix or option),
 * -errno from opening root_dir, -EEXIST (the prefix is mounted or routed already). */
typedef struct rh_static_options {
    const char *cache_control; /* Cache-Control value for files; NULL: none */
    const char *index;         /* directory index file; NULL: "index.html" */
    bool no_symlinks;          /* refuse every symlink (403); default: only those leaving root */
    bool serve_hidden;         /* serve names starting with '.' (default: 404) */
    unsigned cache_entries;    /* open files cached per ring; 0: 256 */
    unsigned cache_valid_ms;   /* re-check a cached file after this long; 0: 1000 */
    uint64_t splice_min;       /* bodies above 16 KiB whose pages are not resident (or all,
                                * with no_sendfile): from this long on spliced (file ->
                                * pipe -> socket), shorter ones read and sent; 0: 32 KiB */
    bool no_sendfile;          /* never sendfile(2) resident pages from the ring thread:
                                * every body above 16 KiB through io-wq (default: false) */
} rh_static_options;
void rh_static_options_init(rh_static_options *opt); /* all zero: the defaults above */
int rh_static_route(rh_server *srv, const char *prefix, const char *root_dir,
                    const rh_static_options *opt);
/* Serves req from the mount at prefix as if its route had matched (for a handler or a
 * middleware that picks a mount itself); the answer may come later, from the ring. Ring
 * thread. -ENOENT (nothing answered) if no mount has that prefix. */
int rh_static_serve(rh_req *req, const char *prefix);

/* ---- the application toolkit ----
 * Everything below is optional for an application; none of it costs a request that does
 * not use it more than a pointer test. */

/* Error pages. fn decides the body of every error ringhttp itself answers: 400, 403 and
 * 404 (also from static mounts), 405, 408, 413, 414, 415 (rh_req_json), 431, 500, 501,
 * 503, 504, 505, and those the application raises with rh_respond_error (412 and 416 of
 * static files stay plain). It runs with the request current and answers with rh_respond
 * (or rh_respond_json) using that status; headers ringhttp adds (Allow for 405,
 * Retry-After for 503) are already set; a connection that must close still closes after
 * the answer. If fn does not answer, or raises an error itself, the default text/plain
 * page goes out. detail is a short English text (e.g. the JSON parse error), or NULL. A
 * request rejected before its head was complete has a partial or empty path. Before
 * start; replaces an earlier handler. */
typedef void (*rh_error_fn)(rh_req *req, int status, const char *detail, void *udata);
int rh_on_error(rh_server *srv, rh_error_fn fn, void *udata);
/* Answers status through the error handler (or the default page). detail may be NULL.
 * Same thread rules and return values as rh_respond. */
int rh_respond_error(rh_req *req, int status, const char *detail);

/* Middleware scoped to a path prefix: it runs after the route matched (so an unknown path
 * is 404 and a wrong method 405 without it) and after the global chain, in the order
 * added, for requests whose raw path starts with prefix on segment boundaries: "/todos"
 * covers "/todos" and "/todos/7" but not "/todosx"; a ":name" segment matches any one
 * segment ("/todos/:id" covers "/todos/7" and "/todos/7/x": one route and what is under
 * it). before/after/finish behave as for rh_use; rh_next resumes here too. -EINVAL for a
 * prefix not starting with '/', -ENOSPC past 16, -EBUSY once started. */
int rh_use_prefix(rh_server *srv, const char *prefix, const rh_middleware *mw);

/* Bytes of response body given so far (the final size once the request ended: finish). */
uint64_t rh_resp_body_bytes(const rh_req *req);

/* ---- percent-decoding, forms, cookies ----
 * Decoders write a NUL-terminated copy into out (cap bytes, the NUL included) and return
 * its length (without the NUL), or -ENOENT (absent), -EINVAL (a bad %-escape, or %00),
 * -ENOSPC (does not fit). */
/* Decodes %XX escapes (and '+' as a space when plus_is_space, as in forms and queries). */
int rh_url_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t cap);
/* The path parameter of the matched route, percent-decoded ('+' stays '+'). */
int rh_req_param_decoded(const rh_req *req, const char *name, char *out, size_t cap);
/* The first query parameter whose decoded name is name, value decoded ('+' is a space). */
int rh_req_query_decoded(const rh_req *req, const char *name, char *out, size_t cap);
/* The same lookup in any application/x-www-form-urlencoded text. */
int rh_urlencoded_get(rh_str text, const char *name, char *out, size_t cap);
/* From a form body; -EMEDIUMTYPE when Content-Type is not
 * application/x-www-form-urlencoded. */
int rh_req_form(const rh_req *req, const char *name, char *out, size_t cap);
/* The raw value of the request's cookie name (surrounding double quotes removed), pointing
 * into the request; 0 or -ENOENT. Every Cookie header is searched. */
int rh_req_cookie(const rh_req *req, const char *name, rh_str *out);
typedef struct rh_cookie_options {
    const char *path;      /* NULL: no Path */
    const char *domain;    /* NULL: no Domain */
    long long max_age;     /* > 0: Max-Age in seconds; 0: a session cookie; < 0: Max-Age=0
                            * (the client deletes it) */
    bool secure;
    bool http_only;
    const char *same_site; /* "Strict", "Lax", "None" or NULL */
} rh_cookie_options;
/* Adds a Set-Cookie header. name must be a token; value cookie-octets (no space, '"', ',',
 * ';', '\\' or controls: encode anything else yourself); attributes without ';', CR or LF.
 * opt may be NULL. -EINVAL, or as rh_resp_header. */
int rh_resp_cookie(rh_req *req, const char *name, const char *value,
                   const rh_cookie_options *opt);

/* ---- JSON (jansson; present when ringhttp was built with RH_JSON, the default) ----
 * The documents are jansson's json_t (include <jansson.h> to build them). */
struct json_t;
/* Parses the request body. 0 and *out (yours: json_decref it); otherwise the request has
 * been answered through the error handler and the return says why: -EMEDIUMTYPE (415:
 * Content-Type is not application/json or +json), -EBADMSG (400: not valid JSON, or not
 * UTF-8; detail says where). Any thread the request may be used on. */
int rh_req_json(rh_req *req, struct json_t **out);
/* Answers doc, compact, as "application/json; charset=utf-8", and takes the reference
 * (json_decref, even on error; doc NULL answers 500). As rh_respond otherwise. */
int rh_respond_json(rh_req *req, int status, struct json_t *doc);

/* ---- ring timers ----
 * fn(req, arg) runs on the request's ring thread after delay_ms (25 ms resolution), with
 * the request current; it may answer, write to a started stream, or arm the timer again
 * (periodic output without a pool thread). One timer per request: arming replaces the
 * previous one. The timer is cancelled when the request ends, and a request that waits
 * only for its timer ends when the client leaves (fn is not called). The handler deadline
 * (handler_timeout_ms) still holds until the answer starts: a longer wait gets its 500
 * first, and fn then answers into the void; a started stream is not limited. Ring thread:
 * -EPERM from a pool thread, -EALREADY once the request ended. */
typedef void (*rh_timer_fn)(rh_req *req, void *arg);
int rh_req_timer(rh_req *req, unsigned delay_ms, rh_timer_fn fn, void *arg);
void rh_req_timer_cancel(rh_req *req);

/* ---- lane hooks ----
 * on_start runs on the lane's thread before any task of the lane (open a database
 * connection there); on_stop runs on it after the last task, once the rings stopped
 * (close it). Either may be NULL. Before start; -ENOENT for an undeclared lane, -EEXIST
 * if the lane has hooks already. */
int rh_lane_hooks(rh_server *srv, const char *lane, void (*on_start)(void *udata),
                  void (*on_stop)(void *udata), void *udata);

/* ---- an in-process test client ----
 * Sends one request to a running server of this process over loopback (a real
 * connection, the real ring), waits for the whole answer (at most timeout_ms; 0: 5 s) and
 * parses it. headers: extra header lines ("Name: value\r\n"...), or NULL; Host and
 * Content-Length are added. Blocking: call it from a test's thread, never a handler.
 * 0, -ETIMEDOUT, -EPROTO (not a valid answer), -errno from the socket. */
typedef struct rh_test_response {
    int status;
    char *head; /* the status line and header lines, NUL-terminated (owned) */
    char *body; /* the body, chunked encoding removed, NUL-terminated (owned) */
    size_t body_len;
} rh_test_response;
int rh_test_request(rh_server *srv, const char *method, const char *target,
                    const char *headers, const void *body, size_t len, unsigned timeout_ms,
                    rh_test_response *out);
/* A response header's value (case-insensitive name) copied into out; as the decoders. */
int rh_test_header(const rh_test_response *resp, const char *name, char *out, size_t cap);
void rh_test_response_free(rh_test_response *resp);

/* The reason phrase for a status code ("Not Found"), or "Unknown". */
const char *rh_status_reason(int status);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
