/* zorch — the local_docker plugin's image builder: images made from files of
 * this host (plugins/common/zimage.h) and imported into a Docker engine.
 *
 * One builder for two callers: the `local_docker` image-builder flavor
 * (zorch_image_build(), `zorch image build`) and the orchestrator's default
 * step image (built from the host program when a step names no image).
 * Both gather an ldib_content with ldib_content_add() and build it with
 * ldib_build().
 */
#ifndef ZORCH_LD_IMAGE_BUILDER_H
#define ZORCH_LD_IMAGE_BUILDER_H

#include <jansson.h>
#include <stddef.h>

#include <zorch/plugin.h>

#include "zdeploy.h"
#include "zdocker.h"

/** Paths without duplicates, as many as there are; v is NULL-terminated
 *  (NULL when empty). */
typedef struct ldib_list {
  char **v;
  size_t n, cap;
} ldib_list;

/** What goes into an image. */
typedef struct ldib_content {
  ldib_list programs;    /**< executables, each with its shared-library closure */
  ldib_list files;       /**< plain files */
  ldib_list trees;       /**< directories, added recursively */
  ldib_list plugin_dirs; /**< directories whose zorch-flavor-*.so go in */
} ldib_content;

/** Append `owned` (malloc'd; the list takes it) unless the list has it:
 *  then it is freed.  NULL is a no-op.  0, or -1 when out of memory. */
int ldib_list_add(ldib_list *l, char *owned);
void ldib_content_free(ldib_content *c);

/** A program's path: `cmd` resolved (realpath) when it holds a '/', else
 *  the first executable regular file of that name in PATH.  malloc'd, or
 *  NULL when there is none. */
char *ldib_which(const char *cmd);

/** Add `x` as the caller named it: an absolute path, a relative one (with a
 *  '/'), or a bare name looked up in PATH.  A directory joins the trees, an
 *  executable the programs, another regular file the files.  1 when added,
 *  0 when `x` is none of these, -1 when out of memory. */
int ldib_content_add(ldib_content *c, const char *x);

/** Build image `ref` ("name[:tag]") of `c` on the engine and import it.
 *  *out_id (malloc'd; may be NULL) gets its id.  ZORCH_OK, or
 *  ZORCH_ENOTFOUND (a file or library is missing) / ZORCH_EIO with the
 *  reason in `err`. */
int ldib_build(char **out_id, zd_engine *eng, const char *ref, const ldib_content *c, char *err,
               size_t errlen);

/** What the default step image of a deployment holds: the program when a
 *  step is a function step, the zorch CLI (`zorch_command`), the commands
 *  of command steps (argv[0] in PATH), the image_add lists of `config` and
 *  of the steps' local_docker settings (zdeploy's view: each step's own,
 *  else the pipeline's defaults), and the plugins of `plugin_dir`
 *  (may be NULL).  *hash covers the program's version and the path, size
 *  and mtime of every program and file and of every file in the trees: a
 *  change to any of them makes a new tag.  ZORCH_OK, or an error with
 *  host->error_set(). */
int ldib_default_content(ldib_content *c, unsigned long long *hash, const zorch_host *h,
                         const zdep *dep, json_t *config, const char *zorch_command,
                         const char *plugin_dir);

/** The default step image of a deployment (see ldib_default_content),
 *  tagged localhost/zorch-<pipeline>:<hash>, built unless the engine has
 *  it.  *out_ref (malloc'd) gets its name. */
int ldib_default_image(char **out_ref, const zorch_host *h, zd_engine *eng, const char *pipeline,
                       const zdep *dep, json_t *config, const char *zorch_command);

/** The `local_docker` image-builder flavor.  Its payload (add_flavor's
 *  flavor_payload) is the plugin's host table. */
extern const zorch_flavor_desc ldib_flavor;

#endif
