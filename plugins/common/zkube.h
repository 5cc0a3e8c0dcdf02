/* zorch plugin kit — a small Kubernetes API client over zhttp: the
 * configuration of zkconfig.h, JSON requests, watches as event callbacks,
 * one list-then-watch informer, and errors that say what to fix.
 *
 * Credentials are a zh_auth provider consulted for every request (a token,
 * a tokenFile re-read every minute and after a 401, an exec credential
 * plugin re-run before its credential expires and after a 401); the
 * client's zh_client is made once and never replaced, so requests and
 * refreshes may run on any threads at once.  A client certificate, from
 * the kubeconfig or from an exec plugin, stays at the TLS level.
 *
 * Errors follow the kit's convention (zkit.h): ZORCH_* codes (404
 * ZORCH_ENOTFOUND, 409 ZORCH_EEXISTS, ...) with the message, and a hint
 * for 401/403/TLS failures, reported through the client's host.
 */
#ifndef ZORCH_ZKUBE_H
#define ZORCH_ZKUBE_H

#include <jansson.h>

#include "zhttp.h"
#include "zkconfig.h"
#include "zkit.h"

typedef struct zk_client {
  const zorch_host *host; /**< where errors go */
  zk_config cfg;          /**< as loaded; never changed afterwards (read it from any thread) */
  zh_auth *auth;          /**< the kubeconfig's credentials */
  zh_client *http;        /**< made once, never replaced */
} zk_client;

/** Load the configuration and make a client (no request is made). */
int zk_client_new(zk_client **out, const zorch_host *h, const zk_load_options *opts);
void zk_client_free(zk_client *k);

/** The credentials of `cfg` as a provider (a token cache over its token,
 *  tokenFile or exec plugin, seeded with what loading found).  When the
 *  exec plugin hands out a client certificate, it goes to the zh_client
 *  bound with zk_auth_bind_tls(). */
int zk_auth_new(zh_auth **out, const zorch_host *h, const zk_config *cfg);
void zk_auth_bind_tls(zh_auth *auth, zh_client *tls);

/** A JSON request; body may be NULL, *out (may be NULL) the 2xx response. */
int zk_json(zk_client *k, const char *method, const char *path, json_t *body, json_t **out);

/** GET a text resource (pod logs).  *out malloc'd. */
int zk_text(zk_client *k, const char *path, char **out, size_t *len);

/** Watch events: called with "ADDED"/"MODIFIED"/"DELETED"/"BOOKMARK"/"ERROR"
 *  and the object.  Return non-zero to stop. */
typedef int (*zk_event_cb)(const char *type, json_t *object, void *payload);

/** Stream a watch (path with its query, ?watch=1 included) until the server
 *  ends it, the callback stops it or *abort_flag is set (ZORCH_OK then). */
int zk_watch(zk_client *k, const char *path, zk_event_cb cb, void *payload, volatile int *abort_flag);

/** List-then-watch, as client-go's informers do: the first round lists
 *  (every item is an "ADDED" event) and remembers the list's
 *  resourceVersion; later rounds watch from it, for watch_timeout_s each.
 *  An ERROR event (410 Gone: the version is too old) makes the next round
 *  list again.  Not thread-safe: one thread drives an informer. */
typedef struct zk_informer {
  zk_client *k;
  const char *path;     /**< the list path with its query ("...?labelSelector=..."); borrowed */
  zk_event_cb cb;       /**< non-zero from it ends the round */
  void *payload;
  int watch_timeout_s;  /**< 0: 2 */
  char rv[64];          /**< where the watch goes on from; "" lists again */
} zk_informer;

/** One round.  ZORCH_OK when the API answered (however the stream ended),
 *  else the error (reported through the client's host). */
int zk_informer_round(zk_informer *inf, volatile int *abort_flag);

/** RFC 1123 label from any text: lower case, [a-z0-9-], at most max chars,
 *  starting and ending alphanumeric ("x" when nothing is left). */
void zk_sanitize_name(char *out, size_t max, const char *in);

#endif
