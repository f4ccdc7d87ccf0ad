/* The demo routes the binary serves: the TechEmpower-style /plaintext and /json, /echo, a
 * health check and an index page that lists them. */
#include "server/demo.h"

#include <string.h>

static const char index_html[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ringhttp</title></head>\n"
    "<body><h1>ringhttp</h1>\n<p>An io_uring HTTP/1.1 server. Try:</p>\n<ul>\n"
    "<li><a href=\"/plaintext\">/plaintext</a>: Hello, World!</li>\n"
    "<li><a href=\"/json\">/json</a>: a JSON message</li>\n"
    "<li><code>curl -d hello http://HOST/echo</code>: echoes the body</li>\n"
    "<li><a href=\"/healthz\">/healthz</a>: health check</li>\n"
    "</ul></body></html>\n";

static void on_index(rh_req *req, void *udata)
{
    rh_respond(req, 200, "text/html; charset=utf-8", index_html, sizeof(index_html) - 1);
}

static void on_plaintext(rh_req *req, void *udata)
{
    rh_respond(req, 200, "text/plain", "Hello, World!", 13);
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

static void on_healthz(rh_req *req, void *udata)
{
    rh_respond(req, 200, "text/plain", "ok\n", 3);
}

int demo_routes_add(rh_server *srv)
{
    int ret = 0;
    ret = ret ? ret : rh_route(srv, "GET", "/", on_index, NULL);
    ret = ret ? ret : rh_route(srv, "GET", "/plaintext", on_plaintext, NULL);
    ret = ret ? ret : rh_route(srv, "GET", "/json", on_json, NULL);
    ret = ret ? ret : rh_route(srv, "POST", "/echo", on_echo, NULL);
    ret = ret ? ret : rh_route(srv, "PUT", "/echo", on_echo, NULL);
    ret = ret ? ret : rh_route(srv, "GET", "/healthz", on_healthz, NULL);
    return ret;
}
