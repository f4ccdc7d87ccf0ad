/* The parser limits both fuzzers derive from their input's control bytes (the same layout,
 * so they share seeds): bit 1 of ctrl[0] set: small limits from ctrl[1..4]. */
#ifndef RH_FUZZ_CTRL_LIMITS_H
#define RH_FUZZ_CTRL_LIMITS_H

#include <stdint.h>

#include "include/ringhttp.h"

static inline void fuzz_ctrl_limits(rh_config *cfg, const uint8_t *ctrl)
{
    if (!(ctrl[0] & 2))
        return;
    cfg->max_header_size = 24 + 32u * ctrl[1];
    cfg->max_uri = 1 + 4u * ctrl[2] < cfg->max_header_size ? 1 + 4u * ctrl[2]
                                                           : cfg->max_header_size;
    cfg->max_body = 3u * ctrl[3];
    cfg->max_headers = ctrl[4] % 20;
}

#endif
