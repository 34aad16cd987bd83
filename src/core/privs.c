/* See privs.h. */
#include "core/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* A whole decimal number that fits an id_t, or -1. */
static long long parse_id(const char *s)
{
    if (!*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0 || v > 0xfffffffeLL)
        return -1;
    return v;
}

int privs_resolve(const char *user, const char *group, struct sl_run_as *out, char *why, size_t whylen)
{
    struct passwd *pw = getpwnam(user);
    long long id = parse_id(user);
    if (!pw && id >= 0)
        pw = getpwuid((uid_t)id);
    if (pw) {
        out->uid = pw->pw_uid;
        out->gid = pw->pw_gid;
    } else if (id >= 0 && group) {
        /* A bare number with no passwd entry (a container's uid) is fine
         * when the group is given: there is no primary group to take. */
        out->uid = (uid_t)id;
    } else {
        snprintf(why, whylen, id >= 0 ? "no user with uid %s (give `group` too, or add the user)"
                                      : "no such user \"%s\"", user);
        return PRIVS_BAD_USER;
    }
    if (group) {
        struct group *gr = getgrnam(group);
        long long gid = parse_id(group);
        if (gr)
            out->gid = gr->gr_gid;
        else if (gid >= 0)
            out->gid = (gid_t)gid;
        else {
            snprintf(why, whylen, "no such group \"%s\"", group);
            return PRIVS_BAD_GROUP;
        }
    }
    out->set = true;
    return 0;
}

bool privs_can_switch(const struct sl_run_as *ra)
{
    return !ra->set || geteuid() == 0 || (geteuid() == ra->uid && getegid() == ra->gid);
}

int privs_drop(const struct sl_run_as *ra, char *err, size_t errlen)
{
    if (!ra->set || (getuid() == ra->uid && geteuid() == ra->uid && getgid() == ra->gid))
        return 0;
    /* The user's own supplementary groups (as login would give them);
     * a uid without a passwd entry gets none. */
    struct passwd *pw = getpwuid(ra->uid);
    int rc = pw ? initgroups(pw->pw_name, ra->gid) : setgroups(0, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "user %s: setting its groups: %s", ra->user, strerror(errno));
        return -1;
    }
    if (setresgid(ra->gid, ra->gid, ra->gid) < 0) {
        snprintf(err, errlen, "group %u: setgid: %s", (unsigned)ra->gid, strerror(errno));
        return -1;
    }
    if (setresuid(ra->uid, ra->uid, ra->uid) < 0) {
        snprintf(err, errlen, "user %s: setuid: %s", ra->user, strerror(errno));
        return -1;
    }
    /* Belt and braces: a drop that could be undone is no drop. */
    if (ra->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, errlen, "user %s: root could be taken back after setuid", ra->user);
        return -1;
    }
    /* A change of uid makes the process non-dumpable: no core file when
     * it crashes, and sanitizers cannot inspect it. nginx sets it back
     * for the same reasons; its files are still only the user's to read. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    return 0;
}

static struct sl_run_as armed;
static char armed_user[64];

void privs_arm(const struct sl_run_as *ra)
{
    armed = *ra;
    snprintf(armed_user, sizeof armed_user, "%s", ra->user ? ra->user : "?");
    armed.user = armed_user;
    armed.group = NULL;
}

int privs_drop_armed(char *err, size_t errlen)
{
    return privs_drop(&armed, err, errlen);
}

uid_t privs_file_owner(void)
{
    return armed.set && geteuid() == 0 ? armed.uid : (uid_t)-1;
}
