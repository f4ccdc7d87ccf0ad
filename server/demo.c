/* The demo routes the binary serves: the TechEmpower-style /plaintext and /json, /echo, a
 * health check and an index page that lists them. */
#include "server/demo.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Literal bodies: the length comes from the literal, never counted by hand. */
#define RESPOND_LIT(req, status, ctype, lit) rh_respond(req, status, ctype, lit, sizeof(lit) - 1)

static const char index_html[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ringhttp</title></head>\n"
    "<body><h1>ringhttp</h1>\n<p>An io_uring HTTP/1.1 server. Try:</p>\n<ul>\n"
    "<li><a href=\"/plaintext\">/plaintext</a>: Hello, World!</li>\n"
    "<li><a href=\"/json\">/json</a>: a JSON message</li>\n"
    "<li><code>curl -d hello http://HOST/echo</code>: echoes the body</li>\n"
    "<li><a href=\"/healthz\">/healthz</a>: health check</li>\n"
    "<li><a href=\"/blocking?ms=50\">/blocking?ms=50</a>: sleeps 50 ms on the pool</li>\n"
    "<li><a href=\"/work?us=200\">/work?us=200</a>: spins 200 us of CPU on the pool</li>\n"
    "<li><a href=\"/db?id=42\">/db?id=42</a>: a SQLite row read through the db lane</li>\n"
    "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n"
    "</ul></body></html>\n";

static void on_index(rh_req *req, void *udata)
{
    rh_respond(req, 200, "text/html; charset=utf-8", index_html, sizeof(index_html) - 1);
}

static void on_plaintext(rh_req *req, void *udata)
{
    RESPOND_LIT(req, 200, "text/plain", "Hello, World!");
}

static void on_json(rh_req *req, void *udata)
{
    static const char body[] = "{\"message\":\"Hello, World!\"}";
    rh_respond(req, 200, "application/json", body, sizeof(body) - 1);
}

static void on_echo(rh_req *req, void *udata)
{
    rh_str body = rh_req_body(req);
    rh_str ctype = rh_req_header(req, "Content-Type");
    char ct[128] = "application/octet-stream";
    /* Echo a sane content type back; anything odd falls back to octet-stream. */
    if (ctype.ptr && ctype.len < sizeof(ct) && !memchr(ctype.ptr, '\r', ctype.len)) {
        memcpy(ct, ctype.ptr, ctype.len);
        ct[ctype.len] = 0;
    }
    rh_respond(req, 200, ct, body.ptr, body.len);
}

/* /never: a handler that returns without answering (a bug the handler deadline,
 * --handler-timeout, turns into a 500); /never?pool=1 offloads a no-op whose done callback
 * never answers either. For tests of the deadline. */
static void never_work(rh_req *req, void *arg) {}
static void never_done(rh_req *req, int status, void *arg) {}

static void on_never(rh_req *req, void *udata)
{
    rh_str v;
    if (rh_req_query_param(req, "pool", &v) == 0 && v.len == 1 && v.ptr[0] == '1')
        rh_offload(req, never_work, never_done, NULL);
}

/* /stream?bytes=N: N bytes (default 1 MiB, at most 1 GiB) streamed in 16 KiB chunks at the
 * reader's pace: written until rh_resp_write says RH_RESP_FULL, then on from
 * rh_resp_on_writable's callback. The bytes still to send ride in the callback's udata. */
static char stream_chunk[16384];

static void stream_more(rh_req *req, int status, void *udata)
{
    uint64_t left = (uint64_t)(uintptr_t)udata;
    while (status == 0 && left > 0) {
        size_t n = left < sizeof(stream_chunk) ? (size_t)left : sizeof(stream_chunk);
        int ret = rh_resp_write(req, stream_chunk, n);
        if (ret < 0)
            break;
        left -= n;
        if (ret == RH_RESP_FULL && left > 0) {
            if (rh_resp_on_writable(req, stream_more, (void *)(uintptr_t)left) == 0)
                return; /* on when the reader has taken most of it */
            break;      /* the client has gone */
        }
    }
    rh_resp_end(req);
}

static void on_stream(rh_req *req, void *udata)
{
    rh_str v;
    char *end = NULL;
    unsigned long long bytes = 1u << 20;
    if (rh_req_query_param(req, "bytes", &v) == 0)
        bytes = strtoull(v.ptr, &end, 10);
    if ((end && end != v.ptr + v.len) || bytes > (1ull << 30)) {
        RESPOND_LIT(req, 400, "text/plain", "bytes must be 0..1073741824\n");
        return;
    }
    if (rh_resp_start(req, 200, "application/octet-stream") == 0)
        stream_more(req, 0, (void *)(uintptr_t)bytes);
}

/* /blocking?ms=N: sleeps on a pool thread in 5 ms steps, checking its deadline so a
 * --pool-timeout overrun stops it (the ring then answers 504). With cooperate=0 it sleeps
 * without checking, like a driver call that cannot be interrupted. */
static void on_blocking(rh_req *req, void *udata)
{
    rh_str v;
    long ms = rh_req_query_param(req, "ms", &v) == 0 ? strtol(v.ptr, NULL, 10) : 0;
    if (ms < 0 || ms > 60000) {
        RESPOND_LIT(req, 400, "text/plain", "ms must be 0..60000\n");
        return;
    }
    bool cooperate = !(rh_req_query_param(req, "cooperate", &v) == 0 && v.len == 1 && v.ptr[0] == '0');
    for (long left = ms; left > 0; left -= 5) {
        if (cooperate && rh_offload_check() < 0)
            return; /* past the deadline or the client left: no answer */
        struct timespec ts = {0, (left < 5 ? left : 5) * 1000000L};
        nanosleep(&ts, NULL);
    }
    char body[48];
    int n = snprintf(body, sizeof(body), "slept %ld", ms);
    rh_respond(req, 200, "text/plain", body, (size_t)n);
}

/* /work?us=N: N us (up to 100000) of CPU on a pool thread, a fast pool user next to a slow
 * one (/blocking). Spins until the thread's CPU clock has advanced N us, so a preempted
 * thread still burns N us of CPU (and takes longer). */
static void on_work(rh_req *req, void *udata)
{
    rh_str v;
    char *end = NULL;
    long us = rh_req_query_param(req, "us", &v) == 0 ? strtol(v.ptr, &end, 10) : 0;
    if (us < 0 || us > 100000 || (end && end != v.ptr + v.len)) {
        RESPOND_LIT(req, 400, "text/plain", "us must be 0..100000\n");
        return;
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    do {
        for (int i = 0; i < 64; i++)
            __asm__ volatile("" ::: "memory");
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
    char body[48];
    int n = snprintf(body, sizeof(body), "worked %ld", us);
    rh_respond(req, 200, "text/plain", body, (size_t)n);
}

/* ---- /db: a real SQLite database read through the "db" lane ---- */

static char db_path[64];
static pthread_key_t db_key; /* the lane thread's connection, closed when it exits */
static pthread_once_t db_key_once = PTHREAD_ONCE_INIT;

/* One per lane thread: the connection and its one statement, prepared once (as an app
 * keeps its prepared statements), so a request costs a bind, a step and a reset. */
struct lane_db {
    sqlite3 *db;
    sqlite3_stmt *get;
};

static void db_close(void *p)
{
    struct lane_db *l = p;
    sqlite3_finalize(l->get);
    sqlite3_close(l->db);
    free(l);
}
static void db_key_make(void) { pthread_key_create(&db_key, db_close); }

/* Opened on the lane's own thread on first use and only ever used there: this connection
 * is the kind of resource thread_sensitive exists for. The file is written once at start
 * and never again, so it is opened immutable: no file locks or change checks per query. */
static struct lane_db *lane_db(void)
{
    pthread_once(&db_key_once, db_key_make);
    struct lane_db *l = pthread_getspecific(db_key);
    if (l)
        return l;
    char uri[96];
    snprintf(uri, sizeof(uri), "file:%s?immutable=1", db_path);
    l = calloc(1, sizeof(*l)); /* owner: the lane thread, freed by db_close at its exit */
    if (!l)
        return NULL;
    if (sqlite3_open_v2(uri, &l->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX |
                        SQLITE_OPEN_URI, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(l->db, "SELECT id, name, value FROM items WHERE id = ?", -1,
                           SQLITE_PREPARE_PERSISTENT, &l->get, NULL) != SQLITE_OK) {
        db_close(l);
        return NULL;
    }
    pthread_setspecific(db_key, l);
    return l;
}

static void on_db(rh_req *req, void *udata)
{
    rh_str v;
    char *end = NULL;
    long id = rh_req_query_param(req, "id", &v) == 0 ? strtol(v.ptr, &end, 10) : -1;
    if (id < 1 || !end || end != v.ptr + v.len) {
        RESPOND_LIT(req, 400, "application/json", "{\"error\":\"id must be 1..10000\"}");
        return;
    }
    struct lane_db *l = lane_db();
    if (!l) {
        RESPOND_LIT(req, 500, "application/json", "{\"error\":\"database\"}");
        return;
    }
    sqlite3_stmt *st = l->get;
    sqlite3_bind_int64(st, 1, id);
    char body[160];
    if (sqlite3_step(st) == SQLITE_ROW) {
        int n = snprintf(body, sizeof(body), "{\"id\":%lld,\"name\":\"%s\",\"value\":%lld}",
                         (long long)sqlite3_column_int64(st, 0),
                         (const char *)sqlite3_column_text(st, 1),
                         (long long)sqlite3_column_int64(st, 2));
        rh_respond(req, 200, "application/json", body, (size_t)n);
    } else {
        RESPOND_LIT(req, 404, "application/json", "{\"error\":\"no such row\"}");
    }
    sqlite3_reset(st);
}

static int db_create(void)
{
    /* Before SQLite initialises: no global memory statistics, so no global mutex per
     * allocation (the lane is the only thread using SQLite). Fails harmlessly if an
     * embedding program initialised SQLite already. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    snprintf(db_path, sizeof(db_path), "/tmp/ringhttp-demo-%d.db", (int)getpid());
    unlink(db_path);
    sqlite3 *db;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        return -EIO;
    int rc = sqlite3_exec(db,
                          "PRAGMA journal_mode=OFF; BEGIN;"
                          "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, value INTEGER);"
                          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                          "WHERE i < 10000) INSERT INTO items SELECT i, 'item-' || i, "
                          "(i * 7919) % 10007 FROM n; COMMIT;",
                          NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -EIO;
}

void srv_demo_cleanup(void)
{
    if (db_path[0])
        unlink(db_path);
}

int srv_demo_routes_add(rh_server *srv, bool with_index)
{
    int ret = 0;
    if (with_index)
        ret = rh_route(srv, "GET", "/", on_index, NULL);
    ret = ret ? ret : rh_route(srv, "GET", "/plaintext", on_plaintext, NULL);
    ret = ret ? ret : rh_route(srv, "GET", "/json", on_json, NULL);
    ret = ret ? ret : rh_route(srv, "POST", "/echo", on_echo, NULL);
    ret = ret ? ret : rh_route(srv, "PUT", "/echo", on_echo, NULL);
    ret = ret ? ret : rh_health_route(srv, "/healthz"); /* 503 once stopping */
    ret = ret ? ret : rh_route(srv, "GET", "/never", on_never, NULL);
    ret = ret ? ret : rh_route(srv, "GET", "/stream", on_stream, NULL);
    for (size_t i = 0; i < sizeof(stream_chunk); i++)
        stream_chunk[i] = "0123456789abcdef"[i % 16];
    ret = ret ? ret : rh_route_blocking(srv, "GET", "/blocking", on_blocking, NULL, NULL);
    ret = ret ? ret : rh_route_blocking(srv, "GET", "/work", on_work, NULL, NULL);
    ret = ret ? ret : db_create();
    ret = ret ? ret : rh_lane_declare(srv, "db", 1024);
    ret = ret ? ret : rh_route_blocking(srv, "GET", "/db", on_db, NULL, "db");
    return ret;
}
