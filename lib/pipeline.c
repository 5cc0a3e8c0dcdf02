/* zorch — building and validating pipelines. */
#include "pipeline_int.h"

#include <jansson.h>
#include <math.h>

/* ---- small containers ---------------------------------------------------- */

int zorch__kvs_set(zorch__kvs *kvs, const char *key, const char *value) {
  for (size_t i = 0; i < kvs->n; i++) {
    if (strcmp(kvs->v[i].key, key) == 0) {
      char *nv = zorch__strdup(value);
      if (!nv) return zorch__error_oom();
      free(kvs->v[i].value);
      kvs->v[i].value = nv;
      return ZORCH_OK;
    }
  }
  if (kvs->n == kvs->cap) {
    size_t nc = kvs->cap ? kvs->cap * 2 : 4;
    zorch__kv *nv = realloc(kvs->v, nc * sizeof *nv);
    if (!nv) return zorch__error_oom();
    kvs->v = nv;
    kvs->cap = nc;
  }
  char *k = zorch__strdup(key), *v = zorch__strdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return zorch__error_oom();
  }
  kvs->v[kvs->n].key = k;
  kvs->v[kvs->n].value = v;
  kvs->n++;
  return ZORCH_OK;
}

const char *zorch__kvs_get(const zorch__kvs *kvs, const char *key) {
  for (size_t i = 0; i < kvs->n; i++)
    if (strcmp(kvs->v[i].key, key) == 0) return kvs->v[i].value;
  return NULL;
}

void zorch__kvs_free(zorch__kvs *kvs) {
  for (size_t i = 0; i < kvs->n; i++) {
    free(kvs->v[i].key);
    free(kvs->v[i].value);
  }
  free(kvs->v);
  memset(kvs, 0, sizeof *kvs);
}

int zorch__strv_push(zorch__strv *s, const char *str) {
  if (s->n + 1 >= s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 4;
    char **nv = realloc(s->v, nc * sizeof *nv);
    if (!nv) return zorch__error_oom();
    s->v = nv;
    s->cap = nc;
  }
  char *d = zorch__strdup(str);
  if (!d) return zorch__error_oom();
  s->v[s->n++] = d;
  s->v[s->n] = NULL;
  return ZORCH_OK;
}

bool zorch__strv_has(const zorch__strv *s, const char *str) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], str) == 0) return true;
  return false;
}

void zorch__strv_clear(zorch__strv *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
  memset(s, 0, sizeof *s);
}

/* The pipeline's string arena: names of 'after' dependencies are copied
 * here (a large pipeline then costs no allocation per edge). */
static char *pipeline_str(zorch_pipeline *p, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = zorch__arena_alloc(&p->strings, n, 65536);
  return d ? memcpy(d, s, n) : NULL;
}

/* Add `s` (valid, not in the list yet) to a step's 'after' list: `idx` is
 * its step's index and `s` that step's own name, or ZORCH__UNRESOLVED and
 * `s` is copied. */
static int names_push(zorch_pipeline *p, zorch__names *l, const char *s, uint32_t idx) {
  if (l->n + 1 >= l->cap) { /* names and indices in one block: v[cap], then idx[cap] */
    size_t nc = l->cap ? l->cap * 2 : 4;
    char **nv = realloc(l->v, nc * (sizeof *l->v + sizeof *l->idx));
    if (!nv) return zorch__error_oom();
    l->idx = (uint32_t *)(nv + nc);
    if (l->n) memmove(l->idx, nv + l->cap, l->n * sizeof *l->idx);
    l->v = nv;
    l->cap = nc;
  }
  char *d = idx == ZORCH__UNRESOLVED ? pipeline_str(p, s) : (char *)s;
  if (!d) return zorch__error_oom();
  l->idx[l->n] = idx;
  l->v[l->n++] = d;
  l->v[l->n] = NULL;
  return ZORCH_OK;
}

/* Is the step `s` (index `idx`, or ZORCH__UNRESOLVED) in the list already? */
static bool names_has(const zorch__names *l, const char *s, uint32_t idx) {
  for (size_t i = 0; i < l->n; i++) {
    if (idx != ZORCH__UNRESOLVED && l->idx[i] != ZORCH__UNRESOLVED) {
      if (l->idx[i] == idx) return true;
    } else if (strcmp(l->v[i], s) == 0) {
      return true;
    }
  }
  return false;
}

/* The index of the step called `name`, or ZORCH__UNRESOLVED. */
static uint32_t step_index(const zorch_pipeline *p, const char *name) {
  uintptr_t v = (uintptr_t)zorch__map_get(p->by_name, name);
  return v ? (uint32_t)(v - 1) : ZORCH__UNRESOLVED;
}

const zorch__settings zorch__no_settings;

/* The step's own settings block, made on first use; NULL on OOM. */
static zorch__settings *settings_mut(zorch_step *s) {
  if (s->settings == &zorch__no_settings) {
    zorch__settings *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    s->settings = st;
  }
  return s->settings;
}

static void settings_free(zorch__settings *st) {
  if (!st || st == &zorch__no_settings) return;
  free(st->gpu_type);
  free(st->image);
  free(st->version);
  zorch__kvs_free(&st->env);
  zorch__kvs_free(&st->flavor);
  free(st);
}

/* ---- pipelines -------------------------------------------------------------- */

int zorch_pipeline_new(zorch_pipeline **out, const char *name) {
  if (!out) return zorch__error_set(ZORCH_EINVALID, "zorch_pipeline_new: out is NULL");
  *out = NULL;
  int rc = zorch__check_name("pipeline", name);
  if (rc) return rc;
  zorch_pipeline *p = calloc(1, sizeof *p);
  if (!p) return zorch__error_oom();
  p->name = zorch__strdup(name);
  p->by_name = zorch__map_new(16);
  if (!p->name || !p->by_name) {
    zorch_pipeline_free(p);
    return zorch__error_oom();
  }
  p->defaults.pipeline = p;
  p->defaults.settings = (zorch__settings *)&zorch__no_settings;
  p->defaults.kind = ZORCH__STEP_DEFAULTS;
  p->defaults.name = zorch__strdup("(pipeline defaults)");
  *out = p;
  return ZORCH_OK;
}

static void step_free(zorch_step *s) {
  if (s->kind == ZORCH__STEP_DEFAULTS) free(s->name); /* else in the pipeline's arena */
  zorch__strv_clear(&s->argv);
  zorch__strv_clear(&s->outputs);
  for (size_t i = 0; i < s->n_inputs; i++) {
    free(s->inputs[i].name);
    free(s->inputs[i].from_step);
    free(s->inputs[i].from_output);
  }
  free(s->inputs);
  free(s->after.v); /* and after.idx */
  zorch__strv_clear(&s->use_params);
  zorch__kvs_free(&s->params);
  settings_free(s->settings);
}

void zorch_pipeline_free(zorch_pipeline *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n_steps; i++) {
    step_free(p->steps[i]);
    free(p->steps[i]);
  }
  free(p->steps);
  step_free(&p->defaults);
  zorch__kvs_free(&p->params);
  zorch__strv_clear(&p->entrypoint);
  zorch__map_free(p->by_name);
  free(p->name);
  zorch__arena_free(&p->strings);
  zorch__arena_free(&p->names);
  free(p);
}

const char *zorch_pipeline_name(const zorch_pipeline *p) { return p ? p->name : NULL; }

int zorch_pipeline_set_entrypoint(zorch_pipeline *p, const char *const *argv) {
  if (!p) return zorch__error_set(ZORCH_EINVALID, "zorch_pipeline_set_entrypoint: pipeline is NULL");
  zorch__strv v = {0};
  for (size_t i = 0; argv && argv[i]; i++) {
    if (!argv[i][0] && i == 0) {
      zorch__strv_clear(&v);
      return zorch__error_set(ZORCH_EINVALID,
                              "pipeline '%s': the entrypoint's program (argv[0]) is empty", p->name);
    }
    if (zorch__strv_push(&v, argv[i]) != ZORCH_OK) {
      zorch__strv_clear(&v);
      return ZORCH_ENOMEM;
    }
  }
  zorch__strv_clear(&p->entrypoint);
  p->entrypoint = v;
  return ZORCH_OK;
}

/* Parse JSON text strictly (any value, not only objects or arrays). */
static int check_json(const char *what, const char *name, const char *text) {
  if (!text) return zorch__error_set(ZORCH_EINVALID, "%s '%s': value is NULL", what, name);
  json_error_t err;
  json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
  if (!v)
    return zorch__error_set(ZORCH_EINVALID, "%s '%s': value is not valid JSON (%s): %.200s", what,
                            name, err.text, text);
  json_decref(v);
  return ZORCH_OK;
}

int zorch_pipeline_add_param(zorch_pipeline *p, const char *name, const char *default_json) {
  if (!p) return zorch__error_set(ZORCH_EINVALID, "zorch_pipeline_add_param: pipeline is NULL");
  int rc = zorch__check_name("param", name);
  if (rc) return rc;
  if (zorch__kvs_get(&p->params, name))
    return zorch__error_set(ZORCH_EEXISTS, "pipeline '%s' already has a param '%s'", p->name,
                            name);
  rc = check_json("param", name, default_json);
  if (rc) return rc;
  return zorch__kvs_set(&p->params, name, default_json);
}

static int add_step(zorch_step **out, zorch_pipeline *p, const char *name, int kind) {
  if (out) *out = NULL;
  if (!p) return zorch__error_set(ZORCH_EINVALID, "pipeline is NULL");
  int rc = zorch__check_name("step", name);
  if (rc) return rc;
  if (p->n_steps >= ZORCH__UNRESOLVED - 1)
    return zorch__error_set(ZORCH_EINVALID, "pipeline '%s' cannot have more than %u steps", p->name,
                            ZORCH__UNRESOLVED - 2);
  if (p->n_steps == p->cap_steps) {
    size_t nc = p->cap_steps ? p->cap_steps * 2 : 8;
    zorch_step **ns = realloc(p->steps, nc * sizeof *ns);
    if (!ns) return zorch__error_oom();
    p->steps = ns;
    p->cap_steps = nc;
  }
  /* the names of all steps lie together (they are the keys of by_name, whose
   * lookups then stay in the cache); by_name maps a name to its index + 1 */
  size_t nl = strlen(name) + 1;
  char *sname = zorch__arena_alloc(&p->names, nl, 65536);
  zorch_step *s = sname ? calloc(1, sizeof *s) : NULL;
  if (!s) return zorch__error_oom(); /* an arena's bytes are freed with it */
  s->pipeline = p;
  s->kind = kind;
  s->settings = (zorch__settings *)&zorch__no_settings;
  s->name = memcpy(sname, name, nl);
  s->name_len = (uint32_t)(nl - 1);
  if (zorch__map_put_new(p->by_name, s->name, (void *)(uintptr_t)(p->n_steps + 1), &rc) || rc) {
    free(s); /* one probe checked and inserted */
    return rc ? zorch__error_oom()
              : zorch__error_set(ZORCH_EEXISTS, "pipeline '%s' already has a step named '%s'",
                                 p->name, name);
  }
  s->index = p->n_steps;
  p->steps[p->n_steps++] = s;
  if (kind == ZORCH__STEP_FUNCTION) p->n_function++;
  if (out) *out = s;
  return ZORCH_OK;
}

int zorch_pipeline_add_function_step(zorch_step **out, zorch_pipeline *p, const char *name,
                                     zorch_step_fn fn, void *payload) {
  if (!fn) {
    if (out) *out = NULL;
    return zorch__error_set(ZORCH_EINVALID, "function step '%s': function is NULL",
                            name ? name : "(null)");
  }
  zorch_step *s = NULL;
  int rc = add_step(&s, p, name, ZORCH__STEP_FUNCTION);
  if (rc) return rc;
  s->fn = fn;
  s->payload = payload;
  if (out) *out = s;
  return ZORCH_OK;
}

int zorch_pipeline_add_command_step(zorch_step **out, zorch_pipeline *p, const char *name,
                                    const char *const *argv) {
  if (!argv || !argv[0] || !argv[0][0]) {
    if (out) *out = NULL;
    return zorch__error_set(ZORCH_EINVALID, "command step '%s': argv is empty",
                            name ? name : "(null)");
  }
  zorch_step *s = NULL;
  int rc = add_step(&s, p, name, ZORCH__STEP_COMMAND);
  if (rc) return rc;
  for (size_t i = 0; argv[i]; i++) {
    if ((rc = zorch__strv_push(&s->argv, argv[i]))) return rc;
  }
  if (out) *out = s;
  return ZORCH_OK;
}

zorch_step *zorch_pipeline_step(const zorch_pipeline *p, const char *name) {
  if (!p || !name) return NULL;
  uint32_t i = step_index(p, name);
  return i == ZORCH__UNRESOLVED ? NULL : p->steps[i];
}

size_t zorch_pipeline_step_count(const zorch_pipeline *p) { return p ? p->n_steps : 0; }

zorch_step *zorch_pipeline_defaults(zorch_pipeline *p) { return p ? &p->defaults : NULL; }

/* ---- steps --------------------------------------------------------------------- */

const char *zorch_step_name(const zorch_step *s) { return s ? s->name : NULL; }

static int not_on_defaults(const zorch_step *s, const char *what) {
  if (!s) return zorch__error_set(ZORCH_EINVALID, "%s: step is NULL", what);
  if (s->kind == ZORCH__STEP_DEFAULTS)
    return zorch__error_set(ZORCH_EINVALID,
                            "%s cannot be set on the pipeline defaults, only on a step", what);
  return ZORCH_OK;
}

int zorch_step_add_output(zorch_step *s, const char *name) {
  int rc = not_on_defaults(s, "an output");
  if (rc) return rc;
  if ((rc = zorch__check_name("output", name))) return zorch__error_prefix("step '%s'", s->name);
  if (zorch__strv_has(&s->outputs, name))
    return zorch__error_set(ZORCH_EEXISTS, "step '%s' already has an output '%s'", s->name, name);
  return zorch__strv_push(&s->outputs, name);
}

int zorch_step_add_input(zorch_step *s, const char *name, const char *from_step,
                         const char *output) {
  int rc = not_on_defaults(s, "an input");
  if (rc) return rc;
  if ((rc = zorch__check_name("input", name))) return zorch__error_prefix("step '%s'", s->name);
  if ((rc = zorch__check_name("step", from_step)))
    return zorch__error_prefix("step '%s': input '%s'", s->name, name);
  if ((rc = zorch__check_name("output", output)))
    return zorch__error_prefix("step '%s': input '%s'", s->name, name);
  for (size_t i = 0; i < s->n_inputs; i++)
    if (strcmp(s->inputs[i].name, name) == 0)
      return zorch__error_set(ZORCH_EEXISTS, "step '%s' already has an input '%s'", s->name,
                              name);
  if (s->n_inputs == s->cap_inputs) {
    size_t nc = s->cap_inputs ? s->cap_inputs * 2 : 4;
    zorch__input *ni = realloc(s->inputs, nc * sizeof *ni);
    if (!ni) return zorch__error_oom();
    s->inputs = ni;
    s->cap_inputs = nc;
  }
  zorch__input *in = &s->inputs[s->n_inputs];
  in->name = zorch__strdup(name);
  in->from_step = zorch__strdup(from_step);
  in->from_output = zorch__strdup(output);
  if (!in->name || !in->from_step || !in->from_output) {
    free(in->name);
    free(in->from_step);
    free(in->from_output);
    return zorch__error_oom();
  }
  in->from_idx = step_index(s->pipeline, from_step);
  s->n_inputs++;
  s->pipeline->n_edges++;
  return ZORCH_OK;
}

int zorch_step_after(zorch_step *s, const char *upstream) {
  int rc = not_on_defaults(s, "an 'after' dependency");
  if (rc) return rc;
  /* the upstream step is looked up now when it exists (validation then
   * needs no lookup); a name that names a step is valid */
  const char *own = NULL; /* the upstream step's own name */
  uintptr_t v = upstream ? (uintptr_t)zorch__map_find(s->pipeline->by_name, upstream, &own) : 0;
  uint32_t u = v ? (uint32_t)(v - 1) : ZORCH__UNRESOLVED;
  if (u == ZORCH__UNRESOLVED && (rc = zorch__check_name("step", upstream)))
    return zorch__error_prefix("step '%s': after", s->name);
  if (names_has(&s->after, upstream, u)) return ZORCH_OK;
  if ((rc = names_push(s->pipeline, &s->after, own ? own : upstream, u))) return rc;
  s->pipeline->n_edges++;
  return ZORCH_OK;
}

int zorch_step_use_param(zorch_step *s, const char *param) {
  int rc = not_on_defaults(s, "a param");
  if (rc) return rc;
  if ((rc = zorch__check_name("param", param))) return zorch__error_prefix("step '%s'", s->name);
  if (zorch__strv_has(&s->use_params, param)) return ZORCH_OK;
  return zorch__strv_push(&s->use_params, param);
}

int zorch_step_set_param(zorch_step *s, const char *name, const char *value_json) {
  int rc = not_on_defaults(s, "a param");
  if (rc) return rc;
  if ((rc = zorch__check_name("param", name))) return zorch__error_prefix("step '%s'", s->name);
  if ((rc = check_json("param", name, value_json)))
    return zorch__error_prefix("step '%s'", s->name);
  return zorch__kvs_set(&s->params, name, value_json);
}

#define NEED_STEP(s, what)                                                     \
  do {                                                                         \
    if (!(s)) return zorch__error_set(ZORCH_EINVALID, "%s: step is NULL", what); \
  } while (0)

/* In a setter, after its argument checks: the step's own settings block. */
#define MUT(s)                                   \
  zorch__settings *st = settings_mut(s);         \
  if (!st) return zorch__error_oom()

int zorch_step_set_resources(zorch_step *s, double cpu, uint64_t memory_bytes) {
  NEED_STEP(s, "zorch_step_set_resources");
  if (!(cpu >= 0) || isinf(cpu))
    return zorch__error_set(ZORCH_EINVALID, "step '%s': cpu must be a finite number >= 0, got %g",
                            s->name, cpu);
  MUT(s);
  st->has_cpu = cpu > 0;
  st->cpu = cpu;
  st->has_memory = memory_bytes > 0;
  st->memory = memory_bytes;
  return ZORCH_OK;
}

int zorch_step_set_gpu(zorch_step *s, uint32_t count, const char *type) {
  NEED_STEP(s, "zorch_step_set_gpu");
  char *t = NULL;
  if (type) {
    if (!*type)
      return zorch__error_set(ZORCH_EINVALID, "step '%s': gpu type is empty", s->name);
    if (!(t = zorch__strdup(type))) return zorch__error_oom();
  }
  MUT(s);
  free(st->gpu_type);
  st->gpu_type = t;
  st->gpu = count;
  st->has_gpu = true;
  return ZORCH_OK;
}

int zorch_step_set_env(zorch_step *s, const char *name, const char *value) {
  NEED_STEP(s, "zorch_step_set_env");
  if (!name || !*name || strchr(name, '='))
    return zorch__error_set(ZORCH_EINVALID,
                            "step '%s': invalid environment variable name '%s'", s->name,
                            name ? name : "(null)");
  if (!value)
    return zorch__error_set(ZORCH_EINVALID, "step '%s': environment variable '%s' has no value",
                            s->name, name);
  MUT(s);
  return zorch__kvs_set(&st->env, name, value);
}

int zorch_step_set_retry(zorch_step *s, uint32_t max_retries, double delay, double backoff) {
  NEED_STEP(s, "zorch_step_set_retry");
  if (!(delay >= 0) || isinf(delay))
    return zorch__error_set(ZORCH_EINVALID, "step '%s': retry delay must be >= 0 seconds, got %g",
                            s->name, delay);
  if (!(backoff >= 1) || isinf(backoff))
    return zorch__error_set(ZORCH_EINVALID, "step '%s': retry backoff must be >= 1, got %g",
                            s->name, backoff);
  MUT(s);
  st->has_retry = true;
  st->retries = max_retries;
  st->retry_delay = delay;
  st->retry_backoff = backoff;
  return ZORCH_OK;
}

int zorch_step_set_timeout(zorch_step *s, double seconds) {
  NEED_STEP(s, "zorch_step_set_timeout");
  if (!(seconds >= 0) || isinf(seconds))
    return zorch__error_set(ZORCH_EINVALID, "step '%s': timeout must be >= 0 seconds, got %g",
                            s->name, seconds);
  MUT(s);
  st->has_timeout = true;
  st->timeout = seconds;
  return ZORCH_OK;
}

int zorch_step_set_cache(zorch_step *s, int enabled) {
  NEED_STEP(s, "zorch_step_set_cache");
  MUT(s);
  st->has_cache = true;
  st->cache = enabled != 0;
  return ZORCH_OK;
}

static int set_str(char **slot, const zorch_step *s, const char *what, const char *v) {
  if (v && !*v) return zorch__error_set(ZORCH_EINVALID, "step '%s': %s is empty", s->name, what);
  char *d = NULL;
  if (v && !(d = zorch__strdup(v))) return zorch__error_oom();
  free(*slot);
  *slot = d;
  return ZORCH_OK;
}

int zorch_step_set_image(zorch_step *s, const char *image) {
  NEED_STEP(s, "zorch_step_set_image");
  MUT(s);
  return set_str(&st->image, s, "image", image);
}

int zorch_step_set_version(zorch_step *s, const char *code_version) {
  NEED_STEP(s, "zorch_step_set_version");
  MUT(s);
  return set_str(&st->version, s, "code version", code_version);
}

int zorch_step_set_flavor_settings(zorch_step *s, const char *flavor, const char *settings_json) {
  NEED_STEP(s, "zorch_step_set_flavor_settings");
  if (!flavor || !*flavor)
    return zorch__error_set(ZORCH_EINVALID, "step '%s': flavor name is empty", s->name);
  json_error_t err;
  json_t *v = settings_json ? json_loads(settings_json, 0, &err) : NULL;
  if (!v || !json_is_object(v)) {
    json_decref(v);
    return zorch__error_set(ZORCH_EINVALID,
                            "step '%s': settings for flavor '%s' must be a JSON object%s%s",
                            s->name, flavor, settings_json && !v ? ": " : "",
                            settings_json && !v ? err.text : "");
  }
  json_decref(v);
  MUT(s);
  return zorch__kvs_set(&st->flavor, flavor, settings_json);
}

/* ---- validation ------------------------------------------------------------------ */

/* The upstream of a step's input or 'after' dependency: looked up when it
 * was added, else now by name. */
static uint32_t upstream_of(const zorch_pipeline *p, uint32_t idx, const char *name) {
  return idx != ZORCH__UNRESOLVED ? idx : step_index(p, name);
}

/* Describe a cycle among the steps whose in-degree stayed > 0 after Kahn's
 * algorithm: walk predecessors (each such node has one that is also stuck)
 * until a node repeats.  `edges` and `eoff` as zorch__topo has them. */
static int report_cycle(const zorch_pipeline *p, const uint32_t *indeg, const uint32_t *edges,
                        const uint32_t *eoff) {
  size_t n = p->n_steps;
  size_t start = 0;
  while (start < n && indeg[start] == 0) start++;
  size_t *seen_at = malloc(n * sizeof *seen_at);
  size_t *path = malloc((n + 1) * sizeof *path);
  if (!seen_at || !path) {
    free(seen_at);
    free(path);
    return zorch__error_set(ZORCH_ECYCLE, "pipeline '%s' has a cycle", p->name);
  }
  for (size_t i = 0; i < n; i++) seen_at[i] = SIZE_MAX;
  size_t len = 0, cur = start;
  for (;;) {
    if (seen_at[cur] != SIZE_MAX) break;
    seen_at[cur] = len;
    path[len++] = cur;
    /* pick a stuck predecessor: the first of its inputs, then of its 'after' steps */
    size_t next = SIZE_MAX;
    for (size_t e = eoff[cur]; e < eoff[cur + 1] && next == SIZE_MAX; e++)
      if (indeg[edges[e]] > 0) next = edges[e];
    if (next == SIZE_MAX) break;
    cur = next;
  }
  /* the cycle is path[seen_at[cur]..len-1], walked against the edges: print it forward */
  zorch__buf b = ZORCH__BUF_INIT;
  size_t first = seen_at[cur] == SIZE_MAX ? 0 : seen_at[cur];
  for (size_t i = len; i-- > first;) {
    zorch__buf_puts(&b, p->steps[path[i]]->name);
    zorch__buf_puts(&b, " -> ");
  }
  zorch__buf_puts(&b, p->steps[path[len - 1]]->name);
  zorch__error_set(ZORCH_ECYCLE, "pipeline '%s' has a cycle: %s", p->name,
                   b.data ? b.data : "?");
  zorch__buf_free(&b);
  free(seen_at);
  free(path);
  return ZORCH_ECYCLE;
}

/* Kahn's algorithm over the edges with a FIFO seeded in the order the steps
 * were added: steps come level by level, in the order the executor is
 * likely to run them (a plan laid out that way keeps a large run's memory
 * accesses close together). */
static int order_steps(const zorch_pipeline *p, zorch__topo *t, const uint32_t *edges,
                       const uint32_t *eoff, bool keep_succ_off) {
  size_t n = p->n_steps, n_edges = p->n_edges;
  uint32_t *rem = zorch__big_calloc_filled(n, sizeof *rem);
  uint32_t *off = zorch__big_calloc_filled(n + 1, sizeof *off);
  uint32_t *succ = zorch__big_calloc_filled(n_edges + 1, sizeof *succ);
  uint32_t *order = zorch__big_calloc_filled(n, sizeof *order);
  t->pos = zorch__big_calloc_filled(n, sizeof *t->pos);
  int rc = ZORCH_OK;
  if (!rem || !off || !succ || !order || !t->pos) {
    rc = zorch__error_oom();
    goto out;
  }
  /* successor lists (CSR) */
  for (size_t e = 0; e < n_edges; e++) off[edges[e] + 1]++;
  for (size_t i = 0; i < n; i++) off[i + 1] += off[i];
  for (size_t i = 0; i < n; i++) {
    rem[i] = eoff[i + 1] - eoff[i];
    for (size_t e = eoff[i]; e < eoff[i + 1]; e++) succ[off[edges[e]]++] = (uint32_t)i;
  }
  for (size_t i = n; i > 0; i--) off[i] = off[i - 1]; /* back to the start of each list */
  off[0] = 0;
  size_t head = 0, tail = 0;
  for (size_t i = 0; i < n; i++)
    if (rem[i] == 0) order[tail++] = (uint32_t)i;
  while (head < tail) {
    uint32_t u = order[head++];
    for (uint32_t x = off[u]; x < off[u + 1]; x++)
      if (--rem[succ[x]] == 0) order[tail++] = succ[x];
  }
  if (tail != n) {
    rc = report_cycle(p, rem, edges, eoff);
    goto out;
  }
  for (size_t k = 0; k < n; k++) t->pos[order[k]] = (uint32_t)k;
  t->order = order;
  order = NULL;
  if (keep_succ_off) {
    t->succ_off = off;
    off = NULL;
  }
out:
  zorch__big_free(rem);
  zorch__big_free(off);
  zorch__big_free(succ);
  zorch__big_free(order);
  return rc;
}

void zorch__topo_free(zorch__topo *t) {
  zorch__big_free(t->order);
  zorch__big_free(t->pos);
  zorch__big_free(t->edges);
  zorch__big_free(t->eoff);
  zorch__big_free(t->succ_off);
  zorch__big_free(t->steps);
  memset(t, 0, sizeof *t);
}

int zorch__pipeline_order(const zorch_pipeline *p, zorch__topo *t, bool want_edges) {
  memset(t, 0, sizeof *t);
  if (!p) return zorch__error_set(ZORCH_EINVALID, "pipeline is NULL");
  size_t n = p->n_steps;
  if (n == 0) return zorch__error_set(ZORCH_EINVALID, "pipeline '%s' has no steps", p->name);
  if (p->n_edges >= UINT32_MAX)
    return zorch__error_set(ZORCH_EINVALID, "pipeline '%s' has too many dependencies (%zu)", p->name,
                            p->n_edges);
  uint32_t *edges = zorch__big_calloc_filled(p->n_edges + 1, sizeof *edges);
  uint32_t *eoff = zorch__big_calloc_filled(n + 1, sizeof *eoff);
  zorch__tstep *ts = want_edges ? zorch__big_calloc_filled(n, sizeof *ts) : NULL;
  if (!edges || !eoff || (want_edges && !ts)) {
    zorch__big_free(edges);
    zorch__big_free(eoff);
    zorch__big_free(ts);
    return zorch__error_oom();
  }
  size_t ne = 0;
  /* check every reference (an input or an 'after' on the same upstream
   * counts once per occurrence) */
  for (size_t i = 0; i < n; i++) {
    const zorch_step *s = p->steps[i];
    zorch__prefetch_step(p, NULL, i);
    eoff[i] = (uint32_t)ne;
    if (ts)
      ts[i] = (zorch__tstep){.name = s->name, .fn = s->fn, .payload = s->payload,
                             .name_len = s->name_len, .kind = (uint8_t)s->kind,
                             .rare = s->kind != ZORCH__STEP_FUNCTION || s->n_inputs ||
                                     s->outputs.n || s->use_params.n || s->params.n ||
                                     s->settings != &zorch__no_settings};
    for (size_t k = 0; k < s->n_inputs; k++) {
      const zorch__input *in = &s->inputs[k];
      uint32_t u = upstream_of(p, in->from_idx, in->from_step);
      if (u == ZORCH__UNRESOLVED) {
        zorch__error_set(ZORCH_EINVALID,
                         "step '%s': input '%s' is wired to step '%s', which does not exist",
                         s->name, in->name, in->from_step);
        goto fail;
      }
      if (u == i) {
        zorch__error_set(ZORCH_ECYCLE, "step '%s': input '%s' is wired to the step itself",
                         s->name, in->name);
        goto fail;
      }
      if (!zorch__strv_has(&p->steps[u]->outputs, in->from_output)) {
        zorch__buf b = ZORCH__BUF_INIT;
        const zorch__strv *outs = &p->steps[u]->outputs;
        for (size_t o = 0; o < outs->n; o++) {
          zorch__buf_puts(&b, o ? ", " : "");
          zorch__buf_puts(&b, outs->v[o]);
        }
        zorch__error_set(ZORCH_EINVALID,
                         "step '%s': input '%s' is wired to output '%s' of step '%s', which "
                         "has no such output (it has: %s)",
                         s->name, in->name, in->from_output, in->from_step,
                         b.len ? b.data : "no outputs");
        zorch__buf_free(&b);
        goto fail;
      }
      edges[ne++] = u;
    }
    for (size_t k = 0; k < s->after.n; k++) {
      uint32_t u = upstream_of(p, s->after.idx[k], s->after.v[k]);
      if (u == ZORCH__UNRESOLVED) {
        zorch__error_set(ZORCH_EINVALID, "step '%s' runs after step '%s', which does not exist",
                         s->name, s->after.v[k]);
        goto fail;
      }
      if (u == i) {
        zorch__error_set(ZORCH_ECYCLE, "step '%s' is set to run after itself", s->name);
        goto fail;
      }
      edges[ne++] = u;
    }
    for (size_t k = 0; k < s->use_params.n; k++) {
      if (!zorch__kvs_get(&p->params, s->use_params.v[k]) &&
          !zorch__kvs_get(&s->params, s->use_params.v[k])) {
        zorch__error_set(ZORCH_EINVALID,
                         "step '%s' uses param '%s', which the pipeline does not declare",
                         s->name, s->use_params.v[k]);
        goto fail;
      }
    }
  }
  eoff[n] = (uint32_t)ne;
  if (order_steps(p, t, edges, eoff, want_edges) != ZORCH_OK) goto fail;
  if (want_edges) {
    t->edges = edges;
    t->eoff = eoff;
    t->steps = ts;
  } else {
    zorch__big_free(edges);
    zorch__big_free(eoff);
  }
  return ZORCH_OK;
fail:
  zorch__big_free(edges);
  zorch__big_free(eoff);
  zorch__big_free(ts);
  zorch__topo_free(t);
  return zorch_error_last()->code;
}

int zorch_pipeline_validate(const zorch_pipeline *p) {
  zorch__topo t;
  int rc = zorch__pipeline_order(p, &t, false);
  zorch__topo_free(&t);
  return rc;
}
