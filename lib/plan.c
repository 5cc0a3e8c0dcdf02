/* zorch — loading a deployment document into an executable plan.
 *
 * The document is read in one streaming pass (yajl): the small top-level
 * members are built as JSON values, while the steps are turned into the
 * plan's compact arrays as they are read, so a million-step deployment never
 * exists as a tree in memory.  The writer (deployment.c) puts "defaults"
 * before "steps"; a reader requires that order.
 */
#include "plan.h"

#include <errno.h>
#include <yajl/yajl_parse.h>

/* ---- the plan's strings and small arrays: a bump allocator ---- */

static void *arena_alloc(zorch__plan *pl, size_t n) { return zorch__arena_alloc(&pl->arena, n, 1u << 20); }

static char *arena_strndup(zorch__plan *pl, const char *s, size_t n) {
  char *d = arena_alloc(pl, n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* ---- plan lifetime ---- */

zorch__plan *zorch__plan_ref(zorch__plan *plan) {
  atomic_fetch_add(&plan->refs, 1);
  return plan;
}

void zorch__plan_free(zorch__plan *plan) {
  if (!plan || atomic_fetch_sub(&plan->refs, 1) > 1) return;
  for (uint32_t i = 0; plan->n_owning && i < plan->n_steps; i++) {
    zorch__pstep *s = &plan->steps[i];
    free(s->params_canon);
    if (s->params && s->params != plan->empty) json_decref(s->params);
    if (s->own_env) free(s->env);
  }
  if (plan->steps_big) zorch__big_free(plan->steps);
  else free(plan->steps);
  zorch__big_free(plan->succ);
  zorch__map_free(atomic_load(&plan->by_name));
  pthread_mutex_destroy(&plan->find_mu);
  free(plan->defaults.env);
  zorch__strv_clear(&plan->strings);
  json_decref(plan->empty);
  json_decref(plan->doc);
  zorch__arena_free(&plan->arena);
  free(plan);
}

int64_t zorch__plan_find(const zorch__plan *plan, const char *name) {
  zorch__map *m = atomic_load_explicit(&plan->by_name, memory_order_acquire);
  if (!m) { /* first use: make the map (the plan is shared, hence the lock) */
    zorch__plan *pl = (zorch__plan *)plan;
    pthread_mutex_lock(&pl->find_mu);
    m = atomic_load_explicit(&pl->by_name, memory_order_acquire);
    if (!m && (m = zorch__map_new(pl->n_steps))) {
      for (uint32_t i = 0; i < pl->n_steps; i++)
        if (zorch__map_put(m, pl->steps[i].name, (void *)(uintptr_t)(i + 1))) {
          zorch__map_free(m);
          m = NULL;
          break;
        }
      if (m) atomic_store_explicit(&pl->by_name, m, memory_order_release);
    }
    pthread_mutex_unlock(&pl->find_mu);
    if (!m) return -1;
  }
  void *v = zorch__map_get(m, name);
  return v ? (int64_t)((uintptr_t)v - 1) : -1;
}

static const char *get_str(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static int failure_mode_parse(const char *s) {
  if (!s) return -1;
  if (!strcmp(s, "continue_on_failure")) return ZORCH_CONTINUE_ON_FAILURE;
  if (!strcmp(s, "stop_on_failure")) return ZORCH_STOP_ON_FAILURE;
  if (!strcmp(s, "fail_fast")) return ZORCH_FAIL_FAST;
  return -1;
}

/* ---- the streaming reader ---- */

enum state {
  S_TOP_START,  /* before the top-level object */
  S_TOP_KEY,    /* in the top-level object, between members */
  S_CAPTURE,    /* building a JSON value (see cap_*) */
  S_STEPS_OPEN, /* after "steps": expecting '[' */
  S_STEPS,      /* in the steps array, between steps */
  S_STEP_KEY,   /* in a step object, between members */
  S_STEP_STR,   /* expecting a string member of a step */
  S_STEP_ARR_OPEN, /* expecting '[' of a string-array member */
  S_STEP_ARR,   /* in a string-array member */
  S_DONE
};

enum field { F_NONE, F_NAME, F_KIND, F_VERSION, F_COMMAND, F_OUTPUTS, F_AFTER, F_USES,
             F_INPUTS, F_PARAMS, F_SETTINGS, F_IGNORE, F_HEADER };

typedef struct {
  zorch__plan *pl;
  enum state state;
  enum state cap_return;   /* where to go when the captured value is complete */
  enum field cap_field;
  char *top_key;           /* member of the top-level object being captured */
  json_t *cap_stack[128];
  char *cap_keys[128];
  int cap_n;
  enum field field;        /* step member being read */
  /* the step being read */
  const char *name, *kind, *version;
  const char **strs;       /* strings of the current string array (arena) */
  size_t n_strs, cap_strs;
  const char **command, **outputs;
  uint32_t n_command, n_outputs;
  json_t *inputs, *params, *settings;
  uint32_t n_after;
  /* predecessor indices of all steps, flattened */
  uint32_t *preds;
  size_t n_preds, cap_preds;
  uint32_t *pred_off;      /* per step: first index into preds */
  size_t cap_steps;
  bool header_done;
  bool trusted;            /* steps from the compiler: names known valid and unique */
  bool direct;             /* the steps are put in place (zorch__plan_builder_direct) */
  uint32_t *succ_at;       /* direct: where each step's successors begin (given), or NULL */
  char *names;             /* direct: the steps' names, step k's at name_off[k] */
  const uint32_t *name_off;
  uint32_t unbound;        /* function steps without their function */
  int err_code;
  char err[1024];
} reader;

static int fail(reader *r, int code, const char *fmt, ...) ZORCH_PRINTF(3, 4);
static int fail(reader *r, int code, const char *fmt, ...) {
  if (!r->err_code) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    r->err_code = code;
  }
  return 0; /* yajl: stop */
}

static const char *step_where(reader *r, char *buf, size_t n) {
  if (r->name) snprintf(buf, n, "deployment: step '%s'", r->name);
  else snprintf(buf, n, "deployment: steps[%u]", r->pl->n_steps);
  return buf;
}

static int push_pred(reader *r, uint32_t idx) {
  if (r->n_preds == r->cap_preds) {
    size_t nc = r->cap_preds ? r->cap_preds * 2 : 1024;
    uint32_t *np = realloc(r->preds, nc * sizeof *np);
    if (!np) return fail(r, ZORCH_ENOMEM, "out of memory");
    r->preds = np;
    r->cap_preds = nc;
  }
  r->preds[r->n_preds++] = idx;
  return 1;
}

/* Settings of one step (or the defaults) from their JSON object. */
static int parse_settings(zorch__plan *pl, zorch__pstep *s, json_t *st, const char *where,
                          reader *r) {
  if (!json_is_object(st)) return fail(r, ZORCH_EINVALID, "%s: settings must be an object", where);
  json_t *env = json_object_get(st, "env");
  size_t ne = json_object_size(env);
  s->env = calloc(ne + 1, sizeof *s->env);
  if (!s->env) return fail(r, ZORCH_ENOMEM, "out of memory");
  const char *ek;
  json_t *ev;
  size_t e = 0;
  json_object_foreach(env, ek, ev) {
    if (!json_is_string(ev))
      return fail(r, ZORCH_EINVALID, "%s: settings.env.%s must be a string", where, ek);
    char *kv = zorch__asprintf("%s=%s", ek, json_string_value(ev));
    if (!kv || zorch__strv_push(&pl->strings, kv)) {
      free(kv);
      return fail(r, ZORCH_ENOMEM, "out of memory");
    }
    free(kv);
    s->env[e++] = pl->strings.v[pl->strings.n - 1];
  }
  json_t *rt = json_object_get(st, "retries");
  s->retries = (uint32_t)json_integer_value(json_object_get(rt, "max"));
  s->retry_delay = json_number_value(json_object_get(rt, "delay"));
  s->retry_backoff = json_number_value(json_object_get(rt, "backoff"));
  if (s->retry_backoff < 1) s->retry_backoff = 1;
  s->timeout = json_number_value(json_object_get(st, "timeout"));
  json_t *c = json_object_get(st, "cache");
  s->cache = c ? json_is_true(c) : true;
  const char *img = get_str(st, "image");
  s->image = img ? arena_strndup(pl, img, strlen(img)) : NULL;
  return 1;
}

/* The members before "steps" are all read: check them. */
static int header_ready(reader *r) {
  zorch__plan *pl = r->pl;
  json_t *doc = pl->doc;
  json_t *ver = json_object_get(doc, "zorch_deployment");
  if (!json_is_integer(ver))
    return fail(r, ZORCH_EINVALID,
                "deployment: zorch_deployment: missing or not an integer before \"steps\" (is "
                "this a zorch deployment?)");
  if (json_integer_value(ver) > ZORCH__DEPLOYMENT_VERSION || json_integer_value(ver) < 1)
    return fail(r, ZORCH_EVERSION,
                "deployment version %lld is not supported by zorch %s (it reads versions 1 to %d)",
                (long long)json_integer_value(ver), ZORCH_VERSION_STRING,
                ZORCH__DEPLOYMENT_VERSION);
  pl->pipeline = get_str(doc, "pipeline");
  if (!pl->pipeline) return fail(r, ZORCH_EINVALID, "deployment: pipeline: missing or not a string");
  json_t *run = json_object_get(doc, "run");
  pl->run_id = get_str(run, "id");
  pl->run_name = get_str(run, "name");
  pl->store_path = get_str(json_object_get(doc, "artifact_store"), "path");
  pl->stack = get_str(json_object_get(doc, "stack"), "name");
  pl->flavor = get_str(json_object_get(doc, "stack"), "flavor");
  int fm = failure_mode_parse(get_str(doc, "failure_mode"));
  if (fm < 0)
    return fail(r, ZORCH_EINVALID,
                "deployment: failure_mode: must be continue_on_failure, stop_on_failure or "
                "fail_fast");
  pl->failure_mode = fm;
  json_t *defaults = json_object_get(doc, "defaults");
  pl->default_version = get_str(defaults, "version");
  if (!pl->default_version)
    return fail(r, ZORCH_EINVALID, "deployment: defaults.version: missing (it must come before \"steps\")");
  if (!parse_settings(pl, &pl->defaults, json_object_get(defaults, "settings"),
                      "deployment: defaults", r))
    return 0;
  r->header_done = true;
  return 1;
}

static void step_reset(reader *r) {
  r->name = r->kind = r->version = NULL;
  r->command = r->outputs = NULL;
  r->n_command = r->n_outputs = 0;
  json_decref(r->inputs);
  json_decref(r->params);
  json_decref(r->settings);
  r->inputs = r->params = r->settings = NULL;
  r->n_after = 0;
}

static const char *no_strings[1] = {NULL};

/* Room for one more step. */
static int steps_room(reader *r) {
  zorch__plan *pl = r->pl;
  if (pl->n_steps < r->cap_steps) return 1;
  size_t nc = r->cap_steps ? r->cap_steps * 2 : 256;
  if (pl->steps_big) { /* reserved too few: continue in a plain block */
    zorch__pstep *ns = malloc(nc * sizeof *ns);
    if (!ns) return fail(r, ZORCH_ENOMEM, "out of memory");
    memcpy(ns, pl->steps, pl->n_steps * sizeof *ns);
    zorch__big_free(pl->steps);
    pl->steps = ns;
    pl->steps_big = false;
  }
  zorch__pstep *ns = realloc(pl->steps, nc * sizeof *ns);
  uint32_t *no = realloc(r->pred_off, (nc + 1) * sizeof *no);
  if (ns) pl->steps = ns;
  if (no) r->pred_off = no;
  if (!ns || !no) return fail(r, ZORCH_ENOMEM, "out of memory");
  r->cap_steps = nc;
  return 1;
}

/* The settings of a step that sets none of its own. */
static void step_defaults(const zorch__plan *pl, zorch__pstep *s) {
  s->env = pl->defaults.env;
  s->retries = pl->defaults.retries;
  s->retry_delay = pl->defaults.retry_delay;
  s->retry_backoff = pl->defaults.retry_backoff;
  s->timeout = pl->defaults.timeout;
  s->cache = pl->defaults.cache;
  s->image = pl->defaults.image;
}

/* The rest of a step whose name, kind, lists and predecessors are in place:
 * its params (taken), code version (NULL: the default) and settings (taken;
 * NULL: the defaults).  `where` names the step in errors.  On failure the
 * step is left empty. */
static int step_settle(reader *r, zorch__pstep *s, json_t *params, const char *version,
                       json_t *settings, const char *where) {
  zorch__plan *pl = r->pl;
  int ok = 1;
  if (params && !json_is_object(params)) {
    json_decref(params);
    params = NULL;
    ok = fail(r, ZORCH_EINVALID, "%s: params must be an object", where);
  }
  if (params) {
    s->params = params;
    s->params_canon = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
  } else {
    s->params = pl->empty;
    s->params_canon = NULL;
  }
  s->version = version ? version : pl->default_version;
  if (!ok) {
  } else if (settings) {
    s->own_env = true;
    ok = parse_settings(pl, s, settings, where, r);
  } else {
    step_defaults(pl, s);
  }
  json_decref(settings);
  if (!ok) { /* free what it holds now */
    free(s->params_canon);
    if (s->params != pl->empty) json_decref(s->params);
    if (s->own_env) free(s->env);
    memset(s, 0, sizeof *s);
    return 0;
  }
  if (s->kind == ZORCH__STEP_FUNCTION && !s->fn) r->unbound++;
  if (s->params != pl->empty || s->own_env) pl->n_owning++;
  return 1;
}

/* A step read from a document is complete: it counts. */
static int step_count(reader *r) {
  zorch__plan *pl = r->pl;
  r->pred_off[pl->n_steps + 1] = (uint32_t)r->n_preds;
  pl->n_steps++;
  zorch__map *m = atomic_load(&pl->by_name); /* once made, kept current */
  if (m && zorch__map_put(m, pl->steps[pl->n_steps - 1].name, (void *)(uintptr_t)(pl->n_steps)))
    return fail(r, ZORCH_ENOMEM, "out of memory");
  return 1;
}

/* The step object is complete: add it to the plan. */
static int step_done(reader *r) {
  zorch__plan *pl = r->pl;
  char where_buf[160];
  /* the step's place, for error messages only (formatted when one is made) */
#define where step_where(r, where_buf, sizeof where_buf)
  if (!r->name) return fail(r, ZORCH_EINVALID, "%s: name missing", where);
  if (!r->trusted) {
    if (zorch__check_name("step", r->name))
      return fail(r, ZORCH_EINVALID, "%s: %s", where, zorch_error_last()->message);
    if (zorch__map_get(atomic_load(&pl->by_name), r->name))
      return fail(r, ZORCH_EINVALID, "%s: duplicate step name", where);
  }
  if (!steps_room(r)) return 0;
  uint32_t i = pl->n_steps;
  zorch__pstep *s = &pl->steps[i];
  memset(s, 0, sizeof *s);
  s->name = r->name;
  if (r->kind && !strcmp(r->kind, "function"))
    s->kind = ZORCH__STEP_FUNCTION;
  else if (r->kind && !strcmp(r->kind, "command"))
    s->kind = ZORCH__STEP_COMMAND;
  else
    return fail(r, ZORCH_EINVALID, "%s: kind must be \"function\" or \"command\"", where);
  if (s->kind == ZORCH__STEP_COMMAND) {
    if (!r->n_command)
      return fail(r, ZORCH_EINVALID, "%s: command must be a non-empty array of strings", where);
    s->argv = r->command;
  }
  s->outputs = r->outputs ? r->outputs : no_strings;
  s->n_outputs = r->n_outputs;
  /* the 'after' predecessors were pushed as they were read; the inputs come next */
  uint32_t n_in = (uint32_t)json_object_size(r->inputs);
  if (r->inputs && !json_is_object(r->inputs))
    return fail(r, ZORCH_EINVALID, "%s: inputs must be an object", where);
  s->inputs = n_in ? arena_alloc(pl, n_in * sizeof *s->inputs) : NULL;
  if (n_in && !s->inputs) return fail(r, ZORCH_ENOMEM, "out of memory");
  const char *iname;
  json_t *iv;
  uint32_t k = 0;
  json_object_foreach(r->inputs, iname, iv) {
    const char *fs = get_str(iv, "step"), *fo = get_str(iv, "output");
    int64_t u = fs ? zorch__plan_find(pl, fs) : -1;
    if (u < 0)
      return fail(r, ZORCH_EINVALID,
                  "%s: input '%s' refers to step '%s', which is not an earlier step", where, iname,
                  fs ? fs : "(missing)");
    int64_t oix = -1;
    for (uint32_t o = 0; fo && o < pl->steps[u].n_outputs; o++)
      if (!strcmp(pl->steps[u].outputs[o], fo)) oix = o;
    if (oix < 0)
      return fail(r, ZORCH_EINVALID,
                  "%s: input '%s' refers to output '%s' of step '%s', which it does not declare",
                  where, iname, fo ? fo : "(missing)", fs);
    s->inputs[k].name = arena_strndup(pl, iname, strlen(iname));
    s->inputs[k].step = (uint32_t)u;
    s->inputs[k].output = (uint32_t)oix;
    if (!s->inputs[k].name || !push_pred(r, (uint32_t)u)) return fail(r, ZORCH_ENOMEM, "out of memory");
    k++;
  }
  s->n_inputs = n_in;
  s->n_preds = r->n_after + n_in;
  json_t *params = r->params, *settings = r->settings;
  r->params = r->settings = NULL;
  if (!step_settle(r, s, params, r->version, settings, where) || !step_count(r)) return 0;
  step_reset(r);
  return 1;
#undef where
}

/* a complete captured value */
static int captured(reader *r, json_t *v) {
  r->state = r->cap_return;
  switch (r->cap_field) {
  case F_HEADER:
    json_object_set_new(r->pl->doc, r->top_key, v);
    free(r->top_key);
    r->top_key = NULL;
    return 1;
  case F_INPUTS: r->inputs = v; return 1;
  case F_PARAMS: r->params = v; return 1;
  case F_SETTINGS: r->settings = v; return 1;
  default: json_decref(v); return 1;
  }
}

/* add a value to the capture in progress (or complete it) */
static int cap_value(reader *r, json_t *v) {
  if (!v) return fail(r, ZORCH_ENOMEM, "out of memory");
  if (r->cap_n == 0) return captured(r, v);
  json_t *top = r->cap_stack[r->cap_n - 1];
  if (json_is_array(top)) return json_array_append_new(top, v) == 0 ? 1 : fail(r, ZORCH_ENOMEM, "out of memory");
  char *key = r->cap_keys[r->cap_n - 1];
  int rc = json_object_set_new(top, key ? key : "", v);
  free(key);
  r->cap_keys[r->cap_n - 1] = NULL;
  return rc == 0 ? 1 : fail(r, ZORCH_ENOMEM, "out of memory");
}

static int cap_open(reader *r, json_t *container) {
  if (!container) return fail(r, ZORCH_ENOMEM, "out of memory");
  if (r->cap_n == (int)(sizeof r->cap_stack / sizeof *r->cap_stack)) {
    json_decref(container);
    return fail(r, ZORCH_EINVALID, "deployment: nested too deeply");
  }
  r->cap_stack[r->cap_n] = container;
  r->cap_keys[r->cap_n] = NULL;
  r->cap_n++;
  return 1;
}

static int cap_close(reader *r) {
  json_t *v = r->cap_stack[--r->cap_n];
  free(r->cap_keys[r->cap_n]);
  r->cap_keys[r->cap_n] = NULL;
  return cap_value(r, v);
}

static void begin_capture(reader *r, enum field f, enum state ret) {
  r->state = S_CAPTURE;
  r->cap_field = f;
  r->cap_return = ret;
}

/* a scalar arrived outside a capture */
static int scalar(reader *r, json_t *v, const char *s, size_t len) {
  char where[160];
  switch (r->state) {
  case S_CAPTURE: return cap_value(r, v);
  case S_STEP_STR:
    json_decref(v);
    if (!s) return fail(r, ZORCH_EINVALID, "%s: member must be a string", step_where(r, where, sizeof where));
    {
      const char *d = arena_strndup(r->pl, s, len);
      if (!d) return fail(r, ZORCH_ENOMEM, "out of memory");
      if (r->field == F_NAME) r->name = d;
      else if (r->field == F_KIND) r->kind = d;
      else r->version = d;
    }
    r->state = S_STEP_KEY;
    return 1;
  case S_STEP_ARR: {
    json_decref(v);
    if (!s)
      return fail(r, ZORCH_EINVALID, "%s: arrays of names must hold strings only",
                  step_where(r, where, sizeof where));
    if (r->field == F_USES) return 1;
    if (r->field == F_AFTER) {
      char tmp[128];
      if (len >= sizeof tmp)
        return fail(r, ZORCH_EINVALID, "%s: 'after' names a step that cannot exist",
                    step_where(r, where, sizeof where));
      memcpy(tmp, s, len);
      tmp[len] = '\0';
      int64_t u = zorch__plan_find(r->pl, tmp);
      if (u < 0)
        return fail(r, ZORCH_EINVALID, "%s: 'after' refers to step '%s', which is not an earlier step",
                    step_where(r, where, sizeof where), tmp);
      r->n_after++;
      return push_pred(r, (uint32_t)u);
    }
    if (r->n_strs + 2 > r->cap_strs) {
      size_t nc = r->cap_strs ? r->cap_strs * 2 : 16;
      const char **ns = realloc(r->strs, nc * sizeof *ns);
      if (!ns) return fail(r, ZORCH_ENOMEM, "out of memory");
      r->strs = ns;
      r->cap_strs = nc;
    }
    const char *d = arena_strndup(r->pl, s, len);
    if (!d) return fail(r, ZORCH_ENOMEM, "out of memory");
    r->strs[r->n_strs++] = d;
    return 1;
  }
  default:
    json_decref(v);
    return fail(r, ZORCH_EINVALID, "deployment: unexpected value (the document is not a zorch deployment)");
  }
}

static int cb_null(void *ctx) { return scalar(ctx, json_null(), NULL, 0); }
static int cb_bool(void *ctx, int b) { return scalar(ctx, json_boolean(b), NULL, 0); }
static int cb_number(void *ctx, const char *s, size_t len) {
  reader *r = ctx;
  char buf[64];
  if (len >= sizeof buf) return fail(r, ZORCH_EINVALID, "deployment: number too long");
  memcpy(buf, s, len);
  buf[len] = '\0';
  json_t *v;
  if (strpbrk(buf, ".eE")) {
    v = json_real(strtod(buf, NULL));
  } else {
    errno = 0;
    long long ll = strtoll(buf, NULL, 10);
    v = errno ? json_real(strtod(buf, NULL)) : json_integer(ll);
  }
  return scalar(r, v, NULL, 0);
}
static int cb_string(void *ctx, const unsigned char *s, size_t len) {
  reader *r = ctx;
  if (r->state == S_STEP_STR || r->state == S_STEP_ARR) return scalar(r, NULL, (const char *)s, len);
  return scalar(r, json_stringn((const char *)s, len), NULL, 0);
}

static int cb_start_map(void *ctx) {
  reader *r = ctx;
  char where[160];
  switch (r->state) {
  case S_TOP_START:
    r->state = S_TOP_KEY;
    return 1;
  case S_CAPTURE: return cap_open(r, json_object());
  case S_STEPS:
    step_reset(r);
    r->state = S_STEP_KEY;
    return 1;
  case S_STEP_STR:
  case S_STEP_ARR_OPEN:
    return fail(r, ZORCH_EINVALID, "%s: member has the wrong type", step_where(r, where, sizeof where));
  default: return fail(r, ZORCH_EINVALID, "deployment: unexpected object");
  }
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len) {
  reader *r = ctx;
  if (r->state == S_CAPTURE) {
    free(r->cap_keys[r->cap_n - 1]);
    r->cap_keys[r->cap_n - 1] = zorch__strndup((const char *)k, len);
    return r->cap_keys[r->cap_n - 1] ? 1 : fail(r, ZORCH_ENOMEM, "out of memory");
  }
  if (r->state == S_TOP_KEY) {
    if (len == 5 && !memcmp(k, "steps", 5)) {
      if (!header_ready(r)) return 0;
      r->state = S_STEPS_OPEN;
      return 1;
    }
    r->top_key = zorch__strndup((const char *)k, len);
    begin_capture(r, F_HEADER, S_TOP_KEY);
    return r->top_key ? 1 : fail(r, ZORCH_ENOMEM, "out of memory");
  }
  if (r->state == S_STEP_KEY) {
#define KEY(str) (len == sizeof(str) - 1 && !memcmp(k, str, len))
    if (KEY("name")) { r->field = F_NAME; r->state = S_STEP_STR; }
    else if (KEY("kind")) { r->field = F_KIND; r->state = S_STEP_STR; }
    else if (KEY("version")) { r->field = F_VERSION; r->state = S_STEP_STR; }
    else if (KEY("command")) { r->field = F_COMMAND; r->state = S_STEP_ARR_OPEN; }
    else if (KEY("outputs")) { r->field = F_OUTPUTS; r->state = S_STEP_ARR_OPEN; }
    else if (KEY("after")) { r->field = F_AFTER; r->state = S_STEP_ARR_OPEN; }
    else if (KEY("uses")) { r->field = F_USES; r->state = S_STEP_ARR_OPEN; }
    else if (KEY("inputs")) begin_capture(r, F_INPUTS, S_STEP_KEY);
    else if (KEY("params")) begin_capture(r, F_PARAMS, S_STEP_KEY);
    else if (KEY("settings")) begin_capture(r, F_SETTINGS, S_STEP_KEY);
    else begin_capture(r, F_IGNORE, S_STEP_KEY); /* a member this version does not use */
#undef KEY
    return 1;
  }
  return fail(r, ZORCH_EINVALID, "deployment: unexpected member");
}

static int cb_end_map(void *ctx) {
  reader *r = ctx;
  switch (r->state) {
  case S_CAPTURE: return cap_close(r);
  case S_STEP_KEY:
    if (!step_done(r)) return 0;
    r->state = S_STEPS;
    return 1;
  case S_TOP_KEY:
    r->state = S_DONE;
    return 1;
  default: return fail(r, ZORCH_EINVALID, "deployment: unexpected end of object");
  }
}

static int cb_start_array(void *ctx) {
  reader *r = ctx;
  char where[160];
  switch (r->state) {
  case S_CAPTURE: return cap_open(r, json_array());
  case S_STEPS_OPEN:
    r->state = S_STEPS;
    return 1;
  case S_STEP_ARR_OPEN:
    r->n_strs = 0;
    r->state = S_STEP_ARR;
    return 1;
  case S_STEP_STR:
    return fail(r, ZORCH_EINVALID, "%s: member must be a string", step_where(r, where, sizeof where));
  default: return fail(r, ZORCH_EINVALID, "deployment: unexpected array");
  }
}

static int cb_end_array(void *ctx) {
  reader *r = ctx;
  switch (r->state) {
  case S_CAPTURE: return cap_close(r);
  case S_STEPS:
    r->state = S_TOP_KEY;
    return 1;
  case S_STEP_ARR: {
    if (r->field == F_COMMAND || r->field == F_OUTPUTS) {
      const char **v = arena_alloc(r->pl, (r->n_strs + 1) * sizeof *v);
      if (!v) return fail(r, ZORCH_ENOMEM, "out of memory");
      memcpy(v, r->strs, r->n_strs * sizeof *v);
      v[r->n_strs] = NULL;
      if (r->field == F_COMMAND) {
        r->command = v;
        r->n_command = (uint32_t)r->n_strs;
      } else {
        r->outputs = v;
        r->n_outputs = (uint32_t)r->n_strs;
      }
    }
    r->state = S_STEP_KEY;
    return 1;
  }
  default: return fail(r, ZORCH_EINVALID, "deployment: unexpected end of array");
  }
}

static const yajl_callbacks callbacks = {cb_null,     cb_bool,      NULL,          NULL,
                                         cb_number,   cb_string,    cb_start_map,  cb_map_key,
                                         cb_end_map,  cb_start_array, cb_end_array};

static void reader_clear(reader *r) {
  step_reset(r);
  for (int i = 0; i < r->cap_n; i++) {
    json_decref(r->cap_stack[i]);
    free(r->cap_keys[i]);
  }
  r->cap_n = 0;
  free(r->top_key);
  free(r->strs);
  if (r->direct) { /* see zorch__plan_builder_direct */
    zorch__big_free(r->preds);
    zorch__big_free(r->pred_off);
    zorch__big_free(r->succ_at);
  } else {
    free(r->preds);
    free(r->pred_off);
  }
}

/* ---- building a plan: a document fed as text, or steps added directly ---- */

struct zorch__plan_builder {
  reader r;
  yajl_handle h;
  size_t fed;          /* bytes fed so far */
  int rc;              /* first error (its message is set) */
};

static void builder_free(zorch__plan_builder *b) {
  if (!b) return;
  if (b->h) yajl_free(b->h);
  reader_clear(&b->r);
  zorch__plan_free(b->r.pl);
  free(b);
}

void zorch__plan_builder_free(zorch__plan_builder *b) { builder_free(b); }

int zorch__plan_builder_new(zorch__plan_builder **out, bool trusted) {
  *out = NULL;
  zorch__plan_builder *b = calloc(1, sizeof *b);
  zorch__plan *pl = calloc(1, sizeof *pl);
  if (!b || !pl) {
    free(b);
    free(pl);
    return zorch__error_oom();
  }
  atomic_init(&pl->refs, 1);
  pthread_mutex_init(&pl->find_mu, NULL);
  b->r.pl = pl;
  b->r.trusted = trusted;
  pl->doc = json_object();
  pl->empty = json_object();
  atomic_init(&pl->by_name, trusted ? NULL : zorch__map_new(1024));
  b->r.pred_off = calloc(1, sizeof *b->r.pred_off);
  b->h = yajl_alloc(&callbacks, NULL, &b->r);
  if (!pl->doc || !pl->empty || (!trusted && !atomic_load(&pl->by_name)) || !b->r.pred_off || !b->h) {
    builder_free(b);
    return zorch__error_oom();
  }
  *out = b;
  return ZORCH_OK;
}

/* The reader stopped: make its error the thread's error.  `text` is the chunk
 * that was being parsed (for the line and column of a syntax error). */
static int builder_error(zorch__plan_builder *b, const char *text, size_t len) {
  reader *r = &b->r;
  if (r->err_code) return b->rc = zorch__error_set(r->err_code, "%s", r->err);
  size_t at = yajl_get_bytes_consumed(b->h);
  unsigned char *msg = yajl_get_error(b->h, 0, NULL, 0);
  size_t line = 1, col = 1;
  for (size_t i = 0; text && i < at && i < len; i++) {
    if (text[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  char m[256];
  snprintf(m, sizeof m, "%s", msg ? (const char *)msg : "parse error");
  for (char *p = m; *p; p++)
    if (*p == '\n') *p = ' ';
  b->rc = zorch__error_set(ZORCH_EINVALID, "deployment: line %zu, column %zu: %s", line, col, m);
  if (msg) yajl_free_error(b->h, msg);
  return b->rc;
}

int zorch__plan_builder_direct(zorch__plan_builder *b, uint32_t n_steps, const uint32_t *pred_count,
                               const uint32_t *name_off, uint32_t *succ_at) {
  reader *r = &b->r;
  zorch__plan *pl = r->pl;
  if (!b->rc && (r->state != S_STEPS || pl->n_steps || pl->steps || !n_steps))
    b->rc = zorch__error_set(ZORCH_ERROR, "deployment: steps added directly to a plan that has some");
  if (b->rc) {
    zorch__big_free(succ_at);
    return b->rc;
  }
  /* from here on the predecessor arrays are large ones (freed as such) */
  free(r->pred_off);
  free(r->preds);
  r->preds = NULL;
  r->direct = true;
  r->succ_at = succ_at;
  pl->steps = zorch__big_calloc(n_steps, sizeof *pl->steps);
  if (!pl->steps) return b->rc = zorch__error_oom();
  pl->steps_big = true;
  r->pred_off = zorch__big_calloc((size_t)n_steps + 1, sizeof *r->pred_off);
  if (!r->pred_off) return b->rc = zorch__error_oom();
  r->cap_steps = n_steps;
  r->pred_off[0] = 0;
  for (uint32_t k = 0; k < n_steps; k++) r->pred_off[k + 1] = r->pred_off[k] + pred_count[k];
  r->n_preds = r->pred_off[n_steps];
  r->preds = zorch__big_calloc(r->n_preds + 1, sizeof *r->preds);
  if (!r->preds) return b->rc = zorch__error_oom();
  r->cap_preds = r->n_preds;
  r->names = arena_alloc(pl, name_off[n_steps] ? name_off[n_steps] : 1);
  if (!r->names) return b->rc = zorch__error_oom();
  r->name_off = name_off;
  /* every step counts from now on: those not put yet are empty (zeroed) */
  pl->n_steps = n_steps;
  return ZORCH_OK;
}

int zorch__plan_builder_feed(zorch__plan_builder *b, const char *text, size_t len) {
  if (b->rc) return b->rc;
  yajl_status st = yajl_parse(b->h, (const unsigned char *)text, len);
  b->fed += len;
  return st == yajl_status_ok ? ZORCH_OK : builder_error(b, text, len);
}

/* A list of strings copied into the plan's arena (NULL-terminated). */
static const char **arena_strv(zorch__plan *pl, const char *const *v, uint32_t n) {
  const char **c = arena_alloc(pl, (n + 1) * sizeof *c);
  if (!c) return NULL;
  for (uint32_t k = 0; k < n; k++)
    if (!(c[k] = arena_strndup(pl, v[k], strlen(v[k])))) return NULL;
  c[n] = NULL;
  return c;
}

int zorch__plan_builder_put(zorch__plan_builder *b, uint32_t k, const zorch__step_def *d) {
  reader *r = &b->r;
  zorch__plan *pl = r->pl;
  if (!b->rc && (!r->direct || k >= pl->n_steps || d->n_after + d->n_inputs != r->pred_off[k + 1] - r->pred_off[k]))
    b->rc = zorch__error_set(ZORCH_ERROR, "deployment: step '%s' does not fit the plan's shape", d->name);
  if (b->rc) {
    json_decref(d->params);
    json_decref(d->settings);
    return b->rc;
  }
  zorch__pstep *s = &pl->steps[k]; /* fresh from zorch__big_calloc */
  s->name = memcpy(r->names + r->name_off[k], d->name, d->name_len + 1);
  s->kind = d->kind;
  const char *version = d->version ? arena_strndup(pl, d->version, strlen(d->version)) : NULL;
  bool oom = !s->name || (d->version && !version);
  if (d->n_command && !oom) oom = !(s->argv = arena_strv(pl, d->command, d->n_command));
  s->outputs = no_strings;
  if (d->n_outputs && !oom) oom = !(s->outputs = arena_strv(pl, d->outputs, d->n_outputs));
  s->n_outputs = d->n_outputs;
  if (d->n_inputs && !oom) {
    s->inputs = arena_alloc(pl, d->n_inputs * sizeof *s->inputs);
    oom = !s->inputs;
    for (uint32_t i = 0; i < d->n_inputs && !oom; i++) {
      s->inputs[i] = d->inputs[i];
      oom = !(s->inputs[i].name = arena_strndup(pl, d->inputs[i].name, strlen(d->inputs[i].name)));
    }
    s->n_inputs = d->n_inputs;
  }
  s->n_preds = d->n_after + d->n_inputs;
  if (oom) {
    fail(r, ZORCH_ENOMEM, "out of memory");
  } else {
    /* the 'after' steps first, then the inputs' steps (as a document is read) */
    uint32_t *pr = r->preds + r->pred_off[k];
    for (uint32_t i = 0; i < s->n_preds; i++) {
      uint32_t u = i < d->n_after ? d->after[i] : d->inputs[i - d->n_after].step;
      if (u >= k) {
        fail(r, ZORCH_EINVALID,
             "deployment: step '%s': 'after' or input refers to a step that is not an earlier step",
             d->name);
        break;
      }
      pr[i] = u;
    }
  }
  s->succ_off = d->succ_off; /* when given (else counted when the plan is finished) */
  s->n_succ = d->n_succ;
  s->fn = d->fn;
  s->payload = d->payload;
  char where[160];
  where[0] = '\0';
  if (!r->err_code && (d->settings || d->params))
    snprintf(where, sizeof where, "deployment: step '%s'", d->name);
  if (r->err_code) {
    json_decref(d->params);
    json_decref(d->settings);
    memset(s, 0, sizeof *s);
  } else {
    step_settle(r, s, d->params, version, d->settings, where);
  }
  return r->err_code ? (b->rc = zorch__error_set(r->err_code, "%s", r->err)) : ZORCH_OK;
}

int zorch__plan_builder_put_plain(zorch__plan_builder *b, uint32_t k, const zorch__step_def *d) {
  reader *r = &b->r;
  zorch__plan *pl = r->pl;
  /* only this step's own parts are written: no counter, no arena, no error
   * kept in the builder */
  if (!r->direct || k >= pl->n_steps || d->n_inputs || d->n_command || d->n_outputs || d->params ||
      d->settings || d->version || (d->kind == ZORCH__STEP_FUNCTION && !d->fn) ||
      d->n_after != r->pred_off[k + 1] - r->pred_off[k])
    return zorch__error_set(ZORCH_ERROR, "deployment: step '%s' is not a plain step of the plan's shape",
                            d->name);
  uint32_t *pr = r->preds + r->pred_off[k];
  for (uint32_t i = 0; i < d->n_after; i++) {
    if (d->after[i] >= k)
      return zorch__error_set(ZORCH_EINVALID,
                              "deployment: step '%s': 'after' or input refers to a step that is not "
                              "an earlier step",
                              d->name);
    pr[i] = d->after[i];
  }
  zorch__pstep *s = &pl->steps[k]; /* fresh from zorch__big_calloc */
  s->name = memcpy(r->names + r->name_off[k], d->name, d->name_len + 1);
  s->kind = d->kind;
  s->outputs = no_strings;
  s->n_preds = d->n_after;
  s->fn = d->fn;
  s->payload = d->payload;
  s->params = pl->empty;
  s->version = pl->default_version;
  s->succ_off = d->succ_off;
  s->n_succ = d->n_succ;
  step_defaults(pl, s);
  return ZORCH_OK;
}

const uint32_t *zorch__plan_builder_preds(const zorch__plan_builder *b, uint32_t k, uint32_t *n) {
  const reader *r = &b->r;
  *n = r->pred_off[k + 1] - r->pred_off[k];
  return r->preds + r->pred_off[k];
}

const zorch__plan *zorch__plan_builder_plan(const zorch__plan_builder *b) { return b->r.pl; }

int zorch__plan_builder_finish(zorch__plan_builder *b, zorch__plan **out) {
  *out = NULL;
  reader *r = &b->r;
  zorch__plan *pl = r->pl;
  int rc = b->rc;
  if (!rc && yajl_complete_parse(b->h) != yajl_status_ok) rc = builder_error(b, NULL, 0);
  if (rc) {
  } else if (r->state != S_DONE || !r->header_done) {
    rc = r->header_done ? zorch__error_set(ZORCH_EINVALID, "deployment: incomplete document")
                        : (header_ready(r), r->err_code ? zorch__error_set(r->err_code, "%s", r->err)
                                                        : zorch__error_set(ZORCH_EINVALID, "deployment: steps: missing"));
  } else if (pl->n_steps == 0) {
    rc = zorch__error_set(ZORCH_EINVALID, "deployment: steps: missing, empty or not an array");
  }
  if (rc == ZORCH_OK && r->succ_at) {
    /* the lists' places were given with the steps: fill them in, in one
     * pass over the predecessors (the steps themselves are not visited) */
    uint32_t n = pl->n_steps, *cur = r->succ_at;
    pl->succ = zorch__big_calloc(r->n_preds + 1, sizeof *pl->succ);
    if (!pl->succ) {
      rc = zorch__error_oom();
    } else {
      for (uint32_t i = 0; i < n; i++)
        for (uint32_t e = r->pred_off[i]; e < r->pred_off[i + 1]; e++) pl->succ[cur[r->preds[e]]++] = i;
    }
  } else if (rc == ZORCH_OK) {
    /* successor lists (CSR) from the predecessor lists, in a small array of
     * cursors (the steps are large: visit each once, in order) */
    uint32_t n = pl->n_steps;
    uint32_t *cur = zorch__big_calloc((size_t)n + 1, sizeof *cur);
    pl->succ = zorch__big_calloc(r->n_preds + 1, sizeof *pl->succ);
    if (!cur || !pl->succ) {
      zorch__big_free(cur);
      rc = zorch__error_oom();
    } else {
      for (size_t e = 0; e < r->n_preds; e++) cur[r->preds[e] + 1]++;
      for (uint32_t i = 0; i < n; i++) {
        pl->steps[i].succ_off = cur[i];
        pl->steps[i].n_succ = cur[i + 1];
        cur[i + 1] += cur[i];
      }
      for (uint32_t i = 0; i < n; i++)
        for (uint32_t e = r->pred_off[i]; e < r->pred_off[i + 1]; e++)
          pl->succ[cur[r->preds[e]]++] = i;
      zorch__big_free(cur);
    }
  }
  if (rc == ZORCH_OK) {
    pl->bound = r->unbound == 0;
    *out = pl;
    r->pl = NULL;
  }
  builder_free(b);
  return rc;
}

int zorch__plan_load(zorch__plan **out, const char *text) {
  *out = NULL;
  zorch__plan_builder *b;
  int rc = zorch__plan_builder_new(&b, false);
  if (rc) return rc;
  rc = zorch__plan_builder_feed(b, text, strlen(text));
  if (rc) {
    builder_free(b);
    return rc;
  }
  return zorch__plan_builder_finish(b, out);
}

int zorch__plan_bind(zorch__plan *plan, const zorch_pipeline *p) {
  if (plan->bound) return ZORCH_OK; /* by the compiler (a large plan is not read again) */
  for (uint32_t i = 0; i < plan->n_steps; i++) {
    zorch__pstep *s = &plan->steps[i];
    if (s->kind != ZORCH__STEP_FUNCTION || s->fn) continue; /* bound when it was built */
    const zorch_step *st = p ? zorch_pipeline_step(p, s->name) : NULL;
    if (!st || st->kind != ZORCH__STEP_FUNCTION)
      return zorch__error_set(ZORCH_EMISMATCH,
                              "function step '%s' of the deployment has no function in this "
                              "program's pipeline '%s'",
                              s->name, p ? p->name : "(none)");
    s->fn = st->fn;
    s->payload = st->payload;
  }
  plan->bound = true;
  return ZORCH_OK;
}
