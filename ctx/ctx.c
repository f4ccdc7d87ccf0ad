/* Context slots: the key registry, set/get/release, and the thread's current context. */
#include "ctx/ctx.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "include/ringhttp.h"

/* Written only by rh_ctx_key_new, before any server starts; read-only while serving. */
static struct {
    const char *name;
    rh_ctx_destroy_fn destroy;
} keys[RH_CTX_SLOTS];
static atomic_int nkeys;

/* The one piece of per-thread state outside a ring: which request this thread works for. */
static _Thread_local struct rh_ctx *current;

rh_ctx_key rh_ctx_key_new(const char *name, void (*destroy)(void *value))
{
    int k = atomic_fetch_add(&nkeys, 1);
    if (k >= RH_CTX_SLOTS) {
        atomic_fetch_sub(&nkeys, 1);
        return -ENOSPC;
    }
    keys[k].name = name;
    keys[k].destroy = destroy;
    return k;
}

const char *ctx_key_name(int key)
{
    return key >= 0 && key < atomic_load(&nkeys) ? keys[key].name : "?";
}

static int key_ok(int key) { return key >= 0 && key < atomic_load(&nkeys); }

int ctx_slot_set(struct rh_ctx *c, int key, void *value)
{
    if (!key_ok(key))
        return -EINVAL;
    uint32_t bit = 1u << key;
    void *old = c->vals[key];
    if ((c->set & bit) && old != value && keys[key].destroy)
        keys[key].destroy(old); /* a replaced value is released now, not at request end */
    c->vals[key] = value;
    c->set = value ? c->set | bit : c->set & ~bit;
    return 0;
}

void *ctx_slot_get(const struct rh_ctx *c, int key)
{
    if (!key_ok(key) || !(c->set & (1u << key)))
        return NULL;
    return c->vals[key];
}

void ctx_release(struct rh_ctx *c)
{
    while (c->set) {
        int key = __builtin_ctz(c->set);
        c->set &= c->set - 1; /* cleared first: a destructor that sets again is not rerun */
        if (keys[key].destroy)
            keys[key].destroy(c->vals[key]);
    }
}

struct rh_ctx *ctx_enter(struct rh_ctx *c)
{
    struct rh_ctx *prev = current;
    current = c;
    return prev;
}

void ctx_leave(struct rh_ctx *prev) { current = prev; }

struct rh_ctx *ctx_current(void) { return current; }

static void no_context(const char *what)
{
#ifndef NDEBUG
    fprintf(stderr, "ringhttp: %s outside any request: no current context\n", what);
#else
    (void)what;
#endif
}

void *rh_ctx_get(rh_ctx_key key)
{
    if (!current) {
        no_context("rh_ctx_get");
        return NULL; /* never another request's value */
    }
    return ctx_slot_get(current, key);
}

int rh_ctx_set(rh_ctx_key key, void *value)
{
    if (!current) {
        no_context("rh_ctx_set");
        return -ESRCH;
    }
    return ctx_slot_set(current, key, value);
}
