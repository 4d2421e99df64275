/* The nameservers of a resolv.conf file, the default upstreams when no --upstream is given.
 * It fills a plain address list, so it knows nothing of the settings (options.c hands it
 * options.upstream); it never writes the file and never resolves anything. */
#pragma once

#include <sys/socket.h>

/** Append the nameservers of the resolv.conf at path to list[*n..max), port 53, skipping
 *  scoped IPv6 addresses and those past max. @return how many were added, or -errno when the
 *  file cannot be opened. */
int resolv_conf_read(const char *path, struct sockaddr_storage *list, unsigned *n, unsigned max);
