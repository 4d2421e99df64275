/* Reloads taken on by running workers: the main thread queues a configuration re-read on SIGHUP
 * (server_reload), each worker takes it on between two queries and shows which reload
 * generations it still reads, and the main thread frees those none reads (server_reclaim). The
 * query path takes no lock for it: one atomic pointer per worker, and gens_lock once per loop
 * iteration after a change. It never creates, starts or stops workers: server.c does. The public
 * functions keep their server_ names (server.h includes this header). */
#pragma once

struct tls_creds;

#include <stddef.h>
#include <sys/socket.h>

#include "resolver/base/options.h"
#include "resolver/query/local.h"

/** The server of server.h, declared here too so that this header stands alone (C11 allows the
 *  repeated typedef). */
typedef struct server server_t;
struct worker; /* resolver/query/worker.h */

/** The options in force: those the server started with, or the newest reload's. The thread
 *  that calls server_reload() only; valid until the next server_reclaim(). */
const struct options *server_options(server_t *s);

/** The certificate in force for new DoT connections (the newest reload's that loaded, or the
 *  start's), NULL without encrypted listeners. The thread that calls server_reload() only;
 *  borrowed until the next server_reload(). */
const struct tls_creds *server_tls(server_t *s);

/** The upstream addresses in force into out (any thread). @return how many. */
unsigned server_upstreams(server_t *s, struct sockaddr_storage out[OPTIONS_MAX_ADDRS]);

/** Free the reloads' options and local answers that no worker reads any more (each worker
 *  says which at its next loop iteration) but those in force and pinned[0..npinned) (held by
 *  the caller, e.g. a Redis link's). The thread that calls server_reload(), now and then.
 *  @return how many were freed. */
unsigned server_reclaim(server_t *s, const struct options *const *pinned, unsigned npinned);

/** A configuration re-read on SIGHUP: each worker takes on o and local between two queries,
 *  and listens on o's addresses (those it keeps go on untouched; those it drops close, with any
 *  answer still due on them over UDP; TCP connections they accepted go on). The server owns o
 *  and local from now on (server_reclaim frees them once no worker reads them), and tls (a
 *  reference: the certificate for new DoT connections; NULL keeps the one in force). Threads,
 *  the cache and the Redis settings stay as they
 *  were (the caller keeps those fields of o as they were).
 *  @return 0; or a negative errno with the reason in err (the caller keeps ownership): an
 *  upstream that is one of o's listen addresses, a new listen address that cannot be bound (in
 *  use, or a privileged port), or out of memory. */
int server_reload(server_t *s, struct options *o, local_t *local, struct tls_creds *tls,
		  char *err, size_t errlen);

/** On worker w's thread, between two queries: take on the reload queued for it, if any. */
void server_reload_take(struct worker *w);

/** Give w an upstream side made with w->o's upstreams if it has not one yet (a reload's could
 *  not be made: too many old sides still answering, or no memory); sets w->up_lag while it
 *  cannot. */
void server_reload_upstreams(struct worker *w);

/** On worker w's thread, once the handles closed in the last loop iteration are gone: show the
 *  main thread which reload generations w still reads (server_reclaim). */
void server_reload_show_gens(struct worker *w);

/** Is ss free for UDP and TCP (nobody else holds it: SO_REUSEPORT would share it)? Checked for
 *  every listen address at the start and for each new one on a reload.
 *  @return 0, or a negative errno with a message in err. */
int server_reload_check_free(const struct sockaddr_storage *ss, char *err, size_t errlen);
