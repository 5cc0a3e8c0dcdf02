/* zorch — container images built from the host program.
 *
 * zorch_image_build() makes a runnable image without a base image or a
 * registry: the program, its shared-library closure (what the dynamic loader
 * loads for it), extra files and directories, the zorch CLI (the command-step entrypoint) with its
 * closure, the flavor plugins, CA certificates when the host has them, /tmp
 * and a minimal /etc/passwd.  Every file sits at its own absolute path, so a
 * deployment's entrypoint commands work unchanged inside the container.  The
 * root filesystem is imported through the Docker Engine API (Docker, or
 * Podman's compatible service) at DOCKER_HOST.  `zorch image build` is the
 * same from the command line.
 */
#ifndef ZORCH_IMAGE_H
#define ZORCH_IMAGE_H

#include "common.h"

ZORCH_BEGIN_DECLS

#define ZORCH_IMAGE_OPTIONS_VERSION 1

typedef struct zorch_image_options {
  unsigned int version;          /**< ZORCH_IMAGE_OPTIONS_VERSION */
  /** The program to include (NULL: the running program). */
  const char *program;
  /** More executables (each with its library closure), files or directories
   *  (added recursively: a symlink to a file goes in as the file, one to a
   *  directory as a symlink; __pycache__ is skipped; an ELF file inside comes
   *  with its library closure), NULL-terminated; may be NULL. */
  const char *const *extra;
  /** The engine as DOCKER_HOST spells it (NULL: $DOCKER_HOST, else unix:///var/run/docker.sock). */
  const char *docker_host;
  /** Non-zero: leave out the zorch CLI and the plugins. */
  int no_zorch;
} zorch_image_options;

#define ZORCH_IMAGE_OPTIONS_INIT { ZORCH_IMAGE_OPTIONS_VERSION, NULL, NULL, NULL, 0 }

/** Build image `name` ("name" or "name:tag"; tag "latest" by default).
 *  opts may be NULL.  *image_id (may be NULL) gets the engine's image id;
 *  free it with zorch_free().  ZORCH_EIO when the engine cannot be reached
 *  or refuses the import (the message names the socket and the fix),
 *  ZORCH_ENOTFOUND when a file or library cannot be found. */
ZORCH_API int zorch_image_build(const char *name, const zorch_image_options *opts, char **image_id);

ZORCH_END_DECLS

#endif /* ZORCH_IMAGE_H */
