/* zorch — the local artifact store: content-addressed artifacts and atomic
 * documents.  The contract is in store.h; this comment states how it is kept.
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
 *   hashes each buffer once it is written (copy_and_hash): every byte is
 *   read once, the final fsync is short and the digest is of the stored
 *   bytes; a tree starts writeback of all its files before it
 *   fsyncs them one by one, so that few journal commits cover them all.
 *   take=true of a file with other hard links copies it (another name could
 *   change it later); take=true across filesystems falls back to a copy.
 *   Directory artifacts are read-only trees: remove them with zorch__rm_rf(),
 *   which makes each directory writable first (plain rm -rf fails unless root).
 *
 * Directory artifacts: the digest is the SHA-256 of this canonical manifest,
 * entries sorted by strcmp() of their relative path (the root is not listed):
 *     zorch-tree-v1\n
 *     d "<path>"\n                      a directory (empty ones included)
 *     f <x|-> <sha256> "<path>"\n       a regular file; x = any execute bit
 *     l "<path>" "<target>"\n           a symbolic link (target as read)
 * Paths and targets are JSON string literals (zorch__buf_json_string).  Other
 * file types (fifos, sockets, devices) are refused with ZORCH_EINVALID.
 *
 * Documents: written to <root>/tmp/, fsync'd (durable), renamed over the
 * destination, and the destination's directory fsync'd (durable); directories
 * created on the way are made durable too.  With durable=false the rename
 * still makes the publish atomic for readers and after a process crash, but
 * not after a power loss.
 *
 * Leftovers in tmp/: a crash can leave temporaries there; they are never
 * visible as artifacts or documents.  zorch__store_open() removes an entry of
 * tmp/ only when neither it nor anything below it was modified for
 * ZORCH__TMP_STALE_SECONDS (24 hours), so that a long step of another process
 * that still writes into its scratch path is never disturbed.  Removal is best
 * effort and never fails the open.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ZORCH__TMP_STALE_SECONDS (24 * 3600)
#define ZORCH__IO_BUF (1u << 20)
#define ZORCH__MANIFEST_HEADER "zorch-tree-v1\n"

struct zorch__store {
  char *root;      /* absolute */
  char *tmp;       /* root/tmp */
  char *artifacts; /* root/artifacts */
  unsigned nonce;  /* random, per open: temp names differ across hosts sharing the store */
};

static atomic_uint_fast64_t name_counter;

/* ---- small I/O helpers ---------------------------------------------------- */

static int write_all(int fd, const void *data, size_t len, const char *path) {
  const char *p = data;
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR) continue;
      return zorch__error_errno(ZORCH_EIO, errno, "cannot write '%s'", path);
    }
    p += w;
    len -= (size_t)w;
  }
  return ZORCH_OK;
}

static ssize_t read_some(int fd, void *buf, size_t len) {
  for (;;) {
    ssize_t r = read(fd, buf, len);
    if (r >= 0 || errno != EINTR) return r;
  }
}

static int fsync_path_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return zorch__error_errno(ZORCH_EIO, errno, "cannot open directory '%s' to fsync it", dir);
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    return zorch__error_errno(ZORCH_EIO, e, "cannot fsync directory '%s'", dir);
  }
  close(fd);
  return ZORCH_OK;
}

/* The directory part of `path` ("." when there is none).  NULL on OOM. */
static char *parent_of(const char *path) {
  const char *s = strrchr(path, '/');
  if (!s) return zorch__strdup(".");
  if (s == path) return zorch__strdup("/");
  return zorch__strndup(path, (size_t)(s - path));
}

/* mkdir one directory whose parent exists; *made tells whether it was new. */
static int mkdir_one(const char *p, bool *made) {
  *made = mkdir(p, 0755) == 0;
  if (*made) return ZORCH_OK;
  if (errno != EEXIST) return zorch__error_errno(ZORCH_EIO, errno, "cannot create directory '%s'", p);
  struct stat sb;
  if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return zorch__error_set(ZORCH_EIO, "cannot create directory '%s': a non-directory is in the way", p);
  return ZORCH_OK;
}

/* mkdir -p of `path`; with `durable`, the parent of every directory created
 * is fsync'd so that the new entry survives a power loss. */
static int mkdirs_durable(const char *path, bool durable) {
  char *p = zorch__strdup(path);
  if (!p) return zorch__error_oom();
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
  int rc = ZORCH_OK;
  for (char *s = p + 1;; s++) {
    bool end = (*s == '\0');
    if (!end && *s != '/') continue;
    *s = '\0';
    bool made;
    if ((rc = mkdir_one(p, &made))) break;
    if (made && durable) {
      char *par = parent_of(p);
      rc = par ? fsync_path_dir(par) : zorch__error_oom();
      free(par);
      if (rc) break;
    }
    if (end) break;
    *s = '/';
  }
  free(p);
  return rc;
}

/* A fresh name under tmp/: "<kind>-<pid>-<nonce>-<counter>[-<hint>]". */
static char *tmp_name(const zorch__store *st, char kind, const char *hint) {
  uint64_t n = atomic_fetch_add(&name_counter, 1);
  char clean[49];
  size_t k = 0;
  if (hint) {
    for (const char *h = hint; *h && k < sizeof clean - 1; h++) {
      char c = *h;
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.';
      clean[k++] = ok ? c : '_';
    }
  }
  clean[k] = '\0';
  return zorch__asprintf("%s/%c-%ld-%08x-%llu%s%s", st->tmp, kind, (long)getpid(), st->nonce,
                         (unsigned long long)n, k ? "-" : "", clean);
}

/* Create a new temporary file for writing; *path_out receives its name. */
static int tmp_create(const zorch__store *st, char kind, char **path_out, int *fd_out) {
  for (int tries = 0; tries < 100; tries++) {
    char *p = tmp_name(st, kind, NULL);
    if (!p) return zorch__error_oom();
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      *path_out = p;
      *fd_out = fd;
      return ZORCH_OK;
    }
    int e = errno;
    if (e != EEXIST) {
      zorch__error_errno(ZORCH_EIO, e, "cannot create temporary file '%s'", p);
      free(p);
      return ZORCH_EIO;
    }
    free(p);
  }
  return zorch__error_set(ZORCH_EIO, "cannot create a temporary file in '%s': names keep colliding",
                          st->tmp);
}

/* Hash what `in` holds and, when out >= 0, copy it to `out` in the same pass. */
static int stream_hash(int in, const char *in_path, int out, const char *out_path,
                       unsigned char *buf, char digest[ZORCH__DIGEST_HEX], uint64_t *size) {
  zorch__sha256 *h = zorch__sha256_new();
  if (!h) return zorch__error_oom();
  (void)posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
  uint64_t total = 0;
  int rc = ZORCH_OK;
  for (;;) {
    ssize_t r = read_some(in, buf, ZORCH__IO_BUF);
    if (r < 0) {
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot read '%s'", in_path);
      break;
    }
    if (r == 0) break;
    zorch__sha256_update(h, buf, (size_t)r);
    total += (uint64_t)r;
    if (out >= 0) {
      if ((rc = write_all(out, buf, (size_t)r, out_path))) break;
      /* Start writeback of each finished 8 MiB now, so that the disk works
       * while we hash and the final fsync has little left to do. */
      uint64_t chunk = 8u << 20;
      if (total / chunk != (total - (uint64_t)r) / chunk)
        (void)sync_file_range(out, (off_t)(total / chunk - 1) * (off_t)chunk, (off_t)chunk,
                              SYNC_FILE_RANGE_WRITE);
    }
  }
  zorch__sha256_final_hex(h, digest);
  if (size) *size = total;
  return rc;
}

static int fsync_close(int fd, const char *path) {
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    return zorch__error_errno(ZORCH_EIO, e, "cannot fsync '%s'", path);
  }
  if (close(fd) != 0) return zorch__error_errno(ZORCH_EIO, errno, "cannot close '%s'", path);
  return ZORCH_OK;
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

static void clean_tmp(const zorch__store *st) {
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

int zorch__store_open(zorch__store **out, const char *root) {
  if (!out || !root || !*root)
    return zorch__error_set(ZORCH_EINVALID, "zorch__store_open: out or root is missing");
  *out = NULL;
  int rc = mkdirs_durable(root, true);
  if (rc) return zorch__error_prefix("cannot open store '%s'", root);
  char *abs = realpath(root, NULL);
  if (!abs) return zorch__error_errno(ZORCH_EIO, errno, "cannot open store '%s': realpath", root);
  zorch__store *st = calloc(1, sizeof *st);
  if (!st) {
    free(abs);
    return zorch__error_oom();
  }
  st->root = abs;
  st->tmp = zorch__path_join(abs, "tmp");
  st->artifacts = zorch__path_join(abs, "artifacts");
  char *runs = zorch__path_join(abs, "runs");
  char *cache = zorch__path_join(abs, "cache");
  if (!st->tmp || !st->artifacts || !runs || !cache) {
    rc = zorch__error_oom();
  } else {
    /* a new store's directories, made durable with one sync of the root */
    const char *subs[] = {st->tmp, st->artifacts, runs, cache};
    bool made, any = false;
    for (size_t i = 0; i < 4 && !rc; i++) {
      rc = mkdir_one(subs[i], &made);
      any |= made;
    }
    if (!rc && any) rc = fsync_path_dir(abs);
    if (rc) zorch__error_prefix("cannot open store '%s'", root);
  }
  free(runs);
  free(cache);
  if (rc) {
    zorch__store_close(st);
    return rc;
  }
  if (getrandom(&st->nonce, sizeof st->nonce, GRND_NONBLOCK) != (ssize_t)sizeof st->nonce)
    st->nonce = (unsigned)zorch__mono_ns() ^ ((unsigned)getpid() << 16);
  clean_tmp(st);
  *out = st;
  return ZORCH_OK;
}

void zorch__store_close(zorch__store *st) {
  if (!st) return;
  free(st->root);
  free(st->tmp);
  free(st->artifacts);
  free(st);
}

const char *zorch__store_root(const zorch__store *st) { return st ? st->root : NULL; }

/* ---- artifacts ---------------------------------------------------------------- */

char *zorch__store_artifact_path(const zorch__store *st, const char *digest) {
  return zorch__asprintf("%s/%.2s/%s", st->artifacts, digest, digest);
}

bool zorch__store_has(const zorch__store *st, const char *digest) {
  if (!st || !zorch__is_digest(digest)) return false;
  char *p = zorch__store_artifact_path(st, digest);
  if (!p) return false;
  struct stat sb;
  bool ok = lstat(p, &sb) == 0;
  free(p);
  return ok;
}

/* Is the digest already stored?  1 yes, 0 no; an error when it exists with the
 * other kind (a file whose bytes are exactly a directory manifest). */
static int exists_as(const zorch__store *st, const char *digest, bool is_dir) {
  char *p = zorch__store_artifact_path(st, digest);
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
static int publish(const zorch__store *st, const char *tmp, const char *digest, bool is_dir,
                   bool *xdev) {
  if (xdev) *xdev = false;
  char *shard = zorch__asprintf("%s/%.2s", st->artifacts, digest);
  char *final = zorch__store_artifact_path(st, digest);
  int rc = ZORCH_OK;
  if (!shard || !final) {
    rc = zorch__error_oom();
    goto out;
  }
  if (mkdir(shard, 0755) == 0) {
    if ((rc = fsync_path_dir(st->artifacts))) goto out;
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
  rc = fsync_path_dir(shard);
out:
  free(shard);
  free(final);
  return rc;
}

int zorch__store_put_bytes(zorch__store *st, const void *data, size_t len,
                           char digest[ZORCH__DIGEST_HEX]) {
  if (!st || !digest || (!data && len))
    return zorch__error_set(ZORCH_EINVALID, "zorch__store_put_bytes: invalid argument");
  zorch__sha256_hex(data ? data : "", len, digest);
  int k = exists_as(st, digest, false);
  if (k != 0) return k < 0 ? k : ZORCH_OK;
  char *tmp = NULL;
  int fd = -1;
  int rc = tmp_create(st, 'w', &tmp, &fd);
  if (rc) return rc;
  if ((rc = write_all(fd, data, len, tmp))) {
    close(fd);
  } else if (fchmod(fd, 0444) != 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot chmod '%s'", tmp);
    close(fd);
  } else if (!(rc = fsync_close(fd, tmp))) {
    rc = publish(st, tmp, digest, false, NULL);
  }
  if (rc) unlink(tmp);
  free(tmp);
  return rc;
}

/* A file copy hashed by a second thread: the copier reads the source into
 * one of RING buffers and writes it out, the hasher hashes the same buffer
 * and hands it back.  The digest is therefore of exactly the bytes written,
 * even if the source changes meanwhile; no byte is read twice (the copier's
 * read and write are the only copies, the hasher only hashes), and copying,
 * hashing and the disk all overlap. */
enum { RING = 8, RING_BUF = 2u << 20 };
#define STREAM_MIN (64u << 20) /* files from this size on stream (see copy_and_hash) */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned char *buf[RING];
  size_t len[RING];
  uint64_t filled;  /* buffers handed to the hasher so far */
  uint64_t hashed;  /* buffers the hasher gave back */
  bool done;        /* the copier will hand over no more */
  zorch__sha256 *h;
} copy_ring;

static void *ring_hasher(void *arg) {
  copy_ring *c = arg;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (c->hashed == c->filled && !c->done) pthread_cond_wait(&c->cv, &c->mu);
    if (c->hashed == c->filled) break;
    unsigned slot = (unsigned)(c->hashed % RING);
    pthread_mutex_unlock(&c->mu);
    zorch__sha256_update(c->h, c->buf[slot], c->len[slot]);
    pthread_mutex_lock(&c->mu);
    c->hashed++;
    pthread_cond_broadcast(&c->cv);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* Copy `in` to `out` while a second thread hashes what was written.  Starts
 * writeback of every 8 MiB written.  Returns 1 (nothing done) when it cannot
 * set up its buffers or thread; the caller then streams in one thread. */
static int copy_and_hash(int in, const char *in_path, int out, const char *out_path,
                         char digest[ZORCH__DIGEST_HEX], uint64_t *size) {
  copy_ring c;
  memset(&c, 0, sizeof c);
  unsigned char *mem = malloc((size_t)RING * RING_BUF);
  c.h = mem ? zorch__sha256_new() : NULL;
  if (!c.h) {
    free(mem);
    return 1;
  }
  for (unsigned k = 0; k < RING; k++) c.buf[k] = mem + (size_t)k * RING_BUF;
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, NULL);
  pthread_t t;
  if (pthread_create(&t, NULL, ring_hasher, &c) != 0) {
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    zorch__sha256_final_hex(c.h, digest);
    free(mem);
    return 1;
  }
  (void)posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
  /* A big file streams through the page cache: once a chunk is on the disk
   * its pages are dropped, so the copy reuses a few MiB of recently freed
   * memory instead of claiming a fresh page for every byte (on a VM, a page
   * the guest has not touched lately costs a trip to the host).  Readers of
   * the artifact read it from the disk. */
  struct stat sb;
  bool stream = fstat(in, &sb) == 0 && sb.st_size >= (off_t)STREAM_MIN;
  const uint64_t wb_chunk = 8u << 20;
  uint64_t total = 0, wb_done = 0, dropped = 0;
  int rc = ZORCH_OK;
  for (;;) {
    pthread_mutex_lock(&c.mu);
    while (c.filled - c.hashed == RING) pthread_cond_wait(&c.cv, &c.mu);
    unsigned slot = (unsigned)(c.filled % RING);
    pthread_mutex_unlock(&c.mu);
    size_t got = 0;
    while (got < RING_BUF) {
      ssize_t r = read_some(in, c.buf[slot] + got, RING_BUF - got);
      if (r < 0) {
        rc = zorch__error_errno(ZORCH_EIO, errno, "cannot read '%s'", in_path);
        break;
      }
      if (r == 0) break;
      got += (size_t)r;
    }
    if (rc || got == 0) break;
    if ((rc = write_all(out, c.buf[slot], got, out_path))) break;
    total += got;
    if (total - wb_done >= wb_chunk) {
      /* start writeback now: the disk works while we copy and hash, and
       * the final fsync has little left to do */
      (void)sync_file_range(out, (off_t)wb_done, (off_t)(total - wb_done), SYNC_FILE_RANGE_WRITE);
      wb_done = total;
      /* two chunks behind: wait for it to reach the disk, then drop it */
      if (stream && wb_done >= dropped + 3 * wb_chunk) {
        uint64_t len = wb_done - 2 * wb_chunk - dropped;
        (void)sync_file_range(out, (off_t)dropped, (off_t)len,
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
        (void)posix_fadvise(out, (off_t)dropped, (off_t)len, POSIX_FADV_DONTNEED);
        dropped += len;
      }
    }
    pthread_mutex_lock(&c.mu);
    c.len[slot] = got;
    c.filled++;
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);
    if (got < RING_BUF) break; /* end of file */
  }
  pthread_mutex_lock(&c.mu);
  c.done = true;
  pthread_cond_broadcast(&c.cv);
  pthread_mutex_unlock(&c.mu);
  pthread_join(t, NULL);
  zorch__sha256_final_hex(c.h, digest);
  pthread_mutex_destroy(&c.mu);
  pthread_cond_destroy(&c.cv);
  free(mem);
  if (size) *size = total;
  return rc;
}

/* A regular file at `path`, copied (take=false). */
static int put_file_copy(zorch__store *st, const char *path, unsigned char *buf,
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
  rc = copy_and_hash(in, path, out, tmp, digest, size);
  if (rc == 1) rc = stream_hash(in, path, out, tmp, buf, digest, size); /* one thread */
  close(in);
  int k = rc ? 0 : exists_as(st, digest, false);
  if (rc || k != 0) {
    close(out);
    unlink(tmp);
    free(tmp);
    return rc ? rc : (k < 0 ? k : ZORCH_OK);
  }
  if (fchmod(out, 0444) != 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot chmod '%s'", tmp);
    close(out);
  } else if (!(rc = fsync_close(out, tmp))) {
    rc = publish(st, tmp, digest, false, NULL);
  }
  if (rc) unlink(tmp);
  free(tmp);
  return rc;
}

/* A regular file at `path`, moved (take=true): hashed in place, no copy. */
static int put_file_take(zorch__store *st, const char *path, unsigned char *buf,
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
    if (!rc && unlink(path) != 0 && errno != ENOENT)
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot remove '%s'", path);
    return rc;
  }
  int rc = stream_hash(fd, path, -1, NULL, buf, digest, size);
  int k = rc ? 0 : exists_as(st, digest, false);
  if (rc || k < 0) {
    close(fd);
    return rc ? rc : k;
  }
  if (k == 1) {
    close(fd);
    if (unlink(path) != 0 && errno != ENOENT)
      return zorch__error_errno(ZORCH_EIO, errno, "cannot remove '%s'", path);
    return ZORCH_OK;
  }
  if (fchmod(fd, 0444) != 0) {
    int e = errno;
    close(fd);
    return zorch__error_errno(ZORCH_EIO, e, "cannot chmod '%s'", path);
  }
  if ((rc = fsync_close(fd, path))) return rc;
  bool xdev = false;
  rc = publish(st, path, digest, false, &xdev);
  if (!rc && xdev) {
    rc = put_file_copy(st, path, buf, digest, size);
    if (!rc && unlink(path) != 0 && errno != ENOENT)
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot remove '%s'", path);
  }
  return rc;
}

/* ---- directory trees ---------------------------------------------------------- */

typedef struct {
  char *path; /* relative to the tree root */
  char kind;  /* 'd', 'f', 'l' */
  bool exec;
  char digest[ZORCH__DIGEST_HEX];
  char *target; /* symlink target */
} tree_entry;

typedef struct {
  tree_entry *v;
  size_t n, cap;
  uint64_t size;
  unsigned char *buf;
  const char *src_root; /* for messages */
  const char *dst_root; /* copy destination (for messages), NULL when taking */
} tree_walk;

static void tree_free(tree_walk *tw) {
  for (size_t i = 0; i < tw->n; i++) {
    free(tw->v[i].path);
    free(tw->v[i].target);
  }
  free(tw->v);
  tw->v = NULL;
  tw->n = tw->cap = 0;
}

static tree_entry *tree_push(tree_walk *tw, char *path, char kind) {
  if (tw->n == tw->cap) {
    size_t ncap = tw->cap ? tw->cap * 2 : 64;
    tree_entry *nv = realloc(tw->v, ncap * sizeof *nv);
    if (!nv) return NULL;
    tw->v = nv;
    tw->cap = ncap;
  }
  tree_entry *e = &tw->v[tw->n++];
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

/* Walk the directory `sfd` (relative path `rel`, "" for the root), recording
 * entries; copy into `dfd` when it is >= 0, else make files read-only in
 * place.  Both fds are consumed. */
static int tree_walk_dir(tree_walk *tw, int sfd, int dfd, const char *rel) {
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
      if ((rc = tree_walk_dir(tw, csfd, cdfd, crel))) break;
    } else if (S_ISREG(sb.st_mode)) {
      tree_entry *e = tree_push(tw, crel, 'f');
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
        rc = stream_hash(in, crel, out, crel, tw->buf, e->digest, &sz);
        if (!rc && fchmod(out, mode) != 0)
          rc = zorch__error_errno(ZORCH_EIO, errno, "cannot chmod '%s/%s'", tw->dst_root, crel);
        if (close(out) != 0 && !rc)
          rc = zorch__error_errno(ZORCH_EIO, errno, "cannot close '%s/%s'", tw->dst_root, crel);
      } else {
        rc = stream_hash(in, crel, -1, NULL, tw->buf, e->digest, &sz);
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
      tree_entry *e = tree_push(tw, crel, 'l');
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
  return strcmp(((const tree_entry *)a)->path, ((const tree_entry *)b)->path);
}

/* Sort the entries and hash the canonical manifest. */
static int tree_digest(tree_walk *tw, char digest[ZORCH__DIGEST_HEX]) {
  if (tw->n) qsort(tw->v, tw->n, sizeof *tw->v, entry_cmp);
  zorch__buf m = ZORCH__BUF_INIT;
  int rc = zorch__buf_puts(&m, ZORCH__MANIFEST_HEADER);
  for (size_t i = 0; i < tw->n && !rc; i++) {
    const tree_entry *e = &tw->v[i];
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
  zorch__buf_free(&m);
  return rc;
}

/* fsync every file, then chmod 0555 and fsync every directory, deepest first
 * (sorted order lists a parent before its children), then the root.  Writing
 * every file first and syncing afterwards lets one journal commit cover many
 * files. */
static int tree_sync(tree_walk *tw, int rootfd, const char *root) {
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

/* take=false: copy the tree at `path` into a temporary directory, hashing. */
static int put_dir_copy(zorch__store *st, const char *path, unsigned char *buf,
                        char digest[ZORCH__DIGEST_HEX], uint64_t *size) {
  int sfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (sfd < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open directory '%s'", path);
  }
  char *tmp = NULL;
  for (int tries = 0; tries < 100 && !tmp; tries++) {
    char *p = tmp_name(st, 'w', NULL);
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
  tree_walk tw = {.buf = buf, .src_root = path, .dst_root = tmp};
  if (dfd < 0 || rootfd < 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot open directory '%s'", tmp);
    close(sfd);
    if (dfd >= 0) close(dfd);
  } else {
    rc = tree_walk_dir(&tw, sfd, dfd, "");
  }
  if (!rc) rc = tree_digest(&tw, digest);
  int k = rc ? 0 : exists_as(st, digest, true);
  if (k < 0) rc = k;
  if (!rc && k == 0) rc = tree_sync(&tw, rootfd, tmp);
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
  tree_free(&tw);
  free(tmp);
  return rc;
}

/* take=true: hash the tree in place, seal it and rename it into place. */
static int put_dir_take(zorch__store *st, const char *path, unsigned char *buf,
                        char digest[ZORCH__DIGEST_HEX], uint64_t *size) {
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
  tree_walk tw = {.buf = buf, .src_root = path, .dst_root = NULL};
  int rc = tree_walk_dir(&tw, sfd, -1, "");
  if (!rc) rc = tree_digest(&tw, digest);
  int k = rc ? 0 : exists_as(st, digest, true);
  if (k < 0) rc = k;
  bool xdev = false;
  if (!rc && k == 0) rc = tree_sync(&tw, rootfd, path);
  close(rootfd);
  if (!rc && k == 0) rc = publish(st, path, digest, true, &xdev);
  if (!rc && xdev) rc = put_dir_copy(st, path, buf, digest, NULL);
  if (!rc && (k == 1 || xdev)) rc = zorch__rm_rf(path);
  if (!rc && size) *size = tw.size;
  tree_free(&tw);
  return rc;
}

int zorch__store_put_path(zorch__store *st, const char *path, bool take,
                          char digest[ZORCH__DIGEST_HEX], uint64_t *size, bool *is_dir) {
  if (!st || !path || !digest)
    return zorch__error_set(ZORCH_EINVALID, "zorch__store_put_path: invalid argument");
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
    rc = dir ? put_dir_copy(st, path, buf, digest, &sz) : put_file_copy(st, path, buf, digest, &sz);
    if (!rc && unlink(path) != 0 && errno != ENOENT)
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot remove '%s'", path);
  } else if (dir) {
    rc = take ? put_dir_take(st, path, buf, digest, &sz) : put_dir_copy(st, path, buf, digest, &sz);
  } else {
    rc = take ? put_file_take(st, path, buf, digest, &sz) : put_file_copy(st, path, buf, digest, &sz);
  }
  free(buf);
  if (rc) return rc;
  if (size) *size = sz;
  if (is_dir) *is_dir = dir;
  return ZORCH_OK;
}

int zorch__store_scratch(zorch__store *st, const char *hint, char **path_out) {
  if (!st || !path_out) return zorch__error_set(ZORCH_EINVALID, "zorch__store_scratch: invalid argument");
  *path_out = NULL;
  for (int tries = 0; tries < 100; tries++) {
    char *p = tmp_name(st, 's', hint);
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

/* Refuse absolute paths, empty names and "." or ".." components. */
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

int zorch__store_write_doc(zorch__store *st, const char *relpath, const void *data, size_t len,
                           bool durable) {
  if (!st || (!data && len)) return zorch__error_set(ZORCH_EINVALID, "zorch__store_write_doc: invalid argument");
  int rc = check_relpath(relpath);
  if (rc) return rc;
  char *full = zorch__path_join(st->root, relpath);
  char *dir = full ? parent_of(full) : NULL;
  char *tmp = NULL;
  int fd = -1;
  if (!full || !dir) {
    rc = zorch__error_oom();
    goto out;
  }
  if ((rc = mkdirs_durable(dir, durable))) {
    zorch__error_prefix("cannot write document '%s'", full);
    goto out;
  }
  if ((rc = tmp_create(st, 'd', &tmp, &fd))) goto out;
  rc = write_all(fd, data, len, tmp);
  if (!rc && durable && fsync(fd) != 0) rc = zorch__error_errno(ZORCH_EIO, errno, "cannot fsync '%s'", tmp);
  if (close(fd) != 0 && !rc) rc = zorch__error_errno(ZORCH_EIO, errno, "cannot close '%s'", tmp);
  if (!rc && rename(tmp, full) != 0)
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot rename '%s' to '%s'", tmp, full);
  if (rc) {
    unlink(tmp);
    goto out;
  }
  if (durable) rc = fsync_path_dir(dir);
out:
  free(full);
  free(dir);
  free(tmp);
  return rc;
}

int zorch__store_read_doc(const zorch__store *st, const char *relpath, char **data, size_t *len) {
  if (!st || !data) return zorch__error_set(ZORCH_EINVALID, "zorch__store_read_doc: invalid argument");
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
