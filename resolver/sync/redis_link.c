/* The two Redis connections and their health. A connection is up when Redis answers its first
 * PING, not when TCP connects (a paused Redis accepts connections it never answers). Every
 * second a heartbeat PINGs the command connection and sends a barrier (a re-SUBSCRIBE to a
 * channel already held, which needs no further permission and is answered after every queued
 * notification) on the other; either silent for --redis-timeout takes both down. Contexts are
 * taken out of the struct before they are freed, so their disconnect callbacks see they are no
 * longer ours; `contexts` counts those not yet freed, which point back here. It never reads a
 * policy key: that is resolver/sync/redis_load.c's job. */
#include "config.h"

#include "resolver/sync/redis_link.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "resolver/base/log.h"
#include "resolver/sync/redis_uv.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define HEARTBEAT_MS 1000     /* At most; a shorter --redis-timeout beats faster (below). */
#define CONNECT_TIMEOUT_MS 2000 /* A connection not up by then is given up and retried. */
/* Keyspace events on our keys: generic (DEL, RENAME...), string, list, set, hash, sorted set
 * (a key overwritten with another type must be noticed too), expired and evicted. */
#define NOTIFY_FLAGS "Kg$lshzxe"
/* Without l and z a key overwritten by a list or sorted-set command (ZUNIONSTORE into it) goes
 * unnoticed until the periodic re-read; every other change is seen with these. */
#define NOTIFY_ESSENTIAL "Kg$shxe"

enum link_state { LINK_UNKNOWN, LINK_UP, LINK_DOWN };

struct redis_link {
	uv_loop_t *loop;
	const struct options *o;
	struct redis_link_events ev;
	void *ctx;
	char channels[REDIS_LINK_CHANNELS][128];
	unsigned nchannels;
	redisAsyncContext *ac;  /* Commands. */
	redisAsyncContext *sub; /* Keyspace notifications (subscribe mode). */
	int contexts;           /* hiredis contexts not yet freed (they point back here). */
	uv_timer_t reconnect;
	uv_timer_t connecting;  /* Gives up connection attempts that hang. */
	uv_timer_t heartbeat;
	int open_handles;
	int closing;
	void (*closed)(void *ctx);
	enum link_state state;
	int answered;           /* The command connection answered its first PING. */
	unsigned backoff_ms;
	int notify;             /* Subscribed to every channel. */
	int notify_refused;     /* Logged once. */
	int notify_essential;   /* Redis already sends the events a load depends on. */
	int notify_partial_logged;
	/* Heartbeats: a PING outstanding since ping_at; barriers sent and answered on the
	 * notification connection, the oldest unanswered one waiting since sub_wait_since. */
	int ping_out;
	uint64_t ping_at;
	unsigned beats, beat;  /* Beats per second (the timeout checked at each), this one. */
	unsigned sub_sent, sub_acked;
	uint64_t sub_wait_since;
	/* Replication, from INFO. */
	char replid[48];
	int repl_was_down;
	int info_refused;
};

static void connect_now(redis_link_t *l);
static void on_reconnect(uv_timer_t *t);
static void on_connect(const redisAsyncContext *ac, int status);
static void on_disconnect(const redisAsyncContext *ac, int status);

static uint64_t now_ms(redis_link_t *l)
{
	uv_update_time(l->loop);
	return uv_now(l->loop);
}

static void maybe_free(redis_link_t *l)
{
	if (!l->closing || l->open_handles || l->ac || l->sub || l->contexts)
		return;
	void (*closed)(void *) = l->closed;
	void *ctx = l->ctx;
	free(l);
	if (closed)
		closed(ctx);
}

/* Free a context whose connection never came up (hiredis runs no disconnect callback then). */
static int drop_if_connecting(redis_link_t *l, redisAsyncContext **pac)
{
	redisAsyncContext *ac = *pac;
	if (!ac || (ac->c.flags & REDIS_CONNECTED))
		return 0;
	*pac = NULL;
	l->contexts--;
	redisAsyncFree(ac);
	return 1;
}

/* Close a connection now, pending replies or not (a silent Redis never sends them); from inside
 * one of its own callbacks hiredis only allows the gentle way. */
static void close_context(redisAsyncContext *ac)
{
	if (ac->c.flags & REDIS_IN_CALLBACK)
		redisAsyncDisconnect(ac);
	else
		redisAsyncFree(ac);
}

/* Take both connections out and close them. */
static void close_both(redis_link_t *l)
{
	l->notify = 0;
	l->answered = 0;
	l->ping_out = 0;
	l->sub_sent = l->sub_acked = 0;
	drop_if_connecting(l, &l->ac);
	drop_if_connecting(l, &l->sub);
	redisAsyncContext *ac = l->ac, *sub = l->sub;
	l->ac = l->sub = NULL;
	if (ac)
		close_context(ac);
	if (sub)
		close_context(sub);
}

/* Either connection is gone or silent: close both, tell the owner, retry with backoff. */
static void link_down(redis_link_t *l, const char *why)
{
	close_both(l);
	if (l->closing)
		return;
	int first = l->state != LINK_DOWN;
	l->state = LINK_DOWN;
	if (!uv_is_active((uv_handle_t *)&l->reconnect))
		uv_timer_start(&l->reconnect, on_reconnect, l->backoff_ms, 0);
	l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
	l->ev.down(l->ctx, why, first);
}

/* ---- Notifications ----------------------------------------------------------------------- */

static void went_up(redis_link_t *l, int notify)
{
	l->ev.up(l->ctx, notify);
}

/* Notifications are not to be had: the owner re-reads on its interval instead. */
static void without_notifications(redis_link_t *l, const char *why)
{
	if (!l->notify_refused)
		log_warn("no keyspace notifications from redis (%s); re-reading the policy every %u s",
			 why, l->o->reload_ms / 1000);
	l->notify_refused = 1;
	went_up(l, 0);
}

static void on_message(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_link_t *l = privdata;
	redisReply *reply = reply_ptr;
	if (!reply || l->closing || ac != l->sub || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements < 3)
		return;
	const redisReply *kind = reply->element[0];
	if (kind->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(kind->str, "subscribe") == 0) {
		if (l->notify) {
			/* A barrier (heartbeat or the end of a read) answered. */
			l->sub_acked++;
			l->sub_wait_since = now_ms(l);
			l->ev.barrier(l->ctx, l->sub_acked);
			return;
		}
		/* Subscribed to every channel: from now on no change can slip by unnoticed. */
		if (reply->element[2]->type == REDIS_REPLY_INTEGER &&
		    reply->element[2]->integer == (long long)l->nchannels) {
			l->notify = 1;
			log_info("following policy changes through keyspace notifications");
			went_up(l, 1);
		}
		return;
	}
	if (strcmp(kind->str, "message") != 0 || reply->element[1]->type != REDIS_REPLY_STRING)
		return;
	const redisReply *event = reply->element[2];
	int adds = event->type == REDIS_REPLY_STRING &&
		   (strcmp(event->str, "sadd") == 0 || strcmp(event->str, "hset") == 0);
	for (unsigned i = 0; i < l->nchannels; i++)
		if (strcmp(reply->element[1]->str, l->channels[i]) == 0)
			l->ev.changed(l->ctx, i, adds);
}

unsigned redis_link_barrier(redis_link_t *l)
{
	if (!l->sub || !l->notify)
		return 0;
	if (l->sub_acked == l->sub_sent)
		l->sub_wait_since = now_ms(l);
	l->sub_sent++;
	redisAsyncCommand(l->sub, on_message, l, "SUBSCRIBE %s", l->channels[0]);
	return l->sub_sent;
}

static redisAsyncContext *open_context(redis_link_t *l, char *why, size_t whylen);

static void subscribe(redis_link_t *l)
{
	char why[160];
	l->sub = open_context(l, why, sizeof(why));
	if (!l->sub) {
		without_notifications(l, why);
		return;
	}
	redisAsyncSetConnectCallback(l->sub, on_connect);
	redisAsyncSetDisconnectCallback(l->sub, on_disconnect);
	l->sub_sent = l->sub_acked = 0;
	l->sub_wait_since = now_ms(l); /* The subscription is waited for like a barrier. */
	/* One command with every channel: argv, since a prefix is the operator's text. */
	const char *argv[1 + REDIS_LINK_CHANNELS];
	argv[0] = "SUBSCRIBE";
	for (unsigned i = 0; i < l->nchannels; i++)
		argv[1 + i] = l->channels[i];
	redisAsyncCommandArgv(l->sub, on_message, l, (int)(1 + l->nchannels), argv, NULL);
}

static void on_config_set(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_link_t *l = privdata;
	redisReply *reply = reply_ptr;
	if (!reply || ac != l->ac)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		/* A least-privilege user may not CONFIG SET: the flags the operator set may do. */
		if (l->notify_essential) {
			if (!l->notify_partial_logged)
				log_warn("cannot add keyspace notification flags (%s); following changes "
					 "with the flags redis has (add 'l' and 'z' to notify-keyspace-events "
					 "so that a key overwritten by a list or sorted-set command is seen "
					 "at once)", reply->str);
			l->notify_partial_logged = 1;
			subscribe(l);
			return;
		}
		without_notifications(l, reply->str);
		return;
	}
	subscribe(l);
}

/* Do the flags (notify-keyspace-events) include each of want? 'A' stands for every event
 * class but not for K or E. */
static int flags_cover(const char *flags, const char *want)
{
	for (const char *f = want; *f; f++)
		if (!strchr(flags, *f) && (*f == 'K' || !strchr(flags, 'A')))
			return 0;
	return 1;
}

static void on_config_get(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_link_t *l = privdata;
	redisReply *reply = reply_ptr;
	if (!reply || ac != l->ac)
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[1]->type != REDIS_REPLY_STRING) {
		without_notifications(l, reply->type == REDIS_REPLY_ERROR ? reply->str
									  : "CONFIG GET refused");
		return;
	}
	/* Add what we need to the flags already set, never take any away. */
	const char *have = reply->element[1]->str;
	l->notify_essential = flags_cover(have, NOTIFY_ESSENTIAL);
	char flags[64];
	snprintf(flags, sizeof(flags), "%s", have);
	for (const char *f = NOTIFY_FLAGS; *f; f++) {
		char one[2] = {*f, '\0'};
		size_t n = strlen(flags);
		if (!flags_cover(flags, one) && n + 1 < sizeof(flags)) {
			flags[n] = *f;
			flags[n + 1] = '\0';
		}
	}
	if (strcmp(flags, have) == 0) {
		subscribe(l);
		return;
	}
	log_info("enabling keyspace notifications on redis: notify-keyspace-events '%s' -> '%s'",
		 have, flags);
	redisAsyncCommand(l->ac, on_config_set, l, "CONFIG SET notify-keyspace-events %s", flags);
}

/* ---- Heartbeats and replication ---------------------------------------------------------- */

static void on_pong(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_link_t *l = privdata;
	if (reply_ptr && ac == l->ac)
		l->ping_out = 0; /* Any answer, -BUSY included: Redis is alive. */
}

/* INFO replication: a replica whose primary changed or whose link to it went down and came
 * back may have been loaded whole from the primary, which sends no keyspace events. */
static void on_info(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_link_t *l = privdata;
	redisReply *reply = reply_ptr;
	if (!reply || ac != l->ac)
		return;
	if (reply->type != REDIS_REPLY_STRING) {
		if (!l->info_refused)
			log_warn("redis refused INFO (%s): a replica's resynchronisation is noticed "
				 "only at the next periodic re-read",
				 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		l->info_refused = 1;
		return;
	}
	if (!strstr(reply->str, "role:slave")) {
		l->replid[0] = '\0';
		l->repl_was_down = 0;
		return;
	}
	char replid[sizeof(l->replid)] = "";
	const char *id = strstr(reply->str, "master_replid:");
	if (id)
		sscanf(id, "master_replid:%47[0-9a-f]", replid);
	int up = strstr(reply->str, "master_link_status:up") != NULL &&
		 !strstr(reply->str, "master_sync_in_progress:1");
	if (!up) {
		l->repl_was_down = 1;
		return;
	}
	int resynced = l->repl_was_down || (l->replid[0] && strcmp(replid, l->replid) != 0);
	snprintf(l->replid, sizeof(l->replid), "%s", replid);
	l->repl_was_down = 0;
	if (resynced) {
		log_info("redis replica resynchronised with its primary: reading the policy again");
		l->ev.resynced(l->ctx);
	}
}

static void on_heartbeat(uv_timer_t *t)
{
	redis_link_t *l = t->data;
	if (l->closing || !l->ac || !(l->ac->c.flags & REDIS_CONNECTED))
		return;
	uint64_t now = now_ms(l), limit = l->o->redis_timeout_ms;
	char why[120];
	if (l->ping_out && now - l->ping_at >= limit) {
		snprintf(why, sizeof(why), "no answer for %" PRIu64 " ms", now - l->ping_at);
		link_down(l, why);
		return;
	}
	int sub_waiting = l->sub && (l->sub->c.flags & REDIS_CONNECTED) &&
			  (!l->notify || l->sub_acked != l->sub_sent);
	if (sub_waiting && now - l->sub_wait_since >= limit) {
		snprintf(why, sizeof(why), "no answer on the notification connection for %" PRIu64
			 " ms", now - l->sub_wait_since);
		link_down(l, why);
		return;
	}
	/* A PING at every beat (the timeout's check); the rest once a second. */
	int second = l->beat++ % l->beats == 0;
	if (!l->ping_out) {
		l->ping_out = 1;
		l->ping_at = now;
		redisAsyncCommand(l->ac, on_pong, l, "PING");
		if (second && !l->info_refused && l->answered)
			redisAsyncCommand(l->ac, on_info, l, "INFO replication");
	}
	if (second && l->sub_acked == l->sub_sent)
		redis_link_barrier(l);
}

/* ---- Connections ------------------------------------------------------------------------- */

/* A connection that goes silent (a partition, a host that vanished) fails at the TCP level too:
 * keepalive probes, and unacknowledged data given up after the Redis timeout. */
static void tune_socket(redis_link_t *l, redisAsyncContext *ac)
{
	redisEnableKeepAlive(&ac->c);
	unsigned ms = l->o->redis_timeout_ms;
	(void)setsockopt(ac->c.fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

static void on_connect_timeout(uv_timer_t *t)
{
	redis_link_t *l = t->data;
	int dropped = drop_if_connecting(l, &l->ac);
	dropped |= drop_if_connecting(l, &l->sub);
	if (dropped && !l->closing)
		link_down(l, "connection attempt timed out");
}

static redisAsyncContext *open_context(redis_link_t *l, char *why, size_t whylen)
{
	redisAsyncContext *ac = redisAsyncConnect(l->o->redis_host, l->o->redis_port);
	if (!ac) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	if (ac->err) {
		snprintf(why, whylen, "%s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = l;
	if (redis_uv_attach(ac, l->loop) < 0) {
		snprintf(why, whylen, "cannot attach to the event loop");
		redisAsyncFree(ac);
		return NULL;
	}
	l->contexts++;
	tune_socket(l, ac);
	uv_timer_start(&l->connecting, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
	/* Queued until the connection is up. */
	if (l->o->redis_user[0])
		redisAsyncCommand(ac, NULL, NULL, "AUTH %s %s", l->o->redis_user,
				  l->o->redis_password);
	else if (l->o->redis_password[0])
		redisAsyncCommand(ac, NULL, NULL, "AUTH %s", l->o->redis_password);
	return ac;
}

static void on_select(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redisReply *reply = reply_ptr;
	if (reply && reply->type == REDIS_REPLY_ERROR) {
		log_err("redis refused SELECT: %s", reply->str);
		redisAsyncDisconnect(ac);
	}
}

/* Either connection is gone; hiredis frees it after this. */
static void context_gone(redis_link_t *l, const redisAsyncContext *ac, const char *why)
{
	l->contexts--;
	int ours = ac == l->ac || ac == l->sub;
	if (ac == l->sub && !l->notify && ac->c.err == REDIS_ERR_OTHER && !l->closing &&
	    strncmp(ac->c.errstr, "NOPERM", 6) == 0) {
		/* Redis refused SUBSCRIBE (an ACL without the channels); hiredis drops such a
		 * connection. The command connection is fine: poll instead. Any other error
		 * (-BUSY, -LOADING, too many clients) is a link failure, retried as such. */
		l->sub = NULL;
		without_notifications(l, why);
		maybe_free(l);
		return;
	}
	if (ac == l->ac)
		l->ac = NULL;
	else if (ac == l->sub)
		l->sub = NULL;
	if (ours && !l->closing)
		link_down(l, why);
	maybe_free(l);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	/* The link is up once Redis answers (on_first_reply), not when TCP connects. */
	if (status != REDIS_OK)
		context_gone(ac->data, ac, ac->errstr); /* Freed without a disconnect callback. */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	context_gone(ac->data, ac, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void on_first_reply(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	redis_link_t *l = privdata;
	redisReply *reply = reply_ptr;
	if (!reply || ac != l->ac || (ac->c.flags & REDIS_DISCONNECTING))
		return; /* Gone, or SELECT was refused: not a working link. */
	if (reply->type == REDIS_REPLY_ERROR) {
		/* NOAUTH or a refused AUTH: nothing else will work on this connection. */
		log_err("redis refused the connection: %s", reply->str);
		redisAsyncDisconnect(ac);
		return;
	}
	l->ping_out = 0;
	l->answered = 1;
	l->backoff_ms = BACKOFF_MIN_MS;
	if (l->state != LINK_UP)
		log_info("connected to redis %s:%d", l->o->redis_host, l->o->redis_port);
	l->state = LINK_UP;
	/* Notifications first, then the owner's load, so no change between the two goes unseen. */
	redisAsyncCommand(l->ac, on_config_get, l, "CONFIG GET notify-keyspace-events");
}

static void connect_now(redis_link_t *l)
{
	if (l->closing || l->ac)
		return;
	char why[160];
	l->ac = open_context(l, why, sizeof(why));
	if (!l->ac) {
		link_down(l, why);
		return;
	}
	redisAsyncSetConnectCallback(l->ac, on_connect);
	redisAsyncSetDisconnectCallback(l->ac, on_disconnect);
	if (l->o->redis_db)
		redisAsyncCommand(l->ac, on_select, l, "SELECT %d", l->o->redis_db);
	/* The first PING is the first heartbeat: a Redis that accepts but never answers (paused,
	 * or a full backlog) is dropped after the Redis timeout like a silent one. */
	l->ping_out = 1;
	l->ping_at = now_ms(l);
	l->info_refused = 0;
	redisAsyncCommand(l->ac, on_first_reply, l, "PING");
}

static void on_reconnect(uv_timer_t *t)
{
	connect_now(t->data);
}

redisAsyncContext *redis_link_commands(const redis_link_t *l)
{
	return l->answered ? l->ac : NULL;
}

redis_link_t *redis_link_new(uv_loop_t *loop, const struct options *o, const char *const *channels,
			     unsigned n, const struct redis_link_events *ev, void *ctx)
{
	if (n == 0 || n > REDIS_LINK_CHANNELS)
		return NULL;
	redis_link_t *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->loop = loop;
	l->o = o;
	l->ev = *ev;
	l->ctx = ctx;
	l->nchannels = n;
	for (unsigned i = 0; i < n; i++)
		snprintf(l->channels[i], sizeof(l->channels[i]), "%s", channels[i]);
	l->backoff_ms = BACKOFF_MIN_MS;
	uv_timer_t *timers[] = {&l->reconnect, &l->connecting, &l->heartbeat};
	for (int i = 0; i < 3; i++) {
		uv_timer_init(loop, timers[i]);
		timers[i]->data = l;
	}
	l->open_handles = 3;
	/* The timeout is checked at each beat: at least four beats to a timeout below 4 s (whole
	 * fractions of a second, at most 40 a second), so that a silent Redis is dropped within
	 * 1.25 x --redis-timeout, not rounded up to a second. */
	unsigned quarter = l->o->redis_timeout_ms / 4;
	l->beats = quarter >= HEARTBEAT_MS ? 1 : (HEARTBEAT_MS + quarter - 1) / (quarter ? quarter : 1);
	if (l->beats > 40)
		l->beats = 40;
	uv_timer_start(&l->heartbeat, on_heartbeat, HEARTBEAT_MS / l->beats, HEARTBEAT_MS / l->beats);
	connect_now(l);
	return l;
}

static void timer_closed(uv_handle_t *h)
{
	redis_link_t *l = h->data;
	l->open_handles--;
	maybe_free(l);
}

void redis_link_close(redis_link_t *l, void (*closed)(void *ctx))
{
	if (!l)
		return;
	l->closing = 1;
	l->closed = closed;
	uv_close((uv_handle_t *)&l->reconnect, timer_closed);
	uv_close((uv_handle_t *)&l->connecting, timer_closed);
	uv_close((uv_handle_t *)&l->heartbeat, timer_closed);
	close_both(l);
}
