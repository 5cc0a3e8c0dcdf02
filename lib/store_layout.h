/* zorch — the layout of the artifact store: every key is made here.
 *
 *   artifacts/<first 2 hex digits>/<sha256>  an artifact: the bytes of a file;
 *                                            for a directory, a tree on a local
 *                                            store, its manifest elsewhere
 *   tmp/                                     writes in progress (local stores)
 *   runs/<run-id>/run.json                   the run record
 *   runs/<run-id>/deployment.json            the deployment (versioned JSON IR)
 *   runs/<run-id>/journal.jsonl              step records of a run, append-only
 *                                            (local stores)
 *   runs/<run-id>/steps/<step>.json          one step's record (remote steps;
 *                                            every step on an object store)
 *   runs/<run-id>/logs/<step>.log            a step's log
 *   schedules/<name>/deployment.json         the template of a schedule's runs
 *   cache/<pipeline>.jsonl                   the cache index, append-only
 *                                            (local stores)
 *   cache/<pipeline>/<key>.json              one cache entry (object stores)
 *
 * A key is relative and '/'-separated.  Run ids, step, pipeline and
 * schedule names are checked names (no '/'), so a key never escapes its
 * place.  Functions that return char * return a new string (free()), or
 * NULL when out of memory.
 */
#ifndef ZORCH_STORE_LAYOUT_H
#define ZORCH_STORE_LAYOUT_H

#include "internal.h"

/* "artifacts/" + 2 + "/" + 64 + NUL */
#define ZORCH__LAYOUT_ARTIFACT_MAX (10 + 2 + 1 + 64 + 1)

/** The key of an artifact, into `out` (digest: 64 hex digits). */
void zorch__layout_artifact(char out[ZORCH__LAYOUT_ARTIFACT_MAX], const char *digest);
/** The directory of an artifact's key ("artifacts/<2 hex>"), into `out`. */
void zorch__layout_artifact_shard(char out[ZORCH__LAYOUT_ARTIFACT_MAX], const char *digest);

/** Top-level directories of a local store, made when it is opened
 *  (NULL-terminated): artifacts, tmp, runs, cache. */
extern const char *const zorch__layout_local_dirs[];
extern const char zorch__layout_artifacts[]; /* "artifacts" */
extern const char zorch__layout_tmp[];       /* "tmp" */

/** "runs/": the prefix every run lives under. */
extern const char zorch__layout_runs[];
/** "runs/<id>": the directory of a run (on a local store). */
char *zorch__layout_run(const char *run_id);
char *zorch__layout_run_record(const char *run_id);
char *zorch__layout_deployment(const char *run_id);
/** "deployment.json": a deployment document's file name, by itself. */
extern const char zorch__layout_deployment_file[];
char *zorch__layout_journal(const char *run_id);
char *zorch__layout_step_record(const char *run_id, const char *step);
/** "runs/<id>/steps/": the prefix of a run's step records. */
char *zorch__layout_step_records(const char *run_id);
char *zorch__layout_step_log(const char *run_id, const char *step);
/** "runs/<id>/logs": the directory of a run's logs (on a local store). */
char *zorch__layout_logs(const char *run_id);
/** "<logs_dir>/<step>.log": a step's log in a local directory of logs. */
char *zorch__layout_step_log_in(const char *logs_dir, const char *step);
char *zorch__layout_schedule_deployment(const char *name);
char *zorch__layout_cache_index(const char *pipeline);
char *zorch__layout_cache_entry(const char *pipeline, const char *key);
/** "cache/<pipeline>/": the prefix of a pipeline's cache entries. */
char *zorch__layout_cache_entries(const char *pipeline);

/** The run id of a key under zorch__layout_runs ("runs/<id>/..." or
 *  "runs/<id>/"), copied into `out` (`n` bytes); false when `key` is not
 *  one or the id does not fit. */
bool zorch__layout_run_of(const char *key, char *out, size_t n);
/** Is `key` a run's record ("runs/<id>/run.json")? */
bool zorch__layout_is_run_record(const char *key);
/** Is `key` a step record ("runs/<id>/steps/<step>.json")? */
bool zorch__layout_is_step_record(const char *key);
/** The cache key of a cache entry's key ("cache/<pipeline>/<key>.json"),
 *  into `out` (`n` bytes); false when it is not one. */
bool zorch__layout_cache_key_of(const char *key, char *out, size_t n);

#endif /* ZORCH_STORE_LAYOUT_H */
