/* zorch — step records: the recorded state of each step of a run (steprec.c). */
#ifndef ZORCH_STEPREC_H
#define ZORCH_STEPREC_H

#include "plan.h"
#include "store.h"

/** One output of a step as recorded. */
typedef struct zorch__output_rec {
  const char *name;                 /* borrowed from the plan */
  char digest[ZORCH__DIGEST_HEX];
  uint64_t size;
  bool is_dir;
  bool set;
} zorch__output_rec;

/** The recorded state of one step. */
typedef struct zorch__step_rec {
  int status;                       /* zorch_status */
  uint32_t attempts;
  double started, finished;
  int exit_code;                    /* -1 when not a command or not exited */
  char *error;                      /* malloc'd or NULL */
  char *cache_key;                  /* ZORCH__DIGEST_HEX bytes in the records' key block, "" when
                                     * none; NULL in a run that makes no cache keys (ephemeral
                                     * with the cache off): 65 bytes a step it need not touch */
  zorch__output_rec *outputs;       /* plan->steps[i].n_outputs entries */
} zorch__step_rec;

/** Append the JSON record line of step `i` to `b` (no newline). */
int zorch__step_rec_json(zorch__buf *b, const zorch__plan *plan, uint32_t i,
                         const zorch__step_rec *r);

/** Apply one journal/step-record JSON line to the records (by step name). */
int zorch__step_rec_apply(const zorch__plan *plan, zorch__step_rec *recs, const char *line,
                          size_t len);

/** Write step i's record file (runs/<run id>/steps/<step>.json, durably),
 *  as the step entrypoint records a step it runs. */
int zorch__step_rec_write(zorch__store *st, const zorch__plan *plan, uint32_t i,
                          const zorch__step_rec *r);

/** Apply the records a run has so far: its journal (journal.jsonl), then the
 *  per-step record files (steps/<step>.json) under `run_dir`. */
int zorch__step_recs_load(const zorch__plan *plan, zorch__step_rec *recs, const char *run_dir);

/** The outputs of step i as the JSON array a cache entry holds.  malloc'd. */
char *zorch__outputs_json(const zorch__plan *plan, uint32_t i, const zorch__step_rec *r);
/** The same into `out` (its contents replaced; the buffer is reused). */
int zorch__outputs_json_to(zorch__buf *out, const zorch__plan *plan, uint32_t i,
                           const zorch__step_rec *r);

/** Free the heap parts of n records and the array itself. */
void zorch__step_recs_free(zorch__step_rec *recs, uint32_t n);
/** Allocate n records with output slots matching the plan. */
zorch__step_rec *zorch__step_recs_new(const zorch__plan *plan);

/* The parts of zorch__step_recs_new(), for a caller that sets up a large
 * run's records in parts at once (the executor): */
/** Output slots of steps [lo, hi). */
size_t zorch__step_recs_count_outputs(const zorch__plan *plan, uint32_t lo, uint32_t hi);
/** One block for n records, one for every output slot (*outs_out) and, with
 *  with_keys, one for the cache keys (*keys_out, else NULL); the records are
 *  not initialised (zorch__step_recs_init).  NULL on OOM; free with
 *  zorch__step_recs_free(). */
zorch__step_rec *zorch__step_recs_alloc(uint32_t n, size_t total_out, bool with_keys,
                                        zorch__output_rec **outs_out, char **keys_out);
/** Initialise the records of steps [lo, hi), whose output slots start at
 *  outs + o (keys: the key block, or NULL). */
void zorch__step_recs_init(const zorch__plan *plan, zorch__step_rec *recs, zorch__output_rec *outs,
                           char *keys, uint32_t lo, uint32_t hi, size_t o);

#endif /* ZORCH_STEPREC_H */
