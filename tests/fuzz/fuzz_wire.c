/* Fuzz target: everything that reads packets from the network. Queries go through the parser and,
 * when accepted, every answer builder; any bytes also go through the response-side readers
 * (record iteration, compressed names, TTL rules, EDNS option removal), as an upstream's answer
 * would. Built for libFuzzer with --enable-fuzzing; `make check` replays the corpus. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/answer.h"
#include "resolver/cache.h"
#include "resolver/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[65536], copy[65536];
	if (size > sizeof(copy))
		return 0;

	struct wire_query q;
	int rc = wire_parse_query(data, size, &q);
	if (rc == 0) {
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
		struct cache_key k;
		cache_key_make(&k, &q);
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
			name_from_packet(&n, data, size, rr.owner, &next);
			if (rr.rdlen > 0)
				name_from_packet(&n, data, size, rr.rdata, &next);
		}
	}
	memcpy(copy, data, size);
	size_t len = wire_remove_edns_option(copy, size, WIRE_EDNS_COOKIE);
	if (len > size)
		abort(); /* Removing can only shorten. */
	return 0;
}
