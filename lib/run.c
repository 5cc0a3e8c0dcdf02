/* zorch — starting runs, submissions (the host side of a flavor), and reading runs back. */
#include "client_int.h"
#include "executor.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Set by zorch_main(): this program can be started again as one step. */
extern atomic_int zorch__entrypoint_registered;

const char *zorch_status_name(int status) {
  switch (status) {
  case ZORCH_STATUS_PENDING: return "pending";
  case ZORCH_STATUS_RUNNING: return "running";
  case ZORCH_STATUS_COMPLETED: return "completed";
  case ZORCH_STATUS_FAILED: return "failed";
  case ZORCH_STATUS_CACHED: return "cached";
  case ZORCH_STATUS_SKIPPED: return "skipped";
  case ZORCH_STATUS_STOPPED: return "stopped";
  case ZORCH_STATUS_RETRYING: return "retrying";
  default: return "unknown";
  }
}

static int status_from_name(const char *s) {
  for (int st = 0; s && st <= ZORCH_STATUS_RETRYING; st++)
    if (!strcmp(zorch_status_name(st), s)) return st;
  return ZORCH_STATUS_PENDING;
}

int zorch_run_options_init(zorch_run_options *opts, unsigned int version) {
  if (!opts) return zorch__error_set(ZORCH_EINVALID, "zorch_run_options_init: opts is NULL");
  if (version < 1 || version > ZORCH_RUN_OPTIONS_VERSION)
    return zorch__error_set(ZORCH_EVERSION, "zorch_run_options version %u is not supported (1..%d)",
                            version, ZORCH_RUN_OPTIONS_VERSION);
  zorch_run_options d = ZORCH_RUN_OPTIONS_INIT;
  *opts = d;
  opts->version = version;
  return ZORCH_OK;
}

struct zorch_submission {
  zorch_run *run;
  const zorch_pipeline *pipeline;
  char *config;
  char *deployment_path;
  char *zorch_command;
  pthread_mutex_t lock;
  bool status_set;
  zorch__exec *exec;        /* when the in-library executor runs it */
  zorch__exec_opts exec_opts;
  /* while the run is compiled and submitted: how (the deployment text of
   * an ephemeral run is made only if asked for) */
  const zorch__compile_info *compile_info;
};

struct zorch_run {
  zorch_client *client;
  char *id, *name, *pipeline, *stack, *orchestrator, *flavor_name;
  int status;
  double created, started, finished;
  char *message;
  zorch__kvs metadata;
  char *deployment;
  zorch__plan *plan;
  zorch__step_rec *recs;
  zorch__store *store;
  uint32_t flags;
  /* a run started by this process */
  const zorch__flavor *flavor;
  void *flavor_run;
  zorch_submission *sub;
  bool live, ended;
  atomic_int cancel_requested;
};

/* ---- the run record (run.json) ---------------------------------------------------- */

static char *run_json(const zorch_run *r) {
  json_t *o = json_pack("{s:i,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:s,s:f,s:f,s:f}", "zorch_run", 1,
                        "id", r->id, "name", r->name, "pipeline", r->pipeline, "stack", r->stack,
                        "orchestrator", r->orchestrator, "flavor", r->flavor_name, "status",
                        zorch_status_name(r->status), "created", r->created, "started",
                        r->started, "finished", r->finished);
  if (!o) return NULL;
  if (r->message) json_object_set_new(o, "message", json_string(r->message));
  json_t *md = json_object();
  for (size_t i = 0; i < r->metadata.n; i++)
    json_object_set_new(md, r->metadata.v[i].key, json_string(r->metadata.v[i].value));
  json_object_set_new(o, "metadata", md);
  json_object_set_new(o, "steps", json_integer(r->plan ? r->plan->n_steps : 0));
  char *t = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  return t;
}

static int write_run_record(zorch_run *r) {
  if (r->flags & ZORCH_RUN_EPHEMERAL) return ZORCH_OK;
  char *t = run_json(r);
  char *rel = zorch__asprintf("runs/%s/run.json", r->id);
  int rc = t && rel ? zorch__store_write_doc(r->store, rel, t, strlen(t), true) : zorch__error_oom();
  free(t);
  free(rel);
  return rc;
}

static int parse_run_record(zorch_run *r, const char *text, const char *where) {
  json_error_t err;
  json_t *o = json_loads(text, 0, &err);
  if (!o || !json_is_object(o)) {
    json_decref(o);
    return zorch__error_set(ZORCH_EINVALID, "%s: not a run record (%s)", where, err.text);
  }
  json_t *v = json_object_get(o, "zorch_run");
  if (!json_is_integer(v) || json_integer_value(v) > 1) {
    json_decref(o);
    return zorch__error_set(ZORCH_EVERSION, "%s: run record version is not supported", where);
  }
#define STR(field, key)                                                     \
  do {                                                                      \
    const char *s_ = json_string_value(json_object_get(o, key));            \
    free(r->field);                                                         \
    r->field = zorch__strdup(s_);                                           \
  } while (0)
  STR(id, "id");
  STR(name, "name");
  STR(pipeline, "pipeline");
  STR(stack, "stack");
  STR(orchestrator, "orchestrator");
  STR(flavor_name, "flavor");
  STR(message, "message");
#undef STR
  r->status = status_from_name(json_string_value(json_object_get(o, "status")));
  r->created = json_number_value(json_object_get(o, "created"));
  r->started = json_number_value(json_object_get(o, "started"));
  r->finished = json_number_value(json_object_get(o, "finished"));
  const char *k;
  json_t *mv;
  json_object_foreach(json_object_get(o, "metadata"), k, mv) {
    if (json_is_string(mv)) zorch__kvs_set(&r->metadata, k, json_string_value(mv));
  }
  json_decref(o);
  return r->id ? ZORCH_OK : zorch__error_set(ZORCH_EINVALID, "%s: run record has no id", where);
}

/* The deployment text.  A run that keeps records drops its copy once the
 * document is stored and loaded (a million-step document is tens of MB) and
 * reads it back from the store when asked. */
static const char *deployment_text(zorch_run *r) {
  if (!r->deployment && (r->flags & ZORCH_RUN_EPHEMERAL)) {
    /* compiled to its plan only (see run_start_common): the text is made
     * if the flavor asks for it while it starts the run, when the pipeline
     * is known to be there */
    const zorch_submission *sub = r->sub;
    if (sub && sub->compile_info && sub->pipeline)
      zorch__deployment_compile(&r->deployment, NULL, sub->pipeline, sub->compile_info);
    return r->deployment;
  }
  if (!r->deployment && r->store && r->id) {
    char *rel = zorch__asprintf("runs/%s/deployment.json", r->id);
    size_t len = 0;
    if (rel) zorch__store_read_doc(r->store, rel, &r->deployment, &len);
    free(rel);
  }
  return r->deployment;
}

/* ---- submissions: what a flavor plugin sees -------------------------------------------- */

const char *zorch__submission_get(const zorch_submission *sub, const char *key) {
  if (!sub || !key) return NULL;
  const zorch_run *r = sub->run;
  if (!strcmp(key, "deployment")) return deployment_text((zorch_run *)r);
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
  if (!rc) rc = write_run_record(sub->run);
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
  int rc = write_run_record(r);
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
  zorch__remote *rm = calloc(1, sizeof *rm);
  if (!rm) return zorch__error_oom();
  rm->ops = ops;
  rm->data = data;
  rm->store_path = zorch__strdup(zorch__store_root(sub->run->store));
  rm->settings = step_settings(deployment_text(sub->run), sub->run->plan);
  if (!rm->settings || !rm->store_path) {
    free(rm->store_path);
    if (rm->settings)
      for (size_t i = 0; rm->settings[i]; i++) free(rm->settings[i]);
    free(rm->settings);
    free(rm);
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

int zorch__executor_wait_host(void *h, int timeout_ms) {
  return h ? zorch__exec_wait(h, timeout_ms) : zorch__error_set(ZORCH_EINVALID, "no executor");
}

int zorch__executor_cancel_host(void *h) { return h ? zorch__exec_cancel(h) : ZORCH_EINVALID; }

void zorch__executor_release_host(void *h) { zorch__exec_free(h); }

/* ---- starting runs ------------------------------------------------------------------------- */

static void random_hex(char *out, size_t nbytes) {
  unsigned char b[32];
  if (nbytes > sizeof b) nbytes = sizeof b;
  if (getrandom(b, nbytes, 0) != (ssize_t)nbytes) {
    uint64_t t = (uint64_t)zorch__mono_ns() ^ ((uint64_t)getpid() << 32);
    for (size_t i = 0; i < nbytes; i++) b[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)i;
  }
  for (size_t i = 0; i < nbytes; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static void run_free_fields(zorch_run *r) {
  free(r->id);
  free(r->name);
  free(r->pipeline);
  free(r->stack);
  free(r->orchestrator);
  free(r->flavor_name);
  free(r->message);
  free(r->deployment);
  zorch__kvs_free(&r->metadata);
  if (r->plan) zorch__step_recs_free(r->recs, r->plan->n_steps);
  zorch__plan_free(r->plan);
  if (r->store) zorch__store_close(r->store);
}

static void submission_free(zorch_submission *sub) {
  if (!sub) return;
  free(sub->config);
  free(sub->deployment_path);
  free(sub->zorch_command);
  pthread_mutex_destroy(&sub->lock);
  free(sub);
}

static const zorch_orchestrator_ops *ops_of(const zorch__flavor *f) {
  return (const zorch_orchestrator_ops *)f->desc->ops;
}

/* What a run starts from: a pipeline compiled now, or a deployment stored
 * earlier (an orchestrator pod, a scheduled run); and whether it runs now
 * or becomes a schedule. */
typedef struct start_src {
  const zorch_pipeline *pipeline; /* compile this ... */
  json_t *doc;                    /* ... or run this deployment document */
  const char *doc_path;           /* where it was read */
  const char *cron;               /* schedule instead of running */
  char **schedule_id;             /* the flavor's id of the new schedule */
} start_src;

/* A stored deployment as a new run: new id and name, the entrypoint
 * templates pointed at the new run's copy of the document. */
static int rebase_deployment(json_t *doc, const char *store_root, const char *old_id, const char *new_id,
                             const char *new_name, double created) {
  json_t *run = json_object_get(doc, "run");
  if (!json_is_object(run)) return zorch__error_set(ZORCH_EINVALID, "deployment has no run object");
  json_incref(json_object_get(run, "id")); /* old_id points into it: keep it until the end */
  json_t *old_id_ref = json_object_get(run, "id");
  json_object_set_new(run, "id", json_string(new_id));
  json_object_set_new(run, "name", json_string(new_name));
  json_object_set_new(run, "created", json_real(created));
  char *newdp = zorch__asprintf("%s/runs/%s/deployment.json", store_root, new_id);
  if (!newdp) {
    json_decref(old_id_ref);
    return zorch__error_oom();
  }
  json_t *ep = json_object_get(doc, "entrypoint");
  const char *k;
  json_t *argv;
  json_object_foreach(ep, k, argv) {
    size_t i;
    json_t *a;
    bool next_dp = false, next_run = false;
    json_array_foreach(argv, i, a) {
      const char *v = json_string_value(a);
      if (!v) continue;
      bool is_dp = next_dp, is_run = next_run || (old_id && !strcmp(v, old_id));
      next_dp = !strcmp(v, "--zorch-deployment");
      next_run = !strcmp(v, "--zorch-run");
      /* v is freed by the replacement: decide first */
      if (is_dp)
        json_array_set_new(argv, i, json_string(newdp));
      else if (is_run)
        json_array_set_new(argv, i, json_string(new_id));
    }
  }
  free(newdp);
  json_decref(old_id_ref);
  return ZORCH_OK;
}

/* Is the stack's artifact store a directory on this machine?  The built-in
 * "local" artifact store is (its flavor defines what "local" means here);
 * steps reach it only where the orchestrator flavor has
 * ZORCH_FLAVOR_LOCAL_STORE. */
static bool stack_store_is_local_dir(const zorch__stack *s) {
  return s->store_flavor && !strcmp(s->store_flavor, "local");
}

static int run_start_inner(zorch_run **out, zorch_client *client, start_src *src,
                           const zorch_run_options *opts) {
  if (!out) return zorch__error_set(ZORCH_EINVALID, "zorch_run_start: out is NULL");
  *out = NULL;
  const zorch_pipeline *pipeline = src->pipeline;
  if (!client || (!pipeline && !src->doc))
    return zorch__error_set(ZORCH_EINVALID, "zorch_run_start: client or pipeline is NULL");
  zorch_run_options d = ZORCH_RUN_OPTIONS_INIT;
  if (!opts) opts = &d;
  if (opts->version < 1 || opts->version > ZORCH_RUN_OPTIONS_VERSION)
    return zorch__error_set(ZORCH_EVERSION, "zorch_run_options version %u is not supported (1..%d)",
                            opts->version, ZORCH_RUN_OPTIONS_VERSION);
  if (opts->failure_mode < ZORCH_CONTINUE_ON_FAILURE || opts->failure_mode > ZORCH_FAIL_FAST)
    return zorch__error_set(ZORCH_EINVALID, "invalid failure mode %d", opts->failure_mode);
  if (opts->run_name && zorch__check_name("run", opts->run_name)) return ZORCH_EINVALID;
  if (pipeline && !pipeline->n_steps)
    return zorch__error_set(ZORCH_EINVALID, "pipeline '%s' has no steps", pipeline->name);
  const char *pname = pipeline ? pipeline->name : json_string_value(json_object_get(src->doc, "pipeline"));
  if (!pname) return zorch__error_set(ZORCH_EINVALID, "%s: not a deployment (no pipeline)", src->doc_path);
  int rc; /* compiling the deployment below validates the pipeline */

  zorch__stack stack;
  memset(&stack, 0, sizeof stack);
  rc = zorch__stack_resolve(&stack, client, opts->stack);
  if (rc) return rc;
  const zorch__flavor *fl =
      zorch__registry_find(client->registry, ZORCH_COMPONENT_ORCHESTRATOR, stack.orchestrator_flavor);
  if (!fl) {
    rc = zorch__error_set(ZORCH_ENOTFOUND,
                          "stack '%s' uses orchestrator '%s' of flavor '%s', but no loaded plugin "
                          "provides that flavor (see `zorch orchestrator flavor list`)",
                          stack.name, stack.orchestrator_name, stack.orchestrator_flavor);
    zorch__stack_clear(&stack);
    return rc;
  }
  bool has_function = false;
  if (pipeline) {
    has_function = pipeline->n_function > 0;
  } else {
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(src->doc, "steps"), i, st) {
      const char *kind = json_string_value(json_object_get(st, "kind"));
      if (kind && !strcmp(kind, "function")) has_function = true;
    }
  }
  /* What the flavor can do is in its capability flags, never in its name. */
  const bool in_process = (fl->flags & ZORCH_FLAVOR_IN_PROCESS) != 0;
  if (!(fl->flags & ZORCH_FLAVOR_LOCAL_STORE) && stack_store_is_local_dir(&stack)) {
    rc = zorch__error_set(ZORCH_EINVALID,
                          "stack '%s': orchestrator '%s' (flavor %s) runs steps where artifact "
                          "store '%s' (a directory on this machine, %s) cannot be reached: use a "
                          "stack whose artifact store the steps reach over the network",
                          stack.name, stack.orchestrator_name, stack.orchestrator_flavor,
                          stack.store_name, stack.store_path ? stack.store_path : "?");
    zorch__stack_clear(&stack);
    return rc;
  }
  if (pipeline && has_function && !in_process &&
      !pipeline->entrypoint.n && !atomic_load(&zorch__entrypoint_registered)) {
    rc = zorch__error_set(ZORCH_EINVALID,
                          "pipeline '%s' has function steps, which flavor '%s' runs by starting "
                          "this program again as a step: call zorch_main() first in main() "
                          "(or name the program with zorch_pipeline_set_entrypoint())",
                          pipeline->name, stack.orchestrator_flavor);
    zorch__stack_clear(&stack);
    return rc;
  }
  if (!pipeline && has_function && in_process) {
    rc = zorch__error_set(ZORCH_EINVALID,
                          "%s has function steps: a stored deployment runs on a flavor that starts "
                          "the program as a step elsewhere, not on '%s', which runs steps in this "
                          "process (stack '%s')",
                          src->doc_path, stack.orchestrator_flavor, stack.name);
    zorch__stack_clear(&stack);
    return rc;
  }
  /* the flavor's step settings, before anything is compiled or stored */
  rc = pipeline ? zorch__step_settings_check_pipeline(fl, pipeline)
                : zorch__step_settings_check_doc(fl, src->doc);
  if (rc) {
    if (!pipeline) zorch__error_prefix("%s", src->doc_path);
    zorch__stack_clear(&stack);
    return rc;
  }
  const zorch_orchestrator_ops *fops = ops_of(fl);
  if (src->cron && (fops->version < 2 || !fops->schedule_create)) {
    rc = zorch__error_set(ZORCH_ENOTSUPPORTED,
                          "orchestrator '%s' (flavor %s) cannot run pipelines on a schedule",
                          stack.orchestrator_name, stack.orchestrator_flavor);
    zorch__stack_clear(&stack);
    return rc;
  }
  zorch_run *r = calloc(1, sizeof *r);
  zorch_submission *sub = calloc(1, sizeof *sub);
  if (!r || !sub) {
    free(r);
    free(sub);
    zorch__stack_clear(&stack);
    return zorch__error_oom();
  }
  pthread_mutex_init(&sub->lock, NULL);
  r->client = client;
  r->flags = opts->flags;
  r->status = ZORCH_STATUS_RUNNING;
  r->created = r->started = zorch__now();
  char idbuf[33];
  random_hex(idbuf, 16);
  const char *doc_id = src->doc ? json_string_value(json_object_get(json_object_get(src->doc, "run"), "id")) : NULL;
  const char *doc_name =
      src->doc ? json_string_value(json_object_get(json_object_get(src->doc, "run"), "name")) : NULL;
  bool fresh = !src->doc || (opts->flags & ZORCH_RUN_NEW_ID);
  if (!fresh && (!doc_id || !doc_name)) {
    rc = zorch__error_set(ZORCH_EINVALID, "%s: the deployment has no run id or name", src->doc_path);
    free(r);
    free(sub);
    zorch__stack_clear(&stack);
    return rc;
  }
  r->id = zorch__strdup(fresh ? idbuf : doc_id);
  if (!fresh) {
    r->name = zorch__strdup(doc_name);
    json_t *cr = json_object_get(json_object_get(src->doc, "run"), "created");
    if (json_is_number(cr)) r->created = json_number_value(cr);
  } else if (opts->run_name) {
    r->name = zorch__strdup(opts->run_name);
  } else {
    time_t t = (time_t)r->created;
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
    r->name = zorch__asprintf("%s-%s-%.6s", pname, ts, idbuf);
  }
  r->pipeline = zorch__strdup(pname);
  r->stack = zorch__strdup(stack.name);
  r->orchestrator = zorch__strdup(stack.orchestrator_name);
  r->flavor_name = zorch__strdup(stack.orchestrator_flavor);
  r->flavor = fl;
  r->sub = sub;
  sub->run = r;
  sub->pipeline = pipeline;
  sub->config = zorch__strdup(stack.orchestrator_config ? stack.orchestrator_config : "{}");
  const char *zc = zorch__getenv(client, "ZORCH_COMMAND");
  /* absolute: steps may run with another working directory (a container) */
  char *zc_abs = zc && *zc && zc[0] != '/' ? realpath(zc, NULL) : NULL;
  sub->zorch_command = zc_abs ? zc_abs
                       : zc && *zc ? zorch__strdup(zc)
                                   : zorch__asprintf("%s/zorch", ZORCH_BINDIR);
  sub->exec_opts.max_parallel = opts->max_parallel;
  sub->exec_opts.flags = opts->flags;
  sub->exec_opts.progress_cb = opts->progress_cb;
  sub->exec_opts.progress_payload = opts->progress_payload;
  rc = zorch__store_open(&r->store, stack.store_path);
  if (rc) {
    zorch__error_prefix("artifact store '%s'", stack.store_name);
    goto fail;
  }
  zorch__compile_info ci;
  if (pipeline) {
    ci = (zorch__compile_info){.run_id = r->id,
                              .run_name = r->name,
                              .params_json = opts->params_json,
                              .stack = stack.name,
                              .orchestrator = stack.orchestrator_name,
                              .flavor = stack.orchestrator_flavor,
                              .store_path = zorch__store_root(r->store),
                              .failure_mode = opts->failure_mode,
                              .zorch_command = sub->zorch_command,
                              .created = r->created};
    /* An ephemeral run on an in-process flavor needs no deployment
     * document: nothing is stored, and the steps run here from the plan,
     * which is made from the pipeline directly. */
    bool text = src->cron || !(opts->flags & ZORCH_RUN_EPHEMERAL) || !in_process;
    if ((rc = zorch__deployment_compile(text ? &r->deployment : NULL, &r->plan, pipeline, &ci)))
      goto fail;
    sub->compile_info = &ci;
  } else {
    const char *dstore = json_string_value(json_object_get(json_object_get(src->doc, "artifact_store"), "path"));
    if (!dstore || strcmp(dstore, zorch__store_root(r->store)) != 0) {
      rc = zorch__error_set(ZORCH_EINVALID,
                            "%s uses the artifact store at %s, but stack '%s' has its store at %s: use a "
                            "stack whose store is at the deployment's path",
                            src->doc_path, dstore ? dstore : "(none)", stack.name, zorch__store_root(r->store));
      goto fail;
    }
    if (fresh && (rc = rebase_deployment(src->doc, dstore, doc_id, r->id, r->name, r->created))) goto fail;
    r->deployment = json_dumps(src->doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!r->deployment) {
      rc = zorch__error_oom();
      goto fail;
    }
  }
  if (!r->plan && (rc = zorch__plan_load(&r->plan, r->deployment))) goto fail;
  /* r->recs: made when the run is waited for or refreshed */
  sub->deployment_path =
      src->cron ? zorch__asprintf("%s/schedules/%s/deployment.json", zorch__store_root(r->store), r->name)
                : zorch__asprintf("%s/runs/%s/deployment.json", zorch__store_root(r->store), r->id);
  if (!sub->deployment_path || !r->id || !r->name) {
    rc = zorch__error_oom();
    goto fail;
  }
  zorch__kvs_set(&r->metadata, "orchestrator", stack.orchestrator_flavor);
  if (src->cron) {
    /* a schedule: the deployment is a template each scheduled run copies */
    char *rel = zorch__asprintf("schedules/%s/deployment.json", r->name);
    rc = rel ? zorch__store_write_doc(r->store, rel, r->deployment, strlen(r->deployment), true)
             : zorch__error_oom();
    free(rel);
    if (rc) goto fail;
    char *id = NULL;
    rc = fops->schedule_create(fl->payload, sub, src->cron, &id);
    if (rc) {
      zorch__error_prefix("orchestrator '%s' (flavor %s) could not create the schedule",
                          stack.orchestrator_name, stack.orchestrator_flavor);
      goto fail;
    }
    *src->schedule_id = id ? zorch__strdup(id) : zorch__strdup(r->name);
    free(id);
    run_free_fields(r);
    submission_free(sub);
    free(r);
    zorch__stack_clear(&stack);
    return *src->schedule_id ? ZORCH_OK : zorch__error_oom();
  }
  if (!(opts->flags & ZORCH_RUN_EPHEMERAL)) {
    if (fresh) {
      char *rel = zorch__asprintf("runs/%s/deployment.json", r->id);
      rc = rel ? zorch__store_write_doc(r->store, rel, r->deployment, strlen(r->deployment), true)
               : zorch__error_oom();
      free(rel);
      if (rc) goto fail;
    }
    if ((rc = write_run_record(r))) goto fail;
    free(r->deployment); /* stored and loaded: read back on demand */
    r->deployment = NULL;
  } else if (!in_process) {
    rc = zorch__error_set(ZORCH_EINVALID,
                          "ephemeral runs keep no records, so only a flavor that runs the steps "
                          "in this process (local) can run them (stack '%s' uses '%s')",
                          stack.name, stack.orchestrator_flavor);
    goto fail;
  }
  rc = fops->submit(&r->flavor_run, fl->payload, sub);
  sub->compile_info = NULL;
  if (rc) {
    zorch__error_prefix("orchestrator '%s' (flavor %s) could not start the run",
                        stack.orchestrator_name, stack.orchestrator_flavor);
    r->status = ZORCH_STATUS_FAILED;
    free(r->message);
    r->message = zorch__strdup(zorch_error_last()->message);
    r->finished = zorch__now();
    int keep = rc;
    write_run_record(r);
    rc = keep;
    goto fail;
  }
  r->live = true;
  zorch__stack_clear(&stack);
  *out = r;
  return ZORCH_OK;
fail:
  zorch__stack_clear(&stack);
  {
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", zorch_error_last()->message);
    run_free_fields(r);
    submission_free(sub);
    free(r);
    zorch__error_set(rc, "%s", msg);
  }
  return rc;
}

/* Starting a large run makes arrays of a few hundred bytes a step (the
 * order, the plan, the executor's state and records), and the first touch
 * of that much fresh memory is most of what the start costs: a second
 * thread faults it in ahead while this one validates and compiles.  Not
 * for a very large run: there the reserve would fault in the executor's
 * arrays while the compiler's are still alive (about 120 MiB more peak
 * memory for 1,000,000 steps), and its arrays get huge pages instead (see
 * zorch__big_calloc). */
#define RESERVE_MIN_STEPS 8192
#define RESERVE_MAX_STEPS 262144
#define RESERVE_STEP_BYTES 270 /* measured: 265 with 1.5 edges a step, ephemeral */
#define RESERVE_KEY_BYTES 66   /* a run that makes cache keys: its key block */
#define RESERVE_EDGE_BYTES 8

static int run_start_common(zorch_run **out, zorch_client *client, start_src *src,
                            const zorch_run_options *opts) {
  size_t n = 0, edges = 0;
  if (src->pipeline) {
    n = src->pipeline->n_steps;
    edges = src->pipeline->n_edges;
  } else if (src->doc) {
    n = json_array_size(json_object_get(src->doc, "steps"));
    edges = 2 * n;
  }
  zorch__reserve *rv = NULL;
  if (n >= RESERVE_MIN_STEPS && n < RESERVE_MAX_STEPS && !src->cron && sysconf(_SC_NPROCESSORS_ONLN) > 1)
    rv = zorch__reserve_begin(n * RESERVE_STEP_BYTES + edges * RESERVE_EDGE_BYTES +
                              (zorch__run_makes_keys(opts ? opts->flags : 0) ? n * RESERVE_KEY_BYTES : 0));
  int rc = run_start_inner(out, client, src, opts);
  zorch__reserve_end(rv);
  return rc;
}

int zorch_run_start(zorch_run **out, zorch_client *client, const zorch_pipeline *pipeline,
                    const zorch_run_options *opts) {
  start_src src = {.pipeline = pipeline};
  if (!pipeline) {
    if (out) *out = NULL;
    return zorch__error_set(ZORCH_EINVALID, "zorch_run_start: client or pipeline is NULL");
  }
  return run_start_common(out, client, &src, opts);
}

int zorch_run_start_deployment(zorch_run **out, zorch_client *client, const char *deployment_path,
                               const zorch_run_options *opts) {
  if (out) *out = NULL;
  if (!out || !client || !deployment_path)
    return zorch__error_set(ZORCH_EINVALID, "zorch_run_start_deployment: NULL argument");
  char *text = NULL;
  size_t len = 0;
  int rc = zorch__read_file(deployment_path, &text, &len);
  if (rc) return zorch__error_prefix("deployment %s", deployment_path), rc;
  json_error_t je;
  json_t *doc = json_loadb(text, len, 0, &je);
  free(text);
  if (!json_is_object(doc)) {
    json_decref(doc);
    return zorch__error_set(ZORCH_EINVALID, "%s: not a deployment document: %s (line %d)", deployment_path,
                            je.text, je.line);
  }
  json_t *v = json_object_get(doc, "zorch_deployment");
  if (!json_is_integer(v) || json_integer_value(v) != 1) {
    json_decref(doc);
    return zorch__error_set(ZORCH_EVERSION, "%s: deployment version %s is not supported (this library reads 1)",
                            deployment_path, json_is_integer(v) ? "newer than 1" : "(missing)");
  }
  start_src src = {.doc = doc, .doc_path = deployment_path};
  rc = run_start_common(out, client, &src, opts);
  json_decref(doc);
  return rc;
}

/* ---- schedules ------------------------------------------------------------------------------ */

int zorch_schedule_create(char **out_id, zorch_client *client, const zorch_pipeline *pipeline, const char *cron,
                          const zorch_run_options *opts) {
  if (out_id) *out_id = NULL;
  if (!out_id || !client || !pipeline || !cron || !*cron)
    return zorch__error_set(ZORCH_EINVALID, "zorch_schedule_create: NULL argument");
  int fields = 0;
  for (const char *p = cron; *p;) {
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) break;
    fields++;
    while (*p && *p != ' ' && *p != '\t') p++;
  }
  if (fields != 5 && cron[0] != '@')
    return zorch__error_set(ZORCH_EINVALID,
                            "schedule '%s': a cron schedule has 5 fields (minute hour day-of-month month "
                            "day-of-week), e.g. '0 3 * * *'",
                            cron);
  zorch_run *r = NULL;
  start_src src = {.pipeline = pipeline, .cron = cron, .schedule_id = out_id};
  return run_start_common(&r, client, &src, opts);
}

static int schedule_flavor(zorch_client *client, const char *stack_name, zorch__stack *stack,
                           const zorch__flavor **fl, const char *what) {
  memset(stack, 0, sizeof *stack);
  int rc = zorch__stack_resolve(stack, client, stack_name);
  if (rc) return rc;
  *fl = zorch__registry_find(client->registry, ZORCH_COMPONENT_ORCHESTRATOR, stack->orchestrator_flavor);
  const zorch_orchestrator_ops *ops = *fl ? ops_of(*fl) : NULL;
  bool has = ops && ops->version >= 2 &&
             (strcmp(what, "list") ? ops->schedule_delete != NULL : ops->schedule_list != NULL);
  if (!has) {
    rc = zorch__error_set(*fl ? ZORCH_ENOTSUPPORTED : ZORCH_ENOTFOUND,
                          "stack '%s': orchestrator '%s' (flavor %s) %s", stack->name, stack->orchestrator_name,
                          stack->orchestrator_flavor,
                          *fl ? "has no schedules" : "is not provided by any loaded plugin");
    zorch__stack_clear(stack);
  }
  return rc;
}

int zorch_schedule_list(char **out_json, zorch_client *client, const char *stack_name) {
  if (out_json) *out_json = NULL;
  if (!out_json || !client) return zorch__error_set(ZORCH_EINVALID, "zorch_schedule_list: NULL argument");
  zorch__stack stack;
  const zorch__flavor *fl;
  int rc = schedule_flavor(client, stack_name, &stack, &fl, "list");
  if (rc) return rc;
  char *json = NULL;
  rc = ops_of(fl)->schedule_list(fl->payload, stack.orchestrator_config ? stack.orchestrator_config : "{}", &json);
  if (!rc) {
    *out_json = zorch__strdup(json ? json : "[]");
    if (!*out_json) rc = zorch__error_oom();
  }
  free(json);
  zorch__stack_clear(&stack);
  return rc;
}

int zorch_schedule_delete(zorch_client *client, const char *stack_name, const char *id) {
  if (!client || !id || !*id) return zorch__error_set(ZORCH_EINVALID, "zorch_schedule_delete: NULL argument");
  zorch__stack stack;
  const zorch__flavor *fl;
  int rc = schedule_flavor(client, stack_name, &stack, &fl, "delete");
  if (rc) return rc;
  rc = ops_of(fl)->schedule_delete(fl->payload, stack.orchestrator_config ? stack.orchestrator_config : "{}", id);
  zorch__stack_clear(&stack);
  return rc;
}

/* ---- waiting, cancelling --------------------------------------------------------------------- */

static zorch_run *volatile sigint_run;
static volatile sig_atomic_t sigint_count;

static void on_sigint(int sig) {
  (void)sig;
  sigint_count++;
  zorch_run *r = sigint_run;
  if (r) zorch_run_cancel(r);
}

static int result_code(zorch_run *r) {
  switch (r->status) {
  case ZORCH_STATUS_COMPLETED: return ZORCH_OK;
  case ZORCH_STATUS_STOPPED:
    return zorch__error_set(ZORCH_ECANCELLED, "run '%s' was stopped%s%s", r->name,
                            r->message ? ": " : "", r->message ? r->message : "");
  case ZORCH_STATUS_FAILED:
    return zorch__error_set(ZORCH_ESTEP, "run '%s' failed%s%s", r->name, r->message ? ": " : "",
                            r->message ? r->message : "");
  default:
    return zorch__error_set(ZORCH_ETIMEOUT, "run '%s' is still %s", r->name,
                            zorch_status_name(r->status));
  }
}

static int load_records(zorch_run *r);

int zorch_run_wait(zorch_run *r, int timeout_ms) {
  if (!r) return zorch__error_set(ZORCH_EINVALID, "zorch_run_wait: run is NULL");
  if (!r->live || r->ended) return result_code(r);
  struct sigaction old, sa;
  bool handle = r->flags & ZORCH_RUN_HANDLE_SIGINT;
  if (handle) {
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigint_run = r;
    sigaction(SIGINT, &sa, &old);
  }
  int rc = ops_of(r->flavor)->wait(r->flavor_run, timeout_ms);
  if (handle) {
    sigaction(SIGINT, &old, NULL);
    sigint_run = NULL;
  }
  if (rc == ZORCH_ETIMEOUT)
    return zorch__error_set(ZORCH_ETIMEOUT, "run '%s' is still running", r->name);
  if (rc != ZORCH_OK) return rc;
  r->ended = true;
  if (!r->sub->status_set) {
    /* the flavor ended without reporting: record it as failed */
    zorch__submission_set_status(r->sub, ZORCH_STATUS_FAILED,
                                 "the orchestrator ended the run without reporting its status");
  }
  zorch_run_refresh(r);
  return result_code(r);
}

int zorch_run_cancel(zorch_run *r) {
  if (!r) return ZORCH_EINVALID;
  if (!r->live || r->ended) return ZORCH_OK;
  atomic_store(&r->cancel_requested, 1);
  return ops_of(r->flavor)->cancel(r->flavor_run);
}

void zorch_run_free(zorch_run *r) {
  if (!r) return;
  if (r->live) {
    const zorch_orchestrator_ops *ops = ops_of(r->flavor);
    if (!r->ended) {
      ops->cancel(r->flavor_run);
      ops->wait(r->flavor_run, -1);
    }
    ops->release(r->flavor_run);
  }
  run_free_fields(r);
  submission_free(r->sub);
  free(r);
}

int zorch_pipeline_run(zorch_run **out, zorch_client *client, const zorch_pipeline *pipeline,
                       const zorch_run_options *opts) {
  int rc = zorch_run_start(out, client, pipeline, opts);
  if (rc) return rc;
  return zorch_run_wait(*out, -1);
}

/* ---- loading runs from a store ---------------------------------------------------------------- */

/* (Re)load the step records from the store: journal, then per-step record files. */
static int load_records(zorch_run *r) {
  if (!r->plan) return ZORCH_OK;
  zorch__step_rec *fresh = zorch__step_recs_new(r->plan);
  if (!fresh) return zorch__error_oom();
  char *dir = zorch__asprintf("%s/runs/%s", zorch__store_root(r->store), r->id);
  int rc = dir ? zorch__step_recs_load(r->plan, fresh, dir) : zorch__error_oom();
  free(dir);
  if (rc) {
    zorch__step_recs_free(fresh, r->plan->n_steps);
    return rc;
  }
  zorch__step_recs_free(r->recs, r->plan->n_steps);
  r->recs = fresh;
  return ZORCH_OK;
}

static int load_run(zorch_run **out, zorch_client *c, zorch__store *st, const char *id) {
  char *rel = zorch__asprintf("runs/%s/run.json", id);
  char *text = NULL;
  size_t len = 0;
  int rc = rel ? zorch__store_read_doc(st, rel, &text, &len) : zorch__error_oom();
  if (rc) {
    free(rel);
    return rc;
  }
  zorch_run *r = calloc(1, sizeof *r);
  if (!r) {
    free(rel);
    free(text);
    return zorch__error_oom();
  }
  r->client = c;
  r->store = st;
  char where[512];
  snprintf(where, sizeof where, "%s/%s", zorch__store_root(st), rel);
  rc = parse_run_record(r, text, where);
  free(text);
  free(rel);
  if (!rc) {
    rel = zorch__asprintf("runs/%s/deployment.json", id);
    rc = zorch__store_read_doc(st, rel, &r->deployment, &len);
    free(rel);
    if (!rc) rc = zorch__plan_load(&r->plan, r->deployment);
    if (!rc) rc = load_records(r);
  }
  if (rc) {
    r->store = NULL; /* the caller still owns it */
    run_free_fields(r);
    free(r);
    return rc;
  }
  *out = r;
  return ZORCH_OK;
}

int zorch_run_refresh(zorch_run *r) {
  if (!r) return zorch__error_set(ZORCH_EINVALID, "zorch_run_refresh: run is NULL");
  if (r->live && r->sub->exec) {
    if (r->ended && r->recs) return ZORCH_OK; /* final: taken from the executor */
    /* at the end the executor hands its records over; while it runs, a copy */
    zorch__step_rec *snap = r->ended ? zorch__exec_take_records(r->sub->exec) : NULL;
    if (!snap) snap = zorch__exec_snapshot(r->sub->exec);
    if (!snap) return zorch__error_oom();
    zorch__step_recs_free(r->recs, r->plan->n_steps);
    r->recs = snap;
    return ZORCH_OK;
  }
  if (r->live) return load_records(r); /* a flavor whose steps write records to the store */
  /* a loaded run: re-read its record too */
  char *rel = zorch__asprintf("runs/%s/run.json", r->id);
  char *text = NULL;
  size_t len = 0;
  int rc = rel ? zorch__store_read_doc(r->store, rel, &text, &len) : zorch__error_oom();
  free(rel);
  if (rc) return rc;
  zorch__kvs_free(&r->metadata);
  rc = parse_run_record(r, text, r->id);
  free(text);
  if (rc) return rc;
  return load_records(r);
}

static int find_run_id_by_name(char **out, zorch__store *st, const char *name) {
  char *rd = zorch__path_join(zorch__store_root(st), "runs");
  DIR *d = rd ? opendir(rd) : NULL;
  free(rd);
  if (!d) return ZORCH_ENOTFOUND;
  struct dirent *de;
  double best = -1;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    char *rel = zorch__asprintf("runs/%s/run.json", de->d_name);
    char *text = NULL;
    if (rel && zorch__store_read_doc(st, rel, &text, NULL) == ZORCH_OK) {
      json_t *o = json_loads(text, 0, NULL);
      const char *n = json_string_value(json_object_get(o, "name"));
      double created = json_number_value(json_object_get(o, "created"));
      if (n && !strcmp(n, name) && created > best) {
        best = created;
        free(*out);
        *out = zorch__strdup(de->d_name);
      }
      json_decref(o);
    }
    free(text);
    free(rel);
  }
  closedir(d);
  return *out ? ZORCH_OK : ZORCH_ENOTFOUND;
}

int zorch_run_open(zorch_run **out, zorch_client *c, const char *id_or_name) {
  if (!out) return zorch__error_set(ZORCH_EINVALID, "zorch_run_open: out is NULL");
  *out = NULL;
  if (!c || !id_or_name || !*id_or_name)
    return zorch__error_set(ZORCH_EINVALID, "zorch_run_open: client or run id is missing");
  if (strchr(id_or_name, '/') || id_or_name[0] == '.')
    return zorch__error_set(ZORCH_EINVALID, "invalid run id or name '%s'", id_or_name);
  char **paths = NULL;
  int rc = zorch__store_paths(&paths, c);
  if (rc) return rc;
  rc = ZORCH_ENOTFOUND;
  for (size_t pass = 0; pass < 2 && rc == ZORCH_ENOTFOUND; pass++) {
    for (size_t i = 0; paths[i] && rc == ZORCH_ENOTFOUND; i++) {
      struct stat sb;
      if (stat(paths[i], &sb) != 0) continue;
      zorch__store *st = NULL;
      if (zorch__store_open(&st, paths[i]) != ZORCH_OK) continue;
      char *id = NULL;
      if (pass == 0) id = zorch__strdup(id_or_name);
      else if (find_run_id_by_name(&id, st, id_or_name) != ZORCH_OK) id = NULL;
      if (id) {
        char *rel = zorch__asprintf("runs/%s/run.json", id);
        char *probe = zorch__path_join(paths[i], rel ? rel : "");
        bool exists = probe && stat(probe, &sb) == 0;
        free(rel);
        free(probe);
        if (exists) {
          rc = load_run(out, c, st, id);
          if (rc == ZORCH_OK) st = NULL;
          else if (rc == ZORCH_ENOTFOUND) rc = ZORCH_EIO; /* exists but unreadable */
        }
      }
      free(id);
      zorch__store_close(st);
    }
  }
  zorch__strv_free(paths);
  if (rc == ZORCH_ENOTFOUND)
    return zorch__error_set(ZORCH_ENOTFOUND, "no run with id or name '%s' in any artifact store",
                            id_or_name);
  return rc;
}

/* ---- accessors ----------------------------------------------------------------------------- */

const char *zorch_run_id(const zorch_run *r) { return r ? r->id : NULL; }
const char *zorch_run_name(const zorch_run *r) { return r ? r->name : NULL; }
const char *zorch_run_pipeline_name(const zorch_run *r) { return r ? r->pipeline : NULL; }
const char *zorch_run_stack(const zorch_run *r) { return r ? r->stack : NULL; }
int zorch_run_status(const zorch_run *r) { return r ? r->status : ZORCH_STATUS_PENDING; }
double zorch_run_started_at(const zorch_run *r) { return r ? r->started : 0; }
double zorch_run_finished_at(const zorch_run *r) { return r ? r->finished : 0; }
const char *zorch_run_deployment(const zorch_run *r) {
  return r ? deployment_text((zorch_run *)r) : NULL;
}

const char *zorch_run_metadata(const zorch_run *r, const char *key) {
  if (!r || !key) return NULL;
  if (!strcmp(key, "orchestrator_run_id")) {
    const char *v = zorch__kvs_get(&r->metadata, key);
    return v ? v : r->id;
  }
  return zorch__kvs_get(&r->metadata, key);
}

size_t zorch_run_step_count(const zorch_run *r) { return r && r->plan ? r->plan->n_steps : 0; }

int zorch_run_step_index(const zorch_run *r, const char *name, size_t *out) {
  int64_t i = r && r->plan && name ? zorch__plan_find(r->plan, name) : -1;
  if (i < 0)
    return zorch__error_set(ZORCH_ENOTFOUND, "run '%s' has no step '%s'", r ? r->name : "?",
                            name ? name : "(null)");
  *out = (size_t)i;
  return ZORCH_OK;
}

#define STEP_OK(r, i) ((r) && (r)->plan && (i) < (r)->plan->n_steps)
/* records exist once the run was waited for or refreshed (or loaded) */
#define REC_OK(r, i) (STEP_OK(r, i) && (r)->recs)

const char *zorch_run_step_name(const zorch_run *r, size_t i) {
  return STEP_OK(r, i) ? r->plan->steps[i].name : NULL;
}
int zorch_run_step_status(const zorch_run *r, size_t i) {
  return REC_OK(r, i) ? r->recs[i].status : ZORCH_STATUS_PENDING;
}
double zorch_run_step_started_at(const zorch_run *r, size_t i) {
  return REC_OK(r, i) ? r->recs[i].started : 0;
}
double zorch_run_step_finished_at(const zorch_run *r, size_t i) {
  return REC_OK(r, i) ? r->recs[i].finished : 0;
}
uint32_t zorch_run_step_attempts(const zorch_run *r, size_t i) {
  return REC_OK(r, i) ? r->recs[i].attempts : 0;
}
int zorch_run_step_exit_code(const zorch_run *r, size_t i) {
  return REC_OK(r, i) ? r->recs[i].exit_code : -1;
}
const char *zorch_run_step_error(const zorch_run *r, size_t i) {
  return REC_OK(r, i) ? r->recs[i].error : NULL;
}
const char *zorch_run_step_cache_key(const zorch_run *r, size_t i) {
  return REC_OK(r, i) && r->recs[i].cache_key && r->recs[i].cache_key[0] ? r->recs[i].cache_key : NULL;
}
size_t zorch_run_step_output_count(const zorch_run *r, size_t i) {
  return STEP_OK(r, i) ? r->plan->steps[i].n_outputs : 0;
}

static const zorch__output_rec *out_rec(const zorch_run *r, size_t i, size_t o) {
  if (!REC_OK(r, i) || o >= r->plan->steps[i].n_outputs) return NULL;
  return &r->recs[i].outputs[o];
}

const char *zorch_run_step_output_name(const zorch_run *r, size_t i, size_t o) {
  return out_rec(r, i, o) ? r->plan->steps[i].outputs[o] : NULL;
}
const char *zorch_run_step_output_digest(const zorch_run *r, size_t i, size_t o) {
  const zorch__output_rec *x = out_rec(r, i, o);
  return x && x->set ? x->digest : NULL;
}
uint64_t zorch_run_step_output_size(const zorch_run *r, size_t i, size_t o) {
  const zorch__output_rec *x = out_rec(r, i, o);
  return x && x->set ? x->size : 0;
}
const char *zorch_run_step_output_kind(const zorch_run *r, size_t i, size_t o) {
  const zorch__output_rec *x = out_rec(r, i, o);
  return x && x->set ? (x->is_dir ? "dir" : "file") : NULL;
}

static int find_output(const zorch_run *r, const char *step, const char *output,
                       const zorch__output_rec **out) {
  size_t i;
  int rc = zorch_run_step_index(r, step, &i);
  if (rc) return rc;
  const zorch__pstep *s = &r->plan->steps[i];
  for (uint32_t o = 0; output && o < s->n_outputs; o++) {
    if (strcmp(s->outputs[o], output) != 0) continue;
    if (!r->recs || !r->recs[i].outputs[o].set)
      return zorch__error_set(ZORCH_ENOTFOUND,
                              "step '%s' of run '%s' has no stored output '%s' (the step is %s)",
                              step, r->name, output,
                              zorch_status_name(r->recs ? r->recs[i].status : ZORCH_STATUS_PENDING));
    *out = &r->recs[i].outputs[o];
    return ZORCH_OK;
  }
  return zorch__error_set(ZORCH_ENOTFOUND, "step '%s' declares no output '%s'", step,
                          output ? output : "(null)");
}

int zorch_run_output_path(char **path, const zorch_run *r, const char *step, const char *output) {
  if (!path || !r) return zorch__error_set(ZORCH_EINVALID, "zorch_run_output_path: NULL argument");
  const zorch__output_rec *o;
  int rc = find_output(r, step, output, &o);
  if (rc) return rc;
  *path = zorch__store_artifact_path(r->store, o->digest);
  return *path ? ZORCH_OK : zorch__error_oom();
}

int zorch_run_read_output(void **data, size_t *size, const zorch_run *r, const char *step,
                          const char *output) {
  if (!data || !r) return zorch__error_set(ZORCH_EINVALID, "zorch_run_read_output: NULL argument");
  const zorch__output_rec *o;
  int rc = find_output(r, step, output, &o);
  if (rc) return rc;
  if (o->is_dir)
    return zorch__error_set(ZORCH_EINVALID,
                            "output '%s' of step '%s' is a directory: use zorch_run_output_path()",
                            output, step);
  char *p = zorch__store_artifact_path(r->store, o->digest);
  if (!p) return zorch__error_oom();
  char *d = NULL;
  size_t len = 0;
  rc = zorch__read_file(p, &d, &len);
  free(p);
  if (rc) return rc;
  *data = d;
  if (size) *size = len;
  return ZORCH_OK;
}

int zorch_run_read_log(char **text, size_t *size, const zorch_run *r, const char *step) {
  if (!text || !r) return zorch__error_set(ZORCH_EINVALID, "zorch_run_read_log: NULL argument");
  size_t i;
  int rc = zorch_run_step_index(r, step, &i);
  if (rc) return rc;
  char *p = zorch__asprintf("%s/runs/%s/logs/%s.log", zorch__store_root(r->store), r->id, step);
  if (!p) return zorch__error_oom();
  size_t len = 0;
  rc = zorch__read_file(p, text, &len);
  free(p);
  if (rc == ZORCH_ENOTFOUND) { /* the step wrote nothing (or did not run) */
    *text = zorch__strdup("");
    len = 0;
    rc = *text ? ZORCH_OK : zorch__error_oom();
  }
  if (size) *size = len;
  return rc;
}

/* ---- listing runs ---------------------------------------------------------------------------------- */

typedef struct list_item {
  char *id, *name, *pipeline;
  int status;
  double started, finished;
} list_item;

struct zorch_run_list {
  list_item *items;
  size_t n;
};

static int cmp_items(const void *a, const void *b) {
  const list_item *x = a, *y = b;
  return x->started < y->started ? 1 : x->started > y->started ? -1 : strcmp(x->id, y->id);
}

int zorch_run_list_load(zorch_run_list **out, zorch_client *c, const char *pipeline) {
  if (!out || !c) return zorch__error_set(ZORCH_EINVALID, "zorch_run_list_load: NULL argument");
  *out = NULL;
  zorch__stack stack;
  memset(&stack, 0, sizeof stack);
  int rc = zorch__stack_resolve(&stack, c, NULL);
  if (rc) return rc;
  zorch_run_list *l = calloc(1, sizeof *l);
  char *rd = zorch__path_join(stack.store_path, "runs");
  zorch__stack_clear(&stack);
  if (!l || !rd) {
    free(l);
    free(rd);
    return zorch__error_oom();
  }
  DIR *d = opendir(rd);
  size_t cap = 0;
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.') continue;
      char *p = zorch__asprintf("%s/%s/run.json", rd, de->d_name);
      char *text = NULL;
      if (p && zorch__read_file(p, &text, NULL) == ZORCH_OK) {
        zorch_run tmp;
        memset(&tmp, 0, sizeof tmp);
        if (parse_run_record(&tmp, text, p) == ZORCH_OK &&
            (!pipeline || (tmp.pipeline && !strcmp(tmp.pipeline, pipeline)))) {
          if (l->n == cap) {
            cap = cap ? cap * 2 : 16;
            list_item *ni = realloc(l->items, cap * sizeof *ni);
            if (ni) l->items = ni;
          }
          if (l->n < cap) {
            list_item *it = &l->items[l->n++];
            it->id = tmp.id;
            it->name = tmp.name;
            it->pipeline = tmp.pipeline;
            tmp.id = tmp.name = tmp.pipeline = NULL;
            it->status = tmp.status;
            it->started = tmp.started;
            it->finished = tmp.finished;
          }
        }
        run_free_fields(&tmp);
      }
      free(text);
      free(p);
    }
    closedir(d);
  }
  free(rd);
  if (l->n) qsort(l->items, l->n, sizeof *l->items, cmp_items);
  *out = l;
  return ZORCH_OK;
}

#define LIST_OK(l, i) ((l) && (i) < (l)->n)
size_t zorch_run_list_count(const zorch_run_list *l) { return l ? l->n : 0; }
const char *zorch_run_list_id(const zorch_run_list *l, size_t i) { return LIST_OK(l, i) ? l->items[i].id : NULL; }
const char *zorch_run_list_name(const zorch_run_list *l, size_t i) { return LIST_OK(l, i) ? l->items[i].name : NULL; }
const char *zorch_run_list_pipeline(const zorch_run_list *l, size_t i) { return LIST_OK(l, i) ? l->items[i].pipeline : NULL; }
int zorch_run_list_status(const zorch_run_list *l, size_t i) { return LIST_OK(l, i) ? l->items[i].status : ZORCH_STATUS_PENDING; }
double zorch_run_list_started_at(const zorch_run_list *l, size_t i) { return LIST_OK(l, i) ? l->items[i].started : 0; }
double zorch_run_list_finished_at(const zorch_run_list *l, size_t i) { return LIST_OK(l, i) ? l->items[i].finished : 0; }

void zorch_run_list_free(zorch_run_list *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) {
    free(l->items[i].id);
    free(l->items[i].name);
    free(l->items[i].pipeline);
  }
  free(l->items);
  free(l);
}
