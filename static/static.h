/* static/: the static file server behind rh_static_route (internal header).
 *
 * Owns: the mounts (a directory fd per mount, read-only once the server starts), each ring's
 * open-file cache (bounded LRU of fd + statx, refcounted so an evicted entry's fd outlives the
 * transfers still reading it), each ring's file transfers and their pipes.
 *
 * static.c does the serving: the handler, the open/statx/read/splice ops on the ring (all of
 * them STATIC_OP_FILE), the cache and the body pump (an HTTP/1 body source, static_xfer.c).
 * static_http.c holds the pure parts (path decoding, Range and conditional headers, HTTP
 * dates, MIME types) so unit tests can reach them without a ring.
 *
 * It must never block the ring thread on the file system: every open, statx and read goes
 * through the ring (the kernel's io-wq does the blocking part). Thread rules: a ring's cache
 * and transfers are touched only by that ring's thread. */
#ifndef RH_SERVER_STATIC_H
#define RH_SERVER_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- static_http.c: pure helpers ---- */

/* Percent-decodes and normalises the part of a URL path below a mount ("/a/./b/../c.txt")
 * into a relative file path without leading or trailing slash ("a/c.txt"; "" for the mount's
 * root). Empty and "." segments go, ".." removes the previous one. *dir is set when the path
 * names a directory (it ends in '/', "/." or "/.."). Returns 0, -EINVAL (a bad %-escape, a
 * NUL byte, ".." above the root: 400), -ENOENT (a hidden segment, ".name", when hidden is
 * false, except ".well-known": 404) or -ENAMETOOLONG (does not fit cap). */
int static_path_normalize(const char *raw, size_t len, bool hidden, char *out, size_t cap,
                          size_t *out_len, bool *dir);

enum static_range {
    RANGE_NONE,          /* no usable Range: serve the whole file (200) */
    RANGE_ONE,           /* one satisfiable range [*first, *last]: 206 */
    RANGE_UNSATISFIABLE, /* 416 with Content-Range: bytes * / size */
    RANGE_MANY,          /* several ranges: served as the whole file (200), documented */
};
/* Parses a Range header value against a representation of size bytes. Syntax errors and
 * other units are RANGE_NONE (the header is ignored, as RFC 9110 14.2 allows). */
enum static_range static_range_parse(const char *v, size_t len, uint64_t size, uint64_t *first,
                                     uint64_t *last);

/* Whether an If-None-Match / If-Match style list ("*", or entity tags separated by commas)
 * matches etag (a quoted strong tag). weak: the weak comparison (If-None-Match); otherwise
 * the strong one (If-Match, If-Range), where W/ tags never match. */
bool static_etag_match(const char *list, size_t len, const char *etag, size_t etag_len,
                       bool weak);

/* Writes t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", 29 bytes, no NUL). */
void static_http_date(int64_t t, char out[29]);
/* Parses an HTTP-date in any of the three forms RFC 9110 5.6.7 requires (IMF-fixdate,
 * RFC 850, asctime). 0 or -EINVAL. */
int static_parse_http_date(const char *s, size_t len, int64_t *out);

/* Content-Type for a file name by its extension (a built-in table); text types carry
 * "; charset=utf-8". Unknown: "application/octet-stream". Returns a static string. */
const char *static_mime_type(const char *name, size_t len);

/* Percent-encodes a decoded path for a Location header: unreserved characters, '/' and a
 * few sub-delims stay, every other byte becomes %XX. Returns the length written, or 0 if
 * it does not fit cap. */
size_t static_url_encode(const char *in, size_t len, char *out, size_t cap);

/* ---- static.c, static_xfer.c: the ring side (server.c, wire.c) ---- */

struct rh_req;
struct rh_worker;
struct rh_server;

/* static.c */
void static_worker_start(struct rh_worker *w); /* on the ring's thread, after its ops */
void static_worker_abandon(struct rh_worker *w); /* after the final drain: ends held requests */
void static_worker_stop(struct rh_worker *w);  /* after the final drain */
void static_free(struct rh_server *srv);

#endif
