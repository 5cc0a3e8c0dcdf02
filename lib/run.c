/* zorch — starting runs (now or on a schedule), waiting for them and cancelling them. */
#include "deployment.h"
#include "entrypoint_int.h"
#include "run_record.h"
#include "submission.h"

#include <signal.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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

static const zorch_orchestrator_ops *ops_of(const zorch__flavor *f) {
  return (const zorch_orchestrator_ops *)f->desc->ops;
}

/* What starting a run must know of its orchestrator's flavor, here and
 * nowhere else, read from the flavor's capability flags (never from its
 * name; see zorch__flavor_desc_flags for plugins older than the flags): a
 * ZORCH_FLAVOR_IN_PROCESS flavor runs the steps in this process, any other
 * starts them elsewhere. */
typedef struct flavor_caps {
  bool functions_need_entrypoint; /* runs a function step by starting its program again */
  bool runs_stored_functions;     /* can run the function steps of a stored deployment */
  bool runs_ephemeral;            /* can run a run that keeps no records */
  bool ephemeral_needs_document;  /* an ephemeral run still needs its deployment text */
  bool reaches_local_store;       /* its steps reach a store that is a local directory */
} flavor_caps;

static flavor_caps caps_of(const zorch__flavor *fl) {
  bool in_process = (fl->flags & ZORCH_FLAVOR_IN_PROCESS) != 0;
  return (flavor_caps){.functions_need_entrypoint = !in_process,
                       .runs_stored_functions = !in_process,
                       .runs_ephemeral = in_process,
                       .ephemeral_needs_document = !in_process,
                       .reaches_local_store = (fl->flags & ZORCH_FLAVOR_LOCAL_STORE) != 0};
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
  flavor_caps caps = caps_of(fl);
  if (!caps.reaches_local_store && stack_store_is_local_dir(&stack)) {
    rc = zorch__error_set(ZORCH_EINVALID,
                          "stack '%s': orchestrator '%s' (flavor %s) runs steps where artifact "
                          "store '%s' (a directory on this machine, %s) cannot be reached: use a "
                          "stack whose artifact store the steps reach over the network",
                          stack.name, stack.orchestrator_name, stack.orchestrator_flavor,
                          stack.store_name, stack.store_path ? stack.store_path : "?");
    zorch__stack_clear(&stack);
    return rc;
  }
  if (pipeline && has_function && caps.functions_need_entrypoint &&
      !pipeline->entrypoint.n && !atomic_load(&zorch__entrypoint_registered)) {
    rc = zorch__error_set(ZORCH_EINVALID,
                          "pipeline '%s' has function steps, which flavor '%s' runs by starting "
                          "this program again as a step: call zorch_main() first in main() "
                          "(or name the program with zorch_pipeline_set_entrypoint())",
                          pipeline->name, stack.orchestrator_flavor);
    zorch__stack_clear(&stack);
    return rc;
  }
  if (!pipeline && has_function && !caps.runs_stored_functions) {
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
    bool text = src->cron || !(opts->flags & ZORCH_RUN_EPHEMERAL) || caps.ephemeral_needs_document;
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
    zorch__run_free_fields(r);
    zorch__submission_free(sub);
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
    if ((rc = zorch__run_record_write(r))) goto fail;
    free(r->deployment); /* stored and loaded: read back on demand */
    r->deployment = NULL;
  } else if (!caps.runs_ephemeral) {
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
    zorch__run_record_write(r);
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
    zorch__run_free_fields(r);
    zorch__submission_free(sub);
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
  zorch__run_free_fields(r);
  zorch__submission_free(r->sub);
  free(r);
}

int zorch_pipeline_run(zorch_run **out, zorch_client *client, const zorch_pipeline *pipeline,
                       const zorch_run_options *opts) {
  int rc = zorch_run_start(out, client, pipeline, opts);
  if (rc) return rc;
  return zorch_run_wait(*out, -1);
}

