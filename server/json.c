/* JSON bodies through jansson: a request body parsed into a document (415 or 400 through
 * the error handler on failure), a document answered as application/json. Built only with
 * RH_JSON (the default), so the core builds without jansson. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/app.h"

/* application/json, or any application/<x>+json (RFC 6839), parameters ignored. */
static bool json_media_type(const rh_req *r)
{
    if (app_media_type_is(r, "application/json"))
        return true;
    rh_str ct = rh_req_header(r, "Content-Type");
    if (!ct.ptr || ct.len < 17 || strncasecmp(ct.ptr, "application/", 12) != 0)
        return false;
    const char *semi = memchr(ct.ptr, ';', ct.len);
    const char *end = semi ? semi : ct.ptr + ct.len;
    while (end > ct.ptr && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return end - ct.ptr > 17 && strncasecmp(end - 5, "+json", 5) == 0;
}

int rh_req_json(rh_req *r, json_t **out)
{
    *out = NULL;
    if (!json_media_type(r)) {
        rh_respond_error(r, 415, "Content-Type must be application/json");
        return -EMEDIUMTYPE;
    }
    rh_str body = rh_req_body(r);
    json_error_t err;
    /* DECODE_ANY: a bare string or number is JSON too; \u0000 stays refused (no ALLOW_NUL),
     * so every string of the document is a C string. */
    json_t *doc = json_loadb(body.ptr ? body.ptr : "", body.len, JSON_DECODE_ANY, &err);
    if (!doc) {
        char detail[256];
        snprintf(detail, sizeof(detail), "invalid JSON: %s (line %d, column %d)", err.text,
                 err.line, err.column);
        rh_respond_error(r, 400, detail);
        return -EBADMSG;
    }
    *out = doc;
    return 0;
}

int rh_respond_json(rh_req *r, int status, json_t *doc)
{
    static const char ctype[] = "application/json; charset=utf-8";
    if (!doc) /* not through the error handler: it may be what failed to build one */
        return rh_respond(r, 500, "text/plain", "no JSON document\n", 17);
    char small[2048]; /* most answers: no allocation */
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t n = json_dumpb(doc, small, sizeof(small), flags);
    int ret;
    if (n == 0) {
        ret = rh_respond(r, 500, "text/plain", "JSON encoding failed\n", 21);
    } else if (n <= sizeof(small)) {
        ret = rh_respond(r, status, ctype, small, n);
    } else {
        char *big = malloc(n); /* owner: here; rh_respond copies */
        if (big && json_dumpb(doc, big, n, flags) == n)
            ret = rh_respond(r, status, ctype, big, n);
        else
            ret = rh_respond(r, 500, "text/plain", "out of memory\n", 14);
        free(big);
    }
    json_decref(doc);
    return ret;
}
