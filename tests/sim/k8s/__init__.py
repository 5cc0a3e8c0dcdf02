"""A Kubernetes API server simulator for zorch's tests (not shipped), on simkit.

It serves the part of the Kubernetes REST API that the kubernetes flavor,
kubectl and the official Python client use, over HTTPS with a CA it makes
itself, and runs every Pod for real through Podman's Docker-compatible API,
reporting phases and container states as a kubelet would.

  * Every request body is checked against the OpenAPI v3 documents of the
    real API (../shared/specs/kubernetes/openapi-spec/v3): $refs resolved,
    types, required fields; unknown fields are rejected with 400 under
    fieldValidation=Strict and dropped with a Warning header otherwise
    (the API server's default, Warn).  Object names, label keys and values,
    container names, quantities, restart policies and cron schedules are
    validated as the API server does (422 Invalid with causes).
  * Requests need the bearer token or a client certificate signed by the
    simulator's CA (401 Unauthorized otherwise).
  * Objects carry uid, creationTimestamp and resourceVersion; list and
    watch (?watch=<Go boolean>, /watch/ paths, resourceVersion, label and
    field selectors, timeoutSeconds, bookmarks) behave as the API server's
    do; 409 AlreadyExists/Conflict, 404 NotFound, 410 Expired are Status
    objects.  PUT and PATCH (merge, strategic merge from the documents'
    patch strategies, JSON patch) update objects and their /status
    subresource (pods, jobs, cronjobs, namespaces, persistentvolumeclaims).
  * The node: one simulated node with a capacity (--node-cpu,
    --node-memory) and labels.  A pod whose requests do not fit or whose
    nodeSelector does not match stays Pending with PodScheduled=False,
    reason Unschedulable.  Images come from the engine's local store (the
    node's "registry"): a missing image gives ErrImagePull, then
    ImagePullBackOff, and the pod stays Pending.  Memory limits are set on a
    pod cgroup, as the kubelet does; a container killed by the kernel's OOM
    killer is reported terminated with reason OOMKilled, exit code 137.
  * Pods use the host network; the kubelet injects KUBERNETES_SERVICE_HOST/
    PORT and mounts the service-account token, ca.crt and namespace at
    /var/run/secrets/kubernetes.io/serviceaccount, so code in a pod can use
    in-cluster config to talk back to the simulator.
  * Jobs (batch/v1): pods from the template, backoffLimit, status
    active/succeeded/failed, conditions Complete/Failed.  CronJobs are
    stored, listed, watched and deleted (not triggered).  Deleting a
    namespace deletes what is in it (phase Terminating until its pods end).

Usage: PYTHONPATH=tests/sim python3 -m k8s --dir DIR --podman-socket PATH
         [--node-cpu 2] [--node-memory 4Gi] [--node-label K=V] [--spec-dir DIR]
         [--job-backoff SECONDS] [--fault "METHOD PATH status=S count=N delay=T"]
Writes DIR/kubeconfig (token), DIR/kubeconfig-cert (client certificate),
DIR/ca.crt, DIR/token, DIR/admin-token (simkit's /_sim/ endpoints) and
DIR/ready (the URL, when serving).  SIGTERM stops it and removes the
containers it started.

Modules: objects (resources, Status errors, selectors, the store),
validation (the API server's rules), patch (strategic merge patch), cluster
(scheduler, kubelet, job and namespace controllers), api (the routes).
"""
