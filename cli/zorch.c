/* zorch — the command-line interface: command table, parsing, help, errors.
 *
 * Exit statuses: 0 success, 1 a library error or a failed run, 2 a usage
 * error (unknown command or option), 130 a run stopped by Ctrl-C.
 */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- the commands ---------------------------------------------------------- */

#define COMPONENT_COMMANDS(word, type, what, a_what)                                                  \
  {word " flavor list", "", "List the " what " flavors",                                     \
   "Shows every registered flavor with its integration (\"built-in\" or the plugin's\n"       \
   "integration) and description.  Plugins that failed to load are reported on\n"             \
   "stderr as warnings.\n",                                                                   \
   cmd_flavor_list, type},                                                                    \
      {word " flavor describe", "NAME", "Show " a_what " flavor and its config schema",      \
       NULL, cmd_flavor_describe, type},                                                      \
      {word " register", "NAME --flavor FLAVOR [--config JSON | -c KEY=VALUE ...] [--replace]", \
       "Register " a_what,                                                                    \
       "Options:\n"                                                                           \
       "  -f, --flavor FLAVOR     the flavor (see 'zorch " word " flavor list')\n"              \
       "      --config JSON       the whole configuration as a JSON object\n"                 \
       "  -c, --config-value KEY=VALUE\n"                                                     \
       "                          one configuration key; VALUE is JSON when it parses as\n"   \
       "                          JSON, else a string (a key the flavor's schema types as\n"  \
       "                          a string always takes VALUE as it is); repeatable\n"        \
       "      --replace           replace " a_what " of the same name\n"                      \
       "The configuration is checked against the flavor's schema.\n",                         \
       cmd_component_register, type},                                                         \
      {word " list", "", "List the registered " what "s",                                     \
       "The ACTIVE column marks the one the active stack uses.\n", cmd_component_list, type},  \
      {word " delete", "NAME", "Delete " a_what " (refused while a stack uses it)", NULL,      \
       cmd_component_delete, type}

static const cli_cmd commands[] = {
    COMPONENT_COMMANDS("orchestrator", "orchestrator", "orchestrator", "an orchestrator"),
    COMPONENT_COMMANDS("artifact-store", "artifact_store", "artifact store", "an artifact store"),
    {"stack register", "NAME -o ORCHESTRATOR [-a ARTIFACT_STORE] [--set] [--replace]",
     "Register a stack of components",
     "Options:\n"
     "  -o, --orchestrator NAME     the orchestrator component\n"
     "  -a, --artifact-store NAME   the artifact store component (default: \"default\")\n"
     "      --set                   make the new stack the active one\n"
     "      --replace               replace a stack of the same name\n",
     cmd_stack_register, NULL},
    {"stack list", "", "List the stacks; the active one is marked", NULL, cmd_stack_list, NULL},
    {"stack set", "NAME", "Make a stack the active one", NULL, cmd_stack_set, NULL},
    {"stack describe", "[NAME]", "Show a stack (default: the active one) and its components",
     NULL, cmd_stack_describe, NULL},
    {"stack delete", "NAME", "Delete a stack (not \"default\", not the active one)", NULL,
     cmd_stack_delete, NULL},
    {"pipeline run",
     "FILE [--stack STACK] [--param KEY=JSON ...] [--name RUN_NAME] [--no-cache]\n"
     "                          [--max-parallel N] [--fail-fast | --stop-on-failure]",
     "Run a JSON pipeline spec and wait for it to end",
     "FILE is a JSON pipeline spec (docs/pipeline-spec.md); \"-\" reads stdin.\n"
     "\n"
     "Options:\n"
     "  -s, --stack STACK        run on this stack (default: the active stack)\n"
     "  -p, --param KEY=JSON     override a pipeline param; the value is JSON, so a\n"
     "                           string needs quotes: --param opt='\"adam\"'; repeatable\n"
     "  -n, --name RUN_NAME      name of the run (default: <pipeline>-<time>-<random>)\n"
     "      --no-cache           run every step even when its outputs are cached\n"
     "      --max-parallel N     run at most N steps at once\n"
     "      --fail-fast          when a step fails, stop running steps at once\n"
     "      --stop-on-failure    when a step fails, start no new step\n"
     "By default a failed step skips its downstream steps and independent steps go on.\n"
     "\n"
     "On a terminal a status line shows the steps done, running, failed and cached;\n"
     "otherwise one line is printed per finished step.  Ctrl-C stops the run and\n"
     "records it as stopped.\n"
     "\n"
     "Exit status: 0 completed, 1 failed (or an error), 130 stopped.\n",
     cmd_pipeline_run, NULL},
    {"pipeline validate", "FILE", "Check a JSON pipeline spec without running it", NULL,
     cmd_pipeline_validate, NULL},
    {"run list", "[--pipeline PIPELINE]", "List the runs of the active stack, newest first",
     "Options:\n"
     "  -p, --pipeline PIPELINE   only the runs of this pipeline\n",
     cmd_run_list, NULL},
    {"run show", "RUN", "Show a run (by id or name): status, timings, steps, outputs", NULL,
     cmd_run_show, NULL},
    {"run logs", "RUN [STEP]", "Print the logs of every step of a run, or of one step", NULL,
     cmd_run_logs, NULL},
    {"step run", "--zorch-step STEP --zorch-deployment PATH --zorch-run RUN_ID",
     "Run one command step of a run (the entrypoint flavors start in containers)",
     "Loads the deployment from the artifact store, gives the step's command its inputs\n"
     "($ZORCH_INPUT_<NAME>), output paths ($ZORCH_OUTPUT_<NAME>), params ($ZORCH_PARAM_<NAME>)\n"
     "and environment, runs it, stores the outputs it wrote and writes the step record\n"
     "and the cache entry.  Flavors that run steps elsewhere (local_docker) start this\n"
     "command; it is not meant to be typed.\n"
     "\n"
     "Exit status: 0 completed, 1 the step failed, 2 usage or deployment error.\n",
     cmd_step_run, NULL},
    {"image build",
     "NAME[:TAG] --program PATH [--add PATH ...] [--docker-host HOST] [--no-zorch]\n"
     "                          [--builder FLAVOR]",
     "Build a runnable image from the host program, without a base image or registry",
     "The image holds the program and its shared libraries, the zorch CLI and the\n"
     "flavor plugins (for command steps), CA certificates and /tmp, every file at its\n"
     "own absolute path.  An image-builder flavor builds it: the local_docker plugin's\n"
     "imports it into the Docker engine (or Podman's API service) at DOCKER_HOST.\n"
     "Name the image in a step's or pipeline's image setting, or in the local_docker\n"
     "orchestrator's \"image\" config.\n"
     "\n"
     "Options:\n"
     "  -p, --program PATH      the program whose steps the image runs\n"
     "  -a, --add PATH          another executable (with its libraries) or file, e.g. a\n"
     "                          tool a command step runs; a bare name is looked up in\n"
     "                          PATH; repeatable\n"
     "  -H, --docker-host HOST  the engine (unix:///path or tcp://host:port; default:\n"
     "                          $DOCKER_HOST, else unix:///var/run/docker.sock)\n"
     "      --no-zorch          leave out the zorch CLI and plugins\n"
     "  -b, --builder FLAVOR    the image-builder flavor (default: $ZORCH_IMAGE_BUILDER,\n"
     "                          else the only one loaded: local_docker)\n"
     "\n"
     "Prints the image name and its id.\n",
     cmd_image_build, NULL},
    {"pipeline schedule", "FILE --cron SCHEDULE [--stack STACK] [--name NAME]",
     "Run a JSON pipeline spec on a cron schedule (flavors with schedules: kubernetes)",
     "The pipeline is compiled now and stored in the artifact store as\n"
     "schedules/<name>/deployment.json; the orchestrator starts it as a new run at\n"
     "each time of the schedule (on kubernetes: a CronJob).\n"
     "\n"
     "Options:\n"
     "  -c, --cron SCHEDULE      five cron fields, e.g. '0 3 * * *', or @daily ...\n"
     "  -s, --stack STACK        the stack (default: the active stack)\n"
     "  -n, --name NAME          the schedule's name (default: <pipeline>-<time>-<random>)\n"
     "\n"
     "Prints the schedule's id.\n",
     cmd_pipeline_schedule, NULL},
    {"schedule list", "[--stack STACK]", "List the schedules of a stack's orchestrator",
     "Options:\n"
     "  -s, --stack STACK   the stack (default: the active stack)\n",
     cmd_schedule_list, NULL},
    {"schedule delete", "ID [--stack STACK]", "Delete a schedule",
     "Options:\n"
     "  -s, --stack STACK   the stack (default: the active stack)\n",
     cmd_schedule_delete, NULL},
    {"deployment run",
     "PATH [--stack STACK | --flavor FLAVOR [--config JSON | --config-env VAR]] [--new-run] [--no-cache]",
     "Run a deployment stored in an artifact store (what an orchestrator pod runs)",
     "Continues the run the deployment names (same id), or with --new-run starts a\n"
     "new run from it (what a scheduled job does).  With --flavor the command makes\n"
     "a stack 'deployment' in its home: the orchestrator FLAVOR with the config\n"
     "given (--config JSON, or the JSON in the environment variable --config-env\n"
     "names) and the artifact store at the deployment's path.  --no-cache runs every\n"
     "step even when its outputs are cached.  Flavors start this\n"
     "command in the cluster; it is not meant to be typed.\n"
     "\n"
     "Exit status: 0 completed, 1 failed (or an error), 130 stopped.\n",
     cmd_deployment_run, NULL},
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

/* ---- errors and warnings ------------------------------------------------------ */

int cli_error(const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cli_println(stderr, "zorch: error: %s", msg);
  return CLI_EXIT_FAILED;
}

int cli_lib_error(void) { return cli_error("%s", zorch_error_last()->message); }

void cli_warning(const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cli_println(stderr, "zorch: warning: %s", msg);
}

static void log_cb(int level, const char *domain, const char *message, void *payload) {
  (void)payload;
  const char *what = level <= ZORCH_LOG_ERROR     ? "error"
                     : level == ZORCH_LOG_WARNING ? "warning"
                     : level == ZORCH_LOG_INFO    ? "info"
                                                  : "debug";
  if (domain && strcmp(domain, "zorch") != 0)
    cli_println(stderr, "zorch: %s: %s: %s", what, domain, message);
  else
    cli_println(stderr, "zorch: %s: %s", what, message);
}

zorch_client *cli_client_open(bool log_plugin_problems) {
  zorch_client_options o = ZORCH_CLIENT_OPTIONS_INIT;
  /* Plugins that fail to load are logged while the client opens; the flavor
   * commands list them themselves (from zorch_flavor_problems()), so they
   * install the callback only afterwards to say it once. */
  if (log_plugin_problems) o.log_cb = log_cb;
  zorch_client *c = NULL;
  if (zorch_client_new(&c, &o)) {
    cli_lib_error();
    return NULL;
  }
  if (!log_plugin_problems) zorch_client_set_log(c, 0, log_cb, NULL);
  return c;
}

/* ---- usage and help --------------------------------------------------------------- */

void cli_print_help(const cli_cmd *cmd, FILE *f) {
  fprintf(f, "Usage: zorch %s%s%s\n\n%s.\n", cmd->path, *cmd->args ? " " : "", cmd->args,
          cmd->summary);
  if (cmd->help) fprintf(f, "\n%s", cmd->help);
}

int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "zorch: %s\nUsage: zorch %s%s%s\nRun 'zorch %s --help' for more.\n", msg,
          cmd->path, *cmd->args ? " " : "", cmd->args, cmd->path);
  return CLI_EXIT_USAGE;
}

int cli_opt_exit(const cli_cmd *cmd, int r) {
  if (r == CLI_OPT_HELP) {
    cli_print_help(cmd, stdout);
    return CLI_EXIT_OK;
  }
  return CLI_EXIT_USAGE; /* CLI_OPT_ERROR: already reported */
}

/* Does command `c` lie under the group of words argv[0..n-1]? */
static bool in_group(const cli_cmd *c, int n, char **words) {
  const char *p = c->path;
  for (int i = 0; i < n; i++) {
    size_t len = strlen(words[i]);
    if (strncmp(p, words[i], len) != 0 || (p[len] != ' ' && p[len] != '\0')) return false;
    p += len;
    if (*p == ' ') p++;
    else if (i + 1 < n) return false;
  }
  return true;
}

static int list_width(int n, char **words) {
  size_t width = strlen("help [COMMAND]");
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (in_group(&commands[i], n, words) && strlen(commands[i].path) > width)
      width = strlen(commands[i].path);
  return (int)width;
}

static void print_command_list(FILE *f, int n, char **words) {
  int width = list_width(n, words);
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (in_group(&commands[i], n, words))
      fprintf(f, "  %-*s  %s\n", width, commands[i].path, commands[i].summary);
}

static void print_main_help(FILE *f) {
  fprintf(f,
          "Usage: zorch [--version] [--help] COMMAND [ARGS...]\n"
          "\n"
          "Run machine-learning pipelines on a stack of components (an orchestrator\n"
          "and an artifact store).\n"
          "\n"
          "Commands:\n");
  print_command_list(f, 0, NULL);
  fprintf(f, "  %-*s  %s\n", list_width(0, NULL), "help [COMMAND]", "Show help for a command");
  fprintf(f, "  %-*s  %s\n", list_width(0, NULL), "version", "Show the version");
  fprintf(f,
          "\n"
          "Run 'zorch COMMAND --help' for the options of a command.\n"
          "\n"
          "Environment:\n"
          "  ZORCH_HOME         where zorch keeps its configuration and the default\n"
          "                     artifact store (default: $XDG_DATA_HOME/zorch or\n"
          "                     ~/.local/share/zorch)\n"
          "  ZORCH_PLUGIN_PATH  extra ':'-separated directories of flavor plugins\n"
          "  ZORCH_LOG_LEVEL    error, warning (default), info or debug\n"
          "  NO_COLOR           no colours on a terminal\n");
}

/* Is `path` exactly words[0..n-1] joined by spaces? */
static bool path_is(const char *path, int n, char **words) {
  for (int i = 0; i < n; i++) {
    size_t len = strlen(words[i]);
    if (strncmp(path, words[i], len) != 0) return false;
    path += len;
    if (i + 1 < n) {
      if (*path != ' ') return false;
      path++;
    }
  }
  return *path == '\0';
}

/* The command named by the longest prefix of words, or NULL; *used words. */
static const cli_cmd *find_command(int n, char **words, int *used) {
  for (int k = n; k > 0; k--)
    for (size_t i = 0; i < NCOMMANDS; i++)
      if (path_is(commands[i].path, k, words)) {
        *used = k;
        return &commands[i];
      }
  *used = 0;
  return NULL;
}

/* Words that name a group but no command: the longest such prefix. */
static int group_prefix(int n, char **words) {
  int k = 0;
  while (k < n) {
    bool any = false;
    for (size_t i = 0; i < NCOMMANDS && !any; i++) any = in_group(&commands[i], k + 1, words);
    if (!any) break;
    k++;
  }
  return k;
}

static int unknown_command(int n, char **words, bool help_only) {
  int k = group_prefix(n, words);
  char group[256] = "zorch";
  for (int i = 0; i < k; i++) {
    size_t l = strlen(group);
    snprintf(group + l, sizeof group - l, " %s", words[i]);
  }
  if (help_only) {
    if (k == n && k > 0) { /* a group: list its commands */
      printf("Usage: %s COMMAND [ARGS...]\n\nCommands:\n", group);
      print_command_list(stdout, k, words);
      return CLI_EXIT_OK;
    }
  }
  if (k < n)
    fprintf(stderr, "zorch: unknown command '%s' for '%s'\n", words[k], group);
  else
    fprintf(stderr, "zorch: '%s' needs a command\n", group);
  if (k == 0) {
    fprintf(stderr, "Run 'zorch --help' for the list of commands.\n");
  } else {
    fprintf(stderr, "Usage: %s COMMAND [ARGS...]\n\nCommands:\n", group);
    print_command_list(stderr, k, words);
  }
  return CLI_EXIT_USAGE;
}

static int do_help(int n, char **words) {
  if (n == 0) {
    print_main_help(stdout);
    return CLI_EXIT_OK;
  }
  int used;
  const cli_cmd *c = find_command(n, words, &used);
  if (c && used == n) {
    cli_print_help(c, stdout);
    return CLI_EXIT_OK;
  }
  return unknown_command(n, words, true);
}

static int do_version(void) {
  printf("zorch %s\n", zorch_version());
  return CLI_EXIT_OK;
}

/* ---- argument parsing ------------------------------------------------------------------ */

void cli_parser_init(cli_parser *p, const cli_cmd *cmd, const cli_opt *opts, int argc,
                     char **argv) {
  p->cmd = cmd;
  p->opts = opts;
  p->argc = argc;
  p->argv = argv;
  p->i = 0;
  p->only_positional = false;
}

int cli_getopt(cli_parser *p, const char **val) {
  *val = NULL;
  if (p->i >= p->argc) return CLI_OPT_END;
  const char *a = p->argv[p->i++];
  if (p->only_positional || a[0] != '-' || a[1] == '\0') {
    *val = a;
    return CLI_OPT_POSITIONAL;
  }
  if (strcmp(a, "--") == 0) {
    p->only_positional = true;
    return cli_getopt(p, val);
  }
  if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return CLI_OPT_HELP;
  int found = -1;
  const char *inline_val = NULL;
  if (a[1] == '-') {
    const char *name = a + 2;
    size_t len = strcspn(name, "=");
    for (int k = 0; p->opts && p->opts[k].name; k++)
      if (strlen(p->opts[k].name) == len && strncmp(p->opts[k].name, name, len) == 0) found = k;
    if (found >= 0 && name[len] == '=') inline_val = name + len + 1;
  } else {
    for (int k = 0; p->opts && p->opts[k].name; k++)
      if (p->opts[k].short_name && p->opts[k].short_name == a[1]) found = k;
    if (found >= 0 && a[2]) {
      if (!p->opts[found].arg) found = -1; /* no bundling of flags */
      else inline_val = a + 2;
    }
  }
  if (found < 0) {
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(a, "="), a);
    cli_usage_error(p->cmd, "unknown option '%s' for 'zorch %s'", name, p->cmd->path);
    return CLI_OPT_ERROR;
  }
  const cli_opt *o = &p->opts[found];
  if (!o->arg) {
    if (inline_val) {
      cli_usage_error(p->cmd, "option '--%s' takes no value", o->name);
      return CLI_OPT_ERROR;
    }
    return found;
  }
  if (inline_val) {
    *val = inline_val;
    return found;
  }
  if (p->i >= p->argc) {
    cli_usage_error(p->cmd, "option '%s' needs a value", a);
    return CLI_OPT_ERROR;
  }
  *val = p->argv[p->i++];
  return found;
}

int cli_positional(const cli_cmd *cmd, int argc, char **argv, int min, int max,
                   const char **out) {
  static const cli_opt none[] = {{NULL, 0, false}};
  cli_parser p;
  cli_parser_init(&p, cmd, none, argc, argv);
  int n = 0, r;
  const char *v;
  while ((r = cli_getopt(&p, &v)) != CLI_OPT_END) {
    if (r != CLI_OPT_POSITIONAL) return cli_opt_exit(cmd, r);
    if (n == max) return cli_usage_error(cmd, "unexpected argument '%s'", v);
    out[n++] = v;
  }
  if (n < min) return cli_usage_error(cmd, "missing argument");
  for (int k = n; k < max; k++) out[k] = NULL;
  return -1;
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  int n = argc - 1;
  char **words = argv + 1;
  if (n == 0) {
    print_main_help(stderr);
    return CLI_EXIT_USAGE;
  }
  if (words[0][0] == '-') {
    if (!strcmp(words[0], "--version") || !strcmp(words[0], "-V")) return do_version();
    if (!strcmp(words[0], "--help") || !strcmp(words[0], "-h")) return do_help(0, NULL);
    fprintf(stderr, "zorch: unknown option '%s'\n", words[0]);
    fprintf(stderr, "Usage: zorch [--version] [--help] COMMAND [ARGS...]\n"
                    "Run 'zorch --help' for the list of commands.\n");
    return CLI_EXIT_USAGE;
  }
  if (!strcmp(words[0], "help")) return do_help(n - 1, words + 1);
  if (!strcmp(words[0], "version")) {
    if (n > 1) {
      fprintf(stderr, "zorch: unexpected argument '%s'\nUsage: zorch version\n", words[1]);
      return CLI_EXIT_USAGE;
    }
    return do_version();
  }
  int used;
  const cli_cmd *c = find_command(n, words, &used);
  if (!c) {
    /* "zorch stack --help": help for a group */
    int k = group_prefix(n, words);
    if (k > 0 && k < n && (!strcmp(words[k], "--help") || !strcmp(words[k], "-h")))
      return unknown_command(k, words, true);
    return unknown_command(n, words, false);
  }
  return c->fn(c, n - used, words + used);
}
