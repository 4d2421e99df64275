/* Rings are single-producer (the worker) single-consumer (the writer): head and tail are
 * atomics, the slot between them belongs to whoever advances past it. The writer wakes every
 * WRITE_MS, turns entries into JSON and writes them with stdio, flushing once per pass. A worker
 * never waits for the writer and never touches the file: a full ring drops the entry. */
#include "config.h"

#include "resolver/observe/query_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "resolver/base/client.h"
#include "resolver/base/json.h"
#include "resolver/base/log.h"

#define RING_SLOTS 4096 /* Per worker: ~3 MiB; about a second of a busy worker. */
#define WRITE_MS 50

struct query_log_ring {
	_Alignas(64) atomic_uint_fast64_t head; /* Written by the worker. */
	_Alignas(64) atomic_uint_fast64_t tail; /* Written by the writer. */
	atomic_uint_fast64_t dropped;
	unsigned sample, seen;                  /* Worker only. */
	bool denied_only;
	struct query_log_entry slot[RING_SLOTS];
};

struct query_log {
	char path[256];
	FILE *f;
	unsigned nrings;
	struct query_log_ring **rings;
	uv_thread_t thread;
	int running;         /* The writer was started (stop and join it). */
	atomic_int stop, reopen;
	uint64_t base_ns;    /* uv_hrtime() at start... */
	struct timespec base; /* ...and the wall clock then. */
};

static FILE *open_log(const char *path)
{
	if (strcmp(path, "-") == 0)
		return stdout;
	return fopen(path, "a");
}

/* The wire name as presentation text; octets other than letters, digits, '-' and '_' as \DDD
 * (RFC 1035 5.1), which JSON then carries as is. */
static void json_name(FILE *f, const uint8_t *wire, size_t len)
{
	size_t off = 0;
	if (len == 0 || wire[0] == 0) {
		fputc('.', f);
		return;
	}
	while (off < len && wire[off] != 0) {
		unsigned n = wire[off++];
		for (unsigned i = 0; i < n && off < len; i++, off++) {
			unsigned char c = wire[off];
			if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			    c == '-' || c == '_')
				fputc(c, f);
			else
				fprintf(f, "\\\\%03u", c);
		}
		fputc('.', f);
	}
}

const char *query_log_decision_name(unsigned decision)
{
	static const char *const names[QUERY_LOG_DECISIONS] = {
		"denied", "local", "cache", "stale", "forwarded", "refused", "error"};
	return names[decision % QUERY_LOG_DECISIONS];
}

static const char *const RCODES[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",
				     "REFUSED"};

static void write_entry(struct query_log *l, const struct query_log_entry *e)
{
	FILE *f = l->f;
	uint64_t ns = e->time_ns - l->base_ns + (uint64_t)l->base.tv_nsec;
	time_t secs = l->base.tv_sec + (time_t)(ns / 1000000000u);
	struct tm tm;
	char when[32];
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	char addr[INET6_ADDRSTRLEN] = "";
	inet_ntop(e->family, e->addr, addr, sizeof(addr));
	fprintf(f, "{\"time\":\"%s.%06uZ\",\"client\":\"%s\",\"port\":%u,\"qname\":\"", when,
		(unsigned)(ns % 1000000000u / 1000u), addr, e->port);
	json_name(f, e->qname, e->qname_len);
	fprintf(f, "\",\"qtype\":%u,\"rcode\":", e->qtype);
	if (e->rcode < sizeof(RCODES) / sizeof(RCODES[0]))
		fprintf(f, "\"%s\"", RCODES[e->rcode]);
	else
		fprintf(f, "%u", e->rcode);
	fprintf(f, ",\"decision\":\"%s\"", query_log_decision_name(e->decision));
	if (e->decision == QUERY_LOG_DENIED) {
		fputs(",\"rule\":\"", f);
		json_text(f, e->rule);
		fputs("\",\"reason\":\"", f);
		json_text(f, e->reason);
		fputc('"', f);
	}
	if (e->upstream[0])
		fprintf(f, ",\"upstream\":\"%s\"", e->upstream);
	static const char *const TRANSPORTS[CLIENT_TRANSPORTS] = CLIENT_TRANSPORT_NAMES;
	fprintf(f, ",\"latency_us\":%u,\"transport\":\"%s\"}\n", e->latency_us,
		TRANSPORTS[e->transport < CLIENT_TRANSPORTS ? e->transport : 0]);
}

/* One pass over every ring; @return entries written. */
static size_t drain(struct query_log *l)
{
	size_t n = 0;
	for (unsigned i = 0; i < l->nrings; i++) {
		struct query_log_ring *r = l->rings[i];
		uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
		uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
		for (; tail != head; tail++, n++)
			write_entry(l, &r->slot[tail % RING_SLOTS]);
		atomic_store_explicit(&r->tail, tail, memory_order_release);
	}
	if (n)
		fflush(l->f);
	return n;
}

static void writer(void *arg)
{
	struct query_log *l = arg;
	for (;;) {
		if (atomic_exchange(&l->reopen, 0) && l->f != stdout) {
			/* logrotate moved the file: write on in a new one; if it cannot be opened
			 * (owned by another user, say), on in the old one, and say so. */
			FILE *f = open_log(l->path);
			if (f) {
				fclose(l->f);
				l->f = f;
			} else {
				log_warn("query log: cannot reopen %s (%s): writing on to the file "
					 "open before", l->path, strerror(errno));
			}
		}
		int stopping = atomic_load(&l->stop);
		drain(l);
		if (stopping)
			return;
		uv_sleep(WRITE_MS);
	}
}

query_log_t *query_log_new(const struct options *o, unsigned nworkers, char *err, size_t errlen)
{
	struct query_log *l = calloc(1, sizeof(*l));
	if (!l)
		goto nomem;
	snprintf(l->path, sizeof(l->path), "%s", o->query_log);
	l->rings = calloc(nworkers, sizeof(*l->rings));
	if (!l->rings)
		goto nomem;
	for (unsigned i = 0; i < nworkers; i++, l->nrings++) {
		l->rings[i] = aligned_alloc(64, (sizeof(struct query_log_ring) + 63) / 64 * 64);
		if (!l->rings[i])
			goto nomem;
		memset(l->rings[i], 0, sizeof(struct query_log_ring));
		l->rings[i]->sample = o->query_log_sample ? o->query_log_sample : 1;
		l->rings[i]->denied_only = o->query_log_denied_only;
	}
	l->f = open_log(l->path);
	if (!l->f) {
		snprintf(err, errlen, "--query-log: cannot open %s: %s", l->path, strerror(errno));
		query_log_free(l);
		return NULL;
	}
	l->base_ns = uv_hrtime();
	clock_gettime(CLOCK_REALTIME, &l->base);
	if (uv_thread_create(&l->thread, writer, l) != 0) {
		snprintf(err, errlen, "--query-log: cannot start its thread");
		query_log_free(l);
		return NULL;
	}
	l->running = 1;
	return l;
nomem:
	snprintf(err, errlen, "out of memory");
	query_log_free(l);
	return NULL;
}

void query_log_free(query_log_t *l)
{
	if (!l)
		return;
	if (l->running) { /* Let the writer write what is left, then stop. */
		atomic_store(&l->stop, 1);
		uv_thread_join(&l->thread);
	}
	if (l->f && l->f != stdout)
		fclose(l->f);
	for (unsigned i = 0; i < l->nrings; i++)
		free(l->rings[i]);
	free(l->rings);
	free(l);
}

void query_log_reopen(query_log_t *l)
{
	atomic_store(&l->reopen, 1);
}

struct query_log_ring *query_log_ring(query_log_t *l, unsigned i)
{
	return l->rings[i];
}

bool query_log_wanted(struct query_log_ring *r, bool denied)
{
	if (r->denied_only && !denied)
		return false;
	if (++r->seen < r->sample)
		return false;
	r->seen = 0;
	return true;
}

struct query_log_entry *query_log_next(struct query_log_ring *r)
{
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (head - tail >= RING_SLOTS) {
		atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
		return NULL;
	}
	return &r->slot[head % RING_SLOTS];
}

void query_log_commit(struct query_log_ring *r)
{
	atomic_fetch_add_explicit(&r->head, 1, memory_order_release);
}

uint64_t query_log_dropped(const query_log_t *l)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < l->nrings; i++)
		n += atomic_load_explicit(&l->rings[i]->dropped, memory_order_relaxed);
	return n;
}
