typedef int rh_pool_placeholder;
