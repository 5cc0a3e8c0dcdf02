/* zorch — cache keys: what names a step's results in the cache index
 * (cache.c; the index itself is declared in store.h).  A key hashes the
 * pipeline, the step's definition and its inputs' digests. */
#ifndef ZORCH_CACHE_H
#define ZORCH_CACHE_H

#include "steprec.h"

/** The cache key of step i given its inputs' digests.  out: 64 hex. */
void zorch__cache_key(const zorch__plan *plan, uint32_t i, const zorch__step_rec *recs,
                      char out[ZORCH__DIGEST_HEX]);
/** The same, with `scratch` as the buffer for the hashed text (its contents
 *  are replaced; reusing one buffer saves an allocation per key). */
void zorch__cache_key_with(zorch__buf *scratch, const zorch__plan *plan, uint32_t i,
                           const zorch__step_rec *recs, char out[ZORCH__DIGEST_HEX]);

#endif /* ZORCH_CACHE_H */
