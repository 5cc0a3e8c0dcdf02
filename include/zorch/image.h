/* zorch — container images built from the host program.
 *
 * zorch_image_build() makes a runnable image without a base image or a
 * registry: the program, its shared-library closure (what the dynamic loader
 * loads for it), extra files and directories, the zorch CLI (the command-step entrypoint) with its
 * closure, the flavor plugins, CA certificates when the host has them, /tmp
 * and a minimal /etc/passwd.  Every file sits at its own absolute path, so a
 * deployment's entrypoint commands work unchanged inside the container.
 * `zorch image build` is the same from the command line.
 *
 * libzorch itself builds nothing: an image-builder flavor does (plugin ABI
 * 1.2, zorch_image_builder_ops in <zorch/plugin.h>), found among the plugins
 * that $ZORCH_PLUGIN_PATH and the install directory hold.  The local_docker
 * plugin provides one, `local_docker`, which imports the root filesystem
 * through the Docker Engine API (Docker, or Podman's compatible service) at
 * docker_host or $DOCKER_HOST.  Which builder builds:
 *   1. the one zorch_image_options.builder names (`--builder`), else
 *   2. the one $ZORCH_IMAGE_BUILDER names, else
 *   3. the only image builder loaded; with none or several loaded, an error
 *      says which plugin provides one or asks to name one.
 */
#ifndef ZORCH_IMAGE_H
#define ZORCH_IMAGE_H

#include "common.h"

ZORCH_BEGIN_DECLS

#define ZORCH_IMAGE_OPTIONS_VERSION 2

typedef struct zorch_image_options {
  unsigned int version;          /**< ZORCH_IMAGE_OPTIONS_VERSION */
  /** The program to include (NULL: the running program). */
  const char *program;
  /** More executables (each with its library closure), files or directories
   *  (added recursively: a symlink to a file goes in as the file, one to a
   *  directory as a symlink; __pycache__ is skipped; an ELF file inside comes
   *  with its library closure), NULL-terminated; may be NULL. */
  const char *const *extra;
  /** The engine as DOCKER_HOST spells it (NULL: $DOCKER_HOST, else
   *  unix:///var/run/docker.sock); the builder's "docker_host" config. */
  const char *docker_host;
  /** Non-zero: leave out the zorch CLI and the plugins. */
  int no_zorch;
  /* ---- version 2 ---- */
  /** The image-builder flavor to build with (NULL: $ZORCH_IMAGE_BUILDER,
   *  else the only one loaded; see above). */
  const char *builder;
} zorch_image_options;

#define ZORCH_IMAGE_OPTIONS_INIT { ZORCH_IMAGE_OPTIONS_VERSION, NULL, NULL, NULL, 0, NULL }

/** Build image `name` ("name" or "name:tag"; tag "latest" by default).
 *  opts may be NULL (versions 1 and 2 are accepted).  *image_id (may be
 *  NULL) gets the image's id as the builder reports it; free it with
 *  zorch_free().  ZORCH_ENOTFOUND when no image builder is loaded (the
 *  message names the plugin that provides one), when the one named is not,
 *  or when a file or library cannot be found; ZORCH_EINVALID when several
 *  builders are loaded and none is named, or the builder refuses its
 *  config; ZORCH_EIO when the engine cannot be reached or refuses the
 *  import (the message names the socket and the fix).  Errors of the
 *  builder start with "plugin <name> (<file>): ".
 *  It loads the plugins for the call ($ZORCH_PLUGIN_PATH, then
 *  $ZORCH_PLUGIN_SYSTEM_PATH or the install directory, as a client does)
 *  and unloads them after; it creates no zorch home. */
ZORCH_API int zorch_image_build(const char *name, const zorch_image_options *opts, char **image_id);

ZORCH_END_DECLS

#endif /* ZORCH_IMAGE_H */
