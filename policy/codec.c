/* Snapshot codec. The body is written first so that the header can carry its checksum; reading
 * parses the header, checks the checksum over the header and body, then feeds the body lines to
 * a builder in batches (policy_builder_put_many), and finally checks the count and digest, so a
 * snapshot is refused whole or read whole. It never touches a file: resolver/sync/snapshot.c
 * reads and writes the bytes. */
#include "config.h"

#include "policy/codec.h"

#include "policy/digest.h"
#include "policy/fnv.h"

#include <nettle/sha2.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "embargo-policy-snapshot "
#define HEADER_MAX 512 /* Longer than any header we write (about 250 octets at most). */
#define BATCH 256      /* Body entries handed to the builder at once. */

/* The checksum of formats 1 and 2 over a header's checked part and the body. */
static uint64_t checksum(const char *head, size_t hlen, const char *body, size_t blen)
{
	return fnv_bytes(fnv_bytes(FNV_BASIS, head, hlen), body, blen);
}

/* The checksum of format 3: SHA-256 of the same. */
static void checksum3(const char *head, size_t hlen, const char *body, size_t blen,
		      struct digest *d)
{
	struct sha256_ctx c;
	sha256_init(&c);
	sha256_update(&c, hlen, (const uint8_t *)head);
	sha256_update(&c, blen, (const uint8_t *)body);
	sha256_digest(&c, DIGEST_LEN, d->b);
}

static int prefix_is_valid(const char *prefix)
{
	size_t len = strnlen(prefix, CODEC_PREFIX_MAX);
	return len > 0 && len < CODEC_PREFIX_MAX && !strpbrk(prefix, " \t\r\n\v\f");
}

struct text {
	char *bytes;
	size_t len, cap;
};

static int text_put(struct text *t, const char *s, size_t len)
{
	if (t->len + len > t->cap) {
		size_t cap = t->cap * 2;
		while (cap < t->len + len)
			cap *= 2;
		char *b = realloc(t->bytes, cap);
		if (!b)
			return -ENOMEM;
		t->bytes = b;
		t->cap = cap;
	}
	memcpy(t->bytes + t->len, s, len);
	t->len += len;
	return 0;
}

int codec_encode(const policy_t *p, const struct codec_meta *meta, char **out, size_t *len)
{
	if (!prefix_is_valid(meta->prefix))
		return -EINVAL;
	/* The text is about as large as the policy's records and reasons. */
	struct text body = {.cap = 4096 + policy_memory(p)};
	body.bytes = malloc(body.cap);
	if (!body.bytes)
		return -ENOMEM;
	size_t rules = 0, cursor = 0;
	struct policy_rule r;
	while (policy_rule_next(p, &cursor, &r)) {
		if (!r.parts && !r.reason)
			continue;
		/* "r": a reason waiting for its rule; kept so the snapshot has the whole content. */
		const char *flags = r.parts == (POLICY_PART_DENY | POLICY_PART_ALLOW) ? "da\t"
				    : r.parts == POLICY_PART_DENY		      ? "d\t"
				    : r.parts == POLICY_PART_ALLOW		      ? "a\t"
										      : "r\t";
		char name[NAME_MAXTEXT + 2];
		int nlen = name_to_text(&r.name, name, sizeof(name));
		if (nlen < 0)
			continue; /* Cannot happen: the key came from a valid name. */
		if (text_put(&body, flags, strlen(flags)) < 0 ||
		    text_put(&body, name, (size_t)nlen) < 0 ||
		    (r.reason && (text_put(&body, "\t", 1) < 0 ||
				  text_put(&body, r.reason, strlen(r.reason)) < 0)) ||
		    text_put(&body, "\n", 1) < 0)
			goto nomem;
		rules++;
	}
	char header[HEADER_MAX], hex[DIGEST_HEX + 1];
	digest_hex(&policy_stats(p)->digest, hex);
	int hlen = snprintf(header, sizeof(header),
			    MAGIC "%d rules=%zu digest=%s saved=%" PRId64 " prefix=%s db=%d",
			    CODEC_FORMAT, rules, hex, meta->saved_at, meta->prefix, meta->db);
	/* The checksum covers the whole header before it, format included, and the body. */
	struct digest sum;
	checksum3(header, (size_t)hlen, body.bytes, body.len, &sum);
	digest_hex(&sum, hex);
	hlen += snprintf(header + hlen, sizeof(header) - (size_t)hlen, " checksum=%s\n", hex);
	char *all = malloc((size_t)hlen + body.len + 1);
	if (!all)
		goto nomem;
	memcpy(all, header, (size_t)hlen);
	memcpy(all + hlen, body.bytes, body.len);
	all[(size_t)hlen + body.len] = '\0';
	*out = all;
	*len = (size_t)hlen + body.len;
	free(body.bytes);
	return 0;
nomem:
	free(body.bytes);
	return -ENOMEM;
}

/* Parse the header line h (NUL-terminated): 0 with *meta, *rules, *version and *checked (the
 * length of h the checksum covers, from *check_from), -EPROTONOSUPPORT or -EBADMSG. */
static int parse_header(const char *h, struct codec_meta *meta, size_t *rules,
			struct digest *digest, struct digest *sum, size_t *check_from, size_t *checked)
{
	if (strncmp(h, MAGIC, strlen(MAGIC)) != 0)
		return -EBADMSG;
	const char *f = h + strlen(MAGIC);
	unsigned format = 0;
	int digits = 0;
	while (*f >= '0' && *f <= '9' && digits < 9) {
		format = format * 10 + (unsigned)(*f++ - '0');
		digits++;
	}
	if (!digits || (*f != ' ' && *f != '\0'))
		return -EBADMSG;
	meta->format = format;
	if (format < 1 || format > 3)
		return -EPROTONOSUPPORT;
	if (*f++ != ' ')
		return -EBADMSG;
	int end_fields = 0;
	uint64_t version;
	char dhex[DIGEST_HEX + 1];
	memset(digest, 0, sizeof(*digest)); /* Formats 1 and 2 carry only a 64-bit sum. */
	if (format == 3) {
		if (sscanf(f, "rules=%zu digest=%64[0-9a-f] saved=%" SCNd64 " prefix=%63[^ \t] db=%d%n",
			   rules, dhex, &meta->saved_at, meta->prefix, &meta->db, &end_fields) != 5 ||
		    digest_parse(dhex, strlen(dhex), digest) < 0)
			return -EBADMSG;
		*check_from = 0;
	} else if (format == 1) {
		/* Written by the first embargo, which had only the default prefix and database. */
		strcpy(meta->prefix, "embargo");
		meta->db = 0;
		if (sscanf(f, "rules=%zu version=%" SCNx64 " saved=%" SCNd64 "%n",
			   rules, &version, &meta->saved_at, &end_fields) != 3)
			return -EBADMSG;
		*check_from = (size_t)(f - h); /* Format 1 checked its fields only. */
	} else {
		if (sscanf(f, "rules=%zu version=%" SCNx64 " saved=%" SCNd64 " prefix=%63[^ \t] db=%d%n",
			   rules, &version, &meta->saved_at, meta->prefix, &meta->db, &end_fields) != 5)
			return -EBADMSG;
		*check_from = 0;
	}
	/* The checksum does not cover itself: only its one spelling is accepted. */
	const char *c = f + end_fields;
	size_t ndigits = format == 3 ? DIGEST_HEX : 16;
	if (!end_fields || strncmp(c, " checksum=", 10) != 0 || strlen(c) != 10 + ndigits)
		return -EBADMSG;
	memset(sum, 0, sizeof(*sum));
	for (size_t i = 0; i < ndigits; i++) {
		char x = c[10 + i];
		if (!((x >= '0' && x <= '9') || (x >= 'a' && x <= 'f')))
			return -EBADMSG;
		/* Formats 1 and 2: the 64-bit sum, big-endian, in the first 8 octets. */
		sum->b[i / 2] |= (uint8_t)((x <= '9' ? x - '0' : x - 'a' + 10) << ((i & 1) ? 0 : 4));
	}
	*checked = (size_t)(f - h) + (size_t)end_fields - *check_from;
	return 0;
}

/* One body line into up to two entries (deny and allow share the name). @return entries, or
 * -EBADMSG for a malformed line. */
static int parse_line(const char *line, const char *eol, struct policy_entry *e)
{
	const char *t1 = memchr(line, '\t', (size_t)(eol - line));
	if (!t1)
		return -EBADMSG;
	const char *name = t1 + 1;
	const char *t2 = memchr(name, '\t', (size_t)(eol - name));
	const char *nend = t2 ? t2 : eol;
	size_t flen = (size_t)(t1 - line);
	int deny = memchr(line, 'd', flen) != NULL, allow = memchr(line, 'a', flen) != NULL;
	int reason_only = flen == 1 && line[0] == 'r';
	if ((!deny && !allow && !reason_only) || flen > 2 || (reason_only && !t2) ||
	    (flen == 2 && !(deny && allow)))
		return -EBADMSG;
	struct policy_entry x = {.name = name, .len = (size_t)(nend - name),
				 .reason = t2 ? t2 + 1 : NULL,
				 .reason_len = t2 ? (size_t)(eol - t2 - 1) : 0};
	int n = 0;
	if (deny) {
		e[n] = x;
		e[n++].action = POLICY_DENY;
	}
	if (allow) {
		e[n] = x;
		if (deny)
			e[n].reason = NULL;
		e[n++].action = POLICY_ALLOW;
	}
	if (reason_only) {
		e[n] = x;
		e[n++].action = POLICY_PASS;
	}
	return n;
}

static void decode_invalid(void *ctx, size_t i)
{
	(void)i;
	*(int *)ctx = 1;
}

int codec_decode(const char *text, size_t len, policy_t **out, struct codec_meta *meta)
{
	const char *nl = memchr(text, '\n', len);
	if (!nl || (size_t)(nl - text) >= HEADER_MAX)
		return -EBADMSG;
	char header[HEADER_MAX];
	memcpy(header, text, (size_t)(nl - text));
	header[nl - text] = '\0';
	if (memchr(header, '\0', (size_t)(nl - text)))
		return -EBADMSG;
	struct codec_meta m = {0};
	size_t rules, from, checked;
	struct digest digest, sum;
	int rc = parse_header(header, &m, &rules, &digest, &sum, &from, &checked);
	if (rc < 0) {
		meta->format = m.format;
		return rc;
	}
	const char *body = nl + 1;
	size_t blen = len - (size_t)(body - text);
	if (m.format == 3) {
		struct digest got;
		checksum3(header, checked, body, blen, &got);
		if (!digest_is_equal(&got, &sum))
			return -EBADMSG;
	} else if (checksum(header + from, checked, body, blen) != digest_u64(&sum)) {
		return -EBADMSG;
	}

	policy_builder_t *b = policy_builder_new();
	if (!b)
		return -ENOMEM;
	if (rules < blen)
		(void)policy_builder_reserve(b, rules, blen);
	size_t seen = 0, ne = 0;
	int bad = 0;
	struct policy_entry e[BATCH];
	for (const char *line = body, *end = body + blen; line < end;) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			goto corrupt;
		int n = parse_line(line, eol, e + ne);
		if (n < 0)
			goto corrupt;
		ne += (size_t)n;
		seen++;
		line = eol + 1;
		if (ne + 2 > BATCH || line >= end) {
			if (policy_builder_put_many(b, e, ne, decode_invalid, &bad) < 0) {
				policy_builder_free(b);
				return -ENOMEM;
			}
			if (bad)
				goto corrupt;
			ne = 0;
		}
	}
	if (seen != rules)
		goto corrupt;
	/* Format 3's digest is the writer's, of this very content: the SHA-256 checksum of the
	 * whole file, checked above, says the file is as written, so the digest is taken rather
	 * than computed again (the SHA-256 pass over 1M records would cost a start a third more).
	 * It is unkeyed: whoever can write the file can write any content with its digest, so
	 * computing it again would guard against nothing more. Formats 1 and 2 had a 64-bit FNV
	 * sum for a version, not computed any more: their checksum alone covers the body, and
	 * their digest is computed. */
	policy_t *p = policy_build_digested(b, POLICY_SOURCE_SNAPSHOT, m.format == 3 ? &digest : NULL);
	if (!p)
		return -ENOMEM;
	*out = p;
	*meta = m;
	return 0;
corrupt:
	policy_builder_free(b);
	return -EBADMSG;
}

static void count_invalid(void *ctx, size_t i)
{
	(void)i;
	(*(size_t *)ctx)++;
}

int codec_salvage(const char *text, size_t len, policy_t **out, struct codec_meta *meta,
		  size_t *kept, size_t *dropped)
{
	*kept = *dropped = 0;
	memset(meta, 0, sizeof(*meta));
	const char *nl = memchr(text, '\n', len);
	if (nl && (size_t)(nl - text) < HEADER_MAX) {
		char header[HEADER_MAX];
		memcpy(header, text, (size_t)(nl - text));
		header[nl - text] = '\0';
		size_t rules, from, checked;
		struct digest digest, sum;
		if (memchr(text, '\0', (size_t)(nl - text)) ||
		    parse_header(header, meta, &rules, &digest, &sum, &from, &checked) < 0)
			memset(meta, 0, sizeof(*meta)); /* The header itself is damaged. */
	}
	policy_builder_t *b = policy_builder_new();
	if (!b)
		return -ENOMEM;
	struct policy_entry e[BATCH];
	size_t ne = 0, invalid = 0;
	const char *end = text + len;
	for (const char *line = nl ? nl + 1 : end; line < end;) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol) {
			(*dropped)++; /* Cut off: a shorter name is another name. */
			break;
		}
		int n = parse_line(line, eol, e + ne);
		if (n < 0)
			(*dropped)++;
		else
			ne += (size_t)n;
		line = eol + 1;
		if (ne + 2 > BATCH || line >= end) {
			if (policy_builder_put_many(b, e, ne, count_invalid, &invalid) < 0) {
				policy_builder_free(b);
				return -ENOMEM;
			}
			ne = 0;
		}
	}
	if (ne && policy_builder_put_many(b, e, ne, count_invalid, &invalid) < 0) {
		policy_builder_free(b);
		return -ENOMEM;
	}
	*dropped += invalid;
	*out = policy_build(b, POLICY_SOURCE_SNAPSHOT);
	if (!*out)
		return -ENOMEM;
	const struct policy_stats *st = policy_stats(*out);
	*kept = st->deny + st->allow;
	return 0;
}

/* Add p's rules of the given parts, and its reasons, to b. */
static int add_parts(policy_builder_t *b, const policy_t *p, unsigned parts)
{
	return policy_builder_add_from(b, p, parts | POLICY_PART_REASON);
}

policy_t *codec_recover(const policy_t *salvaged, const policy_t *intact, const policy_t *extra)
{
	policy_builder_t *b = policy_builder_new();
	if (!b)
		return NULL;
	int rc = add_parts(b, salvaged, POLICY_PART_DENY);
	if (rc == 0 && intact)
		rc = add_parts(b, intact, POLICY_PART_DENY);
	if (rc == 0 && extra)
		rc = add_parts(b, extra, POLICY_PART_DENY);
	/* An allow rule only where the damaged file and the intact generation agree on it: one
	 * read from damaged bytes, or one the newest file no longer had, could lift a name. */
	if (rc == 0 && intact)
		rc = policy_builder_add_allows_in(b, salvaged, intact);
	if (rc < 0) {
		policy_builder_free(b);
		return NULL;
	}
	return policy_build(b, POLICY_SOURCE_SNAPSHOT);
}
