/* Rollback marks (resolver/sync/redis_history.c) and the guard state file's text
 * (resolver/sync/guard_state.c): what a restart must not forget. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "resolver/sync/guard_state.h"
#include "resolver/sync/redis_history.h"

TestSuite(guard_state);

/* A new file of this test's own in /tmp, its name into path. @return its descriptor. */
static int scratch(char *path, size_t cap, const char *what)
{
	snprintf(path, cap, "/tmp/embargo-guard-%s.%ld", what, (long)getpid());
	unlink(path);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0, "%s", path);
	return fd;
}

Test(guard_state, a_new_run_id_or_an_offset_that_went_back_is_a_rollback)
{
	struct redis_history h = {.fresh = 0};
	cr_expect_null(redis_history_info(&h, "# Server\r\nrun_id:aaaa\r\nmaster_repl_offset:100\r\n"));
	cr_expect_null(redis_history_info(&h, "run_id:aaaa\r\nmaster_repl_offset:150\r\n"));
	cr_expect_not_null(redis_history_info(&h, "run_id:aaaa\r\nmaster_repl_offset:120\r\n"));
	cr_expect_not_null(redis_history_info(&h, "run_id:bbbb\r\nmaster_repl_offset:500\r\n"));
	cr_expect_null(redis_history_info(&h, "run_id:bbbb\r\nmaster_repl_offset:500\r\n"));
	/* Nothing known of this Redis: its first word is taken as a rollback. */
	struct redis_history fresh = {.fresh = 1};
	cr_expect_not_null(redis_history_info(&fresh, "run_id:cccc\r\nmaster_repl_offset:1\r\n"));
	cr_expect_null(redis_history_info(&fresh, "run_id:cccc\r\nmaster_repl_offset:2\r\n"));
}

/* An XREVRANGE reply with one entry of ID id (or none). */
static redisReply *tail(const char *id)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_ARRAY;
	if (!id)
		return r;
	redisReply *e = calloc(1, sizeof(*e)), *s = calloc(1, sizeof(*s));
	s->type = REDIS_REPLY_STRING;
	s->str = strdup(id);
	s->len = strlen(id);
	e->type = REDIS_REPLY_ARRAY;
	e->elements = 1;
	e->element = calloc(1, sizeof(*e->element));
	e->element[0] = s;
	r->elements = 1;
	r->element = calloc(1, sizeof(*r->element));
	r->element[0] = e;
	return r;
}

static void drop(redisReply *r)
{
	if (r->elements) {
		free(r->element[0]->element[0]->str);
		free(r->element[0]->element[0]);
		free(r->element[0]->element);
		free(r->element[0]);
		free(r->element);
	}
	free(r);
}

Test(guard_state, an_audit_stream_that_went_back_or_vanished_is_a_rollback)
{
	struct redis_history h = {0};
	redisReply *a = tail("1700000000000-5"), *b = tail("1700000000000-7"),
		   *c = tail("1700000000000-6"), *none = tail(NULL);
	cr_expect_null(redis_history_audit(&h, a));
	cr_expect_null(redis_history_audit(&h, b));
	cr_expect_not_null(redis_history_audit(&h, c), "an older newest entry");
	cr_expect_null(redis_history_audit(&h, b));
	cr_expect_not_null(redis_history_audit(&h, none), "the stream is gone");
	redisReply err = {.type = REDIS_REPLY_ERROR};
	cr_expect_null(redis_history_audit(&h, &err), "a refusal says nothing");
	drop(a);
	drop(b);
	drop(c);
	drop(none);
}

Test(guard_state, the_state_reads_back)
{
	policy_builder_t *b = policy_builder_new();
	cr_assert_eq(policy_builder_add(b, POLICY_DENY, "kaspersky.com", 13), 0);
	cr_assert_eq(policy_builder_add(b, POLICY_DENY, "kaspersky.ru", 12), 0);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	guard_t *g = guard_new(p, 1000);
	guard_held(g, &policy_stats(p)->digest, 1, 1500);
	guard_rollback(g);
	cr_assert_eq(guard_mark_used(g, "00112233445566778899aabbccddeeff", 5000), 0);
	cr_assert_eq(guard_mark_used(g, "ffeeddccbbaa99887766554433221100", 10), 0); /* Expired. */
	struct redis_history h = {.offset = 42, .audit_ms = 7, .audit_seq = 8, .audit_seen = 1};
	strcpy(h.redis, "127.0.0.1:6379/0");
	strcpy(h.run_id, "abcdef");
	char text[8192];
	int len = guard_state_format(g, &h, "embargo", 0, 2000, text, sizeof(text));
	cr_assert_gt(len, 0);
	cr_expect_null(strstr(text, "ffeeddcc"), "expired nonces are not kept");
	char path[64];
	int fd = scratch(path, sizeof(path), "read");
	cr_assert_eq(write(fd, text, (size_t)len), len);
	close(fd);
	guard_t *r = guard_new(p, 3000);
	struct redis_history rh;
	char err[300];
	cr_assert_eq(guard_state_load(path, "embargo", 0, r, &rh, err, sizeof(err)), 0, "%s", err);
	struct guard_state st;
	guard_get_state(r, &st);
	cr_expect(st.rollback);
	cr_expect(st.has_held);
	cr_expect(st.capped);
	cr_expect_eq(st.cap, 1);
	cr_expect(digest_is_equal(&st.held, &policy_stats(p)->digest));
	cr_expect_eq(st.based_at, 1000);
	cr_expect_eq(st.quiet_since, 1500);
	cr_expect(guard_is_used(r, "00112233445566778899aabbccddeeff"));
	cr_expect_str_eq(rh.redis, "127.0.0.1:6379/0");
	cr_expect_str_eq(rh.run_id, "abcdef");
	cr_expect_eq(rh.offset, 42);
	cr_expect_eq(rh.audit_seq, 8);
	/* Another prefix's file is not read; nor one cut at a line boundary or with a line
	 * changed: nothing of it is restored. */
	guard_t *r2 = guard_new(p, 3000);
	cr_expect_eq(guard_state_load(path, "other", 0, r2, &rh, err, sizeof(err)), -EXDEV);
	cr_expect_eq(guard_state_check(path, "other", 0), -EXDEV);
	cr_expect_eq(guard_state_check(path, "embargo", 0), 0);
	cr_expect(!guard_is_rolled_back(r2));
	char *cut = strstr(text, "used ");
	cr_assert_not_null(cut);
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(fd, text, (size_t)(cut - text)), cut - text);
	close(fd);
	cr_expect_eq(guard_state_load(path, "embargo", 0, r2, &rh, err, sizeof(err)), -EBADMSG);
	text[20] ^= 1;
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(fd, text, (size_t)len), len);
	close(fd);
	cr_expect_eq(guard_state_load(path, "embargo", 0, r2, &rh, err, sizeof(err)), -EBADMSG);
	cr_expect(!guard_is_rolled_back(r2));
	/* What the daemon does then: the budget counted as spent, and a rollback mark. */
	guard_state_fail_closed(r2);
	cr_expect(guard_is_rolled_back(r2));
	guard_get_state(r2, &st);
	cr_expect_gt(st.carried, st.base);
	unlink(path);
	guard_free(g);
	guard_free(r);
	guard_free(r2);
	policy_free(p);
}

Test(guard_state, saved_when_changed_and_never_over_another_list)
{
	policy_builder_t *b = policy_builder_new();
	cr_assert_eq(policy_builder_add(b, POLICY_DENY, "kaspersky.com", 13), 0);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	guard_t *g = guard_new(p, 1000);
	struct redis_history h = {0};
	char path[64], err[300];
	close(scratch(path, sizeof(path), "save"));
	unlink(path);
	char *written = NULL;
	cr_assert_eq(guard_state_save(path, g, &h, "embargo", 0, &written, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(written);
	/* Unchanged: not written again (the file removed meanwhile stays removed). */
	unlink(path);
	cr_assert_eq(guard_state_save(path, g, &h, "embargo", 0, &written, err, sizeof(err)), 0);
	cr_expect_eq(access(path, F_OK), -1);
	guard_rollback(g);
	cr_assert_eq(guard_state_save(path, g, &h, "embargo", 0, &written, err, sizeof(err)), 0);
	cr_expect_eq(access(path, F_OK), 0);
	/* Another prefix's instance does not overwrite it. */
	char *other = NULL;
	cr_expect_eq(guard_state_save(path, g, &h, "embarg0", 0, &other, err, sizeof(err)), -EXDEV);
	cr_expect_null(other);
	cr_expect_eq(guard_state_check(path, "embargo", 0), 0);
	free(written);
	unlink(path);
	guard_free(g);
	policy_free(p);
}

Test(guard_state, a_state_file_over_16_MiB_is_not_read)
{
	policy_builder_t *b = policy_builder_new();
	cr_assert_eq(policy_builder_add(b, POLICY_DENY, "kaspersky.com", 13), 0);
	policy_t *p = policy_build(b, POLICY_SOURCE_REDIS);
	guard_t *g = guard_new(p, 1000);
	char path[64], err[300];
	int fd = scratch(path, sizeof(path), "big");
	static char line[4096];
	memset(line, '#', sizeof(line));
	for (int i = 0; i < 17 * 256; i++)
		cr_assert_eq(write(fd, line, sizeof(line)), (ssize_t)sizeof(line));
	close(fd);
	struct redis_history h;
	cr_expect_lt(guard_state_load(path, "embargo", 0, g, &h, err, sizeof(err)), 0);
	unlink(path);
	guard_free(g);
	policy_free(p);
}
