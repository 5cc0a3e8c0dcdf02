/* zorch — the flavor registry: plugin discovery, the ABI handshake, flavors.
 *
 * Loading a plugin file has two phases (see <zorch/plugin.h>):
 *   open      dlopen(RTLD_NOW | RTLD_LOCAL), only files named zorch-flavor-*.so
 *   entry     dlsym("zorch_plugin_describe")
 *   describe  describe(host ABI major, minor) -> static descriptor
 *   abi       abi_major equal, abi_minor not newer than ours
 *   fields    name and init set
 *   init      init(host, registrar, &ctx) registers flavors with host->add_flavor
 * No plugin function but describe runs before the ABI check passed.  Any
 * failure is one problem ("<file>: <step failed and why>"), logged as a
 * warning, and the next plugin loads as if nothing happened.  A plugin whose
 * init fails loses the flavors it registered, is torn down and unloaded.
 *
 * Each plugin gets its own zorch_host table, embedded first in a private
 * struct, so host->log and host->error_set know which plugin called.
 * The registry is immutable once built (zorch__registry_add_static aside), so
 * concurrent readers need no lock.
 */
#include "client_int.h"
#include "submission.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>

#ifndef ZORCH_PLUGIN_DIR
#define ZORCH_PLUGIN_DIR "/usr/local/lib/zorch-1/plugins"
#endif

#define PLUGIN_PREFIX "zorch-flavor-"
#define PLUGIN_SUFFIX ".so"
#define BUILTIN_PATH "(built-in)"

typedef struct plugin plugin;

/* The registrar a plugin's init receives: open only while init runs. */
struct zorch_registrar {
  zorch__registry *reg;
  plugin *p;
  bool open;
};

typedef struct {
  zorch_host host; /* first: the plugin sees only this */
  plugin *p;
} plugin_host;

struct plugin {
  plugin_host ph;
  zorch_registrar registrar;
  zorch__registry *reg;
  char *path;           /* file, or origin of a static plugin */
  char *name;           /* copy of desc->name */
  void *dl;             /* NULL for static plugins */
  dev_t dev;            /* identity of the file, to load each file once */
  ino_t ino;
  void (*teardown)(void *);
  void *ctx;
  /* only while init runs: */
  bool in_init;
  char *init_error;     /* last message given to host->error_set */
  zorch__buf rejected;  /* why add_flavor refused, one line per flavor */
};

typedef struct {
  zorch__flavor pub;
  plugin *owner;        /* NULL for built-ins */
} flavor;

typedef struct {
  char *path;
  char *message;
} problem;

struct zorch__registry {
  zorch_client *client;
  plugin **plugins;
  size_t nplugins;
  flavor **flavors;
  size_t nflavors;
  problem *problems;
  size_t nproblems;
};

/* ---- small helpers -------------------------------------------------------------- */

static void problem_add(zorch__registry *r, const char *path, const char *fmt, ...)
    ZORCH_PRINTF(3, 4);
static void problem_add(zorch__registry *r, const char *path, const char *fmt, ...) {
  char detail[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  char *msg = zorch__asprintf("%s: %s", path, detail);
  zorch__log(r->client, ZORCH_LOG_WARNING, "zorch", "%s", msg ? msg : detail);
  problem *np = realloc(r->problems, (r->nproblems + 1) * sizeof *np);
  char *p = zorch__strdup(path);
  if (!np || !msg || !p) { /* out of memory: the log line is all we can do */
    if (np) r->problems = np;
    free(msg);
    free(p);
    return;
  }
  r->problems = np;
  np[r->nproblems].path = p;
  np[r->nproblems].message = msg;
  r->nproblems++;
}

static const zorch__flavor *find(const zorch__registry *r, const char *type, const char *name) {
  for (size_t i = 0; i < r->nflavors; i++) {
    const zorch_flavor_desc *d = r->flavors[i]->pub.desc;
    if ((!type || !strcmp(d->type, type)) && !strcmp(d->name, name)) return &r->flavors[i]->pub;
  }
  return NULL;
}

/* Every ZORCH_FLAVOR_* bit this zorch knows. */
#define KNOWN_FLAVOR_FLAGS ((uint64_t)(ZORCH_FLAVOR_IN_PROCESS | ZORCH_FLAVOR_LOCAL_STORE))

uint64_t zorch__flavor_desc_flags(const zorch_flavor_desc *d) {
  if (d->version >= 2) return d->flags;
  /* version 1 (plugin ABI 1.0, 1.1): no flags field; what zorch assumed then */
  uint64_t f = ZORCH_FLAVOR_LOCAL_STORE;
  if (d->name && !strcmp(d->name, "local")) f |= ZORCH_FLAVOR_IN_PROCESS;
  return f;
}

static int flavor_append(zorch__registry *r, const zorch_flavor_desc *d, void *payload,
                         plugin *owner) {
  flavor *f = calloc(1, sizeof *f);
  flavor **nv = realloc(r->flavors, (r->nflavors + 1) * sizeof *nv);
  if (!f || !nv) {
    free(f);
    if (nv) r->flavors = nv;
    return zorch__error_oom();
  }
  r->flavors = nv;
  f->pub.desc = d;
  f->pub.payload = payload;
  f->pub.host = owner ? &owner->ph.host : NULL;
  f->pub.plugin_name = owner ? owner->name : "zorch";
  f->pub.plugin_path = owner ? owner->path : BUILTIN_PATH;
  f->pub.flags = zorch__flavor_desc_flags(d);
  /* past the end of a version-1 descriptor: read only from version 2 on */
  f->pub.step_settings_schema = d->version >= 2 ? d->step_settings_schema : NULL;
  f->owner = owner;
  r->flavors[r->nflavors++] = f;
  return ZORCH_OK;
}

static void flavors_drop_owned(zorch__registry *r, plugin *p) {
  size_t k = 0;
  for (size_t i = 0; i < r->nflavors; i++) {
    if (r->flavors[i]->owner == p) free(r->flavors[i]);
    else r->flavors[k++] = r->flavors[i];
  }
  r->nflavors = k;
}

static void plugin_free(plugin *p) {
  if (!p) return;
  free(p->path);
  free(p->name);
  free(p->init_error);
  zorch__buf_free(&p->rejected);
  free(p);
}

/* ---- the host table ------------------------------------------------------------------ */

static void host_log(const zorch_host *h, int level, const char *message) {
  const plugin *p = ((const plugin_host *)h)->p;
  if (level < ZORCH_LOG_ERROR) level = ZORCH_LOG_ERROR;
  if (level > ZORCH_LOG_DEBUG) level = ZORCH_LOG_DEBUG;
  zorch__log(p->reg->client, level, p->name, "%s", message ? message : "");
}

static void host_error_set(const zorch_host *h, int code, const char *message) {
  plugin *p = ((const plugin_host *)h)->p;
  if (code >= 0) code = ZORCH_EPLUGIN; /* an error must be an error */
  if (!message || !*message) message = zorch_strerror(code);
  zorch__error_set(code, "plugin %s (%s): %s", p->name, p->path, message);
  if (p->in_init) { /* only the loading thread touches this, during init */
    free(p->init_error);
    p->init_error = zorch__strdup(message);
  }
}

static void *host_alloc(size_t size) { return malloc(size ? size : 1); }
static void host_free(void *ptr) { free(ptr); }

static bool valid_flavor_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  return true;
}

static bool why_set(zorch__buf *why, const char *fmt, ...) ZORCH_PRINTF(2, 3);
static bool why_set(zorch__buf *why, const char *fmt, ...) {
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  zorch__buf_puts(why, msg);
  return true;
}

/* Why an image builder's ops table is unusable, into `why`; false when fine. */
static bool image_builder_reason(const zorch_image_builder_ops *ops, zorch__buf *why) {
  if (!ops) return why_set(why, "ops is NULL (an image builder needs build)");
  if (ops->version < 1)
    return why_set(why, "ops version %u is invalid (set .version = ZORCH_IMAGE_BUILDER_OPS_VERSION)",
                   ops->version);
  if (ops->version > ZORCH_IMAGE_BUILDER_OPS_VERSION)
    return why_set(why,
                   "ops version %u is newer than this zorch knows (%d): set .version = "
                   "ZORCH_IMAGE_BUILDER_OPS_VERSION of the <zorch/plugin.h> it is built with",
                   ops->version, ZORCH_IMAGE_BUILDER_OPS_VERSION);
  if (!ops->build) return why_set(why, "ops lack build");
  return false;
}

/* Why a flavor descriptor is unusable, into `why`; false when it is fine. */
static bool flavor_reason(const zorch_flavor_desc *d, zorch__buf *why) {
  if (d->version < 1 || d->version > ZORCH_FLAVOR_DESC_VERSION)
    return why_set(why, "descriptor version %u is not supported (this zorch knows 1 to %d)",
                   d->version, ZORCH_FLAVOR_DESC_VERSION);
  if (!d->name) return why_set(why, "it has no name");
  if (!valid_flavor_name(d->name))
    return why_set(why, "the name is invalid (use 1 to 63 of a-z, 0-9 and _)");
  bool builder = d->type && !strcmp(d->type, ZORCH_COMPONENT_IMAGE_BUILDER);
  if (!builder && (!d->type || strcmp(d->type, ZORCH_COMPONENT_ORCHESTRATOR)))
    return why_set(why, "type '%.80s' is not supported (this zorch accepts '%s' and '%s')",
                   d->type ? d->type : "(NULL)", ZORCH_COMPONENT_ORCHESTRATOR,
                   ZORCH_COMPONENT_IMAGE_BUILDER);
  if (!d->description || !*d->description) return why_set(why, "description is missing");
  if (!d->config_schema) return why_set(why, "config_schema is missing");
  if (zorch__schema_check(d->config_schema, "config_schema"))
    return why_set(why, "%s", zorch_error_last()->message);
  /* version 2 fields: a version-1 descriptor ends before them */
  if (d->version >= 2 && (d->flags & ~KNOWN_FLAVOR_FLAGS))
    return why_set(why,
                   "flags 0x%" PRIx64 " hold bits this zorch does not know (0x%" PRIx64
                   "); use only the ZORCH_FLAVOR_* of <zorch/plugin.h>",
                   d->flags, d->flags & ~KNOWN_FLAVOR_FLAGS);
  if (d->version >= 2 && d->step_settings_schema &&
      zorch__schema_check(d->step_settings_schema, "step_settings_schema"))
    return why_set(why, "%s", zorch_error_last()->message);
  if (builder) return image_builder_reason(d->ops, why);
  const zorch_orchestrator_ops *ops = d->ops;
  if (!ops)
    return why_set(why, "ops is NULL (an orchestrator needs submit, wait, cancel and release)");
  if (ops->version < 1)
    return why_set(why, "ops version %u is invalid (set .version = ZORCH_ORCHESTRATOR_OPS_VERSION)",
                   ops->version);
  if (ops->version > ZORCH_ORCHESTRATOR_OPS_VERSION)
    return why_set(why,
                   "ops version %u is newer than this zorch knows (%d): set .version = "
                   "ZORCH_ORCHESTRATOR_OPS_VERSION of the <zorch/plugin.h> it is built with",
                   ops->version, ZORCH_ORCHESTRATOR_OPS_VERSION);
  if (!ops->submit || !ops->wait || !ops->cancel || !ops->release)
    return why_set(why, "ops lack%s%s%s%s", ops->submit ? "" : " submit",
                   ops->wait ? "" : " wait", ops->cancel ? "" : " cancel",
                   ops->release ? "" : " release");
  return false;
}

static bool flavor_desc_bad(const zorch_flavor_desc *d, zorch__buf *why) {
  if (!d) return why_set(why, "a flavor was rejected: its descriptor is NULL");
  zorch__buf reason = ZORCH__BUF_INIT;
  bool bad = flavor_reason(d, &reason);
  if (bad)
    why_set(why, "flavor '%.80s' rejected: %s", d->version >= 1 && d->name ? d->name : "?",
            reason.data ? reason.data : "out of memory");
  zorch__buf_free(&reason);
  return bad;
}

static int host_add_flavor(zorch_registrar *reg, const zorch_flavor_desc *d, void *payload) {
  if (!reg) return zorch__error_set(ZORCH_EINVALID, "add_flavor: registrar is NULL");
  plugin *p = reg->p;
  if (!reg->open)
    return zorch__error_set(ZORCH_EINVALID, "plugin %s (%s): add_flavor called after init",
                            p->name, p->path);
  zorch__buf why = ZORCH__BUF_INIT;
  int rc = ZORCH_OK;
  const zorch__flavor *old;
  if (flavor_desc_bad(d, &why)) {
    rc = ZORCH_EINVALID;
  } else if ((old = find(reg->reg, d->type, d->name))) {
    rc = ZORCH_EEXISTS;
    zorch__buf_printf(&why, "flavor '%s' (%s) ignored: already provided by plugin %s (%s)",
                      d->name, d->type, old->plugin_name, old->plugin_path);
  } else {
    rc = flavor_append(reg->reg, d, payload, p);
  }
  if (rc && why.data) {
    if (p->rejected.len) zorch__buf_puts(&p->rejected, "\n");
    zorch__buf_puts(&p->rejected, why.data);
    zorch__error_set(rc, "plugin %s (%s): %s", p->name, p->path, why.data);
  }
  zorch__buf_free(&why);
  return rc;
}

/* ---- accepting a plugin ----------------------------------------------------------------- */

/* The describe-phase checks.  NULL when acceptable, else why not (static text
 * or `buf`). */
static const char *desc_problem(const zorch_plugin_desc *d, char *buf, size_t n, int *code) {
  *code = ZORCH_EVERSION;
  /* Only abi_major and abi_minor are read before they are known to match. */
  if (d->abi_major != ZORCH_PLUGIN_ABI_MAJOR || d->abi_minor > ZORCH_PLUGIN_ABI_MINOR) {
    snprintf(buf, n, "built for plugin ABI %u.%u, this zorch supports %d.%d", d->abi_major,
             d->abi_minor, ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR);
    return buf;
  }
  *code = ZORCH_EPLUGIN;
  bool noname = !d->name || !*d->name, noinit = !d->init;
  if (noname || noinit) {
    snprintf(buf, n, "plugin descriptor lacks required field%s %s%s%s", noname && noinit ? "s" : "",
             noname ? "name" : "", noname && noinit ? " and " : "", noinit ? "init" : "");
    return buf;
  }
  return NULL;
}

/* A plugin record with its host table, appended to r->plugins.  NULL on OOM. */
static plugin *plugin_add(zorch__registry *r, const zorch_plugin_desc *d, const char *origin,
                          void *dl, const struct stat *st) {
  plugin *p = calloc(1, sizeof *p);
  plugin **nv = p ? realloc(r->plugins, (r->nplugins + 1) * sizeof *nv) : NULL;
  if (nv) r->plugins = nv;
  if (p) {
    p->path = zorch__strdup(origin);
    p->name = zorch__strdup(d->name);
  }
  if (!nv || !p->path || !p->name) {
    plugin_free(p);
    return NULL;
  }
  r->plugins[r->nplugins++] = p;
  p->reg = r;
  p->dl = dl;
  if (st) {
    p->dev = st->st_dev;
    p->ino = st->st_ino;
  }
  p->teardown = d->teardown;
  p->ph.p = p;
  zorch_host *h = &p->ph.host;
  h->version = ZORCH_HOST_VERSION;
  h->size = (uint32_t)sizeof(zorch_host);
  h->log = host_log;
  h->error_set = host_error_set;
  h->alloc = host_alloc;
  h->free = host_free;
  h->add_flavor = host_add_flavor;
  h->submission_get = zorch__submission_get;
  h->submission_set_metadata = zorch__submission_set_metadata;
  h->submission_set_status = zorch__submission_set_status;
  h->executor_start = zorch__executor_start_host;
  h->executor_wait = zorch__executor_wait_host;
  h->executor_cancel = zorch__executor_cancel_host;
  h->executor_release = zorch__executor_release_host;
  h->executor_start_remote = zorch__executor_start_remote_host;
  h->executor_step_done = zorch__executor_step_done_host;
  h->executor_step_log = zorch__executor_step_log_host;
  h->submission_run_record = zorch__submission_run_record;
  h->submission_step_record = zorch__submission_step_record;
  p->registrar.reg = r;
  p->registrar.p = p;
  return p;
}

/* Undo plugin_add for the last plugin, after its init: forget its flavors,
 * tear it down, unload it. */
static void plugin_drop_last(zorch__registry *r) {
  plugin *p = r->plugins[--r->nplugins];
  flavors_drop_owned(r, p);
  if (p->teardown) p->teardown(p->ctx);
  if (p->dl) dlclose(p->dl);
  plugin_free(p);
}

/* Check and initialise a plugin.  On success the registry owns `dl` (may be
 * NULL) and the flavors it could not register are recorded as problems.  On
 * failure `dl` is closed and *why says what failed (caller frees). */
static int accept_plugin(zorch__registry *r, const zorch_plugin_desc *d, const char *origin,
                         void *dl, const struct stat *st, char **why) {
  char buf[512];
  int code;
  *why = NULL;
  const char *bad = desc_problem(d, buf, sizeof buf, &code);
  plugin *p = bad ? NULL : plugin_add(r, d, origin, dl, st);
  if (!p) {
    if (dl) dlclose(dl);
    *why = zorch__strdup(bad ? bad : "out of memory");
    return bad ? code : zorch__error_oom();
  }

  zorch__log(r->client, ZORCH_LOG_DEBUG, "zorch", "%s: initialising plugin %s %s", origin,
             d->name, d->version ? d->version : "");
  p->in_init = true;
  p->registrar.open = true;
  int rc = d->init(&p->ph.host, &p->registrar, &p->ctx);
  p->registrar.open = false;
  p->in_init = false;

  if (rc != ZORCH_OK) {
    /* Rejected by its own init: one problem that says why. */
    zorch__buf w = ZORCH__BUF_INIT;
    zorch__buf_printf(&w, "init of plugin %s failed: ", p->name);
    if (p->init_error) zorch__buf_puts(&w, p->init_error);
    if (p->init_error && p->rejected.len) zorch__buf_puts(&w, "; ");
    for (char *c = p->rejected.data; c && *c; c++) /* "\n"-separated -> "; " */
      if (*c == '\n') zorch__buf_puts(&w, "; ");
      else zorch__buf_put(&w, c, 1);
    if (!p->init_error && !p->rejected.len)
      zorch__buf_printf(&w, "it returned %d (%s) without a message", rc, zorch_strerror(rc));
    *why = zorch__buf_detach(&w);
    plugin_drop_last(r);
    return ZORCH_EPLUGIN;
  }

  /* Accepted; flavors it could not register are problems of their own. */
  char *save = NULL;
  for (char *line = p->rejected.data ? strtok_r(p->rejected.data, "\n", &save) : NULL; line;
       line = strtok_r(NULL, "\n", &save))
    problem_add(r, origin, "%s", line);
  zorch__buf_free(&p->rejected);
  free(p->init_error);
  p->init_error = NULL;
  bool provides = false;
  for (size_t i = 0; i < r->nflavors; i++)
    if (r->flavors[i]->owner == p) provides = true;
  if (!provides) { /* nothing to offer: do not keep its code mapped */
    zorch__log(r->client, ZORCH_LOG_INFO, "zorch", "%s: plugin %s provides no flavor; unloaded",
               origin, p->name);
    plugin_drop_last(r);
  }
  return ZORCH_OK;
}

/* ---- loading files -------------------------------------------------------------------- */

static bool plugin_file_name(const char *base) {
  size_t n = strlen(base), pl = strlen(PLUGIN_PREFIX), sl = strlen(PLUGIN_SUFFIX);
  return n > pl + sl && !strncmp(base, PLUGIN_PREFIX, pl) && !strcmp(base + n - sl, PLUGIN_SUFFIX);
}

static void load_file(zorch__registry *r, const char *path, const struct stat *st) {
  for (size_t i = 0; i < r->nplugins; i++) {
    const plugin *p = r->plugins[i];
    if (p->dl && p->dev == st->st_dev && p->ino == st->st_ino) {
      zorch__log(r->client, ZORCH_LOG_INFO, "zorch", "%s: same file as %s, loaded once", path,
                 p->path);
      return;
    }
  }
  zorch__log(r->client, ZORCH_LOG_DEBUG, "zorch", "%s: loading", path);
  dlerror();
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char *e = dlerror();
    if (!e) e = "unknown error";
    size_t pl = strlen(path); /* glibc says "<path>: <why>"; the path comes first anyway */
    if (!strncmp(e, path, pl) && e[pl] == ':' && e[pl + 1] == ' ') e += pl + 2;
    problem_add(r, path, "cannot load the shared object: %s", e);
    return;
  }
  dlerror();
  void *sym = dlsym(dl, ZORCH_PLUGIN_ENTRY_SYMBOL);
  if (!sym) {
    dlclose(dl);
    problem_add(r, path, "no entry point %s (not a zorch flavor plugin)",
                ZORCH_PLUGIN_ENTRY_SYMBOL);
    return;
  }
  zorch_plugin_describe_fn describe;
  memcpy(&describe, &sym, sizeof describe); /* object pointer to function pointer */
  const zorch_plugin_desc *d = describe(ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR);
  if (!d) {
    dlclose(dl);
    problem_add(r, path, "%s returned NULL: the plugin does not work with plugin ABI %d.%d",
                ZORCH_PLUGIN_ENTRY_SYMBOL, ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR);
    return;
  }
  char *why = NULL;
  if (accept_plugin(r, d, path, dl, st, &why)) problem_add(r, path, "%s", why ? why : "rejected");
  free(why);
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int plugin_entry(const struct dirent *e) { return plugin_file_name(e->d_name); }

static void scan_dir(zorch__registry *r, const char *dir) {
  struct dirent **list = NULL;
  int n = scandir(dir, &list, plugin_entry, by_name);
  if (n < 0) {
    int e = errno;
    if (e == ENOENT) {
      zorch__log(r->client, ZORCH_LOG_DEBUG, "zorch", "plugin directory %s does not exist", dir);
    } else {
      char eb[256];
      problem_add(r, dir, "cannot read the plugin directory: %s", strerror_r(e, eb, sizeof eb));
    }
    return;
  }
  zorch__log(r->client, ZORCH_LOG_DEBUG, "zorch", "scanning plugin directory %s", dir);
  for (int i = 0; i < n; i++) {
    char *path = zorch__path_join(dir, list[i]->d_name);
    struct stat st;
    if (!path) {
      problem_add(r, dir, "out of memory");
    } else if (stat(path, &st) != 0) {
      char eb[256];
      problem_add(r, path, "cannot load the shared object: %s", strerror_r(errno, eb, sizeof eb));
    } else if (!S_ISDIR(st.st_mode)) {
      load_file(r, path, &st);
    }
    free(path);
    free(list[i]);
  }
  free(list);
}

/* One entry of a plugin path: a directory, or a plugin file named directly. */
static void scan_entry(zorch__registry *r, const char *entry) {
  struct stat st;
  if (stat(entry, &st) == 0 && !S_ISDIR(st.st_mode)) {
    const char *base = strrchr(entry, '/');
    base = base ? base + 1 : entry;
    if (plugin_file_name(base)) load_file(r, entry, &st);
    else
      problem_add(r, entry, "not a directory, nor a plugin file named %s*%s", PLUGIN_PREFIX,
                  PLUGIN_SUFFIX);
    return;
  }
  scan_dir(r, entry);
}

static void scan_list(zorch__registry *r, const char *list, const char *source) {
  zorch__log(r->client, ZORCH_LOG_DEBUG, "zorch", "plugin path from %s: %s", source, list);
  char *copy = zorch__strdup(list);
  if (!copy) return;
  char *save = NULL;
  for (char *e = strtok_r(copy, ":", &save); e; e = strtok_r(NULL, ":", &save))
    scan_entry(r, e);
  free(copy);
}

/* ---- the registry ---------------------------------------------------------------------- */

int zorch__registry_new(zorch__registry **out, zorch_client *client) {
  *out = NULL;
  zorch__registry *r = calloc(1, sizeof *r);
  if (!r) return zorch__error_oom();
  r->client = client;
  for (size_t i = 0; zorch__builtin_flavors[i]; i++)
    if (flavor_append(r, zorch__builtin_flavors[i], NULL, NULL)) {
      zorch__registry_free(r);
      return ZORCH_ENOMEM;
    }
  uint32_t flags = client->flags;
  if (!(flags & ZORCH_CLIENT_NO_PLUGINS)) {
    if (client->plugin_path && *client->plugin_path)
      scan_list(r, client->plugin_path, "the client options");
    const char *env = zorch__getenv(client, "ZORCH_PLUGIN_PATH");
    if (env && *env) scan_list(r, env, "ZORCH_PLUGIN_PATH");
    if (!(flags & ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS)) {
      const char *sys = zorch__getenv(client, "ZORCH_PLUGIN_SYSTEM_PATH");
      if (sys) { /* set, even empty, it replaces the compiled-in directory */
        if (*sys) scan_list(r, sys, "ZORCH_PLUGIN_SYSTEM_PATH");
      } else {
        scan_dir(r, ZORCH_PLUGIN_DIR);
      }
    }
  }
  zorch__log(client, ZORCH_LOG_DEBUG, "zorch", "%zu flavors from %zu plugins, %zu problems",
             r->nflavors, r->nplugins, r->nproblems);
  zorch_error_clear(); /* plugin problems are in the list, not the caller's error */
  *out = r;
  return ZORCH_OK;
}

void zorch__registry_free(zorch__registry *r) {
  if (!r) return;
  for (size_t i = 0; i < r->nflavors; i++) free(r->flavors[i]);
  free(r->flavors);
  /* Reverse load order: teardown, then unload. */
  for (size_t i = r->nplugins; i-- > 0;) {
    plugin *p = r->plugins[i];
    if (p->teardown) p->teardown(p->ctx);
    if (p->dl) dlclose(p->dl);
    plugin_free(p);
  }
  free(r->plugins);
  for (size_t i = 0; i < r->nproblems; i++) {
    free(r->problems[i].path);
    free(r->problems[i].message);
  }
  free(r->problems);
  free(r);
}

int zorch__registry_add_static(zorch__registry *r, const zorch_plugin_desc *desc,
                               const char *origin) {
  if (!r) return zorch__error_set(ZORCH_EINVALID, "zorch__registry_add_static: registry is NULL");
  if (!origin) origin = "(static)";
  if (!desc) return zorch__error_set(ZORCH_EINVALID, "%s: plugin descriptor is NULL", origin);
  char *why = NULL;
  int rc = accept_plugin(r, desc, origin, NULL, NULL, &why);
  if (rc) zorch__error_set(rc, "%s: %s", origin, why ? why : "rejected");
  free(why);
  return rc;
}

const zorch__flavor *zorch__registry_find(const zorch__registry *r, const char *type,
                                          const char *name) {
  if (!r || !name) return NULL;
  return find(r, type, name);
}

size_t zorch__registry_count(const zorch__registry *r) { return r ? r->nflavors : 0; }

const zorch__flavor *zorch__registry_at(const zorch__registry *r, size_t i) {
  return r && i < r->nflavors ? &r->flavors[i]->pub : NULL;
}

size_t zorch__registry_problem_count(const zorch__registry *r) { return r ? r->nproblems : 0; }

void zorch__registry_problem(const zorch__registry *r, size_t i, const char **path,
                             const char **message) {
  bool ok = r && i < r->nproblems;
  if (path) *path = ok ? r->problems[i].path : NULL;
  if (message) *message = ok ? r->problems[i].message : NULL;
}

/* ---- public API ------------------------------------------------------------------------- */

static bool known_type(const char *type) {
  return !strcmp(type, ZORCH_COMPONENT_ORCHESTRATOR) || !strcmp(type, "artifact_store") ||
         !strcmp(type, ZORCH_COMPONENT_IMAGE_BUILDER);
}

static int put_kv(zorch__buf *b, const char *key, const char *value, bool first) {
  int rc = zorch__buf_puts(b, first ? "\"" : ",\"");
  if (!rc) rc = zorch__buf_puts(b, key);
  if (!rc) rc = zorch__buf_puts(b, "\":");
  if (!rc) rc = value ? zorch__buf_json_string(b, value) : zorch__buf_puts(b, "null");
  return rc;
}

static int put_flavor(zorch__buf *b, const zorch__flavor *f, bool with_schema) {
  const zorch_flavor_desc *d = f->desc;
  int rc = zorch__buf_puts(b, "{");
  if (!rc) rc = put_kv(b, "type", d->type, true);
  if (!rc) rc = put_kv(b, "name", d->name, false);
  if (!rc) rc = put_kv(b, "integration", d->integration, false);
  if (!rc) rc = put_kv(b, "description", d->description, false);
  if (!rc) rc = put_kv(b, "plugin", f->plugin_name, false);
  if (!rc) rc = put_kv(b, "path", f->plugin_path, false);
  if (!rc) rc = zorch__buf_puts(b, ",\"flags\":[");
  if (!rc && (f->flags & ZORCH_FLAVOR_IN_PROCESS)) rc = zorch__buf_puts(b, "\"in_process\"");
  if (!rc && (f->flags & ZORCH_FLAVOR_LOCAL_STORE))
    rc = zorch__buf_puts(b, f->flags & ZORCH_FLAVOR_IN_PROCESS ? ",\"local_store\"" : "\"local_store\"");
  if (!rc) rc = zorch__buf_puts(b, "]");
  /* the schemas were checked to be JSON objects when the flavor was added */
  if (!rc && with_schema) rc = zorch__buf_printf(b, ",\"config_schema\":%s", d->config_schema);
  if (!rc && with_schema)
    rc = zorch__buf_printf(b, ",\"step_settings_schema\":%s",
                           f->step_settings_schema ? f->step_settings_schema : "null");
  if (!rc) rc = zorch__buf_puts(b, "}");
  return rc;
}

int zorch_flavor_list(char **out_json, zorch_client *client, const char *type) {
  if (!out_json || !client)
    return zorch__error_set(ZORCH_EINVALID, "zorch_flavor_list: out_json and client are required");
  *out_json = NULL;
  if (type && !known_type(type))
    return zorch__error_set(ZORCH_EINVALID,
                            "unknown component type '%s' (expected orchestrator, artifact_store or "
                            "image_builder)",
                            type);
  const zorch__registry *r = client->registry;
  zorch__buf b = ZORCH__BUF_INIT;
  int rc = zorch__buf_puts(&b, "[");
  bool first = true;
  for (size_t i = 0; !rc && i < zorch__registry_count(r); i++) {
    const zorch__flavor *f = zorch__registry_at(r, i);
    if (type && strcmp(f->desc->type, type)) continue;
    if (!first) rc = zorch__buf_puts(&b, ",");
    if (!rc) rc = put_flavor(&b, f, false);
    first = false;
  }
  if (!rc) rc = zorch__buf_puts(&b, "]");
  if (rc) {
    zorch__buf_free(&b);
    return rc;
  }
  *out_json = zorch__buf_detach(&b);
  return ZORCH_OK;
}

int zorch_flavor_describe(char **out_json, zorch_client *client, const char *type,
                          const char *name) {
  if (!out_json || !client || !name)
    return zorch__error_set(ZORCH_EINVALID,
                            "zorch_flavor_describe: out_json, client and name are required");
  *out_json = NULL;
  if (type && !known_type(type))
    return zorch__error_set(ZORCH_EINVALID,
                            "unknown component type '%s' (expected orchestrator, artifact_store or "
                            "image_builder)",
                            type);
  const zorch__flavor *f = zorch__registry_find(client->registry, type, name);
  if (!f)
    return zorch__error_set(ZORCH_ENOTFOUND, "no %s flavor '%s' is registered",
                            type ? type : "such", name);
  zorch__buf b = ZORCH__BUF_INIT;
  int rc = put_flavor(&b, f, true);
  if (rc) {
    zorch__buf_free(&b);
    return rc;
  }
  *out_json = zorch__buf_detach(&b);
  return ZORCH_OK;
}

int zorch_flavor_problems(char **out_json, zorch_client *client) {
  if (!out_json || !client)
    return zorch__error_set(ZORCH_EINVALID,
                            "zorch_flavor_problems: out_json and client are required");
  *out_json = NULL;
  const zorch__registry *r = client->registry;
  zorch__buf b = ZORCH__BUF_INIT;
  int rc = zorch__buf_puts(&b, "[");
  for (size_t i = 0; !rc && i < zorch__registry_problem_count(r); i++) {
    const char *path, *msg;
    zorch__registry_problem(r, i, &path, &msg);
    if (i) rc = zorch__buf_puts(&b, ",");
    if (!rc) rc = zorch__buf_puts(&b, "{");
    if (!rc) rc = put_kv(&b, "path", path, true);
    if (!rc) rc = put_kv(&b, "error", msg, false);
    if (!rc) rc = zorch__buf_puts(&b, "}");
  }
  if (!rc) rc = zorch__buf_puts(&b, "]");
  if (rc) {
    zorch__buf_free(&b);
    return rc;
  }
  *out_json = zorch__buf_detach(&b);
  return ZORCH_OK;
}
