/* The server's wiring of calls up: the transport (conn.c) and HTTP/1 (request.c,
 * response.c) call no layer above them by name; they call through srv->proto and
 * srv->hooks, which this file fills with the functions of HTTP/1, static files, the app
 * layer (router, toolkit, offload) and observability (metrics, access log). It is the one
 * place that knows every layer, so it sits on top with the server object. */
#include "server/srv.h"
#include "http1/http1.h"
#include "obs/obs.h"
#include "app/app.h"

/* ---- the connection's protocol: HTTP/1 ---- */

/* The connection is gone (or the ring exited: abandoned) with c->req still set: one whose
 * handler still runs (paused) becomes an orphan that its handler, its ring timer or its
 * body source ends (a static file's at once, a streaming writer's once told); the rest
 * end now. */
static void http1_closed(struct rh_conn *c, bool abandoned)
{
    struct rh_req *r = c->req;
    c->req = NULL;
    if (c->flags & C_PAUSED) {
        h1_req_orphan(r);     /* its handler still runs: it ends the orphan */
        app_offload_cancel(r); /* not started yet: it never will */
        /* Abandoned: the ring is gone, a body source may not touch it (static_worker_abandon
         * has ended a transfer's request before this) */
        if (abandoned || !h1_body_stop(r))
            app_req_orphaned(r); /* waiting only for its ring timer: ends now */
        return;
    }
    if (abandoned)
        r->conn = NULL;
    h1_req_end(r);
}

static void http1_before_flush(struct rh_worker *w)
{
    h1_refresh_date(w);
    h1_resp_run_writable(w);
}

static void http1_after_flush(struct rh_worker *w)
{
    (void)w;
    app_offload_flush();
}

static const struct conn_proto http1_proto = {
    .on_open = h1_input_open,
    .on_input = h1_input_execute,
    .input_keep = h1_req_input_keep,
    .on_writable = h1_on_writable,
    .input_moved = h1_req_input_moved,
    .resp_started = h1_req_resp_started,
    .only_waiting = h1_req_only_waiting,
    .body_deadline = h1_body_rate_deadline,
    .body_progress = h1_body_rate_progress,
    .body_timer = h1_body_rate_timer,
    .on_deadline = h1_req_deadline,
    .on_fail = h1_resp_fail,
    .on_closed = http1_closed,
    .before_flush = http1_before_flush,
    .after_flush = http1_after_flush,
    .on_stop = h1_req_release_orphans,
};

/* ---- HTTP/1's calls up: the app layer and observability ---- */

static const struct req_handler *app_match(struct rh_req *r, int *status, char *allowed,
                                           size_t allowed_len)
{
    rh_str path = rh_req_path(r);
    struct route_match m;
    *status = app_router_match(r->w->srv->routes, rh_req_method(r), (r->flags & R_HEAD) != 0, path,
                           &m, allowed, allowed_len);
    if (*status != 404) { /* 405 keeps the parameters too, as the handlers of errors see them */
        uint32_t at = (uint32_t)(path.ptr - r->base);
        for (unsigned i = 0; i < m.nparams; i++) {
            r->params[i].name = m.params[i].name;
            r->params[i].value = (struct rh_slice){at + m.params[i].off, m.params[i].len};
        }
        r->nparams = m.nparams;
    }
    return m.entry ? &m.entry->h : NULL;
}

/* After-hooks before each head is written: counters, then the access log line. */
static void observe_after(struct rh_req *r, int status)
{
    obs_count_response(r, status);
    if (r->w->log)
        obs_access_log_line(r, status);
}

static const struct http_hooks app_hooks = {
    .match = app_match,
    .route_chain = app_route_chain,
    .route_after = app_route_after,
    .error = app_error,
    .respond_error = rh_respond_error,
    .req_end = app_req_end,
    .cancel = app_offload_cancel,
    .capture = app_offload_capture,
    .after = observe_after,
};

void srv_wire(struct rh_server *srv)
{
    srv->proto = &http1_proto;
    srv->hooks = &app_hooks;
}
