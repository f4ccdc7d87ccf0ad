/* mimalloc for ringhttp's own allocations only, never the host program's malloc.
 *
 * Why not link libmimalloc.so: Debian builds it with malloc override, so an executable that
 * links it directly (as a static libringhttp.a requires) gets mimalloc as the malloc of the
 * whole program, SQLite and the application included. Debian ships no static mimalloc to
 * fold in and localize either. So the library loads it with dlopen(RTLD_LOCAL): its
 * malloc/free never enter the global symbol scope, and the mi_* entry points the rest of
 * the code calls (the names and prototypes of <mimalloc.h>, so callers are unchanged) are
 * defined here, hidden, each one tail call through a table bound once at load time.
 *
 * The table is written only by the constructor, before main() or inside dlopen() of the
 * shared library, i.e. before any thread of ours exists; read-only after. If mimalloc cannot
 * be loaded, it is bound to libc instead (consistently: every block is freed by the
 * allocator that made it). This file lives in uring/ because it is the lowest module, the
 * one every other links. */
#include <dlfcn.h>
#include <mimalloc.h>
#include <stdlib.h>
#include <string.h>

#ifndef RH_MIMALLOC_SONAME
#define RH_MIMALLOC_SONAME "libmimalloc.so.2"
#endif

/* X(return type, name, (parameters), (arguments)) for every mi_* entry point we use. */
#define RH_MI_FUNCS(X)                                                                       \
    X(void *, mi_malloc, (size_t n), (n))                                                    \
    X(void *, mi_zalloc, (size_t n), (n))                                                    \
    X(void *, mi_calloc, (size_t count, size_t n), (count, n))                               \
    X(void *, mi_realloc, (void *p, size_t n), (p, n))                                       \
    X(void *, mi_zalloc_aligned, (size_t n, size_t align), (n, align))                       \
    X(void *, mi_malloc_aligned, (size_t n, size_t align), (n, align))                       \
    X(char *, mi_strdup, (const char *s), (s))                                               \
    X(char *, mi_strndup, (const char *s, size_t n), (s, n))

static struct {
#define RH_MI_SLOT(ret, name, params, args) ret(*name) params;
    RH_MI_FUNCS(RH_MI_SLOT)
    void (*mi_free)(void *p);
} mi_table;

#define RH_MI_FORWARD(ret, name, params, args)                                               \
    ret name params { return mi_table.name args; }
RH_MI_FUNCS(RH_MI_FORWARD)

void mi_free(void *p) { mi_table.mi_free(p); }

/* The libc fallback, with mimalloc's semantics where libc differs (zeroed, aligned). */
static void *libc_zalloc(size_t n) { return calloc(1, n ? n : 1); }
static void *libc_malloc_aligned(size_t n, size_t align)
{
    void *p = NULL;
    if (align < sizeof(void *))
        align = sizeof(void *);
    return posix_memalign(&p, align, n ? n : 1) == 0 ? p : NULL;
}
static void *libc_zalloc_aligned(size_t n, size_t align)
{
    void *p = libc_malloc_aligned(n, align);
    return p ? memset(p, 0, n) : NULL;
}

static void bind_libc(void)
{
    mi_table.mi_malloc = malloc;
    mi_table.mi_zalloc = libc_zalloc;
    mi_table.mi_calloc = calloc;
    mi_table.mi_realloc = realloc;
    mi_table.mi_zalloc_aligned = libc_zalloc_aligned;
    mi_table.mi_malloc_aligned = libc_malloc_aligned;
    mi_table.mi_strdup = strdup;
    mi_table.mi_strndup = strndup;
    mi_table.mi_free = free;
}

/* All or nothing: a half-bound table would free one allocator's blocks with the other. */
static int bind_mimalloc(void *lib)
{
    typeof(mi_table) t;
#define RH_MI_BIND(ret, name, params, args)                                                  \
    if (!(t.name = (ret(*) params)dlsym(lib, #name)))                                        \
        return -1;
    RH_MI_FUNCS(RH_MI_BIND)
    RH_MI_BIND(void, mi_free, (void *p), )
    mi_table = t;
    return 0;
}

__attribute__((constructor)) static void mi_table_bind(void)
{
    void *lib = dlopen(RH_MIMALLOC_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib || bind_mimalloc(lib) < 0)
        bind_libc();
}
