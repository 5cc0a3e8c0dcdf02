/* zorch — tests of the cache index (cache/<pipeline>.jsonl). */
#include "store.h"
#include "zorch-check.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static zorch__store *open_store(void) {
  zorch__store *st = NULL;
  zt_ok(zorch__store_open(&st, zt_tmpdir()));
  return st;
}

static char *cache_file(zorch__store *st, const char *pipeline) {
  char *p = NULL;
  ck_assert(asprintf(&p, "%s/cache/%s.jsonl", zorch__store_root(st), pipeline) > 0);
  return p;
}

static void append_raw(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  ck_assert(fd >= 0);
  ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
}

START_TEST(test_put_lookup) {
  zorch__store *st = open_store();
  zorch__cache *c = NULL;
  zt_ok(zorch__cache_open(&c, st, "train", true));
  ck_assert_ptr_null(zorch__cache_lookup(c, "k1"));
  zt_ok(zorch__cache_put(c, "k1", "[{\"name\":\"model\",\"digest\":\"abc\"}]"));
  ck_assert_str_eq(zorch__cache_lookup(c, "k1"), "[{\"name\":\"model\",\"digest\":\"abc\"}]");
  zt_ok(zorch__cache_put(c, "k2", "[]"));
  ck_assert_str_eq(zorch__cache_lookup(c, "k2"), "[]");
  ck_assert_ptr_null(zorch__cache_lookup(c, "k3"));
  /* multi-line JSON is kept on one line */
  zt_ok(zorch__cache_put(c, "k4", "[\n  1,\n  2\n]"));
  ck_assert_str_eq(zorch__cache_lookup(c, "k4"), "[   1,   2 ]");
  /* a key that needs escaping */
  zt_ok(zorch__cache_put(c, "we\"ird\\key", "[true]"));
  ck_assert_str_eq(zorch__cache_lookup(c, "we\"ird\\key"), "[true]");
  /* refused */
  zt_assert_rc(zorch__cache_put(c, "k5", "{\"not\":\"an array\"}"), ZORCH_EINVALID);
  zt_assert_msg_has("k5");
  zt_assert_rc(zorch__cache_put(c, "k5", "[1,2"), ZORCH_EINVALID);
  zt_assert_rc(zorch__cache_put(c, "k5", "[1] x"), ZORCH_EINVALID);
  zt_assert_rc(zorch__cache_put(c, "", "[]"), ZORCH_EINVALID);
  zt_assert_rc(zorch__cache_put(c, "k5", NULL), ZORCH_EINVALID);
  ck_assert_ptr_null(zorch__cache_lookup(c, "k5"));
  zt_ok(zorch__cache_close(c));
  zt_ok(zorch__cache_close(NULL));

  /* invalid pipeline names never become paths */
  zt_assert_rc(zorch__cache_open(&c, st, "../evil", false), ZORCH_EINVALID);
  ck_assert_ptr_null(c);
  zorch__store_close(st);
}
END_TEST

START_TEST(test_reload_latest_wins) {
  zorch__store *st = open_store();
  zorch__cache *c = NULL;
  zt_ok(zorch__cache_open(&c, st, "p", true));
  zt_ok(zorch__cache_put(c, "a", "[1]"));
  zt_ok(zorch__cache_put(c, "b", "[2]"));
  const char *first = zorch__cache_lookup(c, "a");
  zt_ok(zorch__cache_put(c, "a", "[3]"));
  ck_assert_str_eq(zorch__cache_lookup(c, "a"), "[3]");
  ck_assert_str_eq(first, "[1]"); /* an earlier answer stays valid until close */
  zt_ok(zorch__cache_put(c, "we\"ird", "[4]"));
  zt_ok(zorch__cache_close(c));

  zt_ok(zorch__cache_open(&c, st, "p", false));
  ck_assert_str_eq(zorch__cache_lookup(c, "a"), "[3]");
  ck_assert_str_eq(zorch__cache_lookup(c, "b"), "[2]");
  ck_assert_str_eq(zorch__cache_lookup(c, "we\"ird"), "[4]");
  zt_ok(zorch__cache_put(c, "b", "[5]"));
  zt_ok(zorch__cache_close(c));
  zt_ok(zorch__cache_open(&c, st, "p", false));
  ck_assert_str_eq(zorch__cache_lookup(c, "b"), "[5]");
  zt_ok(zorch__cache_close(c));

  /* each pipeline has its own index */
  zt_ok(zorch__cache_open(&c, st, "other", false));
  ck_assert_ptr_null(zorch__cache_lookup(c, "a"));
  zt_ok(zorch__cache_close(c));

  /* the file holds one JSON object per line */
  char *path = cache_file(st, "p");
  json_error_t err;
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  char line[256];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    json_t *j = json_loads(line, 0, &err);
    ck_assert_msg(j && json_is_string(json_object_get(j, "k")) && json_is_array(json_object_get(j, "o")),
                  "bad line %s", line);
    json_decref(j);
    n++;
  }
  fclose(f);
  ck_assert_int_eq(n, 5);
  free(path);
  zorch__store_close(st);
}
END_TEST

START_TEST(test_malformed_and_torn) {
  zorch__store *st = open_store();
  char *path = cache_file(st, "m");
  append_raw(path,
             "{\"k\":\"good\",\"o\":[1]}\n"
             "garbage\n"
             "\n"
             "{\"k\":\"no-o\"}\n"
             "{\"k\":1,\"o\":[]}\n"
             "{\"k\":\"obj\",\"o\":{}}\n"
             "{\"k\":\"str\",\"o\":\"[]\"}\n"
             "{\"o\":[2],\"k\":\"reordered\"}\n"
             "{ \"k\" : \"spaced\" , \"o\" : [ 3 ] }\r\n"
             "{\"k\":\"esc\\\"aped\",\"o\":[4]}\n"
             "{\"k\":\"unicode\\u00e9\",\"o\":[5]}\n"
             "{\"k\":\"broken\",\"o\":[1,2}\n"
             "{\"k\":\"bad-string\",\"o\":[\"a\\q\"]}\n"
             "{\"k\":\"extra\",\"o\":[6],\"x\":true}\n"
             "{\"k\":\"nested\",\"o\":[{\"a\":[1,{\"b\":null}],\"c\":-1.5e3}]}\n"
             "{\"k\":\"good\",\"o\":[7]}\n"
             "{\"k\":\"good\",\"o\":[8]"); /* torn: no '\n' */
  zorch__cache *c = NULL;
  zt_ok(zorch__cache_open(&c, st, "m", false));
  ck_assert_str_eq(zorch__cache_lookup(c, "good"), "[7]");
  ck_assert_ptr_null(zorch__cache_lookup(c, "no-o"));
  ck_assert_ptr_null(zorch__cache_lookup(c, "obj"));
  ck_assert_ptr_null(zorch__cache_lookup(c, "str"));
  ck_assert_ptr_null(zorch__cache_lookup(c, "broken"));
  ck_assert_ptr_null(zorch__cache_lookup(c, "bad-string"));
  ck_assert_ptr_null(zorch__cache_lookup(c, "garbage"));
  ck_assert_str_eq(zorch__cache_lookup(c, "reordered"), "[2]");
  ck_assert_str_eq(zorch__cache_lookup(c, "spaced"), "[3]");
  ck_assert_str_eq(zorch__cache_lookup(c, "esc\"aped"), "[4]");
  ck_assert_str_eq(zorch__cache_lookup(c, "unicode\xc3\xa9"), "[5]");
  ck_assert_str_eq(zorch__cache_lookup(c, "extra"), "[6]");
  ck_assert_str_eq(zorch__cache_lookup(c, "nested"), "[{\"a\":[1,{\"b\":null}],\"c\":-1.5e3}]");
  /* a new entry after the torn line is not glued to it */
  zt_ok(zorch__cache_put(c, "after", "[9]"));
  zt_ok(zorch__cache_close(c));
  zt_ok(zorch__cache_open(&c, st, "m", false));
  ck_assert_str_eq(zorch__cache_lookup(c, "after"), "[9]");
  ck_assert_str_eq(zorch__cache_lookup(c, "good"), "[7]");
  zt_ok(zorch__cache_close(c));
  char *data = NULL;
  zt_ok(zorch__read_file(path, &data, NULL));
  ck_assert_ptr_null(strstr(data, "[8]"));
  size_t n = strlen(data);
  ck_assert(n > 0 && data[n - 1] == '\n');
  ck_assert_ptr_nonnull(strstr(data, "{\"k\":\"good\",\"o\":[7]}\n{\"k\":\"after\",\"o\":[9]}\n"));
  free(data);

  /* a file that is only a torn line, and an empty file */
  char *p2 = cache_file(st, "t");
  append_raw(p2, "{\"k\":\"x\",\"o\":[1]");
  zt_ok(zorch__cache_open(&c, st, "t", false));
  ck_assert_ptr_null(zorch__cache_lookup(c, "x"));
  zt_ok(zorch__cache_close(c));
  char *p3 = cache_file(st, "e");
  append_raw(p3, "");
  zt_ok(zorch__cache_open(&c, st, "e", false));
  ck_assert_ptr_null(zorch__cache_lookup(c, "x"));
  zt_ok(zorch__cache_close(c));
  free(p2);
  free(p3);
  free(path);
  zorch__store_close(st);
}
END_TEST

typedef struct {
  zorch__cache *c;
  int id;
  int bad;
} put_arg;

static void *putter(void *p) {
  put_arg *a = p;
  char k[32], o[64];
  for (int i = 0; i < 5000; i++) {
    snprintf(k, sizeof k, "t%d-%d", a->id, i);
    snprintf(o, sizeof o, "[{\"t\":%d,\"i\":%d}]", a->id, i);
    if (zorch__cache_put(a->c, k, o)) a->bad++;
    const char *v = zorch__cache_lookup(a->c, k);
    if (!v || strcmp(v, o)) a->bad++;
  }
  return NULL;
}

START_TEST(test_threads) {
  zorch__store *st = open_store();
  zorch__cache *c = NULL;
  zt_ok(zorch__cache_open(&c, st, "mt", true));
  pthread_t th[4];
  put_arg a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (put_arg){c, i, 0};
    ck_assert(pthread_create(&th[i], NULL, putter, &a[i]) == 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    ck_assert_int_eq(a[i].bad, 0);
  }
  zt_ok(zorch__cache_close(c));
  zt_ok(zorch__cache_open(&c, st, "mt", false));
  char k[32], o[64];
  for (int t = 0; t < 4; t++)
    for (int i = 0; i < 5000; i++) {
      snprintf(k, sizeof k, "t%d-%d", t, i);
      snprintf(o, sizeof o, "[{\"t\":%d,\"i\":%d}]", t, i);
      const char *v = zorch__cache_lookup(c, k);
      ck_assert_msg(v && !strcmp(v, o), "%s -> %s", k, v ? v : "(null)");
    }
  zt_ok(zorch__cache_close(c));
  zorch__store_close(st);
}
END_TEST

START_TEST(test_load_100k) {
  zorch__store *st = open_store();
  enum { N = 100000 };
  zorch__cache *c = NULL;
  zt_ok(zorch__cache_open(&c, st, "big", false));
  char key[ZORCH__DIGEST_HEX], dg[ZORCH__DIGEST_HEX], out[256];
  int failed = 0;
  int64_t t0 = zorch__mono_ns();
  for (int i = 0; i < N; i++) {
    zorch__sha256_hex(&i, sizeof i, key);
    int j = -i - 1;
    zorch__sha256_hex(&j, sizeof j, dg);
    snprintf(out, sizeof out, "[{\"name\":\"model\",\"digest\":\"%s\",\"size\":%d,\"dir\":false}]", dg, i);
    failed += zorch__cache_put(c, key, out) != ZORCH_OK;
  }
  int64_t t1 = zorch__mono_ns();
  zt_ok(zorch__cache_close(c));
  int64_t t2 = zorch__mono_ns();
  ck_assert_int_eq(failed, 0);
  char *path = cache_file(st, "big");
  struct stat sb;
  ck_assert(stat(path, &sb) == 0);

  double best = 1e9;
  for (int rep = 0; rep < 3; rep++) {
    int64_t a = zorch__mono_ns();
    zt_ok(zorch__cache_open(&c, st, "big", false));
    int64_t b = zorch__mono_ns();
    if ((double)(b - a) / 1e6 < best) best = (double)(b - a) / 1e6;
    if (rep < 2) zt_ok(zorch__cache_close(c));
  }
  int missing = 0;
  int64_t l0 = zorch__mono_ns();
  for (int i = 0; i < N; i++) {
    zorch__sha256_hex(&i, sizeof i, key);
    const char *v = zorch__cache_lookup(c, key);
    if (!v) {
      missing++;
      continue;
    }
    if (i % 997 == 0) {
      int j = -i - 1;
      zorch__sha256_hex(&j, sizeof j, dg);
      snprintf(out, sizeof out, "[{\"name\":\"model\",\"digest\":\"%s\",\"size\":%d,\"dir\":false}]", dg, i);
      ck_assert_str_eq(v, out);
    }
  }
  int64_t l1 = zorch__mono_ns();
  ck_assert_int_eq(missing, 0);
  zt_ok(zorch__cache_close(c));
  printf("cache: %d puts %.3f us/put incl. 2 sha256 + snprintf (+ close %.1f ms); load of %d entries (%.1f MB) best of 3: "
         "%.1f ms; %d lookups (with sha256 of the key) %.3f us each\n",
         N, (double)(t1 - t0) / N / 1e3, (double)(t2 - t1) / 1e6, N, (double)sb.st_size / 1e6, best,
         N, (double)(l1 - l0) / N / 1e3);
  free(path);
  zorch__store_close(st);
}
END_TEST

Suite *cache_suite(void);
Suite *cache_suite(void) {
  Suite *s = suite_create("cache");
  TCase *tc = tcase_create("cache");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_put_lookup);
  tcase_add_test(tc, test_reload_latest_wins);
  tcase_add_test(tc, test_malformed_and_torn);
  tcase_add_test(tc, test_threads);
  tcase_add_test(tc, test_load_100k);
  suite_add_tcase(s, tc);
  return s;
}

ZORCH_CHECK_MAIN(cache)
