/* List text: TSV, plain and hosts-file lines. A line is classified by its first field: a sink
 * address makes it a hosts line (every further field up to a '#' is a name), anything else is a
 * name optionally followed by TAB and a reason. Names are checked by name_from_text(), which
 * refuses IP literals, so an address is never imported as a domain. */
#include "config.h"

#include "policy/list.h"

#include <errno.h>
#include <string.h>

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Does s[0..len) spell an address that hosts files use to sink names? */
static int is_sink_address(const char *s, size_t len)
{
	static const char *const sinks[] = {"0.0.0.0",	 "127.0.0.1",	    "::",
					    "::1",	 "0:0:0:0:0:0:0:0", "0:0:0:0:0:0:0:1"};
	for (size_t i = 0; i < sizeof(sinks) / sizeof(sinks[0]); i++)
		if (strlen(sinks[i]) == len && memcmp(sinks[i], s, len) == 0)
			return 1;
	return 0;
}

/* Hand name[0..len) to on_entry in normal form: 0, 1 when it is invalid, or the callback's
 * negative errno. */
static int entry(const char *name, size_t len, const char *reason, size_t reason_len,
		 size_t lineno, list_entry_cb on_entry, void *ctx)
{
	struct name n;
	char normal[NAME_MAXTEXT + 2];
	if (name_from_text(&n, name, len) < 0 || name_to_text(&n, normal, sizeof(normal)) < 0)
		return 1;
	return on_entry(ctx, lineno, normal, reason, reason_len);
}

/* The names of a hosts line, s[0..e) after its address: 0 or a callback's negative errno. */
static long hosts_names(const char *s, const char *e, const char *line, size_t line_len,
			size_t lineno, list_entry_cb on_entry, list_invalid_cb on_invalid,
			void *ctx, long *bad)
{
	const char *hash = memchr(s, '#', (size_t)(e - s));
	if (hash)
		e = hash; /* hosts(5): from '#' to the end of the line is a comment. */
	int names = 0;
	for (;;) {
		while (s < e && is_space(*s))
			s++;
		if (s == e)
			break;
		const char *end = s;
		while (end < e && !is_space(*end))
			end++;
		names++;
		int rc = entry(s, (size_t)(end - s), NULL, 0, lineno, on_entry, ctx);
		if (rc < 0)
			return rc;
		if (rc > 0) {
			(*bad)++;
			if (on_invalid)
				on_invalid(ctx, lineno, line, line_len);
		}
		s = end;
	}
	if (!names) {
		(*bad)++; /* An address with no name. */
		if (on_invalid)
			on_invalid(ctx, lineno, line, line_len);
	}
	return 0;
}

long list_parse(const char *text, size_t len, list_entry_cb on_entry, list_invalid_cb on_invalid,
		void *ctx)
{
	long bad = 0;
	size_t lineno = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		const char *line = p, *s = p, *e = eol;
		size_t line_len = (size_t)(eol - p);
		p = eol + 1;
		lineno++;
		while (s < e && is_space(*s))
			s++;
		while (e > s && is_space(e[-1]))
			e--;
		if (s == e || *s == '#')
			continue;
		const char *f1e = s;
		while (f1e < e && !is_space(*f1e))
			f1e++;
		if (is_sink_address(s, (size_t)(f1e - s))) {
			long rc = hosts_names(f1e, e, line, line_len, lineno, on_entry, on_invalid, ctx,
					      &bad);
			if (rc < 0)
				return rc;
			continue;
		}
		const char *reason = NULL;
		size_t reason_len = 0;
		int rc = 1;
		if (f1e < e && *f1e == '\t') {
			reason = f1e + 1;
			reason_len = (size_t)(e - reason);
		}
		/* Anything else after the name must be a comment. */
		const char *c = f1e;
		while (c < e && is_space(*c))
			c++;
		if (reason || c == e || *c == '#')
			rc = entry(s, (size_t)(f1e - s), reason, reason_len, lineno, on_entry, ctx);
		if (rc < 0)
			return rc;
		if (rc > 0) {
			bad++;
			if (on_invalid)
				on_invalid(ctx, lineno, line, line_len);
		}
	}
	return bad;
}

struct add_list {
	policy_builder_t *b;
	list_invalid_cb on_invalid;
	void *ctx;
};

static int add_entry(void *ctx, size_t line, const char *name, const char *reason,
		     size_t reason_len)
{
	struct add_list *al = ctx;
	int rc = policy_builder_add(al->b, POLICY_DENY, name, strlen(name));
	if (rc == 0 && reason_len > 0)
		rc = policy_builder_set_reason(al->b, name, strlen(name), reason, reason_len);
	return rc;
}

static void add_invalid(void *ctx, size_t line, const char *text, size_t len)
{
	struct add_list *al = ctx;
	policy_builder_count_invalid(al->b, 1);
	if (al->on_invalid)
		al->on_invalid(al->ctx, line, text, len);
}

long list_add_to_builder(policy_builder_t *b, const char *text, size_t len,
			 list_invalid_cb on_invalid, void *ctx)
{
	struct add_list al = {.b = b, .on_invalid = on_invalid, .ctx = ctx};
	return list_parse(text, len, add_entry, add_invalid, &al);
}

policy_t *list_bundled(void)
{
	policy_builder_t *b = policy_builder_new();
	if (!b)
		return NULL;
	if (list_add_to_builder(b, list_bundled_tsv, strlen(list_bundled_tsv), NULL, NULL) < 0) {
		policy_builder_free(b);
		return NULL;
	}
	return policy_build(b, POLICY_SOURCE_BUNDLED);
}
