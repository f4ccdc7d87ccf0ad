/* Static files: the mounts (rh_static_route, rh_static_serve): checking a mount's prefix and
 * options, opening its root once at set-up time, the routes that lead to the handler
 * (static.c), and freeing the mounts with the server. */
#include <errno.h>
#include <mimalloc.h>
#include <signal.h>
#include <unistd.h>

#include "static/static_priv.h"

static void on_static_route(rh_req *r, void *udata) { static_handle(r, udata); }

void rh_static_options_init(rh_static_options *opt)
{
    memset(opt, 0, sizeof(*opt));
}

static bool header_value_ok(const char *v)
{
    for (; *v; v++)
        if (*v == '\r' || *v == '\n')
            return false;
    return true;
}

static void mount_free(struct static_mount *m)
{
    if (m->root_fd >= 0)
        close(m->root_fd);
    mi_free(m->prefix);
    mi_free(m->index);
    mi_free(m->cc_line);
    mi_free(m);
}

void static_free(rh_server *srv)
{
    while (srv->static_mounts) {
        struct static_mount *m = srv->static_mounts;
        srv->static_mounts = m->next;
        mount_free(m);
    }
}

/* "/" -> "", "/a/b/" -> "/a/b". Segments must be plain: the router matches them raw. */
static int mount_prefix(const char *prefix, char **out)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0 || prefix[0] != '/')
        return -EINVAL;
    while (n > 1 && prefix[n - 1] == '/')
        n--;
    if (n == 1)
        n = 0;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*:?#%\\", prefix[i]) || (prefix[i] == '/' && i + 1 < n && prefix[i + 1] == '/'))
            return -EINVAL;
    }
    *out = mi_strndup(prefix, n);
    return *out ? 0 : -ENOMEM;
}

static int mount_options(struct static_mount *m, const rh_static_options *opt)
{
    const char *index = opt && opt->index ? opt->index : "index.html";
    if (!*index || strchr(index, '/') || strcmp(index, ".") == 0 || strcmp(index, "..") == 0 ||
        strlen(index) > 255)
        return -EINVAL;
    m->index = mi_strdup(index);
    m->index_len = strlen(index);
    const char *cc = opt ? opt->cache_control : NULL;
    if (cc && *cc) {
        if (!header_value_ok(cc) || strlen(cc) > 512)
            return -EINVAL;
        size_t n = strlen(cc);
        m->cc_line = mi_malloc(n + 18); /* owner: the mount */
        if (!m->cc_line)
            return -ENOMEM;
        memcpy(m->cc_line, "Cache-Control: ", 15);
        memcpy(m->cc_line + 15, cc, n);
        memcpy(m->cc_line + 15 + n, "\r\n", 2);
        m->cc_len = n + 17;
    }
    m->resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    if (opt && opt->no_symlinks)
        m->resolve |= RESOLVE_NO_SYMLINKS;
    m->hidden = opt && opt->serve_hidden;
    m->cache_entries = opt && opt->cache_entries ? opt->cache_entries : 256;
    m->valid_ms = opt && opt->cache_valid_ms ? opt->cache_valid_ms : 1000;
    m->splice_min = opt && opt->splice_min ? opt->splice_min : DEFAULT_SPLICE_MIN;
    m->no_sendfile = opt && opt->no_sendfile;
    return m->index ? 0 : -ENOMEM;
}

static int mount_routes(rh_server *srv, struct static_mount *m)
{
    char pattern[1100];
    if (m->prefix_len + 3 > sizeof(pattern))
        return -EINVAL;
    memcpy(pattern, m->prefix, m->prefix_len);
    memcpy(pattern + m->prefix_len, "/*", 3);
    int ret = rh_route(srv, "*", pattern, on_static_route, m);
    if (ret == 0 && m->prefix_len) /* "/assets" itself, redirected to "/assets/" */
        ret = rh_route(srv, "*", m->prefix, on_static_route, m);
    return ret;
}

int rh_static_route(rh_server *srv, const char *prefix, const char *root_dir,
                    const rh_static_options *opt)
{
    if (srv->threads_live)
        return -EBUSY;
    if (!root_dir)
        return -EINVAL;
    struct static_mount *m = mi_zalloc(sizeof(*m)); /* owner: srv, until rh_server_free */
    if (!m)
        return -ENOMEM;
    m->root_fd = -1;
    int ret = mount_prefix(prefix, &m->prefix);
    if (ret == 0) {
        m->prefix_len = strlen(m->prefix);
        ret = mount_options(m, opt);
    }
    if (ret == 0) { /* set-up time, not the ring: a blocking open is fine here */
        m->root_fd = open(root_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        ret = m->root_fd < 0 ? -errno : 0;
    }
    if (ret == 0)
        ret = mount_routes(srv, m);
    if (ret < 0) {
        mount_free(m);
        return ret;
    }
    m->next = srv->static_mounts;
    srv->static_mounts = m;
    /* A splice to a socket the peer closed raises SIGPIPE (it cannot take MSG_NOSIGNAL). */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    return 0;
}

int rh_static_serve(rh_req *r, const char *prefix)
{
    size_t n = prefix ? strlen(prefix) : 0;
    while (n > 0 && prefix[n - 1] == '/')
        n--;
    for (const struct static_mount *m = r->w->srv->static_mounts; m; m = m->next) {
        if (m->prefix_len == n && memcmp(m->prefix, prefix, n) == 0) {
            static_handle(r, m);
            return 0;
        }
    }
    return -ENOENT;
}
