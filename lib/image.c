/* zorch — zorch_image_build(): an image from the host program (see zorch/image.h).
 *
 * libzorch holds no image builder: it resolves what the host knows (the
 * program's absolute path, the zorch CLI, the plugin directories), picks an
 * image-builder flavor from the registry and hands it a request (plugin.h,
 * zorch_image_builder_ops).  The local_docker plugin provides one.
 */
#include "client_int.h"
#include "deployment.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

/* Names of the loaded image builders, ", "-separated, into b. */
static void builder_names(zorch__buf *b, const zorch__registry *r) {
  for (size_t i = 0; i < zorch__registry_count(r); i++) {
    const zorch__flavor *f = zorch__registry_at(r, i);
    if (strcmp(f->desc->type, ZORCH_COMPONENT_IMAGE_BUILDER)) continue;
    zorch__buf_printf(b, "%s%s (plugin %s)", b->len ? ", " : "", f->desc->name, f->plugin_name);
  }
}

/* The rule: the flavor named by the options or else $ZORCH_IMAGE_BUILDER;
 * with no name, the only image builder loaded. */
static int pick_builder(const zorch__flavor **out, zorch_client *c, const char *want,
                        const char *source) {
  const zorch__registry *r = c->registry;
  *out = NULL;
  zorch__buf names = ZORCH__BUF_INIT;
  builder_names(&names, r);
  int rc = ZORCH_OK;
  if (want) {
    *out = zorch__registry_find(r, ZORCH_COMPONENT_IMAGE_BUILDER, want);
    if (!*out)
      rc = zorch__error_set(ZORCH_ENOTFOUND,
                            "no image builder flavor '%s' (from %s) is loaded; loaded: %s", want,
                            source, names.len ? names.data : "none");
  } else {
    size_t n = 0;
    for (size_t i = 0; i < zorch__registry_count(r); i++) {
      const zorch__flavor *f = zorch__registry_at(r, i);
      if (!strcmp(f->desc->type, ZORCH_COMPONENT_IMAGE_BUILDER) && n++ == 0) *out = f;
    }
    if (n == 0) {
      const char *path = NULL, *msg = NULL;
      size_t np = zorch__registry_problem_count(r);
      if (np) zorch__registry_problem(r, 0, &path, &msg);
      rc = zorch__error_set(
          ZORCH_ENOTFOUND,
          "no image builder flavor is loaded: the local_docker plugin (zorch-flavor-local_docker.so, "
          "installed in %s) provides one; put the directory that holds it in ZORCH_PLUGIN_PATH%s%s",
          ZORCH_PLUGIN_DIR, np ? "; a plugin failed to load: " : "", np ? msg : "");
    } else if (n > 1) {
      *out = NULL;
      rc = zorch__error_set(ZORCH_EINVALID,
                            "%zu image builder flavors are loaded (%s): name one with "
                            "ZORCH_IMAGE_BUILDER, `zorch image build --builder` or "
                            "zorch_image_options.builder",
                            n, names.data ? names.data : "");
    }
  }
  zorch__buf_free(&names);
  return rc;
}

/* What the builder is asked for (plugin.h, zorch_image_builder_ops). */
static json_t *request_of(zorch_client *c, const char *name, const char *prog,
                          const zorch_image_options *opts) {
  json_t *add = json_array(), *dirs = json_array();
  for (size_t i = 0; opts->extra && opts->extra[i]; i++)
    json_array_append_new(add, json_string(opts->extra[i]));
  json_t *rq = json_pack("{s:s,s:s,s:o,s:o,s:b}", "name", name, "program", prog, "add", add,
                         "plugin_dirs", dirs, "no_zorch", opts->no_zorch != 0);
  if (!rq || opts->no_zorch) return rq;
  /* the command-step entrypoint and the flavors it may load */
  const char *zc = zorch__getenv(c, "ZORCH_COMMAND");
  char *zcmd = zc && *zc ? (zc[0] == '/' ? zorch__strdup(zc) : realpath(zc, NULL))
                         : zorch__asprintf("%s/zorch", ZORCH_BINDIR);
  if (zcmd && access(zcmd, X_OK) == 0 && strcmp(zcmd, prog) != 0)
    json_object_set_new(rq, "zorch_command", json_string(zcmd));
  free(zcmd);
  const char *pp = zorch__getenv(c, "ZORCH_PLUGIN_PATH");
  char *ppc = pp ? zorch__strdup(pp) : NULL;
  for (char *save = NULL, *t = ppc ? strtok_r(ppc, ":", &save) : NULL; t; t = strtok_r(NULL, ":", &save))
    json_array_append_new(dirs, json_string(t));
  free(ppc);
  if (access(ZORCH_PLUGIN_DIR, R_OK) == 0) json_array_append_new(dirs, json_string(ZORCH_PLUGIN_DIR));
  return rq;
}

int zorch_image_build(const char *name, const zorch_image_options *opts, char **image_id) {
  if (image_id) *image_id = NULL;
  zorch_image_options d = ZORCH_IMAGE_OPTIONS_INIT;
  if (!opts) opts = &d;
  if (opts->version < 1 || opts->version > ZORCH_IMAGE_OPTIONS_VERSION)
    return zorch__error_set(ZORCH_EVERSION, "zorch_image_options version %u is not supported (1..%d)",
                            opts->version, ZORCH_IMAGE_OPTIONS_VERSION);
  if (!name || !*name) return zorch__error_set(ZORCH_EINVALID, "zorch_image_build: no image name");
  /* The image holds every file at its host path and the deployment names
   * the program by its absolute path: a relative --program is resolved here
   * (a bare name through PATH, like the shell would). */
  char *prog_abs = NULL;
  const char *prog = opts->program ? opts->program : zorch__program_path();
  if (!prog) return zorch__error_set(ZORCH_ENOTFOUND, "cannot build an image: the running program's path is unknown");
  if (prog[0] != '/') {
    prog_abs = strchr(prog, '/') ? realpath(prog, NULL) : zorch__which(prog);
    if (!prog_abs)
      return zorch__error_set(ZORCH_ENOTFOUND, "cannot build an image of '%s': no such program%s", prog,
                              strchr(prog, '/') ? "" : " in PATH");
    prog = prog_abs;
  }
  zorch_client *c = NULL;
  json_t *rq = NULL;
  char *config = NULL, *request = NULL, *id = NULL;
  int rc = zorch__client_new_for_plugins(&c);
  if (rc) goto out;
  const char *want = opts->version >= 2 && opts->builder && *opts->builder ? opts->builder : NULL;
  const char *source = "zorch_image_options.builder";
  if (!want) {
    want = zorch__getenv(c, "ZORCH_IMAGE_BUILDER");
    if (want && !*want) want = NULL;
    source = "ZORCH_IMAGE_BUILDER";
  }
  const zorch__flavor *f = NULL;
  if ((rc = pick_builder(&f, c, want, source))) goto out;
  json_t *cfg = opts->docker_host && *opts->docker_host
                    ? json_pack("{s:s}", "docker_host", opts->docker_host)
                    : json_object();
  config = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
  json_decref(cfg);
  rq = request_of(c, name, prog, opts);
  request = rq ? json_dumps(rq, JSON_COMPACT) : NULL;
  if (!config || !request) {
    rc = zorch__error_oom();
    goto out;
  }
  char what[128];
  snprintf(what, sizeof what, "image builder '%s' config", f->desc->name);
  if ((rc = zorch__schema_validate(f->desc->config_schema, config, what))) goto out;
  const zorch_image_builder_ops *ops = f->desc->ops;
  if (ops->check_config && (rc = ops->check_config(f->payload, config))) goto out;
  zorch__log(c, ZORCH_LOG_DEBUG, "zorch", "image builder %s (plugin %s): %s", f->desc->name,
             f->plugin_name, request);
  rc = ops->build(&id, f->payload, config, request);
  if (rc > 0) rc = zorch__error_set(ZORCH_EPLUGIN, "image builder '%s' returned %d", f->desc->name, rc);
  if (!rc && image_id) {
    *image_id = id; /* host->alloc'd: malloc, so zorch_free() frees it */
    id = NULL;
  }
out:
  free(id);
  free(config);
  free(request);
  json_decref(rq);
  zorch_client_free(c);
  free(prog_abs);
  return rc;
}
