/* zorch — zorch_image_build(): an image from the host program (see zorch/image.h). */
#include "client_int.h"
#include "deployment.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zimage.h"

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
  if (prog && prog[0] != '/') {
    prog_abs = strchr(prog, '/') ? realpath(prog, NULL) : zorch__which(prog);
    if (!prog_abs)
      return zorch__error_set(ZORCH_ENOTFOUND, "cannot build an image of '%s': no such program%s", prog,
                              strchr(prog, '/') ? "" : " in PATH");
    prog = prog_abs;
  }
  zorch__strv progs = {0}, files = {0}, dirs = {0}, trees = {0};
  char *zcmd = NULL;
  int rc = zorch__strv_push(&progs, prog);
  if (!opts->no_zorch && !rc) {
    /* the command-step entrypoint and the flavors it may load */
    const char *zc = getenv("ZORCH_COMMAND");
    zcmd = zc && *zc ? (zc[0] == '/' ? zorch__strdup(zc) : realpath(zc, NULL))
                     : zorch__asprintf("%s/zorch", ZORCH_BINDIR);
    if (zcmd && access(zcmd, X_OK) == 0 && strcmp(zcmd, prog) != 0) rc = zorch__strv_push(&progs, zcmd);
    const char *pp = getenv("ZORCH_PLUGIN_PATH");
    char *ppc = pp ? zorch__strdup(pp) : NULL;
    for (char *save = NULL, *t = ppc ? strtok_r(ppc, ":", &save) : NULL; t && !rc;
         t = strtok_r(NULL, ":", &save))
      rc = zorch__strv_push(&dirs, t);
    free(ppc);
    if (!rc && access(ZORCH_PLUGIN_DIR, R_OK) == 0) rc = zorch__strv_push(&dirs, ZORCH_PLUGIN_DIR);
  }
  for (size_t i = 0; !rc && opts->extra && opts->extra[i]; i++) {
    const char *x = opts->extra[i];
    struct stat st;
    char *w = x[0] == '/' ? zorch__strdup(x) : zorch__which(x);
    if (!w || stat(w, &st) != 0) {
      rc = zorch__error_set(ZORCH_ENOTFOUND, "cannot add '%s' to the image: no such file or directory%s", x,
                            strchr(x, '/') ? "" : " (and not found in PATH)");
      free(w);
      break;
    }
    rc = S_ISDIR(st.st_mode)    ? zorch__strv_push(&trees, w)
         : (st.st_mode & 0111) ? zorch__strv_push(&progs, w)
                               : zorch__strv_push(&files, w);
    free(w);
  }
  free(zcmd);
  if (rc) goto out;
  zd_engine eng;
  char err[2048];
  if (zd_connect(&eng, opts->docker_host, err, sizeof err)) {
    rc = zorch__error_set(ZORCH_EIO, "%s", err);
    goto out;
  }
  zi_spec spec = {.ref = name,
                        .programs = (const char *const *)progs.v,
                        .files = (const char *const *)files.v,
                        .plugin_dirs = (const char *const *)dirs.v,
                        .trees = (const char *const *)trees.v};
  char *id = NULL;
  if (zi_build(&eng, &spec, &id, NULL, NULL, err, sizeof err)) {
    rc = zorch__error_set(strstr(err, "not found") || strstr(err, "cannot read") ? ZORCH_ENOTFOUND : ZORCH_EIO,
                          "%s", err);
  } else if (image_id) {
    *image_id = zorch__strdup(id);
  }
  free(id);
  zd_close(&eng);
out:
  zorch__strv_clear(&progs);
  zorch__strv_clear(&files);
  zorch__strv_clear(&dirs);
  zorch__strv_clear(&trees);
  free(prog_abs);
  return rc;
}
