/* zorch — reading runs: opening one from the stores, its accessors, and
 * listing the runs of a store. */
#include "run_record.h"

#include <dirent.h>
#include <sys/stat.h>

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
          rc = zorch__run_load(out, c, st, id);
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
  return r ? zorch__run_deployment_text((zorch_run *)r) : NULL;
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
        if (zorch__run_record_parse(&tmp, text, p) == ZORCH_OK &&
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
        zorch__run_free_fields(&tmp);
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
