/* A JSON todo API: bearer-token auth on the pool for /todos (after routing, so unknown
 * paths are 404 and wrong methods 405), JSON errors for everything, and every database
 * call on the "db" lane, whose thread opens SQLite in its start hook and closes it in its
 * stop hook. The handlers are blocking routes on that lane: plain sequential code. */
#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "todo.h"

static sqlite3 *db; /* touched only on the db lane's one thread */

static void db_open(void *udata)
{
    const struct todo_config *cfg = udata;
    if (sqlite3_open(cfg->db, &db) != SQLITE_OK ||
        sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS todos (id INTEGER PRIMARY KEY, "
                         "title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0)",
                     NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        db = NULL;
    }
}

static void db_close(void *udata) { sqlite3_close(db), db = NULL; }

static void json_error(rh_req *req, int status, const char *detail, void *udata)
{
    json_t *msg = detail ? json_string(detail) : NULL; /* NULL if detail is not UTF-8 */
    rh_respond_json(req, status, json_pack("{so}", "error",
                                           msg ? msg : json_string(rh_status_reason(status))));
}

/* ---- auth: on the pool, as a token lookup in a real database would be ---- */

static void auth_work(rh_req *req, void *arg)
{
    const struct todo_config *cfg = arg;
    rh_str h = rh_req_header(req, "Authorization");
    bool bearer = h.len > 7 && strncmp(h.ptr, "Bearer ", 7) == 0;
    for (unsigned i = 0; bearer && i < cfg->ntokens; i++) {
        const char *t = cfg->tokens[i];
        if (strlen(t) == h.len - 7 && memcmp(t, h.ptr + 7, h.len - 7) == 0)
            return; /* no answer: auth_done goes on with rh_next */
    }
    rh_resp_header(req, "WWW-Authenticate", "Bearer");
    rh_respond_error(req, 401, "missing or unknown bearer token");
}

static void auth_done(rh_req *req, int status, void *arg)
{
    if (status == 0 && !rh_resp_started(req))
        rh_next(req);
}

static rh_mw_result auth(rh_req *req, void *udata)
{
    return rh_offload(req, auth_work, auth_done, udata) == 0 ? RH_MW_SUSPEND : RH_MW_DONE;
}

/* ---- the routes (on the db lane) ---- */

static json_t *row_json(sqlite3_stmt *st)
{
    return json_pack("{sIss%sb}", "id", (json_int_t)sqlite3_column_int64(st, 0), "title",
                     (const char *)sqlite3_column_text(st, 1),
                     (size_t)sqlite3_column_bytes(st, 1), "done", sqlite3_column_int(st, 2));
}

/* One row by id, or NULL. */
static json_t *load(sqlite3_int64 id)
{
    sqlite3_stmt *st;
    json_t *doc = NULL;
    sqlite3_prepare_v2(db, "SELECT id, title, done FROM todos WHERE id = ?", -1, &st, NULL);
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW)
        doc = row_json(st);
    sqlite3_finalize(st);
    return doc;
}

static bool path_id(rh_req *req, sqlite3_int64 *id)
{
    char buf[24], *end;
    if (rh_req_param_decoded(req, "id", buf, sizeof(buf)) <= 0)
        return false;
    *id = strtoll(buf, &end, 10);
    return *end == 0 && *id > 0;
}

static void create(rh_req *req, void *udata)
{
    json_t *in, *title;
    if (rh_req_json(req, &in) < 0)
        return; /* answered: 415 or 400 */
    title = json_object_get(in, "title");
    size_t chars = 0;
    for (const char *p = json_string_value(title); p && *p; p++)
        chars += ((unsigned char)*p & 0xc0) != 0x80; /* code points, not bytes */
    if (!json_is_string(title) || chars < 1 || chars > 200) {
        json_decref(in);
        rh_respond_error(req, 422, "title must be a string of 1 to 200 characters");
        return;
    }
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "INSERT INTO todos (title) VALUES (?)", -1, &st, NULL);
    sqlite3_bind_text(st, 1, json_string_value(title), (int)json_string_length(title),
                      SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    json_decref(in);
    if (rc != SQLITE_DONE) {
        rh_respond_error(req, 500, sqlite3_errmsg(db));
        return;
    }
    char loc[48];
    snprintf(loc, sizeof(loc), "/todos/%lld", (long long)sqlite3_last_insert_rowid(db));
    rh_resp_header(req, "Location", loc);
    rh_respond_json(req, 201, load(sqlite3_last_insert_rowid(db)));
}

static void list(rh_req *req, void *udata)
{
    char done[8], q[512];
    int has_done = rh_req_query_decoded(req, "done", done, sizeof(done));
    int has_q = rh_req_query_decoded(req, "q", q, sizeof(q));
    if ((has_done >= 0 && strcmp(done, "true") && strcmp(done, "false")) ||
        has_done == -EINVAL || has_done == -ENOSPC || has_q == -EINVAL || has_q == -ENOSPC) {
        rh_respond_error(req, 400, "done must be true or false; q must be valid and short");
        return;
    }
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT id, title, done FROM todos WHERE (?1 IS NULL OR done = ?1) "
                           "AND (?2 IS NULL OR instr(title, ?2) > 0) ORDER BY id",
                       -1, &st, NULL);
    if (has_done >= 0)
        sqlite3_bind_int(st, 1, strcmp(done, "true") == 0);
    if (has_q >= 0)
        sqlite3_bind_text(st, 2, q, has_q, SQLITE_TRANSIENT);
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, row_json(st));
    sqlite3_finalize(st);
    rh_respond_json(req, 200, arr);
}

static void get_one(rh_req *req, void *udata)
{
    sqlite3_int64 id;
    json_t *doc = path_id(req, &id) ? load(id) : NULL;
    if (doc)
        rh_respond_json(req, 200, doc);
    else
        rh_respond_error(req, 404, "no such todo");
}

static void patch(rh_req *req, void *udata)
{
    sqlite3_int64 id;
    json_t *in, *done;
    json_t *cur = path_id(req, &id) ? load(id) : NULL;
    if (!cur) {
        rh_respond_error(req, 404, "no such todo");
        return;
    }
    json_decref(cur);
    if (rh_req_json(req, &in) < 0)
        return;
    done = json_object_get(in, "done");
    if (!json_is_boolean(done)) {
        json_decref(in);
        rh_respond_error(req, 422, "done must be true or false");
        return;
    }
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "UPDATE todos SET done = ? WHERE id = ?", -1, &st, NULL);
    sqlite3_bind_int(st, 1, json_is_true(done));
    sqlite3_bind_int64(st, 2, id);
    sqlite3_step(st);
    sqlite3_finalize(st);
    json_decref(in);
    rh_respond_json(req, 200, load(id));
}

static void delete(rh_req *req, void *udata)
{
    sqlite3_int64 id;
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "DELETE FROM todos WHERE id = ?", -1, &st, NULL);
    sqlite3_bind_int64(st, 1, path_id(req, &id) ? id : 0);
    sqlite3_step(st);
    sqlite3_finalize(st);
    if (sqlite3_changes(db) == 0)
        rh_respond_error(req, 404, "no such todo");
    else
        rh_respond(req, 204, NULL, NULL, 0);
}

int todo_setup(rh_server *srv, const struct todo_config *cfg)
{
    rh_middleware mw = {.name = "auth", .before = auth, .udata = (void *)cfg};
    int ret = rh_lane_declare(srv, "db", 0);
    ret = ret ? ret : rh_lane_hooks(srv, "db", db_open, db_close, (void *)cfg);
    ret = ret ? ret : rh_on_error(srv, json_error, NULL);
    ret = ret ? ret : rh_use_request_id(srv);
    ret = ret ? ret : rh_use_prefix(srv, "/todos", &mw);
    ret = ret ? ret : rh_route_blocking(srv, "POST", "/todos", create, NULL, "db");
    ret = ret ? ret : rh_route_blocking(srv, "GET", "/todos", list, NULL, "db");
    ret = ret ? ret : rh_route_blocking(srv, "GET", "/todos/:id", get_one, NULL, "db");
    ret = ret ? ret : rh_route_blocking(srv, "PATCH", "/todos/:id", patch, NULL, "db");
    return ret ? ret : rh_route_blocking(srv, "DELETE", "/todos/:id", delete, NULL, "db");
}
