/* zorch — small helpers: strings, buffers, names, time, files. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *zorch__strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

char *zorch__strndup(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *zorch__asprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *out = NULL;
  int n = vasprintf(&out, fmt, ap);
  va_end(ap);
  return n < 0 ? NULL : out;
}

int zorch__buf_grow(zorch__buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return ZORCH_OK;
  size_t ncap = b->cap ? b->cap * 2 : 256;
  while (ncap < b->len + extra + 1) ncap *= 2;
  char *nd = realloc(b->data, ncap);
  if (!nd) return zorch__error_oom();
  b->data = nd;
  b->cap = ncap;
  return ZORCH_OK;
}

int zorch__buf_put(zorch__buf *b, const void *data, size_t len) {
  if (zorch__buf_grow(b, len)) return ZORCH_ENOMEM;
  memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return ZORCH_OK;
}

int zorch__buf_puts(zorch__buf *b, const char *s) { return zorch__buf_put(b, s, strlen(s)); }

int zorch__buf_printf(zorch__buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || zorch__buf_grow(b, (size_t)n)) {
    va_end(ap2);
    return zorch__error_oom();
  }
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  b->len += (size_t)n;
  return ZORCH_OK;
}

char *zorch__put_u64(char *p, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  memcpy(p, tmp + sizeof tmp - n, n);
  return p + n;
}

/* "00".."99" */
static const char two_digits[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                    "8081828384858687888990919293949596979899";

char *zorch__put_time(char *p, double t) {
  if (!(t > 0)) {
    *p = '0';
    return p + 1;
  }
  uint64_t us = (uint64_t)(t * 1e6 + 0.5);
  uint64_t sec = us / 1000000;
  /* times written one after another share their seconds: keep the last */
  static _Thread_local uint64_t last_sec = UINT64_MAX;
  static _Thread_local char last_txt[20];
  static _Thread_local size_t last_len;
  if (sec != last_sec) {
    last_len = (size_t)(zorch__put_u64(last_txt, sec) - last_txt);
    last_sec = sec;
  }
  memcpy(p, last_txt, last_len);
  p += last_len;
  *p++ = '.';
  uint32_t f = (uint32_t)(us % 1000000);
  memcpy(p, two_digits + 2 * (f / 10000), 2);
  memcpy(p + 2, two_digits + 2 * (f / 100 % 100), 2);
  memcpy(p + 4, two_digits + 2 * (f % 100), 2);
  return p + 6;
}

int zorch__buf_u64(zorch__buf *b, uint64_t v) {
  if (zorch__buf_grow(b, 20)) return ZORCH_ENOMEM;
  b->len = (size_t)(zorch__put_u64(b->data + b->len, v) - b->data);
  b->data[b->len] = '\0';
  return ZORCH_OK;
}

int zorch__buf_time(zorch__buf *b, double t) {
  if (zorch__buf_grow(b, ZORCH__TIME_MAX)) return ZORCH_ENOMEM;
  b->len = (size_t)(zorch__put_time(b->data + b->len, t) - b->data);
  b->data[b->len] = '\0';
  return ZORCH_OK;
}

int zorch__buf_cat(zorch__buf *b, ...) {
  va_list ap;
  va_start(ap, b);
  const char *s;
  int rc = ZORCH_OK;
  while (rc == ZORCH_OK && (s = va_arg(ap, const char *))) rc = zorch__buf_put(b, s, strlen(s));
  va_end(ap);
  return rc;
}

/* The length of the run at p (of at most n bytes) that needs no JSON escape:
 * eight bytes at a time (a control character, '"' or '\\' stops it). */
static size_t json_plain_run(const unsigned char *p, size_t n) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    memcpy(&x, p + i, 8);
    uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
    uint64_t hit = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs);
    if (hit & highs) break; /* a byte to look at in this word */
  }
  while (i < n && p[i] >= 0x20 && p[i] != '"' && p[i] != '\\') i++;
  return i;
}

char *zorch__put_json_string(char *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  *out++ = '"';
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  while (p < end) {
    /* copy the run of characters that need no escape in one go */
    const unsigned char *q = p + json_plain_run(p, (size_t)(end - p));
    if (q > p) {
      memcpy(out, p, (size_t)(q - p));
      out += q - p;
      p = q;
      if (p == end) break;
    }
    *out++ = '\\';
    switch (*p) {
    case '"': *out++ = '"'; break;
    case '\\': *out++ = '\\'; break;
    case '\n': *out++ = 'n'; break;
    case '\r': *out++ = 'r'; break;
    case '\t': *out++ = 't'; break;
    default:
      memcpy(out, "u00", 3);
      out[3] = hex[*p >> 4];
      out[4] = hex[*p & 15];
      out += 5;
    }
    p++;
  }
  *out++ = '"';
  return out;
}

int zorch__buf_json_string(zorch__buf *b, const char *s) {
  size_t n = strlen(s);
  if (zorch__buf_grow(b, ZORCH__JSON_STRING_MAX(n))) return ZORCH_ENOMEM;
  b->len = (size_t)(zorch__put_json_string(b->data + b->len, s, n) - b->data);
  b->data[b->len] = '\0';
  return ZORCH_OK;
}

void zorch__buf_free(zorch__buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *zorch__buf_detach(zorch__buf *b) {
  char *d = b->data;
  if (!d) d = zorch__strdup("");
  b->data = NULL;
  b->len = b->cap = 0;
  return d;
}

int zorch__check_name(const char *what, const char *name) {
  if (!name) return zorch__error_set(ZORCH_EINVALID, "%s name is missing (NULL)", what);
  size_t n = strlen(name);
  if (n == 0) return zorch__error_set(ZORCH_EINVALID, "%s name is empty", what);
  if (n > 63)
    return zorch__error_set(ZORCH_EINVALID, "invalid %s name '%.80s': longer than 63 characters",
                            what, name);
  unsigned char c0 = (unsigned char)name[0];
  if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z')))
    return zorch__error_set(ZORCH_EINVALID, "invalid %s name '%s': must start with a letter", what,
                            name);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return zorch__error_set(ZORCH_EINVALID,
                              "invalid %s name '%s': character '%c' at position %zu is not "
                              "allowed (use letters, digits, '_' and '-')",
                              what, name, c >= 0x20 && c < 0x7f ? c : '?', i + 1);
  }
  return ZORCH_OK;
}

double zorch__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t zorch__mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int zorch__mkdirs(const char *path) {
  char *p = zorch__strdup(path);
  if (!p) return zorch__error_oom();
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      int e = errno;
      zorch__error_errno(ZORCH_EIO, e, "cannot create directory '%s'", p);
      free(p);
      return ZORCH_EIO;
    }
    *s = '/';
  }
  if (mkdir(p, 0755) != 0 && errno != EEXIST) {
    int e = errno;
    zorch__error_errno(ZORCH_EIO, e, "cannot create directory '%s'", p);
    free(p);
    return ZORCH_EIO;
  }
  free(p);
  return ZORCH_OK;
}

int zorch__read_file(const char *path, char **data, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open '%s'",
                              path);
  }
  zorch__buf b = ZORCH__BUF_INIT;
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_size > 0 && zorch__buf_grow(&b, (size_t)st.st_size)) {
    close(fd);
    return ZORCH_ENOMEM;
  }
  for (;;) {
    if (zorch__buf_grow(&b, 65536)) {
      close(fd);
      zorch__buf_free(&b);
      return ZORCH_ENOMEM;
    }
    ssize_t r = read(fd, b.data + b.len, b.cap - b.len - 1);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      zorch__buf_free(&b);
      return zorch__error_errno(ZORCH_EIO, e, "cannot read '%s'", path);
    }
    if (r == 0) break;
    b.len += (size_t)r;
  }
  close(fd);
  b.data[b.len] = '\0';
  if (len) *len = b.len;
  *data = b.data;
  return ZORCH_OK;
}

static int rm_rf_at(int dfd, const char *name) {
  if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR && errno != EPERM) return -1;
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  fchmod(fd, 0755);
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -1;
  }
  struct dirent *de;
  int rc = 0;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (rm_rf_at(dirfd(d), de->d_name) != 0) rc = -1;
  }
  closedir(d);
  if (unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) rc = -1;
  return rc;
}

int zorch__rm_rf(const char *path) {
  if (rm_rf_at(AT_FDCWD, path) != 0)
    return zorch__error_errno(ZORCH_EIO, errno, "cannot remove '%s'", path);
  return ZORCH_OK;
}

char *zorch__which(const char *cmd) { return zorch__which_in(cmd, getenv("PATH")); }

char *zorch__which_in(const char *cmd, const char *path) {
  if (strchr(cmd, '/')) return zorch__strdup(cmd);
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    size_t n = strcspn(path, ":");
    char *cand = n ? zorch__asprintf("%.*s/%s", (int)n, path, cmd) : zorch__asprintf("./%s", cmd);
    struct stat st;
    if (cand && access(cand, X_OK) == 0 && stat(cand, &st) == 0 && S_ISREG(st.st_mode)) return cand;
    free(cand);
    path += n;
    if (*path == ':') path++;
  }
  return NULL;
}

char *zorch__file_tail(const char *path, int lines) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  char buf[2048];
  off_t end = lseek(fd, 0, SEEK_END);
  off_t start = end > (off_t)sizeof buf - 1 ? end - (off_t)(sizeof buf - 1) : 0;
  ssize_t n = pread(fd, buf, sizeof buf - 1, start);
  close(fd);
  if (n <= 0) return NULL;
  buf[n] = '\0';
  while (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  char *p = buf + n;
  int seen = 0;
  while (p > buf) {
    if (p[-1] == '\n' && ++seen == lines) break;
    p--;
  }
  return *p ? zorch__strdup(p) : NULL;
}

char *zorch__path_join(const char *a, const char *b) {
  size_t la = strlen(a);
  if (la && a[la - 1] == '/') return zorch__asprintf("%s%s", a, b);
  return zorch__asprintf("%s/%s", a, b);
}

/* ---- large arrays ---- */

#define BIG_MIN ((size_t)4 << 20)
#define BIG_HDR ((size_t)64) /* keeps the array's alignment; holds the mapping's length */
/* Huge pages only where TLB reach matters: for a block of a few MiB they
 * save little, and a huge page the system must first find (or, in a VM, the
 * host must first back) costs far more to fault in than 512 small ones. */
#define BIG_HUGE_MIN ((size_t)32 << 20)
/* From a reserve, blocks from this size on (smaller ones: calloc) */
#define RESERVE_MIN ((size_t)64 << 10)
#define RESERVE_CHUNK ((size_t)256 << 10)

struct zorch__reserve {
  char *base;
  size_t size;
  size_t carved;     /* handed out: [0, carved) (page multiple) */
  size_t populated;  /* the faulting thread got this far */
  size_t busy;       /* it is touching [populated, busy) now (busy > populated) */
  bool stop;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* a range was touched */
  pthread_t thread;
};

static _Thread_local zorch__reserve *cur_reserve;

static size_t page_size(void) {
  long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? (size_t)page : 4096;
}

/* The faulting thread: touches the reserve from the front, a chunk at a
 * time, only where nothing was handed out yet (so its writes of zeros race
 * with no one); a block is not handed out while it is being touched. */
static void *reserve_main(void *arg) {
  zorch__reserve *r = arg;
  size_t pg = page_size();
  pthread_mutex_lock(&r->mu);
  for (;;) {
    size_t a = r->populated > r->carved ? r->populated : r->carved;
    if (r->stop || a >= r->size) break;
    size_t b = a + RESERVE_CHUNK < r->size ? a + RESERVE_CHUNK : r->size;
    r->populated = a;
    r->busy = b;
    pthread_mutex_unlock(&r->mu);
    volatile char *c = r->base;
    for (size_t o = a; o < b; o += pg) c[o] = 0; /* fresh pages are zero: no change */
    pthread_mutex_lock(&r->mu);
    r->populated = b;
    pthread_cond_broadcast(&r->cv);
  }
  r->busy = 0;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

zorch__reserve *zorch__reserve_begin(size_t bytes) {
  if (cur_reserve || bytes < RESERVE_CHUNK) return NULL;
  size_t pg = page_size();
  bytes = (bytes + pg - 1) & ~(pg - 1);
  zorch__reserve *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r->base == MAP_FAILED) {
    free(r);
    return NULL;
  }
  r->size = bytes;
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  if (pthread_create(&r->thread, NULL, reserve_main, r) != 0) {
    munmap(r->base, bytes);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return NULL;
  }
  cur_reserve = r;
  return r;
}

void zorch__reserve_end(zorch__reserve *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->stop = true;
  pthread_mutex_unlock(&r->mu);
  pthread_join(r->thread, NULL);
  if (r->carved < r->size) munmap(r->base + r->carved, r->size - r->carved);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  if (cur_reserve == r) cur_reserve = NULL;
  free(r);
}

/* A zeroed block of `bytes` (header included; made a page multiple) from
 * this thread's reserve, or NULL. */
static char *reserve_carve(size_t bytes) {
  zorch__reserve *r = cur_reserve;
  if (!r) return NULL;
  size_t pg = page_size();
  if (bytes > SIZE_MAX - pg) return NULL;
  bytes = (bytes + pg - 1) & ~(pg - 1);
  char *p = NULL;
  pthread_mutex_lock(&r->mu);
  if (bytes <= r->size - r->carved) {
    while (r->busy > r->populated && r->carved + bytes > r->populated) pthread_cond_wait(&r->cv, &r->mu);
    p = r->base + r->carved;
    r->carved += bytes;
  }
  pthread_mutex_unlock(&r->mu);
  if (p) *(size_t *)p = bytes;
  return p;
}

void *zorch__big_calloc(size_t n, size_t size) {
  if (size && n > (SIZE_MAX - BIG_HDR) / size) return NULL;
  size_t bytes = n * size + BIG_HDR;
  char *base = bytes >= RESERVE_MIN ? reserve_carve(bytes) : NULL;
  if (base) return base + BIG_HDR;
  if (bytes < BIG_MIN) {
    base = calloc(1, bytes);
    if (!base) return NULL;
    *(size_t *)base = 0;
  } else {
    base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    if (bytes >= BIG_HUGE_MIN) (void)madvise(base, bytes, MADV_HUGEPAGE); /* best effort */
    *(size_t *)base = bytes;
  }
  return base + BIG_HDR;
}

void *zorch__big_calloc_filled(size_t n, size_t size) {
  if (size && n > (SIZE_MAX - BIG_HDR) / size) return NULL;
  size_t bytes = n * size + BIG_HDR;
  if (bytes < RESERVE_MIN) return zorch__big_calloc(n, size);
  char *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (base == MAP_FAILED) return NULL;
  *(size_t *)base = bytes;
  return base + BIG_HDR;
}

void zorch__big_free(void *p) {
  if (!p) return;
  char *base = (char *)p - BIG_HDR;
  size_t bytes = *(size_t *)base;
  if (bytes) munmap(base, bytes);
  else free(base);
}

/* ---- bump allocator ---- */

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t used, cap;
  max_align_t data[];
} arena_chunk;

void *zorch__arena_alloc(void **arena, size_t n, size_t chunk) {
  n = (n + 15) & ~(size_t)15;
  arena_chunk *c = *arena;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > chunk ? n : chunk;
    arena_chunk *nc = malloc(sizeof *nc + cap);
    if (!nc) return NULL;
    nc->next = c;
    nc->used = 0;
    nc->cap = cap;
    *arena = c = nc;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  return p;
}

void zorch__arena_free(void **arena) {
  for (arena_chunk *c = *arena; c;) {
    arena_chunk *next = c->next;
    free(c);
    c = next;
  }
  *arena = NULL;
}
