/* zorch — durable writes for the local artifact store: whole writes, fsyncs of
 * files and directories, durable mkdir -p, temporary names, and the copies
 * that hash what they write (one thread, or the ring hasher).  The rules
 * they keep are stated in store_local.c.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_uint_fast64_t name_counter;

/* ---- small I/O helpers ---------------------------------------------------- */

int zorch__io_write_all(int fd, const void *data, size_t len, const char *path) {
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

ssize_t zorch__io_read_some(int fd, void *buf, size_t len) {
  for (;;) {
    ssize_t r = read(fd, buf, len);
    if (r >= 0 || errno != EINTR) return r;
  }
}

int zorch__io_fsync_dir(const char *dir) {
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
char *zorch__io_parent_of(const char *path) {
  const char *s = strrchr(path, '/');
  if (!s) return zorch__strdup(".");
  if (s == path) return zorch__strdup("/");
  return zorch__strndup(path, (size_t)(s - path));
}

/* mkdir one directory whose parent exists; *made tells whether it was new. */
int zorch__io_mkdir_one(const char *p, bool *made) {
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
int zorch__io_mkdirs_durable(const char *path, bool durable) {
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
    if ((rc = zorch__io_mkdir_one(p, &made))) break;
    if (made && durable) {
      char *par = zorch__io_parent_of(p);
      rc = par ? zorch__io_fsync_dir(par) : zorch__error_oom();
      free(par);
      if (rc) break;
    }
    if (end) break;
    *s = '/';
  }
  free(p);
  return rc;
}

/* The nonce (random per store open) keeps names apart across hosts that
 * share one store directory, the counter within a process. */
char *zorch__io_tmp_name(const char *dir, unsigned nonce, char kind, const char *hint) {
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
  return zorch__asprintf("%s/%c-%ld-%08x-%llu%s%s", dir, kind, (long)getpid(), nonce,
                         (unsigned long long)n, k ? "-" : "", clean);
}

int zorch__io_tmp_create(const char *dir, unsigned nonce, char kind, char **path_out, int *fd_out) {
  for (int tries = 0; tries < 100; tries++) {
    char *p = zorch__io_tmp_name(dir, nonce, kind, NULL);
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
                          dir);
}

/* Hash what `in` holds (when digest is not NULL) and, when out >= 0, copy it
 * to `out` in the same pass. */
int zorch__io_stream_hash(int in, const char *in_path, int out, const char *out_path,
                          unsigned char *buf, char digest[ZORCH__DIGEST_HEX], uint64_t *size) {
  zorch__sha256 *h = digest ? zorch__sha256_new() : NULL;
  if (digest && !h) return zorch__error_oom();
  (void)posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
  uint64_t total = 0;
  int rc = ZORCH_OK;
  for (;;) {
    ssize_t r = zorch__io_read_some(in, buf, ZORCH__IO_BUF);
    if (r < 0) {
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot read '%s'", in_path);
      break;
    }
    if (r == 0) break;
    if (h) zorch__sha256_update(h, buf, (size_t)r);
    total += (uint64_t)r;
    if (out >= 0) {
      if ((rc = zorch__io_write_all(out, buf, (size_t)r, out_path))) break;
      /* Start writeback of each finished 8 MiB now, so that the disk works
       * while we hash and the final fsync has little left to do. */
      uint64_t chunk = 8u << 20;
      if (total / chunk != (total - (uint64_t)r) / chunk)
        (void)sync_file_range(out, (off_t)(total / chunk - 1) * (off_t)chunk, (off_t)chunk,
                              SYNC_FILE_RANGE_WRITE);
    }
  }
  if (h) zorch__sha256_final_hex(h, digest);
  if (size) *size = total;
  return rc;
}

int zorch__io_fsync_close(int fd, const char *path) {
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    return zorch__error_errno(ZORCH_EIO, e, "cannot fsync '%s'", path);
  }
  if (close(fd) != 0) return zorch__error_errno(ZORCH_EIO, errno, "cannot close '%s'", path);
  return ZORCH_OK;
}

/* A file copy hashed by a second thread: the copier reads the source into
 * one of RING buffers and writes it out, the hasher hashes the same buffer
 * and hands it back.  The digest is therefore of exactly the bytes written,
 * even if the source changes meanwhile; no byte is read twice (the copier's
 * read and write are the only copies, the hasher only hashes), and copying,
 * hashing and the disk all overlap. */
enum { RING = 8, RING_BUF = 2u << 20 };
#define STREAM_MIN (64u << 20) /* files from this size on stream (see zorch__io_copy_and_hash) */

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
int zorch__io_copy_and_hash(int in, const char *in_path, int out, const char *out_path,
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
      ssize_t r = zorch__io_read_some(in, c.buf[slot] + got, RING_BUF - got);
      if (r < 0) {
        rc = zorch__error_errno(ZORCH_EIO, errno, "cannot read '%s'", in_path);
        break;
      }
      if (r == 0) break;
      got += (size_t)r;
    }
    if (rc || got == 0) break;
    if ((rc = zorch__io_write_all(out, c.buf[slot], got, out_path))) break;
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
