/* zorch plugin kit — credential providers for zhttp, applied per request.
 *
 * A provider is a zh_auth (zhttp.h): apply() adds the headers that
 * authenticate one request and sees all of it (method, URL with query,
 * headers, body or its SHA-256), so a request signer (AWS SigV4: a
 * signature over the canonical request and the body hash) fits the same
 * slot as a bearer token; on_unauthorized() is asked after a 401 whether to
 * try once more; free() releases it.  A client never changes its provider,
 * and a provider never hands out a pointer that a refresh may free, so
 * credentials can be refreshed while other threads send requests.
 *
 * Here: a fixed bearer token, HTTP basic auth, and a token cache that any
 * token source plugs into (the kubeconfig credentials in zkube.h; OAuth
 * service accounts and Entra ID the same way).  A client certificate is not
 * a provider: it stays at the TLS level (zh_options, zh_client_set_identity).
 *
 * Constructors return ZORCH_OK or a ZORCH_* code reported through `h`
 * (zkit.h); the provider's own failures during a request are zhttp's
 * ZH_EAUTH with a message.
 */
#ifndef ZORCH_ZAUTH_H
#define ZORCH_ZAUTH_H

#include <stdbool.h>
#include <time.h>

#include "zhttp.h"
#include "zkit.h"

/** "Authorization: Bearer <token>" on every request; a 401 is final. */
int zauth_bearer_new(zh_auth **out, const zorch_host *h, const char *token);

/** "Authorization: Basic base64(user:password)" on every request. */
int zauth_basic_new(zh_auth **out, const zorch_host *h, const char *user, const char *password);

/** Where a token cache gets its tokens. */
typedef struct zauth_token_source {
  /** Get a token: *token malloc'd (NULL when the source authenticates
   *  otherwise, e.g. it set a TLS identity), *expires_at its expiry in
   *  wall-clock seconds (0: none known; it is used until a 401).  `force`
   *  says a server refused the current token.  Called with the cache's lock
   *  held, so never twice at once.  ZH_OK, or ZH_EAUTH with err->message. */
  int (*fetch)(void *src, bool force, char **token, time_t *expires_at, zh_error *err);
  /** Frees src with the cache (may be NULL). */
  void (*free)(void *src);
  void *src;
  /** The Authorization scheme ("Bearer" when NULL). */
  const char *scheme;
  /** Refresh this many seconds before expiry (0: 10). */
  int refresh_early_s;
  /** seeded: the source already has credentials (so the first request
   *  fetches nothing): initial_token (NULL: no token header) and its expiry. */
  bool seeded;
  const char *initial_token;
  time_t initial_expires_at;
} zauth_token_source;

/** A cached token from `src`, refreshed before it expires and once per
 *  token after a 401.  One mutex guards the cache; a refresh holds it, so
 *  concurrent requests wait for one fetch instead of each running their
 *  own, and each request copies the header it sends.  On success the cache
 *  owns src (and frees it with src->free); on failure the caller does. */
int zauth_token_new(zh_auth **out, const zorch_host *h, const zauth_token_source *src);

/** The `src` pointer of a token cache's source (to reach the source's own
 *  state, e.g. to bind a TLS client before the first request). */
void *zauth_token_source_data(zh_auth *cache);

/** Base64 of `len` bytes (malloc'd, NUL-terminated; NULL on OOM). */
char *zauth_base64(const void *data, size_t len);

#endif
