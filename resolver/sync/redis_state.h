/* The Redis synchroniser's state, private to resolver/sync/: the struct its modules share, and
 * the transitions every one of them needs (a load ends, works, fails and backs off; the next
 * re-read is scheduled; readiness and holds are reported; the whole is freed once closed). One
 * load at a time, all on the main thread's libuv loop. It never talks to Redis and never
 * publishes: it calls back up to start a load only through start_load. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "policy/guard.h"
#include "policy/store.h"
#include "resolver/base/options.h"
#include "resolver/sync/redis_history.h"
#include "resolver/sync/redis_link.h"
#include "resolver/sync/redis_sync_types.h"

/** A failed load (-BUSY, -LOADING...) is retried after this, doubled up to the maximum. */
#define REDIS_STATE_LOAD_BACKOFF_MIN_MS 100
/** A failed load (-BUSY, -LOADING...) is retried this often at most. */
#define REDIS_STATE_LOAD_BACKOFF_MAX_MS 5000
/** Invalid members of a key logged one by one at most (the rest are counted). */
#define REDIS_STATE_INVALID_LOGGED 10

/** Where the load in progress is. */
enum redis_state_phase { REDIS_STATE_IDLE, REDIS_STATE_READING, REDIS_STATE_BUILDING };
/** The policy keys, then the consent record (read with each load, never scanned). */
enum {
	REDIS_STATE_KEY_DENY,
	REDIS_STATE_KEY_ALLOW,
	REDIS_STATE_KEY_REASON,
	REDIS_STATE_NKEYS,
	REDIS_STATE_KEY_ACCEPT = REDIS_STATE_NKEYS,
	REDIS_STATE_NCHANNELS
};
/** Every policy key (1 << REDIS_STATE_KEY_*). */
#define REDIS_STATE_ALL_KEYS ((1u << REDIS_STATE_NKEYS) - 1)

/** A key's invalid members seen by the load in progress. */
struct redis_state_invalid {
	uint64_t hash;
	size_t count;
	char lines[REDIS_STATE_INVALID_LOGGED][160];
};

/** What a scan reply is for (its privdata). */
struct redis_state_scan {
	redis_sync_t *r;
	int key;
};

/** The synchroniser (redis_sync_t); made by redis_sync_new(). */
struct redis_sync {
	uv_loop_t *loop;
	const struct options *o;
	policy_store_t *store;
	redis_sync_ready_cb ready_cb;
	redis_sync_hold_cb hold_cb;
	void *ctx;
	void (*start_load)(redis_sync_t *r); /* redis_load_start(), which lies above this module. */
	redis_link_t *link;
	int link_open;          /* Until redis_link_close() has finished. */
	uv_timer_t timer;       /* Periodic re-reads and retries. */
	uv_timer_t startup;
	uv_timer_t coalesce;
	uv_timer_t save_retry;  /* A failed snapshot save is tried again (redis_save.h). */
	uv_work_t work;
	int open_handles;
	int closing;
	int ready;
	enum redis_state_phase phase;
	int dirty;              /* A change was notified during the current load. */
	unsigned reread; /* Keys (1 << REDIS_STATE_KEY_*) the next load must read from Redis. */
	unsigned scanning;      /* Keys the current load reads; the others it carries over. */
	int notify;             /* Notifications are followed. */
	unsigned load_backoff_ms;
	char last_fail[200];    /* Why the last load failed; logged once while it repeats. */
	int warned_empty;
	int warned_hits;        /* A HINCRBY was refused: said once. */
	int warned_report;      /* The client report was refused: said once. */
	unsigned pushes;        /* Hit counter and report commands not answered yet. */
	struct redis_sync_stats *stats; /* Borrowed; a local one until redis_sync_count(). */
	struct redis_sync_stats own_stats;
	void (*closed)(void *ctx); /* Called once everything is closed and freed. */
	void *closed_ctx;
	int was_up;             /* The link has been up before (a new up is a reconnection). */
	unsigned load_barrier;  /* The barrier the load in progress waits for; 0: none. */
	int torn;               /* A policy key changed while the load read it. */
	int torn_logged;
	/* The held-load rule. in_sync: the policy in force is what Redis held at the last load, so
	 * a load may carry unchanged keys over from it. */
	int in_sync;
	enum guard_verdict held;
	struct digest held_digest; /* Of the candidate held (all of it: never its short form). */
	int hold_shown;         /* Status answers may show a hold: this link's, or a predecessor's. */
	guard_t *guard;         /* Borrowed from the daemon: it outlives links. */
	struct consent consent; /* As read by the load in progress. */
	enum consent_fault consent_said; /* The last consent fault logged, for held_digest. */
	struct redis_history history; /* To tell a rollback (redis_history.h). */
	int warned_audit;       /* The daemon's audit entries were refused: said once. */
	char *state_written;    /* The guard state file as last written. */
	int state_refused;      /* It belongs to another prefix: said once. */
	int deny_missing;
	/* Of each key's invalid members when last logged. */
	uint64_t invalid_hash[REDIS_STATE_NKEYS];
	long long card[REDIS_STATE_NKEYS];       /* SCARD/HLEN of each key when last read. */
	/* Of each key's invalid members when last read. */
	size_t invalid_count[REDIS_STATE_NKEYS];
	char keys[REDIS_STATE_NCHANNELS][80];
	struct redis_state_scan scans[REDIS_STATE_NKEYS];
	/* The load in progress. */
	policy_builder_t *builder;
	struct redis_state_invalid il[REDIS_STATE_NKEYS];
	int scans_left;
	uint64_t t_start, t_read;
	policy_builder_t *building; /* Handed to the thread pool. */
	unsigned carry_parts;       /* What it copies from the policy in force (POLICY_PART_*). */
	policy_t *built;
	struct guard_diff diff;     /* Of built against the policy in force. */
	struct guard_names lifted;  /* What built lifts against the guard's protected set. */
	enum guard_verdict verdict; /* Of the guard on built. */
	struct guard_decision decision;
	policy_t *merged;           /* Built held: the policy in force plus what built adds. */
	policy_t *next_prot;        /* The protected set should built (or merged) be published. */
	/* The snapshot save, which overlaps the next load and never delays a publication: the
	 * saving thread reads the policy through its own reader slot of the store, so a policy
	 * replaced meanwhile is not freed under it. A policy published during a save is saved
	 * next. */
	uv_work_t save_req;
	struct policy_reader *saver;
	int saving;
	int save_again;
	int save_rc, last_save_rc;
	char save_err[512];
	uint64_t save_said_ms;  /* When a failing save was last logged (once a minute). */
};

/** The loop's time in ms, updated first. */
uint64_t redis_state_now_ms(redis_sync_t *r);

/** Free r (and call its closed callback) if it is closing and nothing of it is left open. */
void redis_state_maybe_free(redis_sync_t *r);

/** Tell the owner of a hold (or its release: REDIS_SYNC_HOLD_NONE). */
void redis_state_set_hold(redis_sync_t *r, enum redis_sync_hold kind, size_t removed, size_t of,
			  uint64_t version);

/** Tell the owner, once, that the first policy to enforce is settled. */
void redis_state_become_ready(redis_sync_t *r);

/** The policy in force in words (source, rule counts, version), into buf. */
void redis_state_describe_current(redis_sync_t *r, char *buf, size_t cap);

/** Drop the read in progress (its builder and barrier); a build in progress goes on. */
void redis_state_drop_builder(redis_sync_t *r);

/** The load found nothing to publish (or published): the next one, or the re-read, is
 *  scheduled. May free r when closing. */
void redis_state_load_done(redis_sync_t *r);

/** A load that reached Redis and finished (published, unchanged or held): failures are over. */
void redis_state_load_worked(redis_sync_t *r);

/** The load could not finish (why): keep the policy in force, read every key again soon,
 *  backing off. May free r when closing. */
void redis_state_load_failed(redis_sync_t *r, const char *why);

/** Lower the calling thread's priority: building and saving yield the CPU to the workers
 *  answering queries. */
void redis_state_yield_to_workers(void);
