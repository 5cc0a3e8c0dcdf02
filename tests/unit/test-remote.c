/* The remote-step host API (zorch_host.executor_start_remote): the host's DAG
 * executor drives a run while a plugin launches each attempt elsewhere.  The
 * test flavor `spawn_remote` (tests/plugins/remote) launches the step
 * entrypoint the host gives it as a child process: this very program (whose
 * main() calls zorch_main()) for function steps, `zorch step run` for
 * command steps.  Checked: artifacts flow, cache hits never reach the plugin
 * (also across a local run), retries, timeouts (the plugin is asked to
 * stop), cancel, failure propagation; the step log the host writes from
 * the bytes the plugin hands it (one header per attempt), and the run and
 * step records it hands the plugin (host version 3). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "zorch-check.h"

static int produce(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  int64_t n;
  int rc = zorch_ctx_param_int(ctx, "n", &n);
  if (rc) return rc;
  char buf[64];
  int len = snprintf(buf, sizeof buf, "%lld", (long long)(n * 2));
  zorch_ctx_log(ctx, "doubling %lld in pid %d", (long long)n, (int)getpid());
  return zorch_ctx_output(ctx, "value", buf, (size_t)len);
}

static int check(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  const void *data = NULL;
  size_t size = 0;
  int rc = zorch_ctx_input(ctx, "copy", &data, &size);
  if (rc) return rc;
  char out[80];
  int len = snprintf(out, sizeof out, "checked %.*s", (int)size, (const char *)data);
  return zorch_ctx_output(ctx, "verdict", out, (size_t)len);
}

static const char *marker(void) {
  static char path[512];
  if (!path[0]) snprintf(path, sizeof path, "%s/retry-marker", getenv("ZORCH_TEST_MARKER_DIR") ?: "/tmp");
  return path;
}

static int build(zorch_pipeline **out, const char *name, void *payload) {
  (void)payload;
  zorch_pipeline *p = NULL;
  int rc = zorch_pipeline_new(&p, name);
  if (rc) return rc;
  zorch_step *a, *b, *c;
  if (!strcmp(name, "rdemo")) {
    zorch_pipeline_add_param(p, "n", "21");
    zorch_pipeline_add_function_step(&a, p, "produce", produce, NULL);
    zorch_step_use_param(a, "n");
    zorch_step_add_output(a, "value");
    const char *argv[] = {"sh", "-c", "echo \"got $(cat $ZORCH_INPUT_VALUE)\"; cp $ZORCH_INPUT_VALUE $ZORCH_OUTPUT_COPY", NULL};
    zorch_pipeline_add_command_step(&b, p, "consume", argv);
    zorch_step_add_input(b, "value", "produce", "value");
    zorch_step_add_output(b, "copy");
    zorch_pipeline_add_function_step(&c, p, "check", check, NULL);
    zorch_step_add_input(c, "copy", "consume", "copy");
    zorch_step_add_output(c, "verdict");
  } else if (!strcmp(name, "rretry")) {
    char script[1200];
    snprintf(script, sizeof script, "if [ -e %s ]; then echo second; else touch %s; echo first; exit 3; fi",
             marker(), marker());
    const char *argv[] = {"sh", "-c", script, NULL};
    zorch_pipeline_add_command_step(&a, p, "flaky", argv);
    zorch_step_set_retry(a, 1, 0.1, 1);
  } else if (!strcmp(name, "rslow")) {
    const char *argv[] = {"sleep", "30", NULL};
    zorch_pipeline_add_command_step(&a, p, "slow", argv);
    zorch_step_set_timeout(a, 1);
  } else if (!strcmp(name, "rcancel")) {
    const char *argv[] = {"sleep", "30", NULL};
    zorch_pipeline_add_command_step(&a, p, "sleepy", argv);
  } else if (!strcmp(name, "rfail")) {
    const char *bad[] = {"sh", "-c", "echo broken; exit 4", NULL};
    zorch_pipeline_add_command_step(&a, p, "bad", bad);
    zorch_step_add_output(a, "x");
    const char *after[] = {"true", NULL};
    zorch_pipeline_add_command_step(&b, p, "after", after);
    zorch_step_add_input(b, "x", "bad", "x");
    const char *indep[] = {"true", NULL};
    zorch_pipeline_add_command_step(&c, p, "independent", indep);
  }
  *out = p;
  return ZORCH_OK;
}

static char launch_log[600];

static zorch_client *remote_client(void) {
  zorch_client_options o = ZORCH_CLIENT_OPTIONS_INIT;
  o.home = zt_tmpdir();
  o.plugin_path = getenv("ZORCH_TEST_REMOTE_PLUGINS");
  zorch_client *c = NULL;
  zt_ok(zorch_client_new(&c, &o));
  zt_ok(zorch_component_register(c, "orchestrator", "remote", "spawn_remote", NULL, 0));
  zt_ok(zorch_stack_register(c, "remote", "remote", NULL, 0));
  snprintf(launch_log, sizeof launch_log, "%s/launches.log", o.home);
  setenv("ZORCH_TEST_LAUNCH_LOG", launch_log, 1);
  unlink(launch_log);
  return c;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return strdup("");
  char *buf = calloc(1, 65536);
  size_t n = fread(buf, 1, 65535, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static int count_of(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

static zorch_run *run_on(zorch_client *c, const char *pipeline, const char *stack, int want) {
  zorch_pipeline *p = NULL;
  zt_ok(build(&p, pipeline, NULL));
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.stack = stack;
  zorch_run *r = NULL;
  int rc = zorch_pipeline_run(&r, c, p, &o);
  ck_assert_msg(rc == want, "run of %s on %s: %d (%s)", pipeline, stack ? stack : "default", rc,
                zorch_error_last()->message);
  zorch_pipeline_free(p);
  return r;
}

static int step_status(zorch_run *r, const char *step) {
  size_t i;
  zt_ok(zorch_run_step_index(r, step, &i));
  return zorch_run_step_status(r, i);
}

START_TEST(artifacts_flow_and_cache_hits_stay_home) {
  zorch_client *c = remote_client();
  zorch_run *r = run_on(c, "rdemo", "remote", ZORCH_OK);
  ck_assert_int_eq(step_status(r, "produce"), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(step_status(r, "consume"), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_COMPLETED);
  void *data = NULL;
  size_t size = 0;
  zt_ok(zorch_run_read_output(&data, &size, r, "check", "verdict"));
  ck_assert_str_eq((char *)data, "checked 42");
  zorch_free(data);
  char *log = NULL;
  zt_ok(zorch_run_read_log(&log, NULL, r, "produce"));
  ck_assert_msg(strstr(log, "doubling 21 in pid"), "log: %s", log);
  char mine[64];
  snprintf(mine, sizeof mine, "in pid %d\n", (int)getpid());
  ck_assert_msg(!strstr(log, mine), "the function step ran in this process: %s", log);
  zorch_free(log);
  zt_ok(zorch_run_read_log(&log, NULL, r, "consume"));
  ck_assert_msg(strstr(log, "got 42"), "log: %s", log);
  /* the plugin handed the output to the host, which wrote the header */
  ck_assert_msg(!strncmp(log, "--- attempt 1 (spawn_remote) ---\ngot 42\n", 37), "log: %s", log);
  ck_assert_int_eq(count_of(log, "--- attempt "), 1);
  zorch_free(log);
  /* the records the host handed the plugin before each step's end */
  char path[700];
  snprintf(path, sizeof path, "%s.consume.json", launch_log);
  char *rec = slurp(path);
  ck_assert_msg(strstr(rec, "\"step\":\"consume\"") && strstr(rec, "\"status\":\"completed\""),
                "step record: %s", rec);
  free(rec);
  snprintf(path, sizeof path, "%s.run.json", launch_log);
  rec = slurp(path);
  char want[200];
  snprintf(want, sizeof want, "\"id\":\"%s\"", zorch_run_id(r));
  ck_assert_msg(strstr(rec, "\"zorch_run\":1") && strstr(rec, want), "run record: %s", rec);
  free(rec);
  zorch_run_free(r);
  char *launches = slurp(launch_log);
  ck_assert_int_eq(count_of(launches, "launch "), 3);
  ck_assert_msg(strstr(launches, "launch produce 1") && strstr(launches, "launch consume 1") &&
                    strstr(launches, "launch check 1"),
                "launches: %s", launches);
  /* an attempt that does not exist, or has ended, and a step the run lacks */
  char nf[64];
  snprintf(nf, sizeof nf, "bogus-log %d\n", ZORCH_ENOTFOUND);
  ck_assert_msg(count_of(launches, nf) == 3, "launches: %s", launches);
  snprintf(nf, sizeof nf, "late-log %d\n", ZORCH_ENOTFOUND);
  ck_assert_msg(count_of(launches, nf) == 3, "launches: %s", launches);
  snprintf(nf, sizeof nf, "no-step-record %d\n", ZORCH_ENOTFOUND);
  ck_assert_msg(count_of(launches, nf) == 3, "launches: %s", launches);
  free(launches);
  /* again: every step is a cache hit, and none reaches the plugin */
  unlink(launch_log);
  r = run_on(c, "rdemo", "remote", ZORCH_OK);
  ck_assert_int_eq(step_status(r, "produce"), ZORCH_STATUS_CACHED);
  ck_assert_int_eq(step_status(r, "consume"), ZORCH_STATUS_CACHED);
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_CACHED);
  zorch_run_free(r);
  launches = slurp(launch_log);
  ck_assert_msg(count_of(launches, "launch ") == 0, "cached steps were launched: %s", launches);
  free(launches);
  /* the local flavor finds the same cache entries */
  r = run_on(c, "rdemo", NULL, ZORCH_OK);
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_CACHED);
  zorch_run_free(r);
  zorch_client_free(c);
}
END_TEST

START_TEST(local_results_are_cache_hits_remotely) {
  zorch_client *c = remote_client();
  zorch_run *r = run_on(c, "rdemo", NULL, ZORCH_OK); /* local first */
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_COMPLETED);
  zorch_run_free(r);
  r = run_on(c, "rdemo", "remote", ZORCH_OK);
  ck_assert_int_eq(step_status(r, "produce"), ZORCH_STATUS_CACHED);
  ck_assert_int_eq(step_status(r, "consume"), ZORCH_STATUS_CACHED);
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_CACHED);
  zorch_run_free(r);
  char *launches = slurp(launch_log);
  ck_assert_msg(count_of(launches, "launch ") == 0, "cached steps were launched: %s", launches);
  free(launches);
  zorch_client_free(c);
}
END_TEST

START_TEST(retries_launch_a_second_attempt) {
  zorch_client *c = remote_client();
  setenv("ZORCH_TEST_MARKER_DIR", zt_tmpdir(), 1);
  zorch_run *r = run_on(c, "rretry", "remote", ZORCH_OK);
  size_t i;
  zt_ok(zorch_run_step_index(r, "flaky", &i));
  ck_assert_int_eq(zorch_run_step_status(r, i), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(zorch_run_step_attempts(r, i), 2);
  char *log = NULL;
  zt_ok(zorch_run_read_log(&log, NULL, r, "flaky"));
  /* both attempts' bytes, each after its own header, in order */
  const char *h1 = strstr(log, "--- attempt 1 (spawn_remote) ---\n");
  const char *first = strstr(log, "first");
  const char *h2 = strstr(log, "--- attempt 2 (spawn_remote) ---\n");
  const char *second = strstr(log, "second");
  ck_assert_msg(h1 && first && h2 && second && h1 < first && first < h2 && h2 < second, "log: %s",
                log);
  ck_assert_int_eq(count_of(log, "--- attempt "), 2);
  zorch_free(log);
  zorch_run_free(r);
  char *launches = slurp(launch_log);
  ck_assert_msg(strstr(launches, "launch flaky 1") && strstr(launches, "launch flaky 2"), "launches: %s",
                launches);
  free(launches);
  zorch_client_free(c);
}
END_TEST

START_TEST(timeout_stops_the_attempt) {
  zorch_client *c = remote_client();
  time_t t0 = time(NULL);
  zorch_run *r = run_on(c, "rslow", "remote", ZORCH_ESTEP);
  ck_assert_msg(time(NULL) - t0 < 15, "the timeout did not stop the step");
  size_t i;
  zt_ok(zorch_run_step_index(r, "slow", &i));
  ck_assert_int_eq(zorch_run_step_status(r, i), ZORCH_STATUS_FAILED);
  ck_assert_msg(strstr(zorch_run_step_error(r, i), "timed out after 1 s"), "error: %s",
                zorch_run_step_error(r, i));
  zorch_run_free(r);
  char *launches = slurp(launch_log);
  ck_assert_msg(strstr(launches, "stop slow"), "launches: %s", launches);
  free(launches);
  zorch_client_free(c);
}
END_TEST

START_TEST(cancel_stops_launched_steps) {
  zorch_client *c = remote_client();
  zorch_pipeline *p = NULL;
  zt_ok(build(&p, "rcancel", NULL));
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.stack = "remote";
  zorch_run *r = NULL;
  zt_ok(zorch_run_start(&r, c, p, &o));
  for (int k = 0; k < 100; k++) { /* until the attempt was launched */
    char *l = slurp(launch_log);
    bool up = strstr(l, "launch sleepy") != NULL;
    free(l);
    if (up) break;
    usleep(50000);
  }
  time_t t0 = time(NULL);
  zt_ok(zorch_run_cancel(r));
  zt_assert_rc(zorch_run_wait(r, 20000), ZORCH_ECANCELLED);
  ck_assert_msg(time(NULL) - t0 < 10, "cancel took too long");
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_STOPPED);
  size_t i;
  zt_ok(zorch_run_step_index(r, "sleepy", &i));
  ck_assert_int_eq(zorch_run_step_status(r, i), ZORCH_STATUS_STOPPED);
  zorch_run_free(r);
  zorch_pipeline_free(p);
  char *launches = slurp(launch_log);
  ck_assert_msg(strstr(launches, "stop sleepy"), "launches: %s", launches);
  free(launches);
  zorch_client_free(c);
}
END_TEST

START_TEST(failure_skips_downstream_only) {
  zorch_client *c = remote_client();
  zorch_run *r = run_on(c, "rfail", "remote", ZORCH_ESTEP);
  size_t i;
  zt_ok(zorch_run_step_index(r, "bad", &i));
  ck_assert_int_eq(zorch_run_step_status(r, i), ZORCH_STATUS_FAILED);
  ck_assert_int_eq(zorch_run_step_exit_code(r, i), 4);
  ck_assert_msg(strstr(zorch_run_step_error(r, i), "exited with status 4"), "error: %s",
                zorch_run_step_error(r, i));
  /* the last lines of what it printed, without the host's attempt header */
  ck_assert_msg(strstr(zorch_run_step_error(r, i), "last lines of its log:\nbroken") &&
                    !strstr(zorch_run_step_error(r, i), "--- attempt"),
                "error: %s", zorch_run_step_error(r, i));
  ck_assert_int_eq(step_status(r, "after"), ZORCH_STATUS_SKIPPED);
  ck_assert_int_eq(step_status(r, "independent"), ZORCH_STATUS_COMPLETED);
  zorch_run_free(r);
  zorch_client_free(c);
}
END_TEST

static Suite *remote_suite(void) {
  Suite *s = suite_create("remote");
  TCase *tc = tcase_create("remote");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, artifacts_flow_and_cache_hits_stay_home);
  tcase_add_test(tc, local_results_are_cache_hits_remotely);
  tcase_add_test(tc, retries_launch_a_second_attempt);
  tcase_add_test(tc, timeout_stops_the_attempt);
  tcase_add_test(tc, cancel_stops_launched_steps);
  tcase_add_test(tc, failure_skips_downstream_only);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char **argv) {
  /* started by the spawn_remote flavor as one function step */
  if (zorch_main(argc, argv, build, NULL) != ZORCH_OK) return 2;
  return zt_run_suite(remote_suite());
}
