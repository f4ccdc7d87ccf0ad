/* static/'s private header: what static.c (mounts, handler, the steps before the
 * body), static_cache.c (the per-ring open-file cache) and static_xfer.c (transfers and
 * the body pump) share. Everything here is touched only on the owning ring's thread. */
#ifndef RH_SERVER_STATIC_PRIV_H
#define RH_SERVER_STATIC_PRIV_H

#include <assert.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fmt.h"
#include "conn/conn.h"
#include "http1/http1.h"
#include "static/static.h"

/* static/'s completion kind: every file op (openat2/statx/splice/read) of a transfer. */
enum static_op {
    STATIC_OP_FILE = CONN_OP_NEXT,
};

#ifndef RESOLVE_NO_MAGICLINKS /* liburing 2.3's compat header may predate these */
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#endif

#define STATIC_PATH_MAX 4352u      /* a max_uri path plus the index name */
#define COPY_MAX (16u * 1024u)     /* read whole, sent with the head, kept with the entry */
#define CHUNK_SIZE (64u * 1024u)   /* read/send: one buffer per transfer */
#ifndef PIPE_SIZE /* splice: asked of F_SETPIPE_SZ (pipe-max-size permitting) */
#define PIPE_SIZE (64u * 1024u)
#endif
#define SPARE_PIPES 16u
#define SPARE_CHUNKS 4u
#define DEFAULT_SPLICE_MIN (32u * 1024u) /* the measurements above */

struct static_mount {
    struct static_mount *next;
    char *prefix; /* "" for "/", else "/assets": no trailing '/' */
    size_t prefix_len;
    int root_fd;  /* O_PATH | O_DIRECTORY; shared read-only by every ring */
    char *index;
    size_t index_len;
    char *cc_line; /* "Cache-Control: ...\r\n" or NULL */
    size_t cc_len;
    uint64_t resolve;
    uint64_t splice_min;
    unsigned cache_entries, valid_ms;
    bool hidden;
    bool no_sendfile; /* the io-wq paths even for resident pages (tests, comparisons) */
};

/* An open file in a ring's cache. Owned by the cache while linked; once unlinked (evicted,
 * replaced, found stale) by its last user: the fd is closed when refs reaches 0, so a
 * transfer reading or splicing from it never sees it closed under it. */
struct fentry {
    struct fentry *hnext;
    struct fentry *lru_prev, *lru_next; /* most recently used first */
    const struct static_mount *m;
    uint32_t hash;
    int fd;
    unsigned refs;
    bool linked, revalidating;
    uint64_t checked_ms;
    uint64_t size, ino;
    uint32_t dev_major, dev_minor;
    int64_t mtime;
    uint32_t mtime_nsec;
    const char *ctype;
    char *data; /* the whole file, for files of at most COPY_MAX bytes once read (mi_malloc) */
    char etag[56]; /* '"' ino '-' size '-' mtime_ns '"' in hex: at most 52 */
    uint8_t etag_len;
    uint16_t hdrs_len;
    char hdrs[128]; /* "Last-Modified: <29>\r\nETag: <etag>\r\nAccept-Ranges: bytes\r\n" */
    uint32_t path_len;
    char path[]; /* the key: the normalised relative path */
};

enum step_kind {
    K_OPEN = 1, K_STATX, K_CHECK, K_PROBE, K_READ, K_SPLICE_IN, K_SPLICE_OUT, K_POLL, K_SEND,
};

/* M_SENDFILE: resident pages by sendfile(2) on the ring thread; a window found cold goes
 * through io-wq once (splice, or read/send below splice_min) and the next is checked again. */
enum body_mode { M_NONE, M_COPY, M_SEND, M_SPLICE, M_SENDFILE };

struct static_xfer {
    uint32_t idx, gen;
    struct static_xfer *next_free;
    struct static_ring *sr;
    struct rh_req *req;
    const struct static_mount *m;
    struct fentry *e; /* a reference, once the file is known */
    int fd;           /* opened by us, not (yet) the cache's; -1 */
    unsigned inflight;
    enum body_mode mode;
    bool dir, index_try, want_poll, failed, retried;
    bool cold;        /* M_SENDFILE: the current window goes through io-wq */
    int status;       /* of the response being prepared */
    const char *ctype;
    uint64_t off, left; /* the body: next file offset, bytes not yet taken from the file */
    uint32_t pipe_bytes, pipe_cap, splice_asked;
    uint32_t xhdr_mark; /* the request's extra headers before our validators went in */
    int pipe[2];
    struct rh_obuf block; /* M_COPY: the body as read */
    char *chunk;          /* M_SEND: CHUNK_SIZE */
    uint32_t chunk_len, chunk_sent;
    struct statx stx;
    struct open_how how;
    uint32_t path_len, dir_len; /* dir_len: the path without an appended index name */
    char path[STATIC_PATH_MAX];
};

struct spare_pipe {
    int fd[2];
    uint32_t cap;
};

/* One per ring (w->fstatic), touched only on that ring's thread. */
struct static_ring {
    struct rh_worker *w;
    struct fentry **buckets;
    unsigned nbuckets, count, cap;
    struct fentry *lru_first, *lru_last;
    struct static_xfer **xfers; /* by index, for user_data */
    uint32_t nxfers, xcap;
    struct static_xfer *free_xfers;
    struct spare_pipe pipes[SPARE_PIPES];
    unsigned npipes;
    char *chunks[SPARE_CHUNKS];
    unsigned nchunks;
    bool stopping; /* the ring is being torn down: close with close(2), submit nothing */
    uint32_t page_size; /* for cachestat's page counts */
    bool no_cachestat; /* cachestat(2) said ENOSYS/EPERM once: every window is cold */
};

static_assert(sizeof(((struct static_xfer *)0)->path) >= 4096 + 256, "path room");
static_assert(sizeof(((struct fentry *)0)->etag) >= 3 * 16 + 4, "etag room");
static_assert(sizeof(((struct fentry *)0)->hdrs) >= 15 + 29 + 8 + 52 + 24, "header room");
#define PUT_LIT(p, s) (memcpy(p, s, sizeof(s) - 1), (p) + sizeof(s) - 1)

/* ---- static.c: the handler ---- */

/* Serves r's path below mount m: 405 for methods other than GET and HEAD, else the file. */
void static_handle(struct rh_req *r, const struct static_mount *m);

/* ---- static_cache.c: the open-file cache ---- */

struct fentry *static_cache_find(struct static_ring *sr, const struct static_mount *m,
                           const char *path, size_t len);
/* A hit: to the front of the LRU. */
void static_cache_touch(struct static_ring *sr, struct fentry *e);
/* Makes an entry of the file x opened (x->fd, x->stx) and links it; NULL: out of memory. */
struct fentry *static_cache_insert(struct static_ring *sr, struct static_xfer *x);
/* Takes e out of the table; it lives on while transfers hold references. */
void static_cache_unlink(struct static_ring *sr, struct fentry *e);
struct fentry *static_fentry_get(struct fentry *e);
void static_fentry_put(struct static_ring *sr, struct fentry *e);
bool static_fentry_same_file(const struct fentry *e, const struct statx *st);
/* Closes fd through the ring (or with close(2) once the ring is stopping); -1: nothing. */
void static_close_fd(struct static_ring *sr, int fd);

/* ---- static_xfer.c: transfers and the body pump ---- */

struct static_xfer *static_xfer_new(struct static_ring *sr, struct rh_req *r,
                             const struct static_mount *m);
/* The live transfer a CQE's user_data names, or NULL. */
struct static_xfer *static_xfer_of(struct static_ring *sr, uint64_t ud);
/* Releases everything the transfer holds; the request is the caller's to end. */
void static_xfer_free(struct static_xfer *x);
/* An SQE for one of x's ops, counted in flight; the prep comes next, then static_xfer_submit()
 * (the prep helpers clear user_data). */
struct io_uring_sqe *static_xfer_sqe(struct static_xfer *x);
void static_xfer_submit(struct static_xfer *x, struct io_uring_sqe *sqe, enum step_kind k);
/* Sends the head (already queued by h1_resp_head_only) and the body [first, first + len) of
 * x->e: by sendfile(2) from the ring thread while the pages are resident, else through
 * io-wq (splice, or read/send below splice_min). Ends the request when done. */
void static_xfer_body_start(struct static_xfer *x, uint64_t first, uint64_t len);
/* A body op of x completed. */
void static_xfer_on_streaming(struct static_xfer *x, enum step_kind k, int res);

#endif
