/* resolv.conf's "nameserver" lines as upstream addresses, into a plain list with its bound (the
 * settings hand it options.upstream). Line by line; every
 * other line is ignored, and it never writes the file or goes past max. */
#include "config.h"

#include "resolver/base/resolv_conf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "resolver/base/addr.h"

int resolv_conf_read(const char *path, struct sockaddr_storage *list, unsigned *n, unsigned max)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char line[512];
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		char ns[256];
		if (sscanf(line, " nameserver %255s", ns) != 1)
			continue;
		/* A scoped IPv6 address (fe80::1%eth0) is not supported; skip it. */
		if (strchr(ns, '%') || *n >= max)
			continue;
		if (options_parse_addr(ns, 53, &list[*n]) == 0) {
			(*n)++;
			found++;
		}
	}
	fclose(f);
	return found;
}
