/* The plugin kit's auth providers (plugins/common/zauth.c) and the
 * Kubernetes client's credentials (zkube.c) against the HTTP fixture
 * (tests/unit/http-fixture.py, whose /tokened accepts only the tokens listed
 * in a file): bearer and basic headers, a token cache that refreshes before
 * expiry and after a 401 (once, however many requests saw it), kubeconfig
 * exec plugins and tokenFiles, and a hammer: many threads sending requests
 * over TLS while tokens expire and are revoked under them.  The old zkube
 * replaced its HTTP client on every refresh while other threads were inside
 * requests on it (a use-after-free under ASan, a crash without); the client
 * now is made once and the token lives in the provider's cache. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zauth.h"
#include "zkube.h"
#include "zorch-check.h"

static pid_t server_pid[2];
static char base[2][128];
static char dir[256], ca64[8192];

static void h_log(const zorch_host *h, int level, const char *m) { (void)h, (void)level, (void)m; }
static void h_error(const zorch_host *h, int code, const char *m) { (void)h, (void)code, (void)m; }
static const zorch_host host = {.version = ZORCH_HOST_VERSION, .size = sizeof(zorch_host), .log = h_log,
                                .error_set = h_error, .alloc = malloc, .free = free};

static void put(const char *name, const char *text) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  ck_assert_msg(f != NULL, "cannot write %s", p);
  fputs(text, f);
  fclose(f);
}

static long counter(void) {
  char p[600];
  snprintf(p, sizeof p, "%s/counter", dir);
  FILE *f = fopen(p, "r");
  long n = 0;
  if (f) {
    if (fscanf(f, "%ld", &n) != 1) n = 0;
    fclose(f);
  }
  return n;
}

/* GET /tokened with client c: the Authorization the server accepted, or NULL. */
static char *tokened(zh_client *c, int *rc, long *status) {
  json_t *out = NULL;
  zh_error e = {0};
  *rc = zh_json(c, "GET", "/tokened", NULL, &out, &e);
  *status = e.status;
  char *a = zkit_strdup(zkit_jstr(out, "auth"));
  json_decref(out);
  zh_error_clear(&e);
  return a;
}

static zh_client *client_with(int k, zh_auth *a) {
  char ca[600];
  snprintf(ca, sizeof ca, "%s/cert.pem", dir);
  zh_options o = {.base_url = base[k], .ca_file = ca, .auth = a, .service_name = "the fixture"};
  zh_error e = {0};
  zh_client *c = zh_client_new(&o, &e);
  ck_assert_msg(c != NULL, "%s", e.message);
  return c;
}

START_TEST(bearer_and_basic) {
  zh_auth *a = NULL;
  zt_ok(zauth_bearer_new(&a, &host, "abc"));
  put("tokens", "abc\n");
  zh_client *c = client_with(0, a);
  int rc;
  long st;
  char *got = tokened(c, &rc, &st);
  ck_assert_int_eq(rc, ZH_OK);
  ck_assert_str_eq(got, "Bearer abc");
  free(got);
  /* a fixed token cannot be refreshed: the 401 is final, asked once */
  put("tokens", "");
  got = tokened(c, &rc, &st);
  ck_assert(rc == ZH_EHTTP && st == 401 && !got);
  zh_client_free(c);
  zh_auth_free(a);

  zt_ok(zauth_basic_new(&a, &host, "ann", "s3cret:x"));
  c = client_with(0, a);
  json_t *out = NULL;
  zh_error e = {0};
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK);
  ck_assert_str_eq(zkit_jstr(out, "auth"), "Basic YW5uOnMzY3JldDp4"); /* base64("ann:s3cret:x") */
  json_decref(out);
  zh_client_free(c);
  zh_auth_free(a);
  char *b = zauth_base64("ab", 2);
  ck_assert_str_eq(b, "YWI=");
  free(b);
}
END_TEST

/* A token source for the cache tests: "src-N", each expiring `ttl` s after it was fetched. */
typedef struct counting_src {
  int fetches, fail_from;
  time_t ttl;
} counting_src;

static int counting_fetch(void *p, bool force, char **token, time_t *expires_at, zh_error *e) {
  (void)force;
  counting_src *s = p;
  s->fetches++;
  if (s->fail_from && s->fetches >= s->fail_from) {
    snprintf(e->message, sizeof e->message, "the token service is down");
    return ZH_EAUTH;
  }
  *token = zkit_asprintf("src-%d", s->fetches);
  *expires_at = s->ttl ? time(NULL) + s->ttl : 0;
  return ZH_OK;
}

START_TEST(token_cache_refreshes_before_expiry) {
  counting_src s = {.ttl = 12};
  zauth_token_source src = {.fetch = counting_fetch, .src = &s, .refresh_early_s = 10};
  zh_auth *a = NULL;
  zt_ok(zauth_token_new(&a, &host, &src));
  zh_client *c = client_with(0, a);
  json_t *out = NULL;
  zh_error e = {0};
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK); /* first use fetches */
  ck_assert_str_eq(zkit_jstr(out, "auth"), "Bearer src-1");
  json_decref(out);
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK); /* 12 s left: kept */
  ck_assert_str_eq(zkit_jstr(out, "auth"), "Bearer src-1");
  json_decref(out);
  ck_assert_int_eq(s.fetches, 1);
  sleep(3); /* now within 10 s of its expiry: refreshed before it expires */
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK);
  ck_assert_str_eq(zkit_jstr(out, "auth"), "Bearer src-2");
  json_decref(out);
  /* a refresh that fails while the token is still valid keeps it */
  s.fail_from = 3;
  sleep(3);
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_OK);
  ck_assert_str_eq(zkit_jstr(out, "auth"), "Bearer src-2");
  json_decref(out);
  zh_client_free(c);
  zh_auth_free(a);
  /* with no valid token left, the failure is the request's, with the source's reason */
  counting_src s2 = {.fail_from = 1};
  src.src = &s2;
  zt_ok(zauth_token_new(&a, &host, &src));
  c = client_with(0, a);
  ck_assert_int_eq(zh_json(c, "GET", "/json", NULL, &out, &e), ZH_EAUTH);
  ck_assert_msg(strstr(e.message, "the token service is down") && strstr(e.message, "no credentials"),
                "message: %s", e.message);
  zh_error_clear(&e);
  zh_client_free(c);
  zh_auth_free(a);
}
END_TEST

static void kubeconfig(const char *user_yaml) {
  char kc[16384];
  snprintf(kc, sizeof kc,
           "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: s\n  cluster:\n"
           "    server: %s\n    certificate-authority-data: %s\ncontexts:\n- name: c\n"
           "  context: {cluster: s, user: u}\nusers:\n- name: u\n  user:\n%s",
           base[1], ca64, user_yaml);
  put("kubeconfig", kc);
}

static zk_client *kube(void) {
  char kpath[600];
  snprintf(kpath, sizeof kpath, "%s/kubeconfig", dir);
  zk_load_options lo = {.kubeconfig = kpath, .incluster = 0};
  zk_client *k = NULL;
  int rc = zk_client_new(&k, &host, &lo);
  ck_assert_msg(rc == ZORCH_OK, "zk_client_new: %s", zkit_error_message());
  return k;
}

static void exec_kubeconfig(void) {
  char *script = zt_src_path("tests/unit/data/exec-credential.sh");
  char user[2048];
  snprintf(user, sizeof user,
           "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: %s\n"
           "      env:\n      - {name: ZT_AUTH_DIR, value: %s}\n",
           script, dir);
  free(script);
  kubeconfig(user);
}

static const char *kube_auth(zk_client *k, int *rc, json_t **keep) {
  *keep = NULL;
  *rc = zk_json(k, "GET", "/tokened", NULL, keep);
  return zkit_jstr(*keep, "auth");
}

START_TEST(kubeconfig_exec_and_token_file) {
  put("tokens", "");
  put("counter", "0");
  put("expiry", "3600");
  exec_kubeconfig();
  zk_client *k = kube(); /* loading runs the plugin once: tok-1 */
  ck_assert_int_eq(counter(), 1);
  int rc;
  json_t *keep;
  ck_assert_str_eq(kube_auth(k, &rc, &keep), "Bearer tok-1");
  json_decref(keep);
  ck_assert_int_eq(counter(), 1); /* valid for an hour: not run again */
  put("tokens", "");              /* revoked: a 401, the plugin runs, the retry passes */
  ck_assert_str_eq(kube_auth(k, &rc, &keep), "Bearer tok-2");
  json_decref(keep);
  ck_assert_int_eq(counter(), 2);
  put("tokens", ""); /* revoked, and the plugin's next token too: a clear 401 */
  put("expiry", "3600");
  put("refuse", ""); /* the plugin's tok-3 is not valid either */
  ck_assert_ptr_null(kube_auth(k, &rc, &keep));
  json_decref(keep);
  char refuse[600];
  snprintf(refuse, sizeof refuse, "%s/refuse", dir);
  unlink(refuse);
  ck_assert_int_eq(rc, ZORCH_EINVALID);
  ck_assert_msg(strstr(zkit_error_message(), "401") && strstr(zkit_error_message(), "rejected the credentials"),
                "message: %s", zkit_error_message());
  zk_client_free(k);

  /* a tokenFile is read again after a 401 (a rotated service-account token) */
  char user[1024];
  snprintf(user, sizeof user, "    tokenFile: %s/token-file\n", dir);
  put("token-file", "tf-1\n");
  put("tokens", "tf-1\n");
  kubeconfig(user);
  k = kube();
  ck_assert_str_eq(kube_auth(k, &rc, &keep), "Bearer tf-1");
  json_decref(keep);
  put("token-file", "tf-2\n");
  put("tokens", "tf-2\n");
  ck_assert_str_eq(kube_auth(k, &rc, &keep), "Bearer tf-2");
  json_decref(keep);
  zk_client_free(k);
}
END_TEST

static zk_client *hammered;
static atomic_int failures, requests;

static void *hammer(void *p) {
  int n = (int)(long)p;
  for (int i = 0; i < n; i++) {
    json_t *out = NULL;
    int rc = zk_json(hammered, "GET", "/tokened", NULL, &out);
    const char *a = zkit_jstr(out, "auth");
    char *end = NULL;
    long t = a && !strncmp(a, "Bearer tok-", 11) ? strtol(a + 11, &end, 10) : -1;
    if (rc != ZORCH_OK || t < 1 || *end) {
      fprintf(stderr, "hammer: request failed (rc %d, auth %s): %s\n", rc, a ? a : "-", zkit_error_message());
      atomic_fetch_add(&failures, 1);
    }
    atomic_fetch_add(&requests, 1);
    json_decref(out);
  }
  return NULL;
}

static volatile int revoking;

static void *revoker(void *p) {
  (void)p;
  for (int i = 0; i < 4 && revoking; i++) {
    usleep(400000);
    put("tokens", ""); /* every token issued so far is refused from now on */
  }
  return NULL;
}

START_TEST(refresh_under_concurrent_requests) {
  put("tokens", "");
  put("counter", "0");
  put("expiry", "5"); /* within the 10 s refresh margin: every request refreshes */
  exec_kubeconfig();
  hammered = kube();
  enum { THREADS = 8 };
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, hammer, (void *)30L);
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  ck_assert_msg(atomic_load(&failures) == 0, "%d of %d requests failed while tokens expired", atomic_load(&failures),
                atomic_load(&requests));
  /* long-lived tokens revoked under the requests: the 401s force refreshes */
  put("expiry", "3600");
  long before = counter();
  revoking = 1;
  pthread_t rv;
  pthread_create(&rv, NULL, revoker, NULL);
  for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, hammer, (void *)60L);
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  revoking = 0;
  pthread_join(rv, NULL);
  ck_assert_msg(atomic_load(&failures) == 0, "%d of %d requests failed while tokens were revoked",
                atomic_load(&failures), atomic_load(&requests));
  /* one refresh per revocation (and perhaps one more for a request still in
   * flight at the end): not one per request that saw the 401 */
  long runs = counter() - before;
  ck_assert_msg(runs >= 1 && runs <= 8, "%ld plugin runs for 4 revocations", runs);
  zk_client_free(hammered);
}
END_TEST

static Suite *auth_suite(void) {
  Suite *s = suite_create("auth");
  TCase *tc = tcase_create("auth");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, bearer_and_basic);
  tcase_add_test(tc, token_cache_refreshes_before_expiry);
  tcase_add_test(tc, kubeconfig_exec_and_token_file);
  tcase_add_test(tc, refresh_under_concurrent_requests);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  snprintf(dir, sizeof dir, "%s/zorch-auth-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  char tokens[600], cert[600], key[600], cmd[2048];
  snprintf(tokens, sizeof tokens, "%s/tokens", dir);
  setenv("FIXTURE_TOKENS", tokens, 1);
  FILE *f = fopen(tokens, "w");
  if (f) fclose(f);
  server_pid[0] = zt_fixture_start(dir, "plain", NULL, NULL, base[0], sizeof base[0]);
  zt_make_cert(dir);
  snprintf(cert, sizeof cert, "%s/cert.pem", dir);
  snprintf(key, sizeof key, "%s/key.pem", dir);
  server_pid[1] = zt_fixture_start(dir, "tls", cert, key, base[1], sizeof base[1]);
  /* the kubeconfigs carry the CA as data, as most do */
  snprintf(cmd, sizeof cmd, "base64 -w0 '%s' > '%s/ca.b64'", cert, dir);
  char cap[600];
  snprintf(cap, sizeof cap, "%s/ca.b64", dir);
  f = system(cmd) == 0 ? fopen(cap, "r") : NULL;
  if (!f || !fgets(ca64, sizeof ca64, f)) {
    fprintf(stderr, "cannot encode the CA\n");
    return 1;
  }
  fclose(f);
  int rc = zt_run_suite(auth_suite());
  zt_fixture_stop(server_pid[0]);
  zt_fixture_stop(server_pid[1]);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
  return rc;
}
