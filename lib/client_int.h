/* zorch — the client's internals, registry, configuration and stacks. */
#ifndef ZORCH_CLIENT_INT_H
#define ZORCH_CLIENT_INT_H

#include <pthread.h>

#include "internal.h"
#include "zorch/plugin.h"

typedef struct zorch__registry zorch__registry;

struct zorch_client {
  char *home;                 /* absolute */
  uint32_t flags;             /* ZORCH_CLIENT_* */
  char *plugin_path;          /* from options, may be NULL */
  pthread_mutex_t log_lock;
  zorch_log_cb log_cb;
  void *log_payload;
  int log_level;
  zorch__registry *registry;
  pthread_mutex_t config_lock; /* serialises config.json read-modify-write */
};

/** A client with default options whose home is not created: for what needs
 *  only the flavor registry (zorch_image_build()).  Free with
 *  zorch_client_free(). */
int zorch__client_new_for_plugins(zorch_client **out);

/* ---- registry (registry.c) ------------------------------------------------ */

/** A registered flavor. */
typedef struct zorch__flavor {
  const zorch_flavor_desc *desc;
  void *payload;              /* given to add_flavor */
  const zorch_host *host;     /* the host table of the plugin that registered it */
  const char *plugin_name;
  const char *plugin_path;    /* file it was loaded from, or "(built-in)" */
  /** ZORCH_FLAVOR_* capabilities: the descriptor's own (version >= 2), or
   *  what a version-1 descriptor implies (see zorch__flavor_desc_flags). */
  uint64_t flags;
  /** JSON Schema of settings.flavor.<name>, checked when the flavor was
   *  added; NULL when it has none (always for a version-1 descriptor). */
  const char *step_settings_schema;
} zorch__flavor;

/** The capability flags of a flavor descriptor.  Version >= 2: its flags.
 *  Version 1 (plugin ABI 1.0 and 1.1) had none: ZORCH_FLAVOR_LOCAL_STORE
 *  (every flavor then reached the store as a local directory), plus
 *  ZORCH_FLAVOR_IN_PROCESS when the flavor is named "local" (what the host
 *  assumed of that name before the flags existed). */
uint64_t zorch__flavor_desc_flags(const zorch_flavor_desc *desc);

/** Build the registry for a client: scan, in this order, the client's
 *  plugin_path, $ZORCH_PLUGIN_PATH (unless ZORCH_CLIENT_NO_ENV), then
 *  $ZORCH_PLUGIN_SYSTEM_PATH if set (it replaces the default; empty: no
 *  directory) or else the compiled-in plugin directory -- neither of these
 *  two with ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS.
 *  Nothing is scanned with ZORCH_CLIENT_NO_PLUGINS.  Only files named
 *  zorch-flavor-*.so are considered.  The first flavor of a name wins; a
 *  later one is logged and ignored.  Failures are recorded as problems and
 *  logged; they never fail the registry. */
int zorch__registry_new(zorch__registry **out, zorch_client *client);
void zorch__registry_free(zorch__registry *r);

/** Register a plugin from a descriptor already in memory (static plugins,
 *  tests).  Same checks as a loaded file.  `origin` names it in messages. */
int zorch__registry_add_static(zorch__registry *r, const zorch_plugin_desc *desc,
                               const char *origin);

const zorch__flavor *zorch__registry_find(const zorch__registry *r, const char *type,
                                          const char *name);
size_t zorch__registry_count(const zorch__registry *r);
const zorch__flavor *zorch__registry_at(const zorch__registry *r, size_t i);
size_t zorch__registry_problem_count(const zorch__registry *r);
/** One problem: the file (or origin) and the message. */
void zorch__registry_problem(const zorch__registry *r, size_t i, const char **path,
                             const char **message);

/* ---- JSON Schema subset (schema.c) ------------------------------------------ */

/** Validate the JSON text `doc_json` against the JSON Schema text
 *  `schema_json`.  Supported keywords: type (string or array), properties,
 *  required, additionalProperties (bool or schema), items, enum, const,
 *  minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength,
 *  maxLength, pattern (POSIX ERE), minItems, maxItems, default (ignored),
 *  description/title (ignored).  On failure: ZORCH_EINVALID with a message
 *  "<what>: <json path>: <problem>", for example
 *  "orchestrator 'k8s' config: $.namespace: expected string, got integer". */
int zorch__schema_validate(const char *schema_json, const char *doc_json, const char *what);

/** Check that `schema_json` is a JSON object and a well-formed schema of the
 *  subset above (unsupported keywords are errors).  ZORCH_EINVALID with
 *  "<what>: invalid schema: <json path>: <problem>". */
int zorch__schema_check(const char *schema_json, const char *what);

struct json_t;
/** Parse and check a schema once (as zorch__schema_check), for validating
 *  many documents with zorch__schema_validate_parsed.  *out: a new jansson
 *  reference. */
int zorch__schema_load(struct json_t **out, const char *schema_json, const char *what);
/** Validate a parsed document.  On failure ZORCH_EINVALID, the thread's
 *  error as zorch__schema_validate ("document: <path>: <problem>"), and the
 *  two apart: *out_path "$", "$.shm_size", "$.mounts[2]", ... and
 *  *out_problem (both malloc'd; NULL on success or out of memory). */
int zorch__schema_validate_parsed(char **out_path, char **out_problem, const struct json_t *schema,
                                  const struct json_t *doc);

/* ---- step settings (step_settings.c) -------------------------------------------------- */

/** Validate settings.flavor.<flavor> of the pipeline's defaults and of every
 *  step against the flavor's step_settings_schema (nothing to do when it has
 *  none).  ZORCH_EINVALID naming the step and the setting:
 *  "step 'train': setting 'shm_size' of flavor local_docker: <problem>". */
int zorch__step_settings_check_pipeline(const zorch__flavor *flavor, const zorch_pipeline *p);
/** The same for a deployment document (its "defaults" and "steps"). */
int zorch__step_settings_check_doc(const zorch__flavor *flavor, const struct json_t *doc);

/* ---- configuration and stacks (config.c) ---------------------------------------- */

/** Flavors built into libzorch rather than loaded from plugins (the "local"
 *  artifact store), NULL-terminated.  The registry lists them first, with
 *  plugin "zorch" and path "(built-in)", even with ZORCH_CLIENT_NO_PLUGINS. */
extern const zorch_flavor_desc *const zorch__builtin_flavors[];

/** A stack with its components resolved. */
typedef struct zorch__stack {
  char *name;
  char *orchestrator_name;
  char *orchestrator_flavor;
  char *orchestrator_config;  /* JSON object text */
  char *store_name;
  char *store_flavor;         /* "local" */
  char *store_config;         /* JSON object text */
  char *store_path;           /* absolute root of the local store */
} zorch__stack;

/** Resolve stack `name` (NULL: the active one) from <home>/config.json.
 *  With no config file the "default" stack exists: orchestrator "default"
 *  (flavor local, {}), artifact store "default" (flavor local, path
 *  <home>/store).  ZORCH_ENOTFOUND names the missing stack or component. */
int zorch__stack_resolve(zorch__stack *out, zorch_client *client, const char *name);
void zorch__stack_clear(zorch__stack *s);

/** The artifact-store path of every registered local artifact store (for
 *  finding runs by id), as a NULL-terminated array; free with
 *  zorch__strv_free(). */
int zorch__store_paths(char ***out, zorch_client *client);
void zorch__strv_free(char **v);

#endif /* ZORCH_CLIENT_INT_H */
