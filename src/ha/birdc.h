/* A client of BIRD's control socket (what birdc speaks), for the HA tier.
 *
 * The protocol (BIRD's doc/reply_codes and its client's reader): the
 * server greets with "0001 BIRD 2.0.12 ready."; the client sends one
 * command per line; each reply line is
 *
 *     CCCC-text    a line of code CCCC, more lines follow
 *     CCCC text    the last line of the reply (its code is the reply's)
 *      text        (a space) a continuation: same code as the line before
 *     +text        a spontaneous printout, not part of any reply (ignored)
 *
 * Codes: 0xxx done (0000 OK, 0001 hello, 0003 reconfigured, 0008..0011
 * disable/enable, 0014 route count, 0020 configuration OK), 1xxx table
 * rows (1002 protocols, 1007 routes, 1020 BFD sessions), 2xxx table
 * headings, 8xxx run-time errors (8002 configuration file error, 8003 no
 * protocols match), 9xxx parse errors of the command (9001 syntax error).
 *
 * Everything here is blocking with a deadline (a command takes
 * milliseconds): the companion calls it from the daemon's loop. The reply
 * reader (birdc_reply_add_line) and the parsers of the replies
 * (birdc_parse_*) are pure, and fuzzed by tests/fuzz/fuzz_birdc.c.
 */
#ifndef SLUICE_HA_BIRDC_H
#define SLUICE_HA_BIRDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BIRDC_MAX_REPLY_BYTES (16u << 20)   /* a full table dump of a small router fits */
#define BIRDC_MAX_LINE 4096
#define BIRDC_DEFAULT_TIMEOUT_MS 2000

/* Codes worth naming. */
enum {
    BIRDC_OK = 0,
    BIRDC_HELLO = 1,
    BIRDC_READING_CONFIG = 2,
    BIRDC_RECONFIGURED = 3,
    BIRDC_RECONFIG_IN_PROGRESS = 4,
    BIRDC_RECONFIG_QUEUED = 5,
    BIRDC_RECONFIG_IGNORED_SHUTDOWN = 6,
    BIRDC_ALREADY_DISABLED = 8,
    BIRDC_DISABLED = 9,
    BIRDC_ALREADY_ENABLED = 10,
    BIRDC_ENABLED = 11,
    BIRDC_ROUTE_COUNT = 14,
    BIRDC_RECONFIG_QUEUE_REPLACED = 17,
    BIRDC_CONFIG_OK = 20,
    BIRDC_ROW_PROTOCOL = 1002,
    BIRDC_ROW_ROUTE = 1007,
    BIRDC_ROW_ROUTE_DETAIL = 1008,     /* `all`: "\tType: BGP univ" */
    BIRDC_ROW_ROUTE_ATTR = 1012,       /* `all`: "\tBGP.as_path: 65000 65010" */
    BIRDC_ROW_BFD = 1020,
    BIRDC_ERR_CONFIG = 8002,
    BIRDC_ERR_NO_PROTOCOLS = 8003,
};

/* One line of a reply. */
struct birdc_line {
    int code;          /* its own, or that of the line it continues */
    char *text;        /* after the code and separator (after the space of a continuation) */
};

struct birdc_reply {
    int code;          /* of the last line: < 1000 done, >= 8000 an error; -1 until done */
    struct birdc_line *lines;   /* every line, the last one included */
    size_t n, cap;
    size_t bytes;
    bool done;
};

/* Add one line of the stream (without its '\n'; a trailing '\r' is
 * kept as text). Returns 1 when it ended the reply, 0 when more lines
 * follow, -1 (reason in err) for a line that is not BIRD's protocol or a
 * reply past BIRDC_MAX_REPLY_BYTES. */
int birdc_reply_add_line(struct birdc_reply *r, const char *line, size_t len, char *err, size_t errlen);
void birdc_reply_free(struct birdc_reply *r);
/* An error reply: its last line's code is 8xxx or 9xxx. */
bool birdc_reply_is_error(const struct birdc_reply *r);
/* The last line's text ("Reconfigured", "syntax error, ..."); "" if none. */
const char *birdc_reply_message(const struct birdc_reply *r);

/* ---- parsed replies ---- */

/* A row of `show protocols`. */
struct birdc_protocol {
    char name[64];
    char proto[16];    /* "BGP", "BFD", "Direct", "Device" */
    char table[64];    /* "---" when the protocol has several channels */
    char state[16];    /* "up", "start", "down", "flush" */
    char since[40];
    char info[128];    /* the whole column: "Active        Socket: Connection refused" */
    char info_state[24];   /* its first word; BGP: "Established", "Active", "Connect", "Idle", "OpenSent"... */
    char info_reason[104]; /* the rest: BGP's last error ("Socket: Connection refused"), or "" */
};

/* A row of `show bfd sessions`. */
struct birdc_bfd_session {
    char proto[64];    /* the BFD protocol it belongs to */
    char peer[48];
    char ifname[32];
    char state[16];    /* "Up", "Down", "Init", "AdminDown" */
    char since[40];
    uint32_t interval_ms, timeout_ms;
};

/* Parse a `show protocols` reply into a malloc'd array (free it). Returns
 * 0, or -1 with err (an error reply, or a row that cannot be read). */
int birdc_parse_protocols(const struct birdc_reply *r, struct birdc_protocol **out, size_t *n, char *err,
                          size_t errlen);
int birdc_parse_bfd_sessions(const struct birdc_reply *r, struct birdc_bfd_session **out, size_t *n, char *err,
                             size_t errlen);
/* `show route ... count`: the first number of the "Total: X of Y routes"
 * line (routes that passed the filter). */
int birdc_parse_route_count(const struct birdc_reply *r, uint32_t *count, char *err, size_t errlen);
/* `show route export PROTO`: the prefixes ("10.0.0.1/32"), each once, in
 * order, as a malloc'd array of fixed-size strings (free it). */
struct birdc_prefix {
    char text[52];
};
int birdc_parse_prefixes(const struct birdc_reply *r, struct birdc_prefix **out, size_t *n, char *err,
                         size_t errlen);

/* A route of `show route ... all` (rows 1007, their 1012 attributes):
 *
 *   1007-10.0.0.1/32   unicast [sluice_bgp_10_0_0_1 19:50:10.103 from 10.0.0.1] * (100) [AS65010i]
 *        \tvia 10.0.0.1 on eth0
 *   1008-\tType: BGP univ
 *   1012-\tBGP.origin: IGP
 *        \tBGP.as_path: 65000 65010 65010
 *        \tBGP.community: (65010,1001) (65010,3000)
 *
 * (a second route of the same network begins with blanks instead of the
 * network). Only what the HA tier reads is kept: the network, the protocol
 * it came from, its AS path (AS sets' braces dropped, their members kept)
 * and its standard and large communities. */
#define BIRDC_MAX_AS_PATH 64
#define BIRDC_MAX_COMMUNITIES 32
struct birdc_route {
    char prefix[52];
    char proto[64];
    uint32_t as_path[BIRDC_MAX_AS_PATH];
    size_t as_path_len;
    bool as_path_cut;        /* longer than BIRDC_MAX_AS_PATH: the first ones are kept */
    uint32_t community[BIRDC_MAX_COMMUNITIES][2];
    size_t n_community;
    uint32_t large_community[BIRDC_MAX_COMMUNITIES][3];
    size_t n_large_community;
};
int birdc_parse_routes(const struct birdc_reply *r, struct birdc_route **out, size_t *n, char *err, size_t errlen);

/* ---- the connection ---- */

struct birdc {
    int fd;
    uint32_t timeout_ms;
    char buf[BIRDC_MAX_LINE];   /* bytes read, not yet a whole line */
    size_t len;
    char version[64];           /* from the greeting: "BIRD 2.0.12 ready." */
};

/* Connect to the control socket at path and read BIRD's greeting, all
 * within timeout_ms. Returns 0, or -1 with err ("cannot connect to
 * /run/sluice/bird.ctl: Connection refused"). */
int birdc_open(struct birdc *b, const char *path, uint32_t timeout_ms, char *err, size_t errlen);
void birdc_close(struct birdc *b);

/* Send one command and read its whole reply (within the timeout). Returns
 * 0 with the reply (which may be an error reply: birdc_reply_is_error),
 * or -1 with err when the connection failed or the stream is not BIRD's.
 * After a -1 the connection is closed. */
int birdc_command(struct birdc *b, const char *cmd, struct birdc_reply *r, char *err, size_t errlen);

/* `configure` (file NULL: BIRD's own config file, as in mode external) or
 * `configure "FILE"`. BIRD parses the whole file before it applies any of
 * it and keeps running its old configuration when the new one is bad, so
 * no `configure check` is needed first. Returns 0 when BIRD took it
 * (reconfigured, or in progress), -1 with err ("/run/sluice/bird.conf:12:3
 * syntax error ..." from BIRD's 8002). */
int birdc_configure(struct birdc *b, const char *file, char *err, size_t errlen);
/* `configure check "FILE"`: 0 if BIRD would take it, -1 with its reason. */
int birdc_configure_check(struct birdc *b, const char *file, char *err, size_t errlen);
int birdc_show_protocols(struct birdc *b, struct birdc_protocol **out, size_t *n, char *err, size_t errlen);
int birdc_show_bfd_sessions(struct birdc *b, struct birdc_bfd_session **out, size_t *n, char *err, size_t errlen);
/* Routes protocol `proto` exports (what a BGP session announces). */
int birdc_exported_count(struct birdc *b, const char *proto, uint32_t *count, char *err, size_t errlen);
int birdc_show_exported(struct birdc *b, const char *proto, struct birdc_prefix **out, size_t *n, char *err,
                        size_t errlen);
/* The host routes (/32, /128) whose AS path holds asn in the import table
 * (`import table on`: what the neighbor sent, before the import filter) of
 * the channel proto.ipv4 (ipv6 false) or proto.ipv6. A protocol that is
 * down has no import table: no routes, not an error. */
int birdc_show_import_routes(struct birdc *b, const char *proto, bool ipv6, uint32_t asn, struct birdc_route **out,
                             size_t *n, char *err, size_t errlen);
/* enable/disable a protocol; "already enabled/disabled" is success. */
int birdc_enable(struct birdc *b, const char *proto, char *err, size_t errlen);
int birdc_disable(struct birdc *b, const char *proto, char *err, size_t errlen);

/* A protocol name that can go into a command: [A-Za-z_][A-Za-z0-9_]{0,63}. */
bool birdc_name_ok(const char *name);

#endif
