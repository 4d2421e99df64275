/* Socket addresses and address prefixes (declared in addr.h, which says why the names keep the
 * options_ prefix): text to sockaddr and back, comparisons, prefix matches, and this host's
 * interface addresses. It must not read settings or files: options_table.c, resolv_conf.c and
 * the daemon's layers call these with what they have parsed. */
#include "config.h"

#include "resolver/base/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int options_parse_addr(const char *s, uint16_t default_port, struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL;
	size_t hlen;
	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end)
			return -EINVAL;
		hlen = (size_t)(end - s - 1);
		if (hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hlen);
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return -EINVAL;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL; /* A bare IPv6 address. */
		hlen = colon ? (size_t)(colon - s) : strlen(s);
		if (hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, hlen);
		if (colon)
			port = colon + 1;
	}
	host[hlen] = '\0';
	long p = default_port;
	if (port) {
		char *end;
		p = strtol(port, &end, 10);
		if (*port == '\0' || *end != '\0' || p < 1 || p > 65535)
			return -EINVAL;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)p);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)p);
		return 0;
	}
	return -EINVAL;
}

int options_parse_cidr(const char *s, struct options_cidr *c)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	memset(c, 0, sizeof(*c));
	unsigned max;
	if (inet_pton(AF_INET, host, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}
	c->prefix = max;
	if (slash) {
		char *end;
		long bits = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || bits < 0 || bits > (long)max)
			return -EINVAL;
		c->prefix = (unsigned)bits;
	}
	return 0;
}

int options_cidr_match(const struct options_cidr *list, unsigned n, const struct sockaddr_storage *ss)
{
	const uint8_t *a = ss->ss_family == AF_INET6
				   ? ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr
				   : (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
	for (unsigned i = 0; i < n; i++) {
		const struct options_cidr *c = &list[i];
		if (c->family != ss->ss_family)
			continue;
		unsigned full = c->prefix / 8, rest = c->prefix % 8;
		if (memcmp(a, c->addr, full) != 0)
			continue;
		if (rest && ((a[full] ^ c->addr[full]) & (0xFF00 >> rest) & 0xFF))
			continue;
		return 1;
	}
	return 0;
}

unsigned options_host_addrs(struct options_cidr *list, unsigned max)
{
	struct ifaddrs *ifa;
	unsigned n = 0;
	if (getifaddrs(&ifa) < 0)
		return 0;
	for (struct ifaddrs *it = ifa; it && n < max; it = it->ifa_next) {
		if (!it->ifa_addr ||
		    (it->ifa_addr->sa_family != AF_INET && it->ifa_addr->sa_family != AF_INET6))
			continue;
		struct options_cidr *c = &list[n++];
		memset(c, 0, sizeof(*c));
		c->family = it->ifa_addr->sa_family;
		c->prefix = c->family == AF_INET6 ? 128 : 32;
		memcpy(c->addr,
		       c->family == AF_INET6
			       ? (const void *)&((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr
			       : (const void *)&((struct sockaddr_in *)it->ifa_addr)->sin_addr,
		       c->prefix / 8);
	}
	freeifaddrs(ifa);
	return n;
}

socklen_t options_addr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

uint16_t options_port(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
					      : ((const struct sockaddr_in *)ss)->sin_port);
}

int options_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

int options_find_addr(const struct sockaddr_storage *list, unsigned n,
		      const struct sockaddr_storage *ss)
{
	for (unsigned i = 0; i < n; i++)
		if (options_same_addr(&list[i], ss))
			return (int)i;
	return -1;
}

int options_is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

void options_format_addr(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	char host[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, cap, "%s:%u", host, ntohs(in->sin_port));
	}
}
