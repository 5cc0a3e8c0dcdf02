/* zorch — submissions: the host side of a run, what a flavor plugin sees
 * (the zorch_host slots submission_* and executor_*). */
#include "submission.h"

#include "run_record.h"

const char *zorch__submission_get(const zorch_submission *sub, const char *key) {
  if (!sub || !key) return NULL;
  const zorch_run *r = sub->run;
  if (!strcmp(key, "deployment")) return zorch__run_deployment_text((zorch_run *)r);
  if (!strcmp(key, "deployment_path")) return sub->deployment_path;
  if (!strcmp(key, "run_id")) return r->id;
  if (!strcmp(key, "run_name")) return r->name;
  if (!strcmp(key, "pipeline")) return r->pipeline;
  if (!strcmp(key, "config")) return sub->config;
  if (!strcmp(key, "store_path")) return zorch__store_root(r->store);
  if (!strcmp(key, "zorch_command")) return sub->zorch_command;
  if (!strcmp(key, "no_cache")) return (r->flags & ZORCH_RUN_NO_CACHE) ? "1" : "0";
  return NULL;
}

int zorch__submission_set_metadata(zorch_submission *sub, const char *key, const char *value) {
  if (!sub || !key || !value)
    return zorch__error_set(ZORCH_EINVALID, "submission metadata: key or value is NULL");
  pthread_mutex_lock(&sub->lock);
  int rc = zorch__kvs_set(&sub->run->metadata, key, value);
  if (!rc) rc = zorch__run_record_write(sub->run);
  pthread_mutex_unlock(&sub->lock);
  return rc;
}

int zorch__submission_set_status(zorch_submission *sub, int status, const char *message) {
  if (!sub) return zorch__error_set(ZORCH_EINVALID, "submission is NULL");
  if (status < ZORCH_STATUS_PENDING || status > ZORCH_STATUS_RETRYING)
    return zorch__error_set(ZORCH_EINVALID, "invalid run status %d", status);
  pthread_mutex_lock(&sub->lock);
  zorch_run *r = sub->run;
  r->status = status;
  free(r->message);
  r->message = zorch__strdup(message);
  if (status != ZORCH_STATUS_RUNNING && status != ZORCH_STATUS_PENDING) {
    r->finished = zorch__now();
    sub->status_set = true;
  }
  int rc = zorch__run_record_write(r);
  pthread_mutex_unlock(&sub->lock);
  return rc;
}

static void exec_finished(int status, const char *message, void *payload) {
  zorch__submission_set_status(payload, status, message);
}

/* The executor options of a submission: the run's own, "max_parallel" from
 * the flavor's options (the run's --max-parallel wins), the end reported as
 * the run's status. */
static zorch__exec_opts exec_opts_of(zorch_submission *sub, const char *options_json) {
  zorch__exec_opts eo = sub->exec_opts;
  if (options_json && *options_json) {
    json_t *o = json_loads(options_json, 0, NULL);
    json_t *mp = json_object_get(o, "max_parallel");
    if (json_is_integer(mp) && json_integer_value(mp) > 0 && !eo.max_parallel)
      eo.max_parallel = (uint32_t)json_integer_value(mp);
    json_decref(o);
  }
  eo.finish_cb = exec_finished;
  eo.finish_payload = sub;
  return eo;
}

int zorch__executor_start_host(void **out, zorch_submission *sub, const char *options_json) {
  if (!out || !sub) return zorch__error_set(ZORCH_EINVALID, "executor_start: NULL argument");
  *out = NULL;
  zorch__exec_opts eo = exec_opts_of(sub, options_json);
  /* the run's plan, loaded from the deployment document when the run started */
  zorch__plan *plan = zorch__plan_ref(sub->run->plan);
  int rc = zorch__plan_bind(plan, sub->pipeline);
  if (rc) {
    zorch__plan_free(plan);
    return rc;
  }
  zorch__exec *x = NULL;
  rc = zorch__exec_start(&x, plan, sub->run->store, &eo);
  if (rc) return rc;
  sub->exec = x;
  *out = x;
  return ZORCH_OK;
}

/* Each step's effective settings as JSON text, from the deployment document:
 * the step's own "settings", else the defaults. */
static char **step_settings(const char *deployment, const zorch__plan *plan) {
  json_t *doc = deployment ? json_loads(deployment, 0, NULL) : NULL;
  char **out = calloc(plan->n_steps + 1, sizeof *out);
  if (!doc || !out) {
    json_decref(doc);
    free(out);
    return NULL;
  }
  json_t *dflt = json_object_get(json_object_get(doc, "defaults"), "settings");
  char *dtext = dflt ? json_dumps(dflt, JSON_COMPACT) : zorch__strdup("{}");
  json_t *steps = json_object_get(doc, "steps");
  for (uint32_t i = 0; i < plan->n_steps; i++) out[i] = NULL;
  for (size_t k = 0; k < json_array_size(steps); k++) {
    json_t *st = json_array_get(steps, k);
    int64_t i = zorch__plan_find(plan, json_string_value(json_object_get(st, "name")) ?: "");
    json_t *set = json_object_get(st, "settings");
    if (i >= 0 && set) out[i] = json_dumps(set, JSON_COMPACT);
  }
  bool oom = !dtext;
  for (uint32_t i = 0; i < plan->n_steps && !oom; i++)
    if (!out[i] && !(out[i] = zorch__strdup(dtext))) oom = true;
  free(dtext);
  json_decref(doc);
  if (oom) {
    for (uint32_t i = 0; i < plan->n_steps; i++) free(out[i]);
    free(out);
    return NULL;
  }
  return out;
}

int zorch__executor_start_remote_host(void **out, zorch_submission *sub, const char *options_json,
                                      const zorch_step_launcher *ops, void *data) {
  if (!out || !sub || !ops || !ops->launch || !ops->stop)
    return zorch__error_set(ZORCH_EINVALID, "executor_start_remote: NULL argument or launcher operation");
  *out = NULL;
  if (ops->version < 1)
    return zorch__error_set(ZORCH_EVERSION, "executor_start_remote: launcher version %u is not supported",
                            ops->version);
  if (sub->run->flags & ZORCH_RUN_EPHEMERAL)
    return zorch__error_set(ZORCH_EINVALID, "remote steps need the run's records: an ephemeral run cannot launch them");
  zorch__exec_opts eo = exec_opts_of(sub, options_json);
  zorch__remote *rm = zorch__remote_new(ops, data, sub->run->plan->n_steps);
  if (!rm) return zorch__error_oom();
  rm->store_path = zorch__strdup(zorch__store_root(sub->run->store));
  rm->flavor = zorch__strdup(sub->run->flavor_name ? sub->run->flavor_name : "?");
  rm->settings = step_settings(zorch__run_deployment_text(sub->run), sub->run->plan);
  if (!rm->settings || !rm->store_path || !rm->flavor) {
    zorch__remote_free(rm);
    return zorch__error_set(ZORCH_ENOMEM, "cannot read the step settings of the deployment");
  }
  eo.remote = rm;
  zorch__exec *x = NULL;
  int rc = zorch__exec_start(&x, zorch__plan_ref(sub->run->plan), sub->run->store, &eo);
  if (rc) return rc;
  sub->exec = x;
  *out = x;
  return ZORCH_OK;
}

int zorch__executor_step_done_host(void *h, uint64_t attempt_id, int exit_code, const char *message) {
  return h ? zorch__exec_remote_done(h, attempt_id, exit_code, message)
           : zorch__error_set(ZORCH_EINVALID, "executor_step_done: no executor");
}

int zorch__executor_step_log_host(void *h, uint64_t attempt_id, const void *data, size_t len) {
  return h ? zorch__exec_remote_log(h, attempt_id, data, len)
           : zorch__error_set(ZORCH_EINVALID, "executor_step_log: no executor");
}

/* A document of the submission's run from the store, as host->alloc'd text
 * (host_alloc is malloc: the text zorch__store_read_doc made is handed out). */
static int run_doc(char **out_json, const zorch_submission *sub, const char *rel, const char *what) {
  size_t len = 0;
  int rc = rel ? zorch__store_read_doc(sub->run->store, rel, out_json, &len) : zorch__error_oom();
  if (rc == ZORCH_ENOTFOUND)
    zorch__error_set(rc, "run '%s' has no %s in its artifact store yet", sub->run->id, what);
  return rc;
}

int zorch__submission_run_record(char **out_json, const zorch_submission *sub) {
  if (!out_json || !sub) return zorch__error_set(ZORCH_EINVALID, "submission_run_record: NULL argument");
  *out_json = NULL;
  if (sub->run->flags & ZORCH_RUN_EPHEMERAL)
    return zorch__error_set(ZORCH_ENOTFOUND, "an ephemeral run keeps no run record");
  char *rel = zorch__asprintf("runs/%s/run.json", sub->run->id);
  int rc = run_doc(out_json, sub, rel, "run record");
  free(rel);
  return rc;
}

int zorch__submission_step_record(char **out_json, const zorch_submission *sub, const char *step) {
  if (!out_json || !sub || !step)
    return zorch__error_set(ZORCH_EINVALID, "submission_step_record: NULL argument");
  *out_json = NULL;
  /* only a step of the run names a record (and never a path elsewhere) */
  if (!sub->run->plan || zorch__plan_find(sub->run->plan, step) < 0)
    return zorch__error_set(ZORCH_ENOTFOUND, "run '%s' has no step '%s'", sub->run->id, step);
  if (sub->run->flags & ZORCH_RUN_EPHEMERAL)
    return zorch__error_set(ZORCH_ENOTFOUND, "an ephemeral run keeps no step records");
  char *rel = zorch__asprintf("runs/%s/steps/%s.json", sub->run->id, step);
  char *what = zorch__asprintf("record of step '%s'", step);
  int rc = run_doc(out_json, sub, rel, what ? what : "step record");
  free(rel);
  free(what);
  return rc;
}

int zorch__executor_wait_host(void *h, int timeout_ms) {
  return h ? zorch__exec_wait(h, timeout_ms) : zorch__error_set(ZORCH_EINVALID, "no executor");
}

int zorch__executor_cancel_host(void *h) { return h ? zorch__exec_cancel(h) : ZORCH_EINVALID; }

void zorch__executor_release_host(void *h) { zorch__exec_free(h); }

void zorch__submission_free(zorch_submission *sub) {
  if (!sub) return;
  free(sub->config);
  free(sub->deployment_path);
  free(sub->zorch_command);
  pthread_mutex_destroy(&sub->lock);
  free(sub);
}
