/* zorch_image_build() through the registry: it reaches an image-builder
 * flavor (the fixture in tests/plugins/image, which builds nothing and
 * writes what it was asked), picks one by the documented rule, and says
 * clearly when none is loaded.  The real builder (local_docker) on an
 * engine: tests/podman. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "zorch-check.h"

static char *image_dir, *local_dir, *out_path;

static void setup(void) {
  if (!image_dir) {
    const char *i = getenv("ZORCH_TEST_IMAGE_PLUGINS"), *l = getenv("ZORCH_PLUGIN_PATH");
    ck_assert_msg(i && l, "ZORCH_TEST_IMAGE_PLUGINS or ZORCH_PLUGIN_PATH is not set (run through meson test)");
    image_dir = strdup(i);
    local_dir = strdup(l);
    if (asprintf(&out_path, "%s/request.txt", zt_tmpdir()) < 0) abort();
  }
  /* each test starts from the same environment (CK_FORK=no runs them in one process) */
  char *pp = NULL;
  if (asprintf(&pp, "%s:%s", local_dir, image_dir) < 0) abort();
  setenv("ZORCH_PLUGIN_PATH", pp, 1);
  free(pp);
  setenv("ZORCH_PLUGIN_SYSTEM_PATH", "", 1);
  setenv("ZORCH_FIXTURE_IMAGE_OUT", out_path, 1);
  unsetenv("ZORCH_FIXTURE_IMAGE_TWO");
  unsetenv("ZORCH_IMAGE_BUILDER");
  unlink(out_path);
}

/* What the fixture got: its flavor, the config and the request. */
typedef struct {
  char flavor[64];
  json_t *config, *request;
} asked;

static asked read_asked(void) {
  asked a = {{0}, NULL, NULL};
  FILE *f = fopen(out_path, "r");
  ck_assert_msg(f != NULL, "the fixture builder was not called");
  char line[65536];
  ck_assert_ptr_nonnull(fgets(a.flavor, sizeof a.flavor, f));
  a.flavor[strcspn(a.flavor, "\n")] = '\0';
  ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
  a.config = json_loads(line, 0, NULL);
  ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
  a.request = json_loads(line, 0, NULL);
  fclose(f);
  ck_assert_msg(a.config && a.request, "the fixture got no JSON");
  return a;
}

static void asked_free(asked *a) {
  json_decref(a->config);
  json_decref(a->request);
}

static const char *rq_str(const asked *a, const char *key) {
  return json_string_value(json_object_get(a->request, key));
}

START_TEST(build_reaches_the_builder) {
  const char *extra[] = {"seq", "/etc/hostname", NULL};
  zorch_image_options o = ZORCH_IMAGE_OPTIONS_INIT;
  o.program = "sh"; /* a bare name: resolved through PATH by the host */
  o.extra = extra;
  char *id = NULL;
  zt_ok(zorch_image_build("tools:1", &o, &id));
  ck_assert_str_eq(id, "sha256:fixture-tools:1");
  zorch_free(id);
  asked a = read_asked();
  ck_assert_str_eq(a.flavor, "fixture_image"); /* the only builder loaded */
  ck_assert_str_eq(rq_str(&a, "name"), "tools:1");
  ck_assert_msg(rq_str(&a, "program")[0] == '/' && strstr(rq_str(&a, "program"), "/sh"), "%s",
                rq_str(&a, "program"));
  json_t *add = json_object_get(a.request, "add");
  ck_assert_uint_eq(json_array_size(add), 2);
  ck_assert_str_eq(json_string_value(json_array_get(add, 0)), "seq"); /* as given */
  ck_assert_str_eq(json_string_value(json_array_get(add, 1)), "/etc/hostname");
  ck_assert(json_is_false(json_object_get(a.request, "no_zorch")));
  ck_assert_str_eq(rq_str(&a, "zorch_command"), getenv("ZORCH_COMMAND"));
  json_t *dirs = json_object_get(a.request, "plugin_dirs");
  ck_assert_uint_ge(json_array_size(dirs), 2); /* ZORCH_PLUGIN_PATH's, then the install dir's */
  ck_assert_str_eq(json_string_value(json_array_get(dirs, 0)), local_dir);
  ck_assert_str_eq(json_string_value(json_array_get(dirs, 1)), image_dir);
  ck_assert_uint_eq(json_object_size(a.config), 0); /* no engine named: the builder's default */
  asked_free(&a);

  /* --no-zorch, an engine, no id wanted */
  o.no_zorch = 1;
  o.docker_host = "unix:///run/x.sock";
  zt_ok(zorch_image_build("tools:2", &o, NULL));
  a = read_asked();
  ck_assert(json_is_true(json_object_get(a.request, "no_zorch")));
  ck_assert_ptr_null(json_object_get(a.request, "zorch_command"));
  ck_assert_uint_eq(json_array_size(json_object_get(a.request, "plugin_dirs")), 0);
  ck_assert_str_eq(json_string_value(json_object_get(a.config, "docker_host")), "unix:///run/x.sock");
  asked_free(&a);

  /* a version-1 options struct (no builder field) still works */
  struct {
    unsigned int version;
    const char *program;
    const char *const *extra;
    const char *docker_host;
    int no_zorch;
  } v1 = {1, "/bin/sh", NULL, NULL, 1};
  zt_ok(zorch_image_build("tools:3", (const zorch_image_options *)&v1, &id));
  ck_assert_str_eq(id, "sha256:fixture-tools:3");
  zorch_free(id);
}
END_TEST

START_TEST(the_builder_is_picked_by_rule) {
  setenv("ZORCH_FIXTURE_IMAGE_TWO", "1", 1);
  zorch_image_options o = ZORCH_IMAGE_OPTIONS_INIT;
  o.program = "/bin/sh";
  /* two loaded, none named */
  zt_assert_rc(zorch_image_build("x", &o, NULL), ZORCH_EINVALID);
  zt_assert_msg_has("2 image builder flavors are loaded (fixture_image (plugin fixture_image), "
                    "fixture_image_two (plugin fixture_image)): name one with ZORCH_IMAGE_BUILDER");
  /* the environment names one */
  setenv("ZORCH_IMAGE_BUILDER", "fixture_image_two", 1);
  zt_ok(zorch_image_build("x", &o, NULL));
  asked a = read_asked();
  ck_assert_str_eq(a.flavor, "fixture_image_two");
  asked_free(&a);
  /* the option wins over the environment */
  o.builder = "fixture_image";
  zt_ok(zorch_image_build("x", &o, NULL));
  a = read_asked();
  ck_assert_str_eq(a.flavor, "fixture_image");
  asked_free(&a);
  /* a name that is not loaded */
  o.builder = "kaniko";
  zt_assert_rc(zorch_image_build("x", &o, NULL), ZORCH_ENOTFOUND);
  zt_assert_msg_has("no image builder flavor 'kaniko' (from zorch_image_options.builder) is loaded; "
                    "loaded: fixture_image (plugin fixture_image), fixture_image_two");
  o.builder = NULL;
  setenv("ZORCH_IMAGE_BUILDER", "kaniko", 1);
  zt_assert_rc(zorch_image_build("x", &o, NULL), ZORCH_ENOTFOUND);
  zt_assert_msg_has("no image builder flavor 'kaniko' (from ZORCH_IMAGE_BUILDER) is loaded");
  /* an orchestrator's name is not an image builder's */
  setenv("ZORCH_IMAGE_BUILDER", "local", 1);
  zt_assert_rc(zorch_image_build("x", &o, NULL), ZORCH_ENOTFOUND);
}
END_TEST

START_TEST(none_loaded_says_which_plugin_provides_one) {
  setenv("ZORCH_PLUGIN_PATH", local_dir, 1); /* the local orchestrator only */
  zorch_image_options o = ZORCH_IMAGE_OPTIONS_INIT;
  o.program = "/bin/sh";
  char *id = (char *)"untouched";
  zt_assert_rc(zorch_image_build("x", &o, &id), ZORCH_ENOTFOUND);
  ck_assert_ptr_null(id);
  zt_assert_msg_has("no image builder flavor is loaded: the local_docker plugin "
                    "(zorch-flavor-local_docker.so, installed in ");
  zt_assert_msg_has("put the directory that holds it in ZORCH_PLUGIN_PATH");
  ck_assert_int_eq(access(out_path, F_OK), -1);
}
END_TEST

START_TEST(errors_of_the_builder_and_its_config) {
  zorch_image_options o = ZORCH_IMAGE_OPTIONS_INIT;
  o.program = "/bin/sh";
  /* the builder's own error, with its plugin named */
  zt_assert_rc(zorch_image_build("failing:1", &o, NULL), ZORCH_EIO);
  zt_assert_msg_has("plugin fixture_image (");
  zt_assert_msg_has("): the fixture engine refuses failing:1");
  unlink(out_path);
  /* the config is checked against the flavor's schema, then by the flavor */
  o.docker_host = "ssh://host";
  zt_assert_rc(zorch_image_build("x", &o, NULL), ZORCH_EINVALID);
  zt_assert_msg_has("image builder 'fixture_image' config: $.docker_host");
  ck_assert_int_eq(access(out_path, F_OK), -1);
  o.docker_host = "unix:///refuse";
  zt_assert_rc(zorch_image_build("x", &o, NULL), ZORCH_EINVALID);
  zt_assert_msg_has("fixture_image refuses this config");
  /* the host's own checks come first */
  o.docker_host = NULL;
  zt_assert_rc(zorch_image_build("", &o, NULL), ZORCH_EINVALID);
  o.program = "no-such-program-zorch";
  zt_assert_rc(zorch_image_build("x", &o, NULL), ZORCH_ENOTFOUND);
  zt_assert_msg_has("cannot build an image of 'no-such-program-zorch': no such program in PATH");
  zorch_image_options bad = ZORCH_IMAGE_OPTIONS_INIT;
  bad.version = 3;
  zt_assert_rc(zorch_image_build("x", &bad, NULL), ZORCH_EVERSION);
}
END_TEST

/* zorch_image_build needs no zorch home and makes none. */
START_TEST(no_home_is_created) {
  char *home = NULL;
  if (asprintf(&home, "%s/not-made", zt_tmpdir()) < 0) abort();
  setenv("ZORCH_HOME", home, 1);
  zorch_image_options o = ZORCH_IMAGE_OPTIONS_INIT;
  o.program = "/bin/sh";
  zt_ok(zorch_image_build("x", &o, NULL));
  unsetenv("ZORCH_HOME");
  struct stat st;
  ck_assert_int_eq(stat(home, &st), -1);
  free(home);
}
END_TEST

Suite *image_suite(void);
Suite *image_suite(void) {
  Suite *s = suite_create("image");
  TCase *t = tcase_create("routing");
  tcase_add_checked_fixture(t, setup, NULL);
  tcase_add_test(t, build_reaches_the_builder);
  tcase_add_test(t, the_builder_is_picked_by_rule);
  tcase_add_test(t, none_loaded_says_which_plugin_provides_one);
  tcase_add_test(t, errors_of_the_builder_and_its_config);
  tcase_add_test(t, no_home_is_created);
  suite_add_tcase(s, t);
  return s;
}

ZORCH_CHECK_MAIN(image)
