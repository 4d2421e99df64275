/* The query log's ring: a worker never waits; what does not fit is dropped and counted, and every
 * entry is either written (one JSON line) or counted. */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "resolver/base/options.h"
#include "resolver/observe/query_log.h"

TestSuite(query_log);

Test(query_log, a_full_ring_drops_and_counts)
{
	/* A file of this test's own (its process ID in the name), made afresh. */
	char path[64];
	snprintf(path, sizeof(path), "/tmp/embargo-qlog-test-%ld", (long)getpid());
	unlink(path);
	static struct options o;
	memset(&o, 0, sizeof(o));
	snprintf(o.query_log, sizeof(o.query_log), "%s", path);
	o.query_log_sample = 1;
	char err[256];
	query_log_t *l = query_log_new(&o, 1, err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	struct query_log_ring *r = query_log_ring(l, 0);
	const unsigned total = 200000;
	unsigned put = 0;
	for (unsigned i = 0; i < total; i++) {
		if (!query_log_wanted(r, false))
			continue;
		struct query_log_entry *e = query_log_next(r);
		if (!e)
			continue;
		memset(e, 0, sizeof(*e));
		e->family = AF_INET;
		e->qname_len = 1; /* The root. */
		e->decision = QUERY_LOG_CACHE;
		query_log_commit(r);
		put++;
	}
	uint64_t dropped = query_log_dropped(l);
	query_log_free(l); /* Writes what the ring holds. */
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	unsigned lines = 0;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		cr_expect(strstr(line, "\"decision\":\"cache\"") != NULL, "%s", line);
		lines++;
	}
	fclose(f);
	unlink(path);
	cr_expect_gt(dropped, 0, "a ring of 4096 held 200000 entries put at once");
	cr_expect_eq(lines, put, "every entry put was written");
	cr_expect_eq(put + dropped, total, "an entry was neither written nor counted");
}
