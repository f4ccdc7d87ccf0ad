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

/* Appends a then b to line at *n; past cap, *n keeps counting so the caller sees it. */
static void add(char *line, size_t cap, size_t *n, const char *a, const char *b)
{
    for (; *a; a++, (*n)++)
        if (*n < cap)
            line[*n] = *a;
    for (; *b; b++, (*n)++)
        if (*n < cap)
            line[*n] = *b;
}

int rh_resp_cookie(rh_req *r, const char *name, const char *value, const rh_cookie_options *opt)
{
    static const rh_cookie_options none;
    if (!opt)
        opt = &none;
    if (!name || !value || !token_ok(name) || !octets_ok(value) || !attr_ok(opt->path) ||
        !attr_ok(opt->domain) || !attr_ok(opt->same_site))
        return -EINVAL;
    char line[4096], age[24];
    size_t n = 0;
    snprintf(age, sizeof(age), "%lld", opt->max_age < 0 ? 0 : opt->max_age);
    add(line, sizeof(line), &n, name, "=");
    add(line, sizeof(line), &n, value, "");
    if (opt->path)
        add(line, sizeof(line), &n, "; Path=", opt->path);
    if (opt->domain)
        add(line, sizeof(line), &n, "; Domain=", opt->domain);
    if (opt->max_age)
        add(line, sizeof(line), &n, "; Max-Age=", age);
    if (opt->secure)
        add(line, sizeof(line), &n, "; Secure", "");
    if (opt->http_only)
        add(line, sizeof(line), &n, "; HttpOnly", "");
    if (opt->same_site)
        add(line, sizeof(line), &n, "; SameSite=", opt->same_site);
    if (n >= sizeof(line))
        return -EINVAL; /* longer than any client keeps */
    line[n] = 0;
    return rh_resp_header(r, "Set-Cookie", line);
}
