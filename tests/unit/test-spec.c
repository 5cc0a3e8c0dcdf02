/* zorch — the JSON pipeline spec: what a valid spec builds, and every rejection.
 *
 * White-box: the settings a spec sets have no public getters, so this suite
 * reads them from the pipeline internals (lib/pipeline_int.h).
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "pipeline_int.h"
#include "zorch-check.h"

/* ---- a valid spec ---------------------------------------------------------- */

static const char *full_spec =
    "{\"zorch_pipeline\": 1, \"name\": \"etl\",\n"
    " \"params\": {\"rows\": 100, \"lr\": 0.1, \"opt\": \"adam\", \"layers\": [64, 32]},\n"
    " \"settings\": {\"env\": {\"LANG\": \"C\", \"MODE\": \"fast\"},\n"
    "              \"retries\": {\"max\": 2, \"delay\": 1, \"backoff\": 2},\n"
    "              \"timeout\": 30, \"cache\": true, \"image\": \"python:3.11\",\n"
    "              \"resources\": {\"cpu\": 1.5, \"memory\": \"512MiB\", \"gpu\": 1,\n"
    "                            \"gpu_type\": \"nvidia-tesla-t4\"},\n"
    "              \"flavor\": {\"kubernetes\": {\"node_selector\": {\"pool\": \"cpu\"}}}},\n"
    " \"steps\": [\n"
    "   {\"name\": \"make\", \"command\": [\"sh\", \"-c\", \"seq $ZORCH_PARAM_ROWS > "
    "$ZORCH_OUTPUT_DATA\"],\n"
    "    \"outputs\": [\"data\", \"meta\"], \"params\": [\"rows\"]},\n"
    "   {\"name\": \"count\", \"command\": [\"wc\", \"-l\"], \"inputs\": {\"data\": "
    "\"make.data\", \"m\": \"make.meta\"},\n"
    "    \"outputs\": [\"n\"], \"after\": [], \"version\": \"v1\", \"step_params\": {\"x\": 3, "
    "\"w\": {\"a\": 0.25}},\n"
    "    \"settings\": {\"env\": {\"MODE\": \"slow\"}, \"retries\": {\"max\": 0}, \"timeout\": 0,\n"
    "                 \"cache\": false, \"resources\": {\"memory\": 1048576},\n"
    "                 \"flavor\": {\"sagemaker\": {\"instance_type\": \"ml.m5.large\"}}}},\n"
    "   {\"name\": \"report\", \"command\": [\"true\"], \"after\": [\"count\"], \"params\": "
    "[\"lr\", \"opt\"]}\n"
    " ]}\n";

START_TEST(test_valid_spec_builds_pipeline) {
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_from_spec(&p, full_spec, "etl.json"));
  ck_assert_ptr_nonnull(p);
  ck_assert_str_eq(zorch_pipeline_name(p), "etl");
  ck_assert_uint_eq(zorch_pipeline_step_count(p), 3);
  zt_ok(zorch_pipeline_validate(p));

  /* params: declared with their JSON text, reals in their shortest form */
  ck_assert_str_eq(zorch__kvs_get(&p->params, "rows"), "100");
  ck_assert_str_eq(zorch__kvs_get(&p->params, "lr"), "0.1");
  ck_assert_str_eq(zorch__kvs_get(&p->params, "opt"), "\"adam\"");
  ck_assert_str_eq(zorch__kvs_get(&p->params, "layers"), "[64,32]");

  zorch_step *make = zorch_pipeline_step(p, "make");
  zorch_step *count = zorch_pipeline_step(p, "count");
  zorch_step *report = zorch_pipeline_step(p, "report");
  ck_assert_ptr_nonnull(make);
  ck_assert_ptr_nonnull(count);
  ck_assert_ptr_nonnull(report);

  /* command steps with their argv, outputs, used params */
  ck_assert_int_eq(make->kind, ZORCH__STEP_COMMAND);
  ck_assert_uint_eq(make->argv.n, 3);
  ck_assert_str_eq(make->argv.v[0], "sh");
  ck_assert_str_eq(make->argv.v[2], "seq $ZORCH_PARAM_ROWS > $ZORCH_OUTPUT_DATA");
  ck_assert_uint_eq(make->outputs.n, 2);
  ck_assert_str_eq(make->outputs.v[0], "data");
  ck_assert_str_eq(make->outputs.v[1], "meta");
  ck_assert_uint_eq(make->use_params.n, 1);
  ck_assert_str_eq(make->use_params.v[0], "rows");
  ck_assert_uint_eq(make->n_inputs, 0);

  /* inputs wired to upstream outputs, in document order */
  ck_assert_uint_eq(count->n_inputs, 2);
  ck_assert_str_eq(count->inputs[0].name, "data");
  ck_assert_str_eq(count->inputs[0].from_step, "make");
  ck_assert_str_eq(count->inputs[0].from_output, "data");
  ck_assert_str_eq(count->inputs[1].name, "m");
  ck_assert_str_eq(count->inputs[1].from_output, "meta");
  ck_assert_uint_eq(count->after.n, 0);
  ck_assert_str_eq(count->settings->version, "v1");
  ck_assert_str_eq(zorch__kvs_get(&count->params, "x"), "3");
  ck_assert_str_eq(zorch__kvs_get(&count->params, "w"), "{\"a\":0.25}");

  ck_assert_uint_eq(report->after.n, 1);
  ck_assert_str_eq(report->after.v[0], "count");
  ck_assert_uint_eq(report->use_params.n, 2);

  /* top-level settings went to the pipeline defaults */
  const zorch__settings *d = p->defaults.settings;
  ck_assert_str_eq(zorch__kvs_get(&d->env, "LANG"), "C");
  ck_assert_str_eq(zorch__kvs_get(&d->env, "MODE"), "fast");
  ck_assert(d->has_retry);
  ck_assert_uint_eq(d->retries, 2);
  ck_assert(d->retry_delay == 1.0 && d->retry_backoff == 2.0);
  ck_assert(d->has_timeout && d->timeout == 30.0);
  ck_assert(d->has_cache && d->cache);
  ck_assert_str_eq(d->image, "python:3.11");
  ck_assert(d->has_cpu && d->cpu == 1.5);
  ck_assert(d->has_memory);
  ck_assert_uint_eq(d->memory, 512ull << 20);
  ck_assert(d->has_gpu);
  ck_assert_uint_eq(d->gpu, 1);
  ck_assert_str_eq(d->gpu_type, "nvidia-tesla-t4");
  ck_assert_str_eq(zorch__kvs_get(&d->flavor, "kubernetes"), "{\"node_selector\":{\"pool\":\"cpu\"}}");

  /* step settings went to the step; what it does not set stays unset there */
  const zorch__settings *c = count->settings;
  ck_assert_str_eq(zorch__kvs_get(&c->env, "MODE"), "slow");
  ck_assert_ptr_null(zorch__kvs_get(&c->env, "LANG"));
  ck_assert(c->has_retry);
  ck_assert_uint_eq(c->retries, 0);
  ck_assert(c->has_timeout && c->timeout == 0.0);
  ck_assert(c->has_cache && !c->cache);
  ck_assert(!c->has_cpu);
  ck_assert(c->has_memory);
  ck_assert_uint_eq(c->memory, 1048576);
  ck_assert(!c->has_gpu);
  ck_assert_ptr_null(c->image);
  ck_assert_str_eq(zorch__kvs_get(&c->flavor, "sagemaker"), "{\"instance_type\":\"ml.m5.large\"}");

  const zorch__settings *m = make->settings;
  ck_assert(!m->has_retry && !m->has_timeout && !m->has_cache && !m->has_cpu && !m->has_memory);
  ck_assert_uint_eq(m->env.n, 0);
  zorch_pipeline_free(p);
}
END_TEST

START_TEST(test_minimal_spec) {
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_from_spec(
      &p, "{\"zorch_pipeline\":1,\"name\":\"one\",\"steps\":[{\"name\":\"a\",\"command\":[\"true\"]}]}",
      NULL));
  ck_assert_uint_eq(zorch_pipeline_step_count(p), 1);
  ck_assert_ptr_nonnull(zorch_pipeline_step(p, "a"));
  zorch_pipeline_free(p);
}
END_TEST

/* ---- memory sizes ------------------------------------------------------------- */

static const struct {
  const char *value; /* JSON */
  uint64_t bytes;    /* 0: rejected */
} memory_cases[] = {
    {"\"512MiB\"", 512ull << 20},   {"\"512Mi\"", 512ull << 20},   {"\"2Ki\"", 2048},
    {"\"2KiB\"", 2048},             {"\"3Gi\"", 3ull << 30},       {"\"3GiB\"", 3ull << 30},
    {"\"1K\"", 1000},               {"\"1KB\"", 1000},             {"\"7M\"", 7000000},
    {"\"7MB\"", 7000000},           {"\"2G\"", 2000000000},        {"\"2GB\"", 2000000000},
    {"\"1.5G\"", 1500000000},       {"\"0.5Ki\"", 512},            {"\"1.25GiB\"", 5ull << 28},
    {"1048576", 1048576},           {"1", 1},
    /* rejected */
    {"\"512mb\"", 0},               {"\"512\"", 0},                {"\"1.5\"", 0},
    {"\"12 MiB\"", 0},              {"\"12MiB \"", 0},             {"\"0Mi\"", 0},
    {"\"Mi\"", 0},                  {"\"1.Mi\"", 0},               {"\"-1Mi\"", 0},
    {"\"1TB\"", 0},                 {"\"1Ti\"", 0},                {"\"1k\"", 0},
    {"\"1B\"", 0},                  {"\"0.1Ki\"", 0},              {"\"1.0000000001Ki\"", 0},
    {"\"99999999999999999999Gi\"", 0}, {"\"17179869184Gi\"", 0},   {"0", 0},
    {"-5", 0},                      {"1.5", 0},                    {"true", 0},
    {"null", 0},                    {"\"\"", 0},
};

START_TEST(test_memory_units) {
  char doc[512];
  snprintf(doc, sizeof doc,
           "{\"zorch_pipeline\":1,\"name\":\"m\",\"settings\":{\"resources\":{\"memory\":%s}},"
           "\"steps\":[{\"name\":\"a\",\"command\":[\"true\"]}]}",
           memory_cases[_i].value);
  zorch_pipeline *p = NULL;
  int rc = zorch_pipeline_from_spec(&p, doc, "m.json");
  if (memory_cases[_i].bytes) {
    ck_assert_msg(rc == ZORCH_OK, "%s: %s", memory_cases[_i].value, zorch_error_last()->message);
    ck_assert_msg(p->defaults.settings->memory == memory_cases[_i].bytes,
                  "%s gave %" PRIu64 " bytes, wanted %" PRIu64, memory_cases[_i].value,
                  p->defaults.settings->memory, memory_cases[_i].bytes);
    zorch_pipeline_free(p);
  } else {
    ck_assert_msg(rc == ZORCH_EINVALID, "%s accepted (rc %d)", memory_cases[_i].value, rc);
    ck_assert_ptr_null(p);
    zt_assert_msg_has("m.json: settings.resources.memory: ");
  }
}
END_TEST

START_TEST(test_memory_message_lists_units) {
  zorch_pipeline *p = NULL;
  zt_assert_rc(zorch_pipeline_from_spec(
                   &p,
                   "{\"zorch_pipeline\":1,\"name\":\"m\",\"steps\":[{\"name\":\"a\",\"command\":"
                   "[\"true\"],\"settings\":{\"resources\":{\"memory\":\"4 gigs\"}}}]}",
                   "m.json"),
               ZORCH_EINVALID);
  zt_assert_msg_has("m.json: steps[0].settings.resources.memory: invalid memory size \"4 gigs\"");
  zt_assert_msg_has("MiB");
  zt_assert_msg_has("GiB");
}
END_TEST

/* ---- rejections ----------------------------------------------------------------- */

#define STEP_A "{\"name\":\"a\",\"command\":[\"true\"],\"outputs\":[\"out\"]}"
#define DOC(steps) "{\"zorch_pipeline\":1,\"name\":\"etl\",\"steps\":[" steps "]}"
#define DOC_TOP(extra, steps) "{\"zorch_pipeline\":1,\"name\":\"etl\"," extra ",\"steps\":[" steps "]}"
#define STEP_SETTINGS(s) DOC("{\"name\":\"a\",\"command\":[\"true\"],\"settings\":{" s "}}")

static const struct {
  const char *doc;
  int code;
  const char *message; /* exact when it starts with '=', else a substring */
} bad[] = {
    /* the examples of the contract, exactly */
    {DOC(STEP_A ",{\"name\":\"count\",\"command\":[\"wc\",\"-l\"],\"inputs\":{\"data\":\"make\"}}"),
     ZORCH_EINVALID, "=etl.json: steps[1].inputs.data: expected \"step.output\", got \"make\""},
    {DOC("{\"name\":\"a\",\"command\":\"wc -l\"}"), ZORCH_EINVALID,
     "=etl.json: steps[0].command: must be a non-empty array of strings"},
    {"{\"zorch_pipeline\":1,\"name\":\"etl\",\"stpes\":[]}", ZORCH_EINVALID,
     "=etl.json: unknown field 'stpes' at top level (did you mean 'steps'?)"},
    {"{\"zorch_pipeline\": 1,\n  \"name\": \"etl\",\n    ]\n}", ZORCH_EINVALID,
     "etl.json: line 3, column 5: "},
    /* parse and document shape */
    {"", ZORCH_EINVALID, "etl.json: "},
    {"[1,2]", ZORCH_EINVALID, "=etl.json: expected a JSON object at top level, got array"},
    {"{\"zorch_pipeline\":1,\"name\":\"a\",\"name\":\"b\",\"steps\":[]}", ZORCH_EINVALID,
     "etl.json: line 1, column "},
    /* the format version */
    {"{\"name\":\"etl\",\"steps\":[" STEP_A "]}", ZORCH_EINVALID,
     "etl.json: missing required field 'zorch_pipeline' at top level"},
    {"{\"zorch_pipeline\":2,\"name\":\"etl\",\"new_field\":1,\"steps\":[]}", ZORCH_EVERSION,
     "=etl.json: zorch_pipeline: spec version 2 is newer than this zorch supports (1); upgrade "
     "zorch"},
    {"{\"zorch_pipeline\":\"1\",\"name\":\"etl\",\"steps\":[]}", ZORCH_EINVALID,
     "=etl.json: zorch_pipeline: expected integer, got string"},
    {"{\"zorch_pipeline\":0,\"name\":\"etl\",\"steps\":[]}", ZORCH_EINVALID,
     "=etl.json: zorch_pipeline: must be 1, got 0"},
    /* top level */
    {"{\"zorch_pipeline\":1,\"steps\":[" STEP_A "]}", ZORCH_EINVALID,
     "=etl.json: missing required field 'name' at top level"},
    {"{\"zorch_pipeline\":1,\"name\":\"etl\"}", ZORCH_EINVALID,
     "=etl.json: missing required field 'steps' at top level"},
    {"{\"zorch_pipeline\":1,\"name\":\"etl\",\"steps\":[]}", ZORCH_EINVALID,
     "=etl.json: steps: must be a non-empty array of steps"},
    {"{\"zorch_pipeline\":1,\"name\":\"etl\",\"steps\":{}}", ZORCH_EINVALID,
     "=etl.json: steps: must be a non-empty array of steps"},
    {"{\"zorch_pipeline\":1,\"name\":7,\"steps\":[" STEP_A "]}", ZORCH_EINVALID,
     "=etl.json: name: expected string, got integer"},
    {"{\"zorch_pipeline\":1,\"name\":\"my etl\",\"steps\":[" STEP_A "]}", ZORCH_EINVALID,
     "etl.json: name: invalid pipeline name 'my etl'"},
    {DOC_TOP("\"params\":[1]", STEP_A), ZORCH_EINVALID,
     "=etl.json: params: expected object, got array"},
    {DOC_TOP("\"params\":{\"9lives\":1}", STEP_A), ZORCH_EINVALID,
     "etl.json: params[\"9lives\"]: invalid param name '9lives'"},
    {DOC_TOP("\"settings\":{\"retry\":{}}", STEP_A), ZORCH_EINVALID,
     "=etl.json: settings: unknown field 'retry' (did you mean 'retries'?)"},
    {DOC_TOP("\"description\":\"x\"", STEP_A), ZORCH_EINVALID,
     "=etl.json: unknown field 'description' at top level (allowed: zorch_pipeline, name, "
     "params, settings, steps)"},
    /* steps */
    {DOC("7"), ZORCH_EINVALID, "=etl.json: steps[0]: expected object, got integer"},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"outptus\":[]}"), ZORCH_EINVALID,
     "=etl.json: steps[0]: unknown field 'outptus' (did you mean 'outputs'?)"},
    {DOC("{\"command\":[\"true\"]}"), ZORCH_EINVALID,
     "=etl.json: steps[0]: missing required field 'name'"},
    {DOC("{\"name\":\"a\"}"), ZORCH_EINVALID,
     "=etl.json: steps[0]: missing required field 'command'"},
    {DOC("{\"name\":\"a\",\"command\":[]}"), ZORCH_EINVALID,
     "=etl.json: steps[0].command: must be a non-empty array of strings"},
    {DOC("{\"name\":\"a\",\"command\":[\"echo\",3]}"), ZORCH_EINVALID,
     "=etl.json: steps[0].command[1]: must be a non-empty array of strings: expected string, "
     "got integer"},
    {DOC("{\"name\":\"a\",\"command\":[\"\"]}"), ZORCH_EINVALID,
     "=etl.json: steps[0].command[0]: the program name is empty"},
    {DOC(STEP_A ",{\"name\":\"Bad Name\",\"command\":[\"true\"]}"), ZORCH_EINVALID,
     "etl.json: steps[1].name: invalid step name 'Bad Name'"},
    {DOC(STEP_A ",{\"name\":\"a\",\"command\":[\"true\"]}"), ZORCH_EINVALID,
     "=etl.json: steps[1].name: duplicate step name 'a' (also steps[0])"},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"outputs\":\"out\"}"), ZORCH_EINVALID,
     "=etl.json: steps[0].outputs: expected array of strings, got string"},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"outputs\":[\"x\",\"x\"]}"), ZORCH_EINVALID,
     "etl.json: steps[0].outputs[1]: step 'a' already has an output 'x'"},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"outputs\":[\"x.y\"]}"), ZORCH_EINVALID,
     "etl.json: steps[0].outputs[0]: "},
    /* wiring */
    {DOC(STEP_A ",{\"name\":\"b\",\"command\":[\"true\"],\"inputs\":{\"d\":7}}"), ZORCH_EINVALID,
     "=etl.json: steps[1].inputs.d: expected \"step.output\", got integer"},
    {DOC(STEP_A ",{\"name\":\"b\",\"command\":[\"true\"],\"inputs\":{\"d\":\"a.out.x\"}}"),
     ZORCH_EINVALID, "=etl.json: steps[1].inputs.d: expected \"step.output\", got \"a.out.x\""},
    {DOC(STEP_A ",{\"name\":\"b\",\"command\":[\"true\"],\"inputs\":{\"d\":\".out\"}}"),
     ZORCH_EINVALID, "=etl.json: steps[1].inputs.d: expected \"step.output\", got \".out\""},
    {DOC(STEP_A ",{\"name\":\"b\",\"command\":[\"true\"],\"inputs\":{\"d\":\"prep.out\"}}"),
     ZORCH_EINVALID, "=etl.json: steps[1].inputs.d: unknown step 'prep'"},
    {DOC(STEP_A ",{\"name\":\"b\",\"command\":[\"true\"],\"inputs\":{\"d\":\"a.dta\"}}"),
     ZORCH_EINVALID, "=etl.json: steps[1].inputs.d: step 'a' has no output 'dta' (it has: out)"},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"outputs\":[\"o\"],\"inputs\":{\"i\":\"a.o\"}}"),
     ZORCH_ECYCLE, "=etl.json: steps[0].inputs.i: step 'a' cannot take an input from itself"},
    {DOC(STEP_A ",{\"name\":\"b\",\"command\":[\"true\"],\"after\":[\"a\",\"c\"]}"), ZORCH_EINVALID,
     "=etl.json: steps[1].after[1]: unknown step 'c'"},
    {DOC(STEP_A ",{\"name\":\"b\",\"command\":[\"true\"],\"after\":[\"b\"]}"), ZORCH_ECYCLE,
     "=etl.json: steps[1].after[0]: step 'b' cannot run after itself"},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"after\":[\"c\"]},"
         "{\"name\":\"b\",\"command\":[\"true\"],\"after\":[\"a\"]},"
         "{\"name\":\"c\",\"command\":[\"true\"],\"after\":[\"b\"]}"),
     ZORCH_ECYCLE, "etl.json: pipeline 'etl' has a cycle: "},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"params\":[\"rows\"]}"), ZORCH_EINVALID,
     "=etl.json: steps[0].params[0]: unknown param 'rows' (declare it in the top-level "
     "\"params\")"},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"params\":[3]}"), ZORCH_EINVALID,
     "=etl.json: steps[0].params[0]: expected string, got integer"},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"step_params\":[]}"), ZORCH_EINVALID,
     "=etl.json: steps[0].step_params: expected object, got array"},
    {DOC("{\"name\":\"a\",\"command\":[\"true\"],\"version\":\"\"}"), ZORCH_EINVALID,
     "=etl.json: steps[0].version: must not be empty"},
    /* settings */
    {STEP_SETTINGS("\"timeout\":\"30\""), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.timeout: expected number, got string"},
    {STEP_SETTINGS("\"timeout\":-1"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.timeout: must be a number >= 0, got -1"},
    {STEP_SETTINGS("\"cache\":\"yes\""), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.cache: expected boolean, got string"},
    {STEP_SETTINGS("\"image\":\"\""), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.image: must not be empty"},
    {STEP_SETTINGS("\"env\":{\"N\":1}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.env.N: expected string, got integer"},
    {STEP_SETTINGS("\"env\":{\"A=B\":\"1\"}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.env[\"A=B\"]: invalid environment variable name 'A=B'"},
    {STEP_SETTINGS("\"retries\":3"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.retries: expected object, got integer"},
    {STEP_SETTINGS("\"retries\":{\"delay\":1}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.retries: missing required field 'max'"},
    {STEP_SETTINGS("\"retries\":{\"max\":-1}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.retries.max: must be an integer from 0 to 4294967295, got -1"},
    {STEP_SETTINGS("\"retries\":{\"max\":1,\"backoff\":0.5}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.retries.backoff: must be a number >= 1, got 0.5"},
    {STEP_SETTINGS("\"retries\":{\"max\":1,\"jitter\":true}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.retries: unknown field 'jitter' (allowed: max, delay, "
     "backoff)"},
    {STEP_SETTINGS("\"resources\":{\"cpu\":0}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.resources.cpu: must be a number > 0, got 0"},
    {STEP_SETTINGS("\"resources\":{\"gpus\":1}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.resources: unknown field 'gpus' (did you mean 'gpu'?)"},
    {STEP_SETTINGS("\"resources\":{\"gpu\":1.5}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.resources.gpu: expected integer, got number"},
    {STEP_SETTINGS("\"resources\":{\"gpu_type\":\"a100\"}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.resources.gpu_type: needs \"gpu\", the number of GPUs, "
     "beside it"},
    {STEP_SETTINGS("\"flavor\":{\"kubernetes\":[]}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.flavor.kubernetes: expected object, got array"},
    {STEP_SETTINGS("\"flavor\":\"kubernetes\""), ZORCH_EINVALID,
     "=etl.json: steps[0].settings.flavor: expected object, got string"},
    {STEP_SETTINGS("\"node_selector\":{}"), ZORCH_EINVALID,
     "=etl.json: steps[0].settings: unknown field 'node_selector' (allowed: env, retries, "
     "timeout, cache, image, resources, flavor)"},
};

START_TEST(test_rejections) {
  zorch_pipeline *p = (zorch_pipeline *)&p; /* must be reset to NULL */
  int rc = zorch_pipeline_from_spec(&p, bad[_i].doc, "etl.json");
  const char *msg = zorch_error_last()->message;
  ck_assert_msg(rc == bad[_i].code, "case %d: rc %d (%s), wanted %d\n%s", _i, rc, msg,
                bad[_i].code, bad[_i].doc);
  ck_assert_msg(p == NULL, "case %d: *out not reset on failure", _i);
  const char *want = bad[_i].message;
  if (want[0] == '=')
    ck_assert_msg(strcmp(msg, want + 1) == 0, "case %d: message\n  \"%s\"\nwanted\n  \"%s\"", _i,
                  msg, want + 1);
  else
    ck_assert_msg(strstr(msg, want) != NULL, "case %d: message \"%s\" lacks \"%s\"", _i, msg,
                  want);
}
END_TEST

START_TEST(test_cycle_names_the_steps) {
  zorch_pipeline *p = NULL;
  zt_assert_rc(zorch_pipeline_from_spec(
                   &p,
                   DOC("{\"name\":\"a\",\"command\":[\"true\"],\"outputs\":[\"o\"],\"inputs\":{"
                       "\"i\":\"b.o\"}},"
                       "{\"name\":\"b\",\"command\":[\"true\"],\"outputs\":[\"o\"],\"inputs\":{"
                       "\"i\":\"a.o\"}}"),
                   "c.json"),
               ZORCH_ECYCLE);
  zt_assert_msg_has("c.json: pipeline 'etl' has a cycle: ");
  zt_assert_msg_has("a -> b");
}
END_TEST

START_TEST(test_null_arguments) {
  zorch_pipeline *p = NULL;
  zt_assert_rc(zorch_pipeline_from_spec(NULL, "{}", "x"), ZORCH_EINVALID);
  zt_assert_rc(zorch_pipeline_from_spec(&p, NULL, "x.json"), ZORCH_EINVALID);
  zt_assert_msg_has("x.json: ");
  /* no source: messages still say what they are about */
  zt_assert_rc(zorch_pipeline_from_spec(&p, "{\"zorch_pipeline\":1}", NULL), ZORCH_EINVALID);
  ck_assert_str_eq(zorch_error_last()->message,
                   "pipeline spec: missing required field 'name' at top level");
}
END_TEST

START_TEST(test_parse_error_position) {
  zorch_pipeline *p = NULL;
  zt_assert_rc(zorch_pipeline_from_spec(&p, "{\n  \"zorch_pipeline\": 1,\n  \"name\": etl\n}",
                                        "etl.json"),
               ZORCH_EINVALID);
  zt_assert_msg_has("etl.json: line 3, column ");
  ck_assert_ptr_null(p);
}
END_TEST

Suite *spec_suite(void);
Suite *spec_suite(void) {
  Suite *s = suite_create("spec");
  TCase *tc = tcase_create("valid");
  tcase_add_test(tc, test_valid_spec_builds_pipeline);
  tcase_add_test(tc, test_minimal_spec);
  suite_add_tcase(s, tc);
  tc = tcase_create("memory");
  tcase_add_loop_test(tc, test_memory_units, 0, (int)(sizeof memory_cases / sizeof *memory_cases));
  tcase_add_test(tc, test_memory_message_lists_units);
  suite_add_tcase(s, tc);
  tc = tcase_create("rejections");
  tcase_add_loop_test(tc, test_rejections, 0, (int)(sizeof bad / sizeof *bad));
  tcase_add_test(tc, test_cycle_names_the_steps);
  tcase_add_test(tc, test_null_arguments);
  tcase_add_test(tc, test_parse_error_position);
  suite_add_tcase(s, tc);
  return s;
}

ZORCH_CHECK_MAIN(spec)
