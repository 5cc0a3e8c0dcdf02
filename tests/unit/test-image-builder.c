/* The local_docker plugin's image builder (plugins/local_docker/image_builder.c),
 * compiled into this test: what goes into an image, from a request's `add`
 * list and from a deployment (the default step image), without an engine.
 * The import itself is tested on a real engine (tests/podman). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "image_builder.h"
#include "zorch-check.h"

/* ---- a host table of our own: errors and logs land here ------------------------------------ */

static char last_error[4096];
static int last_code;

static void h_error_set(const zorch_host *h, int code, const char *message) {
  (void)h;
  last_code = code;
  snprintf(last_error, sizeof last_error, "%s", message ? message : "");
}
static void h_log(const zorch_host *h, int level, const char *message) { (void)h, (void)level, (void)message; }
static void *h_alloc(size_t n) { return malloc(n ? n : 1); }
static void h_free(void *p) { free(p); }

static const zorch_host host = {.version = 1, .size = sizeof(zorch_host), .log = h_log,
                                .error_set = h_error_set, .alloc = h_alloc, .free = h_free};

static char *write_text(const char *dir, const char *name, const char *text) {
  char *p = NULL;
  if (asprintf(&p, "%s/%s", dir, name) < 0) abort();
  FILE *f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
  return p;
}

static bool has(const ldib_list *l, const char *x) {
  for (size_t i = 0; i < l->n; i++)
    if (!strcmp(l->v[i], x)) return true;
  return false;
}

/* ---- tests ------------------------------------------------------------------------------ */

/* The list the plugin's default image used had room for 255 entries and
 * dropped the rest without a word. */
START_TEST(lists_hold_every_entry) {
  ldib_list l = {0};
  for (int i = 0; i < 1000; i++) {
    char *x = NULL;
    if (asprintf(&x, "/f/%04d", i) < 0) abort();
    ck_assert_int_eq(ldib_list_add(&l, x), 0);
  }
  ck_assert_int_eq(ldib_list_add(&l, strdup("/f/0999")), 0); /* a duplicate: freed, not added */
  ck_assert_int_eq(ldib_list_add(&l, NULL), 0);
  ck_assert_uint_eq(l.n, 1000);
  ck_assert_str_eq(l.v[0], "/f/0000");
  ck_assert_str_eq(l.v[999], "/f/0999");
  ck_assert_ptr_null(l.v[1000]);
  ldib_content c = {.files = l};
  ldib_content_free(&c);
}
END_TEST

START_TEST(add_sorts_what_it_is_given) {
  const char *dir = zt_tmpdir();
  char *data = write_text(dir, "data.txt", "x\n");
  char *tool = write_text(dir, "tool", "#!/bin/sh\n");
  chmod(tool, 0755);
  ldib_content c = {0};
  ck_assert_int_eq(ldib_content_add(&c, data), 1);
  ck_assert_int_eq(ldib_content_add(&c, tool), 1);
  ck_assert_int_eq(ldib_content_add(&c, dir), 1);
  ck_assert_int_eq(ldib_content_add(&c, "sh"), 1); /* a bare name: PATH */
  ck_assert_int_eq(ldib_content_add(&c, "no-such-tool-zorch"), 0);
  ck_assert_int_eq(ldib_content_add(&c, "/no/such/file"), 0);
  ck_assert_int_eq(ldib_content_add(&c, "/dev/null"), 0); /* neither a file nor a directory */
  ck_assert_int_eq(ldib_content_add(&c, NULL), 0);
  ck_assert_uint_eq(c.files.n, 1);
  ck_assert_str_eq(c.files.v[0], data);
  ck_assert(has(&c.programs, tool));
  ck_assert_uint_eq(c.trees.n, 1);
  ck_assert_str_eq(c.trees.v[0], dir);
  ck_assert_uint_eq(c.programs.n, 2);
  ck_assert_msg(c.programs.v[1][0] == '/' && strstr(c.programs.v[1], "/sh"), "%s", c.programs.v[1]);
  /* a relative path with a '/' is resolved */
  char cwd[4096];
  ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
  ck_assert_int_eq(chdir(dir), 0);
  ldib_content r = {0};
  ck_assert_int_eq(ldib_content_add(&r, "./data.txt"), 1);
  ck_assert_int_eq(chdir(cwd), 0);
  ck_assert_str_eq(r.files.v[0], data);
  ldib_content_free(&r);
  ldib_content_free(&c);
  free(data);
  free(tool);
}
END_TEST

/* A deployment of 300 data files in image_add: all go in, and a change to
 * the last one changes the tag (before, entries past 255 were dropped, so
 * the stale image was reused). */
START_TEST(default_image_takes_every_image_add_entry) {
  const char *dir = zt_tmpdir();
  json_t *adds = json_array();
  char *last = NULL;
  for (int i = 0; i < 300; i++) {
    char name[32];
    snprintf(name, sizeof name, "f%03d.txt", i);
    char *p = write_text(dir, name, "data\n");
    json_array_append_new(adds, json_string(p));
    free(last);
    last = p;
  }
  json_t *config = json_pack("{s:o}", "image_add", adds);
  json_t *doc = json_pack("{s:{s:s,s:s},s:{s:[s],s:[s]},s:[{s:s,s:s},{s:s,s:s,s:[s,s]}]}", "program", "path",
                          "/bin/sh", "version", "v1", "entrypoint", "function", "/bin/sh", "command", "z",
                          "steps", "name", "a", "kind", "function", "name", "b", "kind", "command", "command",
                          "sh", "-c");
  char *text = json_dumps(doc, 0);
  json_decref(doc);
  zdep_options o = {.flavor = "local_docker", .base = config};
  zdep *dep;
  zt_ok(zdep_load(&dep, &host, text, &o));
  free(text);
  ldib_content c = {0};
  unsigned long long h1 = 0, h2 = 0;
  zt_ok(ldib_default_content(&c, &h1, &host, dep, config, "/bin/sh", "/plugins"));
  ck_assert_uint_eq(c.files.n, 300);
  ck_assert(has(&c.files, last));
  ck_assert(has(&c.programs, "/bin/sh")); /* the program and the zorch command, once */
  ck_assert_str_eq(c.plugin_dirs.v[0], "/plugins");
  ldib_content_free(&c);
  /* the 300th file changes: a new tag */
  FILE *f = fopen(last, "a");
  fputs("more\n", f);
  fclose(f);
  zt_ok(ldib_default_content(&c, &h2, &host, dep, config, "/bin/sh", NULL));
  ck_assert_msg(h1 != h2, "the tag ignores the 300th image_add file");
  ldib_content_free(&c);
  /* the same files: the same tag */
  unsigned long long h3 = 0;
  zt_ok(ldib_default_content(&c, &h3, &host, dep, config, "/bin/sh", NULL));
  ck_assert(h2 == h3);
  ldib_content_free(&c);
  /* a missing entry is named */
  json_array_append_new(adds, json_string("no-such-tool-zorch"));
  ck_assert_int_eq(ldib_default_content(&c, &h3, &host, dep, config, NULL, NULL), ZORCH_ENOTFOUND);
  ck_assert_str_eq(last_error, "image_add: 'no-such-tool-zorch' is not a file or directory (nor a "
                               "program in PATH)");
  ldib_content_free(&c);
  json_decref(config);
  zdep_free(dep);
  free(last);
}
END_TEST

/* The flavor's build op refuses a request it cannot read, and names a
 * missing file before it looks for an engine. */
START_TEST(build_request_errors) {
  void *hp = (void *)&host; /* the payload: the host table */
  const zorch_image_builder_ops *ops = ldib_flavor.ops;
  ck_assert_str_eq(ldib_flavor.type, ZORCH_COMPONENT_IMAGE_BUILDER);
  char *id = (char *)"x";
  ck_assert_int_eq(ops->build(&id, hp, "{}", "{\"program\":\"/bin/sh\"}"), ZORCH_EINVALID);
  ck_assert_ptr_null(id);
  ck_assert_int_eq(ops->build(&id, hp, "{}", "{\"name\":\"x\",\"program\":\"sh\"}"), ZORCH_EINVALID);
  ck_assert_int_eq(ops->build(&id, hp, "{}", "not json"), ZORCH_EINVALID);
  ck_assert_int_eq(ops->build(&id, hp, "{\"docker_host\":\"unix:///nonexistent/e.sock\"}",
                              "{\"name\":\"x\",\"program\":\"/bin/sh\",\"add\":[\"no-such-tool-zorch\"]}"),
                   ZORCH_ENOTFOUND);
  ck_assert_str_eq(last_error, "cannot add 'no-such-tool-zorch' to the image: no such file or "
                               "directory (and not found in PATH)");
  ck_assert_int_eq(ops->build(&id, hp, "{\"docker_host\":\"unix:///nonexistent/e.sock\"}",
                              "{\"name\":\"x\",\"program\":\"/bin/sh\"}"),
                   ZORCH_EIO);
  ck_assert_msg(strstr(last_error, "no socket at /nonexistent/e.sock"), "%s", last_error);
  ck_assert_int_eq(ops->check_config(hp, "{\"docker_host\":\"ssh://x\"}"), ZORCH_EINVALID);
  ck_assert_int_eq(ops->check_config(hp, "{\"docker_host\":\"tcp://x:2375\"}"), ZORCH_OK);
}
END_TEST

Suite *image_builder_suite(void);
Suite *image_builder_suite(void) {
  Suite *s = suite_create("image_builder");
  TCase *t = tcase_create("content");
  tcase_add_test(t, lists_hold_every_entry);
  tcase_add_test(t, add_sorts_what_it_is_given);
  tcase_add_test(t, default_image_takes_every_image_add_entry);
  tcase_add_test(t, build_request_errors);
  suite_add_tcase(s, t);
  return s;
}

ZORCH_CHECK_MAIN(image_builder)
