/* zorch CLI — running stored deployments (`deployment run`, what an
 * orchestrator pod or a scheduled job runs) and schedules (`pipeline
 * schedule`, `schedule list`, `schedule delete`). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The stack a stored deployment runs on inside a cluster: its artifact store
 * at the deployment's path, the orchestrator flavor and config given. */
static int make_stack(zorch_client *c, const char *deployment_path, const char *flavor, const char *config) {
  char *text = cli_read_file(deployment_path);
  if (!text) return CLI_EXIT_FAILED;
  json_t *doc = cli_parse_json(text);
  free(text);
  if (!doc) return CLI_EXIT_FAILED;
  const char *store = cli_json_str(json_object_get(doc, "artifact_store"), "path", NULL);
  if (!store) {
    json_decref(doc);
    return cli_error("%s: the deployment names no artifact store path", deployment_path);
  }
  json_t *sc = json_pack("{s:s}", "path", store);
  char *scfg = json_dumps(sc, JSON_COMPACT);
  json_decref(sc);
  json_decref(doc);
  int rc = zorch_component_register(c, "artifact_store", "deployment-store", "local", scfg, 1);
  free(scfg);
  if (!rc) rc = zorch_component_register(c, "orchestrator", "deployment-orchestrator", flavor, config, 1);
  if (!rc) rc = zorch_stack_register(c, "deployment", "deployment-orchestrator", "deployment-store", 1);
  return rc ? cli_lib_error() : CLI_EXIT_OK;
}

/* In a pod, deleting it sends SIGTERM: stop the run cleanly (its steps'
 * pods deleted, the run recorded as stopped) within the grace period. */
static zorch_run *volatile term_run;

static void on_sigterm(int sig) {
  (void)sig;
  zorch_run *r = term_run;
  if (r) zorch_run_cancel(r); /* async-signal-safe */
}

int cmd_deployment_run(const cli_cmd *cmd, int argc, char **argv) {
  static const cli_opt opts[] = {{"stack", 's', true},      {"flavor", 0, true}, {"config", 0, true},
                                 {"config-env", 0, true},   {"new-run", 0, false}, {"no-cache", 0, false},
                                 {NULL, 0, false}};
  enum { O_STACK, O_FLAVOR, O_CONFIG, O_CONFIG_ENV, O_NEW, O_NO_CACHE };
  zorch_run_options ro = ZORCH_RUN_OPTIONS_INIT;
  const char *file = NULL, *flavor = NULL, *config = NULL;
  cli_parser p;
  cli_parser_init(&p, cmd, opts, argc, argv);
  int r, rc = -1;
  const char *v;
  while (rc < 0 && (r = cli_getopt(&p, &v)) != CLI_OPT_END) {
    switch (r) {
    case O_STACK: ro.stack = v; break;
    case O_FLAVOR: flavor = v; break;
    case O_CONFIG: config = v; break;
    case O_CONFIG_ENV:
      config = getenv(v);
      if (!config) rc = cli_usage_error(cmd, "--config-env %s: the variable is not set", v);
      break;
    case O_NEW: ro.flags |= ZORCH_RUN_NEW_ID; break;
    case O_NO_CACHE: ro.flags |= ZORCH_RUN_NO_CACHE; break;
    case CLI_OPT_POSITIONAL:
      if (file) rc = cli_usage_error(cmd, "unexpected argument '%s'", v);
      file = v;
      break;
    default: rc = cli_opt_exit(cmd, r);
    }
  }
  if (rc < 0 && !file) rc = cli_usage_error(cmd, "missing the deployment PATH");
  if (rc < 0 && flavor && ro.stack) rc = cli_usage_error(cmd, "--flavor and --stack exclude each other");
  if (rc < 0 && config && !flavor) rc = cli_usage_error(cmd, "--config needs --flavor");
  if (rc >= 0) return rc;
  ro.flags |= ZORCH_RUN_HANDLE_SIGINT;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  if (flavor) {
    rc = make_stack(c, file, flavor, config);
    if (rc) {
      zorch_client_free(c);
      return rc;
    }
    ro.stack = "deployment";
  }
  zorch_run *run = NULL;
  if (zorch_run_start_deployment(&run, c, file, &ro)) {
    rc = cli_lib_error();
    zorch_client_free(c);
    return rc;
  }
  printf("Running pipeline '%s': run %s (id %s)\n", zorch_run_pipeline_name(run), zorch_run_name(run),
         zorch_run_id(run));
  fflush(stdout);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigterm;
  sigemptyset(&sa.sa_mask);
  term_run = run;
  sigaction(SIGTERM, &sa, &old);
  int wrc = zorch_run_wait(run, -1);
  sigaction(SIGTERM, &old, NULL);
  term_run = NULL;
  char message[2048];
  snprintf(message, sizeof message, "%s", zorch_error_last()->message);
  cli_print_run_summary(run);
  fflush(stdout);
  switch (wrc) {
  case ZORCH_OK: rc = CLI_EXIT_OK; break;
  case ZORCH_ECANCELLED: rc = CLI_EXIT_STOPPED; break;
  default: rc = cli_error("%s", message);
  }
  zorch_run_free(run);
  zorch_client_free(c);
  return rc;
}

int cmd_pipeline_schedule(const cli_cmd *cmd, int argc, char **argv) {
  static const cli_opt opts[] = {{"stack", 's', true}, {"cron", 'c', true}, {"name", 'n', true},
                                 {NULL, 0, false}};
  enum { O_STACK, O_CRON, O_NAME };
  zorch_run_options ro = ZORCH_RUN_OPTIONS_INIT;
  const char *file = NULL, *cron = NULL;
  cli_parser p;
  cli_parser_init(&p, cmd, opts, argc, argv);
  int r, rc = -1;
  const char *v;
  while (rc < 0 && (r = cli_getopt(&p, &v)) != CLI_OPT_END) {
    switch (r) {
    case O_STACK: ro.stack = v; break;
    case O_CRON: cron = v; break;
    case O_NAME: ro.run_name = v; break;
    case CLI_OPT_POSITIONAL:
      if (file) rc = cli_usage_error(cmd, "unexpected argument '%s'", v);
      file = v;
      break;
    default: rc = cli_opt_exit(cmd, r);
    }
  }
  if (rc < 0 && !file) rc = cli_usage_error(cmd, "missing the pipeline spec FILE");
  if (rc < 0 && !cron) rc = cli_usage_error(cmd, "missing --cron SCHEDULE (e.g. --cron '0 3 * * *')");
  if (rc >= 0) return rc;
  char *text = cli_read_file(file);
  if (!text) return CLI_EXIT_FAILED;
  zorch_pipeline *pl = NULL;
  if (zorch_pipeline_from_spec(&pl, text, strcmp(file, "-") == 0 ? "<stdin>" : file)) {
    free(text);
    return cli_lib_error();
  }
  free(text);
  zorch_client *c = cli_client_open(true);
  if (!c) {
    zorch_pipeline_free(pl);
    return CLI_EXIT_FAILED;
  }
  char *id = NULL;
  if (zorch_schedule_create(&id, c, pl, cron, &ro)) {
    rc = cli_lib_error();
  } else {
    printf("Scheduled pipeline '%s' (%s): %s\n", zorch_pipeline_name(pl), cron, id);
    rc = CLI_EXIT_OK;
  }
  zorch_free(id);
  zorch_pipeline_free(pl);
  zorch_client_free(c);
  return rc;
}

static int stack_only(const cli_cmd *cmd, int argc, char **argv, const char **stack, const char **id,
                      bool want_id) {
  static const cli_opt opts[] = {{"stack", 's', true}, {NULL, 0, false}};
  cli_parser p;
  cli_parser_init(&p, cmd, opts, argc, argv);
  int r;
  const char *v;
  while ((r = cli_getopt(&p, &v)) != CLI_OPT_END) {
    if (r == 0) {
      *stack = v;
    } else if (r == CLI_OPT_POSITIONAL) {
      if (!want_id || *id) return cli_usage_error(cmd, "unexpected argument '%s'", v);
      *id = v;
    } else {
      return cli_opt_exit(cmd, r);
    }
  }
  if (want_id && !*id) return cli_usage_error(cmd, "missing the schedule ID");
  return -1;
}

int cmd_schedule_list(const cli_cmd *cmd, int argc, char **argv) {
  const char *stack = NULL, *id = NULL;
  int rc = stack_only(cmd, argc, argv, &stack, &id, false);
  if (rc >= 0) return rc;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  char *json = NULL;
  if (zorch_schedule_list(&json, c, stack)) {
    rc = cli_lib_error();
    zorch_client_free(c);
    return rc;
  }
  json_t *a = cli_parse_json(json);
  zorch_free(json);
  if (!a) {
    zorch_client_free(c);
    return CLI_EXIT_FAILED;
  }
  static const char *const head[] = {"ID", "CRON", "PIPELINE", "CREATED"};
  cli_table *t = cli_table_new(4, head);
  size_t i;
  json_t *s;
  json_array_foreach(a, i, s) {
    const char *row[] = {cli_json_str(s, "id", ""), cli_json_str(s, "cron", ""), cli_json_str(s, "pipeline", ""),
                         cli_json_str(s, "created", "")};
    cli_table_row(t, row);
  }
  cli_table_print(t, stdout);
  cli_table_free(t);
  json_decref(a);
  zorch_client_free(c);
  return CLI_EXIT_OK;
}

int cmd_schedule_delete(const cli_cmd *cmd, int argc, char **argv) {
  const char *stack = NULL, *id = NULL;
  int rc = stack_only(cmd, argc, argv, &stack, &id, true);
  if (rc >= 0) return rc;
  zorch_client *c = cli_client_open(true);
  if (!c) return CLI_EXIT_FAILED;
  if (zorch_schedule_delete(c, stack, id)) {
    rc = cli_lib_error();
  } else {
    printf("Deleted schedule %s\n", id);
    rc = CLI_EXIT_OK;
  }
  zorch_client_free(c);
  return rc;
}
