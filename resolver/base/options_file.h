/* The --config file: "name value" lines using the long flag names, '#' comments and blank lines.
 * Each line goes through options_table_apply() like a flag, so the file and the command line
 * cannot drift apart; the file cannot name another file (config, check-config) or ask for help.
 * It never writes the file; defaults and the order against the flags are options_parse()'s. */
#pragma once

#include <stddef.h>

#include "resolver/base/options_table.h"

/** Apply the settings of the config file at path to o, in file order, stopping at the first
 *  bad line; options.config_unterminated tells whether the last line read lacked its newline.
 *  @return 0, or -EINVAL with "PATH:LINE: message" (or why it cannot be opened) in err. */
int options_file_load(struct options *o, const char *path, struct options_table_lists *ls,
		      char *err, size_t errlen);
