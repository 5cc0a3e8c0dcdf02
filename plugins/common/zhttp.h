/* zorch plugin kit — a small HTTP client over libcurl for flavors that talk
 * to a service API (the Docker Engine API, the Kubernetes API, cloud APIs).
 *
 * Built as a static PIC library with hidden symbols and linked into each
 * plugin (and libzorch for the image builder); nothing of it is exported.
 *
 * - Unix-socket or TCP transport; TLS verified by default, with a CA bundle
 *   given as a file or as PEM text, and a client certificate and key (file
 *   or PEM text).
 * - A bearer token and extra headers on every request.
 * - JSON bodies (jansson) in and out; raw bodies from memory or from a read
 *   callback (a tar upload); responses in memory or streamed to a callback
 *   (logs, watch streams).
 * - Retries with exponential backoff for idempotent requests (GET, HEAD,
 *   PUT, DELETE, and any request marked ZH_IDEMPOTENT) on connection errors,
 *   429 and 5xx.  Retry-After of a 429/503 is honoured (capped).
 * - Errors carry the HTTP status, the API's error message (the "message" of
 *   a JSON error body, as Docker and Kubernetes send) and the body itself.
 *
 * A client may be used from several threads at once: each request uses its
 * own curl handle.
 */
#ifndef ZORCH_ZHTTP_H
#define ZORCH_ZHTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef struct zh_client zh_client;

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
  /** Sent as "Authorization: Bearer <token>" when set. */
  const char *bearer_token;
  /** Extra "Name: value" headers, NULL-terminated (may be NULL). */
  const char *const *headers;
  /** Connect timeout (0: 10 s) and whole-request timeout (0: none) in ms. */
  long connect_timeout_ms, timeout_ms;
  /** Attempts for retryable failures (0: 4) and the first backoff (0: 200 ms). */
  int max_attempts;
  long backoff_ms;
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
  char *body; /**< NUL-terminated, malloc'd (may be empty) */
  size_t len;
} zh_response;

void zh_response_free(zh_response *r);

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
};

/** New client; NULL on OOM or invalid options (err->message says which). */
zh_client *zh_client_new(const zh_options *opts, zh_error *err);
void zh_client_free(zh_client *c);

/** Perform a request.  resp may be NULL when a chunk callback takes the body
 *  or the body is not wanted. */
int zh_do(zh_client *c, const zh_request *req, zh_response *resp, zh_error *err);

/** JSON convenience: body (may be NULL) sent as application/json; *out (may
 *  be NULL) gets the parsed 2xx response (NULL for an empty body). */
int zh_json(zh_client *c, const char *method, const char *path, json_t *body, json_t **out,
            zh_error *err);

/** The same path with printf formatting and query-string escaping help:
 *  zh_escape() returns a malloc'd URL-escaped copy. */
char *zh_escape(const char *s);

#endif
