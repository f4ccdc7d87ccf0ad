/* The timer wheel: see timer.h. */
#include "uring/timer.h"

#include <stddef.h>

static struct rh_timer *slot_for(struct rh_wheel *w, uint64_t expires_ms)
{
    /* Round up: the slot for tick T is visited once now >= T * TICK, so it is due then. */
    uint64_t tick = (expires_ms + RH_WHEEL_TICK_MS - 1) / RH_WHEEL_TICK_MS;
    if (tick <= w->tick)
        tick = w->tick + 1; /* already due: fire on the next advance */
    return &w->slots[tick & (RH_WHEEL_SLOTS - 1)];
}

void rh_wheel_init(struct rh_wheel *w, uint64_t now_ms)
{
    for (unsigned i = 0; i < RH_WHEEL_SLOTS; i++)
        w->slots[i].next = w->slots[i].prev = &w->slots[i];
    w->tick = now_ms / RH_WHEEL_TICK_MS;
    w->count = 0;
}

static void unlink_timer(struct rh_timer *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

void rh_timer_cancel(struct rh_wheel *w, struct rh_timer *t)
{
    if (!rh_timer_armed(t))
        return;
    unlink_timer(t);
    w->count--;
}

void rh_timer_arm(struct rh_wheel *w, struct rh_timer *t, uint64_t expires_ms)
{
    rh_timer_cancel(w, t);
    struct rh_timer *head = slot_for(w, expires_ms);
    t->expires_ms = expires_ms;
    t->prev = head->prev;
    t->next = head;
    head->prev->next = t;
    head->prev = t;
    w->count++;
}

/* Fires the due timers of one slot: first moves every due one to a local list (one pass
 * over the slot), then fires them in order. (Restarting the walk from the slot's head after
 * each firing cost O(not due) per timer fired: a wave of timeouts sharing slots with far
 * ones was quadratic.) A callback may arm or cancel any timer, including one still on the
 * local list: cancel unlinks it from there, arm moves it to its slot. */
static unsigned fire_slot(struct rh_wheel *w, struct rh_timer *head, uint64_t now_ms)
{
    struct rh_timer due = {.next = &due, .prev = &due};
    for (struct rh_timer *t = head->next, *next; t != head; t = next) {
        next = t->next;
        if (t->expires_ms > now_ms)
            continue;
        unlink_timer(t);
        t->prev = due.prev;
        t->next = &due;
        due.prev->next = t;
        due.prev = t;
    }
    unsigned fired = 0;
    while (due.next != &due) {
        struct rh_timer *t = due.next;
        unlink_timer(t);
        w->count--;
        fired++;
        t->fn(t);
    }
    return fired;
}

unsigned rh_wheel_advance(struct rh_wheel *w, uint64_t now_ms)
{
    uint64_t target = now_ms / RH_WHEEL_TICK_MS;
    unsigned fired = 0;
    if (target <= w->tick)
        return 0;
    /* After a long sleep, one revolution visits every slot once. */
    uint64_t from = target - w->tick > RH_WHEEL_SLOTS ? target - RH_WHEEL_SLOTS : w->tick;
    for (uint64_t tick = from + 1; tick <= target; tick++) {
        w->tick = tick;
        fired += fire_slot(w, &w->slots[tick & (RH_WHEEL_SLOTS - 1)], now_ms);
    }
    return fired;
}
