/* The version every part of Sluice reports (`sluice version`, sluice_info,
 * /api/status). The build may set it with -DSLUICE_VERSION=... */
#ifndef SLUICE_CORE_VERSION_H
#define SLUICE_CORE_VERSION_H

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.1.0"
#endif

#endif
