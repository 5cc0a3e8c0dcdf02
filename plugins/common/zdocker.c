/* zorch plugin kit — Docker Engine API connection (zdocker.h).  Building
 * images from host files is zimage.c. */
#include "zdocker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void zd_errf(char *err, size_t n, const char *fmt, ...) {
  if (!err || !n) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, n, fmt, ap);
  va_end(ap);
}

/* "1.41" -> 1041 */
static int api_num(const char *v) {
  int a = 0, b = 0;
  if (!v || sscanf(v, "%d.%d", &a, &b) != 2) return -1;
  return a * 1000 + b;
}

static const char start_hint[] =
    "Start an engine and point DOCKER_HOST at its socket: Docker (`sudo systemctl start docker`; "
    "socket unix:///var/run/docker.sock) or Podman's API service (`podman system service "
    "--time=0 unix:///run/podman/podman.sock &`, or `systemctl --user start podman.socket` and "
    "DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock)";

bool zd_host_supported(const char *docker_host) {
  return !strncmp(docker_host, "unix://", 7) || !strncmp(docker_host, "tcp://", 6);
}

int zd_connect(zd_engine *e, const char *docker_host, char *err, size_t errlen) {
  memset(e, 0, sizeof *e);
  const char *src = "given in the config";
  if (!docker_host || !*docker_host) {
    docker_host = getenv("DOCKER_HOST");
    src = "from DOCKER_HOST";
  }
  if (!docker_host || !*docker_host) {
    docker_host = "unix:///var/run/docker.sock";
    src = "the default; DOCKER_HOST is not set";
  }
  snprintf(e->where, sizeof e->where, "%s (%s)", docker_host, src);
  zh_options o = {.service_name = "the Docker engine", .connect_timeout_ms = 5000, .max_attempts = 3};
  char url[600], ca[600], cert[600], key[600];
  if (!strncmp(docker_host, "unix://", 7)) {
    o.unix_socket = docker_host + 7;
    o.base_url = "http://localhost";
    struct stat st;
    if (stat(o.unix_socket, &st) != 0) {
      zd_errf(err, errlen, "cannot reach the Docker engine: no socket at %s (%s). %s", o.unix_socket,
           e->where, start_hint);
      return -1;
    }
  } else if (!strncmp(docker_host, "tcp://", 6)) {
    const char *tv = getenv("DOCKER_TLS_VERIFY");
    bool tls = tv && *tv && strcmp(tv, "0") != 0;
    snprintf(url, sizeof url, "%s://%s", tls ? "https" : "http", docker_host + 6);
    o.base_url = url;
    if (tls) {
      const char *cp = getenv("DOCKER_CERT_PATH");
      if (!cp || !*cp) cp = getenv("HOME") ? getenv("HOME") : "";
      snprintf(ca, sizeof ca, "%s%s/ca.pem", cp, getenv("DOCKER_CERT_PATH") ? "" : "/.docker");
      snprintf(cert, sizeof cert, "%s%s/cert.pem", cp, getenv("DOCKER_CERT_PATH") ? "" : "/.docker");
      snprintf(key, sizeof key, "%s%s/key.pem", cp, getenv("DOCKER_CERT_PATH") ? "" : "/.docker");
      o.ca_file = ca;
      o.cert_file = cert;
      o.key_file = key;
    }
  } else {
    zd_errf(err, errlen, "DOCKER_HOST '%s' (%s) is not supported: use unix:///path/to.sock or tcp://host:port",
         docker_host, src);
    return -1;
  }
  zh_error he = {0};
  e->http = zh_client_new(&o, &he);
  if (!e->http) {
    zd_errf(err, errlen, "%s", he.message);
    zh_error_clear(&he);
    return -1;
  }
  json_t *v = NULL;
  int rc = zh_json(e->http, "GET", "/version", NULL, &v, &he);
  if (rc != ZH_OK) {
    if (rc == ZH_ETRANSPORT)
      zd_errf(err, errlen, "cannot reach the Docker engine at %s: %s. %s", e->where, he.message, start_hint);
    else
      zd_errf(err, errlen, "the Docker engine at %s did not answer GET /version: %s", e->where, he.message);
    zh_error_clear(&he);
    zd_close(e);
    return -1;
  }
  const char *api = json_string_value(json_object_get(v, "ApiVersion"));
  int have = api_num(api), lo = api_num(ZD_API_MIN), hi = api_num(ZD_API_MAX);
  if (have < lo) {
    zd_errf(err, errlen, "the Docker engine at %s speaks API %s; zorch needs %s or newer (upgrade the engine)",
         e->where, api ? api : "(unknown)", ZD_API_MIN);
    json_decref(v);
    zd_close(e);
    return -1;
  }
  if (have > hi) snprintf(e->api, sizeof e->api, "%s", ZD_API_MAX);
  else snprintf(e->api, sizeof e->api, "%s", api);
  const char *name = NULL;
  json_t *comps = json_object_get(v, "Components");
  if (json_array_size(comps)) name = json_string_value(json_object_get(json_array_get(comps, 0), "Name"));
  const char *ver = json_string_value(json_object_get(v, "Version"));
  snprintf(e->engine, sizeof e->engine, "%s %s", name ? name : "Engine", ver ? ver : "?");
  json_decref(v);
  return 0;
}

void zd_close(zd_engine *e) {
  if (!e) return;
  zh_client_free(e->http);
  e->http = NULL;
}

char *zd_path(const zd_engine *e, const char *fmt, ...) {
  char tail[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tail, sizeof tail, fmt, ap);
  va_end(ap);
  size_t n = strlen(tail) + 32;
  char *p = malloc(n);
  if (p) snprintf(p, n, "/v%s%s", e->api, tail);
  return p;
}

int zd_image_exists(zd_engine *e, const char *ref, zh_error *err) {
  char *esc = zh_escape(ref);
  char *path = esc ? zd_path(e, "/images/%s/json", esc) : NULL;
  free(esc);
  if (!path) return -1;
  zh_request rq = {.method = "GET", .path = path};
  int rc = zh_do(e->http, &rq, NULL, err);
  free(path);
  if (rc == ZH_OK) return 1;
  if (rc == ZH_EHTTP && err->status == 404) {
    zh_error_clear(err); /* not an error: no such image */
    err->status = 404;
    return 0;
  }
  return -1;
}
