/* zorch — building pipelines.
 *
 * A pipeline is a DAG of steps.  A *function step* is a C callback run in
 * this process (or in a copy of this program started as a step, see
 * entrypoint.h); a *command step* is an argv run as a subprocess.  Steps
 * declare named outputs; an input is wired to an upstream step's output by
 * name.  Pipeline params are JSON values that steps read when they declare
 * them with zorch_step_use_param().
 *
 * Names of pipelines, steps, outputs, inputs and params become file names,
 * labels and DNS-like names on remote flavors, so they are restricted to
 * [A-Za-z0-9_-], start with a letter, and are at most 63 characters.
 *
 * Thread-safety: a pipeline is built by one thread at a time.  Once built it
 * may be run (read) from several threads at once.
 */
#ifndef ZORCH_PIPELINE_H
#define ZORCH_PIPELINE_H

#include "common.h"

ZORCH_BEGIN_DECLS

typedef struct zorch_pipeline zorch_pipeline;
typedef struct zorch_step zorch_step;
typedef struct zorch_step_ctx zorch_step_ctx;

/** A function step.  Return 0 on success; any other value fails the step
 *  (use zorch_ctx_fail() to give a message).  Called on an executor worker
 *  thread; several steps of a run may be running at once on other threads. */
typedef int (*zorch_step_fn)(zorch_step_ctx *ctx, void *payload);

/** Create an empty pipeline.  Ownership: *out is new; free with zorch_pipeline_free(). */
ZORCH_API int zorch_pipeline_new(zorch_pipeline **out, const char *name);

/** Free a pipeline and its steps.  NULL is a no-op. */
ZORCH_API void zorch_pipeline_free(zorch_pipeline *pipeline);

/** Ownership: borrowed, valid while the pipeline lives. */
ZORCH_API const char *zorch_pipeline_name(const zorch_pipeline *pipeline);

/** Declare a pipeline param with its default value as JSON text (for
 *  example "0.1", "\"adam\"", "[1,2]").  A run may override it. */
ZORCH_API int zorch_pipeline_add_param(zorch_pipeline *pipeline, const char *name,
                                       const char *default_json);

/** Add a function step.  `payload` is passed to `fn` and is not owned.
 *  Ownership: *out (may be NULL) is borrowed from the pipeline. */
ZORCH_API int zorch_pipeline_add_function_step(zorch_step **out, zorch_pipeline *pipeline,
                                               const char *name, zorch_step_fn fn,
                                               void *payload);

/** Add a command step.  `argv` is NULL-terminated and copied; argv[0] is
 *  looked up in PATH.  No shell is involved.  The command receives, in its
 *  environment, ZORCH_INPUT_<NAME> (path of each input artifact),
 *  ZORCH_OUTPUT_<NAME> (path where it must write each output: a file or a
 *  directory), ZORCH_PARAM_<NAME> (each used param: a string as itself,
 *  any other value as JSON text),
 *  ZORCH_RUN_ID and ZORCH_STEP_NAME.  <NAME> is the name upper-cased with
 *  '-' turned into '_'. */
ZORCH_API int zorch_pipeline_add_command_step(zorch_step **out, zorch_pipeline *pipeline,
                                              const char *name, const char *const *argv);

/** The step called `name`, or NULL.  Ownership: borrowed. */
ZORCH_API zorch_step *zorch_pipeline_step(const zorch_pipeline *pipeline, const char *name);

/** Number of steps. */
ZORCH_API size_t zorch_pipeline_step_count(const zorch_pipeline *pipeline);

/** The pseudo-step holding pipeline-wide default settings: every settings
 *  call on it (resources, env, retry, timeout, cache, image, version,
 *  flavor settings) applies to each step that does not set its own.
 *  Inputs, outputs and params cannot be set on it.  Ownership: borrowed. */
ZORCH_API zorch_step *zorch_pipeline_defaults(zorch_pipeline *pipeline);

/** The command that starts this pipeline's program as one step, for
 *  flavors that run function steps outside the calling process (see
 *  entrypoint.h).  `argv` is NULL-terminated and copied; the flavor appends
 *  "--zorch-step NAME --zorch-deployment URI --zorch-run ID" to it.  By
 *  default the command is the running program's own path, which is right
 *  for a compiled program that calls zorch_main(); an interpreter sets its
 *  own (the Python binding: {"python3", "-m", "zorch", ...}).  A pipeline
 *  with an entrypoint may run its function steps on any flavor without
 *  zorch_main() having been called in this process.  NULL or an empty argv
 *  restores the default.  Since ZORCH_1.1. */
ZORCH_API int zorch_pipeline_set_entrypoint(zorch_pipeline *pipeline, const char *const *argv);

/** Check the whole pipeline: every input wired to an existing output of an
 *  existing step, no step depending on itself, no cycle (the message names
 *  the steps in it, in order), every used param declared.  Returns
 *  ZORCH_OK, ZORCH_EINVALID or ZORCH_ECYCLE with a precise message. */
ZORCH_API int zorch_pipeline_validate(const zorch_pipeline *pipeline);

/** Build a pipeline of command steps from a JSON pipeline spec (see
 *  docs/pipeline-spec.md).  `source` names the text in error messages (a
 *  file name, or NULL).  Errors give the JSON path of the offending field,
 *  for example "pipeline.json: steps[2].inputs.data: unknown step 'prep'". */
ZORCH_API int zorch_pipeline_from_spec(zorch_pipeline **out, const char *spec_json,
                                       const char *source);

/* ---- steps ------------------------------------------------------------ */

/** Ownership: borrowed. */
ZORCH_API const char *zorch_step_name(const zorch_step *step);

/** Declare an output.  A function step writes it with zorch_ctx_output*();
 *  a command step writes the file or directory at $ZORCH_OUTPUT_<NAME>. */
ZORCH_API int zorch_step_add_output(zorch_step *step, const char *name);

/** Wire input `name` of this step to output `output` of step `from_step`.
 *  The upstream step may be added later; zorch_pipeline_validate() checks it. */
ZORCH_API int zorch_step_add_input(zorch_step *step, const char *name, const char *from_step,
                                   const char *output);

/** Run this step after `upstream` without passing data. */
ZORCH_API int zorch_step_after(zorch_step *step, const char *upstream);

/** This step reads pipeline param `param`: its value is part of the step's
 *  cache key.  A step can only read params it declared. */
ZORCH_API int zorch_step_use_param(zorch_step *step, const char *param);

/** A step-local param with a fixed JSON value; it shadows a pipeline param
 *  of the same name and is part of the cache key. */
ZORCH_API int zorch_step_set_param(zorch_step *step, const char *name, const char *value_json);

/** Resources the step needs: cpu cores (0: unset), memory in bytes (0:
 *  unset).  The local orchestrator ignores them; remote flavors map them to
 *  requests and limits. */
ZORCH_API int zorch_step_set_resources(zorch_step *step, double cpu, uint64_t memory_bytes);

/** GPUs the step needs, with an optional accelerator type (NULL). */
ZORCH_API int zorch_step_set_gpu(zorch_step *step, uint32_t count, const char *type);

/** Set an environment variable for the step (command steps see it in their
 *  environment; function steps through getenv only when run remotely). */
ZORCH_API int zorch_step_set_env(zorch_step *step, const char *name, const char *value);

/** Retry a failed step up to `max_retries` more times, waiting
 *  delay * backoff^(attempt-1) seconds before each retry. */
ZORCH_API int zorch_step_set_retry(zorch_step *step, uint32_t max_retries,
                                   double delay_seconds, double backoff);

/** Fail an attempt that runs longer than `seconds` (0: no timeout).  A
 *  command step's process group is killed; a function step is asked to stop
 *  (zorch_ctx_cancelled() turns true) and its result is discarded. */
ZORCH_API int zorch_step_set_timeout(zorch_step *step, double seconds);

/** Turn caching of this step on or off (on by default). */
ZORCH_API int zorch_step_set_cache(zorch_step *step, int enabled);

/** Container image for flavors that run steps in containers. */
ZORCH_API int zorch_step_set_image(zorch_step *step, const char *image);

/** The step's code version, part of its cache key.  Default for function
 *  steps: the host program's GNU build id (or the SHA-256 of its binary);
 *  for command steps: the identity of the executable and the contents of
 *  every argument that names an existing file. */
ZORCH_API int zorch_step_set_version(zorch_step *step, const char *code_version);

/** Free-form settings for one flavor as a JSON object text, for example
 *  zorch_step_set_flavor_settings(s, "kubernetes", "{\"node_selector\":{...}}").
 *  When the stack's orchestrator flavor publishes a step settings schema
 *  (`zorch orchestrator flavor describe`), zorch validates its settings
 *  against it before a run or schedule is submitted (the defaults' object
 *  with the step's own keys over it); the error names the step and the
 *  setting.  Settings for other flavors are not looked at. */
ZORCH_API int zorch_step_set_flavor_settings(zorch_step *step, const char *flavor,
                                             const char *settings_json);

ZORCH_END_DECLS

#endif /* ZORCH_PIPELINE_H */
