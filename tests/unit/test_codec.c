/* The snapshot codec: round trips, the Redis prefix and database in the header, format 1 files
 * written by earlier versions, formats from the future, and damage of every kind. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/list.h"
#include "policy/codec.h"
#include "policy/fnv.h"

TestSuite(codec);

static struct policy_verdict decide(const policy_t *p, const char *s)
{
	struct name n;
	cr_assert_eq(name_from_text(&n, s, strlen(s)), 0);
	struct policy_verdict v;
	policy_lookup(p, &n, &v);
	return v;
}

static void add(policy_builder_t *b, enum policy_action a, const char *s)
{
	cr_assert_eq(policy_builder_add(b, a, s, strlen(s)), 0, "%s", s);
}

static policy_t *sample(void)
{
	policy_builder_t *b = policy_builder_new();
	add(b, POLICY_DENY, "example.com");
	add(b, POLICY_ALLOW, "support.example.com");
	add(b, POLICY_DENY, "both.example");
	add(b, POLICY_ALLOW, "both.example");
	add(b, POLICY_DENY, ".");
	const char reason[] = "Sanctions list 2026-01, item 12 (ü)";
	policy_builder_set_reason(b, "example.com", 11, reason, strlen(reason));
	policy_builder_set_reason(b, "orphan.example", 14, "no rule yet", 11);
	policy_builder_set_reason(b, "both.example", 12, "both ways", 9);
	return policy_build(b, POLICY_SOURCE_REDIS);
}

static char *encode(const policy_t *p, int64_t saved, const char *prefix, int db, size_t *len)
{
	struct codec_meta m = {.saved_at = saved, .db = db};
	snprintf(m.prefix, sizeof(m.prefix), "%s", prefix);
	char *text = NULL;
	cr_assert_eq(codec_encode(p, &m, &text, len), 0);
	return text;
}

Test(codec, v3_round_trip)
{
	policy_t *p = sample();
	size_t len;
	char *text = encode(p, 1700000000, "embargo", 0, &len);
	cr_expect_eq(strncmp(text, "embargo-policy-snapshot 3 ", 26), 0, "%.60s", text);
	char hex[DIGEST_HEX + 1], field[DIGEST_HEX + 16];
	digest_hex(&policy_stats(p)->digest, hex);
	snprintf(field, sizeof(field), " digest=%s ", hex);
	cr_expect_not_null(strstr(text, field), "the header carries the whole digest: %.200s", text);
	policy_t *q = NULL;
	struct codec_meta m;
	cr_assert_eq(codec_decode(text, len, &q, &m), 0);
	cr_expect_eq(m.format, 3);
	cr_expect_eq(m.saved_at, 1700000000);
	cr_expect_str_eq(m.prefix, "embargo");
	cr_expect_eq(m.db, 0);
	cr_expect(digest_is_equal(&policy_stats(q)->digest, &policy_stats(p)->digest));
	cr_expect_eq(policy_stats(q)->source, POLICY_SOURCE_SNAPSHOT);
	cr_expect_eq(policy_stats(q)->deny, 3);
	cr_expect_eq(policy_stats(q)->allow, 2);
	cr_expect_str_eq(decide(q, "www.example.com").reason, "Sanctions list 2026-01, item 12 (ü)");
	cr_expect_eq(decide(q, "a.support.example.com").action, POLICY_ALLOW);
	cr_expect_eq(decide(q, "both.example").action, POLICY_ALLOW);
	cr_expect_eq(decide(q, "anything.org").action, POLICY_DENY);
	free(text);
	policy_free(p);
	policy_free(q);
}

Test(codec, prefix_and_db_are_recorded)
{
	policy_t *p = sample();
	size_t len;
	char *text = encode(p, 7, "corp-eu:filter", 12, &len);
	cr_expect_not_null(strstr(text, " prefix=corp-eu:filter db=12 checksum="), "%.160s", text);
	policy_t *q = NULL;
	struct codec_meta m;
	cr_assert_eq(codec_decode(text, len, &q, &m), 0);
	cr_expect_str_eq(m.prefix, "corp-eu:filter");
	cr_expect_eq(m.db, 12);
	cr_expect_eq(m.saved_at, 7);
	free(text);
	policy_free(q);

	/* The longest prefix the options allow, and prefixes a header could not carry. */
	char longest[CODEC_PREFIX_MAX];
	memset(longest, 'p', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	text = encode(p, 7, longest, 0, &len);
	cr_assert_eq(codec_decode(text, len, &q, &m), 0);
	cr_expect_str_eq(m.prefix, longest);
	free(text);
	policy_free(q);
	const char *bad[] = {"", "two words", "tab\there"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct codec_meta bm = {0};
		strcpy(bm.prefix, bad[i]);
		text = NULL;
		cr_expect_eq(codec_encode(p, &bm, &text, &len), -EINVAL, "'%s'", bad[i]);
		cr_expect_null(text);
	}
	policy_free(p);
}

/* A snapshot as embargo 0.1.0 wrote it (format 1: no prefix, no database). */
static const char v1_snapshot[] =
	"embargo-policy-snapshot 1 rules=4 version=e2ae306908777aad saved=1700000000 "
	"checksum=87f632df92250829\n"
	"d\texample.com\tSanctions list, item 12\n"
	"a\tsupport.example.com\n"
	"da\tboth.example\n"
	"r\torphan.example\tno rule yet\n";

Test(codec, v1_is_still_read)
{
	policy_t *q = NULL;
	struct codec_meta m;
	cr_assert_eq(codec_decode(v1_snapshot, strlen(v1_snapshot), &q, &m), 0);
	cr_expect_eq(m.format, 1);
	cr_expect_eq(m.saved_at, 1700000000);
	cr_expect_str_eq(m.prefix, "embargo", "format 1 came from the default prefix");
	cr_expect_eq(m.db, 0);
	cr_expect_str_eq(decide(q, "www.example.com").reason, "Sanctions list, item 12");
	cr_expect_eq(decide(q, "a.support.example.com").action, POLICY_ALLOW);
	cr_expect_eq(decide(q, "both.example").action, POLICY_ALLOW);
	cr_expect_eq(decide(q, "orphan.example").action, POLICY_PASS);

	/* Saved again, it becomes format 3 with the same content. */
	size_t len;
	char *text = encode(q, m.saved_at, m.prefix, m.db, &len);
	policy_t *r = NULL;
	cr_assert_eq(codec_decode(text, len, &r, &m), 0);
	cr_expect_eq(m.format, 3);
	cr_expect(digest_is_equal(&policy_stats(r)->digest, &policy_stats(q)->digest));
	free(text);
	policy_free(q);
	policy_free(r);

	/* And format 1 damage is caught as before. */
	char copy[sizeof(v1_snapshot)];
	memcpy(copy, v1_snapshot, sizeof(copy));
	copy[strlen(copy) - 3] ^= 1;
	cr_expect_eq(codec_decode(copy, strlen(copy), &q, &m), -EBADMSG);
}

/* Format 2, as embargo wrote it before digests: a 64-bit FNV checksum, which is checked. */
Test(codec, v2_is_still_read)
{
	const char head[] = "embargo-policy-snapshot 2 rules=2 version=0123456789abcdef "
			    "saved=1700000000 prefix=corp db=4";
	const char body[] = "d\texample.com\tSanctions list, item 12\na\tsupport.example.com\n";
	uint64_t sum = fnv_bytes(fnv_bytes(FNV_BASIS, head, strlen(head)), body, strlen(body));
	char text[512];
	int len = snprintf(text, sizeof(text), "%s checksum=%016llx\n%s", head,
			   (unsigned long long)sum, body);
	policy_t *q = NULL;
	struct codec_meta m;
	cr_assert_eq(codec_decode(text, (size_t)len, &q, &m), 0);
	cr_expect_eq(m.format, 2);
	cr_expect_str_eq(m.prefix, "corp");
	cr_expect_eq(m.db, 4);
	cr_expect_eq(decide(q, "www.example.com").action, POLICY_DENY);
	cr_expect_eq(decide(q, "a.support.example.com").action, POLICY_ALLOW);
	policy_free(q);
	text[len - 3] ^= 1;
	cr_expect_eq(codec_decode(text, (size_t)len, &q, &m), -EBADMSG);
}

Test(codec, unknown_format_is_not_called_corrupt)
{
	const char *future[] = {
		"embargo-policy-snapshot 4 rules=0 version=0 saved=0 prefix=embargo db=0 zstd=1 "
		"checksum=0\n",
		"embargo-policy-snapshot 17\nwhatever the future holds\n",
		"embargo-policy-snapshot 0 rules=0\n",
	};
	const unsigned want[] = {4, 17, 0};
	for (size_t i = 0; i < 3; i++) {
		policy_t *q = NULL;
		struct codec_meta m = {0};
		cr_expect_eq(codec_decode(future[i], strlen(future[i]), &q, &m), -EPROTONOSUPPORT,
			     "%s", future[i]);
		cr_expect_eq(m.format, want[i]);
		cr_expect_null(q);
	}
	/* Not our header at all, or a format that is no number: corrupt. */
	const char *junk[] = {"embargo-policy-snapshot x rules=0\n", "embargo-policy-snapshot\n",
			      "hello\n", "embargo-policy-snapshot 2x rules=0\n", ""};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		policy_t *q = NULL;
		struct codec_meta m;
		cr_expect_eq(codec_decode(junk[i], strlen(junk[i]), &q, &m), -EBADMSG, "%s", junk[i]);
	}
}

Test(codec, damage_is_refused)
{
	policy_t *p = sample();
	size_t len;
	char *text = encode(p, 1, "embargo", 3, &len);
	policy_t *q = NULL;
	struct codec_meta m;
	const size_t format_at = strlen("embargo-policy-snapshot ");
	/* Every single-bit change and every truncation is caught. A change of the format digit
	 * makes the header claim another format, which is refused as such. */
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			char keep = text[i];
			text[i] = (char)(keep ^ (1 << bit));
			int rc = codec_decode(text, len, &q, &m);
			if (i == format_at && text[i] >= '4' && text[i] <= '9')
				cr_expect_eq(rc, -EPROTONOSUPPORT, "byte %zu bit %d", i, bit);
			else
				cr_expect_eq(rc, -EBADMSG, "byte %zu bit %d", i, bit);
			text[i] = keep;
		}
	}
	for (size_t cut = 0; cut < len; cut++)
		cr_expect_eq(codec_decode(text, cut, &q, &m), -EBADMSG, "cut at %zu", cut);
	free(text);
	policy_free(p);
}

Test(codec, empty_round_trip)
{
	policy_t *p = policy_build(policy_builder_new(), POLICY_SOURCE_REDIS);
	size_t len;
	char *text = encode(p, 5, "embargo", 0, &len);
	policy_t *q = NULL;
	struct codec_meta m;
	cr_assert_eq(codec_decode(text, len, &q, &m), 0);
	cr_expect_eq(policy_stats(q)->deny, 0);
	cr_expect(digest_is_equal(&policy_stats(q)->digest, &policy_stats(p)->digest));
	free(text);
	policy_free(p);
	policy_free(q);
}

static int denies(const policy_t *p, const char *name)
{
	return decide(p, name).action == POLICY_DENY;
}

Test(codec, a_damaged_snapshot_salvages_whole_lines_only)
{
	policy_t *p = sample();
	size_t len;
	char *text = encode(p, 9, "corp", 2, &len);
	/* Cut 5 octets off the end: the last line is dropped whole, the header still read. */
	policy_t *q = NULL;
	struct codec_meta m;
	size_t kept, dropped;
	cr_assert_eq(codec_decode(text, len - 5, &q, &m), -EBADMSG);
	cr_assert_eq(codec_salvage(text, len - 5, &q, &m, &kept, &dropped), 0);
	cr_expect_str_eq(m.prefix, "corp");
	cr_expect_eq(m.db, 2);
	cr_expect_eq(dropped, 1);
	size_t all = policy_stats(p)->deny + policy_stats(p)->allow;
	cr_expect(kept <= all && kept + 2 >= all, "one line lost: %zu of %zu", kept, all);
	policy_free(q);
	cr_assert_eq(codec_salvage(text, len, &q, &m, &kept, &dropped), 0);
	cr_expect_eq(dropped, 0);
	cr_expect_eq(kept, all);
	cr_expect(digest_is_equal(&policy_stats(q)->digest, &policy_stats(p)->digest));
	policy_free(q);
	/* A damaged header: no meta, the body still read. */
	text[3] = '#';
	cr_assert_eq(codec_salvage(text, len, &q, &m, &kept, &dropped), 0);
	cr_expect_str_eq(m.prefix, "");
	cr_expect(denies(q, "www.example.com"));
	policy_free(q);
	free(text);
	policy_free(p);
}

Test(codec, recovery_only_over_blocks)
{
	/* The damaged newest file lost a deny rule and gained an allow rule from damaged bytes;
	 * the intact older one has its own allow rule and a rule since removed. */
	policy_builder_t *b = policy_builder_new();
	cr_assert_eq(policy_builder_add(b, POLICY_DENY, "kept.example", 12), 0);
	cr_assert_eq(policy_builder_add(b, POLICY_ALLOW, "ok.kept.example", 15), 0);
	cr_assert_eq(policy_builder_add(b, POLICY_ALLOW, "fake.kept.example", 17), 0);
	policy_t *salvaged = policy_build(b, POLICY_SOURCE_SNAPSHOT);
	b = policy_builder_new();
	cr_assert_eq(policy_builder_add(b, POLICY_DENY, "kept.example", 12), 0);
	cr_assert_eq(policy_builder_add(b, POLICY_DENY, "older.example", 13), 0);
	cr_assert_eq(policy_builder_add(b, POLICY_ALLOW, "ok.kept.example", 15), 0);
	cr_assert_eq(policy_builder_add(b, POLICY_ALLOW, "old.kept.example", 16), 0);
	policy_t *intact = policy_build(b, POLICY_SOURCE_SNAPSHOT);
	cr_assert(salvaged && intact);
	policy_t *r = codec_recover(salvaged, intact, NULL);
	cr_assert(r);
	cr_expect(denies(r, "www.kept.example"));
	cr_expect(denies(r, "www.older.example"), "the older generation's deny rules too");
	cr_expect_eq(decide(r, "ok.kept.example").action, POLICY_ALLOW, "an allow both agree on");
	cr_expect(denies(r, "fake.kept.example"), "an allow only the damaged file has");
	cr_expect(denies(r, "old.kept.example"), "an allow only the older file has");
	policy_free(r);
	/* Without an intact generation: no allow rule at all, and the extra list's deny rules. */
	policy_t *extra = list_bundled();
	r = codec_recover(salvaged, NULL, extra);
	cr_expect(denies(r, "ok.kept.example"));
	cr_expect(denies(r, "kaspersky.com"));
	policy_free(r);
	policy_free(extra);
	policy_free(salvaged);
	policy_free(intact);
}
