/* The held-load rule and the diff it rests on. A diff walks both policies' rules and looks each
 * up in the other in batches (policy_each_missing), keeping counts and the first names. */
#include "config.h"

#include "policy/guard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void note(struct guard_names *n, const struct name *name)
{
	if (n->count < GUARD_NAMES &&
	    name_suffix_to_text(name, name->nlabels, n->names[n->count], sizeof(n->names[0])) < 0)
		n->names[n->count][0] = '\0';
	n->count++;
}

struct sides {
	struct guard_names *deny, *allow, *reason;
};

static void on_missing(void *ctx, const struct name *n, enum policy_part part)
{
	const struct sides *s = ctx;
	if (part == POLICY_PART_DENY)
		note(s->deny, n);
	else if (part == POLICY_PART_ALLOW)
		note(s->allow, n);
	else if (s->reason)
		note(s->reason, n);
}

void guard_diff(const policy_t *from, const policy_t *to, struct guard_diff *d)
{
	memset(d, 0, sizeof(*d));
	const struct policy_stats *a = policy_stats(from), *b = policy_stats(to);
	if (a->version == b->version && a->deny == b->deny && a->allow == b->allow &&
	    a->reasons == b->reasons)
		return; /* Equal content. */
	struct sides removed = {&d->deny_removed, &d->allow_removed, &d->reason_changed};
	struct sides added = {&d->deny_added, &d->allow_added, NULL};
	policy_each_missing(from, to, POLICY_PART_DENY | POLICY_PART_ALLOW | POLICY_PART_REASON,
			    on_missing, &removed);
	policy_each_missing(to, from, POLICY_PART_DENY | POLICY_PART_ALLOW, on_missing, &added);
}

size_t guard_allowed(const struct guard_limits *l, size_t deny)
{
	if (l->off)
		return SIZE_MAX;
	size_t share = (deny * l->percent + 99) / 100;
	if (share < 1)
		share = 1;
	return share < l->count ? share : l->count;
}

enum guard_verdict guard_check(const struct guard_limits *l, enum policy_source in_force,
			       size_t in_force_deny, const struct guard_diff *d, uint64_t version,
			       int deny_missing, const struct guard_consent *c)
{
	enum guard_verdict held;
	if (deny_missing && in_force_deny > 0 && !l->off)
		held = GUARD_HOLD_MISSING;
	else if (d->deny_removed.count > guard_allowed(l, in_force_deny))
		held = GUARD_HOLD_SHRINK;
	else
		return GUARD_PUBLISH;
	(void)in_force;
	if (c->present && c->version == version)
		return GUARD_CONSENTED;
	return held;
}

static int parse_number(const char *s, size_t len, unsigned long long max, unsigned long long *v)
{
	if (len == 0 || len > 12)
		return -EINVAL;
	unsigned long long x = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		x = x * 10 + (unsigned)(s[i] - '0');
	}
	if (x > max)
		return -EINVAL;
	*v = x;
	return 0;
}

int guard_parse_limits(const char *text, struct guard_limits *l)
{
	struct guard_limits out = {.percent = 100, .count = SIZE_MAX};
	if (strcmp(text, "off") == 0) {
		*l = (struct guard_limits){.percent = 100, .count = SIZE_MAX, .off = 1};
		return 0;
	}
	int have_pct = 0, have_count = 0;
	for (const char *s = text;;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		unsigned long long v;
		if (len > 0 && s[len - 1] == '%') {
			if (have_pct || parse_number(s, len - 1, 100, &v) < 0)
				return -EINVAL;
			out.percent = (unsigned)v;
			have_pct = 1;
		} else {
			if (have_count || parse_number(s, len, 1000000000ULL, &v) < 0)
				return -EINVAL;
			out.count = (size_t)v;
			have_count = 1;
		}
		if (!comma)
			break;
		s = comma + 1;
	}
	*l = out;
	return 0;
}
