/* zorch — the cache index of a pipeline: cache/<pipeline>.jsonl.
 *
 * One JSON line per entry, {"k":"<key>","o":<outputs JSON array>}; the latest
 * line of a key wins.  zorch__cache_open() reads the file once and keeps it:
 * for a line in the form zorch writes, the key and the outputs text are cut
 * out of the buffer in place (one pass, no JSON tree), after a syntax check
 * of the outputs; other lines are parsed with jansson; lines that are not an
 * object with a string "k" and an array "o", and a torn last line, are
 * skipped.  New entries go through a zorch__journal, so they share its group
 * commit (and its crash guarantee).  Lookups and puts are serialised by a
 * mutex (appends of entries the handle does not keep need only the
 * journal's); strings handed out live until zorch__cache_close().
 *
 * On a store that is not local (an object store cannot be appended to),
 * each entry is an object of its own, cache/<pipeline>/<key>.json, holding
 * the same line.  The first lookup lists the keys, once (no entry is read,
 * so a first run reads nothing; a step process that only puts its entry
 * lists nothing); a lookup of a listed key reads its object once and keeps
 * it; new entries go through a sink journal that puts one object per line,
 * in the background as the file's appends are.
 */
#include "store.h"
#include "store_layout.h"

#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef struct cache_block {
  struct cache_block *next;
  char s[]; /* key '\0' outputs '\0' */
} cache_block;

/* An open-addressing table of key -> outputs text.  Its own (not map.h)
 * because loading is dominated by hashing 100k keys of 64 characters: this
 * hash takes 8 bytes per step. */
typedef struct {
  const char *key;
  const char *val;
  uint64_t hash;
} cache_slot;

typedef struct {
  cache_slot *slots;
  size_t cap; /* a power of two */
  size_t count;
} cache_table;

struct zorch__cache {
  pthread_mutex_t mu;
  cache_table map; /* keys and values live in data or blocks */
  zorch__journal *j;
  char *path;      /* the index file, or (remote) a name for messages */
  zorch__store *remote; /* not local: one object per entry */
  char *pipeline;
  bool listed;          /* remote: the keys were listed */
  char *data;      /* the file as loaded */
  size_t data_map; /* when non-zero, data is an anonymous mapping of this size */
  cache_block *blocks;
};

/* ---- the table ------------------------------------------------------------------ */

static uint64_t mix(uint64_t h) {
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ULL;
  h ^= h >> 32;
  return h;
}

static uint64_t key_hash(const char *s, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
  for (; n >= 8; s += 8, n -= 8) {
    uint64_t v;
    memcpy(&v, s, 8);
    h = (h ^ v) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
  }
  uint64_t v = 0;
  memcpy(&v, s, n);
  return mix(h ^ v) | 1; /* never 0 */
}

static int table_init(cache_table *t, size_t hint) {
  size_t cap = 64;
  while (cap < hint + hint / 2) cap <<= 1;
  t->slots = calloc(cap, sizeof *t->slots);
  if (!t->slots) return zorch__error_oom();
  t->cap = cap;
  t->count = 0;
  return ZORCH_OK;
}

static int table_put_hashed(cache_table *t, const char *key, uint64_t h, const char *val);

static int table_put(cache_table *t, const char *key, size_t klen, const char *val) {
  return table_put_hashed(t, key, key_hash(key, klen), val);
}

static int table_put_hashed(cache_table *t, const char *key, uint64_t h, const char *val) {
  if ((t->count + 1) * 4 > t->cap * 3) {
    size_t ncap = t->cap * 2;
    cache_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return zorch__error_oom();
    for (size_t i = 0; i < t->cap; i++) {
      if (!t->slots[i].key) continue;
      size_t j = t->slots[i].hash & (ncap - 1);
      while (ns[j].key) j = (j + 1) & (ncap - 1);
      ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
  }
  size_t j = h & (t->cap - 1);
  for (; t->slots[j].key; j = (j + 1) & (t->cap - 1)) {
    if (t->slots[j].hash == h && strcmp(t->slots[j].key, key) == 0) {
      t->slots[j].val = val; /* latest wins; both keys live until close */
      return ZORCH_OK;
    }
  }
  t->slots[j] = (cache_slot){key, val, h};
  t->count++;
  return ZORCH_OK;
}

static const char *table_get(const cache_table *t, const char *key) {
  if (!t->slots) return NULL;
  uint64_t h = key_hash(key, strlen(key));
  for (size_t j = h & (t->cap - 1); t->slots[j].key; j = (j + 1) & (t->cap - 1))
    if (t->slots[j].hash == h && strcmp(t->slots[j].key, key) == 0) return t->slots[j].val;
  return NULL;
}

/* How many bytes from p on are plain string content: no '"', '\\' or control
 * character.  16 bytes per step with SSE2, else 8 (SWAR). */
static size_t plain_run(const char *p, const char *e) {
  const char *s = p;
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1f);
  while (e - s >= 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
    __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                               _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v)); /* v <= 0x1f */
    int m = _mm_movemask_epi8(hit);
    if (m) return (size_t)(s - p) + (size_t)__builtin_ctz((unsigned)m);
    s += 16;
  }
#else
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  while (e - s >= 8) {
    uint64_t v;
    memcpy(&v, s, 8);
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
    uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v);
    if (hit & highs) break;
    s += 8;
  }
#endif
  while (s < e && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20) s++;
  return (size_t)(s - p);
}

/* ---- a small JSON syntax checker (no allocation) ------------------------------ */

static const char *ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

static bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string starting at p ('"'); returns the position after it or NULL. */
static const char *j_string(const char *p, const char *e) {
  for (p++; p < e; p++) {
    p += plain_run(p, e);
    if (p >= e) return NULL;
    unsigned char c = (unsigned char)*p;
    if (c == '"') return p + 1;
    if (c < 0x20) return NULL;
    if (c == '\\') {
      if (++p >= e) return NULL;
      switch (*p) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': break;
      case 'u':
        if (e - p < 5 || !is_hex(p[1]) || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4])) return NULL;
        p += 4;
        break;
      default: return NULL;
      }
    }
  }
  return NULL;
}

static const char *j_value(const char *p, const char *e, int depth);

static const char *j_number(const char *p, const char *e) {
  if (p < e && *p == '-') p++;
  if (p >= e) return NULL;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < e && *p >= '0' && *p <= '9') p++;
  } else {
    return NULL;
  }
  if (p < e && *p == '.') {
    p++;
    if (p >= e || *p < '0' || *p > '9') return NULL;
    while (p < e && *p >= '0' && *p <= '9') p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-')) p++;
    if (p >= e || *p < '0' || *p > '9') return NULL;
    while (p < e && *p >= '0' && *p <= '9') p++;
  }
  return p;
}

static const char *j_container(const char *p, const char *e, int depth, bool object) {
  char close = object ? '}' : ']';
  p = ws(p + 1, e);
  if (p < e && *p == close) return p + 1;
  for (;;) {
    if (object) {
      if (p >= e || *p != '"' || !(p = j_string(p, e))) return NULL;
      p = ws(p, e);
      if (p >= e || *p != ':') return NULL;
      p = ws(p + 1, e);
    }
    if (!(p = j_value(p, e, depth + 1))) return NULL;
    p = ws(p, e);
    if (p >= e) return NULL;
    if (*p == close) return p + 1;
    if (*p != ',') return NULL;
    p = ws(p + 1, e);
  }
}

static const char *j_value(const char *p, const char *e, int depth) {
  if (p >= e || depth > 64) return NULL;
  switch (*p) {
  case '"': return j_string(p, e);
  case '[': return j_container(p, e, depth, false);
  case '{': return j_container(p, e, depth, true);
  case 't': return (e - p >= 4 && !memcmp(p, "true", 4)) ? p + 4 : NULL;
  case 'f': return (e - p >= 5 && !memcmp(p, "false", 5)) ? p + 5 : NULL;
  case 'n': return (e - p >= 4 && !memcmp(p, "null", 4)) ? p + 4 : NULL;
  default: return j_number(p, e);
  }
}

/* Is [p, e) exactly one JSON array, give or take surrounding whitespace? */
static bool is_json_array(const char *p, const char *e) {
  p = ws(p, e);
  if (p >= e || *p != '[') return false;
  p = j_value(p, e, 0);
  return p && ws(p, e) == e;
}

/* ---- loading ------------------------------------------------------------------ */

static cache_block *block_new(zorch__cache *c, const char *key, size_t klen, const char *out, size_t olen) {
  cache_block *b = malloc(sizeof *b + klen + olen + 2);
  if (!b) return NULL;
  memcpy(b->s, key, klen);
  b->s[klen] = '\0';
  memcpy(b->s + klen + 1, out, olen);
  b->s[klen + 1 + olen] = '\0';
  b->next = c->blocks;
  c->blocks = b;
  return b;
}

/* A line that is not in zorch's own form: parse it properly. */
static int load_line_slow(zorch__cache *c, const char *p, const char *e) {
  json_t *root = json_loadb(p, (size_t)(e - p), JSON_REJECT_DUPLICATES, NULL);
  json_t *k = json_object_get(root, "k");
  json_t *o = json_object_get(root, "o");
  int rc = ZORCH_OK;
  if (json_is_object(root) && json_is_string(k) && json_is_array(o) &&
      strlen(json_string_value(k)) == json_string_length(k)) {
    char *otext = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    const char *key = json_string_value(k);
    cache_block *b = otext ? block_new(c, key, strlen(key), otext, strlen(otext)) : NULL;
    free(otext);
    if (!b)
      rc = zorch__error_oom();
    else
      rc = table_put(&c->map, b->s, strlen(b->s), b->s + strlen(b->s) + 1);
  }
  json_decref(root);
  return rc;
}

static const char FAST_PREFIX[] = "{\"k\":\"";
static const char FAST_MIDDLE[] = "\",\"o\":";

/* Loading inserts through a small ring: the slot of a line is prefetched when
 * the line is parsed and filled RING lines later, so that the cache misses of
 * a large table overlap with parsing.  Order is kept (latest wins). */
#define RING 8
typedef struct {
  struct {
    const char *key, *val;
    uint64_t hash;
  } e[RING];
  unsigned head, n;
} load_ring;

static int ring_flush(zorch__cache *c, load_ring *r) {
  for (; r->n; r->n--, r->head = (r->head + 1) % RING) {
    int rc = table_put_hashed(&c->map, r->e[r->head].key, r->e[r->head].hash, r->e[r->head].val);
    if (rc) return rc;
  }
  return ZORCH_OK;
}

static int ring_push(zorch__cache *c, load_ring *r, const char *key, size_t klen, const char *val) {
  if (r->n == RING) {
    int rc = table_put_hashed(&c->map, r->e[r->head].key, r->e[r->head].hash, r->e[r->head].val);
    if (rc) return rc;
    r->head = (r->head + 1) % RING;
    r->n--;
  }
  unsigned i = (r->head + r->n++) % RING;
  r->e[i].key = key;
  r->e[i].val = val;
  r->e[i].hash = key_hash(key, klen);
  __builtin_prefetch(&c->map.slots[r->e[i].hash & (c->map.cap - 1)], 1);
  return ZORCH_OK;
}

/* Earlier lines first (latest wins), then the slow path. */
static int slow(zorch__cache *c, load_ring *r, const char *p, const char *e) {
  int rc = ring_flush(c, r);
  return rc ? rc : load_line_slow(c, p, e);
}

/* One line [p, e) without its '\n'; e is writable (the buffer). */
static int load_line(zorch__cache *c, load_ring *r, char *p, char *e) {
  while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
  size_t plen = sizeof FAST_PREFIX - 1, mlen = sizeof FAST_MIDDLE - 1;
  if ((size_t)(e - p) < plen + mlen + 3 || memcmp(p, FAST_PREFIX, plen) != 0 || e[-1] != '}')
    return slow(c, r, p, e);
  char *key = p + plen;
  char *q = key + plain_run(key, e);
  if (q >= e || *q != '"' || (size_t)(e - q) < mlen + 1 || memcmp(q, FAST_MIDDLE, mlen) != 0)
    return slow(c, r, p, e);
  char *o = q + mlen;
  char *oe = e - 1; /* the closing '}' */
  if (*ws(o, oe) != '[' || !is_json_array(o, oe))
    return slow(c, r, p, e);
  *q = '\0';
  *oe = '\0';
  return ring_push(c, r, key, (size_t)(q - key), o);
}

/* Read the whole index into c->data (NUL-terminated).  A large one goes into
 * an anonymous mapping with transparent huge pages: the read then faults a few
 * 2 MiB pages instead of thousands of small ones.  *len gets what was read,
 * which may be short of st_size when a writer is busy; the tail is torn then. */
static int read_index(zorch__cache *c, size_t *len) {
  int fd = open(c->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return zorch__error_errno(e == ENOENT ? ZORCH_ENOTFOUND : ZORCH_EIO, e, "cannot open '%s'", c->path);
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return zorch__error_errno(ZORCH_EIO, e, "cannot stat '%s'", c->path);
  }
  size_t want = (size_t)sb.st_size;
  size_t cap = want + 1;
  if (cap >= (4u << 20)) {
    size_t huge = 2u << 20;
    cap = (cap + huge - 1) & ~(huge - 1);
    void *m = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) {
      (void)madvise(m, cap, MADV_HUGEPAGE);
      c->data = m;
      c->data_map = cap;
    }
  }
  if (!c->data) c->data = malloc(cap);
  if (!c->data) {
    close(fd);
    return zorch__error_oom();
  }
  size_t got = 0;
  while (got < want) {
    ssize_t r = read(fd, c->data + got, want - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return zorch__error_errno(ZORCH_EIO, e, "cannot read '%s'", c->path);
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  close(fd);
  c->data[got] = '\0';
  *len = got;
  return ZORCH_OK;
}

static int load(zorch__cache *c) {
  size_t len = 0;
  int rc = read_index(c, &len);
  if (rc == ZORCH_ENOTFOUND) {
    zorch_error_clear();
    return table_init(&c->map, 64);
  }
  if (rc) return rc;
  size_t lines = 0;
  for (const char *s = c->data; (s = memchr(s, '\n', len - (size_t)(s - c->data))); s++) lines++;
  if ((rc = table_init(&c->map, lines + 64))) return rc;
  char *p = c->data, *end = c->data + len;
  char *nl;
  load_ring r = {.head = 0, .n = 0};
  while (p < end && (nl = memchr(p, '\n', (size_t)(end - p)))) {
    if (nl > p && (rc = load_line(c, &r, p, nl))) return rc;
    p = nl + 1;
  }
  /* [p, end) is a torn last line, if anything: ignored. */
  return ring_flush(c, &r);
}

/* ---- a store that is not local: one object per entry ------------------------------- */

/* The value of a key that was listed and not yet read. */
static const char UNREAD[] = "";

/* The cache key of an entry line in zorch's form ({"k":"<key>",...), into
 * `key`; false when it is not one. */
static bool line_key(const char *p, const char *e, char key[ZORCH__DIGEST_HEX]) {
  size_t plen = sizeof FAST_PREFIX - 1;
  if ((size_t)(e - p) < plen + 64 + 1 || memcmp(p, FAST_PREFIX, plen) != 0) return false;
  memcpy(key, p + plen, 64);
  key[64] = '\0';
  return p[plen + 64] == '"' && zorch__is_digest(key);
}

/* Put an entry line as its entry's object (the sink of the journal). */
static int remote_write(void *data, const char *line, size_t len) {
  zorch__cache *c = data;
  char key[ZORCH__DIGEST_HEX];
  if (!line_key(line, line + len, key)) return ZORCH_OK;
  char *k = zorch__layout_cache_entry(c->pipeline, key);
  int rc = k ? zorch__store_write_doc(c->remote, k, line, len, false) : zorch__error_oom();
  free(k);
  return rc;
}

static int remote_listed(void *payload, const char *key, uint64_t size) {
  (void)size;
  zorch__cache *c = payload;
  char k[ZORCH__DIGEST_HEX];
  if (!zorch__layout_cache_key_of(key, k, sizeof k) || !zorch__is_digest(k)) return ZORCH_OK;
  if (table_get(&c->map, k)) return ZORCH_OK; /* put by this handle already */
  cache_block *b = block_new(c, k, 64, "", 0);
  return b ? table_put(&c->map, b->s, 64, UNREAD) : zorch__error_oom();
}

static int remote_open(zorch__cache *c, zorch__store *st, const char *pipeline) {
  c->remote = st;
  c->pipeline = zorch__strdup(pipeline);
  int rc = c->pipeline ? table_init(&c->map, 64) : zorch__error_oom();
  if (!rc) rc = zorch__journal_open_sink(&c->j, c->path, remote_write, c, NULL);
  return rc;
}

/* List the keys (the first lookup); c->mu held.  A listing that fails
 * makes misses: the steps run again, which is safe. */
static void remote_list(zorch__cache *c) {
  c->listed = true;
  char *prefix = zorch__layout_cache_entries(c->pipeline);
  if (prefix) (void)zorch__store_list(c->remote, prefix, "/", remote_listed, c);
  free(prefix);
  zorch_error_clear();
}

/* Read the entry of a listed key; c->mu held.  Its outputs, or NULL. */
static const char *remote_read(zorch__cache *c, const char *key) {
  char *k = zorch__layout_cache_entry(c->pipeline, key);
  char *text = NULL;
  size_t len = 0;
  int rc = k ? zorch__store_read_doc(c->remote, k, &text, &len) : ZORCH_ENOMEM;
  free(k);
  if (!rc) load_line_slow(c, text, text + len); /* puts key -> outputs when it is that entry */
  free(text);
  zorch_error_clear();
  const char *val = table_get(&c->map, key);
  if (val != UNREAD) return val;
  table_put(&c->map, key, strlen(key), NULL); /* unreadable: a miss from now on */
  return NULL;
}

int zorch__cache_open(zorch__cache **out, zorch__store *st, const char *pipeline, bool durable) {
  if (!out || !st) return zorch__error_set(ZORCH_EINVALID, "zorch__cache_open: invalid argument");
  *out = NULL;
  int rc = zorch__check_name("pipeline", pipeline);
  if (rc) return rc;
  zorch__cache *c = calloc(1, sizeof *c);
  if (!c) return zorch__error_oom();
  pthread_mutex_init(&c->mu, NULL);
  char *key = zorch__layout_cache_index(pipeline);
  if (!zorch__store_is_local(st)) {
    c->path = zorch__asprintf("cache index of pipeline %s in %s", pipeline, zorch__store_uri(st));
    rc = c->path ? remote_open(c, st, pipeline) : zorch__error_oom();
    if (rc) zorch__error_prefix("cannot load the %s", c->path ? c->path : "cache index");
  } else if (!key || !(c->path = zorch__path_join(zorch__store_local_root(st), key))) {
    rc = zorch__error_oom();
  } else if ((rc = load(c))) {
    zorch__error_prefix("cannot load cache index '%s'", c->path);
  } else {
    rc = zorch__journal_open(&c->j, c->path, durable);
  }
  free(key);
  if (rc) {
    zorch__cache_close(c);
    return rc;
  }
  *out = c;
  return ZORCH_OK;
}

const char *zorch__cache_lookup(zorch__cache *c, const char *key) {
  if (!c || !key) return NULL;
  pthread_mutex_lock(&c->mu);
  if (c->remote && !c->listed) remote_list(c);
  const char *v = table_get(&c->map, key);
  if (v == UNREAD) v = remote_read(c, key);
  pthread_mutex_unlock(&c->mu);
  return v;
}

/* The index line of an entry, appended to out; *at: where the outputs begin. */
static int entry_line(zorch__buf *out, const char *key, const char *outputs_json, size_t *at) {
  if (!out || !key || !*key || !outputs_json)
    return zorch__error_set(ZORCH_EINVALID, "zorch__cache_entry_line: invalid argument");
  size_t olen = strlen(outputs_json);
  if (!is_json_array(outputs_json, outputs_json + olen))
    return zorch__error_set(ZORCH_EINVALID, "cache entry of key '%s': the outputs are not a JSON array: %.200s",
                            key, outputs_json);
  size_t start = out->len;
  int rc = zorch__buf_grow(out, strlen(key) + olen + 16);
  if (!rc) rc = zorch__buf_put(out, "{\"k\":", 5);
  if (!rc) rc = zorch__buf_json_string(out, key);
  if (!rc) rc = zorch__buf_put(out, ",\"o\":", 5);
  size_t ostart = out->len;
  if (!rc) rc = zorch__buf_put(out, outputs_json, olen);
  if (!rc) rc = zorch__buf_put(out, "}\n", 2);
  if (rc) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return rc;
  }
  /* In valid JSON a newline can only be whitespace between tokens. */
  for (size_t i = ostart; i < out->len - 2; i++)
    if (out->data[i] == '\n' || out->data[i] == '\r') out->data[i] = ' ';
  *at = ostart;
  return ZORCH_OK;
}

int zorch__cache_entry_line(zorch__buf *out, const char *key, const char *outputs_json) {
  size_t at;
  return entry_line(out, key, outputs_json, &at);
}

int zorch__cache_append_lines(zorch__cache *c, const char *lines, size_t len) {
  if (!c) return zorch__error_set(ZORCH_EINVALID, "zorch__cache_append_lines: cache is NULL");
  /* entries no lookup of this handle needs: the journal serialises appends */
  return zorch__journal_append_lines(c->j, lines, len);
}

static int cache_write(zorch__cache *c, const char *key, const char *outputs_json, bool remember) {
  if (!c || !key || !*key || !outputs_json)
    return zorch__error_set(ZORCH_EINVALID, "zorch__cache_put: invalid argument");
  zorch__buf line = ZORCH__BUF_INIT;
  size_t ostart = 0;
  int rc = entry_line(&line, key, outputs_json, &ostart);
  if (rc) {
    zorch__buf_free(&line);
    return zorch__error_prefix("cache '%s'", c->path);
  }
  if (!remember) {
    rc = zorch__journal_append_lines(c->j, line.data, line.len);
    zorch__buf_free(&line);
    return rc;
  }
  /* the outputs text: up to the closing }\n */
  size_t klen = strlen(key);
  pthread_mutex_lock(&c->mu);
  cache_block *b = block_new(c, key, klen, line.data + ostart, line.len - 2 - ostart);
  if (!b) {
    rc = zorch__error_oom();
  } else if (!(rc = table_put(&c->map, b->s, klen, b->s + klen + 1))) {
    /* Under the mutex, so that the file's order of a key's lines is the map's. */
    rc = zorch__journal_append_lines(c->j, line.data, line.len);
  }
  pthread_mutex_unlock(&c->mu);
  zorch__buf_free(&line);
  return rc;
}

int zorch__cache_put(zorch__cache *c, const char *key, const char *outputs_json) {
  return cache_write(c, key, outputs_json, true);
}

int zorch__cache_append(zorch__cache *c, const char *key, const char *outputs_json) {
  return cache_write(c, key, outputs_json, false);
}

int zorch__cache_close(zorch__cache *c) {
  if (!c) return ZORCH_OK;
  int rc = zorch__journal_close(c->j);
  pthread_mutex_destroy(&c->mu);
  free(c->map.slots);
  for (cache_block *b = c->blocks, *n; b; b = n) {
    n = b->next;
    free(b);
  }
  if (c->data_map)
    munmap(c->data, c->data_map);
  else
    free(c->data);
  free(c->path);
  free(c->pipeline);
  free(c);
  return rc;
}

/* ---- cache keys ------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void zorch__cache_key(const zorch__plan *plan, uint32_t i, const zorch__step_rec *recs,
                      char out[ZORCH__DIGEST_HEX]) {
  zorch__buf b = ZORCH__BUF_INIT;
  zorch__cache_key_with(&b, plan, i, recs, out);
  zorch__buf_free(&b);
}

void zorch__cache_key_with(zorch__buf *scratch, const zorch__plan *plan, uint32_t i,
                           const zorch__step_rec *recs, char out[ZORCH__DIGEST_HEX]) {
  const zorch__pstep *s = &plan->steps[i];
  zorch__buf b = *scratch;
  b.len = 0;
  /* the fixed part in one go (this is made for every step) */
  size_t lp = strlen(plan->pipeline), ln = strlen(s->name), lv = strlen(s->version);
  if (zorch__buf_grow(&b, 64 + lp + ln + lv) == ZORCH_OK) {
    char *p = b.data;
    p = ZORCH__PUT_LIT(p, "zorch-cache-1\npipeline=");
    memcpy(p, plan->pipeline, lp);
    p = ZORCH__PUT_LIT(p + lp, "\nstep=");
    memcpy(p, s->name, ln);
    p += ln;
    if (s->kind == ZORCH__STEP_COMMAND) p = ZORCH__PUT_LIT(p, "\nkind=1\nversion=");
    else p = ZORCH__PUT_LIT(p, "\nkind=0\nversion=");
    memcpy(p, s->version, lv);
    p += lv;
    *p++ = '\n';
    *p = '\0';
    b.len = (size_t)(p - b.data);
  }
  if (s->argv)
    for (size_t a = 0; s->argv[a]; a++) {
      zorch__buf_puts(&b, "arg=");
      zorch__buf_put(&b, s->argv[a], strlen(s->argv[a]) + 1);
    }
  zorch__buf_cat(&b, "\nparams=", s->params_canon ? s->params_canon : "{}", "\n", NULL);
  size_t ne = 0;
  while (s->env && s->env[ne]) ne++;
  if (ne) {
    const char **env = malloc(ne * sizeof *env);
    if (env) {
      memcpy(env, s->env, ne * sizeof *env);
      qsort(env, ne, sizeof *env, cmp_str);
      for (size_t k = 0; k < ne; k++) {
        zorch__buf_puts(&b, "env=");
        zorch__buf_put(&b, env[k], strlen(env[k]) + 1);
      }
      free(env);
    }
  }
  for (uint32_t k = 0; k < s->n_outputs; k++) zorch__buf_cat(&b, "out=", s->outputs[k], "\n", NULL);
  /* inputs in name order */
  uint32_t ni = s->n_inputs;
  const zorch__pin *few[8];
  const zorch__pin **ins = ni <= 8 ? few : malloc(ni * sizeof *ins);
  for (uint32_t k = 0; ins && k < ni; k++) ins[k] = &s->inputs[k];
  for (uint32_t a = 1; ins && a < ni; a++) /* insertion sort: inputs are few */
    for (uint32_t c = a; c > 0 && strcmp(ins[c - 1]->name, ins[c]->name) > 0; c--) {
      const zorch__pin *t = ins[c];
      ins[c] = ins[c - 1];
      ins[c - 1] = t;
    }
  for (uint32_t k = 0; ins && k < ni; k++)
    zorch__buf_cat(&b, "in=", ins[k]->name, ":", recs[ins[k]->step].outputs[ins[k]->output].digest,
                   "\n", NULL);
  if (ins != few) free(ins);
  zorch__sha256_hex(b.data ? b.data : "", b.len, out);
  *scratch = b;
}
