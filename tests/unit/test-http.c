/* The plugin kit's HTTP client (plugins/common/zhttp.c) against a real
 * HTTP(S) server (tests/unit/http-fixture.py): JSON in and out, headers and
 * bearer tokens, API error bodies, retries with backoff for idempotent
 * requests only, Retry-After, streaming and stopping a stream, TLS verified
 * by default (CA as a file or as PEM text). */
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

static void start_server(int k, const char *cert, const char *key) {
  char portfile[600];
  snprintf(portfile, sizeof portfile, "%s/port%d", fixture_dir, k);
  char *fixture = zt_src_path("tests/unit/http-fixture.py");
  pid_t pid = fork();
  if (pid == 0) {
    if (cert) execl("/usr/bin/python3", "python3", fixture, portfile, cert, key, (char *)NULL);
    else execl("/usr/bin/python3", "python3", fixture, portfile, (char *)NULL);
    _exit(127);
  }
  free(fixture);
  server_pid[k] = pid;
  for (int i = 0; i < 200; i++) {
    FILE *f = fopen(portfile, "r");
    int port = 0;
    if (f) {
      if (fscanf(f, "%d", &port) != 1) port = 0;
      fclose(f);
    }
    if (port) {
      snprintf(base[k], sizeof base[k], "%s://127.0.0.1:%d", cert ? "https" : "http", port);
      return;
    }
    usleep(25000);
  }
  fprintf(stderr, "the HTTP fixture server did not start\n");
  exit(1);
}

static void stop_servers(void) {
  for (int k = 0; k < 2; k++)
    if (server_pid[k] > 0) {
      kill(server_pid[k], SIGTERM);
      waitpid(server_pid[k], NULL, 0);
      server_pid[k] = 0;
    }
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


static void start_tls_server(void) {
  const char *d = fixture_dir;
  char cmd[4096];
  snprintf(ca_path, sizeof ca_path, "%s/cert.pem", d);
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
           "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem 2>/dev/null",
           d, d);
  if (system(cmd) != 0) {
    fprintf(stderr, "openssl could not make a certificate\n");
    exit(1);
  }
  char key[600];
  snprintf(key, sizeof key, "%s/key.pem", d);
  start_server(1, ca_path, key);
}

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
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  snprintf(fixture_dir, sizeof fixture_dir, "%s/zorch-http-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(fixture_dir)) {
    perror("mkdtemp");
    return 1;
  }
  start_server(0, NULL, NULL);
  start_tls_server();
  int rc = zt_run_suite(http_suite());
  stop_servers();
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fixture_dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", fixture_dir);
  return rc;
}
