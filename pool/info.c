/* The pool's names and figures: lanes and groups by name, and the counters behind
 * /metrics (each read on its own, relaxed: a snapshot under load is approximate). */
#include <errno.h>
#include <string.h>

#include "pool/internal.h"

/* ---- lanes, groups and stats --------------------------------------------------------- */

int rh_pool_lane_find(const struct rh_pool *pool, const char *name)
{
    if (!name)
        return -ENOENT;
    for (unsigned i = 0; i < pool->nlanes; i++)
        if (strcmp(pool->crews[1 + i].name, name) == 0)
            return (int)i;
    return -ENOENT;
}

unsigned rh_pool_lane_count(const struct rh_pool *pool)
{
    return pool->nlanes;
}

const char *rh_pool_lane_name(const struct rh_pool *pool, unsigned lane)
{
    return lane < pool->nlanes ? pool->crews[1 + lane].name : NULL;
}

int rh_pool_group_find(const struct rh_pool *pool, const char *name)
{
    const struct crew *c = &pool->crews[0];
    for (unsigned i = 0; name && i < c->nbulkheads; i++)
        if (strcmp(c->bulkheads[i].name, name) == 0)
            return (int)i;
    return -ENOENT;
}

unsigned rh_pool_group_count(const struct rh_pool *pool)
{
    return pool->crews[0].nbulkheads;
}

const char *rh_pool_group_name(const struct rh_pool *pool, unsigned group)
{
    const struct crew *c = &pool->crews[0];
    return group < c->nbulkheads ? c->bulkheads[group].name : NULL;
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void stats_add(struct rh_pool_stats *out, struct bulkhead *b)
{
    out->queued += rh_mpmc_size(&b->queue);
    out->running += LOAD(b->running);
    out->completed += LOAD(b->completed);
    out->rejected += LOAD(b->rejected);
    out->expired += LOAD(b->expired);
    out->cancelled += LOAD(b->cancelled);
    out->shed += LOAD(b->shed);
    out->dequeued += LOAD(b->dequeued);
    out->wait_ns += LOAD(b->wait_ns);
    out->max_threads += b->max_running;
    out->shedding = out->shedding || LOAD(b->shedding);
}

void rh_pool_get_stats(const struct rh_pool *pool, int lane, struct rh_pool_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (lane >= 0 && (unsigned)lane >= pool->nlanes)
        return;
    struct crew *c = &pool->crews[lane < 0 ? 0 : 1 + lane];
    for (unsigned i = 0; i < c->nbulkheads; i++)
        stats_add(out, &c->bulkheads[i]);
    out->max_threads = out->max_threads < c->nthreads ? out->max_threads : c->nthreads;
}

void rh_pool_get_group_stats(const struct rh_pool *pool, unsigned group,
                             struct rh_pool_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (group < pool->crews[0].nbulkheads)
        stats_add(out, &pool->crews[0].bulkheads[group]);
}

