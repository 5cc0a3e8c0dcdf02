/* zorch — the local artifact store (the built-in backend): content-addressed
 * artifacts and atomic documents in a directory.  The contract is in store.h
 * and store_backend.h; this comment states how it is kept.
 *
 * Publishing an artifact:
 *   1. the content is written (or, for take=true, left where it is) under
 *      <root>/tmp/ and hashed in the same streaming pass (1 MiB buffer; a file
 *      is never read whole into memory);
 *   2. if artifacts/<2 hex>/<digest> already exists the temporary is removed
 *      and nothing else happens (equal content is stored once);
 *   3. otherwise every file is made read-only (0444, or 0555 for executable
 *      members of a directory artifact) and fsync'd, every directory of a tree
 *      is made 0555 and fsync'd, the shard directory is created (and its parent
 *      fsync'd when it is new), the temporary is renamed into place with
 *      RENAME_NOREPLACE, and the shard directory is fsync'd.
 *   Readers therefore see either nothing or a complete artifact, after kill -9
 *   as after power loss.  A single file artifact is always 0444: its digest
 *   covers the content only, so the executable bit cannot be part of it.
 *   A file copy is read into a ring of buffers and written out, with
 *   writeback started every 8 MiB (sync_file_range), while a second thread
 *   hashes each buffer once it is written (zorch__io_copy_and_hash): every byte is
 *   read once, the final fsync is short and the digest is of the stored
 *   bytes; a tree starts writeback of all its files before it
 *   fsyncs them one by one, so that few journal commits cover them all.
 *   take=true of a file with other hard links copies it (another name could
 *   change it later); take=true across filesystems falls back to a copy.
 *   Directory artifacts are read-only trees: remove them with zorch__rm_rf(),
 *   which makes each directory writable first (plain rm -rf fails unless root).
 *
 * Documents: written to <root>/tmp/, fsync'd (durable), renamed over the
 * destination, and the destination's directory fsync'd (durable); directories
 * created on the way are made durable too.  With durable=false the rename
 * still makes the publish atomic for readers and after a process crash, but
 * not after a power loss.
 *
 * Leftovers in tmp/: a crash can leave temporaries there; they are never
 * visible as artifacts or documents.  zorch__local_open() removes an entry of
 * tmp/ only when neither it nor anything below it was modified for
 * ZORCH__TMP_STALE_SECONDS (24 hours), so that a long step of another process
 * that still writes into its scratch path is never disturbed.  Removal is best
 * effort and never fails the open.
 */
#include "store_int.h"
#include "store_layout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ZORCH__TMP_STALE_SECONDS (24 * 3600)

struct zorch__local {
  char *root;      /* absolute */
  char *tmp;       /* root/tmp */
  char *artifacts; /* root/artifacts */
  unsigned nonce;  /* random, per open: temp names differ across hosts sharing the store */
};

static int tmp_create(const zorch__local *st, char kind, char **path_out, int *fd_out) {
  return zorch__io_tmp_create(st->tmp, st->nonce, kind, path_out, fd_out);
}

/* ---- open / close ----------------------------------------------------------- */

static time_t newest_mtime(int dfd, const char *name, int depth) {
  struct stat sb;
  if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) return 0;
  time_t t = sb.st_mtime;
  if (!S_ISDIR(sb.st_mode) || depth > 64) return t;
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return t;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return t;
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    time_t c = newest_mtime(dirfd(d), de->d_name, depth + 1);
    if (c > t) t = c;
  }
  closedir(d);
  return t;
}

static void clean_tmp(const zorch__local *st) {
  DIR *d = opendir(st->tmp);
  if (!d) return;
  time_t limit = time(NULL) - ZORCH__TMP_STALE_SECONDS;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (newest_mtime(dirfd(d), de->d_name, 0) >= limit) continue;
    char *p = zorch__path_join(st->tmp, de->d_name);
    if (p) (void)zorch__rm_rf(p);
    free(p);
  }
  closedir(d);
}

int zorch__local_open(zorch__local **out, const char *root) {
  if (!out || !root || !*root)
    return zorch__error_set(ZORCH_EINVALID, "zorch__local_open: out or root is missing");
  *out = NULL;
  int rc = zorch__io_mkdirs_durable(root, true);
  if (rc) return zorch__error_prefix("cannot open store '%s'", root);
  char *abs = realpath(root, NULL);
  if (!abs) return zorch__error_errno(ZORCH_EIO, errno, "cannot open store '%s': realpath", root);
  zorch__local *st = calloc(1, sizeof *st);
  if (!st) {
    free(abs);
    return zorch__error_oom();
  }
  st->root = abs;
  st->tmp = zorch__path_join(abs, zorch__layout_tmp);
  st->artifacts = zorch__path_join(abs, zorch__layout_artifacts);
  if (!st->tmp || !st->artifacts) rc = zorch__error_oom();
  /* a new store's directories, made durable with one sync of the root */
  bool made, any = false;
  for (const char *const *d = zorch__layout_local_dirs; *d && !rc; d++) {
    char *sub = zorch__path_join(abs, *d);
    rc = sub ? zorch__io_mkdir_one(sub, &made) : zorch__error_oom();
    any |= !rc && made;
    free(sub);
  }
  if (!rc && any) rc = zorch__io_fsync_dir(abs);
  if (rc) {
    zorch__error_prefix("cannot open store '%s'", root);
    zorch__local_close(st);
    return rc;
  }
  if (getrandom(&st->nonce, sizeof st->nonce, GRND_NONBLOCK) != (ssize_t)sizeof st->nonce)
    st->nonce = (unsigned)zorch__mono_ns() ^ ((unsigned)getpid() << 16);
  clean_tmp(st);
  *out = st;
  return ZORCH_OK;
}

void zorch__local_close(zorch__local *st) {
  if (!st) return;
  free(st->root);
  free(st->tmp);
  free(st->artifacts);
  free(st);
}

const char *zorch__local_root(const zorch__local *st) { return st ? st->root : NULL; }

/* ---- artifacts ---------------------------------------------------------------- */

char *zorch__local_artifact_path(const zorch__local *st, const char *digest) {
  char key[ZORCH__LAYOUT_ARTIFACT_MAX];
  zorch__layout_artifact(key, digest);
  return zorch__asprintf("%s/%s", st->root, key);
}

bool zorch__local_has(const zorch__local *st, const char *digest) {
  if (!st || !zorch__is_digest(digest)) return false;
  char *p = zorch__local_artifact_path(st, digest);
  if (!p) return false;
  struct stat sb;
  bool ok = lstat(p, &sb) == 0;
  free(p);
  return ok;
}

/* Is the digest already stored?  1 yes, 0 no; an error when it exists with the
 * other kind (a file whose bytes are exactly a directory manifest). */
static int exists_as(const zorch__local *st, const char *digest, bool is_dir) {
  char *p = zorch__local_artifact_path(st, digest);
  if (!p) return zorch__error_oom();
  struct stat sb;
  int r = 0;
  if (lstat(p, &sb) == 0) {
    if (S_ISDIR(sb.st_mode) != is_dir)
      r = zorch__error_set(ZORCH_EEXISTS, "artifact '%s' already exists as a %s, not a %s", p,
                           is_dir ? "file" : "directory", is_dir ? "directory" : "file");
    else
      r = 1;
  }
  free(p);
  return r;
}

/* Rename the complete, fsync'd temporary `tmp` into place.  When the digest
 * appeared meanwhile, the temporary is removed.  *xdev is set (and nothing
 * done) when `tmp` is on another filesystem. */
static int publish(const zorch__local *st, const char *tmp, const char *digest, bool is_dir,
                   bool *xdev) {
  if (xdev) *xdev = false;
  char key[ZORCH__LAYOUT_ARTIFACT_MAX];
  zorch__layout_artifact_shard(key, digest);
  char *shard = zorch__path_join(st->root, key);
  char *final = zorch__local_artifact_path(st, digest);
  int rc = ZORCH_OK;
  if (!shard || !final) {
    rc = zorch__error_oom();
    goto out;
  }
  if (mkdir(shard, 0755) == 0) {
    if ((rc = zorch__io_fsync_dir(st->artifacts))) goto out;
  } else if (errno != EEXIST) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create directory '%s'", shard);
    goto out;
  }
  int r = renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE);
  if (r != 0 && (errno == EINVAL || errno == ENOSYS)) {
    /* The filesystem lacks RENAME_NOREPLACE: check first; a racing identical
     * file may be replaced, which readers cannot notice. */
    struct stat sb;
    if (lstat(final, &sb) == 0) {
      errno = EEXIST;
    } else {
      r = rename(tmp, final);
    }
  }
  if (r != 0) {
    int e = errno;
    if (e == EEXIST || e == ENOTEMPTY) {
      int k = exists_as(st, digest, is_dir);
      if (k < 0) {
        rc = k;
        goto out;
      }
      rc = is_dir ? zorch__rm_rf(tmp) : (unlink(tmp) == 0 || errno == ENOENT
                                             ? ZORCH_OK
                                             : zorch__error_errno(ZORCH_EIO, errno,
                                                                  "cannot remove '%s'", tmp));
      goto out;
    }
    if (e == EXDEV && xdev) {
      *xdev = true;
      goto out;
    }
    rc = zorch__error_errno(ZORCH_EIO, e, "cannot rename '%s' to '%s'", tmp, final);
    goto out;
  }
  rc = zorch__io_fsync_dir(shard);
out:
  free(shard);
  free(final);
  return rc;
}

/* The new artifact file `tmp` (open as fd, complete) made read-only,
 * fsync'd, closed and published as `digest`; on failure it is removed.
 * Frees tmp. */
static int seal_and_publish(const zorch__local *st, int fd, char *tmp, const char *digest) {
  int rc;
  if (fchmod(fd, 0444) != 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot chmod '%s'", tmp);
    close(fd);
  } else if (!(rc = zorch__io_fsync_close(fd, tmp))) {
    rc = publish(st, tmp, digest, false, NULL);
  }
  if (rc) unlink(tmp);
  free(tmp);
  return rc;
}

int zorch__local_put_bytes(zorch__local *st, const void *data, size_t len,
                           char digest[ZORCH__DIGEST_HEX]) {
  if (!st || !digest || (!data && len))
    return zorch__error_set(ZORCH_EINVALID, "zorch__local_put_bytes: invalid argument");
  zorch__sha256_hex(data ? data : "", len, digest);
  int k = exists_as(st, digest, false);
  if (k != 0) return k < 0 ? k : ZORCH_OK;
  char *tmp = NULL;
  int fd = -1;
  int rc = tmp_create(st, 'w', &tmp, &fd);
  if (rc) return rc;
  if ((rc = zorch__io_write_all(fd, data, len, tmp))) {
    close(fd);
    unlink(tmp);
    free(tmp);
    return rc;
  }
  return seal_and_publish(st, fd, tmp, digest);
}

/* Drop the name `path` of something taken (already stored); no error if gone. */
static int remove_taken(const char *path) {
  if (unlink(path) != 0 && errno != ENOENT)
    return zorch__error_errno(ZORCH_EIO, errno, "cannot remove '%s'", path);
  return ZORCH_OK;
}

static int put_file_copy(zorch__local *st, const char *path, unsigned char *buf,
                         char digest[ZORCH__DIGEST_HEX], uint64_t *size) {
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open '%s'", path);
  }
  char *tmp = NULL;
  int out = -1;
  int rc = tmp_create(st, 'w', &tmp, &out);
  if (rc) {
    close(in);
    return rc;
  }
  rc = zorch__io_copy_and_hash(in, path, out, tmp, digest, size);
  if (rc == 1) rc = zorch__io_stream_hash(in, path, out, tmp, buf, digest, size); /* one thread */
  close(in);
  int k = rc ? 0 : exists_as(st, digest, false);
  if (rc || k != 0) {
    close(out);
    unlink(tmp);
    free(tmp);
    return rc ? rc : (k < 0 ? k : ZORCH_OK);
  }
  return seal_and_publish(st, out, tmp, digest);
}

/* A regular file at `path`, moved (take=true): hashed in place, no copy. */
static int put_file_take(zorch__local *st, const char *path, unsigned char *buf,
                         char digest[ZORCH__DIGEST_HEX], uint64_t *size) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open '%s'", path);
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return zorch__error_errno(ZORCH_EIO, e, "cannot stat '%s'", path);
  }
  if (sb.st_nlink > 1) {
    /* Another name could still change the content: copy instead. */
    close(fd);
    int rc = put_file_copy(st, path, buf, digest, size);
    if (!rc) rc = remove_taken(path);
    return rc;
  }
  int rc = zorch__io_stream_hash(fd, path, -1, NULL, buf, digest, size);
  int k = rc ? 0 : exists_as(st, digest, false);
  if (rc || k < 0) {
    close(fd);
    return rc ? rc : k;
  }
  if (k == 1) {
    close(fd);
    return remove_taken(path);
  }
  if (fchmod(fd, 0444) != 0) {
    int e = errno;
    close(fd);
    return zorch__error_errno(ZORCH_EIO, e, "cannot chmod '%s'", path);
  }
  if ((rc = zorch__io_fsync_close(fd, path))) return rc;
  bool xdev = false;
  rc = publish(st, path, digest, false, &xdev);
  if (!rc && xdev) {
    rc = put_file_copy(st, path, buf, digest, size);
    if (!rc) rc = remove_taken(path);
  }
  return rc;
}

/* take=false: copy the tree at `path` into a temporary directory, hashing. */
static int put_dir_copy(zorch__local *st, const char *path, unsigned char *buf,
                        char digest[ZORCH__DIGEST_HEX], uint64_t *size, zorch__buf *manifest) {
  int sfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (sfd < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open directory '%s'", path);
  }
  char *tmp = NULL;
  for (int tries = 0; tries < 100 && !tmp; tries++) {
    char *p = zorch__io_tmp_name(st->tmp, st->nonce, 'w', NULL);
    if (!p) break;
    if (mkdir(p, 0755) == 0) {
      tmp = p;
    } else {
      int e = errno;
      free(p);
      if (e != EEXIST) {
        close(sfd);
        return zorch__error_errno(ZORCH_EIO, e, "cannot create a temporary directory in '%s'", st->tmp);
      }
    }
  }
  if (!tmp) {
    close(sfd);
    return zorch__error_set(ZORCH_EIO, "cannot create a temporary directory in '%s'", st->tmp);
  }
  int rc = ZORCH_OK;
  int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rootfd = dfd >= 0 ? dup(dfd) : -1;
  zorch__tree tw = {.buf = buf, .src_root = path, .dst_root = tmp};
  if (dfd < 0 || rootfd < 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot open directory '%s'", tmp);
    close(sfd);
    if (dfd >= 0) close(dfd);
  } else {
    rc = zorch__tree_walk_dir(&tw, sfd, dfd, "");
  }
  if (!rc) rc = zorch__tree_digest(&tw, digest, manifest);
  int k = rc ? 0 : exists_as(st, digest, true);
  if (k < 0) rc = k;
  if (!rc && k == 0) rc = zorch__tree_sync(&tw, rootfd, tmp);
  if (rootfd >= 0) close(rootfd);
  if (!rc && k == 0) rc = publish(st, tmp, digest, true, NULL);
  if (rc || k == 1) {
    int saved = rc;
    if (rc) {
      /* keep the first error's message */
      char msg[512];
      snprintf(msg, sizeof msg, "%s", zorch_error_last()->message);
      (void)zorch__rm_rf(tmp);
      zorch__error_set(saved, "%s", msg);
    } else {
      rc = zorch__rm_rf(tmp);
    }
  }
  if (!rc && size) *size = tw.size;
  zorch__tree_free(&tw);
  free(tmp);
  return rc;
}

/* take=true: hash the tree in place, seal it and rename it into place. */
static int put_dir_take(zorch__local *st, const char *path, unsigned char *buf,
                        char digest[ZORCH__DIGEST_HEX], uint64_t *size, zorch__buf *manifest) {
  int sfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sfd < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open directory '%s'", path);
  }
  int rootfd = dup(sfd);
  if (rootfd < 0) {
    int e = errno;
    close(sfd);
    return zorch__error_errno(ZORCH_EIO, e, "cannot open directory '%s'", path);
  }
  zorch__tree tw = {.buf = buf, .src_root = path, .dst_root = NULL};
  int rc = zorch__tree_walk_dir(&tw, sfd, -1, "");
  if (!rc) rc = zorch__tree_digest(&tw, digest, manifest);
  int k = rc ? 0 : exists_as(st, digest, true);
  if (k < 0) rc = k;
  bool xdev = false;
  if (!rc && k == 0) rc = zorch__tree_sync(&tw, rootfd, path);
  close(rootfd);
  if (!rc && k == 0) rc = publish(st, path, digest, true, &xdev);
  if (!rc && xdev) rc = put_dir_copy(st, path, buf, digest, NULL, NULL);
  if (!rc && (k == 1 || xdev)) rc = zorch__rm_rf(path);
  if (!rc && size) *size = tw.size;
  zorch__tree_free(&tw);
  return rc;
}

int zorch__local_put_path(zorch__local *st, const char *path, bool take,
                          char digest[ZORCH__DIGEST_HEX], uint64_t *size, bool *is_dir,
                          zorch__buf *manifest) {
  if (!st || !path || !digest)
    return zorch__error_set(ZORCH_EINVALID, "zorch__local_put_path: invalid argument");
  struct stat sb, lsb;
  if (stat(path, &sb) != 0 || lstat(path, &lsb) != 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot store '%s'", path);
  }
  bool dir = S_ISDIR(sb.st_mode);
  if (!dir && !S_ISREG(sb.st_mode))
    return zorch__error_set(ZORCH_EINVALID,
                            "cannot store '%s': not a regular file or a directory", path);
  unsigned char *buf = malloc(ZORCH__IO_BUF);
  if (!buf) return zorch__error_oom();
  uint64_t sz = 0;
  int rc;
  if (take && S_ISLNK(lsb.st_mode)) {
    /* Taking a symbolic link: store what it points to, then drop the link. */
    rc = dir ? put_dir_copy(st, path, buf, digest, &sz, manifest)
             : put_file_copy(st, path, buf, digest, &sz);
    if (!rc) rc = remove_taken(path);
  } else if (dir) {
    rc = take ? put_dir_take(st, path, buf, digest, &sz, manifest)
              : put_dir_copy(st, path, buf, digest, &sz, manifest);
  } else {
    rc = take ? put_file_take(st, path, buf, digest, &sz) : put_file_copy(st, path, buf, digest, &sz);
  }
  free(buf);
  if (rc) return rc;
  if (size) *size = sz;
  if (is_dir) *is_dir = dir;
  return ZORCH_OK;
}

int zorch__local_scratch(zorch__local *st, const char *hint, char **path_out) {
  if (!st || !path_out) return zorch__error_set(ZORCH_EINVALID, "zorch__local_scratch: invalid argument");
  *path_out = NULL;
  for (int tries = 0; tries < 100; tries++) {
    char *p = zorch__io_tmp_name(st->tmp, st->nonce, 's', hint);
    if (!p) return zorch__error_oom();
    struct stat sb;
    if (lstat(p, &sb) != 0 && errno == ENOENT) {
      *path_out = p;
      return ZORCH_OK;
    }
    free(p);
  }
  return zorch__error_set(ZORCH_EIO, "cannot find a free scratch name in '%s'", st->tmp);
}

/* ---- documents ------------------------------------------------------------------ */

/* Refuse absolute keys, empty names and "." or ".." components. */
static int check_relpath(const char *relpath) {
  if (!relpath || !*relpath)
    return zorch__error_set(ZORCH_EINVALID, "document path is empty");
  if (relpath[0] == '/')
    return zorch__error_set(ZORCH_EINVALID, "document path '%s' must be relative to the store", relpath);
  const char *p = relpath;
  for (;;) {
    size_t n = strcspn(p, "/");
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
      return zorch__error_set(ZORCH_EINVALID,
                              "document path '%s' has an empty, '.' or '..' component", relpath);
    if (!p[n]) break;
    p += n + 1;
  }
  return ZORCH_OK;
}

int zorch__local_write_doc(zorch__local *st, const char *relpath, const void *data, size_t len,
                           bool durable) {
  if (!st || (!data && len)) return zorch__error_set(ZORCH_EINVALID, "zorch__local_write_doc: invalid argument");
  int rc = check_relpath(relpath);
  if (rc) return rc;
  char *full = zorch__path_join(st->root, relpath);
  char *dir = full ? zorch__io_parent_of(full) : NULL;
  char *tmp = NULL;
  int fd = -1;
  if (!full || !dir) {
    rc = zorch__error_oom();
    goto out;
  }
  if ((rc = zorch__io_mkdirs_durable(dir, durable))) {
    zorch__error_prefix("cannot write document '%s'", full);
    goto out;
  }
  if ((rc = tmp_create(st, 'd', &tmp, &fd))) goto out;
  rc = zorch__io_write_all(fd, data, len, tmp);
  if (!rc && durable && fsync(fd) != 0) rc = zorch__error_errno(ZORCH_EIO, errno, "cannot fsync '%s'", tmp);
  if (close(fd) != 0 && !rc) rc = zorch__error_errno(ZORCH_EIO, errno, "cannot close '%s'", tmp);
  if (!rc && rename(tmp, full) != 0)
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot rename '%s' to '%s'", tmp, full);
  if (rc) {
    unlink(tmp);
    goto out;
  }
  if (durable) rc = zorch__io_fsync_dir(dir);
out:
  free(full);
  free(dir);
  free(tmp);
  return rc;
}

int zorch__local_read_doc(const zorch__local *st, const char *relpath, char **data, size_t *len) {
  if (!st || !data) return zorch__error_set(ZORCH_EINVALID, "zorch__local_read_doc: invalid argument");
  *data = NULL;
  int rc = check_relpath(relpath);
  if (rc) return rc;
  char *full = zorch__path_join(st->root, relpath);
  if (!full) return zorch__error_oom();
  size_t n = 0;
  rc = zorch__read_file(full, data, &n);
  if (rc == ZORCH_ENOTFOUND)
    zorch__error_set(ZORCH_ENOTFOUND, "document '%s' does not exist", full);
  else if (rc)
    zorch__error_prefix("cannot read document '%s'", relpath);
  if (!rc && len) *len = n;
  free(full);
  return rc;
}

/* ---- the local store as a backend (store_backend.h) ------------------------------------ */

/* A whole new object at root/key from `src_fd` (>= 0) or `data`: written to
 * tmp/, fsync'd, renamed into place (RENAME_NOREPLACE with
 * ZORCH_STORE_PUT_IF_ABSENT: an object that exists stays), the directory
 * fsync'd. */
static int put_object(zorch__local *st, const char *key, int src_fd, const char *src,
                      const void *data, size_t len, uint32_t flags) {
  int rc = check_relpath(key);
  if (rc) return rc;
  char *full = zorch__path_join(st->root, key);
  char *dir = full ? zorch__io_parent_of(full) : NULL;
  char *tmp = NULL;
  int fd = -1;
  if (!full || !dir) {
    rc = zorch__error_oom();
    goto out;
  }
  struct stat sb;
  if ((flags & ZORCH_STORE_PUT_IF_ABSENT) && lstat(full, &sb) == 0) goto out;
  if ((rc = zorch__io_mkdirs_durable(dir, true)) || (rc = tmp_create(st, 'w', &tmp, &fd))) goto out;
  if (src_fd >= 0) {
    unsigned char *buf = malloc(ZORCH__IO_BUF);
    rc = buf ? zorch__io_stream_hash(src_fd, src, fd, tmp, buf, NULL, NULL) : zorch__error_oom();
    free(buf);
  } else {
    rc = zorch__io_write_all(fd, data, len, tmp);
  }
  if (!rc && (flags & ZORCH_STORE_PUT_IF_ABSENT) && fchmod(fd, 0444) != 0)
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot chmod '%s'", tmp);
  if (rc) close(fd);
  else rc = zorch__io_fsync_close(fd, tmp);
  if (!rc) {
    int r = (flags & ZORCH_STORE_PUT_IF_ABSENT) ? renameat2(AT_FDCWD, tmp, AT_FDCWD, full, RENAME_NOREPLACE)
                                                : rename(tmp, full);
    if (r != 0 && (errno == EINVAL || errno == ENOSYS)) r = rename(tmp, full);
    if (r != 0 && errno == EEXIST) {
      unlink(tmp); /* content-addressed: what is there is the same */
    } else if (r != 0) {
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot rename '%s' to '%s'", tmp, full);
    } else {
      rc = zorch__io_fsync_dir(dir);
    }
  }
  if (rc && tmp) unlink(tmp);
out:
  free(full);
  free(dir);
  free(tmp);
  return rc;
}

static int be_put_file(void *impl, const char *key, const char *path, uint32_t flags) {
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open '%s'", path);
  }
  int rc = put_object(impl, key, in, path, NULL, 0, flags);
  close(in);
  return rc;
}

static int be_put_bytes(void *impl, const char *key, const void *data, size_t len, uint32_t flags) {
  return put_object(impl, key, -1, NULL, data, len, flags);
}

/* Open root/key for reading; ZORCH_ENOTFOUND naming the key. */
static int open_object(const zorch__local *st, const char *key, int *fd_out) {
  int rc = check_relpath(key);
  if (rc) return rc;
  char *full = zorch__path_join(st->root, key);
  if (!full) return zorch__error_oom();
  int fd = open(full, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    rc = zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open '%s'", full);
  }
  free(full);
  *fd_out = fd;
  return rc;
}

static int be_get_to_path(void *impl, const char *key, const char *path) {
  int in;
  int rc = open_object(impl, key, &in);
  if (rc) return rc;
  int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create '%s'", path);
    close(in);
    return rc;
  }
  unsigned char *buf = malloc(ZORCH__IO_BUF);
  rc = buf ? zorch__io_stream_hash(in, key, out, path, buf, NULL, NULL) : zorch__error_oom();
  free(buf);
  close(in);
  if (close(out) != 0 && !rc) rc = zorch__error_errno(ZORCH_EIO, errno, "cannot close '%s'", path);
  if (rc) unlink(path);
  return rc;
}

static int be_get_stream(void *impl, const char *key, zorch_store_sink sink, void *sink_data) {
  int fd;
  int rc = open_object(impl, key, &fd);
  if (rc) return rc;
  char buf[65536];
  for (;;) {
    ssize_t r = zorch__io_read_some(fd, buf, sizeof buf);
    if (r < 0) {
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot read '%s'", key);
      break;
    }
    if (r == 0) break;
    if ((rc = sink(sink_data, buf, (size_t)r))) break;
  }
  close(fd);
  return rc;
}

static int be_exists(void *impl, const char *key) {
  const zorch__local *st = impl;
  int rc = check_relpath(key);
  if (rc) return rc;
  char *full = zorch__path_join(st->root, key);
  if (!full) return zorch__error_oom();
  struct stat sb;
  rc = lstat(full, &sb) == 0 ? 1 : errno == ENOENT || errno == ENOTDIR ? 0
       : zorch__error_errno(ZORCH_EIO, errno, "cannot stat '%s'", full);
  free(full);
  return rc;
}

static int be_read_doc(void *impl, const char *key, char **data, size_t *len) {
  return zorch__local_read_doc(impl, key, data, len);
}

static int be_write_doc(void *impl, const char *key, const void *data, size_t len, bool durable) {
  return zorch__local_write_doc(impl, key, data, len, durable);
}

/* "artifacts/<shard>/<name>" */
static bool is_artifact_key(const char *key) {
  size_t n = strlen(zorch__layout_artifacts);
  return !strncmp(key, zorch__layout_artifacts, n) && key[n] == '/' && strchr(key + n + 1, '/');
}

/* List the directory root/<dir>, whose keys start with "<dir>/" (or nothing
 * for the root), keeping names that start with `part`; recursive unless
 * `shallow`. */
static int list_dir(const zorch__local *st, zorch__buf *dir, const char *part, bool shallow,
                    zorch_store_each each, void *each_data) {
  char *full = dir->len ? zorch__path_join(st->root, dir->data) : zorch__strdup(st->root);
  if (!full) return zorch__error_oom();
  DIR *d = opendir(full);
  int rc = ZORCH_OK;
  if (!d) {
    if (errno != ENOENT && errno != ENOTDIR)
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot list '%s'", full);
    free(full);
    return rc;
  }
  size_t base = dir->len;
  struct dirent *de;
  while (!rc && (de = readdir(d))) {
    const char *name = de->d_name;
    if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]))) continue;
    if (part && strncmp(name, part, strlen(part)) != 0) continue;
    if (!base && !strcmp(name, zorch__layout_tmp)) continue; /* writes in progress */
    struct stat sb;
    if (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) != 0) continue; /* gone meanwhile */
    rc = zorch__buf_cat(dir, base ? "/" : "", name, (const char *)NULL);
    bool is_dir = S_ISDIR(sb.st_mode);
    /* a directory artifact is one object, not a level of keys */
    bool object = !is_dir || is_artifact_key(dir->data);
    if (!rc && object) {
      rc = each(each_data, dir->data, (uint64_t)sb.st_size);
    } else if (!rc && shallow) {
      rc = zorch__buf_puts(dir, "/");
      if (!rc) rc = each(each_data, dir->data, 0);
    } else if (!rc) {
      rc = list_dir(st, dir, NULL, false, each, each_data);
    }
    dir->len = base;
    dir->data[base] = '\0';
  }
  closedir(d);
  free(full);
  return rc;
}

static int be_list(void *impl, const char *prefix, const char *delimiter, zorch_store_each each,
                   void *each_data) {
  const zorch__local *st = impl;
  if (!prefix) prefix = "";
  if (delimiter && strcmp(delimiter, "/") != 0)
    return zorch__error_set(ZORCH_ENOTSUPPORTED, "the local store lists with delimiter \"/\" only");
  const char *slash = strrchr(prefix, '/');
  zorch__buf dir = ZORCH__BUF_INIT;
  int rc = zorch__buf_put(&dir, prefix, slash ? (size_t)(slash - prefix) : 0);
  if (!rc && dir.len && check_relpath(dir.data)) rc = ZORCH_EINVALID;
  if (!rc) rc = list_dir(st, &dir, slash ? slash + 1 : prefix, delimiter != NULL, each, each_data);
  zorch__buf_free(&dir);
  return rc;
}

static int be_remove(void *impl, const char *key) {
  const zorch__local *st = impl;
  int rc = check_relpath(key);
  if (rc) return rc;
  char *full = zorch__path_join(st->root, key);
  rc = full ? zorch__rm_rf(full) : zorch__error_oom();
  free(full);
  return rc;
}

/* "file://" and the root, with bytes other than [A-Za-z0-9/._~-] as %XX. */
static int be_uri(void *impl, char **out) {
  const zorch__local *st = impl;
  zorch__buf b = ZORCH__BUF_INIT;
  int rc = zorch__buf_puts(&b, "file://");
  for (const unsigned char *c = (const unsigned char *)st->root; !rc && *c; c++) {
    bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 strchr("/._~-", *c);
    rc = plain ? zorch__buf_put(&b, c, 1) : zorch__buf_printf(&b, "%%%02X", *c);
  }
  if (rc) {
    zorch__buf_free(&b);
    return rc;
  }
  *out = zorch__buf_detach(&b);
  return ZORCH_OK;
}

static int be_step_env(void *impl, char **out_json) {
  *out_json = zorch__strdup("{}");
  return *out_json ? ZORCH_OK : zorch__error_oom();
}

static int be_describe(void *impl, char **out_json) {
  const zorch__local *st = impl;
  zorch__buf b = ZORCH__BUF_INIT;
  int rc = zorch__buf_puts(&b, "{\"path\":");
  if (!rc) rc = zorch__buf_json_string(&b, st->root);
  if (!rc) rc = zorch__buf_puts(&b, "}");
  if (rc) {
    zorch__buf_free(&b);
    return rc;
  }
  *out_json = zorch__buf_detach(&b);
  return ZORCH_OK;
}

static void be_close(void *impl) { zorch__local_close(impl); }

const zorch__store_backend zorch__local_backend = {
    .name = "local",
    .flags = ZORCH__BACKEND_LOCAL_FILES,
    .put_file = be_put_file,
    .put_bytes = be_put_bytes,
    .get_to_path = be_get_to_path,
    .get_stream = be_get_stream,
    .exists = be_exists,
    .read_doc = be_read_doc,
    .write_doc = be_write_doc,
    .list = be_list,
    .remove = be_remove,
    .uri = be_uri,
    .step_env = be_step_env,
    .describe = be_describe,
    .close = be_close,
};
