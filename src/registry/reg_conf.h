/* The registry's part of the configuration: the registry: section (see
 * docs/configuration.md, "registry").
 *
 * Registered with the core's section table by the registry module; a
 * loaded configuration's part is reg_conf(cfg) (present is false when the
 * file has no registry: key). The HTTP API reads service settings and
 * instances with the same parsers (reg_conf_parse_settings_body,
 * reg_conf_parse_instance_body), so it cannot accept what the file would
 * refuse and its errors name the field the same way.
 */
#ifndef SLUICE_REGISTRY_REG_CONF_H
#define SLUICE_REGISTRY_REG_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"
#include "core/config.h"
#include "registry/reg_model.h"

#define REG_CONF_MAX_LISTEN 8
#define REG_CONF_MAX_NS 8
#define REG_CONF_DNS_NAME_MAX 255

enum reg_store_kind { REG_STORE_EMBEDDED, REG_STORE_ETCD };

/* An instance as the file or an API body gives it. */
struct cfg_reg_instance {
    char *id;                      /* NULL: the address text ("10.1.0.10:80") */
    struct sl_addr addr;           /* IP and port */
    uint32_t weight;               /* default REG_WEIGHT_DEFAULT */
    char *datacenter, *region;     /* NULL: unknown */
    struct reg_label *labels;
    uint32_t n_labels;
    bool enabled;                  /* default true */
    bool ephemeral;                /* API only (the file's are persistent) */
    int line;
};

struct cfg_reg_service {
    char *name;
    struct reg_service_settings settings;
    struct cfg_reg_instance *instances;
    size_t n_instances;
    int line;
};

struct cfg_reg_subnet {
    char *cidr;
    char *datacenter, *region;
    int line;
};

/* registry.dns: what the DNS server (reg_dns.h) is started with. */
struct cfg_reg_dns {
    bool present;                  /* the file has registry.dns */
    struct sl_addr listen[REG_CONF_MAX_LISTEN];
    size_t n_listen;
    char zone[REG_CONF_DNS_NAME_MAX + 1];   /* lower case, ends with '.' */
    char ns[REG_CONF_MAX_NS][REG_CONF_DNS_NAME_MAX + 1];
    size_t n_ns;                   /* 0: ns1.ZONE */
    char soa_mbox[REG_CONF_DNS_NAME_MAX + 1];  /* "": hostmaster.ZONE */
    uint32_t soa_refresh, soa_retry, soa_expire, soa_minimum;  /* seconds */
    uint32_t udp_max;              /* bytes, 512..65535 */
    uint32_t tcp_max_conns, tcp_idle_ms;
    int line;
};

struct cfg_registry {
    bool present;                  /* the file has a registry: section */
    char *node;                    /* default: the host name */
    char *datacenter, *region;     /* this node's; NULL: unknown */
    char *data_dir;                /* the embedded store's directory */
    enum reg_store_kind store;
    struct {
        char **endpoints;
        size_t n_endpoints;
        char *prefix;              /* default /sluice/registry/ */
        uint32_t lease_ttl_ms;     /* default 10 s */
    } etcd;
    char *token;                   /* NULL: writes are open; token_file is read into it */
    int store_line;
    struct {
        uint32_t max_watchers;     /* default 2000 */
        uint32_t merge_window_ms;  /* default 50 ms */
        uint32_t max_wait_ms;      /* default 5 m */
    } api;
    struct cfg_reg_dns dns;
    struct cfg_reg_subnet *subnets;
    size_t n_subnets;
    struct reg_model_conf expiry;
    struct cfg_reg_service *services;
    size_t n_services;
    int line;
};

struct reg_dns_conf;

/* What the DNS server is started with (reg_dns.h), from registry.dns. */
void reg_conf_dns(const struct cfg_reg_dns *c, struct reg_dns_conf *out);

/* The section: root key registry. */
extern const struct config_section reg_conf_section;

/* The registry part of cfg; NULL only if the section was never registered. */
struct cfg_registry *reg_conf(const struct sl_config *cfg);

const char *reg_store_kind_name(enum reg_store_kind k);  /* "embedded", "etcd" */

/* An instance as a model spec (pointers into inst). */
void reg_conf_instance_spec(const struct cfg_reg_instance *inst, struct reg_instance_spec *out);
void reg_conf_instance_free(struct cfg_reg_instance *inst);

/* A PUT body of /api/registry/services/NAME: the keys of one
 * registry.services entry without name and instances. Returns 0 with *out
 * filled (free it with reg_service_settings_free), or -1 with the first
 * problem in err as "path: reason" ("heartbeat.interval: expected ..."). */
int reg_conf_parse_settings_body(const char *text, size_t len, struct reg_service_settings *out, char *err,
                                 size_t errlen);

/* A PUT body of .../instances/ID: the keys of one instance, ephemeral
 * allowed. Errors as above. */
int reg_conf_parse_instance_body(const char *text, size_t len, struct cfg_reg_instance *out, char *err,
                                 size_t errlen);

/* A PATCH body: {"weight"?, "enabled"?}; at least one. *has_* say which. */
int reg_conf_parse_patch_body(const char *text, size_t len, bool *has_weight, uint32_t *weight, bool *has_enabled,
                              bool *enabled, char *err, size_t errlen);

#endif
