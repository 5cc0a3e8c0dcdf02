/* The deployment view of the plugin kit (plugins/common/zdeploy.c): steps in
 * topological order with their upstream steps, the one settings rule (step
 * over pipeline defaults over orchestrator config, objects merged at every
 * depth), resources parsed (cpu in cores or millicores, memory as bytes or
 * sizes with units), images, env, entrypoint argv from the templates, and
 * the refusals (a cycle, an unknown upstream step, a duplicate name, bad
 * sizes).  Also a real deployment compiled by libzorch, read back. */
#include <stdio.h>
#include <string.h>

#include "zdeploy.h"
#include "zorch-check.h"

static void h_log(const zorch_host *h, int level, const char *m) { (void)h, (void)level, (void)m; }
static void h_error(const zorch_host *h, int code, const char *m) { (void)h, (void)code, (void)m; }
static const zorch_host host = {.version = ZORCH_HOST_VERSION, .size = sizeof(zorch_host), .log = h_log,
                                .error_set = h_error, .alloc = malloc, .free = free};

/* "report" comes first in the document but waits for the other two. */
static const char doc[] =
    "{\"zorch_deployment\":1,\"pipeline\":\"etl\",\"run\":{\"id\":\"r1\",\"name\":\"etl-1\"},"
    "\"program\":{\"path\":\"/usr/bin/etl\"},"
    "\"entrypoint\":{\"function\":[\"/usr/bin/etl\",\"--zorch-step\",\"{step}\",\"--tag={step}-x\"],"
    "\"command\":[\"/usr/bin/zorch\",\"step\",\"run\",\"--zorch-step\",\"{step}\"]},"
    "\"defaults\":{\"settings\":{\"resources\":{\"cpu\":0.5},\"env\":{\"A\":\"1\"},\"image\":\"base:1\","
    "\"flavor\":{\"kube\":{\"node_selector\":{\"pool\":\"cpu\"}}}}},"
    "\"steps\":["
    "{\"name\":\"report\",\"kind\":\"function\",\"inputs\":{\"rows\":{\"step\":\"clean\",\"output\":\"rows\"}},"
    "\"after\":[\"fetch\"]},"
    "{\"name\":\"fetch\",\"kind\":\"command\",\"command\":[\"curl\"],\"outputs\":[\"raw\"],"
    "\"settings\":{\"resources\":{\"cpu\":2,\"memory\":4294967296,\"gpu\":1,\"gpu_type\":\"a100\"},"
    "\"env\":{\"A\":\"2\",\"B\":\"b\"},\"image\":\"fetch:2\","
    "\"flavor\":{\"kube\":{\"node_selector\":{\"zone\":\"x\"},\"labels\":{\"t\":\"f\"},\"image\":\"kimg:3\"}}}},"
    "{\"name\":\"clean\",\"kind\":\"command\",\"command\":[\"sed\"],"
    "\"inputs\":{\"raw\":{\"step\":\"fetch\",\"output\":\"raw\"}},\"outputs\":[\"rows\"]}"
    "]}";

START_TEST(steps_in_topological_order_with_upstream) {
  json_t *base = json_pack("{s:{s:s,s:s},s:[s]}", "node_selector", "pool", "general", "disk", "ssd", "tolerations",
                           "t1");
  zdep_options o = {.flavor = "kube", .base = base, .default_image = "cfg:0"};
  zdep *d = NULL;
  int rc = zdep_load(&d, &host, doc, &o);
  ck_assert_msg(rc == ZORCH_OK, "zdep_load: %s", zkit_error_message());
  ck_assert_str_eq(d->pipeline, "etl");
  ck_assert_str_eq(d->run_id, "r1");
  ck_assert_str_eq(d->run_name, "etl-1");
  ck_assert_str_eq(d->program, "/usr/bin/etl");
  ck_assert_uint_eq(d->n_steps, 3);
  ck_assert_str_eq(d->steps[0].name, "fetch");
  ck_assert_str_eq(d->steps[1].name, "clean");
  ck_assert_str_eq(d->steps[2].name, "report");
  const zdep_step *rep = zdep_find(d, "report"), *fetch = zdep_find(d, "fetch"), *clean = zdep_find(d, "clean");
  ck_assert_ptr_eq(rep, &d->steps[2]);
  ck_assert_ptr_null(zdep_find(d, "nope"));
  ck_assert_uint_eq(clean->n_upstream, 1);
  ck_assert_uint_eq(clean->upstream[0], fetch->index);
  ck_assert_uint_eq(rep->n_upstream, 2); /* its input's producer and its "after" */
  ck_assert(rep->upstream[0] == clean->index && rep->upstream[1] == fetch->index);
  ck_assert_uint_eq(fetch->n_upstream, 0);
  /* entrypoints: the template of the step's kind, {step} filled in everywhere */
  ck_assert_str_eq(rep->argv[0], "/usr/bin/etl");
  ck_assert_str_eq(rep->argv[2], "report");
  ck_assert_str_eq(rep->argv[3], "--tag=report-x");
  ck_assert_ptr_null(rep->argv[4]);
  ck_assert_str_eq(fetch->argv[1], "step");
  ck_assert_str_eq(fetch->argv[4], "fetch");
  /* settings: a step's own (complete) settings, else the pipeline's defaults */
  ck_assert(fetch->set.res.cpu == 2 && fetch->set.res.memory == 4294967296ull && fetch->set.res.gpu == 1);
  ck_assert_str_eq(fetch->set.res.gpu_type, "a100");
  ck_assert(clean->set.res.cpu == 0.5 && clean->set.res.memory == 0 && clean->set.res.gpu == 0);
  ck_assert_str_eq(fetch->set.env[0], "A=2");
  ck_assert_str_eq(fetch->set.env[1], "B=b");
  ck_assert_str_eq(clean->set.env[0], "A=1");
  /* the image: the flavor's, else the step's, else the config's */
  ck_assert_str_eq(fetch->set.image, "kimg:3");
  ck_assert_str_eq(clean->set.image, "base:1");
  /* flavor settings over the config's base, objects merged at every depth */
  json_t *ns = json_object_get(fetch->set.flavor, "node_selector");
  ck_assert_str_eq(zkit_jstr(ns, "pool"), "general");
  ck_assert_str_eq(zkit_jstr(ns, "disk"), "ssd");
  ck_assert_str_eq(zkit_jstr(ns, "zone"), "x");
  ck_assert_str_eq(zkit_jstr(json_object_get(fetch->set.flavor, "labels"), "t"), "f");
  ck_assert_str_eq(zkit_jstr(json_object_get(clean->set.flavor, "node_selector"), "pool"), "cpu");
  ck_assert_uint_eq(json_array_size(json_object_get(clean->set.flavor, "tolerations")), 1);
  ck_assert_ptr_null(json_object_get(fetch->set.flavor_own, "tolerations")); /* own: as the pipeline set it */
  zdep_free(d);
  /* no defaults image, no flavor one: the config's */
  const char *plain = "{\"steps\":[{\"name\":\"s\",\"kind\":\"command\"}],"
                      "\"entrypoint\":{\"command\":[\"z\",\"{step}\"]}}";
  ck_assert_int_eq(zdep_load(&d, &host, plain, &o), ZORCH_OK);
  ck_assert_str_eq(d->steps[0].set.image, "cfg:0");
  ck_assert_str_eq(d->pipeline, "");
  zdep_free(d);
  json_decref(base);
}
END_TEST

START_TEST(merge_rule) {
  json_t *base = json_pack("{s:s,s:{s:s,s:{s:i,s:i}},s:[i,i],s:{s:s}}", "network", "host", "run_args", "User", "a",
                           "HostConfig", "ShmSize", 1, "Memory", 2, "mounts", 1, 2, "environment", "X", "1");
  json_t *over = json_pack("{s:{s:{s:i}},s:[i],s:{s:s},s:n}", "run_args", "HostConfig", "ShmSize", 9, "mounts", 3,
                           "environment", "Y", "2", "extra");
  json_t *m = zdep_merge(base, over);
  ck_assert_str_eq(zkit_jstr(m, "network"), "host");                            /* kept */
  json_t *hc = json_object_get(json_object_get(m, "run_args"), "HostConfig");
  ck_assert_int_eq(json_integer_value(json_object_get(hc, "ShmSize")), 9);   /* overridden, deep */
  ck_assert_int_eq(json_integer_value(json_object_get(hc, "Memory")), 2);    /* kept, deep */
  ck_assert_str_eq(zkit_jstr(json_object_get(m, "run_args"), "User"), "a");
  ck_assert_uint_eq(json_array_size(json_object_get(m, "mounts")), 1);       /* arrays are replaced */
  ck_assert_str_eq(zkit_jstr(json_object_get(m, "environment"), "X"), "1"); /* maps merge */
  ck_assert_str_eq(zkit_jstr(json_object_get(m, "environment"), "Y"), "2");
  ck_assert(json_is_null(json_object_get(m, "extra")));
  /* the inputs are untouched */
  ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(json_object_get(base, "run_args"),
                                                                       "HostConfig"), "ShmSize")), 1);
  json_decref(m);
  m = zdep_merge(NULL, over);
  ck_assert(json_equal(m, over));
  json_decref(m);
  m = zdep_merge(base, NULL);
  ck_assert(json_equal(m, base));
  json_decref(m);
  json_decref(base);
  json_decref(over);
}
END_TEST

START_TEST(resources_parse) {
  double cpu;
  uint64_t mem;
  json_t *v;
#define CPU(js, want)                                                              \
  v = json_loads(js, JSON_DECODE_ANY, NULL);                                       \
  ck_assert_msg(zdep_cpu(&cpu, &host, v, "x") == ZORCH_OK && cpu == (want), "%s", js); \
  json_decref(v)
  CPU("2", 2);
  CPU("0.25", 0.25);
  CPU("\"500m\"", 0.5);
  CPU("\"1.5\"", 1.5);
  CPU("\"2\"", 2);
#define MEM(js, want)                                                                      \
  v = json_loads(js, JSON_DECODE_ANY, NULL);                                               \
  ck_assert_msg(zdep_memory(&mem, &host, v, "x") == ZORCH_OK && mem == (want), "%s -> %llu", js, \
                (unsigned long long)mem);                                                  \
  json_decref(v)
  MEM("1048576", 1048576ull);
  MEM("\"2Gi\"", 2ull << 30);
  MEM("\"512M\"", 512000000ull);
  MEM("\"512MiB\"", 512ull << 20);
  MEM("\"1.5G\"", 1500000000ull);
  MEM("\"0.5Ki\"", 512ull);
  MEM("\"64KB\"", 64000ull);
  const char *bad_mem[] = {"0", "-5", "\"512\"", "\"512mb\"", "\"1TB\"", "\"1 Gi\"", "\"0.1Ki\"", "\"Gi\"",
                           "\"1.0000000001G\"", "\"99999999999999999999Gi\"", "true", NULL};
  for (int i = 0; bad_mem[i]; i++) {
    v = json_loads(bad_mem[i], JSON_DECODE_ANY, NULL);
    ck_assert_msg(zdep_memory(&mem, &host, v, "step 's'") == ZORCH_EINVALID, "accepted %s", bad_mem[i]);
    json_decref(v);
  }
  ck_assert_msg(strstr(zkit_error_message(), "step 's': memory must be"), "%s", zkit_error_message());
  const char *bad_cpu[] = {"0", "-1", "\"m\"", "\"500x\"", "\"-2\"", "\"\"", "[1]", NULL};
  for (int i = 0; bad_cpu[i]; i++) {
    v = json_loads(bad_cpu[i], JSON_DECODE_ANY, NULL);
    ck_assert_msg(zdep_cpu(&cpu, &host, v, "x") == ZORCH_EINVALID, "accepted cpu %s", bad_cpu[i]);
    json_decref(v);
  }
  zdep_resources r;
  v = json_pack("{s:s,s:s,s:i,s:s}", "cpu", "250m", "memory", "1Gi", "gpu", 2, "gpu_type", "t4");
  zt_ok(zdep_resources_of(&r, &host, v, "x"));
  ck_assert(r.cpu == 0.25 && r.memory == (1ull << 30) && r.gpu == 2 && !strcmp(r.gpu_type, "t4"));
  json_decref(v);
  v = json_pack("{s:i}", "gpu", -1);
  ck_assert_int_eq(zdep_resources_of(&r, &host, v, "x"), ZORCH_EINVALID);
  json_decref(v);
  /* the launch's settings text goes through the same rule */
  zdep_settings s;
  json_t *base = json_pack("{s:s}", "user", "1:1");
  zdep_options o = {.flavor = "ld", .base = base, .default_image = "cfg"};
  zt_ok(zdep_settings_parse(&s, &host, "{\"resources\":{\"memory\":\"64MiB\"},\"flavor\":{\"ld\":{\"user\":\"2\"}}}",
                            &o, "step 'a'"));
  ck_assert(s.res.memory == 64ull << 20);
  ck_assert_str_eq(zkit_jstr(s.flavor, "user"), "2");
  ck_assert_str_eq(s.image, "cfg");
  zdep_settings_free(&s);
  zt_ok(zdep_settings_parse(&s, &host, NULL, &o, "step 'a'"));
  ck_assert_str_eq(zkit_jstr(s.flavor, "user"), "1:1");
  ck_assert_ptr_null(s.env[0]);
  zdep_settings_free(&s);
  ck_assert_int_eq(zdep_settings_parse(&s, &host, "[1]", &o, "step 'a'"), ZORCH_EINVALID);
  json_decref(base);
}
END_TEST

START_TEST(refusals) {
  zdep_options o = {.flavor = "f"};
  zdep *d = NULL;
  ck_assert_int_eq(zdep_load(&d, &host, "[]", &o), ZORCH_EINVALID);
  const char *cyc = "{\"entrypoint\":{\"command\":[\"z\"]},\"steps\":["
                    "{\"name\":\"a\",\"kind\":\"command\",\"after\":[\"c\"]},"
                    "{\"name\":\"b\",\"kind\":\"command\",\"after\":[\"a\"]},"
                    "{\"name\":\"c\",\"kind\":\"command\",\"inputs\":{\"x\":{\"step\":\"b\",\"output\":\"o\"}}},"
                    "{\"name\":\"free\",\"kind\":\"command\"}]}";
  ck_assert_int_eq(zdep_load(&d, &host, cyc, &o), ZORCH_EINVALID);
  ck_assert_msg(strstr(zkit_error_message(), "form a cycle"), "%s", zkit_error_message());
  const char *unknown = "{\"entrypoint\":{\"command\":[\"z\"]},\"steps\":["
                        "{\"name\":\"a\",\"kind\":\"command\",\"after\":[\"ghost\"]}]}";
  ck_assert_int_eq(zdep_load(&d, &host, unknown, &o), ZORCH_EINVALID);
  ck_assert_msg(strstr(zkit_error_message(), "step 'a' of the deployment waits for step 'ghost'"), "%s",
                zkit_error_message());
  const char *twice = "{\"entrypoint\":{\"command\":[\"z\"]},\"steps\":["
                      "{\"name\":\"a\",\"kind\":\"command\"},{\"name\":\"a\",\"kind\":\"command\"}]}";
  ck_assert_int_eq(zdep_load(&d, &host, twice, &o), ZORCH_EINVALID);
  ck_assert_msg(strstr(zkit_error_message(), "names step 'a' twice"), "%s", zkit_error_message());
  const char *no_tmpl = "{\"steps\":[{\"name\":\"a\",\"kind\":\"function\"}]}";
  ck_assert_int_eq(zdep_load(&d, &host, no_tmpl, &o), ZORCH_EINVALID);
  ck_assert_msg(strstr(zkit_error_message(), "no function entrypoint template"), "%s", zkit_error_message());
  const char *bad_mem = "{\"entrypoint\":{\"command\":[\"z\"]},\"steps\":[{\"name\":\"a\",\"kind\":\"command\","
                        "\"settings\":{\"resources\":{\"memory\":\"lots\"}}}]}";
  ck_assert_int_eq(zdep_load(&d, &host, bad_mem, &o), ZORCH_EINVALID);
  ck_assert_msg(strstr(zkit_error_message(), "step 'a': memory"), "%s", zkit_error_message());
  ck_assert_ptr_null(d);
}
END_TEST

static int noop(zorch_step_ctx *ctx, void *p) {
  (void)p;
  return zorch_ctx_output(ctx, "o", "x", 1);
}

static int build(zorch_pipeline **out, const char *name, void *payload) {
  (void)name, (void)payload;
  zorch_pipeline *p;
  zt_ok(zorch_pipeline_new(&p, "chain"));
  zorch_step *prev = NULL;
  char nm[16];
  for (int i = 0; i < 200; i++) { /* a long chain and a fan-in, compiled by libzorch */
    zorch_step *s;
    snprintf(nm, sizeof nm, "s%03d", i);
    zt_ok(zorch_pipeline_add_function_step(&s, p, nm, noop, NULL));
    zt_ok(zorch_step_add_output(s, "o"));
    if (prev) zt_ok(zorch_step_add_input(s, "i", zorch_step_name(prev), "o"));
    if (i == 100) zt_ok(zorch_step_set_resources(s, 1.5, 3u << 20));
    prev = s;
  }
  *out = p;
  return ZORCH_OK;
}

START_TEST(a_compiled_deployment) {
  zorch_pipeline *p;
  zt_ok(build(&p, "chain", NULL));
  zorch_client *c = zt_client();
  zorch_run *run = NULL;
  zt_ok(zorch_pipeline_run(&run, c, p, NULL)); /* the local flavor writes the deployment */
  const char *text = zorch_run_deployment(run);
  ck_assert_ptr_nonnull(text);
  zdep_options o = {.flavor = "f"};
  zdep *d;
  int rc = zdep_load(&d, &host, text, &o);
  ck_assert_msg(rc == ZORCH_OK, "%s", zkit_error_message());
  ck_assert_uint_eq(d->n_steps, 200);
  for (size_t i = 1; i < d->n_steps; i++) {
    ck_assert_uint_eq(d->steps[i].n_upstream, 1);
    ck_assert_uint_eq(d->steps[i].upstream[0], i - 1);
  }
  const zdep_step *s = zdep_find(d, "s100");
  ck_assert(s->set.res.cpu == 1.5 && s->set.res.memory == 3u << 20);
  ck_assert_str_eq(s->argv[0], d->program ? d->program : s->argv[0]);
  zdep_free(d);
  zorch_run_free(run);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

Suite *zdeploy_suite(void) {
  Suite *s = suite_create("zdeploy");
  TCase *tc = tcase_create("zdeploy");
  tcase_add_test(tc, steps_in_topological_order_with_upstream);
  tcase_add_test(tc, merge_rule);
  tcase_add_test(tc, resources_parse);
  tcase_add_test(tc, refusals);
  tcase_add_test(tc, a_compiled_deployment);
  suite_add_tcase(s, tc);
  return s;
}

ZORCH_CHECK_MAIN(zdeploy)
