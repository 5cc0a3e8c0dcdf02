/* The remote-flavor frame (plugins/common/zremote.c) against a fake host
 * that records what the kit reports: the run frame read from a submission,
 * the attempt table (finish exactly once from racing threads, stop, reap,
 * attempt threads, references), host-owned logs (host v3) and the log-file
 * fallback (an older host), the poller (lost-API window with the last
 * error, pending timeout with the reason, cancel, backoff), run ends for
 * engine-driven runs, zr_lro_wait (done, deadline, lost API, a fatal poll,
 * cancel) and zr_launch_store. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "zorch-check.h"
#include "zremote.h"

/* ---- the fake host ------------------------------------------------------------------------ */

typedef struct done_call {
  uint64_t id;
  int code;
  char msg[512];
} done_call;

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static done_call dones[256];
static int n_dones, last_status = -1, n_status;
static char last_status_msg[512], logged[4096];
static const char *sub_config = "{\"max_parallel\":3}";

static void h_log(const zorch_host *h, int level, const char *m) { (void)h, (void)level, (void)m; }
static void h_error(const zorch_host *h, int code, const char *m) { (void)h, (void)code, (void)m; }

static const char *h_get(const zorch_submission *sub, const char *key) {
  (void)sub;
  if (!strcmp(key, "run_id")) return "r123";
  if (!strcmp(key, "run_name")) return "demo-run";
  if (!strcmp(key, "pipeline")) return "demo";
  if (!strcmp(key, "config")) return sub_config;
  if (!strcmp(key, "store_path")) return "/srv/store";
  if (!strcmp(key, "zorch_command")) return "/usr/bin/zorch";
  if (!strcmp(key, "no_cache")) return "1";
  return NULL;
}

static int h_status(zorch_submission *sub, int status, const char *msg) {
  (void)sub;
  pthread_mutex_lock(&fake_lock);
  last_status = status;
  n_status++;
  snprintf(last_status_msg, sizeof last_status_msg, "%s", msg ? msg : "");
  pthread_mutex_unlock(&fake_lock);
  return ZORCH_OK;
}

static int h_done(void *exec, uint64_t id, int code, const char *msg) {
  (void)exec;
  pthread_mutex_lock(&fake_lock);
  done_call *d = &dones[n_dones++ % 256];
  d->id = id;
  d->code = code;
  snprintf(d->msg, sizeof d->msg, "%s", msg ? msg : "");
  pthread_mutex_unlock(&fake_lock);
  return ZORCH_OK;
}

static int h_step_log(void *exec, uint64_t id, const void *data, size_t len) {
  (void)exec, (void)id;
  pthread_mutex_lock(&fake_lock);
  strncat(logged, data, len < sizeof logged - strlen(logged) - 1 ? len : sizeof logged - strlen(logged) - 1);
  pthread_mutex_unlock(&fake_lock);
  return ZORCH_OK;
}

static int h_run_record(char **out, const zorch_submission *sub) {
  (void)sub;
  *out = strdup("{\"status\":\"completed\",\"message\":\"from the host\"}");
  return ZORCH_OK;
}

static zorch_host host3 = {.version = 3, .size = sizeof(zorch_host), .log = h_log, .error_set = h_error,
                           .alloc = malloc, .free = free, .submission_get = h_get,
                           .submission_set_status = h_status, .executor_step_done = h_done,
                           .executor_step_log = h_step_log, .submission_run_record = h_run_record};
static zorch_host host2; /* the same without the version 3 slots */

static void reset(void) {
  pthread_mutex_lock(&fake_lock);
  n_dones = 0;
  n_status = 0;
  last_status = -1;
  logged[0] = last_status_msg[0] = '\0';
  pthread_mutex_unlock(&fake_lock);
  host2 = host3;
  host2.version = 2;
  host2.executor_step_log = NULL;
  host2.submission_run_record = NULL;
}

static int dones_for(uint64_t id, done_call *out) {
  int n = 0;
  pthread_mutex_lock(&fake_lock);
  for (int i = 0; i < n_dones; i++)
    if (dones[i].id == id) {
      if (out) *out = dones[i];
      n++;
    }
  pthread_mutex_unlock(&fake_lock);
  return n;
}

static zorch_step_launch launch_of(uint64_t id, const char *step, uint32_t attempt, const char *log_path) {
  zorch_step_launch L = {.version = 1, .executor = (void *)0x1, .attempt_id = id, .step = step,
                         .attempt = attempt, .log_path = log_path};
  return L;
}

static int finished_hook_calls;
static unsigned finished_hook_flags;
static void on_finish(zr_attempt *a, int code, unsigned flags) {
  (void)a, (void)code;
  __atomic_add_fetch(&finished_hook_calls, 1, __ATOMIC_SEQ_CST);
  finished_hook_flags = flags;
}

static void init_run(zr_run *r, const zorch_host *h) {
  zr_run_options o = {.flavor = "fake", .max_parallel_key = "max_parallel", .on_finish = on_finish};
  int rc = zr_run_init(r, h, (zorch_submission *)0x2, NULL, &o);
  ck_assert_msg(rc == ZORCH_OK, "zr_run_init: %s", zkit_error_message());
}

/* ---- the run frame and the table ------------------------------------------------------------ */

START_TEST(run_frame_from_the_submission) {
  reset();
  zr_run r;
  init_run(&r, &host3);
  ck_assert_str_eq(r.run_id, "r123");
  ck_assert_str_eq(r.run_name, "demo-run");
  ck_assert_str_eq(r.pipeline, "demo");
  ck_assert_str_eq(r.store_path, "/srv/store");
  ck_assert_str_eq(r.store_uri, "file:///srv/store");
  ck_assert_str_eq(r.zorch_command, "/usr/bin/zorch");
  ck_assert_ptr_null(r.deployment_path);
  ck_assert(r.no_cache);
  ck_assert_str_eq(r.exec_opts, "{\"max_parallel\":3}");
  ck_assert_int_eq(json_integer_value(json_object_get(r.config, "max_parallel")), 3);
  zr_run_fini(&r);
  /* a config that is not an object is refused with the flavor's name */
  sub_config = "[1]";
  zr_run_options o = {.flavor = "fake"};
  ck_assert_int_eq(zr_run_init(&r, &host3, (zorch_submission *)0x2, NULL, &o), ZORCH_EINVALID);
  ck_assert_msg(strstr(zkit_error_message(), "fake orchestrator's config"), "%s", zkit_error_message());
  sub_config = "{\"max_parallel\":3}";
  /* without a submission (listing schedules): the config given, empty names */
  ck_assert_int_eq(zr_run_init(&r, &host3, NULL, "{\"a\":1}", &o), ZORCH_OK);
  ck_assert_str_eq(r.run_id, "");
  ck_assert_ptr_null(r.store_uri);
  ck_assert_str_eq(r.exec_opts, "{}");
  zr_run_fini(&r);
}
END_TEST

typedef struct race {
  zr_attempt *a;
  int code;
} race;

static void *finisher(void *p) {
  race *x = p;
  zr_finish(x->a, x->code, 0, "finished by %d", x->code);
  return NULL;
}

START_TEST(finish_exactly_once_stop_and_reap) {
  reset();
  finished_hook_calls = 0;
  zr_run r;
  init_run(&r, &host3);
  zorch_step_launch L = launch_of(7, "train", 1, NULL);
  zr_attempt *a;
  zt_ok(zr_attempt_add(&a, &r, &L, strdup("job-7"), free));
  ck_assert_str_eq(a->step, "train");
  ck_assert_str_eq(a->data, "job-7");
  zr_attempt_set_remote(a, "pod-7");
  char *rem = zr_attempt_remote(a);
  ck_assert_str_eq(rem, "pod-7");
  free(rem);
  /* eight threads race to finish it: one report, one hook call */
  pthread_t th[8];
  race x[8];
  for (int i = 0; i < 8; i++) {
    x[i] = (race){a, 10 + i};
    pthread_create(&th[i], NULL, finisher, &x[i]);
  }
  for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
  ck_assert_int_eq(dones_for(7, NULL), 1);
  ck_assert_int_eq(finished_hook_calls, 1);
  ck_assert(!zr_finish(a, 99, 0, NULL));
  ck_assert_int_eq(dones_for(7, NULL), 1);
  /* stop: only while it runs */
  ck_assert_ptr_null(zr_attempt_stop(&r, 7));
  /* found while in the table; a finished one is reaped at the next add */
  zr_attempt *f = zr_attempt_find(&r, 7);
  ck_assert_ptr_eq(f, a);
  zr_attempt_unref(f);
  L = launch_of(8, "eval", 2, NULL);
  zr_attempt *b;
  zt_ok(zr_attempt_add(&b, &r, &L, NULL, NULL));
  zr_attempt *s = zr_attempt_stop(&r, 8);
  ck_assert_ptr_eq(s, b);
  ck_assert(b->stopping);
  zr_attempt_unref(s);
  ck_assert_ptr_null(zr_attempt_stop(&r, 99));
  ck_assert_ptr_null(zr_attempt_find(&r, 7)); /* reaped: the table let it go */
  ck_assert_str_eq(a->step, "train");          /* ... but our reference keeps it */
  zr_attempt_unref(a);                         /* freed now */
  L = launch_of(9, "third", 1, NULL);
  zr_attempt *c;
  zt_ok(zr_attempt_add(&c, &r, &L, NULL, NULL));
  ck_assert_ptr_nonnull((f = zr_attempt_find(&r, 8)));
  zr_attempt_unref(f);
  /* a launch that fails after add: done, never reported */
  zr_attempt_abandon(c);
  ck_assert_int_eq(dones_for(9, NULL), 0);
  /* finish what is left */
  zr_finish_all(&r, 3, ZR_FINISH_DISCARD, "the end");
  done_call d;
  ck_assert_int_eq(dones_for(8, &d), 1);
  ck_assert_int_eq(d.code, 3);
  ck_assert_str_eq(d.msg, "the end");
  ck_assert_int_eq(finished_hook_flags, ZR_FINISH_DISCARD);
  ck_assert_int_eq(dones_for(9, NULL), 0);
  zr_attempt_unref(b);
  zr_attempt_unref(c);
  zr_run_fini(&r);
}
END_TEST

static atomic_int thread_ran;
static void attempt_main_ok(zr_attempt *a) {
  atomic_fetch_add(&thread_ran, 1);
  zr_log(a, "hello ", 6);
  zr_log(a, "world\n", 6);
  zr_finish(a, 0, 0, NULL);
}
static void attempt_main_silent(zr_attempt *a) { (void)a; }
static void attempt_main_blocks(zr_attempt *a) {
  while (!a->abort) usleep(10000); /* a stream that only release ends */
  zr_finish(a, 143, 0, "aborted");
}

START_TEST(attempt_threads_and_host_logs) {
  reset();
  zr_run r;
  init_run(&r, &host3);
  zr_attempt *a, *b, *c;
  zorch_step_launch L = launch_of(1, "a", 1, NULL);
  zt_ok(zr_attempt_add(&a, &r, &L, NULL, NULL));
  zt_ok(zr_attempt_thread(a, attempt_main_ok));
  L = launch_of(2, "b", 1, NULL);
  zt_ok(zr_attempt_add(&b, &r, &L, NULL, NULL));
  zt_ok(zr_attempt_thread(b, attempt_main_silent));
  L = launch_of(3, "c", 1, NULL);
  zt_ok(zr_attempt_add(&c, &r, &L, NULL, NULL));
  zt_ok(zr_attempt_thread(c, attempt_main_blocks));
  zr_attempt_unref(a);
  zr_attempt_unref(b);
  zr_attempt_unref(c);
  for (int i = 0; i < 200 && (dones_for(1, NULL) == 0 || dones_for(2, NULL) == 0); i++) usleep(10000);
  done_call d;
  ck_assert_int_eq(dones_for(1, &d), 1);
  ck_assert_int_eq(d.code, 0);
  ck_assert_int_eq(dones_for(2, &d), 1); /* a thread that ends without a result */
  ck_assert_int_eq(d.code, 125);
  ck_assert_str_eq(logged, "hello world\n"); /* host v3: the host owns the log */
  zr_reap(&r);                              /* joins the two ended threads */
  ck_assert_ptr_null(zr_attempt_find(&r, 1));
  zr_run_fini(&r); /* sets abort: the blocked one ends and is joined */
  ck_assert_int_eq(dones_for(3, &d), 1);
  ck_assert_int_eq(d.code, 143);
}
END_TEST

START_TEST(logs_fall_back_to_the_log_file) {
  reset();
  zr_run r;
  init_run(&r, &host2); /* no executor_step_log */
  char path[600];
  snprintf(path, sizeof path, "%s/step.log", zt_tmpdir());
  zr_attempt *a, *b;
  zorch_step_launch L = launch_of(1, "s", 1, path);
  zt_ok(zr_attempt_add(&a, &r, &L, NULL, NULL));
  zr_log(a, "first try\n", 10);
  L = launch_of(2, "s", 2, path);
  zt_ok(zr_attempt_add(&b, &r, &L, NULL, NULL));
  zr_log(b, "second try\n", 11);
  zr_attempt_unref(a);
  zr_attempt_unref(b);
  zr_run_fini(&r);
  FILE *f = fopen(path, "r");
  char text[256] = "";
  size_t n = fread(text, 1, sizeof text - 1, f);
  text[n] = '\0';
  fclose(f);
  ck_assert_str_eq(text, "first try\n--- zorch: attempt 2 ---\nsecond try\n");
  ck_assert_str_eq(logged, "");
}
END_TEST

/* ---- the poller ------------------------------------------------------------------------------ */

typedef struct poll_state {
  atomic_int rounds;
  atomic_int fail;       /* rounds fail while set */
  atomic_int cancels;
  atomic_int expired;
} poll_state;

static int poll_round(zr_run *r, void *ctx, volatile int *abort_flag) {
  (void)r, (void)abort_flag;
  poll_state *p = ctx;
  atomic_fetch_add(&p->rounds, 1);
  if (atomic_load(&p->fail)) return zkit_errorf(NULL, ZORCH_EIO, "connection refused (round %d)",
                                                atomic_load(&p->rounds));
  return ZORCH_OK;
}

static void on_cancel(zr_run *r, void *ctx) {
  (void)r;
  atomic_fetch_add(&((poll_state *)ctx)->cancels, 1);
}

START_TEST(poller_lost_api_window) {
  reset();
  zr_run r;
  init_run(&r, &host3);
  r.exec = (void *)0x1; /* an executor drives the run: attempts fail when the API is lost */
  zr_attempt *a;
  zorch_step_launch L = launch_of(5, "s", 1, NULL);
  zt_ok(zr_attempt_add(&a, &r, &L, NULL, NULL));
  zr_attempt_running(a);
  poll_state ps = {0};
  atomic_store(&ps.fail, 1);
  zr_poller_options o = {.poll = poll_round, .ctx = &ps, .what = "the fake API", .interval_s = 0.01,
                         .backoff_base_s = 0.01, .backoff_cap_s = 0.05, .lost_after_s = 0.5};
  zr_poller *p;
  double t0 = zkit_now();
  zt_ok(zr_poller_start(&p, &r, &o));
  for (int i = 0; i < 300 && !dones_for(5, NULL); i++) usleep(10000);
  double took = zkit_now() - t0;
  done_call d;
  ck_assert_int_eq(dones_for(5, &d), 1);
  ck_assert_msg(took >= 0.5 && took < 2.5, "failed after %.2f s", took);
  ck_assert_msg(strstr(d.msg, "lost the fake API for 0.5 s: connection refused"), "message: %s", d.msg);
  ck_assert_int_ge(atomic_load(&ps.rounds), 3); /* retried with backoff meanwhile */
  zr_poller_stop(p);
  zr_attempt_unref(a);
  r.exec = NULL;
  zr_run_fini(&r);
}
END_TEST

static void expired_cb(zr_run *r, zr_attempt *a, void *ctx) {
  poll_state *p = ctx;
  atomic_fetch_add(&p->expired, 1);
  if (a) zr_finish(a, 1, ZR_FINISH_DISCARD, "custom: %s stayed queued", a->step);
  else zr_run_end(r, ZORCH_STATUS_FAILED, "custom: the run stayed queued");
}

START_TEST(poller_pending_timeout_and_cancel) {
  reset();
  zr_run r;
  init_run(&r, &host3);
  zr_attempt *a, *b;
  zorch_step_launch L = launch_of(1, "stuck", 1, NULL);
  zt_ok(zr_attempt_add(&a, &r, &L, NULL, NULL));
  zr_attempt_pending(a, "Unschedulable: %s", "0/1 nodes are available: Insufficient memory");
  L = launch_of(2, "started", 1, NULL);
  zt_ok(zr_attempt_add(&b, &r, &L, NULL, NULL));
  zr_attempt_running(b);
  poll_state ps = {0};
  zr_poller_options o = {.poll = poll_round, .ctx = &ps, .interval_s = 0.02, .pending_timeout_s = 0.3,
                         .on_cancel = on_cancel};
  zr_poller *p;
  zt_ok(zr_poller_start(&p, &r, &o));
  for (int i = 0; i < 300 && !dones_for(1, NULL); i++) usleep(10000);
  done_call d;
  ck_assert_int_eq(dones_for(1, &d), 1);
  ck_assert_str_eq(d.msg, "step 'stuck' stayed pending for more than 0.3 s: Unschedulable: 0/1 nodes are "
                          "available: Insufficient memory");
  ck_assert_int_eq(finished_hook_flags, ZR_FINISH_DISCARD);
  ck_assert_int_eq(dones_for(2, NULL), 0); /* it started: no timeout */
  /* cancel: the hook runs once on the poller's thread */
  zr_run_cancel(&r);
  for (int i = 0; i < 200 && !atomic_load(&ps.cancels); i++) usleep(10000);
  usleep(100000);
  ck_assert_int_eq(atomic_load(&ps.cancels), 1);
  zr_poller_stop(p);
  zr_attempt_unref(a);
  zr_attempt_unref(b);
  zr_run_fini(&r);

  /* a run an engine drives: its own pending timeout, through the flavor's callback */
  reset();
  init_run(&r, &host3);
  zr_run_pending(&r, "queued behind 3 runs");
  poll_state ps2 = {0};
  o = (zr_poller_options){.poll = poll_round, .ctx = &ps2, .interval_s = 0.02, .pending_timeout_s = 0.2,
                          .pending_expired = expired_cb};
  zt_ok(zr_poller_start(&p, &r, &o));
  ck_assert_int_eq(zr_run_wait(&r, 5000), ZORCH_OK);
  ck_assert_int_eq(last_status, ZORCH_STATUS_FAILED);
  ck_assert_str_eq(last_status_msg, "custom: the run stayed queued");
  ck_assert_int_eq(zr_run_wait(&r, 0), ZORCH_OK); /* reported once */
  ck_assert_int_eq(n_status, 1);
  zr_poller_stop(p);
  zr_run_fini(&r);
}
END_TEST

START_TEST(run_end_and_wait) {
  reset();
  zr_run r;
  init_run(&r, &host3);
  ck_assert_int_eq(zr_run_wait(&r, 50), ZORCH_ETIMEOUT);
  ck_assert(!zr_run_ended(&r));
  zr_run_end(&r, ZORCH_STATUS_COMPLETED, "all %d steps", 3);
  zr_run_end(&r, ZORCH_STATUS_FAILED, "too late"); /* the first end wins */
  ck_assert_int_eq(zr_run_wait(&r, -1), ZORCH_OK);
  ck_assert_int_eq(last_status, ZORCH_STATUS_COMPLETED);
  ck_assert_str_eq(last_status_msg, "all 3 steps");
  zr_run_fini(&r);
  /* the run record comes from the host (v3) */
  init_run(&r, &host3);
  json_t *rec;
  ck_assert_int_eq(zr_run_record(&r, &rec), ZORCH_OK);
  ck_assert_str_eq(zkit_jstr(rec, "message"), "from the host");
  json_decref(rec);
  zr_run_fini(&r);
  init_run(&r, &host2); /* a host without the slot has none to give */
  ck_assert_int_ne(zr_run_record(&r, &rec), ZORCH_OK);
  zr_run_fini(&r);
}
END_TEST

/* ---- long-running operations -------------------------------------------------------------- */

typedef struct lro {
  int polls, done_at, fail_from, fail_to, fatal_at;
} lro;

static int lro_poll(void *ctx) {
  lro *l = ctx;
  l->polls++;
  if (l->fatal_at && l->polls >= l->fatal_at) return zkit_errorf(NULL, ZORCH_ESTEP, "the operation failed: quota");
  if (l->polls >= l->fail_from && l->polls <= l->fail_to) {
    zkit_errorf(NULL, ZORCH_EIO, "503 from the API");
    return ZR_AGAIN;
  }
  return l->polls >= l->done_at ? ZR_DONE : ZORCH_OK;
}

START_TEST(lro_wait_rules) {
  zr_lro_options o = {.what = "operation op-1", .base_s = 0.01, .cap_s = 0.05};
  lro l = {.done_at = 5, .fail_from = 2, .fail_to = 3}; /* two failed polls in between are fine */
  ck_assert_int_eq(zr_lro_wait(&host3, &o, lro_poll, &l), ZORCH_OK);
  ck_assert_int_eq(l.polls, 5);
  /* the deadline */
  o.deadline_s = 0.3;
  l = (lro){.done_at = 1000000};
  double t0 = zkit_now();
  ck_assert_int_eq(zr_lro_wait(&host3, &o, lro_poll, &l), ZORCH_ETIMEOUT);
  ck_assert_msg(zkit_now() - t0 < 1.5, "the deadline was not kept");
  ck_assert_msg(strstr(zkit_error_message(), "operation op-1 did not finish within 0.3 s"), "%s",
                zkit_error_message());
  /* the API lost for longer than the window */
  o.deadline_s = 0;
  o.lost_after_s = 0.2;
  l = (lro){.done_at = 1000000, .fail_from = 1, .fail_to = 1000000};
  ck_assert_int_eq(zr_lro_wait(&host3, &o, lro_poll, &l), ZORCH_EIO);
  ck_assert_msg(strstr(zkit_error_message(), "lost the API while waiting for operation op-1") &&
                    strstr(zkit_error_message(), "503 from the API"),
                "%s", zkit_error_message());
  /* a fatal answer ends it with its code */
  l = (lro){.done_at = 1000000, .fatal_at = 2};
  ck_assert_int_eq(zr_lro_wait(&host3, &o, lro_poll, &l), ZORCH_ESTEP);
  ck_assert_msg(strstr(zkit_error_message(), "quota"), "%s", zkit_error_message());
  /* cancel */
  volatile int cancel = 1;
  o.cancel = &cancel;
  l = (lro){.done_at = 1000000};
  ck_assert_int_eq(zr_lro_wait(&host3, &o, lro_poll, &l), ZORCH_ECANCELLED);
}
END_TEST

START_TEST(launch_store) {
  static const char *const env[] = {"AWS_PROFILE=ci", NULL};
  zorch_step_launch L = {.version = 2, .store_path = NULL, .store_uri = "s3://bucket/p", .store_env = env};
  zr_store s = zr_launch_store(&L);
  ck_assert_ptr_null(s.path);
  ck_assert_str_eq(s.uri, "s3://bucket/p");
  ck_assert_str_eq(s.env[0], "AWS_PROFILE=ci");
  L = (zorch_step_launch){.version = 1, .store_path = "/srv/store", .store_uri = "junk"};
  s = zr_launch_store(&L);
  ck_assert_str_eq(s.path, "/srv/store");
  ck_assert_ptr_null(s.uri); /* a version-1 launch has no such field */
  ck_assert_ptr_null(s.env[0]);
}
END_TEST

Suite *zremote_suite(void) {
  Suite *s = suite_create("zremote");
  TCase *tc = tcase_create("zremote");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, run_frame_from_the_submission);
  tcase_add_test(tc, finish_exactly_once_stop_and_reap);
  tcase_add_test(tc, attempt_threads_and_host_logs);
  tcase_add_test(tc, logs_fall_back_to_the_log_file);
  tcase_add_test(tc, poller_lost_api_window);
  tcase_add_test(tc, poller_pending_timeout_and_cancel);
  tcase_add_test(tc, run_end_and_wait);
  tcase_add_test(tc, lro_wait_rules);
  tcase_add_test(tc, launch_store);
  suite_add_tcase(s, tc);
  return s;
}

ZORCH_CHECK_MAIN(zremote)
