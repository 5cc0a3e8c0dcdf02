/* zorch — an artifact-store plugin as a store backend: adapts the plugin's
 * zorch_artifact_store_ops (include/zorch/plugin.h) to the internal
 * interface (store_backend.h).
 *
 * The plugin's store handle is used from any thread (the ops say every
 * operation may be).  Strings the plugin returns are host->alloc'd, so they
 * are freed with host->free (the plugin may not share our allocator).  An
 * error the plugin reports with host->error_set already names the plugin;
 * a failure without a message gets one that names the flavor and the key.
 */
#include "client_int.h"
#include "store_int.h"

#include <jansson.h>

typedef struct plugin_store {
  const zorch_artifact_store_ops *ops;
  const zorch_host *host;
  const char *flavor; /* borrowed from the descriptor */
  void *store;        /* the plugin's handle */
} plugin_store;

/* A plugin's return code as ours, with a message when it set none. */
static int fail(const plugin_store *ps, int rc, const char *what, const char *key) {
  if (rc > 0) rc = ZORCH_EPLUGIN;
  if (zorch_error_last()->code == ZORCH_OK)
    zorch__error_set(rc, "artifact store flavor %s: %s '%s' failed (%s)", ps->flavor, what,
                     key ? key : "", zorch_strerror(rc));
  return rc;
}

#define CALL(ps, what, key, call)                       \
  do {                                                  \
    zorch_error_clear();                                \
    int rc_ = (call);                                   \
    return rc_ == ZORCH_OK ? ZORCH_OK : fail(ps, rc_, what, key); \
  } while (0)

static int ps_put_file(void *impl, const char *key, const char *path, uint32_t flags) {
  plugin_store *ps = impl;
  CALL(ps, "put", key, ps->ops->put_file(ps->store, key, path, flags));
}

static int ps_put_bytes(void *impl, const char *key, const void *data, size_t len, uint32_t flags) {
  plugin_store *ps = impl;
  CALL(ps, "put", key, ps->ops->put_bytes(ps->store, key, data ? data : "", len, flags));
}

static int ps_get_to_path(void *impl, const char *key, const char *path) {
  plugin_store *ps = impl;
  CALL(ps, "get", key, ps->ops->get_to_path(ps->store, key, path));
}

static int ps_get_stream(void *impl, const char *key, zorch_store_sink sink, void *sink_data) {
  plugin_store *ps = impl;
  CALL(ps, "get", key, ps->ops->get_stream(ps->store, key, sink, sink_data));
}

static int ps_exists(void *impl, const char *key) {
  plugin_store *ps = impl;
  zorch_error_clear();
  int rc = ps->ops->exists(ps->store, key);
  return rc >= 0 ? (rc > 0) : fail(ps, rc, "exists", key);
}

static int to_buf(void *data, const void *chunk, size_t len) {
  return zorch__buf_put(data, chunk, len);
}

static int ps_read_doc(void *impl, const char *key, char **data, size_t *len) {
  plugin_store *ps = impl;
  zorch__buf b = ZORCH__BUF_INIT;
  zorch_error_clear();
  int rc = ps->ops->get_stream(ps->store, key, to_buf, &b);
  if (!rc && !b.data) rc = zorch__buf_puts(&b, "");
  if (rc) {
    zorch__buf_free(&b);
    return fail(ps, rc, "get", key);
  }
  if (len) *len = b.len;
  *data = zorch__buf_detach(&b);
  return ZORCH_OK;
}

/* One PUT: atomic, and as durable as the store makes anything. */
static int ps_write_doc(void *impl, const char *key, const void *data, size_t len, bool durable) {
  (void)durable;
  return ps_put_bytes(impl, key, data, len, 0);
}

static int ps_list(void *impl, const char *prefix, const char *delimiter, zorch_store_each each,
                   void *each_data) {
  plugin_store *ps = impl;
  CALL(ps, "list", prefix, ps->ops->list(ps->store, prefix, delimiter, each, each_data));
}

static int ps_remove(void *impl, const char *key) {
  plugin_store *ps = impl;
  CALL(ps, "remove", key, ps->ops->remove(ps->store, key));
}

/* A host->alloc'd string of the plugin as a malloc'd one. */
static int take_string(const plugin_store *ps, int rc, char *s, char **out, const char *what) {
  if (rc) {
    if (s) ps->host->free(s);
    return fail(ps, rc, what, "");
  }
  *out = zorch__strdup(s ? s : "");
  if (s) ps->host->free(s);
  return *out ? ZORCH_OK : zorch__error_oom();
}

static int ps_uri(void *impl, char **out) {
  plugin_store *ps = impl;
  char *s = NULL;
  zorch_error_clear();
  int rc = ps->ops->uri(&s, ps->store);
  return take_string(ps, rc, s, out, "uri");
}

/* An optional op that gives a JSON object: "{}" when the plugin has none. */
static int json_op(const plugin_store *ps, int (*op)(char **out_json, void *store),
                   char **out_json, const char *what) {
  if (!op) return (*out_json = zorch__strdup("{}")) ? ZORCH_OK : zorch__error_oom();
  char *s = NULL;
  zorch_error_clear();
  int rc = op(&s, ps->store);
  return take_string(ps, rc, s, out_json, what);
}

static int ps_step_env(void *impl, char **out_json) {
  plugin_store *ps = impl;
  return json_op(ps, ps->ops->step_env, out_json, "step_env");
}

static int ps_describe(void *impl, char **out_json) {
  plugin_store *ps = impl;
  return json_op(ps, ps->ops->describe, out_json, "describe");
}

static void ps_close(void *impl) {
  plugin_store *ps = impl;
  if (!ps) return;
  if (ps->store && ps->ops->close) ps->ops->close(ps->store);
  free(ps);
}

const zorch__store_backend zorch__plugin_backend = {
    .name = "plugin",
    .flags = 0,
    .put_file = ps_put_file,
    .put_bytes = ps_put_bytes,
    .get_to_path = ps_get_to_path,
    .get_stream = ps_get_stream,
    .exists = ps_exists,
    .read_doc = ps_read_doc,
    .write_doc = ps_write_doc,
    .list = ps_list,
    .remove = ps_remove,
    .uri = ps_uri,
    .step_env = ps_step_env,
    .describe = ps_describe,
    .close = ps_close,
};

int zorch__plugin_store_open(void **out, const zorch__flavor *f, const char *config_json,
                             const char *uri) {
  *out = NULL;
  const zorch_artifact_store_ops *ops = f->desc->ops;
  plugin_store *ps = calloc(1, sizeof *ps);
  if (!ps) return zorch__error_oom();
  ps->ops = ops;
  ps->host = f->host;
  ps->flavor = f->desc->name;
  zorch_error_clear();
  int rc = uri ? ops->open_uri(&ps->store, f->payload, uri)
               : ops->open(&ps->store, f->payload, config_json ? config_json : "{}");
  if (rc == ZORCH_OK && !ps->store)
    rc = zorch__error_set(ZORCH_EPLUGIN, "artifact store flavor %s: open gave no store", ps->flavor);
  if (rc) {
    rc = fail(ps, rc, "open", uri ? uri : config_json);
    free(ps);
    return rc;
  }
  *out = ps;
  return ZORCH_OK;
}
