/* zorch plugin kit — Kubernetes client configuration (see zkconfig.h). */
#include "zkconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

extern char **environ;

#define SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"

static void say(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, n, fmt, ap);
  va_end(ap);
}

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0) break;
    if (n + 1 >= cap) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb) {
        free(buf);
        buf = NULL;
      } else {
        buf = nb;
      }
    }
  }
  fclose(f);
  if (!buf) return NULL;
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static char *trim_dup(const char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
  return strndup(s, n);
}

/* ---- base64 (the *-data fields) ------------------------------------------ */

static char *b64_decode(const char *in, size_t *outlen) {
  static signed char map[256];
  static int init;
  if (!init) {
    memset(map, -1, sizeof map);
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; a[i]; i++) map[(unsigned char)a[i]] = (signed char)i;
    init = 1;
  }
  size_t n = strlen(in);
  char *out = malloc(n / 4 * 3 + 4);
  if (!out) return NULL;
  size_t o = 0;
  unsigned v = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)in[i];
    if (ch == '=' ) break;
    if (ch == '\n' || ch == '\r' || ch == ' ' || ch == '\t') continue;
    if (map[ch] < 0) {
      free(out);
      return NULL;
    }
    v = (v << 6) | (unsigned)map[ch];
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (char)((v >> bits) & 0xff);
    }
  }
  out[o] = '\0';
  if (outlen) *outlen = o;
  return out;
}

/* ---- YAML documents --------------------------------------------------- */

typedef struct kfile {
  char *path;
  char *dir;
  yaml_document_t doc;
  bool loaded;
} kfile;

static yaml_node_t *ynode(kfile *f, int id) { return id ? yaml_document_get_node(&f->doc, id) : NULL; }

static yaml_node_t *yget(kfile *f, yaml_node_t *map, const char *key) {
  if (!map || map->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = ynode(f, p->key);
    if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
      return ynode(f, p->value);
  }
  return NULL;
}

/* A scalar's text; NULL when absent or not a scalar; "" for an empty value. */
static const char *ystr(yaml_node_t *n) {
  if (!n || n->type != YAML_SCALAR_NODE) return NULL;
  const char *v = (const char *)n->data.scalar.value;
  /* a plain "null" or "~" is no value */
  if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && (!strcmp(v, "null") || !strcmp(v, "~")))
    return NULL;
  return v;
}

static int ybool(yaml_node_t *n) {
  const char *v = ystr(n);
  return v && (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE") || !strcmp(v, "yes"));
}

static int load_yaml(kfile *f, char *err, size_t errlen) {
  FILE *fp = fopen(f->path, "rb");
  if (!fp) {
    say(err, errlen, "cannot read kubeconfig %s: %s", f->path, strerror(errno));
    return -1;
  }
  yaml_parser_t p;
  yaml_parser_initialize(&p);
  yaml_parser_set_input_file(&p, fp);
  int ok = yaml_parser_load(&p, &f->doc);
  if (!ok) {
    say(err, errlen, "kubeconfig %s is not valid YAML: %s at line %zu, column %zu", f->path,
        p.problem ? p.problem : "parse error", p.problem_mark.line + 1, p.problem_mark.column + 1);
  }
  yaml_parser_delete(&p);
  fclose(fp);
  if (!ok) return -1;
  f->loaded = true;
  yaml_node_t *root = yaml_document_get_root_node(&f->doc);
  if (root && root->type != YAML_MAPPING_NODE) {
    say(err, errlen, "kubeconfig %s: the top level must be a mapping (apiVersion, kind: Config, clusters, "
        "contexts, users, current-context)", f->path);
    return -1;
  }
  return 0;
}

/* Find the entry `name` in the list `list` ("clusters", "contexts",
 * "users") of the first file that has it; returns the entry's inner
 * mapping (the "cluster"/"context"/"user" value) and the file. */
static yaml_node_t *find_named(kfile *files, size_t nf, const char *list, const char *inner,
                               const char *name, kfile **where) {
  for (size_t i = 0; i < nf; i++) {
    if (!files[i].loaded) continue;
    yaml_node_t *root = yaml_document_get_root_node(&files[i].doc);
    yaml_node_t *seq = yget(&files[i], root, list);
    if (!seq || seq->type != YAML_SEQUENCE_NODE) continue;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
      yaml_node_t *e = ynode(&files[i], *it);
      const char *n = ystr(yget(&files[i], e, "name"));
      if (n && !strcmp(n, name)) {
        *where = &files[i];
        return yget(&files[i], e, inner);
      }
    }
  }
  return NULL;
}

static char *resolve_path(const kfile *f, const char *p) {
  if (!p || !*p) return NULL;
  if (p[0] == '/' || !f) return strdup(p);
  if (p[0] == '~' && p[1] == '/' && getenv("HOME")) {
    char *o = malloc(strlen(getenv("HOME")) + strlen(p) + 1);
    if (o) sprintf(o, "%s%s", getenv("HOME"), p + 1);
    return o;
  }
  char *o = malloc(strlen(f->dir) + strlen(p) + 2);
  if (o) sprintf(o, "%s/%s", f->dir, p);
  return o;
}

/* ---- exec credential plugins ------------------------------------------- */

static void free_strv(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

static time_t parse_rfc3339(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!e) return 0;
  time_t t = timegm(&tm);
  while (*e == '.' || (*e >= '0' && *e <= '9')) e++;
  if (*e == '+' || *e == '-') {
    int hh = 0, mm = 0;
    if (sscanf(e + 1, "%d:%d", &hh, &mm) >= 1) t -= (*e == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
  }
  return t;
}

static int run_exec(zk_config *c, char *err, size_t errlen) {
  char info[8192];
  json_t *spec = json_pack("{s:b}", "interactive", 0);
  if (c->exec_cluster_info) {
    json_t *cl = json_pack("{s:s, s:b}", "server", c->server ? c->server : "", "insecure-skip-tls-verify",
                           c->insecure);
    if (c->ca_pem) json_object_set_new(cl, "certificate-authority-data", json_string(c->ca_pem));
    json_object_set_new(spec, "cluster", cl);
  }
  json_t *ec = json_pack("{s:s, s:s, s:o}", "apiVersion", c->exec_api_version, "kind", "ExecCredential",
                         "spec", spec);
  char *ecs = json_dumps(ec, JSON_COMPACT);
  json_decref(ec);
  snprintf(info, sizeof info, "KUBERNETES_EXEC_INFO=%s", ecs ? ecs : "");
  free(ecs);

  int out[2], er[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(er, O_CLOEXEC)) {
    say(err, errlen, "exec credential plugin: pipe: %s", strerror(errno));
    return -1;
  }
  /* environment: ours + the plugin's env entries + KUBERNETES_EXEC_INFO */
  size_t ne = 0, nx = 0;
  while (environ[ne]) ne++;
  while (c->exec_env && c->exec_env[nx]) nx++;
  char **envp = calloc(ne + nx + 2, sizeof *envp);
  size_t k = 0;
  for (size_t i = 0; i < ne; i++) {
    if (!strncmp(environ[i], "KUBERNETES_EXEC_INFO=", 21)) continue;
    bool shadow = false;
    for (size_t j = 0; j < nx; j++) {
      size_t l = strcspn(c->exec_env[j], "=");
      if (!strncmp(environ[i], c->exec_env[j], l + 1)) shadow = true;
    }
    if (!shadow) envp[k++] = environ[i];
  }
  for (size_t j = 0; j < nx; j++) envp[k++] = c->exec_env[j];
  envp[k++] = info;
  envp[k] = NULL;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(er[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execvpe(c->exec_argv[0], c->exec_argv, envp);
    fprintf(stderr, "cannot run %s: %s", c->exec_argv[0], strerror(errno));
    _exit(127);
  }
  free(envp);
  close(out[1]);
  close(er[1]);
  if (pid < 0) {
    close(out[0]);
    close(er[0]);
    say(err, errlen, "exec credential plugin: fork: %s", strerror(errno));
    return -1;
  }
  char *bufs[2] = {NULL, NULL};
  size_t lens[2] = {0, 0};
  struct pollfd pf[2] = {{.fd = out[0], .events = POLLIN}, {.fd = er[0], .events = POLLIN}};
  int open_fds = 2;
  time_t deadline = time(NULL) + 60;
  while (open_fds > 0) {
    int r = poll(pf, 2, 1000);
    if (r < 0 && errno == EINTR) continue;
    if (time(NULL) > deadline) {
      kill(pid, SIGKILL);
      break;
    }
    for (int i = 0; i < 2; i++) {
      if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char tmp[4096];
      ssize_t n = read(pf[i].fd, tmp, sizeof tmp);
      if (n <= 0) {
        close(pf[i].fd);
        pf[i].fd = -1;
        open_fds--;
        continue;
      }
      char *nb = realloc(bufs[i], lens[i] + (size_t)n + 1);
      if (!nb) continue;
      bufs[i] = nb;
      memcpy(bufs[i] + lens[i], tmp, (size_t)n);
      lens[i] += (size_t)n;
      bufs[i][lens[i]] = '\0';
    }
  }
  for (int i = 0; i < 2; i++)
    if (pf[i].fd >= 0) close(pf[i].fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  int rc = -1;
  char *stderr_text = bufs[1] ? trim_dup(bufs[1]) : strdup("");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    say(err, errlen, "exec credential plugin '%s' (user of %s) %s %d%s%s%s%s", c->exec_argv[0], c->source,
        WIFEXITED(status) ? "exited with status" : "was killed by signal",
        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), stderr_text && *stderr_text ? ": " : "",
        stderr_text ? stderr_text : "", c->exec_install_hint ? "\n" : "",
        c->exec_install_hint ? c->exec_install_hint : "");
    goto done;
  }
  json_error_t je;
  json_t *doc = json_loads(bufs[0] ? bufs[0] : "", 0, &je);
  const char *av = doc ? json_string_value(json_object_get(doc, "apiVersion")) : NULL;
  const char *kind = doc ? json_string_value(json_object_get(doc, "kind")) : NULL;
  json_t *st = doc ? json_object_get(doc, "status") : NULL;
  if (!doc) {
    say(err, errlen, "exec credential plugin '%s' printed no ExecCredential JSON on stdout: %s",
        c->exec_argv[0], je.text);
  } else if (!kind || strcmp(kind, "ExecCredential")) {
    say(err, errlen, "exec credential plugin '%s' printed kind '%s', expected ExecCredential", c->exec_argv[0],
        kind ? kind : "(none)");
  } else if (!av || strcmp(av, c->exec_api_version)) {
    say(err, errlen, "exec credential plugin '%s' printed apiVersion '%s', but the kubeconfig asks for '%s'",
        c->exec_argv[0], av ? av : "(none)", c->exec_api_version);
  } else if (!json_is_object(st)) {
    say(err, errlen, "exec credential plugin '%s' printed an ExecCredential without status", c->exec_argv[0]);
  } else {
    const char *tok = json_string_value(json_object_get(st, "token"));
    const char *cd = json_string_value(json_object_get(st, "clientCertificateData"));
    const char *kd = json_string_value(json_object_get(st, "clientKeyData"));
    const char *exp = json_string_value(json_object_get(st, "expirationTimestamp"));
    if (!tok && !(cd && kd)) {
      say(err, errlen, "exec credential plugin '%s' gave neither status.token nor "
          "status.clientCertificateData+clientKeyData", c->exec_argv[0]);
    } else {
      if (tok) {
        free(c->token);
        c->token = strdup(tok);
      }
      if (cd && kd) {
        free(c->cert_pem);
        free(c->key_pem);
        free(c->cert_file);
        free(c->key_file);
        c->cert_file = c->key_file = NULL;
        c->cert_pem = strdup(cd);
        c->key_pem = strdup(kd);
      }
      c->exec_expiry = exp ? parse_rfc3339(exp) : 0;
      rc = 0;
    }
  }
  json_decref(doc);
done:
  free(stderr_text);
  free(bufs[0]);
  free(bufs[1]);
  return rc;
}

/* ---- loading ----------------------------------------------------------- */

static int set_file_or_data(kfile *f, yaml_node_t *m, const char *file_key, const char *data_key,
                            char **file_out, char **pem_out, const char *what, const char *source, char *err,
                            size_t errlen) {
  const char *data = ystr(yget(f, m, data_key));
  const char *file = ystr(yget(f, m, file_key));
  if (data && *data) {
    size_t n;
    *pem_out = b64_decode(data, &n);
    if (!*pem_out) {
      say(err, errlen, "%s: %s (%s) is not valid base64", source, data_key, what);
      return -1;
    }
  } else if (file && *file) {
    *file_out = resolve_path(f, file);
    if (access(*file_out, R_OK) != 0) {
      say(err, errlen, "%s: %s %s (%s): %s", source, file_key, *file_out, what, strerror(errno));
      return -1;
    }
  }
  return 0;
}

static int load_incluster(zk_config *c, char *err, size_t errlen) {
  const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
  const char *dir = getenv("ZORCH_K8S_SERVICEACCOUNT_DIR");
  if (!dir || !*dir) dir = SA_DIR_DEFAULT;
  if (!host || !*host || !port || !*port) {
    say(err, errlen, "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
        "(not running in a pod?); use a kubeconfig instead");
    return -1;
  }
  char path[4096];
  c->source = strdup("in-cluster config (service account)");
  c->server = malloc(strlen(host) + strlen(port) + 16);
  if (strchr(host, ':'))
    sprintf(c->server, "https://[%s]:%s", host, port);
  else
    sprintf(c->server, "https://%s:%s", host, port);
  snprintf(path, sizeof path, "%s/token", dir);
  c->token_file = strdup(path);
  char *tok = read_file(path, NULL);
  if (!tok) {
    say(err, errlen, "in-cluster config: cannot read the service-account token %s: %s", path, strerror(errno));
    return -1;
  }
  c->token = trim_dup(tok);
  free(tok);
  snprintf(path, sizeof path, "%s/ca.crt", dir);
  if (access(path, R_OK) != 0) {
    say(err, errlen, "in-cluster config: cannot read the cluster CA %s: %s", path, strerror(errno));
    return -1;
  }
  c->ca_file = strdup(path);
  snprintf(path, sizeof path, "%s/namespace", dir);
  char *ns = read_file(path, NULL);
  if (ns) {
    c->namespace_ = trim_dup(ns);
    free(ns);
  }
  return 0;
}

static int load_kubeconfig(zk_config *c, const zk_load_options *o, const char *list, char *err,
                           size_t errlen) {
  kfile files[16];
  size_t nf = 0;
  memset(files, 0, sizeof files);
  int rc = -1;
  char *copy = strdup(list);
  for (char *save = NULL, *p = strtok_r(copy, ":", &save); p && nf < 16; p = strtok_r(NULL, ":", &save)) {
    if (!*p) continue;
    struct stat st;
    if (stat(p, &st) != 0) continue; /* kubectl skips missing files in KUBECONFIG */
    files[nf].path = strdup(p);
    char *slash = strrchr(files[nf].path, '/');
    files[nf].dir = slash ? strndup(files[nf].path, (size_t)(slash - files[nf].path)) : strdup(".");
    if (files[nf].dir[0] == '\0') {
      free(files[nf].dir);
      files[nf].dir = strdup("/");
    }
    nf++;
    if (load_yaml(&files[nf - 1], err, errlen) != 0) goto out;
  }
  if (nf == 0) {
    say(err, errlen, "no kubeconfig found: %s does not exist (set KUBECONFIG, or the orchestrator's "
        "kubeconfig option, or run in a cluster)", list);
    goto out;
  }
  const char *ctx_name = o && o->context && *o->context ? o->context : NULL;
  for (size_t i = 0; !ctx_name && i < nf; i++) {
    const char *cc = ystr(yget(&files[i], yaml_document_get_root_node(&files[i].doc), "current-context"));
    if (cc && *cc) ctx_name = cc;
  }
  if (!ctx_name) {
    say(err, errlen, "kubeconfig %s has no current-context and no context was given (set the orchestrator's "
        "kubernetes_context, or run `kubectl config use-context NAME`)", list);
    goto out;
  }
  c->context = strdup(ctx_name);
  size_t srclen = strlen(list) + strlen(ctx_name) + 40;
  c->source = malloc(srclen);
  snprintf(c->source, srclen, "kubeconfig %s (context '%s')", list, ctx_name);
  kfile *cf = NULL, *clf = NULL, *uf = NULL;
  yaml_node_t *ctx = find_named(files, nf, "contexts", "context", ctx_name, &cf);
  if (!ctx) {
    say(err, errlen, "kubeconfig %s: context '%s' not found (see `kubectl config get-contexts`)", list,
        ctx_name);
    goto out;
  }
  const char *cluster = ystr(yget(cf, ctx, "cluster"));
  const char *user = ystr(yget(cf, ctx, "user"));
  const char *ns = ystr(yget(cf, ctx, "namespace"));
  if (ns && *ns) c->namespace_ = strdup(ns);
  if (!cluster || !*cluster) {
    say(err, errlen, "%s: the context names no cluster", c->source);
    goto out;
  }
  yaml_node_t *cl = find_named(files, nf, "clusters", "cluster", cluster, &clf);
  if (!cl) {
    say(err, errlen, "%s: cluster '%s' not found in the kubeconfig", c->source, cluster);
    goto out;
  }
  const char *server = ystr(yget(clf, cl, "server"));
  if (!server || !*server) {
    say(err, errlen, "%s: cluster '%s' has no server", c->source, cluster);
    goto out;
  }
  if (strncmp(server, "https://", 8) && strncmp(server, "http://", 7)) {
    say(err, errlen, "%s: cluster '%s': server '%s' is not an http(s) URL", c->source, cluster, server);
    goto out;
  }
  c->server = strdup(server);
  size_t sl = strlen(c->server);
  while (sl > 0 && c->server[sl - 1] == '/') c->server[--sl] = '\0';
  c->insecure = ybool(yget(clf, cl, "insecure-skip-tls-verify"));
  if (set_file_or_data(clf, cl, "certificate-authority", "certificate-authority-data", &c->ca_file, &c->ca_pem,
                       "the cluster's CA", c->source, err, errlen))
    goto out;
  if (user && *user) {
    yaml_node_t *u = find_named(files, nf, "users", "user", user, &uf);
    if (!u) {
      say(err, errlen, "%s: user '%s' not found in the kubeconfig", c->source, user);
      goto out;
    }
    if (set_file_or_data(uf, u, "client-certificate", "client-certificate-data", &c->cert_file, &c->cert_pem,
                         "the client certificate", c->source, err, errlen) ||
        set_file_or_data(uf, u, "client-key", "client-key-data", &c->key_file, &c->key_pem, "the client key",
                         c->source, err, errlen))
      goto out;
    if ((c->cert_file || c->cert_pem) != (c->key_file || c->key_pem)) {
      say(err, errlen, "%s: user '%s' has a client certificate without a key, or a key without a certificate",
          c->source, user);
      goto out;
    }
    const char *tok = ystr(yget(uf, u, "token"));
    const char *tokfile = ystr(yget(uf, u, "tokenFile"));
    if (tok && *tok) {
      c->token = strdup(tok);
    } else if (tokfile && *tokfile) {
      c->token_file = resolve_path(uf, tokfile);
      char *t = read_file(c->token_file, NULL);
      if (!t) {
        say(err, errlen, "%s: user '%s': cannot read tokenFile %s: %s", c->source, user, c->token_file,
            strerror(errno));
        goto out;
      }
      c->token = trim_dup(t);
      free(t);
    }
    if (yget(uf, u, "username") || yget(uf, u, "auth-provider")) {
      if (!c->token && !c->cert_file && !c->cert_pem && !yget(uf, u, "exec")) {
        say(err, errlen, "%s: user '%s' uses %s, which zorch does not support: use a token, a client "
            "certificate or an exec credential plugin", c->source, user,
            yget(uf, u, "auth-provider") ? "an auth-provider (removed from kubectl in 1.26)" : "basic auth");
        goto out;
      }
    }
    yaml_node_t *ex = yget(uf, u, "exec");
    if (ex) {
      const char *cmd = ystr(yget(uf, ex, "command"));
      const char *av = ystr(yget(uf, ex, "apiVersion"));
      if (!cmd || !*cmd) {
        say(err, errlen, "%s: user '%s': exec has no command", c->source, user);
        goto out;
      }
      if (!av || (strcmp(av, "client.authentication.k8s.io/v1") &&
                  strcmp(av, "client.authentication.k8s.io/v1beta1"))) {
        say(err, errlen, "%s: user '%s': exec apiVersion '%s' is not supported (use "
            "client.authentication.k8s.io/v1 or v1beta1)", c->source, user, av ? av : "(none)");
        goto out;
      }
      c->exec_api_version = strdup(av);
      const char *hint = ystr(yget(uf, ex, "installHint"));
      c->exec_install_hint = xstrdup(hint);
      c->exec_cluster_info = ybool(yget(uf, ex, "provideClusterInfo"));
      yaml_node_t *args = yget(uf, ex, "args");
      size_t na = args && args->type == YAML_SEQUENCE_NODE
                      ? (size_t)(args->data.sequence.items.top - args->data.sequence.items.start)
                      : 0;
      c->exec_argv = calloc(na + 2, sizeof(char *));
      /* a command with a slash but not absolute is relative to the kubeconfig */
      c->exec_argv[0] = strchr(cmd, '/') && cmd[0] != '/' ? resolve_path(uf, cmd) : strdup(cmd);
      for (size_t i = 0; i < na; i++)
        c->exec_argv[i + 1] = xstrdup(ystr(ynode(uf, args->data.sequence.items.start[i])));
      for (size_t i = 1; i <= na; i++)
        if (!c->exec_argv[i]) c->exec_argv[i] = strdup("");
      yaml_node_t *env = yget(uf, ex, "env");
      size_t nenv = env && env->type == YAML_SEQUENCE_NODE
                        ? (size_t)(env->data.sequence.items.top - env->data.sequence.items.start)
                        : 0;
      c->exec_env = calloc(nenv + 1, sizeof(char *));
      for (size_t i = 0; i < nenv; i++) {
        yaml_node_t *e = ynode(uf, env->data.sequence.items.start[i]);
        const char *n = ystr(yget(uf, e, "name")), *v = ystr(yget(uf, e, "value"));
        if (!n) n = "";
        if (!v) v = "";
        c->exec_env[i] = malloc(strlen(n) + strlen(v) + 2);
        sprintf(c->exec_env[i], "%s=%s", n, v);
      }
      if (run_exec(c, err, errlen) != 0) goto out;
    }
  }
  rc = 0;
out:
  for (size_t i = 0; i < nf; i++) {
    if (files[i].loaded) yaml_document_delete(&files[i].doc);
    free(files[i].path);
    free(files[i].dir);
  }
  free(copy);
  return rc;
}

int zk_config_load(zk_config *c, const zk_load_options *o, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  int rc;
  const char *list = o && o->kubeconfig && *o->kubeconfig ? o->kubeconfig : getenv("KUBECONFIG");
  char home_cfg[4096];
  if (!list || !*list) {
    const char *home = getenv("HOME");
    snprintf(home_cfg, sizeof home_cfg, "%s/.kube/config", home ? home : "");
    list = home_cfg;
  }
  int incluster = o ? o->incluster : -1;
  if (incluster == -1) {
    /* kubectl's rule: a kubeconfig when one exists, else in-cluster */
    bool any = false;
    char *copy = strdup(list);
    for (char *save = NULL, *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save))
      if (*p && access(p, F_OK) == 0) any = true;
    free(copy);
    incluster = !any && getenv("KUBERNETES_SERVICE_HOST") && *getenv("KUBERNETES_SERVICE_HOST");
  }
  rc = incluster ? load_incluster(c, err, errlen) : load_kubeconfig(c, o, list, err, errlen);
  if (rc == 0 && o && o->namespace_ && *o->namespace_) {
    free(c->namespace_);
    c->namespace_ = strdup(o->namespace_);
  }
  if (rc == 0 && !c->namespace_) c->namespace_ = strdup("default");
  if (rc != 0) zk_config_free(c);
  return rc;
}

int zk_config_refresh(zk_config *c, bool force, char *err, size_t errlen) {
  if (c->exec_argv && (force || (c->exec_expiry && time(NULL) + 10 >= c->exec_expiry)))
    return run_exec(c, err, errlen);
  if (c->token_file) {
    char *t = read_file(c->token_file, NULL);
    if (!t) {
      say(err, errlen, "cannot re-read token file %s: %s", c->token_file, strerror(errno));
      return -1;
    }
    free(c->token);
    c->token = trim_dup(t);
    free(t);
  }
  return 0;
}

static char **strv_copy(char **v, bool *oom) {
  if (!v) return NULL;
  size_t n = 0;
  while (v[n]) n++;
  char **o = calloc(n + 1, sizeof *o);
  if (!o) {
    *oom = true;
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if (!(o[i] = strdup(v[i]))) *oom = true;
  return o;
}

int zk_config_copy(zk_config *out, const zk_config *in) {
  memset(out, 0, sizeof *out);
  bool oom = false;
#define COPY(f)                               \
  do {                                        \
    out->f = xstrdup(in->f);                  \
    if (in->f && !out->f) oom = true;         \
  } while (0)
  COPY(server);
  COPY(namespace_);
  COPY(context);
  COPY(source);
  COPY(ca_file);
  COPY(ca_pem);
  COPY(cert_file);
  COPY(cert_pem);
  COPY(key_file);
  COPY(key_pem);
  COPY(token);
  COPY(token_file);
  COPY(exec_api_version);
  COPY(exec_install_hint);
#undef COPY
  out->insecure = in->insecure;
  out->exec_cluster_info = in->exec_cluster_info;
  out->exec_expiry = in->exec_expiry;
  out->exec_argv = strv_copy(in->exec_argv, &oom);
  out->exec_env = strv_copy(in->exec_env, &oom);
  if (oom) {
    zk_config_free(out);
    return -1;
  }
  return 0;
}

void zk_config_free(zk_config *c) {
  free(c->server);
  free(c->namespace_);
  free(c->context);
  free(c->source);
  free(c->ca_file);
  free(c->ca_pem);
  free(c->cert_file);
  free(c->cert_pem);
  free(c->key_file);
  free(c->key_pem);
  free(c->token);
  free(c->token_file);
  free_strv(c->exec_argv);
  free_strv(c->exec_env);
  free(c->exec_api_version);
  free(c->exec_install_hint);
  memset(c, 0, sizeof *c);
}
