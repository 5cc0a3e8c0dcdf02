/* Test artifact-store flavor `dirstore`: an object store kept in a
 * directory, implemented with nothing but the plugin ABI (zorch_host,
 * zorch_artifact_store_ops) and POSIX calls.  It is what an S3 plugin is to
 * zorch, without the network:
 *
 *   - keys are flat: every object is one file in <root>/o/, its name the key
 *     with '%' and '/' escaped (%25, %2F), so there are no directories for
 *     zorch to lean on, and listing by prefix (and by delimiter) is done the
 *     way an object store does it;
 *   - a put is atomic: written to <root>/t/, fsync'd, then renamed into
 *     place (or, with ZORCH_STORE_PUT_IF_ABSENT, linked: an object that
 *     exists stays as it is);
 *   - credentials by reference: a store opened with "key_file" holds the
 *     key's content in <root>/KEY, and step_env() hands a step the variable
 *     DIRSTORE_KEY_FILE (the file's path, never the key); open_uri() of a
 *     keyed store refuses to work without it.
 *
 * For tests it appends one line per put, "put <flags> <key>", to the file
 * $DIRSTORE_LOG when that is set.
 *
 * URI: dirstore:///abs/dir.  Config: {"path": "/abs/dir", "key_file": "/abs/file"}.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zorch/plugin.h>

#define SCHEME "dirstore://"

typedef struct {
  const zorch_host *host;
  char *root, *objects, *tmp;
  char *key_file; /* NULL: no credentials */
} dstore;

static int fail_errno(const zorch_host *h, int code, const char *what, const char *name) {
  return zorch_host_errorf(h, code, "%s '%s': %s", what, name, strerror(errno));
}

static char *dup_printf(const char *fmt, const char *a, const char *b) {
  size_t n = strlen(fmt) + strlen(a) + (b ? strlen(b) : 0) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, fmt, a, b ? b : "");
  return s;
}

/* host->alloc'd copy, for strings handed to the host */
static char *host_strdup(const zorch_host *h, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = h->alloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- keys and names ------------------------------------------------------------ */

static char *encode(const char *key) {
  size_t n = 0;
  for (const char *c = key; *c; c++) n += (*c == '/' || *c == '%') ? 3 : 1;
  char *s = malloc(n + 1), *o = s;
  if (!s) return NULL;
  for (const char *c = key; *c; c++) {
    if (*c == '/') o += sprintf(o, "%%2F");
    else if (*c == '%') o += sprintf(o, "%%25");
    else *o++ = *c;
  }
  *o = '\0';
  return s;
}

static char *decode(const char *name) {
  char *s = malloc(strlen(name) + 1), *o = s;
  if (!s) return NULL;
  for (const char *c = name; *c; c++) {
    if (c[0] == '%' && c[1] == '2' && (c[2] == 'F' || c[2] == '5')) {
      *o++ = c[2] == 'F' ? '/' : '%';
      c += 2;
    } else {
      *o++ = *c;
    }
  }
  *o = '\0';
  return s;
}

static int check_key(const zorch_host *h, const char *key) {
  if (!key || !*key || key[0] == '/')
    return zorch_host_errorf(h, ZORCH_EINVALID, "invalid key '%s'", key ? key : "(null)");
  return ZORCH_OK;
}

static char *object_path(const dstore *d, const char *key) {
  char *e = encode(key);
  char *p = e ? dup_printf("%s/%s", d->objects, e) : NULL;
  free(e);
  return p;
}

static void note_put(uint32_t flags, const char *key) {
  const char *log = getenv("DIRSTORE_LOG");
  if (!log) return;
  FILE *f = fopen(log, "a");
  if (!f) return;
  fprintf(f, "put %u %s\n", flags, key);
  fclose(f);
}

/* ---- opening ---------------------------------------------------------------------- */

static char *read_small(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strdup(buf);
}

static void dstore_free(dstore *d) {
  if (!d) return;
  free(d->root);
  free(d->objects);
  free(d->tmp);
  free(d->key_file);
  free(d);
}

/* Open the store at `root` with the key file `key_file` (may be NULL);
 * `provision`: a new store takes the key. */
static int open_root(const zorch_host *h, void **out, const char *root, const char *key_file,
                     bool provision) {
  *out = NULL;
  if (!root || root[0] != '/')
    return zorch_host_errorf(h, ZORCH_EINVALID, "the store's path must be absolute");
  dstore *d = calloc(1, sizeof *d);
  if (!d) return ZORCH_ENOMEM;
  d->host = h;
  d->root = strdup(root);
  d->objects = dup_printf("%s/o", root, NULL);
  d->tmp = dup_printf("%s/t", root, NULL);
  d->key_file = key_file ? strdup(key_file) : NULL;
  if (!d->root || !d->objects || !d->tmp || (key_file && !d->key_file)) {
    dstore_free(d);
    return ZORCH_ENOMEM;
  }
  int rc = ZORCH_OK;
  const char *dirs[] = {d->root, d->objects, d->tmp};
  for (size_t i = 0; i < 3 && !rc; i++)
    if (mkdir(dirs[i], 0755) != 0 && errno != EEXIST) rc = fail_errno(h, ZORCH_EIO, "cannot create", dirs[i]);
  char *kp = dup_printf("%s/KEY", root, NULL);
  char *want = kp ? read_small(kp) : NULL;
  char *have = key_file ? read_small(key_file) : NULL;
  if (!rc && key_file && !have) {
    rc = fail_errno(h, ZORCH_EIO, "cannot read the key file", key_file);
  } else if (!rc && want && (!have || strcmp(want, have) != 0)) {
    rc = zorch_host_errorf(h, ZORCH_EIO,
                           "store %s needs its key: set DIRSTORE_KEY_FILE (or \"key_file\") to the "
                           "file that holds it",
                           root);
  } else if (!rc && !want && have && provision) {
    FILE *f = fopen(kp, "w");
    if (!f || fputs(have, f) < 0) rc = fail_errno(h, ZORCH_EIO, "cannot write", kp);
    if (f) fclose(f);
  }
  free(kp);
  free(want);
  free(have);
  if (rc) {
    dstore_free(d);
    return rc;
  }
  *out = d;
  return ZORCH_OK;
}

static int ds_check_config(void *payload, const char *config_json) {
  json_t *c = json_loads(config_json, 0, NULL);
  const char *path = json_string_value(json_object_get(c, "path"));
  struct stat sb;
  int rc = ZORCH_OK;
  if (path && stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode))
    rc = zorch_host_errorf(payload, ZORCH_EINVALID, "path '%s' is not a directory", path);
  json_decref(c);
  return rc;
}

static int ds_open(void **out, void *payload, const char *config_json) {
  json_t *c = json_loads(config_json, 0, NULL);
  int rc = open_root(payload, out, json_string_value(json_object_get(c, "path")),
                     json_string_value(json_object_get(c, "key_file")), true);
  json_decref(c);
  return rc;
}

static int ds_open_uri(void **out, void *payload, const char *uri) {
  if (strncmp(uri, SCHEME, strlen(SCHEME)) != 0)
    return zorch_host_errorf(payload, ZORCH_EINVALID, "'%s' is not a %s URI", uri, SCHEME);
  const char *kf = getenv("DIRSTORE_KEY_FILE");
  return open_root(payload, out, uri + strlen(SCHEME), kf && *kf ? kf : NULL, false);
}

static void ds_close(void *store) { dstore_free(store); }

static int ds_uri(char **out, void *store) {
  dstore *d = store;
  char *u = dup_printf(SCHEME "%s", d->root, NULL);
  *out = u ? host_strdup(d->host, u) : NULL;
  free(u);
  return *out ? ZORCH_OK : ZORCH_ENOMEM;
}

/* ---- objects ---------------------------------------------------------------------- */

/* Write a temporary from `src` (a file) or `data`, then publish it at `key`. */
static int put(dstore *d, const char *key, const char *src, const void *data, size_t len,
               uint32_t flags) {
  const zorch_host *h = d->host;
  int rc = check_key(h, key);
  if (rc) return rc;
  note_put(flags, key);
  char *final = object_path(d, key);
  char *tmpl = dup_printf("%s/put-XXXXXX", d->tmp, NULL);
  if (!final || !tmpl) {
    free(final);
    free(tmpl);
    return ZORCH_ENOMEM;
  }
  int fd = mkstemp(tmpl);
  if (fd < 0) {
    rc = fail_errno(h, ZORCH_EIO, "cannot create a temporary in", d->tmp);
    goto out;
  }
  int in = src ? open(src, O_RDONLY | O_CLOEXEC) : -1;
  if (src && in < 0) rc = fail_errno(h, errno == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, "cannot open", src);
  char buf[65536];
  const char *p = data;
  size_t left = len;
  while (!rc) {
    ssize_t n;
    if (src) {
      n = read(in, buf, sizeof buf);
      if (n < 0) rc = fail_errno(h, ZORCH_EIO, "cannot read", src);
      if (n <= 0) break;
      p = buf;
    } else {
      if (!left) break;
      n = (ssize_t)left;
    }
    for (ssize_t off = 0; !rc && off < n;) {
      ssize_t w = write(fd, p + off, (size_t)(n - off));
      if (w < 0) rc = fail_errno(h, ZORCH_EIO, "cannot write", tmpl);
      else off += w;
    }
    if (!src) left = 0;
  }
  if (in >= 0) close(in);
  if (!rc && fsync(fd) != 0) rc = fail_errno(h, ZORCH_EIO, "cannot fsync", tmpl);
  close(fd);
  if (!rc && (flags & ZORCH_STORE_PUT_IF_ABSENT)) {
    /* link(2) never replaces: the first object of a key stays */
    if (link(tmpl, final) != 0 && errno != EEXIST) rc = fail_errno(h, ZORCH_EIO, "cannot publish", final);
    unlink(tmpl);
  } else if (!rc && rename(tmpl, final) != 0) {
    rc = fail_errno(h, ZORCH_EIO, "cannot publish", final);
  }
  if (rc) unlink(tmpl);
out:
  free(final);
  free(tmpl);
  return rc;
}

static int ds_put_file(void *store, const char *key, const char *path, uint32_t flags) {
  return put(store, key, path, NULL, 0, flags);
}

static int ds_put_bytes(void *store, const char *key, const void *data, size_t len, uint32_t flags) {
  return put(store, key, NULL, data, len, flags);
}

static int open_object(dstore *d, const char *key, int *fd) {
  int rc = check_key(d->host, key);
  if (rc) return rc;
  char *p = object_path(d, key);
  if (!p) return ZORCH_ENOMEM;
  *fd = open(p, O_RDONLY | O_CLOEXEC);
  if (*fd < 0)
    rc = errno == ENOENT ? zorch_host_errorf(d->host, ZORCH_ENOTFOUND, "no object '%s'", key)
                         : fail_errno(d->host, ZORCH_EIO, "cannot open", p);
  free(p);
  return rc;
}

static int ds_get_stream(void *store, const char *key, zorch_store_sink sink, void *sink_data) {
  dstore *d = store;
  int fd;
  int rc = open_object(d, key, &fd);
  if (rc) return rc;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) rc = fail_errno(d->host, ZORCH_EIO, "cannot read", key);
    if (n <= 0) break;
    if ((rc = sink(sink_data, buf, (size_t)n)) != 0) break;
  }
  close(fd);
  return rc;
}

typedef struct {
  const zorch_host *host;
  int fd;
  const char *path;
} to_file;

static int write_chunk(void *data, const void *chunk, size_t len) {
  to_file *t = data;
  for (size_t off = 0; off < len;) {
    ssize_t w = write(t->fd, (const char *)chunk + off, len - off);
    if (w < 0) return fail_errno(t->host, ZORCH_EIO, "cannot write", t->path);
    off += (size_t)w;
  }
  return ZORCH_OK;
}

static int ds_get_to_path(void *store, const char *key, const char *path) {
  dstore *d = store;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return fail_errno(d->host, ZORCH_EIO, "cannot create", path);
  to_file t = {d->host, fd, path};
  int rc = ds_get_stream(store, key, write_chunk, &t);
  if (close(fd) != 0 && !rc) rc = fail_errno(d->host, ZORCH_EIO, "cannot close", path);
  if (rc) unlink(path);
  return rc;
}

static int ds_exists(void *store, const char *key) {
  dstore *d = store;
  int rc = check_key(d->host, key);
  if (rc) return rc;
  char *p = object_path(d, key);
  if (!p) return ZORCH_ENOMEM;
  struct stat sb;
  rc = stat(p, &sb) == 0 ? 1 : errno == ENOENT ? 0 : fail_errno(d->host, ZORCH_EIO, "cannot stat", p);
  free(p);
  return rc;
}

typedef struct {
  char *key;
  uint64_t size;
} listed;

static int cmp_listed(const void *a, const void *b) {
  return strcmp(((const listed *)a)->key, ((const listed *)b)->key);
}

static int ds_list(void *store, const char *prefix, const char *delimiter, zorch_store_each each,
                   void *each_data) {
  dstore *d = store;
  if (!prefix) prefix = "";
  if (delimiter && strcmp(delimiter, "/") != 0)
    return zorch_host_errorf(d->host, ZORCH_ENOTSUPPORTED, "delimiter must be \"/\"");
  DIR *dir = opendir(d->objects);
  if (!dir) return fail_errno(d->host, ZORCH_EIO, "cannot list", d->objects);
  size_t pl = strlen(prefix), n = 0, cap = 0;
  listed *v = NULL;
  int rc = ZORCH_OK;
  struct dirent *de;
  while (!rc && (de = readdir(dir))) {
    if (de->d_name[0] == '.') continue;
    char *key = decode(de->d_name);
    if (!key) {
      rc = ZORCH_ENOMEM;
      break;
    }
    uint64_t size = 0;
    char *slash = delimiter ? strchr(key + pl, '/') : NULL;
    struct stat sb;
    if (strncmp(key, prefix, pl) != 0) {
      free(key);
      continue;
    } else if (slash) {
      slash[1] = '\0'; /* a deeper level: its common prefix, once */
    } else if (fstatat(dirfd(dir), de->d_name, &sb, 0) == 0) {
      size = (uint64_t)sb.st_size;
    } else { /* deleted meanwhile */
      free(key);
      continue;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      listed *nv = realloc(v, cap * sizeof *v);
      if (!nv) {
        free(key);
        rc = ZORCH_ENOMEM;
        break;
      }
      v = nv;
    }
    v[n++] = (listed){key, size};
  }
  closedir(dir);
  if (n) qsort(v, n, sizeof *v, cmp_listed);
  for (size_t i = 0; !rc && i < n; i++)
    if (!i || strcmp(v[i].key, v[i - 1].key) != 0) rc = each(each_data, v[i].key, v[i].size);
  for (size_t i = 0; i < n; i++) free(v[i].key);
  free(v);
  return rc;
}

static int ds_remove(void *store, const char *key) {
  dstore *d = store;
  int rc = check_key(d->host, key);
  if (rc) return rc;
  char *p = object_path(d, key);
  if (!p) return ZORCH_ENOMEM;
  if (unlink(p) != 0 && errno != ENOENT) rc = fail_errno(d->host, ZORCH_EIO, "cannot remove", p);
  free(p);
  return rc;
}

static int ds_step_env(char **out_json, void *store) {
  dstore *d = store;
  json_t *o = json_object();
  if (d->key_file) json_object_set_new(o, "DIRSTORE_KEY_FILE", json_string(d->key_file));
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  *out_json = s ? host_strdup(d->host, s) : NULL;
  free(s);
  return *out_json ? ZORCH_OK : ZORCH_ENOMEM;
}

static int ds_describe(char **out_json, void *store) {
  dstore *d = store;
  json_t *o = json_pack("{s:s,s:s?}", "path", d->root, "key_file", d->key_file);
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  *out_json = s ? host_strdup(d->host, s) : NULL;
  free(s);
  return *out_json ? ZORCH_OK : ZORCH_ENOMEM;
}

static const zorch_artifact_store_ops ds_ops = {
    .version = ZORCH_ARTIFACT_STORE_OPS_VERSION,
    .check_config = ds_check_config,
    .open = ds_open,
    .open_uri = ds_open_uri,
    .close = ds_close,
    .uri = ds_uri,
    .put_file = ds_put_file,
    .put_bytes = ds_put_bytes,
    .get_to_path = ds_get_to_path,
    .get_stream = ds_get_stream,
    .exists = ds_exists,
    .list = ds_list,
    .remove = ds_remove,
    .step_env = ds_step_env,
    .describe = ds_describe,
};

static const zorch_flavor_desc ds_flavor = {
    .version = ZORCH_FLAVOR_DESC_VERSION,
    .type = ZORCH_COMPONENT_ARTIFACT_STORE,
    .name = "dirstore",
    .integration = "test",
    .description = "Test artifact store: an object store with flat keys kept in a directory",
    .config_schema = "{\"type\":\"object\",\"properties\":{"
                     "\"path\":{\"type\":\"string\",\"pattern\":\"^/\"},"
                     "\"key_file\":{\"type\":\"string\",\"pattern\":\"^/\"}},"
                     "\"required\":[\"path\"],\"additionalProperties\":false}",
    .ops = &ds_ops,
};

/* The flavor payload is the host table: a second client loading this file
 * (dlopen hands out one copy) gets its own, so no global state. */
static int ds_init(const zorch_host *host, zorch_registrar *reg, void **ctx) {
  *ctx = NULL;
  return host->add_flavor(reg, &ds_flavor, (void *)host);
}

ZORCH_PLUGIN_DEFINE("dirstore", "1.0", "Test artifact store kept in a directory", ds_init, NULL)
