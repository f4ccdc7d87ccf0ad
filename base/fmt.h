/* base/: pieces with no dependency on any other folder (include/ringhttp.h aside: the
 * public declarations carry their export). See fmt.c. */
#ifndef RH_BASE_FMT_H
#define RH_BASE_FMT_H

#include <stddef.h>
#include <stdint.h>

#include "include/ringhttp.h"

/* rh_status_reason (fmt.c) is public: declared, with its export, in include/ringhttp.h. */
/* Writes v in decimal at out (at most 20 bytes, no NUL); returns the length. */
size_t rh_fmt_u64(char *out, uint64_t v);

#endif
