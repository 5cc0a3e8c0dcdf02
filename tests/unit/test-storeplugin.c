/* The artifact store behind its backend interface, with an artifact-store
 * plugin: the test flavor `dirstore` (tests/plugins/dirstore), an object
 * store with flat keys kept in a directory and written against the plugin
 * ABI only.
 *
 *  - contract: the local backend and the plugin satisfy the same contract
 *    through zorch__store_* (atomic documents, ENOTFOUND, listing by prefix
 *    and delimiter, artifacts content-addressed and put with IF_ABSENT);
 *  - the plugin store: artifacts staged and uploaded (a directory as its
 *    files, then its manifest), fetched into a fresh staging area and
 *    checked against their name, credentials by reference, the cache
 *    index and step records as one object each;
 *  - pipelines run end to end on the plugin store (in this process and with
 *    the steps started as processes by the spawn_remote flavor), and a step
 *    entrypoint started with nothing but the store's URI works against it.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client_int.h"
#include "store.h"
#include "store_layout.h"
#include "zorch-check.h"

/* ---- helpers ---------------------------------------------------------------------- */

static char *fmt(const char *f, ...) ZORCH_PRINTF(1, 2);
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *s = NULL;
  ck_assert_int_ge(vasprintf(&s, f, ap), 0);
  va_end(ap);
  return s;
}

static char *slurp(const char *path) {
  char *d = NULL;
  size_t n = 0;
  return zorch__read_file(path, &d, &n) == ZORCH_OK ? d : strdup("");
}

static int count_of(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* A client that loads the dirstore and spawn_remote plugins and the local
 * orchestrator, with its home in a fresh directory. */
static zorch_client *store_client(const char *home) {
  zorch_client_options o = ZORCH_CLIENT_OPTIONS_INIT;
  o.home = home ? home : zt_tmpdir();
  char *path = fmt("%s:%s", getenv("ZORCH_TEST_STORE_PLUGINS"), getenv("ZORCH_TEST_REMOTE_PLUGINS"));
  o.plugin_path = path;
  zorch_client *c = NULL;
  zt_ok(zorch_client_new(&c, &o));
  free(path);
  return c;
}

/* A dirstore directory with a key file; its URI in *uri. */
static char *keyed_store(char **uri) {
  const char *d = zt_tmpdir();
  char *key = fmt("%s/key", d);
  FILE *f = fopen(key, "w");
  ck_assert_ptr_nonnull(f);
  fputs("sesame", f);
  fclose(f);
  char *root = fmt("%s/objects", d);
  *uri = fmt("dirstore://%s", root);
  char *config = fmt("{\"path\":\"%s\",\"key_file\":\"%s\"}", root, key);
  free(root);
  free(key);
  return config;
}

/* The file of an object of a dirstore at `root`. */
static char *object_file(const char *root, const char *key) {
  zorch__buf b = ZORCH__BUF_INIT;
  zorch__buf_printf(&b, "%s/o/", root);
  for (const char *c = key; *c; c++) zorch__buf_puts(&b, *c == '/' ? "%2F" : (char[]){*c, 0});
  return zorch__buf_detach(&b);
}

/* ---- the contract both backends keep --------------------------------------------- */

static int collect(void *payload, const char *key, uint64_t size) {
  zorch__buf *b = payload;
  zorch__buf_printf(b, "%s:%llu\n", key, (unsigned long long)size);
  return ZORCH_OK;
}

static char *listing(zorch__store *st, const char *prefix, const char *delim) {
  zorch__buf b = ZORCH__BUF_INIT;
  zt_ok(zorch__store_list(st, prefix, delim, collect, &b));
  zorch__buf_puts(&b, "");
  /* in order: backends list in no particular order */
  char *lines[64];
  int n = 0;
  for (char *s = NULL, *l = strtok_r(b.data, "\n", &s); l && n < 64; l = strtok_r(NULL, "\n", &s))
    lines[n++] = l;
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
      char *t = lines[j];
      lines[j] = lines[j - 1];
      lines[j - 1] = t;
    }
  zorch__buf out = ZORCH__BUF_INIT;
  zorch__buf_puts(&out, "");
  for (int i = 0; i < n; i++) zorch__buf_printf(&out, "%s\n", lines[i]);
  zorch__buf_free(&b);
  return zorch__buf_detach(&out);
}

static void contract(zorch__store *st) {
  /* documents: atomic, whole, replaced; ENOTFOUND when missing */
  char *text = NULL;
  size_t len = 0;
  zt_assert_rc(zorch__store_read_doc(st, "runs/r1/run.json", &text, &len), ZORCH_ENOTFOUND);
  zt_ok(zorch__store_write_doc(st, "runs/r1/run.json", "{\"a\":1}", 7, true));
  zt_ok(zorch__store_write_doc(st, "runs/r1/run.json", "{\"a\":2}", 7, true));
  zt_ok(zorch__store_read_doc(st, "runs/r1/run.json", &text, &len));
  ck_assert_str_eq(text, "{\"a\":2}");
  ck_assert_uint_eq(len, 7);
  free(text);
  zt_ok(zorch__store_write_doc(st, "runs/r1/steps/a.json", "{}", 2, false));
  zt_ok(zorch__store_write_doc(st, "runs/r1/steps/b.json", "{}", 2, false));
  zt_ok(zorch__store_write_doc(st, "runs/r2/run.json", "{}", 2, true));
  ck_assert_int_eq(zorch__store_exists(st, "runs/r2/run.json"), 1);
  ck_assert_int_eq(zorch__store_exists(st, "runs/r3/run.json"), 0);
  /* listing: everything under a prefix, or one level with the delimiter */
  char *l = listing(st, "runs/r1/", NULL);
  ck_assert_str_eq(l, "runs/r1/run.json:7\nruns/r1/steps/a.json:2\nruns/r1/steps/b.json:2\n");
  free(l);
  l = listing(st, "runs/", "/");
  ck_assert_str_eq(l, "runs/r1/:0\nruns/r2/:0\n");
  free(l);
  l = listing(st, "runs/r1/", "/");
  ck_assert_str_eq(l, "runs/r1/run.json:7\nruns/r1/steps/:0\n");
  free(l);
  l = listing(st, "nothing/", "/");
  ck_assert_str_eq(l, "");
  free(l);
  zt_ok(zorch__store_remove(st, "runs/r1/steps/b.json"));
  zt_ok(zorch__store_remove(st, "runs/r1/steps/b.json")); /* gone: still fine */
  ck_assert_int_eq(zorch__store_exists(st, "runs/r1/steps/b.json"), 0);
  /* artifacts: content-addressed, stored once, fetched by digest */
  char d1[ZORCH__DIGEST_HEX], d2[ZORCH__DIGEST_HEX];
  zt_ok(zorch__store_put_bytes(st, "hello", 5, d1));
  zt_ok(zorch__store_put_bytes(st, "hello", 5, d2));
  ck_assert_str_eq(d1, d2);
  ck_assert(zorch__store_has(st, d1));
  char key[ZORCH__LAYOUT_ARTIFACT_MAX];
  zorch__layout_artifact(key, d1);
  zt_ok(zorch__store_read_doc(st, key, &text, &len));
  ck_assert_str_eq(text, "hello");
  free(text);
  char *p = NULL;
  zt_ok(zorch__store_fetch(st, d1, false, &p));
  char *got = slurp(p);
  ck_assert_str_eq(got, "hello");
  free(got);
  free(p);
  char zero[65];
  memset(zero, '0', 64);
  zero[64] = '\0';
  ck_assert(!zorch__store_has(st, zero));
  if (zorch__store_is_local(st)) { /* a path, without a look */
    zt_ok(zorch__store_fetch(st, zero, false, &p));
    ck_assert_int_ne(access(p, F_OK), 0);
    free(p);
  } else {
    zt_assert_rc(zorch__store_fetch(st, zero, false, &p), ZORCH_ENOTFOUND);
  }
}

START_TEST(local_backend_keeps_the_contract) {
  zorch__store *st = NULL;
  char *uri = fmt("file://%s/store", zt_tmpdir());
  zt_ok(zorch__store_open_uri(&st, NULL, uri));
  ck_assert(zorch__store_is_local(st));
  ck_assert_str_eq(zorch__store_uri(st), uri);
  ck_assert_ptr_null(zorch__store_step_env(st)[0]);
  contract(st);
  zorch__store_close(st);
  free(uri);
}
END_TEST

START_TEST(plugin_backend_keeps_the_contract) {
  zorch_client *c = store_client(NULL);
  char *root = fmt("%s/objects", zt_tmpdir());
  char *uri = fmt("dirstore://%s", root);
  zorch__store *st = NULL;
  zt_ok(zorch__store_open_uri(&st, c, uri));
  ck_assert(!zorch__store_is_local(st));
  ck_assert_ptr_null(zorch__store_root(st));
  ck_assert_str_eq(zorch__store_uri(st), uri);
  contract(st);
  /* no directory of it holds an object: keys are flat */
  char *o = fmt("%s/o/runs%%2Fr1%%2Frun.json", root);
  ck_assert_int_eq(access(o, F_OK), 0);
  free(o);
  zorch__store_close(st);
  free(uri);
  free(root);
  zorch_client_free(c);
}
END_TEST

START_TEST(unknown_schemes_and_plugins_are_named) {
  zorch_client *c = store_client(NULL);
  zorch__store *st = NULL;
  zt_assert_rc(zorch__store_open_uri(&st, c, "s3://bucket/prefix"), ZORCH_ENOTFOUND);
  zt_assert_msg_has("no artifact-store flavor 's3' is loaded");
  zt_assert_rc(zorch__store_open_uri(&st, NULL, "dirstore:///tmp/x"), ZORCH_ENOTFOUND);
  zt_assert_rc(zorch__store_open_uri(&st, c, "relative/dir"), ZORCH_EINVALID);
  zt_assert_rc(zorch__store_open_uri(&st, c, "file://relative"), ZORCH_EINVALID);
  zorch_client_free(c);
}
END_TEST

/* ---- the plugin store ------------------------------------------------------------- */

/* Artifacts are staged, uploaded with IF_ABSENT and never rewritten; a
 * directory goes up as its files and then its manifest, and comes back
 * into another host's staging area whole. */
START_TEST(artifacts_go_up_once_and_come_back) {
  const char *d = zt_tmpdir();
  char *root = fmt("%s/objects", d), *uri = fmt("dirstore://%s", root), *log = fmt("%s/puts.log", d);
  setenv("DIRSTORE_LOG", log, 1);
  zorch_client *c = store_client(NULL);
  zorch__store *st = NULL;
  zt_ok(zorch__store_open_uri(&st, c, uri));
  /* a tree with a subdirectory, an executable, an empty directory and a link */
  char *tree = fmt("%s/tree", d), *sub = fmt("%s/tree/sub", d), *empty = fmt("%s/tree/empty", d);
  ck_assert_int_eq(mkdir(tree, 0755), 0);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  ck_assert_int_eq(mkdir(empty, 0755), 0);
  char *a = fmt("%s/a.txt", tree), *x = fmt("%s/run.sh", sub), *ln = fmt("%s/link", tree);
  FILE *f = fopen(a, "w");
  fputs("alpha", f);
  fclose(f);
  f = fopen(x, "w");
  fputs("#!/bin/sh\necho hi\n", f);
  fclose(f);
  chmod(x, 0755);
  ck_assert_int_eq(symlink("a.txt", ln), 0);
  char td[ZORCH__DIGEST_HEX];
  uint64_t size = 0;
  bool is_dir = false;
  zt_ok(zorch__store_put_path(st, tree, false, td, &size, &is_dir));
  ck_assert(is_dir);
  ck_assert_uint_eq(size, 5 + 18);
  ck_assert(zorch__store_has(st, td));
  /* every artifact put carries IF_ABSENT, and the manifest comes last */
  char *puts_log = slurp(log);
  ck_assert_int_eq(count_of(puts_log, "put "), 3);
  ck_assert_int_eq(count_of(puts_log, "put 1 artifacts/"), 3);
  char *last = strrchr(puts_log, '\n');
  *last = '\0';
  last = strrchr(puts_log, '\n');
  ck_assert_msg(last && strstr(last, td), "the manifest was not put last: %s", puts_log);
  free(puts_log);
  /* the same content again: the objects already there are not replaced */
  char key[ZORCH__LAYOUT_ARTIFACT_MAX];
  zorch__layout_artifact(key, td);
  char *mf = object_file(root, key);
  struct stat before, after;
  ck_assert_int_eq(stat(mf, &before), 0);
  char td2[ZORCH__DIGEST_HEX];
  zt_ok(zorch__store_put_path(st, tree, false, td2, NULL, NULL));
  ck_assert_str_eq(td, td2);
  ck_assert_int_eq(stat(mf, &after), 0);
  ck_assert_msg(before.st_ino == after.st_ino, "an artifact object was replaced");
  zorch__store_close(st);
  zorch_client_free(c);

  /* another host (another home, so an empty staging area) fetches it */
  zorch_client *c2 = store_client(NULL);
  zt_ok(zorch__store_open_uri(&st, c2, uri));
  char *p = NULL;
  zt_ok(zorch__store_fetch(st, td, true, &p));
  char *pa = fmt("%s/a.txt", p), *px = fmt("%s/sub/run.sh", p), *pl = fmt("%s/link", p),
       *pe = fmt("%s/empty", p);
  char *got = slurp(pa);
  ck_assert_str_eq(got, "alpha");
  free(got);
  struct stat sb;
  ck_assert_int_eq(stat(px, &sb), 0);
  ck_assert_msg(sb.st_mode & 0100, "the executable lost its bit");
  char target[64] = "";
  ck_assert_int_gt(readlink(pl, target, sizeof target - 1), 0);
  ck_assert_str_eq(target, "a.txt");
  ck_assert_int_eq(stat(pe, &sb), 0);
  ck_assert(S_ISDIR(sb.st_mode));
  ck_assert(strstr(p, zorch_client_home(c2)) == p); /* in its own staging area */
  free(pa), free(px), free(pl), free(pe), free(p);
  zorch__store_close(st);
  zorch_client_free(c2);
  unsetenv("DIRSTORE_LOG");
  free(tree), free(sub), free(empty), free(a), free(x), free(ln), free(mf);
  free(root), free(uri), free(log);
}
END_TEST

/* What comes from the store must hash to its name. */
START_TEST(a_corrupt_artifact_is_refused) {
  char *root = fmt("%s/objects", zt_tmpdir()), *uri = fmt("dirstore://%s", root);
  zorch_client *c = store_client(NULL);
  zorch__store *st = NULL;
  zt_ok(zorch__store_open_uri(&st, c, uri));
  char dg[ZORCH__DIGEST_HEX];
  zt_ok(zorch__store_put_bytes(st, "the real bytes", 14, dg));
  zorch__store_close(st);
  zorch_client_free(c);
  char key[ZORCH__LAYOUT_ARTIFACT_MAX];
  zorch__layout_artifact(key, dg);
  char *of = object_file(root, key);
  chmod(of, 0644);
  FILE *f = fopen(of, "w");
  fputs("tampered", f);
  fclose(f);
  c = store_client(NULL); /* empty staging: must download */
  zt_ok(zorch__store_open_uri(&st, c, uri));
  char *p = NULL;
  zt_assert_rc(zorch__store_fetch(st, dg, false, &p), ZORCH_EIO);
  zt_assert_msg_has("is corrupt");
  ck_assert_ptr_null(p);
  zorch__store_close(st);
  zorch_client_free(c);
  free(of), free(root), free(uri);
}
END_TEST

/* A reader never sees part of an object while a writer replaces it. */
typedef struct {
  zorch__store *st;
  volatile bool stop;
  int torn;
  int seen;
} reader_arg;

static void *reader(void *arg) {
  reader_arg *ra = arg;
  while (!ra->stop) {
    char *text = NULL;
    size_t len = 0;
    if (zorch__store_read_doc(ra->st, "runs/big/run.json", &text, &len) == ZORCH_OK) {
      ra->seen++;
      bool whole = len == 4u << 20 && (text[0] == 'a' || text[0] == 'b') && text[len - 1] == text[0];
      if (!whole) ra->torn++;
    }
    free(text);
  }
  return NULL;
}

START_TEST(puts_are_atomic_for_readers) {
  zorch_client *c = store_client(NULL);
  char *uri = fmt("dirstore://%s/objects", zt_tmpdir());
  zorch__store *st = NULL;
  zt_ok(zorch__store_open_uri(&st, c, uri));
  size_t n = 4u << 20;
  char *big = malloc(n);
  reader_arg ra = {st, false, 0, 0};
  pthread_t th;
  memset(big, 'a', n);
  zt_ok(zorch__store_write_doc(st, "runs/big/run.json", big, n, true));
  pthread_create(&th, NULL, reader, &ra);
  for (int i = 0; i < 20; i++) {
    memset(big, i % 2 ? 'a' : 'b', n);
    zt_ok(zorch__store_write_doc(st, "runs/big/run.json", big, n, true));
  }
  ra.stop = true;
  pthread_join(th, NULL);
  ck_assert_int_gt(ra.seen, 0);
  ck_assert_msg(ra.torn == 0, "%d of %d reads saw part of an object", ra.torn, ra.seen);
  free(big);
  zorch__store_close(st);
  zorch_client_free(c);
  free(uri);
}
END_TEST

/* A keyed store: a step elsewhere gets the key file's path (never the key)
 * in its environment, and cannot open the store without it. */
START_TEST(credentials_travel_by_reference) {
  char *uri = NULL;
  char *config = keyed_store(&uri);
  zorch_client *c = store_client(NULL);
  zorch__store *st = NULL;
  zt_ok(zorch__store_open_component(&st, c, "keyed", "dirstore", config));
  ck_assert_str_eq(zorch__store_uri(st), uri);
  const char *const *env = zorch__store_step_env(st);
  ck_assert_ptr_nonnull(env[0]);
  ck_assert_msg(!strncmp(env[0], "DIRSTORE_KEY_FILE=/", 19), "env: %s", env[0]);
  ck_assert_ptr_null(env[1]);
  ck_assert_msg(!strstr(zorch__store_step_env_json(st), "sesame"), "the secret itself travels");
  zorch__store_close(st);
  unsetenv("DIRSTORE_KEY_FILE");
  zt_assert_rc(zorch__store_open_uri(&st, c, uri), ZORCH_EIO);
  zt_assert_msg_has("needs its key");
  zt_assert_msg_has("plugin dirstore");
  json_t *cfg = json_loads(config, 0, NULL);
  setenv("DIRSTORE_KEY_FILE", json_string_value(json_object_get(cfg, "key_file")), 1);
  json_decref(cfg);
  zt_ok(zorch__store_open_uri(&st, c, uri));
  zorch__store_close(st);
  unsetenv("DIRSTORE_KEY_FILE");
  zorch_client_free(c);
  free(config);
  free(uri);
}
END_TEST

/* The cache index and step records are one object each on such a store. */
START_TEST(cache_entries_and_records_are_objects) {
  char *root = fmt("%s/objects", zt_tmpdir()), *uri = fmt("dirstore://%s", root);
  zorch_client *c = store_client(NULL);
  zorch__store *st = NULL;
  zt_ok(zorch__store_open_uri(&st, c, uri));
  char k1[65], k2[65];
  memset(k1, 'a', 64), memset(k2, 'b', 64);
  k1[64] = k2[64] = '\0';
  zorch__cache *cache = NULL;
  zt_ok(zorch__cache_open(&cache, st, "pipe", false));
  ck_assert_ptr_null(zorch__cache_lookup(cache, k1));
  zt_ok(zorch__cache_put(cache, k1, "[{\"name\":\"o\"}]"));
  zt_ok(zorch__cache_append(cache, k2, "[]"));
  ck_assert_str_eq(zorch__cache_lookup(cache, k1), "[{\"name\":\"o\"}]");
  zt_ok(zorch__cache_close(cache));
  char *e1 = zorch__layout_cache_entry("pipe", k1);
  ck_assert_int_eq(zorch__store_exists(st, e1), 1);
  free(e1);
  zt_ok(zorch__cache_open(&cache, st, "pipe", false));
  ck_assert_str_eq(zorch__cache_lookup(cache, k1), "[{\"name\":\"o\"}]");
  ck_assert_str_eq(zorch__cache_lookup(cache, k2), "[]");
  ck_assert_ptr_null(zorch__cache_lookup(cache, "c"));
  zt_ok(zorch__cache_close(cache));

  /* step records: each line becomes that step's object, after its log */
  char *logs = fmt("%s/runs/r9/logs", zorch__store_local_root(st));
  char *lp = fmt("%s/a.log", logs);
  zorch__journal *j = NULL;
  zt_ok(zorch__store_records_open(&j, st, "r9", true));
  FILE *f = fopen(lp, "w");
  fputs("a says hi\n", f);
  fclose(f);
  const char *ra = "{\"step\":\"a\",\"status\":\"running\",\"attempt\":1}";
  const char *rb = "{\"step\":\"a\",\"status\":\"completed\",\"attempt\":1}";
  zt_ok(zorch__journal_append(j, ra, strlen(ra)));
  zt_ok(zorch__journal_append(j, rb, strlen(rb)));
  zt_ok(zorch__journal_append(j, "{\"step\":\"b\",\"status\":\"running\"}", 32));
  zt_ok(zorch__journal_close(j));
  char *text = NULL;
  size_t len = 0;
  zt_ok(zorch__store_read_doc(st, "runs/r9/steps/a.json", &text, &len));
  ck_assert_str_eq(text, rb);
  free(text);
  zt_ok(zorch__store_read_doc(st, "runs/r9/logs/a.log", &text, &len));
  ck_assert_str_eq(text, "a says hi\n");
  free(text);
  zt_assert_rc(zorch__store_read_doc(st, "runs/r9/logs/b.log", &text, &len), ZORCH_ENOTFOUND);
  free(logs), free(lp);
  zorch__store_close(st);
  zorch_client_free(c);
  free(root), free(uri);
}
END_TEST

/* ---- pipelines on the plugin store ---------------------------------------------------- */

/* (step functions run in step processes too, where Check's asserts must not be called) */
static char *cat3(const char *a, const char *b) {
  char *s = malloc(strlen(a) + strlen(b) + 1);
  if (s) strcat(strcpy(s, a), b);
  return s;
}

static int produce(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  int64_t n;
  int rc = zorch_ctx_param_int(ctx, "n", &n);
  if (rc) return rc;
  char buf[64];
  int len = snprintf(buf, sizeof buf, "%lld", (long long)(n * 2));
  zorch_ctx_log(ctx, "doubling %lld in pid %d", (long long)n, (int)getpid());
  if ((rc = zorch_ctx_output(ctx, "value", buf, (size_t)len))) return rc;
  const char *dir = NULL;
  if ((rc = zorch_ctx_output_path(ctx, "tree", &dir))) return rc;
  char *sub = cat3(dir, "/sub"), *a = cat3(dir, "/a.txt"), *b = cat3(dir, "/sub/b.txt");
  mkdir(dir, 0755);
  mkdir(sub, 0755);
  FILE *f = fopen(a, "w");
  fputs("aaa", f);
  fclose(f);
  f = fopen(b, "w");
  fputs("bbb", f);
  fclose(f);
  free(sub), free(a), free(b);
  return ZORCH_OK;
}

static int check(zorch_step_ctx *ctx, void *payload) {
  (void)payload;
  const void *data = NULL;
  size_t size = 0;
  int rc = zorch_ctx_input(ctx, "copy", &data, &size);
  if (rc) return rc;
  const char *tree = NULL;
  if ((rc = zorch_ctx_input_path(ctx, "tree", &tree))) return rc;
  char *b = cat3(tree, "/sub/b.txt");
  char *bt = slurp(b);
  char out[128];
  int len = snprintf(out, sizeof out, "checked %.*s and %s", (int)size, (const char *)data, bt);
  free(b), free(bt);
  zorch_ctx_log(ctx, "checking");
  return zorch_ctx_output(ctx, "verdict", out, (size_t)len);
}

static int build(zorch_pipeline **out, const char *name, void *payload) {
  (void)payload;
  zorch_pipeline *p = NULL;
  int rc = zorch_pipeline_new(&p, name);
  if (rc) return rc;
  zorch_step *a, *b, *c;
  zorch_pipeline_add_param(p, "n", "21");
  zorch_pipeline_add_function_step(&a, p, "produce", produce, NULL);
  zorch_step_use_param(a, "n");
  zorch_step_add_output(a, "value");
  zorch_step_add_output(a, "tree");
  const char *argv[] = {"sh", "-c",
                        "echo \"got $(cat $ZORCH_INPUT_VALUE)\"; cp $ZORCH_INPUT_VALUE $ZORCH_OUTPUT_COPY; "
                        "cat $ZORCH_INPUT_TREE/a.txt",
                        NULL};
  zorch_pipeline_add_command_step(&b, p, "consume", argv);
  zorch_step_add_input(b, "value", "produce", "value");
  zorch_step_add_input(b, "tree", "produce", "tree");
  zorch_step_add_output(b, "copy");
  zorch_pipeline_add_function_step(&c, p, "check", check, NULL);
  zorch_step_add_input(c, "copy", "consume", "copy");
  zorch_step_add_input(c, "tree", "produce", "tree");
  zorch_step_add_output(c, "verdict");
  *out = p;
  return ZORCH_OK;
}

/* A client whose active stack has `orchestrator` (a flavor) and a dirstore
 * store at `config`. */
static zorch_client *stack_client(const char *home, const char *orchestrator, const char *config) {
  zorch_client *c = store_client(home);
  zt_ok(zorch_component_register(c, "artifact_store", "objs", "dirstore", config, 1));
  zt_ok(zorch_component_register(c, "orchestrator", "orch", orchestrator, NULL, 1));
  zt_ok(zorch_stack_register(c, "objs", "orch", "objs", 1));
  zt_ok(zorch_stack_set_active(c, "objs"));
  return c;
}

static zorch_run *run_it(zorch_client *c, int want) {
  zorch_pipeline *p = NULL;
  zt_ok(build(&p, "sdemo", NULL));
  zorch_run *r = NULL;
  int rc = zorch_pipeline_run(&r, c, p, NULL);
  ck_assert_msg(rc == want, "run: %d (%s)", rc, zorch_error_last()->message);
  zorch_pipeline_free(p);
  return r;
}

static int step_status(zorch_run *r, const char *step) {
  size_t i;
  zt_ok(zorch_run_step_index(r, step, &i));
  return zorch_run_step_status(r, i);
}

static void assert_outputs(zorch_run *r) {
  void *data = NULL;
  size_t size = 0;
  zt_ok(zorch_run_read_output(&data, &size, r, "check", "verdict"));
  ck_assert_str_eq((char *)data, "checked 42 and bbb");
  zorch_free(data);
  char *tree = NULL;
  zt_ok(zorch_run_output_path(&tree, r, "produce", "tree"));
  char *a = fmt("%s/a.txt", tree);
  char *at = slurp(a);
  ck_assert_str_eq(at, "aaa");
  free(at), free(a);
  zorch_free(tree);
}

static void assert_logs(zorch_run *r) {
  char *log = NULL;
  zt_ok(zorch_run_read_log(&log, NULL, r, "consume"));
  ck_assert_msg(strstr(log, "got 42") && strstr(log, "aaa"), "log of consume: %s", log);
  zorch_free(log);
  zt_ok(zorch_run_read_log(&log, NULL, r, "produce"));
  ck_assert_msg(strstr(log, "doubling 21"), "log of produce: %s", log);
  zorch_free(log);
}

/* What the store holds after a run: every record, log and artifact as an
 * object; no journal, no file of a cache index. */
static void assert_objects(const char *root, const char *run_id) {
  const char *keys[] = {"runs/%s/run.json", "runs/%s/deployment.json", "runs/%s/steps/produce.json",
                        "runs/%s/steps/consume.json", "runs/%s/steps/check.json",
                        "runs/%s/logs/consume.log"};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
    char *key = fmt(keys[k], run_id);
    char *f = object_file(root, key);
    ck_assert_msg(access(f, F_OK) == 0, "no object %s", key);
    free(f), free(key);
  }
  char *key = fmt("runs/%s/journal.jsonl", run_id);
  char *f = object_file(root, key);
  ck_assert_msg(access(f, F_OK) != 0, "a journal on an object store");
  free(f), free(key);
}

/* In this process (the local orchestrator): a run, its outputs, logs,
 * records and cache entries all in the plugin store; the second run is all
 * cache hits; the runs are listed and opened from another host. */
START_TEST(a_pipeline_runs_on_the_plugin_store) {
  const char *d = zt_tmpdir();
  char *root = fmt("%s/objects", d);
  char *config = fmt("{\"path\":\"%s\"}", root);
  zorch_client *c = stack_client(NULL, "local", config);
  zorch_run *r = run_it(c, ZORCH_OK);
  ck_assert_int_eq(step_status(r, "produce"), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(step_status(r, "consume"), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_COMPLETED);
  assert_outputs(r);
  assert_logs(r);
  char *id1 = strdup(zorch_run_id(r));
  char *name1 = strdup(zorch_run_name(r));
  zorch_run_free(r);
  assert_objects(root, id1);
  /* the deployment names the store by URI, and a local store is nowhere */
  r = run_it(c, ZORCH_OK);
  ck_assert_int_eq(step_status(r, "produce"), ZORCH_STATUS_CACHED);
  ck_assert_int_eq(step_status(r, "consume"), ZORCH_STATUS_CACHED);
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_CACHED);
  const char *dep = zorch_run_deployment(r);
  char *want = fmt("\"--zorch-store\",\"dirstore://%s\"", root);
  ck_assert_msg(strstr(dep, want) && !strstr(dep, "--zorch-deployment"), "deployment: %s", dep);
  free(want);
  char *id2 = strdup(zorch_run_id(r));
  zorch_run_free(r);
  char *local_store = fmt("%s/store", zorch_client_home(c));
  ck_assert_msg(access(local_store, F_OK) != 0, "a local store was made: %s", local_store);
  free(local_store);
  zorch_client_free(c);

  /* another host: the same components, its own (empty) staging area */
  zorch_client *c2 = stack_client(NULL, "local", config);
  zorch_run_list *l = NULL;
  zt_ok(zorch_run_list_load(&l, c2, "sdemo"));
  ck_assert_uint_eq(zorch_run_list_count(l), 2);
  ck_assert_int_eq(zorch_run_list_status(l, 0), ZORCH_STATUS_COMPLETED);
  zorch_run_list_free(l);
  zt_ok(zorch_run_open(&r, c2, name1));
  ck_assert_str_eq(zorch_run_id(r), id1);
  ck_assert_int_eq(zorch_run_status(r), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_COMPLETED);
  size_t i;
  zt_ok(zorch_run_step_index(r, "consume", &i));
  ck_assert_int_eq(zorch_run_step_exit_code(r, i), 0);
  assert_outputs(r); /* downloaded, checked, staged */
  assert_logs(r);
  zorch_run_free(r);
  zt_ok(zorch_run_open(&r, c2, id2));
  ck_assert_int_eq(step_status(r, "consume"), ZORCH_STATUS_CACHED);
  zorch_run_free(r);
  zorch_client_free(c2);
  free(id1), free(id2), free(name1), free(config), free(root);
}
END_TEST

/* The steps as processes (the spawn_remote flavor): each gets the store's
 * URI and, in its environment, the key file's path (never the key); this
 * process has neither. */
START_TEST(remote_steps_reach_the_plugin_store_by_uri) {
  unsetenv("DIRSTORE_KEY_FILE");
  /* where the steps run, the artifact-store plugin is installed */
  char *old_path = strdup(getenv("ZORCH_PLUGIN_PATH") ? getenv("ZORCH_PLUGIN_PATH") : "");
  char *plugins = fmt("%s:%s", getenv("ZORCH_TEST_STORE_PLUGINS"), old_path);
  setenv("ZORCH_PLUGIN_PATH", plugins, 1);
  free(plugins);
  char *uri = NULL;
  char *config = keyed_store(&uri);
  zorch_client *c = stack_client(NULL, "spawn_remote", config);
  char *launches = fmt("%s/launches.log", zorch_client_home(c));
  setenv("ZORCH_TEST_LAUNCH_LOG", launches, 1);
  zorch_run *r = run_it(c, ZORCH_OK);
  ck_assert_int_eq(step_status(r, "produce"), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(step_status(r, "consume"), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_COMPLETED);
  assert_outputs(r);
  char *log = NULL;
  zt_ok(zorch_run_read_log(&log, NULL, r, "produce"));
  char mine[64];
  snprintf(mine, sizeof mine, "in pid %d\n", (int)getpid());
  ck_assert_msg(strstr(log, "doubling 21") && !strstr(log, mine), "log of produce: %s", log);
  zorch_free(log);
  zorch_run_free(r);
  char *l = slurp(launches);
  ck_assert_int_eq(count_of(l, "launch "), 3);
  free(l);
  /* again: cache hits, none launched */
  unlink(launches);
  r = run_it(c, ZORCH_OK);
  ck_assert_int_eq(step_status(r, "check"), ZORCH_STATUS_CACHED);
  zorch_run_free(r);
  l = slurp(launches);
  ck_assert_int_eq(count_of(l, "launch "), 0);
  free(l);
  unsetenv("ZORCH_TEST_LAUNCH_LOG");
  setenv("ZORCH_PLUGIN_PATH", old_path, 1); /* (CK_FORK=no: the next tests see it) */
  free(old_path);
  zorch_client_free(c);
  free(launches), free(config), free(uri);
}
END_TEST

/* A step entrypoint started by hand with nothing but the store's URI (and
 * the plugin path): the function step by this program, the command step by
 * `zorch step run` with $ZORCH_STORE_URI.  Each runs one attempt more. */
START_TEST(a_step_starts_from_a_store_uri_alone) {
  char *root = fmt("%s/objects", zt_tmpdir());
  char *config = fmt("{\"path\":\"%s\"}", root);
  char *uri = fmt("dirstore://%s", root);
  zorch_client *c = stack_client(NULL, "local", config);
  zorch_run *r = run_it(c, ZORCH_OK);
  char *id = strdup(zorch_run_id(r));
  zorch_run_free(r);
  char *self = zt_build_path("tests/unit/test-storeplugin");
  char *plugins = fmt("ZORCH_PLUGIN_PATH=%s", getenv("ZORCH_TEST_STORE_PLUGINS"));
  char *home = fmt("ZORCH_HOME=%s", zt_tmpdir()); /* another host */
  const char *env[] = {plugins, home, NULL};
  const char *fargv[] = {self, "--zorch-step", "produce", "--zorch-store", uri, "--zorch-run", id, NULL};
  char *out = NULL;
  int st = zt_run(&out, fargv, env);
  ck_assert_msg(st == 0, "function step: exit %d: %s", st, out);
  ck_assert_msg(strstr(out, "doubling 21"), "its log lines go to stderr: %s", out);
  free(out);
  char *zorch = getenv("ZORCH_COMMAND");
  char *uri_env = fmt("ZORCH_STORE_URI=%s", uri);
  const char *cenv[] = {plugins, home, uri_env, NULL};
  const char *cargv[] = {zorch, "step", "run", "--zorch-step", "consume", "--zorch-run", id, NULL};
  st = zt_run(&out, cargv, cenv);
  ck_assert_msg(st == 0, "command step: exit %d: %s", st, out);
  ck_assert_msg(strstr(out, "got 42"), "output: %s", out);
  free(out);
  /* without the plugin the store cannot be reached, and the step says so */
  const char *bare[] = {"ZORCH_PLUGIN_PATH=", home, NULL};
  st = zt_run(&out, fargv, bare);
  ck_assert_int_eq(st, 2);
  ck_assert_msg(strstr(out, "no artifact-store flavor 'dirstore'"), "output: %s", out);
  free(out);
  zt_ok(zorch_run_open(&r, c, id));
  size_t i;
  zt_ok(zorch_run_step_index(r, "produce", &i));
  ck_assert_int_eq(zorch_run_step_status(r, i), ZORCH_STATUS_COMPLETED);
  ck_assert_int_eq(zorch_run_step_attempts(r, i), 2);
  zt_ok(zorch_run_step_index(r, "consume", &i));
  ck_assert_int_eq(zorch_run_step_attempts(r, i), 2);
  zorch_run_free(r);
  zorch_client_free(c);
  free(self), free(plugins), free(home), free(uri_env), free(id), free(uri), free(config), free(root);
}
END_TEST

/* A flavor plugin built before plugin ABI 1.2 knows the store by its path
 * only: refused with a store that is not local, naming both. */
START_TEST(an_old_flavor_cannot_use_a_plugin_store) {
  zorch_client *c = store_client(NULL);
  char *config = fmt("{\"path\":\"%s/objects\"}", zt_tmpdir());
  zt_ok(zorch_component_register(c, "artifact_store", "objs", "dirstore", config, 0));
  zorch__flavor *f = (zorch__flavor *)zorch__registry_find(c->registry, ZORCH_COMPONENT_ORCHESTRATOR,
                                                           "spawn_remote");
  ck_assert_ptr_nonnull(f);
  f->plugin_abi_minor = 1; /* as a plugin built against plugin.h 1.1 reports itself */
  zt_ok(zorch_component_register(c, "orchestrator", "old", "spawn_remote", NULL, 0));
  zt_ok(zorch_stack_register(c, "old", "old", "objs", 0));
  zorch_pipeline *p = NULL;
  zt_ok(build(&p, "sdemo", NULL));
  zorch_run_options o = ZORCH_RUN_OPTIONS_INIT;
  o.stack = "old";
  zorch_run *r = NULL;
  zt_assert_rc(zorch_pipeline_run(&r, c, p, &o), ZORCH_ENOTSUPPORTED);
  zt_assert_msg_has("orchestrator flavor 'spawn_remote'");
  zt_assert_msg_has("plugin ABI 1.1");
  zt_assert_msg_has("artifact store 'objs' (dirstore://");
  zorch_pipeline_free(p);
  zorch_client_free(c);
  free(config);
}
END_TEST

Suite *storeplugin_suite(void);
Suite *storeplugin_suite(void) {
  Suite *s = suite_create("storeplugin");
  TCase *tc = tcase_create("backend");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, local_backend_keeps_the_contract);
  tcase_add_test(tc, plugin_backend_keeps_the_contract);
  tcase_add_test(tc, unknown_schemes_and_plugins_are_named);
  tcase_add_test(tc, artifacts_go_up_once_and_come_back);
  tcase_add_test(tc, a_corrupt_artifact_is_refused);
  tcase_add_test(tc, puts_are_atomic_for_readers);
  tcase_add_test(tc, credentials_travel_by_reference);
  tcase_add_test(tc, cache_entries_and_records_are_objects);
  suite_add_tcase(s, tc);
  tc = tcase_create("pipelines");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, a_pipeline_runs_on_the_plugin_store);
  tcase_add_test(tc, remote_steps_reach_the_plugin_store_by_uri);
  tcase_add_test(tc, a_step_starts_from_a_store_uri_alone);
  tcase_add_test(tc, an_old_flavor_cannot_use_a_plugin_store);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char **argv) {
  /* started as one function step (by spawn_remote, or by hand) */
  if (zorch_main(argc, argv, build, NULL) != ZORCH_OK) return 2;
  return zt_run_suite(storeplugin_suite());
}
