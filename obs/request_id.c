/* The request-id middleware: takes a valid X-Request-Id from the client or makes one, keeps
 * it in a context slot (readable from pool work functions too), echoes it in the response.
 * The id lives inside the request, so this allocates nothing. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "obs/obs.h"

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

/* "stamp-ring-counter": a per-process start stamp, the ring's whole id (not one hex digit of
 * it: ids repeated across rings 16 apart) and a per-ring counter, in hex. Unique across any
 * number of rings without a syscall or a lock. At most 8+1+8+1+16 characters. */
static size_t put_hex(char *p, uint64_t v, int min_digits)
{
    static const char hex[] = "0123456789abcdef";
    int digits = 1;
    while (digits < 16 && (v >> (digits * 4)))
        digits++;
    if (digits < min_digits)
        digits = min_digits;
    for (int i = digits - 1; i >= 0; i--)
        *p++ = hex[(v >> (i * 4)) & 15];
    return (size_t)digits;
}

void obs_request_id_format(char out[40], uint32_t stamp, uint32_t ring, uint64_t n)
{
    char *p = out;
    p += put_hex(p, stamp, 8);
    *p++ = '-';
    p += put_hex(p, ring, 1);
    *p++ = '-';
    p += put_hex(p, n, 12);
    *p = 0;
}

static void make_id(struct rh_req *r)
{
    static _Thread_local uint64_t counter;
    static _Thread_local uint32_t stamp;
    if (!stamp)
        stamp = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 12);
    obs_request_id_format(r->request_id, stamp, r->w->id, ++counter);
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
