/* zorch plugin kit — Kubernetes API client (see zkube.h). */
#include "zkube.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static zh_client *make_http(zk_config *c, zh_error *err) {
  zh_options o;
  memset(&o, 0, sizeof o);
  o.base_url = c->server;
  o.ca_file = c->ca_file;
  o.ca_pem = c->ca_pem;
  o.cert_file = c->cert_file;
  o.cert_pem = c->cert_pem;
  o.key_file = c->key_file;
  o.key_pem = c->key_pem;
  o.insecure_skip_verify = c->insecure;
  o.bearer_token = c->token;
  o.service_name = "the Kubernetes API server";
  o.connect_timeout_ms = 10000;
  return zh_client_new(&o, err);
}

int zk_client_new(zk_client **out, const zk_load_options *opts, char *err, size_t errlen) {
  *out = NULL;
  zk_client *k = calloc(1, sizeof *k);
  if (!k) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if (zk_config_load(&k->cfg, opts, err, errlen) != 0) {
    free(k);
    return -1;
  }
  zh_error e;
  memset(&e, 0, sizeof e);
  k->http = make_http(&k->cfg, &e);
  if (!k->http) {
    snprintf(err, errlen, "%s: %s", k->cfg.source, e.message);
    zh_error_clear(&e);
    zk_config_free(&k->cfg);
    free(k);
    return -1;
  }
  pthread_mutex_init(&k->lock, NULL);
  *out = k;
  return 0;
}

void zk_client_free(zk_client *k) {
  if (!k) return;
  zh_client_free(k->http);
  zk_config_free(&k->cfg);
  pthread_mutex_destroy(&k->lock);
  free(k);
}

/* Say what a failure means for the user, in err->message. */
static void explain(zk_client *k, zh_error *err) {
  char hint[1200];
  hint[0] = '\0';
  if (err->status == 401) {
    snprintf(hint, sizeof hint,
             " -- the API server at %s rejected the credentials of %s (401 Unauthorized): the token or client "
             "certificate is wrong or expired; check the user in the kubeconfig (kubectl --kubeconfig ... "
             "auth whoami)",
             k->cfg.server, k->cfg.source);
  } else if (err->status == 403) {
    snprintf(hint, sizeof hint, " -- %s is not allowed to do this (403 Forbidden): grant its user or service "
             "account the role it needs in namespace %s", k->cfg.source, k->cfg.namespace_);
  } else if (err->status == 0 && err->curl_code) {
    const char *m = err->message;
    if (strstr(m, "certificate") || strstr(m, "SSL") || strstr(m, "TLS"))
      snprintf(hint, sizeof hint, " -- TLS verification of %s failed with the CA of %s: set the cluster's "
               "certificate-authority(-data) to the CA that signed the server's certificate",
               k->cfg.server, k->cfg.source);
    else
      snprintf(hint, sizeof hint, " -- cannot reach the API server %s named by %s", k->cfg.server,
               k->cfg.source);
  }
  size_t l = strlen(err->message);
  if (hint[0] && l + 1 < sizeof err->message)
    snprintf(err->message + l, sizeof err->message - l, "%s", hint);
}

static int refresh(zk_client *k) {
  if (!k->cfg.exec_argv && !k->cfg.token_file) return -1;
  char e[1024];
  if (zk_config_refresh(&k->cfg, true, e, sizeof e) != 0) return -1;
  zh_error ze;
  memset(&ze, 0, sizeof ze);
  zh_client *h = make_http(&k->cfg, &ze);
  zh_error_clear(&ze);
  if (!h) return -1;
  zh_client_free(k->http);
  k->http = h;
  return 0;
}

/* Expired exec credentials are refreshed before a request; a 401 refreshes once and retries. */
static zh_client *http_of(zk_client *k) {
  pthread_mutex_lock(&k->lock);
  if (k->cfg.exec_argv && k->cfg.exec_expiry && time(NULL) + 10 >= k->cfg.exec_expiry) refresh(k);
  zh_client *h = k->http;
  pthread_mutex_unlock(&k->lock);
  return h;
}

int zk_json(zk_client *k, const char *method, const char *path, json_t *body, json_t **out, zh_error *err) {
  for (int attempt = 0;; attempt++) {
    zh_error_clear(err);
    int rc = zh_json(http_of(k), method, path, body, out, err);
    if (rc == ZH_EHTTP && err->status == 401 && attempt == 0) {
      pthread_mutex_lock(&k->lock);
      int r = refresh(k);
      pthread_mutex_unlock(&k->lock);
      if (r == 0) continue;
    }
    if (rc) explain(k, err);
    return rc;
  }
}

int zk_text(zk_client *k, const char *path, char **out, size_t *len, zh_error *err) {
  zh_request rq;
  memset(&rq, 0, sizeof rq);
  rq.method = "GET";
  rq.path = path;
  zh_response resp;
  memset(&resp, 0, sizeof resp);
  zh_error_clear(err);
  int rc = zh_do(http_of(k), &rq, &resp, err);
  if (rc) {
    explain(k, err);
    zh_response_free(&resp);
    *out = NULL;
    return rc;
  }
  *out = resp.body;
  if (len) *len = resp.len;
  return 0;
}

typedef struct watch_state {
  zk_event_cb cb;
  void *payload;
  char *buf;
  size_t len, cap;
  int stop;
} watch_state;

static int on_chunk(const char *data, size_t n, void *p) {
  watch_state *w = p;
  if (w->len + n + 1 > w->cap) {
    size_t cap = w->cap ? w->cap : 65536;
    while (cap < w->len + n + 1) cap *= 2;
    char *nb = realloc(w->buf, cap);
    if (!nb) return 1;
    w->buf = nb;
    w->cap = cap;
  }
  memcpy(w->buf + w->len, data, n);
  w->len += n;
  w->buf[w->len] = '\0';
  char *start = w->buf, *nl;
  while ((nl = memchr(start, '\n', w->len - (size_t)(start - w->buf)))) {
    *nl = '\0';
    json_t *ev = json_loads(start, 0, NULL);
    start = nl + 1;
    if (!ev) continue;
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *obj = json_object_get(ev, "object");
    int r = type && obj ? w->cb(type, obj, w->payload) : 0;
    json_decref(ev);
    if (r) {
      w->stop = 1;
      return 1;
    }
  }
  size_t rest = w->len - (size_t)(start - w->buf);
  memmove(w->buf, start, rest);
  w->len = rest;
  return 0;
}

int zk_watch(zk_client *k, const char *path, zk_event_cb cb, void *payload, volatile int *abort_flag,
             zh_error *err) {
  watch_state w = {.cb = cb, .payload = payload};
  zh_request rq;
  memset(&rq, 0, sizeof rq);
  rq.method = "GET";
  rq.path = path;
  rq.chunk_cb = on_chunk;
  rq.chunk_payload = &w;
  rq.abort_flag = abort_flag;
  rq.flags = ZH_NO_RETRY;
  zh_error_clear(err);
  int rc = zh_do(http_of(k), &rq, NULL, err);
  free(w.buf);
  if (rc == ZH_STOPPED) return 0;
  if (rc == ZH_EHTTP && err->status == 401) {
    pthread_mutex_lock(&k->lock);
    refresh(k);
    pthread_mutex_unlock(&k->lock);
  }
  if (rc) explain(k, err);
  return rc;
}

void zk_sanitize_name(char *out, size_t max, const char *in) {
  size_t o = 0;
  for (const char *p = in; *p && o + 1 < max; p++) {
    char ch = (char)tolower((unsigned char)*p);
    if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
      out[o++] = ch;
    else if (o > 0 && out[o - 1] != '-')
      out[o++] = '-';
  }
  while (o > 0 && out[o - 1] == '-') o--;
  if (o == 0) out[o++] = 'x';
  out[o] = '\0';
}
