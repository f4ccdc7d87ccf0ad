/* uring/timer: a hashed timing wheel, one per ring. Connections embed an rh_timer, so arming
 * and cancelling are O(1) pointer updates with no allocation; the ring drives the wheel with
 * a single timeout op (see loop.c), never one timeout op per connection.
 *
 * Resolution is RH_WHEEL_TICK_MS; an expiry further away than one revolution stays in its
 * slot and is skipped until its time comes. Called only on the owning ring's thread. */
#ifndef RH_URING_TIMER_H
#define RH_URING_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define RH_WHEEL_SLOTS 256u /* power of two */
#define RH_WHEEL_TICK_MS 25u

struct rh_timer {
    struct rh_timer *next, *prev; /* NULL when not armed */
    uint64_t expires_ms;
    void (*fn)(struct rh_timer *t); /* runs on expiry; the timer is disarmed first */
};

struct rh_wheel {
    struct rh_timer slots[RH_WHEEL_SLOTS]; /* circular list heads */
    uint64_t tick;                          /* last tick processed */
    unsigned count;                         /* armed timers */
};

void rh_wheel_init(struct rh_wheel *w, uint64_t now_ms);
/* Arms (or re-arms) t to fire at expires_ms. */
void rh_timer_arm(struct rh_wheel *w, struct rh_timer *t, uint64_t expires_ms);
void rh_timer_cancel(struct rh_wheel *w, struct rh_timer *t);
static inline bool rh_timer_armed(const struct rh_timer *t) { return t->next != 0; }
/* Fires every timer due at now_ms; returns how many fired. */
unsigned rh_wheel_advance(struct rh_wheel *w, uint64_t now_ms);

#endif
