/* Fuzz target: everything that reads packets from the network. Queries go through the parser and,
 * when accepted, every answer builder; any bytes also go through the response-side readers
 * (record iteration, compressed names, TTL rules, EDNS option removal), as an upstream's answer
 * would. Every name the parsers accept must be the name ldns reads from the same octets. Built
 * for libFuzzer with --enable-fuzzing; `make check` replays the corpus. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "resolver/query/answer.h"
#include "resolver/query/cache.h"
#include "resolver/base/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* n, parsed by embargo from pkt[off], must be what ldns reads there, lower-cased. */
static void agree_with_ldns(const struct name *n, const uint8_t *pkt, size_t len, size_t off)
{
	ldns_rdf *d = NULL;
	size_t pos = off;
	if (ldns_wire2dname(&d, pkt, len, &pos) != LDNS_STATUS_OK)
		abort(); /* embargo accepted a name ldns refuses. */
	ldns_dname2canonical(d);
	uint8_t wire[NAME_MAXWIRE + 1];
	int w = name_suffix_to_wire(n, n->nlabels, wire, sizeof(wire));
	if (w < 0 || (size_t)w != ldns_rdf_size(d) || memcmp(wire, ldns_rdf_data(d), (size_t)w) != 0)
		abort(); /* Different names. */
	ldns_rdf_deep_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[65536], copy[65536];
	if (size > sizeof(copy))
		return 0;

	struct wire_query q;
	int rc = wire_parse_query(data, size, &q);
	if (rc == 0) {
		agree_with_ldns(&q.qname, data, size, WIRE_HEADER);
		struct name target;
		name_from_text(&target, "dl.example.com", 14);
		unsigned depth = q.qname.nlabels < 2 ? q.qname.nlabels : 2;
		struct answer_deny d = {.depth = depth, .rule = "example.com", .reason = "why",
					.ttl = 60, .ede_code = 16};
		answer_deny(out, answer_udp_limit(&q), data, &q, &d);
		d.owner = &target;
		d.reason = NULL;
		answer_deny(out, 512, data, &q, &d);
		answer_txt(out, sizeof(out), data, &q, "version=0");
		static cache_t *cache;
		if (!cache)
			cache = cache_new(1 << 16, 1);
		struct cache_key k;
		if (cache)
			cache_key_make(cache, &k, &q);
	}
	if (rc == 0 || rc == -EBADMSG || rc == -ENOTSUP)
		answer_error(out, 512, data, &q, WIRE_RCODE_SERVFAIL, 22, "text");

	/* The same bytes as an upstream's answer. */
	cache_ttl(data, size);
	cache_has_chain(data, size);
	struct wire_rr_iter it;
	struct wire_rr rr;
	if (wire_rr_begin(&it, data, size) == 0) {
		while (wire_rr_next(&it, &rr) > 0) {
			struct name n;
			size_t next;
			if (name_from_packet(&n, data, size, rr.owner, &next) == 0)
				agree_with_ldns(&n, data, size, rr.owner);
			if (rr.rdlen > 0 && name_from_packet(&n, data, size, rr.rdata, &next) == 0)
				agree_with_ldns(&n, data, size, rr.rdata);
		}
	}
	memcpy(copy, data, size);
	size_t len = wire_remove_edns_option(copy, size, WIRE_EDNS_COOKIE);
	if (len > size)
		abort(); /* Removing can only shorten. */
	return 0;
}
