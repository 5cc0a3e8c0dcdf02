/* The step entrypoint: this test program is also the host program started as one step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zorch-check.h"

#include "deployment.h"
#include "entrypoint_int.h"

static int make_data(zorch_step_ctx *ctx, void *p) {
  (void)p;
  return zorch_ctx_output(ctx, "data", "1,2,3", 5);
}

static int sum(zorch_step_ctx *ctx, void *p) {
  (void)p;
  const void *d;
  size_t n;
  int rc = zorch_ctx_input(ctx, "data", &d, &n);
  if (rc) return rc;
  int64_t bias;
  if ((rc = zorch_ctx_param_int(ctx, "bias", &bias))) return rc;
  int total = (int)bias;
  for (size_t i = 0; i < n; i++)
    if (((const char *)d)[i] >= '0' && ((const char *)d)[i] <= '9') total += ((const char *)d)[i] - '0';
  char out[32];
  int len = snprintf(out, sizeof out, "%d", total);
  zorch_ctx_log(ctx, "sum is %d", total);
  return zorch_ctx_output(ctx, "total", out, (size_t)len);
}

static int build(zorch_pipeline **out, const char *name, void *payload) {
  (void)payload;
  if (strcmp(name, "entry") != 0) return ZORCH_ENOTFOUND;
  zorch_pipeline *p = NULL;
  zorch_pipeline_new(&p, "entry");
  zorch_pipeline_add_param(p, "bias", "10");
  zorch_step *a, *b;
  zorch_pipeline_add_function_step(&a, p, "make", make_data, NULL);
  zorch_step_add_output(a, "data");
  zorch_pipeline_add_function_step(&b, p, "sum", sum, NULL);
  zorch_step_add_input(b, "data", "make", "data");
  zorch_step_use_param(b, "bias");
  zorch_step_add_output(b, "total");
  if (getenv("ZT_ALTER")) zorch_step_set_retry(b, 3, 1, 2); /* a different program */
  *out = p;
  return 0;
}

static char self[4096];

START_TEST(a_step_runs_in_a_new_process) {
  zorch_client *c = zt_client();
  zorch_pipeline *p = NULL;
  zt_ok(build(&p, "entry", NULL));
  zorch_run *r = NULL;
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.params_json = "{\"bias\": 100}";
  zt_ok(zorch_pipeline_run(&r, c, p, &o));
  size_t i;
  zt_ok(zorch_run_step_index(r, "sum", &i));
  char digest[65];
  snprintf(digest, sizeof digest, "%s", zorch_run_step_output_digest(r, i, 0));
  char dep[4096];
  snprintf(dep, sizeof dep, "%s/store/runs/%s/deployment.json", zorch_client_home(c), zorch_run_id(r));
  char id[64];
  snprintf(id, sizeof id, "%s", zorch_run_id(r));
  zorch_run_free(r);

  /* run the step again, as a remote flavor would: a new process of this program */
  const char *argv[] = {self, "--zorch-step", "sum", "--zorch-deployment", dep, "--zorch-run", id, NULL};
  char *out = NULL;
  int st = zt_run(&out, argv, NULL);
  ck_assert_msg(st == ZORCH_EXIT_OK, "exit %d: %s", st, out);
  free(out);
  zt_ok(zorch_run_open(&r, c, id));
  zt_ok(zorch_run_step_index(r, "sum", &i));
  ck_assert_int_eq(zorch_run_step_status(r, i), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(zorch_run_step_attempts(r, i), 2); /* the step record file comes after the journal */
  ck_assert_str_eq(zorch_run_step_output_digest(r, i, 0), digest);
  void *data;
  size_t n;
  zt_ok(zorch_run_read_output(&data, &n, r, "sum", "total"));
  ck_assert_str_eq((char *)data, "106"); /* the run's param, not the default */
  zorch_free(data);
  zorch_run_free(r);

  /* a program whose pipeline differs is refused, naming the step and the setting */
  const char *env[] = {"ZT_ALTER=1", NULL};
  st = zt_run(&out, argv, env);
  ck_assert_int_eq(st, ZORCH_EXIT_MISMATCH);
  ck_assert_msg(strstr(out, "step 'sum' differs") && strstr(out, "settings"), "%s", out);
  free(out);

  /* wrong run id, unknown step, missing arguments */
  const char *bad_run[] = {self, "--zorch-step", "sum", "--zorch-deployment", dep, "--zorch-run", "other", NULL};
  st = zt_run(&out, bad_run, NULL);
  ck_assert_int_eq(st, ZORCH_EXIT_USAGE);
  ck_assert_msg(strstr(out, "belongs to run"), "%s", out);
  free(out);
  const char *bad_step[] = {self, "--zorch-step", "nope", "--zorch-deployment", dep, "--zorch-run", id, NULL};
  st = zt_run(&out, bad_step, NULL);
  ck_assert_int_eq(st, ZORCH_EXIT_USAGE);
  ck_assert_msg(strstr(out, "has no step 'nope'"), "%s", out);
  free(out);
  const char *half[] = {self, "--zorch-step", "sum", NULL};
  st = zt_run(&out, half, NULL);
  ck_assert_int_eq(st, ZORCH_EXIT_USAGE);
  free(out);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

/* ---- the program's pipeline against the deployment's, with many steps ---- */

enum { MANY = 20000 };

static int noop(zorch_step_ctx *ctx, void *p) {
  (void)ctx;
  (void)p;
  return 0;
}

/* A chain of n function steps s0, s1, ...; step `alter` (or none: -1) has a
 * retry setting, step `rename` (or none) another name. */
static zorch_pipeline *many_steps(long n, long alter, long rename) {
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, "many"));
  char name[32], prev[32] = "";
  for (long k = 0; k < n; k++) {
    snprintf(name, sizeof name, k == rename ? "renamed%ld" : "s%ld", k);
    zorch_step *s = NULL;
    zt_ok(zorch_pipeline_add_function_step(&s, p, name, noop, NULL));
    if (k) zt_ok(zorch_step_after(s, prev));
    if (k == alter) zt_ok(zorch_step_set_retry(s, 3, 1, 2));
    memcpy(prev, name, sizeof name);
  }
  return p;
}

START_TEST(a_20000_step_deployment_matches_or_names_the_first_difference) {
  zorch_pipeline *p = many_steps(MANY, -1, -1);
  zorch__compile_info ci = {.run_id = "r1", .run_name = "many-1"};
  char *text = NULL;
  zt_ok(zorch__deployment_compile(&text, NULL, p, &ci));
  zorch__plan *dep = NULL;
  zt_ok(zorch__plan_load(&dep, text));

  /* the same program */
  zt_ok(zorch__entrypoint_check(dep, text, p));

  /* the last step differs */
  zorch_pipeline *q = many_steps(MANY, MANY - 1, -1);
  zt_assert_rc(zorch__entrypoint_check(dep, text, q), ZORCH_EMISMATCH);
  zt_assert_msg_has("step 's19999' differs between the deployment and this program: settings");
  zorch_pipeline_free(q);

  /* a step in the middle has another name: the deployment's is missing (the
   * next one, which names it in 'after', differs too, but comes later) */
  q = many_steps(MANY, -1, MANY / 2);
  zt_assert_rc(zorch__entrypoint_check(dep, text, q), ZORCH_EMISMATCH);
  zt_assert_msg_has("step 's10000' of the deployment is not in the program's pipeline 'many'");
  zorch_pipeline_free(q);

  /* one step fewer */
  q = many_steps(MANY - 1, -1, -1);
  zt_assert_rc(zorch__entrypoint_check(dep, text, q), ZORCH_EMISMATCH);
  zt_assert_msg_has("has 19999 steps, the deployment has 20000");
  zorch_pipeline_free(q);

  zorch__plan_free(dep);
  free(text);
  zorch_pipeline_free(p);
}
END_TEST

static Suite *entrypoint_suite(void) {
  Suite *s = suite_create("entrypoint");
  TCase *tc = tcase_create("entrypoint");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, a_step_runs_in_a_new_process);
  tcase_add_test(tc, a_20000_step_deployment_matches_or_names_the_first_difference);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char **argv) {
  zorch_main(argc, argv, build, NULL); /* returns only when not started as a step */
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  return zt_run_suite(entrypoint_suite());
}
