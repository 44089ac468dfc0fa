/* The proxy's settings from reel's layered configuration; see
 * proxy_settings.h. The proxy (src/core) knows nothing of the config
 * module: this is the one place that translates. */
#include "daemon/proxy_settings.h"

#include <stdlib.h>

#include "base/mem.h"

struct lists {
    char **ignore, **map, **local, **block, **headers, **dns, **body;
};

void *reel_daemon_proxy_settings(const reel_config_t *cfg, reel_proxy_settings_t *s) {
    size_t n = 0, nmap = 0, nlocal = 0, nblock = 0, nheaders = 0, ndns = 0, nbody = 0;
    struct lists *own = reel_calloc(1, sizeof *own);
    char **list = own->ignore = reel_config_get_list(cfg, "ignore_hosts", &n);
    own->map = reel_config_get_list(cfg, "map_remote", &nmap);
    own->local = reel_config_get_list(cfg, "map_local", &nlocal);
    own->block = reel_config_get_list(cfg, "block_list", &nblock);
    own->headers = reel_config_get_list(cfg, "modify_headers", &nheaders);
    own->dns = reel_config_get_list(cfg, "dns_overrides", &ndns);
    own->body = reel_config_get_list(cfg, "modify_body", &nbody);
    *s = (reel_proxy_settings_t){
        .listen_host = reel_config_get(cfg, "listen_host", NULL),
        .listen_port = (int)reel_config_get_int(cfg, "listen_port"),
        .upstream_trusted_ca = reel_config_get(cfg, "upstream_trusted_ca", NULL),
        .ignore_hosts = (const char *const *)list,
        .n_ignore_hosts = n,
        .map_remote = (const char *const *)own->map,
        .n_map_remote = nmap,
        .map_local = (const char *const *)own->local,
        .n_map_local = nlocal,
        .block_list = (const char *const *)own->block,
        .n_block_list = nblock,
        .modify_headers = (const char *const *)own->headers,
        .n_modify_headers = nheaders,
        .dns_overrides = (const char *const *)own->dns,
        .n_dns_overrides = ndns,
        .modify_body = (const char *const *)own->body,
        .n_modify_body = nbody,
        .upstream_cert_verify = reel_config_get_bool(cfg, "upstream_cert_verify"),
        .intercept_starttls = reel_config_get_bool(cfg, "intercept_starttls"),
        .http2 = reel_config_get_bool(cfg, "http2"),
        .h2c_upstreams = reel_config_get(cfg, "h2c_upstreams", NULL),
        .idle_timeout_s = (uint32_t)reel_config_get_int(cfg, "idle_timeout"),
        .head_timeout_s = (uint32_t)reel_config_get_int(cfg, "head_timeout"),
        .upstream_timeout_s = (uint32_t)reel_config_get_int(cfg, "upstream_timeout"),
        .max_head_size = (size_t)reel_config_get_int(cfg, "max_head_size"),
        .max_client_conns = (uint32_t)reel_config_get_int(cfg, "max_client_conns"),
        .proxyauth = reel_config_get(cfg, "proxyauth", NULL),
        .upstream_proxy = reel_config_get(cfg, "upstream_proxy", NULL),
        .upstream_proxyauth = reel_config_get(cfg, "upstream_proxyauth", NULL),
        .upstream_no_proxy = reel_config_get(cfg, "upstream_no_proxy", NULL),
        .reverse_to = reel_config_get(cfg, "reverse_to", NULL),
        .transparent = reel_config_get_bool(cfg, "transparent"),
        .upstream_insecure_hosts = reel_config_get(cfg, "upstream_insecure_hosts", NULL),
        .upstream_client_certs = reel_config_get(cfg, "upstream_client_certs", NULL),
        .workers = (unsigned)reel_config_get_int(cfg, "workers"),
    };
    if (s->workers == 0)
        s->workers = uv_available_parallelism(); /* one per core */
    return own;
}

void reel_daemon_proxy_settings_free(void *owned) {
    struct lists *own = owned;
    if (own == NULL)
        return;
    free(own->ignore);
    free(own->map);
    free(own->local);
    free(own->block);
    free(own->headers);
    free(own->dns);
    free(own->body);
    free(own);
}
