/* zorch plugin kit — a view of the deployment for flavors that compile a
 * whole DAG (a KFP PipelineSpec, a SageMaker definition, an Azure ML job, a
 * Tekton PipelineRun, an Airflow DAG, a compose file) and for every flavor
 * that reads a step's settings.
 *
 * The deployment (docs/writing-a-flavor.md) lists its steps in topological
 * order; zdep_load checks that order (Kahn's algorithm over inputs and
 * "after") and gives each step its upstream steps, its effective settings,
 * its resources as numbers, its image, its environment and the argv of its
 * step entrypoint (the deployment's template of its kind, {step} replaced).
 *
 * The settings rule, implemented once here (zdep_settings_*, zdep_merge):
 *  1. A step's settings: its own "settings" in the deployment, else the
 *     pipeline's "defaults.settings".  A step's own settings are already
 *     complete: the compiler merged the pipeline's defaults into them
 *     (docs/pipeline-spec.md, "Settings").  The host hands launches the
 *     same (zorch_step_launch.settings_json).
 *  2. Its flavor settings: settings.flavor.<flavor> over what the
 *     orchestrator config gives every step (the flavor names that base: the
 *     config itself for local_docker, its pod_settings for kubernetes).
 *     Objects merge key by key at every depth; anything else (strings,
 *     numbers, arrays) is replaced whole.
 *  3. Its image: settings.flavor.<flavor>.image, else the step's image
 *     setting, else the orchestrator's default image.
 * So: step settings override pipeline defaults override orchestrator config.
 *
 * Resources: cpu in cores (a JSON number, or a string of cores "0.5" or
 * millicores "500m"); memory in bytes (a positive JSON integer, or a string
 * of a number with at most 9 decimals and a unit K, M, G, KB, MB, GB (powers
 * of 1000) or Ki, Mi, Gi, KiB, MiB, GiB (powers of 1024), as pipeline specs
 * accept it: "512MiB", "1.5G", "2Gi", "512M"); gpu a count; gpu_type a name.
 *
 * Errors follow the kit's convention (zkit.h).  Thread-safety: a loaded
 * view is read-only; several threads may read it at once.
 */
#ifndef ZORCH_ZDEPLOY_H
#define ZORCH_ZDEPLOY_H

#include <stddef.h>
#include <stdint.h>

#include "zkit.h"

typedef struct zdep_resources {
  double cpu;            /**< cores; 0 when not set */
  uint64_t memory;       /**< bytes; 0 when not set */
  uint32_t gpu;          /**< 0 when none */
  const char *gpu_type;  /**< borrowed from the settings; NULL: any */
} zdep_resources;

/** A step's effective settings for one flavor. */
typedef struct zdep_settings {
  json_t *all;         /**< the step's settings (owned reference; {} when none) */
  json_t *flavor_own;  /**< settings.flavor.<flavor> as the pipeline set it (borrowed from all), or NULL */
  json_t *flavor;      /**< flavor_own over the config's base (owned reference; {} when neither) */
  zdep_resources res;
  const char *image;   /**< by rule 3; borrowed; NULL when none */
  char **env;          /**< settings.env as "K=V", NULL-terminated (owned) */
} zdep_settings;

/** What a view needs to know of the flavor. */
typedef struct zdep_options {
  const char *flavor;         /**< its name: settings.flavor.<flavor> */
  json_t *base;               /**< what the config gives every step (borrowed; may be NULL) */
  const char *default_image;  /**< the config's image (may be NULL) */
} zdep_options;

/** A step's settings (settings_json: JSON text, NULL or "" for none) for
 *  the flavor.  `where` names the step in messages. */
int zdep_settings_parse(zdep_settings *out, const zorch_host *h, const char *settings_json,
                        const zdep_options *o, const char *where);
/** The same from a JSON object (borrowed; may be NULL). */
int zdep_settings_of(zdep_settings *out, const zorch_host *h, json_t *settings, const zdep_options *o,
                     const char *where);
void zdep_settings_free(zdep_settings *s);

/** The merge of rule 2: `over` onto `base` (either may be NULL).  New reference. */
json_t *zdep_merge(json_t *base, json_t *over);

/** cpu / memory / a whole resources object, as above.  ZORCH_EINVALID with
 *  a message naming `where` and the value when it is malformed. */
int zdep_cpu(double *out, const zorch_host *h, json_t *v, const char *where);
int zdep_memory(uint64_t *out, const zorch_host *h, json_t *v, const char *where);
int zdep_resources_of(zdep_resources *out, const zorch_host *h, json_t *resources, const char *where);

typedef struct zdep_step {
  const char *name;       /**< borrowed from the document */
  const char *kind;       /**< "function" or "command" */
  json_t *doc;            /**< the step's object in the document (borrowed) */
  size_t index;           /**< its place in zdep.steps */
  size_t *upstream;       /**< indices of the steps it waits for: its inputs' producers, its "after" */
  size_t n_upstream;
  zdep_settings set;
  char **argv;            /**< its step entrypoint, NULL-terminated */
} zdep_step;

typedef struct zdep {
  json_t *doc;            /**< the whole document (owned reference) */
  const char *pipeline, *run_id, *run_name; /**< borrowed; "" when absent */
  const char *program;    /**< the program holding function steps (program.path), or NULL */
  json_t *defaults;       /**< defaults.settings (borrowed; may be NULL) */
  zdep_step *steps;       /**< in topological order */
  size_t n_steps;
  /* kit-private: name lookup */
  size_t *slots;
  size_t n_slots;
} zdep;

/** Load a view of the deployment document (JSON text). */
int zdep_load(zdep **out, const zorch_host *h, const char *deployment_json, const zdep_options *o);
void zdep_free(zdep *d);

/** The step named `name`, or NULL. */
const zdep_step *zdep_find(const zdep *d, const char *name);

/** The entrypoint of `step` of `kind` from the document's templates, {step}
 *  replaced; NULL-terminated, free with zdep_strv_free (NULL on error,
 *  reported through h). */
char **zdep_entrypoint(const zorch_host *h, json_t *doc, const char *kind, const char *step);
void zdep_strv_free(char **v);

#endif
