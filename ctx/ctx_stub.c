/* placeholder until ctx/ lands */
typedef int rh_ctx_placeholder;
