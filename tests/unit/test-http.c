/* The plugin kit's HTTP client (plugins/common/zhttp.c) against a real
 * HTTP(S) server (tests/unit/http-fixture.py): JSON in and out, headers and
 * bearer tokens, per-request headers and response headers, API error
 * bodies, retries with full-jitter backoff for idempotent requests only,
 * Retry-After, streaming and stopping a stream, TLS verified by default (CA
 * as a file or as PEM text), connections and TLS sessions reused across
 * requests, and an auth provider that sees each whole request and is asked
 * again after a 401. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zhttp.h"
#include "zorch-check.h"

static pid_t server_pid[2];
static char base[2][128];
static char ca_path[512];
/* made by main() itself: a forked test's exit must not remove it */
static char fixture_dir[256];

static void stop_servers(void) {
  for (int k = 0; k < 2; k++) zt_fixture_stop(server_pid[k]);
}

static zh_client *client(int k, const char *token) {
  static const char *const hdrs[] = {"X-Test: yes", NULL};
  zh_options o = {.base_url = base[k], .bearer_token = token, .headers = hdrs,
                  .service_name = "the fixture", .backoff_ms = 50};
  zh_error e = {0};
  zh_client *c = zh_client_new(&o, &e);
  ck_assert_msg(c != NULL, "zh_client_new: %s", e.message);
  return c;
}

/* Both servers start in main(), before Check forks a process per test. */
static void setup(void) {}


START_TEST(json_headers_and_token) {
  setup();
  zh_client *c = client(0, "s3cret");
  json_t *out = NULL;
  zh_error e = {0};
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK);
  ck_assert(json_is_true(json_object_get(out, "ok")));
  ck_assert_str_eq(json_string_value(json_object_get(out, "auth")), "Bearer s3cret");
  ck_assert_str_eq(json_string_value(json_object_get(out, "x")), "yes");
  json_decref(out);
  json_t *body = json_pack("{s:i,s:[s]}", "n", 7, "list", "a");
  ck_assert_int_eq(zh_json(c, "POST", "/echo", body, &out, &e), ZH_OK);
  ck_assert(json_equal(json_object_get(out, "got"), body));
  ck_assert_str_eq(json_string_value(json_object_get(out, "type")), "application/json");
  json_decref(out);
  json_decref(body);
  zh_error_clear(&e);
  zh_client_free(c);
}
END_TEST

START_TEST(api_errors_carry_status_and_message) {
  setup();
  zh_client *c = client(0, NULL);
  zh_error e = {0};
  ck_assert_int_eq(zh_json(c, "GET", "/missing", NULL, NULL, &e), ZH_EHTTP);
  ck_assert_int_eq(e.status, 404);
  ck_assert_str_eq(e.api_message, "no such thing: missing");
  ck_assert_msg(strstr(e.message, "GET /missing") && strstr(e.message, "HTTP 404") &&
                    strstr(e.message, "no such thing: missing"),
                "message: %s", e.message);
  ck_assert_msg(e.body && strstr(e.body, "\"message\""), "body: %s", e.body ? e.body : "(none)");
  ck_assert_int_eq(zh_json(c, "GET", "/text-error", NULL, NULL, &e), ZH_EHTTP);
  ck_assert_int_eq(e.status, 500);
  ck_assert_str_eq(e.api_message, "plain failure here");
  zh_error_clear(&e);
  zh_client_free(c);
}
END_TEST

static long count_of(zh_client *c, const char *path) {
  char hdr[256];
  snprintf(hdr, sizeof hdr, "X-Path: %s", path);
  (void)hdr;
  /* the fixture counts by path; ask with a one-off client carrying the header */
  const char *const hdrs[] = {hdr, NULL};
  zh_options o = {.base_url = base[0], .headers = hdrs};
  zh_error e = {0};
  zh_client *k = zh_client_new(&o, &e);
  json_t *out = NULL;
  ck_assert_int_eq(zh_json(k, "POST", "/count", NULL, &out, &e), ZH_OK);
  long n = (long)json_integer_value(json_object_get(out, "count"));
  json_decref(out);
  zh_client_free(k);
  (void)c;
  return n;
}

START_TEST(retries_idempotent_requests_only) {
  setup();
  zh_client *c = client(0, NULL);
  zh_error e = {0};
  json_t *out = NULL;
  ck_assert_int_eq(zh_json(c, "GET", "/flaky/get1", NULL, &out, &e), ZH_OK);
  ck_assert_int_eq(json_integer_value(json_object_get(out, "attempts")), 3);
  json_decref(out);
  /* a POST that fails is not sent twice */
  ck_assert_int_eq(zh_json(c, "POST", "/flaky/post1", NULL, NULL, &e), ZH_EHTTP);
  ck_assert_int_eq(e.status, 503);
  ck_assert_int_eq(count_of(c, "/flaky/post1"), 1);
  /* ... unless the caller says it is idempotent */
  zh_request rq = {.method = "POST", .path = "/flaky/post2", .flags = ZH_IDEMPOTENT};
  ck_assert_int_eq(zh_do(c, &rq, NULL, &e), ZH_EHTTP); /* 503 every time */
  ck_assert_int_eq(count_of(c, "/flaky/post2"), 4);    /* the default 4 attempts */
  /* 429 with Retry-After: waits, then succeeds */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(zh_json(c, "GET", "/limited/a", NULL, &out, &e), ZH_OK);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ck_assert_int_eq(json_integer_value(json_object_get(out, "attempts")), 2);
  double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  ck_assert_msg(waited >= 0.9, "Retry-After: 1 not honoured (waited %.3f s)", waited);
  json_decref(out);
  zh_error_clear(&e);
  zh_client_free(c);
}
END_TEST

typedef struct {
  char text[4096];
  size_t len;
  int chunks, stop_after;
} sink;

static int on_chunk(const char *d, size_t n, void *p) {
  sink *s = p;
  if (s->len + n < sizeof s->text) {
    memcpy(s->text + s->len, d, n);
    s->len += n;
    s->text[s->len] = '\0';
  }
  return ++s->chunks == s->stop_after;
}

static void *set_later(void *p) {
  usleep(300000);
  *(volatile int *)p = 1;
  return NULL;
}

START_TEST(streams_and_stops) {
  setup();
  zh_client *c = client(0, NULL);
  zh_error e = {0};
  sink s = {0};
  zh_request rq = {.method = "GET", .path = "/stream", .chunk_cb = on_chunk, .chunk_payload = &s};
  ck_assert_int_eq(zh_do(c, &rq, NULL, &e), ZH_OK);
  ck_assert_str_eq(s.text, "line 0\nline 1\nline 2\nline 3\nline 4\n");
  /* the callback ends the stream */
  memset(&s, 0, sizeof s);
  s.stop_after = 2;
  rq.path = "/forever";
  ck_assert_int_eq(zh_do(c, &rq, NULL, &e), ZH_STOPPED);
  ck_assert_int_eq(s.chunks, 2);
  /* another thread ends it through the abort flag */
  memset(&s, 0, sizeof s);
  volatile int abort_flag = 0;
  rq.abort_flag = &abort_flag;
  pthread_t th;
  pthread_create(&th, NULL, set_later, (void *)&abort_flag);
  time_t t0 = time(NULL);
  ck_assert_int_eq(zh_do(c, &rq, NULL, &e), ZH_STOPPED);
  pthread_join(th, NULL);
  ck_assert_msg(time(NULL) - t0 < 5, "abort took too long");
  ck_assert(s.chunks >= 1);
  zh_error_clear(&e);
  zh_client_free(c);
}
END_TEST

START_TEST(unreachable_names_the_address) {
  zh_options o = {.base_url = "http://127.0.0.1:9", .service_name = "the fixture", .max_attempts = 2,
                  .backoff_ms = 10};
  zh_error e = {0};
  zh_client *c = zh_client_new(&o, &e);
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, NULL, &e), ZH_ETRANSPORT);
  ck_assert_int_eq(e.status, 0);
  ck_assert_msg(strstr(e.message, "cannot reach the fixture at http://127.0.0.1:9"), "message: %s", e.message);
  zh_client_free(c);
  o.base_url = "http://localhost";
  o.unix_socket = "/nonexistent/x.sock";
  c = zh_client_new(&o, &e);
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, NULL, &e), ZH_ETRANSPORT);
  ck_assert_msg(strstr(e.message, "unix:///nonexistent/x.sock"), "message: %s", e.message);
  zh_error_clear(&e);
  zh_client_free(c);
}
END_TEST

static char *read_all(const char *path) {
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot read %s", path);
  char *b = calloc(1, 65536);
  size_t n = fread(b, 1, 65535, f);
  b[n] = '\0';
  fclose(f);
  return b;
}

START_TEST(tls_verified_by_default) {
  zh_error e = {0};
  json_t *out = NULL;
  /* the system CAs do not know this certificate: refused */
  zh_options o = {.base_url = base[1], .service_name = "the fixture", .max_attempts = 1};
  zh_client *c = zh_client_new(&o, &e);
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_ETRANSPORT);
  ck_assert_msg(strstr(e.message, "certificate"), "message: %s", e.message);
  zh_client_free(c);
  /* trusted through a CA file */
  o.ca_file = ca_path;
  c = zh_client_new(&o, &e);
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK);
  json_decref(out);
  zh_client_free(c);
  /* ... or PEM text (kubeconfig certificate-authority-data) */
  char *pem = read_all(ca_path);
  o.ca_file = NULL;
  o.ca_pem = pem;
  c = zh_client_new(&o, &e);
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK);
  json_decref(out);
  zh_client_free(c);
  free(pem);
  /* or not verified when asked explicitly */
  o.ca_pem = NULL;
  o.insecure_skip_verify = true;
  c = zh_client_new(&o, &e);
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK);
  json_decref(out);
  zh_client_free(c);
  zh_error_clear(&e);
}
END_TEST


START_TEST(per_request_and_response_headers) {
  zh_client *c = client(0, NULL);
  const char *const mine[] = {"X-One: 1", "X-Request-Id: abc-123", NULL};
  zh_request rq = {.method = "GET", .path = "/headers", .headers = mine};
  zh_response resp;
  zh_error e = {0};
  ck_assert_int_eq(zh_do(c, &rq, &resp, &e), ZH_OK);
  json_t *got = json_loads(resp.body, 0, NULL);
  json_t *h = json_object_get(got, "headers");
  ck_assert_str_eq(json_string_value(json_object_get(h, "X-One")), "1");
  ck_assert_str_eq(json_string_value(json_object_get(h, "X-Request-Id")), "abc-123");
  ck_assert_str_eq(json_string_value(json_object_get(h, "X-Test")), "yes"); /* the client's too */
  json_decref(got);
  /* response headers, by any spelling of their name */
  ck_assert_str_eq(zh_response_header(&resp, "ETag"), "\"v1\"");
  ck_assert_str_eq(zh_response_header(&resp, "location"), "/things/1");
  ck_assert_str_eq(zh_response_header(&resp, "LOCATION"), "/things/1");
  ck_assert_str_eq(zh_response_header(&resp, "x-continue"), "tok-2");
  ck_assert_str_eq(zh_response_header(&resp, "X-Multi"), "first");
  ck_assert_ptr_null(zh_response_header(&resp, "X-Absent"));
  ck_assert_ptr_null(zh_response_header(&resp, "X-Mult")); /* a prefix is not a name */
  zh_response_free(&resp);
  /* the next request's headers are its own */
  rq.headers = NULL;
  ck_assert_int_eq(zh_do(c, &rq, &resp, &e), ZH_OK);
  ck_assert_msg(!strstr(resp.body, "X-One"), "body: %s", resp.body);
  zh_response_free(&resp);
  zh_error_clear(&e);
  zh_client_free(c);
}
END_TEST

static void connections(int k, long *n, long *resumed) {
  /* asked with a one-off client: its own connection counts too, before the answer */
  zh_options o = {.base_url = base[k], .ca_file = ca_path};
  zh_error e = {0};
  zh_client *q = zh_client_new(&o, &e);
  json_t *out = NULL;
  ck_assert_int_eq(zh_json(q, "GET", "/connections", NULL, &out, &e), ZH_OK);
  *n = (long)json_integer_value(json_object_get(out, "connections"));
  if (resumed) *resumed = (long)json_integer_value(json_object_get(out, "resumed"));
  json_decref(out);
  zh_client_free(q);
}

static void *stream_once(void *p) {
  zh_client *c = p;
  zh_error e = {0};
  zh_request rq = {.method = "GET", .path = "/stream"};
  zh_response r;
  ck_assert_int_eq(zh_do(c, &rq, &r, &e), ZH_OK);
  zh_response_free(&r);
  return NULL;
}

START_TEST(connections_and_tls_sessions_are_reused) {
  for (int k = 0; k < 2; k++) {
    zh_options o = {.base_url = base[k], .ca_file = ca_path, .service_name = "the fixture"};
    zh_error e = {0};
    zh_client *c = zh_client_new(&o, &e);
    long before, after, resumed0, resumed1;
    connections(k, &before, NULL);
    for (int i = 0; i < 20; i++) {
      json_t *out = NULL;
      ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK);
      json_decref(out);
    }
    connections(k, &after, &resumed0);
    /* 20 requests, 1 connection (+1 for the second question) */
    ck_assert_msg(after - before == 2, "%s: 20 requests opened %ld connections", base[k], after - before - 1);
    /* two requests at once need two connections; over TLS the second resumes
     * the session of the first instead of a full handshake */
    pthread_t th;
    pthread_create(&th, NULL, stream_once, c);
    usleep(50000);
    json_t *out = NULL;
    ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK);
    json_decref(out);
    pthread_join(th, NULL);
    connections(k, &after, &resumed1);
    if (k == 1)
      ck_assert_msg(resumed1 - resumed0 >= 1, "the second TLS connection did not resume the session (%ld -> %ld)",
                    resumed0, resumed1);
    zh_error_clear(&e);
    zh_client_free(c);
  }
}
END_TEST

START_TEST(backoff_is_full_jitter_and_bounded) {
  for (unsigned n = 0; n < 12; n++) {
    long upper = 100L << n;
    if (upper > 3000) upper = 3000;
    long lo = upper, hi = 0;
    for (int i = 0; i < 2000; i++) {
      long w = zh_backoff_ms(100, 3000, n);
      ck_assert_msg(w >= 0 && w <= upper, "n=%u: %ld outside [0, %ld]", n, w, upper);
      if (w < lo) lo = w;
      if (w > hi) hi = w;
    }
    /* spread over the whole range, not a fixed delay */
    ck_assert_msg(lo < upper / 4 && hi > upper * 3 / 4, "n=%u: waits in [%ld, %ld] of [0, %ld]", n, lo, hi, upper);
  }
  ck_assert(zh_backoff_ms(100, 3000, 4000) <= 3000); /* no overflow */
  ck_assert_int_eq(zh_backoff_ms(0, 3000, 2), 0);
  for (int i = 0; i < 1000; i++) {
    double r = zh_random();
    ck_assert(r >= 0 && r < 1);
  }
}
END_TEST

/* An auth provider for the test: records what it saw, hands out "tok-N"
 * (N its generation) and moves to a new token after a 401. */
typedef struct test_auth {
  zh_auth base;
  pthread_mutex_t lock;
  uint64_t gen;
  int applied, unauthorized;
  char method[16], url[256], body[256];
  bool saw_content_type, saw_client_header;
} test_auth;

static int ta_apply(zh_auth *a, const zh_auth_request *rq, zh_add_header_fn add, void *ctx, uint64_t *gen,
                    zh_error *e) {
  (void)e;
  test_auth *t = (test_auth *)a;
  char tok[64];
  pthread_mutex_lock(&t->lock);
  t->applied++;
  snprintf(t->method, sizeof t->method, "%s", rq->method);
  snprintf(t->url, sizeof t->url, "%s", rq->url);
  snprintf(t->body, sizeof t->body, "%.*s", (int)rq->body_len, rq->body ? (const char *)rq->body : "");
  for (size_t i = 0; rq->headers[i]; i++) {
    if (!strcmp(rq->headers[i], "Content-Type: application/json")) t->saw_content_type = true;
    if (!strcmp(rq->headers[i], "X-Test: yes")) t->saw_client_header = true;
  }
  *gen = t->gen;
  snprintf(tok, sizeof tok, "Bearer tok-%llu", (unsigned long long)t->gen);
  pthread_mutex_unlock(&t->lock);
  return add(ctx, "Authorization", tok) ? ZH_ENOMEM : ZH_OK;
}

static bool ta_unauthorized(zh_auth *a, uint64_t gen) {
  test_auth *t = (test_auth *)a;
  pthread_mutex_lock(&t->lock);
  t->unauthorized++;
  if (t->gen == gen) t->gen++;
  pthread_mutex_unlock(&t->lock);
  return true;
}

static const zh_auth_ops ta_ops = {ZH_AUTH_OPS_VERSION, ta_apply, ta_unauthorized, NULL};

static void put_tokens(const char *text) {
  char p[600];
  snprintf(p, sizeof p, "%s/tokens", fixture_dir);
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
}

START_TEST(auth_provider_sees_the_request_and_refreshes_on_401) {
  test_auth t = {.base = {&ta_ops}, .gen = 1};
  pthread_mutex_init(&t.lock, NULL);
  static const char *const hdrs[] = {"X-Test: yes", NULL};
  zh_options o = {.base_url = base[0], .headers = hdrs, .auth = &t.base, .service_name = "the fixture"};
  zh_error e = {0};
  zh_client *c = zh_client_new(&o, &e);
  json_t *body = json_pack("{s:s}", "k", "v"), *out = NULL;
  ck_assert_int_eq(zh_json(c, "POST", "/echo", body, &out, &e), ZH_OK);
  json_decref(out);
  json_decref(body);
  ck_assert_str_eq(t.method, "POST");
  ck_assert_msg(!strncmp(t.url, base[0], strlen(base[0])) && !strcmp(t.url + strlen(base[0]), "/echo"), "url %s", t.url);
  ck_assert_str_eq(t.body, "{\"k\":\"v\"}");
  ck_assert(t.saw_content_type && t.saw_client_header);
  /* tok-1 is valid: no 401 */
  put_tokens("tok-1\n");
  ck_assert_int_eq(zh_json(c, "GET", "/tokened", NULL, &out, &e), ZH_OK);
  ck_assert_str_eq(json_string_value(json_object_get(out, "auth")), "Bearer tok-1");
  json_decref(out);
  ck_assert_int_eq(t.unauthorized, 0);
  /* tok-1 revoked, tok-2 valid: one 401, the provider moves on, the retry passes */
  put_tokens("tok-2\n");
  ck_assert_int_eq(zh_json(c, "GET", "/tokened", NULL, &out, &e), ZH_OK);
  ck_assert_str_eq(json_string_value(json_object_get(out, "auth")), "Bearer tok-2");
  json_decref(out);
  ck_assert_int_eq(t.unauthorized, 1);
  /* nothing valid: one refresh and one retry only, then the 401 is the answer */
  put_tokens("");
  ck_assert_int_eq(zh_json(c, "GET", "/tokened", NULL, &out, &e), ZH_EHTTP);
  ck_assert_int_eq(e.status, 401);
  ck_assert_int_eq(t.unauthorized, 2);
  zh_error_clear(&e);
  zh_client_free(c);
  pthread_mutex_destroy(&t.lock);
}
END_TEST

static Suite *http_suite(void) {
  Suite *s = suite_create("http");
  TCase *tc = tcase_create("http");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, json_headers_and_token);
  tcase_add_test(tc, api_errors_carry_status_and_message);
  tcase_add_test(tc, retries_idempotent_requests_only);
  tcase_add_test(tc, streams_and_stops);
  tcase_add_test(tc, unreachable_names_the_address);
  tcase_add_test(tc, tls_verified_by_default);
  tcase_add_test(tc, per_request_and_response_headers);
  tcase_add_test(tc, connections_and_tls_sessions_are_reused);
  tcase_add_test(tc, backoff_is_full_jitter_and_bounded);
  tcase_add_test(tc, auth_provider_sees_the_request_and_refreshes_on_401);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  snprintf(fixture_dir, sizeof fixture_dir, "%s/zorch-http-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(fixture_dir)) {
    perror("mkdtemp");
    return 1;
  }
  char tokens[600];
  snprintf(tokens, sizeof tokens, "%s/tokens", fixture_dir);
  setenv("FIXTURE_TOKENS", tokens, 1);
  server_pid[0] = zt_fixture_start(fixture_dir, "plain", NULL, NULL, base[0], sizeof base[0]);
  zt_make_cert(fixture_dir);
  snprintf(ca_path, sizeof ca_path, "%s/cert.pem", fixture_dir);
  char key[600];
  snprintf(key, sizeof key, "%s/key.pem", fixture_dir);
  server_pid[1] = zt_fixture_start(fixture_dir, "tls", ca_path, key, base[1], sizeof base[1]);
  int rc = zt_run_suite(http_suite());
  stop_servers();
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fixture_dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", fixture_dir);
  return rc;
}
