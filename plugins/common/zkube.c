/* zorch plugin kit — Kubernetes API client (see zkube.h). */
#include "zkube.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "zauth.h"

/* ---- the kubeconfig credentials as a token source ------------------------------------- */

typedef struct kube_creds {
  zk_config c;    /* a private copy: only fetch touches it, under the cache's lock */
  zh_client *tls; /* gets a client certificate an exec plugin hands out */
} kube_creds;

/* tokenFile: read again at least this often (service-account tokens rotate) */
#define TOKEN_FILE_TTL 60

static time_t expiry_of(const zk_config *c) {
  if (c->exec_argv) return c->exec_expiry;
  return c->token_file ? time(NULL) + TOKEN_FILE_TTL : 0;
}

static int kube_fetch(void *p, bool force, char **token, time_t *expires_at, zh_error *e) {
  (void)force; /* every fetch is a refresh: the cache asks when one is due */
  kube_creds *k = p;
  *token = NULL;
  *expires_at = 0;
  if (!k->c.exec_argv && !k->c.token_file) {
    *token = zkit_strdup(k->c.token); /* a fixed token: the same again */
    return k->c.token && !*token ? ZH_ENOMEM : ZH_OK;
  }
  char err[1024] = "";
  if (zk_config_refresh(&k->c, true, err, sizeof err) != 0) {
    snprintf(e->message, sizeof e->message, "%s", err);
    return ZH_EAUTH;
  }
  if (k->c.exec_argv && k->c.cert_pem && k->tls &&
      zh_client_set_identity(k->tls, k->c.cert_pem, k->c.key_pem) != ZH_OK)
    return ZH_ENOMEM;
  *token = zkit_strdup(k->c.token);
  *expires_at = expiry_of(&k->c);
  return k->c.token && !*token ? ZH_ENOMEM : ZH_OK;
}

static void kube_free(void *p) {
  kube_creds *k = p;
  zk_config_free(&k->c);
  free(k);
}

int zk_auth_new(zh_auth **out, const zorch_host *h, const zk_config *cfg) {
  *out = NULL;
  kube_creds *k = calloc(1, sizeof *k);
  if (!k || zk_config_copy(&k->c, cfg) != 0) {
    free(k);
    return zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
  }
  zauth_token_source src = {.fetch = kube_fetch, .free = kube_free, .src = k, .scheme = "Bearer",
                            .refresh_early_s = 10, .seeded = true, .initial_token = cfg->token,
                            .initial_expires_at = expiry_of(cfg)};
  int rc = zauth_token_new(out, h, &src);
  if (rc) kube_free(k);
  return rc;
}

/* Before the first request: the cache's lock orders it before every fetch. */
void zk_auth_bind_tls(zh_auth *auth, zh_client *tls) {
  ((kube_creds *)zauth_token_source_data(auth))->tls = tls;
}

/* ---- the client --------------------------------------------------------------------------- */

int zk_client_new(zk_client **out, const zorch_host *h, const zk_load_options *opts) {
  *out = NULL;
  zk_client *k = calloc(1, sizeof *k);
  if (!k) return zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
  k->host = h;
  char err[2048];
  if (zk_config_load(&k->cfg, opts, err, sizeof err) != 0) {
    free(k);
    return zkit_errorf(h, ZORCH_EINVALID, "%s", err);
  }
  int rc = zk_auth_new(&k->auth, h, &k->cfg);
  if (rc) {
    zk_client_free(k);
    return rc;
  }
  zh_options o = {.base_url = k->cfg.server, .ca_file = k->cfg.ca_file, .ca_pem = k->cfg.ca_pem,
                  .cert_file = k->cfg.cert_file, .cert_pem = k->cfg.cert_pem, .key_file = k->cfg.key_file,
                  .key_pem = k->cfg.key_pem, .insecure_skip_verify = k->cfg.insecure, .auth = k->auth,
                  .service_name = "the Kubernetes API server", .connect_timeout_ms = 10000};
  zh_error e = {0};
  k->http = zh_client_new(&o, &e);
  if (!k->http) {
    rc = zkit_errorf(h, ZORCH_EINVALID, "%s: %s", k->cfg.source, e.message);
    zh_error_clear(&e);
    zk_client_free(k);
    return rc;
  }
  zk_auth_bind_tls(k->auth, k->http);
  *out = k;
  return ZORCH_OK;
}

void zk_client_free(zk_client *k) {
  if (!k) return;
  zh_client_free(k->http);
  zh_auth_free(k->auth);
  zk_config_free(&k->cfg);
  free(k);
}

/* Report a failure with what it means for the user. */
static int fail(zk_client *k, int rc, zh_error *err) {
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
  int code = zkit_http_code(rc, err);
  zkit_errorf(k->host, code, "%s%s", err->message, hint);
  zh_error_clear(err);
  return code;
}

int zk_json(zk_client *k, const char *method, const char *path, json_t *body, json_t **out) {
  zh_error e = {0};
  int rc = zh_json(k->http, method, path, body, out, &e);
  return rc ? fail(k, rc, &e) : ZORCH_OK;
}

int zk_text(zk_client *k, const char *path, char **out, size_t *len) {
  zh_request rq = {.method = "GET", .path = path};
  zh_response resp;
  zh_error e = {0};
  *out = NULL;
  int rc = zh_do(k->http, &rq, &resp, &e);
  if (rc) return fail(k, rc, &e);
  *out = resp.body;
  resp.body = NULL;
  if (len) *len = resp.len;
  zh_response_free(&resp);
  return ZORCH_OK;
}

typedef struct watch_state {
  zk_event_cb cb;
  void *payload;
  char *buf;
  size_t len, cap;
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
    const char *type = zkit_jstr(ev, "type");
    json_t *obj = json_object_get(ev, "object");
    int r = type && obj ? w->cb(type, obj, w->payload) : 0;
    json_decref(ev);
    if (r) return 1;
  }
  size_t rest = w->len - (size_t)(start - w->buf);
  memmove(w->buf, start, rest);
  w->len = rest;
  return 0;
}

int zk_watch(zk_client *k, const char *path, zk_event_cb cb, void *payload, volatile int *abort_flag) {
  watch_state w = {.cb = cb, .payload = payload};
  zh_request rq = {.method = "GET", .path = path, .chunk_cb = on_chunk, .chunk_payload = &w,
                   .abort_flag = abort_flag, .flags = ZH_NO_RETRY};
  zh_error e = {0};
  int rc = zh_do(k->http, &rq, NULL, &e);
  free(w.buf);
  if (rc == ZH_STOPPED) rc = ZH_OK;
  return rc ? fail(k, rc, &e) : ZORCH_OK;
}

/* ---- the informer ------------------------------------------------------------------------- */

typedef struct round_state {
  zk_informer *inf;
  int stop;
} round_state;

static int informer_event(const char *type, json_t *obj, void *p) {
  round_state *s = p;
  zk_informer *inf = s->inf;
  if (!strcmp(type, "ERROR")) { /* 410 Gone and the like: list again */
    inf->rv[0] = '\0';
    return 1;
  }
  const char *rv = zkit_jstr(json_object_get(obj, "metadata"), "resourceVersion");
  if (rv) snprintf(inf->rv, sizeof inf->rv, "%s", rv);
  if (!strcmp(type, "BOOKMARK")) return 0;
  if (inf->cb(type, obj, inf->payload)) s->stop = 1;
  return s->stop;
}

int zk_informer_round(zk_informer *inf, volatile int *abort_flag) {
  round_state s = {.inf = inf};
  int rc;
  if (!inf->rv[0]) {
    json_t *list = NULL;
    rc = zk_json(inf->k, "GET", inf->path, NULL, &list);
    if (rc == ZORCH_OK) {
      const char *rv = zkit_jstr(json_object_get(list, "metadata"), "resourceVersion");
      snprintf(inf->rv, sizeof inf->rv, "%s", rv ? rv : "");
      size_t i;
      json_t *x;
      json_array_foreach(json_object_get(list, "items"), i, x) if (inf->cb("ADDED", x, inf->payload)) break;
    }
    json_decref(list);
    return rc;
  }
  char *path = zkit_asprintf("%s%swatch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%d",
                             inf->path, strchr(inf->path, '?') ? "&" : "?", inf->rv,
                             inf->watch_timeout_s > 0 ? inf->watch_timeout_s : 2);
  if (!path) return zkit_errorf(inf->k->host, ZORCH_ENOMEM, "out of memory");
  rc = zk_watch(inf->k, path, informer_event, &s, abort_flag);
  free(path);
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
