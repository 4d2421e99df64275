/* The table of default local zones, in lookup format, with a bit per zone that --no-local-zone
 * clears. */
#include "config.h"

#include "resolver/local.h"

#include <string.h>
#include <strings.h>

struct zone {
	const char *text;
	enum local_type type;
};

/* RFC 9462 (DDR): a _dns.resolver.arpa SVCB answer from a public upstream would send Windows,
 * Apple and Android clients to that upstream's DoH past embargo; until embargo has encrypted
 * listeners of its own, the zone has no data. The canaries answer NXDOMAIN, as Pi-hole does:
 * Firefox then keeps its default DoH off, and Apple's Private Relay stays off. */
static const struct zone ZONES[] = {
	{"resolver.arpa", LOCAL_NODATA},
	{"use-application-dns.net", LOCAL_NXDOMAIN},
	{"mask.icloud.com", LOCAL_NXDOMAIN},
	{"mask-h2.icloud.com", LOCAL_NXDOMAIN},
};
#define NZONES (sizeof(ZONES) / sizeof(ZONES[0]))

static struct name keys[NZONES];

int local_zone_index(const char *text)
{
	size_t len = strlen(text);
	if (len > 0 && text[len - 1] == '.')
		len--;
	for (size_t i = 0; i < NZONES; i++)
		if (strlen(ZONES[i].text) == len && strncasecmp(ZONES[i].text, text, len) == 0)
			return (int)i;
	return -1;
}

void local_init(void)
{
	for (size_t i = 0; i < NZONES; i++)
		name_from_text(&keys[i], ZONES[i].text, strlen(ZONES[i].text));
}

bool local_find(const struct options *o, const struct name *qname, struct local_match *m)
{
	for (size_t i = 0; i < NZONES; i++) {
		const struct name *k = &keys[i];
		/* The zone's key without its final 0 is a prefix of every name at or below it. */
		if (qname->keylen < k->keylen || memcmp(qname->key, k->key, k->keylen - 1u) != 0)
			continue;
		if (o->local_off & (1u << i))
			return false;
		m->type = ZONES[i].type;
		m->depth = k->nlabels;
		return true;
	}
	return false;
}
