/* zorch — the `kubernetes` orchestrator flavor.
 *
 * Two modes:
 *  - "client": libzorch's DAG executor runs in this process (readiness,
 *    cache, retries, timeouts, records) and this plugin launches each step
 *    attempt as a Pod (or a Job of one pod), follows the run's pods with one
 *    watch, fails an attempt whose pod cannot start (image pull errors, stuck
 *    Pending past pending_timeout, unschedulable) or was OOM-killed, and
 *    copies each pod's log into the step's log.
 *  - "orchestrator" (the default, as in ZenML): one orchestrator Job whose
 *    pod runs `zorch deployment run` in the cluster image with in-cluster
 *    config, which runs the DAG in "client" mode from inside the cluster.
 *    The client follows the Job and reads the run's records from the store;
 *    the run goes on when the client goes away.
 * Cron schedules become CronJobs that run the orchestrator Job.
 * Artifacts reach the pods through the store mounted at its own path
 * (hostPath or a PersistentVolumeClaim).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <zorch/client.h> /* ZORCH_LOG_* */
#include <zorch/plugin.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zkube.h"

#define LABEL_MANAGED "app.kubernetes.io/managed-by"
#define LABEL_RUN "zorch.dev/run-id"
#define LABEL_STEP "zorch.dev/step"
#define LABEL_ATTEMPT "zorch.dev/attempt-id"
#define LABEL_ROLE "zorch.dev/role"
#define LABEL_SCHEDULE "zorch.dev/schedule"
#define ANN_STEP "zorch.dev/step-name"
#define ANN_RUN_NAME "zorch.dev/run-name"
#define ANN_PIPELINE "zorch.dev/pipeline"

typedef struct kctx {
  const zorch_host *host;
} kctx;

static const char config_schema[] =
    "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
    "\"mode\":{\"enum\":[\"orchestrator\",\"client\"],\"description\":\"orchestrator (default): one "
    "orchestrator Job runs the DAG inside the cluster, the client may disconnect; client: this process "
    "drives the DAG and launches one pod per step\"},"
    "\"kubeconfig\":{\"type\":\"string\",\"description\":\"kubeconfig file(s), ':'-separated (default: "
    "$KUBECONFIG, else ~/.kube/config)\"},"
    "\"kubernetes_context\":{\"type\":\"string\",\"description\":\"kubeconfig context (default: "
    "current-context)\"},"
    "\"kubernetes_namespace\":{\"type\":\"string\",\"description\":\"namespace (default: the context's, "
    "else default)\"},"
    "\"incluster\":{\"type\":\"boolean\",\"description\":\"use the pod's service account (in-cluster "
    "config) instead of a kubeconfig\"},"
    "\"image\":{\"type\":\"string\",\"description\":\"image for steps that set none, and for the "
    "orchestrator pod\"},"
    "\"orchestrator_image\":{\"type\":\"string\",\"description\":\"image of the orchestrator pod "
    "(default: image)\"},"
    "\"image_pull_policy\":{\"enum\":[\"Always\",\"IfNotPresent\",\"Never\"],\"description\":\"default: "
    "IfNotPresent\"},"
    "\"step_unit\":{\"enum\":[\"pod\",\"job\"],\"description\":\"run each step attempt as a Pod (default) "
    "or as a Job of one pod\"},"
    "\"max_parallelism\":{\"type\":\"integer\",\"minimum\":1,\"description\":\"at most this many step pods "
    "at once\"},"
    "\"pending_timeout\":{\"type\":\"number\",\"minimum\":0,\"description\":\"fail a step whose pod is "
    "still Pending after this many seconds (default 600; 0: never)\"},"
    "\"fail_on_container_waiting_reasons\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
    "\"description\":\"container waiting reasons that fail a step at once (default: InvalidImageName, "
    "ErrImagePull, ImagePullBackOff, CreateContainerConfigError, CreateContainerError)\"},"
    "\"store_volume\":{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
    "\"type\":{\"enum\":[\"hostPath\",\"pvc\"]},\"claim_name\":{\"type\":\"string\"},"
    "\"host_path\":{\"type\":\"string\"}},\"description\":\"how the artifact store reaches the pods: "
    "{type: hostPath} (default; the node's path equals the store's path) or {type: pvc, claim_name}\"},"
    "\"pod_settings\":{\"type\":\"object\",\"description\":\"pod settings for every step pod (see "
    "docs/kubernetes.md); a step's settings.flavor.kubernetes override them\"},"
    "\"orchestrator_pod_settings\":{\"type\":\"object\",\"description\":\"pod settings of the "
    "orchestrator pod\"},"
    "\"service_account_name\":{\"type\":\"string\",\"description\":\"service account of the orchestrator "
    "pod (it creates the step pods)\"},"
    "\"ttl_seconds_after_finished\":{\"type\":\"integer\",\"minimum\":0},"
    "\"delete_pods\":{\"type\":\"boolean\",\"description\":\"delete each step pod once its log is "
    "copied (default false: keep them for kubectl)\"},"
    "\"schedule\":{\"type\":\"string\",\"description\":\"cron schedule: `zorch pipeline schedule` sets "
    "it\"}"
    "}}";

static const char *pod_settings_keys[] = {
    "node_selector", "tolerations", "affinity", "service_account_name", "image_pull_secrets", "labels",
    "annotations", "volumes", "volume_mounts", "env", "resources", "security_context", "scheduler_name",
    "priority_class_name", "host_ipc", NULL};

/* ---- small helpers -------------------------------------------------- */

static void seterr(const zorch_host *h, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(const zorch_host *h, int code, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  h->error_set(h, code, buf);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  return s;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* Quantity text for a number of cores: "500m", "2". */
static json_t *cpu_quantity(double cores) {
  long m = (long)(cores * 1000 + 0.5);
  char b[32];
  if (m % 1000 == 0)
    snprintf(b, sizeof b, "%ld", m / 1000);
  else
    snprintf(b, sizeof b, "%ldm", m);
  return json_string(b);
}

static json_t *mem_quantity(json_int_t bytes) {
  char b[32];
  if (bytes % (1 << 30) == 0)
    snprintf(b, sizeof b, "%lldGi", (long long)(bytes >> 30));
  else if (bytes % (1 << 20) == 0)
    snprintf(b, sizeof b, "%lldMi", (long long)(bytes >> 20));
  else if (bytes % 1024 == 0)
    snprintf(b, sizeof b, "%lldKi", (long long)(bytes >> 10));
  else
    snprintf(b, sizeof b, "%lld", (long long)bytes);
  return json_string(b);
}

/* Check a pod-settings object: known keys and the type of each. */
static int check_pod_settings(const zorch_host *h, json_t *ps, const char *where) {
  if (!ps) return ZORCH_OK;
  if (!json_is_object(ps)) {
    seterr(h, ZORCH_EINVALID, "%s: pod settings must be an object", where);
    return ZORCH_EINVALID;
  }
  const char *k;
  json_t *v;
  json_object_foreach(ps, k, v) {
    bool known = false;
    for (int i = 0; pod_settings_keys[i]; i++)
      if (!strcmp(k, pod_settings_keys[i])) known = true;
    if (!known) {
      seterr(h, ZORCH_EINVALID, "%s: unknown pod setting '%s' (known: node_selector, tolerations, affinity, "
             "service_account_name, image_pull_secrets, labels, annotations, volumes, volume_mounts, env, "
             "resources, security_context, scheduler_name, priority_class_name, host_ipc)", where, k);
      return ZORCH_EINVALID;
    }
    bool ok = true;
    if (!strcmp(k, "node_selector") || !strcmp(k, "labels") || !strcmp(k, "annotations") ||
        !strcmp(k, "env")) {
      ok = json_is_object(v);
      const char *kk;
      json_t *vv;
      if (ok) json_object_foreach(v, kk, vv) if (!json_is_string(vv)) ok = false;
      if (!ok) {
        seterr(h, ZORCH_EINVALID, "%s: pod setting '%s' must be an object of strings", where, k);
        return ZORCH_EINVALID;
      }
    } else if (!strcmp(k, "tolerations") || !strcmp(k, "volumes") || !strcmp(k, "volume_mounts")) {
      ok = json_is_array(v);
    } else if (!strcmp(k, "image_pull_secrets")) {
      ok = json_is_array(v);
      size_t i;
      json_t *x;
      if (ok) json_array_foreach(v, i, x) if (!json_is_string(x)) ok = false;
    } else if (!strcmp(k, "affinity") || !strcmp(k, "resources") || !strcmp(k, "security_context")) {
      ok = json_is_object(v);
    } else if (!strcmp(k, "host_ipc")) {
      ok = json_is_boolean(v);
    } else {
      ok = json_is_string(v);
    }
    if (!ok) {
      seterr(h, ZORCH_EINVALID, "%s: pod setting '%s' has the wrong type", where, k);
      return ZORCH_EINVALID;
    }
  }
  return ZORCH_OK;
}

/* base + over, one level deep for the map-valued keys. New reference. */
static json_t *merge_pod_settings(json_t *base, json_t *over) {
  json_t *out = base ? json_deep_copy(base) : json_object();
  const char *k;
  json_t *v;
  if (!json_is_object(over)) return out;
  json_object_foreach(over, k, v) {
    json_t *cur = json_object_get(out, k);
    if (json_is_object(cur) && json_is_object(v) &&
        (!strcmp(k, "node_selector") || !strcmp(k, "labels") || !strcmp(k, "annotations") || !strcmp(k, "env")))
      json_object_update(cur, v);
    else
      json_object_set(out, k, v);
  }
  return out;
}

/* ---- the flavor's run handle ---------------------------------------------- */

typedef struct attempt {
  uint64_t id;
  void *exec;
  char *step;
  char *pod;     /* pod name; for step_unit job: the job's name until the pod is known */
  char *job;     /* step_unit job: the Job */
  char *log_path;
  double started;
  char pending_why[1024];
  bool done, stopping, pod_seen;
  struct attempt *next;
} attempt;

typedef struct krun {
  const zorch_host *host;
  zorch_submission *sub;
  zk_client *k;
  json_t *cfg;
  char *ns, *run_id, *run_name, *pipeline, *store_path;
  bool orchestrator_mode;
  bool use_jobs;
  double pending_timeout;
  json_t *fail_reasons;
  /* client mode */
  void *exec;
  pthread_t watcher;
  bool watcher_started;
  volatile int stop_flag;
  atomic_int cancel_flag;
  pthread_mutex_t lock;
  attempt *attempts;
  char rv[64];
  /* orchestrator mode */
  char *job_name;
  int final_status;
  bool ended;
  char *final_message;
} krun;

static int connect_cluster(const zorch_host *h, json_t *cfg, zk_client **out) {
  zk_load_options lo;
  memset(&lo, 0, sizeof lo);
  lo.kubeconfig = jstr(cfg, "kubeconfig");
  lo.context = jstr(cfg, "kubernetes_context");
  lo.namespace_ = jstr(cfg, "kubernetes_namespace");
  json_t *ic = json_object_get(cfg, "incluster");
  lo.incluster = ic ? json_is_true(ic) : -1;
  return zk_client_new(out, h, &lo);
}

/* Transitional: the zh_error-style calls of this file over the kit's
 * ZORCH_* convention (until the port onto the remote-flavor kit). */
static int kj(zk_client *k, const char *m, const char *p, json_t *b, json_t **o, zh_error *e) {
  int rc = zk_json(k, m, p, b, o);
  if (rc) {
    e->status = rc == ZORCH_ENOTFOUND ? 404 : rc == ZORCH_EEXISTS ? 409 : 500;
    snprintf(e->message, sizeof e->message, "%s", zkit_error_message());
    return ZH_EHTTP;
  }
  return 0;
}

static int kw(zk_client *k, const char *p, zk_event_cb cb, void *pl, volatile int *ab, zh_error *e) {
  int rc = zk_watch(k, p, cb, pl, ab);
  if (rc) snprintf(e->message, sizeof e->message, "%s", zkit_error_message());
  return rc;
}

static int kt(zk_client *k, const char *p, char **out, size_t *len, zh_error *e) {
  (void)e;
  return zk_text(k, p, out, len);
}

/* One request that proves the credentials and the namespace: GET the namespace. */
static int probe_cluster(const zorch_host *h, zk_client *k) {
  char *path = xasprintf("/api/v1/namespaces/%s", k->cfg.namespace_);
  zh_error e;
  memset(&e, 0, sizeof e);
  json_t *ns = NULL;
  int rc = kj(k, "GET", path, NULL, &ns, &e);
  free(path);
  json_decref(ns);
  if (rc) {
    if (e.status == 404)
      seterr(h, ZORCH_ENOTFOUND, "namespace '%s' does not exist on %s (%s): create it (kubectl create "
             "namespace %s) or set kubernetes_namespace", k->cfg.namespace_, k->cfg.server, k->cfg.source,
             k->cfg.namespace_);
    else
      seterr(h, ZORCH_EIO, "%s", e.message);
    zh_error_clear(&e);
    return h == NULL ? -1 : (e.status == 404 ? ZORCH_ENOTFOUND : ZORCH_EIO);
  }
  return ZORCH_OK;
}

/* ---- pod manifests --------------------------------------------------------- */

static json_t *store_volume(krun *r, json_t **mount) {
  json_t *sv = json_object_get(r->cfg, "store_volume");
  const char *type = jstr(sv, "type");
  json_t *vol;
  if (type && !strcmp(type, "pvc")) {
    vol = json_pack("{s:s, s:{s:s}}", "name", "zorch-store", "persistentVolumeClaim", "claimName",
                    jstr(sv, "claim_name") ? jstr(sv, "claim_name") : "");
  } else {
    const char *hp = jstr(sv, "host_path");
    vol = json_pack("{s:s, s:{s:s, s:s}}", "name", "zorch-store", "hostPath", "path", hp ? hp : r->store_path,
                    "type", "Directory");
  }
  *mount = json_pack("{s:s, s:s}", "name", "zorch-store", "mountPath", r->store_path);
  return vol;
}

/* A pod template (metadata + spec) running argv in `image`, with the pod
 * settings `ps`, resources from `settings` (the step's), env "K=V" list. */
static json_t *pod_template(krun *r, const char *name, const char *image, const char *const *argv,
                            const char *const *env, json_t *settings, json_t *ps, json_t *labels,
                            json_t *annotations) {
  json_t *cmd = json_array();
  for (size_t i = 0; argv && argv[i]; i++) json_array_append_new(cmd, json_string(argv[i]));
  json_t *envl = json_array();
  for (size_t i = 0; env && env[i]; i++) {
    const char *eq = strchr(env[i], '=');
    if (!eq) continue;
    char *k = strndup(env[i], (size_t)(eq - env[i]));
    json_array_append_new(envl, json_pack("{s:s, s:s}", "name", k, "value", eq + 1));
    free(k);
  }
  const char *ek;
  json_t *ev;
  json_object_foreach(json_object_get(ps, "env"), ek, ev)
      json_array_append_new(envl, json_pack("{s:s, s:O}", "name", ek, "value", ev));
  json_array_append_new(envl, json_pack("{s:s, s:s}", "name", "ZORCH_KUBERNETES_RUN_ID", "value", r->run_id));
  json_array_append_new(envl, json_pack("{s:s, s:{s:{s:s}}}", "name", "ZORCH_KUBERNETES_POD_NAME", "valueFrom",
                                        "fieldRef", "fieldPath", "metadata.name"));

  /* resources: the step's cpu/memory/gpu as requests = limits, then pod_settings.resources */
  json_t *req = json_object(), *lim = json_object();
  json_t *res = json_object_get(settings, "resources");
  json_t *cpu = json_object_get(res, "cpu"), *mem = json_object_get(res, "memory"),
         *gpu = json_object_get(res, "gpu");
  if (json_is_number(cpu) && json_number_value(cpu) > 0) {
    json_object_set_new(req, "cpu", cpu_quantity(json_number_value(cpu)));
    json_object_set_new(lim, "cpu", cpu_quantity(json_number_value(cpu)));
  }
  if (json_is_integer(mem) && json_integer_value(mem) > 0) {
    json_object_set_new(req, "memory", mem_quantity(json_integer_value(mem)));
    json_object_set_new(lim, "memory", mem_quantity(json_integer_value(mem)));
  }
  if (json_is_integer(gpu) && json_integer_value(gpu) > 0)
    json_object_set_new(lim, "nvidia.com/gpu", json_integer(json_integer_value(gpu)));
  json_t *pres = json_object_get(ps, "resources");
  if (json_is_object(json_object_get(pres, "requests"))) json_object_update(req, json_object_get(pres, "requests"));
  if (json_is_object(json_object_get(pres, "limits"))) json_object_update(lim, json_object_get(pres, "limits"));
  json_t *resources = json_object();
  if (json_object_size(req)) json_object_set(resources, "requests", req);
  if (json_object_size(lim)) json_object_set(resources, "limits", lim);
  json_decref(req);
  json_decref(lim);

  json_t *mount = NULL;
  json_t *vols = json_array();
  json_array_append_new(vols, store_volume(r, &mount));
  json_t *mounts = json_array();
  json_array_append_new(mounts, mount);
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(ps, "volumes"), i, x) json_array_append(vols, x);
  json_array_foreach(json_object_get(ps, "volume_mounts"), i, x) json_array_append(mounts, x);

  const char *ipp = jstr(r->cfg, "image_pull_policy");
  json_t *container = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:s}", "name", "main", "image", image, "command",
                                cmd, "env", envl, "resources", resources, "volumeMounts", mounts,
                                "imagePullPolicy", ipp ? ipp : "IfNotPresent");
  if (json_object_get(ps, "security_context"))
    json_object_set(container, "securityContext", json_object_get(ps, "security_context"));

  json_t *spec = json_pack("{s:s, s:[o], s:o}", "restartPolicy", "Never", "containers", container, "volumes", vols);
  if (json_object_get(ps, "node_selector")) json_object_set(spec, "nodeSelector", json_object_get(ps, "node_selector"));
  json_t *gt = json_object_get(res, "gpu_type");
  if (json_is_string(gt)) {
    json_t *nsel = json_object_get(spec, "nodeSelector");
    if (!nsel) {
      json_object_set_new(spec, "nodeSelector", json_object());
      nsel = json_object_get(spec, "nodeSelector");
    } else {
      json_object_set_new(spec, "nodeSelector", json_deep_copy(nsel));
      nsel = json_object_get(spec, "nodeSelector");
    }
    json_object_set(nsel, "nvidia.com/gpu.product", gt);
  }
  if (json_object_get(ps, "tolerations")) json_object_set(spec, "tolerations", json_object_get(ps, "tolerations"));
  if (json_object_get(ps, "affinity")) json_object_set(spec, "affinity", json_object_get(ps, "affinity"));
  if (jstr(ps, "service_account_name")) json_object_set(spec, "serviceAccountName", json_object_get(ps, "service_account_name"));
  if (jstr(ps, "scheduler_name")) json_object_set(spec, "schedulerName", json_object_get(ps, "scheduler_name"));
  if (jstr(ps, "priority_class_name"))
    json_object_set(spec, "priorityClassName", json_object_get(ps, "priority_class_name"));
  if (json_is_true(json_object_get(ps, "host_ipc"))) json_object_set_new(spec, "hostIPC", json_true());
  json_t *ips = json_object_get(ps, "image_pull_secrets");
  if (json_array_size(ips)) {
    json_t *a = json_array();
    json_array_foreach(ips, i, x) json_array_append_new(a, json_pack("{s:O}", "name", x));
    json_object_set_new(spec, "imagePullSecrets", a);
  }
  json_t *lab = json_object();
  json_object_update(lab, json_object_get(ps, "labels"));
  json_object_update(lab, labels);
  json_t *ann = json_object();
  json_object_update(ann, json_object_get(ps, "annotations"));
  json_object_update(ann, annotations);
  json_t *meta = json_pack("{s:o, s:o}", "labels", lab, "annotations", ann);
  if (name) json_object_set_new(meta, "name", json_string(name));
  return json_pack("{s:o, s:o}", "metadata", meta, "spec", spec);
}

/* Wrap a pod template into a Job (the template is consumed). */
static json_t *job_of(json_t *tpl, const char *name, json_int_t backoff, json_t *cfg) {
  json_t *meta = json_deep_copy(json_object_get(tpl, "metadata"));
  json_object_set_new(meta, "name", json_string(name));
  json_object_del(json_object_get(tpl, "metadata"), "name");
  json_t *spec = json_pack("{s:I, s:I, s:I, s:o}", "backoffLimit", backoff, "parallelism", (json_int_t)1,
                           "completions", (json_int_t)1, "template", tpl);
  json_t *ttl = json_object_get(cfg, "ttl_seconds_after_finished");
  if (json_is_integer(ttl)) json_object_set(spec, "ttlSecondsAfterFinished", ttl);
  return json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "batch/v1", "kind", "Job", "metadata", meta, "spec", spec);
}

/* "<run>-<step>-<n>-<rand>" within 63 characters. */
static void object_name(char *out, size_t n, const char *run_name, const char *step, uint32_t n_attempt) {
  char a[40], b[24], rnd[8];
  zk_sanitize_name(a, 30, run_name);
  zk_sanitize_name(b, 18, step ? step : "orchestrator");
  snprintf(rnd, sizeof rnd, "%04x", (unsigned)(random() & 0xffff));
  char full[128];
  if (step)
    snprintf(full, sizeof full, "%s-%s-%u-%s", a, b, n_attempt, rnd);
  else
    snprintf(full, sizeof full, "%s-orch-%s", a, rnd);
  size_t len = strlen(full); /* at most 29+1+17+1+10+1+4 < 64 */
  if (len >= n) len = n - 1;
  memcpy(out, full, len);
  out[len] = '\0';
}

/* ---- client mode: launching and watching ------------------------------------ */

static int kr_launch(void *data, const zorch_step_launch *st);
static void kr_stop(void *data, void *executor, uint64_t attempt_id);

static const zorch_step_launcher launcher = {
    .version = ZORCH_STEP_LAUNCHER_VERSION,
    .launch = kr_launch,
    .stop = kr_stop,
};

static json_t *step_pod_settings(krun *r, json_t *settings, const char *step, int *rc) {
  json_t *fl = json_object_get(json_object_get(settings, "flavor"), "kubernetes");
  char where[512];
  snprintf(where, sizeof where, "step '%s': settings.flavor.kubernetes", step);
  *rc = check_pod_settings(r->host, fl, where);
  if (*rc) return NULL;
  return merge_pod_settings(json_object_get(r->cfg, "pod_settings"), fl);
}

/* POST an object (the body is consumed) with strict field validation. */
static int create_object(krun *r, const char *plural, json_t *body, zh_error *e) {
  char *path = xasprintf("%s/namespaces/%s/%s?fieldValidation=Strict",
                         strcmp(plural, "pods") ? "/apis/batch/v1" : "/api/v1", r->ns, plural);
  memset(e, 0, sizeof *e);
  int rc = kj(r->k, "POST", path, body, NULL, e);
  free(path);
  json_decref(body);
  return rc;
}

static int kr_launch(void *data, const zorch_step_launch *st) {
  krun *r = data;
  const zorch_host *h = r->host;
  json_error_t je;
  json_t *settings = json_loads(st->settings_json ? st->settings_json : "{}", 0, &je);
  const char *image = st->image && *st->image ? st->image : jstr(r->cfg, "image");
  if (!image) {
    json_decref(settings);
    seterr(h, ZORCH_EINVALID, "step '%s' has no image: set the step's image setting or the orchestrator's "
           "'image' (an image holding %s, e.g. one made by `zorch image build`)", st->step,
           st->argv && st->argv[0] ? st->argv[0] : "the step's program");
    return ZORCH_EINVALID;
  }
  int rc;
  json_t *ps = step_pod_settings(r, settings, st->step, &rc);
  if (!ps) {
    json_decref(settings);
    return rc;
  }
  char name[64], stepl[64], aid[32];
  object_name(name, sizeof name, r->run_name, st->step, st->attempt);
  zk_sanitize_name(stepl, 63, st->step);
  snprintf(aid, sizeof aid, "%llu", (unsigned long long)st->attempt_id);
  char attempt_s[16];
  snprintf(attempt_s, sizeof attempt_s, "%u", st->attempt);
  json_t *labels = json_pack("{s:s, s:s, s:s, s:s, s:s}", LABEL_MANAGED, "zorch", LABEL_RUN, r->run_id, LABEL_STEP,
                             stepl, LABEL_ATTEMPT, aid, LABEL_ROLE, "step");
  json_t *ann = json_pack("{s:s, s:s, s:s, s:s}", ANN_STEP, st->step, ANN_RUN_NAME, r->run_name, ANN_PIPELINE,
                          r->pipeline, "zorch.dev/attempt", attempt_s);
  json_t *tpl = pod_template(r, name, image, st->argv, st->env, settings, ps, labels, ann);
  json_decref(labels);
  json_decref(ann);
  json_decref(ps);
  json_decref(settings);
  json_t *body;
  if (r->use_jobs) {
    body = job_of(tpl, name, 0, r->cfg);
  } else {
    json_object_set_new(tpl, "apiVersion", json_string("v1"));
    json_object_set_new(tpl, "kind", json_string("Pod"));
    body = tpl;
  }
  attempt *a = calloc(1, sizeof *a);
  a->id = st->attempt_id;
  a->exec = st->executor;
  a->step = strdup(st->step);
  a->log_path = st->log_path ? strdup(st->log_path) : NULL;
  a->started = now_s();
  if (r->use_jobs)
    a->job = strdup(name);
  else
    a->pod = strdup(name);
  pthread_mutex_lock(&r->lock);
  a->next = r->attempts;
  r->attempts = a;
  pthread_mutex_unlock(&r->lock);
  zh_error e;
  rc = create_object(r, r->use_jobs ? "jobs" : "pods", body, &e);
  if (rc) {
    pthread_mutex_lock(&r->lock);
    a->done = true; /* the executor fails the attempt from our return */
    pthread_mutex_unlock(&r->lock);
    seterr(h, ZORCH_EIO, "step '%s': cannot create %s %s: %s", st->step, r->use_jobs ? "Job" : "Pod", name,
           e.message);
    zh_error_clear(&e);
    return ZORCH_EIO;
  }
  char msg[256];
  snprintf(msg, sizeof msg, "step '%s' attempt %u: %s %s/%s created", st->step, st->attempt,
           r->use_jobs ? "job" : "pod", r->ns, name);
  h->log(h, ZORCH_LOG_DEBUG, msg);
  return ZORCH_OK;
}

static void delete_object(krun *r, const char *kind, const char *name, int grace) {
  char *path = !strcmp(kind, "job")
                   ? xasprintf("/apis/batch/v1/namespaces/%s/jobs/%s?propagationPolicy=Background&gracePeriodSeconds=%d",
                               r->ns, name, grace)
                   : xasprintf("/api/v1/namespaces/%s/pods/%s?gracePeriodSeconds=%d", r->ns, name, grace);
  zh_error e;
  memset(&e, 0, sizeof e);
  if (kj(r->k, "DELETE", path, NULL, NULL, &e) != 0 && e.status != 404) {
    char msg[1200];
    snprintf(msg, sizeof msg, "cannot delete %s %s/%s: %s", kind, r->ns, name, e.message);
    r->host->log(r->host, ZORCH_LOG_WARNING, msg);
  }
  zh_error_clear(&e);
  free(path);
}

static void kr_stop(void *data, void *executor, uint64_t attempt_id) {
  krun *r = data;
  (void)executor;
  char *pod = NULL, *job = NULL;
  pthread_mutex_lock(&r->lock);
  for (attempt *a = r->attempts; a; a = a->next)
    if (a->id == attempt_id && !a->done) {
      a->stopping = true;
      pod = a->pod ? strdup(a->pod) : NULL;
      job = a->job ? strdup(a->job) : NULL;
    }
  pthread_mutex_unlock(&r->lock);
  if (job) delete_object(r, "job", job, 5);
  if (pod) delete_object(r, "pod", pod, 5);
  free(pod);
  free(job);
}

/* Copy the pod's log into the step's log file. */
static void fetch_log(krun *r, const char *pod, const char *log_path) {
  if (!log_path || !pod) return;
  char *path = xasprintf("/api/v1/namespaces/%s/pods/%s/log?container=main", r->ns, pod);
  char *text = NULL;
  size_t len = 0;
  zh_error e;
  memset(&e, 0, sizeof e);
  if (kt(r->k, path, &text, &len, &e) == 0 && len > 0) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      size_t off = 0;
      while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n <= 0) break;
        off += (size_t)n;
      }
      close(fd);
    }
  }
  zh_error_clear(&e);
  free(text);
  free(path);
}

static void finish(krun *r, attempt *a, int code, const char *msg, bool delete_pod) {
  pthread_mutex_lock(&r->lock);
  if (a->done) {
    pthread_mutex_unlock(&r->lock);
    return;
  }
  a->done = true;
  char *pod = a->pod ? strdup(a->pod) : NULL;
  char *job = a->job ? strdup(a->job) : NULL;
  pthread_mutex_unlock(&r->lock);
  if (pod && !a->stopping) fetch_log(r, pod, a->log_path);
  if (delete_pod || json_is_true(json_object_get(r->cfg, "delete_pods"))) {
    if (job) delete_object(r, "job", job, 0);
    if (pod) delete_object(r, "pod", pod, 0);
  }
  r->host->executor_step_done(a->exec, a->id, code, msg);
  free(pod);
  free(job);
}

static bool fail_reason(krun *r, const char *reason) {
  if (!reason) return false;
  size_t i;
  json_t *x;
  json_array_foreach(r->fail_reasons, i, x) if (!strcmp(json_string_value(x) ?: "", reason)) return true;
  return false;
}

/* One pod's state: decide whether its attempt ended. */
static void on_pod(krun *r, const char *type, json_t *pod) {
  json_t *meta = json_object_get(pod, "metadata");
  const char *aid = jstr(json_object_get(meta, "labels"), LABEL_ATTEMPT);
  const char *name = jstr(meta, "name");
  if (!aid || !name) return;
  uint64_t id = strtoull(aid, NULL, 10);
  pthread_mutex_lock(&r->lock);
  attempt *a = r->attempts;
  while (a && a->id != id) a = a->next;
  if (!a || a->done) {
    pthread_mutex_unlock(&r->lock);
    return;
  }
  if (r->use_jobs && (!a->pod || strcmp(a->pod, name))) {
    free(a->pod);
    a->pod = strdup(name);
  }
  a->pod_seen = true;
  bool stopping = a->stopping;
  pthread_mutex_unlock(&r->lock);

  json_t *status = json_object_get(pod, "status");
  const char *phase = jstr(status, "phase");
  json_t *cs = NULL;
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(status, "containerStatuses"), i, x)
      if (!strcmp(jstr(x, "name") ?: "", "main")) cs = x;
  json_t *state = json_object_get(cs, "state");
  char msg[2048];
  if (!strcmp(type, "DELETED")) {
    if (phase && !strcmp(phase, "Succeeded")) {
      finish(r, a, 0, NULL, false);
      return;
    }
    snprintf(msg, sizeof msg, "pod %s/%s was deleted before the step ended", r->ns, name);
    finish(r, a, stopping ? 143 : 1, stopping ? "stopped" : msg, false);
    return;
  }
  if (phase && !strcmp(phase, "Succeeded")) {
    finish(r, a, 0, NULL, false);
    return;
  }
  if (phase && !strcmp(phase, "Failed")) {
    json_t *term = json_object_get(state, "terminated");
    int code = json_is_integer(json_object_get(term, "exitCode")) ? (int)json_integer_value(json_object_get(term, "exitCode")) : 1;
    const char *reason = jstr(term, "reason");
    if (reason && !strcmp(reason, "OOMKilled")) {
      json_t *lim = NULL;
      json_array_foreach(json_object_get(json_object_get(pod, "spec"), "containers"), i, x)
          if (!strcmp(jstr(x, "name") ?: "", "main")) lim = json_object_get(json_object_get(x, "resources"), "limits");
      snprintf(msg, sizeof msg, "pod %s/%s was OOM-killed: container 'main' went over its memory limit of %s "
               "(exit code %d, reason OOMKilled); give the step more memory (settings.resources.memory)",
               r->ns, name, jstr(lim, "memory") ? jstr(lim, "memory") : "(none)", code);
    } else {
      snprintf(msg, sizeof msg, "pod %s/%s failed: container 'main' exited with code %d%s%s%s%s", r->ns, name, code,
               reason ? " (" : "", reason ? reason : "", reason ? ")" : "",
               jstr(status, "message") ? jstr(status, "message") : "");
    }
    finish(r, a, code ? code : 1, msg, false);
    return;
  }
  if (phase && !strcmp(phase, "Pending")) {
    json_t *w = json_object_get(state, "waiting");
    const char *wr = jstr(w, "reason");
    if (fail_reason(r, wr)) {
      snprintf(msg, sizeof msg, "pod %s/%s cannot start: %s: %s (image %s)", r->ns, name, wr,
               jstr(w, "message") ? jstr(w, "message") : "", jstr(cs, "image") ? jstr(cs, "image") : "?");
      finish(r, a, 1, msg, true);
      return;
    }
    json_array_foreach(json_object_get(status, "conditions"), i, x) {
      if (!strcmp(jstr(x, "type") ?: "", "PodScheduled") && !strcmp(jstr(x, "status") ?: "", "False")) {
        pthread_mutex_lock(&r->lock);
        snprintf(a->pending_why, sizeof a->pending_why, "%s: %s", jstr(x, "reason") ? jstr(x, "reason") : "Pending",
                 jstr(x, "message") ? jstr(x, "message") : "");
        pthread_mutex_unlock(&r->lock);
      }
    }
    if (wr && strcmp(wr, "ContainerCreating")) {
      pthread_mutex_lock(&r->lock);
      snprintf(a->pending_why, sizeof a->pending_why, "%s: %s", wr, jstr(w, "message") ? jstr(w, "message") : "");
      pthread_mutex_unlock(&r->lock);
    }
  }
}

/* Attempts whose pod stayed Pending too long fail; so do the ones whose
 * Job pod never appeared. */
static void check_pending(krun *r) {
  if (r->pending_timeout <= 0) return;
  double t = now_s();
  for (;;) {
    attempt *hit = NULL;
    pthread_mutex_lock(&r->lock);
    for (attempt *a = r->attempts; a; a = a->next)
      if (!a->done && !a->stopping && t - a->started > r->pending_timeout) {
        hit = a;
        break;
      }
    char why[1100];
    if (hit) snprintf(why, sizeof why, "%s", hit->pending_why[0] ? hit->pending_why : "no reason given");
    pthread_mutex_unlock(&r->lock);
    if (!hit) return;
    /* only Pending pods: a running pod is not past its pending timeout */
    char *path = xasprintf("/api/v1/namespaces/%s/pods/%s", r->ns, hit->pod ? hit->pod : "-");
    json_t *pod = NULL;
    zh_error e;
    memset(&e, 0, sizeof e);
    int rc = hit->pod ? kj(r->k, "GET", path, NULL, &pod, &e) : 1;
    free(path);
    zh_error_clear(&e);
    const char *phase = rc == 0 ? jstr(json_object_get(pod, "status"), "phase") : NULL;
    if (phase && strcmp(phase, "Pending")) {
      pthread_mutex_lock(&r->lock);
      hit->started = 1e300; /* started: no pending deadline any more */
      pthread_mutex_unlock(&r->lock);
      if (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed")) on_pod(r, "MODIFIED", pod);
      json_decref(pod);
      continue;
    }
    json_decref(pod);
    char msg[1400];
    snprintf(msg, sizeof msg, "%s %s/%s stayed Pending for more than %g s (pending_timeout): %s",
             hit->pod ? "pod" : "job", r->ns, hit->pod ? hit->pod : hit->job, r->pending_timeout, why);
    finish(r, hit, 1, msg, true);
  }
}

static int watch_cb(const char *type, json_t *obj, void *payload) {
  krun *r = payload;
  const char *rv = jstr(json_object_get(obj, "metadata"), "resourceVersion");
  if (!strcmp(type, "ERROR")) {
    r->rv[0] = '\0'; /* 410 Gone: list again */
    return 1;
  }
  if (rv) snprintf(r->rv, sizeof r->rv, "%s", rv);
  if (strcmp(type, "BOOKMARK")) on_pod(r, type, obj);
  if (atomic_load(&r->cancel_flag) || r->stop_flag) return 1;
  return 0;
}

static void delete_run_pods(krun *r) {
  char *sel = zh_escape(LABEL_RUN "=");
  char *path = xasprintf("/api/v1/namespaces/%s/pods?labelSelector=%s%s&gracePeriodSeconds=5", r->ns, sel,
                         r->run_id);
  zh_error e;
  memset(&e, 0, sizeof e);
  kj(r->k, "DELETE", path, NULL, NULL, &e);
  zh_error_clear(&e);
  free(path);
  if (r->use_jobs || r->orchestrator_mode) {
    path = xasprintf("/apis/batch/v1/namespaces/%s/jobs?labelSelector=%s%s&propagationPolicy=Background", r->ns,
                     sel, r->run_id);
    kj(r->k, "DELETE", path, NULL, NULL, &e);
    zh_error_clear(&e);
    free(path);
  }
  free(sel);
}

static void *watcher_main(void *p) {
  krun *r = p;
  char *sel = zh_escape(LABEL_RUN "=");
  double failing_since = 0;
  bool cancelled = false;
  while (!r->stop_flag) {
    if (atomic_load(&r->cancel_flag) && !cancelled) {
      cancelled = true;
      delete_run_pods(r);
    }
    zh_error e;
    memset(&e, 0, sizeof e);
    int rc;
    if (!r->rv[0]) {
      char *path = xasprintf("/api/v1/namespaces/%s/pods?labelSelector=%s%s", r->ns, sel, r->run_id);
      json_t *list = NULL;
      rc = kj(r->k, "GET", path, NULL, &list, &e);
      free(path);
      if (rc == 0) {
        snprintf(r->rv, sizeof r->rv, "%s", jstr(json_object_get(list, "metadata"), "resourceVersion") ?: "");
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(list, "items"), i, x) on_pod(r, "ADDED", x);
      }
      json_decref(list);
    } else {
      char *path = xasprintf("/api/v1/namespaces/%s/pods?watch=1&labelSelector=%s%s&resourceVersion=%s"
                             "&allowWatchBookmarks=true&timeoutSeconds=2",
                             r->ns, sel, r->run_id, r->rv);
      rc = kw(r->k, path, watch_cb, r, &r->stop_flag, &e);
      free(path);
    }
    if (rc && !r->stop_flag) {
      double t = now_s();
      if (!failing_since) failing_since = t;
      if (t - failing_since > 60) {
        /* the cluster is gone: fail what is still running */
        char msg[1200];
        snprintf(msg, sizeof msg, "lost the Kubernetes API for 60 s: %s", e.message);
        for (;;) {
          attempt *hit = NULL;
          pthread_mutex_lock(&r->lock);
          for (attempt *a = r->attempts; a && !hit; a = a->next)
            if (!a->done) hit = a;
          pthread_mutex_unlock(&r->lock);
          if (!hit) break;
          finish(r, hit, 1, msg, false);
        }
        failing_since = t;
      }
      usleep(500000);
    } else {
      failing_since = 0;
    }
    zh_error_clear(&e);
    check_pending(r);
  }
  free(sel);
  return NULL;
}

/* ---- orchestrator mode ----------------------------------------------------- */

/* The directory this plugin was loaded from (the image carries it at the same path). */
static const char *plugin_dir(void) {
  static char dir[4096];
  if (!dir[0]) {
    Dl_info info;
    if (dladdr((void *)plugin_dir, &info) && info.dli_fname) {
      snprintf(dir, sizeof dir, "%s", info.dli_fname);
      char *s = strrchr(dir, '/');
      if (s) *s = '\0';
    }
  }
  return dir;
}

/* The config the orchestrator pod runs with: client mode, in-cluster. */
static char *incluster_config(krun *r) {
  json_t *c = json_deep_copy(r->cfg);
  json_object_set_new(c, "mode", json_string("client"));
  json_object_set_new(c, "incluster", json_true());
  json_object_del(c, "kubeconfig");
  json_object_del(c, "kubernetes_context");
  json_object_del(c, "schedule");
  json_object_set_new(c, "kubernetes_namespace", json_string(r->ns));
  char *s = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  return s;
}

/* The orchestrator pod's template: `zorch deployment run` with in-cluster config. */
static json_t *orchestrator_template(krun *r, const char *zorch_cmd, const char *deployment_path, bool new_run,
                                     const char *role, int *rc) {
  const char *image = jstr(r->cfg, "orchestrator_image") ? jstr(r->cfg, "orchestrator_image") : jstr(r->cfg, "image");
  if (!image) {
    seterr(r->host, ZORCH_EINVALID, "orchestrator mode needs an image holding zorch, its plugins and the "
           "pipeline's program: set the orchestrator's 'image' (see `zorch image build`)");
    *rc = ZORCH_EINVALID;
    return NULL;
  }
  json_t *ps = json_object_get(r->cfg, "orchestrator_pod_settings");
  *rc = check_pod_settings(r->host, ps, "orchestrator_pod_settings");
  if (*rc) return NULL;
  json_t *ops = merge_pod_settings(ps, NULL);
  if (jstr(r->cfg, "service_account_name") && !json_object_get(ops, "service_account_name"))
    json_object_set(ops, "service_account_name", json_object_get(r->cfg, "service_account_name"));
  char *cfg = incluster_config(r);
  char *env_cfg = xasprintf("ZORCH_KUBERNETES_CONFIG=%s", cfg);
  char *env_pp = xasprintf("ZORCH_PLUGIN_PATH=%s", plugin_dir());
  char *env_cmd = xasprintf("ZORCH_COMMAND=%s", zorch_cmd);
  const char *env[] = {env_cfg, env_pp, env_cmd, "ZORCH_HOME=/tmp/zorch-home", NULL};
  const char *nc = r->sub && !new_run ? r->host->submission_get(r->sub, "no_cache") : NULL;
  const char *argv_run[] = {zorch_cmd, "deployment", "run", deployment_path, "--flavor", "kubernetes",
                            "--config-env", "ZORCH_KUBERNETES_CONFIG",
                            new_run ? "--new-run" : nc && !strcmp(nc, "1") ? "--no-cache" : NULL, NULL};
  json_t *labels = json_pack("{s:s, s:s, s:s}", LABEL_MANAGED, "zorch", LABEL_ROLE, role, LABEL_RUN,
                             new_run ? "scheduled" : r->run_id);
  json_t *ann = json_pack("{s:s, s:s}", ANN_PIPELINE, r->pipeline, ANN_RUN_NAME, r->run_name);
  /* default requests of the orchestrator pod, as ZenML's */
  json_t *settings = json_pack("{s:{s:f, s:I}}", "resources", "cpu", 0.1, "memory", (json_int_t)400 << 20);
  if (json_object_get(ops, "resources")) json_object_del(settings, "resources");
  json_t *tpl = pod_template(r, NULL, image, argv_run, env, settings, ops, labels, ann);
  json_decref(settings);
  json_decref(labels);
  json_decref(ann);
  json_decref(ops);
  free(cfg);
  free(env_cfg);
  free(env_pp);
  free(env_cmd);
  return tpl;
}

static int orchestrator_submit(krun *r) {
  const char *zc = r->host->submission_get(r->sub, "zorch_command");
  const char *dp = r->host->submission_get(r->sub, "deployment_path");
  int rc;
  json_t *tpl = orchestrator_template(r, zc, dp, false, "orchestrator", &rc);
  if (!tpl) return rc;
  char name[64];
  object_name(name, sizeof name, r->run_name, NULL, 0);
  zh_error e;
  rc = create_object(r, "jobs", job_of(tpl, name, 0, r->cfg), &e);
  if (rc) {
    seterr(r->host, ZORCH_EIO, "cannot create the orchestrator Job %s/%s: %s", r->ns, name, e.message);
    zh_error_clear(&e);
    return ZORCH_EIO;
  }
  r->job_name = strdup(name);
  r->host->submission_set_metadata(r->sub, "orchestrator_run_id", name);
  char *cmd = xasprintf("kubectl -n %s logs job/%s", r->ns, name);
  r->host->submission_set_metadata(r->sub, "orchestrator_logs", cmd);
  free(cmd);
  return ZORCH_OK;
}

/* The run record written in the cluster: its status and message. */
static void read_run_record(krun *r, int *status, char **message) {
  char *p = xasprintf("%s/runs/%s/run.json", r->store_path, r->run_id);
  json_t *doc = json_load_file(p, 0, NULL);
  free(p);
  const char *st = jstr(doc, "status");
  *status = -1;
  if (st) {
    static const char *names[] = {"pending", "running", "completed", "failed", "cached", "skipped", "stopped"};
    for (int i = 0; i < 7; i++)
      if (!strcmp(st, names[i])) *status = i;
  }
  *message = jstr(doc, "message") ? strdup(jstr(doc, "message")) : NULL;
  json_decref(doc);
}

typedef struct jwatch {
  krun *r;
  int verdict; /* 0 running, 1 complete, 2 failed */
  char why[1024];
} jwatch;

static int orch_pod_cb(const char *type, json_t *pod, void *payload) {
  jwatch *w = payload;
  const char *rv = jstr(json_object_get(pod, "metadata"), "resourceVersion");
  if (rv) snprintf(w->r->rv, sizeof w->r->rv, "%s", rv);
  if (!strcmp(type, "ERROR")) {
    w->r->rv[0] = '\0';
    return 1;
  }
  if (!strcmp(type, "BOOKMARK")) return 0;
  json_t *status = json_object_get(pod, "status");
  const char *phase = jstr(status, "phase");
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(status, "containerStatuses"), i, x) {
    json_t *wt = json_object_get(json_object_get(x, "state"), "waiting");
    if (fail_reason(w->r, jstr(wt, "reason"))) {
      w->verdict = 2;
      snprintf(w->why, sizeof w->why, "the orchestrator pod %s cannot start: %s: %s",
               jstr(json_object_get(pod, "metadata"), "name"), jstr(wt, "reason"), jstr(wt, "message") ?: "");
      return 1;
    }
    json_t *t = json_object_get(json_object_get(x, "state"), "terminated");
    if (t && phase && !strcmp(phase, "Failed")) {
      w->verdict = 2;
      snprintf(w->why, sizeof w->why, "the orchestrator pod %s failed: exit code %lld (%s)",
               jstr(json_object_get(pod, "metadata"), "name"), json_integer_value(json_object_get(t, "exitCode")),
               jstr(t, "reason") ?: "");
      return 1;
    }
  }
  if (phase && !strcmp(phase, "Succeeded")) {
    w->verdict = 1;
    return 1;
  }
  return 0;
}

static int orchestrator_wait(krun *r, int timeout_ms) {
  double deadline = timeout_ms < 0 ? 1e300 : now_s() + timeout_ms / 1000.0;
  char *sel = zh_escape("job-name=");
  double started = now_s();
  jwatch w = {.r = r};
  while (!w.verdict) {
    if (atomic_load(&r->cancel_flag)) {
      /* First the orchestrator pod: SIGTERM makes `zorch deployment run`
       * stop its run (its steps' pods deleted, recorded as stopped); then
       * whatever is left of the run. */
      delete_object(r, "job", r->job_name, 10);
      char *jp = xasprintf("/api/v1/namespaces/%s/pods?labelSelector=%s%s", r->ns, sel, r->job_name);
      for (int i = 0; i < 60; i++) {
        json_t *list = NULL;
        zh_error e2;
        memset(&e2, 0, sizeof e2);
        int lrc = kj(r->k, "GET", jp, NULL, &list, &e2);
        size_t n = json_array_size(json_object_get(list, "items"));
        json_decref(list);
        zh_error_clear(&e2);
        if (lrc == 0 && n == 0) break;
        usleep(250000);
      }
      free(jp);
      delete_run_pods(r);
      r->host->submission_set_status(r->sub, 6 /* stopped */, "cancelled: the orchestrator Job and the run's pods "
                                     "were deleted");
      r->ended = true;
      free(sel);
      return ZORCH_OK;
    }
    zh_error e;
    memset(&e, 0, sizeof e);
    if (!r->rv[0]) {
      char *path = xasprintf("/api/v1/namespaces/%s/pods?labelSelector=%s%s", r->ns, sel, r->job_name);
      json_t *list = NULL;
      if (kj(r->k, "GET", path, NULL, &list, &e) == 0) {
        snprintf(r->rv, sizeof r->rv, "%s", jstr(json_object_get(list, "metadata"), "resourceVersion") ?: "");
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(list, "items"), i, x) if (orch_pod_cb("ADDED", x, &w)) break;
      } else {
        usleep(500000);
      }
      json_decref(list);
      free(path);
    } else {
      char *path = xasprintf("/api/v1/namespaces/%s/pods?watch=1&labelSelector=%s%s&resourceVersion=%s"
                             "&timeoutSeconds=2",
                             r->ns, sel, r->job_name, r->rv);
      if (kw(r->k, path, orch_pod_cb, &w, &r->stop_flag, &e) != 0) usleep(500000);
      free(path);
    }
    zh_error_clear(&e);
    if (!w.verdict && r->pending_timeout > 0 && now_s() - started > r->pending_timeout) {
      /* still not running? */
      char *path = xasprintf("/api/v1/namespaces/%s/pods?labelSelector=%s%s", r->ns, sel, r->job_name);
      json_t *list = NULL;
      if (kj(r->k, "GET", path, NULL, &list, &e) == 0) {
        size_t i;
        json_t *x;
        bool pending = json_array_size(json_object_get(list, "items")) == 0;
        json_array_foreach(json_object_get(list, "items"), i, x)
            if (!strcmp(jstr(json_object_get(x, "status"), "phase") ?: "", "Pending")) pending = true;
        if (pending) {
          w.verdict = 2;
          snprintf(w.why, sizeof w.why, "the orchestrator pod of Job %s stayed Pending for more than %g s",
                   r->job_name, r->pending_timeout);
        }
      }
      zh_error_clear(&e);
      json_decref(list);
      free(path);
      started = 1e300;
    }
    if (!w.verdict && now_s() >= deadline) {
      free(sel);
      return ZORCH_ETIMEOUT;
    }
  }
  free(sel);
  int st;
  char *msg;
  read_run_record(r, &st, &msg);
  if (w.verdict == 1 && (st == 2 || st == 3 || st == 6)) {
    r->host->submission_set_status(r->sub, st, msg);
  } else if (w.verdict == 1) {
    r->host->submission_set_status(r->sub, 3, "the orchestrator pod ended but the run's record says it did not "
                                   "finish: is the artifact store mounted at the same path in the cluster?");
  } else {
    if (w.why[0] && strstr(w.why, "cannot start")) delete_run_pods(r);
    char *m = xasprintf("%s%s%s", w.why, msg ? "; " : "", msg ? msg : "");
    r->host->submission_set_status(r->sub, 3, m);
    free(m);
  }
  free(msg);
  r->ended = true;
  return ZORCH_OK;
}

/* ---- ops ---------------------------------------------------------------- */

static void krun_free(krun *r) {
  if (!r) return;
  attempt *a = r->attempts;
  while (a) {
    attempt *n = a->next;
    free(a->step);
    free(a->pod);
    free(a->job);
    free(a->log_path);
    free(a);
    a = n;
  }
  zk_client_free(r->k);
  json_decref(r->cfg);
  json_decref(r->fail_reasons);
  free(r->ns);
  free(r->run_id);
  free(r->run_name);
  free(r->pipeline);
  free(r->store_path);
  free(r->job_name);
  free(r->final_message);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

static int k_check_config(void *payload, const char *config_json) {
  const zorch_host *h = ((kctx *)payload)->host;
  json_t *c = json_loads(config_json, 0, NULL);
  int rc = check_pod_settings(h, json_object_get(c, "pod_settings"), "pod_settings");
  if (!rc) rc = check_pod_settings(h, json_object_get(c, "orchestrator_pod_settings"), "orchestrator_pod_settings");
  json_t *sv = json_object_get(c, "store_volume");
  if (!rc && sv && !strcmp(jstr(sv, "type") ?: "", "pvc") && !jstr(sv, "claim_name")) {
    seterr(h, ZORCH_EINVALID, "store_volume: type pvc needs claim_name");
    rc = ZORCH_EINVALID;
  }
  json_decref(c);
  return rc;
}

/* A run handle with its config read and the cluster connected and probed. */
static int krun_setup(const zorch_host *h, zorch_submission *sub, const char *cfg, krun **out) {
  *out = NULL;
  krun *r = calloc(1, sizeof *r);
  if (!r) {
    h->error_set(h, ZORCH_ENOMEM, "out of memory");
    return ZORCH_ENOMEM;
  }
  pthread_mutex_init(&r->lock, NULL);
  r->host = h;
  r->sub = sub;
  r->cfg = json_loads(cfg ? cfg : "{}", 0, NULL);
  if (!r->cfg) r->cfg = json_object();
  const char *mode = jstr(r->cfg, "mode");
  r->orchestrator_mode = !mode || !strcmp(mode, "orchestrator");
  r->use_jobs = jstr(r->cfg, "step_unit") && !strcmp(jstr(r->cfg, "step_unit"), "job");
  json_t *pt = json_object_get(r->cfg, "pending_timeout");
  r->pending_timeout = json_is_number(pt) ? json_number_value(pt) : 600;
  r->fail_reasons = json_object_get(r->cfg, "fail_on_container_waiting_reasons");
  if (r->fail_reasons)
    json_incref(r->fail_reasons);
  else
    r->fail_reasons = json_pack("[s,s,s,s,s]", "InvalidImageName", "ErrImagePull", "ImagePullBackOff",
                                "CreateContainerConfigError", "CreateContainerError");
  const char *v;
  r->run_id = strdup(sub && (v = h->submission_get(sub, "run_id")) ? v : "");
  r->run_name = strdup(sub && (v = h->submission_get(sub, "run_name")) ? v : "");
  r->pipeline = strdup(sub && (v = h->submission_get(sub, "pipeline")) ? v : "");
  const char *sp = sub ? h->submission_get(sub, "store_path") : NULL;
  r->store_path = strdup(sp ? sp : "");
  kctx k = {.host = h};
  int rc = k_check_config(&k, cfg ? cfg : "{}");
  if (!rc && sub && !sp) {
    seterr(h, ZORCH_EINVALID, "the kubernetes flavor needs an artifact store the cluster can mount (a local "
           "store directory shared with the nodes, or a PVC)");
    rc = ZORCH_EINVALID;
  }
  if (!rc) rc = connect_cluster(h, r->cfg, &r->k);
  if (!rc) {
    r->ns = strdup(r->k->cfg.namespace_);
    rc = probe_cluster(h, r->k);
  }
  if (rc) {
    krun_free(r);
    return rc;
  }
  *out = r;
  return ZORCH_OK;
}

static int k_submit(void **out_run, void *payload, zorch_submission *sub) {
  const zorch_host *h = ((kctx *)payload)->host;
  *out_run = NULL;
  if (h->version < 2) {
    seterr(h, ZORCH_EVERSION, "this libzorch is too old for the kubernetes flavor (host table version %u, needs 2)",
           h->version);
    return ZORCH_EVERSION;
  }
  krun *r;
  int rc = krun_setup(h, sub, h->submission_get(sub, "config"), &r);
  if (rc) return rc;
  h->submission_set_metadata(sub, "kubernetes_namespace", r->ns);
  if (r->orchestrator_mode) {
    rc = orchestrator_submit(r);
  } else {
    char opts[64];
    json_t *mp = json_object_get(r->cfg, "max_parallelism");
    if (json_is_integer(mp))
      snprintf(opts, sizeof opts, "{\"max_parallel\":%lld}", (long long)json_integer_value(mp));
    else
      snprintf(opts, sizeof opts, "{}");
    if (pthread_create(&r->watcher, NULL, watcher_main, r) == 0) r->watcher_started = true;
    rc = h->executor_start_remote(&r->exec, sub, opts, &launcher, r);
    if (rc) {
      r->stop_flag = 1;
      if (r->watcher_started) pthread_join(r->watcher, NULL);
      r->watcher_started = false;
    }
  }
  if (rc) {
    krun_free(r);
    return rc;
  }
  *out_run = r;
  return ZORCH_OK;
}

static int k_wait(void *p, int timeout_ms) {
  krun *r = p;
  if (r->orchestrator_mode) return r->ended ? ZORCH_OK : orchestrator_wait(r, timeout_ms);
  return r->host->executor_wait(r->exec, timeout_ms);
}

/* May run in a signal handler (the CLI's Ctrl-C): flags only; the watcher
 * thread (client mode) or wait (orchestrator mode) deletes the pods. */
static int k_cancel(void *p) {
  krun *r = p;
  atomic_store(&r->cancel_flag, 1);
  if (!r->orchestrator_mode && r->exec) return r->host->executor_cancel(r->exec);
  return ZORCH_OK;
}

static void k_release(void *p) {
  krun *r = p;
  if (!r) return;
  if (!r->orchestrator_mode) {
    if (r->exec) r->host->executor_release(r->exec);
    r->exec = NULL;
    if (atomic_load(&r->cancel_flag)) delete_run_pods(r);
    r->stop_flag = 1;
    if (r->watcher_started) pthread_join(r->watcher, NULL);
  }
  krun_free(r);
}

/* ---- schedules: CronJobs running the orchestrator Job ------------------------ */

static int k_schedule_create(void *payload, zorch_submission *sub, const char *cron, char **out_id) {
  const zorch_host *h = ((kctx *)payload)->host;
  *out_id = NULL;
  krun *r;
  int rc = krun_setup(h, sub, h->submission_get(sub, "config"), &r);
  if (rc) return rc;
  const char *zc = h->submission_get(sub, "zorch_command");
  const char *dp = h->submission_get(sub, "deployment_path");
  json_t *tpl = orchestrator_template(r, zc, dp, true, "scheduled-run", &rc);
  if (!tpl) {
    krun_free(r);
    return rc;
  }
  char name[64];
  zk_sanitize_name(name, 53, r->run_name);
  json_t *job = job_of(tpl, name, 0, r->cfg);
  json_t *jt = json_pack("{s:O, s:O}", "metadata", json_object_get(job, "metadata"), "spec", json_object_get(job, "spec"));
  json_object_del(json_object_get(jt, "metadata"), "name");
  json_decref(job);
  json_t *cj = json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}, s:{s:s, s:s}}, s:{s:s, s:s, s:o}}", "apiVersion",
                         "batch/v1", "kind", "CronJob", "metadata", "name", name, "labels", LABEL_MANAGED, "zorch",
                         LABEL_SCHEDULE, name, "annotations", ANN_PIPELINE, r->pipeline, "zorch.dev/deployment", dp,
                         "spec", "schedule", cron, "concurrencyPolicy", "Forbid", "jobTemplate", jt);
  zh_error e;
  rc = create_object(r, "cronjobs", cj, &e);
  if (rc) {
    seterr(h, e.status == 409 ? ZORCH_EEXISTS : ZORCH_EIO, "cannot create CronJob %s/%s: %s", r->ns, name,
           e.message);
    rc = e.status == 409 ? ZORCH_EEXISTS : ZORCH_EIO;
  } else {
    *out_id = h->alloc(strlen(name) + 1);
    if (*out_id) strcpy(*out_id, name);
  }
  zh_error_clear(&e);
  krun_free(r);
  return rc;
}

static int k_schedule_list(void *payload, const char *config_json, char **out_json) {
  const zorch_host *h = ((kctx *)payload)->host;
  *out_json = NULL;
  krun *r;
  int rc = krun_setup(h, NULL, config_json, &r);
  if (rc) return rc;
  char *sel = zh_escape(LABEL_MANAGED "=zorch");
  char *path = xasprintf("/apis/batch/v1/namespaces/%s/cronjobs?labelSelector=%s", r->ns, sel);
  free(sel);
  json_t *list = NULL;
  zh_error e;
  memset(&e, 0, sizeof e);
  rc = kj(r->k, "GET", path, NULL, &list, &e);
  free(path);
  if (rc) {
    seterr(h, ZORCH_EIO, "cannot list CronJobs in %s: %s", r->ns, e.message);
    zh_error_clear(&e);
    krun_free(r);
    return ZORCH_EIO;
  }
  json_t *out = json_array();
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(list, "items"), i, x) {
    json_t *meta = json_object_get(x, "metadata"), *ann = json_object_get(meta, "annotations");
    json_array_append_new(out, json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?}", "id", jstr(meta, "name"), "cron",
                                         jstr(json_object_get(x, "spec"), "schedule"), "pipeline",
                                         jstr(ann, ANN_PIPELINE), "created", jstr(meta, "creationTimestamp"),
                                         "deployment", jstr(ann, "zorch.dev/deployment")));
  }
  char *text = json_dumps(out, JSON_COMPACT);
  json_decref(out);
  json_decref(list);
  *out_json = h->alloc(strlen(text) + 1);
  if (*out_json) strcpy(*out_json, text);
  free(text);
  krun_free(r);
  return *out_json ? ZORCH_OK : ZORCH_ENOMEM;
}

static int k_schedule_delete(void *payload, const char *config_json, const char *id) {
  const zorch_host *h = ((kctx *)payload)->host;
  krun *r;
  int rc = krun_setup(h, NULL, config_json, &r);
  if (rc) return rc;
  char *esc = zh_escape(id);
  char *path = xasprintf("/apis/batch/v1/namespaces/%s/cronjobs/%s?propagationPolicy=Background", r->ns, esc);
  free(esc);
  zh_error e;
  memset(&e, 0, sizeof e);
  rc = kj(r->k, "DELETE", path, NULL, NULL, &e);
  free(path);
  if (rc) {
    rc = e.status == 404 ? ZORCH_ENOTFOUND : ZORCH_EIO;
    if (e.status == 404)
      seterr(h, rc, "no schedule '%s' in namespace %s (see `zorch schedule list`)", id, r->ns);
    else
      seterr(h, rc, "cannot delete CronJob %s/%s: %s", r->ns, id, e.message);
  }
  zh_error_clear(&e);
  krun_free(r);
  return rc;
}

static const zorch_orchestrator_ops k_ops = {
    .version = ZORCH_ORCHESTRATOR_OPS_VERSION,
    .check_config = k_check_config,
    .submit = k_submit,
    .wait = k_wait,
    .cancel = k_cancel,
    .release = k_release,
    .schedule_create = k_schedule_create,
    .schedule_list = k_schedule_list,
    .schedule_delete = k_schedule_delete,
};

static const zorch_flavor_desc k_flavor = {
    .version = ZORCH_FLAVOR_DESC_VERSION,
    .type = ZORCH_COMPONENT_ORCHESTRATOR,
    .name = "kubernetes",
    .integration = "kubernetes",
    .description = "Runs each step as a Pod on a Kubernetes cluster, driven from an orchestrator Job or the client",
    .config_schema = config_schema,
    .ops = &k_ops,
};

static int k_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  kctx *ctx = host->alloc(sizeof *ctx);
  if (!ctx) {
    host->error_set(host, ZORCH_ENOMEM, "out of memory");
    return ZORCH_ENOMEM;
  }
  ctx->host = host;
  *plugin_ctx = ctx;
  srandom((unsigned)(time(NULL) ^ getpid()));
  return host->add_flavor(reg, &k_flavor, ctx);
}

static void k_teardown(void *plugin_ctx) {
  kctx *ctx = plugin_ctx;
  if (ctx) ctx->host->free(ctx);
}

static const zorch_plugin_desc k_plugin = {
    .abi_major = ZORCH_PLUGIN_ABI_MAJOR,
    .abi_minor = ZORCH_PLUGIN_ABI_MINOR,
    .name = "kubernetes",
    .version = "1.0",
    .description = "The kubernetes orchestrator: steps as Pods, an orchestrator Job, CronJob schedules",
    .init = k_init,
    .teardown = k_teardown,
};

ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,
                                                                   uint32_t host_abi_minor);

ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,
                                                                   uint32_t host_abi_minor) {
  return host_abi_major == ZORCH_PLUGIN_ABI_MAJOR && host_abi_minor >= 1 ? &k_plugin : NULL;
}
