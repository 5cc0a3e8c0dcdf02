/* Pipeline building and validation, and the deployment round trip. */
#include <jansson.h>
#include <string.h>

#include "cache.h"
#include "deployment.h"
#include "executor.h"
#include "zorch-check.h"

static int noop(zorch_step_ctx *ctx, void *p) {
  (void)ctx;
  (void)p;
  return 0;
}

static zorch_pipeline *new_pipeline(const char *name) {
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, name));
  return p;
}

START_TEST(names_are_checked) {
  zorch_pipeline *p = NULL;
  zt_assert_rc(zorch_pipeline_new(&p, "bad name"), ZORCH_EINVALID);
  zt_assert_msg_has("invalid pipeline name 'bad name'");
  zt_assert_msg_has("' '");
  zt_assert_rc(zorch_pipeline_new(&p, "9lives"), ZORCH_EINVALID);
  zt_assert_msg_has("must start with a letter");
  zt_assert_rc(zorch_pipeline_new(&p, ""), ZORCH_EINVALID);
  zt_assert_rc(zorch_pipeline_new(&p, "../etc"), ZORCH_EINVALID);
  char longname[80];
  memset(longname, 'a', 70);
  longname[70] = 0;
  zt_assert_rc(zorch_pipeline_new(&p, longname), ZORCH_EINVALID);
  zt_assert_msg_has("longer than 63");
  ck_assert_ptr_null(p);

  p = new_pipeline("ok-Name_1");
  zorch_step *s = NULL;
  zt_assert_rc(zorch_pipeline_add_function_step(&s, p, "a/b", noop, NULL), ZORCH_EINVALID);
  zt_assert_msg_has("invalid step name 'a/b'");
  zt_ok(zorch_pipeline_add_function_step(&s, p, "a", noop, NULL));
  zt_assert_rc(zorch_pipeline_add_function_step(NULL, p, "a", noop, NULL), ZORCH_EEXISTS);
  zt_assert_msg_has("already has a step named 'a'");
  zt_assert_rc(zorch_step_add_output(s, "out put"), ZORCH_EINVALID);
  zt_assert_msg_has("step 'a'");
  zt_ok(zorch_step_add_output(s, "out"));
  zt_assert_rc(zorch_step_add_output(s, "out"), ZORCH_EEXISTS);
  zt_assert_rc(zorch_pipeline_add_param(p, "p", "{not json"), ZORCH_EINVALID);
  zt_assert_msg_has("not valid JSON");
  zt_ok(zorch_pipeline_add_param(p, "p", "1"));
  zt_assert_rc(zorch_pipeline_add_param(p, "p", "2"), ZORCH_EEXISTS);
  const char *argv[] = {NULL};
  zt_assert_rc(zorch_pipeline_add_command_step(NULL, p, "c", argv), ZORCH_EINVALID);
  zt_assert_msg_has("argv is empty");
  zt_assert_rc(zorch_pipeline_add_function_step(NULL, p, "f", NULL, NULL), ZORCH_EINVALID);
  zt_assert_rc(zorch_step_add_input(zorch_pipeline_defaults(p), "x", "a", "out"), ZORCH_EINVALID);
  zt_assert_msg_has("pipeline defaults");
  zt_assert_rc(zorch_step_set_retry(s, 1, -1, 2), ZORCH_EINVALID);
  zt_assert_rc(zorch_step_set_retry(s, 1, 1, 0.5), ZORCH_EINVALID);
  zt_assert_rc(zorch_step_set_flavor_settings(s, "kubernetes", "[1]"), ZORCH_EINVALID);
  zt_assert_msg_has("must be a JSON object");
  zorch_pipeline_free(p);
}
END_TEST

START_TEST(cycle_is_named) {
  zorch_pipeline *p = new_pipeline("cyc");
  const char *names[] = {"start", "a", "b", "c"};
  zorch_step *s[4];
  for (int i = 0; i < 4; i++) {
    zt_ok(zorch_pipeline_add_function_step(&s[i], p, names[i], noop, NULL));
    zt_ok(zorch_step_add_output(s[i], "o"));
  }
  zt_ok(zorch_step_add_input(s[1], "in", "start", "o"));
  zt_ok(zorch_step_add_input(s[1], "back", "c", "o"));
  zt_ok(zorch_step_add_input(s[2], "in", "a", "o"));
  zt_ok(zorch_step_after(s[3], "b"));
  zt_assert_rc(zorch_pipeline_validate(p), ZORCH_ECYCLE);
  const char *m = zorch_error_last()->message;
  /* the cycle, in edge order, in one of its rotations */
  ck_assert_msg(strstr(m, "a -> b -> c -> a") || strstr(m, "b -> c -> a -> b") ||
                    strstr(m, "c -> a -> b -> c"),
                "message does not name the cycle: %s", m);
  ck_assert_msg(!strstr(m, "start"), "start is not in the cycle: %s", m);
  zorch_pipeline_free(p);
}
END_TEST

START_TEST(wiring_errors) {
  zorch_pipeline *p = new_pipeline("wire");
  zorch_step *a, *b;
  zt_ok(zorch_pipeline_add_function_step(&a, p, "a", noop, NULL));
  zt_ok(zorch_step_add_output(a, "x"));
  zt_ok(zorch_step_add_output(a, "y"));
  zt_ok(zorch_pipeline_add_function_step(&b, p, "b", noop, NULL));
  zt_ok(zorch_step_add_input(b, "in", "nope", "x"));
  zt_assert_rc(zorch_pipeline_validate(p), ZORCH_EINVALID);
  zt_assert_msg_has("step 'b': input 'in' is wired to step 'nope', which does not exist");
  zorch_pipeline_free(p);

  p = new_pipeline("wire");
  zt_ok(zorch_pipeline_add_function_step(&a, p, "a", noop, NULL));
  zt_ok(zorch_step_add_output(a, "x"));
  zt_ok(zorch_step_add_output(a, "y"));
  zt_ok(zorch_pipeline_add_function_step(&b, p, "b", noop, NULL));
  zt_ok(zorch_step_add_input(b, "in", "a", "z"));
  zt_assert_rc(zorch_pipeline_validate(p), ZORCH_EINVALID);
  zt_assert_msg_has("output 'z' of step 'a', which has no such output (it has: x, y)");
  zorch_pipeline_free(p);

  p = new_pipeline("wire");
  zt_ok(zorch_pipeline_add_function_step(&a, p, "a", noop, NULL));
  zt_ok(zorch_step_add_output(a, "x"));
  zt_ok(zorch_step_add_input(a, "me", "a", "x"));
  zt_assert_rc(zorch_pipeline_validate(p), ZORCH_ECYCLE);
  zt_assert_msg_has("wired to the step itself");
  zorch_pipeline_free(p);

  p = new_pipeline("wire");
  zt_ok(zorch_pipeline_add_function_step(&a, p, "a", noop, NULL));
  zt_ok(zorch_step_after(a, "ghost"));
  zt_assert_rc(zorch_pipeline_validate(p), ZORCH_EINVALID);
  zt_assert_msg_has("runs after step 'ghost', which does not exist");
  zorch_pipeline_free(p);

  p = new_pipeline("wire");
  zt_ok(zorch_pipeline_add_function_step(&a, p, "a", noop, NULL));
  zt_ok(zorch_step_use_param(a, "lr"));
  zt_assert_rc(zorch_pipeline_validate(p), ZORCH_EINVALID);
  zt_assert_msg_has("uses param 'lr', which the pipeline does not declare");
  zorch_pipeline_free(p);

  p = new_pipeline("empty");
  zt_assert_rc(zorch_pipeline_validate(p), ZORCH_EINVALID);
  zt_assert_msg_has("has no steps");
  zorch_pipeline_free(p);
}
END_TEST

/* Build: gen (command) -> train (function, uses lr) -> eval; report after eval. */
static zorch_pipeline *sample(void) {
  zorch_pipeline *p = new_pipeline("sample");
  zorch_step *gen, *train, *eval, *report;
  zt_ok(zorch_pipeline_add_param(p, "lr", "0.1"));
  zt_ok(zorch_pipeline_add_param(p, "unused", "\"x\""));
  zorch_step *d = zorch_pipeline_defaults(p);
  zt_ok(zorch_step_set_env(d, "MODE", "default"));
  zt_ok(zorch_step_set_retry(d, 2, 1.5, 2));
  zt_ok(zorch_step_set_image(d, "img:1"));
  zt_ok(zorch_step_set_flavor_settings(d, "kubernetes", "{\"a\":1,\"b\":1}"));
  /* added out of order on purpose: the deployment lists steps topologically */
  zt_ok(zorch_pipeline_add_function_step(&report, p, "report", noop, NULL));
  zt_ok(zorch_pipeline_add_function_step(&eval, p, "eval", noop, NULL));
  zt_ok(zorch_pipeline_add_function_step(&train, p, "train", noop, NULL));
  const char *argv[] = {"sh", "-c", "echo hi > $ZORCH_OUTPUT_DATA", NULL};
  zt_ok(zorch_pipeline_add_command_step(&gen, p, "gen", argv));
  zt_ok(zorch_step_add_output(gen, "data"));
  zt_ok(zorch_step_add_input(train, "data", "gen", "data"));
  zt_ok(zorch_step_add_output(train, "model"));
  zt_ok(zorch_step_use_param(train, "lr"));
  zt_ok(zorch_step_set_param(train, "epochs", "5"));
  zt_ok(zorch_step_set_env(train, "MODE", "train"));
  zt_ok(zorch_step_set_resources(train, 2, 1 << 30));
  zt_ok(zorch_step_set_gpu(train, 1, "nvidia-a100"));
  zt_ok(zorch_step_set_timeout(train, 60));
  zt_ok(zorch_step_set_cache(train, 0));
  zt_ok(zorch_step_set_version(train, "v7"));
  zt_ok(zorch_step_set_flavor_settings(train, "kubernetes", "{\"b\":2}"));
  zt_ok(zorch_step_add_input(eval, "model", "train", "model"));
  zt_ok(zorch_step_add_input(eval, "data", "gen", "data"));
  zt_ok(zorch_step_add_output(eval, "metrics"));
  zt_ok(zorch_step_after(report, "eval"));
  zt_ok(zorch_pipeline_validate(p));
  return p;
}

START_TEST(deployment_round_trip) {
  zorch_pipeline *p = sample();
  zorch__compile_info ci = {.run_id = "r1", .run_name = "run-one", .params_json = "{\"lr\":0.5}",
                            .store_path = "/tmp/store", .failure_mode = ZORCH_FAIL_FAST};
  char *doc = NULL;
  zt_ok(zorch__deployment_compile(&doc, NULL, p, &ci));
  json_t *d = json_loads(doc, 0, NULL);
  ck_assert_ptr_nonnull(d);
  ck_assert_int_eq(json_integer_value(json_object_get(d, "zorch_deployment")), 1);
  ck_assert_str_eq(json_string_value(json_object_get(d, "failure_mode")), "fail_fast");
  json_t *steps = json_object_get(d, "steps");
  ck_assert_int_eq(json_array_size(steps), 4);
  const char *order[] = {"gen", "train", "eval", "report"};
  for (int i = 0; i < 4; i++)
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(steps, i), "name")), order[i]);
  json_t *train = json_array_get(steps, 1);
  json_t *params = json_object_get(train, "params");
  ck_assert(json_number_value(json_object_get(params, "lr")) == 0.5);       /* override */
  ck_assert_int_eq(json_integer_value(json_object_get(params, "epochs")), 5); /* step-local */
  ck_assert_ptr_null(json_object_get(params, "unused"));                     /* not used */
  json_t *st = json_object_get(train, "settings");
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(st, "env"), "MODE")), "train");
  ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(st, "retries"), "max")), 2);
  ck_assert(json_is_false(json_object_get(st, "cache")));
  ck_assert_str_eq(json_string_value(json_object_get(st, "image")), "img:1");
  json_t *res = json_object_get(st, "resources");
  ck_assert(json_number_value(json_object_get(res, "cpu")) == 2);
  ck_assert_int_eq(json_integer_value(json_object_get(res, "memory")), 1 << 30);
  ck_assert_int_eq(json_integer_value(json_object_get(res, "gpu")), 1);
  ck_assert_str_eq(json_string_value(json_object_get(res, "gpu_type")), "nvidia-a100");
  json_t *k8s = json_object_get(json_object_get(st, "flavor"), "kubernetes");
  ck_assert_int_eq(json_integer_value(json_object_get(k8s, "a")), 1); /* merged with defaults */
  ck_assert_int_eq(json_integer_value(json_object_get(k8s, "b")), 2);
  ck_assert_str_eq(json_string_value(json_object_get(train, "version")), "v7");
  json_t *gen = json_array_get(steps, 0);
  ck_assert_str_eq(json_string_value(json_array_get(json_object_get(gen, "command"), 0)), "sh");
  ck_assert(strncmp(json_string_value(json_object_get(gen, "version")), "files:", 6) == 0);
  json_t *eval = json_array_get(steps, 2);
  /* what a step shares with the defaults is said once, at the top */
  ck_assert_ptr_null(json_object_get(eval, "version"));
  ck_assert_ptr_null(json_object_get(eval, "settings"));
  json_t *defs = json_object_get(d, "defaults");
  ck_assert(strncmp(json_string_value(json_object_get(defs, "version")), "build-id:", 9) == 0);
  json_t *dst = json_object_get(defs, "settings");
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(dst, "env"), "MODE")), "default");
  ck_assert_str_eq(json_string_value(json_object_get(dst, "image")), "img:1");
  json_t *ep = json_object_get(json_object_get(d, "entrypoint"), "function");
  ck_assert_str_eq(json_string_value(json_array_get(ep, 1)), "--zorch-step");
  ck_assert_str_eq(json_string_value(json_array_get(ep, 2)), "{step}");
  ck_assert_str_eq(json_string_value(json_array_get(ep, 4)), "/tmp/store/runs/r1/deployment.json");
  ck_assert_str_eq(json_string_value(json_array_get(ep, 6)), "r1");

  /* the executor's plan is built from the document */
  zorch__plan *plan = NULL;
  zt_ok(zorch__plan_load(&plan, doc));
  ck_assert_int_eq(plan->n_steps, 4);
  ck_assert_str_eq(plan->run_id, "r1");
  ck_assert_int_eq(plan->failure_mode, ZORCH_FAIL_FAST);
  zorch__pstep *pt = &plan->steps[1];
  ck_assert_str_eq(pt->name, "train");
  ck_assert_int_eq(pt->n_inputs, 1);
  ck_assert_int_eq(pt->inputs[0].step, 0);
  ck_assert_int_eq(pt->n_preds, 1);
  ck_assert_int_eq(pt->retries, 2);
  ck_assert(pt->retry_delay == 1.5 && pt->retry_backoff == 2);
  ck_assert(pt->timeout == 60);
  ck_assert(!pt->cache);
  ck_assert_str_eq(pt->params_canon, "{\"epochs\":5,\"lr\":0.5}");
  ck_assert_str_eq(pt->env[0], "MODE=train");
  ck_assert_int_eq(plan->steps[0].n_succ, 2); /* gen -> train, gen -> eval */
  ck_assert_int_eq(plan->steps[3].n_preds, 1);
  ck_assert_int_eq(plan->steps[2].n_succ, 1); /* eval -> report */
  ck_assert_ptr_null(plan->steps[2].fn);
  ck_assert_str_eq(plan->steps[2].env[0], "MODE=default"); /* from the defaults */
  ck_assert_int_eq(plan->steps[2].retries, 2);
  ck_assert_str_eq(plan->steps[2].version, json_string_value(json_object_get(defs, "version")));
  zt_ok(zorch__plan_bind(plan, p));
  ck_assert_ptr_eq(plan->steps[2].fn, noop);
  zorch__plan_free(plan);

  /* a newer document is refused, not misread */
  json_object_set_new(d, "zorch_deployment", json_integer(99));
  char *newer = json_dumps(d, 0);
  zt_assert_rc(zorch__plan_load(&plan, newer), ZORCH_EVERSION);
  zt_assert_msg_has("deployment version 99 is not supported");
  free(newer);
  /* a broken reference is named */
  json_object_set_new(d, "zorch_deployment", json_integer(1));
  json_object_set_new(json_object_get(json_object_get(train, "inputs"), "data"), "step",
                      json_string("ghost"));
  char *broken = json_dumps(d, 0);
  zt_assert_rc(zorch__plan_load(&plan, broken), ZORCH_EINVALID);
  zt_assert_msg_has("step 'train': input 'data' refers to step 'ghost'");
  free(broken);
  zt_assert_rc(zorch__plan_load(&plan, "{\"zorch_deployment\": 1,"), ZORCH_EINVALID);
  zt_assert_msg_has("line 1");
  json_decref(d);
  free(doc);

  /* unknown run params are rejected */
  ci.params_json = "{\"nope\": 1}";
  zt_assert_rc(zorch__deployment_compile(&doc, NULL, p, &ci), ZORCH_EINVALID);
  zt_assert_msg_has("unknown param 'nope': pipeline 'sample' declares lr, unused");
  zorch_pipeline_free(p);
}
END_TEST

/* The plan the compiler builds while it writes the document is the plan that
 * loading the document makes: same steps, edges, settings, params and cache
 * keys (a local run uses the first, a step started elsewhere the second). */
static void same_strv(const char **a, const char **b) {
  ck_assert_int_eq(a == NULL, b == NULL);
  for (size_t k = 0; a && (a[k] || b[k]); k++) {
    ck_assert_ptr_nonnull(a[k]);
    ck_assert_ptr_nonnull(b[k]);
    ck_assert_str_eq(a[k], b[k]);
  }
}

/* A large pipeline: its text is written by two threads (function steps
 * only, with inputs, 'after' and params, and plain ones with only 'after'
 * steps).  Added in
 * order (each step after its upstreams, which are looked up as they are
 * wired), or in reverse (each wired to steps not added yet, looked up by
 * validation, and reordered). */
static zorch_pipeline *large(bool reverse) {
  zorch_pipeline *p = new_pipeline("large");
  zt_ok(zorch_pipeline_add_param(p, "lr", "0.1"));
  char name[32], up[32];
  for (int j = 0; j < 9000; j++) {
    int i = reverse ? 8999 - j : j;
    zorch_step *s;
    snprintf(name, sizeof name, "s%d", i);
    zt_ok(zorch_pipeline_add_function_step(&s, p, name, noop, NULL));
    if (i % 2 == 0) zt_ok(zorch_step_add_output(s, "o"));
    if (i >= 1 && i % 3 == 0) { /* others have only 'after' steps: plain */
      snprintf(up, sizeof up, "s%d", ((i * 7919) % i) & ~1);
      zt_ok(zorch_step_add_input(s, "in", up, "o"));
    }
    if (i >= 2) {
      snprintf(up, sizeof up, "s%d", i - 2);
      zt_ok(zorch_step_after(s, up));
    }
    if (i % 100 == 0) zt_ok(zorch_step_use_param(s, "lr"));
    if (i % 250 == 0) zt_ok(zorch_step_set_timeout(s, 5));
  }
  return p;
}

/* Plans a and b are the same: steps, edges, settings, params, cache keys. */
static void same_plan(const zorch__plan *a, const zorch__plan *b) {
  ck_assert_int_eq(a->n_steps, b->n_steps);
  ck_assert_str_eq(a->pipeline, b->pipeline);
  ck_assert_str_eq(a->run_id, b->run_id);
  ck_assert_int_eq(a->failure_mode, b->failure_mode);
  zorch__step_rec *ra = zorch__step_recs_new(a), *rb = zorch__step_recs_new(b);
  for (uint32_t i = 0; i < a->n_steps; i++) {
    const zorch__pstep *x = &a->steps[i], *y = &b->steps[i];
    ck_assert_str_eq(x->name, y->name);
    ck_assert_int_eq(x->kind, y->kind);
    same_strv(x->argv, y->argv);
    ck_assert_int_eq(x->n_outputs, y->n_outputs);
    same_strv(x->outputs, y->outputs);
    ck_assert_int_eq(x->n_inputs, y->n_inputs);
    for (uint32_t k = 0; k < x->n_inputs; k++) {
      ck_assert_str_eq(x->inputs[k].name, y->inputs[k].name);
      ck_assert_int_eq(x->inputs[k].step, y->inputs[k].step);
      ck_assert_int_eq(x->inputs[k].output, y->inputs[k].output);
    }
    ck_assert_int_eq(x->n_preds, y->n_preds);
    ck_assert_int_eq(x->n_succ, y->n_succ);
    for (uint32_t e = 0; e < x->n_succ; e++)
      ck_assert_int_eq(a->succ[x->succ_off + e], b->succ[y->succ_off + e]);
    ck_assert_str_eq(x->params_canon ? x->params_canon : "-", y->params_canon ? y->params_canon : "-");
    same_strv(x->env, y->env);
    ck_assert_int_eq(x->retries, y->retries);
    ck_assert(x->retry_delay == y->retry_delay && x->retry_backoff == y->retry_backoff);
    ck_assert(x->timeout == y->timeout);
    ck_assert_int_eq(x->cache, y->cache);
    ck_assert_str_eq(x->version, y->version);
    ck_assert_str_eq(x->image ? x->image : "-", y->image ? y->image : "-");
    char ka[ZORCH__DIGEST_HEX], kb[ZORCH__DIGEST_HEX];
    zorch__cache_key(a, i, ra, ka);
    zorch__cache_key(b, i, rb, kb);
    ck_assert_str_eq(ka, kb);
  }
  ck_assert_int_eq(zorch__plan_find(a, "extra"), zorch__plan_find(b, "extra"));
  zorch__step_recs_free(ra, a->n_steps);
  zorch__step_recs_free(rb, b->n_steps);
}

/* The plan the compiler builds while it writes the document, the plan it
 * builds without writing one (an ephemeral run), and the plan that loading
 * the document makes are the same (a local run uses one of the first two, a
 * step started elsewhere the third). */
START_TEST(compiled_plan_equals_loaded_plan) {
  zorch_pipeline *p = _i ? large(_i == 2) : sample();
  zorch_step *extra;
  const char *argv[] = {"true", NULL};
  zt_ok(zorch_pipeline_add_command_step(&extra, p, "extra", argv));
  zt_ok(zorch_step_set_version(extra, "v1"));
  zt_ok(zorch_step_after(extra, _i ? "s5" : "train"));
  zt_ok(zorch_step_after(extra, _i ? "s7" : "gen"));
  zt_ok(zorch_step_after(extra, _i ? "s5" : "train")); /* twice: an edge for each */
  zt_ok(zorch_step_set_env(extra, "A", "1"));
  zorch__compile_info ci = {.run_id = "r1", .run_name = "run-one", .params_json = "{\"lr\":0.25}",
                            .store_path = "/tmp/store"};
  char *doc = NULL;
  zorch__plan *direct = NULL, *loaded = NULL, *textless = NULL;
  zt_ok(zorch__deployment_compile(&doc, &direct, p, &ci));
  ck_assert_ptr_nonnull(direct);
  zt_ok(zorch__plan_load(&loaded, doc));
  zt_ok(zorch__deployment_compile(NULL, &textless, p, &ci));
  same_plan(direct, loaded);
  same_plan(textless, loaded);
  for (uint32_t i = 0; i < direct->n_steps; i++) {
    /* function steps come bound from the compiler; the loaded plan is bound by name */
    ck_assert_int_eq(direct->steps[i].kind == ZORCH__STEP_FUNCTION, direct->steps[i].fn == noop);
    ck_assert_int_eq(textless->steps[i].kind == ZORCH__STEP_FUNCTION, textless->steps[i].fn == noop);
    ck_assert_ptr_null(loaded->steps[i].fn);
  }
  if (_i) { /* every step after its upstreams */
    for (uint32_t i = 0; i < direct->n_steps; i++)
      for (uint32_t e = 0; e < direct->steps[i].n_succ; e++)
        ck_assert_uint_gt(direct->succ[direct->steps[i].succ_off + e], i);
    ck_assert_str_eq(direct->steps[0].name, _i == 2 ? "s1" : "s0"); /* the first root added */
  }
  zorch__plan_free(direct);
  zorch__plan_free(loaded);
  zorch__plan_free(textless);
  free(doc);
  zorch_pipeline_free(p);
}
END_TEST

/* Steps are ordered level by level: first those that depend on none, in the
 * order they were added, then the steps they make ready, and so on. */
START_TEST(steps_are_ordered_level_by_level) {
  zorch_pipeline *p = new_pipeline("order");
  const char *names[] = {"a", "b", "c", "d", "e", "f"};
  zorch_step *s[6];
  for (int i = 0; i < 6; i++) zt_ok(zorch_pipeline_add_function_step(&s[i], p, names[i], noop, NULL));
  zt_ok(zorch_step_after(s[0], "e")); /* a after e: a moves behind e */
  zt_ok(zorch_step_after(s[2], "b"));
  zt_ok(zorch_step_after(s[4], "f")); /* e after f */
  zorch__compile_info ci = {.run_id = "r"};
  zorch__plan *plan = NULL;
  zt_ok(zorch__deployment_compile(NULL, &plan, p, &ci));
  const char *want[] = {"b", "d", "f", "c", "e", "a"};
  for (int i = 0; i < 6; i++) ck_assert_str_eq(plan->steps[i].name, want[i]);
  zorch__plan_free(plan);
  /* a chain of pairs added in that order: that very order */
  zorch_pipeline_free(p);
  p = new_pipeline("order");
  for (int i = 0; i < 6; i++) {
    zt_ok(zorch_pipeline_add_function_step(&s[i], p, names[i], noop, NULL));
    if (i >= 2) zt_ok(zorch_step_after(s[i], names[i - 2]));
  }
  zt_ok(zorch__deployment_compile(NULL, &plan, p, &ci));
  for (int i = 0; i < 6; i++) ck_assert_str_eq(plan->steps[i].name, names[i]);
  zorch__plan_free(plan);
  zorch_pipeline_free(p);
}
END_TEST

/* JSON string literals as zorch writes them (records, documents) read back
 * as the same string, wherever the characters to escape fall. */
START_TEST(json_strings_round_trip) {
  const char specials[] = {'"', '\\', '\n', '\t', '\x01', '\x1f', '\r', 'a', '\x7f', '/'};
  char s[40];
  for (size_t len = 0; len < 24; len++)
    for (size_t at = 0; at <= len; at++)
      for (size_t k = 0; k < sizeof specials; k++) {
        for (size_t i = 0; i < len; i++) s[i] = (char)('a' + (i % 26));
        if (at < len) s[at] = specials[k];
        s[len] = '\0';
        zorch__buf b = ZORCH__BUF_INIT;
        zt_ok(zorch__buf_json_string(&b, s));
        json_error_t err;
        json_t *v = json_loads(b.data, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        ck_assert_msg(v && json_is_string(v), "'%s' is not a JSON string: %s", b.data, err.text);
        ck_assert_msg(!strcmp(json_string_value(v), s), "'%s' reads back as '%s'", b.data,
                      json_string_value(v));
        /* plain text is copied as it is */
        if (at == len || specials[k] == 'a' || specials[k] == '/' || specials[k] == '\x7f')
          ck_assert_int_eq(b.len, len + 2);
        json_decref(v);
        zorch__buf_free(&b);
      }
}
END_TEST

START_TEST(large_chain_compiles) {
  /* O(V+E): a 20k chain added in reverse validates and compiles */
  zorch_pipeline *p = new_pipeline("chain");
  char name[32], prev[32];
  for (int i = 19999; i >= 0; i--) {
    zorch_step *s;
    snprintf(name, sizeof name, "s%d", i);
    zt_ok(zorch_pipeline_add_function_step(&s, p, name, noop, NULL));
    zt_ok(zorch_step_add_output(s, "o"));
    if (i > 0) {
      snprintf(prev, sizeof prev, "s%d", i - 1);
      zt_ok(zorch_step_add_input(s, "in", prev, "o"));
    }
  }
  zorch__compile_info ci = {.run_id = "r"};
  char *doc = NULL;
  zt_ok(zorch__deployment_compile(&doc, NULL, p, &ci));
  zorch__plan *plan = NULL;
  zt_ok(zorch__plan_load(&plan, doc));
  ck_assert_str_eq(plan->steps[0].name, "s0");
  ck_assert_str_eq(plan->steps[19999].name, "s19999");
  zorch__plan_free(plan);
  free(doc);
  zorch_pipeline_free(p);
}
END_TEST

Suite *pipeline_suite(void) {
  Suite *s = suite_create("pipeline");
  TCase *tc = tcase_create("build");
  tcase_add_test(tc, names_are_checked);
  tcase_add_test(tc, cycle_is_named);
  tcase_add_test(tc, wiring_errors);
  tcase_add_test(tc, deployment_round_trip);
  tcase_add_test(tc, json_strings_round_trip);
  tcase_add_loop_test(tc, compiled_plan_equals_loaded_plan, 0, 3);
  tcase_add_test(tc, steps_are_ordered_level_by_level);
  tcase_add_test(tc, large_chain_compiles);
  suite_add_tcase(s, tc);
  return s;
}

ZORCH_CHECK_MAIN(pipeline)
