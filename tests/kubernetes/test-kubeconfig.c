/* zorch — the Kubernetes client configuration (plugins/common/zkconfig.c):
 * kubeconfig files as kubectl reads them, exec credential plugins and the
 * in-cluster service account. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zkconfig.h"

static char dir[256];

static void put(const char *name, const char *text, int mode) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
  chmod(p, (mode_t)mode);
}

static char *path(const char *name) {
  static char p[4][512];
  static int i;
  i = (i + 1) % 4;
  snprintf(p[i], sizeof p[i], "%s/%s", dir, name);
  return p[i];
}

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/zorch-kubeconfig-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  unsetenv("KUBECONFIG");
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  setenv("HOME", dir, 1);
}

static void teardown(void) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

#define BASE                                                                   \
  "apiVersion: v1\nkind: Config\n"                                             \
  "clusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:6443/\n"    \
  "    certificate-authority: ca.pem\n"                                        \
  "- name: c2\n  cluster:\n    server: https://example.test\n"                 \
  "    insecure-skip-tls-verify: true\n"                                       \
  "contexts:\n- name: one\n  context: {cluster: c1, user: u1, namespace: ml}\n" \
  "- name: two\n  context: {cluster: c2, user: u2}\n"                          \
  "users:\n- name: u1\n  user:\n    token: tok-1\n"                            \
  "- name: u2\n  user:\n    client-certificate-data: Q0VSVA==\n"               \
  "    client-key-data: S0VZ\n"

START_TEST(current_context_token_relative_ca) {
  put("ca.pem", "PEM", 0644);
  put("config", BASE "current-context: one\n", 0600);
  zk_config c;
  char err[1024];
  zk_load_options o = {.kubeconfig = path("config"), .incluster = -1};
  ck_assert_msg(zk_config_load(&c, &o, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(c.server, "https://10.0.0.1:6443");
  ck_assert_str_eq(c.namespace_, "ml");
  ck_assert_str_eq(c.context, "one");
  ck_assert_str_eq(c.token, "tok-1");
  ck_assert_str_eq(c.ca_file, path("ca.pem")); /* relative to the kubeconfig's directory */
  ck_assert(!c.insecure);
  ck_assert_ptr_null(c.cert_pem);
  zk_config_free(&c);
}
END_TEST

START_TEST(other_context_cert_data_and_namespace_override) {
  put("config", BASE "current-context: one\n", 0600);
  zk_config c;
  char err[1024];
  zk_load_options o = {.kubeconfig = path("config"), .context = "two", .namespace_ = "prod", .incluster = 0};
  ck_assert_msg(zk_config_load(&c, &o, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(c.server, "https://example.test");
  ck_assert(c.insecure);
  ck_assert_str_eq(c.cert_pem, "CERT");
  ck_assert_str_eq(c.key_pem, "KEY");
  ck_assert_ptr_null(c.token);
  ck_assert_str_eq(c.namespace_, "prod");
  zk_config_free(&c);
}
END_TEST

/* KUBECONFIG=a:b: the first file to set current-context wins, entries are
 * looked up in every file (first match wins), missing files are skipped. */
START_TEST(kubeconfig_list_merges_first_wins) {
  put("a", "apiVersion: v1\nkind: Config\ncurrent-context: mine\n"
           "contexts:\n- name: mine\n  context: {cluster: shared, user: me}\n"
           "users:\n- name: me\n  user:\n    tokenFile: tok.txt\n",
      0600);
  put("b", "apiVersion: v1\nkind: Config\ncurrent-context: other\n"
           "clusters:\n- name: shared\n  cluster: {server: 'https://b.test:443'}\n"
           "users:\n- name: me\n  user: {token: from-b}\n",
      0600);
  put("tok.txt", "  file-token\n", 0600);
  char list[1024];
  snprintf(list, sizeof list, "%s:%s:%s", path("missing"), path("a"), path("b"));
  setenv("KUBECONFIG", list, 1);
  zk_config c;
  char err[1024];
  ck_assert_msg(zk_config_load(&c, NULL, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(c.context, "mine");
  ck_assert_str_eq(c.server, "https://b.test:443");
  ck_assert_str_eq(c.token, "file-token"); /* a's user, not b's */
  ck_assert_str_eq(c.token_file, path("tok.txt"));
  ck_assert_str_eq(c.namespace_, "default");
  /* tokenFile is re-read on refresh (rotated tokens) */
  put("tok.txt", "rotated\n", 0600);
  ck_assert(zk_config_refresh(&c, false, err, sizeof err) == 0);
  ck_assert_str_eq(c.token, "rotated");
  zk_config_free(&c);
  unsetenv("KUBECONFIG");
}
END_TEST

static void exec_config(const char *api, const char *status_json) {
  char script[2048];
  snprintf(script, sizeof script,
           "#!/bin/sh\n"
           "echo \"$@\" > %s/exec-args\n"
           "echo \"$KUBERNETES_EXEC_INFO\" > %s/exec-info\n"
           "echo \"$CLOUD_PROJECT\" > %s/exec-env\n"
           "printf '{\"apiVersion\":\"%s\",\"kind\":\"ExecCredential\",\"status\":%s}'\n",
           dir, dir, dir, api, status_json);
  put("auth-plugin", script, 0755);
  char cfg[2048];
  snprintf(cfg, sizeof cfg,
           "apiVersion: v1\nkind: Config\ncurrent-context: gke\n"
           "clusters:\n- name: g\n  cluster: {server: 'https://34.1.2.3', certificate-authority-data: UEVN}\n"
           "contexts:\n- name: gke\n  context: {cluster: g, user: g}\n"
           "users:\n- name: g\n  user:\n    exec:\n      apiVersion: %s\n      command: ./auth-plugin\n"
           "      args: [get-token, --cluster, g]\n      env:\n      - {name: CLOUD_PROJECT, value: proj-7}\n"
           "      provideClusterInfo: true\n      interactiveMode: Never\n"
           "      installHint: install the auth plugin\n",
           api);
  put("config", cfg, 0600);
}

static char *slurp(const char *p) {
  static char buf[4096];
  FILE *f = fopen(p, "r");
  ck_assert_ptr_nonnull(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

START_TEST(exec_plugin_v1_token_like_gke) {
  exec_config("client.authentication.k8s.io/v1",
              "{\"token\":\"exec-tok\",\"expirationTimestamp\":\"2099-01-01T00:00:00Z\"}");
  zk_config c;
  char err[1024];
  zk_load_options o = {.kubeconfig = path("config"), .incluster = 0};
  ck_assert_msg(zk_config_load(&c, &o, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(c.token, "exec-tok");
  ck_assert_str_eq(c.ca_pem, "PEM");
  ck_assert(c.exec_expiry > 4000000000);
  ck_assert_str_eq(slurp(path("exec-args")), "get-token --cluster g\n");
  ck_assert_str_eq(slurp(path("exec-env")), "proj-7\n");
  const char *info = slurp(path("exec-info"));
  ck_assert_msg(strstr(info, "\"kind\":\"ExecCredential\"") && strstr(info, "client.authentication.k8s.io/v1") &&
                    strstr(info, "\"server\":\"https://34.1.2.3\""),
                "KUBERNETES_EXEC_INFO: %s", info);
  zk_config_free(&c);
}
END_TEST

START_TEST(exec_plugin_v1beta1_client_cert_like_eks) {
  exec_config("client.authentication.k8s.io/v1beta1",
              "{\"clientCertificateData\":\"-----CERT-----\",\"clientKeyData\":\"-----KEY-----\"}");
  zk_config c;
  char err[1024];
  zk_load_options o = {.kubeconfig = path("config"), .incluster = 0};
  ck_assert_msg(zk_config_load(&c, &o, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(c.cert_pem, "-----CERT-----");
  ck_assert_str_eq(c.key_pem, "-----KEY-----");
  ck_assert_ptr_null(c.token);
  zk_config_free(&c);
}
END_TEST

START_TEST(exec_plugin_failure_says_why) {
  exec_config("client.authentication.k8s.io/v1", "{}");
  put("auth-plugin", "#!/bin/sh\necho 'credentials expired, run login' >&2\nexit 3\n", 0755);
  zk_config c;
  char err[1024];
  zk_load_options o = {.kubeconfig = path("config"), .incluster = 0};
  ck_assert(zk_config_load(&c, &o, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "exited with status 3") && strstr(err, "credentials expired, run login") &&
                    strstr(err, "install the auth plugin"),
                "%s", err);
  /* the plugin answers v1 while the kubeconfig asks for v1beta1 */
  exec_config("client.authentication.k8s.io/v1", "{\"token\":\"x\"}");
  char cfg[4096];
  snprintf(cfg, sizeof cfg, "%s", slurp(path("config")));
  char *p = strstr(cfg, "k8s.io/v1\n");
  ck_assert_ptr_nonnull(p);
  char fixed[4096];
  snprintf(fixed, sizeof fixed, "%.*sk8s.io/v1beta1\n%s", (int)(p - cfg), cfg, p + strlen("k8s.io/v1\n"));
  put("config", fixed, 0600);
  ck_assert(zk_config_load(&c, &o, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "apiVersion 'client.authentication.k8s.io/v1'") &&
                    strstr(err, "asks for 'client.authentication.k8s.io/v1beta1'"),
                "%s", err);
}
END_TEST

START_TEST(errors_name_the_problem) {
  zk_config c;
  char err[1024];
  zk_load_options o = {.kubeconfig = path("nope"), .incluster = 0};
  ck_assert(zk_config_load(&c, &o, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "no kubeconfig found") && strstr(err, path("nope")), "%s", err);

  put("config", "apiVersion: v1\nclusters: [\n", 0600);
  o.kubeconfig = path("config");
  ck_assert(zk_config_load(&c, &o, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "not valid YAML") && strstr(err, "line"), "%s", err);

  put("config", BASE "current-context: one\n", 0600);
  o.context = "three";
  ck_assert(zk_config_load(&c, &o, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "context 'three' not found"), "%s", err);

  o.context = NULL;
  put("config", BASE, 0600);
  ck_assert(zk_config_load(&c, &o, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "no current-context"), "%s", err);

  put("config", BASE "current-context: one\n", 0600); /* ca.pem missing */
  ck_assert(zk_config_load(&c, &o, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "certificate-authority") && strstr(err, "ca.pem"), "%s", err);
}
END_TEST

START_TEST(incluster_service_account) {
  mkdir(path("sa"), 0755);
  put("sa/token", "sa-token\n", 0600);
  put("sa/ca.crt", "PEM", 0644);
  put("sa/namespace", "pipelines", 0644);
  setenv("ZORCH_K8S_SERVICEACCOUNT_DIR", path("sa"), 1);
  zk_config c;
  char err[1024];
  zk_load_options o = {.incluster = 1};
  ck_assert(zk_config_load(&c, &o, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "KUBERNETES_SERVICE_HOST"), "%s", err);
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  ck_assert_msg(zk_config_load(&c, &o, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(c.server, "https://10.96.0.1:443");
  ck_assert_str_eq(c.token, "sa-token");
  ck_assert_str_eq(c.ca_file, path("sa/ca.crt"));
  ck_assert_str_eq(c.namespace_, "pipelines");
  zk_config_free(&c);
  /* auto (-1): no kubeconfig anywhere -> in-cluster, like kubectl */
  o.incluster = -1;
  o.kubeconfig = path("none");
  ck_assert_msg(zk_config_load(&c, &o, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(c.server, "https://10.96.0.1:443");
  zk_config_free(&c);
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  unsetenv("ZORCH_K8S_SERVICEACCOUNT_DIR");
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("kubeconfig");
  TCase *tc = tcase_create("kubeconfig");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, current_context_token_relative_ca);
  tcase_add_test(tc, other_context_cert_data_and_namespace_override);
  tcase_add_test(tc, kubeconfig_list_merges_first_wins);
  tcase_add_test(tc, exec_plugin_v1_token_like_gke);
  tcase_add_test(tc, exec_plugin_v1beta1_client_cert_like_eks);
  tcase_add_test(tc, exec_plugin_failure_says_why);
  tcase_add_test(tc, errors_name_the_problem);
  tcase_add_test(tc, incluster_service_account);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
