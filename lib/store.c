/* zorch — the artifact store's front: zorch__store_* over a backend.
 *
 * A store is a backend (store_backend.h) plus a local store of files
 * (store_local.c).  For the local backend the two are one: artifacts are
 * published in place, a run's records go to its journal, and this file only
 * forwards.  For any other backend (an artifact-store plugin: an object
 * store) the local store is a staging cache under the client's home,
 * <home>/staging/<16 hex digits of the URI's SHA-256>:
 *   - an artifact is published in the staging store first (hashed on the
 *     way, as on a local store), then uploaded with
 *     ZORCH_STORE_PUT_IF_ABSENT: a file as one object; a directory as its
 *     files (each a file artifact) and then its manifest, at the
 *     directory's own key, last: a reader that finds the manifest finds
 *     every file it names.  So an artifact is in the store before the
 *     record that names it is written (records are written after the step
 *     published its outputs).
 *   - an artifact a step reads is downloaded into the staging store first,
 *     and accepted only if its content hashes to its name.
 *   - a run's step records are one object per step, written by a journal
 *     sink (the journal's group commit, but each batch becomes puts); a
 *     step's log is kept in the staging directory while the step runs and
 *     stored before the record that ends the step.
 * The staging store is only a cache: deleting it loses nothing.
 */
#include "client_int.h"
#include "store_int.h"
#include "store_layout.h"

#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

struct zorch__store {
  const zorch__store_backend *be;
  void *impl;          /* the backend's handle */
  zorch__local *local; /* files here: impl itself (local backend), or the staging store */
  char *uri;
  char *env_json;      /* step_env as JSON */
  char **env;          /* the same as "K=V", NULL-terminated */
};

/* The local backend: its objects are the local store's files. */
static bool files(const zorch__store *st) {
  return st->be && (st->be->flags & ZORCH__BACKEND_LOCAL_FILES);
}

/* ---- opening ----------------------------------------------------------------------- */

/* What every store has once its backend is open: URI and step environment. */
static int finish_open(zorch__store *st) {
  int rc = st->be->uri(st->impl, &st->uri);
  if (!rc) rc = st->be->step_env(st->impl, &st->env_json);
  if (rc) return rc;
  json_error_t err;
  json_t *o = json_loads(st->env_json, 0, &err);
  if (!json_is_object(o)) {
    json_decref(o);
    return zorch__error_set(ZORCH_EPLUGIN, "store %s: its step environment is not a JSON object: %.200s",
                            st->uri, st->env_json);
  }
  st->env = calloc(json_object_size(o) + 1, sizeof *st->env);
  size_t n = 0;
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    if (!st->env) break;
    char *text = json_is_string(v) ? zorch__strdup(json_string_value(v))
                                   : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    st->env[n] = text ? zorch__asprintf("%s=%s", k, text) : NULL;
    free(text);
    if (!st->env[n]) rc = zorch__error_oom();
    else n++;
  }
  json_decref(o);
  return st->env ? rc : zorch__error_oom();
}

static zorch__store *store_new(void) { return calloc(1, sizeof(zorch__store)); }

int zorch__store_open(zorch__store **out, const char *root) {
  if (!out || !root || !*root)
    return zorch__error_set(ZORCH_EINVALID, "zorch__store_open: out or root is missing");
  *out = NULL;
  zorch__store *st = store_new();
  if (!st) return zorch__error_oom();
  int rc = zorch__local_open(&st->local, root);
  if (!rc) {
    st->be = &zorch__local_backend;
    st->impl = st->local;
    rc = finish_open(st);
  }
  if (rc) {
    zorch__store_close(st);
    return rc;
  }
  *out = st;
  return ZORCH_OK;
}

/* A plugin store: its backend, then the staging store under the home. */
static int open_plugin(zorch__store **out, zorch_client *c, const zorch__flavor *f,
                       const char *config_json, const char *uri) {
  zorch__store *st = store_new();
  if (!st) return zorch__error_oom();
  int rc = zorch__plugin_store_open(&st->impl, f, config_json, uri);
  if (!rc) {
    st->be = &zorch__plugin_backend;
    rc = finish_open(st);
  }
  if (!rc) {
    char h[ZORCH__DIGEST_HEX];
    zorch__sha256_hex(st->uri, strlen(st->uri), h);
    char *dir = zorch__asprintf("%s/staging/%.16s", c->home, h);
    rc = dir ? zorch__local_open(&st->local, dir) : zorch__error_oom();
    if (rc) zorch__error_prefix("store %s: its staging directory", st->uri);
    free(dir);
  }
  if (rc) {
    zorch__store_close(st);
    return rc;
  }
  *out = st;
  return ZORCH_OK;
}

static const zorch__flavor *store_flavor(zorch_client *c, const char *flavor) {
  return c ? zorch__registry_find(c->registry, ZORCH_COMPONENT_ARTIFACT_STORE, flavor) : NULL;
}

/* %XX-decode a URI's path; NULL on OOM or a bad escape. */
static char *uri_path(const char *s) {
  char *out = malloc(strlen(s) + 1), *o = out;
  if (!out) return NULL;
  for (; *s; s++) {
    if (*s != '%') {
      *o++ = *s;
      continue;
    }
    unsigned v;
    if (!s[1] || !s[2] || sscanf(s + 1, "%2x", &v) != 1 || !v) {
      free(out);
      return NULL;
    }
    *o++ = (char)v;
    s += 2;
  }
  *o = '\0';
  return out;
}

int zorch__store_open_uri(zorch__store **out, zorch_client *c, const char *uri) {
  if (!out || !uri || !*uri) return zorch__error_set(ZORCH_EINVALID, "zorch__store_open_uri: no URI");
  *out = NULL;
  if (uri[0] == '/') return zorch__store_open(out, uri);
  size_t n = strspn(uri, "abcdefghijklmnopqrstuvwxyz0123456789+.-_");
  if (!n || strncmp(uri + n, "://", 3) != 0)
    return zorch__error_set(ZORCH_EINVALID,
                            "artifact store '%s': not a URI (\"file:///abs/dir\", "
                            "\"<flavor>://...\") nor an absolute path",
                            uri);
  if (n == 4 && !strncmp(uri, "file", 4)) {
    const char *p = uri + 7;
    if (!strncmp(p, "localhost/", 10)) p += 9;
    char *path = p[0] == '/' ? uri_path(p) : NULL;
    int rc = path ? zorch__store_open(out, path)
                  : zorch__error_set(ZORCH_EINVALID, "artifact store '%s': a file URI names an "
                                                     "absolute path (file:///dir)", uri);
    free(path);
    return rc;
  }
  char scheme[64];
  snprintf(scheme, sizeof scheme, "%.*s", (int)(n < 63 ? n : 63), uri);
  const zorch__flavor *f = store_flavor(c, scheme);
  if (!f)
    return zorch__error_set(ZORCH_ENOTFOUND,
                            "artifact store '%s': no artifact-store flavor '%s' is loaded (its "
                            "plugin must be on ZORCH_PLUGIN_PATH; see `zorch artifact-store "
                            "flavor list`)",
                            uri, scheme);
  int rc = open_plugin(out, c, f, NULL, uri);
  if (rc) zorch__error_prefix("artifact store '%s'", uri);
  return rc;
}

int zorch__store_open_component(zorch__store **out, zorch_client *c, const char *name,
                                const char *flavor, const char *config_json) {
  if (!out || !flavor) return zorch__error_set(ZORCH_EINVALID, "zorch__store_open_component: NULL argument");
  *out = NULL;
  int rc;
  if (!strcmp(flavor, "local")) {
    json_t *cfg = json_loads(config_json ? config_json : "{}", 0, NULL);
    const char *path = json_string_value(json_object_get(cfg, "path"));
    rc = path && path[0] == '/' ? zorch__store_open(out, path)
                                : zorch__error_set(ZORCH_EINVALID, "has no absolute \"path\"");
    json_decref(cfg);
  } else {
    const zorch__flavor *f = store_flavor(c, flavor);
    rc = f ? open_plugin(out, c, f, config_json, NULL)
           : zorch__error_set(ZORCH_ENOTFOUND,
                              "its flavor '%s' is not loaded (see `zorch artifact-store flavor list`)",
                              flavor);
  }
  if (rc) zorch__error_prefix("artifact store '%s'", name ? name : flavor);
  return rc;
}

void zorch__store_close(zorch__store *st) {
  if (!st) return;
  if (st->impl) st->be->close(st->impl);
  if (st->local && st->local != st->impl) zorch__local_close(st->local);
  free(st->uri);
  free(st->env_json);
  if (st->env)
    for (char **e = st->env; *e; e++) free(*e);
  free(st->env);
  free(st);
}

const char *zorch__store_root(const zorch__store *st) {
  return st && files(st) ? zorch__local_root(st->local) : NULL;
}
const char *zorch__store_local_root(const zorch__store *st) {
  return st ? zorch__local_root(st->local) : NULL;
}
bool zorch__store_is_local(const zorch__store *st) { return st && files(st); }
const char *zorch__store_uri(const zorch__store *st) { return st ? st->uri : NULL; }
const char *const *zorch__store_step_env(const zorch__store *st) {
  return st ? (const char *const *)st->env : NULL;
}
const char *zorch__store_step_env_json(const zorch__store *st) { return st ? st->env_json : NULL; }

/* ---- artifacts ------------------------------------------------------------------------ */

typedef struct {
  zorch__store *st;
  const char *dir; /* the staged tree */
} upload_ctx;

static int upload_entry(void *payload, char kind, bool exec, const char *digest, const char *path,
                        const char *target) {
  (void)exec;
  (void)target;
  if (kind != 'f') return ZORCH_OK;
  upload_ctx *u = payload;
  char key[ZORCH__LAYOUT_ARTIFACT_MAX];
  zorch__layout_artifact(key, digest);
  char *p = zorch__path_join(u->dir, path);
  int rc = p ? u->st->be->put_file(u->st->impl, key, p, ZORCH_STORE_PUT_IF_ABSENT) : zorch__error_oom();
  free(p);
  return rc;
}

/* Upload an artifact just published in the staging store: a file, or a
 * tree's files and then its manifest. */
static int upload(zorch__store *st, const char *digest, bool is_dir, const zorch__buf *manifest) {
  char key[ZORCH__LAYOUT_ARTIFACT_MAX];
  zorch__layout_artifact(key, digest);
  char *path = zorch__local_artifact_path(st->local, digest);
  if (!path) return zorch__error_oom();
  int rc;
  if (!is_dir) {
    rc = st->be->put_file(st->impl, key, path, ZORCH_STORE_PUT_IF_ABSENT);
  } else {
    upload_ctx u = {st, path};
    rc = zorch__manifest_each(manifest->data, manifest->len, upload_entry, &u);
    if (!rc) rc = st->be->put_bytes(st->impl, key, manifest->data, manifest->len, ZORCH_STORE_PUT_IF_ABSENT);
  }
  free(path);
  if (rc) zorch__error_prefix("cannot upload artifact %s to %s", digest, st->uri);
  return rc;
}

int zorch__store_put_bytes(zorch__store *st, const void *data, size_t len,
                           char digest[ZORCH__DIGEST_HEX]) {
  if (!st) return zorch__error_set(ZORCH_EINVALID, "zorch__store_put_bytes: invalid argument");
  int rc = zorch__local_put_bytes(st->local, data, len, digest);
  if (rc || files(st)) return rc;
  return upload(st, digest, false, NULL);
}

int zorch__store_put_path(zorch__store *st, const char *path, bool take,
                          char digest[ZORCH__DIGEST_HEX], uint64_t *size, bool *is_dir) {
  if (!st) return zorch__error_set(ZORCH_EINVALID, "zorch__store_put_path: invalid argument");
  if (files(st)) return zorch__local_put_path(st->local, path, take, digest, size, is_dir, NULL);
  zorch__buf manifest = ZORCH__BUF_INIT;
  bool dir = false;
  int rc = zorch__local_put_path(st->local, path, take, digest, size, &dir, &manifest);
  if (!rc) rc = upload(st, digest, dir, &manifest);
  zorch__buf_free(&manifest);
  if (!rc && is_dir) *is_dir = dir;
  return rc;
}

int zorch__store_scratch(zorch__store *st, const char *hint, char **path_out) {
  if (!st) return zorch__error_set(ZORCH_EINVALID, "zorch__store_scratch: invalid argument");
  return zorch__local_scratch(st->local, hint, path_out);
}

char *zorch__store_artifact_path(const zorch__store *st, const char *digest) {
  return zorch__local_artifact_path(st->local, digest);
}

bool zorch__store_has(const zorch__store *st, const char *digest) {
  if (!st || !zorch__is_digest(digest)) return false;
  if (files(st)) return zorch__local_has(st->local, digest);
  char key[ZORCH__LAYOUT_ARTIFACT_MAX];
  zorch__layout_artifact(key, digest);
  return st->be->exists(st->impl, key) == 1;
}

/* Check that what was staged from the store is what its name says. */
static int staged_as(const zorch__store *st, const char *want, const char *got) {
  if (!strcmp(want, got)) return ZORCH_OK;
  return zorch__error_set(ZORCH_EIO, "artifact %s in store %s is corrupt: its content hashes to %s",
                          want, st->uri, got);
}

typedef struct {
  zorch__store *st;
  const char *dir;
} fetch_ctx;

static int fetch_entry(void *payload, char kind, bool exec, const char *digest, const char *path,
                       const char *target) {
  fetch_ctx *fc = payload;
  char *p = zorch__path_join(fc->dir, path);
  if (!p) return zorch__error_oom();
  int rc = ZORCH_OK;
  if (kind == 'd') {
    if (mkdir(p, 0755) != 0) rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create directory '%s'", p);
  } else if (kind == 'l') {
    if (symlink(target, p) != 0) rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create link '%s'", p);
  } else {
    char key[ZORCH__LAYOUT_ARTIFACT_MAX];
    zorch__layout_artifact(key, digest);
    rc = fc->st->be->get_to_path(fc->st->impl, key, p);
    if (!rc && chmod(p, exec ? 0755 : 0644) != 0)
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot chmod '%s'", p);
  }
  free(p);
  return rc;
}

/* Download an artifact into the staging store (a new file or tree under
 * scratch, published there like an output, with its digest checked). */
static int download(zorch__store *st, const char *digest, bool is_dir) {
  char key[ZORCH__LAYOUT_ARTIFACT_MAX];
  zorch__layout_artifact(key, digest);
  char *tmp = NULL;
  int rc = zorch__local_scratch(st->local, "get", &tmp);
  if (rc) return rc;
  char *manifest = NULL;
  size_t mlen = 0;
  if (!is_dir) {
    rc = st->be->get_to_path(st->impl, key, tmp);
  } else if (!(rc = st->be->read_doc(st->impl, key, &manifest, &mlen))) {
    char got[ZORCH__DIGEST_HEX];
    zorch__sha256_hex(manifest, mlen, got);
    rc = staged_as(st, digest, got);
    if (!rc && mkdir(tmp, 0755) != 0)
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create directory '%s'", tmp);
    fetch_ctx fc = {st, tmp};
    if (!rc) rc = zorch__manifest_each(manifest, mlen, fetch_entry, &fc);
  }
  free(manifest);
  char got[ZORCH__DIGEST_HEX];
  bool dir = false;
  if (!rc) rc = zorch__local_put_path(st->local, tmp, true, got, NULL, &dir, NULL);
  if (!rc && dir != is_dir)
    rc = zorch__error_set(ZORCH_EIO, "artifact %s in store %s is not a %s", digest, st->uri,
                          is_dir ? "directory" : "file");
  if (!rc) rc = staged_as(st, digest, got);
  if (rc) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", zorch_error_last()->message);
    (void)zorch__rm_rf(tmp);
    zorch__error_set(rc, "cannot fetch artifact %s: %s", digest, msg);
  }
  free(tmp);
  return rc;
}

int zorch__store_fetch(zorch__store *st, const char *digest, bool is_dir, char **path_out) {
  *path_out = NULL;
  if (!st || !zorch__is_digest(digest))
    return zorch__error_set(ZORCH_EINVALID, "zorch__store_fetch: invalid argument");
  if (!files(st) && !zorch__local_has(st->local, digest)) {
    int rc = download(st, digest, is_dir);
    if (rc) return rc;
  }
  *path_out = zorch__local_artifact_path(st->local, digest);
  return *path_out ? ZORCH_OK : zorch__error_oom();
}

/* ---- documents and keys -------------------------------------------------------------- */

int zorch__store_write_doc(zorch__store *st, const char *key, const void *data, size_t len,
                           bool durable) {
  if (!st || (!data && len)) return zorch__error_set(ZORCH_EINVALID, "zorch__store_write_doc: invalid argument");
  return st->be->write_doc(st->impl, key, data, len, durable);
}

int zorch__store_read_doc(const zorch__store *st, const char *key, char **data, size_t *len) {
  if (!st || !data) return zorch__error_set(ZORCH_EINVALID, "zorch__store_read_doc: invalid argument");
  *data = NULL;
  return st->be->read_doc(st->impl, key, data, len);
}

int zorch__store_put_file(zorch__store *st, const char *key, const char *path) {
  return st->be->put_file(st->impl, key, path, 0);
}

int zorch__store_exists(const zorch__store *st, const char *key) {
  return st->be->exists(st->impl, key);
}

int zorch__store_remove(zorch__store *st, const char *key) { return st->be->remove(st->impl, key); }

int zorch__store_list(const zorch__store *st, const char *prefix, const char *delimiter,
                      int (*each)(void *payload, const char *key, uint64_t size), void *payload) {
  return st->be->list(st->impl, prefix, delimiter, each, payload);
}

/* ---- run records ------------------------------------------------------------------------ */

typedef struct {
  zorch__store *st;
  char *run_id;
} records_sink;

static void records_sink_free(void *data) {
  records_sink *rs = data;
  free(rs->run_id);
  free(rs);
}

/* One step record line: its step's log (when this host has one and the
 * record ends an attempt), then the record object. */
static int record_put(void *data, const char *line, size_t len) {
  records_sink *rs = data;
  static const char head[] = "{\"step\":\"";
  if (len < sizeof head || memcmp(line, head, sizeof head - 1) != 0) return ZORCH_OK; /* not ours */
  const char *name = line + sizeof head - 1;
  size_t nl = 0;
  while (nl < 256 && name + nl < line + len && name[nl] != '"' && name[nl] != '\\') nl++;
  if (name + nl >= line + len || name[nl] != '"' || nl == 0 || nl > 255) return ZORCH_OK;
  char step[256];
  memcpy(step, name, nl);
  step[nl] = '\0';
  zorch__store *st = rs->st;
  int rc = ZORCH_OK;
  bool ends = !memmem(line, len, "\"status\":\"running\"", 18) &&
              !memmem(line, len, "\"status\":\"retrying\"", 19) &&
              !memmem(line, len, "\"status\":\"pending\"", 18);
  if (ends) {
    char *key = zorch__layout_step_log(rs->run_id, step);
    char *path = key ? zorch__path_join(zorch__local_root(st->local), key) : NULL;
    struct stat sb;
    if (!key || !path) rc = zorch__error_oom();
    else if (stat(path, &sb) == 0) rc = st->be->put_file(st->impl, key, path, 0);
    free(key);
    free(path);
  }
  char *key = rc ? NULL : zorch__layout_step_record(rs->run_id, step);
  if (!rc) rc = key ? st->be->put_bytes(st->impl, key, line, len, 0) : zorch__error_oom();
  free(key);
  return rc;
}

int zorch__store_records_open(zorch__journal **out, zorch__store *st, const char *run_id,
                              bool durable) {
  *out = NULL;
  if (files(st)) {
    char *key = zorch__layout_journal(run_id);
    char *path = key ? zorch__path_join(zorch__local_root(st->local), key) : NULL;
    int rc = path ? zorch__journal_open(out, path, durable) : zorch__error_oom();
    free(key);
    free(path);
    return rc;
  }
  /* the logs of steps that run here, until they are stored */
  char *logs = zorch__layout_logs(run_id);
  char *dir = logs ? zorch__path_join(zorch__local_root(st->local), logs) : NULL;
  records_sink *rs = calloc(1, sizeof *rs);
  char *name = zorch__asprintf("step records of run %s in %s", run_id, st->uri);
  int rc = !dir || !rs || !name ? zorch__error_oom() : zorch__mkdirs(dir);
  if (!rc) {
    rs->st = st;
    rs->run_id = zorch__strdup(run_id);
    if (rs->run_id) /* the journal owns rs from here, or frees it */
      rc = zorch__journal_open_sink(out, name, record_put, rs, records_sink_free);
    else
      rc = zorch__error_oom(), free(rs);
    rs = NULL;
  }
  free(rs);
  free(logs);
  free(dir);
  free(name);
  return rc;
}

typedef struct {
  const zorch__store *st;
  int (*cb)(const char *line, size_t len, void *payload);
  void *payload;
} recs_walk;

static int each_record(void *payload, const char *key, uint64_t size) {
  (void)size;
  recs_walk *w = payload;
  if (!zorch__layout_is_step_record(key)) return ZORCH_OK;
  char *text = NULL;
  size_t len = 0;
  int rc = zorch__store_read_doc(w->st, key, &text, &len);
  if (rc == ZORCH_ENOTFOUND) rc = ZORCH_OK; /* removed meanwhile (a retry starting) */
  else if (!rc) rc = w->cb(text, len, w->payload);
  free(text);
  return rc;
}

int zorch__store_step_records(const zorch__store *st, const char *run_id,
                              int (*cb)(const char *line, size_t len, void *payload), void *payload) {
  int rc = ZORCH_OK;
  if (files(st)) {
    char *key = zorch__layout_journal(run_id);
    char *path = key ? zorch__path_join(zorch__local_root(st->local), key) : NULL;
    rc = path ? zorch__journal_replay(path, cb, payload) : zorch__error_oom();
    free(key);
    free(path);
    if (rc == ZORCH_ENOTFOUND) {
      zorch_error_clear();
      rc = ZORCH_OK;
    }
    if (rc) return rc;
  }
  char *prefix = zorch__layout_step_records(run_id);
  recs_walk w = {st, cb, payload};
  rc = prefix ? zorch__store_list(st, prefix, "/", each_record, &w) : zorch__error_oom();
  free(prefix);
  return rc;
}
