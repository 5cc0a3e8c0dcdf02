/* zorch — tests of the local artifact store, documents and the journal. */
#include "store.h"
#include "zorch-check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------- */

static zorch__store *open_store(const char **root_out) {
  const char *root = zt_tmpdir();
  zorch__store *st = NULL;
  zt_ok(zorch__store_open(&st, root));
  if (root_out) *root_out = zorch__store_root(st);
  return st;
}

static char *pjoin(const char *a, const char *b) {
  char *p = NULL;
  ck_assert(asprintf(&p, "%s/%s", a, b) > 0);
  return p;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
  ck_assert(write(fd, data, len) == (ssize_t)len);
  ck_assert(fchmod(fd, mode) == 0);
  ck_assert(close(fd) == 0);
}

static void write_str(const char *path, const char *s) { write_file(path, s, strlen(s), 0644); }

static void mkdir_ok(const char *path) { ck_assert_msg(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno)); }

static void hex(const unsigned char *d, unsigned n, char *out) {
  static const char h[] = "0123456789abcdef";
  for (unsigned i = 0; i < n; i++) {
    out[2 * i] = h[d[i] >> 4];
    out[2 * i + 1] = h[d[i] & 15];
  }
  out[2 * n] = '\0';
}

/* SHA-256 straight from OpenSSL, independent of lib/hash.c. */
static void sha_buf(const void *data, size_t len, char out[65]) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(data, len, d, &n, EVP_sha256(), NULL);
  hex(d, n, out);
}

static bool sha_file(const char *path, char out[65]) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  static unsigned char buf[1 << 16];
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) EVP_DigestUpdate(md, buf, (size_t)r);
  close(fd);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestFinal_ex(md, d, &n);
  EVP_MD_CTX_free(md);
  hex(d, n, out);
  return r == 0;
}

/* `sha256sum path`, the coreutils tool. */
static void sha256sum(const char *path, char out[65]) {
  char *o = NULL;
  const char *argv[] = {"sha256sum", path, NULL};
  ck_assert_int_eq(zt_run(&o, argv, NULL), 0);
  ck_assert_msg(strlen(o) >= 64, "sha256sum said: %s", o);
  memcpy(out, o, 64);
  out[64] = '\0';
  free(o);
}

/* ---- an independent computation of a directory manifest ----------------------- */

typedef struct {
  char *path;
  char *line;
} ment;

typedef struct {
  ment *v;
  size_t n, cap;
} mlist;

static void jesc(char *dst, size_t cap, const char *s) {
  size_t k = 0;
  dst[k++] = '"';
  for (; *s; s++) {
    ck_assert_msg((unsigned char)*s >= 0x20, "test paths must be printable");
    if (*s == '"' || *s == '\\') dst[k++] = '\\';
    dst[k++] = *s;
    ck_assert(k + 2 < cap);
  }
  dst[k++] = '"';
  dst[k] = '\0';
}

static void mwalk(const char *root, const char *rel, mlist *l) {
  char *dir = *rel ? pjoin(root, rel) : strdup(root);
  DIR *d = opendir(dir);
  ck_assert_msg(d != NULL, "opendir %s", dir);
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    char *crel = *rel ? pjoin(rel, de->d_name) : strdup(de->d_name);
    char *full = pjoin(root, crel);
    struct stat sb;
    ck_assert(lstat(full, &sb) == 0);
    char ep[1024], line[2400];
    jesc(ep, sizeof ep, crel);
    if (S_ISDIR(sb.st_mode)) {
      snprintf(line, sizeof line, "d %s\n", ep);
    } else if (S_ISREG(sb.st_mode)) {
      char dg[65];
      ck_assert(sha_file(full, dg));
      snprintf(line, sizeof line, "f %c %s %s\n", (sb.st_mode & 0111) ? 'x' : '-', dg, ep);
    } else {
      ck_assert(S_ISLNK(sb.st_mode));
      char t[1024], et[1024];
      ssize_t n = readlink(full, t, sizeof t - 1);
      ck_assert(n >= 0);
      t[n] = '\0';
      jesc(et, sizeof et, t);
      snprintf(line, sizeof line, "l %s %s\n", ep, et);
    }
    if (l->n == l->cap) {
      l->cap = l->cap ? 2 * l->cap : 16;
      l->v = realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n].path = crel;
    l->v[l->n].line = strdup(line);
    l->n++;
    if (S_ISDIR(sb.st_mode)) mwalk(root, crel, l);
    free(full);
  }
  closedir(d);
  free(dir);
}

static int ment_cmp(const void *a, const void *b) {
  return strcmp(((const ment *)a)->path, ((const ment *)b)->path);
}

static void manifest_digest(const char *root, char out[65]) {
  mlist l = {0};
  mwalk(root, "", &l);
  qsort(l.v, l.n, sizeof *l.v, ment_cmp);
  size_t total = 64;
  for (size_t i = 0; i < l.n; i++) total += strlen(l.v[i].line);
  char *m = malloc(total);
  strcpy(m, "zorch-tree-v1\n");
  for (size_t i = 0; i < l.n; i++) {
    strcat(m, l.v[i].line);
    free(l.v[i].path);
    free(l.v[i].line);
  }
  free(l.v);
  sha_buf(m, strlen(m), out);
  free(m);
}

/* Number of entries below `path` (recursive), not counting `path`. */
static size_t count_tree(const char *path) {
  DIR *d = opendir(path);
  if (!d) return 0;
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    n++;
    char *c = pjoin(path, de->d_name);
    struct stat sb;
    if (lstat(c, &sb) == 0 && S_ISDIR(sb.st_mode)) n += count_tree(c);
    free(c);
  }
  closedir(d);
  return n;
}

static size_t count_tmp(const char *root) {
  char *t = pjoin(root, "tmp");
  size_t n = count_tree(t);
  free(t);
  return n;
}

static size_t count_artifacts(const char *root) {
  char *a = pjoin(root, "artifacts");
  DIR *d = opendir(a);
  ck_assert(d != NULL);
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    char *s = pjoin(a, de->d_name);
    DIR *sd = opendir(s);
    ck_assert(sd != NULL);
    struct dirent *e2;
    while ((e2 = readdir(sd)))
      if (e2->d_name[0] != '.') n++;
    closedir(sd);
    free(s);
  }
  closedir(d);
  free(a);
  return n;
}

static int fd_count(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

static mode_t mode_of(const char *path) {
  struct stat sb;
  ck_assert_msg(lstat(path, &sb) == 0, "lstat %s", path);
  return sb.st_mode & 07777;
}

static ino_t ino_of(const char *path) {
  struct stat sb;
  ck_assert_msg(lstat(path, &sb) == 0, "lstat %s", path);
  return sb.st_ino;
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void fill_random(void *p, size_t n, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  unsigned char *c = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng_next(&s);
    memcpy(c + i, &v, 8);
  }
  for (; i < n; i++) c[i] = (unsigned char)rng_next(&s);
}

/* ---- one-shot SHA-256 ------------------------------------------------------------------ */

/* zorch__sha256_hex (OpenSSL's SHA-256 API) against the EVP digest: every
 * length around the block and padding boundaries, some long ones, unaligned
 * input, and FIPS 180-4's "abc" vectors. */
START_TEST(test_sha256_one_shot) {
  enum { MAX = 70000 };
  unsigned char *buf = malloc(MAX + 8);
  ck_assert_ptr_nonnull(buf);
  fill_random(buf, MAX + 8, 42);
  char got[ZORCH__DIGEST_HEX], want[65];
  size_t lens[] = {300, 447, 448, 511, 512, 513, 1000, 4096 + 17, 65536, MAX};
  for (size_t len = 0; len < 300 + sizeof lens / sizeof lens[0]; len++) {
    size_t n = len < 300 ? len : lens[len - 300];
    for (size_t off = 0; off < (n < 200 ? 3u : 1u); off++) { /* unaligned starts too */
      zorch__sha256_hex(buf + off, n, got);
      sha_buf(buf + off, n, want);
      ck_assert_msg(!strcmp(got, want), "length %zu offset %zu: %s, EVP says %s", n, off, got, want);
    }
  }
  free(buf);
  zorch__sha256_hex("abc", 3, got);
  ck_assert_str_eq(got, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  zorch__sha256_hex(two, strlen(two), got);
  ck_assert_str_eq(got, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
END_TEST

/* Record times: seconds, a point and 6 decimals, rounded to the microsecond;
 * consecutive times share the text of their seconds (cached per thread). */
START_TEST(test_time_format) {
  double ts[] = {1764118000.1234564, 1764118000.9999996, 1764118001.0, 1764118001.0000004, 0.5,
                 1e-7, 42.000001, 1764118000.5, 1764118999.999999, 1764118000.000001};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
    zorch__buf b = ZORCH__BUF_INIT;
    zt_ok(zorch__buf_time(&b, ts[k]));
    unsigned long long us = (unsigned long long)(ts[k] * 1e6 + 0.5);
    char want[64];
    snprintf(want, sizeof want, "%llu.%06llu", us / 1000000, us % 1000000);
    ck_assert_msg(!strcmp(b.data, want), "%.7f: %s, want %s", ts[k], b.data, want);
    zorch__buf_free(&b);
  }
  zorch__buf b = ZORCH__BUF_INIT;
  zt_ok(zorch__buf_time(&b, 0));
  zt_ok(zorch__buf_time(&b, -1));
  ck_assert_str_eq(b.data, "00");
  zorch__buf_free(&b);
}
END_TEST

/* ---- artifacts ------------------------------------------------------------------------ */

START_TEST(test_put_bytes) {
  const char *root;
  zorch__store *st = open_store(&root);
  char dg[ZORCH__DIGEST_HEX];
  zt_ok(zorch__store_put_bytes(st, "hello", 5, dg));
  ck_assert_str_eq(dg, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  ck_assert(zorch__store_has(st, dg));
  char *p = zorch__store_artifact_path(st, dg);
  ck_assert_str_eq(p + strlen(root), "/artifacts/2c/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  ck_assert_int_eq(mode_of(p), 0444);
  char s[65];
  sha256sum(p, s);
  ck_assert_str_eq(s, dg);
  char *data = NULL;
  size_t len = 0;
  zt_ok(zorch__read_file(p, &data, &len));
  ck_assert_uint_eq(len, 5);
  ck_assert_str_eq(data, "hello");
  free(data);
  free(p);

  /* empty content */
  zt_ok(zorch__store_put_bytes(st, "", 0, dg));
  ck_assert_str_eq(dg, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ck_assert(zorch__store_has(st, dg));

  ck_assert(!zorch__store_has(st, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9825"));
  ck_assert(!zorch__store_has(st, "not-a-digest"));
  ck_assert(!zorch__store_has(st, NULL));
  ck_assert_uint_eq(count_tmp(root), 0);
  zorch__store_close(st);
}
END_TEST

START_TEST(test_put_bytes_dedup) {
  const char *root;
  zorch__store *st = open_store(&root);
  char d1[ZORCH__DIGEST_HEX], d2[ZORCH__DIGEST_HEX];
  const char *text = "equal outputs are stored once";
  zt_ok(zorch__store_put_bytes(st, text, strlen(text), d1));
  char *p = zorch__store_artifact_path(st, d1);
  ino_t ino = ino_of(p);
  zt_ok(zorch__store_put_bytes(st, text, strlen(text), d2));
  ck_assert_str_eq(d1, d2);
  ck_assert_uint_eq(ino_of(p), ino); /* not rewritten */
  ck_assert_uint_eq(count_artifacts(root), 1);
  ck_assert_uint_eq(count_tmp(root), 0);
  free(p);
  zorch__store_close(st);
}
END_TEST

START_TEST(test_put_path_file_copy) {
  const char *root;
  zorch__store *st = open_store(&root);
  const char *work = zt_tmpdir();
  char *src = pjoin(work, "model.bin");
  size_t n = 3 * 1024 * 1024 + 17; /* several buffers */
  char *data = malloc(n);
  fill_random(data, n, 7);
  write_file(src, data, n, 0755);
  char dg[ZORCH__DIGEST_HEX];
  uint64_t size = 0;
  bool is_dir = true;
  zt_ok(zorch__store_put_path(st, src, false, dg, &size, &is_dir));
  ck_assert(!is_dir);
  ck_assert_uint_eq(size, n);
  char s[65];
  sha256sum(src, s);
  ck_assert_str_eq(dg, s);
  /* the source is left in place, untouched */
  ck_assert_int_eq(mode_of(src), 0755);
  char *p = zorch__store_artifact_path(st, dg);
  ck_assert_int_eq(mode_of(p), 0444); /* single files are always 0444 */
  ck_assert_uint_ne(ino_of(p), ino_of(src));
  sha256sum(p, s);
  ck_assert_str_eq(dg, s);
  /* the same content again, from another path: nothing new */
  char *src2 = pjoin(work, "copy.bin");
  write_file(src2, data, n, 0644);
  char dg2[ZORCH__DIGEST_HEX];
  ino_t ino = ino_of(p);
  zt_ok(zorch__store_put_path(st, src2, false, dg2, NULL, NULL));
  ck_assert_str_eq(dg, dg2);
  ck_assert_uint_eq(ino_of(p), ino);
  ck_assert_uint_eq(count_artifacts(root), 1);
  ck_assert_uint_eq(count_tmp(root), 0);
  /* put_bytes of the same bytes agrees */
  zt_ok(zorch__store_put_bytes(st, data, n, dg2));
  ck_assert_str_eq(dg, dg2);
  ck_assert_uint_eq(count_artifacts(root), 1);
  free(data);
  free(p);
  free(src);
  free(src2);
  zorch__store_close(st);
}
END_TEST

START_TEST(test_put_path_file_take) {
  const char *root;
  zorch__store *st = open_store(&root);
  char *scratch = NULL;
  zt_ok(zorch__store_scratch(st, "out", &scratch));
  write_str(scratch, "taken without a copy\n");
  ino_t ino = ino_of(scratch);
  char s[65];
  sha256sum(scratch, s);
  char dg[ZORCH__DIGEST_HEX];
  uint64_t size = 0;
  bool is_dir = true;
  zt_ok(zorch__store_put_path(st, scratch, true, dg, &size, &is_dir));
  ck_assert_str_eq(dg, s);
  ck_assert_uint_eq(size, strlen("taken without a copy\n"));
  ck_assert(!is_dir);
  ck_assert_int_eq(access(scratch, F_OK), -1); /* moved away */
  char *p = zorch__store_artifact_path(st, dg);
  ck_assert_uint_eq(ino_of(p), ino); /* the same inode: renamed, not copied */
  ck_assert_int_eq(mode_of(p), 0444);
  free(scratch);

  /* equal content taken again: the scratch file is removed, nothing stored twice */
  zt_ok(zorch__store_scratch(st, "out", &scratch));
  write_str(scratch, "taken without a copy\n");
  zt_ok(zorch__store_put_path(st, scratch, true, dg, NULL, NULL));
  ck_assert_str_eq(dg, s);
  ck_assert_int_eq(access(scratch, F_OK), -1);
  ck_assert_uint_eq(ino_of(p), ino);
  ck_assert_uint_eq(count_artifacts(root), 1);
  ck_assert_uint_eq(count_tmp(root), 0);
  free(scratch);

  /* a hard-linked file is copied (another name could change it later) */
  zt_ok(zorch__store_scratch(st, "linked", &scratch));
  write_str(scratch, "has two names");
  const char *work = zt_tmpdir();
  char *other = pjoin(work, "other-name");
  ck_assert(link(scratch, other) == 0);
  zt_ok(zorch__store_put_path(st, scratch, true, dg, NULL, NULL));
  ck_assert_int_eq(access(scratch, F_OK), -1);
  free(p);
  p = zorch__store_artifact_path(st, dg);
  ck_assert_uint_ne(ino_of(p), ino_of(other));
  ck_assert_int_eq(mode_of(other), 0644);
  free(other);
  free(p);
  free(scratch);
  zorch__store_close(st);
}
END_TEST

/* A tree with nested files, an executable, an empty directory and symlinks. */
static void make_tree(const char *d) {
  mkdir_ok(d);
  char *p;
  p = pjoin(d, "a"); mkdir_ok(p); free(p);
  p = pjoin(d, "a/b"); mkdir_ok(p); free(p);
  p = pjoin(d, "a/b/c.txt"); write_str(p, "nested file\n"); free(p);
  p = pjoin(d, "a/run.sh"); write_file(p, "#!/bin/sh\necho hi\n", 18, 0755); free(p);
  p = pjoin(d, "a-b"); write_str(p, "sorts between a and a/b\n"); free(p);
  p = pjoin(d, "empty"); mkdir_ok(p); free(p);
  p = pjoin(d, "top.json"); write_str(p, "{\"x\": 1}\n"); free(p);
  p = pjoin(d, "link"); ck_assert(symlink("a/b/c.txt", p) == 0); free(p);
  p = pjoin(d, "dangling"); ck_assert(symlink("../nowhere", p) == 0); free(p);
}

static uint64_t tree_bytes(void) {
  return strlen("nested file\n") + 18 + strlen("sorts between a and a/b\n") + strlen("{\"x\": 1}\n");
}

START_TEST(test_put_path_dir) {
  const char *root;
  zorch__store *st = open_store(&root);
  const char *work = zt_tmpdir();
  char *src = pjoin(work, "tree");
  make_tree(src);
  char want[65];
  manifest_digest(src, want);

  char dg[ZORCH__DIGEST_HEX];
  uint64_t size = 0;
  bool is_dir = false;
  zt_ok(zorch__store_put_path(st, src, false, dg, &size, &is_dir));
  ck_assert(is_dir);
  ck_assert_uint_eq(size, tree_bytes());
  ck_assert_str_eq(dg, want);
  ck_assert_uint_eq(count_tree(src), 9); /* source untouched */
  ck_assert_int_eq(mode_of(src), 0755);

  char *art = zorch__store_artifact_path(st, dg);
  char got[65];
  manifest_digest(art, got);
  ck_assert_str_eq(got, want);
  ck_assert_int_eq(mode_of(art), 0555);
  char *p;
  p = pjoin(art, "a/b"); ck_assert_int_eq(mode_of(p), 0555); free(p);
  p = pjoin(art, "empty"); ck_assert_int_eq(mode_of(p), 0555); free(p);
  p = pjoin(art, "a/b/c.txt"); ck_assert_int_eq(mode_of(p), 0444); free(p);
  p = pjoin(art, "a/run.sh"); ck_assert_int_eq(mode_of(p), 0555); free(p);
  p = pjoin(art, "link");
  char t[64];
  ssize_t tn = readlink(p, t, sizeof t - 1);
  ck_assert(tn > 0);
  t[tn] = '\0';
  ck_assert_str_eq(t, "a/b/c.txt");
  free(p);
  ck_assert_uint_eq(count_tmp(root), 0);

  /* again: deduplicated, nothing left in tmp/ */
  char dg2[ZORCH__DIGEST_HEX];
  zt_ok(zorch__store_put_path(st, src, false, dg2, NULL, NULL));
  ck_assert_str_eq(dg2, dg);
  ck_assert_uint_eq(count_artifacts(root), 1);
  ck_assert_uint_eq(count_tmp(root), 0);

  /* take=true of an equal tree: same digest, scratch removed */
  char *scratch = NULL;
  zt_ok(zorch__store_scratch(st, "tree", &scratch));
  make_tree(scratch);
  zt_ok(zorch__store_put_path(st, scratch, true, dg2, &size, &is_dir));
  ck_assert_str_eq(dg2, dg);
  ck_assert_uint_eq(size, tree_bytes());
  ck_assert_int_eq(access(scratch, F_OK), -1);
  ck_assert_uint_eq(count_artifacts(root), 1);
  ck_assert_uint_eq(count_tmp(root), 0);
  free(scratch);

  /* take=true of a new tree: moved, not copied */
  zt_ok(zorch__store_scratch(st, "tree2", &scratch));
  make_tree(scratch);
  p = pjoin(scratch, "extra.txt");
  write_str(p, "makes it different");
  ino_t ino = ino_of(p);
  free(p);
  char want2[65];
  manifest_digest(scratch, want2);
  zt_ok(zorch__store_put_path(st, scratch, true, dg2, NULL, NULL));
  ck_assert_str_eq(dg2, want2);
  ck_assert_str_ne(dg2, dg);
  char *art2 = zorch__store_artifact_path(st, dg2);
  p = pjoin(art2, "extra.txt");
  ck_assert_uint_eq(ino_of(p), ino);
  ck_assert_int_eq(mode_of(p), 0444);
  free(p);
  manifest_digest(art2, got);
  ck_assert_str_eq(got, dg2);
  ck_assert_uint_eq(count_artifacts(root), 2);
  ck_assert_uint_eq(count_tmp(root), 0);
  free(scratch);
  free(art2);

  /* the executable bit and symlink targets are part of the digest */
  p = pjoin(src, "a/run.sh");
  ck_assert(chmod(p, 0644) == 0);
  free(p);
  zt_ok(zorch__store_put_path(st, src, false, dg2, NULL, NULL));
  ck_assert_str_ne(dg2, dg);
  manifest_digest(src, want2);
  ck_assert_str_eq(dg2, want2);
  p = pjoin(src, "a/run.sh");
  ck_assert(chmod(p, 0755) == 0);
  free(p);
  p = pjoin(src, "link");
  ck_assert(unlink(p) == 0 && symlink("a/run.sh", p) == 0);
  free(p);
  zt_ok(zorch__store_put_path(st, src, false, dg2, NULL, NULL));
  ck_assert_str_ne(dg2, dg);
  manifest_digest(src, want2);
  ck_assert_str_eq(dg2, want2);

  /* an empty directory is an artifact too */
  char *empty = pjoin(work, "void");
  mkdir_ok(empty);
  zt_ok(zorch__store_put_path(st, empty, false, dg2, &size, &is_dir));
  ck_assert(is_dir);
  ck_assert_uint_eq(size, 0);
  sha_buf("zorch-tree-v1\n", 14, want2);
  ck_assert_str_eq(dg2, want2);
  free(empty);
  free(art);
  free(src);
  zorch__store_close(st);
}
END_TEST

START_TEST(test_put_path_errors) {
  const char *root;
  zorch__store *st = open_store(&root);
  const char *work = zt_tmpdir();
  char dg[ZORCH__DIGEST_HEX];
  char *missing = pjoin(work, "missing");
  zt_assert_rc(zorch__store_put_path(st, missing, false, dg, NULL, NULL), ZORCH_ENOTFOUND);
  zt_assert_msg_has(missing);
  char *fifo = pjoin(work, "fifo");
  ck_assert(mkfifo(fifo, 0644) == 0);
  zt_assert_rc(zorch__store_put_path(st, fifo, false, dg, NULL, NULL), ZORCH_EINVALID);
  zt_assert_msg_has(fifo);
  char *tree = pjoin(work, "tree");
  mkdir_ok(tree);
  char *f2 = pjoin(tree, "pipe");
  ck_assert(mkfifo(f2, 0644) == 0);
  zt_assert_rc(zorch__store_put_path(st, tree, false, dg, NULL, NULL), ZORCH_EINVALID);
  zt_assert_msg_has("pipe");
  ck_assert_uint_eq(count_tmp(root), 0); /* the half-copied tree is gone */
  ck_assert_uint_eq(count_artifacts(root), 0);
  free(missing);
  free(fifo);
  free(tree);
  free(f2);
  zorch__store_close(st);
}
END_TEST

static long maxrss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

START_TEST(test_big_file_streamed) {
  const char *root;
  zorch__store *st = open_store(&root);
  const size_t mb = 200, chunk = 1 << 20;
  char *src = NULL;
  zt_ok(zorch__store_scratch(st, "big", &src));
  int fd = open(src, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  ck_assert(fd >= 0);
  char *buf = malloc(chunk);
  for (size_t i = 0; i < mb; i++) {
    fill_random(buf, chunk, 1000 + i);
    ck_assert(write(fd, buf, chunk) == (ssize_t)chunk);
  }
  free(buf);
  ck_assert(close(fd) == 0);
  char want[65];
  sha256sum(src, want);

  long before = maxrss_kb();
  char dg[ZORCH__DIGEST_HEX];
  uint64_t size = 0;
  int64_t t0 = zorch__mono_ns();
  zt_ok(zorch__store_put_path(st, src, false, dg, &size, NULL));
  int64_t t1 = zorch__mono_ns();
  long grown = maxrss_kb() - before;
  ck_assert_str_eq(dg, want);
  ck_assert_uint_eq(size, mb * chunk);
  ck_assert_msg(grown < 64 * 1024, "RSS grew by %ld KiB while storing a %zu MB file", grown, mb);
  printf("store: put_path copy of %zu MB: %.0f ms, %.0f MB/s (hash+copy+fsync), max RSS +%ld KiB\n",
         mb, (double)(t1 - t0) / 1e6, (double)mb / ((double)(t1 - t0) / 1e9), grown);

  /* take=true: hashed in place, then renamed; dedup removes the scratch file */
  char *art = zorch__store_artifact_path(st, dg);
  ck_assert(unlink(art) == 0 || (chmod(art, 0644) == 0 && unlink(art) == 0));
  t0 = zorch__mono_ns();
  zt_ok(zorch__store_put_path(st, src, true, dg, &size, NULL));
  t1 = zorch__mono_ns();
  ck_assert_str_eq(dg, want);
  ck_assert_int_eq(access(src, F_OK), -1);
  ck_assert_int_eq(mode_of(art), 0444);
  ck_assert_msg(maxrss_kb() - before < 64 * 1024, "RSS grew while taking a big file");
  printf("store: put_path take of %zu MB: %.0f ms, %.0f MB/s (hash+fsync+rename, no copy)\n", mb,
         (double)(t1 - t0) / 1e6, (double)mb / ((double)(t1 - t0) / 1e9));
  ck_assert_uint_eq(count_tmp(root), 0);
  free(art);
  free(src);
  zorch__store_close(st);
}
END_TEST

START_TEST(test_many_small_files_dir) {
  const char *root;
  zorch__store *st = open_store(&root);
  char *scratch = NULL;
  zt_ok(zorch__store_scratch(st, "many", &scratch));
  mkdir_ok(scratch);
  const int n = 1000;
  for (int i = 0; i < n; i++) {
    char name[64], body[64];
    snprintf(name, sizeof name, "f%04d.txt", i);
    snprintf(body, sizeof body, "file %d\n", i);
    char *p = pjoin(scratch, name);
    write_str(p, body);
    free(p);
  }
  char want[65], dg[ZORCH__DIGEST_HEX];
  manifest_digest(scratch, want);
  int64_t t0 = zorch__mono_ns();
  zt_ok(zorch__store_put_path(st, scratch, true, dg, NULL, NULL));
  int64_t t1 = zorch__mono_ns();
  ck_assert_str_eq(dg, want);
  printf("store: directory of %d small files taken (hash + fsync each + seal): %.1f ms\n", n,
         (double)(t1 - t0) / 1e6);
  free(scratch);
  zorch__store_close(st);
}
END_TEST

/* ---- documents and scratch ------------------------------------------------------------- */

START_TEST(test_docs) {
  const char *root;
  zorch__store *st = open_store(&root);
  const char *doc = "{\"status\":\"running\"}";
  zt_ok(zorch__store_write_doc(st, "runs/r1/run.json", doc, strlen(doc), true));
  char *data = NULL;
  size_t len = 0;
  zt_ok(zorch__store_read_doc(st, "runs/r1/run.json", &data, &len));
  ck_assert_uint_eq(len, strlen(doc));
  ck_assert_str_eq(data, doc);
  free(data);
  const char *doc2 = "{\"status\":\"completed\"}";
  zt_ok(zorch__store_write_doc(st, "runs/r1/run.json", doc2, strlen(doc2), false));
  zt_ok(zorch__store_read_doc(st, "runs/r1/run.json", &data, NULL));
  ck_assert_str_eq(data, doc2);
  free(data);
  zt_ok(zorch__store_write_doc(st, "runs/r1/steps/deep/er/x.json", "[]", 2, true));
  zt_ok(zorch__store_write_doc(st, "runs/r1/empty.json", NULL, 0, true));
  zt_ok(zorch__store_read_doc(st, "runs/r1/empty.json", &data, &len));
  ck_assert_uint_eq(len, 0);
  free(data);
  char *full = pjoin(root, "runs/r1/run.json");
  ck_assert_int_eq(mode_of(full), 0644);
  free(full);

  data = (char *)1;
  zt_assert_rc(zorch__store_read_doc(st, "runs/r2/run.json", &data, &len), ZORCH_ENOTFOUND);
  ck_assert_ptr_null(data);
  zt_assert_msg_has("runs/r2/run.json");
  zt_assert_rc(zorch__store_write_doc(st, "../escape.json", "{}", 2, false), ZORCH_EINVALID);
  zt_assert_msg_has("../escape.json");
  zt_assert_rc(zorch__store_write_doc(st, "/etc/x.json", "{}", 2, false), ZORCH_EINVALID);
  zt_assert_rc(zorch__store_write_doc(st, "runs//x.json", "{}", 2, false), ZORCH_EINVALID);
  zt_assert_rc(zorch__store_read_doc(st, "runs/../../x", &data, &len), ZORCH_EINVALID);
  /* a directory in the way of the document */
  zt_assert_rc(zorch__store_write_doc(st, "runs/r1", "{}", 2, true), ZORCH_EIO);
  zt_assert_msg_has("runs/r1");
  ck_assert_uint_eq(count_tmp(root), 0);
  zorch__store_close(st);
}
END_TEST

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

START_TEST(test_scratch_unique) {
  const char *root;
  zorch__store *st = open_store(&root);
  enum { N = 2000 };
  char **v = calloc(N, sizeof *v);
  char *tmp = pjoin(root, "tmp/");
  for (int i = 0; i < N; i++) {
    zt_ok(zorch__store_scratch(st, i % 2 ? "my out/put" : NULL, &v[i]));
    ck_assert_msg(!strncmp(v[i], tmp, strlen(tmp)), "%s not under %s", v[i], tmp);
    ck_assert(access(v[i], F_OK) == -1 && errno == ENOENT);
    if (i % 2) ck_assert_ptr_nonnull(strstr(v[i], "my_out_put"));
    ck_assert_ptr_null(strchr(v[i] + strlen(tmp), '/'));
  }
  /* a second handle on the same store (another process would be the same) */
  zorch__store *st2 = NULL;
  zt_ok(zorch__store_open(&st2, root));
  char *other = NULL;
  zt_ok(zorch__store_scratch(st2, NULL, &other));
  qsort(v, N, sizeof *v, str_cmp);
  for (int i = 1; i < N; i++) ck_assert_str_ne(v[i - 1], v[i]);
  for (int i = 0; i < N; i++) ck_assert_str_ne(v[i], other);
  /* a scratch path can be created as a file or a directory */
  write_str(v[0], "x");
  mkdir_ok(v[1]);
  for (int i = 0; i < N; i++) free(v[i]);
  free(v);
  free(other);
  free(tmp);
  zorch__store_close(st2);
  zorch__store_close(st);
}
END_TEST

START_TEST(test_open_cleans_stale_tmp) {
  const char *root;
  zorch__store *st = open_store(&root);
  char *r = strdup(root);
  zorch__store_close(st);
  char *old = pjoin(r, "tmp/w-old-file");
  char *olddir = pjoin(r, "tmp/s-old-dir");
  char *oldsub = pjoin(r, "tmp/s-old-dir/f");
  char *busy = pjoin(r, "tmp/s-busy-dir");
  char *busysub = pjoin(r, "tmp/s-busy-dir/being-written");
  char *fresh = pjoin(r, "tmp/w-fresh");
  write_str(old, "x");
  mkdir_ok(olddir);
  write_str(oldsub, "y");
  mkdir_ok(busy);
  write_str(busysub, "z");
  write_str(fresh, "w");
  struct timespec ts[2] = {{time(NULL) - 2 * 86400, 0}, {time(NULL) - 2 * 86400, 0}};
  ck_assert(utimensat(AT_FDCWD, old, ts, AT_SYMLINK_NOFOLLOW) == 0);
  ck_assert(utimensat(AT_FDCWD, oldsub, ts, AT_SYMLINK_NOFOLLOW) == 0);
  ck_assert(utimensat(AT_FDCWD, olddir, ts, AT_SYMLINK_NOFOLLOW) == 0);
  ck_assert(utimensat(AT_FDCWD, busy, ts, AT_SYMLINK_NOFOLLOW) == 0); /* old dir, fresh content */
  zt_ok(zorch__store_open(&st, r));
  ck_assert_int_eq(access(old, F_OK), -1);
  ck_assert_int_eq(access(olddir, F_OK), -1);
  ck_assert_int_eq(access(busysub, F_OK), 0);
  ck_assert_int_eq(access(fresh, F_OK), 0);
  zorch__store_close(st);
  free(old);
  free(olddir);
  free(oldsub);
  free(busy);
  free(busysub);
  free(fresh);
  free(r);
}
END_TEST

START_TEST(test_no_fd_leak) {
  int before = fd_count();
  const char *root;
  zorch__store *st = open_store(&root);
  char dg[ZORCH__DIGEST_HEX];
  const char *work = zt_tmpdir();
  char *tree = pjoin(work, "t");
  make_tree(tree);
  for (int i = 0; i < 3; i++) {
    zt_ok(zorch__store_put_bytes(st, "abc", 3, dg));
    zt_ok(zorch__store_put_path(st, tree, false, dg, NULL, NULL));
    zt_ok(zorch__store_write_doc(st, "runs/x/a.json", "{}", 2, true));
    char *d = NULL;
    zt_ok(zorch__store_read_doc(st, "runs/x/a.json", &d, NULL));
    free(d);
    ck_assert_int_ne(zorch__store_read_doc(st, "runs/x/none.json", &d, NULL), ZORCH_OK);
    ck_assert_int_ne(zorch__store_put_path(st, "/nonexistent/zz", false, dg, NULL, NULL), ZORCH_OK);
  }
  zorch__journal *j = NULL;
  char *jp = pjoin(root, "runs/x/journal.jsonl");
  zt_ok(zorch__journal_open(&j, jp, true));
  zt_ok(zorch__journal_append(j, "{}", 2));
  zt_ok(zorch__journal_close(j));
  zorch__store_close(st);
  free(jp);
  free(tree);
  ck_assert_int_eq(fd_count(), before);
}
END_TEST

/* ---- crash safety: kill -9 a writer at random moments ------------------------------------ */

static void die(const char *what) {
  fprintf(stderr, "crash child: %s: %s\n", what, zorch_error_last()->message);
  _exit(3);
}

static void crash_child(const char *root, unsigned seed) {
  zorch__store *st = NULL;
  if (zorch__store_open(&st, root)) die("open");
  size_t cap = 6u << 20;
  char *buf = malloc(cap);
  char *doc = malloc(400000);
  char dg[ZORCH__DIGEST_HEX];
  for (unsigned i = 0;; i++) {
    uint64_t s = (uint64_t)seed * 1000003u + i;
    uint64_t r = s;
    size_t n = (size_t)(rng_next(&r) % (64 * 1024));
    if (i % 7 == 1) n = (2u << 20) + (size_t)(rng_next(&r) % (4u << 20)); /* several MB */
    fill_random(buf, n, s);
    char *scratch = NULL;
    switch (i % 5) {
    case 0:
    case 1:
      if (zorch__store_put_bytes(st, buf, n, dg)) die("put_bytes");
      break;
    case 2: /* a file taken from scratch */
      if (zorch__store_scratch(st, "f", &scratch)) die("scratch");
      write_file(scratch, buf, n, 0644);
      if (zorch__store_put_path(st, scratch, true, dg, NULL, NULL)) die("put_path take");
      break;
    case 3: /* a directory taken from scratch */
    case 4: /* a directory copied */
      if (zorch__store_scratch(st, "d", &scratch)) die("scratch");
      mkdir_ok(scratch);
      for (int k = 0; k < 6; k++) {
        char name[32];
        snprintf(name, sizeof name, k % 2 ? "sub%d" : "f%d", k);
        char *p = pjoin(scratch, name);
        if (k % 2) {
          mkdir_ok(p);
          char *q = pjoin(p, "inner.bin");
          write_file(q, buf + (size_t)k * (n / 8), n / 8, k == 3 ? 0755 : 0644);
          free(q);
        } else {
          write_file(p, buf + (size_t)k * (n / 8), n / 8, 0644);
        }
        free(p);
      }
      char *l = pjoin(scratch, "link");
      if (symlink("sub1/inner.bin", l) != 0) die("symlink");
      free(l);
      if (zorch__store_put_path(st, scratch, i % 5 == 3, dg, NULL, NULL)) die("put_path dir");
      if (i % 5 == 4) zorch__rm_rf(scratch);
      break;
    }
    free(scratch);
    /* a document of variable length, durable every other time */
    size_t dl = 1000 + (size_t)(rng_next(&r) % 300000);
    int hl = snprintf(doc, 100, "{\"i\":%u,\"len\":%zu,\"pad\":\"", i, dl);
    memset(doc + hl, 'a' + (int)(i % 26), dl);
    memcpy(doc + hl + dl, "\"}", 3);
    char rel[64];
    snprintf(rel, sizeof rel, "runs/crash/doc-%u.json", i % 16);
    if (zorch__store_write_doc(st, rel, doc, strlen(doc), i % 2 == 0)) die("write_doc");
  }
}

/* Every artifact hashes to its own name; every document is whole. */
static size_t verify_store(const char *root) {
  char *arts = pjoin(root, "artifacts");
  DIR *d = opendir(arts);
  ck_assert(d != NULL);
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    ck_assert_uint_eq(strlen(de->d_name), 2);
    char *shard = pjoin(arts, de->d_name);
    DIR *sd = opendir(shard);
    ck_assert(sd != NULL);
    struct dirent *e2;
    while ((e2 = readdir(sd))) {
      if (e2->d_name[0] == '.') continue;
      ck_assert_msg(zorch__is_digest(e2->d_name), "stray entry %s/%s", shard, e2->d_name);
      ck_assert(!strncmp(e2->d_name, de->d_name, 2));
      char *p = pjoin(shard, e2->d_name);
      struct stat sb;
      ck_assert(lstat(p, &sb) == 0);
      char got[65];
      if (S_ISDIR(sb.st_mode)) {
        manifest_digest(p, got);
      } else {
        ck_assert(S_ISREG(sb.st_mode));
        ck_assert_int_eq(sb.st_mode & 07777, 0444);
        ck_assert(sha_file(p, got));
      }
      ck_assert_msg(!strcmp(got, e2->d_name), "artifact %s hashes to %s", p, got);
      n++;
      free(p);
    }
    closedir(sd);
    free(shard);
  }
  closedir(d);
  free(arts);

  char *docs = pjoin(root, "runs/crash");
  d = opendir(docs);
  if (d) {
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.') continue;
      char *p = pjoin(docs, de->d_name);
      json_error_t err;
      json_t *j = json_load_file(p, 0, &err);
      ck_assert_msg(j != NULL, "document %s is not whole: %s", p, err.text);
      json_int_t len = json_integer_value(json_object_get(j, "len"));
      const char *pad = json_string_value(json_object_get(j, "pad"));
      ck_assert(pad && (json_int_t)strlen(pad) == len);
      json_decref(j);
      free(p);
    }
    closedir(d);
  }
  free(docs);
  return n;
}

START_TEST(test_crash_safety) {
  const char *root = zt_tmpdir();
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  for (int round = 0; round < 6; round++) {
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) crash_child(root, (unsigned)rand());
    usleep(40000 + (useconds_t)(rand() % 400000));
    ck_assert(kill(pid, SIGKILL) == 0);
    int status = 0;
    ck_assert(waitpid(pid, &status, 0) == pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "the writer stopped by itself (status %d)", status);
    verify_store(root);
  }
  zorch__store *st = NULL;
  zt_ok(zorch__store_open(&st, root)); /* a fresh open works after the crashes */
  char dg[ZORCH__DIGEST_HEX];
  zt_ok(zorch__store_put_bytes(st, "after", 5, dg));
  size_t n = verify_store(root);
  printf("store: crash test: %zu artifacts verified after 6 kill -9, %zu leftovers in tmp/\n", n,
         count_tmp(root));
  ck_assert_uint_gt(n, 5);
  zorch__store_close(st);
}
END_TEST

/* ---- journal ------------------------------------------------------------------------------ */

typedef struct {
  zorch__journal *j;
  int id;
  int n;
  int64_t ns;
} app_arg;

static void *appender(void *p) {
  app_arg *a = p;
  char line[64];
  int64_t t0 = zorch__mono_ns();
  for (int i = 0; i < a->n; i++) {
    int len = snprintf(line, sizeof line, "{\"t\":%d,\"i\":%d}", a->id, i);
    if (zorch__journal_append(a->j, line, (size_t)len)) abort();
  }
  a->ns = zorch__mono_ns() - t0;
  return NULL;
}

typedef struct {
  int next[8];
  long lines;
  bool bad;
} order_state;

static int check_order(const char *line, size_t len, void *payload) {
  order_state *s = payload;
  int t = -1, i = -1;
  if (sscanf(line, "{\"t\":%d,\"i\":%d}", &t, &i) != 2 || t < 0 || t > 7 || line[len] != '\0') {
    s->bad = true;
    return 0;
  }
  if (s->next[t] != i) s->bad = true;
  s->next[t] = i + 1;
  s->lines++;
  return 0;
}

static void run_threads(const char *path, bool durable) {
  zorch__journal *j = NULL;
  zt_ok(zorch__journal_open(&j, path, durable));
  enum { T = 4, N = 20000 };
  pthread_t th[T];
  app_arg a[T];
  int64_t t0 = zorch__mono_ns();
  for (int i = 0; i < T; i++) {
    a[i] = (app_arg){j, i, N, 0};
    ck_assert(pthread_create(&th[i], NULL, appender, &a[i]) == 0);
  }
  int64_t sum = 0;
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    sum += a[i].ns;
  }
  int64_t t1 = zorch__mono_ns();
  zt_ok(zorch__journal_close(j));
  int64_t t2 = zorch__mono_ns();
  order_state s = {{0}, 0, false};
  zt_ok(zorch__journal_replay(path, check_order, &s));
  ck_assert(!s.bad);
  ck_assert_int_eq(s.lines, T * N);
  for (int i = 0; i < T; i++) ck_assert_int_eq(s.next[i], N);
  printf("journal: %d threads x %d appends (durable=%d): %.3f us/append per thread, "
         "wall %.1f ms + close %.1f ms\n",
         T, N, durable, (double)sum / T / N / 1e3, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
}

START_TEST(test_journal_threads) {
  const char *dir = zt_tmpdir();
  char *p1 = pjoin(dir, "runs/r/journal.jsonl"); /* parent directories are created */
  char *p2 = pjoin(dir, "j2.jsonl");
  run_threads(p1, true);
  run_threads(p2, false);
  free(p1);
  free(p2);
}
END_TEST

static int count_cb(const char *line, size_t len, void *payload) {
  (void)line;
  (void)len;
  (*(long *)payload)++;
  return 0;
}

START_TEST(test_journal_append_cost) {
  const char *dir = zt_tmpdir();
  for (int durable = 0; durable < 2; durable++) {
    char name[32];
    snprintf(name, sizeof name, "cost-%d.jsonl", durable);
    char *p = pjoin(dir, name);
    zorch__journal *j = NULL;
    zt_ok(zorch__journal_open(&j, p, durable));
    enum { N = 100000 };
    char line[160];
    int failed = 0;
    /* no ck_assert in the loop: in fork mode every assertion writes to a pipe */
    int64_t t0 = zorch__mono_ns();
    for (int i = 0; i < N; i++) {
      int len = snprintf(line, sizeof line,
                         "{\"step\":\"s%06d\",\"status\":\"completed\",\"t0\":1700000000.123,"
                         "\"t1\":1700000000.456,\"outputs\":[]}", i);
      failed += zorch__journal_append(j, line, (size_t)len) != ZORCH_OK;
    }
    int64_t t1 = zorch__mono_ns();
    ck_assert_int_eq(failed, 0);
    zt_ok(zorch__journal_flush(j));
    int64_t t2 = zorch__mono_ns();
    zt_ok(zorch__journal_close(j));
    long lines = 0;
    zt_ok(zorch__journal_replay(p, count_cb, &lines));
    ck_assert_int_eq(lines, N);
    printf("journal: 100k appends of ~110 B (snprintf included), 1 thread, durable=%d: "
           "%.3f us/append, flush after %.1f ms, all-in %.3f us/line\n",
           durable, (double)(t1 - t0) / N / 1e3, (double)(t2 - t1) / 1e6, (double)(t2 - t0) / N / 1e3);
    free(p);
  }
}
END_TEST

static int collect_cb(const char *line, size_t len, void *payload) {
  zorch__buf *b = payload;
  zorch__buf_put(b, line, len);
  zorch__buf_puts(b, "|");
  return 0;
}

static int stop_cb(const char *line, size_t len, void *payload) {
  (void)line;
  (void)len;
  return ++*(int *)payload == 2 ? 42 : 0;
}

START_TEST(test_journal_torn_line) {
  const char *dir = zt_tmpdir();
  char *p = pjoin(dir, "j.jsonl");
  zorch__journal *j = NULL;
  zt_ok(zorch__journal_open(&j, p, true));
  zt_ok(zorch__journal_append(j, "{\"a\":1}", 7));
  zt_ok(zorch__journal_append(j, "", 0)); /* an empty line is a line */
  zt_ok(zorch__journal_append(j, "{\"a\":2}", 7));
  zt_ok(zorch__journal_close(j));
  /* a crash in the middle of a write leaves a torn line */
  int fd = open(p, O_WRONLY | O_APPEND);
  ck_assert(write(fd, "{\"a\":3,\"tor", 11) == 11);
  close(fd);
  zorch__buf b = ZORCH__BUF_INIT;
  zt_ok(zorch__journal_replay(p, collect_cb, &b));
  ck_assert_str_eq(b.data, "{\"a\":1}||{\"a\":2}|");
  zorch__buf_free(&b);
  /* appending after the crash: the torn fragment is cut, never glued to a new line */
  zt_ok(zorch__journal_open(&j, p, false));
  zt_ok(zorch__journal_append(j, "{\"a\":4}", 7));
  zt_ok(zorch__journal_close(j));
  zt_ok(zorch__journal_replay(p, collect_cb, &b));
  ck_assert_str_eq(b.data, "{\"a\":1}||{\"a\":2}|{\"a\":4}|");
  zorch__buf_free(&b);
  /* a writer that stays open while another one crashed also cuts the fragment */
  zt_ok(zorch__journal_open(&j, p, false));
  zt_ok(zorch__journal_append(j, "{\"a\":5}", 7));
  zt_ok(zorch__journal_flush(j));
  fd = open(p, O_WRONLY | O_APPEND);
  ck_assert(write(fd, "{\"a\":", 5) == 5);
  close(fd);
  zt_ok(zorch__journal_append(j, "{\"a\":6}", 7));
  zt_ok(zorch__journal_close(j));
  zt_ok(zorch__journal_replay(p, collect_cb, &b));
  ck_assert_str_eq(b.data, "{\"a\":1}||{\"a\":2}|{\"a\":4}|{\"a\":5}|{\"a\":6}|");
  zorch__buf_free(&b);
  /* a file that is one torn line only */
  char *p2 = pjoin(dir, "only-torn.jsonl");
  write_str(p2, "{\"x\":");
  long n = 0;
  zt_ok(zorch__journal_replay(p2, count_cb, &n));
  ck_assert_int_eq(n, 0);
  /* the callback's non-zero return stops the replay and is returned */
  int calls = 0;
  zt_assert_rc(zorch__journal_replay(p, stop_cb, &calls), 42);
  ck_assert_int_eq(calls, 2);
  /* errors */
  char *missing = pjoin(dir, "missing.jsonl");
  zt_assert_rc(zorch__journal_replay(missing, count_cb, &n), ZORCH_ENOTFOUND);
  zt_assert_msg_has(missing);
  zt_ok(zorch__journal_open(&j, p, false));
  zt_assert_rc(zorch__journal_append(j, "a\nb", 3), ZORCH_EINVALID);
  zt_ok(zorch__journal_close(j));
  zt_ok(zorch__journal_close(NULL));
  free(missing);
  free(p2);
  free(p);
}
END_TEST

START_TEST(test_journal_long_lines) {
  /* lines longer than the replay buffer (1 MiB) */
  const char *dir = zt_tmpdir();
  char *p = pjoin(dir, "long.jsonl");
  zorch__journal *j = NULL;
  zt_ok(zorch__journal_open(&j, p, false));
  size_t n = 3u << 20;
  char *big = malloc(n);
  memset(big, 'x', n);
  zt_ok(zorch__journal_append(j, big, n));
  zt_ok(zorch__journal_append(j, "short", 5));
  zt_ok(zorch__journal_append(j, big, 100));
  zt_ok(zorch__journal_close(j));
  zorch__buf b = ZORCH__BUF_INIT;
  zt_ok(zorch__journal_replay(p, collect_cb, &b));
  ck_assert_uint_eq(b.len, n + 1 + 6 + 101);
  ck_assert(!memcmp(b.data + n, "|short|", 7));
  zorch__buf_free(&b);
  free(big);
  free(p);
}
END_TEST

START_TEST(test_journal_flush_visible) {
  const char *dir = zt_tmpdir();
  char *p = pjoin(dir, "f.jsonl");
  for (int durable = 0; durable < 2; durable++) {
    zorch__journal *j = NULL;
    zt_ok(zorch__journal_open(&j, p, durable));
    char line[32];
    snprintf(line, sizeof line, "{\"visible\":%d}", durable);
    zt_ok(zorch__journal_append(j, line, strlen(line)));
    zt_ok(zorch__journal_flush(j));
    char *data = NULL;
    zt_ok(zorch__read_file(p, &data, NULL));
    ck_assert_ptr_nonnull(strstr(data, line));
    free(data);
    zt_ok(zorch__journal_flush(j)); /* nothing pending */
    zt_ok(zorch__journal_close(j));
  }
  free(p);
}
END_TEST

typedef struct {
  long next;
  bool bad;
} seq_state;

static int seq_cb(const char *line, size_t len, void *payload) {
  seq_state *s = payload;
  long i = -1;
  int padn = -1;
  if (sscanf(line, "{\"i\":%ld,\"pad\":\"%*[x]\"}%n", &i, &padn) != 1 || padn != (int)len) {
    /* lines with an empty pad */
    if (sscanf(line, "{\"i\":%ld,\"pad\":\"\"}%n", &i, &padn) != 1 || padn != (int)len) s->bad = true;
  }
  if (i != s->next) s->bad = true;
  s->next = i + 1;
  return 0;
}

static void journal_child(const char *path, long start, bool durable) {
  zorch__journal *j = NULL;
  if (zorch__journal_open(&j, path, durable)) die("journal open");
  static char xs[4001];
  memset(xs, 'x', 4000);
  char line[5000];
  for (long i = start;; i++) {
    int pad = (int)((i * 7919) % 4000);
    int len = snprintf(line, sizeof line, "{\"i\":%ld,\"pad\":\"%.*s\"}", i, pad, xs);
    if (zorch__journal_append(j, line, (size_t)len)) die("append");
    if (i % 5000 == 0 && zorch__journal_flush(j)) die("flush");
  }
}

START_TEST(test_journal_kill9) {
  const char *dir = zt_tmpdir();
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  for (int durable = 0; durable < 2; durable++) {
    char *p = pjoin(dir, durable ? "kill-durable.jsonl" : "kill.jsonl");
    long have = 0;
    for (int round = 0; round < 4; round++) {
      pid_t pid = fork();
      ck_assert(pid >= 0);
      if (pid == 0) journal_child(p, have, durable);
      usleep(20000 + (useconds_t)(rand() % 200000));
      ck_assert(kill(pid, SIGKILL) == 0);
      int status = 0;
      ck_assert(waitpid(pid, &status, 0) == pid);
      ck_assert_msg(WIFSIGNALED(status), "the appender stopped by itself (status %d)", status);
      seq_state s = {0, false};
      zt_ok(zorch__journal_replay(p, seq_cb, &s));
      ck_assert_msg(!s.bad, "replay after kill -9 is not a prefix of whole lines");
      ck_assert_int_ge(s.next, have);
      have = s.next;
    }
    /* and a clean writer continues the sequence after the last crash */
    zorch__journal *j = NULL;
    zt_ok(zorch__journal_open(&j, p, durable));
    char line[64];
    int len = snprintf(line, sizeof line, "{\"i\":%ld,\"pad\":\"\"}", have);
    zt_ok(zorch__journal_append(j, line, (size_t)len));
    zt_ok(zorch__journal_close(j));
    seq_state s = {0, false};
    zt_ok(zorch__journal_replay(p, seq_cb, &s));
    ck_assert(!s.bad);
    ck_assert_int_eq(s.next, have + 1);
    printf("journal: kill -9 test (durable=%d): %ld whole lines survived 4 crashes in order\n",
           durable, have);
    ck_assert_int_gt(have, 0);
    free(p);
  }
}
END_TEST

Suite *store_suite(void);
Suite *store_suite(void) {
  Suite *s = suite_create("store");
  TCase *tc = tcase_create("artifacts");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_sha256_one_shot);
  tcase_add_test(tc, test_time_format);
  tcase_add_test(tc, test_put_bytes);
  tcase_add_test(tc, test_put_bytes_dedup);
  tcase_add_test(tc, test_put_path_file_copy);
  tcase_add_test(tc, test_put_path_file_take);
  tcase_add_test(tc, test_put_path_dir);
  tcase_add_test(tc, test_put_path_errors);
  tcase_add_test(tc, test_big_file_streamed);
  tcase_add_test(tc, test_many_small_files_dir);
  tcase_add_test(tc, test_docs);
  tcase_add_test(tc, test_scratch_unique);
  tcase_add_test(tc, test_open_cleans_stale_tmp);
  tcase_add_test(tc, test_no_fd_leak);
  tcase_add_test(tc, test_crash_safety);
  suite_add_tcase(s, tc);
  TCase *tj = tcase_create("journal");
  tcase_set_timeout(tj, 120);
  tcase_add_test(tj, test_journal_threads);
  tcase_add_test(tj, test_journal_append_cost);
  tcase_add_test(tj, test_journal_torn_line);
  tcase_add_test(tj, test_journal_long_lines);
  tcase_add_test(tj, test_journal_flush_visible);
  tcase_add_test(tj, test_journal_kill9);
  suite_add_tcase(s, tj);
  return s;
}

ZORCH_CHECK_MAIN(store)
