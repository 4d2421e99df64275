/* List text: TSV, plain and hosts-file lines, what each entry callback sees, and what a builder
 * makes of a list. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "policy/list.h"

TestSuite(list);

static struct policy_verdict decide(const policy_t *p, const char *s)
{
	struct name n;
	cr_assert_eq(name_from_text(&n, s, strlen(s)), 0, "%s", s);
	struct policy_verdict v;
	policy_lookup(p, &n, &v);
	return v;
}

/* What list_parse() reported, in order. */
struct seen {
	char names[16][64];
	char reasons[16][64];
	size_t name_lines[16];
	size_t nnames;
	size_t bad_lines[16];
	size_t nbad;
};

static int on_entry(void *ctx, size_t line, const char *name, const char *reason,
		    size_t reason_len)
{
	struct seen *s = ctx;
	cr_assert_lt(s->nnames, 16);
	snprintf(s->names[s->nnames], sizeof(s->names[0]), "%s", name);
	snprintf(s->reasons[s->nnames], sizeof(s->reasons[0]), "%.*s", (int)reason_len,
		 reason ? reason : "");
	s->name_lines[s->nnames++] = line;
	return 0;
}

static void on_invalid(void *ctx, size_t line, const char *text, size_t len)
{
	struct seen *s = ctx;
	cr_assert_lt(s->nbad, 16);
	s->bad_lines[s->nbad++] = line;
}

static long parse(const char *text, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	return list_parse(text, strlen(text), on_entry, on_invalid, s);
}

Test(list, formats)
{
	const char list[] = "# comment\n"
			    "\n"
			    "tsv.example\tA reason with spaces\n"
			    "plain.example\n"
			    "0.0.0.0 hosts.example\n"
			    "127.0.0.1 hosts2.example # trailing comment\n"
			    "bad name.example\n"
			    "   indented.example  \r\n"
			    "in valid!.example\tx\n"
			    "last.example";
	struct seen s;
	cr_assert_eq(parse(list, &s), 2);
	cr_assert_eq(s.nbad, 2);
	cr_expect_eq(s.bad_lines[0], 7);
	cr_expect_eq(s.bad_lines[1], 9);
	cr_assert_eq(s.nnames, 6);
	const char *want[] = {"tsv.example",	  "plain.example",    "hosts.example",
			      "hosts2.example", "indented.example", "last.example"};
	const size_t lines[] = {3, 4, 5, 6, 8, 10};
	for (size_t i = 0; i < 6; i++) {
		cr_expect_str_eq(s.names[i], want[i]);
		cr_expect_eq(s.name_lines[i], lines[i], "%s", want[i]);
	}
	cr_expect_str_eq(s.reasons[0], "A reason with spaces");
	cr_expect_str_eq(s.reasons[2], "");
}

/* Regression: a tab after the sink address made the line TSV, importing "0.0.0.0" as a name
 * with the real name as its reason. */
Test(list, hosts_line_with_a_tab_imports_the_name)
{
	struct seen s;
	cr_assert_eq(parse("0.0.0.0\tads.example\n", &s), 0);
	cr_assert_eq(s.nnames, 1);
	cr_expect_str_eq(s.names[0], "ads.example");
	cr_expect_str_eq(s.reasons[0], "");
	cr_assert_eq(parse("::1 \t  v6.example\t\n", &s), 0);
	cr_assert_eq(s.nnames, 1);
	cr_expect_str_eq(s.names[0], "v6.example");
}

/* Regression: only the first name of a hosts line was taken; the second made the line invalid. */
Test(list, hosts_line_gives_every_name)
{
	struct seen s;
	cr_assert_eq(parse("0.0.0.0 a.example b.example  # comment\n"
			   "127.0.0.1\tc.example\tD.Example. e.example#tight comment\n",
			   &s),
		     0);
	cr_assert_eq(s.nnames, 5);
	const char *want[] = {"a.example", "b.example", "c.example", "d.example", "e.example"};
	const size_t lines[] = {1, 1, 2, 2, 2};
	for (size_t i = 0; i < 5; i++) {
		cr_expect_str_eq(s.names[i], want[i]);
		cr_expect_eq(s.name_lines[i], lines[i]);
	}
}

Test(list, hosts_line_with_a_bad_name_keeps_the_good_ones)
{
	struct seen s;
	cr_assert_eq(parse("0.0.0.0 good.example bad!.example other.example\n"
			   "0.0.0.0   # only a comment\n"
			   "0.0.0.0\n",
			   &s),
		     3);
	cr_assert_eq(s.nnames, 2);
	cr_expect_str_eq(s.names[0], "good.example");
	cr_expect_str_eq(s.names[1], "other.example");
	cr_assert_eq(s.nbad, 3);
	cr_expect_eq(s.bad_lines[0], 1);
	cr_expect_eq(s.bad_lines[1], 2);
	cr_expect_eq(s.bad_lines[2], 3);
}

/* Regression: "0.0.0.0 0.0.0.0" (common in published hosts files) and an address standing
 * alone were imported as names, and a rule on "0.0.0.0" would deny a query for it. */
Test(list, ip_literals_are_never_names)
{
	struct seen s;
	cr_assert_eq(parse("0.0.0.0 0.0.0.0\n"
			   "192.168.1.1\n"
			   "10.0.0.1\tnot a name\n"
			   "127.0.0.1 localhost.example 255.255.255.255\n"
			   "1.2.3.example\n",
			   &s),
		     4);
	cr_assert_eq(s.nnames, 2);
	cr_expect_str_eq(s.names[0], "localhost.example");
	cr_expect_str_eq(s.names[1], "1.2.3.example", "digits are fine below a real TLD");
}

static int stop_at_second(void *ctx, size_t line, const char *name, const char *reason,
			  size_t reason_len)
{
	int *n = ctx;
	return ++*n == 2 ? -ECANCELED : 0;
}

Test(list, entry_callback_stops_the_parse)
{
	int n = 0;
	const char text[] = "0.0.0.0 a.example b.example c.example\n";
	cr_expect_eq(list_parse(text, strlen(text), stop_at_second, NULL, &n), -ECANCELED);
	cr_expect_eq(n, 2);
}

static size_t invalid_seen;

static void count_invalid(void *ctx, size_t line, const char *text, size_t len)
{
	invalid_seen++;
}

Test(list, add_to_builder)
{
	const char list[] = "tsv.example\tA reason\n"
			    "0.0.0.0\tads.example tracker.example # hosts\n"
			    "bad name.example\n"
			    "0.0.0.0 0.0.0.0\n";
	policy_builder_t *b = policy_builder_new();
	invalid_seen = 0;
	cr_assert_eq(list_add_to_builder(b, list, strlen(list), count_invalid, NULL), 2);
	cr_expect_eq(invalid_seen, 2);
	cr_expect_eq(policy_builder_invalid(b), 2);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	cr_assert_not_null(p);
	cr_expect_str_eq(decide(p, "www.tsv.example").reason, "A reason");
	cr_expect_eq(decide(p, "ads.example").action, POLICY_DENY);
	cr_expect_eq(decide(p, "x.tracker.example").action, POLICY_DENY);
	cr_expect_eq(policy_stats(p)->deny, 3);
	cr_expect_eq(policy_stats(p)->invalid, 2);
	policy_free(p);
}
