/* zorch plugin kit — HTTP client over libcurl (see zhttp.h).
 *
 * Concurrency: `lock` guards the handle pool and the TLS identity (and the
 * generation that names it); nothing else of a client changes after
 * zh_client_new.  The curl share handle (TLS sessions, DNS) has one mutex
 * per kind of data, taken by curl through share_lock/share_unlock.  A curl
 * easy handle is used by one request at a time: taken from the pool (or
 * made) when a request starts, given back when it ends. */
#include "zhttp.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Idle curl handles a client keeps (each with its live connection). */
#define POOL_MAX 8

struct zh_client {
  char *base_url, *unix_socket;
  char *ca_file, *cert_file, *key_file;
  char *ca_pem;
  bool insecure;
  struct curl_slist *headers;
  zh_auth *auth;
  long connect_timeout_ms, timeout_ms;
  int max_attempts;
  long backoff_ms, backoff_cap_ms;
  char *service;
  CURLSH *share;
  pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
  pthread_mutex_t lock;
  CURL *pool[POOL_MAX];         /* (lock) */
  uint64_t pool_gen[POOL_MAX];  /* (lock) the identity each pooled handle last used */
  size_t npool;                 /* (lock) */
  char *cert_pem, *key_pem;     /* (lock) the TLS identity as PEM text */
  uint64_t identity_gen;        /* (lock) bumped when the identity changes */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void seterr(zh_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(zh_error *e, const char *fmt, ...) {
  if (!e) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
}

void zh_error_clear(zh_error *e) {
  if (!e) return;
  free(e->body);
  memset(e, 0, sizeof *e);
}

void zh_response_free(zh_response *r) {
  if (!r) return;
  free(r->body);
  free(r->headers);
  memset(r, 0, sizeof *r);
}

const char *zh_response_header(const zh_response *r, const char *name) {
  if (!r || !r->headers || !name) return NULL;
  size_t nl = strlen(name);
  for (const char *h = r->headers; *h; h += strlen(h) + 1)
    if (!strncasecmp(h, name, nl) && h[nl] == ':') {
      const char *v = h + nl + 1;
      while (*v == ' ' || *v == '\t') v++;
      return v;
    }
  return NULL;
}

void zh_auth_free(zh_auth *a) {
  if (a && a->ops && a->ops->free) a->ops->free(a);
}

/* ---- randomness and backoff ------------------------------------------------------ */

double zh_random(void) {
  static _Thread_local uint64_t state;
  if (!state) {
    if (getrandom(&state, sizeof state, GRND_NONBLOCK) != (ssize_t)sizeof state || !state) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
              (uint64_t)(uintptr_t)&state;
      if (!state) state = 0x9e3779b97f4a7c15ULL;
    }
  }
  /* xorshift64* */
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  uint64_t r = state * 0x2545F4914F6CDD1DULL;
  return (double)(r >> 11) / 9007199254740992.0; /* 53 bits */
}

long zh_backoff_ms(long base_ms, long cap_ms, unsigned n) {
  if (base_ms <= 0 || cap_ms <= 0) return 0;
  long upper = base_ms;
  for (unsigned i = 0; i < n && upper < cap_ms; i++) upper *= 2;
  if (upper > cap_ms) upper = cap_ms;
  return (long)(zh_random() * (double)(upper + 1));
}

/* ---- clients ------------------------------------------------------------------------ */

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *p) {
  (void)h, (void)a;
  zh_client *c = p;
  pthread_mutex_lock(&c->share_locks[d < CURL_LOCK_DATA_LAST ? d : 0]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *p) {
  (void)h;
  zh_client *c = p;
  pthread_mutex_unlock(&c->share_locks[d < CURL_LOCK_DATA_LAST ? d : 0]);
}

zh_client *zh_client_new(const zh_options *o, zh_error *err) {
  pthread_once(&curl_once, curl_init_once);
  if (err) memset(err, 0, sizeof *err);
  if (!o || !o->base_url) {
    seterr(err, "no base URL given");
    return NULL;
  }
  zh_client *c = calloc(1, sizeof *c);
  if (!c) goto oom;
  pthread_mutex_init(&c->lock, NULL);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&c->share_locks[i], NULL);
  c->base_url = strdup(o->base_url);
  size_t bl = c->base_url ? strlen(c->base_url) : 0;
  while (bl > 0 && c->base_url[bl - 1] == '/') c->base_url[--bl] = '\0';
  c->unix_socket = dup_or_null(o->unix_socket);
  c->ca_file = dup_or_null(o->ca_file);
  c->ca_pem = dup_or_null(o->ca_pem);
  c->cert_file = dup_or_null(o->cert_file);
  c->cert_pem = dup_or_null(o->cert_pem);
  c->key_file = dup_or_null(o->key_file);
  c->key_pem = dup_or_null(o->key_pem);
  c->insecure = o->insecure_skip_verify;
  c->auth = o->auth;
  c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
  c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 0;
  c->max_attempts = o->max_attempts > 0 ? o->max_attempts : 4;
  c->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : 200;
  c->backoff_cap_ms = o->backoff_cap_ms > 0 ? o->backoff_cap_ms : 5000;
  c->service = strdup(o->service_name ? o->service_name : "the service");
  if (!c->base_url || !c->service) goto oom;
  if (o->bearer_token) {
    size_t n = strlen(o->bearer_token) + 32;
    char *h = malloc(n);
    if (!h) goto oom;
    snprintf(h, n, "Authorization: Bearer %s", o->bearer_token);
    struct curl_slist *nl = curl_slist_append(c->headers, h);
    free(h);
    if (!nl) goto oom;
    c->headers = nl;
  }
  for (size_t i = 0; o->headers && o->headers[i]; i++) {
    struct curl_slist *nl = curl_slist_append(c->headers, o->headers[i]);
    if (!nl) goto oom;
    c->headers = nl;
  }
  /* no "Expect: 100-continue" round trip for uploads */
  struct curl_slist *nl = curl_slist_append(c->headers, "Expect:");
  if (!nl) goto oom;
  c->headers = nl;
  c->share = curl_share_init();
  if (!c->share) goto oom;
  curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
  curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  return c;
oom:
  seterr(err, "out of memory");
  zh_client_free(c);
  return NULL;
}

void zh_client_free(zh_client *c) {
  if (!c) return;
  for (size_t i = 0; i < c->npool; i++) curl_easy_cleanup(c->pool[i]);
  if (c->share) curl_share_cleanup(c->share);
  free(c->base_url);
  free(c->unix_socket);
  free(c->ca_file);
  free(c->ca_pem);
  free(c->cert_file);
  free(c->cert_pem);
  free(c->key_file);
  free(c->key_pem);
  free(c->service);
  curl_slist_free_all(c->headers);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&c->share_locks[i]);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

int zh_client_set_identity(zh_client *c, const char *cert_pem, const char *key_pem) {
  char *cp = dup_or_null(cert_pem), *kp = dup_or_null(key_pem);
  if ((cert_pem && !cp) || (key_pem && !kp)) {
    free(cp);
    free(kp);
    return ZH_ENOMEM;
  }
  pthread_mutex_lock(&c->lock);
  bool same = (!cp == !c->cert_pem) && (!cp || !strcmp(cp, c->cert_pem)) && (!kp == !c->key_pem) &&
              (!kp || !strcmp(kp, c->key_pem));
  char *oc = c->cert_pem, *ok = c->key_pem;
  if (!same) {
    c->cert_pem = cp;
    c->key_pem = kp;
    if (cp) { /* PEM text replaces a file given at creation */
      free(c->cert_file);
      free(c->key_file);
      c->cert_file = c->key_file = NULL;
    }
    c->identity_gen++;
  }
  pthread_mutex_unlock(&c->lock);
  if (same) {
    free(cp);
    free(kp);
  } else {
    free(oc);
    free(ok);
  }
  return ZH_OK;
}

char *zh_escape(const char *s) {
  pthread_once(&curl_once, curl_init_once);
  char *e = curl_easy_escape(NULL, s ? s : "", 0);
  char *r = e ? strdup(e) : NULL;
  curl_free(e);
  return r;
}

/* A curl handle for one request: a pooled one (with its live connection)
 * made with the current identity, else a new one. */
static CURL *handle_take(zh_client *c) {
  CURL *h = NULL, *stale = NULL;
  pthread_mutex_lock(&c->lock);
  while (c->npool && !h) {
    c->npool--;
    if (c->pool_gen[c->npool] == c->identity_gen) {
      h = c->pool[c->npool];
    } else {
      stale = c->pool[c->npool];
      pthread_mutex_unlock(&c->lock);
      curl_easy_cleanup(stale);
      pthread_mutex_lock(&c->lock);
    }
  }
  pthread_mutex_unlock(&c->lock);
  if (h) curl_easy_reset(h); /* keeps its connections and caches */
  else h = curl_easy_init();
  return h;
}

static void handle_give(zh_client *c, CURL *h, uint64_t gen) {
  pthread_mutex_lock(&c->lock);
  if (c->npool < POOL_MAX && gen == c->identity_gen) {
    c->pool[c->npool] = h;
    c->pool_gen[c->npool++] = gen;
    h = NULL;
  }
  pthread_mutex_unlock(&c->lock);
  if (h) curl_easy_cleanup(h);
}

/* ---- one transfer ---------------------------------------------------------------- */

typedef struct xfer {
  const zh_request *req;
  CURL *h;
  long status;         /* known once the headers are in */
  char *buf;           /* kept body (non-2xx always, 2xx unless streamed) */
  size_t len, cap;
  char *hdrs;          /* the last response's header lines, "Name: value\0" ... */
  size_t hlen, hcap;
  bool oom, stopped;
  long retry_after;    /* seconds, from the Retry-After header */
  uint64_t auth_gen;   /* the credentials the auth provider used */
  struct curl_slist *sent; /* the request's header lines */
} xfer;

static bool grow(char **b, size_t *cap, size_t need) {
  if (need <= *cap) return true;
  size_t nc = *cap ? *cap * 2 : 1024;
  while (nc < need) nc *= 2;
  char *nb = realloc(*b, nc);
  if (!nb) return false;
  *b = nb;
  *cap = nc;
  return true;
}

static bool buf_add(xfer *x, const char *d, size_t n) {
  if (!grow(&x->buf, &x->cap, x->len + n + 1)) return false;
  memcpy(x->buf + x->len, d, n);
  x->len += n;
  x->buf[x->len] = '\0';
  return true;
}

static size_t on_header(char *data, size_t size, size_t n, void *p) {
  xfer *x = p;
  size_t len = size * n;
  if (len >= 5 && !strncmp(data, "HTTP/", 5)) { /* a new response (after 100 Continue, say) */
    x->hlen = 0;
    x->retry_after = 0;
    return len;
  }
  size_t l = len;
  while (l && (data[l - 1] == '\r' || data[l - 1] == '\n')) l--;
  if (!l || !memchr(data, ':', l)) return len;
  if (l > 12 && !strncasecmp(data, "Retry-After:", 12)) x->retry_after = strtol(data + 12, NULL, 10);
  if (!grow(&x->hdrs, &x->hcap, x->hlen + l + 2)) {
    x->oom = true;
    return 0;
  }
  memcpy(x->hdrs + x->hlen, data, l);
  x->hlen += l;
  x->hdrs[x->hlen++] = '\0';
  x->hdrs[x->hlen] = '\0';
  return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *p) {
  xfer *x = p;
  size_t len = size * n;
  if (!x->status) curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->status);
  if (x->req->abort_flag && *x->req->abort_flag) {
    x->stopped = true;
    return 0;
  }
  if (x->req->chunk_cb && x->status >= 200 && x->status < 300) {
    if (x->req->chunk_cb(data, len, x->req->chunk_payload) != 0) {
      x->stopped = true;
      return 0;
    }
    return len;
  }
  if (!buf_add(x, data, len)) {
    x->oom = true;
    return 0;
  }
  return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *p) {
  xfer *x = p;
  size_t r = x->req->read_cb(buf, size * n, x->req->read_payload);
  return r == (size_t)-1 ? CURL_READFUNC_ABORT : r;
}

static int on_progress(void *p, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
  (void)dt, (void)dn, (void)ut, (void)un;
  xfer *x = p;
  if (x->req->abort_flag && *x->req->abort_flag) {
    x->stopped = true;
    return 1;
  }
  return 0;
}

/* The API's error message: Docker sends {"message": ...}, Kubernetes a
 * Status object with "message", others {"error": ...}. */
static void api_message(zh_error *e, const char *body, size_t len) {
  e->api_message[0] = '\0';
  if (!body || !len) return;
  json_t *j = json_loadb(body, len, 0, NULL);
  const char *m = NULL;
  if (json_is_object(j)) {
    m = json_string_value(json_object_get(j, "message"));
    if (!m) m = json_string_value(json_object_get(j, "error"));
    if (!m) m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
  }
  if (m) {
    snprintf(e->api_message, sizeof e->api_message, "%s", m);
  } else {
    /* not JSON: the first line of the text */
    size_t l = strcspn(body, "\r\n");
    if (l >= sizeof e->api_message) l = sizeof e->api_message - 1;
    memcpy(e->api_message, body, l);
    e->api_message[l] = '\0';
  }
  json_decref(j);
}

static bool retryable_method(const zh_request *r) {
  if (r->flags & ZH_NO_RETRY || r->read_cb) return false;
  if (r->flags & ZH_IDEMPOTENT) return true;
  const char *m = r->method;
  return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") || !strcmp(m, "DELETE") ||
         !strcmp(m, "OPTIONS");
}

static int add_header(void *p, const char *name, const char *value) {
  xfer *x = p;
  size_t n = strlen(name) + strlen(value) + 3;
  char *line = malloc(n);
  if (!line) return -1;
  snprintf(line, n, "%s: %s", name, value);
  struct curl_slist *nl = curl_slist_append(x->sent, line);
  free(line);
  if (!nl) return -1;
  x->sent = nl;
  return 0;
}

/* The request's header lines: the client's, the request's own, its
 * Content-Type, then what the auth provider adds. */
static int request_headers(zh_client *c, const zh_request *req, const char *url, xfer *x, zh_error *err) {
  for (struct curl_slist *hp = c->headers; hp; hp = hp->next)
    if (!(x->sent = curl_slist_append(x->sent, hp->data))) return ZH_ENOMEM;
  for (size_t i = 0; req->headers && req->headers[i]; i++)
    if (!(x->sent = curl_slist_append(x->sent, req->headers[i]))) return ZH_ENOMEM;
  if (req->content_type && add_header(x, "Content-Type", req->content_type)) return ZH_ENOMEM;
  if (!c->auth) return ZH_OK;
  size_t n = 0;
  for (struct curl_slist *hp = x->sent; hp; hp = hp->next) n++;
  const char **lines = calloc(n + 1, sizeof *lines);
  if (!lines) return ZH_ENOMEM;
  n = 0;
  for (struct curl_slist *hp = x->sent; hp; hp = hp->next)
    if (strcmp(hp->data, "Expect:")) lines[n++] = hp->data;
  zh_auth_request ar = {.method = req->method, .url = url, .headers = lines, .body = req->body,
                        .body_len = req->body ? req->body_len : 0, .body_sha256 = req->body_sha256,
                        .streamed = req->read_cb != NULL};
  zh_error ae = {0};
  int rc = c->auth->ops->apply(c->auth, &ar, add_header, x, &x->auth_gen, &ae);
  free(lines);
  if (rc != ZH_OK) {
    seterr(err, "%s %s: no credentials for %s: %s", req->method, req->path, c->service,
           ae.message[0] ? ae.message : "the auth provider failed");
    zh_error_clear(&ae);
    return rc == ZH_ENOMEM ? ZH_ENOMEM : ZH_EAUTH;
  }
  return ZH_OK;
}

static int transfer(zh_client *c, CURL *h, uint64_t *gen, const zh_request *req, xfer *x, int *curl_code,
                    char *curl_err, zh_error *err) {
  size_t ul = strlen(c->base_url) + strlen(req->path) + 2;
  char *url = malloc(ul);
  if (!url) return ZH_ENOMEM;
  snprintf(url, ul, "%s%s%s", c->base_url, req->path[0] == '/' ? "" : "/", req->path);
  int rc = request_headers(c, req, url, x, err);
  if (rc != ZH_OK) {
    free(url);
    return rc;
  }
  curl_easy_setopt(h, CURLOPT_SHARE, c->share);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
  if (c->unix_socket) curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->unix_socket);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  long to = req->timeout_ms > 0 ? req->timeout_ms : c->timeout_ms;
  if (to > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, to);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->sent);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "zorch/1");
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
  if (c->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
  if (c->ca_pem) { /* immutable while the client lives */
    struct curl_blob ca = {c->ca_pem, strlen(c->ca_pem), CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
  }
  /* the identity may be replaced by another thread: curl copies it */
  pthread_mutex_lock(&c->lock);
  *gen = c->identity_gen;
  if (c->cert_file) curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
  if (c->key_file) curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
  if (c->cert_pem) {
    struct curl_blob cert = {c->cert_pem, strlen(c->cert_pem), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (c->key_pem) {
    struct curl_blob key = {c->key_pem, strlen(c->key_pem), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  }
  pthread_mutex_unlock(&c->lock);
  const char *m = req->method;
  if (!strcmp(m, "GET")) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else if (!strcmp(m, "HEAD")) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
    if (req->read_cb) {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, x);
    } else {
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
    }
  }
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
  if (req->abort_flag) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
  }
  x->h = h; /* the body callback asks it for the status */
  x->status = 0;
  CURLcode cc = curl_easy_perform(h);
  long st = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
  if (!x->status) x->status = st;
  *curl_code = (int)cc;
  /* the handle keeps no pointer into what is freed here */
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
  curl_slist_free_all(x->sent);
  x->sent = NULL;
  free(url);
  if (x->oom) return ZH_ENOMEM;
  if (x->stopped) return ZH_STOPPED;
  if (cc != CURLE_OK) return ZH_ETRANSPORT;
  return ZH_OK;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void xfer_free(xfer *x) {
  free(x->buf);
  free(x->hdrs);
  curl_slist_free_all(x->sent);
  memset(x, 0, sizeof *x);
}

int zh_do(zh_client *c, const zh_request *req, zh_response *resp, zh_error *err) {
  if (err) {
    free(err->body);
    memset(err, 0, sizeof *err);
  }
  if (resp) memset(resp, 0, sizeof *resp);
  bool retry_ok = retryable_method(req), auth_retried = false;
  CURL *h = handle_take(c);
  if (!h) {
    seterr(err, "%s %s: out of memory", req->method, req->path);
    return ZH_ENOMEM;
  }
  uint64_t gen = 0;
  int result;
  for (int attempt = 1;; attempt++) {
    xfer x = {.req = req};
    int cc = 0;
    char cerr[CURL_ERROR_SIZE] = "";
    int rc = transfer(c, h, &gen, req, &x, &cc, cerr, err);
    if (rc == ZH_ENOMEM || rc == ZH_EAUTH) {
      xfer_free(&x);
      if (rc == ZH_ENOMEM) seterr(err, "%s %s: out of memory", req->method, req->path);
      result = rc;
      break;
    }
    if (rc == ZH_STOPPED) {
      if (resp) resp->status = x.status;
      xfer_free(&x);
      result = ZH_STOPPED;
      break;
    }
    bool retry = false;
    if (rc == ZH_ETRANSPORT) {
      retry = retry_ok && (cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT ||
                           cc == CURLE_GOT_NOTHING || cc == CURLE_RECV_ERROR ||
                           cc == CURLE_SEND_ERROR || cc == CURLE_PARTIAL_FILE);
      if (!retry || attempt >= c->max_attempts) {
        if (err) {
          err->curl_code = cc;
          const char *where = c->unix_socket ? c->unix_socket : c->base_url;
          seterr(err, "%s %s: cannot reach %s at %s%s: %s%s", req->method, req->path, c->service,
                 c->unix_socket ? "unix://" : "", where, cerr[0] ? cerr : curl_easy_strerror(cc),
                 attempt > 1 ? " (after retries)" : "");
        }
        xfer_free(&x);
        result = ZH_ETRANSPORT;
        break;
      }
    } else if (x.status < 200 || x.status >= 300) {
      if (x.status == 401 && c->auth && !auth_retried && !req->read_cb &&
          c->auth->ops->on_unauthorized && c->auth->ops->on_unauthorized(c->auth, x.auth_gen)) {
        auth_retried = true; /* once, with the refreshed credentials */
        attempt--;
        xfer_free(&x);
        continue;
      }
      retry = (x.status == 429 || x.status >= 500) && retry_ok && attempt < c->max_attempts;
      if (!retry) {
        if (err) {
          err->status = x.status;
          api_message(err, x.buf, x.len);
          err->body = x.buf;
          x.buf = NULL;
          seterr(err, "%s %s: %s answered HTTP %ld%s%s", req->method, req->path, c->service,
                 x.status, err->api_message[0] ? ": " : "", err->api_message);
        }
        xfer_free(&x);
        result = ZH_EHTTP;
        break;
      }
    } else {
      result = ZH_OK;
      if (resp) {
        resp->status = x.status;
        resp->body = x.buf ? x.buf : strdup("");
        resp->len = x.len;
        resp->headers = x.hdrs ? x.hdrs : calloc(1, 2);
        x.buf = x.hdrs = NULL;
        if (!resp->body || !resp->headers) {
          zh_response_free(resp);
          seterr(err, "%s %s: out of memory", req->method, req->path);
          result = ZH_ENOMEM;
        }
      }
      xfer_free(&x);
      break;
    }
    long wait = zh_backoff_ms(c->backoff_ms, c->backoff_cap_ms, (unsigned)(attempt - 1));
    if (x.retry_after > 0) wait = x.retry_after * 1000 > 10000 ? 10000 : x.retry_after * 1000;
    xfer_free(&x);
    sleep_ms(wait);
  }
  handle_give(c, h, gen);
  return result;
}

int zh_json(zh_client *c, const char *method, const char *path, json_t *body, json_t **out,
            zh_error *err) {
  if (out) *out = NULL;
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  if (body && !text) {
    seterr(err, "%s %s: out of memory", method, path);
    return ZH_ENOMEM;
  }
  zh_request req = {.method = method, .path = path};
  if (text) {
    req.content_type = "application/json";
    req.body = text;
    req.body_len = strlen(text);
  }
  zh_response resp;
  int rc = zh_do(c, &req, &resp, err);
  free(text);
  if (rc != ZH_OK) return rc;
  if (out && resp.len) {
    json_error_t je;
    *out = json_loadb(resp.body, resp.len, JSON_DECODE_ANY, &je);
    if (!*out) {
      seterr(err, "%s %s: %s sent a response that is not JSON (%s): %.200s", method, path,
             c->service, je.text, resp.body);
      zh_response_free(&resp);
      return ZH_EHTTP;
    }
  }
  zh_response_free(&resp);
  return ZH_OK;
}
