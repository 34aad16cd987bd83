/* Text into HTML: the five characters that could open markup or end an
 * attribute value become entities, every other byte is copied as is. For
 * pages the daemon renders (the proxy's /stats), where names come from the
 * configuration, addresses from a registry and results from the network. */
#ifndef SLUICE_LIB_HTML_H
#define SLUICE_LIB_HTML_H

#include "lib/strbuf.h"

/* Append s (NULL: nothing) to out, escaped: & < > " ' */
void html_escape(struct strbuf *out, const char *s);

#endif
