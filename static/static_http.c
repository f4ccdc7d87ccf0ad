/* The pure parts of the static file server: URL path decoding and normalisation, Range
 * and entity-tag matching, HTTP dates and the MIME table. No I/O, no allocation, no state:
 * each function reads its arguments and writes its outputs (see static.h). */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "static/static.h"

/* ---- paths ---- */

static int hex_value(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static bool segment_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* One pass: bytes are decoded into out as they come; at each '/' (literal or %2F, as nginx
 * does) the segment just written is kept, dropped or pops its parent. Normalising after
 * decoding is what makes "%2e%2e" a "..": the decision is made on the bytes the file system
 * will see. openat2's RESOLVE_BENEATH stays the last guard either way. */
int static_path_normalize(const char *raw, size_t len, bool hidden, char *out, size_t cap,
                          size_t *out_len, bool *dir)
{
    size_t o = 0, seg = 0;
    bool ends_dir = true; /* nothing at all names the mount's root */
    for (size_t i = 0; i <= len; i++) {
        unsigned char ch = '/';
        if (i < len) {
            ch = (unsigned char)raw[i];
            if (ch == '%') {
                int hi = i + 2 < len ? hex_value((unsigned char)raw[i + 1]) : -1;
                int lo = i + 2 < len ? hex_value((unsigned char)raw[i + 2]) : -1;
                if (hi < 0 || lo < 0)
                    return -EINVAL;
                ch = (unsigned char)(hi << 4 | lo);
                i += 2;
            }
            if (ch == 0)
                return -EINVAL;
        }
        if (ch != '/') {
            if (o + 2 > cap)
                return -ENAMETOOLONG;
            out[o++] = (char)ch;
            continue;
        }
        size_t n = o - seg;
        if (n == 0 || segment_is(out + seg, n, ".")) {
            o = seg;
            ends_dir = true;
        } else if (segment_is(out + seg, n, "..")) {
            if (seg == 0)
                return -EINVAL; /* above the root */
            o = seg - 1;        /* the '/' before this segment */
            while (o > 0 && out[o - 1] != '/')
                o--;
            ends_dir = true;
        } else {
            if (out[seg] == '.' && !hidden && !segment_is(out + seg, n, ".well-known"))
                return -ENOENT;
            out[o++] = '/'; /* room checked when the segment's last byte went in */
            ends_dir = false;
        }
        seg = o;
    }
    if (o > 0 && out[o - 1] == '/')
        o--;
    out[o] = 0;
    *out_len = o;
    *dir = ends_dir || len == 0 || raw[len - 1] == '/';
    return 0;
}

size_t static_url_encode(const char *in, size_t len, char *out, size_t cap)
{
    static const char keep[] = "-._~/!$&'()*+,;=:@";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || (ch && strchr(keep, ch));
        if (o + (plain ? 1 : 3) > cap)
            return 0;
        if (plain) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = "0123456789ABCDEF"[ch >> 4];
            out[o++] = "0123456789ABCDEF"[ch & 15];
        }
    }
    return o;
}

/* ---- Range ---- */

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Digits into *v; false on none or overflow. */
static bool parse_u64(const char **pp, const char *end, uint64_t *v)
{
    const char *p = *pp;
    uint64_t n = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
        p++;
    }
    if (p == *pp)
        return false;
    *pp = p;
    *v = n;
    return true;
}

/* One range-spec at *pp. Returns -1 on a syntax error, 0 unsatisfiable, 1 satisfiable. */
static int parse_spec(const char **pp, const char *end, uint64_t size, uint64_t *first,
                      uint64_t *last)
{
    const char *p = *pp;
    uint64_t a, b;
    if (*p == '-') { /* suffix: the last b bytes */
        p++;
        if (!parse_u64(&p, end, &b))
            return -1;
        *pp = p;
        if (b == 0 || size == 0)
            return 0;
        *first = b < size ? size - b : 0;
        *last = size - 1;
        return 1;
    }
    if (!parse_u64(&p, end, &a) || p == end || *p != '-')
        return -1;
    p++;
    b = UINT64_MAX;
    if (p < end && *p >= '0' && *p <= '9') {
        if (!parse_u64(&p, end, &b) || b < a)
            return -1;
    }
    *pp = p;
    if (a >= size)
        return 0;
    *first = a;
    *last = b < size ? b : size - 1;
    return 1;
}

enum static_range static_range_parse(const char *v, size_t len, uint64_t size, uint64_t *first,
                                     uint64_t *last)
{
    const char *p = skip_ows(v, v + len), *end = v + len;
    if (end - p < 6 || strncasecmp(p, "bytes", 5) != 0)
        return RANGE_NONE;
    p = skip_ows(p + 5, end);
    if (p == end || *p++ != '=')
        return RANGE_NONE;
    unsigned specs = 0, satisfiable = 0;
    for (;;) {
        p = skip_ows(p, end);
        if (p < end && *p == ',') { /* empty list elements are allowed (RFC 9110 5.6.1) */
            p++;
            continue;
        }
        if (p == end)
            break;
        uint64_t f = 0, l = 0;
        int ok = parse_spec(&p, end, size, &f, &l);
        if (ok < 0)
            return RANGE_NONE;
        if (ok > 0 && satisfiable++ == 0) {
            *first = f;
            *last = l;
        }
        specs++;
        p = skip_ows(p, end);
        if (p < end && *p != ',')
            return RANGE_NONE;
    }
    if (specs == 0)
        return RANGE_NONE;
    if (satisfiable == 0)
        return RANGE_UNSATISFIABLE;
    return specs > 1 ? RANGE_MANY : RANGE_ONE;
}

/* ---- entity tags ---- */

bool static_etag_match(const char *list, size_t len, const char *etag, size_t etag_len,
                       bool weak)
{
    const char *p = list, *end = list + len;
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p == end)
            return false;
        if (*p == '*')
            return true;
        bool is_weak = end - p >= 2 && p[0] == 'W' && p[1] == '/';
        if (is_weak)
            p += 2;
        if (p == end || *p != '"')
            return false; /* malformed: no match */
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (!q)
            return false;
        size_t n = (size_t)(q + 1 - p);
        if ((weak || !is_weak) && n == etag_len && memcmp(p, etag, n) == 0)
            return true;
        p = q + 1;
    }
}

/* ---- dates ---- */

static const char day_names[] = "SunMonTueWedThuFriSat";
static const char month_names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

static char *put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

void static_http_date(int64_t t, char out[29])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
        tt = 0;
        gmtime_r(&tt, &tm);
    }
    unsigned year = (unsigned)tm.tm_year + 1900;
    char *p = out;
    memcpy(p, day_names + 3 * tm.tm_wday, 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    p = put2(p, (unsigned)tm.tm_mday);
    *p++ = ' ';
    memcpy(p, month_names + 3 * tm.tm_mon, 3);
    p += 3;
    *p++ = ' ';
    p = put2(p, year / 100);
    p = put2(p, year % 100);
    *p++ = ' ';
    p = put2(p, (unsigned)tm.tm_hour);
    *p++ = ':';
    p = put2(p, (unsigned)tm.tm_min);
    *p++ = ':';
    p = put2(p, (unsigned)tm.tm_sec);
    memcpy(p, " GMT", 4);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

struct cursor {
    const char *p, *end;
};

static bool take_char(struct cursor *c, char ch)
{
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* Between min and max digits. */
static bool take_num(struct cursor *c, unsigned min, unsigned max, unsigned *v)
{
    unsigned n = 0, got = 0;
    while (c->p < c->end && got < max && *c->p >= '0' && *c->p <= '9') {
        n = n * 10 + (unsigned)(*c->p++ - '0');
        got++;
    }
    *v = n;
    return got >= min;
}

static bool take_month(struct cursor *c, unsigned *m)
{
    if (c->end - c->p < 3)
        return false;
    for (unsigned i = 0; i < 12; i++) {
        if (memcmp(c->p, month_names + 3 * i, 3) == 0) {
            *m = i + 1;
            c->p += 3;
            return true;
        }
    }
    return false;
}

static bool take_time(struct cursor *c, unsigned *h, unsigned *mi, unsigned *s)
{
    return take_num(c, 2, 2, h) && take_char(c, ':') && take_num(c, 2, 2, mi) &&
           take_char(c, ':') && take_num(c, 2, 2, s);
}

int static_parse_http_date(const char *str, size_t len, int64_t *out)
{
    struct cursor c = {str, str + len};
    while (c.p < c.end && ((*c.p | 0x20) >= 'a' && (*c.p | 0x20) <= 'z'))
        c.p++; /* the day name, long or short: not checked against the date */
    unsigned day, mon, year, h, mi, s;
    bool ok;
    if (take_char(&c, ',')) { /* IMF-fixdate "06 Nov 1994" or RFC 850 "06-Nov-94" */
        ok = take_char(&c, ' ') && take_num(&c, 2, 2, &day);
        bool rfc850 = ok && take_char(&c, '-');
        ok = ok && (rfc850 || take_char(&c, ' ')) && take_month(&c, &mon) &&
             take_char(&c, rfc850 ? '-' : ' ') &&
             take_num(&c, rfc850 ? 2 : 4, rfc850 ? 2 : 4, &year) && take_char(&c, ' ') &&
             take_time(&c, &h, &mi, &s) && take_char(&c, ' ') && c.end - c.p == 3 &&
             memcmp(c.p, "GMT", 3) == 0;
        if (ok && rfc850) {
            /* RFC 9110: a two-digit year more than 50 years ahead is in the past century. */
            time_t now = time(NULL);
            struct tm tm;
            gmtime_r(&now, &tm);
            unsigned this_year = (unsigned)tm.tm_year + 1900;
            year += this_year / 100 * 100;
            if (year > this_year + 50)
                year -= 100;
        }
    } else { /* asctime: "Nov  6 08:49:37 1994" */
        ok = take_char(&c, ' ') && take_month(&c, &mon) && take_char(&c, ' ');
        ok = ok && (take_char(&c, ' ') ? take_num(&c, 1, 1, &day) : take_num(&c, 2, 2, &day));
        ok = ok && take_char(&c, ' ') && take_time(&c, &h, &mi, &s) && take_char(&c, ' ') &&
             take_num(&c, 4, 4, &year) && c.p == c.end;
    }
    if (!ok || day < 1 || day > 31 || h > 23 || mi > 59 || s > 60)
        return -EINVAL;
    *out = days_from_civil(year, mon, day) * 86400 + h * 3600 + mi * 60 + s;
    return 0;
}

/* ---- MIME types ---- */

static const struct {
    const char *ext, *type;
} mime_table[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml"},
    {"atom", "application/atom+xml"},
    {"rss", "application/rss+xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"bmp", "image/bmp"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
};

const char *static_mime_type(const char *name, size_t len)
{
    const char *ext = NULL;
    for (size_t i = len; i > 0 && name[i - 1] != '/'; i--) {
        if (name[i - 1] == '.') {
            bool leading = i - 1 == 0 || name[i - 2] == '/'; /* ".profile" has no extension */
            ext = leading ? NULL : name + i;
            break;
        }
    }
    if (ext) {
        size_t n = (size_t)(name + len - ext);
        for (size_t i = 0; i < sizeof(mime_table) / sizeof(mime_table[0]); i++)
            if (strlen(mime_table[i].ext) == n && strncasecmp(ext, mime_table[i].ext, n) == 0)
                return mime_table[i].type;
    }
    return "application/octet-stream";
}
