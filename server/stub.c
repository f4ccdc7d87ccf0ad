typedef int rh_server_placeholder;
