/* Upstream cookies (upstream_cookie.h). This worker's client and server cookies live in
 * u->health; what every worker must know (that an upstream sends cookies, and a new generation
 * when it stopped) lives in the process's cookie_seen table. Must not touch a socket. */
#include "config.h"

#include "resolver/upstream/upstream_cookie.h"

#include <stdatomic.h>
#include <string.h>

#include "resolver/base/log.h"

/* Upstream i's entry in the process's table of upstreams that send cookies (cached in its
 * health once found), added when add; NULL when it has none. */
struct cookie_seen *upstream_cookie_entry(upstream_t *u, unsigned i, int add)
{
	struct health *h = &u->health[i];
	if (!h->cookie)
		h->cookie = cookie_seen_find(&u->o->upstream[i], &h->cookie_scanned);
	if (!h->cookie && add) {
		h->cookie = cookie_seen_add(&u->o->upstream[i]);
		if (!h->cookie) {
			static atomic_flag said = ATOMIC_FLAG_INIT;
			if (!atomic_flag_test_and_set(&said))
				log_warn("more than %d upstreams have sent cookies since the start: "
					 "later ones are enforced per worker only", COOKIE_SEEN_MAX);
		}
	}
	return h->cookie;
}

/* Does upstream i send cookies, as far as any worker knows? Drops this worker's server cookie
 * when a probe found the upstream answering without. */
int upstream_cookie_expected(upstream_t *u, unsigned i)
{
	struct health *h = &u->health[i];
	struct cookie_seen *e = upstream_cookie_entry(u, i, 0);
	if (e && cookie_seen_gen(e) != h->cookie_gen) {
		h->cookie_gen = cookie_seen_gen(e);
		h->server_cookie_len = 0;
	}
	return h->server_cookie_len || (e && cookie_seen_is_on(e));
}

/* The upstream's cookie check (RFC 7873 5.3): a reply to a query with our client cookie that
 * carries a cookie must echo ours; its server cookie is kept for the next queries. @return 0
 * or -1 (a forgery or garbage). */
int upstream_cookie_check(upstream_t *u, unsigned i, const uint8_t *reply, size_t len,
			  int over_tcp)
{
	size_t off, olen;
	int rc = wire_find_edns_option(reply, len, WIRE_EDNS_COOKIE, &off, &olen);
	if (rc < 0)
		return -1;
	struct health *h = &u->health[i];
	/* Without a cookie: fine from an upstream that never sent one to any worker, and over TCP
	 * (which an off-path attacker cannot forge, and where some servers leave cookies out). */
	if (rc == 0)
		return !over_tcp && upstream_cookie_expected(u, i) ? -1 : 0;
	if (olen < 8 || memcmp(reply + off, h->client_cookie, 8) != 0)
		return -1;
	if (olen >= 16 && olen <= 40) {
		struct cookie_seen *e =
			h->server_cookie_len ? NULL : upstream_cookie_entry(u, i, 1);
		if (e) {
			h->cookie_gen = cookie_seen_gen(e);
			cookie_seen_on(e);
		}
		h->server_cookie_len = (uint8_t)(olen - 8);
		memcpy(h->server_cookie, reply + off + 8, olen - 8);
	}
	return 0;
}
