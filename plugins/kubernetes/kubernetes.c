/* zorch — the `kubernetes` orchestrator flavor, on the remote-flavor kit.
 *
 * Two modes:
 *  - "client": libzorch's DAG executor runs in this process (readiness,
 *    cache, retries, timeouts, records) and this plugin launches each step
 *    attempt as a Pod (or a Job of one pod), follows the run's pods with one
 *    informer, fails an attempt whose pod cannot start (image pull errors,
 *    stuck Pending past pending_timeout, unschedulable) or was OOM-killed,
 *    and hands each pod's log to the host.
 *  - "orchestrator" (the default, as in ZenML): one orchestrator Job whose
 *    pod runs `zorch deployment run` in the cluster image with in-cluster
 *    config, which runs the DAG in "client" mode from inside the cluster.
 *    The client follows the Job and asks the host for the run's record; the
 *    run goes on when the client goes away.
 * Cron schedules become CronJobs that run the orchestrator Job.
 * Artifacts reach the pods through the store mounted at its own path
 * (hostPath or a PersistentVolumeClaim), or, for a store the pods reach over
 * the network, through its URI and credential references alone.
 *
 * The kit does the rest: the run frame, attempt table and poller (zremote),
 * the settings rule and resources (zdeploy), the manifests (zk8s_manifest)
 * and the API client with its credentials (zkube).
 */
#include <zorch/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zdeploy.h"
#include "zk8s_manifest.h"
#include "zkube.h"
#include "zremote.h"

#define LABEL_MANAGED "app.kubernetes.io/managed-by"
#define LABEL_RUN "zorch.dev/run-id"
#define LABEL_STEP "zorch.dev/step"
#define LABEL_ATTEMPT "zorch.dev/attempt-id"
#define LABEL_ROLE "zorch.dev/role"
#define LABEL_SCHEDULE "zorch.dev/schedule"
#define ANN_STEP "zorch.dev/step-name"
#define ANN_RUN_NAME "zorch.dev/run-name"
#define ANN_PIPELINE "zorch.dev/pipeline"

/* Pod settings (docs/kubernetes.md): of every step (pod_settings), of the
 * orchestrator pod, and of one step (settings.flavor.kubernetes, the step
 * settings schema the host checks). */
#define STRING_MAP "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}"
#define OBJECTS "{\"type\":\"array\",\"items\":{\"type\":\"object\"}}"
#define POD_SETTINGS_SCHEMA(what)                                                                              \
  "{\"type\":\"object\",\"additionalProperties\":false,\"description\":\"" what "\",\"properties\":{"        \
  "\"node_selector\":" STRING_MAP ",\"tolerations\":" OBJECTS ",\"affinity\":{\"type\":\"object\"},"           \
  "\"service_account_name\":{\"type\":\"string\"},"                                                            \
  "\"image_pull_secrets\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"                            \
  "\"labels\":" STRING_MAP ",\"annotations\":" STRING_MAP ",\"volumes\":" OBJECTS ",\"volume_mounts\":" OBJECTS \
  ",\"env\":" STRING_MAP ",\"resources\":{\"type\":\"object\",\"properties\":{\"requests\":{\"type\":\"object\"},"\
  "\"limits\":{\"type\":\"object\"}}},\"security_context\":{\"type\":\"object\"},"                             \
  "\"scheduler_name\":{\"type\":\"string\"},\"priority_class_name\":{\"type\":\"string\"},"                  \
  "\"host_ipc\":{\"type\":\"boolean\"}}}"

static const char step_settings_schema[] =
    POD_SETTINGS_SCHEMA("pod settings of this step's pods, over the orchestrator's pod_settings (docs/kubernetes.md)");

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
    "\"pod_settings\":" POD_SETTINGS_SCHEMA("pod settings for every step pod (see docs/kubernetes.md); a step's "
                                            "settings.flavor.kubernetes override them") ","
    "\"orchestrator_pod_settings\":" POD_SETTINGS_SCHEMA("pod settings of the orchestrator pod") ","
    "\"service_account_name\":{\"type\":\"string\",\"description\":\"service account of the orchestrator "
    "pod (it creates the step pods)\"},"
    "\"ttl_seconds_after_finished\":{\"type\":\"integer\",\"minimum\":0},"
    "\"delete_pods\":{\"type\":\"boolean\",\"description\":\"delete each step pod once its log is "
    "copied (default false: keep them for kubectl)\"},"
    "\"schedule\":{\"type\":\"string\",\"description\":\"cron schedule: `zorch pipeline schedule` sets "
    "it\"}"
    "}}";

typedef struct krun {
  zr_run r;             /* first: the kit's frame */
  zk_client *k;
  const char *ns;       /* the client's namespace */
  bool orchestrator_mode, use_jobs, delete_pods;
  double pending_timeout;
  json_t *fail_reasons;
  zk_informer inf;      /* the run's pods, for the poller */
  char *inf_path;
  zr_poller *poller;
  char *job_name;       /* orchestrator mode: the orchestrator Job */
} krun;

static const zorch_host *host_of(void *payload) { return payload; }

/* ---- API helpers ------------------------------------------------------------------------------- */

/* POST an object (the body is consumed) with strict field validation. */
static int create_object(krun *kr, const char *plural, json_t *body) {
  char *path = zkit_asprintf("%s/namespaces/%s/%s?fieldValidation=Strict",
                             strcmp(plural, "pods") ? "/apis/batch/v1" : "/api/v1", kr->ns, plural);
  int rc = path ? zk_json(kr->k, "POST", path, body, NULL) : ZORCH_ENOMEM;
  free(path);
  json_decref(body);
  return rc;
}

static void delete_object(krun *kr, const char *kind, const char *name, int grace) {
  char *path = !strcmp(kind, "job")
                   ? zkit_asprintf("/apis/batch/v1/namespaces/%s/jobs/%s?propagationPolicy=Background&"
                                   "gracePeriodSeconds=%d", kr->ns, name, grace)
                   : zkit_asprintf("/api/v1/namespaces/%s/pods/%s?gracePeriodSeconds=%d", kr->ns, name, grace);
  int rc = path ? zk_json(kr->k, "DELETE", path, NULL, NULL) : ZORCH_ENOMEM;
  if (rc && rc != ZORCH_ENOTFOUND)
    zorch_host_logf(kr->r.host, ZORCH_LOG_WARNING, "cannot delete %s %s/%s: %s", kind, kr->ns, name,
                    zkit_error_message());
  free(path);
}

/* Every pod (and Job) of the run, whatever is left of it. */
static void delete_run_pods(krun *kr) {
  char *sel = zh_escape(LABEL_RUN "=");
  for (int jobs = 0; jobs < 2; jobs++) {
    if (jobs && !kr->use_jobs && !kr->orchestrator_mode) break;
    char *path = jobs ? zkit_asprintf("/apis/batch/v1/namespaces/%s/jobs?labelSelector=%s%s&propagationPolicy="
                                      "Background", kr->ns, sel, kr->r.run_id)
                      : zkit_asprintf("/api/v1/namespaces/%s/pods?labelSelector=%s%s&gracePeriodSeconds=5",
                                      kr->ns, sel, kr->r.run_id);
    if (path) zk_json(kr->k, "DELETE", path, NULL, NULL);
    free(path);
  }
  free(sel);
}

static bool fail_reason(krun *kr, const char *reason) {
  size_t i;
  json_t *x;
  json_array_foreach(kr->fail_reasons, i, x) if (reason && json_is_string(x) && !strcmp(json_string_value(x), reason))
      return true;
  return false;
}

/* The status of container "main" of a pod, and its limits. */
static json_t *main_container(json_t *list) {
  size_t i;
  json_t *x;
  json_array_foreach(list, i, x) if (!strcmp(zkit_jstr(x, "name") ?: "", "main")) return x;
  return NULL;
}

/* ---- client mode: launching ------------------------------------------------------------------- */

/* One attempt as a Pod (or a Job of one pod). */
static int step_launch(zr_run *r, const zorch_step_launch *st, const zdep_settings *set) {
  krun *kr = (krun *)r;
  const zorch_host *h = r->host;
  char name[64], stepl[64], aid[32], attempt_s[16];
  zkm_object_name(name, sizeof name, kr->r.run_name, st->step, st->attempt);
  zk_sanitize_name(stepl, 63, st->step);
  snprintf(aid, sizeof aid, "%llu", (unsigned long long)st->attempt_id);
  snprintf(attempt_s, sizeof attempt_s, "%u", st->attempt);
  zr_store store = zr_launch_store(st);
  zkm_pod pod = {.name = name, .image = set->image, .pull_policy = zkit_jstr(kr->r.config, "image_pull_policy"),
                 .argv = st->argv, .env = st->env, .store_env = store.env, .res = &set->res,
                 .pod_settings = set->flavor, .store_path = store.path,
                 .store_volume = json_object_get(kr->r.config, "store_volume"), .run_id = kr->r.run_id};
  pod.labels = json_pack("{s:s, s:s, s:s, s:s, s:s}", LABEL_MANAGED, "zorch", LABEL_RUN, kr->r.run_id, LABEL_STEP,
                         stepl, LABEL_ATTEMPT, aid, LABEL_ROLE, "step");
  pod.annotations = json_pack("{s:s, s:s, s:s, s:s}", ANN_STEP, st->step, ANN_RUN_NAME, kr->r.run_name,
                              ANN_PIPELINE, kr->r.pipeline, "zorch.dev/attempt", attempt_s);
  json_t *tpl = zkm_pod_template(&pod);
  json_decref(pod.labels);
  json_decref(pod.annotations);
  json_t *body = kr->use_jobs ? zkm_job(tpl, name, 0, json_object_get(kr->r.config, "ttl_seconds_after_finished"))
                              : zkm_pod_object(tpl);
  zr_attempt *a;
  int rc = zr_attempt_add(&a, &kr->r, st, kr->use_jobs ? strdup(name) : NULL, free);
  if (rc) {
    json_decref(body);
    return rc;
  }
  if (!kr->use_jobs) zr_attempt_set_remote(a, name); /* a Job's pod is named when it appears */
  if ((rc = create_object(kr, kr->use_jobs ? "jobs" : "pods", body))) {
    zr_attempt_abandon(a); /* the executor fails the attempt from our return */
    zr_attempt_unref(a);
    return zorch_host_errorf(h, rc, "step '%s': cannot create %s %s: %s", st->step, kr->use_jobs ? "Job" : "Pod",
                             name, zkit_error_message());
  }
  zr_attempt_unref(a);
  zorch_host_logf(h, ZORCH_LOG_DEBUG, "step '%s' attempt %u: %s %s/%s created", st->step, st->attempt,
                  kr->use_jobs ? "job" : "pod", kr->ns, name);
  return ZORCH_OK;
}

/* The host asks to stop an attempt: delete its Job and pod. */
static void step_stop(zr_attempt *a, const char *pod) {
  krun *kr = (krun *)a->run;
  if (a->data) delete_object(kr, "job", a->data, 5);
  if (pod) delete_object(kr, "pod", pod, 5);
}

/* The kit calls this once per attempt, before the host hears of its end:
 * the pod's log goes to the host; a pod that never ran is deleted. */
static void step_finished(zr_attempt *a, int code, unsigned flags) {
  (void)code;
  krun *kr = (krun *)a->run;
  char *pod = zr_attempt_remote(a);
  bool stopping = zr_attempt_stopping(a);
  if (pod && !stopping) {
    char *path = zkit_asprintf("/api/v1/namespaces/%s/pods/%s/log?container=main", kr->ns, pod);
    char *text = NULL;
    size_t len = 0;
    if (path && zk_text(kr->k, path, &text, &len) == ZORCH_OK) zr_log(a, text, len);
    free(text);
    free(path);
  }
  if ((flags & ZR_FINISH_DISCARD) || kr->delete_pods) {
    if (a->data) delete_object(kr, "job", a->data, 0);
    if (pod) delete_object(kr, "pod", pod, 0);
  }
  free(pod);
}

/* ---- client mode: following the pods ------------------------------------------------------------ */

/* One pod's state: decide whether its attempt ended. */
static void on_pod(krun *kr, const char *type, json_t *pod) {
  json_t *meta = json_object_get(pod, "metadata");
  const char *aid = zkit_jstr(json_object_get(meta, "labels"), LABEL_ATTEMPT);
  const char *name = zkit_jstr(meta, "name");
  if (!aid || !name) return;
  zr_attempt *a = zr_attempt_find(&kr->r, strtoull(aid, NULL, 10));
  if (!a) return;
  if (kr->use_jobs) zr_attempt_set_remote(a, name);
  bool stopping = zr_attempt_stopping(a);
  json_t *status = json_object_get(pod, "status");
  const char *phase = zkit_jstr(status, "phase") ?: "";
  json_t *cs = main_container(json_object_get(status, "containerStatuses"));
  json_t *state = json_object_get(cs, "state");
  if (!strcmp(type, "DELETED")) {
    if (!strcmp(phase, "Succeeded")) zr_finish(a, 0, 0, NULL);
    else if (stopping) zr_finish(a, 143, 0, "stopped");
    else zr_finish(a, 1, 0, "pod %s/%s was deleted before the step ended", kr->ns, name);
  } else if (!strcmp(phase, "Succeeded")) {
    zr_finish(a, 0, 0, NULL);
  } else if (!strcmp(phase, "Failed")) {
    json_t *term = json_object_get(state, "terminated");
    json_t *ec = json_object_get(term, "exitCode");
    int code = json_is_integer(ec) ? (int)json_integer_value(ec) : 1;
    const char *reason = zkit_jstr(term, "reason");
    if (reason && !strcmp(reason, "OOMKilled")) {
      json_t *c = main_container(json_object_get(json_object_get(pod, "spec"), "containers"));
      const char *lim = zkit_jstr(json_object_get(json_object_get(c, "resources"), "limits"), "memory");
      zr_finish(a, code ? code : 1, 0, "pod %s/%s was OOM-killed: container 'main' went over its memory limit of "
                "%s (exit code %d, reason OOMKilled); give the step more memory (settings.resources.memory)",
                kr->ns, name, lim ? lim : "(none)", code);
    } else {
      zr_finish(a, code ? code : 1, 0, "pod %s/%s failed: container 'main' exited with code %d%s%s%s%s", kr->ns,
                name, code, reason ? " (" : "", reason ? reason : "", reason ? ")" : "",
                zkit_jstr(status, "message") ?: "");
    }
  } else if (!strcmp(phase, "Pending")) {
    json_t *w = json_object_get(state, "waiting");
    const char *wr = zkit_jstr(w, "reason");
    if (fail_reason(kr, wr)) {
      zr_finish(a, 1, ZR_FINISH_DISCARD, "pod %s/%s cannot start: %s: %s (image %s)", kr->ns, name, wr,
                zkit_jstr(w, "message") ?: "", zkit_jstr(cs, "image") ?: "?");
    } else {
      size_t i;
      json_t *x;
      json_array_foreach(json_object_get(status, "conditions"), i, x) {
        if (!strcmp(zkit_jstr(x, "type") ?: "", "PodScheduled") && !strcmp(zkit_jstr(x, "status") ?: "", "False"))
          zr_attempt_pending(a, "%s: %s", zkit_jstr(x, "reason") ?: "Pending", zkit_jstr(x, "message") ?: "");
      }
      if (wr && strcmp(wr, "ContainerCreating")) zr_attempt_pending(a, "%s: %s", wr, zkit_jstr(w, "message") ?: "");
    }
  } else if (phase[0]) {
    zr_attempt_running(a);
  }
  zr_attempt_unref(a);
}

static int on_run_pod(const char *type, json_t *pod, void *payload) {
  on_pod(payload, type, pod);
  return 0;
}

static int poll_pods(zr_run *r, void *ctx, volatile int *abort_flag) {
  (void)ctx;
  return zk_informer_round(&((krun *)r)->inf, abort_flag);
}

/* A step pod past pending_timeout: fail it unless it started after all
 * (a GET confirms what the watch may not have said yet). */
static void step_pending_expired(zr_run *r, zr_attempt *a, void *ctx) {
  (void)ctx;
  krun *kr = (krun *)r;
  char *pod = zr_attempt_remote(a);
  json_t *obj = NULL;
  char *path = pod ? zkit_asprintf("/api/v1/namespaces/%s/pods/%s", kr->ns, pod) : NULL;
  const char *phase = path && zk_json(kr->k, "GET", path, NULL, &obj) == ZORCH_OK
                          ? zkit_jstr(json_object_get(obj, "status"), "phase") : NULL;
  free(path);
  if (phase && strcmp(phase, "Pending")) {
    zr_attempt_running(a);
    if (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed")) on_pod(kr, "MODIFIED", obj);
  } else {
    zr_lock(r);
    char why[sizeof a->pending.why];
    snprintf(why, sizeof why, "%s", a->pending.why[0] ? a->pending.why : "no reason given");
    zr_unlock(r);
    zr_finish(a, 1, ZR_FINISH_DISCARD, "%s %s/%s stayed Pending for more than %g s (pending_timeout): %s",
              pod ? "pod" : "job", kr->ns, pod ? pod : (const char *)a->data, kr->pending_timeout, why);
  }
  json_decref(obj);
  free(pod);
}

static void client_cancelled(zr_run *r, void *ctx) {
  (void)ctx;
  delete_run_pods((krun *)r);
}

/* ---- orchestrator mode ---------------------------------------------------------------------------- */

/* The config the orchestrator pod runs with: client mode, in-cluster. */
static char *incluster_config(krun *kr) {
  json_t *c = json_deep_copy(kr->r.config);
  json_object_set_new(c, "mode", json_string("client"));
  json_object_set_new(c, "incluster", json_true());
  json_object_del(c, "kubeconfig");
  json_object_del(c, "kubernetes_context");
  json_object_del(c, "schedule");
  json_object_set_new(c, "kubernetes_namespace", json_string(kr->ns));
  char *s = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  return s;
}

/* The orchestrator pod's template: `zorch deployment run` with in-cluster config. */
static json_t *orchestrator_template(krun *kr, bool new_run, const char *role, int *rc) {
  const zorch_host *h = kr->r.host;
  const char *image = zkit_jstr(kr->r.config, "orchestrator_image") ?: zkit_jstr(kr->r.config, "image");
  if (!image) {
    *rc = zorch_host_errorf(h, ZORCH_EINVALID, "orchestrator mode needs an image holding zorch, its plugins and "
                            "the pipeline's program: set the orchestrator's 'image' (see `zorch image build`)");
    return NULL;
  }
  json_t *ops = zdep_merge(json_object_get(kr->r.config, "orchestrator_pod_settings"), NULL);
  if (zkit_jstr(kr->r.config, "service_account_name") && !json_object_get(ops, "service_account_name"))
    json_object_set(ops, "service_account_name", json_object_get(kr->r.config, "service_account_name"));
  char *cfg = incluster_config(kr);
  char *env_cfg = zkit_asprintf("ZORCH_KUBERNETES_CONFIG=%s", cfg);
  char *env_pp = zkit_asprintf("ZORCH_PLUGIN_PATH=%s", zkit_plugin_dir());
  char *env_cmd = zkit_asprintf("ZORCH_COMMAND=%s", kr->r.zorch_command ?: "zorch");
  const char *env[] = {env_cfg, env_pp, env_cmd, "ZORCH_HOME=/tmp/zorch-home", NULL};
  const char *argv[] = {kr->r.zorch_command ?: "zorch", "deployment", "run", kr->r.deployment_path ?: "",
                        "--flavor", "kubernetes", "--config-env", "ZORCH_KUBERNETES_CONFIG",
                        new_run ? "--new-run" : kr->r.no_cache ? "--no-cache" : NULL, NULL};
  /* default requests of the orchestrator pod, as ZenML's */
  zdep_resources res = {.cpu = 0.1, .memory = 400u << 20};
  zkm_pod pod = {.image = image, .pull_policy = zkit_jstr(kr->r.config, "image_pull_policy"), .argv = argv,
                 .env = env, .res = json_object_get(ops, "resources") ? NULL : &res, .pod_settings = ops,
                 .store_path = kr->r.store_path, .store_volume = json_object_get(kr->r.config, "store_volume"),
                 .run_id = kr->r.run_id};
  pod.labels = json_pack("{s:s, s:s, s:s}", LABEL_MANAGED, "zorch", LABEL_ROLE, role, LABEL_RUN,
                         new_run ? "scheduled" : kr->r.run_id);
  pod.annotations = json_pack("{s:s, s:s}", ANN_PIPELINE, kr->r.pipeline, ANN_RUN_NAME, kr->r.run_name);
  json_t *tpl = zkm_pod_template(&pod);
  json_decref(pod.labels);
  json_decref(pod.annotations);
  json_decref(ops);
  free(cfg);
  free(env_cfg);
  free(env_pp);
  free(env_cmd);
  return tpl;
}

static int run_status(const char *name) {
  static const char *const names[] = {"pending", "running", "completed", "failed", "cached", "skipped", "stopped"};
  for (int i = 0; name && i < 7; i++)
    if (!strcmp(name, names[i])) return i;
  return -1;
}

/* The orchestrator pod ended: the run's own record says how the run did. */
static void orchestrator_ended(krun *kr, bool pod_ok, const char *why) {
  json_t *rec = NULL;
  int rrc = zr_run_record(&kr->r, &rec);
  int st = run_status(zkit_jstr(rec, "status"));
  const char *msg = zkit_jstr(rec, "message");
  char *extra = rrc ? zkit_strdup(zkit_error_message()) : NULL;
  if (pod_ok && (st == ZORCH_STATUS_COMPLETED || st == ZORCH_STATUS_FAILED || st == ZORCH_STATUS_STOPPED))
    zr_run_end(&kr->r, st, "%s", msg ?: "");
  else if (pod_ok)
    zr_run_end(&kr->r, ZORCH_STATUS_FAILED, "the orchestrator pod ended but the run's record says it did not "
               "finish%s%s", extra ? ": " : "", extra ?: "");
  else
    zr_run_end(&kr->r, ZORCH_STATUS_FAILED, "%s%s%s", why, msg ? "; " : "", msg ?: "");
  free(extra);
  json_decref(rec);
}

static int on_orchestrator_pod(const char *type, json_t *pod, void *payload) {
  krun *kr = payload;
  if (!strcmp(type, "DELETED")) return 0;
  const char *name = zkit_jstr(json_object_get(pod, "metadata"), "name");
  json_t *status = json_object_get(pod, "status");
  const char *phase = zkit_jstr(status, "phase") ?: "";
  size_t i;
  json_t *x;
  char why[1024];
  json_array_foreach(json_object_get(status, "containerStatuses"), i, x) {
    json_t *wt = json_object_get(json_object_get(x, "state"), "waiting");
    json_t *t = json_object_get(json_object_get(x, "state"), "terminated");
    if (fail_reason(kr, zkit_jstr(wt, "reason"))) {
      snprintf(why, sizeof why, "the orchestrator pod %s cannot start: %s: %s", name, zkit_jstr(wt, "reason"),
               zkit_jstr(wt, "message") ?: "");
      delete_run_pods(kr);
      orchestrator_ended(kr, false, why);
      return 1;
    }
    if (t && !strcmp(phase, "Failed")) {
      snprintf(why, sizeof why, "the orchestrator pod %s failed: exit code %lld (%s)", name,
               (long long)json_integer_value(json_object_get(t, "exitCode")), zkit_jstr(t, "reason") ?: "");
      orchestrator_ended(kr, false, why);
      return 1;
    }
  }
  if (!strcmp(phase, "Succeeded")) {
    orchestrator_ended(kr, true, NULL);
    return 1;
  }
  if (strcmp(phase, "Pending") && phase[0]) zr_run_running(&kr->r);
  return 0;
}

static int poll_orchestrator(zr_run *r, void *ctx, volatile int *abort_flag) {
  (void)ctx;
  if (zr_run_ended(r)) return ZR_DONE;
  int rc = zk_informer_round(&((krun *)r)->inf, abort_flag);
  return rc == ZORCH_OK && zr_run_ended(r) ? ZR_DONE : rc;
}

/* The orchestrator pod of the Job: none yet, or Pending? */
static int orchestrator_pods(krun *kr, size_t *n, bool *pending) {
  char *sel = zh_escape("job-name=");
  char *path = zkit_asprintf("/api/v1/namespaces/%s/pods?labelSelector=%s%s", kr->ns, sel, kr->job_name);
  json_t *list = NULL;
  int rc = path ? zk_json(kr->k, "GET", path, NULL, &list) : ZORCH_ENOMEM;
  size_t i;
  json_t *x;
  *n = json_array_size(json_object_get(list, "items"));
  *pending = false;
  json_array_foreach(json_object_get(list, "items"), i, x) if (!strcmp(
      zkit_jstr(json_object_get(x, "status"), "phase") ?: "", "Pending")) *pending = true;
  json_decref(list);
  free(path);
  free(sel);
  return rc;
}

static void orchestrator_pending_expired(zr_run *r, zr_attempt *a, void *ctx) {
  (void)a, (void)ctx;
  krun *kr = (krun *)r;
  size_t n;
  bool pending;
  if (orchestrator_pods(kr, &n, &pending) == ZORCH_OK && (n == 0 || pending))
    zr_run_end(r, ZORCH_STATUS_FAILED, "the orchestrator pod of Job %s stayed Pending for more than %g s",
               kr->job_name, kr->pending_timeout);
  else
    zr_run_running(r);
}

/* First the orchestrator pod: SIGTERM makes `zorch deployment run` stop its
 * run (its steps' pods deleted, recorded as stopped); then whatever is left. */
static void orchestrator_cancelled(zr_run *r, void *ctx) {
  (void)ctx;
  krun *kr = (krun *)r;
  delete_object(kr, "job", kr->job_name, 10);
  for (int i = 0; i < 60; i++) {
    size_t n;
    bool pending;
    if (orchestrator_pods(kr, &n, &pending) == ZORCH_OK && n == 0) break;
    zkit_sleep(0.25);
  }
  delete_run_pods(kr);
  zr_run_end(r, ZORCH_STATUS_STOPPED, "cancelled: the orchestrator Job and the run's pods were deleted");
}

static int orchestrator_submit(krun *kr) {
  const zorch_host *h = kr->r.host;
  int rc;
  json_t *tpl = orchestrator_template(kr, false, "orchestrator", &rc);
  if (!tpl) return rc;
  char name[64];
  zkm_object_name(name, sizeof name, kr->r.run_name, NULL, 0);
  json_t *ttl = json_object_get(kr->r.config, "ttl_seconds_after_finished");
  if ((rc = create_object(kr, "jobs", zkm_job(tpl, name, 0, ttl))))
    return zorch_host_errorf(h, rc, "cannot create the orchestrator Job %s/%s: %s", kr->ns, name,
                             zkit_error_message());
  kr->job_name = strdup(name);
  h->submission_set_metadata(kr->r.sub, "orchestrator_run_id", name);
  char *cmd = zkit_asprintf("kubectl -n %s logs job/%s", kr->ns, name);
  if (cmd) h->submission_set_metadata(kr->r.sub, "orchestrator_logs", cmd);
  free(cmd);
  zr_run_pending(&kr->r, "the orchestrator pod was not scheduled");
  return kr->job_name ? ZORCH_OK : zorch_host_errorf(h, ZORCH_ENOMEM, "out of memory");
}

/* ---- the run handle ----------------------------------------------------------------------------- */

static void krun_free(krun *kr) {
  if (!kr) return;
  zr_poller_stop(kr->poller);
  zk_client_free(kr->k);
  json_decref(kr->fail_reasons);
  free(kr->inf_path);
  free(kr->job_name);
  zr_run_free(&kr->r);
}

/* What the config schema cannot say. */
static int check_config(const zorch_host *h, json_t *c) {
  json_t *sv = json_object_get(c, "store_volume");
  if (sv && !strcmp(zkit_jstr(sv, "type") ?: "", "pvc") && !zkit_jstr(sv, "claim_name"))
    return zorch_host_errorf(h, ZORCH_EINVALID, "store_volume: type pvc needs claim_name");
  return ZORCH_OK;
}

static int k_check_config(void *payload, const char *config_json) {
  json_t *c = json_loads(config_json, 0, NULL);
  int rc = check_config(host_of(payload), c);
  json_decref(c);
  return rc;
}

/* A run handle with its config read and the cluster connected and probed. */
static int krun_setup(const zorch_host *h, zorch_submission *sub, const char *cfg, krun **out) {
  zr_run_options ro = {.flavor = "kubernetes", .max_parallel_key = "max_parallelism",
                       .settings_base_key = "pod_settings", .launch = step_launch, .needs_image = true,
                       .on_finish = step_finished, .on_stop = step_stop};
  krun *kr;
  int rc = zr_run_new((void **)&kr, sizeof *kr, h, sub, cfg, &ro);
  if (rc) return rc;
  json_t *c = kr->r.config;
  const char *mode = zkit_jstr(c, "mode");
  kr->orchestrator_mode = !mode || !strcmp(mode, "orchestrator");
  kr->use_jobs = !strcmp(zkit_jstr(c, "step_unit") ?: "", "job");
  kr->delete_pods = json_is_true(json_object_get(c, "delete_pods"));
  json_t *pt = json_object_get(c, "pending_timeout");
  kr->pending_timeout = json_is_number(pt) ? json_number_value(pt) : 600;
  kr->fail_reasons = json_incref(json_object_get(c, "fail_on_container_waiting_reasons"));
  if (!kr->fail_reasons)
    kr->fail_reasons = json_pack("[s,s,s,s,s]", "InvalidImageName", "ErrImagePull", "ImagePullBackOff",
                                 "CreateContainerConfigError", "CreateContainerError");
  rc = check_config(h, c);
  json_t *ic = json_object_get(c, "incluster");
  zk_load_options lo = {.kubeconfig = zkit_jstr(c, "kubeconfig"), .context = zkit_jstr(c, "kubernetes_context"),
                        .namespace_ = zkit_jstr(c, "kubernetes_namespace"), .incluster = ic ? json_is_true(ic) : -1};
  if (!rc) rc = zk_client_new(&kr->k, h, &lo);
  if (!rc) {
    kr->ns = kr->k->cfg.namespace_;
    /* one request that proves the credentials and the namespace */
    char *path = zkit_asprintf("/api/v1/namespaces/%s", kr->ns);
    rc = path ? zk_json(kr->k, "GET", path, NULL, NULL) : ZORCH_ENOMEM;
    free(path);
    if (rc == ZORCH_ENOTFOUND)
      zorch_host_errorf(h, rc, "namespace '%s' does not exist on %s (%s): create it (kubectl create namespace %s) "
                        "or set kubernetes_namespace", kr->ns, kr->k->cfg.server, kr->k->cfg.source, kr->ns);
  }
  if (rc) krun_free(kr);
  *out = rc ? NULL : kr;
  return rc;
}

/* Follow the pods with label selector key=value (the key escaped here). */
static int follow(krun *kr, const char *selector_key, const char *value, zk_event_cb cb,
                  const zr_poller_options *po) {
  char *sel = zh_escape(selector_key);
  kr->inf_path = zkit_asprintf("/api/v1/namespaces/%s/pods?labelSelector=%s%s", kr->ns, sel, value);
  free(sel);
  if (!kr->inf_path) return zorch_host_errorf(kr->r.host, ZORCH_ENOMEM, "out of memory");
  kr->inf.k = kr->k;
  kr->inf.path = kr->inf_path;
  kr->inf.payload = kr;
  kr->inf.cb = cb;
  return zr_poller_start(&kr->poller, &kr->r, po);
}

static int k_submit(void **out_run, void *payload, zorch_submission *sub) {
  const zorch_host *h = host_of(payload);
  *out_run = NULL;
  krun *kr;
  int rc = krun_setup(h, sub, NULL, &kr);
  if (rc) return rc;
  h->submission_set_metadata(sub, "kubernetes_namespace", kr->ns);
  zr_poller_options po = {.ctx = kr, .what = "the Kubernetes API", .lost_after_s = 60,
                          .pending_timeout_s = kr->pending_timeout};
  if (kr->orchestrator_mode) {
    po.poll = poll_orchestrator;
    po.pending_expired = orchestrator_pending_expired;
    po.on_cancel = orchestrator_cancelled;
    rc = orchestrator_submit(kr);
    if (!rc) rc = follow(kr, "job-name=", kr->job_name, on_orchestrator_pod, &po);
  } else {
    po.poll = poll_pods;
    po.pending_expired = step_pending_expired;
    po.on_cancel = client_cancelled;
    rc = follow(kr, LABEL_RUN "=", kr->r.run_id, on_run_pod, &po);
    if (!rc) rc = zr_run_start_remote(&kr->r);
  }
  if (rc) krun_free(kr);
  *out_run = rc ? NULL : kr;
  return rc;
}

/* wait and cancel are the kit's: the executor's, or the end the poller
 * records; cancel only flags (it may run in the CLI's Ctrl-C handler) and
 * the poller deletes the pods. */

static void k_release(void *p) {
  krun *kr = p;
  if (!kr) return;
  zr_run_release(&kr->r); /* the poller finishes the attempts it waits for */
  if (!kr->orchestrator_mode && atomic_load(&kr->r.cancelled)) delete_run_pods(kr);
  krun_free(kr);
}

/* ---- schedules: CronJobs running the orchestrator Job -------------------------------------------- */

static int k_schedule_create(void *payload, zorch_submission *sub, const char *cron, char **out_id) {
  const zorch_host *h = host_of(payload);
  *out_id = NULL;
  krun *kr;
  int rc = krun_setup(h, sub, NULL, &kr);
  if (rc) return rc;
  json_t *tpl = orchestrator_template(kr, true, "scheduled-run", &rc);
  if (!tpl) {
    krun_free(kr);
    return rc;
  }
  char name[64];
  zk_sanitize_name(name, 53, kr->r.run_name);
  json_t *job = zkm_job(tpl, name, 0, json_object_get(kr->r.config, "ttl_seconds_after_finished"));
  json_t *jt = json_pack("{s:O, s:O}", "metadata", json_object_get(job, "metadata"), "spec",
                         json_object_get(job, "spec"));
  json_object_del(json_object_get(jt, "metadata"), "name");
  json_decref(job);
  json_t *cj = json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}, s:{s:s, s:s}}, s:{s:s, s:s, s:o}}", "apiVersion",
                         "batch/v1", "kind", "CronJob", "metadata", "name", name, "labels", LABEL_MANAGED, "zorch",
                         LABEL_SCHEDULE, name, "annotations", ANN_PIPELINE, kr->r.pipeline, "zorch.dev/deployment",
                         kr->r.deployment_path ?: "", "spec", "schedule", cron, "concurrencyPolicy", "Forbid",
                         "jobTemplate", jt);
  if ((rc = create_object(kr, "cronjobs", cj))) {
    rc = zorch_host_errorf(h, rc, "cannot create CronJob %s/%s: %s", kr->ns, name, zkit_error_message());
  } else if ((*out_id = h->alloc(strlen(name) + 1))) {
    strcpy(*out_id, name);
  } else {
    rc = zorch_host_errorf(h, ZORCH_ENOMEM, "out of memory");
  }
  krun_free(kr);
  return rc;
}

static int k_schedule_list(void *payload, const char *config_json, char **out_json) {
  const zorch_host *h = host_of(payload);
  *out_json = NULL;
  krun *kr;
  int rc = krun_setup(h, NULL, config_json, &kr);
  if (rc) return rc;
  char *sel = zh_escape(LABEL_MANAGED "=zorch");
  char *path = zkit_asprintf("/apis/batch/v1/namespaces/%s/cronjobs?labelSelector=%s", kr->ns, sel);
  free(sel);
  json_t *list = NULL;
  if ((rc = zk_json(kr->k, "GET", path, NULL, &list))) {
    rc = zorch_host_errorf(h, rc, "cannot list CronJobs in %s: %s", kr->ns, zkit_error_message());
  } else {
    json_t *out = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(list, "items"), i, x) {
      json_t *meta = json_object_get(x, "metadata"), *ann = json_object_get(meta, "annotations");
      json_array_append_new(out, json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?}", "id", zkit_jstr(meta, "name"), "cron",
                                           zkit_jstr(json_object_get(x, "spec"), "schedule"), "pipeline",
                                           zkit_jstr(ann, ANN_PIPELINE), "created",
                                           zkit_jstr(meta, "creationTimestamp"), "deployment",
                                           zkit_jstr(ann, "zorch.dev/deployment")));
    }
    char *text = json_dumps(out, JSON_COMPACT);
    if (text && (*out_json = h->alloc(strlen(text) + 1))) strcpy(*out_json, text);
    else rc = zorch_host_errorf(h, ZORCH_ENOMEM, "out of memory");
    free(text);
    json_decref(out);
  }
  json_decref(list);
  free(path);
  krun_free(kr);
  return rc;
}

static int k_schedule_delete(void *payload, const char *config_json, const char *id) {
  const zorch_host *h = host_of(payload);
  krun *kr;
  int rc = krun_setup(h, NULL, config_json, &kr);
  if (rc) return rc;
  char *esc = zh_escape(id);
  char *path = zkit_asprintf("/apis/batch/v1/namespaces/%s/cronjobs/%s?propagationPolicy=Background", kr->ns, esc);
  free(esc);
  if ((rc = zk_json(kr->k, "DELETE", path, NULL, NULL)) == ZORCH_ENOTFOUND)
    zorch_host_errorf(h, rc, "no schedule '%s' in namespace %s (see `zorch schedule list`)", id, kr->ns);
  else if (rc)
    zorch_host_errorf(h, rc, "cannot delete CronJob %s/%s: %s", kr->ns, id, zkit_error_message());
  free(path);
  krun_free(kr);
  return rc;
}

/* ---- the plugin ---------------------------------------------------------------------------------- */

ZR_ORCHESTRATOR_PLUGIN(k, "kubernetes", "1.1",
                       "The kubernetes orchestrator: steps as Pods, an orchestrator Job, CronJob schedules",
                       "kubernetes",
                       "Runs each step as a Pod on a Kubernetes cluster, driven from an orchestrator Job or the client",
                       config_schema, step_settings_schema,
                       ZORCH_FLAVOR_LOCAL_STORE, /* a store directory shared with the nodes is mounted */
                       .check_config = k_check_config, .submit = k_submit, .release = k_release,
                       .schedule_create = k_schedule_create, .schedule_list = k_schedule_list,
                       .schedule_delete = k_schedule_delete)
