/* zorch — running pipelines and reading runs back.
 *
 * A zorch_run is either a run this process started (zorch_run_start) or a
 * run loaded from the artifact store (zorch_run_open).  Its accessors show
 * the state as of its last zorch_run_wait() or zorch_run_refresh().
 * Thread-safety: a run handle is used by one thread at a time, except
 * zorch_run_cancel(), which may be called from any thread and from a signal
 * handler.
 */
#ifndef ZORCH_RUN_H
#define ZORCH_RUN_H

#include "common.h"
#include "types.h"
#include "client.h"
#include "pipeline.h"

ZORCH_BEGIN_DECLS

typedef struct zorch_run zorch_run;
typedef struct zorch_run_list zorch_run_list;

/* zorch_status (ZORCH_STATUS_*) is defined in types.h. */

/** "pending", "running", ... ; "unknown" for other values. Static. */
ZORCH_API const char *zorch_status_name(int status);

/** What happens to the rest of the run when a step fails. */
typedef enum zorch_failure_mode {
  /** Skip the failed step's downstream steps, let independent ones finish (default). */
  ZORCH_CONTINUE_ON_FAILURE = 0,
  /** Start no new step; let running steps finish. */
  ZORCH_STOP_ON_FAILURE = 1,
  /** Stop running steps at once and start no new one. */
  ZORCH_FAIL_FAST = 2
} zorch_failure_mode;

/** Flags for zorch_run_options.flags. */
enum {
  /** Ignore the cache: run every step (results are still recorded in it,
   *  except by an ephemeral run). */
  ZORCH_RUN_NO_CACHE = 1u << 0,
  /** Ephemeral mode: keep run and step records in memory only (no journal,
   *  no record files); artifacts are still stored.  With ZORCH_RUN_NO_CACHE
   *  as well, the run neither reads nor writes the cache index and computes
   *  no cache keys.  For benchmarks and throw-away runs; such a run cannot
   *  be opened later.  On the local flavor it is compiled straight to the
   *  executor's plan: it has no deployment document (see
   *  zorch_run_deployment()).  Its steps' start times, and its function
   *  steps' end times, come from the system's coarse clock, which costs a
   *  step far less to read: zorch_run_step_started_at() and _finished_at()
   *  are then good to a few milliseconds. */
  ZORCH_RUN_EPHEMERAL = 1u << 1,
  /** While zorch_run_wait() blocks, turn SIGINT into zorch_run_cancel(). */
  ZORCH_RUN_HANDLE_SIGINT = 1u << 2,
  /** zorch_run_start_deployment(): start the stored deployment as a new
   *  run (new id and name) instead of continuing the run it names. */
  ZORCH_RUN_NEW_ID = 1u << 3
};

/** Called when a step changes status.  Calls are serialised (never two at
 *  once) but come from an executor thread; do not call zorch from it.  A
 *  step is reported running only after every step it depends on was
 *  reported completed or cached. */
typedef void (*zorch_progress_cb)(const char *run_id, const char *step, int status,
                                  void *payload);

#define ZORCH_RUN_OPTIONS_VERSION 1

/** Options for zorch_run_start().  Only append fields. */
typedef struct zorch_run_options {
  unsigned int version;        /**< ZORCH_RUN_OPTIONS_VERSION */
  const char *run_name;        /**< NULL: "<pipeline>-<utc time>-<random>" */
  const char *stack;           /**< NULL: the active stack */
  const char *params_json;     /**< JSON object overriding pipeline params, or NULL */
  int failure_mode;            /**< zorch_failure_mode */
  uint32_t max_parallel;       /**< 0: the orchestrator's setting, else the number of cores */
  uint32_t flags;              /**< ZORCH_RUN_* flags */
  zorch_progress_cb progress_cb;
  void *progress_payload;
} zorch_run_options;

#define ZORCH_RUN_OPTIONS_INIT { ZORCH_RUN_OPTIONS_VERSION, NULL, NULL, NULL, 0, 0, 0, NULL, NULL }

ZORCH_API int zorch_run_options_init(zorch_run_options *opts, unsigned int version);

/** Validate and compile `pipeline` to a deployment and submit it to the
 *  stack's orchestrator.  Returns once the run is started; the pipeline may
 *  be freed afterwards only when all its steps are command steps (function
 *  steps' payloads are used until the run ends).
 *  Ownership: *out is new; free with zorch_run_free(). */
ZORCH_API int zorch_run_start(zorch_run **out, zorch_client *client,
                              const zorch_pipeline *pipeline, const zorch_run_options *opts);

/** zorch_run_start() then zorch_run_wait(run, -1).  *out is set whenever the
 *  run was started, even if it failed, so it can be inspected. */
ZORCH_API int zorch_pipeline_run(zorch_run **out, zorch_client *client,
                                 const zorch_pipeline *pipeline, const zorch_run_options *opts);

/** Start a run from a deployment document stored earlier (what an
 *  orchestrator pod or a scheduled job does): the run it names continues
 *  under the same id, or, with ZORCH_RUN_NEW_ID in opts->flags, a new run
 *  starts from it.  The stack (opts->stack or the active one) must keep its
 *  artifact store where the deployment says.  Function steps run only on a
 *  flavor that starts the program elsewhere, not on `local`. */
ZORCH_API int zorch_run_start_deployment(zorch_run **out, zorch_client *client,
                                         const char *deployment_path, const zorch_run_options *opts);

/** Run `pipeline` on a cron schedule (five fields, e.g. "0 3 * * *", or
 *  @daily ...) on the stack's orchestrator, where the flavor supports it
 *  (ZORCH_ENOTSUPPORTED otherwise).  The compiled deployment is stored as
 *  schedules/<name>/deployment.json; opts->run_name names the schedule.
 *  Ownership: *out_id is new (the schedule's id); free with zorch_free(). */
ZORCH_API int zorch_schedule_create(char **out_id, zorch_client *client, const zorch_pipeline *pipeline,
                                    const char *cron, const zorch_run_options *opts);

/** The schedules of a stack's orchestrator (NULL: the active stack) as a
 *  JSON array of {"id", "cron", "pipeline", "created", "deployment"}.
 *  Ownership: *out_json is new; free with zorch_free(). */
ZORCH_API int zorch_schedule_list(char **out_json, zorch_client *client, const char *stack);

/** Delete a schedule by id. */
ZORCH_API int zorch_schedule_delete(zorch_client *client, const char *stack, const char *id);

/** Wait for the run to end, at most `timeout_ms` milliseconds (-1: no limit).
 *  Returns ZORCH_OK when it completed, ZORCH_ESTEP when steps failed
 *  (the message names them), ZORCH_ECANCELLED when it was stopped,
 *  ZORCH_ETIMEOUT when it is still running. */
ZORCH_API int zorch_run_wait(zorch_run *run, int timeout_ms);

/** Ask the run to stop: running steps are killed, no new step starts, and the
 *  run is recorded as stopped.  Returns at once.  Async-signal-safe for a run
 *  started by this process. */
ZORCH_API int zorch_run_cancel(zorch_run *run);

/** Free a run handle.  A run still running is cancelled and waited for
 *  first, except on flavors that run detached.  NULL is a no-op. */
ZORCH_API void zorch_run_free(zorch_run *run);

/** Load a run from the client's artifact stores by id or by name. */
ZORCH_API int zorch_run_open(zorch_run **out, zorch_client *client, const char *id_or_name);

/** Re-read the run's state (from the live executor or from the store). */
ZORCH_API int zorch_run_refresh(zorch_run *run);

/* ---- run accessors: borrowed strings, valid until the next refresh/wait/free */

ZORCH_API const char *zorch_run_id(const zorch_run *run);
ZORCH_API const char *zorch_run_name(const zorch_run *run);
ZORCH_API const char *zorch_run_pipeline_name(const zorch_run *run);
ZORCH_API const char *zorch_run_stack(const zorch_run *run);
ZORCH_API int zorch_run_status(const zorch_run *run);
/** Unix time in seconds, 0 when not started/finished. */
ZORCH_API double zorch_run_started_at(const zorch_run *run);
ZORCH_API double zorch_run_finished_at(const zorch_run *run);
/** Run metadata by key: "orchestrator", "orchestrator_run_id",
 *  "orchestrator_url" (where the flavor has one).  NULL when unset. */
ZORCH_API const char *zorch_run_metadata(const zorch_run *run, const char *key);
/** The run's deployment document (JSON).  NULL for an ephemeral run on the
 *  local flavor (ZORCH_RUN_EPHEMERAL), which is never written as one. */
ZORCH_API const char *zorch_run_deployment(const zorch_run *run);

/* ---- per-step results, by index 0..count-1 in topological order ------ */

ZORCH_API size_t zorch_run_step_count(const zorch_run *run);
/** Index of step `name`; ZORCH_ENOTFOUND if the run has none. */
ZORCH_API int zorch_run_step_index(const zorch_run *run, const char *name, size_t *out);
ZORCH_API const char *zorch_run_step_name(const zorch_run *run, size_t step);
ZORCH_API int zorch_run_step_status(const zorch_run *run, size_t step);
ZORCH_API double zorch_run_step_started_at(const zorch_run *run, size_t step);
ZORCH_API double zorch_run_step_finished_at(const zorch_run *run, size_t step);
ZORCH_API uint32_t zorch_run_step_attempts(const zorch_run *run, size_t step);
/** Exit status of a command step's last attempt (-1 when not applicable);
 *  128+N when it was killed by signal N. */
ZORCH_API int zorch_run_step_exit_code(const zorch_run *run, size_t step);
/** Why the step failed or was skipped, or NULL. */
ZORCH_API const char *zorch_run_step_error(const zorch_run *run, size_t step);
/** The step's cache key (64 hex digits), or NULL when caching was off. */
ZORCH_API const char *zorch_run_step_cache_key(const zorch_run *run, size_t step);

ZORCH_API size_t zorch_run_step_output_count(const zorch_run *run, size_t step);
ZORCH_API const char *zorch_run_step_output_name(const zorch_run *run, size_t step, size_t output);
/** SHA-256 of the artifact as 64 hex digits. */
ZORCH_API const char *zorch_run_step_output_digest(const zorch_run *run, size_t step,
                                                   size_t output);
ZORCH_API uint64_t zorch_run_step_output_size(const zorch_run *run, size_t step, size_t output);
/** "file" or "dir". */
ZORCH_API const char *zorch_run_step_output_kind(const zorch_run *run, size_t step, size_t output);

/** Read a file output of a step whole.  Ownership: *data is new (one extra
 *  NUL byte follows it); free with zorch_free(). */
ZORCH_API int zorch_run_read_output(void **data, size_t *size, const zorch_run *run,
                                    const char *step, const char *output);

/** The local path of an output in the artifact store.  Ownership: new,
 *  free with zorch_free(). */
ZORCH_API int zorch_run_output_path(char **path, const zorch_run *run, const char *step,
                                    const char *output);

/** The step's log (stdout and stderr of a command step, zorch_ctx_log()
 *  lines of a function step, and zorch's own lines).  Ownership: *text is
 *  new, NUL-terminated; free with zorch_free(). */
ZORCH_API int zorch_run_read_log(char **text, size_t *size, const zorch_run *run,
                                 const char *step);

/* ---- listing runs ------------------------------------------------------ */

/** Load the list of runs in the active stack's artifact store, newest first.
 *  Reads run records only, never an artifact.  `pipeline` filters by
 *  pipeline name (NULL for all). */
ZORCH_API int zorch_run_list_load(zorch_run_list **out, zorch_client *client,
                                  const char *pipeline);
ZORCH_API size_t zorch_run_list_count(const zorch_run_list *list);
ZORCH_API const char *zorch_run_list_id(const zorch_run_list *list, size_t i);
ZORCH_API const char *zorch_run_list_name(const zorch_run_list *list, size_t i);
ZORCH_API const char *zorch_run_list_pipeline(const zorch_run_list *list, size_t i);
ZORCH_API int zorch_run_list_status(const zorch_run_list *list, size_t i);
ZORCH_API double zorch_run_list_started_at(const zorch_run_list *list, size_t i);
ZORCH_API double zorch_run_list_finished_at(const zorch_run_list *list, size_t i);
ZORCH_API void zorch_run_list_free(zorch_run_list *list);

ZORCH_END_DECLS

#endif /* ZORCH_RUN_H */
