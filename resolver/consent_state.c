/* Used consents on disk: "embargo-consents 1" then "NONCE EXPIRES" lines. */
#include "config.h"

#include "resolver/consent_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/snapshot.h"

#define MAGIC "embargo-consents 1\n"

int consent_state_load(const char *path, guard_t *g, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		int rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return rc;
	}
	char line[128];
	size_t bad = 0, n = 0;
	if (!fgets(line, sizeof(line), f) || strcmp(line, MAGIC) != 0)
		bad++;
	while (!bad && fgets(line, sizeof(line), f)) {
		char nonce[CONSENT_NONCE_HEX + 2];
		int64_t expires;
		int end = 0;
		if (sscanf(line, "%33s %" SCNd64 "%n", nonce, &expires, &end) != 2 ||
		    line[end] != '\n' || guard_mark_used(g, nonce, expires) < 0)
			bad++;
		else
			n++;
	}
	fclose(f);
	if (bad) {
		snprintf(err, errlen, "%s: %zu damaged lines skipped (%zu used consents read)", path,
			 bad, n);
		return -EBADMSG;
	}
	return 0;
}

int consent_state_save(const char *path, const guard_t *g, int64_t now, char *err, size_t errlen)
{
	size_t cap = strlen(MAGIC) + GUARD_USED_MAX * 64 + 1, len = 0;
	char *text = malloc(cap);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	len += (size_t)snprintf(text, cap, "%s", MAGIC);
	const char *nonce;
	int64_t expires;
	for (size_t i = 0; guard_used_at(g, i, &nonce, &expires); i++)
		if (expires > now)
			len += (size_t)snprintf(text + len, cap - len, "%s %" PRId64 "\n", nonce, expires);
	int rc = snapshot_write_file(path, text, len, err, errlen);
	free(text);
	return rc;
}
