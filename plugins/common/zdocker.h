/* zorch plugin kit — connecting to a Docker Engine API (Docker or Podman's
 * Docker-compatible service), and building images from a host program. */
#ifndef ZORCH_ZDOCKER_H
#define ZORCH_ZDOCKER_H

#include "zhttp.h"

/** API versions zorch speaks: the engine's version is used when it lies in
 *  between (DeviceRequests need 1.40). */
#define ZD_API_MIN "1.40"
#define ZD_API_MAX "1.44"

typedef struct zd_engine {
  zh_client *http;
  char api[16];        /**< negotiated API version, "1.41" */
  char where[512];     /**< what was tried: "unix:///run/x.sock (from DOCKER_HOST)" */
  char engine[128];    /**< "Podman Engine 4.3.1" / "Docker Engine 24.0.7" */
} zd_engine;

/** Connect: docker_host as DOCKER_HOST spells it (unix:///path, tcp://host:port;
 *  NULL: $DOCKER_HOST, else unix:///var/run/docker.sock), TLS from
 *  DOCKER_TLS_VERIFY/DOCKER_CERT_PATH for tcp.  Pings the engine and
 *  negotiates the API version.  On failure returns non-zero with a message
 *  naming the socket and how to start an engine. */
int zd_connect(zd_engine *e, const char *docker_host, char *err, size_t errlen);
void zd_close(zd_engine *e);

/** Versioned API path: "/v1.41" + path (malloc'd). */
char *zd_path(const zd_engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Does the engine have this image?  1 yes, 0 no, -1 error (err set). */
int zd_image_exists(zd_engine *e, const char *ref, zh_error *err);

/** What goes into an image built from the host. */
typedef struct zd_image_spec {
  const char *ref;                  /**< "name" or "name:tag" (default tag: latest) */
  const char *const *programs;      /**< executables: each with its shared-library closure */
  const char *const *files;         /**< plain files (no closure), e.g. data; may be NULL */
  const char *const *plugin_dirs;   /**< zorch-flavor-*.so found here join the programs */
  const char *const *trees;         /**< directories added recursively (see zd_walk); an ELF
                                         file inside joins with its library closure; may be NULL */
} zd_image_spec;

/** Walk directory `root` recursively as an image build adds it: `cb` gets
 *  each regular file (a symlink to a file counts as the file: its content
 *  goes in at the link's path) with is_link 0, and each symlink to a
 *  directory with is_link 1 (kept as a symlink, not followed).  __pycache__
 *  directories and dangling symlinks are skipped.  Entries come sorted by
 *  name.  Returns 0, -1 with err set, or cb's non-zero return. */
int zd_walk(const char *root, int (*cb)(const char *path, int is_link, void *arg), void *arg,
            char *err, size_t errlen);

/** Build a root filesystem from the spec (every file at its own absolute
 *  path, the closure found with the dynamic loader's --list, CA certificates
 *  when the host has them, /tmp, a minimal /etc/passwd) and import it as
 *  `ref` through POST /images/create?fromSrc=-, tagging afterwards.
 *  *image_id gets the image id (malloc'd) when not NULL; *bytes the tar size. */
int zd_image_build(zd_engine *e, const zd_image_spec *spec, char **image_id, size_t *bytes,
                   size_t *n_files, char *err, size_t errlen);

#endif
