/* The per-ring open-file cache of static files: a hash table of open fds with their statx
 * validators, an LRU bounded by the mounts' cache_entries, and references that keep an
 * evicted entry's fd open until the last transfer using it lets go. Touched only on the
 * ring's thread; every close goes through the ring. */
#include <mimalloc.h>
#include <unistd.h>

#include "static/static_priv.h"

/* ---- small helpers ---- */

static size_t fmt_hex(char *out, uint64_t v)
{
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

void static_close_fd(struct static_ring *sr, int fd)
{
    if (fd < 0)
        return;
    if (sr->stopping) {
        close(fd);
        return;
    }
    struct io_uring_sqe *sqe = rh_loop_sqe(&sr->w->loop);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_IGNORE, 0, 0));
    sr->w->loop.inflight++;
}

/* ---- the open-file cache ---- */

static uint32_t key_hash(const struct static_mount *m, const char *path, size_t len)
{
    uint32_t h = 2166136261u ^ (uint32_t)(uintptr_t)m;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)path[i]) * 16777619u;
    return h;
}

struct fentry *static_cache_find(struct static_ring *sr, const struct static_mount *m,
                           const char *path, size_t len)
{
    uint32_t h = key_hash(m, path, len);
    for (struct fentry *e = sr->buckets[h & (sr->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->m == m && e->path_len == len && memcmp(e->path, path, len) == 0)
            return e;
    return NULL;
}

static void lru_remove(struct static_ring *sr, struct fentry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        sr->lru_first = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        sr->lru_last = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct static_ring *sr, struct fentry *e)
{
    e->lru_prev = NULL;
    e->lru_next = sr->lru_first;
    if (sr->lru_first)
        sr->lru_first->lru_prev = e;
    sr->lru_first = e;
    if (!sr->lru_last)
        sr->lru_last = e;
}

void static_cache_touch(struct static_ring *sr, struct fentry *e)
{
    lru_remove(sr, e);
    lru_push_front(sr, e);
}

static void entry_free(struct static_ring *sr, struct fentry *e)
{
    static_close_fd(sr, e->fd);
    mi_free(e->data);
    mi_free(e);
}

/* Takes e out of the table; it lives on while transfers hold references. */
void static_cache_unlink(struct static_ring *sr, struct fentry *e)
{
    if (!e->linked)
        return;
    struct fentry **pp = &sr->buckets[e->hash & (sr->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_remove(sr, e);
    e->linked = false;
    sr->count--;
    if (e->refs == 0)
        entry_free(sr, e);
}

struct fentry *static_fentry_get(struct fentry *e)
{
    e->refs++;
    return e;
}

void static_fentry_put(struct static_ring *sr, struct fentry *e)
{
    if (--e->refs == 0 && !e->linked)
        entry_free(sr, e);
}

bool static_fentry_same_file(const struct fentry *e, const struct statx *st)
{
    return e->ino == st->stx_ino && e->dev_major == st->stx_dev_major &&
           e->dev_minor == st->stx_dev_minor && e->size == st->stx_size &&
           e->mtime == st->stx_mtime.tv_sec && e->mtime_nsec == st->stx_mtime.tv_nsec;
}

/* The validators and their header lines, made once per entry, not per request. */
static void entry_describe(struct fentry *e)
{
    char *p = e->etag;
    *p++ = '"';
    p += fmt_hex(p, e->ino);
    *p++ = '-';
    p += fmt_hex(p, e->size);
    *p++ = '-';
    p += fmt_hex(p, (uint64_t)e->mtime * 1000000000u + e->mtime_nsec);
    *p++ = '"';
    e->etag_len = (uint8_t)(p - e->etag);
    p = PUT_LIT(e->hdrs, "Last-Modified: ");
    static_http_date(e->mtime, p);
    p += 29;
    p = PUT_LIT(p, "\r\nETag: ");
    memcpy(p, e->etag, e->etag_len);
    p += e->etag_len;
    p = PUT_LIT(p, "\r\nAccept-Ranges: bytes\r\n");
    e->hdrs_len = (uint16_t)(p - e->hdrs);
    e->ctype = static_mime_type(e->path, e->path_len);
}

/* Makes an entry of the file x opened (x->fd, x->stx) and links it, replacing one of the same
 * key (a concurrent miss for the same file) and evicting from the LRU end past the cap. NULL
 * if out of memory (x keeps its fd). */
struct fentry *static_cache_insert(struct static_ring *sr, struct static_xfer *x)
{
    struct fentry *e = mi_zalloc(sizeof(*e) + x->path_len + 1); /* owner: the cache, then
                                                                   its last user */
    if (!e)
        return NULL;
    e->m = x->m;
    e->fd = x->fd;
    x->fd = -1;
    e->hash = key_hash(x->m, x->path, x->path_len);
    e->checked_ms = sr->w->loop.now_ms;
    e->size = x->stx.stx_size;
    e->ino = x->stx.stx_ino;
    e->dev_major = x->stx.stx_dev_major;
    e->dev_minor = x->stx.stx_dev_minor;
    e->mtime = x->stx.stx_mtime.tv_sec;
    e->mtime_nsec = x->stx.stx_mtime.tv_nsec;
    e->path_len = x->path_len;
    memcpy(e->path, x->path, x->path_len);
    entry_describe(e);
    struct fentry *old = static_cache_find(sr, x->m, x->path, x->path_len);
    if (old)
        static_cache_unlink(sr, old);
    struct fentry **bucket = &sr->buckets[e->hash & (sr->nbuckets - 1)];
    e->hnext = *bucket;
    *bucket = e;
    lru_push_front(sr, e);
    e->linked = true;
    sr->count++;
    while (sr->count > sr->cap)
        static_cache_unlink(sr, sr->lru_last);
    return e;
}
