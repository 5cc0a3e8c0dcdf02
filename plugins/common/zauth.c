/* zorch plugin kit — credential providers (see zauth.h). */
#include "zauth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *zauth_base64(const void *data, size_t len) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *p = data;
  char *out = malloc((len + 2) / 3 * 4 + 1);
  if (!out) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < len ? p[i + 2] : 0);
    out[o++] = a[v >> 18 & 63];
    out[o++] = a[v >> 12 & 63];
    out[o++] = i + 1 < len ? a[v >> 6 & 63] : '=';
    out[o++] = i + 2 < len ? a[v & 63] : '=';
  }
  out[o] = '\0';
  return out;
}

/* ---- a fixed header: bearer and basic ---------------------------------------------- */

typedef struct fixed_auth {
  zh_auth base;
  char *value; /* the Authorization header's value; never changes */
} fixed_auth;

static int fixed_apply(zh_auth *a, const zh_auth_request *rq, zh_add_header_fn add, void *ctx, uint64_t *gen,
                       zh_error *e) {
  (void)rq, (void)e;
  *gen = 0;
  return add(ctx, "Authorization", ((fixed_auth *)a)->value) ? ZH_ENOMEM : ZH_OK;
}

static bool fixed_unauthorized(zh_auth *a, uint64_t gen) {
  (void)a, (void)gen;
  return false; /* nothing to refresh */
}

static void fixed_free(zh_auth *a) {
  free(((fixed_auth *)a)->value);
  free(a);
}

static const zh_auth_ops fixed_ops = {ZH_AUTH_OPS_VERSION, fixed_apply, fixed_unauthorized, fixed_free};

static int fixed_new(zh_auth **out, const zorch_host *h, char *value) {
  *out = NULL;
  fixed_auth *f = value ? calloc(1, sizeof *f) : NULL;
  if (!f) {
    free(value);
    return zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
  }
  f->base.ops = &fixed_ops;
  f->value = value;
  *out = &f->base;
  return ZORCH_OK;
}

int zauth_bearer_new(zh_auth **out, const zorch_host *h, const char *token) {
  return fixed_new(out, h, zkit_asprintf("Bearer %s", token ? token : ""));
}

int zauth_basic_new(zh_auth **out, const zorch_host *h, const char *user, const char *password) {
  char *pair = zkit_asprintf("%s:%s", user ? user : "", password ? password : "");
  char *b64 = pair ? zauth_base64(pair, strlen(pair)) : NULL;
  if (pair) {
    memset(pair, 0, strlen(pair));
    free(pair);
  }
  char *value = b64 ? zkit_asprintf("Basic %s", b64) : NULL;
  free(b64);
  return fixed_new(out, h, value);
}

/* ---- the token cache ---------------------------------------------------------------- */

typedef struct token_auth {
  zh_auth base;
  zauth_token_source src;
  char *scheme;
  pthread_mutex_t lock;
  char *token;        /* (lock) the current token, NULL when none */
  time_t expires_at;  /* (lock) 0: not known */
  bool have;          /* (lock) fetched (or seeded) at least once */
  uint64_t gen;       /* (lock) bumped each time the token changes */
} token_auth;

/* Fetch a token into the cache.  Lock held. */
static int refresh_locked(token_auth *t, bool force, zh_error *e) {
  char *tok = NULL;
  time_t exp = 0;
  int rc = t->src.fetch(t->src.src, force, &tok, &exp, e);
  if (rc != ZH_OK) return rc;
  bool changed = !t->have || !tok != !t->token || (tok && strcmp(tok, t->token));
  if (t->token) memset(t->token, 0, strlen(t->token));
  free(t->token);
  t->token = tok;
  t->expires_at = exp;
  t->have = true;
  if (changed) t->gen++;
  return ZH_OK;
}

static int token_apply(zh_auth *a, const zh_auth_request *rq, zh_add_header_fn add, void *ctx, uint64_t *gen,
                       zh_error *e) {
  (void)rq;
  token_auth *t = (token_auth *)a;
  int early = t->src.refresh_early_s > 0 ? t->src.refresh_early_s : 10;
  pthread_mutex_lock(&t->lock);
  time_t now = time(NULL);
  if (!t->have || (t->expires_at && now + early >= t->expires_at)) {
    zh_error fe = {0};
    int rc = refresh_locked(t, false, &fe);
    /* a refresh that fails while the old token is still valid keeps it */
    if (rc != ZH_OK && !(t->have && (!t->expires_at || now < t->expires_at))) {
      pthread_mutex_unlock(&t->lock);
      snprintf(e->message, sizeof e->message, "%s", fe.message);
      zh_error_clear(&fe);
      return rc;
    }
    zh_error_clear(&fe);
  }
  char *value = t->token ? zkit_asprintf("%s %s", t->scheme, t->token) : NULL;
  bool oom = t->token && !value;
  *gen = t->gen;
  pthread_mutex_unlock(&t->lock);
  int rc = oom ? ZH_ENOMEM : ZH_OK;
  if (value) {
    if (add(ctx, "Authorization", value)) rc = ZH_ENOMEM;
    memset(value, 0, strlen(value));
    free(value);
  }
  return rc;
}

static bool token_unauthorized(zh_auth *a, uint64_t gen) {
  token_auth *t = (token_auth *)a;
  pthread_mutex_lock(&t->lock);
  bool retry;
  if (t->gen != gen) {
    retry = true; /* another request refreshed it already */
  } else {
    zh_error e = {0};
    retry = refresh_locked(t, true, &e) == ZH_OK && t->gen != gen;
    zh_error_clear(&e);
  }
  pthread_mutex_unlock(&t->lock);
  return retry;
}

static void token_free(zh_auth *a) {
  token_auth *t = (token_auth *)a;
  if (t->src.free) t->src.free(t->src.src);
  if (t->token) memset(t->token, 0, strlen(t->token));
  free(t->token);
  free(t->scheme);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

void *zauth_token_source_data(zh_auth *a) { return ((token_auth *)a)->src.src; }

static const zh_auth_ops token_ops = {ZH_AUTH_OPS_VERSION, token_apply, token_unauthorized, token_free};

int zauth_token_new(zh_auth **out, const zorch_host *h, const zauth_token_source *src) {
  *out = NULL;
  if (!src || !src->fetch) return zkit_errorf(h, ZORCH_EINVALID, "a token cache needs a fetch function");
  token_auth *t = calloc(1, sizeof *t);
  if (!t) return zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
  t->base.ops = &token_ops;
  t->src = *src;
  t->scheme = strdup(src->scheme ? src->scheme : "Bearer");
  if (src->seeded) {
    t->token = src->initial_token ? strdup(src->initial_token) : NULL;
    t->expires_at = src->initial_expires_at;
    t->have = true;
  }
  t->src.initial_token = NULL;
  if (!t->scheme || (src->initial_token && !t->token)) {
    free(t->scheme);
    free(t->token);
    free(t);
    return zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&t->lock, NULL);
  *out = &t->base;
  return ZORCH_OK;
}
