/* Percent-decoding of path and query parameters, and application/x-www-form-urlencoded
 * lookups. Pure functions over slices of the request: no allocation, the caller's buffer
 * receives a NUL-terminated copy. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "server/app.h"

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20; /* lower case */
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

int rh_url_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (len - i < 3)
                return -EINVAL; /* a truncated escape */
            int h = hex_value(in[i + 1]), l = hex_value(in[i + 2]);
            if (h < 0 || l < 0 || (h | l) == 0)
                return -EINVAL; /* a bad escape, or %00: no NUL hidden in a C string */
            ch = (char)(h << 4 | l);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        } else if (ch == 0) {
            return -EINVAL;
        }
        if (n + 1 >= cap)
            return -ENOSPC;
        out[n++] = ch;
    }
    if (cap == 0)
        return -ENOSPC;
    out[n] = 0;
    return (int)n;
}

int rh_req_param_decoded(const rh_req *r, const char *name, char *out, size_t cap)
{
    rh_str v = rh_req_param(r, name);
    if (!v.ptr)
        return -ENOENT;
    return rh_url_decode(v.ptr, v.len, false, out, cap);
}

/* Whether the urlencoded key [p, end) decodes to name (names are short: a stack copy). */
static bool key_is(const char *p, size_t len, const char *name)
{
    char key[256];
    int n = rh_url_decode(p, len, true, key, sizeof(key));
    return n >= 0 && strcmp(key, name) == 0;
}

int rh_urlencoded_get(rh_str text, const char *name, char *out, size_t cap)
{
    const char *p = text.ptr, *end = text.ptr + text.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *key_end = eq ? eq : stop;
        if (key_end > p && key_is(p, (size_t)(key_end - p), name)) {
            const char *v = eq ? eq + 1 : stop;
            return rh_url_decode(v, (size_t)(stop - v), true, out, cap);
        }
        p = amp ? amp + 1 : NULL;
    }
    return -ENOENT;
}

int rh_req_query_decoded(const rh_req *r, const char *name, char *out, size_t cap)
{
    return rh_urlencoded_get(rh_req_query(r), name, out, cap);
}

/* The media type of Content-Type equals type (case-insensitive, parameters ignored). */
bool app_media_type_is(const rh_req *r, const char *type)
{
    rh_str ct = rh_req_header(r, "Content-Type");
    size_t n = strlen(type);
    if (!ct.ptr || ct.len < n || strncasecmp(ct.ptr, type, n) != 0)
        return false;
    return ct.len == n || ct.ptr[n] == ';' || ct.ptr[n] == ' ' || ct.ptr[n] == '\t';
}

int rh_req_form(const rh_req *r, const char *name, char *out, size_t cap)
{
    if (!app_media_type_is(r, "application/x-www-form-urlencoded"))
        return -EMEDIUMTYPE;
    return rh_urlencoded_get(rh_req_body(r), name, out, cap);
}
