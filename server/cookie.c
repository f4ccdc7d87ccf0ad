/* Cookies (RFC 6265): reading the request's Cookie headers, writing Set-Cookie with
 * attributes. Values are checked, never escaped: what goes out is what the caller gave. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server/app.h"

static bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }

/* Searches one Cookie header's "a=1; b=2" for name. */
static bool find_in(rh_str h, const char *name, size_t nlen, rh_str *out)
{
    const char *p = h.ptr, *end = h.ptr + h.len;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ';'))
            p++;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (eq && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq + 1, *ve = stop;
            while (ve > v && is_ows(ve[-1]))
                ve--;
            if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"')
                v++, ve--;
            *out = (rh_str){v, (size_t)(ve - v)};
            return true;
        }
        p = stop;
    }
    return false;
}

int rh_req_cookie(const rh_req *r, const char *name, rh_str *out)
{
    size_t nlen = strlen(name);
    rh_str hname, value;
    for (unsigned i = 0; rh_req_header_at(r, i, &hname, &value) == 0; i++)
        if (hname.len == 6 && strncasecmp(hname.ptr, "Cookie", 6) == 0 &&
            find_in(value, name, nlen, out))
            return 0;
    return -ENOENT;
}

static bool token_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 32 || (unsigned char)*s >= 127 ||
            strchr("\"(),/:;<=>?@[\\]{}", *s))
            return false;
    return true;
}

static bool octets_ok(const char *s) /* cookie-octet, RFC 6265 4.1.1 */
{
    for (; *s; s++)
        if ((unsigned char)*s <= 32 || (unsigned char)*s >= 127 || strchr("\",;\\", *s))
            return false;
    return true;
}

static bool attr_ok(const char *s) { return !s || !strpbrk(s, ";\r\n"); }

int rh_resp_cookie(rh_req *r, const char *name, const char *value, const rh_cookie_options *opt)
{
    static const rh_cookie_options none;
    if (!opt)
        opt = &none;
    if (!name || !value || !token_ok(name) || !octets_ok(value) || !attr_ok(opt->path) ||
        !attr_ok(opt->domain) || !attr_ok(opt->same_site))
        return -EINVAL;
    char line[4096];
    int n = snprintf(line, sizeof(line), "%s=%s", name, value);
    if (opt->path)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "; Path=%s", opt->path);
    if (opt->domain && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "; Domain=%s", opt->domain);
    if (opt->max_age && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "; Max-Age=%lld",
                      opt->max_age < 0 ? 0LL : opt->max_age);
    if (opt->secure && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "; Secure");
    if (opt->http_only && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "; HttpOnly");
    if (opt->same_site && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "; SameSite=%s", opt->same_site);
    if (n >= (int)sizeof(line))
        return -EINVAL; /* longer than any client keeps */
    return rh_resp_header(r, "Set-Cookie", line);
}
