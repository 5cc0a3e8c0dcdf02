/* Stacks, components and config.json; the JSON Schema subset. */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client_int.h"
#include "zorch-check.h"

/* ---- helpers ------------------------------------------------------------------ */

static char *fmt(const char *f, ...) ZORCH_PRINTF(1, 2);
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *s = NULL;
  ck_assert(vasprintf(&s, f, ap) >= 0);
  va_end(ap);
  return s;
}

/* A client on `home` (NULL: a fresh one) that sees the local plugin through
 * $ZORCH_PLUGIN_PATH and, with `fixtures`, the good fixture plugin. */
static zorch_client *client_at(const char *home, bool fixtures) {
  zorch_client_options o = ZORCH_CLIENT_OPTIONS_INIT;
  o.home = home ? home : zt_tmpdir();
  o.flags = ZORCH_CLIENT_NO_DEFAULT_PLUGIN_PATHS;
  char *good = NULL;
  if (fixtures) {
    const char *f = getenv("ZORCH_TEST_FIXTURE_PLUGINS");
    ck_assert_ptr_nonnull(f);
    good = fmt("%s/zorch-flavor-good.so", f);
    o.plugin_path = good;
  }
  zorch_client *c = NULL;
  zt_ok(zorch_client_new(&c, &o));
  free(good);
  return c;
}

static json_t *parse(char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  ck_assert_msg(j, "bad JSON from zorch (%s): %s", e.text, text);
  zorch_free(text);
  return j;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

static json_t *config_file(zorch_client *c) {
  char *p = fmt("%s/config.json", zorch_client_home(c));
  json_error_t e;
  json_t *j = json_load_file(p, 0, &e);
  ck_assert_msg(j, "%s: %s", p, e.text);
  free(p);
  return j;
}

#define ck_assert_msg_eq(want)                                                          \
  ck_assert_str_eq(zorch_error_last()->message, (want))

/* ---- defaults --------------------------------------------------------------------- */

START_TEST(default_stack_without_file) {
  zorch_client *c = client_at(NULL, false);
  char *s = NULL;
  zt_ok(zorch_stack_get_active(&s, c));
  ck_assert_str_eq(s, "default");
  zorch_free(s);

  zt_ok(zorch_stack_list(&s, c));
  json_t *l = parse(s);
  ck_assert_uint_eq(json_array_size(l), 1);
  json_t *d = json_array_get(l, 0);
  ck_assert_str_eq(json_string_value(json_object_get(d, "name")), "default");
  ck_assert_str_eq(json_string_value(json_object_get(d, "orchestrator")), "default");
  ck_assert_str_eq(json_string_value(json_object_get(d, "artifact_store")), "default");
  ck_assert(json_is_true(json_object_get(d, "active")));
  json_decref(l);

  zt_ok(zorch_stack_describe(&s, c, NULL));
  json_t *sd = parse(s);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(sd, "orchestrator"), "flavor")),
                   "local");
  char *store = fmt("%s/store", zorch_client_home(c));
  ck_assert_str_eq(json_string_value(json_object_get(
                       json_object_get(json_object_get(sd, "artifact_store"), "config"), "path")),
                   store);
  json_decref(sd);

  zorch__stack st;
  zt_ok(zorch__stack_resolve(&st, c, NULL));
  ck_assert_str_eq(st.name, "default");
  ck_assert_str_eq(st.orchestrator_flavor, "local");
  ck_assert_str_eq(st.orchestrator_config, "{}");
  ck_assert_str_eq(st.store_flavor, "local");
  ck_assert_str_eq(st.store_path, store);
  zorch__stack_clear(&st);

  zorch__store_component *comps = NULL;
  size_t ncomps = 0;
  zt_ok(zorch__store_components(&comps, &ncomps, c));
  ck_assert_uint_eq(ncomps, 1);
  ck_assert_str_eq(comps[0].name, "default");
  ck_assert_str_eq(comps[0].flavor, "local");
  json_t *cfg = json_loads(comps[0].config, 0, NULL);
  ck_assert_str_eq(json_string_value(json_object_get(cfg, "path")), store);
  json_decref(cfg);
  zorch__store_components_free(comps, ncomps);

  /* reading never creates the file */
  char *cf = fmt("%s/config.json", zorch_client_home(c));
  ck_assert_int_ne(access(cf, F_OK), 0);
  free(cf);
  free(store);
  zorch_client_free(c);
}
END_TEST

/* ---- components ------------------------------------------------------------------- */

START_TEST(register_components_and_stacks) {
  zorch_client *c = client_at(NULL, false);
  zt_ok(zorch_component_register(c, "orchestrator", "fast", "local", "{\"max_parallel\": 8}", 0));
  zt_ok(zorch_component_register(c, "artifact_store", "scratch", "local",
                                 "{\"path\": \"/tmp/zorch-scratch\"}", 0));
  zt_ok(zorch_stack_register(c, "speedy", "fast", "scratch", 0));
  zt_ok(zorch_stack_register(c, "other", "fast", NULL, 0)); /* NULL store: default */

  char *s = NULL;
  zt_ok(zorch_component_list(&s, c, "orchestrator"));
  json_t *l = parse(s);
  ck_assert_uint_eq(json_array_size(l), 2);
  json_t *fast = json_array_get(l, 1);
  ck_assert_str_eq(json_string_value(json_object_get(fast, "name")), "fast");
  ck_assert_str_eq(json_string_value(json_object_get(fast, "type")), "orchestrator");
  ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(fast, "config"),
                                                      "max_parallel")), 8);
  json_decref(l);
  zt_ok(zorch_component_list(&s, c, NULL));
  l = parse(s);
  ck_assert_uint_eq(json_array_size(l), 4);
  json_decref(l);

  zorch__stack st;
  zt_ok(zorch__stack_resolve(&st, c, "speedy"));
  ck_assert_str_eq(st.orchestrator_name, "fast");
  ck_assert_str_eq(st.orchestrator_config, "{\"max_parallel\":8}");
  ck_assert_str_eq(st.store_name, "scratch");
  ck_assert_str_eq(st.store_path, "/tmp/zorch-scratch");
  zorch__stack_clear(&st);
  zt_ok(zorch__stack_resolve(&st, c, "other"));
  ck_assert_str_eq(st.store_name, "default");
  zorch__stack_clear(&st);

  zorch__store_component *comps = NULL;
  size_t ncomps = 0;
  zt_ok(zorch__store_components(&comps, &ncomps, c));
  ck_assert_uint_eq(ncomps, 2);
  ck_assert_str_eq(comps[1].name, "scratch");
  ck_assert_str_eq(comps[1].config, "{\"path\":\"/tmp/zorch-scratch\"}");
  zorch__store_components_free(comps, ncomps);

  /* taken names, and replace */
  zt_assert_rc(zorch_component_register(c, "orchestrator", "fast", "local", NULL, 0),
               ZORCH_EEXISTS);
  ck_assert_msg_eq("orchestrator 'fast' already exists (replace it to change it)");
  zt_ok(zorch_component_register(c, "orchestrator", "fast", "local", NULL, 1));
  zt_ok(zorch__stack_resolve(&st, c, "speedy"));
  ck_assert_str_eq(st.orchestrator_config, "{}");
  zorch__stack_clear(&st);
  zt_assert_rc(zorch_stack_register(c, "speedy", "default", NULL, 0), ZORCH_EEXISTS);
  zt_ok(zorch_stack_register(c, "speedy", "default", NULL, 1));

  /* names */
  zt_assert_rc(zorch_component_register(c, "orchestrator", "has space", "local", NULL, 0),
               ZORCH_EINVALID);
  zt_assert_msg_has("invalid orchestrator name 'has space'");
  zt_assert_rc(zorch_stack_register(c, "9lives", "default", NULL, 0), ZORCH_EINVALID);
  zt_assert_msg_has("invalid stack name '9lives'");
  zt_assert_rc(zorch_component_register(c, "secret_store", "x", "local", NULL, 0),
               ZORCH_EINVALID);
  ck_assert_msg_eq("unknown component type 'secret_store' (expected orchestrator or "
                   "artifact_store)");
  zorch_client_free(c);
}
END_TEST

START_TEST(schema_errors_name_the_field) {
  zorch_client *c = client_at(NULL, false);
  zt_assert_rc(zorch_component_register(c, "orchestrator", "bad", "local",
                                        "{\"max_parallel\": \"eight\"}", 0),
               ZORCH_EINVALID);
  ck_assert_msg_eq("orchestrator 'bad' config: $.max_parallel: expected integer, got string");
  zt_assert_rc(zorch_component_register(c, "orchestrator", "bad", "local",
                                        "{\"max_parallel\": 0}", 0),
               ZORCH_EINVALID);
  ck_assert_msg_eq("orchestrator 'bad' config: $.max_parallel: 0 is less than the minimum 1");
  zt_assert_rc(zorch_component_register(c, "orchestrator", "bad", "local",
                                        "{\"max_paralel\": 2}", 0),
               ZORCH_EINVALID);
  ck_assert_msg_eq("orchestrator 'bad' config: $.max_paralel: unknown property (allowed: "
                   "max_parallel)");
  zt_assert_rc(zorch_component_register(c, "orchestrator", "bad", "local", "[1]", 0),
               ZORCH_EINVALID);
  ck_assert_msg_eq("orchestrator 'bad' config: must be a JSON object");
  zt_assert_rc(zorch_component_register(c, "orchestrator", "bad", "local", "{\n\"a\":", 0),
               ZORCH_EINVALID);
  zt_assert_msg_has("orchestrator 'bad' config: invalid JSON: line 2");

  zt_assert_rc(zorch_component_register(c, "artifact_store", "s", "local", "{}", 0),
               ZORCH_EINVALID);
  ck_assert_msg_eq("artifact store 's' config: $.path: required property is missing");
  zt_assert_rc(zorch_component_register(c, "artifact_store", "s", "local",
                                        "{\"path\": \"relative/dir\"}", 0),
               ZORCH_EINVALID);
  ck_assert_msg_eq("artifact store 's' config: $.path: \"relative/dir\" does not match the "
                   "pattern ^/ (absolute path of the store's root directory)");

  /* nothing was written */
  char *s = NULL;
  zt_ok(zorch_component_list(&s, c, NULL));
  json_t *l = parse(s);
  ck_assert_uint_eq(json_array_size(l), 2);
  json_decref(l);
  zorch_client_free(c);
}
END_TEST

START_TEST(unknown_flavor) {
  zorch_client *c = client_at(NULL, false);
  zt_assert_rc(zorch_component_register(c, "orchestrator", "k", "kubernetes", NULL, 0),
               ZORCH_ENOTFOUND);
  ck_assert_msg_eq("unknown orchestrator flavor 'kubernetes' (available: local)");
  zt_assert_rc(zorch_component_register(c, "artifact_store", "b", "s3", NULL, 0),
               ZORCH_ENOTFOUND);
  ck_assert_msg_eq("unknown artifact store flavor 's3' (available: local)");
  zorch_client_free(c);

  zorch_client_options o = ZORCH_CLIENT_OPTIONS_INIT;
  o.home = zt_tmpdir();
  o.flags = ZORCH_CLIENT_NO_PLUGINS;
  zt_ok(zorch_client_new(&c, &o));
  zt_assert_rc(zorch_component_register(c, "orchestrator", "l", "local", NULL, 0),
               ZORCH_ENOTFOUND);
  ck_assert_msg_eq("unknown orchestrator flavor 'local' (no orchestrator flavors are available; "
                   "check ZORCH_PLUGIN_PATH and zorch_flavor_problems())");
  zorch_client_free(c);
}
END_TEST

/* The flavor's own check_config runs after the schema, and its message
 * carries the plugin's name and file. */
START_TEST(flavor_check_config) {
  zorch_client *c = client_at(NULL, true);
  zt_ok(zorch_component_register(c, "orchestrator", "fx", "fixture_good",
                                 "{\"level\": 3, \"mode\": \"fast\", \"tags\": [\"a\"]}", 0));
  zt_assert_rc(zorch_component_register(c, "orchestrator", "fx", "fixture_good",
                                        "{\"reject\": true}", 1),
               ZORCH_EINVALID);
  char *want = fmt("orchestrator 'fx' config: plugin fixture_good (%s/zorch-flavor-good.so): "
                   "fixture refuses a config with reject set",
                   getenv("ZORCH_TEST_FIXTURE_PLUGINS"));
  ck_assert_msg_eq(want);
  free(want);
  zt_assert_rc(zorch_component_register(c, "orchestrator", "fx", "fixture_good",
                                        "{\"tags\": [\"a\", 2]}", 1),
               ZORCH_EINVALID);
  ck_assert_msg_eq("orchestrator 'fx' config: $.tags[1]: expected string, got integer");
  zt_assert_rc(zorch_component_register(c, "orchestrator", "fx", "fixture_good",
                                        "{\"mode\": \"medium\"}", 1),
               ZORCH_EINVALID);
  ck_assert_msg_eq("orchestrator 'fx' config: $.mode: \"medium\" is not one of \"fast\", \"slow\"");
  zorch_client_free(c);
}
END_TEST

/* ---- delete rules ------------------------------------------------------------------- */

START_TEST(delete_rules) {
  zorch_client *c = client_at(NULL, false);
  zt_ok(zorch_component_register(c, "orchestrator", "o2", "local", NULL, 0));
  zt_ok(zorch_stack_register(c, "s2", "o2", NULL, 0));
  zt_ok(zorch_stack_register(c, "s3", "o2", NULL, 0));

  zt_assert_rc(zorch_component_delete(c, "orchestrator", "o2"), ZORCH_EINVALID);
  ck_assert_msg_eq("orchestrator 'o2' is used by stack s2, s3; delete or change the stack first");
  zt_assert_rc(zorch_component_delete(c, "orchestrator", "default"), ZORCH_EINVALID);
  ck_assert_msg_eq("the default orchestrator cannot be deleted");
  zt_assert_rc(zorch_component_delete(c, "artifact_store", "default"), ZORCH_EINVALID);
  zt_assert_rc(zorch_component_delete(c, "orchestrator", "nope"), ZORCH_ENOTFOUND);
  ck_assert_msg_eq("orchestrator 'nope' does not exist");

  zt_assert_rc(zorch_stack_delete(c, "default"), ZORCH_EINVALID);
  ck_assert_msg_eq("the default stack cannot be deleted");
  zt_ok(zorch_stack_set_active(c, "s2"));
  zt_assert_rc(zorch_stack_delete(c, "s2"), ZORCH_EINVALID);
  ck_assert_msg_eq("stack 's2' is the active stack; activate another stack first");
  zt_assert_rc(zorch_stack_delete(c, "nope"), ZORCH_ENOTFOUND);
  ck_assert_msg_eq("stack 'nope' does not exist (stacks: default, s2, s3)");

  zt_ok(zorch_stack_set_active(c, "default"));
  zt_ok(zorch_stack_delete(c, "s2"));
  zt_ok(zorch_stack_delete(c, "s3"));
  zt_ok(zorch_component_delete(c, "orchestrator", "o2"));

  /* a stack must name components that exist */
  zt_assert_rc(zorch_stack_register(c, "s4", "o2", NULL, 0), ZORCH_ENOTFOUND);
  ck_assert_msg_eq("stack 's4': orchestrator 'o2' does not exist");
  zt_assert_rc(zorch_stack_register(c, "s4", "default", "nostore", 0), ZORCH_ENOTFOUND);
  ck_assert_msg_eq("stack 's4': artifact store 'nostore' does not exist");
  zt_assert_rc(zorch_stack_set_active(c, "s4"), ZORCH_ENOTFOUND);
  zorch__stack st;
  zt_assert_rc(zorch__stack_resolve(&st, c, "s4"), ZORCH_ENOTFOUND);
  ck_assert_ptr_null(st.name);
  zorch_client_free(c);
}
END_TEST

/* ---- the file -------------------------------------------------------------------------- */

START_TEST(active_stack_persists) {
  const char *home = zt_tmpdir();
  zorch_client *c = client_at(home, false);
  zt_ok(zorch_component_register(c, "orchestrator", "two", "local", "{\"max_parallel\":2}", 0));
  zt_ok(zorch_stack_register(c, "mine", "two", NULL, 0));
  zt_ok(zorch_stack_set_active(c, "mine"));
  zorch_client_free(c);

  c = client_at(home, false);
  char *s = NULL;
  zt_ok(zorch_stack_get_active(&s, c));
  ck_assert_str_eq(s, "mine");
  zorch_free(s);
  zorch__stack st;
  zt_ok(zorch__stack_resolve(&st, c, NULL));
  ck_assert_str_eq(st.name, "mine");
  ck_assert_str_eq(st.orchestrator_config, "{\"max_parallel\":2}");
  zorch__stack_clear(&st);

  /* the file has the documented shape, and no temporary file is left */
  json_t *f = config_file(c);
  ck_assert_int_eq(json_integer_value(json_object_get(f, "version")), 1);
  ck_assert_str_eq(json_string_value(json_object_get(f, "active_stack")), "mine");
  ck_assert_ptr_nonnull(json_object_get(json_object_get(f, "stacks"), "default"));
  json_decref(f);
  DIR *d = opendir(home);
  struct dirent *e;
  while ((e = readdir(d)))
    ck_assert_msg(!strstr(e->d_name, "config.json."), "leftover %s", e->d_name);
  closedir(d);
  zorch_client_free(c);
}
END_TEST

START_TEST(corrupt_config) {
  zorch_client *c = client_at(NULL, false);
  char *path = fmt("%s/config.json", zorch_client_home(c));
  write_text(path, "{\n  \"version\": 1,\n  \"stacks\": {,\n}\n");
  char *s = NULL;
  zt_assert_rc(zorch_stack_list(&s, c), ZORCH_EINVALID);
  char *want = fmt("config file %s: line 3, column 14: string or '}' expected near ','", path);
  ck_assert_msg_eq(want);
  free(want);
  /* and writes refuse to clobber it */
  zt_assert_rc(zorch_stack_set_active(c, "default"), ZORCH_EINVALID);

  write_text(path, "{\"version\": 1, \"stacks\": {\"x\": {\"orchestrator\": 5}}}");
  zt_assert_rc(zorch_stack_list(&s, c), ZORCH_EINVALID);
  want = fmt("config file %s: $.stacks.x.artifact_store: required property is missing", path);
  ck_assert_msg_eq(want);
  free(want);

  write_text(path, "{\"version\": 2, \"future\": true}");
  zt_assert_rc(zorch_stack_get_active(&s, c), ZORCH_EVERSION);
  want = fmt("config file %s: version 2 is newer than this zorch supports (1); upgrade zorch",
             path);
  ck_assert_msg_eq(want);
  free(want);
  free(path);
  zorch_client_free(c);
}
END_TEST

START_TEST(unknown_keys_are_kept) {
  zorch_client *c = client_at(NULL, false);
  char *path = fmt("%s/config.json", zorch_client_home(c));
  write_text(path, "{\"version\": 1, \"x_note\": {\"keep\": [1, 2]}}");
  zt_ok(zorch_component_register(c, "orchestrator", "o", "local", NULL, 0));
  json_t *f = config_file(c);
  ck_assert_ptr_nonnull(json_object_get(json_object_get(f, "x_note"), "keep"));
  ck_assert_ptr_nonnull(json_object_get(json_object_get(json_object_get(f, "components"),
                                                        "orchestrator"), "o"));
  json_decref(f);
  free(path);
  zorch_client_free(c);
}
END_TEST

/* Concurrent writers, threads of one client and separate processes: no
 * update is lost. */
typedef struct {
  zorch_client *c;
  int id;
} writer_arg;

static void *writer(void *p) {
  writer_arg *a = p;
  for (int i = 0; i < 10; i++) {
    char name[32];
    snprintf(name, sizeof name, "t%d_%d", a->id, i);
    if (zorch_component_register(a->c, "orchestrator", name, "local", NULL, 0)) return (void *)1;
  }
  return NULL;
}

START_TEST(concurrent_writers) {
  const char *home = zt_tmpdir();
  pid_t kids[2];
  for (int k = 0; k < 2; k++) {
    kids[k] = fork();
    ck_assert_int_ge(kids[k], 0);
    if (kids[k] == 0) {
      zorch_client_options o = ZORCH_CLIENT_OPTIONS_INIT;
      o.home = home;
      zorch_client *c = NULL;
      if (zorch_client_new(&c, &o)) _exit(2);
      writer_arg a = {c, 10 + k};
      _exit(writer(&a) ? 1 : 0);
    }
  }
  zorch_client *c = client_at(home, false);
  pthread_t th[3];
  writer_arg args[3];
  for (int i = 0; i < 3; i++) {
    args[i] = (writer_arg){c, i};
    pthread_create(&th[i], NULL, writer, &args[i]);
  }
  for (int i = 0; i < 3; i++) {
    void *r;
    pthread_join(th[i], &r);
    ck_assert_ptr_null(r);
  }
  for (int k = 0; k < 2; k++) {
    int st;
    waitpid(kids[k], &st, 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  char *s = NULL;
  zt_ok(zorch_component_list(&s, c, "orchestrator"));
  json_t *l = parse(s);
  ck_assert_uint_eq(json_array_size(l), 1 + 5 * 10);
  json_decref(l);
  zorch_client_free(c);
}
END_TEST

/* ---- the schema subset ------------------------------------------------------------------- */

static int sv(const char *schema, const char *doc) {
  return zorch__schema_validate(schema, doc, "doc");
}

START_TEST(schema_subset) {
  const char *s = "{\"type\":\"object\",\"properties\":{"
                  "\"n\":{\"type\":[\"integer\",\"null\"],\"exclusiveMinimum\":0,\"maximum\":10},"
                  "\"x\":{\"type\":\"number\",\"minimum\":0.5,\"exclusiveMaximum\":1.5},"
                  "\"s\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":3,"
                  "\"pattern\":\"^[a-zé]+$\"},"
                  "\"a\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":2,"
                  "\"items\":{\"type\":\"object\",\"required\":[\"k\"]}},"
                  "\"c\":{\"const\":\"fixed\"},"
                  "\"e\":{\"enum\":[1,\"two\",null]},"
                  "\"odd key\":{\"type\":\"boolean\"},"
                  "\"free\":{\"additionalProperties\":{\"type\":\"integer\"}},"
                  "\"none\":{\"type\":\"object\",\"additionalProperties\":false}},"
                  "\"required\":[\"c\"],\"default\":{},\"title\":\"t\",\"description\":\"d\"}";
  zt_ok(sv(s, "{\"c\":\"fixed\"}"));
  zt_ok(sv(s, "{\"c\":\"fixed\",\"n\":null,\"x\":1,\"s\":\"éa\",\"a\":[{\"k\":1}],\"e\":\"two\","
              "\"odd key\":true,\"free\":{\"q\":1},\"none\":{},\"extra\":1}"));
  zt_ok(sv(s, "{\"c\":\"fixed\",\"n\":2.0,\"e\":1.0}")); /* 2.0 is an integer, 1.0 equals 1 */

  struct {
    const char *doc, *msg;
  } bad[] = {
      {"{}", "doc: $.c: required property is missing"},
      {"[]", "doc: $: expected object, got array"},
      {"{\"c\":\"fixed\",\"n\":\"1\"}", "doc: $.n: expected integer or null, got string"},
      {"{\"c\":\"fixed\",\"n\":1.5}", "doc: $.n: expected integer or null, got number"},
      {"{\"c\":\"fixed\",\"n\":0}", "doc: $.n: 0 must be greater than 0"},
      {"{\"c\":\"fixed\",\"n\":11}", "doc: $.n: 11 is greater than the maximum 10"},
      {"{\"c\":\"fixed\",\"x\":0.25}", "doc: $.x: 0.25 is less than the minimum 0.5"},
      {"{\"c\":\"fixed\",\"x\":1.5}", "doc: $.x: 1.5 must be less than 1.5"},
      {"{\"c\":\"fixed\",\"s\":\"é\"}",
       "doc: $.s: string is 1 characters long, at least 2 are required"},
      {"{\"c\":\"fixed\",\"s\":\"abcd\"}",
       "doc: $.s: string is 4 characters long, at most 3 are allowed"},
      {"{\"c\":\"fixed\",\"s\":\"AB\"}", "doc: $.s: \"AB\" does not match the pattern ^[a-zé]+$"},
      {"{\"c\":\"fixed\",\"a\":[]}", "doc: $.a: array has 0 items, at least 1 are required"},
      {"{\"c\":\"fixed\",\"a\":[{},{},{}]}", "doc: $.a: array has 3 items, at most 2 are allowed"},
      {"{\"c\":\"fixed\",\"a\":[{\"k\":1},{}]}", "doc: $.a[1].k: required property is missing"},
      {"{\"c\":\"other\"}", "doc: $.c: \"other\" is not the required value \"fixed\""},
      {"{\"c\":\"fixed\",\"e\":2}", "doc: $.e: 2 is not one of 1, \"two\", null"},
      {"{\"c\":\"fixed\",\"odd key\":1}", "doc: $[\"odd key\"]: expected boolean, got integer"},
      {"{\"c\":\"fixed\",\"free\":{\"q\":\"1\"}}", "doc: $.free.q: expected integer, got string"},
      {"{\"c\":\"fixed\",\"none\":{\"z\":1}}",
       "doc: $.none.z: unknown property (no properties are allowed here)"},
      {"{\"c\":", "doc: the document is not valid JSON: line 1, column 5: unexpected token near "
                  "end of file"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = sv(s, bad[i].doc);
    ck_assert_msg(rc == ZORCH_EINVALID, "%s: rc %d", bad[i].doc, rc);
    ck_assert_str_eq(zorch_error_last()->message, bad[i].msg);
  }
}
END_TEST

START_TEST(schema_itself_checked) {
  struct {
    const char *schema, *msg;
  } bad[] = {
      {"[]", "cfg: invalid schema: $: a schema must be a JSON object, got array"},
      {"{\"type\":\"text\"}", "cfg: invalid schema: $: unknown type 'text'"},
      {"{\"properties\":{\"a\":{\"anyOf\":[]}}}",
       "cfg: invalid schema: $.properties.a: keyword 'anyOf' is not supported (zorch supports "
       "type, properties, required, additionalProperties, items, enum, const, minimum, maximum, "
       "exclusiveMinimum, exclusiveMaximum, minLength, maxLength, pattern, minItems, maxItems)"},
      {"{\"properties\":{\"a\":{\"pattern\":\"(\"}}}",
       "cfg: invalid schema: $.properties.a: 'pattern' ( is not a POSIX extended regular "
       "expression: "},
      {"{\"items\":[{}]}",
       "cfg: invalid schema: $: 'items' as an array (tuple validation) is not supported"},
      {"{\"minLength\":-1}", "cfg: invalid schema: $: 'minLength' must be a non-negative integer"},
      {"{\"required\":[1]}", "cfg: invalid schema: $: 'required' must be an array of property names"},
      {"{\"additionalProperties\":3}",
       "cfg: invalid schema: $.additionalProperties: a schema must be a JSON object or a "
       "boolean, got integer"},
      {"{", "cfg: the schema is not valid JSON: line 1, column 1: string or '}' expected near "
            "end of file"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ck_assert_int_eq(zorch__schema_check(bad[i].schema, "cfg"), ZORCH_EINVALID);
    ck_assert_msg(!strncmp(zorch_error_last()->message, bad[i].msg, strlen(bad[i].msg)),
                  "got \"%s\", wanted \"%s\"", zorch_error_last()->message, bad[i].msg);
    /* validation reports a bad schema even for a document that would pass */
    ck_assert_int_eq(zorch__schema_validate(bad[i].schema, "{}", "cfg"), ZORCH_EINVALID);
  }
  zt_ok(zorch__schema_check("{\"$schema\":\"x\",\"format\":\"uri\",\"examples\":[],"
                            "\"properties\":{\"a\":true,\"b\":false}}",
                            "cfg"));
  zt_assert_rc(zorch__schema_validate("{\"properties\":{\"b\":false}}", "{\"b\":1}", "cfg"),
               ZORCH_EINVALID);
  ck_assert_msg_eq("cfg: $.b: no value is allowed here");
}
END_TEST

Suite *config_suite(void);
Suite *config_suite(void) {
  Suite *s = suite_create("config");
  TCase *t = tcase_create("stacks");
  tcase_add_test(t, default_stack_without_file);
  tcase_add_test(t, register_components_and_stacks);
  tcase_add_test(t, schema_errors_name_the_field);
  tcase_add_test(t, unknown_flavor);
  tcase_add_test(t, flavor_check_config);
  tcase_add_test(t, delete_rules);
  suite_add_tcase(s, t);
  t = tcase_create("file");
  tcase_add_test(t, active_stack_persists);
  tcase_add_test(t, corrupt_config);
  tcase_add_test(t, unknown_keys_are_kept);
  tcase_add_test(t, concurrent_writers);
  suite_add_tcase(s, t);
  t = tcase_create("schema");
  tcase_add_test(t, schema_subset);
  tcase_add_test(t, schema_itself_checked);
  suite_add_tcase(s, t);
  return s;
}

ZORCH_CHECK_MAIN(config)
