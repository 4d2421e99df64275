/* Socket addresses and address prefixes: parse "ADDR[:PORT]" and "ADDR/BITS", compare, match
 * and format them. Pure functions over struct sockaddr_storage (only options_host_addrs() asks
 * the kernel, for the interface list); they never read settings or files. The exports keep the
 * options_ prefix the daemon, the tool and the tests know them by. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/** An address prefix (CIDR). */
struct options_cidr {
	int family;      /**< AF_INET or AF_INET6. */
	uint8_t addr[16];
	unsigned prefix; /**< Bits that must match. */
};

/** Parse "ADDR", "ADDR:PORT", "[V6]" or "[V6]:PORT" (a bare IPv6 address is accepted too).
 *  @return 0 or -EINVAL. */
int options_parse_addr(const char *s, uint16_t default_port, struct sockaddr_storage *ss);

/** Parse "ADDR/BITS" or a bare address (all bits). @return 0 or -EINVAL. */
int options_parse_cidr(const char *s, struct options_cidr *c);

/** Is the address in one of the n prefixes? */
int options_cidr_match(const struct options_cidr *list, unsigned n, const struct sockaddr_storage *ss);

/** The length of ss's sockaddr for its family (bind, connect). */
socklen_t options_addr_len(const struct sockaddr_storage *ss);

/** ss's port, in host order. */
uint16_t options_port(const struct sockaddr_storage *ss);

/** Do a and b hold the same family, address and port? */
int options_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/** The index of ss in list[0..n) (options_same_addr), or -1. */
int options_find_addr(const struct sockaddr_storage *list, unsigned n,
		      const struct sockaddr_storage *ss);

/** Is ss the wildcard address of its family (0.0.0.0 or ::)? */
int options_is_wildcard(const struct sockaddr_storage *ss);

/** This host's interface addresses (each as a full-length prefix), at most max, into list.
 *  @return how many. */
unsigned options_host_addrs(struct options_cidr *list, unsigned max);

/** "ADDR:PORT" or "[V6]:PORT" for logs. */
void options_format_addr(const struct sockaddr_storage *ss, char *buf, size_t cap);
