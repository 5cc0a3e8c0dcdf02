/* zorch plugin kit — the remote-flavor frame: what every flavor that runs
 * steps somewhere else needs besides its API calls.
 *
 *  - A run frame (zr_run) made from the submission: run id and name,
 *    pipeline, the orchestrator config parsed, the store (its path when it
 *    is a local directory, its URI), the zorch command, and the executor
 *    options ({"max_parallel": N} from the config key the flavor names).
 *    Embed it as the FIRST member of the flavor's run handle.
 *  - An attempt table: add one per launch, find by id, finish exactly once
 *    (the first zr_finish reports to the host, later ones do nothing),
 *    stop, and reaping of finished attempts, with an optional thread per
 *    attempt for flavors whose API blocks while a step runs.
 *  - One poller (a thread that calls the flavor's poll or watch round) with
 *    full-jitter backoff after failures, a "lost the API for N s" window
 *    after which the running attempts (or the run) fail with the last
 *    error, cancel, and a pending/queued timeout.
 *  - zr_lro_wait(): wait for a long-running operation with a poll callback
 *    under the same backoff and deadline rules (Google operations, Azure
 *    async operations, AWS Describe* polling).
 *  - Host-owned step logs: zr_log() hands an attempt's output to the host
 *    (host v3 executor_step_log), or appends it to the step's log file for
 *    an older host.
 *  - For flavors that hand a whole run to an engine: zr_run_end() records
 *    the run's end (the first one wins) and zr_run_wait() reports it.
 *
 * Concurrency: ONE lock per run, zr_run.lock (zr_lock/zr_unlock).  It
 * guards the attempt table and every field marked (lock) below, of the run
 * and of its attempts, and the flavor's own mutable fields of attempt data
 * too.  The kit never holds it while it calls the host, the network or a
 * flavor callback, and a flavor must not either.  An attempt is reference
 * counted: the table holds one reference until the attempt is finished and
 * reaped, zr_attempt_add/find/stop hand the caller one more, which the
 * caller drops with zr_attempt_unref; so a pointer a thread holds stays
 * valid however the attempt ends meanwhile.  Fields marked (const) are
 * written before the attempt is visible and never again: read them freely.
 *
 * Errors follow the kit's convention (zkit.h).
 */
#ifndef ZORCH_ZREMOTE_H
#define ZORCH_ZREMOTE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "zdeploy.h"
#include "zkit.h"

typedef struct zr_run zr_run;
typedef struct zr_attempt zr_attempt;
typedef struct zr_poller zr_poller;

/** Results of poll callbacks besides ZORCH_OK ("answered, not done"). */
enum {
  ZR_DONE = 1,  /**< finished: stop polling */
  ZR_AGAIN = 2, /**< the API could not be asked this time (its message in zkit_error_message()) */
};

/** How long something has waited to start, and why (for a timeout's message). */
typedef struct zr_pending {
  double since;   /**< zkit_now() when it began waiting */
  bool running;   /**< it started: no pending timeout any more */
  char why[512];  /**< the backend's last reason ("Unschedulable: 0/3 nodes ..."), "" if none */
} zr_pending;

/** zr_finish flags. */
enum {
  /** It will never run (it could not start, or waited too long): the
   *  flavor's on_finish should remove what is left of it. */
  ZR_FINISH_DISCARD = 1u << 0,
};

struct zr_attempt {
  zr_run *run;           /**< (const) */
  uint64_t id;           /**< (const) the host's attempt id */
  void *executor;        /**< (const) */
  uint32_t number;       /**< (const) 1 for the first attempt of the step */
  char *step;            /**< (const) the step's name */
  void *data;            /**< (const pointer) the flavor's; its mutable fields are (lock) */
  volatile int abort;    /**< set when the run is freed: end blocking streams */
  char *remote;          /**< (lock) the flavor's name for what runs it: a pod, a container */
  bool stopping;         /**< (lock) zr_attempt_stop was called */
  bool done;             /**< (lock) finished (reported, or abandoned) */
  zr_pending pending;    /**< (lock) */
  /* kit-private below */
  char *log_path;
  void (*free_data)(void *);
  int refs, log_fd;
  bool in_table, has_thread, thread_exited;
  pthread_t thread;
  void (*thread_main)(zr_attempt *);
  zr_attempt *next;
};

/** What a flavor tells the frame about itself. */
typedef struct zr_run_options {
  /** Start one attempt the host asks for (through the kit's step launcher,
   *  zr_run_start_remote): `set` holds the step's settings by the rule and
   *  its image (never NULL when needs_image).  Return quickly; add the
   *  attempt to the table (zr_attempt_add) and finish it once it ended.  A
   *  non-zero return (with an error) fails the attempt at once. */
  int (*launch)(zr_run *r, const zorch_step_launch *L, const zdep_settings *set);
  /** Steps need an image (containers, pods): a step without one (by the
   *  rule, else zr_run.default_image) fails to launch with a clear message. */
  bool needs_image;
  const char *flavor;            /**< its name: messages, settings.flavor.<name> */
  /** The config key that bounds parallel steps ("max_parallel"); NULL: none. */
  const char *max_parallel_key;
  /** The config key of what every step's flavor settings go over (its pod
   *  settings, say); NULL: the whole config.  The config's "image" is the
   *  steps' default image (zdeploy.h, the settings rule). */
  const char *settings_base_key;
  /** Called once per attempt, by the first zr_finish, before the host hears
   *  of the end (outside the lock): copy the last logs, delete what is left
   *  (ZR_FINISH_DISCARD says it never ran).  May be NULL. */
  void (*on_finish)(zr_attempt *a, int exit_code, unsigned flags);
  /** The host asks to stop a launched attempt (zr_op_stop): stop what runs
   *  it.  `remote` is its remote name, NULL while it has none yet (then the
   *  flavor finds a->stopping set where it creates it).  May be NULL. */
  void (*on_stop)(zr_attempt *a, const char *remote);
} zr_run_options;

struct zr_run {
  const zorch_host *host;   /**< (const) */
  zorch_submission *sub;    /**< (const) NULL for schedule list/delete */
  const char *flavor;       /**< (const) */
  json_t *config;           /**< (const) the orchestrator config ({} when none) */
  char *run_id, *run_name, *pipeline; /**< (const) "" when the submission has none */
  char *deployment_path, *zorch_command; /**< (const) NULL when none */
  char *store_path;         /**< (const) the store's root when it is a local directory, else NULL */
  char *store_uri;          /**< (const) "file:///root", or the store's URI, or NULL */
  bool no_cache;            /**< (const) */
  const char *default_image; /**< the image of steps that name none, when the flavor has one (set before launches) */
  char exec_opts[64];       /**< (const) {"max_parallel":N} or {} */
  void *exec;               /**< the executor's handle (zr_run_start_remote) */
  atomic_int cancelled;     /**< zr_run_cancel was called */
  pthread_mutex_t lock;
  /* kit-private below */
  pthread_cond_t cond;
  zr_run_options opts;
  zr_attempt *attempts;     /* (lock) */
  zr_pending pending;       /* (lock) the run's own, for engines that queue whole runs */
  bool ended, reported;     /* (lock) */
  int end_status;           /* (lock) */
  char *end_message;        /* (lock) */
};

/* ---- the run frame -------------------------------------------------------------------------- */

/** Read the submission (NULL for operations without one, e.g. listing
 *  schedules) and `config_json` (the orchestrator config; NULL: the
 *  submission's).  On failure everything made is freed again. */
int zr_run_init(zr_run *r, const zorch_host *h, zorch_submission *sub, const char *config_json,
                const zr_run_options *o);

/** zr_run_init of a new handle of `size` bytes (the flavor's run struct,
 *  which starts with its zr_run), zeroed; free it with zr_run_free. */
int zr_run_new(void **out, size_t size, const zorch_host *h, zorch_submission *sub, const char *config_json,
               const zr_run_options *o);
/** zr_run_fini, then free the handle of zr_run_new (NULL-safe). */
void zr_run_free(zr_run *r);

/** Free what zr_run_init and the table hold: sets every attempt's abort
 *  flag, joins attempt threads, frees the attempts.  The executor must be
 *  released (zr_run_release) and the poller stopped first. */
void zr_run_fini(zr_run *r);

/** host->executor_start_remote with the frame's executor options and the
 *  kit's step launcher (zr_op_launch, zr_op_stop: the options' launch and
 *  on_stop); host version 2 or later, a clear ZORCH_EVERSION otherwise. */
int zr_run_start_remote(zr_run *r);

/** The flavor's wait: the executor's when there is one, else until
 *  zr_run_end, whose status it then reports (host->submission_set_status).
 *  ZORCH_OK when the run ended, ZORCH_ETIMEOUT while it goes on. */
int zr_run_wait(zr_run *r, int timeout_ms);

/** The flavor's cancel: flags the run (a poller's on_cancel acts on it) and
 *  cancels the executor.  Async-signal-safe. */
int zr_run_cancel(zr_run *r);

/** Release the executor (it waits for every launched attempt to end). */
void zr_run_release(zr_run *r);

/** Record the end of a run an engine drives (status ZORCH_STATUS_*); the
 *  first call wins.  Any thread. */
void zr_run_end(zr_run *r, int status, const char *fmt, ...) ZKIT_PRINTF(3, 4);
bool zr_run_ended(zr_run *r);

/** The run's own pending state (an engine that queues it): waiting since
 *  now, with a reason; or started. */
void zr_run_pending(zr_run *r, const char *fmt, ...) ZKIT_PRINTF(2, 3);
void zr_run_running(zr_run *r);

/** The run record of the submission (what `zorch run show --json` reads),
 *  from the host (host v3 submission_run_record).  *out new reference;
 *  ZORCH_ENOTFOUND when none was written. */
int zr_run_record(zr_run *r, json_t **out);

/** The effective settings of a launch for the flavor (zdeploy.h: the step's
 *  settings over the config's base; resources parsed; the image by the
 *  rule).  Free with zdep_settings_free. */
int zr_settings(zdep_settings *out, zr_run *r, const zorch_step_launch *L);

/** The submission's deployment as a view (zdeploy.h) with the same rule. */
int zr_deployment(zdep **out, zr_run *r);

/** Where a launched attempt reaches the store: the local directory to mount
 *  (NULL when the store is not one), the store's URI (NULL for a launch
 *  struct older than version 2), and the "K=V" settings the step needs for
 *  it (credential references, never secrets; an empty list when none). */
typedef struct zr_store {
  const char *path;
  const char *uri;
  const char *const *env;
} zr_store;
zr_store zr_launch_store(const zorch_step_launch *L);

/* ---- the attempt table ---------------------------------------------------------------------- */

void zr_lock(zr_run *r);
void zr_unlock(zr_run *r);

/** Add the attempt the host asks to launch (reaping finished ones first).
 *  data (may be NULL) is the flavor's, freed with free_data when the
 *  attempt is.  *out holds a reference for the caller. */
int zr_attempt_add(zr_attempt **out, zr_run *r, const zorch_step_launch *L, void *data,
                   void (*free_data)(void *));

/** The attempt with this id, with a reference; NULL when there is none (or
 *  it was reaped). */
zr_attempt *zr_attempt_find(zr_run *r, uint64_t id);

void zr_attempt_ref(zr_attempt *a);
void zr_attempt_unref(zr_attempt *a);

/** Finish an attempt: the first call for it runs on_finish and reports
 *  exit_code and the message (may be NULL) with host->executor_step_done;
 *  every later call does nothing.  Returns whether this call finished it.
 *  Any thread, without the lock. */
bool zr_finish(zr_attempt *a, int exit_code, unsigned flags, const char *fmt, ...) ZKIT_PRINTF(4, 5);

/** The launch that added `a` failed (it returns an error to the host): the
 *  attempt is done and is never reported. */
void zr_attempt_abandon(zr_attempt *a);

/** The host asks to stop an attempt: marks it stopping and returns it with
 *  a reference while it has not finished (the caller stops what runs it),
 *  else NULL. */
zr_attempt *zr_attempt_stop(zr_run *r, uint64_t id);

/** The kit's step launcher (its data is the run): launch parses the
 *  launch's settings (zr_settings), picks the image and calls the options'
 *  launch; stop marks the attempt (zr_attempt_stop) and calls on_stop. */
int zr_op_launch(void *run, const zorch_step_launch *L);
void zr_op_stop(void *run, void *executor, uint64_t attempt_id);

/** Finish every attempt that has not finished (code, flags, message). */
void zr_finish_all(zr_run *r, int exit_code, unsigned flags, const char *message);

/** Run main(a) on a thread of the attempt's own, which holds a reference
 *  until it returns; an attempt main() did not finish is finished with
 *  exit code 125.  The thread is joined when the attempt is reaped. */
int zr_attempt_thread(zr_attempt *a, void (*main)(zr_attempt *a));

/** Free finished attempts no one else holds (and join their threads). */
void zr_reap(zr_run *r);

/** The attempt's remote name (a malloc'd copy, NULL when none) / set it. */
char *zr_attempt_remote(zr_attempt *a);
void zr_attempt_set_remote(zr_attempt *a, const char *remote);

/** Was the attempt asked to stop (a->stopping, read under the lock)? */
bool zr_attempt_stopping(zr_attempt *a);

/** The attempt waits to start, with the backend's reason / it started. */
void zr_attempt_pending(zr_attempt *a, const char *fmt, ...) ZKIT_PRINTF(2, 3);
void zr_attempt_running(zr_attempt *a);

/** Hand bytes the attempt printed to the host's step log (host v3), else
 *  append them to the step's log file (after a "--- zorch: attempt N ---"
 *  line for a retry).  Any thread; never fails the step. */
void zr_log(zr_attempt *a, const void *data, size_t len);

/* ---- the plugin ------------------------------------------------------------------------------- */

/** Register a flavor whose payload is the host table (host version 2 or
 *  later); a name another plugin took already is not an error of this one. */
int zr_plugin_add(const zorch_host *h, zorch_registrar *reg, const zorch_flavor_desc *d);

/** The orchestrator ops wait and cancel of a flavor whose run handle starts
 *  with its zr_run: zr_run_wait and zr_run_cancel. */
int zr_op_wait(void *run, int timeout_ms);
int zr_op_cancel(void *run);

/** An orchestrator flavor in one place: its ops (version, wait and cancel
 *  from the kit, then the flavor's own designated initializers:
 *  .check_config, .submit, .release, .schedule_*) and its descriptor
 *  (version 2: flags and the step settings schema), as the statics
 *  prefix_ops and prefix_flavor.  Register it with zr_plugin_add. */
#define ZR_ORCHESTRATOR_FLAVOR(prefix, name_, integration_, description_, config_schema_, step_schema_, flags_, \
                               ...)                                                                           \
  static const zorch_orchestrator_ops prefix##_ops = {.version = ZORCH_ORCHESTRATOR_OPS_VERSION,               \
                                                      .wait = zr_op_wait, .cancel = zr_op_cancel, __VA_ARGS__}; \
  static const zorch_flavor_desc prefix##_flavor = {                                                          \
      .version = ZORCH_FLAVOR_DESC_VERSION, .type = ZORCH_COMPONENT_ORCHESTRATOR, .name = (name_),             \
      .integration = (integration_), .description = (description_), .config_schema = (config_schema_),        \
      .ops = &prefix##_ops, .flags = (flags_), .step_settings_schema = (step_schema_)}

/** A plugin of one orchestrator flavor: ZR_ORCHESTRATOR_FLAVOR, an init
 *  that registers it with the host table as its payload (zr_plugin_add),
 *  and the exported entry point (ZORCH_PLUGIN_DEFINE).
 *
 *    ZR_ORCHESTRATOR_PLUGIN(k, "kubernetes", "1.1", "plugin description",
 *                           "kubernetes", "flavor description", config_schema,
 *                           step_settings_schema, ZORCH_FLAVOR_LOCAL_STORE,
 *                           .check_config = k_check_config, .submit = k_submit,
 *                           .release = k_release)
 */
#define ZR_ORCHESTRATOR_PLUGIN(prefix, name_, version_, plugin_description, integration_, flavor_description,  \
                               config_schema_, step_schema_, flags_, ...)                                     \
  ZR_ORCHESTRATOR_FLAVOR(prefix, name_, integration_, flavor_description, config_schema_, step_schema_, flags_, \
                         __VA_ARGS__);                                                                        \
  static int prefix##_init(const zorch_host *zr_host_, zorch_registrar *zr_reg_, void **zr_ctx_) {            \
    *zr_ctx_ = NULL;                                                                                          \
    return zr_plugin_add(zr_host_, zr_reg_, &prefix##_flavor);                                                \
  }                                                                                                           \
  ZORCH_PLUGIN_DEFINE(name_, version_, plugin_description, prefix##_init, NULL)

/* ---- the poller ------------------------------------------------------------------------------ */

typedef struct zr_poller_options {
  /** One round of asking the API: a list, a poll, or one watch stream that
   *  returns when the server ends it or *abort_flag is set.  ZORCH_OK when
   *  the API answered, ZR_DONE to stop polling, anything else when it could
   *  not be reached (zkit_error_message() says why). */
  int (*poll)(zr_run *r, void *ctx, volatile int *abort_flag);
  void *ctx;
  /** What to call the API in messages ("the Kubernetes API"). */
  const char *what;
  /** Pause after an answered round (0: none, a watch waits in its round). */
  double interval_s;
  /** Full-jitter backoff after failed rounds (0: 0.5 s and 10 s). */
  double backoff_base_s, backoff_cap_s;
  /** After this long without an answered round the running attempts fail
   *  (or the run ends as failed, when it has no executor) with "lost <what>
   *  for N s: <last error>" (0: 60 s). */
  double lost_after_s;
  /** Fail what stays pending longer than this (0: never). */
  double pending_timeout_s;
  /** Decide about an attempt (a == NULL: the run) pending for longer than
   *  pending_timeout_s: confirm with the backend, then zr_finish (or
   *  zr_run_end), or call zr_attempt_running when it did start after all.
   *  NULL: finish it with "step 'S' stayed pending for more than N s: why". */
  void (*pending_expired)(zr_run *r, zr_attempt *a, void *ctx);
  /** Once after zr_run_cancel, on the poller's thread (delete what runs). */
  void (*on_cancel)(zr_run *r, void *ctx);
} zr_poller_options;

int zr_poller_start(zr_poller **out, zr_run *r, const zr_poller_options *o);
/** Stop the poller and join its thread (NULL-safe). */
void zr_poller_stop(zr_poller *p);

/* ---- long-running operations -------------------------------------------------------------- */

typedef struct zr_lro_options {
  const char *what;        /**< "operation projects/p/operations/o", for messages */
  double base_s, cap_s;    /**< full-jitter backoff between polls (0: 1 s and 30 s) */
  double deadline_s;       /**< give up after this long (0: never) */
  double lost_after_s;     /**< failed polls for this long end the wait (0: 60 s) */
  volatile int *cancel;    /**< stop when set (may be NULL) */
} zr_lro_options;

/** Poll until the operation is done.  poll returns ZR_DONE (done: read its
 *  outcome in ctx), ZORCH_OK (not yet), ZR_AGAIN (could not ask this time)
 *  or a negative ZORCH_* code (give up with it: the operation failed).
 *  ZORCH_OK when done, ZORCH_ETIMEOUT past the deadline, ZORCH_ECANCELLED,
 *  ZORCH_EIO when the API was lost, or poll's code; reported through h. */
int zr_lro_wait(const zorch_host *h, const zr_lro_options *o, int (*poll)(void *ctx), void *ctx);

#endif
