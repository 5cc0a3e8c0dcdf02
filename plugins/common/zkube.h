/* zorch plugin kit — a small Kubernetes API client over zhttp: the
 * configuration of zkconfig.h, JSON requests with credential refresh on 401
 * (exec plugins, rotated service-account tokens), watches as event
 * callbacks, and errors that say what to fix. */
#ifndef ZORCH_ZKUBE_H
#define ZORCH_ZKUBE_H

#include <jansson.h>
#include <pthread.h>

#include "zhttp.h"
#include "zkconfig.h"

typedef struct zk_client {
  zk_config cfg;
  zh_client *http;
  pthread_mutex_t lock; /* guards http when credentials are refreshed */
} zk_client;

/** Load the configuration and make a client (no request is made). */
int zk_client_new(zk_client **out, const zk_load_options *opts, char *err, size_t errlen);
void zk_client_free(zk_client *k);

/** A JSON request; body may be NULL, *out (may be NULL) the 2xx response.
 *  On failure err->message says what failed, with hints for 401/403/TLS. */
int zk_json(zk_client *k, const char *method, const char *path, json_t *body, json_t **out, zh_error *err);

/** GET a text resource (pod logs).  *out malloc'd. */
int zk_text(zk_client *k, const char *path, char **out, size_t *len, zh_error *err);

/** Watch events: called with "ADDED"/"MODIFIED"/"DELETED"/"BOOKMARK"/"ERROR"
 *  and the object.  Return non-zero to stop. */
typedef int (*zk_event_cb)(const char *type, json_t *object, void *payload);

/** Stream a watch (path with its query, ?watch=1 included) until the server
 *  ends it, the callback stops it or *abort_flag is set. */
int zk_watch(zk_client *k, const char *path, zk_event_cb cb, void *payload, volatile int *abort_flag,
             zh_error *err);

/** RFC 1123 label from any text: lower case, [a-z0-9-], at most max chars,
 *  starting and ending alphanumeric ("x" when nothing is left). */
void zk_sanitize_name(char *out, size_t max, const char *in);

#endif
