/* zorch — the flavor-plugin ABI (for people who write flavors).
 *
 * A flavor plugin is a shared object named zorch-flavor-<name>.so that
 * exports one function, zorch_plugin_describe().  Loading has two phases:
 *
 *  1. describe: the host calls zorch_plugin_describe(host_major, host_minor).
 *     It must have no side effects and return a pointer to a static
 *     descriptor (or NULL when the plugin cannot work with that host).
 *     The host accepts the plugin only if desc->abi_major equals
 *     ZORCH_PLUGIN_ABI_MAJOR, desc->abi_minor is not newer than the host's,
 *     and the required fields are set.  No other plugin code runs before.
 *  2. init: desc->init(host, registrar, &plugin_ctx) registers the plugin's
 *     flavors with host->add_flavor().  A non-zero return rejects the plugin.
 *
 * Plugins do not link libzorch: everything they need from the host comes
 * through the zorch_host table, so they work with a static libzorch too.
 * Memory passed across the boundary is allocated with host->alloc() and
 * freed with host->free().  See docs/writing-a-flavor.md.
 *
 * The host calls a plugin's operations from one thread per run at a time;
 * different runs may call into the same flavor concurrently.
 */
#ifndef ZORCH_PLUGIN_H
#define ZORCH_PLUGIN_H

#include <stdint.h>
#include <stddef.h>
#include "errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ZORCH_PLUGIN_ABI_MAJOR 1
#define ZORCH_PLUGIN_ABI_MINOR 1

#if defined(__GNUC__) && __GNUC__ >= 4
#define ZORCH_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define ZORCH_PLUGIN_EXPORT
#endif

/** The name of the one exported entry point. */
#define ZORCH_PLUGIN_ENTRY_SYMBOL "zorch_plugin_describe"

typedef struct zorch_host zorch_host;
typedef struct zorch_registrar zorch_registrar;     /* opaque, host-owned */
typedef struct zorch_submission zorch_submission;   /* opaque, host-owned */
typedef struct zorch_flavor_desc zorch_flavor_desc;

/** Component types a flavor can implement. */
#define ZORCH_COMPONENT_ORCHESTRATOR "orchestrator"

#define ZORCH_ORCHESTRATOR_OPS_VERSION 2

/** Operations of an orchestrator flavor.  `flavor_payload` is the pointer
 *  given to host->add_flavor().  Only append slots; the host checks
 *  `version` before calling a slot added later. */
typedef struct zorch_orchestrator_ops {
  uint32_t version; /**< ZORCH_ORCHESTRATOR_OPS_VERSION the plugin was built with */
  /* ---- version 1 ---- */
  /** Optional: semantic checks of a component config that already passed the
   *  flavor's JSON schema.  Return ZORCH_OK or ZORCH_EINVALID with
   *  host->error_set(). */
  int (*check_config)(void *flavor_payload, const char *config_json);
  /** Start a run of the submission's deployment.  Returns quickly for
   *  asynchronous backends.  *out_run is the flavor's handle for the run. */
  int (*submit)(void **out_run, void *flavor_payload, zorch_submission *sub);
  /** Wait up to timeout_ms (-1: forever) for the run to end.  ZORCH_OK when
   *  it ended (its final status reported with host->set_status()),
   *  ZORCH_ETIMEOUT when still running, another code on failure to tell. */
  int (*wait)(void *run, int timeout_ms);
  /** Ask the run to stop.  Must be async-signal-safe where the flavor runs
   *  steps in this process (only `local` does). */
  int (*cancel)(void *run);
  /** Free the run handle (after it ended, or to detach from it). */
  void (*release)(void *run);
  /* ---- version 2 (all optional: NULL when the flavor has no schedules) ---- */
  /** Make a recurring schedule that runs the submission's deployment (a
   *  template stored at "deployment_path"; each scheduled run starts it as a
   *  new run: `zorch deployment run PATH --new-run`) by `cron` (five fields
   *  or @daily ...).  The submission has no run of its own: report no
   *  status.  *out_id (host->alloc'd): the schedule's id on the backend. */
  int (*schedule_create)(void *flavor_payload, zorch_submission *sub, const char *cron, char **out_id);
  /** List the schedules of the orchestrator `config_json` points at, as a
   *  JSON array of {"id", "cron", "pipeline", "created", "deployment"}
   *  (host->alloc'd). */
  int (*schedule_list)(void *flavor_payload, const char *config_json, char **out_json);
  /** Delete one schedule by id; ZORCH_ENOTFOUND when there is none. */
  int (*schedule_delete)(void *flavor_payload, const char *config_json, const char *id);
} zorch_orchestrator_ops;

#define ZORCH_FLAVOR_DESC_VERSION 1

/** A flavor, registered by a plugin's init.  Strings must stay valid until
 *  the plugin is torn down (string literals are the usual choice). */
struct zorch_flavor_desc {
  uint32_t version;          /**< ZORCH_FLAVOR_DESC_VERSION */
  const char *type;          /**< ZORCH_COMPONENT_ORCHESTRATOR */
  const char *name;          /**< "local", "kubernetes", ... : [a-z0-9_]+ */
  const char *integration;   /**< "built-in", "kubernetes", or the vendor's name */
  const char *description;   /**< one line */
  const char *config_schema; /**< JSON Schema (object) of the component config */
  const void *ops;           /**< for orchestrators: const zorch_orchestrator_ops * */
  void *reserved[8];
};

#define ZORCH_HOST_VERSION 2

#define ZORCH_STEP_LAUNCH_VERSION 1

/** One attempt of one step that the host asks a plugin to launch (host
 *  version 2, see executor_start_remote).  Everything is borrowed and valid
 *  only during the launch call: copy what you keep. */
typedef struct zorch_step_launch {
  uint32_t version;          /**< ZORCH_STEP_LAUNCH_VERSION */
  void *executor;            /**< pass back to host->executor_step_done() */
  uint64_t attempt_id;       /**< ditto: names this attempt of this step */
  const char *run_id, *run_name, *pipeline;
  const char *step;          /**< the step's name */
  const char *kind;          /**< "function" or "command" */
  uint32_t attempt;          /**< 1 for the first attempt, 2 for the first retry, ... */
  /** The step entrypoint to run, NULL-terminated: for a function step the
   *  host program with --zorch-step/--zorch-deployment/--zorch-run, for a
   *  command step `zorch step run ...` (the deployment's templates). */
  const char *const *argv;
  /** The step's environment settings as "K=V", NULL-terminated. */
  const char *const *env;
  /** The step's effective settings as JSON: {"resources":{"cpu","memory",
   *  "gpu","gpu_type"},"env":{},"retries":{},"timeout":s,"cache":b,
   *  "image":str|null,"flavor":{"<flavor>":{...}}}. */
  const char *settings_json;
  const char *image;         /**< settings' image, or NULL */
  /** The step's log file: append what the step prints here. */
  const char *log_path;
  /** Where the artifact store lives (mount it where the step runs). */
  const char *store_path;
} zorch_step_launch;

#define ZORCH_STEP_LAUNCHER_VERSION 1

/** What a plugin implements to launch steps elsewhere while the host's DAG
 *  executor drives the run (host->executor_start_remote). */
typedef struct zorch_step_launcher {
  uint32_t version;          /**< ZORCH_STEP_LAUNCHER_VERSION */
  /** Start one attempt; return quickly (do the waiting on your own thread)
   *  and report its end once with host->executor_step_done().  A non-zero
   *  return (with host->error_set()) fails the attempt at once, and then
   *  executor_step_done must not be called for it.  Called from the
   *  executor's thread, never with its lock held. */
  int (*launch)(void *data, const zorch_step_launch *step);
  /** Ask a launched attempt to stop (cancel, timeout, fail_fast).  Return
   *  quickly; the attempt still ends with executor_step_done(). */
  void (*stop)(void *data, void *executor, uint64_t attempt_id);
} zorch_step_launcher;

/** What the host offers a plugin.  One table per loaded plugin; pass it
 *  back as the first argument where asked.  Only append slots. */
struct zorch_host {
  uint32_t version;          /**< ZORCH_HOST_VERSION of the host */
  uint32_t size;             /**< sizeof(zorch_host) in the host */
  /* ---- version 1 ---- */
  /** Log a line under the plugin's name.  level: ZORCH_LOG_* (1..4). */
  void (*log)(const zorch_host *host, int level, const char *message);
  /** Set the calling thread's zorch error; the host prefixes the plugin name. */
  void (*error_set)(const zorch_host *host, int code, const char *message);
  void *(*alloc)(size_t size);
  void (*free)(void *ptr);
  /** Register a flavor (only during init).  ZORCH_EINVALID when the
   *  descriptor is incomplete, ZORCH_EEXISTS when the name is taken. */
  int (*add_flavor)(zorch_registrar *reg, const zorch_flavor_desc *desc, void *flavor_payload);
  /** Facts of a submission, by key:
   *   "deployment"      the deployment document (JSON text)
   *   "deployment_path" where it is stored in the artifact store
   *   "run_id", "run_name", "pipeline"
   *   "config"          the orchestrator component's config (JSON object text)
   *   "store_path"      the local artifact store's root directory
   *   "zorch_command"   absolute path of the zorch CLI (command-step entrypoint)
   *   "no_cache"        "1" when the run ignores the cache (ZORCH_RUN_NO_CACHE), else "0"
   *  NULL for an unknown key.  Borrowed, valid until the run is released. */
  const char *(*submission_get)(const zorch_submission *sub, const char *key);
  /** Attach run metadata: "orchestrator_run_id", "orchestrator_url", ... */
  int (*submission_set_metadata)(zorch_submission *sub, const char *key, const char *value);
  /** Report the run's final status (zorch_status) and an optional message. */
  int (*submission_set_status)(zorch_submission *sub, int status, const char *message);
  /** Run the submission with libzorch's own DAG executor in this process
   *  (what the `local` flavor does).  `options_json` may set
   *  {"max_parallel": N}.  The handle works with executor_wait/cancel/release. */
  int (*executor_start)(void **out, zorch_submission *sub, const char *options_json);
  int (*executor_wait)(void *handle, int timeout_ms);
  int (*executor_cancel)(void *handle);
  void (*executor_release)(void *handle);
  /* ---- version 2 (ABI 1.1): check host->version >= 2 before use ---- */
  /** Run the submission with libzorch's DAG executor while the plugin
   *  LAUNCHES each step elsewhere (a container, a Pod).  The executor keeps
   *  what it does for `local`: readiness, cache checks (a cache hit never
   *  reaches the plugin), retries, timeouts, failure modes, cancel and the
   *  run's records.  For each attempt it calls ops->launch(data, step); the
   *  step entrypoint writes the step's record (runs/<run>/steps/<step>.json)
   *  and outputs into the store, and the executor reads them when the plugin
   *  reports the end.  `options_json` as for executor_start.  The handle
   *  works with executor_wait/cancel/release; ops and data must stay valid
   *  until executor_release. */
  int (*executor_start_remote)(void **out, zorch_submission *sub, const char *options_json,
                               const zorch_step_launcher *ops, void *data);
  /** Report the end of a launched attempt: the step process's exit code (0:
   *  success; the executor then checks the step record and the outputs) and
   *  a message for a failure (exit code, reason, last log lines; may be
   *  NULL).  Any thread.  ZORCH_ENOTFOUND for an unknown or ended attempt. */
  int (*executor_step_done)(void *executor, uint64_t attempt_id, int exit_code,
                            const char *message);
};

#define ZORCH_PLUGIN_DESC_VERSION 1

/** The plugin's static descriptor. */
typedef struct zorch_plugin_desc {
  uint32_t abi_major;        /**< ZORCH_PLUGIN_ABI_MAJOR at build time */
  uint32_t abi_minor;        /**< ZORCH_PLUGIN_ABI_MINOR at build time */
  const char *name;          /**< plugin name, for messages */
  const char *version;       /**< the plugin's own version */
  const char *description;
  int (*init)(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx);
  void (*teardown)(void *plugin_ctx); /**< may be NULL */
  void *reserved[8];
} zorch_plugin_desc;

/** The entry point every plugin exports. */
typedef const zorch_plugin_desc *(*zorch_plugin_describe_fn)(uint32_t host_abi_major,
                                                             uint32_t host_abi_minor);

#ifdef __cplusplus
}
#endif

#endif /* ZORCH_PLUGIN_H */
