/* The application toolkit's core hooks: error handlers, middleware scoped to path prefixes
 * (run after the route matched), finish hooks with final sizes, the per-request ring
 * timer, and lane start/stop hooks. Set-up state lives in srv->app (allocated on first
 * use); per-request state in a few rh_req fields, zeroed with the request. */
#include <errno.h>
#include <mimalloc.h>
#include <string.h>

#include "app/app.h"
#include "http1/http1.h"

static struct rh_app *app_get(rh_server *srv)
{
    if (!srv->app) {
        srv->app = mi_zalloc(sizeof(*srv->app)); /* owner: srv, freed in app_free */
        if (srv->app)
            srv->app->hook_inbox.wake_fd = -1;
    }
    return srv->app;
}

/* ---- error pages ---- */

int rh_on_error(rh_server *srv, rh_error_fn fn, void *udata)
{
    if (srv->threads_live)
        return -EBUSY;
    struct rh_app *a = app_get(srv);
    if (!a)
        return -ENOMEM;
    a->on_error = fn;
    a->error_udata = udata;
    return 0;
}

/* Set while this thread runs the error handler: an error it raises itself (calling
 * rh_respond_error, or failing to build its answer) gets the default page, not a loop. */
static _Thread_local bool in_error_handler;

static void call_error_handler(const struct rh_app *a, struct rh_req *r, int status,
                               const char *detail)
{
    in_error_handler = true;
    a->on_error(r, status, detail, a->error_udata);
    in_error_handler = false;
}

bool app_error(struct rh_req *r, int status, const char *detail)
{
    const struct rh_app *a = r->w->srv->app;
    if (!a || !a->on_error || (r->flags & R_RESP_STARTED) || in_error_handler)
        return false;
    if (r->lent) { /* a pool thread: rh_respond captures, the ring sends */
        call_error_handler(a, r, status, detail);
        return rh_resp_started(r);
    }
    struct rh_ctx *prev = h1_req_enter(r); /* keeps r alive across the handler's answer */
    call_error_handler(a, r, status, detail);
    bool answered = (r->flags & (R_RESP_STARTED | R_FINISHED)) != 0;
    h1_req_leave(r, prev);
    return answered;
}

int rh_respond_error(rh_req *r, int status, const char *detail)
{
    if (rh_resp_started(r))
        return -EALREADY;
    if (app_error(r, status, detail))
        return 0;
    const char *text = detail ? detail : rh_status_reason(status);
    return rh_respond(r, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* ---- scoped middleware ---- */

int rh_use_prefix(rh_server *srv, const char *prefix, const rh_middleware *mw)
{
    if (srv->threads_live)
        return -EBUSY;
    if (!prefix || prefix[0] != '/' || !mw)
        return -EINVAL;
    struct rh_app *a = app_get(srv);
    if (!a)
        return -ENOMEM;
    if (a->nscoped >= RH_MAX_MIDDLEWARE)
        return -ENOSPC;
    size_t n = strlen(prefix);
    while (n > 1 && prefix[n - 1] == '/')
        n--; /* "/todos/" is "/todos" */
    char *p = mi_strndup(prefix, n); /* owner: srv->app */
    if (!p)
        return -ENOMEM;
    a->scoped[a->nscoped].prefix = p;
    a->scoped[a->nscoped].mw = *mw;
    a->nscoped++;
    return 0;
}

/* Whether path starts with prefix on segment boundaries; ":x" matches any one segment. */
static bool prefix_covers(const char *prefix, rh_str path)
{
    const char *p = prefix, *s = path.ptr, *end = path.ptr + path.len;
    if (p[0] == '/' && p[1] == 0)
        return true;
    while (*p == '/') {
        if (s >= end || *s != '/')
            return false;
        p++, s++;
        const char *pseg_end = strchr(p, '/');
        size_t plen = pseg_end ? (size_t)(pseg_end - p) : strlen(p);
        const char *sseg_end = memchr(s, '/', (size_t)(end - s));
        size_t slen = sseg_end ? (size_t)(sseg_end - s) : (size_t)(end - s);
        if (p[0] == ':' ? slen == 0 : (plen != slen || memcmp(p, s, plen) != 0))
            return false;
        p += plen, s += slen;
    }
    return true;
}

bool app_route_chain(struct rh_req *r)
{
    const struct rh_app *a = r->w->srv->app;
    if (!a)
        return false;
    while (r->rmw_pos < a->nscoped) {
        const struct scoped_mw *sm = &a->scoped[r->rmw_pos++];
        if (!prefix_covers(sm->prefix, rh_req_path(r)))
            continue;
        r->rmw_ran = r->rmw_pos;
        if (!sm->mw.before)
            continue;
        rh_mw_result res = sm->mw.before(r, sm->mw.udata);
        if (r->flags & (R_RESP_STARTED | R_FINISHED) || res == RH_MW_SUSPEND)
            return true;
        if (res == RH_MW_DONE) { /* claimed an answer it did not give */
            rh_respond_error(r, 500, NULL);
            return true;
        }
    }
    return false;
}

/* Scoped middleware that ran: the ones before rmw_ran whose prefix covers the path. */
static bool scoped_ran(const struct rh_req *r, const struct scoped_mw *sm, int i)
{
    return i < r->rmw_ran && prefix_covers(sm->prefix, rh_req_path(r));
}

void app_route_after(struct rh_req *r, int status)
{
    const struct rh_app *a = r->w->srv->app;
    if (!a || !r->rmw_ran)
        return;
    for (int i = r->rmw_ran - 1; i >= 0; i--)
        if (a->scoped[i].mw.after && scoped_ran(r, &a->scoped[i], i))
            a->scoped[i].mw.after(r, status, a->scoped[i].mw.udata);
}

uint64_t rh_resp_body_bytes(const rh_req *r)
{
    return r->resp_body_len > 0 ? (uint64_t)r->resp_body_len : r->resp_body_bytes;
}

static void run_finish_hooks(struct rh_req *r)
{
    const struct rh_server *srv = r->w->srv;
    const struct rh_app *a = srv->app;
    for (int i = a ? (int)r->rmw_ran - 1 : -1; i >= 0; i--)
        if (a->scoped[i].mw.finish && scoped_ran(r, &a->scoped[i], i))
            a->scoped[i].mw.finish(r, r->status, a->scoped[i].mw.udata);
    bool early = r->mw_pos == 0;
    for (int i = early ? (int)srv->nmw - 1 : (int)r->mw_ran - 1; i >= 0; i--) {
        const rh_middleware *mw = &srv->mw[i];
        if (mw->finish && (!early || (mw->flags & RH_MW_ALL_RESPONSES)))
            mw->finish(r, r->status, mw->udata);
    }
}

/* ---- the ring timer ---- */

static void app_timer_fire(struct rh_timer *t)
{
    struct rh_req *r = (struct rh_req *)((char *)t - offsetof(struct rh_req, app_timer));
    rh_timer_fn fn = r->app_timer_fn;
    r->app_timer_fn = NULL;
    struct rh_ctx *prev = h1_req_enter(r);
    fn(r, r->app_timer_arg);
    h1_req_leave(r, prev);
}

int rh_req_timer(rh_req *r, unsigned delay_ms, rh_timer_fn fn, void *arg)
{
    if (r->lent)
        return -EPERM; /* the wheel belongs to the ring thread */
    if (!fn)
        return -EINVAL;
    if (r->flags & R_FINISHED)
        return -EALREADY;
    r->app_timer_fn = fn;
    r->app_timer_arg = arg;
    r->app_timer.fn = app_timer_fire;
    rh_timer_arm(&r->w->loop.wheel, &r->app_timer, r->w->loop.now_ms + delay_ms);
    return 0;
}

void rh_req_timer_cancel(rh_req *r)
{
    if (r->lent || !r->app_timer_fn)
        return;
    rh_timer_cancel(&r->w->loop.wheel, &r->app_timer);
    r->app_timer_fn = NULL;
}

void app_req_orphaned(struct rh_req *r)
{
    if (!r->app_timer_fn || r->offload)
        return; /* not waiting for its timer: whoever holds it ends it */
    rh_req_timer_cancel(r);
    h1_req_complete(r); /* r->status stays 0: no answer was given */
}

void app_req_end(struct rh_req *r)
{
    rh_req_timer_cancel(r);
    if (r->w->srv->app || r->w->srv->nmw)
        run_finish_hooks(r);
}

/* ---- lane hooks ---- */

int rh_lane_hooks(rh_server *srv, const char *lane, void (*on_start)(void *udata),
                  void (*on_stop)(void *udata), void *udata)
{
    if (srv->threads_live)
        return -EBUSY;
    bool declared = false;
    for (unsigned i = 0; lane && i < srv->nlanes; i++)
        declared |= strcmp(srv->lanes[i].name, lane) == 0;
    if (!declared)
        return -ENOENT;
    struct rh_app *a = app_get(srv);
    if (!a)
        return -ENOMEM;
    for (unsigned i = 0; i < a->nhooks; i++)
        if (strcmp(a->hooks[i].lane, lane) == 0)
            return -EEXIST;
    struct lane_hook *h = &a->hooks[a->nhooks];
    if (!(h->lane = mi_strdup(lane))) /* owner: srv->app */
        return -ENOMEM;
    h->start = on_start;
    h->stop = on_stop;
    h->udata = udata;
    a->nhooks++;
    return 0;
}

static void hook_start_work(struct rh_task *t)
{
    struct lane_hook *h = (struct lane_hook *)((char *)t - offsetof(struct lane_hook, start_task));
    h->start(h->udata);
}

static void hook_stop_work(struct rh_task *t)
{
    struct lane_hook *h = (struct lane_hook *)((char *)t - offsetof(struct lane_hook, stop_task));
    h->stop(h->udata);
}

static void hook_delivered(struct rh_loop *loop, struct rh_msg *msg) { (void)loop, (void)msg; }

/* The hook goes through the lane's own FIFO, so it runs on the lane's thread before (or
 * after) every task of the lane. A full queue at stop drains by itself: retry briefly. */
static void hook_submit(rh_server *srv, struct lane_hook *h, struct rh_task *t,
                        void (*work)(struct rh_task *t))
{
    int lane = rh_pool_lane_find(srv->pool, h->lane);
    memset(t, 0, sizeof(*t));
    t->work = work;
    t->owner = &srv->app->hook_inbox;
    t->msg.fn = hook_delivered;
    t->deadline_ns = UINT64_MAX; /* never expires: the pool's timeout is for requests */
    for (int tries = 0; rh_pool_submit_lane(srv->pool, lane, t) == -EAGAIN && tries < 5000;
         tries++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void app_lanes_start(rh_server *srv)
{
    for (unsigned i = 0; srv->app && srv->pool && i < srv->app->nhooks; i++)
        if (srv->app->hooks[i].start)
            hook_submit(srv, &srv->app->hooks[i], &srv->app->hooks[i].start_task,
                        hook_start_work);
}

void app_lanes_stop(rh_server *srv)
{
    for (unsigned i = 0; srv->app && srv->pool && i < srv->app->nhooks; i++)
        if (srv->app->hooks[i].stop)
            hook_submit(srv, &srv->app->hooks[i], &srv->app->hooks[i].stop_task,
                        hook_stop_work);
}

void app_free(rh_server *srv)
{
    struct rh_app *a = srv->app;
    if (!a)
        return;
    rh_loop_drain_inbox(&a->hook_inbox); /* the pool is gone: nothing posts any more */
    for (unsigned i = 0; i < a->nscoped; i++)
        mi_free(a->scoped[i].prefix);
    for (unsigned i = 0; i < a->nhooks; i++)
        mi_free(a->hooks[i].lane);
    mi_free(a);
    srv->app = NULL;
}
