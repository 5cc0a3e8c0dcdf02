/* zorch CLI — flavors, components (orchestrators, artifact stores) and stacks. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* ---- flavors ------------------------------------------------------------------ */

/* Plugins that failed to load, as warnings on stderr. */
static void warn_problems(zorch_client *c) {
  char *text = NULL;
  if (zorch_flavor_problems(&text, c)) {
    cli_warning("cannot list plugin problems: %s", zorch_error_last()->message);
    return;
  }
  json_t *arr = cli_parse_json(text);
  zorch_free(text);
  size_t i;
  json_t *p;
  json_array_foreach(arr, i, p) {
    const char *path = cli_json_str(p, "path", "?");
    const char *error = cli_json_str(p, "error", "unknown error");
    if (strstr(error, path)) cli_warning("plugin not loaded: %s", error);
    else cli_warning("plugin %s not loaded: %s", path, error);
  }
  json_decref(arr);
}

int cmd_flavor_list(const cli_cmd *cmd, int argc, char **argv) {
  int r = cli_positional(cmd, argc, argv, 0, 0, NULL);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(false);
  if (!c) return CLI_EXIT_FAILED;
  warn_problems(c);
  char *text = NULL;
  int rc = CLI_EXIT_OK;
  json_t *arr = NULL;
  if (zorch_flavor_list(&text, c, cmd->type)) {
    rc = cli_lib_error();
  } else if (!(arr = cli_parse_json(text))) {
    rc = CLI_EXIT_FAILED;
  } else {
    static const char *const head[] = {"NAME", "INTEGRATION", "DESCRIPTION"};
    cli_table *t = cli_table_new(3, head);
    size_t i;
    json_t *f;
    json_array_foreach(arr, i, f) {
      const char *row[] = {cli_json_str(f, "name", ""), cli_json_str(f, "integration", ""),
                           cli_json_str(f, "description", "")};
      cli_table_row(t, row);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
  }
  json_decref(arr);
  zorch_free(text);
  zorch_client_free(c);
  return rc;
}

/* "<title>:" and the schema, pretty; `none` when there is none. */
static void print_schema(const char *title, json_t *schema, const char *none) {
  json_t *parsed = NULL;
  if (json_is_string(schema)) /* tolerate the schema as text */
    schema = parsed = json_loads(json_string_value(schema), 0, NULL);
  char *pretty = schema && !json_is_null(schema)
                     ? json_dumps(schema, JSON_INDENT(2) | JSON_ENCODE_ANY)
                     : NULL;
  printf("%s:\n%s\n", title, pretty ? pretty : none);
  free(pretty);
  json_decref(parsed);
}

int cmd_flavor_describe(const cli_cmd *cmd, int argc, char **argv) {
  const char *name;
  int r = cli_positional(cmd, argc, argv, 1, 1, &name);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(false);
  if (!c) return CLI_EXIT_FAILED;
  warn_problems(c);
  char *text = NULL;
  int rc = CLI_EXIT_OK;
  json_t *f = NULL;
  if (zorch_flavor_describe(&text, c, cmd->type, name)) {
    rc = cli_lib_error();
  } else if (!(f = cli_parse_json(text))) {
    rc = CLI_EXIT_FAILED;
  } else {
    printf("Flavor:       %s (%s)\n", cli_json_str(f, "name", name),
           cli_json_str(f, "type", cmd->type));
    printf("Integration:  %s\n", cli_json_str(f, "integration", "-"));
    printf("Description:  %s\n", cli_json_str(f, "description", "-"));
    const char *plugin = cli_json_str(f, "plugin", NULL), *path = cli_json_str(f, "path", NULL);
    if (plugin || path)
      printf("Plugin:       %s%s%s%s\n", plugin ? plugin : "", plugin && path ? " (" : "",
             path ? path : "", plugin && path ? ")" : "");
    json_t *flags = json_object_get(f, "flags");
    if (json_is_array(flags)) {
      printf("Capabilities:");
      size_t i;
      json_t *fl;
      json_array_foreach(flags, i, fl) printf("%s%s", i ? ", " : " ", json_string_value(fl));
      printf("%s\n", json_array_size(flags) ? "" : " (none)");
    }
    print_schema("Config schema", json_object_get(f, "config_schema"), "{}");
    if (!strcmp(cli_json_str(f, "type", ""), "orchestrator")) {
      char title[160];
      snprintf(title, sizeof title, "Step settings schema (settings.flavor.%s)",
               cli_json_str(f, "name", name));
      print_schema(title, json_object_get(f, "step_settings_schema"),
                   "(none: zorch checks no step settings of this flavor)");
    }
  }
  json_decref(f);
  zorch_free(text);
  zorch_client_free(c);
  return rc;
}

/* ---- components ------------------------------------------------------------------- */

/* The JSON "type" keywords of property `key` in a config schema allow `t`? */
static bool schema_allows(const json_t *schema, const char *key, const char *t) {
  const json_t *type = json_object_get(json_object_get(json_object_get(schema, "properties"), key),
                                       "type");
  if (json_is_string(type)) return strcmp(json_string_value(type), t) == 0;
  size_t i;
  json_t *e;
  json_array_foreach(type, i, e) {
    if (json_is_string(e) && strcmp(json_string_value(e), t) == 0) return true;
  }
  return false;
}

static bool schema_types(const json_t *schema, const char *key) {
  return json_object_get(json_object_get(json_object_get(schema, "properties"), key), "type") !=
         NULL;
}

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "object";
  case JSON_ARRAY: return "array";
  case JSON_STRING: return "string";
  case JSON_INTEGER: return "integer";
  case JSON_REAL: return "number";
  case JSON_TRUE:
  case JSON_FALSE: return "boolean";
  default: return "null";
  }
}

/* -c KEY=VALUE: VALUE as JSON when it parses, except where the flavor's
 * schema wants a string and not what VALUE parses to. */
static json_t *config_value(const json_t *schema, const char *key, const char *text) {
  json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
  if (!v) return json_string(text);
  if (!json_is_string(v) && schema_types(schema, key) && schema_allows(schema, key, "string")) {
    const char *kind = json_kind(v);
    bool allowed = schema_allows(schema, key, kind) ||
                   (json_is_integer(v) && schema_allows(schema, key, "number"));
    if (!allowed) {
      json_decref(v);
      return json_string(text);
    }
  }
  return v;
}

/* The flavor's config schema (NULL when unknown: the library reports it at register). */
static json_t *flavor_schema(zorch_client *c, const char *type, const char *flavor) {
  char *text = NULL;
  if (zorch_flavor_describe(&text, c, type, flavor)) return NULL;
  json_t *f = json_loads(text, 0, NULL);
  zorch_free(text);
  json_t *schema = json_incref(json_object_get(f, "config_schema"));
  json_decref(f);
  if (json_is_string(schema)) {
    json_t *parsed = json_loads(json_string_value(schema), 0, NULL);
    json_decref(schema);
    schema = parsed;
  }
  return schema;
}

int cmd_component_register(const cli_cmd *cmd, int argc, char **argv) {
  static const cli_opt opts[] = {{"flavor", 'f', true},
                                 {"config", 0, true},
                                 {"config-value", 'c', true},
                                 {"replace", 0, false},
                                 {NULL, 0, false}};
  enum { O_FLAVOR, O_CONFIG, O_VALUE, O_REPLACE };
  const char *name = NULL, *flavor = NULL, *config = NULL;
  const char **values = calloc((size_t)argc + 1, sizeof *values);
  size_t nvalues = 0;
  bool replace = false;
  cli_parser p;
  cli_parser_init(&p, cmd, opts, argc, argv);
  int r, rc = -1;
  const char *v;
  while (rc < 0 && (r = cli_getopt(&p, &v)) != CLI_OPT_END) {
    switch (r) {
    case O_FLAVOR: flavor = v; break;
    case O_CONFIG: config = v; break;
    case O_VALUE:
      if (!strchr(v, '=') || v[0] == '=')
        rc = cli_usage_error(cmd, "-c wants KEY=VALUE, got '%s'", v);
      values[nvalues++] = v;
      break;
    case O_REPLACE: replace = true; break;
    case CLI_OPT_POSITIONAL:
      if (name) rc = cli_usage_error(cmd, "unexpected argument '%s'", v);
      name = v;
      break;
    default: rc = cli_opt_exit(cmd, r);
    }
  }
  if (rc < 0 && !name) rc = cli_usage_error(cmd, "missing the %s name", cmd->path);
  if (rc < 0 && !flavor) rc = cli_usage_error(cmd, "missing --flavor");
  if (rc < 0 && config && nvalues)
    rc = cli_usage_error(cmd, "use either --config or -c KEY=VALUE, not both");
  if (rc >= 0) {
    free(values);
    return rc;
  }
  zorch_client *c = cli_client_open(true);
  if (!c) {
    free(values);
    return CLI_EXIT_FAILED;
  }
  char *built = NULL;
  if (nvalues) {
    json_t *schema = flavor_schema(c, cmd->type, flavor);
    json_t *obj = json_object();
    for (size_t i = 0; i < nvalues; i++) {
      size_t klen = strcspn(values[i], "=");
      char *key = strndup(values[i], klen);
      json_object_set_new(obj, key, config_value(schema, key, values[i] + klen + 1));
      free(key);
    }
    built = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    json_decref(schema);
    config = built;
  }
  if (zorch_component_register(c, cmd->type, name, flavor, config, replace)) {
    rc = cli_lib_error();
  } else {
    printf("Registered %s '%s' (flavor %s).\n", strcmp(cmd->type, "orchestrator") == 0
                                                     ? "orchestrator"
                                                     : "artifact store",
           name, flavor);
    rc = CLI_EXIT_OK;
  }
  free(built);
  free(values);
  zorch_client_free(c);
  return rc;
}

/* The active stack as parsed JSON (NULL when it cannot be described). */
static json_t *active_stack(zorch_client *c) {
  char *text = NULL;
  if (zorch_stack_describe(&text, c, NULL)) return NULL;
  json_t *s = json_loads(text, 0, NULL);
  zorch_free(text);
  return s;
}

int cmd_component_list(const cli_cmd *cmd, int argc, char **argv) {
  int r = cli_positional(cmd, argc, argv, 0, 0, NULL);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  char *text = NULL;
  int rc = CLI_EXIT_OK;
  json_t *arr = NULL;
  if (zorch_component_list(&text, c, cmd->type)) {
    rc = cli_lib_error();
  } else if (!(arr = cli_parse_json(text))) {
    rc = CLI_EXIT_FAILED;
  } else {
    json_t *active = active_stack(c);
    const char *in_use = cli_json_str(json_object_get(active, cmd->type), "name", NULL);
    static const char *const head[] = {"ACTIVE", "NAME", "FLAVOR", "CONFIG"};
    cli_table *t = cli_table_new(4, head);
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
      const char *n = cli_json_str(e, "name", "");
      char *cfg = cli_json_compact(json_object_get(e, "config"));
      const char *row[] = {in_use && !strcmp(in_use, n) ? "*" : "", n,
                           cli_json_str(e, "flavor", ""), cfg};
      cli_table_row(t, row);
      free(cfg);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
    json_decref(active);
  }
  json_decref(arr);
  zorch_free(text);
  zorch_client_free(c);
  return rc;
}

int cmd_component_delete(const cli_cmd *cmd, int argc, char **argv) {
  const char *name;
  int r = cli_positional(cmd, argc, argv, 1, 1, &name);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  int rc = CLI_EXIT_OK;
  if (zorch_component_delete(c, cmd->type, name)) rc = cli_lib_error();
  else printf("Deleted '%s'.\n", name);
  zorch_client_free(c);
  return rc;
}

/* ---- stacks -------------------------------------------------------------------------------- */

int cmd_stack_register(const cli_cmd *cmd, int argc, char **argv) {
  static const cli_opt opts[] = {{"orchestrator", 'o', true},
                                 {"artifact-store", 'a', true},
                                 {"set", 0, false},
                                 {"replace", 0, false},
                                 {NULL, 0, false}};
  enum { O_ORCH, O_STORE, O_SET, O_REPLACE };
  const char *name = NULL, *orch = NULL, *store = NULL;
  bool set = false, replace = false;
  cli_parser p;
  cli_parser_init(&p, cmd, opts, argc, argv);
  int r;
  const char *v;
  while ((r = cli_getopt(&p, &v)) != CLI_OPT_END) {
    switch (r) {
    case O_ORCH: orch = v; break;
    case O_STORE: store = v; break;
    case O_SET: set = true; break;
    case O_REPLACE: replace = true; break;
    case CLI_OPT_POSITIONAL:
      if (name) return cli_usage_error(cmd, "unexpected argument '%s'", v);
      name = v;
      break;
    default: return cli_opt_exit(cmd, r);
    }
  }
  if (!name) return cli_usage_error(cmd, "missing the stack name");
  if (!orch) return cli_usage_error(cmd, "missing -o ORCHESTRATOR");
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  int rc = CLI_EXIT_OK;
  if (zorch_stack_register(c, name, orch, store, replace)) {
    rc = cli_lib_error();
  } else {
    printf("Registered stack '%s' (orchestrator %s, artifact store %s).\n", name, orch,
           store ? store : "default");
    if (set) {
      if (zorch_stack_set_active(c, name)) rc = cli_lib_error();
      else printf("Active stack set to '%s'.\n", name);
    }
  }
  zorch_client_free(c);
  return rc;
}

int cmd_stack_list(const cli_cmd *cmd, int argc, char **argv) {
  int r = cli_positional(cmd, argc, argv, 0, 0, NULL);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  char *text = NULL;
  int rc = CLI_EXIT_OK;
  json_t *arr = NULL;
  if (zorch_stack_list(&text, c)) {
    rc = cli_lib_error();
  } else if (!(arr = cli_parse_json(text))) {
    rc = CLI_EXIT_FAILED;
  } else {
    static const char *const head[] = {"ACTIVE", "STACK NAME", "ORCHESTRATOR", "ARTIFACT STORE"};
    cli_table *t = cli_table_new(4, head);
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s) {
      bool active = json_is_true(json_object_get(s, "active"));
      const char *row[] = {active ? "*" : "", cli_json_str(s, "name", ""),
                           cli_json_str(s, "orchestrator", ""),
                           cli_json_str(s, "artifact_store", "")};
      const char *green = cli_color() && active ? "\033[32m" : NULL;
      const char *colors[] = {green, green, NULL, NULL};
      cli_table_row_colored(t, row, colors);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
  }
  json_decref(arr);
  zorch_free(text);
  zorch_client_free(c);
  return rc;
}

int cmd_stack_set(const cli_cmd *cmd, int argc, char **argv) {
  const char *name;
  int r = cli_positional(cmd, argc, argv, 1, 1, &name);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  int rc = CLI_EXIT_OK;
  if (zorch_stack_set_active(c, name)) rc = cli_lib_error();
  else printf("Active stack set to '%s'.\n", name);
  zorch_client_free(c);
  return rc;
}

int cmd_stack_describe(const cli_cmd *cmd, int argc, char **argv) {
  const char *name;
  int r = cli_positional(cmd, argc, argv, 0, 1, &name);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  char *text = NULL;
  int rc = CLI_EXIT_OK;
  json_t *s = NULL;
  if (zorch_stack_describe(&text, c, name)) {
    rc = cli_lib_error();
  } else if (!(s = cli_parse_json(text))) {
    rc = CLI_EXIT_FAILED;
  } else {
    bool active = json_is_true(json_object_get(s, "active"));
    printf("Stack '%s'%s\n\n", cli_json_str(s, "name", name ? name : "?"),
           active ? " (active)" : "");
    static const char *const head[] = {"COMPONENT", "NAME", "FLAVOR", "CONFIG"};
    cli_table *t = cli_table_new(4, head);
    static const char *const types[] = {"orchestrator", "artifact_store"};
    for (size_t i = 0; i < 2; i++) {
      const json_t *comp = json_object_get(s, types[i]);
      char *cfg = cli_json_compact(json_object_get(comp, "config"));
      const char *row[] = {types[i], cli_json_str(comp, "name", "-"),
                           cli_json_str(comp, "flavor", "-"), cfg};
      cli_table_row(t, row);
      free(cfg);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
  }
  json_decref(s);
  zorch_free(text);
  zorch_client_free(c);
  return rc;
}

int cmd_stack_delete(const cli_cmd *cmd, int argc, char **argv) {
  const char *name;
  int r = cli_positional(cmd, argc, argv, 1, 1, &name);
  if (r >= 0) return r;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  int rc = CLI_EXIT_OK;
  if (zorch_stack_delete(c, name)) rc = cli_lib_error();
  else printf("Deleted stack '%s'.\n", name);
  zorch_client_free(c);
  return rc;
}
