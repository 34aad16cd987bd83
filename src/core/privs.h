/* Running as another user: the `user` and `group` root keys.
 *
 * The daemon starts as root so that it can bind ports below 1024, read
 * keys only root may read and open its log files; the processes that serve
 * clients then give root up. `sluice proxy` does what nginx does: the
 * master keeps root (a reload may bind a new port, SIGUSR1 reopens the
 * logs, workers are forked from it with the keys already read) and every
 * worker drops to `user` once it has set itself up, before it accepts a
 * single connection.
 *
 * privs_arm() records, in the process that calls it, what a later
 * privs_drop_armed() drops to; a worker arms right after fork() (from its
 * generation's configuration) and drops once its sockets, access logs and
 * TLS contexts are open.
 */
#ifndef SLUICE_CORE_PRIVS_H
#define SLUICE_CORE_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What `user`/`group` resolved to (config load). */
struct sl_run_as {
    bool set;             /* `user` was given */
    char *user;           /* the name as written (or a number) */
    char *group;          /* NULL: the user's primary group */
    uid_t uid;
    gid_t gid;
};

/* Resolve a user (name or number) and a group (name, number or NULL for
 * the user's primary group) into out->uid/gid. Returns 0, or
 * PRIVS_BAD_USER / PRIVS_BAD_GROUP with the reason ("no such user
 * \"nobdy\"") in why. */
enum { PRIVS_BAD_USER = -1, PRIVS_BAD_GROUP = -2 };
int privs_resolve(const char *user, const char *group, struct sl_run_as *out, char *why, size_t whylen);

/* Whether this process can switch to ra (it is root, or already runs as
 * it). ra->set false: true. */
bool privs_can_switch(const struct sl_run_as *ra);

/* Become ra: supplementary groups (the user's, initgroups), then the gid,
 * then the uid; and check that root cannot be taken back. Returns 0, or
 * -1 with the reason in err. Nothing when !ra->set or when this process
 * already is ra->uid. */
int privs_drop(const struct sl_run_as *ra, char *err, size_t errlen);

/* What privs_drop_armed() will drop to in this process (copied). */
void privs_arm(const struct sl_run_as *ra);
int privs_drop_armed(char *err, size_t errlen);

/* The owner files reopened for the dropped processes must have so that
 * they can reopen them too: the armed uid, or (uid_t)-1 when nothing is
 * armed or this process is not root. */
uid_t privs_file_owner(void);

#endif
