/* A worker and connection with no ring behind them, so the real data path (conn_process ->
 * llhttp -> request -> router -> handler -> response writer) runs in a unit test: input goes
 * in with conn_feed, output is read from c->pbuf. Only paths that would submit to the ring
 * (send, close) are out of reach, which is what the integration tests cover. */
#ifndef RH_TESTS_FAKE_CONN_H
#define RH_TESTS_FAKE_CONN_H

#include <mimalloc.h>
#include <string.h>

#include "base/freelist.h"
#include "app/app.h"
#include "conn/conn.h"
#include "http1/http1.h"
#include "server/srv.h"

struct fake {
    rh_server srv;
    struct rh_worker w;
    struct rh_conn c;
};

static inline void fake_init(struct fake *f, void (*tweak)(rh_config *cfg))
{
    memset(f, 0, sizeof(*f));
    rh_config_init(&f->srv.cfg);
    if (tweak)
        tweak(&f->srv.cfg);
    f->srv.routes = app_router_new();
    srv_wire(&f->srv);
    f->w.srv = &f->srv;
    f->w.loop.owner = &f->w;
    rh_wheel_init(&f->w.loop.wheel, 0);
    h1_refresh_date(&f->w);
    f->c.w = &f->w;
    f->c.fd = 1000;
    f->c.gen = 1;
    f->c.held_head = f->c.held_tail = RH_NO_BUF;
    h1_input_open(&f->c);
}

static inline void fake_free(struct fake *f)
{
    if (f->c.req)
        h1_req_end(f->c.req);
    mi_free(f->c.in);
    conn_obuf_release(&f->w, &f->c.pbuf);
    conn_obuf_release(&f->w, &f->c.wbuf);
    struct rh_req *r;
    while ((r = RH_FREELIST_POP(f->w.free_reqs, next_free)))
        mi_free(r);
    while (f->w.free_in) {
        char *b = f->w.free_in;
        f->w.free_in = *(char **)b;
        mi_free(b);
    }
    while (f->w.free_out) {
        char *b = f->w.free_out;
        f->w.free_out = *(char **)b;
        mi_free(b);
    }
    app_router_free(f->srv.routes);
}

static inline void fake_feed(struct fake *f, const char *s, size_t n)
{
    conn_feed(&f->c, s, (uint32_t)n);
}
#define FEED(f, lit) fake_feed(f, lit, sizeof(lit) - 1)

/* The output so far as a NUL-terminated string (the test owns nothing: it points into pbuf). */
static inline const char *fake_out(struct fake *f)
{
    char *p = conn_obuf_reserve(&f->w, &f->c.pbuf, 1);
    p[0] = 0;
    return f->c.pbuf.data;
}

static inline int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

#endif
