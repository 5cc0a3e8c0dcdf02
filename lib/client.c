/* zorch — the client handle: home directory, logging, plugin registry. */
#include "client_int.h"

#include <errno.h>
#include <unistd.h>

int zorch_client_options_init(zorch_client_options *opts, unsigned int version) {
  if (!opts) return zorch__error_set(ZORCH_EINVALID, "zorch_client_options_init: opts is NULL");
  if (version < 1 || version > ZORCH_CLIENT_OPTIONS_VERSION)
    return zorch__error_set(ZORCH_EVERSION,
                            "zorch_client_options version %u is not supported (1..%d)", version,
                            ZORCH_CLIENT_OPTIONS_VERSION);
  zorch_client_options d = ZORCH_CLIENT_OPTIONS_INIT;
  *opts = d;
  opts->version = version;
  return ZORCH_OK;
}

const char *zorch__getenv(const zorch_client *c, const char *name) {
  if (c && (c->flags & ZORCH_CLIENT_NO_ENV)) return NULL;
  return secure_getenv(name);
}

static char *default_home(const zorch_client *c) {
  const char *h = zorch__getenv(c, "ZORCH_HOME");
  if (h && *h) return zorch__strdup(h);
  const char *x = zorch__getenv(c, "XDG_DATA_HOME");
  if (x && *x == '/') return zorch__path_join(x, "zorch");
  const char *home = zorch__getenv(c, "HOME");
  if (!home || !*home) home = "/tmp";
  return zorch__asprintf("%s/.local/share/zorch", home);
}

static char *absolute(const char *p) {
  if (p[0] == '/') return zorch__strdup(p);
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) return zorch__strdup(p);
  return zorch__path_join(cwd, p);
}

static int client_open(zorch_client **out, const zorch_client_options *opts, bool make_home);

int zorch_client_new(zorch_client **out, const zorch_client_options *opts) {
  return client_open(out, opts, true);
}

int zorch__client_new_for_plugins(zorch_client **out) { return client_open(out, NULL, false); }

static int client_open(zorch_client **out, const zorch_client_options *opts, bool make_home) {
  if (!out) return zorch__error_set(ZORCH_EINVALID, "zorch_client_new: out is NULL");
  *out = NULL;
  zorch_client_options d = ZORCH_CLIENT_OPTIONS_INIT;
  if (!opts) opts = &d;
  if (opts->version < 1 || opts->version > ZORCH_CLIENT_OPTIONS_VERSION)
    return zorch__error_set(ZORCH_EVERSION,
                            "zorch_client_options version %u is not supported (1..%d)",
                            opts->version, ZORCH_CLIENT_OPTIONS_VERSION);
  zorch_client *c = calloc(1, sizeof *c);
  if (!c) return zorch__error_oom();
  c->flags = opts->flags;
  pthread_mutex_init(&c->log_lock, NULL);
  pthread_mutex_init(&c->config_lock, NULL);
  c->log_cb = opts->log_cb;
  c->log_payload = opts->log_payload;
  c->log_level = opts->log_level ? opts->log_level : ZORCH_LOG_WARNING;
  const char *lv = zorch__getenv(c, "ZORCH_LOG_LEVEL");
  if (lv && *lv) {
    if (!strcmp(lv, "error")) c->log_level = ZORCH_LOG_ERROR;
    else if (!strcmp(lv, "warning")) c->log_level = ZORCH_LOG_WARNING;
    else if (!strcmp(lv, "info")) c->log_level = ZORCH_LOG_INFO;
    else if (!strcmp(lv, "debug")) c->log_level = ZORCH_LOG_DEBUG;
    else if (lv[0] >= '1' && lv[0] <= '4' && !lv[1]) c->log_level = lv[0] - '0';
  }
  char *h = opts->home ? zorch__strdup(opts->home) : default_home(c);
  c->home = h ? absolute(h) : NULL;
  free(h);
  c->plugin_path = zorch__strdup(opts->plugin_path);
  if (!c->home || (opts->plugin_path && !c->plugin_path)) {
    zorch_client_free(c);
    return zorch__error_oom();
  }
  int rc = make_home ? zorch__mkdirs(c->home) : ZORCH_OK;
  if (rc) {
    zorch__error_prefix("zorch home");
    zorch_client_free(c);
    return rc;
  }
  rc = zorch__registry_new(&c->registry, c);
  if (rc) {
    zorch_client_free(c);
    return rc;
  }
  *out = c;
  return ZORCH_OK;
}

void zorch_client_free(zorch_client *c) {
  if (!c) return;
  zorch__registry_free(c->registry);
  free(c->home);
  free(c->plugin_path);
  pthread_mutex_destroy(&c->log_lock);
  pthread_mutex_destroy(&c->config_lock);
  free(c);
}

const char *zorch_client_home(const zorch_client *c) { return c ? c->home : NULL; }

int zorch_client_set_log(zorch_client *c, int min_level, zorch_log_cb cb, void *payload) {
  if (!c) return zorch__error_set(ZORCH_EINVALID, "zorch_client_set_log: client is NULL");
  pthread_mutex_lock(&c->log_lock);
  c->log_cb = cb;
  c->log_payload = payload;
  c->log_level = min_level > 0 ? min_level : ZORCH_LOG_WARNING;
  pthread_mutex_unlock(&c->log_lock);
  return ZORCH_OK;
}

void zorch__log(zorch_client *c, int level, const char *domain, const char *fmt, ...) {
  if (!c) return;
  pthread_mutex_lock(&c->log_lock);
  zorch_log_cb cb = c->log_cb;
  void *payload = c->log_payload;
  int min = c->log_level;
  pthread_mutex_unlock(&c->log_lock);
  if (!cb || level > min) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cb(level, domain ? domain : "zorch", msg, payload);
}
