/* zorch plugin kit — HTTP client over libcurl (see zhttp.h). */
#include "zhttp.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct zh_client {
  char *base_url, *unix_socket;
  char *ca_file, *cert_file, *key_file;
  char *ca_pem, *cert_pem, *key_pem;
  bool insecure;
  struct curl_slist *headers;
  long connect_timeout_ms, timeout_ms;
  int max_attempts;
  long backoff_ms;
  char *service;
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
  r->body = NULL;
  r->len = 0;
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
  c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
  c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 0;
  c->max_attempts = o->max_attempts > 0 ? o->max_attempts : 4;
  c->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : 200;
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
  return c;
oom:
  seterr(err, "out of memory");
  zh_client_free(c);
  return NULL;
}

void zh_client_free(zh_client *c) {
  if (!c) return;
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
  free(c);
}

char *zh_escape(const char *s) {
  pthread_once(&curl_once, curl_init_once);
  char *e = curl_easy_escape(NULL, s ? s : "", 0);
  char *r = e ? strdup(e) : NULL;
  curl_free(e);
  return r;
}

/* ---- one transfer ---------------------------------------------------------------- */

typedef struct xfer {
  const zh_request *req;
  CURL *h;
  long status;         /* known once the headers are in */
  char *buf;           /* kept body (non-2xx always, 2xx unless streamed) */
  size_t len, cap;
  bool oom, stopped;
  long retry_after;    /* seconds, from the Retry-After header */
} xfer;

static bool buf_add(xfer *x, const char *d, size_t n) {
  if (x->len + n + 1 > x->cap) {
    size_t nc = x->cap ? x->cap * 2 : 4096;
    while (nc < x->len + n + 1) nc *= 2;
    char *nb = realloc(x->buf, nc);
    if (!nb) return false;
    x->buf = nb;
    x->cap = nc;
  }
  memcpy(x->buf + x->len, d, n);
  x->len += n;
  x->buf[x->len] = '\0';
  return true;
}

static size_t on_header(char *data, size_t size, size_t n, void *p) {
  xfer *x = p;
  size_t len = size * n;
  if (len > 12 && !strncasecmp(data, "Retry-After:", 12)) x->retry_after = strtol(data + 12, NULL, 10);
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

static int transfer(zh_client *c, const zh_request *req, xfer *x, int *curl_code, char *curl_err) {
  CURL *h = curl_easy_init();
  if (!h) return ZH_ENOMEM;
  size_t ul = strlen(c->base_url) + strlen(req->path) + 2;
  char *url = malloc(ul);
  if (!url) {
    curl_easy_cleanup(h);
    return ZH_ENOMEM;
  }
  snprintf(url, ul, "%s%s%s", c->base_url, req->path[0] == '/' ? "" : "/", req->path);
  struct curl_slist *hdrs = NULL, *hp = c->headers;
  for (; hp; hp = hp->next) hdrs = curl_slist_append(hdrs, hp->data);
  char ctype[256];
  if (req->content_type) {
    snprintf(ctype, sizeof ctype, "Content-Type: %s", req->content_type);
    hdrs = curl_slist_append(hdrs, ctype);
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
  if (c->unix_socket) curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->unix_socket);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  long to = req->timeout_ms > 0 ? req->timeout_ms : c->timeout_ms;
  if (to > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, to);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "zorch/1");
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
  if (c->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
  if (c->cert_file) curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
  if (c->key_file) curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
  struct curl_blob ca = {0}, cert = {0}, key = {0};
  if (c->ca_pem) {
    ca = (struct curl_blob){c->ca_pem, strlen(c->ca_pem), CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
  }
  if (c->cert_pem) {
    cert = (struct curl_blob){c->cert_pem, strlen(c->cert_pem), CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (c->key_pem) {
    key = (struct curl_blob){c->key_pem, strlen(c->key_pem), CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  }
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
  curl_easy_cleanup(h);
  curl_slist_free_all(hdrs);
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

int zh_do(zh_client *c, const zh_request *req, zh_response *resp, zh_error *err) {
  if (err) {
    free(err->body);
    memset(err, 0, sizeof *err);
  }
  if (resp) memset(resp, 0, sizeof *resp);
  bool retry_ok = retryable_method(req);
  long backoff = c->backoff_ms;
  for (int attempt = 1;; attempt++) {
    xfer x = {.req = req};
    int cc = 0;
    char cerr[CURL_ERROR_SIZE] = "";
    int rc = transfer(c, req, &x, &cc, cerr);
    if (rc == ZH_ENOMEM) {
      free(x.buf);
      seterr(err, "%s %s: out of memory", req->method, req->path);
      return ZH_ENOMEM;
    }
    if (rc == ZH_STOPPED) {
      free(x.buf);
      if (resp) resp->status = x.status;
      return ZH_STOPPED;
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
        free(x.buf);
        return ZH_ETRANSPORT;
      }
    } else if (x.status < 200 || x.status >= 300) {
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
        free(x.buf);
        return ZH_EHTTP;
      }
    } else {
      if (resp) {
        resp->status = x.status;
        resp->body = x.buf ? x.buf : strdup("");
        resp->len = x.len;
        if (!resp->body) return ZH_ENOMEM;
      } else {
        free(x.buf);
      }
      return ZH_OK;
    }
    free(x.buf);
    long wait = backoff;
    if (x.retry_after > 0) wait = x.retry_after * 1000 > 10000 ? 10000 : x.retry_after * 1000;
    sleep_ms(wait);
    backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
  }
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
