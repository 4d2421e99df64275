/* Reading the --config file: one line at a time into a fixed buffer, the name looked up in
 * options_table_long, the value handed to options_table_apply() with from_flags 0 so that later
 * flags replace the file's lists. It never writes the file and never checks a value itself. */
#include "config.h"

#include "resolver/base/options_file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int options_file_load(struct options *o, const char *path, struct options_table_lists *ls,
		      char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "--config: cannot open '%s': %s", path, strerror(errno));
		return -EINVAL;
	}
	char line[1024];
	int lineno = 0, rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		lineno++;
		o->config_unterminated = strchr(line, '\n') == NULL;
		char *s = line + strspn(line, " \t");
		s[strcspn(s, "\r\n")] = '\0';
		if (!*s || *s == '#')
			continue;
		char *val = s + strcspn(s, " \t");
		if (*val)
			*val++ = '\0';
		val += strspn(val, " \t");
		int opt = 0;
		for (const struct option *lo = options_table_long; lo->name; lo++)
			if (strcmp(lo->name, s) == 0)
				opt = lo->val;
		if (!opt || opt == OPT_CONFIG || opt == OPT_HELP || opt == OPT_VERSION ||
		    opt == OPT_CHECK_CONFIG) {
			snprintf(err, errlen, "%s:%d: unknown setting '%s'", path, lineno, s);
			rc = -EINVAL;
			break;
		}
		char msg[512];
		rc = options_table_apply(o, opt, s, val, 0, ls, msg, sizeof(msg));
		if (rc < 0)
			snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
	}
	fclose(f);
	return rc;
}
