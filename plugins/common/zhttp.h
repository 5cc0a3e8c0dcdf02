/* zorch plugin kit — a small HTTP client over libcurl for flavors that talk
 * to a service API (the Docker Engine API, the Kubernetes API, cloud APIs).
 *
 * Built as a static PIC library with hidden symbols and linked into each
 * plugin (and libzorch for the image builder); nothing of it is exported.
 *
 * - Unix-socket or TCP transport; TLS verified by default, with a CA bundle
 *   given as a file or as PEM text, and a client certificate and key (file
 *   or PEM text).
 * - Client-wide headers and a fixed bearer token, per-request headers, and
 *   an auth provider (zh_auth) consulted for every request: it sees the
 *   whole request (method, URL, headers, body), so a signer (AWS SigV4) or a
 *   token cache (kubeconfig exec plugins, OAuth) fits the same slot.  A 401
 *   asks the provider once whether to try again with fresh credentials.
 * - JSON bodies (jansson) in and out; raw bodies from memory or from a read
 *   callback (a tar upload); responses in memory or streamed to a callback
 *   (logs, watch streams).  The headers of a 2xx response stay readable
 *   (zh_response_header: Location, ETag, continuation tokens,
 *   Azure-AsyncOperation).
 * - Retries for idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, and
 *   any request marked ZH_IDEMPOTENT) on connection errors, 429 and 5xx,
 *   with full-jitter backoff (a random wait in [0, min(cap, base * 2^n)]);
 *   a Retry-After of the answer is honoured instead (capped at 10 s).
 * - Connections and TLS sessions are reused across the requests of one
 *   client: a small pool of curl handles keeps their connections alive, and
 *   a curl share handle holds the TLS session cache and the DNS cache of all
 *   of them, so a polling loop does one TCP and TLS handshake, not one per
 *   poll.
 * - Errors carry the HTTP status, the API's error message (the "message" of
 *   a JSON error body, as Docker and Kubernetes send) and the body itself.
 *
 * Thread-safety: a client may be used from several threads at once.  Each
 * request takes a curl handle of its own from the pool; the share handle's
 * data is guarded by one mutex per kind of data (curl's lock callbacks).
 * zh_client_set_identity() may run concurrently with requests.
 */
#ifndef ZORCH_ZHTTP_H
#define ZORCH_ZHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct zh_client zh_client;
typedef struct zh_auth zh_auth;

typedef struct zh_options {
  /** "http://localhost" for a unix socket, or "https://host:port[/prefix]". */
  const char *base_url;
  /** Talk over this unix socket (base_url's host is then only the Host header). */
  const char *unix_socket;
  /** TLS: CA bundle as a file or PEM text (NULL: the system's). */
  const char *ca_file, *ca_pem;
  /** TLS client certificate and key, as files or PEM text. */
  const char *cert_file, *cert_pem, *key_file, *key_pem;
  /** Skip TLS verification (off by default; say so loudly if you set it). */
  bool insecure_skip_verify;
  /** Sent as "Authorization: Bearer <token>" when set (a token that never
   *  changes; use `auth` for one that does). */
  const char *bearer_token;
  /** Extra "Name: value" headers of every request, NULL-terminated (may be NULL). */
  const char *const *headers;
  /** Applied to every request (see zh_auth_ops).  Borrowed: it must outlive
   *  the client.  NULL: none. */
  zh_auth *auth;
  /** Connect timeout (0: 10 s) and whole-request timeout (0: none) in ms. */
  long connect_timeout_ms, timeout_ms;
  /** Attempts for retryable failures (0: 4), the first backoff (0: 200 ms)
   *  and the longest (0: 5 s). */
  int max_attempts;
  long backoff_ms, backoff_cap_ms;
  /** What to call the service in messages ("the Docker engine"). */
  const char *service_name;
} zh_options;

/** A failed request: status 0 when no HTTP response came (see curl_code). */
typedef struct zh_error {
  long status;            /**< HTTP status, 0 for a transport error */
  int curl_code;          /**< CURLcode of a transport error, else 0 */
  char message[1024];     /**< one line: what was asked, what came back */
  char api_message[1024]; /**< the API's own error message, "" when none */
  char *body;             /**< the error response body (malloc'd) or NULL */
} zh_error;

void zh_error_clear(zh_error *e);

/** Request flags. */
enum {
  ZH_IDEMPOTENT = 1 << 0, /**< safe to retry although the method is POST */
  ZH_NO_RETRY = 1 << 1,   /**< never retry (e.g. a streamed upload) */
};

/** A response held in memory. */
typedef struct zh_response {
  long status;
  char *body;    /**< NUL-terminated, malloc'd (may be empty) */
  size_t len;
  char *headers; /**< the response's header lines, "Name: value\0" each, then "\0" (malloc'd) */
} zh_response;

void zh_response_free(zh_response *r);

/** The value of response header `name` (case-insensitive; the first when
 *  it came twice), without surrounding blanks; NULL when absent.
 *  Ownership: borrowed, valid until zh_response_free(). */
const char *zh_response_header(const zh_response *r, const char *name);

/** Streaming: called with each chunk of a 2xx response body as it arrives.
 *  Return 0 to go on, non-zero to stop (the request then ends with
 *  ZH_STOPPED, which is not an error). */
typedef int (*zh_chunk_cb)(const char *data, size_t len, void *payload);
/** Upload: fill buf with up to n bytes; return the count, 0 at the end, or
 *  (size_t)-1 to abort. */
typedef size_t (*zh_read_cb)(char *buf, size_t n, void *payload);

/** A request.  Only method and path are required. */
typedef struct zh_request {
  const char *method;
  const char *path;          /**< appended to base_url; include the query string */
  const char *content_type;  /**< of the body */
  const void *body;          /**< body in memory ... */
  size_t body_len;
  zh_read_cb read_cb;        /**< ... or from a callback (chunked) */
  void *read_payload;
  /** Hex SHA-256 of a body sent by read_cb, for signing providers (NULL: unknown). */
  const char *body_sha256;
  /** This request's own "Name: value" headers, NULL-terminated (may be NULL). */
  const char *const *headers;
  zh_chunk_cb chunk_cb;      /**< stream the 2xx body here instead of keeping it */
  void *chunk_payload;
  volatile int *abort_flag;  /**< when non-NULL and set, the request stops (ZH_STOPPED) */
  int flags;
  long timeout_ms;           /**< this request's own timeout (0: the client's) */
} zh_request;

/** Results besides 0 (a 2xx response). */
enum {
  ZH_OK = 0,
  ZH_EHTTP = 1,      /**< a non-2xx response (err->status set) */
  ZH_ETRANSPORT = 2, /**< no response: connection refused, TLS, timeout ... */
  ZH_ENOMEM = 3,
  ZH_STOPPED = 4,    /**< the chunk callback or abort_flag stopped the stream */
  ZH_EAUTH = 5,      /**< the auth provider could not get credentials (err->message says why) */
};

/* ---- auth providers ------------------------------------------------------------ */

/** What a provider sees of a request, as it will be sent. */
typedef struct zh_auth_request {
  const char *method;
  const char *url;            /**< the whole URL: scheme, host, port, path and query */
  const char *const *headers; /**< "Name: value" lines it carries so far (client's, request's, Content-Type) */
  const void *body;           /**< the body in memory, or NULL (none, or streamed) */
  size_t body_len;
  const char *body_sha256;    /**< hex SHA-256 of a streamed body, when the caller gave it */
  bool streamed;              /**< the body comes from a read callback */
} zh_auth_request;

/** Adds one header to the request being authenticated; non-zero on OOM. */
typedef int (*zh_add_header_fn)(void *add_ctx, const char *name, const char *value);

#define ZH_AUTH_OPS_VERSION 1

/** A credential provider, applied to each request.  Every slot may be
 *  called from several threads at once: a provider guards its own state,
 *  and never hands out a pointer that a refresh could free (apply copies
 *  what it adds through add_header). */
typedef struct zh_auth_ops {
  uint32_t version; /**< ZH_AUTH_OPS_VERSION */
  /** Add the headers that authenticate `req` (refreshing cached credentials
   *  that expire soon).  *generation gets a number naming the credentials
   *  used, for on_unauthorized.  Returns ZH_OK, or ZH_EAUTH / ZH_ENOMEM with
   *  err->message saying what failed. */
  int (*apply)(zh_auth *auth, const zh_auth_request *req, zh_add_header_fn add, void *add_ctx,
               uint64_t *generation, zh_error *err);
  /** The server answered 401 to a request authenticated with `generation`:
   *  refresh what can be refreshed (once per generation, however many
   *  requests failed with it).  Returns true when a retry may succeed (the
   *  credentials changed since `generation`). */
  bool (*on_unauthorized)(zh_auth *auth, uint64_t generation);
  void (*free)(zh_auth *auth);
} zh_auth_ops;

/** Every provider starts with this (embed it as the first member). */
struct zh_auth {
  const zh_auth_ops *ops;
};

/** NULL-safe. */
void zh_auth_free(zh_auth *auth);

/* ---- clients and requests ---------------------------------------------------------- */

/** New client; NULL on OOM or invalid options (err->message says which). */
zh_client *zh_client_new(const zh_options *opts, zh_error *err);
/** Free a client no request is using any more. */
void zh_client_free(zh_client *c);

/** Replace the TLS client certificate and key (PEM text; both NULL: none),
 *  e.g. after an exec credential plugin gave new ones.  Requests that start
 *  afterwards use them; connections made with the old ones are not reused.
 *  Returns ZH_OK or ZH_ENOMEM. */
int zh_client_set_identity(zh_client *c, const char *cert_pem, const char *key_pem);

/** Perform a request.  resp may be NULL when a chunk callback takes the body
 *  or the body is not wanted. */
int zh_do(zh_client *c, const zh_request *req, zh_response *resp, zh_error *err);

/** JSON convenience: body (may be NULL) sent as application/json; *out (may
 *  be NULL) gets the parsed 2xx response (NULL for an empty body). */
int zh_json(zh_client *c, const char *method, const char *path, json_t *body, json_t **out,
            zh_error *err);

/** zh_escape() returns a malloc'd URL-escaped copy (query values, names). */
char *zh_escape(const char *s);

/** Full jitter: a random wait in [0, min(cap_ms, base_ms * 2^n)] ms, for
 *  the n-th retry (n = 0 first).  Thread-safe. */
long zh_backoff_ms(long base_ms, long cap_ms, unsigned n);

/** A uniformly random number in [0, 1), from a per-thread generator seeded
 *  from the kernel.  Thread-safe. */
double zh_random(void);

#endif
