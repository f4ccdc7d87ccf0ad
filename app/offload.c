/* Offload: requests leave the ring for pool/ and come back. A task object per offload comes
 * from the worker's free list (no allocation in steady state); the request's head is copied
 * out first, so while a pool thread holds the request nothing it reads belongs to the
 * connection, and the ring touches the request only once the task is delivered back. */
#include <errno.h>
#include <mimalloc.h>
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <string.h>

#include "base/freelist.h"
#include "pool/pool.h"
#include "http1/http1.h"
#include "app/app.h" /* the toolkit's hooks */

struct offload {
    struct rh_task task; /* first: rh_pool_current_task() -> struct offload */
    struct rh_req *req;
    rh_work_fn work;
    rh_done_fn done;
    void *arg;
    struct offload *next_free;
};

/* A blocking handler's answer, made on the pool thread, sent by the ring. */
struct captured {
    int status;
    char ctype[96];
    bool has_ctype;
    size_t len;
    char body[];
};

static struct offload *offload_get(struct rh_worker *w)
{
    struct offload *o = RH_FREELIST_POP(w->free_offloads, next_free);
    if (o)
        return o;
    return mi_zalloc(sizeof(*o)); /* owner: the worker's free list, from the first use on */
}

static void offload_put(struct rh_worker *w, struct offload *o)
{
    RH_FREELIST_PUSH(w->free_offloads, o, next_free);
}

/* ---- on the pool thread ---- */

static void run_work(struct rh_task *t)
{
    struct offload *o = (struct offload *)t;
    struct rh_ctx *prev = ctx_enter(&o->req->ctx);
    o->req->lent = true; /* rh_respond here captures the answer for the ring */
    o->work(o->req, o->arg);
    o->req->lent = false;
    ctx_leave(prev);
}

int rh_offload_check(void)
{
    struct rh_task *t = rh_pool_current_task();
    return t ? rh_task_check(t) : 0;
}

struct ring_call {
    struct rh_req *req;
    void (*fn)(void *arg);
    void *arg;
};

static void ring_call_tramp(void *p)
{
    struct ring_call *rc = p;
    struct rh_ctx *prev = ctx_enter(&rc->req->ctx); /* the request stays current */
    rc->fn(rc->arg);
    ctx_leave(prev);
}

int rh_call_on_ring(void (*fn)(void *arg), void *arg)
{
    struct rh_task *t = rh_pool_current_task();
    if (!t)
        return -EPERM;
    struct ring_call rc = {((struct offload *)t)->req, fn, arg};
    rh_task_call_on_owner(t, ring_call_tramp, &rc);
    return 0;
}

/* ---- back on the ring ---- */

static int status_of(const struct rh_task *t)
{
    switch (atomic_load_explicit(&t->state, memory_order_acquire)) {
    case RH_TASK_DONE:
        return t->stop_reason == -ETIMEDOUT ? -ETIMEDOUT : 0;
    case RH_TASK_EXPIRED:
        return -ETIME;
    case RH_TASK_SHED:
        return -EBUSY;
    default:
        return -ECANCELED;
    }
}

static void on_delivered(struct rh_loop *loop, struct rh_msg *msg)
{
    struct offload *o = (struct offload *)msg;
    struct rh_req *r = o->req;
    rh_done_fn done = o->done;
    void *arg = o->arg;
    int status = status_of(&o->task);
    r->offload = NULL;
    offload_put(r->w, o);
    struct rh_ctx *prev = h1_req_enter(r);
    app_offload_replay(r); /* an answer given on the pool thread goes out first */
    done(r, status, arg);
    if (!(r->flags & (R_RESP_STARTED | R_FINISHED)) && !r->offload) {
        if (status == -ETIME)
            h1_resp_error(r, 503);
        else if (status == -EBUSY)
            h1_resp_error_keepalive(r, 503); /* shed for delay: the client may retry later */
        else if (status == -ETIMEDOUT)
            h1_resp_error(r, 504);
        else if (status == -ECANCELED && !r->conn)
            rh_respond(r, 499, NULL, NULL, 0); /* nobody to answer: just end it */
    }
    h1_req_leave(r, prev);
}

/* lane >= 0: that lane; else the shared pool in group `group`. */
static int submit(struct rh_req *r, int lane, unsigned group, rh_work_fn work, rh_done_fn done,
                  void *arg)
{
    struct rh_worker *w = r->w;
    struct rh_pool *pool = w->srv->pool;
    if (!pool)
        return -ESHUTDOWN;
    struct offload *o = offload_get(w);
    if (!o)
        return -ENOMEM;
    o->req = r;
    o->work = work;
    o->done = done;
    o->arg = arg;
    o->task.msg.fn = on_delivered;
    o->task.work = run_work;
    o->task.owner = &w->loop;
    o->task.deadline_ns = 0;
    o->task.group = group;
    h1_req_detach_head(r); /* the pool thread must not read the connection's buffer */
    rh_pool_hold_wakes(true); /* this ring thread flushes them in conn_flush_dirty */
    int ret = lane < 0 ? rh_pool_submit(pool, &o->task) : rh_pool_submit_lane(pool, lane, &o->task);
    if (ret < 0) {
        offload_put(w, o);
        return ret;
    }
    r->offload = o;
    return 0;
}

static int answer_refusal(struct rh_req *r, int err, const char *what)
{
    if (err == -ENOENT && what) {
        rh_respond_error(r, 500, what);
        return err;
    }
    h1_resp_error_keepalive(r, 503); /* back-pressure: the client may retry */
    return err;
}

int rh_offload(rh_req *r, rh_work_fn work, rh_done_fn done, void *arg)
{
    int ret = submit(r, -1, 0, work, done, arg);
    return ret < 0 ? answer_refusal(r, ret, NULL) : 0;
}

int rh_offload_group(rh_req *r, const char *group, rh_work_fn work, rh_done_fn done,
                     void *arg)
{
    struct rh_pool *pool = r->w->srv->pool;
    int idx = pool ? rh_pool_group_find(pool, group) : -ENOENT;
    int ret = idx < 0 ? idx : submit(r, -1, (unsigned)idx, work, done, arg);
    return ret < 0 ? answer_refusal(r, ret, "no such group") : 0;
}

int rh_offload_lane(rh_req *r, const char *lane, rh_work_fn work, rh_done_fn done, void *arg)
{
    struct rh_pool *pool = r->w->srv->pool;
    int idx = pool ? rh_pool_lane_find(pool, lane) : -ENOENT;
    int ret = idx < 0 ? idx : submit(r, idx, 0, work, done, arg);
    return ret < 0 ? answer_refusal(r, ret, "no such lane") : 0;
}

/* The connection is gone under an offloaded request: a task not yet started is dropped. */
void app_offload_cancel(struct rh_req *r)
{
    if (r->offload)
        rh_task_cancel(&((struct offload *)r->offload)->task);
}

/* ---- blocking routes ---- */

struct blocking_route {
    rh_handler_fn fn;
    void *udata;
    char lane[32];
    char *group; /* owned; the shared pool's group when lane is empty */
    unsigned group_idx; /* resolved at start */
};

static void blocking_work(rh_req *r, void *arg)
{
    struct blocking_route *b = arg;
    b->fn(r, b->udata);
}

/* Called by rh_respond on the pool thread: keep the answer for the ring. */
int app_offload_capture(struct rh_req *r, int status, const char *ctype, const void *body,
                    size_t len)
{
    if (r->captured)
        return -EALREADY;
    struct captured *c = mi_malloc(sizeof(*c) + len); /* owner: the request, until sent */
    if (!c)
        return -ENOMEM;
    c->status = status;
    c->has_ctype = ctype != NULL;
    if (ctype)
        snprintf(c->ctype, sizeof(c->ctype), "%s", ctype);
    c->len = len;
    if (len)
        memcpy(c->body, body, len);
    r->captured = c;
    return 0;
}

void app_offload_replay(struct rh_req *r)
{
    struct captured *c = r->captured;
    if (!c)
        return;
    r->captured = NULL;
    rh_respond(r, c->status, c->has_ctype ? c->ctype : NULL, c->body, c->len);
    mi_free(c);
}

static void blocking_done(rh_req *r, int status, void *arg)
{
    if (status == 0 && !rh_resp_started(r))
        rh_respond_error(r, 500, "handler gave no answer");
}

static void blocking_entry(rh_req *r, void *udata)
{
    struct blocking_route *b = udata;
    if (b->lane[0]) {
        rh_offload_lane(r, b->lane, blocking_work, blocking_done, b);
        return;
    }
    int ret = submit(r, -1, b->group_idx, blocking_work, blocking_done, b);
    if (ret < 0)
        answer_refusal(r, ret, NULL);
}

static int blocking_add(rh_server *srv, const char *method, const char *pattern,
                        rh_handler_fn fn, void *udata, const char *lane, const char *group)
{
    if (srv->threads_live)
        return -EBUSY;
    if (srv->nblocking >= RH_MAX_BLOCKING_ROUTES || (lane && strlen(lane) >= 32))
        return -ENOSPC;
    struct blocking_route *b = mi_zalloc(sizeof(*b)); /* owner: srv, freed with it */
    if (!b)
        return -ENOMEM;
    b->fn = fn;
    b->udata = udata;
    if (lane)
        snprintf(b->lane, sizeof(b->lane), "%s", lane);
    b->group = mi_strdup(group ? group : pattern ? pattern : "");
    int ret = b->group ? app_router_add(srv->routes, method, pattern, blocking_entry, b, true)
                       : -ENOMEM;
    if (ret < 0) {
        mi_free(b->group);
        mi_free(b);
        return ret;
    }
    srv->blocking[srv->nblocking++] = b;
    return 0;
}

int rh_route_blocking(rh_server *srv, const char *method, const char *pattern,
                      rh_handler_fn fn, void *udata, const char *lane)
{
    return blocking_add(srv, method, pattern, fn, udata, lane, NULL);
}

int rh_route_blocking_group(rh_server *srv, const char *method, const char *pattern,
                            rh_handler_fn fn, void *udata, const char *group)
{
    if (group && (!group[0] || strcmp(group, "default") == 0))
        return -EINVAL;
    return blocking_add(srv, method, pattern, fn, udata, NULL, group);
}

static struct rh_pool_group_config *group_get(rh_server *srv, const char *name)
{
    for (unsigned i = 0; i < srv->ngroups; i++)
        if (strcmp(srv->groups[i].name, name) == 0)
            return &srv->groups[i];
    return NULL;
}

/* The group's entry, added with the defaults if new; NULL when full or out of memory. */
static struct rh_pool_group_config *group_add(rh_server *srv, const char *name)
{
    struct rh_pool_group_config *g = group_get(srv, name);
    if (g || srv->ngroups >= RH_MAX_GROUPS)
        return g;
    char *copy = mi_strdup(name); /* owner: srv, freed in app_offload_free */
    if (!copy)
        return NULL;
    g = &srv->groups[srv->ngroups++];
    *g = (struct rh_pool_group_config){.name = copy};
    return g;
}

int rh_pool_group(rh_server *srv, const char *name, unsigned max_threads, unsigned queue_cap)
{
    if (srv->threads_live)
        return -EBUSY;
    if (!name || !name[0] || strcmp(name, "default") == 0)
        return -EINVAL;
    struct rh_pool_group_config *g = group_add(srv, name);
    if (!g)
        return -ENOSPC;
    g->max_threads = max_threads;
    g->queue_cap = queue_cap;
    return 0;
}

int rh_lane_declare(rh_server *srv, const char *name, unsigned queue_cap)
{
    if (srv->threads_live)
        return -EBUSY;
    if (srv->nlanes >= RH_MAX_LANES || !name || !name[0])
        return -ENOSPC;
    for (unsigned i = 0; i < srv->nlanes; i++)
        if (strcmp(srv->lanes[i].name, name) == 0)
            return -EEXIST;
    srv->lanes[srv->nlanes].name = mi_strdup(name);
    srv->lanes[srv->nlanes].queue_cap = queue_cap;
    srv->nlanes++;
    return 0;
}

/* ---- life cycle ---- */

static void deliver(void *owner, struct rh_msg *msg) { rh_loop_post(owner, msg); }
static void post_quiet(void *owner, struct rh_msg *msg) { rh_loop_post_quiet(owner, msg); }
static void wake(void *owner) { rh_loop_wake(owner); }

/* The ring's end of a burst (conn_flush_dirty, before it submits and waits): the pool threads
 * this iteration's offloads need are woken now, once each. */
void app_offload_flush(void)
{
    rh_pool_flush_wakes();
}

/* Every blocking route on the shared pool gets its group (declared or not), and learns the
 * group's index, so a request never looks a group up by name. */
static int blocking_groups(rh_server *srv)
{
    for (unsigned i = 0; i < srv->nblocking; i++) {
        struct blocking_route *b = srv->blocking[i];
        if (!b->lane[0] && b->group[0] && strcmp(b->group, "default") != 0 &&
            !group_add(srv, b->group))
            return -ENOSPC;
    }
    return 0;
}

static void blocking_resolve(rh_server *srv)
{
    for (unsigned i = 0; i < srv->nblocking; i++) {
        int idx = rh_pool_group_find(srv->pool, srv->blocking[i]->group);
        srv->blocking[i]->group_idx = idx < 0 ? 0 : (unsigned)idx;
    }
}

int app_offload_start(rh_server *srv)
{
    int ret = blocking_groups(srv);
    if (ret < 0)
        return ret;
    const rh_config *c = &srv->cfg;
    struct rh_pool_config pc = {
        .threads = c->pool_threads,
        .queue_cap = c->pool_queue,
        .timeout_ms = c->pool_timeout_ms,
        .lanes = srv->lanes,
        .nlanes = srv->nlanes,
        .groups = srv->groups,
        .ngroups = srv->ngroups,
        .group_share_pct = c->pool_group_share > 100 ? 100 : c->pool_group_share,
        .shed_target_ms = c->pool_shed_target_ms,
        .shed_interval_ms = c->pool_shed_interval_ms,
        .spin_us = c->pool_spin_us,
        .deliver = deliver,
        .post = post_quiet,
        .wake = wake,
    };
    ret = rh_pool_new(&pc, &srv->pool);
    if (ret == 0) {
        blocking_resolve(srv);
        app_lanes_start(srv); /* lane start hooks, first in their lanes' queues */
    }
    return ret;
}

/* After the rings stopped: the pool runs what is queued, delivering into the rings' inboxes
 * (still valid memory, their eventfds still open); then those deliveries are run here, on
 * this thread, where every request is an orphan whose answer is dropped. */
struct pool_closer {
    struct rh_pool *pool;
    atomic_bool done;
};

static void *close_pool(void *arg)
{
    struct pool_closer *pc = arg;
    rh_pool_free(pc->pool);
    atomic_store_explicit(&pc->done, true, memory_order_release);
    return NULL;
}

static void drain_inboxes(rh_server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        rh_loop_drain_inbox(&srv->workers[i].loop);
}

/* While the pool finishes on its own thread, this thread stands in for the stopped rings:
 * it runs what they are sent, including rh_call_on_ring, which would otherwise wait for a
 * ring that will never run again. */
void app_offload_stop(rh_server *srv)
{
    if (!srv->pool)
        return;
    app_lanes_stop(srv); /* lane stop hooks, last in their lanes' queues */
    struct pool_closer pc = {.pool = srv->pool};
    pthread_t t;
    if (pthread_create(&t, NULL, close_pool, &pc) != 0) {
        close_pool(&pc); /* no thread to spare: no ring call can be served then */
    } else {
        while (!atomic_load_explicit(&pc.done, memory_order_acquire)) {
            drain_inboxes(srv);
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        pthread_join(t, NULL);
    }
    srv->pool = NULL;
    drain_inboxes(srv);
}

void app_offload_free(rh_server *srv)
{
    for (unsigned i = 0; i < srv->nblocking; i++) {
        mi_free(srv->blocking[i]->group);
        mi_free(srv->blocking[i]);
    }
    for (unsigned i = 0; i < srv->ngroups; i++)
        mi_free((char *)srv->groups[i].name);
    for (unsigned i = 0; i < srv->nlanes; i++)
        mi_free((char *)srv->lanes[i].name);
}

void app_offload_worker_free(struct rh_worker *w)
{
    struct offload *o;
    while ((o = RH_FREELIST_POP(w->free_offloads, next_free)))
        mi_free(o);
}

static void render_one(char *buf, size_t *len, size_t cap, const char *label,
                       const struct rh_pool_stats *s)
{
    int n = snprintf(buf + *len, cap - *len,
                     "ringhttp_pool_queued{%s} %llu\nringhttp_pool_running{%s} %llu\n"
                     "ringhttp_pool_completed_total{%s} %llu\n"
                     "ringhttp_pool_rejected_total{%s} %llu\n"
                     "ringhttp_pool_expired_total{%s} %llu\n"
                     "ringhttp_pool_cancelled_total{%s} %llu\n"
                     "ringhttp_pool_shed_total{%s} %llu\n",
                     label, (unsigned long long)s->queued, label, (unsigned long long)s->running,
                     label, (unsigned long long)s->completed, label,
                     (unsigned long long)s->rejected, label, (unsigned long long)s->expired,
                     label, (unsigned long long)s->cancelled, label,
                     (unsigned long long)s->shed);
    if (n > 0 && (size_t)n < cap - *len)
        *len += (size_t)n;
}

/* A group's queue and threads, and what its waits cost: wait_seconds_total over
 * dequeued_total is the mean time in the queue. */
static void render_group(char *buf, size_t *len, size_t cap, const char *name,
                         const struct rh_pool_stats *s)
{
    int n = snprintf(buf + *len, cap - *len,
                     "ringhttp_pool_group_queued{group=\"%s\"} %llu\n"
                     "ringhttp_pool_group_in_flight{group=\"%s\"} %llu\n"
                     "ringhttp_pool_group_max_threads{group=\"%s\"} %llu\n"
                     "ringhttp_pool_group_completed_total{group=\"%s\"} %llu\n"
                     "ringhttp_pool_group_rejected_total{group=\"%s\"} %llu\n"
                     "ringhttp_pool_group_shed_total{group=\"%s\"} %llu\n"
                     "ringhttp_pool_group_dequeued_total{group=\"%s\"} %llu\n"
                     "ringhttp_pool_group_wait_seconds_total{group=\"%s\"} %.6f\n",
                     name, (unsigned long long)s->queued, name, (unsigned long long)s->running,
                     name, (unsigned long long)s->max_threads, name,
                     (unsigned long long)s->completed, name, (unsigned long long)s->rejected,
                     name, (unsigned long long)s->shed, name, (unsigned long long)s->dequeued,
                     name, (double)s->wait_ns / 1e9);
    if (n > 0 && (size_t)n < cap - *len)
        *len += (size_t)n;
}

void app_metrics_render_pool(const rh_server *srv, char *buf, size_t *len, size_t cap)
{
    if (!srv->pool)
        return;
    struct rh_pool_stats g;
    for (unsigned i = 0; i < rh_pool_group_count(srv->pool); i++) {
        rh_pool_get_group_stats(srv->pool, i, &g);
        render_group(buf, len, cap, rh_pool_group_name(srv->pool, i), &g);
    }
    struct rh_pool_stats s;
    rh_pool_get_stats(srv->pool, -1, &s);
    render_one(buf, len, cap, "lane=\"\"", &s);
    for (unsigned i = 0; i < rh_pool_lane_count(srv->pool); i++) {
        char label[64];
        snprintf(label, sizeof(label), "lane=\"%s\"", rh_pool_lane_name(srv->pool, i));
        rh_pool_get_stats(srv->pool, (int)i, &s);
        render_one(buf, len, cap, label, &s);
    }
}
