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

#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include "common.h"
#include "errors.h"
#include "types.h"

ZORCH_BEGIN_DECLS

#define ZORCH_PLUGIN_ABI_MAJOR 1
#define ZORCH_PLUGIN_ABI_MINOR 2

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

/* Component types (ZORCH_COMPONENT_*), run and step statuses
 * (ZORCH_STATUS_*) and log levels (ZORCH_LOG_*) are in types.h. */

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

#define ZORCH_ARTIFACT_STORE_OPS_VERSION 1

/** Flags of zorch_artifact_store_ops.put_file/put_bytes. */
enum {
  /** Content-addressed key: when the object exists already it is left as it
   *  is (an artifact never changes once named) and the put succeeds. */
  ZORCH_STORE_PUT_IF_ABSENT = 1u << 0
};

/** Receives one chunk of an object (get_stream); non-zero stops the read. */
typedef int (*zorch_store_sink)(void *sink_data, const void *chunk, size_t len);
/** Receives one key of a listing; non-zero stops it. */
typedef int (*zorch_store_each)(void *each_data, const char *key, uint64_t size);

/** Operations of an artifact-store flavor (plugin ABI 1.2).  Keys are
 *  relative, '/'-separated, made by the host's store layout ("runs/<id>/
 *  run.json", "artifacts/sha256/..."); the store maps them under its own
 *  prefix.  A put is atomic: a reader sees the whole object or none (a
 *  single PUT, or a multipart upload completed last).  Every operation may
 *  be called from several threads at once on one store handle.  Errors:
 *  ZORCH_ENOTFOUND for a missing object, ZORCH_EIO (or another code) with
 *  host->error_set() naming the key and the backend's message. */
typedef struct zorch_artifact_store_ops {
  uint32_t version; /**< ZORCH_ARTIFACT_STORE_OPS_VERSION the plugin was built with */
  /* ---- version 1 ---- */
  /** Optional: semantic checks of a config that passed the flavor's schema. */
  int (*check_config)(void *flavor_payload, const char *config_json);
  /** Open the store the component config names.  *out_store: the plugin's
   *  handle, passed to every other operation. */
  int (*open)(void **out_store, void *flavor_payload, const char *config_json);
  void (*close)(void *store);
  /** The store's URI ("s3://bucket/prefix"); *out_uri host->alloc'd. */
  int (*uri)(char **out_uri, void *store);
  /** Store the file at `path` (a local file) under `key`. */
  int (*put_file)(void *store, const char *key, const char *path, uint32_t flags);
  int (*put_bytes)(void *store, const char *key, const void *data, size_t len, uint32_t flags);
  /** Write the object to a new local file at `path` (whole or not at all). */
  int (*get_to_path)(void *store, const char *key, const char *path);
  /** Read the object in chunks, in order. */
  int (*get_stream)(void *store, const char *key, zorch_store_sink sink, void *sink_data);
  /** 1 when the object exists, 0 when not, a negative ZORCH_* code on error. */
  int (*exists)(void *store, const char *key);
  /** Every key that starts with `prefix`, in no particular order. */
  int (*list)(void *store, const char *prefix, zorch_store_each each, void *each_data);
  /** Delete one object; ZORCH_OK when it was not there. */
  int (*remove)(void *store, const char *key);
  /** What a step elsewhere needs to reach this store, as a JSON object of
   *  environment variables: credential references (a profile, a key file,
   *  an endpoint), never a secret.  *out_json host->alloc'd ("{}" if none). */
  int (*step_env)(char **out_json, void *store);
  /** Where the store and its credentials come from, as a JSON object for
   *  `zorch artifact-store describe` (never a secret). */
  int (*describe)(char **out_json, void *store);
} zorch_artifact_store_ops;

#define ZORCH_IMAGE_BUILDER_OPS_VERSION 1

/** Operations of an image-builder flavor (plugin ABI 1.2): a runnable image
 *  made from files of this host, for zorch_image_build() and `zorch image
 *  build` (see <zorch/image.h>).  `config_json` is the builder's config,
 *  already checked against the flavor's schema: where it builds, e.g.
 *  {"docker_host": "unix:///run/podman/podman.sock"}; what it leaves out
 *  comes from the environment (DOCKER_HOST for a Docker engine).
 *  `request_json` says what goes in, as a JSON object:
 *    "name"           "name" or "name:tag" (tag "latest" when none)
 *    "program"        absolute path of the program whose steps the image runs
 *    "add"            more programs (each with its shared-library closure),
 *                     files and directories (recursively), as the caller
 *                     wrote them: a bare name is a program looked up in PATH
 *    "zorch_command"  absolute path of the zorch CLI (the command-step
 *                     entrypoint), with its closure; absent with no_zorch
 *    "plugin_dirs"    directories whose zorch-flavor-*.so go in (with their
 *                     closures); empty with no_zorch
 *    "no_zorch"       true when the caller leaves the zorch CLI and plugins out
 *  Every file sits at its own absolute path in the image, so a deployment's
 *  entrypoint commands work unchanged inside it.  Keys added later are
 *  ignored by builders that do not know them. */
typedef struct zorch_image_builder_ops {
  uint32_t version; /**< ZORCH_IMAGE_BUILDER_OPS_VERSION the plugin was built with */
  /* ---- version 1 ---- */
  /** Optional: semantic checks of a config that passed the flavor's schema. */
  int (*check_config)(void *flavor_payload, const char *config_json);
  /** Build the image the request describes.  *out_image_id (host->alloc'd):
   *  the image's id where it was built ("sha256:..."), or its name when the
   *  backend gives none.  ZORCH_ENOTFOUND when a file or program of the
   *  request is not there, ZORCH_EINVALID for a request it cannot build,
   *  ZORCH_EIO when the backend cannot be reached or refuses; with
   *  host->error_set() naming what and how to fix it. */
  int (*build)(char **out_image_id, void *flavor_payload, const char *config_json,
               const char *request_json);
} zorch_image_builder_ops;

#define ZORCH_FLAVOR_DESC_VERSION 2

/** Capability flags of a flavor (zorch_flavor_desc.flags, version 2). */
enum {
  /** Runs the steps in the calling process with the host's own executor
   *  (`local`): function steps need no entrypoint, ephemeral runs are
   *  allowed, and a stored deployment with function steps is refused (its
   *  functions exist only in the program that built it). */
  ZORCH_FLAVOR_IN_PROCESS = 1u << 0,
  /** Steps can reach a store on this machine's filesystem (the flavor runs
   *  them here or mounts the store's directory where they run).  Without
   *  it the host refuses a stack whose artifact store is a local directory
   *  and asks for a store the steps reach over the network. */
  ZORCH_FLAVOR_LOCAL_STORE = 1u << 1
};

/** A flavor, registered by a plugin's init.  Strings must stay valid until
 *  the plugin is torn down (string literals are the usual choice). */
struct zorch_flavor_desc {
  uint32_t version;          /**< ZORCH_FLAVOR_DESC_VERSION */
  const char *type;          /**< a ZORCH_COMPONENT_* string */
  const char *name;          /**< "local", "kubernetes", ... : [a-z0-9_]+ */
  const char *integration;   /**< "built-in", "kubernetes", or the vendor's name */
  const char *description;   /**< one line */
  const char *config_schema; /**< JSON Schema (object) of the component config */
  /** orchestrator: const zorch_orchestrator_ops *; artifact_store: const
   *  zorch_artifact_store_ops *; image_builder: const zorch_image_builder_ops * */
  const void *ops;
  void *reserved[8];
  /* ---- version 2 (ABI 1.2): the host reads these only when version >= 2.
   * A version-1 descriptor has flags ZORCH_FLAVOR_LOCAL_STORE, plus
   * ZORCH_FLAVOR_IN_PROCESS when its name is "local", and no step schema. */
  uint64_t flags;            /**< ZORCH_FLAVOR_* capability bits */
  /** Orchestrators: JSON Schema (object) of a step's settings for this
   *  flavor (the object at settings.flavor.<name> of each step and of the
   *  pipeline's defaults), or NULL.  The host validates every step against
   *  it before the run is submitted; an error names the step and the
   *  setting, so the flavor need not check shapes again. */
  const char *step_settings_schema;
};

#define ZORCH_HOST_VERSION 3

#define ZORCH_STEP_LAUNCH_VERSION 2

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
  /** The step's log file.  A plugin of ABI 1.2 hands log bytes to
   *  host->executor_step_log() instead of writing here. */
  const char *log_path;
  /** The local artifact store's root directory (mount it where the step
   *  runs), or NULL when the store is not a local directory (version 2:
   *  then only store_uri and store_env reach it). */
  const char *store_path;
  /* ---- version 2 (ABI 1.2) ---- */
  /** The artifact store as a URI the step entrypoint opens:
   *  "file:///abs/dir", "s3://bucket/prefix", ...  The argv already names
   *  it; set nothing but store_env for the step to reach the store. */
  const char *store_uri;
  /** "K=V" settings the step needs to reach the store from where it runs:
   *  credential references (a profile name, a key file's path, an
   *  endpoint), never a secret itself.  NULL-terminated; may be empty. */
  const char *const *store_env;
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
  /* ---- version 3 (ABI 1.2): check host->version >= 3 before use ---- */
  /** Hand bytes a launched attempt printed to the host, which appends them
   *  to the step's log (after one "--- attempt N (flavor) ---" header per
   *  attempt), the same way for every flavor.  Any thread; bytes of one
   *  attempt in the order given.  ZORCH_ENOTFOUND for an unknown or ended
   *  attempt. */
  int (*executor_step_log)(void *executor, uint64_t attempt_id, const void *data, size_t len);
  /** The submission's run record (the JSON document `zorch run show --json`
   *  reads: status, message, metadata, ...) as the store holds it now,
   *  written by whoever drives the run (an orchestrator pod, say).
   *  *out_json is host->alloc'd.  ZORCH_ENOTFOUND when none was written. */
  int (*submission_run_record)(char **out_json, const zorch_submission *sub);
  /** One step's record of the submission's run, as its step entrypoint
   *  wrote it.  *out_json host->alloc'd; ZORCH_ENOTFOUND when none yet. */
  int (*submission_step_record)(char **out_json, const zorch_submission *sub, const char *step);
};

/* Unused (the plugin descriptor's version is abi_major.abi_minor); kept so
 * sources that named it still compile. */
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

/** Define the plugin's descriptor and its exported entry point:
 *
 *    ZORCH_PLUGIN_DEFINE("myflavor", "1.0.0", "My flavors", my_init, NULL)
 *
 *  once in one source file of the plugin.  The descriptor names the ABI the
 *  plugin was compiled against. */
#define ZORCH_PLUGIN_DEFINE(name, version, description, init, teardown)                         \
  static const zorch_plugin_desc zorch_plugin_desc_ = {                                         \
      ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR, (name), (version), (description), (init),   \
      (teardown), {0}};                                                                         \
  ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,   \
                                                                     uint32_t host_abi_minor);  \
  ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,   \
                                                                     uint32_t host_abi_minor) { \
    (void)host_abi_major;                                                                       \
    (void)host_abi_minor;                                                                       \
    return &zorch_plugin_desc_;                                                                 \
  }

/** host->error_set() with printf formatting; returns `code`, so a plugin
 *  writes `return zorch_host_errorf(h, ZORCH_EINVALID, "...", ...);`.
 *  Header-only: costs no ABI. */
ZORCH_PRINTF(3, 4)
static inline int zorch_host_errorf(const zorch_host *host, int code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  host->error_set(host, code, msg);
  return code;
}

/** host->log() with printf formatting (level: ZORCH_LOG_*). */
ZORCH_PRINTF(3, 4)
static inline void zorch_host_logf(const zorch_host *host, int level, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  host->log(host, level, msg);
}

ZORCH_END_DECLS

#endif /* ZORCH_PLUGIN_H */
