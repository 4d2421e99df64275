/* The snapshot save runs on the thread pool and reads the policy through the store's reader
 * slot r->saver, so a policy replaced meanwhile is not freed under it; a failing save is tried
 * again on a timer (no policy change needed) and logged once a minute while it lasts. The guard's state is written synchronously on the loop, ahead
 * of the publication it describes. Never saves a held load's merge (no state Redis ever had). */
#include "config.h"

#include "resolver/sync/redis_save.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "resolver/base/log.h"
#include "resolver/sync/guard_state.h"
#include "resolver/sync/snapshot.h"

static void save_work(uv_work_t *w);
static void on_saved(uv_work_t *w, int status);

void redis_save_start(redis_sync_t *r)
{
	r->saving = 1;
	r->save_req.data = r;
	if (uv_queue_work(r->loop, &r->save_req, save_work, on_saved) < 0)
		r->saving = 0;
}

static void on_retry(uv_timer_t *t)
{
	redis_sync_t *r = t->data;
	if (r->closing)
		return;
	if (r->saving)
		r->save_again = 1; /* Its failure, if it fails, starts the timer again. */
	else
		redis_save_start(r);
}

static void on_saved(uv_work_t *w, int status)
{
	redis_sync_t *r = w->data;
	r->saving = 0;
	uint64_t now = redis_state_now_ms(r);
	if (r->save_rc < 0) {
		/* The last line of defence is stale: an error, repeated once a minute while it lasts. */
		atomic_fetch_add(&r->stats->snapshot_failures, 1);
		atomic_store(&r->stats->snapshot_failing, 1);
		if (r->save_rc != r->last_save_rc || now - r->save_said_ms >= 60000) {
			log_err("policy snapshot not saved: %s", r->save_err);
			r->save_said_ms = now;
		}
		/* Tried again while it fails, whether or not the policy changes meanwhile. */
		uint64_t retry = r->o->reload_ms && r->o->reload_ms < REDIS_SAVE_RETRY_MS
					 ? r->o->reload_ms : REDIS_SAVE_RETRY_MS;
		if (!r->closing && !r->save_again)
			uv_timer_start(&r->save_retry, on_retry, retry, 0);
	} else if (r->save_rc == 0) {
		atomic_store(&r->stats->snapshot_failing, 0);
		atomic_store(&r->stats->snapshot_saved_at, (long long)time(NULL));
	}
	if (r->save_rc == 0 && r->last_save_rc < 0)
		log_info("policy snapshot saved to %s again", r->o->snapshot);
	r->last_save_rc = r->save_rc;
	if (r->save_again) {
		/* Also when stopping: the loop runs until it is done, so that the snapshot holds
		 * the last policy enforced. */
		r->save_again = 0;
		redis_save_start(r);
		if (!r->saving)
			redis_state_maybe_free(r);
		return;
	}
	redis_state_maybe_free(r);
}

static void save_work(uv_work_t *w)
{
	redis_sync_t *r = w->data;
	redis_state_yield_to_workers();
	/* Whatever is current now: only published policies are ever saved, and of those not a
	 * held load's merge, which is no state Redis ever had (and whose deny count must not
	 * become the base of the held-load rule after a restart). */
	const policy_t *p = policy_store_enter(r->store, r->saver);
	if (policy_stats(p)->source == POLICY_SOURCE_HELD) {
		policy_store_quiescent(r->saver);
		r->save_rc = r->last_save_rc;
		return;
	}
	struct codec_meta meta = {.saved_at = time(NULL), .db = r->o->redis_db};
	snprintf(meta.prefix, sizeof(meta.prefix), "%s", r->o->redis_prefix);
	r->save_rc = snapshot_save(r->o->snapshot, p, &meta, r->save_err, sizeof(r->save_err));
	policy_store_quiescent(r->saver);
}

/* The guard's state on disk (SNAPSHOT.guard), when it changed: a restart must not forget the
 * consents used, a hold, what was spent of the budget, or Redis's history. */
void redis_save_guard_state(redis_sync_t *r)
{
	if (!r->o->snapshot[0])
		return;
	char path[300], err[600];
	snprintf(path, sizeof(path), "%s.guard", r->o->snapshot);
	int rc = guard_state_save(path, r->guard, &r->history, r->o->redis_prefix, r->o->redis_db,
				  &r->state_written, err, sizeof(err));
	if (rc == -EXDEV && !r->state_refused)
		log_err("guard state not saved: %s", err);
	else if (rc < 0 && rc != -EXDEV)
		log_err("guard state not saved: %s (a restart would forget the held load, the budget "
			"spent and the consents used)", err);
	r->state_refused = rc == -EXDEV;
}
