/* zorch — string-keyed open-addressing hash map (linear probing). */
#include "map.h"

typedef struct {
  const char *key;
  void *value;
  uint64_t hash;
} slot;

struct zorch__map {
  slot *slots;
  size_t cap; /* power of two */
  size_t count;
};

uint64_t zorch__hash_str(const char *s) {
  /* FNV-1a 64 */
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h ? h : 1;
}

zorch__map *zorch__map_new(size_t hint) {
  zorch__map *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  size_t cap = 16;
  while (cap < hint * 2) cap <<= 1;
  m->slots = zorch__big_calloc(cap, sizeof *m->slots);
  if (!m->slots) {
    free(m);
    return NULL;
  }
  m->cap = cap;
  return m;
}

void zorch__map_free(zorch__map *m) {
  if (!m) return;
  zorch__big_free(m->slots);
  free(m);
}

static int grow(zorch__map *m) {
  size_t ncap = m->cap * 2;
  slot *ns = zorch__big_calloc(ncap, sizeof *ns);
  if (!ns) return zorch__error_oom();
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->slots[i].key) continue;
    size_t j = m->slots[i].hash & (ncap - 1);
    while (ns[j].key) j = (j + 1) & (ncap - 1);
    ns[j] = m->slots[i];
  }
  zorch__big_free(m->slots);
  m->slots = ns;
  m->cap = ncap;
  return ZORCH_OK;
}

int zorch__map_put(zorch__map *m, const char *key, void *value) {
  if ((m->count + 1) * 4 > m->cap * 3 && grow(m) != ZORCH_OK) return ZORCH_ENOMEM;
  uint64_t h = zorch__hash_str(key);
  size_t j = h & (m->cap - 1);
  while (m->slots[j].key) {
    if (m->slots[j].hash == h && strcmp(m->slots[j].key, key) == 0) {
      m->slots[j].key = key;
      m->slots[j].value = value;
      return ZORCH_OK;
    }
    j = (j + 1) & (m->cap - 1);
  }
  m->slots[j].key = key;
  m->slots[j].value = value;
  m->slots[j].hash = h;
  m->count++;
  return ZORCH_OK;
}

void *zorch__map_find(const zorch__map *m, const char *key, const char **stored) {
  *stored = NULL;
  if (!m) return NULL;
  uint64_t h = zorch__hash_str(key);
  size_t j = h & (m->cap - 1);
  while (m->slots[j].key) {
    if (m->slots[j].hash == h && strcmp(m->slots[j].key, key) == 0) {
      *stored = m->slots[j].key;
      return m->slots[j].value;
    }
    j = (j + 1) & (m->cap - 1);
  }
  return NULL;
}

void *zorch__map_get(const zorch__map *m, const char *key) {
  const char *stored;
  return zorch__map_find(m, key, &stored);
}

size_t zorch__map_count(const zorch__map *m) { return m ? m->count : 0; }

void *zorch__map_put_new(zorch__map *m, const char *key, void *value, int *rc) {
  *rc = ZORCH_OK;
  if ((m->count + 1) * 4 > m->cap * 3 && grow(m) != ZORCH_OK) {
    *rc = ZORCH_ENOMEM;
    return NULL;
  }
  uint64_t h = zorch__hash_str(key);
  size_t j = h & (m->cap - 1);
  while (m->slots[j].key) {
    if (m->slots[j].hash == h && strcmp(m->slots[j].key, key) == 0) return m->slots[j].value;
    j = (j + 1) & (m->cap - 1);
  }
  m->slots[j].key = key;
  m->slots[j].value = value;
  m->slots[j].hash = h;
  m->count++;
  return NULL;
}

