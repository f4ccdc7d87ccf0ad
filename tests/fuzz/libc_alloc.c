/* mimalloc's entry points, redirected to libc for the fuzz target (-Wl,--wrap=mi_*): ASan
 * puts redzones around and tracks the lifetime of every libc block, but sees nothing inside
 * mimalloc's pages, so an overflow of a request or a buffer would go unnoticed there. Blocks
 * the server keeps on its own free lists (input/output blocks, requests) stay invisible
 * while listed; everything else is checked. */
#include <stdlib.h>
#include <string.h>

void *__wrap_mi_malloc(size_t n);
void *__wrap_mi_zalloc(size_t n);
void *__wrap_mi_calloc(size_t count, size_t n);
void *__wrap_mi_realloc(void *p, size_t n);
void *__wrap_mi_zalloc_aligned(size_t n, size_t align);
char *__wrap_mi_strdup(const char *s);
char *__wrap_mi_strndup(const char *s, size_t n);
void __wrap_mi_free(void *p);

void *__wrap_mi_malloc(size_t n) { return malloc(n ? n : 1); }
void *__wrap_mi_zalloc(size_t n) { return calloc(1, n ? n : 1); }
void *__wrap_mi_calloc(size_t count, size_t n) { return calloc(count ? count : 1, n ? n : 1); }
void *__wrap_mi_realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
char *__wrap_mi_strdup(const char *s) { return strdup(s); }
char *__wrap_mi_strndup(const char *s, size_t n) { return strndup(s, n); }
void __wrap_mi_free(void *p) { free(p); }

void *__wrap_mi_zalloc_aligned(size_t n, size_t align)
{
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, n ? n : 1) != 0)
        return NULL;
    return memset(p, 0, n);
}
