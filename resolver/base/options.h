/* The daemon's settings: defaults, an optional --config file of "key value" lines using the
 * long flag names, then the command line, which wins. Parsing never exits the process; main()
 * turns a failure into one line on stderr and exit status 2. The public header of the settings:
 * struct options and its table are options_table.h's, the address helpers addr.h's. */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include "resolver/base/addr.h"
#include "resolver/base/options_table.h"

/** Outcome of options_parse besides errors. */
enum { OPTIONS_RUN = 0, OPTIONS_EXIT = 1 };

/** Fill o from defaults, --config and argv. --help and --version print to stdout and return
 *  OPTIONS_EXIT. @return OPTIONS_RUN, OPTIONS_EXIT, or -EINVAL with a message in err. */
int options_parse(struct options *o, int argc, char **argv, char *err, size_t errlen);

/** Append the nameservers of a resolv.conf file. @return how many, or a negative errno. */
int options_read_resolv_conf(struct options *o, const char *path);

/** Free what options_parse() allocated for o (the local data lines); o itself is the caller's. */
void options_clear(struct options *o);

/** Write the effective settings as config-file lines (the Redis password hidden). */
void options_print(const struct options *o, FILE *f);

/** Upstream i as given: "ADDR:PORT", or "tls://ADDR:PORT[#NAME]". */
void options_format_upstream(const struct options *o, unsigned i, char *buf, size_t cap);
