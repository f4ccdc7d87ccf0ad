/* ctx/: per-request context slots, our ContextVar.
 *
 * Owns: the process-wide key registry (written before any server starts, read-only after,
 * like pthread_key_create), the slot array embedded in each request, and the thread's
 * "current context" pointer.
 *
 * A request's slots live inside the request, so they move with it across every thread hop:
 * the ring sets the current context before it runs a handler, a middleware or a done
 * callback; a pool thread sets it while it runs that request's work. Nothing is copied, so a
 * value set on one side is seen on the other. Destructors run exactly once, at request end.
 *
 * Never allocates on the request path; never touches a ring or the pool. */
#ifndef RH_CTX_CTX_H
#define RH_CTX_CTX_H

#include <stdint.h>

#define RH_CTX_SLOTS 32

struct rh_ctx {
    void *vals[RH_CTX_SLOTS];
    uint32_t set; /* bit i: slot i holds a value whose destructor must run */
};

/* Registry (public API: rh_ctx_key_new in ringhttp.h). */
typedef void (*rh_ctx_destroy_fn)(void *value);
const char *ctx_key_name(int key);

static inline void ctx_init(struct rh_ctx *c) { c->set = 0; }
/* Runs the destructor of every slot set, once, and empties the context. */
void ctx_release(struct rh_ctx *c);
int ctx_slot_set(struct rh_ctx *c, int key, void *value);
void *ctx_slot_get(const struct rh_ctx *c, int key);

/* The current context of this thread; returns the previous one so calls nest. */
struct rh_ctx *ctx_enter(struct rh_ctx *c);
void ctx_leave(struct rh_ctx *prev);
struct rh_ctx *ctx_current(void);

#endif
