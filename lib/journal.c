/* zorch — an append-only file of JSON lines with group commit.
 *
 * zorch__journal_append() copies the line into the pending buffer under a
 * mutex and wakes the committer thread only when it sleeps with nothing to do.
 * Waking a sleeping thread costs the waker 15-40 us on a VM, so the committer
 * avoids that state while the journal is busy: after a batch it looks for new
 * lines every ZORCH__JOURNAL_LINGER_NS (5 ms; 50 ms for a journal that is not
 * durable, such as the cache index) on its own, and only after 500 ms of
 * empty looks does it sleep until signalled; it then lingers one window
 * (unless a flush or the close is waiting) so that a burst costs one
 * wake-up.  Each batch is the whole pending buffer,
 * swapped with the committer's own and written with one write(2); a busy
 * journal takes at most one batch per window.  A durable journal is
 * fdatasync'd after a batch when ZORCH__JOURNAL_SYNC_NS (50 ms) have passed
 * since the previous sync, and at once when a flush or the close waits; lines
 * written and not yet synced are synced when that window ends even if no new
 * line comes.  A line thus reaches the file (where it survives the death of
 * the process) within about 5 ms plus the write, and the disk (where it
 * survives a power cut) within about 50 ms; every line appended before a
 * flush is on disk when zorch__journal_flush() returns.  One fdatasync per
 * batch would cost a VM exit or several every 5 ms, on the CPUs the steps
 * need.
 *
 * Guarantee: the file only ever grows by whole batches of whole lines, except
 * that a crash (kill -9, power loss, a full disk) can leave a torn last line.
 * zorch__journal_replay() ignores it.  zorch__journal_open() and the committer
 * cut a torn tail back to the last '\n' before writing after it, so a torn
 * line never ends up in the middle of the file.  Several processes may append
 * to one journal (the cache index of a pipeline run twice at once): each
 * batch is written under flock(LOCK_EX), so a torn tail seen under the lock
 * was left by a dead writer.  After a failed write the journal writes nothing
 * more and every call returns that error (sticky).
 *
 * A journal must not be used across fork(2) in the child.
 *
 * A sink journal (zorch__journal_open_sink) has no file: its committer hands
 * each line of a batch to a function (a store that cannot append writes
 * each line as an object), with the same batching, flush and sticky errors, and no sync.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ZORCH__JOURNAL_LINGER_NS 5000000LL       /* 5 ms: batching window and poll tick */
#define ZORCH__JOURNAL_LAZY_LINGER_NS 50000000LL /* 50 ms: the same for a journal that is not durable */
#define ZORCH__JOURNAL_SYNC_NS 50000000LL        /* 50 ms: at most one fdatasync per window */
#define ZORCH__JOURNAL_IDLE_NS 500000000LL       /* poll for 500 ms before sleeping deeply */
#define ZORCH__JOURNAL_MAX_PENDING (64u << 20)   /* appenders wait above this */

struct zorch__journal {
  pthread_mutex_t mu;
  pthread_cond_t wake; /* the committer waits here */
  pthread_cond_t done; /* flushers and throttled appenders wait here */
  char *buf;           /* pending lines */
  size_t len, cap;
  char *wbuf;          /* the committer's batch */
  size_t wcap;
  uint64_t appended;   /* lines appended so far */
  uint64_t committed;  /* lines written (and synced) so far */
  unsigned flushers;   /* threads waiting in flush() */
  bool idle;           /* the committer sleeps and waits for a signal */
  bool stop;
  int err;             /* sticky error code */
  char errmsg[768];
  /* committer-only state */
  int fd;
  bool durable;
  int64_t linger_ns;   /* batching window and poll tick */
  bool nolock;         /* flock() unsupported here */
  off_t end;           /* file size after our last write, -1 unknown */
  char *path;
  pthread_t thread;
  /* a sink journal: no fd, each batch goes here */
  int (*sink)(void *data, const char *line, size_t len);
  void *sink_data;
  void (*sink_free)(void *data);
};

/* Cut a torn tail (bytes after the last '\n') off the file; *size is updated. */
static int repair_tail(int fd, const char *path, off_t *size) {
  char b[65536];
  off_t pos = *size;
  while (pos > 0) {
    size_t n = pos > (off_t)sizeof b ? sizeof b : (size_t)pos;
    off_t at = pos - (off_t)n;
    ssize_t r = pread(fd, b, n, at);
    if (r < 0) {
      if (errno == EINTR) continue;
      return zorch__error_errno(ZORCH_EIO, errno, "cannot read journal '%s'", path);
    }
    if ((size_t)r != n) return zorch__error_set(ZORCH_EIO, "journal '%s' shrank while read", path);
    if (pos == *size && b[n - 1] == '\n') return ZORCH_OK; /* not torn */
    void *nl = memrchr(b, '\n', n);
    if (nl) {
      pos = at + ((char *)nl - b) + 1;
      break;
    }
    pos = at;
  }
  if (ftruncate(fd, pos) != 0)
    return zorch__error_errno(ZORCH_EIO, errno, "cannot cut the torn last line of journal '%s'", path);
  *size = pos;
  return ZORCH_OK;
}

static void lock_file(zorch__journal *j) {
  if (j->nolock) return;
  while (flock(j->fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    j->nolock = true; /* ENOLCK/EINVAL: a filesystem without locks; single writer then */
    return;
  }
}

static void unlock_file(zorch__journal *j) {
  if (!j->nolock) (void)flock(j->fd, LOCK_UN);
}

/* Make sure the file ends with '\n' (or is empty); called with the lock held. */
static int check_tail(zorch__journal *j) {
  struct stat sb;
  if (fstat(j->fd, &sb) != 0) return zorch__error_errno(ZORCH_EIO, errno, "cannot stat journal '%s'", j->path);
  off_t size = sb.st_size;
  if (size == j->end) return ZORCH_OK; /* nobody else wrote since our last batch */
  int rc = size > 0 ? repair_tail(j->fd, j->path, &size) : ZORCH_OK;
  if (!rc) j->end = size;
  return rc;
}

/* Write one batch; runs on the committer thread without the mutex. */
static int write_batch(zorch__journal *j, const char *data, size_t len) {
  lock_file(j);
  int rc = check_tail(j);
  const char *p = data;
  size_t left = len;
  while (!rc && left) {
    ssize_t w = write(j->fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot write journal '%s'", j->path);
      break;
    }
    p += w;
    left -= (size_t)w;
  }
  j->end = rc ? -1 : j->end + (off_t)len;
  unlock_file(j);
  return rc;
}

static void deadline_after(struct timespec *ts, long long ns) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_nsec += ns % 1000000000LL;
  ts->tv_sec += (time_t)(ns / 1000000000LL);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_nsec -= 1000000000L;
    ts->tv_sec++;
  }
}

static int64_t ts_ns(const struct timespec *ts) { return (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec; }

static void ns_ts(int64_t ns, struct timespec *ts) {
  ts->tv_sec = (time_t)(ns / 1000000000LL);
  ts->tv_nsec = (long)(ns % 1000000000LL);
}

static int64_t mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts_ns(&ts);
}

/* A sink journal's batch: each line (without its '\n') to the sink. */
static int sink_lines(zorch__journal *j, const char *b, size_t n) {
  int rc = ZORCH_OK;
  for (const char *p = b, *end = b + n, *nl; !rc && p < end; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    rc = j->sink(j->sink_data, p, (size_t)(nl - p));
  }
  return rc;
}

static void *committer(void *arg) {
  pthread_setname_np(pthread_self(), "zorch-journal");
  zorch__journal *j = arg;
  pthread_mutex_lock(&j->mu);
  int polls = 0;
  int64_t last_batch = 0;   /* when the previous batch was taken */
  int64_t last_sync = 0;    /* when the previous fdatasync began */
  uint64_t written = 0;     /* lines written, not yet synced (durable journals) */
  for (;;) {
    bool signalled = false;
    /* lines written but not synced: sync once the sync window has passed,
     * at once when somebody flushes or the journal closes */
    bool unsynced = j->durable && written > j->committed;
    while (j->len == 0 && !j->stop &&
           !(unsynced && (j->flushers || mono_now() - last_sync >= ZORCH__JOURNAL_SYNC_NS))) {
      if ((int64_t)polls * j->linger_ns < ZORCH__JOURNAL_IDLE_NS || unsynced) {
        /* Recently busy: look again after a tick; appenders need not signal. */
        struct timespec dl;
        deadline_after(&dl, j->linger_ns);
        pthread_cond_timedwait(&j->wake, &j->mu, &dl);
        polls++;
      } else {
        j->idle = true;
        pthread_cond_wait(&j->wake, &j->mu);
        j->idle = false;
        signalled = true;
      }
    }
    if (j->len == 0 && !unsynced) break; /* stop, nothing left */
    polls = 0;
    if (j->len && !j->stop && j->flushers == 0) {
      /* Linger so that lines appended in the next moment share this batch:
       * a batch starts no sooner than one window after the previous one
       * (or after the signal that woke a sleeping committer).  Without this
       * a busy journal would commit back to back, a write per line or two,
       * and the committer would compete for the CPU with the steps. */
      struct timespec dl;
      if (signalled || !last_batch) deadline_after(&dl, j->linger_ns);
      else ns_ts(last_batch + j->linger_ns, &dl);
      while (!j->stop && j->flushers == 0 && j->len < ZORCH__JOURNAL_MAX_PENDING / 2)
        if (pthread_cond_timedwait(&j->wake, &j->mu, &dl) == ETIMEDOUT) break;
    }
    int64_t now = mono_now();
    last_batch = now;
    char *b = j->buf;
    size_t n = j->len;
    size_t c = j->cap;
    j->buf = j->wbuf;
    j->cap = j->wcap;
    j->len = 0;
    j->wbuf = b;
    j->wcap = c;
    uint64_t target = j->appended;
    bool failed = j->err != 0;
    bool sync = j->durable && (j->flushers || j->stop || now - last_sync >= ZORCH__JOURNAL_SYNC_NS);
    pthread_mutex_unlock(&j->mu);
    int rc = ZORCH_OK;
    if (!failed && n) rc = j->sink ? sink_lines(j, b, n) : write_batch(j, b, n);
    if (!failed && !rc && sync) {
      last_sync = now;
      if (fdatasync(j->fd) != 0)
        rc = zorch__error_errno(ZORCH_EIO, errno, "cannot fdatasync journal '%s'", j->path);
    }
    pthread_mutex_lock(&j->mu);
    if (rc && !j->err) {
      j->err = rc;
      snprintf(j->errmsg, sizeof j->errmsg, "%s", zorch_error_last()->message);
    }
    written = target;
    if (!j->durable || sync || failed || rc) j->committed = target;
    pthread_cond_broadcast(&j->done);
  }
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

static int sticky(const zorch__journal *j) { return zorch__error_set(j->err, "%s", j->errmsg); }

/* The mutex, the conditions and the committer thread. */
static int start(zorch__journal *j) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  /* Appends hold the mutex for a memcpy: spin a little before sleeping. */
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(&j->mu, &ma);
  pthread_mutexattr_destroy(&ma);
  pthread_cond_init(&j->wake, &ca);
  pthread_cond_init(&j->done, NULL);
  pthread_condattr_destroy(&ca);
  /* The committer takes no signals: they belong to the application. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&j->thread, NULL, committer, j);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e != 0) {
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->wake);
    pthread_cond_destroy(&j->done);
    return zorch__error_errno(ZORCH_ERROR, e, "cannot start the committer thread of journal '%s'", j->path);
  }
  return ZORCH_OK;
}

int zorch__journal_open(zorch__journal **out, const char *path, bool durable) {
  if (!out || !path || !*path) return zorch__error_set(ZORCH_EINVALID, "zorch__journal_open: invalid argument");
  *out = NULL;
  zorch__journal *j = calloc(1, sizeof *j);
  if (!j) return zorch__error_oom();
  j->fd = -1;
  j->durable = durable;
  /* a journal that is not durable (the cache index) only serves later runs:
   * a longer window costs the process ten times fewer wake-ups */
  j->linger_ns = durable ? ZORCH__JOURNAL_LINGER_NS : ZORCH__JOURNAL_LAZY_LINGER_NS;
  j->path = zorch__strdup(path);
  const char *slash = strrchr(path, '/');
  char *dir = slash ? (slash == path ? zorch__strdup("/") : zorch__strndup(path, (size_t)(slash - path)))
                    : zorch__strdup(".");
  int rc = ZORCH_OK;
  if (!j->path || !dir) {
    rc = zorch__error_oom();
    goto fail;
  }
  if ((rc = zorch__mkdirs(dir))) goto fail;
  j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (j->fd < 0) {
    rc = zorch__error_errno(errno == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, errno,
                            "cannot open journal '%s'", path);
    goto fail;
  }
  lock_file(j);
  j->end = -1;
  rc = check_tail(j);
  unlock_file(j);
  if (rc) goto fail;
  if (durable) {
    /* The file's name, and a cut tail, must survive a power loss too. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0 || fdatasync(j->fd) != 0) {
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot fsync journal '%s' or its directory", path);
      if (dfd >= 0) close(dfd);
      goto fail;
    }
    close(dfd);
  }
  if ((rc = start(j))) goto fail;
  free(dir);
  *out = j;
  return ZORCH_OK;
fail:
  if (j->fd >= 0) close(j->fd);
  free(j->path);
  free(j);
  free(dir);
  return rc;
}

int zorch__journal_open_sink(zorch__journal **out, const char *name,
                             int (*sink)(void *data, const char *line, size_t len), void *data,
                             void (*free_data)(void *data)) {
  if (!out || !name || !sink) {
    if (free_data) free_data(data);
    return zorch__error_set(ZORCH_EINVALID, "zorch__journal_open_sink: invalid argument");
  }
  *out = NULL;
  zorch__journal *j = calloc(1, sizeof *j);
  if (j) j->path = zorch__strdup(name);
  int rc = j && j->path ? ZORCH_OK : zorch__error_oom();
  if (!rc) {
    j->fd = -1;
    j->linger_ns = ZORCH__JOURNAL_LINGER_NS;
    j->sink = sink;
    j->sink_data = data;
    j->sink_free = free_data;
    rc = start(j);
  }
  if (rc) {
    if (j) free(j->path);
    free(j);
    if (free_data) free_data(data);
    return rc;
  }
  *out = j;
  return ZORCH_OK;
}

/* Add `len` bytes of whole lines to the pending buffer, and a '\n' after
 * them when `newline`. */
static int append_raw(zorch__journal *j, const char *data, size_t len, bool newline) {
  size_t add = len + (newline ? 1 : 0);
  pthread_mutex_lock(&j->mu);
  while (!j->err && j->len > ZORCH__JOURNAL_MAX_PENDING) pthread_cond_wait(&j->done, &j->mu);
  if (j->err) {
    int rc = sticky(j);
    pthread_mutex_unlock(&j->mu);
    return rc;
  }
  if (j->len + add > j->cap) {
    size_t ncap = j->cap ? j->cap : 65536;
    while (ncap < j->len + add) ncap *= 2;
    char *nb = realloc(j->buf, ncap);
    if (!nb) {
      pthread_mutex_unlock(&j->mu);
      return zorch__error_oom();
    }
    j->buf = nb;
    j->cap = ncap;
  }
  if (len) memcpy(j->buf + j->len, data, len);
  if (newline) j->buf[j->len + len] = '\n';
  j->len += add;
  j->appended++;
  bool wake = j->idle;
  j->idle = false;
  pthread_mutex_unlock(&j->mu);
  if (wake) pthread_cond_signal(&j->wake);
  return ZORCH_OK;
}

int zorch__journal_append(zorch__journal *j, const char *line, size_t len) {
  if (!j || (!line && len)) return zorch__error_set(ZORCH_EINVALID, "zorch__journal_append: invalid argument");
  if (len && memchr(line, '\n', len))
    return zorch__error_set(ZORCH_EINVALID, "journal '%s': a line must not contain a newline", j->path);
  return append_raw(j, line, len, true);
}

int zorch__journal_append_lines(zorch__journal *j, const char *lines, size_t len) {
  if (!j || (!lines && len))
    return zorch__error_set(ZORCH_EINVALID, "zorch__journal_append_lines: invalid argument");
  if (!len) return ZORCH_OK;
  if (lines[len - 1] != '\n')
    return zorch__error_set(ZORCH_EINVALID, "journal '%s': appended lines must end with a newline", j->path);
  return append_raw(j, lines, len, false);
}

int zorch__journal_flush(zorch__journal *j) {
  if (!j) return zorch__error_set(ZORCH_EINVALID, "zorch__journal_flush: journal is NULL");
  pthread_mutex_lock(&j->mu);
  uint64_t target = j->appended;
  if (j->committed < target && !j->err) {
    j->flushers++;
    j->idle = false;
    pthread_cond_signal(&j->wake);
    while (j->committed < target && !j->err) pthread_cond_wait(&j->done, &j->mu);
    j->flushers--;
  }
  int rc = j->err ? sticky(j) : ZORCH_OK;
  pthread_mutex_unlock(&j->mu);
  return rc;
}

int zorch__journal_close(zorch__journal *j) {
  if (!j) return ZORCH_OK;
  int rc = zorch__journal_flush(j);
  pthread_mutex_lock(&j->mu);
  j->stop = true;
  pthread_cond_signal(&j->wake);
  pthread_mutex_unlock(&j->mu);
  pthread_join(j->thread, NULL);
  if (j->fd >= 0 && close(j->fd) != 0 && !rc)
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot close journal '%s'", j->path);
  if (j->sink_free) j->sink_free(j->sink_data);
  pthread_mutex_destroy(&j->mu);
  pthread_cond_destroy(&j->wake);
  pthread_cond_destroy(&j->done);
  free(j->buf);
  free(j->wbuf);
  free(j->path);
  free(j);
  return rc;
}

int zorch__journal_replay(const char *path,
                          int (*cb)(const char *line, size_t len, void *payload), void *payload) {
  if (!path || !cb) return zorch__error_set(ZORCH_EINVALID, "zorch__journal_replay: invalid argument");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open journal '%s'", path);
  }
  size_t cap = 1u << 20;
  char *buf = malloc(cap);
  if (!buf) {
    close(fd);
    return zorch__error_oom();
  }
  size_t len = 0; /* bytes in buf, all of an unfinished line */
  int rc = ZORCH_OK;
  for (;;) {
    if (len + 1 >= cap) { /* one line longer than the buffer: grow */
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        rc = zorch__error_oom();
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r < 0) {
      if (errno == EINTR) continue;
      rc = zorch__error_errno(ZORCH_EIO, errno, "cannot read journal '%s'", path);
      break;
    }
    if (r == 0) break; /* what is left has no '\n': torn, ignored */
    size_t scan = len;
    len += (size_t)r;
    size_t start = 0;
    char *nl;
    while ((nl = memchr(buf + scan, '\n', len - scan))) {
      size_t end = (size_t)(nl - buf);
      *nl = '\0'; /* the callback may treat the line as a C string */
      rc = cb(buf + start, end - start, payload);
      if (rc) break;
      start = scan = end + 1;
    }
    if (rc) break;
    memmove(buf, buf + start, len - start);
    len -= start;
  }
  free(buf);
  close(fd);
  return rc;
}
