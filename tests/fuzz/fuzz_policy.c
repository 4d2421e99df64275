/* Fuzz target: everything that reads policy text. The input is a list (TSV, plain or hosts
 * lines) and a snapshot at once; whatever is accepted is built, looked up, encoded and decoded
 * again, which must give the same version. Built for libFuzzer with --enable-fuzzing; `make
 * check` replays the corpus. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	policy_builder_t *b = policy_builder_new();
	if (!b)
		return 0;
	policy_builder_add_list(b, text, size, NULL, NULL);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	if (!p)
		return 0;
	struct name n;
	if (name_from_text(&n, "a.b.example.com", 15) == 0) {
		struct policy_verdict v;
		policy_lookup(p, &n, &v);
	}
	char *enc;
	size_t len;
	if (policy_encode(p, 1, &enc, &len) == 0) {
		policy_t *q = NULL;
		int64_t saved;
		if (policy_decode(enc, len, &q, &saved) != 0 ||
		    policy_stats(q)->version != policy_stats(p)->version)
			abort(); /* Our own snapshot must read back as the same policy. */
		policy_free(q);
		free(enc);
	}
	policy_free(p);

	/* The input as a snapshot: refused or read, never a crash. */
	policy_t *s = NULL;
	int64_t saved;
	if (policy_decode(text, size, &s, &saved) == 0)
		policy_free(s);
	return 0;
}
