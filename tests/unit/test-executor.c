/* Executor semantics: parallelism, data flow, failure modes, retries, timeouts, cancel. */
#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deployment.h"
#include "executor.h"
#include "zorch-check.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run a pipeline through the executor with a fresh store; returns the executor (finished). */
typedef struct {
  zorch__store *store;
  zorch__exec *x;
  int status;
  const char *message;
  double wall;
  char id[32];
} result;

static zorch__store *shared_store;

static void close_store(void) {
  if (shared_store) zorch__store_close(shared_store);
  shared_store = NULL;
}

/* A new empty store for the next runs (tests also run in one process with CK_FORK=no). */
static void fresh_store(void) {
  static bool registered;
  close_store();
  zt_ok(zorch__store_open(&shared_store, zt_tmpdir()));
  if (!registered) atexit(close_store);
  registered = true;
}

/* The status callback of the next run_pipeline() (reset by it). */
static zorch_progress_cb next_progress_cb;

static result run_pipeline(zorch_pipeline *p, int mode, uint32_t max_parallel, uint32_t flags,
                           double cancel_after) {
  result res = {0};
  if (!shared_store) fresh_store();
  res.store = shared_store;
  static int counter;
  char *id = res.id;
  snprintf(res.id, sizeof res.id, "run%d", ++counter);
  zorch__compile_info ci = {.run_id = id, .run_name = id, .failure_mode = mode,
                            .store_path = zorch__store_root(res.store)};
  char *doc = NULL;
  zt_ok(zorch__deployment_compile(&doc, NULL, p, &ci));
  zorch__plan *plan = NULL;
  zt_ok(zorch__plan_load(&plan, doc));
  free(doc);
  zt_ok(zorch__plan_bind(plan, p));
  zorch__exec_opts o = {.max_parallel = max_parallel, .flags = flags, .progress_cb = next_progress_cb};
  next_progress_cb = NULL;
  double t0 = now_s();
  zt_ok(zorch__exec_start(&res.x, plan, res.store, &o));
  if (cancel_after > 0) {
    usleep((useconds_t)(cancel_after * 1e6));
    zt_ok(zorch__exec_cancel(res.x));
  }
  zt_ok(zorch__exec_wait(res.x, -1));
  res.wall = now_s() - t0;
  res.status = zorch__exec_status(res.x, &res.message);
  return res;
}

static const zorch__step_rec *rec(result *r, const char *step) {
  int64_t i = zorch__plan_find(zorch__exec_plan(r->x), step);
  ck_assert_msg(i >= 0, "no step %s", step);
  static zorch__step_rec *snap;
  static uint32_t n;
  if (snap) zorch__step_recs_free(snap, n);
  snap = zorch__exec_snapshot(r->x);
  n = zorch__exec_plan(r->x)->n_steps;
  return &snap[i];
}

static zorch_pipeline *newp(const char *name) {
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, name));
  return p;
}

static zorch_step *cmd(zorch_pipeline *p, const char *name, const char *script) {
  const char *argv[] = {"sh", "-c", script, NULL};
  zorch_step *s = NULL;
  zt_ok(zorch_pipeline_add_command_step(&s, p, name, argv));
  return s;
}

/* ---- parallelism ---- */

static atomic_int live, peak;

static int sleepy(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  int now = atomic_fetch_add(&live, 1) + 1;
  int old = atomic_load(&peak);
  while (now > old && !atomic_compare_exchange_weak(&peak, &old, now)) {
  }
  usleep(200000);
  atomic_fetch_sub(&live, 1);
  return zorch_ctx_output(ctx, "o", "x", 1);
}

START_TEST(function_steps_run_in_parallel_up_to_the_bound) {
  for (uint32_t bound = 2; bound <= 4; bound += 2) {
    zorch_pipeline *p = newp("par");
    for (int i = 0; i < 8; i++) {
      char n[8];
      snprintf(n, sizeof n, "s%d", i);
      zorch_step *s;
      zt_ok(zorch_pipeline_add_function_step(&s, p, n, sleepy, NULL));
      zt_ok(zorch_step_add_output(s, "o"));
      zt_ok(zorch_step_set_cache(s, 0));
    }
    atomic_store(&peak, 0);
    result r = run_pipeline(p, 0, bound, 0, 0);
    ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
    ck_assert_int_eq(atomic_load(&peak), (int)bound);
    /* 8 steps of 0.2 s in `bound` lanes */
    ck_assert_msg(r.wall < 8 * 0.2 / bound + 0.5, "wall %.2f s with bound %u", r.wall, bound);
    zorch__exec_free(r.x);
    zorch_pipeline_free(p);
  }
}
END_TEST

static int count_threads(void) {
  DIR *d = opendir("/proc/self/task");
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (de->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

START_TEST(command_steps_take_one_thread_per_slot) {
  zorch_pipeline *p = newp("cmds");
  for (int i = 0; i < 12; i++) {
    char n[8];
    snprintf(n, sizeof n, "c%d", i);
    zorch_step *s = cmd(p, n, "sleep 0.3");
    zt_ok(zorch_step_set_cache(s, 0));
  }
  fresh_store();
  zorch__compile_info ci = {.run_id = "threads", .store_path = zorch__store_root(shared_store)};
  char *doc;
  zt_ok(zorch__deployment_compile(&doc, NULL, p, &ci));
  zorch__plan *plan;
  zt_ok(zorch__plan_load(&plan, doc));
  free(doc);
  int before = count_threads();
  zorch__exec *x;
  zorch__exec_opts o = {.max_parallel = 4};
  double t0 = now_s();
  zt_ok(zorch__exec_start(&x, plan, shared_store, &o));
  usleep(150000);
  int during = count_threads();
  zt_ok(zorch__exec_wait(x, -1));
  double wall = now_s() - t0;
  ck_assert_int_eq(zorch__exec_status(x, NULL), ZORCH_STATUS_COMPLETED);
  /* twelve processes, four at a time: one command worker per slot (not per step), the
   * event-loop thread and the committers of the run journal and of the cache index; no
   * function-step pool (no function steps) */
  ck_assert_msg(during - before == 4 + 3, "threads before %d, during %d", before, during);
  ck_assert_msg(wall > 0.85 && wall < 1.6, "twelve 0.3 s sleeps four at a time took %.2f s", wall);
  zorch__exec_free(x);
  zorch_pipeline_free(p);
}
END_TEST

/* ---- data flow and logs ---- */

static int consume(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  const void *data;
  size_t size;
  int rc = zorch_ctx_input(ctx, "text", &data, &size);
  if (rc) return zorch_ctx_fail(ctx, "no input: %s", zorch_error_last()->message);
  double scale;
  if ((rc = zorch_ctx_param_double(ctx, "scale", &scale))) return rc;
  char out[128];
  int n = snprintf(out, sizeof out, "%zu bytes, scale %g: %.*s", size, scale, (int)size, (const char *)data);
  zorch_ctx_log(ctx, "consumed %zu bytes", size);
  return zorch_ctx_output(ctx, "summary", out, (size_t)n);
}

START_TEST(artifacts_flow_between_command_and_function_steps) {
  zorch_pipeline *p = newp("flow");
  zt_ok(zorch_pipeline_add_param(p, "word", "\"hello\""));
  zt_ok(zorch_pipeline_add_param(p, "scale", "2.5"));
  zorch_step *a = cmd(p, "make", "printf '%s' \"$ZORCH_PARAM_WORD\" > \"$ZORCH_OUTPUT_TEXT\"; echo to-stdout; echo to-stderr >&2");
  zt_ok(zorch_step_add_output(a, "text"));
  zt_ok(zorch_step_use_param(a, "word"));
  zorch_step *b;
  zt_ok(zorch_pipeline_add_function_step(&b, p, "use", consume, NULL));
  zt_ok(zorch_step_add_input(b, "text", "make", "text"));
  zt_ok(zorch_step_add_output(b, "summary"));
  zt_ok(zorch_step_use_param(b, "scale"));
  zorch_step *c = cmd(p, "check", "test \"$(cat \"$ZORCH_INPUT_SUMMARY\")\" = '5 bytes, scale 2.5: hello' && mkdir -p \"$ZORCH_OUTPUT_DIR/sub\" && echo x > \"$ZORCH_OUTPUT_DIR/sub/f\"");
  zt_ok(zorch_step_add_input(c, "summary", "use", "summary"));
  zt_ok(zorch_step_add_output(c, "dir"));
  result r = run_pipeline(p, 0, 2, 0, 0);
  ck_assert_msg(r.status == ZORCH_STATUS_COMPLETED, "run: %s", r.message ? r.message : "");
  const zorch__step_rec *rc = rec(&r, "check");
  ck_assert(rc->outputs[0].set && rc->outputs[0].is_dir);
  /* logs: stdout and stderr of the command, ctx log of the function */
  char *logp = NULL, *text = NULL;
  if (asprintf(&logp, "%s/runs/%s/logs/make.log", zorch__store_root(r.store), r.id) < 0) abort();
  zt_ok(zorch__read_file(logp, &text, NULL));
  ck_assert_msg(strstr(text, "to-stdout\n") && strstr(text, "to-stderr\n"), "log: %s", text);
  free(text);
  free(logp);
  if (asprintf(&logp, "%s/runs/%s/logs/use.log", zorch__store_root(r.store), r.id) < 0) abort();
  zt_ok(zorch__read_file(logp, &text, NULL));
  ck_assert_msg(strstr(text, "consumed 5 bytes"), "log: %s", text);
  free(text);
  free(logp);
  /* the summary artifact holds what the function wrote */
  const zorch__step_rec *ru = rec(&r, "use");
  char *ap = zorch__store_artifact_path(r.store, ru->outputs[0].digest);
  zt_ok(zorch__read_file(ap, &text, NULL));
  ck_assert_str_eq(text, "5 bytes, scale 2.5: hello");
  free(text);
  free(ap);
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

/* A command worker reuses its output pipe from step to step; a step that leaves
 * a process behind that still writes must not put that output into the log of
 * the step the worker runs next. */
START_TEST(leftover_process_output_stays_out_of_the_next_log) {
  zorch_pipeline *p = newp("leftover");
  cmd(p, "a", "echo a-own; (sleep 0.3; echo a-late) &");
  zorch_step *b = cmd(p, "b", "echo b-own; sleep 0.6");
  zt_ok(zorch_step_after(b, "a"));
  zorch_step *c = cmd(p, "c", "echo c-own");
  zt_ok(zorch_step_after(c, "b"));
  result r = run_pipeline(p, 0, 1, 0, 0);
  ck_assert_msg(r.status == ZORCH_STATUS_COMPLETED, "run: %s", r.message ? r.message : "");
  const char *want[] = {"a", "a-own\n", "b", "b-own\n", "c", "c-own\n"};
  for (int k = 0; k < 6; k += 2) {
    char *logp = NULL, *text = NULL;
    if (asprintf(&logp, "%s/runs/%s/logs/%s.log", zorch__store_root(r.store), r.id, want[k]) < 0)
      abort();
    zt_ok(zorch__read_file(logp, &text, NULL));
    ck_assert_msg(!strcmp(text, want[k + 1]), "log of %s: '%s'", want[k], text);
    free(text);
    free(logp);
  }
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

/* ---- failure modes ---- */

static zorch_pipeline *failing_graph(void) {
  /* bad fails at once; slow runs 0.6 s; after_bad depends on bad; after_slow on slow */
  zorch_pipeline *p = newp("fail");
  zorch_step *bad = cmd(p, "bad", "echo boom >&2; exit 3");
  zt_ok(zorch_step_add_output(bad, "o"));
  zorch_step *slow = cmd(p, "slow", "sleep 0.6; echo done > \"$ZORCH_OUTPUT_O\"");
  zt_ok(zorch_step_add_output(slow, "o"));
  zorch_step *ab = cmd(p, "after_bad", "cat \"$ZORCH_INPUT_I\"");
  zt_ok(zorch_step_add_input(ab, "i", "bad", "o"));
  zorch_step *as = cmd(p, "after_slow", "cat \"$ZORCH_INPUT_I\"");
  zt_ok(zorch_step_add_input(as, "i", "slow", "o"));
  for (size_t i = 0; i < 4; i++) {
    const char *n[] = {"bad", "slow", "after_bad", "after_slow"};
    zt_ok(zorch_step_set_cache(zorch_pipeline_step(p, n[i]), 0));
  }
  return p;
}

START_TEST(continue_on_failure_finishes_independent_branches) {
  zorch_pipeline *p = failing_graph();
  result r = run_pipeline(p, ZORCH_CONTINUE_ON_FAILURE, 4, 0, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_FAILED);
  ck_assert_msg(strstr(r.message, "step 'bad' failed") != NULL, "%s", r.message);
  const zorch__step_rec *b = rec(&r, "bad");
  ck_assert_int_eq(b->status, ZORCH_STATUS_FAILED);
  ck_assert_int_eq(b->exit_code, 3);
  ck_assert_msg(strstr(b->error, "exited with status 3") && strstr(b->error, "boom"), "%s", b->error);
  ck_assert_int_eq(rec(&r, "after_bad")->status, ZORCH_STATUS_SKIPPED);
  ck_assert(strstr(rec(&r, "after_bad")->error, "upstream step 'bad'"));
  ck_assert_int_eq(rec(&r, "slow")->status, ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(rec(&r, "after_slow")->status, ZORCH_STATUS_COMPLETED);
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

START_TEST(stop_on_failure_lets_running_steps_finish) {
  zorch_pipeline *p = failing_graph();
  result r = run_pipeline(p, ZORCH_STOP_ON_FAILURE, 4, 0, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_FAILED);
  ck_assert_int_eq(rec(&r, "slow")->status, ZORCH_STATUS_COMPLETED); /* was running: finished */
  ck_assert_int_eq(rec(&r, "after_slow")->status, ZORCH_STATUS_SKIPPED); /* not started */
  ck_assert(strstr(rec(&r, "after_slow")->error, "stop_on_failure"));
  ck_assert_int_eq(rec(&r, "after_bad")->status, ZORCH_STATUS_SKIPPED);
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

START_TEST(fail_fast_stops_running_steps) {
  zorch_pipeline *p = newp("ff");
  cmd(p, "bad", "sleep 0.2; exit 1");
  zorch_step *slow = cmd(p, "slow", "sleep 30");
  zt_ok(zorch_step_set_cache(slow, 0));
  zt_ok(zorch_step_set_cache(zorch_pipeline_step(p, "bad"), 0));
  result r = run_pipeline(p, ZORCH_FAIL_FAST, 4, 0, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_FAILED);
  ck_assert_msg(r.wall < 5, "fail_fast took %.1f s", r.wall);
  ck_assert_int_eq(rec(&r, "bad")->status, ZORCH_STATUS_FAILED);
  ck_assert_int_eq(rec(&r, "slow")->status, ZORCH_STATUS_STOPPED);
  ck_assert_msg(strstr(rec(&r, "slow")->error, "fail_fast"), "%s", rec(&r, "slow")->error);
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

/* ---- retries and timeouts ---- */

static atomic_int tries;

static int flaky(zorch_step_ctx *ctx, void *payload) {
  int need = *(int *)payload;
  int t = atomic_fetch_add(&tries, 1) + 1;
  ck_assert_int_eq((int)zorch_ctx_attempt(ctx), t);
  if (t < need) return zorch_ctx_fail(ctx, "attempt %d fails", t);
  return 0;
}

START_TEST(retries_with_delay_and_backoff) {
  int need = 3;
  zorch_pipeline *p = newp("retry");
  zorch_step *s;
  zt_ok(zorch_pipeline_add_function_step(&s, p, "flaky", flaky, &need));
  zt_ok(zorch_step_set_retry(s, 2, 0.1, 2)); /* waits 0.1 then 0.2 */
  atomic_store(&tries, 0);
  result r = run_pipeline(p, 0, 2, 0, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(rec(&r, "flaky")->attempts, 3);
  ck_assert_msg(r.wall >= 0.3 && r.wall < 2, "wall %.2f", r.wall);
  zorch__exec_free(r.x);

  need = 10;
  atomic_store(&tries, 0);
  r = run_pipeline(p, 0, 2, ZORCH_RUN_NO_CACHE, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_FAILED);
  ck_assert_int_eq(rec(&r, "flaky")->attempts, 3);
  ck_assert_str_eq(rec(&r, "flaky")->error, "attempt 3 fails");
  zorch__exec_free(r.x);

  /* a command step retried: the log keeps every attempt */
  zorch_pipeline *q = newp("retrycmd");
  zorch_step *c = cmd(q, "c", "echo try; exit 1");
  zt_ok(zorch_step_set_retry(c, 1, 0, 1));
  r = run_pipeline(q, 0, 2, 0, 0);
  ck_assert_int_eq(rec(&r, "c")->attempts, 2);
  ck_assert_int_eq(rec(&r, "c")->status, ZORCH_STATUS_FAILED);
  zorch__exec_free(r.x);
  zorch_pipeline_free(q);
  zorch_pipeline_free(p);
}
END_TEST

static int polite_loop(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  for (int i = 0; i < 1000 && !zorch_ctx_cancelled(ctx); i++) usleep(10000);
  return 0;
}

START_TEST(timeouts_kill_commands_and_stop_functions) {
  zorch_pipeline *p = newp("timeout");
  zorch_step *c = cmd(p, "sleeper", "sleep 20");
  zt_ok(zorch_step_set_timeout(c, 0.4));
  zorch_step *f;
  zt_ok(zorch_pipeline_add_function_step(&f, p, "looper", polite_loop, NULL));
  zt_ok(zorch_step_set_timeout(f, 0.3));
  result r = run_pipeline(p, 0, 4, 0, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_FAILED);
  ck_assert_msg(r.wall < 4, "timeouts took %.1f s", r.wall);
  ck_assert_int_eq(rec(&r, "sleeper")->status, ZORCH_STATUS_FAILED);
  ck_assert_msg(strstr(rec(&r, "sleeper")->error, "timed out after 0.4 s"), "%s", rec(&r, "sleeper")->error);
  ck_assert_int_eq(rec(&r, "looper")->status, ZORCH_STATUS_FAILED);
  ck_assert(strstr(rec(&r, "looper")->error, "timed out after 0.3 s"));
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);

  /* a function step alone: nothing else wakes the loop when its deadline is set */
  p = newp("timeout_fn");
  zt_ok(zorch_pipeline_add_function_step(&f, p, "looper", polite_loop, NULL));
  zt_ok(zorch_step_set_timeout(f, 0.3));
  r = run_pipeline(p, 0, 4, 0, 0);
  ck_assert_int_eq(rec(&r, "looper")->status, ZORCH_STATUS_FAILED);
  ck_assert_msg(r.wall < 3, "a lone function step's timeout took %.1f s", r.wall);
  ck_assert(strstr(rec(&r, "looper")->error, "timed out after 0.3 s"));
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

/* ---- cancel ---- */

START_TEST(cancel_kills_processes_and_records_stopped) {
  const char *dir = zt_tmpdir();
  char script[512];
  snprintf(script, sizeof script, "echo $$ > %s/pid; exec sleep 30", dir);
  zorch_pipeline *p = newp("cancel");
  cmd(p, "long", script);
  zorch_step *f;
  zt_ok(zorch_pipeline_add_function_step(&f, p, "looper", polite_loop, NULL));
  zorch_step *after = cmd(p, "after", "true");
  zt_ok(zorch_step_after(after, "long"));
  result r = run_pipeline(p, 0, 4, 0, 0.5);
  ck_assert_int_eq(r.status, ZORCH_STATUS_STOPPED);
  ck_assert_msg(r.wall < 4, "cancel took %.1f s", r.wall);
  ck_assert_int_eq(rec(&r, "long")->status, ZORCH_STATUS_STOPPED);
  ck_assert_int_eq(rec(&r, "looper")->status, ZORCH_STATUS_STOPPED);
  ck_assert_int_eq(rec(&r, "after")->status, ZORCH_STATUS_STOPPED);
  char pidfile[512];
  snprintf(pidfile, sizeof pidfile, "%s/pid", dir);
  FILE *fp = fopen(pidfile, "r");
  ck_assert_ptr_nonnull(fp);
  int pid = 0;
  ck_assert_int_eq(fscanf(fp, "%d", &pid), 1);
  fclose(fp);
  ck_assert_msg(kill(pid, 0) != 0, "process %d of the cancelled step is still alive", pid);
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

START_TEST(missing_output_and_missing_program_fail_clearly) {
  zorch_pipeline *p = newp("missing");
  zorch_step *a = cmd(p, "lazy", "true");
  zt_ok(zorch_step_add_output(a, "result"));
  const char *argv[] = {"/nonexistent/program", NULL};
  zt_ok(zorch_pipeline_add_command_step(NULL, p, "ghost", argv));
  result r = run_pipeline(p, 0, 2, 0, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_FAILED);
  ck_assert_msg(strstr(rec(&r, "lazy")->error, "did not write output 'result'") &&
                    strstr(rec(&r, "lazy")->error, "$ZORCH_OUTPUT_RESULT"),
                "%s", rec(&r, "lazy")->error);
  ck_assert_msg(strstr(rec(&r, "ghost")->error, "cannot run '/nonexistent/program'"), "%s",
                rec(&r, "ghost")->error);
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

/* ---- caching at the executor level ---- */

static atomic_int calls;
static int counted(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  atomic_fetch_add(&calls, 1);
  const char *v;
  int rc = zorch_ctx_param(ctx, "k", &v);
  if (rc) return rc;
  return zorch_ctx_output(ctx, "o", v, strlen(v));
}

START_TEST(second_run_is_cached_and_param_change_reruns_downstream_only) {
  zorch_pipeline *p = newp("cachey");
  zt_ok(zorch_pipeline_add_param(p, "k", "1"));
  zt_ok(zorch_pipeline_add_param(p, "other", "1"));
  zorch_step *a, *b, *c, *d;
  zt_ok(zorch_pipeline_add_function_step(&a, p, "a", counted, NULL));
  zt_ok(zorch_step_set_param(a, "k", "\"fixed\""));
  zt_ok(zorch_step_add_output(a, "o"));
  zt_ok(zorch_pipeline_add_function_step(&b, p, "b", counted, NULL));
  zt_ok(zorch_step_use_param(b, "k"));
  zt_ok(zorch_step_add_input(b, "i", "a", "o"));
  zt_ok(zorch_step_add_output(b, "o"));
  zt_ok(zorch_pipeline_add_function_step(&c, p, "c", counted, NULL));
  zt_ok(zorch_step_set_param(c, "k", "3"));
  zt_ok(zorch_step_add_input(c, "i", "b", "o"));
  zt_ok(zorch_step_add_output(c, "o"));
  zt_ok(zorch_pipeline_add_function_step(&d, p, "d", counted, NULL));
  zt_ok(zorch_step_set_param(d, "k", "4"));
  zt_ok(zorch_step_add_input(d, "i", "a", "o"));
  zt_ok(zorch_step_add_output(d, "o"));
  fresh_store();
  atomic_store(&calls, 0);
  result r = run_pipeline(p, 0, 2, 0, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(atomic_load(&calls), 4);
  zorch__exec_free(r.x);
  r = run_pipeline(p, 0, 2, 0, 0);
  ck_assert_int_eq(atomic_load(&calls), 4); /* nothing executed */
  const char *all[] = {"a", "b", "c", "d"};
  for (int i = 0; i < 4; i++) ck_assert_int_eq(rec(&r, all[i])->status, ZORCH_STATUS_CACHED);
  zorch__exec_free(r.x);
  /* change k: b uses it, c is downstream of b; a and d are not */
  zt_ok(zorch_step_set_param(zorch_pipeline_step(p, "b"), "k", "2"));
  r = run_pipeline(p, 0, 2, 0, 0);
  ck_assert_int_eq(atomic_load(&calls), 6); /* b and c re-ran */
  ck_assert_int_eq(rec(&r, "a")->status, ZORCH_STATUS_CACHED);
  ck_assert_int_eq(rec(&r, "b")->status, ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(rec(&r, "d")->status, ZORCH_STATUS_CACHED);
  /* c's output depends only on its own param, but its input digest changed: it re-runs */
  ck_assert_int_eq(rec(&r, "c")->status, ZORCH_STATUS_COMPLETED);
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

START_TEST(long_chain_and_wide_fan) {
  /* O(V+E) sanity on 20k steps: a chain with a side fan */
  zorch_pipeline *p = newp("big");
  char n[32], prev[32];
  for (int i = 0; i < 20000; i++) {
    snprintf(n, sizeof n, "s%d", i);
    zorch_step *s;
    zt_ok(zorch_pipeline_add_function_step(&s, p, n, counted, NULL));
    zt_ok(zorch_step_set_param(s, "k", "0"));
    zt_ok(zorch_step_add_output(s, "o"));
    if (i > 0 && i % 2 == 0) {
      snprintf(prev, sizeof prev, "s%d", i - 2);
      zt_ok(zorch_step_add_input(s, "i", prev, "o"));
    }
  }
  atomic_store(&calls, 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_REALTIME, &t0);
  result r = run_pipeline(p, 0, 2, ZORCH_RUN_EPHEMERAL | ZORCH_RUN_NO_CACHE, 0);
  clock_gettime(CLOCK_REALTIME, &t1);
  ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(atomic_load(&calls), 20000);
  /* an ephemeral run's step times (coarse clock): within the run, a few ms apart at most */
  double a0 = (double)t0.tv_sec + t0.tv_nsec / 1e9 - 0.02, a1 = (double)t1.tv_sec + t1.tv_nsec / 1e9 + 0.02;
  zorch__step_rec *snap = zorch__exec_snapshot(r.x);
  for (uint32_t i = 0; i < 20000; i++)
    ck_assert_msg(snap[i].started >= a0 && snap[i].started <= snap[i].finished && snap[i].finished <= a1,
                  "step %u: started %.6f finished %.6f, the run went from %.6f to %.6f", i,
                  snap[i].started, snap[i].finished, a0, a1);
  zorch__step_recs_free(snap, 20000);
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

/* ---- status callbacks follow the dependencies ---- */

enum { ORDER_N = 20000 };
static int order_preds[ORDER_N][3], order_npreds[ORDER_N];
static long order_running[ORDER_N], order_done[ORDER_N], order_seq;

static void order_progress(const char *run_id, const char *step, int status, void *payload) {
  (void)run_id;
  (void)payload;
  int i = atoi(step + 1); /* calls are serialised: no lock needed */
  if (status == ZORCH_STATUS_RUNNING) order_running[i] = ++order_seq;
  else if (status == ZORCH_STATUS_COMPLETED) order_done[i] = ++order_seq;
}

static int noop_step(zorch_step_ctx *ctx, void *payload) {
  (void)ctx;
  (void)payload;
  return 0;
}

/* Eight workers on a random DAG of no-op steps: a step is reported running
 * only after every step it depends on was reported completed. */
START_TEST(status_callbacks_follow_the_dependencies) {
  zorch_pipeline *p = newp("order");
  uint64_t seed = 7;
  char n[16], d[16];
  for (int i = 0; i < ORDER_N; i++) {
    snprintf(n, sizeof n, "s%d", i);
    zorch_step *s;
    zt_ok(zorch_pipeline_add_function_step(&s, p, n, noop_step, NULL));
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    int k = i ? (int)((seed >> 33) % 4) : 0;
    order_npreds[i] = 0;
    for (int e = 0; e < k; e++) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      int q = (int)((seed >> 33) % (uint64_t)i);
      bool dup = false;
      for (int f = 0; f < order_npreds[i]; f++) dup |= order_preds[i][f] == q;
      if (dup) continue;
      order_preds[i][order_npreds[i]++] = q;
      snprintf(d, sizeof d, "s%d", q);
      zt_ok(zorch_step_after(s, d));
    }
  }
  order_seq = 0;
  next_progress_cb = order_progress;
  result r = run_pipeline(p, 0, 8, ZORCH_RUN_NO_CACHE, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(order_seq, 2 * ORDER_N);
  for (int i = 0; i < ORDER_N; i++) {
    ck_assert_msg(order_running[i] && order_running[i] < order_done[i], "s%d: running #%ld, completed #%ld",
                  i, order_running[i], order_done[i]);
    for (int f = 0; f < order_npreds[i]; f++)
      ck_assert_msg(order_done[order_preds[i][f]] < order_running[i],
                    "s%d reported running (#%ld) before its upstream s%d completed (#%ld)", i,
                    order_running[i], order_preds[i][f], order_done[order_preds[i][f]]);
  }
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

/* ---- records and the cache index with the cache off ---- */

static int emit(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  return zorch_ctx_output(ctx, "o", "payload", 7);
}

static int pass_on(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  const void *d = NULL;
  size_t n = 0;
  int rc = zorch_ctx_input(ctx, "i", &d, &n);
  if (rc) return rc;
  return zorch_ctx_output(ctx, "o", d, n);
}

static off_t file_size(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 ? sb.st_size : -1;
}

/* ZORCH_RUN_NO_CACHE runs every step but still records its cache key and
 * its cache entry (so the next run can use them); the journal says what the
 * executor's records say.  An ephemeral run with the cache off does not touch
 * the cache index at all. */
START_TEST(no_cache_still_records_keys_and_entries) {
  zorch_pipeline *p = newp("nocache");
  zorch_step *a, *b;
  zt_ok(zorch_pipeline_add_function_step(&a, p, "a", emit, NULL));
  zt_ok(zorch_step_add_output(a, "o"));
  zt_ok(zorch_pipeline_add_function_step(&b, p, "b", pass_on, NULL));
  zt_ok(zorch_step_add_input(b, "i", "a", "o"));
  zt_ok(zorch_step_add_output(b, "o"));
  zorch_step *c = cmd(p, "c", "true");
  zt_ok(zorch_step_after(c, "b"));
  fresh_store();
  result r = run_pipeline(p, 0, 2, ZORCH_RUN_NO_CACHE, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
  const zorch__plan *plan = zorch__exec_plan(r.x);
  zorch__step_rec *cur = zorch__exec_snapshot(r.x);
  zorch__step_rec *replayed = zorch__step_recs_new(plan);
  char *run_dir = zorch__asprintf("%s/runs/%s", zorch__store_root(r.store), r.id);
  zt_ok(zorch__step_recs_load(plan, replayed, run_dir));
  char keys[3][ZORCH__DIGEST_HEX];
  for (uint32_t i = 0; i < plan->n_steps; i++) {
    ck_assert_int_eq(cur[i].status, ZORCH_STATUS_COMPLETED);
    ck_assert_msg(zorch__is_digest(cur[i].cache_key), "step %s has no cache key", plan->steps[i].name);
    memcpy(keys[i], cur[i].cache_key, ZORCH__DIGEST_HEX);
    /* the journal holds the same end record */
    ck_assert_int_eq(replayed[i].status, ZORCH_STATUS_COMPLETED);
    ck_assert_str_eq(replayed[i].cache_key, cur[i].cache_key);
    /* times are written with 6 decimals */
    ck_assert_msg(fabs(replayed[i].finished - cur[i].finished) < 2e-6, "finished %.6f vs %.6f",
                  replayed[i].finished, cur[i].finished);
    ck_assert(fabs(replayed[i].started - cur[i].started) < 2e-6);
    ck_assert(cur[i].finished >= cur[i].started);
    for (uint32_t k = 0; k < plan->steps[i].n_outputs; k++)
      ck_assert_str_eq(replayed[i].outputs[k].digest, cur[i].outputs[k].digest);
  }
  zorch__step_recs_free(cur, plan->n_steps);
  zorch__step_recs_free(replayed, plan->n_steps);
  free(run_dir);
  zorch__exec_free(r.x);

  /* the entries written with the cache off serve the next run */
  r = run_pipeline(p, 0, 2, 0, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
  const char *names[] = {"a", "b", "c"};
  for (int k = 0; k < 3; k++) {
    ck_assert_int_eq(rec(&r, names[k])->status, ZORCH_STATUS_CACHED);
    int64_t i = zorch__plan_find(zorch__exec_plan(r.x), names[k]);
    ck_assert_str_eq(rec(&r, names[k])->cache_key, keys[i]);
  }
  zorch__exec_free(r.x);

  /* ephemeral and cache off: no key, and the index is left as it was */
  char *index = zorch__asprintf("%s/cache/nocache.jsonl", zorch__store_root(r.store));
  off_t before = file_size(index);
  ck_assert_int_gt(before, 0);
  r = run_pipeline(p, 0, 2, ZORCH_RUN_EPHEMERAL | ZORCH_RUN_NO_CACHE, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
  for (int k = 0; k < 3; k++) {
    ck_assert_int_eq(rec(&r, names[k])->status, ZORCH_STATUS_COMPLETED);
    ck_assert_str_eq(rec(&r, names[k])->cache_key, "");
  }
  zorch__exec_free(r.x);
  ck_assert_int_eq(file_size(index), before);
  free(index);
  zorch_pipeline_free(p);
}
END_TEST

/* Step `step`'s first output must hold exactly `want`. */
static void assert_output_text(result *r, const char *step, const char *want) {
  char *ap = zorch__store_artifact_path(r->store, rec(r, step)->outputs[0].digest), *text = NULL;
  zt_ok(zorch__read_file(ap, &text, NULL));
  ck_assert_msg(!strcmp(text, want), "step %s wrote '%s', not '%s'", step, text, want);
  free(text);
  free(ap);
}

/* What a command step sees: zorch's variables over the step's own and the
 * pipeline defaults', those over the inherited environment. */
START_TEST(command_step_environment) {
  setenv("ZB_INHERITED", "outer", 1);
  setenv("ZB_SHADOW", "outer", 1);
  setenv("ZORCH_STEP_NAME", "inherited-wrong", 1);
  zorch_pipeline *p = newp("envs");
  zt_ok(zorch_step_set_env(zorch_pipeline_defaults(p), "ZB_SHADOW", "default"));
  const char *script = "printf '%s|%s|%s|%s' \"$ZB_OWN\" \"$ZB_SHADOW\" \"$ZB_INHERITED\" "
                       "\"$ZORCH_STEP_NAME\" > \"$ZORCH_OUTPUT_O\"";
  /* in this order: the steps without variables of their own share one
   * merged environment, which must not leak into the last one */
  const char *names[] = {"plain1", "plain2", "own"};
  const char *want[] = {"|default|outer|plain1", "|default|outer|plain2", "mine|default|outer|own"};
  for (int k = 0; k < 3; k++) {
    zorch_step *c = cmd(p, names[k], script);
    zt_ok(zorch_step_add_output(c, "o"));
    if (k == 2) zt_ok(zorch_step_set_env(c, "ZB_OWN", "mine"));
    if (k > 0) zt_ok(zorch_step_after(c, names[k - 1]));
  }
  /* and stdin is /dev/null */
  zorch_step *in = cmd(p, "stdin", "readlink /proc/$$/fd/0 | tr -d '\\n' > \"$ZORCH_OUTPUT_O\"");
  zt_ok(zorch_step_add_output(in, "o"));
  zt_ok(zorch_step_after(in, "own"));
  result r = run_pipeline(p, 0, 2, ZORCH_RUN_NO_CACHE, 0);
  unsetenv("ZB_INHERITED");
  unsetenv("ZB_SHADOW");
  unsetenv("ZORCH_STEP_NAME");
  ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
  for (int k = 0; k < 3; k++) assert_output_text(&r, names[k], want[k]);
  assert_output_text(&r, "stdin", "/dev/null");
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

START_TEST(params_reach_command_steps_as_text) {
  zorch_pipeline *p = newp("params");
  zt_ok(zorch_pipeline_add_param(p, "rate", "0.1"));
  zt_ok(zorch_pipeline_add_param(p, "label", "\"nightly\""));
  zt_ok(zorch_pipeline_add_param(p, "sizes", "[64, 32]"));
  zorch_step *a = cmd(p, "show", "printf '%s|%s|%s' \"$ZORCH_PARAM_RATE\" \"$ZORCH_PARAM_LABEL\" \"$ZORCH_PARAM_SIZES\" > \"$ZORCH_OUTPUT_O\"");
  zt_ok(zorch_step_add_output(a, "o"));
  zt_ok(zorch_step_use_param(a, "rate"));
  zt_ok(zorch_step_use_param(a, "label"));
  zt_ok(zorch_step_use_param(a, "sizes"));
  result r = run_pipeline(p, 0, 2, 0, 0);
  ck_assert_int_eq(r.status, ZORCH_STATUS_COMPLETED);
  assert_output_text(&r, "show", "0.1|nightly|[64,32]");
  zorch__exec_free(r.x);
  zorch_pipeline_free(p);
}
END_TEST

Suite *executor_suite(void) {
  Suite *s = suite_create("executor");
  TCase *tc = tcase_create("semantics");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, function_steps_run_in_parallel_up_to_the_bound);
  tcase_add_test(tc, command_steps_take_one_thread_per_slot);
  tcase_add_test(tc, artifacts_flow_between_command_and_function_steps);
  tcase_add_test(tc, leftover_process_output_stays_out_of_the_next_log);
  tcase_add_test(tc, continue_on_failure_finishes_independent_branches);
  tcase_add_test(tc, stop_on_failure_lets_running_steps_finish);
  tcase_add_test(tc, fail_fast_stops_running_steps);
  tcase_add_test(tc, retries_with_delay_and_backoff);
  tcase_add_test(tc, no_cache_still_records_keys_and_entries);
  tcase_add_test(tc, command_step_environment);
  tcase_add_test(tc, timeouts_kill_commands_and_stop_functions);
  tcase_add_test(tc, cancel_kills_processes_and_records_stopped);
  tcase_add_test(tc, missing_output_and_missing_program_fail_clearly);
  tcase_add_test(tc, second_run_is_cached_and_param_change_reruns_downstream_only);
  tcase_add_test(tc, long_chain_and_wide_fan);
  tcase_add_test(tc, status_callbacks_follow_the_dependencies);
  tcase_add_test(tc, params_reach_command_steps_as_text);
  suite_add_tcase(s, tc);
  return s;
}

ZORCH_CHECK_MAIN(executor)
