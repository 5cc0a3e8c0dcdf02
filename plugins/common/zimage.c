/* zorch plugin kit — images from host files (zimage.h): the file closure
 * (what the dynamic loader loads), directory walks, a ustar writer and the
 * import through the Docker Engine API (zdocker.h). */
#include "zimage.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- the file closure ------------------------------------------------------------- */

typedef struct strset {
  char **v;
  size_t n, cap;
} strset;

static bool set_has(const strset *s, const char *x) {
  for (size_t i = 0; i < s->n; i++)
    if (!strcmp(s->v[i], x)) return true;
  return false;
}

/* "/a/b/../c/./d" -> "/a/c/d" (lexically: $ORIGIN/../lib in a RUNPATH) */
static void normalize(char *p) {
  char *out = p, *in = p;
  while (*in) {
    while (in[0] == '/' && in[1] == '/') in++;
    if (in[0] == '/' && in[1] == '.' && (in[2] == '/' || !in[2])) {
      in += 2;
      continue;
    }
    if (in[0] == '/' && in[1] == '.' && in[2] == '.' && (in[3] == '/' || !in[3])) {
      in += 3;
      while (out > p && out[-1] != '/') out--;
      if (out > p) out--;
      continue;
    }
    *out++ = *in++;
  }
  *out = '\0';
  if (!*p) strcpy(p, "/");
}

static int set_add(strset *s, const char *x0) {
  char x[4096];
  snprintf(x, sizeof x, "%s", x0);
  if (x[0] == '/') normalize(x);
  if (set_has(s, x)) return 0;
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 32;
    char **nv = realloc(s->v, nc * sizeof *nv);
    if (!nv) return -1;
    s->v = nv;
    s->cap = nc;
  }
  if (!(s->v[s->n] = strdup(x))) return -1;
  s->n++;
  return 0;
}

static void set_free(strset *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
  memset(s, 0, sizeof *s);
}

/* The ELF interpreter (PT_INTERP) of a file, or "" for a static or non-ELF file. */
static void elf_interp(const char *path, char *out, size_t n) {
  out[0] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  Elf64_Ehdr eh;
  if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
      eh.e_ident[EI_CLASS] == ELFCLASS64) {
    for (int i = 0; i < eh.e_phnum; i++) {
      Elf64_Phdr ph;
      if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (Elf64_Off)i * eh.e_phentsize)) != (ssize_t)sizeof ph) break;
      if (ph.p_type == PT_INTERP && ph.p_filesz < n) {
        if (pread(fd, out, ph.p_filesz, (off_t)ph.p_offset) == (ssize_t)ph.p_filesz) out[ph.p_filesz] = '\0';
        else out[0] = '\0';
        break;
      }
    }
  }
  close(fd);
}

/* Is this an ELF shared object (a plugin, a library)? */
static bool is_elf(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char m[4];
  bool ok = read(fd, m, 4) == 4 && !memcmp(m, ELFMAG, SELFMAG);
  close(fd);
  return ok;
}

/* Add a program (or shared object) and what the dynamic loader would load
 * for it, as `interp --list` reports it. */
static int add_closure(strset *files, const char *path, const char *default_interp, bool lenient,
                       char *err, size_t errlen) {
  if (access(path, R_OK) != 0) {
    zd_errf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    return -1;
  }
  if (set_add(files, path)) return -1;
  if (!is_elf(path)) return 0; /* a script: its interpreter must be added by name */
  char interp[512];
  elf_interp(path, interp, sizeof interp);
  if (!interp[0]) snprintf(interp, sizeof interp, "%s", default_interp ? default_interp : "");
  if (!interp[0]) return 0; /* static */
  if (set_add(files, interp)) return -1;
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  char *argv[] = {interp, (char *)"--list", (char *)path, NULL};
  pid_t pid;
  /* no LD_PRELOAD (ASan builds) or LD_LIBRARY_PATH games beyond the caller's */
  int src = posix_spawn(&pid, interp, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pfd[1]);
  if (src != 0) {
    close(pfd[0]);
    zd_errf(err, errlen, "cannot run the dynamic loader %s to list the libraries of %s: %s", interp,
         path, strerror(src));
    return -1;
  }
  FILE *f = fdopen(pfd[0], "r");
  char line[4096];
  int rc = 0;
  while (f && fgets(line, sizeof line, f)) {
    char *arrow = strstr(line, "=> ");
    char *p = arrow ? arrow + 3 : line;
    while (*p == ' ' || *p == '\t') p++;
    if (arrow && !strncmp(p, "not found", 9)) {
      if (lenient) continue; /* a file of a directory: it fails in the image as on the host */
      *arrow = '\0';
      char *name = line;
      while (*name == ' ' || *name == '\t') name++;
      name[strcspn(name, " \t")] = '\0';
      zd_errf(err, errlen, "library %s needed by %s was not found by the dynamic loader", name, path);
      rc = -1;
      continue;
    }
    if (*p != '/') continue; /* linux-vdso.so.1 and the like */
    p[strcspn(p, " \t\n(")] = '\0';
    if (set_add(files, p)) rc = -1;
  }
  if (f) fclose(f);
  else close(pfd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return rc;
}

/* ---- directories ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int walk_dir(const char *dir, int (*cb)(const char *, int, void *), void *arg, char *err,
                    size_t errlen, int depth) {
  if (depth > 64) {
    zd_errf(err, errlen, "cannot add %s to the image: directories nested too deep", dir);
    return -1;
  }
  DIR *d = opendir(dir);
  if (!d) {
    zd_errf(err, errlen, "cannot read the directory %s: %s", dir, strerror(errno));
    return -1;
  }
  strset names = {0};
  struct dirent *de;
  int rc = 0;
  while (!rc && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, "__pycache__")) continue;
    if (set_add(&names, de->d_name)) rc = -1;
  }
  closedir(d);
  if (names.n) qsort(names.v, names.n, sizeof *names.v, cmp_str);
  for (size_t i = 0; !rc && i < names.n; i++) {
    char p[4096];
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, names.v[i]) >= sizeof p) continue;
    struct stat lst, st;
    if (lstat(p, &lst) != 0) continue;
    if (S_ISLNK(lst.st_mode)) {
      if (stat(p, &st) != 0) continue; /* dangling */
      if (S_ISDIR(st.st_mode)) rc = cb(p, 1, arg);
      else if (S_ISREG(st.st_mode)) rc = cb(p, 0, arg);
    } else if (S_ISDIR(lst.st_mode)) {
      rc = walk_dir(p, cb, arg, err, errlen, depth + 1);
    } else if (S_ISREG(lst.st_mode)) {
      rc = cb(p, 0, arg);
    }
  }
  set_free(&names);
  return rc;
}

int zi_walk(const char *root, int (*cb)(const char *path, int is_link, void *arg), void *arg,
            char *err, size_t errlen) {
  struct stat st;
  if (!root || stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
    zd_errf(err, errlen, "cannot add '%s' to the image: not a directory", root ? root : "?");
    return -1;
  }
  char r[4096];
  snprintf(r, sizeof r, "%s", root);
  normalize(r);
  size_t l = strlen(r);
  while (l > 1 && r[l - 1] == '/') r[--l] = '\0';
  return walk_dir(r, cb, arg, err, errlen, 0);
}

typedef struct tree_state {
  strset *files, *links;
  const char *interp;
  char *err;
  size_t errlen;
} tree_state;

static int tree_file(const char *path, int is_link, void *arg) {
  tree_state *t = arg;
  if (is_link) return set_add(t->links, path);
  if (is_elf(path)) return add_closure(t->files, path, t->interp, true, t->err, t->errlen);
  return set_add(t->files, path);
}

/* ---- a ustar writer ------------------------------------------------------------- */

static void oct(char *dst, size_t n, unsigned long long v) { snprintf(dst, n, "%0*llo", (int)n - 1, v); }

static int tar_header(FILE *out, const char *name, char type, unsigned mode, unsigned long long size,
                      const char *link) {
  char h[512];
  memset(h, 0, sizeof h);
  const char *n = name[0] == '/' ? name + 1 : name;
  size_t len = strlen(n);
  if (len <= 100) {
    memcpy(h, n, len);
  } else {
    /* split into prefix (<= 155) and name (<= 100) at a '/' */
    const char *cut = NULL;
    for (const char *p = n + len - 1; p > n; p--)
      if (*p == '/' && (size_t)(p - n) <= 155 && len - (size_t)(p - n) - 1 <= 100) {
        cut = p;
        break;
      }
    if (!cut) return -1;
    memcpy(h, cut + 1, len - (size_t)(cut - n) - 1);
    memcpy(h + 345, n, (size_t)(cut - n));
  }
  oct(h + 100, 8, mode & 07777);
  oct(h + 108, 8, 0);
  oct(h + 116, 8, 0);
  oct(h + 124, 12, size);
  oct(h + 136, 12, 0);
  h[156] = type;
  if (link) snprintf(h + 157, 100, "%s", link);
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += (unsigned char)h[i];
  snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
  return fwrite(h, 1, 512, out) == 512 ? 0 : -1;
}

static int tar_dirs(FILE *out, strset *dirs, const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (!set_has(dirs, buf)) {
      char dn[4100];
      snprintf(dn, sizeof dn, "%s/", buf);
      if (set_add(dirs, buf) || tar_header(out, dn, '5', 0755, 0, NULL)) return -1;
    }
    *p = '/';
  }
  return 0;
}

static int tar_file(FILE *out, strset *dirs, const char *path, const char *as, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    zd_errf(err, errlen, "cannot read %s for the image: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
    if (fd >= 0) close(fd);
    return -1;
  }
  if (tar_dirs(out, dirs, as) || tar_header(out, as, '0', st.st_mode, (unsigned long long)st.st_size, NULL)) {
    close(fd);
    zd_errf(err, errlen, "cannot add %s to the image (path too long or write error)", as);
    return -1;
  }
  char buf[65536];
  unsigned long long left = (unsigned long long)st.st_size;
  while (left > 0) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if ((unsigned long long)r > left) r = (ssize_t)left;
    if (fwrite(buf, 1, (size_t)r, out) != (size_t)r) break;
    left -= (unsigned long long)r;
  }
  close(fd);
  if (left) {
    zd_errf(err, errlen, "%s changed while it was added to the image", path);
    return -1;
  }
  size_t pad = (size_t)(512 - st.st_size % 512) % 512;
  static const char zeros[512];
  return fwrite(zeros, 1, pad, out) == pad ? 0 : -1;
}

static int tar_text(FILE *out, strset *dirs, const char *as, const char *text, unsigned mode) {
  size_t n = strlen(text);
  if (tar_dirs(out, dirs, as) || tar_header(out, as, '0', mode, n, NULL)) return -1;
  static const char zeros[512];
  size_t pad = (512 - n % 512) % 512;
  return fwrite(text, 1, n, out) == n && fwrite(zeros, 1, pad, out) == pad ? 0 : -1;
}

/* ---- import ------------------------------------------------------------------- */

static size_t read_file_cb(char *buf, size_t n, void *p) {
  size_t r = fread(buf, 1, n, (FILE *)p);
  if (r == 0 && ferror((FILE *)p)) return (size_t)-1;
  return r;
}

typedef struct import_state {
  char buf[8192];
  size_t len;
  char id[256];
  char error[1024];
} import_state;

/* images/create answers 200 with a stream of JSON messages; an error is one
 * of them ({"error": ...} / {"errorDetail": ...}), the image id another. */
static void import_line(import_state *s, const char *line, size_t n) {
  json_t *j = json_loadb(line, n, 0, NULL);
  if (!j) return;
  const char *er = json_string_value(json_object_get(j, "error"));
  if (!er) er = json_string_value(json_object_get(json_object_get(j, "errorDetail"), "message"));
  if (er && !s->error[0]) snprintf(s->error, sizeof s->error, "%s", er);
  const char *st = json_string_value(json_object_get(j, "status"));
  const char *id = json_string_value(json_object_get(j, "id"));
  if (id && !strncmp(id, "sha256:", 7)) snprintf(s->id, sizeof s->id, "%s", id);
  else if (st && !strncmp(st, "sha256:", 7)) snprintf(s->id, sizeof s->id, "%s", st);
  json_decref(j);
}

static int import_chunk(const char *data, size_t n, void *p) {
  import_state *s = p;
  for (size_t i = 0; i < n; i++) {
    char c = data[i];
    if (c == '\n' || c == '\r') {
      if (s->len) import_line(s, s->buf, s->len);
      s->len = 0;
    } else if (s->len < sizeof s->buf - 1) {
      s->buf[s->len++] = c;
    }
  }
  return 0;
}

int zi_build(zd_engine *e, const zi_spec *spec, char **image_id, size_t *bytes, size_t *n_files,
             char *err, size_t errlen) {
  if (image_id) *image_id = NULL;
  strset files = {0}, dirs = {0}, links = {0};
  int rc = -1;
  FILE *tar = NULL;
  char repo[512], tag[128];
  const char *ref = spec->ref;
  if (!ref || !*ref) {
    zd_errf(err, errlen, "no image name given");
    return -1;
  }
  /* name[:tag] where a ':' after the last '/' starts the tag */
  const char *slash = strrchr(ref, '/'), *colon = strrchr(ref, ':');
  if (colon && (!slash || colon > slash)) {
    snprintf(repo, sizeof repo, "%.*s", (int)(colon - ref), ref);
    snprintf(tag, sizeof tag, "%s", colon + 1);
  } else {
    snprintf(repo, sizeof repo, "%s", ref);
    snprintf(tag, sizeof tag, "latest");
  }
  if (!repo[0] || !tag[0]) {
    zd_errf(err, errlen, "invalid image name '%s'", ref);
    return -1;
  }
  char default_interp[512] = "";
  for (size_t i = 0; spec->programs && spec->programs[i]; i++) {
    if (!default_interp[0]) elf_interp(spec->programs[i], default_interp, sizeof default_interp);
    if (add_closure(&files, spec->programs[i], NULL, false, err, errlen)) goto out;
  }
  for (size_t d = 0; spec->plugin_dirs && spec->plugin_dirs[d]; d++) {
    DIR *dir = opendir(spec->plugin_dirs[d]);
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
      size_t l = strlen(de->d_name);
      if (strncmp(de->d_name, "zorch-flavor-", 13) || l < 4 || strcmp(de->d_name + l - 3, ".so")) continue;
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", spec->plugin_dirs[d], de->d_name);
      if (add_closure(&files, p, default_interp, false, err, errlen)) {
        closedir(dir);
        goto out;
      }
    }
    if (dir) closedir(dir);
  }
  for (size_t i = 0; spec->files && spec->files[i]; i++)
    if (set_add(&files, spec->files[i])) goto out;
  tree_state ts = {&files, &links, default_interp[0] ? default_interp : NULL, err, errlen};
  for (size_t i = 0; spec->trees && spec->trees[i]; i++)
    if (zi_walk(spec->trees[i], tree_file, &ts, err, errlen)) goto out;
  static const char *certs[] = {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", NULL};
  for (size_t i = 0; certs[i]; i++)
    if (access(certs[i], R_OK) == 0 && set_add(&files, certs[i])) goto out;
  tar = tmpfile();
  if (!tar) {
    zd_errf(err, errlen, "cannot create a temporary file for the image: %s", strerror(errno));
    goto out;
  }
  if (set_add(&dirs, "/tmp") || tar_header(tar, "tmp/", '5', 01777, 0, NULL) ||
      tar_text(tar, &dirs, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n", 0644) ||
      tar_text(tar, &dirs, "/etc/group", "root:x:0:\nnogroup:x:65534:\n", 0644)) {
    zd_errf(err, errlen, "cannot write the image's files: %s", strerror(errno));
    goto out;
  }
  for (size_t i = 0; i < files.n; i++)
    if (tar_file(tar, &dirs, files.v[i], files.v[i], err, errlen)) goto out;
  /* symlinks to directories, as they are: after the files, and not where a
   * file made a directory of the same path */
  for (size_t i = 0; i < links.n; i++) {
    char target[101];
    ssize_t tl = readlink(links.v[i], target, sizeof target);
    if (tl <= 0 || tl >= 100 || set_has(&dirs, links.v[i]) || set_has(&files, links.v[i])) continue;
    target[tl] = '\0';
    if (tar_dirs(tar, &dirs, links.v[i]) || tar_header(tar, links.v[i], '2', 0777, 0, target)) {
      zd_errf(err, errlen, "cannot add %s to the image (path too long or write error)", links.v[i]);
      goto out;
    }
  }
  static const char zeros[1024];
  if (fwrite(zeros, 1, sizeof zeros, tar) != sizeof zeros || fflush(tar) != 0) {
    zd_errf(err, errlen, "cannot write the image's files: %s", strerror(errno));
    goto out;
  }
  long size = ftell(tar);
  if (bytes) *bytes = size > 0 ? (size_t)size : 0;
  if (n_files) *n_files = files.n;
  rewind(tar);
  char *erepo = zh_escape(repo), *etag = zh_escape(tag);
  char *path = erepo && etag ? zd_path(e, "/images/create?fromSrc=-&repo=%s&tag=%s", erepo, etag) : NULL;
  import_state st = {0};
  zh_request rq = {.method = "POST", .path = path, .content_type = "application/x-tar",
                   .read_cb = read_file_cb, .read_payload = tar, .chunk_cb = import_chunk,
                   .chunk_payload = &st, .flags = ZH_NO_RETRY};
  zh_error he = {0};
  int hr = path ? zh_do(e->http, &rq, NULL, &he) : ZH_ENOMEM;
  free(path);
  if (st.len) import_line(&st, st.buf, st.len);
  if (hr != ZH_OK || st.error[0]) {
    zd_errf(err, errlen, "the Docker engine at %s could not import the image %s: %s", e->where, ref,
         hr != ZH_OK ? he.message : st.error);
    zh_error_clear(&he);
    free(erepo);
    free(etag);
    goto out;
  }
  /* Podman's compat API ignores tag= and names the import NAME:latest */
  char full[700];
  snprintf(full, sizeof full, "%s:%s", repo, tag);
  int have = zd_image_exists(e, full, &he);
  if (have == 0) {
    char src[600];
    snprintf(src, sizeof src, "%s:latest", repo);
    char *esrc = zh_escape(st.id[0] ? st.id : src);
    char *tp = esrc ? zd_path(e, "/images/%s/tag?repo=%s&tag=%s", esrc, erepo, etag) : NULL;
    zh_request tr = {.method = "POST", .path = tp};
    hr = tp ? zh_do(e->http, &tr, NULL, &he) : ZH_ENOMEM;
    free(tp);
    free(esrc);
    if (hr != ZH_OK) {
      zd_errf(err, errlen, "imported the image but cannot tag it %s: %s", full, he.message);
      zh_error_clear(&he);
      free(erepo);
      free(etag);
      goto out;
    }
  }
  zh_error_clear(&he);
  free(erepo);
  free(etag);
  if (image_id) *image_id = strdup(st.id[0] ? st.id : full);
  rc = 0;
out:
  if (tar) fclose(tar);
  set_free(&files);
  set_free(&dirs);
  set_free(&links);
  return rc;
}
