/* zorch plugin kit — images built from host files, without a base image or a
 * registry: a program with its shared-library closure (what the dynamic
 * loader loads), files, directory trees and flavor plugins, every file at
 * its own absolute path, written as a ustar root filesystem and imported
 * through the Docker Engine API (zdocker.h). */
#ifndef ZORCH_ZIMAGE_H
#define ZORCH_ZIMAGE_H

#include <stddef.h>

#include "zdocker.h"

/** What goes into an image built from the host. */
typedef struct zi_spec {
  const char *ref;                  /**< "name" or "name:tag" (default tag: latest) */
  const char *const *programs;      /**< executables: each with its shared-library closure */
  const char *const *files;         /**< plain files (no closure), e.g. data; may be NULL */
  const char *const *plugin_dirs;   /**< zorch-flavor-*.so found here join the programs */
  const char *const *trees;         /**< directories added recursively (see zi_walk); an ELF
                                         file inside joins with its library closure; may be NULL */
} zi_spec;

/** Walk directory `root` recursively as an image build adds it: `cb` gets
 *  each regular file (a symlink to a file counts as the file: its content
 *  goes in at the link's path) with is_link 0, and each symlink to a
 *  directory with is_link 1 (kept as a symlink, not followed).  __pycache__
 *  directories and dangling symlinks are skipped.  Entries come sorted by
 *  name.  Returns 0, -1 with err set, or cb's non-zero return. */
int zi_walk(const char *root, int (*cb)(const char *path, int is_link, void *arg), void *arg,
            char *err, size_t errlen);

/** Build a root filesystem from the spec (every file at its own absolute
 *  path, the closure found with the dynamic loader's --list, CA certificates
 *  when the host has them, /tmp, a minimal /etc/passwd) and import it as
 *  `ref` through POST /images/create?fromSrc=-, tagging afterwards.
 *  *image_id gets the image id (malloc'd) when not NULL; *bytes the tar size. */
int zi_build(zd_engine *e, const zi_spec *spec, char **image_id, size_t *bytes, size_t *n_files,
             char *err, size_t errlen);

#endif
