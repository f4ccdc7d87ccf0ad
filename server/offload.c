/* Offload glue between requests and pool/ (filled in with the pool). */
#include <stddef.h>

#include "server/internal.h"

void metrics_render_pool(const rh_server *srv, char *buf, size_t *len, size_t cap)
{
    (void)srv;
    (void)buf;
    (void)len;
    (void)cap;
}
