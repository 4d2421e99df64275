/* Fuzz target: everything that reads policy text. The input is read as a list (TSV, plain or
 * hosts lines) and as a snapshot. The list's entries are built into a policy whose lookups must
 * agree with a naive reference (the deepest listed ancestor-or-self decides, allow winning a
 * tie), and which must survive a snapshot round trip. As a snapshot, the input's checksum is
 * first recomputed over its own header and body, so the fuzzer reaches the body parser instead
 * of stopping at the checksum, and read as a damaged snapshot (codec_salvage). Built for libFuzzer with --enable-fuzzing; `make check` replays
 * the corpus. */
#include "config.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include "policy/codec.h"
#include "policy/list.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RULES 4096	/* Entries the reference keeps; larger inputs are checked in part. */
#define MAX_QUERIES 256 /* Lookups compared per input. */

struct ref_rule {
	struct name name;
	unsigned actions; /* POLICY_PART_DENY | POLICY_PART_ALLOW */
};

struct ref {
	policy_builder_t *b;
	struct ref_rule rules[MAX_RULES];
	size_t n;
	int oom;
};

/* Every entry of the list: a deny rule on odd lines and an allow rule on even ones, so that the
 * reference sees both kinds, nested in whatever way the input nests them. */
static int ref_entry(void *ctx, size_t line, const char *name, const char *reason,
		     size_t reason_len)
{
	struct ref *r = ctx;
	enum policy_action a = line % 2 ? POLICY_DENY : POLICY_ALLOW;
	if (policy_builder_add(r->b, a, name, strlen(name)) < 0) {
		r->oom = 1;
		return -1;
	}
	if (r->n < MAX_RULES) {
		struct ref_rule *x = &r->rules[r->n++];
		if (name_from_text(&x->name, name, strlen(name)) < 0)
			abort(); /* list_parse() passed a name that does not parse. */
		x->actions = a == POLICY_DENY ? POLICY_PART_DENY : POLICY_PART_ALLOW;
	}
	return 0;
}

/* The reference verdict: the deepest rule whose name is q or an ancestor of q decides; allow
 * wins a tie. Keys are label sequences from the root, so a rule is q or its ancestor exactly
 * when its key without the final 0 is a prefix of q's key. */
static void ref_lookup(const struct ref *r, const struct name *q, enum policy_action *action,
		       unsigned *depth)
{
	unsigned actions = 0, best = 0;
	for (size_t i = 0; i < r->n; i++) {
		const struct name *n = &r->rules[i].name;
		if (n->nlabels > q->nlabels || memcmp(n->key, q->key, n->keylen - 1u) != 0)
			continue;
		if (!actions || n->nlabels > best) {
			best = n->nlabels;
			actions = r->rules[i].actions;
		} else if (n->nlabels == best) {
			actions |= r->rules[i].actions;
		}
	}
	*depth = best;
	*action = !actions			  ? POLICY_PASS
		  : (actions & POLICY_PART_ALLOW) ? POLICY_ALLOW
						  : POLICY_DENY;
}

/* The rule names with a child and the parent of each, plus a fixed name. */
static size_t queries(const struct ref *r, struct name *qs)
{
	size_t n = 0;
	if (name_from_text(&qs[n], "a.b.example.com", 15) == 0)
		n++;
	for (size_t i = 0; i < r->n && n + 3 <= MAX_QUERIES; i++) {
		const struct name *x = &r->rules[i].name;
		qs[n++] = *x;
		char text[NAME_MAXTEXT + 8] = "zz.";
		if (name_to_text(x, text + 3, sizeof(text) - 3) >= 0 &&
		    name_from_text(&qs[n], text, strlen(text)) == 0)
			n++;
		if (x->nlabels > 1 && name_suffix_to_text(x, x->nlabels - 1u, text, sizeof(text)) >= 0 &&
		    name_from_text(&qs[n], text, strlen(text)) == 0)
			n++;
	}
	return n;
}

static void check_lookups(const policy_t *p, const struct ref *r, const struct name *qs,
			  size_t nq)
{
	for (size_t i = 0; i < nq; i++) {
		struct policy_verdict v;
		enum policy_action want;
		unsigned depth;
		policy_lookup(p, &qs[i], &v);
		ref_lookup(r, &qs[i], &want, &depth);
		if (v.action != want || (want != POLICY_PASS && v.depth != depth)) {
			char text[NAME_MAXTEXT + 2];
			name_to_text(&qs[i], text, sizeof(text));
			fprintf(stderr, "%s: policy %d depth %u, reference %d depth %u\n", text,
				v.action, v.depth, want, depth);
			abort();
		}
	}
}

static uint64_t fnv(uint64_t h, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define MAGIC "embargo-policy-snapshot "
#define CHECKSUM " checksum="

/* The checksum the codec computes for a snapshot whose header line is h[0..hlen) (ending just
 * before " checksum=") and body b[0..blen), as hex into out: format 1 covers the fields after
 * "... 1 " with FNV-1a, format 2 the whole header with FNV-1a, format 3 the whole header with
 * SHA-256. */
static void snapshot_sum(const char *h, size_t hlen, const char *b, size_t blen, char *out)
{
	size_t from = strlen(MAGIC) + 2;
	if (hlen >= from && h[from - 2] == '3' && h[from - 1] == ' ') {
		struct sha256_ctx c;
		uint8_t d[SHA256_DIGEST_SIZE];
		sha256_init(&c);
		sha256_update(&c, hlen, (const uint8_t *)h);
		sha256_update(&c, blen, (const uint8_t *)b);
		sha256_digest(&c, sizeof(d), d);
		for (size_t i = 0; i < sizeof(d); i++)
			sprintf(out + 2 * i, "%02x", d[i]);
		return;
	}
	uint64_t v = hlen >= from && h[from - 2] == '1' && h[from - 1] == ' '
			     ? fnv(fnv(0xcbf29ce484222325ULL, h + from, hlen - from), b, blen)
			     : fnv(fnv(0xcbf29ce484222325ULL, h, hlen), b, blen);
	sprintf(out, "%016" PRIx64, v);
}

/* text with the checksum in its header made right for the rest of it, or NULL when the text
 * has no header with a checksum to fix. */
static char *fix_checksum(const char *text, size_t len, size_t *out_len)
{
	const char *nl = memchr(text, '\n', len);
	if (!nl || len < strlen(MAGIC) || memcmp(text, MAGIC, strlen(MAGIC)) != 0)
		return NULL;
	const char *c = NULL;
	for (const char *s = text; s + strlen(CHECKSUM) <= nl; s++)
		if (memcmp(s, CHECKSUM, strlen(CHECKSUM)) == 0)
			c = s;
	if (!c)
		return NULL;
	size_t hlen = (size_t)(c - text), blen = len - (size_t)(nl + 1 - text);
	char *fixed = malloc(hlen + 100 + blen), sum[2 * SHA256_DIGEST_SIZE + 1];
	if (!fixed)
		return NULL;
	memcpy(fixed, text, hlen);
	snapshot_sum(text, hlen, nl + 1, blen, sum);
	int w = snprintf(fixed + hlen, 100, CHECKSUM "%s\n", sum);
	memcpy(fixed + hlen + (size_t)w, nl + 1, blen);
	*out_len = hlen + (size_t)w + blen;
	return fixed;
}

/* Encode p, check that the reference checksum agrees with the codec's, decode it again and
 * check the content, metadata and lookups are the same. */
static void round_trip(const policy_t *p, const struct ref *r, const struct name *qs, size_t nq)
{
	struct codec_meta m = {.saved_at = 1, .db = 3};
	strcpy(m.prefix, "fuzz:prefix");
	char *enc;
	size_t len;
	if (codec_encode(p, &m, &enc, &len) != 0)
		return;
	size_t flen;
	char *fixed = fix_checksum(enc, len, &flen);
	if (!fixed || flen != len || memcmp(fixed, enc, len) != 0)
		abort(); /* The reference checksum here no longer matches the codec's. */
	free(fixed);
	policy_t *q = NULL;
	struct codec_meta got;
	if (codec_decode(enc, len, &q, &got) != 0 ||
	    !digest_is_equal(&policy_stats(q)->digest, &policy_stats(p)->digest) ||
	    got.format != CODEC_FORMAT ||
	    got.db != 3 || strcmp(got.prefix, "fuzz:prefix") != 0 || got.saved_at != 1)
		abort(); /* Our own snapshot must read back as the same policy. */
	if (r)
		check_lookups(q, r, qs, nq);
	policy_free(q);
	free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	static struct ref r;
	static struct name qs[MAX_QUERIES];

	/* The list as the daemon's tools read it: deny rules only. */
	policy_builder_t *b = policy_builder_new();
	if (!b)
		return 0;
	long bad = list_add_to_builder(b, text, size, NULL, NULL);
	if (bad >= 0 && policy_builder_invalid(b) != (size_t)bad)
		abort();
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	if (p) {
		round_trip(p, NULL, NULL, 0);
		policy_free(p);
	}

	/* The same entries with allow rules among them, against the reference. */
	memset(&r, 0, sizeof(r));
	r.b = policy_builder_new();
	if (!r.b)
		return 0;
	if (list_parse(text, size, ref_entry, NULL, &r) < 0 && !r.oom)
		abort();
	p = policy_build(r.b, POLICY_SOURCE_REDIS);
	if (p && !r.oom && r.n < MAX_RULES) {
		size_t nq = queries(&r, qs);
		check_lookups(p, &r, qs, nq);
		round_trip(p, &r, qs, nq);
	}
	policy_free(p);

	/* The input as a snapshot, as it is and with its checksum made right: refused or read,
	 * never a crash, and what is read survives a round trip. */
	policy_t *s = NULL;
	struct codec_meta m;
	if (codec_decode(text, size, &s, &m) == 0)
		policy_free(s);
	/* And as a damaged snapshot: whatever reads of it is a policy, never a crash. */
	size_t kept, dropped;
	s = NULL;
	if (codec_salvage(text, size, &s, &m, &kept, &dropped) == 0)
		policy_free(s);
	size_t flen;
	char *fixed = fix_checksum(text, size, &flen);
	if (fixed) {
		s = NULL;
		if (codec_decode(fixed, flen, &s, &m) == 0) {
			round_trip(s, NULL, NULL, 0);
			policy_free(s);
		}
		free(fixed);
	}
	return 0;
}
