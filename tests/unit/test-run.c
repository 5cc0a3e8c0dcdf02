/* Runs through the public API on the default stack: records, inspection, caching, SIGINT. */
#include <signal.h>
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
           "\"--zorch-step\",\"{step}\",\"--zorch-deployment\",\"%s/store/runs/%s/deployment.json\","
           "\"--zorch-store\",\"file://%s/store\",\"--zorch-run\",\"%s\"]",
           zorch_client_home(c), zorch_run_id(r), zorch_client_home(c), zorch_run_id(r));
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
  return s;
}

ZORCH_CHECK_MAIN(run)
