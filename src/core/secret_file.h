/* Reading a small file that holds a secret (TLS ticket keys, the l4 sync
 * key): a regular file, read whole into the caller's buffer, with the
 * reasons an operator needs when it is not right. Written once here for
 * every tier that takes a key file.
 */
#ifndef SLUICE_CORE_SECRET_FILE_H
#define SLUICE_CORE_SECRET_FILE_H

#include <stddef.h>

/* secret_file_read() flags */
#define SECRET_FILE_PRIVATE 0x1  /* refuse a file group or others may access */

#define SECRET_FILE_TOO_BIG (-2)

/* Read path into buf (at most cap bytes). Returns the number of bytes
 * read, or -1 with a reason in err ("cannot open PATH: ...", "PATH is not
 * a regular file", "PATH is accessible by group or others (mode 644):
 * chmod 600 it"), or SECRET_FILE_TOO_BIG with "PATH is larger than CAP
 * bytes" (a caller that knows what the bytes are may say it better). The
 * bytes of a refused file do not stay in buf. */
long secret_file_read(const char *path, void *buf, size_t cap, unsigned flags, char *err, size_t errlen);

/* A token file's token: buf[0..len) cut at its first line break, trailing
 * white space dropped, NUL-terminated (buf has room for len + 1 bytes).
 * Returns its length; 0 when the first line is empty, or when it holds a
 * NUL (a token is text). */
size_t secret_first_line(char *buf, size_t len);

#endif
