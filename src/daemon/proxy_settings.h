/* The proxy's settings from reel's layered configuration. */
#ifndef REEL_DAEMON_PROXY_SETTINGS_H
#define REEL_DAEMON_PROXY_SETTINGS_H

#include "core/proxy.h"
#include "session/config.h"

/** Proxy settings read from cfg. Returns owned storage behind its lists
 * (ignore_hosts, map_remote, map_local, block_list, modify_headers,
 * modify_body, dns_overrides): reel_daemon_proxy_settings_free it once the proxy has
 * taken the settings; the other strings are borrowed from cfg. */
void *reel_daemon_proxy_settings(const reel_config_t *cfg, reel_proxy_settings_t *s);
void reel_daemon_proxy_settings_free(void *owned);

#endif
