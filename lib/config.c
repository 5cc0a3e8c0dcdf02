/* zorch — stacks and components, kept in <home>/config.json.
 *
 *   {"version": 1, "active_stack": "default",
 *    "components": {"orchestrator":   {"<name>": {"flavor": "local", "config": {...}}},
 *                   "artifact_store": {"<name>": {"flavor": "local", "config": {"path": "/..."}}}},
 *    "stacks": {"<name>": {"orchestrator": "<name>", "artifact_store": "<name>"}}}
 *
 * The "default" stack, orchestrator and artifact store always exist: with no
 * file they are implicit, and a file that lacks them gets them on load.
 * Every change is a read-modify-write under client->config_lock (threads)
 * and an flock on <home>/.config.lock (processes), written crash-safely:
 * temporary file, fsync, rename, fsync of the directory.  Keys this version
 * does not know are kept as they are.
 */
#include "client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/file.h>
#include <unistd.h>

#define CONFIG_VERSION 1
#define CONFIG_FILE "config.json"
#define CONFIG_LOCK ".config.lock"
#define DEFAULT "default"
#define T_ORCH ZORCH_COMPONENT_ORCHESTRATOR
#define T_STORE ZORCH_COMPONENT_ARTIFACT_STORE

/* ---- the built-in "local" artifact store ------------------------------------------- */

static const char store_local_schema[] =
    "{\"type\":\"object\","
    "\"properties\":{\"path\":{\"type\":\"string\",\"pattern\":\"^/\","
    "\"description\":\"absolute path of the store's root directory\"}},"
    "\"required\":[\"path\"],\"additionalProperties\":false}";

/* Built in: no ops table, its backend is the local store (store_local.c),
 * reached through the same interface as the plugin stores. */
static const zorch_flavor_desc store_local = {
    .version = ZORCH_FLAVOR_DESC_VERSION,
    .type = T_STORE,
    .name = "local",
    .integration = "built-in",
    .description = "Keeps artifacts, logs and run records in a directory on this machine",
    .config_schema = store_local_schema,
    .ops = NULL,
};

const zorch_flavor_desc *const zorch__builtin_flavors[] = {&store_local, NULL};

/* The shape of config.json (checked on load, with the file's name in errors). */
static const char config_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"version\":{\"type\":\"integer\",\"minimum\":1},"
    "\"active_stack\":{\"type\":\"string\"},"
    "\"components\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"object\","
    "\"additionalProperties\":{\"type\":\"object\",\"required\":[\"flavor\"],\"properties\":{"
    "\"flavor\":{\"type\":\"string\"},\"config\":{\"type\":\"object\"}}}}},"
    "\"stacks\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"object\","
    "\"required\":[\"orchestrator\",\"artifact_store\"],\"properties\":{"
    "\"orchestrator\":{\"type\":\"string\"},\"artifact_store\":{\"type\":\"string\"}}}}}}";

/* ---- helpers ------------------------------------------------------------------------ */

static const char *type_label(const char *type) {
  return !strcmp(type, T_STORE) ? "artifact store" : type;
}

static int check_type(const char *type) {
  if (type && (!strcmp(type, T_ORCH) || !strcmp(type, T_STORE))) return ZORCH_OK;
  return zorch__error_set(ZORCH_EINVALID,
                          "unknown component type '%s' (expected orchestrator or artifact_store)",
                          type ? type : "(NULL)");
}

/* JSON text, malloc'd (so zorch_free() frees it whatever jansson's allocator). */
static char *dump(const json_t *j, size_t flags) {
  size_t n = json_dumpb(j, NULL, 0, flags | JSON_ENCODE_ANY);
  char *s = n ? malloc(n + 1) : NULL;
  if (!s) return NULL;
  json_dumpb(j, s, n, flags | JSON_ENCODE_ANY);
  s[n] = '\0';
  return s;
}

static int out_json(char **out, const json_t *j) {
  *out = j ? dump(j, JSON_COMPACT) : NULL;
  return *out ? ZORCH_OK : zorch__error_oom();
}

static json_t *obj_child(json_t *parent, const char *key) {
  json_t *c = json_object_get(parent, key);
  if (!json_is_object(c)) {
    c = json_object();
    if (!c || json_object_set_new(parent, key, c)) return NULL;
  }
  return c;
}

static json_t *section(json_t *doc, const char *type) {
  return obj_child(obj_child(doc, "components"), type);
}

static char *config_file(const zorch_client *c) { return zorch__path_join(c->home, CONFIG_FILE); }

/* Add what must exist and is missing.  NULL on OOM. */
static json_t *complete(json_t *doc, const zorch_client *c) {
  if (!json_object_get(doc, "version") &&
      json_object_set_new(doc, "version", json_integer(CONFIG_VERSION)))
    return NULL;
  if (!json_object_get(doc, "active_stack") &&
      json_object_set_new(doc, "active_stack", json_string(DEFAULT)))
    return NULL;
  json_t *orch = section(doc, T_ORCH), *store = section(doc, T_STORE);
  json_t *stacks = obj_child(doc, "stacks");
  if (!orch || !store || !stacks) return NULL;
  if (!json_object_get(orch, DEFAULT) &&
      json_object_set_new(orch, DEFAULT, json_pack("{s:s,s:{}}", "flavor", "local", "config")))
    return NULL;
  if (!json_object_get(store, DEFAULT)) {
    char *p = zorch__path_join(c->home, "store");
    json_t *d = p ? json_pack("{s:s,s:{s:s}}", "flavor", "local", "config", "path", p) : NULL;
    free(p);
    if (json_object_set_new(store, DEFAULT, d)) return NULL;
  }
  if (!json_object_get(stacks, DEFAULT) &&
      json_object_set_new(stacks, DEFAULT,
                          json_pack("{s:s,s:s}", "orchestrator", DEFAULT, "artifact_store", DEFAULT)))
    return NULL;
  return doc;
}

/* Read config.json, or the implicit default when there is none. */
static int config_load(json_t **out, zorch_client *c) {
  *out = NULL;
  char *path = config_file(c);
  if (!path) return zorch__error_oom();
  char *text = NULL;
  size_t len = 0;
  int rc = zorch__read_file(path, &text, &len);
  json_t *doc = NULL;
  if (rc == ZORCH_ENOTFOUND) {
    rc = ZORCH_OK;
    doc = json_object();
    if (!doc) rc = zorch__error_oom();
  } else if (rc == ZORCH_OK) {
    json_error_t err;
    doc = json_loadb(text, len, 0, &err);
    if (!doc) {
      rc = zorch__error_set(ZORCH_EINVALID, "config file %s: line %d, column %d: %s", path,
                            err.line, err.column, err.text);
    } else {
      json_t *v = json_object_get(doc, "version");
      if (json_is_integer(v) && json_integer_value(v) > CONFIG_VERSION)
        rc = zorch__error_set(ZORCH_EVERSION,
                              "config file %s: version %" JSON_INTEGER_FORMAT
                              " is newer than this zorch supports (%d); upgrade zorch",
                              path, json_integer_value(v), CONFIG_VERSION);
      if (!rc) {
        char *what = zorch__asprintf("config file %s", path);
        rc = what ? zorch__schema_validate(config_schema, text, what) : zorch__error_oom();
        free(what);
      }
    }
  }
  free(text);
  free(path);
  if (!rc && !complete(doc, c)) rc = zorch__error_oom();
  if (rc) {
    json_decref(doc);
    return rc;
  }
  *out = doc;
  return ZORCH_OK;
}

/* Write `doc` as config.json, crash-safely. */
static int config_save(zorch_client *c, const json_t *doc) {
  char *path = config_file(c);
  char *tmp = zorch__asprintf("%s/.%s.XXXXXX", c->home, CONFIG_FILE);
  char *text = dump(doc, JSON_INDENT(2));
  int rc = ZORCH_OK, fd = -1;
  if (!path || !tmp || !text) {
    rc = zorch__error_oom();
    goto out;
  }
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create a temporary file in %s", c->home);
    goto out;
  }
  size_t len = strlen(text);
  text[len++] = '\n'; /* dump() left room: the NUL becomes a newline */
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, text + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot write %s", tmp);
      goto out;
    }
    off += (size_t)w;
  }
  if (fsync(fd) != 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot write %s (fsync)", tmp);
    goto out;
  }
  if (close(fd) != 0) {
    fd = -1;
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot write %s (close)", tmp);
    goto out;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot replace %s", path);
    goto out;
  }
  free(tmp);
  tmp = NULL;
  int dfd = open(c->home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) { /* make the rename durable */
    fsync(dfd);
    close(dfd);
  }
out:
  if (fd >= 0) close(fd);
  if (tmp) unlink(tmp);
  free(tmp);
  free(text);
  free(path);
  return rc;
}

/* Read-modify-write: begin() locks and loads, end() saves if rc is OK, unlocks
 * and frees.  end() returns rc, or the save error. */
typedef struct {
  json_t *doc;
  int lock_fd;
} txn;

static int begin(txn *t, zorch_client *c) {
  t->doc = NULL;
  t->lock_fd = -1;
  pthread_mutex_lock(&c->config_lock);
  char *lp = zorch__path_join(c->home, CONFIG_LOCK);
  if (!lp) {
    pthread_mutex_unlock(&c->config_lock);
    return zorch__error_oom();
  }
  t->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  int rc = ZORCH_OK;
  if (t->lock_fd < 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot open %s", lp);
  } else {
    while (flock(t->lock_fd, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot lock %s", lp);
      break;
    }
  }
  free(lp);
  if (!rc) rc = config_load(&t->doc, c);
  if (rc) {
    if (t->lock_fd >= 0) close(t->lock_fd);
    pthread_mutex_unlock(&c->config_lock);
  }
  return rc;
}

static int end(txn *t, zorch_client *c, int rc) {
  if (!rc) rc = config_save(c, t->doc);
  json_decref(t->doc);
  close(t->lock_fd); /* releases the flock */
  pthread_mutex_unlock(&c->config_lock);
  return rc;
}

/* "a, b, c" of an object's keys (for messages); never NULL. */
static char *key_list(const json_t *obj) {
  zorch__buf b = ZORCH__BUF_INIT;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)obj, k, v) {
    if (b.len) zorch__buf_puts(&b, ", ");
    zorch__buf_puts(&b, k);
  }
  (void)v;
  return zorch__buf_detach(&b);
}

static bool str_is(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* A component entry's config: a new reference ({} when absent). */
static json_t *config_of(const json_t *entry) {
  json_t *cfg = json_object_get(entry, "config");
  return cfg ? json_incref(cfg) : json_object();
}

static int client_ok(const zorch_client *c, const char *fn) {
  return c ? ZORCH_OK : zorch__error_set(ZORCH_EINVALID, "%s: client is NULL", fn);
}

/* ---- components ------------------------------------------------------------------------ */

static int unknown_flavor(zorch_client *c, const char *type, const char *flavor) {
  zorch__buf b = ZORCH__BUF_INIT;
  for (size_t i = 0; i < zorch__registry_count(c->registry); i++) {
    const zorch__flavor *f = zorch__registry_at(c->registry, i);
    if (strcmp(f->desc->type, type)) continue;
    if (b.len) zorch__buf_puts(&b, ", ");
    zorch__buf_puts(&b, f->desc->name);
  }
  int rc;
  if (b.len)
    rc = zorch__error_set(ZORCH_ENOTFOUND, "unknown %s flavor '%s' (available: %s)",
                          type_label(type), flavor, b.data);
  else
    rc = zorch__error_set(ZORCH_ENOTFOUND,
                          "unknown %s flavor '%s' (no %s flavors are available; check "
                          "ZORCH_PLUGIN_PATH and zorch_flavor_problems())",
                          type_label(type), flavor, type_label(type));
  zorch__buf_free(&b);
  return rc;
}

/* Validate a component config against its flavor; *out is the parsed object. */
static int check_component(json_t **out, zorch_client *c, const char *type, const char *name,
                           const char *flavor, const char *config_json) {
  *out = NULL;
  const zorch__flavor *f = zorch__registry_find(c->registry, type, flavor);
  if (!f) return unknown_flavor(c, type, flavor);
  char *what = zorch__asprintf("%s '%s' config", type_label(type), name);
  if (!what) return zorch__error_oom();
  const char *text = config_json ? config_json : "{}";
  json_error_t err;
  json_t *cfg = json_loads(text, JSON_DECODE_ANY, &err);
  int rc = ZORCH_OK;
  if (!cfg)
    rc = zorch__error_set(ZORCH_EINVALID, "%s: invalid JSON: line %d, column %d: %s", what,
                          err.line, err.column, err.text);
  else if (!json_is_object(cfg))
    rc = zorch__error_set(ZORCH_EINVALID, "%s: must be a JSON object", what);
  if (!rc) rc = zorch__schema_validate(f->desc->config_schema, text, what);
  /* both kinds of ops have check_config in their version 1 */
  int (*check)(void *, const char *) = NULL;
  if (!f->desc->ops)
    check = NULL; /* built in */
  else if (!strcmp(type, T_ORCH))
    check = ((const zorch_orchestrator_ops *)f->desc->ops)->check_config;
  else
    check = ((const zorch_artifact_store_ops *)f->desc->ops)->check_config;
  if (!rc && check) {
    zorch_error_clear();
    rc = check(f->payload, text);
    if (rc) {
      if (rc > 0) rc = ZORCH_EINVALID;
      if (zorch_error_last()->code == ZORCH_OK)
        zorch__error_set(rc, "flavor %s rejected it (%s)", flavor, zorch_strerror(rc));
      zorch__error_prefix("%s", what);
    }
  }
  free(what);
  if (rc) {
    json_decref(cfg);
    return rc;
  }
  *out = cfg;
  return ZORCH_OK;
}

int zorch_component_register(zorch_client *c, const char *type, const char *name,
                             const char *flavor, const char *config_json, int replace) {
  int rc = client_ok(c, "zorch_component_register");
  if (!rc) rc = check_type(type);
  if (!rc) rc = zorch__check_name(type_label(type), name);
  if (rc) return rc;
  if (!flavor || !*flavor)
    return zorch__error_set(ZORCH_EINVALID, "%s '%s': flavor is missing", type_label(type), name);
  json_t *cfg = NULL;
  rc = check_component(&cfg, c, type, name, flavor, config_json);
  if (rc) return rc;
  json_t *entry = json_pack("{s:s,s:o}", "flavor", flavor, "config", cfg);
  if (!entry) return zorch__error_oom();
  txn t;
  rc = begin(&t, c);
  if (rc) {
    json_decref(entry);
    return rc;
  }
  json_t *sec = section(t.doc, type);
  if (!sec) rc = zorch__error_oom();
  else if (json_object_get(sec, name) && !replace)
    rc = zorch__error_set(ZORCH_EEXISTS, "%s '%s' already exists (replace it to change it)",
                          type_label(type), name);
  if (!rc && json_object_set(sec, name, entry)) rc = zorch__error_oom();
  json_decref(entry);
  return end(&t, c, rc);
}

/* "a, b" of the stacks whose `field` is `name`; NULL when none. */
static char *stacks_using(const json_t *doc, const char *field, const char *name) {
  zorch__buf b = ZORCH__BUF_INIT;
  const char *k;
  json_t *s;
  json_object_foreach(json_object_get(doc, "stacks"), k, s) {
    if (!str_is(json_string_value(json_object_get(s, field)), name)) continue;
    if (b.len) zorch__buf_puts(&b, ", ");
    zorch__buf_puts(&b, k);
  }
  return b.data;
}

int zorch_component_delete(zorch_client *c, const char *type, const char *name) {
  int rc = client_ok(c, "zorch_component_delete");
  if (!rc) rc = check_type(type);
  if (!rc && !name) rc = zorch__error_set(ZORCH_EINVALID, "%s name is missing", type_label(type));
  if (!rc && !strcmp(name, DEFAULT))
    rc = zorch__error_set(ZORCH_EINVALID, "the default %s cannot be deleted", type_label(type));
  if (rc) return rc;
  txn t;
  rc = begin(&t, c);
  if (rc) return rc;
  json_t *sec = section(t.doc, type);
  char *users = NULL;
  if (!sec) rc = zorch__error_oom();
  else if (!json_object_get(sec, name))
    rc = zorch__error_set(ZORCH_ENOTFOUND, "%s '%s' does not exist", type_label(type), name);
  else if ((users = stacks_using(t.doc, type, name)))
    rc = zorch__error_set(ZORCH_EINVALID,
                          "%s '%s' is used by stack %s; delete or change the stack first",
                          type_label(type), name, users);
  else
    json_object_del(sec, name);
  free(users);
  return end(&t, c, rc);
}

int zorch_component_list(char **out, zorch_client *c, const char *type) {
  if (!out) return zorch__error_set(ZORCH_EINVALID, "zorch_component_list: out is NULL");
  *out = NULL;
  int rc = client_ok(c, "zorch_component_list");
  if (!rc && type) rc = check_type(type);
  json_t *doc = NULL;
  if (!rc) rc = config_load(&doc, c);
  if (rc) return rc;
  json_t *arr = json_array();
  static const char *const types[] = {T_ORCH, T_STORE};
  for (size_t i = 0; arr && i < 2; i++) {
    if (type && strcmp(type, types[i])) continue;
    const char *k;
    json_t *e;
    json_object_foreach(section(doc, types[i]), k, e) {
      if (json_array_append_new(arr, json_pack("{s:s,s:s,s:O,s:o}", "type", types[i], "name", k,
                                               "flavor", json_object_get(e, "flavor"), "config",
                                               config_of(e))))
        rc = zorch__error_oom();
    }
  }
  if (!rc) rc = out_json(out, arr);
  json_decref(arr);
  json_decref(doc);
  return rc;
}

/* ---- stacks ------------------------------------------------------------------------------ */

int zorch_stack_register(zorch_client *c, const char *name, const char *orchestrator,
                         const char *artifact_store, int replace) {
  int rc = client_ok(c, "zorch_stack_register");
  if (!rc) rc = zorch__check_name("stack", name);
  if (rc) return rc;
  if (!orchestrator)
    return zorch__error_set(ZORCH_EINVALID, "stack '%s': an orchestrator is required", name);
  if (!artifact_store) artifact_store = DEFAULT;
  txn t;
  rc = begin(&t, c);
  if (rc) return rc;
  json_t *stacks = obj_child(t.doc, "stacks");
  if (!stacks) rc = zorch__error_oom();
  else if (json_object_get(stacks, name) && !replace)
    rc = zorch__error_set(ZORCH_EEXISTS, "stack '%s' already exists (replace it to change it)",
                          name);
  else if (!json_object_get(section(t.doc, T_ORCH), orchestrator))
    rc = zorch__error_set(ZORCH_ENOTFOUND, "stack '%s': orchestrator '%s' does not exist", name,
                          orchestrator);
  else if (!json_object_get(section(t.doc, T_STORE), artifact_store))
    rc = zorch__error_set(ZORCH_ENOTFOUND, "stack '%s': artifact store '%s' does not exist",
                          name, artifact_store);
  else if (json_object_set_new(stacks, name,
                               json_pack("{s:s,s:s}", "orchestrator", orchestrator,
                                         "artifact_store", artifact_store)))
    rc = zorch__error_oom();
  return end(&t, c, rc);
}

static int no_stack(const json_t *doc, const char *name) {
  char *have = key_list(json_object_get(doc, "stacks"));
  int rc = zorch__error_set(ZORCH_ENOTFOUND, "stack '%s' does not exist (stacks: %s)", name,
                            have ? have : "?");
  free(have);
  return rc;
}

int zorch_stack_delete(zorch_client *c, const char *name) {
  int rc = client_ok(c, "zorch_stack_delete");
  if (!rc && !name) rc = zorch__error_set(ZORCH_EINVALID, "stack name is missing");
  if (!rc && !strcmp(name, DEFAULT))
    rc = zorch__error_set(ZORCH_EINVALID, "the default stack cannot be deleted");
  if (rc) return rc;
  txn t;
  rc = begin(&t, c);
  if (rc) return rc;
  json_t *stacks = json_object_get(t.doc, "stacks");
  if (!json_object_get(stacks, name))
    rc = no_stack(t.doc, name);
  else if (str_is(json_string_value(json_object_get(t.doc, "active_stack")), name))
    rc = zorch__error_set(ZORCH_EINVALID,
                          "stack '%s' is the active stack; activate another stack first", name);
  else
    json_object_del(stacks, name);
  return end(&t, c, rc);
}

int zorch_stack_set_active(zorch_client *c, const char *name) {
  int rc = client_ok(c, "zorch_stack_set_active");
  if (!rc && !name) rc = zorch__error_set(ZORCH_EINVALID, "stack name is missing");
  if (rc) return rc;
  txn t;
  rc = begin(&t, c);
  if (rc) return rc;
  if (!json_object_get(json_object_get(t.doc, "stacks"), name))
    rc = no_stack(t.doc, name);
  else if (json_object_set_new(t.doc, "active_stack", json_string(name)))
    rc = zorch__error_oom();
  return end(&t, c, rc);
}

int zorch_stack_get_active(char **out, zorch_client *c) {
  if (!out) return zorch__error_set(ZORCH_EINVALID, "zorch_stack_get_active: out is NULL");
  *out = NULL;
  int rc = client_ok(c, "zorch_stack_get_active");
  json_t *doc = NULL;
  if (!rc) rc = config_load(&doc, c);
  if (rc) return rc;
  *out = zorch__strdup(json_string_value(json_object_get(doc, "active_stack")));
  json_decref(doc);
  return *out ? ZORCH_OK : zorch__error_oom();
}

int zorch_stack_list(char **out, zorch_client *c) {
  if (!out) return zorch__error_set(ZORCH_EINVALID, "zorch_stack_list: out is NULL");
  *out = NULL;
  int rc = client_ok(c, "zorch_stack_list");
  json_t *doc = NULL;
  if (!rc) rc = config_load(&doc, c);
  if (rc) return rc;
  const char *active = json_string_value(json_object_get(doc, "active_stack"));
  json_t *arr = json_array();
  const char *k;
  json_t *s;
  json_object_foreach(json_object_get(doc, "stacks"), k, s) {
    if (json_array_append_new(arr, json_pack("{s:s,s:O,s:O,s:b}", "name", k, "orchestrator",
                                             json_object_get(s, "orchestrator"), "artifact_store",
                                             json_object_get(s, "artifact_store"), "active",
                                             str_is(k, active))))
      rc = zorch__error_oom();
  }
  if (!rc) rc = out_json(out, arr);
  json_decref(arr);
  json_decref(doc);
  return rc;
}

/* The stack `name` (NULL: active) and its two component entries, borrowed from doc. */
static int find_stack(const json_t *doc, const char **name, json_t **orch, json_t **store) {
  if (!*name) *name = json_string_value(json_object_get(doc, "active_stack"));
  json_t *s = json_object_get(json_object_get(doc, "stacks"), *name);
  if (!s) return no_stack(doc, *name);
  const char *on = json_string_value(json_object_get(s, "orchestrator"));
  const char *sn = json_string_value(json_object_get(s, "artifact_store"));
  *orch = json_object_get(json_object_get(json_object_get(doc, "components"), T_ORCH), on);
  *store = json_object_get(json_object_get(json_object_get(doc, "components"), T_STORE), sn);
  if (!*orch)
    return zorch__error_set(ZORCH_ENOTFOUND, "stack '%s': orchestrator '%s' does not exist",
                            *name, on);
  if (!*store)
    return zorch__error_set(ZORCH_ENOTFOUND, "stack '%s': artifact store '%s' does not exist",
                            *name, sn);
  return ZORCH_OK;
}

int zorch_stack_describe(char **out, zorch_client *c, const char *name) {
  if (!out) return zorch__error_set(ZORCH_EINVALID, "zorch_stack_describe: out is NULL");
  *out = NULL;
  int rc = client_ok(c, "zorch_stack_describe");
  json_t *doc = NULL, *orch = NULL, *store = NULL;
  if (!rc) rc = config_load(&doc, c);
  if (rc) return rc;
  rc = find_stack(doc, &name, &orch, &store);
  if (!rc) {
    json_t *s = json_object_get(json_object_get(doc, "stacks"), name);
    const char *active = json_string_value(json_object_get(doc, "active_stack"));
    json_t *j = json_pack("{s:s,s:b,s:{s:O,s:O,s:o},s:{s:O,s:O,s:o}}", "name", name, "active",
                          str_is(active, name), "orchestrator", "name",
                          json_object_get(s, "orchestrator"), "flavor",
                          json_object_get(orch, "flavor"), "config", config_of(orch),
                          "artifact_store", "name", json_object_get(s, "artifact_store"),
                          "flavor", json_object_get(store, "flavor"), "config",
                          config_of(store));
    rc = out_json(out, j);
    json_decref(j);
  }
  json_decref(doc);
  return rc;
}

/* ---- internal ---------------------------------------------------------------------------- */

void zorch__stack_clear(zorch__stack *s) {
  if (!s) return;
  free(s->name);
  free(s->orchestrator_name);
  free(s->orchestrator_flavor);
  free(s->orchestrator_config);
  free(s->store_name);
  free(s->store_flavor);
  free(s->store_config);
  free(s->store_path);
  memset(s, 0, sizeof *s);
}

static char *config_text(const json_t *entry) {
  const json_t *cfg = json_object_get(entry, "config");
  return cfg ? dump(cfg, JSON_COMPACT) : zorch__strdup("{}");
}

int zorch__stack_resolve(zorch__stack *out, zorch_client *c, const char *name) {
  memset(out, 0, sizeof *out);
  json_t *doc = NULL, *orch = NULL, *store = NULL;
  int rc = client_ok(c, "zorch__stack_resolve");
  if (!rc) rc = config_load(&doc, c);
  if (rc) return rc;
  rc = find_stack(doc, &name, &orch, &store);
  if (!rc) {
    json_t *s = json_object_get(json_object_get(doc, "stacks"), name);
    const char *path = json_string_value(json_object_get(json_object_get(store, "config"), "path"));
    out->name = zorch__strdup(name);
    out->orchestrator_name = zorch__strdup(json_string_value(json_object_get(s, "orchestrator")));
    out->orchestrator_flavor = zorch__strdup(json_string_value(json_object_get(orch, "flavor")));
    out->orchestrator_config = config_text(orch);
    out->store_name = zorch__strdup(json_string_value(json_object_get(s, "artifact_store")));
    out->store_flavor = zorch__strdup(json_string_value(json_object_get(store, "flavor")));
    out->store_config = config_text(store);
    bool local = str_is(out->store_flavor, "local");
    if (local && (!path || path[0] != '/'))
      rc = zorch__error_set(ZORCH_EINVALID,
                            "stack '%s': artifact store '%s' has no absolute \"path\"", name,
                            out->store_name ? out->store_name : "?");
    out->store_path = local ? zorch__strdup(path) : NULL;
    if (!rc && (!out->name || !out->orchestrator_name || !out->orchestrator_flavor ||
                !out->orchestrator_config || !out->store_name || !out->store_flavor ||
                !out->store_config || (local && !out->store_path)))
      rc = zorch__error_oom();
  }
  json_decref(doc);
  if (rc) zorch__stack_clear(out);
  return rc;
}

void zorch__store_components_free(zorch__store_component *v, size_t n) {
  for (size_t i = 0; v && i < n; i++) {
    free(v[i].name);
    free(v[i].flavor);
    free(v[i].config);
  }
  free(v);
}

int zorch__store_components(zorch__store_component **out, size_t *n_out, zorch_client *c) {
  *out = NULL;
  *n_out = 0;
  json_t *doc = NULL;
  int rc = client_ok(c, "zorch__store_components");
  if (!rc) rc = config_load(&doc, c);
  if (rc) return rc;
  json_t *sec = section(doc, T_STORE);
  zorch__store_component *v = calloc(json_object_size(sec) + 1, sizeof *v);
  size_t n = 0;
  const char *k;
  json_t *e;
  json_object_foreach(sec, k, e) {
    if (!v) break;
    const char *flavor = json_string_value(json_object_get(e, "flavor"));
    char *config = config_text(e);
    bool dup = !flavor || !config;
    for (size_t i = 0; i < n && !dup; i++) /* one store under two names */
      dup = !strcmp(v[i].flavor, flavor) && !strcmp(v[i].config, config);
    if (dup) {
      free(config);
      continue;
    }
    v[n] = (zorch__store_component){zorch__strdup(k), zorch__strdup(flavor), config};
    if (!v[n].name || !v[n].flavor) {
      zorch__store_components_free(v, n + 1);
      v = NULL;
    } else {
      n++;
    }
  }
  json_decref(doc);
  if (!v) return zorch__error_oom();
  *out = v;
  *n_out = n;
  return ZORCH_OK;
}

void zorch__strv_free(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}
