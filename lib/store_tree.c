/* zorch — directory artifacts: the walk that hashes (and copies) a tree, its
 * canonical manifest and digest, sealing it read-only, and reading a
 * manifest back (for stores that keep a tree as its manifest and its files).
 *
 * The manifest of a tree, whose SHA-256 is the tree's digest: entries sorted
 * by strcmp() of their relative path (the root is not listed):
 *     zorch-tree-v1\n
 *     d "<path>"\n                      a directory (empty ones included)
 *     f <x|-> <sha256> "<path>"\n       a regular file; x = any execute bit
 *     l "<path>" "<target>"\n           a symbolic link (target as read)
 * Paths and targets are JSON string literals (zorch__buf_json_string).  Other
 * file types (fifos, sockets, devices) are refused with ZORCH_EINVALID.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

void zorch__tree_free(zorch__tree *tw) {
  for (size_t i = 0; i < tw->n; i++) {
    free(tw->v[i].path);
    free(tw->v[i].target);
  }
  free(tw->v);
  tw->v = NULL;
  tw->n = tw->cap = 0;
}

static zorch__tree_entry *tree_push(zorch__tree *tw, char *path, char kind) {
  if (tw->n == tw->cap) {
    size_t ncap = tw->cap ? tw->cap * 2 : 64;
    zorch__tree_entry *nv = realloc(tw->v, ncap * sizeof *nv);
    if (!nv) return NULL;
    tw->v = nv;
    tw->cap = ncap;
  }
  zorch__tree_entry *e = &tw->v[tw->n++];
  memset(e, 0, sizeof *e);
  e->path = path;
  e->kind = kind;
  return e;
}

static char *read_link_at(int dfd, const char *name, size_t hint) {
  size_t cap = hint + 1 < 256 ? 256 : hint + 1;
  for (;;) {
    char *t = malloc(cap);
    if (!t) return NULL;
    ssize_t n = readlinkat(dfd, name, t, cap);
    if (n < 0) {
      free(t);
      return NULL;
    }
    if ((size_t)n < cap) {
      t[n] = '\0';
      return t;
    }
    free(t);
    cap *= 2;
  }
}

int zorch__tree_walk_dir(zorch__tree *tw, int sfd, int dfd, const char *rel) {
  DIR *d = fdopendir(sfd);
  if (!d) {
    int e = errno;
    close(sfd);
    if (dfd >= 0) close(dfd);
    return zorch__error_errno(ZORCH_EIO, e, "cannot list '%s/%s'", tw->src_root, rel);
  }
  int rc = ZORCH_OK;
  struct dirent *de;
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (!de) {
      if (errno) rc = zorch__error_errno(ZORCH_EIO, errno, "cannot list '%s/%s'", tw->src_root, rel);
      break;
    }
    const char *name = de->d_name;
    if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
    char *crel = *rel ? zorch__asprintf("%s/%s", rel, name) : zorch__strdup(name);
    if (!crel) {
      rc = zorch__error_oom();
      break;
    }
    struct stat sb;
    if (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot stat '%s/%s'", tw->src_root, crel);
      free(crel);
      break;
    }
    if (S_ISDIR(sb.st_mode)) {
      if (!tree_push(tw, crel, 'd')) {
        free(crel);
        rc = zorch__error_oom();
        break;
      }
      int csfd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (csfd < 0) {
        rc = zorch__error_errno(ZORCH_EIO, errno, "cannot open directory '%s/%s'", tw->src_root, crel);
        break;
      }
      int cdfd = -1;
      if (dfd >= 0) {
        if (mkdirat(dfd, name, 0755) != 0 ||
            (cdfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
          rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create directory '%s/%s'", tw->dst_root, crel);
          close(csfd);
          break;
        }
      }
      if ((rc = zorch__tree_walk_dir(tw, csfd, cdfd, crel))) break;
    } else if (S_ISREG(sb.st_mode)) {
      zorch__tree_entry *e = tree_push(tw, crel, 'f');
      if (!e) {
        free(crel);
        rc = zorch__error_oom();
        break;
      }
      e->exec = (sb.st_mode & 0111) != 0;
      mode_t mode = e->exec ? 0555 : 0444;
      int in = openat(dirfd(d), name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (in < 0) {
        rc = zorch__error_errno(ZORCH_EIO, errno, "cannot open '%s/%s'", tw->src_root, crel);
        break;
      }
      uint64_t sz = 0;
      if (dfd >= 0) {
        int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (out < 0) {
          rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create '%s/%s'", tw->dst_root, crel);
          close(in);
          break;
        }
        rc = zorch__io_stream_hash(in, crel, out, crel, tw->buf, e->digest, &sz);
        if (!rc && fchmod(out, mode) != 0)
          rc = zorch__error_errno(ZORCH_EIO, errno, "cannot chmod '%s/%s'", tw->dst_root, crel);
        if (close(out) != 0 && !rc)
          rc = zorch__error_errno(ZORCH_EIO, errno, "cannot close '%s/%s'", tw->dst_root, crel);
      } else {
        rc = zorch__io_stream_hash(in, crel, -1, NULL, tw->buf, e->digest, &sz);
        if (!rc && fchmod(in, mode) != 0)
          rc = zorch__error_errno(ZORCH_EIO, errno, "cannot chmod '%s/%s'", tw->src_root, crel);
      }
      close(in);
      if (rc) {
        zorch__error_prefix("cannot store '%s'", tw->src_root);
        break;
      }
      tw->size += sz;
    } else if (S_ISLNK(sb.st_mode)) {
      zorch__tree_entry *e = tree_push(tw, crel, 'l');
      if (!e) {
        free(crel);
        rc = zorch__error_oom();
        break;
      }
      e->target = read_link_at(dirfd(d), name, (size_t)sb.st_size);
      if (!e->target) {
        rc = zorch__error_errno(ZORCH_EIO, errno, "cannot read link '%s/%s'", tw->src_root, crel);
        break;
      }
      if (dfd >= 0 && symlinkat(e->target, dfd, name) != 0) {
        rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create link '%s/%s'", tw->dst_root, crel);
        break;
      }
    } else {
      rc = zorch__error_set(ZORCH_EINVALID,
                            "cannot store '%s/%s': not a regular file, directory or symbolic link",
                            tw->src_root, crel);
      free(crel);
      break;
    }
  }
  closedir(d);
  if (dfd >= 0) close(dfd);
  return rc;
}

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const zorch__tree_entry *)a)->path, ((const zorch__tree_entry *)b)->path);
}

int zorch__tree_digest(zorch__tree *tw, char digest[ZORCH__DIGEST_HEX], zorch__buf *manifest) {
  if (tw->n) qsort(tw->v, tw->n, sizeof *tw->v, entry_cmp);
  zorch__buf m = ZORCH__BUF_INIT;
  int rc = zorch__buf_puts(&m, ZORCH__MANIFEST_HEADER);
  for (size_t i = 0; i < tw->n && !rc; i++) {
    const zorch__tree_entry *e = &tw->v[i];
    switch (e->kind) {
    case 'd':
      rc = zorch__buf_puts(&m, "d ");
      if (!rc) rc = zorch__buf_json_string(&m, e->path);
      break;
    case 'f':
      rc = zorch__buf_printf(&m, "f %c %s ", e->exec ? 'x' : '-', e->digest);
      if (!rc) rc = zorch__buf_json_string(&m, e->path);
      break;
    default:
      rc = zorch__buf_puts(&m, "l ");
      if (!rc) rc = zorch__buf_json_string(&m, e->path);
      if (!rc) rc = zorch__buf_puts(&m, " ");
      if (!rc) rc = zorch__buf_json_string(&m, e->target);
      break;
    }
    if (!rc) rc = zorch__buf_puts(&m, "\n");
  }
  if (!rc) zorch__sha256_hex(m.data, m.len, digest);
  if (!rc && manifest) rc = zorch__buf_put(manifest, m.data, m.len);
  zorch__buf_free(&m);
  return rc;
}

/* Sorted order lists a parent before its children: directories are sealed
 * walking the list backwards.  Writing every file first and syncing
 * afterwards lets one journal commit cover many files. */
int zorch__tree_sync(zorch__tree *tw, int rootfd, const char *root) {
  /* Start writeback of every file first, so that their blocks are allocated
   * in one journal transaction and the fsyncs below mostly find them done. */
  for (size_t i = 0; i < tw->n; i++) {
    if (tw->v[i].kind != 'f') continue;
    int fd = openat(rootfd, tw->v[i].path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue; /* reported by the loop below */
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    close(fd);
  }
  for (size_t i = 0; i < tw->n; i++) {
    if (tw->v[i].kind != 'f') continue;
    int fd = openat(rootfd, tw->v[i].path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return zorch__error_errno(ZORCH_EIO, errno, "cannot open '%s/%s'", root, tw->v[i].path);
    if (fsync(fd) != 0) {
      int e = errno;
      close(fd);
      return zorch__error_errno(ZORCH_EIO, e, "cannot fsync '%s/%s'", root, tw->v[i].path);
    }
    close(fd);
  }
  for (size_t i = tw->n + 1; i-- > 0;) {
    const char *rel = i < tw->n ? tw->v[i].path : ".";
    if (i < tw->n && tw->v[i].kind != 'd') continue;
    int fd = openat(rootfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return zorch__error_errno(ZORCH_EIO, errno, "cannot open directory '%s/%s'", root, rel);
    if (fchmod(fd, 0555) != 0 || fsync(fd) != 0) {
      int e = errno;
      close(fd);
      return zorch__error_errno(ZORCH_EIO, e, "cannot seal directory '%s/%s'", root, rel);
    }
    close(fd);
  }
  return ZORCH_OK;
}

/* ---- reading a manifest back ------------------------------------------------------ */

/* A JSON string literal at *p (up to the next unescaped '"'), decoded into
 * *out (malloc'd); *p moves past it. */
static int json_lit(const char **p, const char *end, char **out) {
  const char *s = *p;
  if (s >= end || *s != '"') return ZORCH_EINVALID;
  const char *q = s + 1;
  while (q < end && *q != '"') q += (*q == '\\' && q + 1 < end) ? 2 : 1;
  if (q >= end) return ZORCH_EINVALID;
  json_error_t err;
  json_t *j = json_loadb(s, (size_t)(q + 1 - s), JSON_DECODE_ANY, &err);
  const char *v = json_string_value(j);
  *out = v ? zorch__strdup(v) : NULL;
  json_decref(j);
  if (!*out) return ZORCH_EINVALID;
  *p = q + 1;
  return ZORCH_OK;
}

/* A path a manifest may name: relative, no empty, "." or ".." component. */
static bool safe_path(const char *path) {
  if (!*path || *path == '/') return false;
  for (const char *c = path;;) {
    size_t n = strcspn(c, "/");
    if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return false;
    if (!c[n]) return true;
    c += n + 1;
  }
}

int zorch__manifest_each(const char *text, size_t len, zorch__manifest_cb cb, void *payload) {
  size_t hl = strlen(ZORCH__MANIFEST_HEADER);
  if (len < hl || memcmp(text, ZORCH__MANIFEST_HEADER, hl) != 0)
    return zorch__error_set(ZORCH_EINVALID, "not a directory manifest");
  const char *p = text + hl, *end = text + len;
  int rc = ZORCH_OK;
  unsigned line = 1;
  while (!rc && p < end) {
    line++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return zorch__error_set(ZORCH_EINVALID, "directory manifest: line %u is cut short", line);
    char kind = *p, digest[ZORCH__DIGEST_HEX] = "";
    bool exec = false, bad = false;
    char *path = NULL, *target = NULL;
    const char *q = p + 2;
    if (p + 2 > nl || p[1] != ' ') {
      bad = true;
    } else if (kind == 'f') {
      bad = q + 2 + 65 > nl || (q[0] != 'x' && q[0] != '-') || q[1] != ' ' || q[66] != ' ';
      if (!bad) {
        exec = q[0] == 'x';
        memcpy(digest, q + 2, 64);
        digest[64] = '\0';
        bad = !zorch__is_digest(digest);
        q += 67;
      }
    } else if (kind != 'd' && kind != 'l') {
      bad = true;
    }
    if (!bad) bad = json_lit(&q, nl, &path) != ZORCH_OK || !safe_path(path);
    if (!bad && kind == 'l') bad = q >= nl || *q++ != ' ' || json_lit(&q, nl, &target) != ZORCH_OK;
    if (!bad) bad = q != nl;
    if (bad)
      rc = zorch__error_set(ZORCH_EINVALID, "directory manifest: line %u is not an entry", line);
    else
      rc = cb(payload, kind, exec, digest, path, target);
    free(path);
    free(target);
    p = nl + 1;
  }
  return rc;
}
