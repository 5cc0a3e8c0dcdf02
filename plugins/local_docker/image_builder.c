/* zorch — the local_docker plugin's image builder (image_builder.h): the
 * `local_docker` image-builder flavor and the orchestrator's default step
 * image, both through ldib_content and ldib_build. */
#include "image_builder.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zimage.h"

/* ---- what goes in ------------------------------------------------------------------ */

int ldib_list_add(ldib_list *l, char *owned) {
  if (!owned) return 0;
  for (size_t k = 0; k < l->n; k++)
    if (!strcmp(l->v[k], owned)) {
      free(owned);
      return 0;
    }
  if (l->n + 1 >= l->cap) { /* room for the terminating NULL too */
    size_t nc = l->cap ? l->cap * 2 : 16;
    char **nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) {
      free(owned);
      return -1;
    }
    l->v = nv;
    l->cap = nc;
  }
  l->v[l->n++] = owned;
  l->v[l->n] = NULL;
  return 0;
}

static void list_free(ldib_list *l) {
  for (size_t k = 0; k < l->n; k++) free(l->v[k]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

void ldib_content_free(ldib_content *c) {
  if (!c) return;
  list_free(&c->programs);
  list_free(&c->files);
  list_free(&c->trees);
  list_free(&c->plugin_dirs);
}

char *ldib_which(const char *cmd) {
  if (!cmd || !*cmd) return NULL;
  if (strchr(cmd, '/')) return realpath(cmd, NULL);
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  char buf[PATH_MAX];
  for (const char *p = path; *p;) {
    size_t l = strcspn(p, ":");
    struct stat st;
    if ((size_t)snprintf(buf, sizeof buf, "%.*s/%s", (int)l, l ? p : ".", cmd) < sizeof buf &&
        access(buf, X_OK) == 0 && stat(buf, &st) == 0 && S_ISREG(st.st_mode))
      return strdup(buf);
    p += l;
    if (*p == ':') p++;
  }
  return NULL;
}

int ldib_content_add(ldib_content *c, const char *x) {
  if (!x || !*x) return 0;
  char *w = x[0] == '/' ? strdup(x) : ldib_which(x);
  struct stat st;
  if (!w || stat(w, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
    free(w);
    return 0;
  }
  ldib_list *to = S_ISDIR(st.st_mode) ? &c->trees : (st.st_mode & 0111) ? &c->programs : &c->files;
  return ldib_list_add(to, w) ? -1 : 1;
}

int ldib_build(char **out_id, zd_engine *eng, const char *ref, const ldib_content *c, char *err,
               size_t errlen) {
  if (out_id) *out_id = NULL;
  zi_spec spec = {.ref = ref,
                  .programs = (const char *const *)c->programs.v,
                  .files = (const char *const *)c->files.v,
                  .plugin_dirs = (const char *const *)c->plugin_dirs.v,
                  .trees = (const char *const *)c->trees.v};
  if (zi_build(eng, &spec, out_id, NULL, NULL, err, errlen))
    return strstr(err, "not found") || strstr(err, "cannot read") ? ZORCH_ENOTFOUND : ZORCH_EIO;
  return ZORCH_OK;
}

/* ---- the default step image of a deployment ------------------------------------------- */

/* FNV-1a over a file's path, size and modification time */
static unsigned long long hash_file(unsigned long long h, const char *path) {
  struct stat st;
  char buf[PATH_MAX + 64];
  snprintf(buf, sizeof buf, "|%s", path);
  if (stat(path, &st) == 0)
    snprintf(buf + strlen(buf), sizeof buf - strlen(buf), ":%lld:%lld", (long long)st.st_size,
             (long long)st.st_mtime);
  for (const char *p = buf; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return h;
}

/* zi_walk's callback: every file of an image_add directory enters the tag */
static int hash_tree_file(const char *path, int is_link, void *arg) {
  unsigned long long *h = arg;
  if (!is_link) {
    *h = hash_file(*h, path);
    return 0;
  }
  char buf[PATH_MAX + 8] = "|>";
  ssize_t n = readlink(path, buf + 2, sizeof buf - 3);
  buf[n > 0 ? n + 2 : 2] = '\0';
  *h = hash_file(*h, path);
  for (const char *p = buf; *p; p++) *h = (*h ^ (unsigned char)*p) * 1099511628211ULL;
  return 0;
}

static int oom(const zorch_host *h) { return zorch_host_errorf(h, ZORCH_ENOMEM, "out of memory"); }

int ldib_default_content(ldib_content *c, unsigned long long *hash, const zorch_host *h, const zdep *dep,
                         json_t *config, const char *zorch_command, const char *plugin_dir) {
  const char *pver = zkit_jstr(json_object_get(dep->doc, "program"), "version");
  bool has_function = false;
  /* image_add of the config, then of the steps' settings (by zdeploy's rule) */
  json_t *lists = json_array();
  json_array_append(lists, json_object_get(config, "image_add"));
  for (size_t i = 0; i < dep->n_steps; i++) {
    const zdep_step *s = &dep->steps[i];
    if (!strcmp(s->kind, "function")) has_function = true;
    const char *c0 = json_string_value(json_array_get(json_object_get(s->doc, "command"), 0));
    /* not found: the step says so when it runs */
    if (c0 && ldib_list_add(&c->programs, ldib_which(c0))) {
      json_decref(lists);
      return oom(h);
    }
    json_array_append(lists, json_object_get(s->set.flavor_own, "image_add"));
  }
  if ((has_function && dep->program && ldib_list_add(&c->programs, strdup(dep->program))) ||
      (zorch_command && ldib_list_add(&c->programs, strdup(zorch_command))) ||
      (plugin_dir && *plugin_dir && ldib_list_add(&c->plugin_dirs, strdup(plugin_dir)))) {
    json_decref(lists);
    return oom(h);
  }
  int rc = ZORCH_OK;
  for (size_t l = 0; !rc && l < json_array_size(lists); l++) {
    json_t *extra = json_array_get(lists, l);
    for (size_t i = 0; !rc && i < json_array_size(extra); i++) {
      const char *x = json_string_value(json_array_get(extra, i));
      int added = ldib_content_add(c, x);
      if (added < 0) rc = oom(h);
      else if (!added)
        rc = zorch_host_errorf(h, ZORCH_ENOTFOUND, "image_add: '%s' is not a file or directory%s",
                               x ? x : "?", x && !strchr(x, '/') ? " (nor a program in PATH)" : "");
    }
  }
  json_decref(lists);
  if (rc) return rc;
  unsigned long long hsh = 1469598103934665603ULL;
  for (const char *p = pver ? pver : ""; *p; p++) hsh = (hsh ^ (unsigned char)*p) * 1099511628211ULL;
  for (size_t k = 0; k < c->programs.n; k++) hsh = hash_file(hsh, c->programs.v[k]);
  for (size_t k = 0; k < c->files.n; k++) hsh = hash_file(hsh, c->files.v[k]);
  char err[2048];
  for (size_t k = 0; k < c->trees.n; k++)
    if (zi_walk(c->trees.v[k], hash_tree_file, &hsh, err, sizeof err))
      return zorch_host_errorf(h, ZORCH_ENOTFOUND, "image_add: %s", err);
  *hash = hsh;
  return ZORCH_OK;
}

int ldib_default_image(char **out_ref, const zorch_host *h, zd_engine *eng, const char *pipeline,
                       const zdep *dep, json_t *config, const char *zorch_command) {
  *out_ref = NULL;
  /* this plugin's own directory: the flavors the image's zorch can load */
  Dl_info di;
  char pdir[PATH_MAX] = "";
  if (dladdr((void *)ldib_default_image, &di) && di.dli_fname) {
    snprintf(pdir, sizeof pdir, "%s", di.dli_fname);
    char *sl = strrchr(pdir, '/');
    if (sl) *sl = '\0';
    else pdir[0] = '\0';
  }
  ldib_content c = {0};
  unsigned long long hsh = 0;
  int rc = ldib_default_content(&c, &hsh, h, dep, config, zorch_command, pdir);
  if (rc) goto out;
  char lower[128];
  size_t k = 0;
  for (const char *p = pipeline; *p && k < sizeof lower - 1; p++)
    lower[k++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : (*p == '_' ? '-' : *p);
  lower[k] = '\0';
  char ref[300];
  snprintf(ref, sizeof ref, "localhost/zorch-%s:%016llx", lower, hsh);
  zh_error e = {0};
  int have = zd_image_exists(eng, ref, &e);
  if (have < 0) rc = zorch_host_errorf(h, ZORCH_EIO, "cannot look up image %s: %s", ref, e.message);
  zh_error_clear(&e);
  if (!rc && !have) {
    zorch_host_logf(h, ZORCH_LOG_INFO, "building image %s from the host program", ref);
    char err[2048];
    if (ldib_build(NULL, eng, ref, &c, err, sizeof err))
      rc = zorch_host_errorf(h, ZORCH_EIO, "cannot build the step image %s: %s", ref, err);
  }
  if (!rc && !(*out_ref = strdup(ref))) rc = oom(h);
out:
  ldib_content_free(&c);
  return rc;
}

/* ---- the image-builder flavor ------------------------------------------------------------- */

static const char ib_config_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"docker_host\":{\"type\":\"string\",\"description\":\"the engine's socket as DOCKER_HOST spells "
    "it (unix:///path or tcp://host:port); default: $DOCKER_HOST, else unix:///var/run/docker.sock\"}"
    "},\"additionalProperties\":false}";

static const zorch_host *host_of(void *payload) { return payload; } /* the host table (local_docker.c) */

static int ib_check_config(void *payload, const char *config_json) {
  const zorch_host *h = host_of(payload);
  json_t *c = json_loads(config_json ? config_json : "{}", 0, NULL);
  const char *dh = json_string_value(json_object_get(c, "docker_host"));
  int rc = ZORCH_OK;
  if (dh && !zd_host_supported(dh))
    rc = zorch_host_errorf(h, ZORCH_EINVALID,
                           "docker_host '%s' is not supported: use unix:///path/to.sock or "
                           "tcp://host:port",
                           dh);
  json_decref(c);
  return rc;
}

static int ib_build(char **out_image_id, void *payload, const char *config_json,
                    const char *request_json) {
  const zorch_host *h = host_of(payload);
  *out_image_id = NULL;
  json_t *cfg = json_loads(config_json ? config_json : "{}", 0, NULL);
  json_t *rq = json_loads(request_json ? request_json : "", 0, NULL);
  const char *name = json_string_value(json_object_get(rq, "name"));
  const char *prog = json_string_value(json_object_get(rq, "program"));
  const char *zcmd = json_string_value(json_object_get(rq, "zorch_command"));
  ldib_content c = {0};
  zd_engine eng;
  bool connected = false;
  char err[2048];
  int rc = ZORCH_OK;
  if (!json_is_object(rq) || !name || !*name || !prog || prog[0] != '/') {
    rc = zorch_host_errorf(h, ZORCH_EINVALID,
                           "an image build request needs a \"name\" and an absolute \"program\"");
    goto out;
  }
  if (ldib_list_add(&c.programs, strdup(prog)) ||
      (zcmd && !json_is_true(json_object_get(rq, "no_zorch")) &&
       ldib_list_add(&c.programs, strdup(zcmd)))) {
    rc = oom(h);
    goto out;
  }
  json_t *dirs = json_object_get(rq, "plugin_dirs"), *add = json_object_get(rq, "add");
  for (size_t i = 0; !rc && i < json_array_size(dirs); i++) {
    const char *d = json_string_value(json_array_get(dirs, i));
    if (d && ldib_list_add(&c.plugin_dirs, strdup(d))) rc = oom(h);
  }
  for (size_t i = 0; !rc && i < json_array_size(add); i++) {
    const char *x = json_string_value(json_array_get(add, i));
    int added = ldib_content_add(&c, x);
    if (added < 0) rc = oom(h);
    else if (!added)
      rc = zorch_host_errorf(h, ZORCH_ENOTFOUND,
                             "cannot add '%s' to the image: no such file or directory%s", x ? x : "?",
                             x && strchr(x, '/') ? "" : " (and not found in PATH)");
  }
  if (rc) goto out;
  if (zd_connect(&eng, json_string_value(json_object_get(cfg, "docker_host")), err, sizeof err)) {
    rc = zorch_host_errorf(h, ZORCH_EIO, "%s", err);
    goto out;
  }
  connected = true;
  char *id = NULL;
  rc = ldib_build(&id, &eng, name, &c, err, sizeof err);
  if (rc) {
    zorch_host_errorf(h, rc, "%s", err);
  } else {
    const char *v = id ? id : name;
    *out_image_id = h->alloc(strlen(v) + 1);
    if (*out_image_id) memcpy(*out_image_id, v, strlen(v) + 1);
    else rc = oom(h);
    if (!rc) zorch_host_logf(h, ZORCH_LOG_INFO, "built image %s (%s) on %s", name, v, eng.engine);
  }
  free(id);
out:
  if (connected) zd_close(&eng);
  ldib_content_free(&c);
  json_decref(cfg);
  json_decref(rq);
  return rc;
}

static const zorch_image_builder_ops ib_ops = {
    .version = ZORCH_IMAGE_BUILDER_OPS_VERSION,
    .check_config = ib_check_config,
    .build = ib_build,
};

const zorch_flavor_desc ldib_flavor = {
    .version = ZORCH_FLAVOR_DESC_VERSION,
    .type = ZORCH_COMPONENT_IMAGE_BUILDER,
    .name = "local_docker",
    .integration = "docker",
    .description = "Builds an image from the host program and files (no base image, no registry) "
                   "and imports it into a Docker engine (or Podman's API)",
    .config_schema = ib_config_schema,
    .ops = &ib_ops,
};
