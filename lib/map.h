/* zorch — a string-keyed open-addressing hash map.  Keys are borrowed: they
 * must outlive the map.  Not thread-safe. */
#ifndef ZORCH_MAP_H
#define ZORCH_MAP_H

#include "internal.h"

typedef struct zorch__map zorch__map;

zorch__map *zorch__map_new(size_t capacity_hint);
void zorch__map_free(zorch__map *m);
/** Insert or replace.  ZORCH_ENOMEM on failure. */
int zorch__map_put(zorch__map *m, const char *key, void *value);
/** Insert unless the key is there already (one probe): NULL when inserted,
 *  else the value already there (nothing changed).  *rc: ZORCH_ENOMEM when
 *  the map could not grow (then NULL and nothing inserted). */
void *zorch__map_put_new(zorch__map *m, const char *key, void *value, int *rc);
/** The value, or NULL when absent. */
void *zorch__map_get(const zorch__map *m, const char *key);
/** The value, or NULL when absent; *stored: the map's own key for it. */
void *zorch__map_find(const zorch__map *m, const char *key, const char **stored);
size_t zorch__map_count(const zorch__map *m);
uint64_t zorch__hash_str(const char *s);

#endif /* ZORCH_MAP_H */
