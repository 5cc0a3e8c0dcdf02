/* zorch plugin kit — connecting to a Docker Engine API (Docker or Podman's
 * Docker-compatible service).  Images from host files: zimage.h. */
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

/** Is docker_host spelled as zd_connect accepts it (unix://... or tcp://...)? */
bool zd_host_supported(const char *docker_host);

/** Versioned API path: "/v1.41" + path (malloc'd). */
char *zd_path(const zd_engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Does the engine have this image?  1 yes, 0 no, -1 error (err set). */
int zd_image_exists(zd_engine *e, const char *ref, zh_error *err);

/** snprintf into a caller's error buffer `err` of `n` bytes (nothing when
 *  err is NULL or n is 0): the kit's Docker and image modules report errors
 *  this way. */
void zd_errf(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
