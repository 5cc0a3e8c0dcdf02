/* zorch — the client: one handle per place where zorch keeps its data.
 *
 * A client knows its home directory (configuration and the default local
 * artifact store), the registry of flavor plugins, and the log callback.
 * Everything else (pipelines runs, stacks, flavors) is reached through it.
 */
#ifndef ZORCH_CLIENT_H
#define ZORCH_CLIENT_H

#include "common.h"
#include "types.h"

ZORCH_BEGIN_DECLS

typedef struct zorch_client zorch_client;

/* zorch_log_level (ZORCH_LOG_*) is defined in types.h. */

/** Receives one pre-formatted log message.  `domain` is "zorch" or the name
 *  of the plugin that logged.  Called from any thread zorch uses, possibly
 *  concurrently: it must be thread-safe and must not call back into zorch. */
typedef void (*zorch_log_cb)(int level, const char *domain, const char *message,
                             void *payload);

/** Flags for zorch_client_options.flags. */
enum {
  /** Read no environment variable (ZORCH_HOME, ZORCH_PLUGIN_PATH, ...). */
  ZORCH_CLIENT_NO_ENV = 1u << 0,
  /** Load no plugin at all; only flavors added with zorch_client_add_flavor_plugin(). */
  ZORCH_CLIENT_NO_PLUGINS = 1u << 1,
  /** Do not search the compiled-in plugin directory. */
  ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS = 1u << 2
};

#define ZORCH_CLIENT_OPTIONS_VERSION 1

/** Options for zorch_client_new().  Only append fields. */
typedef struct zorch_client_options {
  unsigned int version;     /**< ZORCH_CLIENT_OPTIONS_VERSION */
  /** Home directory: configuration (config.json) and the default artifact
   *  store.  NULL: $ZORCH_HOME, else $XDG_DATA_HOME/zorch, else
   *  ~/.local/share/zorch. Copied. */
  const char *home;
  uint32_t flags;           /**< ZORCH_CLIENT_* flags */
  /** Extra ':'-separated plugin directories, searched before
   *  $ZORCH_PLUGIN_PATH and the install directory.  Copied. */
  const char *plugin_path;
  zorch_log_cb log_cb;      /**< NULL: zorch prints nothing */
  void *log_payload;
  int log_level;            /**< 0: ZORCH_LOG_WARNING (or $ZORCH_LOG_LEVEL) */
} zorch_client_options;

#define ZORCH_CLIENT_OPTIONS_INIT { ZORCH_CLIENT_OPTIONS_VERSION, NULL, 0, NULL, NULL, NULL, 0 }

/** Initialise `opts` to defaults for struct version `version` (for bindings
 *  that cannot use the INIT macro). */
ZORCH_API int zorch_client_options_init(zorch_client_options *opts, unsigned int version);

/** Open a client.  `opts` may be NULL for defaults.  Creates the home
 *  directory if needed and loads the flavor plugins; a plugin that fails to
 *  load is logged and listed by zorch_flavor_problems(), never fatal.
 *  Ownership: *out is new, free it with zorch_client_free().
 *  Thread-safety: a client may be used from several threads at once for
 *  read-only calls (flavor lists, run inspection) and for starting runs;
 *  stack and component registration must not race with other calls. */
ZORCH_API int zorch_client_new(zorch_client **out, const zorch_client_options *opts);

/** Free a client.  NULL is a no-op.  Every run started from it must have
 *  been freed first. */
ZORCH_API void zorch_client_free(zorch_client *client);

/** The client's home directory.  Ownership: borrowed, lives as long as the client. */
ZORCH_API const char *zorch_client_home(const zorch_client *client);

/** Set the log callback and minimum level at run time. */
ZORCH_API int zorch_client_set_log(zorch_client *client, int min_level, zorch_log_cb cb,
                                   void *payload);

/* ---- flavors (the plugin registry) ---------------------------------- */

/** All registered flavors of component `type` ("orchestrator",
 *  "artifact_store"; NULL for all) as a JSON array of objects
 *  {"type","name","integration","description","plugin","path"}.
 *  Ownership: *out_json is new, free with zorch_free(). */
ZORCH_API int zorch_flavor_list(char **out_json, zorch_client *client, const char *type);

/** One flavor as a JSON object, including its "config_schema".
 *  ZORCH_ENOTFOUND when no such flavor is registered. */
ZORCH_API int zorch_flavor_describe(char **out_json, zorch_client *client, const char *type,
                                    const char *name);

/** Plugins that failed to load, as a JSON array of {"path","error"}.
 *  An empty array when all loaded. */
ZORCH_API int zorch_flavor_problems(char **out_json, zorch_client *client);

/* ---- stacks and components ----------------------------------------- */

/** Register a component (an orchestrator or an artifact store) under
 *  `name`, with its flavor and its configuration as a JSON object text
 *  (NULL for "{}").  The configuration is validated against the flavor's
 *  schema; errors name the offending field.  ZORCH_EEXISTS if the name is
 *  taken unless `replace` is non-zero. */
ZORCH_API int zorch_component_register(zorch_client *client, const char *type, const char *name,
                                       const char *flavor, const char *config_json, int replace);

/** Delete a component.  Refused (ZORCH_EINVALID) while a stack uses it. */
ZORCH_API int zorch_component_delete(zorch_client *client, const char *type, const char *name);

/** Components of `type` (NULL for all) as a JSON array of
 *  {"type","name","flavor","config"}. */
ZORCH_API int zorch_component_list(char **out_json, zorch_client *client, const char *type);

/** Register a stack: an orchestrator component and an artifact-store
 *  component, both by name.  NULL artifact_store means "default". */
ZORCH_API int zorch_stack_register(zorch_client *client, const char *name,
                                   const char *orchestrator, const char *artifact_store,
                                   int replace);

/** Delete a stack.  The "default" stack and the active stack cannot be deleted. */
ZORCH_API int zorch_stack_delete(zorch_client *client, const char *name);

/** Make `name` the active stack (persisted in the home's config.json). */
ZORCH_API int zorch_stack_set_active(zorch_client *client, const char *name);

/** The active stack's name ("default" unless set).  Ownership: *out is new,
 *  free with zorch_free(). */
ZORCH_API int zorch_stack_get_active(char **out, zorch_client *client);

/** All stacks as a JSON array of {"name","orchestrator","artifact_store","active"}. */
ZORCH_API int zorch_stack_list(char **out_json, zorch_client *client);

/** One stack with its components resolved: {"name","active","orchestrator":
 *  {"name","flavor","config"},"artifact_store":{...}}.  NULL name: the active stack. */
ZORCH_API int zorch_stack_describe(char **out_json, zorch_client *client, const char *name);

ZORCH_END_DECLS

#endif /* ZORCH_CLIENT_H */
