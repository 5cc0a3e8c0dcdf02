/* Runs through the public API on the default stack: records, inspection, caching, SIGINT;
 * and what the flavor's capability flags and step-settings schema decide. */
#define _GNU_SOURCE 1
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zorch-check.h"

static int produce(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  int64_t n;
  int rc = zorch_ctx_param_int(ctx, "n", &n);
  if (rc) return rc;
  char buf[64];
  int len = snprintf(buf, sizeof buf, "%lld", (long long)(n * 2));
  zorch_ctx_log(ctx, "doubling %lld", (long long)n);
  return zorch_ctx_output(ctx, "value", buf, (size_t)len);
}

static zorch_pipeline *build(void) {
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, "demo"));
  zt_ok(zorch_pipeline_add_param(p, "n", "21"));
  zorch_step *a, *b;
  zt_ok(zorch_pipeline_add_function_step(&a, p, "produce", produce, NULL));
  zt_ok(zorch_step_use_param(a, "n"));
  zt_ok(zorch_step_add_output(a, "value"));
  const char *argv[] = {"sh", "-c", "echo \"got $(cat $ZORCH_INPUT_VALUE)\"; cp $ZORCH_INPUT_VALUE $ZORCH_OUTPUT_COPY", NULL};
  zt_ok(zorch_pipeline_add_command_step(&b, p, "consume", argv));
  zt_ok(zorch_step_add_input(b, "value", "produce", "value"));
  zt_ok(zorch_step_add_output(b, "copy"));
  return p;
}

START_TEST(run_records_and_inspection) {
  zorch_client *c = zt_client();
  zorch_pipeline *p = build();
  zorch_run *r = NULL;
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.run_name = "first";
  zt_ok(zorch_pipeline_run(&r, c, p, &o));
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_COMPLETED);
  ck_assert_str_eq(zorch_run_name(r), "first");
  ck_assert_str_eq(zorch_run_metadata(r, "orchestrator"), "local");
  ck_assert_str_eq(zorch_run_metadata(r, "orchestrator_run_id"), zorch_run_id(r));
  ck_assert(zorch_run_finished_at(r) >= zorch_run_started_at(r));
  ck_assert_int_eq(zorch_run_step_count(r), 2);
  size_t i;
  zt_ok(zorch_run_step_index(r, "consume", &i));
  ck_assert_int_eq(zorch_run_step_status(r, i), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(zorch_run_step_exit_code(r, i), 0);
  ck_assert_int_eq(zorch_run_step_attempts(r, i), 1);
  ck_assert_str_eq(zorch_run_step_output_name(r, i, 0), "copy");
  ck_assert_int_eq(zorch_run_step_output_size(r, i, 0), 2);
  void *data = NULL;
  size_t size = 0;
  zt_ok(zorch_run_read_output(&data, &size, r, "consume", "copy"));
  ck_assert_str_eq((char *)data, "42");
  zorch_free(data);
  char *log = NULL;
  zt_ok(zorch_run_read_log(&log, NULL, r, "consume"));
  ck_assert_msg(strstr(log, "got 42"), "log: %s", log);
  zorch_free(log);
  zt_ok(zorch_run_read_log(&log, NULL, r, "produce"));
  ck_assert_msg(strstr(log, "doubling 21"), "log: %s", log);
  zorch_free(log);
  zt_assert_rc(zorch_run_read_output(&data, &size, r, "consume", "nope"), ZORCH_ENOTFOUND);
  char id[64];
  snprintf(id, sizeof id, "%s", zorch_run_id(r));
  zorch_run_free(r);

  /* read back from the store, by id and by name */
  zt_ok(zorch_run_open(&r, c, id));
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_COMPLETED);
  ck_assert_str_eq(zorch_run_pipeline_name(r), "demo");
  zt_ok(zorch_run_step_index(r, "produce", &i));
  ck_assert_int_eq(zorch_run_step_status(r, i), ZORCH_STATUS_COMPLETED);
  ck_assert_ptr_nonnull(zorch_run_step_output_digest(r, i, 0));
  ck_assert_ptr_nonnull(zorch_run_step_cache_key(r, i));
  zorch_run_free(r);
  zt_ok(zorch_run_open(&r, c, "first"));
  ck_assert_str_eq(zorch_run_id(r), id);
  zorch_run_free(r);
  zt_assert_rc(zorch_run_open(&r, c, "nosuchrun"), ZORCH_ENOTFOUND);
  zt_assert_msg_has("no run with id or name 'nosuchrun'");

  /* a second run is fully cached; the list shows both, newest first */
  o.run_name = "second";
  zt_ok(zorch_pipeline_run(&r, c, p, &o));
  for (size_t k = 0; k < zorch_run_step_count(r); k++)
    ck_assert_int_eq(zorch_run_step_status(r, k), ZORCH_STATUS_CACHED);
  zorch_run_free(r);
  /* changing the param re-runs both steps (consume's input changed) */
  o.run_name = "third";
  o.params_json = "{\"n\": 5}";
  zt_ok(zorch_pipeline_run(&r, c, p, &o));
  zt_ok(zorch_run_read_output(&data, &size, r, "consume", "copy"));
  ck_assert_str_eq((char *)data, "10");
  zorch_free(data);
  for (size_t k = 0; k < zorch_run_step_count(r); k++)
    ck_assert_int_eq(zorch_run_step_status(r, k), ZORCH_STATUS_COMPLETED);
  zorch_run_free(r);
  zorch_run_list *l = NULL;
  zt_ok(zorch_run_list_load(&l, c, NULL));
  ck_assert_int_eq(zorch_run_list_count(l), 3);
  ck_assert_str_eq(zorch_run_list_name(l, 0), "third");
  ck_assert_str_eq(zorch_run_list_name(l, 2), "first");
  ck_assert_int_eq(zorch_run_list_status(l, 1), ZORCH_STATUS_COMPLETED);
  zorch_run_list_free(l);
  zt_ok(zorch_run_list_load(&l, c, "other"));
  ck_assert_int_eq(zorch_run_list_count(l), 0);
  zorch_run_list_free(l);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

START_TEST(failed_run_reports_the_step) {
  zorch_client *c = zt_client();
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, "broken"));
  const char *argv[] = {"sh", "-c", "echo going wrong; exit 7", NULL};
  zt_ok(zorch_pipeline_add_command_step(NULL, p, "bad", argv));
  zorch_run *r = NULL;
  zt_assert_rc(zorch_pipeline_run(&r, c, p, NULL), ZORCH_ESTEP);
  zt_assert_msg_has("step 'bad' failed: command 'sh' exited with status 7");
  zt_assert_msg_has("going wrong");
  ck_assert_ptr_nonnull(r);
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_FAILED);
  zorch_run_free(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

START_TEST(sigint_cancels_and_records_stopped) {
  const char *home = zt_tmpdir();
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    zorch_client_options co = ZORCH_CLIENT_OPTIONS_INIT;
    co.home = home;
    zorch_client *c = NULL;
    if (zorch_client_new(&c, &co)) _exit(90);
    zorch_pipeline *p = NULL;
    zorch_pipeline_new(&p, "interrupted");
    const char *argv[] = {"sleep", "30", NULL};
    zorch_pipeline_add_command_step(NULL, p, "long", argv);
    zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
    o.flags = ZORCH_RUN_HANDLE_SIGINT;
    o.run_name = "sig";
    zorch_run *r = NULL;
    if (zorch_run_start(&r, c, p, &o)) _exit(91);
    if (write(fds[1], "x", 1) != 1) _exit(92);
    int rc = zorch_run_wait(r, -1);
    zorch_run_free(r);
    _exit(rc == ZORCH_ECANCELLED ? 0 : 93);
  }
  close(fds[1]);
  char ch;
  ck_assert_int_eq(read(fds[0], &ch, 1), 1);
  usleep(300000);
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  zorch_client_options co = ZORCH_CLIENT_OPTIONS_INIT;
  co.home = home;
  zorch_client *c = NULL;
  zt_ok(zorch_client_new(&c, &co));
  zorch_run *r = NULL;
  zt_ok(zorch_run_open(&r, c, "sig"));
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_STOPPED);
  ck_assert_int_eq(zorch_run_step_status(r, 0), ZORCH_STATUS_STOPPED);
  zorch_run_free(r);
  zorch_client_free(c);
}
END_TEST

START_TEST(options_are_checked) {
  zorch_client *c = zt_client();
  zorch_pipeline *p = build();
  zorch_run *r = NULL;
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.version = 99;
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_EVERSION);
  o.version = ZORCH_RUN_OPTIONS_VERSION;
  o.stack = "nope";
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_ENOTFOUND);
  zt_assert_msg_has("nope");
  o.stack = NULL;
  o.params_json = "{\"m\": 1}";
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_EINVALID);
  zt_assert_msg_has("unknown param 'm'");
  ck_assert_ptr_null(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

START_TEST(remote_flavors_need_the_entrypoint_and_report_submit_errors) {
  /* a stack whose orchestrator is the registry's good fixture flavor (it refuses to submit) */
  const char *dir = zt_tmpdir();
  char link[1024], target[1024];
  snprintf(target, sizeof target, "%s/zorch-flavor-good.so", getenv("ZORCH_TEST_FIXTURE_PLUGINS"));
  snprintf(link, sizeof link, "%s/zorch-flavor-good.so", dir);
  ck_assert_int_eq(symlink(target, link), 0);
  zorch_client_options co = ZORCH_CLIENT_OPTIONS_INIT;
  co.home = zt_tmpdir();
  co.plugin_path = dir;
  zorch_client *c = NULL;
  zt_ok(zorch_client_new(&c, &co));
  zt_ok(zorch_component_register(c, "orchestrator", "fx", "fixture_good", "{}", 0));
  zt_ok(zorch_stack_register(c, "remote", "fx", NULL, 0));
  zorch_pipeline *p = build();
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.stack = "remote";
  zorch_run *r = NULL;
  /* this program never called zorch_main(): its function steps cannot run remotely */
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_EINVALID);
  zt_assert_msg_has("call zorch_main() first in main()");
  /* a pipeline that names its own entrypoint (an interpreter's) passes that
   * check and reaches the flavor */
  const char *entry[] = {"python3", "-m", "zorch", NULL};
  zt_ok(zorch_pipeline_set_entrypoint(p, entry));
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_ENOTSUPPORTED);
  zt_assert_msg_has("the fixture flavor runs nothing");
  ck_assert_ptr_null(r);
  /* and an empty argv restores the default: refused again */
  const char *none[] = {NULL};
  zt_ok(zorch_pipeline_set_entrypoint(p, none));
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_EINVALID);
  zorch_pipeline_free(p);
  /* a command-only pipeline reaches the flavor, whose error is reported with its origin */
  zt_ok(zorch_pipeline_new(&p, "cmdonly"));
  const char *argv[] = {"true", NULL};
  zt_ok(zorch_pipeline_add_command_step(NULL, p, "t", argv));
  o.run_name = "refused";
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_ENOTSUPPORTED);
  zt_assert_msg_has("orchestrator 'fx' (flavor fixture_good) could not start the run");
  zt_assert_msg_has("the fixture flavor runs nothing");
  ck_assert_ptr_null(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

START_TEST(the_deployment_carries_the_pipeline_entrypoint) {
  zorch_client *c = zt_client();
  zorch_pipeline *p = build();
  const char *entry[] = {"/usr/bin/python3", "-m", "zorch", "--zorch-module", "my app.py", NULL};
  const char *empty_prog[] = {"", NULL};
  zt_assert_rc(zorch_pipeline_set_entrypoint(p, empty_prog), ZORCH_EINVALID);
  zt_assert_msg_has("argv[0]");
  zt_ok(zorch_pipeline_set_entrypoint(p, entry));
  zorch_run *r = NULL;
  zt_ok(zorch_pipeline_run(&r, c, p, NULL));
  const char *dep = zorch_run_deployment(r);
  ck_assert_ptr_nonnull(dep);
  char want[768];
  snprintf(want, sizeof want,
           "\"function\":[\"/usr/bin/python3\",\"-m\",\"zorch\",\"--zorch-module\",\"my app.py\","
           "\"--zorch-step\",\"{step}\",\"--zorch-store\",\"file://%s/store\",\"--zorch-run\",\"%s\"]",
           zorch_client_home(c), zorch_run_id(r));
  ck_assert_msg(strstr(dep, want), "no %s in %s", want, dep);
  /* command steps keep the zorch CLI as their entrypoint */
  ck_assert_msg(strstr(dep, "\"command\":[\""), "%s", dep);
  zorch_run_free(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

/* An ephemeral run on the local flavor is compiled to its plan only: it runs
 * and reports like any run, and has no deployment document. */
START_TEST(ephemeral_runs_have_no_deployment_document) {
  zorch_client *c = zt_client();
  zorch_pipeline *p = build();
  zorch_run *r = NULL;
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.flags = ZORCH_RUN_EPHEMERAL | ZORCH_RUN_NO_CACHE;
  o.params_json = "{\"n\": 4}";
  zt_ok(zorch_pipeline_run(&r, c, p, &o));
  ck_assert_ptr_null(zorch_run_deployment(r));
  ck_assert_int_eq(zorch_run_step_count(r), 2);
  void *data = NULL;
  zt_ok(zorch_run_read_output(&data, NULL, r, "consume", "copy"));
  ck_assert_str_eq((char *)data, "8");
  zorch_free(data);
  /* it cannot be opened later */
  char id[64];
  snprintf(id, sizeof id, "%s", zorch_run_id(r));
  zorch_run_free(r);
  zt_assert_rc(zorch_run_open(&r, c, id), ZORCH_ENOTFOUND);
  /* a persisted run keeps its document */
  o.flags = ZORCH_RUN_NO_CACHE;
  zt_ok(zorch_pipeline_run(&r, c, p, &o));
  ck_assert_ptr_nonnull(zorch_run_deployment(r));
  ck_assert_ptr_nonnull(strstr(zorch_run_deployment(r), "\"name\":\"consume\""));
  zorch_run_free(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

/* ---- what a flavor can do: its capability flags, not its name ---------------------------- */

static const char *markers; /* $ZORCH_FIXTURE_MARKERS of the fixtures */

/* A client whose plugin path holds the named registry fixtures
 * (NULL-terminated; the local plugin comes from $ZORCH_PLUGIN_PATH) and a
 * stack "fx" whose orchestrator is of flavor `flavor`, with the default
 * stack's artifact store (a directory on this machine). */
static zorch_client *fixture_client(const char *flavor, const char *id, ...) {
  const char *dir = zt_tmpdir();
  va_list ap;
  va_start(ap, id);
  for (const char *x = id; x; x = va_arg(ap, const char *)) {
    char link[1024], target[1024];
    snprintf(target, sizeof target, "%s/zorch-flavor-%s.so", getenv("ZORCH_TEST_FIXTURE_PLUGINS"),
             x);
    snprintf(link, sizeof link, "%s/zorch-flavor-%s.so", dir, x);
    ck_assert_int_eq(symlink(target, link), 0);
  }
  va_end(ap);
  markers = zt_tmpdir();
  setenv("ZORCH_FIXTURE_MARKERS", markers, 1);
  zorch_client_options co = ZORCH_CLIENT_OPTIONS_INIT;
  co.home = zt_tmpdir();
  co.plugin_path = dir;
  zorch_client *c = NULL;
  zt_ok(zorch_client_new(&c, &co));
  zt_ok(zorch_component_register(c, "orchestrator", "fx", flavor, "{}", 0));
  zt_ok(zorch_stack_register(c, "fx", "fx", NULL, 0));
  return c;
}

/* Did the fixture's submit run (it writes <id>.deployment, then refuses)? */
static bool submitted(const char *id) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.deployment", markers, id);
  bool yes = access(path, F_OK) == 0;
  unlink(path);
  return yes;
}

static zorch_pipeline *command_pipeline(void) {
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, "cmds"));
  const char *argv[] = {"true", NULL};
  zt_ok(zorch_pipeline_add_command_step(NULL, p, "make", argv));
  zt_ok(zorch_pipeline_add_command_step(NULL, p, "train", argv));
  zt_ok(zorch_step_after(zorch_pipeline_step(p, "train"), "make"));
  return p;
}

/* A flavor without ZORCH_FLAVOR_LOCAL_STORE cannot use a store that is a
 * directory on this machine: refused before anything reaches it, naming the
 * flavor and the store; for runs, stored deployments and schedules alike. */
START_TEST(a_local_directory_store_needs_a_flavor_that_reaches_it) {
  zorch_client *c = fixture_client("fixture_no_local_store", "no-local-store", NULL);
  zorch_pipeline *p = command_pipeline();
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.stack = "fx";
  zorch_run *r = NULL;
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_EINVALID);
  char want[1024];
  snprintf(want, sizeof want,
           "stack 'fx': orchestrator 'fx' (flavor fixture_no_local_store) runs steps where "
           "artifact store 'default' (a directory on this machine, %s/store) cannot be reached",
           zorch_client_home(c));
  zt_assert_msg_has(want);
  ck_assert(!submitted("no_local_store"));
  ck_assert_ptr_null(r);
  char *id = NULL;
  zt_assert_rc(zorch_schedule_create(&id, c, p, "@daily", &o), ZORCH_EINVALID);
  zt_assert_msg_has(want);
  /* a stored deployment: made by a run on the default stack */
  zt_ok(zorch_pipeline_run(&r, c, p, NULL));
  char *path = NULL;
  ck_assert(asprintf(&path, "%s/store/runs/%s/deployment.json", zorch_client_home(c),
                     zorch_run_id(r)) > 0);
  zorch_run_free(r);
  r = NULL;
  o.flags = ZORCH_RUN_NEW_ID;
  zt_assert_rc(zorch_run_start_deployment(&r, c, path, &o), ZORCH_EINVALID);
  zt_assert_msg_has(want);
  ck_assert(!submitted("no_local_store"));
  free(path);
  zorch_pipeline_free(p);
  zorch_client_free(c);
  unsetenv("ZORCH_FIXTURE_MARKERS");
}
END_TEST

/* ZORCH_FLAVOR_IN_PROCESS, whatever the flavor's name: ephemeral runs (with
 * their deployment text made only when asked for), function steps without
 * an entrypoint; and no stored deployment with function steps. */
START_TEST(in_process_is_a_flag_not_a_name) {
  zorch_client *c = fixture_client("fixture_in_process", "in-process", "good", NULL);
  zt_ok(zorch_component_register(c, "orchestrator", "good", "fixture_good", "{}", 0));
  zt_ok(zorch_stack_register(c, "good", "good", NULL, 0));
  zorch_pipeline *p = build(); /* a function step, and this program never called zorch_main() */
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  zorch_run *r = NULL;
  o.stack = "fx";
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_ENOTSUPPORTED);
  zt_assert_msg_has("the fixture flavor runs nothing");
  ck_assert(submitted("in_process"));
  o.stack = "good"; /* not in process: its function steps need the entrypoint */
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_EINVALID);
  zt_assert_msg_has("call zorch_main() first in main()");
  ck_assert(!submitted("good"));
  /* ephemeral runs: only in process */
  zorch_pipeline *cp = command_pipeline();
  o.flags = ZORCH_RUN_EPHEMERAL | ZORCH_RUN_NO_CACHE;
  zt_assert_rc(zorch_run_start(&r, c, cp, &o), ZORCH_EINVALID);
  zt_assert_msg_has("ephemeral runs keep no records, so only a flavor that runs the steps in this "
                    "process (local) can run them (stack 'good' uses 'fixture_good')");
  ck_assert(!submitted("good"));
  o.stack = "fx";
  zt_assert_rc(zorch_run_start(&r, c, cp, &o), ZORCH_ENOTSUPPORTED);
  ck_assert(submitted("in_process"));
  /* a stored deployment with function steps: not in process */
  zt_ok(zorch_pipeline_run(&r, c, p, NULL));
  char *path = NULL;
  ck_assert(asprintf(&path, "%s/store/runs/%s/deployment.json", zorch_client_home(c),
                     zorch_run_id(r)) > 0);
  zorch_run_free(r);
  r = NULL;
  o.flags = ZORCH_RUN_NEW_ID;
  zt_assert_rc(zorch_run_start_deployment(&r, c, path, &o), ZORCH_EINVALID);
  zt_assert_msg_has("has function steps: a stored deployment runs on a flavor that starts the "
                    "program as a step elsewhere, not on 'fixture_in_process', which runs steps "
                    "in this process");
  o.stack = "good";
  zt_assert_rc(zorch_run_start_deployment(&r, c, path, &o), ZORCH_ENOTSUPPORTED);
  ck_assert(submitted("good"));
  free(path);
  zorch_pipeline_free(cp);
  zorch_pipeline_free(p);
  zorch_client_free(c);
  unsetenv("ZORCH_FIXTURE_MARKERS");
}
END_TEST

/* ---- the flavor's step settings, checked by the host ------------------------------------ */

/* fixture_good's step schema: {shm_size: integer >= 0, tags: [string]}, nothing else. */
START_TEST(step_settings_are_checked_against_the_flavor_schema) {
  zorch_client *c = fixture_client("fixture_good", "good", NULL);
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.stack = "fx";
  zorch_run *r = NULL;
  zorch_pipeline *p = command_pipeline();
  zorch_step *train = zorch_pipeline_step(p, "train"), *dflt = zorch_pipeline_defaults(p);
  /* fine: defaults and a step's own, merged; other flavors' settings are theirs */
  zt_ok(zorch_step_set_flavor_settings(dflt, "fixture_good", "{\"tags\":[\"a\"]}"));
  zt_ok(zorch_step_set_flavor_settings(train, "fixture_good", "{\"shm_size\":64}"));
  zt_ok(zorch_step_set_flavor_settings(train, "kubernetes", "{\"anything\":1}"));
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_ENOTSUPPORTED);
  ck_assert(submitted("good"));
  /* a step's setting: named by step and setting, never submitted */
  zt_ok(zorch_step_set_flavor_settings(train, "fixture_good", "{\"shm_size\":-1}"));
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_EINVALID);
  ck_assert_str_eq(zorch_error_last()->message,
                   "step 'train': setting 'shm_size' of flavor fixture_good: -1 is less than the "
                   "minimum 0");
  ck_assert(!submitted("good"));
  zt_ok(zorch_step_set_flavor_settings(train, "fixture_good", "{\"tags\":[\"x\",7]}"));
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_EINVALID);
  ck_assert_str_eq(zorch_error_last()->message,
                   "step 'train': setting 'tags[1]' of flavor fixture_good: expected string, got "
                   "integer");
  /* the step's own keys over the defaults': a bad default reaches every step */
  zt_ok(zorch_step_set_flavor_settings(train, "fixture_good", "{\"shm_size\":1}"));
  zt_ok(zorch_step_set_flavor_settings(dflt, "fixture_good", "{\"shm\":1}"));
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_EINVALID);
  ck_assert_str_eq(zorch_error_last()->message,
                   "the pipeline's default settings: setting 'shm' of flavor fixture_good: "
                   "unknown property (allowed: shm_size, tags)");
  ck_assert(!submitted("good"));
  /* schedules too */
  char *id = NULL;
  zt_assert_rc(zorch_schedule_create(&id, c, p, "@daily", &o), ZORCH_EINVALID);
  zt_assert_msg_has("the pipeline's default settings: setting 'shm' of flavor fixture_good");
  /* a stored deployment: checked as it was stored (its steps' effective settings) */
  zt_ok(zorch_step_set_flavor_settings(dflt, "fixture_good", "{}"));
  zt_ok(zorch_step_set_flavor_settings(train, "fixture_good", "{\"shm_size\":\"1g\"}"));
  zt_ok(zorch_pipeline_run(&r, c, p, NULL)); /* local has no step schema */
  char *path = NULL;
  ck_assert(asprintf(&path, "%s/store/runs/%s/deployment.json", zorch_client_home(c),
                     zorch_run_id(r)) > 0);
  zorch_run_free(r);
  r = NULL;
  o.flags = ZORCH_RUN_NEW_ID;
  zt_assert_rc(zorch_run_start_deployment(&r, c, path, &o), ZORCH_EINVALID);
  char want[1200];
  snprintf(want, sizeof want,
           "%s: step 'train': setting 'shm_size' of flavor fixture_good: expected integer, got "
           "string",
           path);
  ck_assert_str_eq(zorch_error_last()->message, want);
  ck_assert(!submitted("good"));
  free(path);
  zorch_pipeline_free(p);
  zorch_client_free(c);
  unsetenv("ZORCH_FIXTURE_MARKERS");
}
END_TEST

Suite *run_suite(void) {
  Suite *s = suite_create("run");
  TCase *tc = tcase_create("api");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, run_records_and_inspection);
  tcase_add_test(tc, failed_run_reports_the_step);
  tcase_add_test(tc, sigint_cancels_and_records_stopped);
  tcase_add_test(tc, options_are_checked);
  tcase_add_test(tc, remote_flavors_need_the_entrypoint_and_report_submit_errors);
  tcase_add_test(tc, the_deployment_carries_the_pipeline_entrypoint);
  tcase_add_test(tc, ephemeral_runs_have_no_deployment_document);
  suite_add_tcase(s, tc);
  tc = tcase_create("flavors");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, a_local_directory_store_needs_a_flavor_that_reaches_it);
  tcase_add_test(tc, in_process_is_a_flag_not_a_name);
  tcase_add_test(tc, step_settings_are_checked_against_the_flavor_schema);
  suite_add_tcase(s, tc);
  return s;
}

ZORCH_CHECK_MAIN(run)
