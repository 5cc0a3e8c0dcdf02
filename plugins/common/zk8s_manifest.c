/* zorch plugin kit — Kubernetes manifests (see zk8s_manifest.h). */
#include "zk8s_manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zkube.h"

json_t *zkm_cpu_quantity(double cores) {
  long m = (long)(cores * 1000 + 0.5);
  char b[32];
  if (m % 1000 == 0)
    snprintf(b, sizeof b, "%ld", m / 1000);
  else
    snprintf(b, sizeof b, "%ldm", m);
  return json_string(b);
}

json_t *zkm_mem_quantity(uint64_t bytes) {
  char b[32];
  if (bytes % (1u << 30) == 0)
    snprintf(b, sizeof b, "%lluGi", (unsigned long long)(bytes >> 30));
  else if (bytes % (1u << 20) == 0)
    snprintf(b, sizeof b, "%lluMi", (unsigned long long)(bytes >> 20));
  else if (bytes % 1024 == 0)
    snprintf(b, sizeof b, "%lluKi", (unsigned long long)(bytes >> 10));
  else
    snprintf(b, sizeof b, "%llu", (unsigned long long)bytes);
  return json_string(b);
}

void zkm_object_name(char *out, size_t n, const char *run_name, const char *step, uint32_t attempt) {
  char a[40], b[24], rnd[8];
  zk_sanitize_name(a, 30, run_name);
  zk_sanitize_name(b, 18, step ? step : "orchestrator");
  snprintf(rnd, sizeof rnd, "%04x", (unsigned)(zh_random() * 65536) & 0xffff);
  char full[128];
  if (step)
    snprintf(full, sizeof full, "%s-%s-%u-%s", a, b, attempt, rnd);
  else
    snprintf(full, sizeof full, "%s-orch-%s", a, rnd);
  size_t len = strlen(full); /* at most 29+1+17+1+10+1+4 < 64 */
  if (len >= n) len = n - 1;
  memcpy(out, full, len);
  out[len] = '\0';
}

json_t *zkm_store_volume(json_t *sv, const char *store_path, json_t **mount) {
  const char *type = zkit_jstr(sv, "type");
  json_t *vol;
  if (type && !strcmp(type, "pvc")) {
    const char *claim = zkit_jstr(sv, "claim_name");
    vol = json_pack("{s:s, s:{s:s}}", "name", "zorch-store", "persistentVolumeClaim", "claimName", claim ? claim : "");
  } else {
    const char *hp = zkit_jstr(sv, "host_path");
    vol = json_pack("{s:s, s:{s:s, s:s}}", "name", "zorch-store", "hostPath", "path", hp ? hp : store_path, "type",
                    "Directory");
  }
  *mount = json_pack("{s:s, s:s}", "name", "zorch-store", "mountPath", store_path);
  return vol;
}

/* "K=V" entries as [{name, value}], appended to `list`. */
static void env_append(json_t *list, const char *const *env) {
  for (size_t i = 0; env && env[i]; i++) {
    const char *eq = strchr(env[i], '=');
    if (!eq) continue;
    char *k = strndup(env[i], (size_t)(eq - env[i]));
    if (k) json_array_append_new(list, json_pack("{s:s, s:s}", "name", k, "value", eq + 1));
    free(k);
  }
}

/* The container's requests and limits: the step's resources (requests =
 * limits), then the pod settings' own requests and limits over them. */
static json_t *container_resources(const zdep_resources *res, json_t *ps) {
  json_t *req = json_object(), *lim = json_object();
  if (res && res->cpu > 0) {
    json_object_set_new(req, "cpu", zkm_cpu_quantity(res->cpu));
    json_object_set_new(lim, "cpu", zkm_cpu_quantity(res->cpu));
  }
  if (res && res->memory > 0) {
    json_object_set_new(req, "memory", zkm_mem_quantity(res->memory));
    json_object_set_new(lim, "memory", zkm_mem_quantity(res->memory));
  }
  if (res && res->gpu > 0) json_object_set_new(lim, "nvidia.com/gpu", json_integer(res->gpu));
  json_t *pres = json_object_get(ps, "resources");
  if (json_is_object(json_object_get(pres, "requests"))) json_object_update(req, json_object_get(pres, "requests"));
  if (json_is_object(json_object_get(pres, "limits"))) json_object_update(lim, json_object_get(pres, "limits"));
  json_t *out = json_object();
  if (json_object_size(req)) json_object_set(out, "requests", req);
  if (json_object_size(lim)) json_object_set(out, "limits", lim);
  json_decref(req);
  json_decref(lim);
  return out;
}

/* pod setting key -> pod spec field, copied as they are */
static const char *const spec_fields[][2] = {
    {"tolerations", "tolerations"},       {"affinity", "affinity"},
    {"service_account_name", "serviceAccountName"}, {"scheduler_name", "schedulerName"},
    {"priority_class_name", "priorityClassName"},   {NULL, NULL}};

json_t *zkm_pod_template(const zkm_pod *p) {
  json_t *ps = p->pod_settings;
  json_t *cmd = json_array();
  for (size_t i = 0; p->argv && p->argv[i]; i++) json_array_append_new(cmd, json_string(p->argv[i]));
  json_t *envl = json_array();
  env_append(envl, p->env);
  const char *ek;
  json_t *ev;
  json_object_foreach(json_object_get(ps, "env"), ek, ev) json_array_append_new(envl, json_pack("{s:s, s:O}", "name",
                                                                                               ek, "value", ev));
  env_append(envl, p->store_env);
  json_array_append_new(envl, json_pack("{s:s, s:s}", "name", "ZORCH_KUBERNETES_RUN_ID", "value",
                                        p->run_id ? p->run_id : ""));
  json_array_append_new(envl, json_pack("{s:s, s:{s:{s:s}}}", "name", "ZORCH_KUBERNETES_POD_NAME", "valueFrom",
                                        "fieldRef", "fieldPath", "metadata.name"));
  json_t *vols = json_array(), *mounts = json_array();
  if (p->store_path) { /* else the store is reached over the network: no volume */
    json_t *mount = NULL;
    json_array_append_new(vols, zkm_store_volume(p->store_volume, p->store_path, &mount));
    json_array_append_new(mounts, mount);
  }
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(ps, "volumes"), i, x) json_array_append(vols, x);
  json_array_foreach(json_object_get(ps, "volume_mounts"), i, x) json_array_append(mounts, x);
  json_t *container = json_pack("{s:s, s:s, s:o, s:o, s:o, s:s}", "name", "main", "image", p->image, "command", cmd,
                                "env", envl, "resources", container_resources(p->res, ps), "imagePullPolicy",
                                p->pull_policy ? p->pull_policy : "IfNotPresent");
  if (json_array_size(mounts)) json_object_set(container, "volumeMounts", mounts);
  if (json_object_get(ps, "security_context"))
    json_object_set(container, "securityContext", json_object_get(ps, "security_context"));
  json_decref(mounts);
  json_t *spec = json_pack("{s:s, s:[o]}", "restartPolicy", "Never", "containers", container);
  if (json_array_size(vols)) json_object_set(spec, "volumes", vols);
  json_decref(vols);
  json_t *nsel = json_deep_copy(json_object_get(ps, "node_selector"));
  if (p->res && p->res->gpu_type) {
    if (!nsel) nsel = json_object();
    json_object_set_new(nsel, "nvidia.com/gpu.product", json_string(p->res->gpu_type));
  }
  if (nsel) json_object_set_new(spec, "nodeSelector", nsel);
  for (int f = 0; spec_fields[f][0]; f++)
    if (json_object_get(ps, spec_fields[f][0]))
      json_object_set(spec, spec_fields[f][1], json_object_get(ps, spec_fields[f][0]));
  if (json_is_true(json_object_get(ps, "host_ipc"))) json_object_set_new(spec, "hostIPC", json_true());
  json_t *ips = json_object_get(ps, "image_pull_secrets");
  if (json_array_size(ips)) {
    json_t *a = json_array();
    json_array_foreach(ips, i, x) json_array_append_new(a, json_pack("{s:O}", "name", x));
    json_object_set_new(spec, "imagePullSecrets", a);
  }
  json_t *lab = json_object(), *ann = json_object();
  json_object_update(lab, json_object_get(ps, "labels"));
  json_object_update(lab, p->labels);
  json_object_update(ann, json_object_get(ps, "annotations"));
  json_object_update(ann, p->annotations);
  json_t *meta = json_pack("{s:o, s:o}", "labels", lab, "annotations", ann);
  if (p->name) json_object_set_new(meta, "name", json_string(p->name));
  return json_pack("{s:o, s:o}", "metadata", meta, "spec", spec);
}

json_t *zkm_pod_object(json_t *tpl) {
  json_object_set_new(tpl, "apiVersion", json_string("v1"));
  json_object_set_new(tpl, "kind", json_string("Pod"));
  return tpl;
}

json_t *zkm_job(json_t *tpl, const char *name, json_int_t backoff, json_t *ttl) {
  json_t *meta = json_deep_copy(json_object_get(tpl, "metadata"));
  json_object_set_new(meta, "name", json_string(name));
  json_object_del(json_object_get(tpl, "metadata"), "name");
  json_t *spec = json_pack("{s:I, s:I, s:I, s:o}", "backoffLimit", backoff, "parallelism", (json_int_t)1,
                           "completions", (json_int_t)1, "template", tpl);
  if (json_is_integer(ttl)) json_object_set(spec, "ttlSecondsAfterFinished", ttl);
  return json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "batch/v1", "kind", "Job", "metadata", meta, "spec", spec);
}
