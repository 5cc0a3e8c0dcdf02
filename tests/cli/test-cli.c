/* zorch — the `zorch` command, run as a user runs it.
 *
 * Each test runs the built CLI ($ZORCH_COMMAND) with a fresh ZORCH_HOME;
 * its stdout is a pipe (zt_run), except where a test gives it a terminal.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zorch-check.h"

/* ---- helpers ---------------------------------------------------------------- */

static const char *zorch_cmd(void) {
  const char *z = getenv("ZORCH_COMMAND");
  ck_assert_msg(z && *z, "ZORCH_COMMAND is not set (run the tests with meson test)");
  return z;
}

/* Run `zorch ARGS...` (NULL-terminated) with ZORCH_HOME=home; *out gets
 * stdout and stderr together. */
static int zorch_v(char **out, const char *home, va_list ap) {
  const char *argv[64];
  size_t n = 0;
  argv[n++] = zorch_cmd();
  const char *a;
  while ((a = va_arg(ap, const char *)) && n < 63) argv[n++] = a;
  argv[n] = NULL;
  char *env_home = NULL;
  if (asprintf(&env_home, "ZORCH_HOME=%s", home) < 0) abort();
  const char *env[] = {env_home, "NO_COLOR=", "ZORCH_LOG_LEVEL=warning", NULL};
  int rc = zt_run(out, argv, env);
  free(env_home);
  return rc;
}

static int zorch(char **out, const char *home, ...) {
  va_list ap;
  va_start(ap, home);
  int rc = zorch_v(out, home, ap);
  va_end(ap);
  return rc;
}

/* Run and assert the exit status, printing the output when it differs. */
static char *zorch_expect(int want, const char *home, ...) {
  char *out = NULL;
  va_list ap;
  va_start(ap, home);
  int rc = zorch_v(&out, home, ap);
  va_end(ap);
  ck_assert_msg(rc == want, "exit status %d, wanted %d; output:\n%s", rc, want, out);
  return out;
}

#define assert_has(hay, needle) \
  ck_assert_msg(strstr((hay), (needle)) != NULL, "output lacks \"%s\":\n%s", (needle), (hay))
#define assert_lacks(hay, needle) \
  ck_assert_msg(strstr((hay), (needle)) == NULL, "output has \"%s\":\n%s", (needle), (hay))

/* The line of `text` whose first word is `word` (a copy), or NULL. */
static char *line_starting(const char *text, const char *word) {
  size_t wl = strlen(word);
  for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    const char *s = l;
    while (*s == ' ' || *s == '*') s++;
    if (strncmp(s, word, wl) == 0 && (s[wl] == ' ' || s[wl] == '\n' || s[wl] == '\0'))
      return strndup(l, strcspn(l, "\n"));
  }
  return NULL;
}

static void assert_line_has(const char *text, const char *word, const char *needle) {
  char *line = line_starting(text, word);
  ck_assert_msg(line != NULL, "no line starts with \"%s\" in:\n%s", word, text);
  ck_assert_msg(strstr(line, needle) != NULL, "line \"%s\" lacks \"%s\"; output:\n%s", line,
                needle, text);
  free(line);
}

static void assert_plain(const char *text) {
  ck_assert_msg(strchr(text, '\033') == NULL, "ANSI escape in output to a pipe:\n%s", text);
  ck_assert_msg(strchr(text, '\r') == NULL, "carriage return in output to a pipe:\n%s", text);
}

static char *write_file(const char *dir, const char *name, const char *text) {
  char *path = NULL;
  if (asprintf(&path, "%s/%s", dir, name) < 0) abort();
  FILE *f = fopen(path, "w");
  ck_assert_msg(f != NULL, "cannot write %s", path);
  fputs(text, f);
  fclose(f);
  return path;
}

/* A whole file, or NULL when it cannot be read. */
static char *read_whole(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, n, m);
  fclose(f);
  fclose(m);
  return buf;
}

/* The run id printed by `pipeline run` ("Run: NAME (id ID)"). */
static char *run_id_of(const char *out) {
  const char *p = strstr(out, "(id ");
  ck_assert_msg(p != NULL, "no run id in:\n%s", out);
  p += 4;
  return strndup(p, strcspn(p, ")"));
}

static char *run_name_of(const char *out) {
  const char *p = strstr(out, "Run: ");
  ck_assert_msg(p != NULL, "no run name in:\n%s", out);
  p += 5;
  return strndup(p, strcspn(p, " "));
}

/* Three command steps: make -> count -> report, passing files. */
static const char etl_spec[] =
    "{\"zorch_pipeline\": 1, \"name\": \"etl\", \"params\": {\"rows\": 100},\n"
    " \"steps\": [\n"
    "  {\"name\": \"make\", \"command\": [\"sh\", \"-c\", \"seq $ZORCH_PARAM_ROWS > "
    "$ZORCH_OUTPUT_DATA; echo made rows\"],\n"
    "   \"outputs\": [\"data\"], \"params\": [\"rows\"]},\n"
    "  {\"name\": \"count\", \"command\": [\"sh\", \"-c\", \"wc -l < $ZORCH_INPUT_DATA | tr -d ' ' "
    "> $ZORCH_OUTPUT_N; echo counted $(cat $ZORCH_OUTPUT_N) lines\"],\n"
    "   \"inputs\": {\"data\": \"make.data\"}, \"outputs\": [\"n\"]},\n"
    "  {\"name\": \"report\", \"command\": [\"sh\", \"-c\", \"echo REPORT-MARKER n=$(cat "
    "$ZORCH_INPUT_N)\"],\n"
    "   \"inputs\": {\"n\": \"count.n\"}}\n"
    " ]}\n";

/* ---- usage ----------------------------------------------------------------------- */

START_TEST(test_version_and_help) {
  const char *home = zt_tmpdir();
  char *out = zorch_expect(0, home, "--version", NULL);
  assert_has(out, "zorch ");
  assert_has(out, zorch_version());
  free(out);
  out = zorch_expect(0, home, "help", NULL);
  assert_has(out, "pipeline run");
  assert_has(out, "orchestrator flavor list");
  assert_has(out, "stack register");
  assert_has(out, "run logs");
  free(out);
  out = zorch_expect(0, home, "--help", NULL);
  assert_has(out, "Usage: zorch");
  free(out);
  out = zorch_expect(0, home, "pipeline", "run", "--help", NULL);
  assert_has(out, "Usage: zorch pipeline run FILE");
  assert_has(out, "--no-cache");
  assert_has(out, "--max-parallel");
  free(out);
  out = zorch_expect(0, home, "help", "stack", NULL);
  assert_has(out, "stack set");
  free(out);
  out = zorch_expect(0, home, "stack", "--help", NULL);
  assert_has(out, "stack describe");
  free(out);
}
END_TEST

START_TEST(test_unknown_command_and_option) {
  const char *home = zt_tmpdir();
  char *out = zorch_expect(2, home, "frobnicate", NULL);
  assert_has(out, "unknown command 'frobnicate'");
  free(out);
  out = zorch_expect(2, home, "stack", "frobnicate", NULL);
  assert_has(out, "unknown command 'frobnicate' for 'zorch stack'");
  assert_has(out, "stack register"); /* the usage lists the commands */
  free(out);
  out = zorch_expect(2, home, "stack", "list", "--frob", NULL);
  assert_has(out, "unknown option '--frob'");
  assert_has(out, "Usage: zorch stack list");
  free(out);
  out = zorch_expect(2, home, "--frob", NULL);
  assert_has(out, "unknown option '--frob'");
  free(out);
  out = zorch_expect(2, home, "stack", NULL);
  assert_has(out, "needs a command");
  free(out);
  out = zorch_expect(2, home, "stack", "register", "dev", NULL);
  assert_has(out, "missing -o ORCHESTRATOR");
  free(out);
  out = zorch_expect(2, home, "pipeline", "run", NULL);
  assert_has(out, "missing the pipeline spec FILE");
  free(out);
  out = zorch_expect(2, home, "pipeline", "run", "x.json", "--fail-fast", "--stop-on-failure",
                     NULL);
  assert_has(out, "exclude each other");
  free(out);
  out = zorch_expect(2, home, "pipeline", "run", "x.json", "--param", "opt=adam", NULL);
  assert_has(out, "--param opt=adam: the value is not JSON");
  free(out);
  out = zorch_expect(2, home, "orchestrator", "register", "o", "--flavor", "local", "--config",
                     "{}", "-c", "max_parallel=2", NULL);
  assert_has(out, "either --config or -c");
  free(out);
  /* the command-step entrypoint wants all three of its arguments */
  out = zorch_expect(2, home, "step", "run", NULL);
  assert_has(out, "needs --zorch-step, --zorch-deployment and --zorch-run");
  free(out);
  out = zorch_expect(2, home, "step", "run", "--zorch-step", "x", "--zorch-run", NULL);
  assert_has(out, "--zorch-run needs a value");
  free(out);
}
END_TEST

/* ---- flavors, components, stacks ------------------------------------------------------ */

START_TEST(test_flavor_list) {
  const char *home = zt_tmpdir();
  char *out = zorch_expect(0, home, "orchestrator", "flavor", "list", NULL);
  assert_has(out, "NAME");
  assert_has(out, "INTEGRATION");
  assert_has(out, "DESCRIPTION");
  assert_line_has(out, "local", "built-in");
  assert_plain(out);
  free(out);
  out = zorch_expect(0, home, "orchestrator", "flavor", "describe", "local", NULL);
  assert_has(out, "Flavor:       local (orchestrator)");
  assert_has(out, "Config schema:");
  assert_has(out, "Capabilities: in_process, local_store\n");
  assert_has(out, "Step settings schema (settings.flavor.local):\n(none: zorch checks no step "
                  "settings of this flavor)\n");
  assert_has(out, "\"type\": \"object\"");
  free(out);
  out = zorch_expect(1, home, "orchestrator", "flavor", "describe", "no-such-flavor", NULL);
  assert_has(out, "zorch: error: ");
  assert_has(out, "no-such-flavor");
  free(out);
}
END_TEST

/* A broken plugin is a warning, said once; the good flavors are still listed. */
START_TEST(test_flavor_list_warns_about_broken_plugin) {
  const char *home = zt_tmpdir();
  const char *dir = zt_tmpdir();
  free(write_file(dir, "zorch-flavor-broken.so", "not an ELF file\n"));
  const char *good = getenv("ZORCH_PLUGIN_PATH");
  char *path = NULL, *env_home = NULL;
  if (asprintf(&path, "ZORCH_PLUGIN_PATH=%s:%s", good ? good : "", dir) < 0) abort();
  if (asprintf(&env_home, "ZORCH_HOME=%s", home) < 0) abort();
  const char *env[] = {path, env_home, NULL};
  const char *argv[] = {zorch_cmd(), "orchestrator", "flavor", "list", NULL};
  char *out = NULL;
  int rc = zt_run(&out, argv, env);
  ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
  assert_line_has(out, "local", "built-in");
  assert_has(out, "zorch: warning: plugin not loaded: ");
  size_t mentions = 0;
  for (const char *p = out; (p = strstr(p, "zorch-flavor-broken.so")); p++) mentions++;
  ck_assert_msg(mentions == 1, "the broken plugin is named %zu times, wanted once:\n%s", mentions,
                out);
  free(out);
  free(path);
  free(env_home);
}
END_TEST

START_TEST(test_stack_round_trip) {
  const char *home = zt_tmpdir();
  char *out = zorch_expect(0, home, "orchestrator", "register", "fast", "--flavor", "local", "-c",
                           "max_parallel=4", NULL);
  free(out);
  out = zorch_expect(0, home, "orchestrator", "list", NULL);
  assert_line_has(out, "fast", "local");
  assert_line_has(out, "fast", "{\"max_parallel\":4}"); /* -c took 4 as a number */
  free(out);
  out = zorch_expect(0, home, "stack", "register", "dev", "-o", "fast", NULL);
  free(out);
  out = zorch_expect(1, home, "stack", "register", "dev", "-o", "fast", NULL);
  assert_has(out, "zorch: error: ");
  free(out);

  out = zorch_expect(0, home, "stack", "list", NULL);
  assert_has(out, "STACK NAME");
  assert_line_has(out, "dev", "fast");
  assert_line_has(out, "default", "default");
  char *line = line_starting(out, "default");
  ck_assert_msg(line && line[0] == '*', "default is not marked active:\n%s", out);
  free(line);
  line = line_starting(out, "dev");
  ck_assert_msg(line && line[0] != '*', "dev is marked active:\n%s", out);
  free(line);
  free(out);

  out = zorch_expect(0, home, "stack", "set", "dev", NULL);
  assert_has(out, "'dev'");
  free(out);
  out = zorch_expect(0, home, "stack", "list", NULL);
  line = line_starting(out, "dev");
  ck_assert_msg(line && line[0] == '*', "dev is not marked active after set:\n%s", out);
  free(line);
  line = line_starting(out, "default");
  ck_assert_msg(line && line[0] != '*', "default is still marked active:\n%s", out);
  free(line);
  free(out);

  out = zorch_expect(0, home, "stack", "describe", NULL);
  assert_has(out, "Stack 'dev' (active)");
  assert_line_has(out, "orchestrator", "fast");
  assert_line_has(out, "orchestrator", "local");
  assert_line_has(out, "artifact_store", "default");
  free(out);
  out = zorch_expect(0, home, "stack", "describe", "default", NULL);
  assert_has(out, "Stack 'default'");
  assert_lacks(out, "(active)");
  free(out);

  /* the orchestrator list marks the one the active stack uses */
  out = zorch_expect(0, home, "orchestrator", "list", NULL);
  line = line_starting(out, "fast");
  ck_assert_msg(line && line[0] == '*', "fast is not marked in use:\n%s", out);
  free(line);
  free(out);

  /* in use: neither the stack nor its orchestrator can go */
  out = zorch_expect(1, home, "stack", "delete", "dev", NULL);
  assert_has(out, "zorch: error: ");
  free(out);
  out = zorch_expect(1, home, "orchestrator", "delete", "fast", NULL);
  assert_has(out, "zorch: error: ");
  free(out);
  free(zorch_expect(0, home, "stack", "set", "default", NULL));
  free(zorch_expect(0, home, "stack", "delete", "dev", NULL));
  free(zorch_expect(0, home, "orchestrator", "delete", "fast", NULL));
  out = zorch_expect(0, home, "stack", "list", NULL);
  ck_assert_ptr_null(line_starting(out, "dev"));
  free(out);
  out = zorch_expect(1, home, "stack", "set", "dev", NULL);
  assert_has(out, "zorch: error: ");
  free(out);
}
END_TEST

START_TEST(test_bad_config_names_the_field) {
  const char *home = zt_tmpdir();
  char *out = zorch_expect(1, home, "orchestrator", "register", "o", "--flavor", "local",
                           "--config", "{\"max_parallel\": \"lots\"}", NULL);
  assert_has(out, "zorch: error: ");
  assert_has(out, "max_parallel");
  free(out);
  out = zorch_expect(1, home, "orchestrator", "register", "o", "--flavor", "local", "-c",
                     "max_paralel=2", NULL);
  assert_has(out, "max_paralel");
  free(out);
  out = zorch_expect(1, home, "orchestrator", "register", "o", "--flavor", "no-such-flavor",
                     NULL);
  assert_has(out, "no-such-flavor");
  free(out);
  /* nothing was registered */
  out = zorch_expect(0, home, "orchestrator", "list", NULL);
  ck_assert_ptr_null(line_starting(out, "o"));
  free(out);
}
END_TEST

/* ---- pipelines ------------------------------------------------------------------------ */

START_TEST(test_pipeline_run_and_inspect) {
  const char *home = zt_tmpdir();
  char *spec = write_file(zt_tmpdir(), "etl.json", etl_spec);
  char *out = zorch_expect(0, home, "pipeline", "run", spec, NULL);
  assert_plain(out);
  assert_has(out, "Running pipeline 'etl' on stack 'default'");
  /* one line per finished step on a pipe, then the summary */
  assert_has(out, "make: completed");
  assert_has(out, "count: completed");
  assert_has(out, "report: completed");
  assert_has(out, "STEP");
  assert_has(out, "3 completed");
  char *id = run_id_of(out), *name = run_name_of(out);
  free(out);

  out = zorch_expect(0, home, "run", "list", NULL);
  assert_plain(out);
  assert_has(out, "RUN ID");
  assert_line_has(out, id, "etl");
  assert_line_has(out, id, "completed");
  assert_line_has(out, id, name);
  free(out);
  out = zorch_expect(0, home, "run", "list", "--pipeline", "etl", NULL);
  assert_has(out, id);
  free(out);
  out = zorch_expect(0, home, "run", "list", "--pipeline", "other", NULL);
  assert_lacks(out, id);
  free(out);

  out = zorch_expect(0, home, "run", "show", id, NULL);
  assert_plain(out);
  assert_line_has(out, "Status:", "completed");
  assert_line_has(out, "Pipeline:", "etl");
  assert_line_has(out, "ID:", id);
  assert_line_has(out, "Orchestrator:", "local");
  assert_line_has(out, "make", "completed");
  assert_line_has(out, "count", "completed");
  assert_line_has(out, "report", "completed");
  assert_line_has(out, "make", "data=");
  assert_line_has(out, "count", "n=");
  free(out);
  out = zorch_expect(0, home, "run", "show", name, NULL); /* by name too */
  assert_has(out, id);
  free(out);

  out = zorch_expect(0, home, "run", "logs", id, "report", NULL);
  assert_has(out, "REPORT-MARKER n=100");
  assert_lacks(out, "==>");
  free(out);
  out = zorch_expect(0, home, "run", "logs", id, NULL);
  assert_has(out, "==> make (completed) <==");
  assert_has(out, "made rows");
  assert_has(out, "==> count (completed) <==");
  assert_has(out, "counted 100 lines");
  assert_has(out, "REPORT-MARKER");
  free(out);
  out = zorch_expect(1, home, "run", "logs", id, "nope", NULL);
  assert_has(out, "zorch: error: ");
  assert_has(out, "nope");
  free(out);
  out = zorch_expect(1, home, "run", "show", "no-such-run", NULL);
  assert_has(out, "zorch: error: ");
  free(out);
  free(id);
  free(name);
  free(spec);
}
END_TEST

/* `zorch step run`: the entrypoint a container runs for one command step. */
START_TEST(test_step_run_entrypoint) {
  const char *home = zt_tmpdir();
  char *spec = write_file(
      zt_tmpdir(), "two.json",
      "{\"zorch_pipeline\": 1, \"name\": \"two\", \"params\": {\"rows\": 7},\n"
      " \"steps\": [\n"
      "  {\"name\": \"make\", \"command\": [\"sh\", \"-c\", \"seq $ZORCH_PARAM_ROWS > "
      "$ZORCH_OUTPUT_DATA; echo made $ZORCH_PARAM_ROWS\"], \"outputs\": [\"data\"], "
      "\"params\": [\"rows\"]},\n"
      "  {\"name\": \"count\", \"command\": [\"sh\", \"-c\", \"echo counted $(wc -l < "
      "$ZORCH_INPUT_DATA) >&2; wc -l < $ZORCH_INPUT_DATA > $ZORCH_OUTPUT_N\"],\n"
      "   \"inputs\": {\"data\": \"make.data\"}, \"outputs\": [\"n\"]},\n"
      "  {\"name\": \"bad\", \"command\": [\"sh\", \"-c\", \"echo oops; exit 5\"], "
      "\"after\": [\"make\"]}\n"
      " ]}\n");
  char *out = zorch_expect(1, home, "pipeline", "run", spec, NULL);
  char *id = run_id_of(out);
  free(out);
  char *dep = NULL, *rec = NULL, *badrec = NULL;
  if (asprintf(&dep, "%s/store/runs/%s/deployment.json", home, id) < 0 ||
      asprintf(&rec, "%s/store/runs/%s/steps/count.json", home, id) < 0 ||
      asprintf(&badrec, "%s/store/runs/%s/steps/bad.json", home, id) < 0)
    abort();
  /* count again, as a container would: inputs from the store, output stored */
  out = zorch_expect(0, home, "step", "run", "--zorch-step", "count", "--zorch-deployment", dep,
                     "--zorch-run", id, NULL);
  assert_has(out, "counted 7");
  free(out);
  char *text = read_whole(rec);
  ck_assert_msg(text != NULL, "no step record %s", rec);
  assert_has(text, "\"step\":\"count\"");
  assert_has(text, "\"status\":\"completed\"");
  assert_has(text, "\"exit\":0");
  assert_has(text, "\"name\":\"n\"");
  assert_has(text, "\"cache_key\":");
  free(text);
  /* the run's own view agrees: the output is the one the local run made */
  out = zorch_expect(0, home, "run", "show", id, NULL);
  assert_line_has(out, "count", "completed");
  free(out);
  /* a failing command: exit 1, its status in the record, its output on stdout */
  out = zorch_expect(1, home, "step", "run", "--zorch-step", "bad", "--zorch-deployment", dep,
                     "--zorch-run", id, NULL);
  assert_has(out, "oops");
  assert_has(out, "exited with status 5");
  free(out);
  text = read_whole(badrec);
  ck_assert_msg(text != NULL, "no step record %s", badrec);
  assert_has(text, "\"status\":\"failed\"");
  assert_has(text, "\"exit\":5");
  free(text);
  /* wrong run, unknown step: usage errors (2) naming what is wrong */
  out = zorch_expect(2, home, "step", "run", "--zorch-step", "count", "--zorch-deployment", dep,
                     "--zorch-run", "0123", NULL);
  assert_has(out, "belongs to run");
  free(out);
  out = zorch_expect(2, home, "step", "run", "--zorch-step", "nope", "--zorch-deployment", dep,
                     "--zorch-run", id, NULL);
  assert_has(out, "has no step 'nope'");
  free(out);
  free(dep);
  free(rec);
  free(badrec);
  free(id);
  free(spec);
}
END_TEST

/* Run `zorch ARGS...` with ZORCH_HOME=home and ZORCH_PLUGIN_PATH=plugin_path. */
static char *zorch_plugins_expect(int want, const char *home, const char *plugin_path, ...) {
  const char *argv[64];
  size_t n = 0;
  argv[n++] = zorch_cmd();
  va_list ap;
  va_start(ap, plugin_path);
  const char *a;
  while ((a = va_arg(ap, const char *)) && n < 63) argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  char *env_home = NULL, *env_pp = NULL;
  if (asprintf(&env_home, "ZORCH_HOME=%s", home) < 0 ||
      asprintf(&env_pp, "ZORCH_PLUGIN_PATH=%s", plugin_path) < 0)
    abort();
  const char *env[] = {env_home, env_pp, "NO_COLOR=", "ZORCH_LOG_LEVEL=warning", NULL};
  char *out = NULL;
  int rc = zt_run(&out, argv, env);
  free(env_home);
  free(env_pp);
  ck_assert_msg(rc == want, "exit status %d, wanted %d; output:\n%s", rc, want, out);
  return out;
}

/* `zorch image build` goes through an image-builder flavor (here a fixture
 * that builds nothing), and says which plugin provides one when none is
 * loaded. */
START_TEST(test_image_build_through_a_builder) {
  const char *home = zt_tmpdir();
  const char *fixture = getenv("ZORCH_TEST_IMAGE_PLUGINS");
  ck_assert_msg(fixture && *fixture, "ZORCH_TEST_IMAGE_PLUGINS is not set");
  char *out = zorch_plugins_expect(0, home, fixture, "image", "build", "tools:1", "--program",
                                   "/bin/sh", "--builder", "fixture_image", NULL);
  assert_has(out, "tools:1 sha256:fixture-tools:1");
  free(out);
  out = zorch_plugins_expect(1, home, fixture, "image", "build", "failing:1", "--program", "/bin/sh",
                             NULL);
  assert_has(out, "the fixture engine refuses failing:1");
  free(out);
  out = zorch_plugins_expect(1, home, fixture, "image", "build", "x:1", "--program", "/bin/sh",
                             "--builder", "kaniko", NULL);
  assert_has(out, "no image builder flavor 'kaniko' (from zorch_image_options.builder) is loaded");
  free(out);
  /* none loaded */
  out = zorch_plugins_expect(1, home, "/nonexistent", "image", "build", "x:1", "--program", "/bin/sh",
                             NULL);
  assert_has(out, "no image builder flavor is loaded: the local_docker plugin (zorch-flavor-local_docker.so");
  free(out);
  out = zorch_expect(0, home, "image", "build", "--help", NULL);
  assert_has(out, "--builder FLAVOR");
  free(out);
}
END_TEST

/* `zorch image build` through local_docker's builder without an engine:
 * the errors name what is wrong. */
START_TEST(test_image_build_errors) {
  const char *home = zt_tmpdir();
  const char *ld = getenv("ZORCH_TEST_LOCAL_DOCKER_PLUGINS");
  ck_assert_msg(ld && *ld, "ZORCH_TEST_LOCAL_DOCKER_PLUGINS is not set");
  char *saved_pp = strdup(getenv("ZORCH_PLUGIN_PATH") ? getenv("ZORCH_PLUGIN_PATH") : "");
  setenv("ZORCH_PLUGIN_PATH", ld, 1);
  char *out = zorch_expect(2, home, "image", "build", NULL);
  assert_has(out, "the image NAME is missing");
  free(out);
  out = zorch_expect(2, home, "image", "build", "x:1", NULL);
  assert_has(out, "--program is missing");
  free(out);
  out = zorch_expect(1, home, "image", "build", "x:1", "--program", "/bin/sh", "--add",
                     "no-such-tool-zorch", "--docker-host", "unix:///nonexistent/engine.sock", NULL);
  assert_has(out, "cannot add 'no-such-tool-zorch' to the image: no such file or directory (and not found in PATH)");
  free(out);
  out = zorch_expect(1, home, "image", "build", "x:1", "--program", "/bin/sh", "--docker-host",
                     "unix:///nonexistent/engine.sock", NULL);
  assert_has(out, "no socket at /nonexistent/engine.sock");
  assert_has(out, "podman system service");
  free(out);
  out = zorch_expect(1, home, "image", "build", "x:1", "--program", "/bin/sh", "--docker-host",
                     "ssh://host", NULL);
  assert_has(out, "use unix:///path/to.sock or tcp://host:port");
  free(out);
  out = zorch_expect(1, home, "image", "build", "x:1", "--program", "/bin/sh", "--builder",
                     "local_docker", "--docker-host", "unix:///nonexistent/engine.sock", NULL);
  assert_has(out, "no socket at /nonexistent/engine.sock");
  free(out);
  setenv("ZORCH_PLUGIN_PATH", saved_pp, 1);
  free(saved_pp);
}
END_TEST

START_TEST(test_second_run_is_cached) {
  const char *home = zt_tmpdir();
  char *spec = write_file(zt_tmpdir(), "etl.json", etl_spec);
  free(zorch_expect(0, home, "pipeline", "run", spec, NULL));
  char *out = zorch_expect(0, home, "pipeline", "run", spec, "--name", "again", NULL);
  assert_has(out, "Run: again ");
  /* the summary table: every step cached */
  const char *table = strstr(out, "STEP");
  ck_assert_msg(table != NULL, "no summary table:\n%s", out);
  assert_line_has(table, "make", "cached");
  assert_line_has(table, "count", "cached");
  assert_line_has(table, "report", "cached");
  assert_has(out, "3 cached");
  assert_lacks(out, "completed,");
  free(out);
  /* a new param value changes make's key, and so everything downstream */
  out = zorch_expect(0, home, "pipeline", "run", spec, "--param", "rows=7", NULL);
  table = strstr(out, "STEP");
  assert_line_has(table, "make", "completed");
  assert_line_has(table, "count", "completed");
  char *id = run_id_of(out);
  free(out);
  out = zorch_expect(0, home, "run", "logs", id, "report", NULL);
  assert_has(out, "REPORT-MARKER n=7");
  free(out);
  free(id);
  /* --no-cache runs everything again */
  out = zorch_expect(0, home, "pipeline", "run", spec, "--no-cache", NULL);
  table = strstr(out, "STEP");
  assert_line_has(table, "make", "completed");
  assert_line_has(table, "report", "completed");
  free(out);
  free(spec);
}
END_TEST

START_TEST(test_failing_step_exits_1) {
  const char *home = zt_tmpdir();
  char *spec = write_file(
      zt_tmpdir(), "fail.json",
      "{\"zorch_pipeline\":1,\"name\":\"breaks\",\"steps\":["
      "{\"name\":\"ok\",\"command\":[\"true\"]},"
      "{\"name\":\"explode\",\"command\":[\"sh\",\"-c\",\"echo kaboom >&2; exit 3\"],"
      "\"outputs\":[\"o\"]},"
      "{\"name\":\"after-explode\",\"command\":[\"true\"],\"inputs\":{\"i\":\"explode.o\"}}]}");
  char *out = zorch_expect(1, home, "pipeline", "run", spec, NULL);
  assert_plain(out);
  assert_has(out, "explode: failed");
  assert_has(out, "zorch: error: ");
  assert_has(out, "step 'explode' failed");
  const char *table = strstr(out, "STEP");
  ck_assert_msg(table != NULL, "no summary table:\n%s", out);
  assert_line_has(table, "explode", "failed");
  assert_line_has(table, "explode", " 3"); /* the exit code */
  assert_line_has(table, "after-explode", "skipped");
  assert_line_has(table, "ok", "completed");
  char *id = run_id_of(out);
  free(out);
  out = zorch_expect(0, home, "run", "list", NULL);
  assert_line_has(out, id, "failed");
  free(out);
  out = zorch_expect(0, home, "run", "logs", id, "explode", NULL);
  assert_has(out, "kaboom");
  free(out);
  free(id);
  free(spec);
}
END_TEST

START_TEST(test_bad_spec_is_rejected_precisely) {
  const char *home = zt_tmpdir();
  char *spec = write_file(
      zt_tmpdir(), "etl.json",
      "{\"zorch_pipeline\": 1, \"name\": \"etl\",\n"
      " \"steps\": [{\"name\": \"make\", \"command\": [\"true\"], \"outputs\": [\"data\"]},\n"
      "            {\"name\": \"count\", \"command\": [\"wc\", \"-l\"], \"inputs\": {\"data\": "
      "\"make\"}}]}\n");
  char *out = NULL;
  int rc = zorch(&out, home, "pipeline", "run", spec, NULL);
  ck_assert_msg(rc != 0, "a bad spec ran:\n%s", out);
  assert_has(out, "zorch: error: ");
  assert_has(out, "etl.json: steps[1].inputs.data: expected \"step.output\", got \"make\"");
  free(out);
  out = zorch_expect(1, home, "pipeline", "validate", spec, NULL);
  assert_has(out, "etl.json: steps[1].inputs.data: expected \"step.output\", got \"make\"");
  free(out);
  free(spec);

  spec = write_file(zt_tmpdir(), "typo.json",
                    "{\"zorch_pipeline\": 1, \"name\": \"etl\", \"stpes\": []}");
  out = zorch_expect(1, home, "pipeline", "run", spec, NULL);
  assert_has(out, "typo.json: unknown field 'stpes' at top level");
  free(out);
  free(spec);
  out = zorch_expect(1, home, "pipeline", "run", "/nonexistent/x.json", NULL);
  assert_has(out, "zorch: error: cannot open '/nonexistent/x.json'");
  free(out);

  /* nothing ran */
  out = zorch_expect(0, home, "run", "list", NULL);
  assert_has(out, "No runs.");
  free(out);
}
END_TEST

START_TEST(test_run_options) {
  const char *home = zt_tmpdir();
  char *spec = write_file(zt_tmpdir(), "etl.json", etl_spec);
  free(zorch_expect(0, home, "orchestrator", "register", "serial", "--flavor", "local", NULL));
  free(zorch_expect(0, home, "stack", "register", "dev", "-o", "serial", NULL));
  char *out = zorch_expect(0, home, "pipeline", "run", spec, "--stack", "dev", "--max-parallel",
                           "1", "--name", "on-dev", "--stop-on-failure", NULL);
  assert_has(out, "on stack 'dev'");
  assert_has(out, "Run: on-dev ");
  free(out);
  out = zorch_expect(0, home, "run", "show", "on-dev", NULL);
  assert_line_has(out, "Stack:", "dev");
  free(out);
  out = zorch_expect(1, home, "pipeline", "run", spec, "--stack", "no-such-stack", NULL);
  assert_has(out, "zorch: error: ");
  assert_has(out, "no-such-stack");
  free(out);
  out = zorch_expect(2, home, "pipeline", "run", spec, "--max-parallel", "-3", NULL);
  assert_has(out, "--max-parallel wants a positive integer");
  free(out);
  free(spec);
}
END_TEST

START_TEST(test_validate_good_spec) {
  const char *home = zt_tmpdir();
  char *spec = write_file(zt_tmpdir(), "etl.json", etl_spec);
  char *out = zorch_expect(0, home, "pipeline", "validate", spec, NULL);
  assert_has(out, "pipeline 'etl' is valid (3 steps)");
  free(out);
  free(spec);
}
END_TEST

START_TEST(test_pipe_output_is_plain) {
  const char *home = zt_tmpdir();
  char *spec = write_file(zt_tmpdir(), "etl.json", etl_spec);
  /* even with a terminal type and colours not disabled */
  char *env_home = NULL;
  if (asprintf(&env_home, "ZORCH_HOME=%s", home) < 0) abort();
  const char *env[] = {env_home, "TERM=xterm-256color", NULL};
  const char *cmds[][6] = {{"pipeline", "run", spec, NULL},
                           {"run", "list", NULL},
                           {"stack", "list", NULL},
                           {"orchestrator", "flavor", "list", NULL},
                           {"help", NULL}};
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
    const char *argv[8] = {zorch_cmd()};
    for (size_t k = 0; cmds[i][k]; k++) argv[k + 1] = cmds[i][k];
    char *out = NULL;
    int rc = zt_run(&out, argv, env);
    ck_assert_msg(rc == 0, "%s %s: exit %d\n%s", cmds[i][0], cmds[i][1], rc, out);
    assert_plain(out);
    free(out);
  }
  free(env_home);
  free(spec);
}
END_TEST

/* ---- a terminal: the live status line -------------------------------------------------------- */

/* Run zorch ARGS on a pseudo-terminal; returns the exit status, *out the bytes it wrote.
 * With `interrupt_at`, send SIGINT once that text has appeared (and 0.3 s more). */
static int zorch_on_tty(char **out, const char *home, const char *const *args,
                        const char *interrupt_at) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  ck_assert_int_ge(master, 0);
  ck_assert_int_eq(grantpt(master), 0);
  ck_assert_int_eq(unlockpt(master), 0);
  char *slave_name = strdup(ptsname(master));
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    setsid();
    int s = open(slave_name, O_RDWR);
    if (s < 0) _exit(127);
    dup2(s, 0);
    dup2(s, 1);
    dup2(s, 2);
    close(master);
    setenv("ZORCH_HOME", home, 1);
    setenv("TERM", "xterm", 1);
    unsetenv("NO_COLOR");
    const char *argv[16] = {zorch_cmd()};
    for (size_t k = 0; args[k] && k < 14; k++) argv[k + 1] = args[k];
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  free(slave_name);
  size_t len = 0, cap = 65536;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
    ssize_t r = read(master, buf + len, cap - len - 1);
    if (r > 0) len += (size_t)r;
    else if (r < 0 && errno == EINTR) continue;
    else break; /* EIO: the other side closed */
    buf[len] = '\0';
    if (interrupt_at && strstr(buf, interrupt_at)) {
      usleep(300 * 1000);
      kill(pid, SIGINT);
      interrupt_at = NULL;
    }
  }
  buf[len] = '\0';
  close(master);
  int status;
  waitpid(pid, &status, 0);
  *out = buf;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

START_TEST(test_terminal_shows_status_line) {
  const char *home = zt_tmpdir();
  char *spec = write_file(
      zt_tmpdir(), "slow.json",
      "{\"zorch_pipeline\":1,\"name\":\"slow\",\"steps\":["
      "{\"name\":\"first\",\"command\":[\"sleep\",\"0.3\"],\"outputs\":[],\"settings\":{}},"
      "{\"name\":\"second\",\"command\":[\"sleep\",\"0.3\"],\"after\":[\"first\"]}]}");
  const char *args[] = {"pipeline", "run", spec, NULL};
  char *out = NULL;
  int rc = zorch_on_tty(&out, home, args, NULL);
  ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
  assert_has(out, "\r\033[K"); /* the status line is redrawn in place */
  assert_has(out, "[2/2] 2 done, 0 running, 0 failed, 0 cached");
  assert_has(out, "1 running"); /* a step was seen running */
  assert_has(out, "second");
  assert_has(out, "\033["); /* colours on a terminal */
  /* no per-step lines as on a pipe */
  assert_lacks(out, "first: completed");
  free(out);
  free(spec);
}
END_TEST

START_TEST(test_terminal_ctrl_c_stops_the_run) {
  const char *home = zt_tmpdir();
  char *spec = write_file(zt_tmpdir(), "sleepy.json",
                          "{\"zorch_pipeline\":1,\"name\":\"sleepy\",\"steps\":["
                          "{\"name\":\"nap\",\"command\":[\"sleep\",\"30\"]}]}");
  const char *args[] = {"pipeline", "run", spec, NULL};
  char *out = NULL;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = zorch_on_tty(&out, home, args, "nap running");
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ck_assert_msg(rc == 130, "exit %d, wanted 130:\n%s", rc, out);
  ck_assert_msg(t1.tv_sec - t0.tv_sec < 15, "the run was not stopped promptly");
  assert_has(out, "stopped");
  char *id = run_id_of(out);
  free(out);
  out = zorch_expect(0, home, "run", "list", NULL);
  assert_line_has(out, id, "stopped");
  free(out);
  free(id);
  free(spec);
}
END_TEST

/* ---- Ctrl-C ----------------------------------------------------------------------------------------- */

START_TEST(test_sigint_stops_the_run) {
  const char *home = zt_tmpdir();
  const char *dir = zt_tmpdir();
  char *spec = write_file(dir, "sleepy.json",
                          "{\"zorch_pipeline\":1,\"name\":\"sleepy\",\"steps\":["
                          "{\"name\":\"nap\",\"command\":[\"sleep\",\"30\"]},"
                          "{\"name\":\"later\",\"command\":[\"true\"],\"after\":[\"nap\"]}]}");
  char *log = NULL;
  if (asprintf(&log, "%s/out.txt", dir) < 0) abort();
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setenv("ZORCH_HOME", home, 1);
    execl(zorch_cmd(), zorch_cmd(), "pipeline", "run", spec, (char *)NULL);
    _exit(127);
  }
  /* wait until the run has started, then press Ctrl-C */
  bool started = false;
  for (int i = 0; i < 200 && !started; i++) {
    char *text = NULL;
    size_t n = 0;
    FILE *f = fopen(log, "r");
    ssize_t got = -1;
    if (f) {
      got = getdelim(&text, &n, '\0', f);
      fclose(f);
    }
    started = got > 0 && strstr(text, "Run: ");
    free(text);
    if (!started) usleep(50 * 1000);
  }
  ck_assert_msg(started, "the run did not start");
  usleep(300 * 1000); /* let the executor start the sleep */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  kill(pid, SIGINT);
  int status;
  waitpid(pid, &status, 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  char *text = NULL;
  size_t n = 0;
  FILE *f = fopen(log, "r");
  ck_assert_ptr_nonnull(f);
  ck_assert_msg(getdelim(&text, &n, '\0', f) > 0, "the CLI wrote nothing");
  fclose(f);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 130,
                "wanted exit 130, got status 0x%x:\n%s", status, text);
  ck_assert_msg(took < 10, "stopping took %.1fs", took);
  assert_has(text, "stopped");
  char *id = run_id_of(text);
  free(text);
  char *out = zorch_expect(0, home, "run", "list", NULL);
  assert_line_has(out, id, "stopped");
  free(out);
  free(id);
  free(log);
  free(spec);
}
END_TEST

Suite *cli_suite(void);
Suite *cli_suite(void) {
  Suite *s = suite_create("cli");
  TCase *tc = tcase_create("usage");
  tcase_add_test(tc, test_version_and_help);
  tcase_add_test(tc, test_unknown_command_and_option);
  suite_add_tcase(s, tc);
  tc = tcase_create("stacks");
  tcase_add_test(tc, test_flavor_list);
  tcase_add_test(tc, test_flavor_list_warns_about_broken_plugin);
  tcase_add_test(tc, test_stack_round_trip);
  tcase_add_test(tc, test_bad_config_names_the_field);
  suite_add_tcase(s, tc);
  tc = tcase_create("pipelines");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_validate_good_spec);
  tcase_add_test(tc, test_bad_spec_is_rejected_precisely);
  tcase_add_test(tc, test_pipeline_run_and_inspect);
  tcase_add_test(tc, test_second_run_is_cached);
  tcase_add_test(tc, test_step_run_entrypoint);
  tcase_add_test(tc, test_image_build_errors);
  tcase_add_test(tc, test_image_build_through_a_builder);
  tcase_add_test(tc, test_run_options);
  tcase_add_test(tc, test_failing_step_exits_1);
  tcase_add_test(tc, test_pipe_output_is_plain);
  tcase_add_test(tc, test_terminal_shows_status_line);
  tcase_add_test(tc, test_terminal_ctrl_c_stops_the_run);
  tcase_add_test(tc, test_sigint_stops_the_run);
  suite_add_tcase(s, tc);
  return s;
}

ZORCH_CHECK_MAIN(cli)
