/* Registry: plugin discovery, the ABI handshake, one problem per bad plugin. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client_int.h"
#include "submission.h"
#include "zorch-check.h"

/* ---- helpers ------------------------------------------------------------------ */

static char *fixture_dir; /* $ZORCH_TEST_FIXTURE_PLUGINS */
static char *local_dir;   /* $ZORCH_PLUGIN_PATH as meson set it: the local plugin */

static void save_env(void) {
  if (fixture_dir && local_dir) return; /* captured before any test changed it */
  const char *f = getenv("ZORCH_TEST_FIXTURE_PLUGINS");
  const char *l = getenv("ZORCH_PLUGIN_PATH");
  ck_assert_msg(f && *f, "ZORCH_TEST_FIXTURE_PLUGINS is not set (run through meson test)");
  ck_assert_msg(l && *l, "ZORCH_PLUGIN_PATH is not set (run through meson test)");
  /* absolute, so symlinks to the fixtures work from any directory */
  fixture_dir = realpath(f, NULL);
  local_dir = realpath(l, NULL);
  ck_assert_msg(fixture_dir && local_dir, "fixture or plugin directory missing (not built?)");
}

/* Every test starts from the environment meson gave (matters with CK_FORK=no). */
static void setup(void) {
  save_env();
  setenv("ZORCH_PLUGIN_PATH", local_dir, 1);
  setenv("ZORCH_PLUGIN_SYSTEM_PATH", "", 1);
  unsetenv("ZORCH_FIXTURE_MARKERS");
}

static char *fmt(const char *f, ...) ZORCH_PRINTF(1, 2);
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *s = NULL;
  ck_assert(vasprintf(&s, f, ap) >= 0);
  va_end(ap);
  return s;
}

static char *fixture(const char *id) { return fmt("%s/zorch-flavor-%s.so", fixture_dir, id); }

static char *local_plugin(void) { return fmt("%s/zorch-flavor-local.so", local_dir); }

/* A fresh directory holding symlinks to the named fixtures (NULL-terminated). */
static const char *dir_with(const char *id, ...) {
  const char *d = zt_tmpdir();
  va_list ap;
  va_start(ap, id);
  for (const char *x = id; x; x = va_arg(ap, const char *)) {
    char *src = fixture(x);
    char *dst = fmt("%s/zorch-flavor-%s.so", d, x);
    ck_assert_msg(symlink(src, dst) == 0, "symlink %s", src);
    free(src);
    free(dst);
  }
  va_end(ap);
  return d;
}

/* Log capture. */
typedef struct {
  int level;
  char domain[64];
  char msg[1024];
} logline;
static logline logs[256];
static int nlogs;

static void capture(int level, const char *domain, const char *msg, void *payload) {
  (void)payload;
  if (nlogs >= 256) return;
  logs[nlogs].level = level;
  snprintf(logs[nlogs].domain, sizeof logs[nlogs].domain, "%s", domain);
  snprintf(logs[nlogs].msg, sizeof logs[nlogs].msg, "%s", msg);
  nlogs++;
}

static int count_logs(int level, const char *domain, const char *msg) {
  int n = 0;
  for (int i = 0; i < nlogs; i++)
    if (logs[i].level == level && !strcmp(logs[i].domain, domain) && !strcmp(logs[i].msg, msg)) n++;
  return n;
}

static zorch_client *open_client(const char *plugin_path, uint32_t flags) {
  zorch_client_options o = ZORCH_CLIENT_OPTIONS_INIT;
  o.home = zt_tmpdir();
  o.plugin_path = plugin_path;
  o.flags = flags;
  o.log_cb = capture;
  o.log_level = ZORCH_LOG_INFO;
  nlogs = 0;
  zorch_client *c = NULL;
  zt_ok(zorch_client_new(&c, &o));
  return c;
}

#define ISOLATED (ZORCH_CLIENT_NO_ENV | ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS)

static json_t *parse(char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  ck_assert_msg(j, "bad JSON from zorch (%s): %s", e.text, text);
  zorch_free(text);
  return j;
}

/* An orchestrator flavor's description, parsed. */
static json_t *describe_orchestrator(zorch_client *c, const char *name) {
  char *s = NULL;
  zt_ok(zorch_flavor_describe(&s, c, "orchestrator", name));
  return parse(s);
}

/* The description's "flags", joined with commas, are exactly want (count and
 * order included). */
static void assert_flags(json_t *d, const char *want) {
  json_t *flags = json_object_get(d, "flags");
  ck_assert(json_is_array(flags));
  char got[256] = "";
  size_t i;
  json_t *v;
  json_array_foreach(flags, i, v) {
    ck_assert(json_is_string(v));
    size_t len = strlen(got);
    int n = snprintf(got + len, sizeof got - len, "%s%s", i ? "," : "", json_string_value(v));
    ck_assert(n >= 0 && (size_t)n < sizeof got - len);
  }
  ck_assert_str_eq(got, want);
}

static json_t *flavors(zorch_client *c, const char *type) {
  char *s = NULL;
  zt_ok(zorch_flavor_list(&s, c, type));
  return parse(s);
}

static json_t *problems(zorch_client *c) {
  char *s = NULL;
  zt_ok(zorch_flavor_problems(&s, c));
  return parse(s);
}

/* The path of flavor `name` in a flavor list, or NULL. */
static const char *flavor_path(json_t *list, const char *name) {
  size_t i;
  json_t *f;
  json_array_foreach(list, i, f) if (!strcmp(json_string_value(json_object_get(f, "name")), name))
      return json_string_value(json_object_get(f, "path"));
  return NULL;
}

static bool marker(const char *dir, const char *id, const char *what) {
  char *p = fmt("%s/%s.%s", dir, id, what);
  bool ok = access(p, F_OK) == 0;
  free(p);
  return ok;
}

/* ---- one failure fixture next to the good one ----------------------------------------- */

typedef struct {
  const char *id;       /* file zorch-flavor-<id>.so */
  const char *expected; /* the problem, "%s" for the file's path; NULL: see below */
  bool init_runs;       /* does its init run at all? */
} fail_case;

static char abi_major_msg[128], abi_minor_msg[128], describe_null_msg[160];
static char ops_future_msg[320], desc_future_msg[200], host_probe_msg[200];

static const fail_case cases[] = {
    {"garbage", "%s: cannot load the shared object: invalid ELF header", false},
    {"no-entry", "%s: no entry point zorch_plugin_describe (not a zorch flavor plugin)", false},
    {"describe-null", describe_null_msg, false},
    {"abi-major", abi_major_msg, false},
    {"abi-minor", abi_minor_msg, false},
    {"no-name", "%s: plugin descriptor lacks required field name", false},
    {"no-init", "%s: plugin descriptor lacks required field init", false},
    {"init-fail",
     "%s: init of plugin fixture_init_fail failed: the fixture's license server is unreachable",
     true},
    {"bad-type",
     "%s: flavor 'fixture_bad_type' rejected: type 'frobnicator' is not supported (this zorch "
     "accepts 'orchestrator', 'artifact_store' and 'image_builder')",
     true},
    {"no-ops",
     "%s: init of plugin fixture_no_ops failed: flavor 'fixture_no_ops' rejected: ops is NULL (an "
     "orchestrator needs submit, wait, cancel and release)",
     true},
    {"dup-local",
     "%s: flavor 'local' (orchestrator) ignored: already provided by plugin local (%s)", true},
    {"ops-v0",
     "%s: init of plugin fixture_ops_v0 failed: flavor 'fixture_ops_v0' rejected: ops version 0 "
     "is invalid (set .version = ZORCH_ORCHESTRATOR_OPS_VERSION)",
     true},
    {"ops-future", ops_future_msg, true},
    {"desc-future", desc_future_msg, true},
    {"bad-name",
     "%s: flavor 'Bad-Name' rejected: the name is invalid (use 1 to 63 of a-z, 0-9 and _)", true},
    {"host-probe", host_probe_msg, true},
    {"flags-unknown",
     "%s: flavor 'fixture_flags_unknown' rejected: flags 0x10000000000 hold bits this zorch does "
     "not know (0x10000000000); use only the ZORCH_FLAVOR_* of <zorch/plugin.h>",
     true},
    {"step-schema-bad",
     "%s: flavor 'fixture_step_schema_bad' rejected: step_settings_schema: invalid schema: $: "
     "keyword 'anyOf' is not supported (zorch supports type, properties, required, "
     "additionalProperties, items, enum, const, minimum, maximum, exclusiveMinimum, "
     "exclusiveMaximum, minLength, maxLength, pattern, minItems, maxItems)",
     true},
};
#define NCASES (int)(sizeof cases / sizeof cases[0])

static void init_msgs(void) {
  snprintf(abi_major_msg, sizeof abi_major_msg,
           "%%s: built for plugin ABI 2.%d, this zorch supports %d.%d", ZORCH_PLUGIN_ABI_MINOR,
           ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR);
  snprintf(abi_minor_msg, sizeof abi_minor_msg,
           "%%s: built for plugin ABI %d.%d, this zorch supports %d.%d", ZORCH_PLUGIN_ABI_MAJOR,
           ZORCH_PLUGIN_ABI_MINOR + 1, ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR);
  snprintf(describe_null_msg, sizeof describe_null_msg,
           "%%s: zorch_plugin_describe returned NULL: the plugin does not work with plugin ABI "
           "%d.%d",
           ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR);
  snprintf(ops_future_msg, sizeof ops_future_msg,
           "%%s: init of plugin fixture_ops_future failed: flavor 'fixture_ops_future' rejected: "
           "ops version 99 is newer than this zorch knows (%d): set .version = "
           "ZORCH_ORCHESTRATOR_OPS_VERSION of the <zorch/plugin.h> it is built with",
           ZORCH_ORCHESTRATOR_OPS_VERSION);
  snprintf(desc_future_msg, sizeof desc_future_msg,
           "%%s: flavor 'fixture_desc_future' rejected: descriptor version 99 is not supported "
           "(this zorch knows 1 to %d)",
           ZORCH_FLAVOR_DESC_VERSION);
  snprintf(host_probe_msg, sizeof host_probe_msg,
           "%%s: init of plugin fixture_host_probe failed: needs host table version 99 or newer, "
           "this zorch offers %d",
           ZORCH_HOST_VERSION);
}

START_TEST(one_bad_plugin) {
  const fail_case *fc = &cases[_i];
  init_msgs();
  const char *markers = zt_tmpdir();
  setenv("ZORCH_FIXTURE_MARKERS", markers, 1);
  const char *dir = dir_with("good", fc->id, NULL);
  char *marker_id = strdup(fc->id);
  for (char *p = marker_id; *p; p++)
    if (*p == '-') *p = '_';
  /* dup-local needs the real local plugin first */
  bool dup = !strcmp(fc->id, "dup-local");
  char *lp = local_plugin();
  char *path = dup ? fmt("%s:%s", local_dir, dir) : strdup(dir);
  zorch_client *c = open_client(path, ISOLATED);
  ck_assert_int_eq(zorch_error_last()->code, ZORCH_OK); /* problems are listed, not raised */

  json_t *fl = flavors(c, ZORCH_COMPONENT_ORCHESTRATOR);
  char *good = fmt("%s/zorch-flavor-good.so", dir);
  ck_assert_str_eq(flavor_path(fl, "fixture_good"), good);
  ck_assert_uint_eq(json_array_size(fl), dup ? 2 : 1);
  if (dup) ck_assert_str_eq(flavor_path(fl, "local"), lp);

  json_t *pr = problems(c);
  ck_assert_msg(json_array_size(pr) == 1, "%s: %zu problems", fc->id, json_array_size(pr));
  char *file = fmt("%s/zorch-flavor-%s.so", dir, fc->id);
  char *want = fmt(fc->expected, file, lp);
  json_t *p0 = json_array_get(pr, 0);
  ck_assert_str_eq(json_string_value(json_object_get(p0, "path")), file);
  ck_assert_str_eq(json_string_value(json_object_get(p0, "error")), want);
  /* logged once, as a warning */
  ck_assert_int_eq(count_logs(ZORCH_LOG_WARNING, "zorch", want), 1);

  /* No plugin code but describe ran before the handshake passed. */
  ck_assert_msg(marker(markers, marker_id, "init") == fc->init_runs, "%s: init %s", fc->id,
                fc->init_runs ? "did not run" : "ran");
  /* Rejected, or left with no flavor: torn down (if init ran) and unloaded. */
  ck_assert(marker(markers, marker_id, "teardown") == fc->init_runs);
  if (strcmp(fc->id, "garbage"))
    ck_assert_msg(marker(markers, marker_id, "unload"), "%s was not unloaded", fc->id);
  ck_assert(!marker(markers, "good", "teardown"));
  ck_assert(!marker(markers, "good", "unload"));

  zorch_client_free(c);
  ck_assert(marker(markers, "good", "teardown"));
  ck_assert(marker(markers, "good", "unload"));
  json_decref(fl);
  json_decref(pr);
  free(good);
  free(file);
  free(want);
  free(path);
  free(lp);
  free(marker_id);
}
END_TEST

/* The whole fixture directory at once: every bad plugin is one problem, in
 * file-name order, and the good one still loads. */
START_TEST(all_fixtures_together) {
  zorch_client *c = open_client(fixture_dir, ISOLATED);
  json_t *fl = flavors(c, ZORCH_COMPONENT_ORCHESTRATOR);
  /* fixture_good, dup-local's "local", frozen_1_0, frozen_1_1, late-add's (fine at load
   * time), no-local-store's and in-process's */
  ck_assert_uint_eq(json_array_size(fl), 7);
  ck_assert_ptr_nonnull(flavor_path(fl, "fixture_in_process"));
  ck_assert_ptr_nonnull(flavor_path(fl, "fixture_good"));
  ck_assert_ptr_nonnull(flavor_path(fl, "local"));
  ck_assert_ptr_nonnull(flavor_path(fl, "frozen_1_0"));
  ck_assert_ptr_nonnull(flavor_path(fl, "frozen_1_1"));
  ck_assert_ptr_nonnull(flavor_path(fl, "fixture_late_add"));
  ck_assert_ptr_nonnull(flavor_path(fl, "fixture_no_local_store"));
  json_t *pr = problems(c);
  /* frozen-1.1-local: its "local" comes after dup-local's */
  const char *order[] = {"abi-major",   "abi-minor",     "bad-name",         "bad-type",
                         "desc-future", "describe-null", "flags-unknown",    "frozen-1.1-local",
                         "garbage",     "host-probe",    "init-fail",        "no-entry",
                         "no-init",     "no-name",       "no-ops",           "ops-future",
                         "ops-v0",      "step-schema-bad"};
  size_t norder = sizeof order / sizeof order[0];
  ck_assert_uint_eq(json_array_size(pr), norder);
  for (size_t i = 0; i < norder; i++) {
    char *f = fixture(order[i]);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(pr, i), "path")), f);
    free(f);
  }
  json_decref(fl);
  json_decref(pr);
  zorch_client_free(c);
}
END_TEST

START_TEST(describe_and_list) {
  const char *dir = dir_with("good", NULL);
  zorch_client *c = open_client(dir, ISOLATED);
  json_t *d = describe_orchestrator(c, "fixture_good");
  ck_assert_str_eq(json_string_value(json_object_get(d, "plugin")), "fixture_good");
  ck_assert_str_eq(json_string_value(json_object_get(d, "integration")), "test");
  ck_assert_str_eq(json_string_value(json_object_get(d, "type")), "orchestrator");
  json_t *schema = json_object_get(d, "config_schema");
  ck_assert(json_is_object(schema));
  ck_assert(json_is_false(json_object_get(schema, "additionalProperties")));
  /* descriptor version 2: its flags and its step-settings schema */
  assert_flags(d, "local_store");
  json_t *ss = json_object_get(d, "step_settings_schema");
  ck_assert(json_is_object(ss));
  ck_assert_int_eq(json_integer_value(json_object_get(
                       json_object_get(json_object_get(ss, "properties"), "shm_size"), "minimum")),
                   0);
  const zorch__flavor *gf = zorch__registry_find(c->registry, "orchestrator", "fixture_good");
  ck_assert_uint_eq(gf->flags, ZORCH_FLAVOR_LOCAL_STORE);
  ck_assert_ptr_eq(gf->step_settings_schema, gf->desc->step_settings_schema);
  json_decref(d);

  char *s = NULL;
  zt_assert_rc(zorch_flavor_describe(&s, c, "orchestrator", "nope"), ZORCH_ENOTFOUND);
  zt_assert_msg_has("no orchestrator flavor 'nope'");
  ck_assert_ptr_null(s);
  zt_assert_rc(zorch_flavor_list(&s, c, "frobnicator"), ZORCH_EINVALID);

  /* the built-in artifact store is a flavor too, even without plugins */
  json_t *st = flavors(c, "artifact_store");
  ck_assert_uint_eq(json_array_size(st), 1);
  ck_assert_str_eq(flavor_path(st, "local"), "(built-in)");
  json_decref(st);
  json_t *all = flavors(c, NULL);
  ck_assert_uint_eq(json_array_size(all), 2);
  json_decref(all);

  /* the plugin's host->log went to the client's callback under its own name */
  ck_assert_int_eq(count_logs(ZORCH_LOG_INFO, "fixture_good", "fixture good ready"), 1);
  json_t *pr = problems(c);
  ck_assert_uint_eq(json_array_size(pr), 0);
  json_decref(pr);
  zorch_client_free(c);
}
END_TEST

/* ZORCH_PLUGIN_DEFINE (the good fixture and the local plugin are built with
 * it) makes the one exported entry point, returning a descriptor that names
 * the plugin ABI of the header: 1.2. */
START_TEST(plugin_define_makes_a_loadable_plugin) {
  char *path = fixture("good");
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  ck_assert_msg(dl, "%s", dlerror());
  void *sym = dlsym(dl, ZORCH_PLUGIN_ENTRY_SYMBOL);
  ck_assert_ptr_nonnull(sym);
  zorch_plugin_describe_fn describe;
  memcpy(&describe, &sym, sizeof describe);
  const zorch_plugin_desc *d = describe(ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR);
  ck_assert_ptr_nonnull(d);
  ck_assert_uint_eq(d->abi_major, 1);
  ck_assert_uint_eq(d->abi_minor, 2);
  ck_assert_uint_eq(d->abi_minor, ZORCH_PLUGIN_ABI_MINOR);
  ck_assert_str_eq(d->name, "fixture_good");
  ck_assert_str_eq(d->version, "0.0");
  ck_assert_str_eq(d->description, "registry test fixture");
  ck_assert_ptr_nonnull(d->init);
  ck_assert_ptr_nonnull(d->teardown);
  for (size_t i = 0; i < sizeof d->reserved / sizeof d->reserved[0]; i++)
    ck_assert_ptr_null(d->reserved[i]);
  /* the same descriptor whatever the host says it is: the host decides */
  ck_assert_ptr_eq(describe(1, 0), d);
  dlclose(dl);
  /* and the registry accepts it */
  zorch_client *c = open_client(path, ISOLATED);
  ck_assert_ptr_nonnull(zorch__registry_find(c->registry, "orchestrator", "fixture_good"));
  ck_assert_uint_eq(zorch__registry_problem_count(c->registry), 0);
  zorch_client_free(c);
  free(path);
}
END_TEST

/* The real local plugin, found through $ZORCH_PLUGIN_PATH. */
START_TEST(local_flavor) {
  zorch_client *c = open_client(NULL, ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS);
  json_t *d = describe_orchestrator(c, "local");
  ck_assert_str_eq(json_string_value(json_object_get(d, "integration")), "built-in");
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(d, "description")),
                               "independent steps in parallel"));
  json_t *mp = json_object_get(json_object_get(json_object_get(d, "config_schema"), "properties"),
                               "max_parallel");
  ck_assert_str_eq(json_string_value(json_object_get(mp, "type")), "integer");
  ck_assert_int_eq(json_integer_value(json_object_get(mp, "minimum")), 1);
  /* it says what it can do itself: the host does not go by its name */
  assert_flags(d, "in_process,local_store");
  ck_assert(json_is_null(json_object_get(d, "step_settings_schema")));
  json_decref(d);
  const zorch__flavor *f = zorch__registry_find(c->registry, "orchestrator", "local");
  ck_assert_uint_ge(f->desc->version, 2);
  ck_assert_uint_eq(f->desc->flags, ZORCH_FLAVOR_IN_PROCESS | ZORCH_FLAVOR_LOCAL_STORE);
  ck_assert_ptr_nonnull(f);
  const zorch_orchestrator_ops *ops = f->desc->ops;
  ck_assert_uint_ge(ops->version, 1);
  ck_assert_ptr_nonnull(ops->submit);
  ck_assert_ptr_null(ops->check_config);
  /* the host table the plugin got points at the submission.c entry points */
  ck_assert(f->host->executor_start == zorch__executor_start_host);
  ck_assert(f->host->submission_get == zorch__submission_get);
  ck_assert_uint_eq(f->host->size, sizeof(zorch_host));
  /* host version 3 (plugin ABI 1.2): every slot filled */
  ck_assert_uint_eq(f->host->version, 3);
  ck_assert(f->host->executor_step_log == zorch__executor_step_log_host);
  ck_assert(f->host->submission_run_record == zorch__submission_run_record);
  ck_assert(f->host->submission_step_record == zorch__submission_step_record);
  zorch_client_free(c);
}
END_TEST

/* add_flavor outside init (here: from check_config, long after loading) is
 * refused with a message that names the plugin and its file. */
START_TEST(late_add_flavor_refused) {
  const char *dir = dir_with("late-add", NULL);
  zorch_client *c = open_client(dir, ISOLATED);
  json_t *pr = problems(c);
  ck_assert_uint_eq(json_array_size(pr), 0); /* it registered fine during init */
  json_decref(pr);
  char *file = fmt("%s/zorch-flavor-late-add.so", dir);
  zt_assert_rc(zorch_component_register(c, "orchestrator", "late", "fixture_late_add", "{}", 0),
               ZORCH_EINVALID);
  char *want = fmt("plugin fixture_late_add (%s): add_flavor called after init", file);
  zt_assert_msg_has(want);
  /* the registry is unchanged: still exactly one flavor of that plugin */
  json_t *fl = flavors(c, "orchestrator");
  ck_assert_uint_eq(json_array_size(fl), 1);
  ck_assert_str_eq(flavor_path(fl, "fixture_late_add"), file);
  json_decref(fl);
  free(want);
  free(file);
  zorch_client_free(c);
}
END_TEST

/* A plugin compiled against the frozen plugin ABI 1.0 header
 * (tests/plugins/frozen-1.0) loads into the current library and runs a
 * pipeline: check_config, submit, metadata, the executor, wait, release. */
START_TEST(frozen_plugin_runs_a_pipeline) {
  const char *dir = dir_with("frozen-1.0", NULL);
  zorch_client *c = open_client(dir, ISOLATED);
  json_t *pr = problems(c);
  ck_assert_msg(json_array_size(pr) == 0, "the 1.0 plugin was not accepted: %s",
                json_string_value(json_object_get(json_array_get(pr, 0), "error")));
  json_decref(pr);
  json_t *d = describe_orchestrator(c, "frozen_1_0");
  ck_assert_str_eq(json_string_value(json_object_get(d, "integration")), "abi-test");
  /* a version-1 descriptor: flags implied, no step schema read past its end */
  assert_flags(d, "local_store");
  ck_assert(json_is_null(json_object_get(d, "step_settings_schema")));
  json_decref(d);

  /* its check_config runs (and its error carries the plugin and file) */
  zt_assert_rc(zorch_component_register(c, "orchestrator", "old", "frozen_1_0",
                                        "{\"label\":\"\"}", 0),
               ZORCH_EINVALID);
  zt_assert_msg_has("plugin frozen_1_0 (");
  zt_assert_msg_has("label must not be empty");
  zt_ok(zorch_component_register(c, "orchestrator", "old", "frozen_1_0",
                                 "{\"label\":\"from 1.0\"}", 0));
  zt_ok(zorch_stack_register(c, "old", "old", NULL, 0));

  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, "frozen"));
  zorch_step *make = NULL, *count = NULL;
  const char *make_argv[] = {"sh", "-c", "printf 'a\\nb\\nc\\n' > \"$ZORCH_OUTPUT_DATA\"", NULL};
  const char *count_argv[] = {"sh", "-c", "wc -l < \"$ZORCH_INPUT_DATA\" | tr -d ' ' > "
                              "\"$ZORCH_OUTPUT_N\"", NULL};
  zt_ok(zorch_pipeline_add_command_step(&make, p, "make", make_argv));
  zt_ok(zorch_step_add_output(make, "data"));
  zt_ok(zorch_pipeline_add_command_step(&count, p, "count", count_argv));
  zt_ok(zorch_step_add_input(count, "data", "make", "data"));
  zt_ok(zorch_step_add_output(count, "n"));
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.stack = "old";
  zorch_run *r = NULL;
  zt_ok(zorch_pipeline_run(&r, c, p, &o));
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_COMPLETED);
  ck_assert_str_eq(zorch_run_metadata(r, "frozen_abi"), "1.0");
  ck_assert_str_eq(zorch_run_metadata(r, "frozen_label"), "from 1.0");
  char *rid = fmt("frozen-%s", zorch_run_id(r));
  ck_assert_str_eq(zorch_run_metadata(r, "orchestrator_run_id"), rid);
  void *data = NULL;
  size_t n = 0;
  zt_ok(zorch_run_read_output(&data, &n, r, "count", "n"));
  ck_assert_str_eq((char *)data, "3\n");
  /* the plugin's host->log reached the client's log under its name */
  ck_assert_int_eq(count_logs(ZORCH_LOG_INFO, "frozen_1_0", "submitting through the executor"), 1);
  zorch_free(data);
  free(rid);
  zorch_run_free(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

/* A plugin compiled against the frozen plugin ABI 1.1 header: a version-1
 * flavor descriptor (no flags, no step schema), treated as
 * ZORCH_FLAVOR_LOCAL_STORE; it launches steps through executor_start_remote. */
START_TEST(frozen_1_1_plugin_launches_remote_steps) {
  const char *dir = dir_with("frozen-1.1", NULL);
  /* with the environment: $ZORCH_COMMAND is the command steps' entrypoint */
  zorch_client *c = open_client(dir, ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS);
  json_t *pr = problems(c);
  ck_assert_msg(json_array_size(pr) == 0, "the 1.1 plugin was not accepted: %s",
                json_string_value(json_object_get(json_array_get(pr, 0), "error")));
  json_decref(pr);
  const zorch__flavor *f = zorch__registry_find(c->registry, "orchestrator", "frozen_1_1");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(f->desc->version, 1);
  ck_assert_uint_eq(f->flags, ZORCH_FLAVOR_LOCAL_STORE);
  ck_assert_ptr_null(f->step_settings_schema);
  zt_ok(zorch_component_register(c, "orchestrator", "old", "frozen_1_1", "{}", 0));
  zt_ok(zorch_stack_register(c, "old", "old", NULL, 0));
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, "frozen11"));
  zorch_step *make = NULL, *count = NULL;
  const char *make_argv[] = {"sh", "-c", "echo making; printf 'a\\nb\\n' > \"$ZORCH_OUTPUT_DATA\"",
                             NULL};
  const char *count_argv[] = {"sh", "-c", "wc -l < \"$ZORCH_INPUT_DATA\" | tr -d ' ' > "
                              "\"$ZORCH_OUTPUT_N\"", NULL};
  zt_ok(zorch_pipeline_add_command_step(&make, p, "make", make_argv));
  zt_ok(zorch_step_add_output(make, "data"));
  zt_ok(zorch_pipeline_add_command_step(&count, p, "count", count_argv));
  zt_ok(zorch_step_add_input(count, "data", "make", "data"));
  zt_ok(zorch_step_add_output(count, "n"));
  /* flavor settings are not checked for it: it has no step schema */
  zt_ok(zorch_step_set_flavor_settings(make, "frozen_1_1", "{\"anything\":[1]}"));
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.stack = "old";
  zorch_run *r = NULL;
  zt_ok(zorch_pipeline_run(&r, c, p, &o));
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_COMPLETED);
  ck_assert_str_eq(zorch_run_metadata(r, "frozen_abi"), "1.1");
  void *data = NULL;
  zt_ok(zorch_run_read_output(&data, NULL, r, "count", "n"));
  ck_assert_str_eq((char *)data, "2\n");
  zorch_free(data);
  char *log = NULL;
  zt_ok(zorch_run_read_log(&log, NULL, r, "make"));
  ck_assert_msg(strstr(log, "making"), "%s", log);
  zorch_free(log);
  zorch_run_free(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

/* A version-1 flavor named "local" is taken to run in process, as the host
 * assumed before the flags existed: an ephemeral run works on it. */
START_TEST(frozen_1_1_local_is_in_process) {
  const char *dir = dir_with("frozen-1.1-local", NULL);
  zorch_client *c = open_client(dir, ISOLATED);
  json_t *d = describe_orchestrator(c, "local");
  ck_assert_str_eq(json_string_value(json_object_get(d, "integration")), "abi-test");
  assert_flags(d, "in_process,local_store");
  json_decref(d);
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, "eph"));
  const char *argv[] = {"sh", "-c", "echo 5 > \"$ZORCH_OUTPUT_X\"", NULL};
  zorch_step *st = NULL;
  zt_ok(zorch_pipeline_add_command_step(&st, p, "five", argv));
  zt_ok(zorch_step_add_output(st, "x"));
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.flags = ZORCH_RUN_EPHEMERAL | ZORCH_RUN_NO_CACHE;
  zorch_run *r = NULL;
  zt_ok(zorch_pipeline_run(&r, c, p, &o));
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_COMPLETED);
  ck_assert_str_eq(zorch_run_metadata(r, "frozen_abi"), "1.1");
  void *data = NULL;
  zt_ok(zorch_run_read_output(&data, NULL, r, "five", "x"));
  ck_assert_str_eq((char *)data, "5\n");
  zorch_free(data);
  zorch_run_free(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

/* An ephemeral run on the local flavor is compiled without a deployment
 * document; a plugin that provides "local" in place of zorch's and asks for
 * the document while it starts the run still gets it. */
START_TEST(a_replacement_local_flavor_gets_the_deployment_of_an_ephemeral_run) {
  const char *dir = dir_with("dup-local", NULL);
  zorch_client *c = open_client(dir, ISOLATED);
  const char *markers = zt_tmpdir();
  setenv("ZORCH_FIXTURE_MARKERS", markers, 1);
  zorch_pipeline *p = NULL;
  zt_ok(zorch_pipeline_new(&p, "eph"));
  const char *argv[] = {"true", NULL};
  zt_ok(zorch_pipeline_add_command_step(NULL, p, "first", argv));
  zt_ok(zorch_pipeline_add_command_step(NULL, p, "second", argv));
  zt_ok(zorch_step_after(zorch_pipeline_step(p, "second"), "first"));
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.flags = ZORCH_RUN_EPHEMERAL | ZORCH_RUN_NO_CACHE;
  zorch_run *r = NULL;
  zt_assert_rc(zorch_run_start(&r, c, p, &o), ZORCH_ENOTSUPPORTED);
  zt_assert_msg_has("the fixture flavor runs nothing");
  char *path = fmt("%s/dup_local.deployment", markers);
  json_error_t e;
  json_t *d = json_load_file(path, 0, &e);
  ck_assert_msg(d, "%s: %s", path, e.text);
  ck_assert_int_eq(json_integer_value(json_object_get(d, "zorch_deployment")), 1);
  json_t *steps = json_object_get(d, "steps");
  ck_assert_uint_eq(json_array_size(steps), 2);
  ck_assert_str_eq(json_string_value(json_object_get(json_array_get(steps, 1), "name")), "second");
  ck_assert_str_eq(
      json_string_value(json_array_get(json_object_get(json_array_get(steps, 1), "after"), 0)), "first");
  json_decref(d);
  free(path);
  unsetenv("ZORCH_FIXTURE_MARKERS");
  zorch_pipeline_free(p);
  zorch_client_free(c);
}
END_TEST

/* ---- search order --------------------------------------------------------------------- */

START_TEST(options_path_before_env) {
  const char *dir = dir_with("dup-local", NULL);
  zorch_client *c = open_client(dir, ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS);
  json_t *fl = flavors(c, "orchestrator");
  char *dupf = fmt("%s/zorch-flavor-dup-local.so", dir);
  ck_assert_str_eq(flavor_path(fl, "local"), dupf);
  json_t *pr = problems(c);
  ck_assert_uint_eq(json_array_size(pr), 1);
  char *lp = local_plugin();
  char *want = fmt("%s: flavor 'local' (orchestrator) ignored: already provided by plugin "
                   "fixture_dup_local (%s)",
                   lp, dupf);
  ck_assert_str_eq(json_string_value(json_object_get(json_array_get(pr, 0), "error")), want);
  free(want);
  free(lp);
  free(dupf);
  json_decref(fl);
  json_decref(pr);
  zorch_client_free(c);
}
END_TEST

START_TEST(env_path_before_system_path) {
  const char *dir = dir_with("dup-local", NULL);
  setenv("ZORCH_PLUGIN_PATH", dir, 1);
  setenv("ZORCH_PLUGIN_SYSTEM_PATH", local_dir, 1);
  zorch_client *c = open_client(NULL, 0);
  json_t *fl = flavors(c, "orchestrator");
  char *dupf = fmt("%s/zorch-flavor-dup-local.so", dir);
  ck_assert_str_eq(flavor_path(fl, "local"), dupf);
  json_t *pr = problems(c);
  ck_assert_uint_eq(json_array_size(pr), 1);
  char *lp = local_plugin();
  ck_assert_str_eq(json_string_value(json_object_get(json_array_get(pr, 0), "path")), lp);
  free(lp);
  free(dupf);
  json_decref(fl);
  json_decref(pr);
  zorch_client_free(c);
}
END_TEST

START_TEST(system_path) {
  unsetenv("ZORCH_PLUGIN_PATH");
  setenv("ZORCH_PLUGIN_SYSTEM_PATH", local_dir, 1);
  zorch_client *c = open_client(NULL, 0);
  json_t *fl = flavors(c, "orchestrator");
  ck_assert_ptr_nonnull(flavor_path(fl, "local"));
  json_decref(fl);
  zorch_client_free(c);
  /* NO_DEFAULT_PLUGIN_PATHS skips the system path too (it replaces the default) */
  c = open_client(NULL, ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS);
  fl = flavors(c, "orchestrator");
  ck_assert_uint_eq(json_array_size(fl), 0);
  json_decref(fl);
  zorch_client_free(c);
}
END_TEST

START_TEST(no_env) {
  zorch_client *c = open_client(NULL, ZORCH_CLIENT_NO_ENV | ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS);
  json_t *fl = flavors(c, "orchestrator");
  ck_assert_uint_eq(json_array_size(fl), 0); /* $ZORCH_PLUGIN_PATH was not read */
  json_decref(fl);
  zorch_client_free(c);
}
END_TEST

START_TEST(no_plugins) {
  const char *dir = dir_with("good", "garbage", NULL);
  zorch_client *c = open_client(dir, ZORCH_CLIENT_NO_PLUGINS);
  json_t *fl = flavors(c, "orchestrator");
  ck_assert_uint_eq(json_array_size(fl), 0);
  json_t *pr = problems(c);
  ck_assert_uint_eq(json_array_size(pr), 0);
  json_t *st = flavors(c, "artifact_store");
  ck_assert_uint_eq(json_array_size(st), 1);
  json_decref(fl);
  json_decref(pr);
  json_decref(st);
  zorch_client_free(c);
}
END_TEST

START_TEST(path_entries) {
  /* a file named directly, empty elements, a directory that does not exist */
  char *good = fixture("good");
  char *path = fmt("::%s:/nonexistent/zorch-plugins:", good);
  zorch_client *c = open_client(path, ISOLATED);
  json_t *fl = flavors(c, "orchestrator");
  ck_assert_str_eq(flavor_path(fl, "fixture_good"), good);
  json_t *pr = problems(c);
  ck_assert_uint_eq(json_array_size(pr), 0);
  json_decref(fl);
  json_decref(pr);
  zorch_client_free(c);
  free(path);
  free(good);
}
END_TEST

START_TEST(only_plugin_names) {
  const char *dir = zt_tmpdir();
  char *garbage = fixture("garbage");
  const char *names[] = {"libzorch-flavor-x.so", "zorch-flavor-x.so.1", "zorch-flavor-.so",
                         "zorch-flavor-x.sox", "README", "x.so"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char *dst = fmt("%s/%s", dir, names[i]);
    ck_assert(symlink(garbage, dst) == 0);
    free(dst);
  }
  char *sub = fmt("%s/zorch-flavor-dir.so", dir); /* a directory with a plugin's name */
  ck_assert(mkdir(sub, 0755) == 0);
  zorch_client *c = open_client(dir, ISOLATED);
  json_t *pr = problems(c);
  ck_assert_uint_eq(json_array_size(pr), 0);
  json_decref(pr);
  zorch_client_free(c);
  free(sub);
  free(garbage);
}
END_TEST

START_TEST(same_file_twice) {
  const char *a = dir_with("good", NULL), *b = dir_with("good", NULL);
  char *path = fmt("%s:%s", a, b);
  zorch_client *c = open_client(path, ISOLATED);
  json_t *pr = problems(c);
  ck_assert_uint_eq(json_array_size(pr), 0);
  json_t *fl = flavors(c, "orchestrator");
  ck_assert_uint_eq(json_array_size(fl), 1);
  json_decref(pr);
  json_decref(fl);
  zorch_client_free(c);
  free(path);
}
END_TEST

/* Two clients in one process load the same file: dlopen gives one handle,
 * each client its own host table and init. */
START_TEST(two_clients) {
  const char *markers = zt_tmpdir();
  setenv("ZORCH_FIXTURE_MARKERS", markers, 1);
  const char *dir = dir_with("good", NULL);
  zorch_client *c1 = open_client(dir, ISOLATED);
  zorch_client *c2 = open_client(dir, ISOLATED);
  const zorch__flavor *f1 = zorch__registry_find(c1->registry, NULL, "fixture_good");
  const zorch__flavor *f2 = zorch__registry_find(c2->registry, NULL, "fixture_good");
  ck_assert_ptr_nonnull(f1);
  ck_assert_ptr_nonnull(f2);
  ck_assert_ptr_ne(f1->host, f2->host);
  zorch_client_free(c1);
  ck_assert(!marker(markers, "good", "unload")); /* c2 still holds it */
  zorch_client_free(c2);
  ck_assert(marker(markers, "good", "unload"));
}
END_TEST

/* ---- static plugins ---------------------------------------------------------------------- */

static const zorch_host *saved_host;
static zorch_registrar *saved_reg;

static int st_submit(void **o, void *p, zorch_submission *s) {
  (void)o, (void)p, (void)s;
  return ZORCH_ENOTSUPPORTED;
}
static int st_wait(void *r, int t) {
  (void)r, (void)t;
  return ZORCH_OK;
}
static int st_cancel(void *r) {
  (void)r;
  return ZORCH_OK;
}
static void st_release(void *r) { (void)r; }
static const zorch_orchestrator_ops st_ops = {
    .version = 1, .submit = st_submit, .wait = st_wait, .cancel = st_cancel, .release = st_release};
static const zorch_flavor_desc st_flavor = {
    .version = 1, .type = "orchestrator", .name = "static_one", .integration = "test",
    .description = "a static flavor", .config_schema = "{\"type\":\"object\"}", .ops = &st_ops};
static const zorch_flavor_desc st_bad_schema = {
    .version = 1, .type = "orchestrator", .name = "static_bad", .integration = "test",
    .description = "bad schema", .config_schema = "{\"oneOf\":[]}", .ops = &st_ops};
static const zorch_flavor_desc st_bad_name = {
    .version = 1, .type = "orchestrator", .name = "Bad-Name", .integration = "test",
    .description = "bad name", .config_schema = "{}", .ops = &st_ops};

static int st_init(const zorch_host *host, zorch_registrar *reg, void **ctx) {
  (void)ctx;
  saved_host = host;
  saved_reg = reg;
  host->add_flavor(reg, &st_bad_schema, NULL);
  host->add_flavor(reg, &st_bad_name, NULL);
  return host->add_flavor(reg, &st_flavor, NULL);
}

static const zorch_plugin_desc st_plugin = {1, 0, "static_test", "1", "static", st_init, NULL,
                                            {0}};
static const zorch_plugin_desc st_newer = {1, 99, "static_newer", "1", "x", st_init, NULL, {0}};

START_TEST(static_plugin) {
  zorch_client *c = open_client(NULL, ISOLATED);
  zt_ok(zorch__registry_add_static(c->registry, &st_plugin, "test-static"));
  const zorch__flavor *f = zorch__registry_find(c->registry, "orchestrator", "static_one");
  ck_assert_ptr_nonnull(f);
  ck_assert_str_eq(f->plugin_path, "test-static");
  ck_assert_str_eq(f->plugin_name, "static_test");
  /* the two bad flavors are a problem each; the plugin itself is fine */
  ck_assert_uint_eq(zorch__registry_problem_count(c->registry), 2);
  const char *path, *msg;
  zorch__registry_problem(c->registry, 0, &path, &msg);
  ck_assert_str_eq(path, "test-static");
  ck_assert_str_eq(msg, "test-static: flavor 'static_bad' rejected: config_schema: invalid "
                        "schema: $: keyword 'oneOf' is not supported (zorch supports type, "
                        "properties, required, additionalProperties, items, enum, const, "
                        "minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength, "
                        "maxLength, pattern, minItems, maxItems)");
  zorch__registry_problem(c->registry, 1, &path, &msg);
  ck_assert_str_eq(msg, "test-static: flavor 'Bad-Name' rejected: the name is invalid (use 1 to "
                        "63 of a-z, 0-9 and _)");

  /* add_flavor only works during init */
  zt_assert_rc(saved_host->add_flavor(saved_reg, &st_flavor, NULL), ZORCH_EINVALID);
  zt_assert_msg_has("plugin static_test (test-static): add_flavor called after init");
  /* error_set prefixes the plugin */
  saved_host->error_set(saved_host, ZORCH_EIO, "disk on fire");
  ck_assert_int_eq(zorch_error_last()->code, ZORCH_EIO);
  ck_assert_str_eq(zorch_error_last()->message, "plugin static_test (test-static): disk on fire");

  /* a static plugin goes through the same handshake */
  zt_assert_rc(zorch__registry_add_static(c->registry, &st_newer, "newer"), ZORCH_EVERSION);
  zt_assert_msg_has("newer: built for plugin ABI 1.99, this zorch supports");
  zorch_client_free(c);
}
END_TEST

/* ---- image-builder flavors (plugin ABI 1.2) ---------------------------------------------- */

static int ib_build(char **out, void *payload, const char *config, const char *request) {
  (void)payload, (void)config, (void)request;
  *out = NULL;
  return ZORCH_ENOTSUPPORTED;
}
static const zorch_image_builder_ops ib_ops = {.version = ZORCH_IMAGE_BUILDER_OPS_VERSION,
                                               .build = ib_build};
static const zorch_image_builder_ops ib_no_build = {.version = 1};
static const zorch_image_builder_ops ib_future = {.version = 99, .build = ib_build};
#define IB_DESC(n, o)                                                                      \
  {.version = ZORCH_FLAVOR_DESC_VERSION, .type = ZORCH_COMPONENT_IMAGE_BUILDER, .name = n, \
   .integration = "test", .description = "an image builder", .config_schema = "{}", .ops = o}
static const zorch_flavor_desc ib_good = IB_DESC("ib_good", &ib_ops);
/* the same name as an orchestrator: names are per component type */
static const zorch_flavor_desc ib_named_local = IB_DESC("local", &ib_ops);
static const zorch_flavor_desc ib_bad[] = {IB_DESC("ib_null", NULL), IB_DESC("ib_nobuild", &ib_no_build),
                                           IB_DESC("ib_future", &ib_future)};

static int ib_init(const zorch_host *host, zorch_registrar *reg, void **ctx) {
  (void)ctx;
  for (size_t i = 0; i < sizeof ib_bad / sizeof ib_bad[0]; i++)
    ck_assert_int_eq(host->add_flavor(reg, &ib_bad[i], NULL), ZORCH_EINVALID);
  ck_assert_int_eq(host->add_flavor(reg, &ib_named_local, NULL), ZORCH_OK);
  return host->add_flavor(reg, &ib_good, NULL);
}
static const zorch_plugin_desc ib_plugin = {1, 2, "ib_test", "1", "image builders", ib_init, NULL,
                                            {0}};

START_TEST(image_builder_flavors) {
  zorch_client *c = open_client(local_dir, ISOLATED);
  zt_ok(zorch__registry_add_static(c->registry, &ib_plugin, "test-ib"));
  const zorch__flavor *f = zorch__registry_find(c->registry, ZORCH_COMPONENT_IMAGE_BUILDER, "ib_good");
  ck_assert_ptr_nonnull(f);
  ck_assert_ptr_eq(f->desc->ops, &ib_ops);
  f = zorch__registry_find(c->registry, ZORCH_COMPONENT_IMAGE_BUILDER, "local");
  ck_assert_ptr_nonnull(f);
  ck_assert_str_eq(f->plugin_name, "ib_test");
  f = zorch__registry_find(c->registry, ZORCH_COMPONENT_ORCHESTRATOR, "local");
  ck_assert_ptr_nonnull(f);
  ck_assert_str_eq(f->plugin_name, "local");
  ck_assert_uint_eq(zorch__registry_problem_count(c->registry), 3);
  const char *want[] = {
      "test-ib: flavor 'ib_null' rejected: ops is NULL (an image builder needs build)",
      "test-ib: flavor 'ib_nobuild' rejected: ops lack build",
      "test-ib: flavor 'ib_future' rejected: ops version 99 is newer than this zorch knows (1): "
      "set .version = ZORCH_IMAGE_BUILDER_OPS_VERSION of the <zorch/plugin.h> it is built with"};
  for (size_t i = 0; i < 3; i++) {
    const char *path, *msg;
    zorch__registry_problem(c->registry, i, &path, &msg);
    ck_assert_str_eq(msg, want[i]);
  }
  /* listed by type */
  char *json = NULL;
  zt_ok(zorch_flavor_list(&json, c, ZORCH_COMPONENT_IMAGE_BUILDER));
  ck_assert_msg(strstr(json, "\"name\":\"ib_good\"") && strstr(json, "\"name\":\"local\"") &&
                    !strstr(json, "orchestrator"),
                "%s", json);
  zorch_free(json);
  zt_ok(zorch_flavor_describe(&json, c, ZORCH_COMPONENT_IMAGE_BUILDER, "ib_good"));
  ck_assert_msg(strstr(json, "\"type\":\"image_builder\""), "%s", json);
  zorch_free(json);
  zorch_client_free(c);
}
END_TEST

Suite *registry_suite(void);
Suite *registry_suite(void) {
  Suite *s = suite_create("registry");
  TCase *t = tcase_create("handshake");
  tcase_add_checked_fixture(t, setup, NULL);
  tcase_add_loop_test(t, one_bad_plugin, 0, NCASES);
  tcase_add_test(t, all_fixtures_together);
  tcase_add_test(t, describe_and_list);
  tcase_add_test(t, local_flavor);
  tcase_add_test(t, plugin_define_makes_a_loadable_plugin);
  tcase_add_test(t, static_plugin);
  tcase_add_test(t, image_builder_flavors);
  tcase_add_test(t, two_clients);
  tcase_add_test(t, late_add_flavor_refused);
  tcase_add_test(t, frozen_plugin_runs_a_pipeline);
  tcase_add_test(t, frozen_1_1_plugin_launches_remote_steps);
  tcase_add_test(t, frozen_1_1_local_is_in_process);
  tcase_add_test(t, a_replacement_local_flavor_gets_the_deployment_of_an_ephemeral_run);
  suite_add_tcase(s, t);
  t = tcase_create("search");
  tcase_add_checked_fixture(t, setup, NULL);
  tcase_add_test(t, options_path_before_env);
  tcase_add_test(t, env_path_before_system_path);
  tcase_add_test(t, system_path);
  tcase_add_test(t, no_env);
  tcase_add_test(t, no_plugins);
  tcase_add_test(t, path_entries);
  tcase_add_test(t, only_plugin_names);
  tcase_add_test(t, same_file_twice);
  suite_add_tcase(s, t);
  return s;
}

ZORCH_CHECK_MAIN(registry)
