/* The router: a trie of path segments. A node has static children (matched first), at most
 * one parameter child (":name") and at most one prefix route ("*"). Matching backtracks so
 * the most specific route wins. Built before start, read-only while serving. */
#include <errno.h>
#include <mimalloc.h>
#include <stdio.h>
#include <string.h>

#include "app/app.h"

struct rh_route_node {
    char *seg; /* static segment text, or the parameter's name */
    size_t seg_len;
    struct rh_route_node **children;
    unsigned nchildren;
    struct rh_route_node *param; /* ":name" child */
    struct rh_route_entry *entries;  /* routes ending here */
    struct rh_route_entry *wildcard; /* routes whose last segment is "*" */
};

static struct rh_route_node *node_new(const char *seg, size_t len)
{
    struct rh_route_node *n = mi_zalloc(sizeof(*n)); /* owner: the router, until app_router_free */
    if (n) {
        n->seg = mi_strndup(seg, len);
        n->seg_len = len;
    }
    return n;
}

struct rh_route_node *app_router_new(void) { return node_new("", 0); }

static void entries_free(struct rh_route_entry *e)
{
    while (e) {
        struct rh_route_entry *next = e->next;
        mi_free(e);
        e = next;
    }
}

void app_router_free(struct rh_route_node *n)
{
    if (!n)
        return;
    for (unsigned i = 0; i < n->nchildren; i++)
        app_router_free(n->children[i]);
    app_router_free(n->param);
    entries_free(n->entries);
    entries_free(n->wildcard);
    mi_free(n->children);
    mi_free(n->seg);
    mi_free(n);
}

static struct rh_route_node *child_static(struct rh_route_node *n, const char *s, size_t len)
{
    for (unsigned i = 0; i < n->nchildren; i++)
        if (n->children[i]->seg_len == len && memcmp(n->children[i]->seg, s, len) == 0)
            return n->children[i];
    struct rh_route_node *c = node_new(s, len);
    struct rh_route_node **nc = mi_realloc(n->children, sizeof(*nc) * (n->nchildren + 1));
    if (!c || !nc) {
        app_router_free(c);
        return NULL;
    }
    n->children = nc;
    n->children[n->nchildren++] = c;
    return c;
}

static struct rh_route_node *child_param(struct rh_route_node *n, const char *name, size_t len)
{
    if (!n->param)
        n->param = node_new(name, len);
    else if (n->param->seg_len != len || memcmp(n->param->seg, name, len) != 0)
        return NULL; /* one parameter name per position keeps matching unambiguous */
    return n->param;
}

static int add_entry(struct rh_route_entry **list, const char *method, rh_handler_fn fn,
                     void *udata, bool blocking)
{
    for (struct rh_route_entry *e = *list; e; e = e->next)
        if (strcmp(e->method, method) == 0)
            return -EEXIST;
    struct rh_route_entry *e = mi_zalloc(sizeof(*e)); /* owner: the router */
    if (!e)
        return -ENOMEM;
    snprintf(e->method, sizeof(e->method), "%s", method);
    e->h.fn = fn;
    e->h.udata = udata;
    e->blocking = blocking;
    e->next = *list;
    *list = e;
    return 0;
}

int app_router_add(struct rh_route_node *root, const char *method, const char *pattern,
               rh_handler_fn fn, void *udata, bool blocking)
{
    if (!pattern || pattern[0] != '/' || !method || strlen(method) >= 16 || !fn)
        return -EINVAL;
    struct rh_route_node *n = root;
    const char *p = pattern + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 1 && p[0] == '*' && !slash)
            return add_entry(&n->wildcard, method, fn, udata, blocking);
        if (len > 1 && p[0] == ':')
            n = child_param(n, p + 1, len - 1);
        else
            n = child_static(n, p, len);
        if (!n)
            return -EINVAL;
        if (!slash)
            return add_entry(&n->entries, method, fn, udata, blocking);
        p = slash + 1;
    }
}

/* ---- matching ---- */

static const struct rh_route_entry *pick(const struct rh_route_entry *list, const char *m,
                                         size_t mlen, bool head)
{
    const struct rh_route_entry *any = NULL, *get = NULL;
    for (const struct rh_route_entry *e = list; e; e = e->next) {
        if (strlen(e->method) == mlen && memcmp(e->method, m, mlen) == 0)
            return e;
        if (e->method[0] == '*')
            any = e;
        else if (head && strcmp(e->method, "GET") == 0)
            get = e;
    }
    return get ? get : any;
}

struct match {
    const char *path, *path_end;
    const struct rh_route_entry *list; /* the routes of the matched node */
    struct route_match *out;           /* the parameters go here */
};

static void push_param(struct match *m, const char *name, const char *at, size_t len)
{
    struct route_match *o = m->out;
    if (o->nparams < RH_MAX_PARAMS) {
        o->params[o->nparams].name = name;
        o->params[o->nparams].off = (uint32_t)(at - m->path);
        o->params[o->nparams].len = (uint32_t)len;
        o->nparams++;
    }
}

/* s points just after a '/'; finds the most specific node for the rest. */
static bool walk(const struct rh_route_node *n, const char *s, struct match *m)
{
    const char *slash = memchr(s, '/', (size_t)(m->path_end - s));
    const char *seg_end = slash ? slash : m->path_end;
    size_t len = (size_t)(seg_end - s);
    uint8_t saved = m->out->nparams;
    for (unsigned i = 0; i < n->nchildren; i++) {
        const struct rh_route_node *c = n->children[i];
        if (c->seg_len == len && memcmp(c->seg, s, len) == 0) {
            if (!slash ? (m->list = c->entries) != NULL : walk(c, slash + 1, m))
                return true;
        }
    }
    if (n->param && len > 0) {
        push_param(m, n->param->seg, s, len);
        if (!slash ? (m->list = n->param->entries) != NULL : walk(n->param, slash + 1, m))
            return true;
        m->out->nparams = saved;
    }
    if (n->wildcard) {
        push_param(m, "*", s, (size_t)(m->path_end - s));
        m->list = n->wildcard;
        return true;
    }
    return false;
}

static void list_methods(const struct rh_route_entry *list, char *out, size_t out_len)
{
    size_t n = 0;
    out[0] = 0;
    for (const struct rh_route_entry *e = list; e; e = e->next) {
        int w = snprintf(out + n, out_len - n, "%s%s", n ? ", " : "", e->method);
        if (w < 0 || (size_t)w >= out_len - n)
            break;
        n += (size_t)w;
    }
}

int app_router_match(const struct rh_route_node *root, rh_str method, bool head, rh_str path,
                 struct route_match *out, char *allowed, size_t allowed_len)
{
    struct match m = {.path = path.ptr, .path_end = path.ptr + path.len, .out = out};
    out->entry = NULL;
    out->nparams = 0;
    if (path.len == 0 || path.ptr[0] != '/' || !walk(root, path.ptr + 1, &m))
        return 404;
    out->entry = pick(m.list, method.ptr, method.len, head);
    if (!out->entry) {
        list_methods(m.list, allowed, allowed_len);
        return 405;
    }
    return 0;
}

/* The public registration (include/ringhttp.h): before the rings start only. */
int rh_route(rh_server *srv, const char *method, const char *pattern, rh_handler_fn fn,
             void *udata)
{
    if (srv->threads_live)
        return -EBUSY;
    return app_router_add(srv->routes, method, pattern, fn, udata, false);
}
