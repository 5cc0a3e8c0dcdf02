/* zorch plugin kit — errors and small helpers (see zkit.h). */
#include "zkit.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_message[2048];

static int verrorf(const zorch_host *h, int code, const char *fmt, va_list ap) {
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  if (h) h->error_set(h, code, last_message);
  return code;
}

int zkit_errorf(const zorch_host *h, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verrorf(h, code, fmt, ap);
  va_end(ap);
  return code;
}

const char *zkit_error_message(void) { return last_message; }

int zkit_http_code(int zh_rc, const zh_error *e) {
  switch (zh_rc) {
  case ZH_OK: return ZORCH_OK;
  case ZH_ENOMEM: return ZORCH_ENOMEM;
  case ZH_STOPPED: return ZORCH_ECANCELLED;
  case ZH_EAUTH: return ZORCH_EINVALID;
  case ZH_EHTTP: {
    long st = e ? e->status : 0;
    if (st == 404) return ZORCH_ENOTFOUND;
    if (st == 409) return ZORCH_EEXISTS;
    if (st == 400 || st == 401 || st == 403 || st == 422) return ZORCH_EINVALID;
    return ZORCH_EIO;
  }
  default: return ZORCH_EIO;
  }
}

int zkit_http_fail(const zorch_host *h, int zh_rc, const zh_error *e, const char *fmt, ...) {
  char ctx[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  return zkit_errorf(h, zkit_http_code(zh_rc, e), "%s: %s", ctx,
                     e && e->message[0] ? e->message : "the request failed");
}

char *zkit_asprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  return s;
}

char *zkit_strdup(const char *s) { return s ? strdup(s) : NULL; }

double zkit_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void zkit_sleep(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

const char *zkit_jstr(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

json_t *zkit_env_object(const char *const *env) {
  json_t *o = json_object();
  for (size_t i = 0; o && env && env[i]; i++) {
    const char *eq = strchr(env[i], '=');
    if (!eq) continue;
    char *k = strndup(env[i], (size_t)(eq - env[i]));
    if (k) json_object_set_new(o, k, json_string(eq + 1));
    free(k);
  }
  return o;
}

static char plugin_dir[4096];
static pthread_once_t plugin_dir_once = PTHREAD_ONCE_INIT;

static void find_plugin_dir(void) {
  Dl_info info;
  if (dladdr((void *)find_plugin_dir, &info) && info.dli_fname) {
    snprintf(plugin_dir, sizeof plugin_dir, "%s", info.dli_fname);
    char *s = strrchr(plugin_dir, '/');
    if (s) *s = '\0';
    else plugin_dir[0] = '\0';
  }
}

const char *zkit_plugin_dir(void) {
  pthread_once(&plugin_dir_once, find_plugin_dir);
  return plugin_dir;
}
