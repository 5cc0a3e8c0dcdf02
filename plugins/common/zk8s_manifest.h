/* zorch plugin kit — Kubernetes manifests for flavors that run steps in
 * Pods: the pod template of a step (or of an orchestrator), a Job around
 * it, the artifact store's volume, resource quantities and object names.
 * The kubernetes flavor uses them; tekton's TaskRuns need the same Pod
 * template.
 *
 * The store: when it is a local directory shared with the nodes (store_path
 * set), it is mounted at its own path (hostPath, or a PersistentVolumeClaim
 * the config names).  When the steps reach it over the network (no
 * store_path), the pod gets no store volume at all: the entrypoint's argv
 * names the store's URI, and store_env (credential references, never
 * secrets) is all else it needs.
 *
 * Every function returns a new reference (NULL on OOM) and borrows its
 * arguments.  Thread-safe.
 */
#ifndef ZORCH_ZK8S_MANIFEST_H
#define ZORCH_ZK8S_MANIFEST_H

#include <jansson.h>
#include <stdint.h>

#include "zdeploy.h"

/** "500m", "2" */
json_t *zkm_cpu_quantity(double cores);
/** "4Gi", "64Mi", "12Ki", "1000" */
json_t *zkm_mem_quantity(uint64_t bytes);

/** "<run>-<step>-<attempt>-<4 hex>" (or "<run>-orch-<4 hex>" without a
 *  step), a valid object name within 63 characters. */
void zkm_object_name(char *out, size_t n, const char *run_name, const char *step, uint32_t attempt);

/** The store's volume "zorch-store" ({type: hostPath [host_path]} by
 *  default, or {type: pvc, claim_name}) and *mount, at store_path. */
json_t *zkm_store_volume(json_t *store_volume_cfg, const char *store_path, json_t **mount);

typedef struct zkm_pod {
  const char *name;              /**< metadata.name, or NULL (the template of a Job) */
  const char *image;
  const char *pull_policy;       /**< NULL: IfNotPresent */
  const char *const *argv;       /**< the container's command, NULL-terminated */
  const char *const *env;        /**< "K=V", NULL-terminated (may be NULL) */
  const char *const *store_env;  /**< "K=V" the step needs to reach the store (may be NULL) */
  const zdep_resources *res;     /**< requests = limits; gpu_type becomes a node selector (may be NULL) */
  json_t *pod_settings;          /**< docs/kubernetes.md "pod settings" (may be NULL) */
  json_t *labels, *annotations;  /**< the flavor's own: they win over the pod settings' */
  const char *store_path;        /**< mount the store here; NULL: it is reached over the network */
  json_t *store_volume;          /**< the config's store_volume (may be NULL) */
  const char *run_id;            /**< ZORCH_KUBERNETES_RUN_ID */
} zkm_pod;

/** {"metadata": ..., "spec": ...} of a pod: one container "main",
 *  restartPolicy Never. */
json_t *zkm_pod_template(const zkm_pod *p);

/** A Pod object of the template (consumed). */
json_t *zkm_pod_object(json_t *tpl);

/** A Job running the template (consumed) once: backoffLimit, one pod,
 *  ttlSecondsAfterFinished when ttl is an integer. */
json_t *zkm_job(json_t *tpl, const char *name, json_int_t backoff, json_t *ttl);

#endif
