/* The kubernetes and local_docker plugins as built, loaded with a fake host
 * and launching steps against fake API servers (tests/unit/http-fixture.py
 * records every container and pod created):
 *  - a step launched against a store the containers reach over the network
 *    (a launch of version 2 with store_uri and store_env, no store_path)
 *    gets the store's URI in its command and the credential references in
 *    its environment, and NO store volume: no bind in the container's
 *    HostConfig, no volume or volume mount in the pod's spec;
 *  - a step launched against a local store directory gets it mounted at
 *    its own path, as before;
 *  - resources and settings reach the bodies through the kit's one rule
 *    (the config's pod settings / defaults under the step's). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zorch/plugin.h>

#include "zorch-check.h"

static char fixture_dir[256], base[128];
static pid_t server;

/* ---- the fake host -------------------------------------------------------------------------- */

static const zorch_flavor_desc *flavor;
static void *flavor_payload;
static const zorch_step_launcher *launcher;
static void *launcher_data;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int dones;
static char last_error[2048], config[4096];

static void h_log(const zorch_host *h, int level, const char *m) { (void)h, (void)level, (void)m; }
static void h_error(const zorch_host *h, int code, const char *m) {
  (void)h, (void)code;
  snprintf(last_error, sizeof last_error, "%s", m);
}
static int h_add_flavor(zorch_registrar *reg, const zorch_flavor_desc *d, void *payload) {
  (void)reg;
  if (strcmp(d->type, ZORCH_COMPONENT_ORCHESTRATOR)) return ZORCH_OK; /* local_docker's image builder */
  flavor = d;
  flavor_payload = payload;
  return ZORCH_OK;
}
static const char deployment[] =
    "{\"zorch_deployment\":1,\"pipeline\":\"net\",\"run\":{\"id\":\"0123456789abcdef\",\"name\":\"net-1\"},"
    "\"entrypoint\":{\"function\":[\"/bin/prog\",\"{step}\"],\"command\":[\"/bin/zorch\",\"step\",\"run\",\"{step}\"]},"
    "\"defaults\":{\"settings\":{}},\"steps\":[{\"name\":\"train\",\"kind\":\"command\",\"command\":[\"true\"]}]}";
static const char *h_get(const zorch_submission *sub, const char *key) {
  (void)sub;
  if (!strcmp(key, "config")) return config;
  if (!strcmp(key, "run_id")) return "0123456789abcdef";
  if (!strcmp(key, "run_name")) return "net-1";
  if (!strcmp(key, "pipeline")) return "net";
  if (!strcmp(key, "deployment")) return deployment;
  if (!strcmp(key, "zorch_command")) return "/bin/zorch";
  return NULL; /* no store_path: the store is not a local directory */
}
static int h_set_meta(zorch_submission *s, const char *k, const char *v) {
  (void)s, (void)k, (void)v;
  return ZORCH_OK;
}
static int h_start_remote(void **out, zorch_submission *sub, const char *opts, const zorch_step_launcher *ops,
                          void *data) {
  (void)sub, (void)opts;
  launcher = ops;
  launcher_data = data;
  *out = (void *)0x1;
  return ZORCH_OK;
}
static int h_step_done(void *exec, uint64_t id, int code, const char *msg) {
  (void)exec, (void)id, (void)code, (void)msg;
  pthread_mutex_lock(&lock);
  dones++;
  pthread_mutex_unlock(&lock);
  return ZORCH_OK;
}
static int h_wait(void *h, int t) {
  (void)h, (void)t;
  return ZORCH_OK;
}
static int h_cancel(void *h) {
  (void)h;
  return ZORCH_OK;
}
static void h_release(void *h) { (void)h; }

static const zorch_host host = {.version = 3, .size = sizeof(zorch_host), .log = h_log, .error_set = h_error,
                                .alloc = malloc, .free = free, .add_flavor = h_add_flavor, .submission_get = h_get,
                                .submission_set_metadata = h_set_meta, .executor_wait = h_wait,
                                .executor_cancel = h_cancel, .executor_release = h_release,
                                .executor_start_remote = h_start_remote, .executor_step_done = h_step_done};

/* ---- driving a plugin ------------------------------------------------------------------------- */

static void *load(const char *rel) {
  char *path = zt_build_path(rel);
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  ck_assert_msg(dl != NULL, "dlopen %s: %s", path, dlerror());
  free(path);
  zorch_plugin_describe_fn describe = (zorch_plugin_describe_fn)dlsym(dl, ZORCH_PLUGIN_ENTRY_SYMBOL);
  const zorch_plugin_desc *d = describe(ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR);
  void *ctx = NULL;
  ck_assert_int_eq(d->init(&host, NULL, &ctx), ZORCH_OK);
  ck_assert_msg(flavor && (flavor->flags & ZORCH_FLAVOR_LOCAL_STORE) && flavor->step_settings_schema,
                "the flavor declares LOCAL_STORE and a step settings schema");
  return dl;
}

static json_t *recorded(size_t *n) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "%s/recorded", base);
  const char *argv[] = {"curl", "-s", cmd, NULL};
  char *out = NULL;
  ck_assert_int_eq(zt_run(&out, argv, NULL), 0);
  json_t *j = json_loads(out, 0, NULL);
  free(out);
  json_t *b = json_incref(json_object_get(j, "bodies"));
  json_decref(j);
  *n = json_array_size(b);
  return b;
}

static const char *const store_env[] = {"AWS_PROFILE=zorch-ci", "AWS_ENDPOINT_URL=http://minio:9000", NULL};
static const char *const argv_net[] = {"/bin/zorch", "step", "run", "train", "--zorch-store", "s3://bucket/zorch", NULL};
static const char *const step_env[] = {"MY_SETTING=1", NULL};

static zorch_step_launch launch_of(uint64_t id, const char *store_path) {
  zorch_step_launch L = {.version = ZORCH_STEP_LAUNCH_VERSION, .executor = (void *)0x1, .attempt_id = id,
                         .run_id = "0123456789abcdef", .run_name = "net-1", .pipeline = "net", .step = "train",
                         .kind = "command", .attempt = 1, .argv = argv_net, .env = step_env,
                         .settings_json = "{\"resources\":{\"cpu\":0.5,\"memory\":67108864},"
                                          "\"flavor\":{\"kubernetes\":{\"labels\":{\"team\":\"ml\"}},"
                                          "\"local_docker\":{\"environment\":{\"FROM_STEP\":\"s\"}}}}",
                         .store_path = store_path, .store_uri = store_path ? "file:///srv/store" : "s3://bucket/zorch",
                         .store_env = store_path ? NULL : store_env};
  return L;
}

static bool has_string(json_t *arr, const char *s) {
  size_t i;
  json_t *x;
  json_array_foreach(arr, i, x) if (json_is_string(x) && !strcmp(json_string_value(x), s)) return true;
  return false;
}

static bool has_env(json_t *list, const char *name, const char *value) {
  size_t i;
  json_t *x;
  json_array_foreach(list, i, x) if (!strcmp(json_string_value(json_object_get(x, "name")) ?: "", name) &&
                                     !strcmp(json_string_value(json_object_get(x, "value")) ?: "", value)) return true;
  return false;
}

/* Load the plugin, submit a run, launch the same step twice: against a store
 * reached over the network, then against a local store directory.  *before:
 * what the fixture had recorded until then. */
static void *submit_and_launch(const char *rel, void **run, size_t *before) {
  void *dl = load(rel);
  const zorch_orchestrator_ops *ops = flavor->ops;
  *run = NULL;
  int rc = ops->submit(run, flavor_payload, (zorch_submission *)0x2);
  ck_assert_msg(rc == ZORCH_OK, "submit: %s", last_error);
  json_decref(recorded(before));
  zorch_step_launch L = launch_of(1, NULL);
  ck_assert_msg(launcher->launch(launcher_data, &L) == ZORCH_OK, "launch: %s", last_error);
  L = launch_of(2, "/srv/store");
  ck_assert_msg(launcher->launch(launcher_data, &L) == ZORCH_OK, "launch: %s", last_error);
  return dl;
}

START_TEST(local_docker_network_store) {
  snprintf(config, sizeof config, "{\"docker_host\":\"tcp://%s\",\"image\":\"img:1\",\"environment\":{\"FROM_CFG\":"
           "\"c\"}}", base + strlen("http://"));
  void *run;
  size_t before;
  void *dl = submit_and_launch("plugins/local_docker/zorch-flavor-local_docker.so", &run, &before);
  for (int i = 0; i < 500 && dones < 2; i++) usleep(10000);
  ck_assert_int_eq(dones, 2);
  ((const zorch_orchestrator_ops *)flavor->ops)->release(run);
  size_t n;
  json_t *bodies = recorded(&n);
  ck_assert_uint_eq(n, before + 2);
  json_t *net = NULL, *local = NULL;
  for (size_t i = before; i < n; i++) {
    json_t *b = json_object_get(json_array_get(bodies, i), "body");
    json_t *binds = json_object_get(json_object_get(b, "HostConfig"), "Binds");
    if (json_array_size(binds)) local = b;
    else net = b;
  }
  ck_assert_msg(net && local, "one container with a bind and one without");
  /* the network store: its URI in the command, its credential references in the env, no bind */
  ck_assert(has_string(json_object_get(net, "Cmd"), "s3://bucket/zorch"));
  json_t *env = json_object_get(net, "Env");
  ck_assert(has_string(env, "AWS_PROFILE=zorch-ci") && has_string(env, "AWS_ENDPOINT_URL=http://minio:9000"));
  ck_assert_ptr_null(json_object_get(json_object_get(net, "HostConfig"), "Binds"));
  ck_assert_ptr_null(json_object_get(net, "Volumes"));
  ck_assert_ptr_null(json_object_get(json_object_get(net, "HostConfig"), "Mounts"));
  /* the settings rule: the step's flavor environment over the config's */
  ck_assert(has_string(env, "FROM_CFG=c") && has_string(env, "FROM_STEP=s") && has_string(env, "MY_SETTING=1"));
  ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(net, "HostConfig"), "Memory")), 67108864);
  ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(net, "HostConfig"), "NanoCpus")), 500000000);
  /* a local store directory: bound at its own path, no credential references */
  ck_assert(has_string(json_object_get(json_object_get(local, "HostConfig"), "Binds"), "/srv/store:/srv/store:rw"));
  ck_assert(!has_string(json_object_get(local, "Env"), "AWS_PROFILE=zorch-ci"));
  json_decref(bodies);
  dlclose(dl);
}
END_TEST

START_TEST(kubernetes_network_store) {
  char kc[1024], kpath[600];
  snprintf(kpath, sizeof kpath, "%s/kubeconfig", fixture_dir);
  snprintf(kc, sizeof kc,
           "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: s\n  cluster: {server: '%s'}\n"
           "contexts:\n- name: c\n  context: {cluster: s, user: u, namespace: default}\nusers:\n- name: u\n"
           "  user: {token: t0}\n", base);
  FILE *f = fopen(kpath, "w");
  fputs(kc, f);
  fclose(f);
  snprintf(config, sizeof config, "{\"mode\":\"client\",\"kubeconfig\":\"%s\",\"image\":\"img:1\","
           "\"pod_settings\":{\"labels\":{\"from\":\"config\"},\"node_selector\":{\"pool\":\"cpu\"}}}", kpath);
  void *run;
  size_t before;
  void *dl = submit_and_launch("plugins/kubernetes/zorch-flavor-kubernetes.so", &run, &before);
  size_t n;
  json_t *bodies = recorded(&n);
  ck_assert_uint_eq(n, before + 2);
  json_t *net = json_object_get(json_array_get(bodies, before), "body");
  json_t *local = json_object_get(json_array_get(bodies, before + 1), "body");
  ck_assert_str_eq(json_string_value(json_object_get(net, "kind")), "Pod");
  json_t *spec = json_object_get(net, "spec");
  json_t *c = json_array_get(json_object_get(spec, "containers"), 0);
  /* the network store: the URI in the command, credential references in the env, no volume */
  ck_assert(has_string(json_object_get(c, "command"), "s3://bucket/zorch"));
  ck_assert(has_env(json_object_get(c, "env"), "AWS_PROFILE", "zorch-ci"));
  ck_assert(has_env(json_object_get(c, "env"), "AWS_ENDPOINT_URL", "http://minio:9000"));
  ck_assert_ptr_null(json_object_get(spec, "volumes"));
  ck_assert_ptr_null(json_object_get(c, "volumeMounts"));
  /* resources and the settings rule (the step's labels over the config's pod settings) */
  json_t *lim = json_object_get(json_object_get(c, "resources"), "limits");
  ck_assert_str_eq(json_string_value(json_object_get(lim, "cpu")), "500m");
  ck_assert_str_eq(json_string_value(json_object_get(lim, "memory")), "64Mi");
  json_t *labels = json_object_get(json_object_get(net, "metadata"), "labels");
  ck_assert_str_eq(json_string_value(json_object_get(labels, "team")), "ml");
  ck_assert_str_eq(json_string_value(json_object_get(labels, "from")), "config");
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(spec, "nodeSelector"), "pool")), "cpu");
  /* a local store directory: a hostPath volume mounted at its own path */
  json_t *lspec = json_object_get(local, "spec");
  json_t *vol = json_array_get(json_object_get(lspec, "volumes"), 0);
  ck_assert_str_eq(json_string_value(json_object_get(json_object_get(vol, "hostPath"), "path")), "/srv/store");
  json_t *mount = json_array_get(json_object_get(json_array_get(json_object_get(lspec, "containers"), 0),
                                                 "volumeMounts"), 0);
  ck_assert_str_eq(json_string_value(json_object_get(mount, "mountPath")), "/srv/store");
  json_decref(bodies);
  ((const zorch_orchestrator_ops *)flavor->ops)->release(run);
  dlclose(dl);
}
END_TEST

Suite *flavor_launch_suite(void) {
  Suite *s = suite_create("flavor-launch");
  TCase *tc = tcase_create("flavor-launch");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, local_docker_network_store);
  tcase_add_test(tc, kubernetes_network_store);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  snprintf(fixture_dir, sizeof fixture_dir, "%s/zorch-launch-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(fixture_dir)) return 1;
  server = zt_fixture_start(fixture_dir, "api", NULL, NULL, base, sizeof base);
  int rc = zt_run_suite(flavor_launch_suite());
  zt_fixture_stop(server);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fixture_dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", fixture_dir);
  return rc;
}
