/* The query path. Order matters and is the product's: an unreadable packet is dropped, then the
 * access list and the rate limit decide whether this client gets any answer, then the policy
 * comes before the cache, so a newly denied name is never served from the cache, and the
 * upstream is asked last. Answers leave through the client's ops. */
#include "config.h"

#include "resolver/query/query.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "resolver/query/answer.h"
#include "resolver/query/failcache.h"
#include "resolver/query/local.h"
#include "resolver/base/log.h"
#include "resolver/observe/query_log.h"
#include "resolver/query/worker.h"
#include "resolver/sync/redis_sync.h"

/* ---- Answers ------------------------------------------------------------------------------ */

static size_t answer_cap(const struct client *c, const struct wire_query *q)
{
	return c->stream ? WORKER_ANSWER_MAX : answer_udp_limit(q);
}

/* A line of the query log for an answer about to leave (sampled; the ring may be full). */
static void log_query(struct worker *w, const struct client *c, const uint8_t *query,
		      const struct wire_query *q, unsigned rcode, int decision, uint64_t now)
{
	if (!query_log_wanted(w->qlog, decision == QUERY_LOG_DENIED))
		return;
	struct query_log_entry *e = query_log_next(w->qlog);
	if (!e)
		return;
	e->time_ns = now ? now : uv_hrtime();
	e->latency_us = c->arrived_ns && e->time_ns > c->arrived_ns
				? (uint32_t)((e->time_ns - c->arrived_ns) / 1000u)
				: 0;
	e->qtype = q->question_end ? q->qtype : 0;
	e->rcode = (uint8_t)rcode;
	e->decision = (uint8_t)decision;
	e->transport = c->transport;
	e->family = (uint8_t)c->addr.ss_family;
	if (c->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&c->addr;
		memcpy(e->addr, &a->sin6_addr, 16);
		e->port = ntohs(a->sin6_port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&c->addr;
		memcpy(e->addr, &a->sin_addr, 4);
		e->port = ntohs(a->sin_port);
	}
	e->qname_len = q->question_end ? (uint8_t)(q->qname_len < 255 ? q->qname_len : 255) : 0;
	memcpy(e->qname, query + WIRE_HEADER, e->qname_len);
	e->rule[0] = e->reason[0] = e->upstream[0] = '\0';
	if (decision == QUERY_LOG_DENIED) {
		snprintf(e->rule, sizeof(e->rule), "%s", w->ql_rule);
		snprintf(e->reason, sizeof(e->reason), "%s", w->ql_reason ? w->ql_reason : "");
	}
	if (decision == QUERY_LOG_FORWARDED && w->ql_upstream)
		options_format_addr(w->ql_upstream, e->upstream, sizeof(e->upstream));
	query_log_commit(w->qlog);
}

/* Every answer leaves here: counted by rcode, logged if asked, handed to the client's
 * transport. decision: enum query_log_decision, or QL_BY_RCODE (refused or error). */
#define QL_BY_RCODE (-1)
static void respond(struct worker *w, const struct client *c, const uint8_t *query,
		    const struct wire_query *q, const uint8_t *ans, size_t len, int decision)
{
	unsigned rcode = ans[3] & 0xF;
	w->st.rcode[rcode < SERVER_RCODES - 1 ? rcode : SERVER_RCODES - 1]++;
	if (decision == QL_BY_RCODE)
		decision = rcode == WIRE_RCODE_REFUSED ? QUERY_LOG_REFUSED : QUERY_LOG_ERROR;
	/* Answer latency: a datagram's is taken when its batch is sent (udp_flush), a stream's
	 * here. */
	uint64_t now = 0;
	w->answer_path = (uint8_t)decision;
	if (c->arrived_ns && c->stream) {
		now = uv_hrtime();
		latency_observe(&w->lat_path[decision], now > c->arrived_ns ? now - c->arrived_ns : 0);
	}
	if (w->qlog)
		log_query(w, c, query, q, rcode, decision, now);
	c->ops->reply(c, query, q, ans, len);
}

static void answer_with_error(struct worker *w, const struct client *c, const uint8_t *query,
			      const struct wire_query *q, unsigned rcode, int ede, const char *text)
{
	int n = answer_error(w->answer, answer_cap(c, q), query, q, rcode, ede, text);
	if (n > 0)
		respond(w, c, query, q, w->answer, (size_t)n, QL_BY_RCODE);
}

static void deny(struct worker *w, const struct client *c, const uint8_t *query,
		 const struct wire_query *q, const policy_t *pol, const struct policy_verdict *v,
		 const struct name *owner)
{
	const struct options *o = w->o;
	/* The rule's name goes into the EDE text only when it has no reason (and the query log). */
	char rule[NAME_MAXTEXT + 2] = "";
	if (!v->reason || w->qlog)
		name_suffix_to_text(owner ? owner : &q->qname, v->depth, rule, sizeof(rule));
	w->ql_rule = rule;
	w->ql_reason = v->reason;
	struct answer_deny d = {
		.depth = v->depth,
		.owner = owner,
		.rule = rule,
		.reason = v->reason,
		.mode = (enum answer_deny_mode)o->deny_mode,
		.sinkhole4 = o->sinkhole4,
		.sinkhole6 = o->sinkhole6,
		.ttl = o->block_ttl,
		.serial = (uint32_t)policy_stats(pol)->version,
		.ede_code = o->ede_code,
	};
	int n = answer_deny(w->answer, answer_cap(c, q), query, q, &d);
	w->st.denied++;
	rule_hits_add(w->hits, owner ? owner : &q->qname, v->depth);
	if (w->report)
		client_report_add(w->report, &c->addr, c->stream, owner ? owner : &q->qname, v->depth,
				  time(NULL));
	if (n > 0) {
		respond(w, c, query, q, w->answer, (size_t)n, QUERY_LOG_DENIED);
		return;
	}
	/* Only a long CNAME target in a 512-octet answer can fail to fit: deny without the SOA. */
	answer_with_error(w, c, query, q,
			  o->deny_mode == ANSWER_DENY_REFUSED    ? WIRE_RCODE_REFUSED
			  : o->deny_mode == ANSWER_DENY_NXDOMAIN ? WIRE_RCODE_NXDOMAIN
								 : WIRE_RCODE_NOERROR,
			  o->ede_code, v->reason);
}

/* Is a CNAME or DNAME target in ans's answer section denied? Sets *v and *target if so.
 * @return 1 (denied), 0 (every target read and allowed) or -EBADMSG when a record or a target
 * cannot be read (a forward or looping compression pointer...): the caller fails closed, since
 * a target the policy cannot read may be a listed name. With pol NULL it only reads. */
static int chain_denied(const policy_t *pol, const uint8_t *ans, size_t len,
			struct policy_verdict *v, struct name *target)
{
	struct wire_rr_iter it;
	struct wire_rr rr;
	int rc;
	if (wire_rr_begin(&it, ans, len) < 0)
		return -EBADMSG;
	while ((rc = wire_rr_next(&it, &rr)) > 0 && rr.section == 1) {
		if (rr.type != WIRE_TYPE_CNAME && rr.type != WIRE_TYPE_DNAME)
			continue;
		size_t next;
		if (name_from_packet(target, ans, len, rr.rdata, &next) < 0)
			return -EBADMSG;
		if (!pol)
			continue; /* Only reading. */
		policy_lookup(pol, target, v);
		if (v->action == POLICY_DENY)
			return 1;
	}
	return rc < 0 ? -EBADMSG : 0;
}

/* An answer whose chain the policy cannot read: SERVFAIL, counted, logged at most once a
 * minute (an upstream sending such answers could otherwise fill the log). */
static void chain_unreadable(struct worker *w, const struct client *c, const uint8_t *query,
			     const struct wire_query *q)
{
	w->st.chain_unreadable++;
	w->st.servfail++;
	uint64_t now = uv_now(&w->loop);
	if (w->chain_said_ms == 0 || now >= w->chain_said_ms + 60000) {
		w->chain_said_ms = now;
		char name[NAME_MAXTEXT + 2];
		name_to_text(&q->qname, name, sizeof(name));
		log_warn("an answer for %s has a CNAME or DNAME target that cannot be read: SERVFAIL "
			 "(said once a minute; embargo_chain_unreadable_total counts them all)",
			 name);
	}
	answer_with_error(w, c, query, q, WIRE_RCODE_SERVFAIL, ANSWER_EDE_OTHER,
			  "answer chain unreadable");
}

/* "policy.embargo" in lookup format. */
static const uint8_t STATUS_NAME[] = {7, 'e', 'm', 'b', 'a', 'r', 'g', 'o', 6, 'p', 'o', 'l', 'i', 'c', 'y', 0};

/* REFUSED for a question embargo will not forward; without RD, with EDE 20 (Not Authoritative),
 * as Unbound. */
static void refuse(struct worker *w, const struct client *c, const uint8_t *query,
		   const struct wire_query *q)
{
	answer_with_error(w, c, query, q, WIRE_RCODE_REFUSED,
			  (q->flags & WIRE_FLAG_RD) ? -1 : ANSWER_EDE_NOT_AUTHORITATIVE, NULL);
}

/* CH-class queries: TXT policy.embargo. tells allowed clients which policy is in force (as
 * version.bind tells a version); everything else in CHAOS is refused, never forwarded. */
static void status_query(struct worker *w, const struct client *c, const uint8_t *query,
			 const struct wire_query *q)
{
	const struct options *o = w->o;
	int is_status = q->qname.keylen == sizeof(STATUS_NAME) &&
			memcmp(q->qname.key, STATUS_NAME, sizeof(STATUS_NAME)) == 0 &&
			(q->qtype == WIRE_TYPE_TXT || q->qtype == WIRE_TYPE_ANY);
	if (!is_status || !options_cidr_match(o->status_allow, o->nstatus_allow, &c->addr)) {
		refuse(w, c, query, q);
		return;
	}
	const policy_t *pol = policy_store_enter(w->server->store, w->reader);
	const struct policy_stats *st = policy_stats(pol);
	char when[32] = "unknown", text[256];
	time_t t = (time_t)st->loaded_at;
	struct tm tm;
	if (t > 0 && gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(text, sizeof(text),
		 "version=%016llx source=%s deny=%zu allow=%zu reasons=%zu invalid=%zu loaded=%s",
		 (unsigned long long)st->version,
		 st->source == POLICY_SOURCE_REDIS ? "redis"
		 : st->source == POLICY_SOURCE_SNAPSHOT ? "snapshot"
		 : st->source == POLICY_SOURCE_HELD ? "held-merge" : "bundled",
		 st->deny, st->allow, st->reasons, st->invalid, when);
	struct server *sv = w->server;
	int hold = atomic_load_explicit(&sv->hold_kind, memory_order_relaxed);
	if (hold != REDIS_SYNC_HOLD_NONE) {
		static const char *const kinds[] = {"", "shrink", "deny-key-missing", "redis-empty"};
		size_t used = strlen(text);
		snprintf(text + used, sizeof(text) - used, " held=%s",
			 kinds[hold > REDIS_SYNC_HOLD_EMPTY ? 0 : hold]);
		used = strlen(text);
		if (hold != REDIS_SYNC_HOLD_EMPTY)
			snprintf(text + used, sizeof(text) - used,
				 " held_removes=%zu/%zu held_version=%016llx",
				 atomic_load_explicit(&sv->hold_removed, memory_order_relaxed),
				 atomic_load_explicit(&sv->hold_of, memory_order_relaxed),
				 (unsigned long long)atomic_load_explicit(&sv->hold_version,
									 memory_order_relaxed));
	}
	int n = answer_txt(w->answer, answer_cap(c, q), query, q, text);
	if (n > 0)
		respond(w, c, query, q, w->answer, (size_t)n, QUERY_LOG_LOCAL);
}

/* ---- Admit -------------------------------------------------------------------------------- */

/* Is this packet one of embargo's own upstream queries come back (an upstream that is, or
 * forwards to, one of our listeners)? Only an address of this host can send from our ports. */
static int is_own_query(struct worker *w, const struct client *c)
{
	if (c->stream)
		return 0; /* Our upstream sockets are UDP (TCP fallbacks connect out, never in). */
	uint16_t port = c->addr.ss_family == AF_INET6
				? ntohs(((const struct sockaddr_in6 *)&c->addr)->sin6_port)
				: ntohs(((const struct sockaddr_in *)&c->addr)->sin_port);
	if (!upstream_is_own_port(c->addr.ss_family, port))
		return 0;
	if (admit_is_loopback(&c->addr))
		return 1;
	uint64_t now = uv_now(&w->loop);
	if (w->self_at == 0 || now >= w->self_at + 1000) {
		w->self_at = now;
		w->nself = options_host_addrs(w->self, 32);
	}
	return options_cidr_match(w->self, w->nself, &c->addr);
}

/* What query_admit() lets through: everything, the cache only (RD=0 from a client allowed to
 * snoop), or the policy and local answers only (RD=0 from others: then REFUSED). */
enum { DROPPED = 0, GO = 1, GO_CACHE_ONLY = 2, GO_LOCAL_ONLY = 3 };

/* Parse a query and answer it when that needs no policy (refused, malformed, not a QUERY,
 * CHAOS, another class, over the rate limit). @return GO, GO_CACHE_ONLY or GO_LOCAL_ONLY when q
 * goes on to query_decide(). */
static int query_admit(struct worker *w, const struct client *c, const uint8_t *pkt, size_t len,
		       struct wire_query *q)
{
	int rc = wire_parse_query(pkt, len, q);
	if (rc == -EINVAL) {
		w->st.dropped++;
		return DROPPED;
	}
	if (is_own_query(w, c)) {
		w->st.looped++;
		return DROPPED;
	}
	enum options_acl acl = admit_access(w->admit, &c->addr);
	if (acl == OPTIONS_ACL_DROP) {
		w->st.refused++;
		return DROPPED;
	}
	w->st.queries++;
	w->st.qtype[rc == 0 ? server_qtype_index(q->qtype) : SERVER_QTYPES - 1]++;
	if (c->transport == CLIENT_DOT)
		w->st.queries_dot++;
	else if (c->transport == CLIENT_DOH)
		w->st.queries_doh++;
	else if (c->stream)
		w->st.queries_tcp++;
	if (!c->stream) {
		/* Whatever the answer, even REFUSED or FORMERR, it counts: a spoofed source must not
		 * turn embargo into an amplifier of any kind of answer. */
		enum admit_rate r = admit_rate(w->admit, &c->addr, uv_now(&w->loop));
		if (r != ADMIT_RATE_OK) { /* Counted by admission (admit_stats). */
			if (r == ADMIT_RATE_SLIP) {
				/* Empty and truncated, without EDE: a real client retries over TCP. */
				int n = answer_error(w->answer, answer_cap(c, q), pkt, q,
						     WIRE_RCODE_NOERROR, -1, NULL);
				if (n > 0) {
					w->answer[2] |= WIRE_FLAG_TC >> 8;
					respond(w, c, pkt, q, w->answer, (size_t)n, QUERY_LOG_REFUSED);
				}
			}
			return DROPPED;
		}
	}
	if (acl == OPTIONS_ACL_REFUSE) {
		w->st.refused++;
		answer_with_error(w, c, pkt, q, WIRE_RCODE_REFUSED, ANSWER_EDE_PROHIBITED,
				  "this resolver does not serve your network");
		return DROPPED;
	}
	if (rc == -EBADMSG) {
		w->st.formerr++;
		answer_with_error(w, c, pkt, q, WIRE_RCODE_FORMERR, -1, NULL);
		return DROPPED;
	}
	if (rc == -ENOTSUP) {
		answer_with_error(w, c, pkt, q, WIRE_RCODE_NOTIMP, -1, NULL);
		return DROPPED;
	}
	if (q->has_edns && q->edns_version != 0) {
		answer_with_error(w, c, pkt, q, WIRE_RCODE_BADVERS, -1, NULL);
		return DROPPED;
	}
	if (q->qtype == WIRE_TYPE_AXFR || q->qtype == WIRE_TYPE_IXFR) {
		/* A zone transfer is no question for a resolver: REFUSED, never forwarded (as
		 * Unbound); over UDP it would ask the upstream for what only TCP can carry. */
		refuse(w, c, pkt, q);
		return DROPPED;
	}
	if (wire_is_meta_type(q->qtype)) {
		/* OPT, TSIG, TKEY, MAILA, MAILB and the other meta types (128-248) only exist in
		 * transit or are obsolete: no record answers them. FORMERR, as Unbound answers. */
		w->st.formerr++;
		answer_with_error(w, c, pkt, q, WIRE_RCODE_FORMERR, -1, NULL);
		return DROPPED;
	}
	if (q->qclass == WIRE_CLASS_CH) {
		status_query(w, c, pkt, q);
		return DROPPED;
	}
	if (q->qclass != WIRE_CLASS_IN && q->qclass != WIRE_CLASS_ANY) {
		/* Only classes IN and ANY are forwarded (as Unbound): an upstream's answer to another
		 * class may not even echo the question. */
		refuse(w, c, pkt, q);
		return DROPPED;
	}
	if (!(q->flags & WIRE_FLAG_RD)) {
		/* Without recursion desired only a client allowed to snoop gets the cache (Unbound's
		 * allow_snoop); others get the policy and local answers, else REFUSED, so the cache
		 * cannot be probed. */
		return acl == OPTIONS_ACL_SNOOP ? GO_CACHE_ONLY : GO_LOCAL_ONLY;
	}
	return GO;
}

/* AD reaches a client only from an upstream it trusts, and only when the client asked for it
 * with DO or AD (RFC 6840 5.7); embargo validates nothing itself yet. */
static void fix_ad(const struct worker *w, const struct wire_query *q, uint8_t *ans)
{
	if (!w->o->upstream_trust_ad || !(q->edns_do || (q->flags & WIRE_FLAG_AD)))
		ans[3] &= (uint8_t)~WIRE_FLAG_AD;
}

/* No upstream answered: SERVFAIL, with the EDE of the upstream's own SERVFAIL when it gave one
 * (a validating upstream's 6 DNSSEC Bogus, 9 DNSKEY Missing...: RFC 8914 3), else EDE 22. */
static void failure_answer(struct worker *w, const struct client *c, const uint8_t *query,
			   const struct wire_query *q, const struct upstream_failure *why)
{
	static const char *const RCODES[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
					     "NOTIMP", "REFUSED"};
	char text[64];
	w->st.servfail++;
	if (why && why->ede_code >= 0 && (why->ede_code < ANSWER_EDE_BLOCKED ||
					  why->ede_code > ANSWER_EDE_PROHIBITED)) {
		answer_with_error(w, c, query, q, WIRE_RCODE_SERVFAIL, why->ede_code, why->ede_text);
		return;
	}
	if (why && why->ede_code >= 0) {
		/* Blocked, Censored, Filtered, Prohibited: said by the upstream, not by embargo's
		 * policy; passed on as they would read as embargo's own denial, they go in the text. */
		snprintf(text, sizeof(text), "the upstream answered SERVFAIL with EDE %d",
			 why->ede_code);
		answer_with_error(w, c, query, q, WIRE_RCODE_SERVFAIL,
				  ANSWER_EDE_NO_REACHABLE_AUTHORITY, text);
		return;
	}
	if (why && why->rejected)
		snprintf(text, sizeof(text), "the upstream answered %s",
			 why->rcode < 6 ? RCODES[why->rcode] : "an error");
	else
		snprintf(text, sizeof(text), "no upstream answered in time");
	answer_with_error(w, c, query, q, WIRE_RCODE_SERVFAIL, ANSWER_EDE_NO_REACHABLE_AUTHORITY, text);
}

/* ---- Serve-stale and prefetch ------------------------------------------------------------ */

/* The client of a prefetch: nobody; its answer only refreshes the cache. */
static const struct client PREFETCH_CLIENT = {.ops = NULL, .session = NULL};

/* Refresh a cache entry in the background (in its last tenth of TTL, or once served stale). The
 * upstream side bounds refreshes in flight, never jostles a client's question for one, and
 * joins none to a question already asked. */
/* A reload wants TLS upstreams this worker could not take on yet (server_reload): its side is
 * still the clear-text one, and nothing is forwarded until it has. */
static int clear_text_held(const struct worker *w)
{
	return w->up_lag && w->o->upstream_tls[0] && !w->up_o->upstream_tls[0];
}

static void prefetch(struct worker *w, const uint8_t *pkt, size_t len, const struct wire_query *q)
{
	if (!clear_text_held(w) && upstream_forward(w->up, &PREFETCH_CLIENT, pkt, len, q, 0) == 0)
		w->st.prefetches++;
}

/* Answer c from an expired cache entry, TTL 30 and EDE 3 (RFC 8767), when no upstream answers
 * in time; the policy is asked again first, for the name and any CNAME/DNAME target, so a name
 * denied meanwhile stays denied. @return 1 when c was answered. */
static int serve_stale(struct worker *w, const struct client *c, const uint8_t *query,
		       const struct wire_query *q)
{
	if (!w->o->stale_max)
		return 0;
	const policy_t *pol = policy_store_enter(w->server->store, w->reader);
	struct policy_verdict v;
	policy_lookup(pol, &q->qname, &v);
	if (v.action == POLICY_DENY) {
		deny(w, c, query, q, pol, &v, NULL);
		return 1;
	}
	struct cache_key key;
	struct cache_hit hit;
	cache_key_make(w->server->cache, &key, q);
	int n = cache_get(w->server->cache, &key, uv_now(&w->loop), query, q, w->answer,
			  WORKER_ANSWER_MAX, &hit, w->o->max_client_ttl, true);
	if (n <= 0)
		return 0;
	struct name target;
	int chain = hit.has_chain ? chain_denied(pol, w->answer, (size_t)n, &v, &target) : 0;
	if (chain > 0) {
		deny(w, c, query, q, pol, &v, &target);
		return 1;
	}
	if (chain < 0) {
		chain_unreadable(w, c, query, q);
		return 1;
	}
	if (hit.stale) {
		w->st.stale_served++;
		n = (int)wire_add_ede(w->answer, (size_t)n, WORKER_ANSWER_MAX, ANSWER_EDE_STALE, "");
	} else {
		w->st.cache_hits++; /* Refreshed meanwhile (by another worker). */
	}
	fix_ad(w, q, w->answer);
	respond(w, c, query, q, w->answer, (size_t)n, hit.stale ? QUERY_LOG_STALE : QUERY_LOG_CACHE);
	return 1;
}

/* ---- Decide ------------------------------------------------------------------------------- */

/* Answer an admitted query given the policy's verdict on its name: deny, the cache, or the
 * upstream. @return 1 when it went upstream. */
static int query_decide(struct worker *w, const struct client *c, const uint8_t *pkt, size_t len,
			const struct wire_query *q, const policy_t *pol, struct policy_verdict v,
			int mode)
{
	int cache_only = mode == GO_CACHE_ONLY;
	if (v.action == POLICY_DENY) {
		deny(w, c, pkt, q, pol, &v, NULL);
		return 0;
	}
	int n = local_answer(w->local, pkt, q, w->answer, answer_cap(c, q));
	if (n == -ENOSPC) {
		/* Local data too big for this client over UDP: empty and truncated, TCP gets it. */
		n = answer_error(w->answer, answer_cap(c, q), pkt, q, WIRE_RCODE_NOERROR, -1, NULL);
		if (n > 0)
			w->answer[2] |= WIRE_FLAG_TC >> 8;
	}
	if (n > 0) {
		w->st.local++;
		respond(w, c, pkt, q, w->answer, (size_t)n, QUERY_LOG_LOCAL);
		return 0;
	}

	if (mode == GO_LOCAL_ONLY) {
		refuse(w, c, pkt, q);
		return 0;
	}

	struct cache_key key;
	struct cache_hit hit;
	cache_key_make(w->server->cache, &key, q);
	n = cache_get(w->server->cache, &key, uv_now(&w->loop), pkt, q, w->answer,
		      WORKER_ANSWER_MAX, &hit, w->o->max_client_ttl, false);
	if (n > 0) {
		struct name target;
		int chain = hit.has_chain ? chain_denied(pol, w->answer, (size_t)n, &v, &target) : 0;
		if (chain > 0) {
			deny(w, c, pkt, q, pol, &v, &target);
			return 0;
		}
		if (chain < 0) {
			chain_unreadable(w, c, pkt, q);
			return 0;
		}
		w->st.cache_hits++;
		fix_ad(w, q, w->answer);
		respond(w, c, pkt, q, w->answer, (size_t)n, QUERY_LOG_CACHE);
		if (hit.prefetch && !cache_only)
			prefetch(w, pkt, len, q);
		return 0;
	}
	w->st.cache_misses++;
	int stale = n == -ESTALE;
	if (stale && w->o->stale_timeout_ms == 0 && !cache_only && serve_stale(w, c, pkt, q)) {
		/* Stale at once, refreshed in the background (RFC 8767 with a zero timeout). */
		prefetch(w, pkt, len, q);
		return 0;
	}
	if (cache_only) {
		answer_with_error(w, c, pkt, q, WIRE_RCODE_REFUSED, -1, NULL);
		return 0;
	}
	/* Failed a moment ago (RFC 9520): not asked again before its time, so a client repeating
	 * a failing question cannot make embargo repeat it upstream. */
	const struct upstream_failure *failed = failcache_get(w->fails, key.hash, uv_now(&w->loop));
	if (failed) {
		if (!(stale && serve_stale(w, c, pkt, q))) {
			w->st.servfail_remembered++;
			failure_answer(w, c, pkt, q, failed);
		}
		return 0;
	}

	/* One client's share of the pending pool; nothing goes out while TLS upstreams wait. */
	int held = clear_text_held(w);
	if (held || admit_pending_take(w->admit, &c->addr) < 0) {
		if (!(stale && serve_stale(w, c, pkt, q))) {
			w->st.servfail++;
			answer_with_error(w, c, pkt, q, WIRE_RCODE_SERVFAIL, held ? ANSWER_EDE_OTHER : -1,
					  held ? "upstreams changing to TLS" : NULL);
		}
		return 0;
	}
	/* With a stale answer at hand the client waits at most the stale timeout (RFC 8767). */
	if (upstream_forward(w->up, c, pkt, len, q, stale ? w->o->stale_timeout_ms : 0) < 0) {
		admit_pending_give(w->admit, &c->addr);
		if (!(stale && serve_stale(w, c, pkt, q))) {
			w->st.servfail++;
			answer_with_error(w, c, pkt, q, WIRE_RCODE_SERVFAIL, -1, NULL);
		}
		return 0;
	}
	w->st.forwarded++;
	return 1;
}

int query_handle(struct worker *w, const struct client *c, const uint8_t *pkt, size_t len)
{
	struct wire_query q;
	int go = query_admit(w, c, pkt, len, &q);
	if (go == DROPPED)
		return 0;
	const policy_t *pol = policy_store_enter(w->server->store, w->reader);
	struct policy_verdict v;
	policy_lookup(pol, &q.qname, &v);
	return query_decide(w, c, pkt, len, &q, pol, v, go);
}

void query_handle_batch(struct worker *w, struct query_batch *b)
{
	const struct name *names[QUERY_BATCH];
	struct policy_verdict v[QUERY_BATCH];
	unsigned go[QUERY_BATCH], n = 0;
	for (unsigned i = 0; i < b->n; i++) {
		int r = query_admit(w, &b->client[i], b->pkt[i], b->len[i], &b->q[i]);
		if (r != DROPPED) {
			b->mode[i] = (uint8_t)r;
			names[n] = &b->q[i].qname;
			go[n++] = i;
		}
	}
	b->n = 0;
	if (n == 0)
		return;
	const policy_t *pol = policy_store_enter(w->server->store, w->reader);
	policy_lookup_many(pol, names, n, v);
	for (unsigned j = 0; j < n; j++) {
		unsigned i = go[j];
		query_decide(w, &b->client[i], b->pkt[i], b->len[i], &b->q[i], pol, v[j],
			     b->mode[i]);
	}
}

/* ---- Upstream answers --------------------------------------------------------------------- */

int query_upstream_answer(void *ctx, const struct client *c, const uint8_t *query,
			  const struct wire_query *q, uint8_t *reply, size_t len,
			  const struct upstream_failure *why, unsigned flags)
{
	struct worker *w = ctx;
	if (flags & UPSTREAM_DUE)
		return c->session ? serve_stale(w, c, query, q) : 0;
	if (c->ops) /* A prefetch took no share. */
		admit_pending_give(w->admit, &c->addr);
	if (!reply && why && !why->given_up && (flags & UPSTREAM_FIRST)) {
		struct cache_key key;
		cache_key_make(w->server->cache, &key, q);
		failcache_put(w->fails, key.hash, why, uv_now(&w->loop));
	}
	/* The policy may have changed while the question was upstream: the name is asked again,
	 * then every CNAME/DNAME target. An answer whose chain cannot be read is never cached:
	 * each client would get SERVFAIL from it. */
	const policy_t *pol = NULL;
	struct policy_verdict v;
	struct name target;
	int name_denied = 0, chain = 0;
	if (reply) {
		pol = policy_store_enter(w->server->store, w->reader);
		policy_lookup(pol, &q->qname, &v);
		name_denied = v.action == POLICY_DENY;
		chain = name_denied ? 0 : chain_denied(pol, reply, len, &v, &target);
		if (chain < 0)
			flags &= ~UPSTREAM_FIRST;
	}
	if (reply && (flags & UPSTREAM_FIRST)) {
		/* Cached whether or not this client is still there to get it. */
		uint32_t ttl = cache_ttl(reply, len);
		if (ttl > 0 && ttl < w->o->min_ttl) {
			/* Raised in the answer too, so its records do not age past zero in the cache. */
			ttl = w->o->min_ttl;
			wire_clamp_ttls(reply, len, ttl, UINT32_MAX);
		}
		if (ttl > w->o->max_ttl)
			ttl = w->o->max_ttl;
		if (ttl > 0) {
			struct cache_key key;
			cache_key_make(w->server->cache, &key, q);
			cache_put(w->server->cache, &key, reply, len, ttl, uv_now(&w->loop));
		}
	}
	if (!c->session)
		return 0; /* The client went away (a TCP connection closed), or was a prefetch. */
	if (flags & UPSTREAM_ANSWERED) {
		/* It had a stale answer; this one refreshed the cache. */
	} else if (!reply) {
		if (!serve_stale(w, c, query, q))
			failure_answer(w, c, query, q, why);
	} else if (name_denied) {
		deny(w, c, query, q, pol, &v, NULL);
	} else if (reply[2] & (WIRE_FLAG_TC >> 8)) {
		/* A truncated answer the upstream side had no room to fetch whole: a UDP
		 * client gets it empty (header and question, TC), as the upstream's partial
		 * records may not even parse, and retries over TCP; one over TCP already has
		 * nothing to retry with. */
		if (c->stream) {
			w->st.servfail++;
			answer_with_error(w, c, query, q, WIRE_RCODE_SERVFAIL, ANSWER_EDE_OTHER,
					  "no room to fetch the whole answer now");
		} else {
			int n = answer_error(w->answer, answer_cap(c, q), query, q,
					     wire_rcode(reply), -1, NULL);
			if (n > 0) {
				w->answer[2] |= WIRE_FLAG_TC >> 8;
				respond(w, c, query, q, w->answer, (size_t)n,
					QUERY_LOG_FORWARDED);
			}
		}
	} else if (chain > 0) {
		deny(w, c, query, q, pol, &v, &target);
	} else if (chain < 0) {
		chain_unreadable(w, c, query, q);
	} else {
		/* The cache keeps the upstream's TTLs and AD; this client gets its own. */
		wire_age_ttls(reply, len, 0, w->o->max_client_ttl);
		fix_ad(w, q, reply);
		unsigned up = flags >> UPSTREAM_INDEX_SHIFT;
		w->ql_upstream = up && up <= w->o->nupstream ? &w->o->upstream[up - 1] : NULL;
		respond(w, c, query, q, reply, len, QUERY_LOG_FORWARDED);
	}
	/* Answering may have closed the connection (its session is then gone). */
	if (c->session && c->ops->done)
		c->ops->done(c);
	return 0;
}
