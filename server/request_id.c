/* The request-id middleware: takes a valid X-Request-Id from the client or makes one, keeps
 * it in a context slot (readable from pool work functions too), echoes it in the response.
 * The id lives inside the request, so this allocates nothing. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/internal.h"

static rh_ctx_key request_id_key = -1;

static bool id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.' || ch == ':';
}

/* A client id is taken only if it is 1..36 safe characters: it ends up in logs and headers. */
static bool valid_id(rh_str v)
{
    if (!v.ptr || v.len == 0 || v.len > 36)
        return false;
    for (size_t i = 0; i < v.len; i++)
        if (!id_char(v.ptr[i]))
            return false;
    return true;
}

/* worker id, a per-process start stamp and a counter: unique without a syscall or a lock. */
static void make_id(struct rh_req *r)
{
    static _Thread_local uint64_t counter;
    static _Thread_local uint32_t stamp;
    if (!stamp)
        stamp = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 12);
    static const char hex[] = "0123456789abcdef";
    uint64_t n = ++counter;
    char *p = r->request_id;
    for (int i = 7; i >= 0; i--)
        *p++ = hex[(stamp >> (i * 4)) & 15];
    *p++ = '-';
    *p++ = hex[r->w->id & 15];
    *p++ = '-';
    for (int i = 11; i >= 0; i--)
        *p++ = hex[(n >> (i * 4)) & 15];
    *p = 0;
}

static rh_mw_result request_id_before(rh_req *r, void *udata)
{
    rh_str given = rh_req_header(r, "X-Request-Id");
    if (valid_id(given)) {
        memcpy(r->request_id, given.ptr, given.len);
        r->request_id[given.len] = 0;
    } else {
        make_id(r);
    }
    rh_req_ctx_set(r, request_id_key, r->request_id);
    return RH_MW_NEXT;
}

static void request_id_after(rh_req *r, int status, void *udata)
{
    if (r->request_id[0])
        rh_resp_header(r, "X-Request-Id", r->request_id);
}

int rh_use_request_id(rh_server *srv)
{
    if (request_id_key < 0)
        request_id_key = rh_ctx_key_new("request_id", NULL);
    if (request_id_key < 0)
        return request_id_key;
    rh_middleware mw = {.name = "request-id", .before = request_id_before,
                        .after = request_id_after};
    return rh_use(srv, &mw);
}

const char *rh_request_id(const rh_req *req)
{
    if (!req)
        req = rh_current_req();
    return req && req->request_id[0] ? req->request_id : NULL;
}
