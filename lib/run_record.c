/* zorch — a run's record (runs/<id>/run.json): writing and reading it, and
 * loading a run, with its deployment and step records, from a store. */
#include "run_record.h"

#include "deployment.h"
#include "status.h"
#include "submission.h"

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

int zorch__run_record_write(zorch_run *r) {
  if (r->flags & ZORCH_RUN_EPHEMERAL) return ZORCH_OK;
  char *t = run_json(r);
  char *rel = zorch__asprintf("runs/%s/run.json", r->id);
  int rc = t && rel ? zorch__store_write_doc(r->store, rel, t, strlen(t), true) : zorch__error_oom();
  free(t);
  free(rel);
  return rc;
}

int zorch__run_record_parse(zorch_run *r, const char *text, const char *where) {
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
  int st = zorch__status_parse(json_string_value(json_object_get(o, "status")));
  r->status = st < 0 ? ZORCH_STATUS_PENDING : st;
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
const char *zorch__run_deployment_text(zorch_run *r) {
  if (!r->deployment && (r->flags & ZORCH_RUN_EPHEMERAL)) {
    /* compiled to its plan only (see run_start_inner in run.c): the text is made
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

void zorch__run_free_fields(zorch_run *r) {
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

int zorch__run_load(zorch_run **out, zorch_client *c, zorch__store *st, const char *id) {
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
  rc = zorch__run_record_parse(r, text, where);
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
    zorch__run_free_fields(r);
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
  rc = zorch__run_record_parse(r, text, r->id);
  free(text);
  if (rc) return rc;
  return load_records(r);
}
