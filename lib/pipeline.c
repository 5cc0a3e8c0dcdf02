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

static int names_push(zorch_pipeline *p, zorch__names *l, const char *s) {
  if (l->n + 1 >= l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 4;
    char **nv = realloc(l->v, nc * sizeof *nv);
    if (!nv) return zorch__error_oom();
    l->v = nv;
    l->cap = nc;
  }
  char *d = pipeline_str(p, s);
  if (!d) return zorch__error_oom();
  l->v[l->n++] = d;
  l->v[l->n] = NULL;
  return ZORCH_OK;
}

static bool names_has(const zorch__names *l, const char *s) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i], s) == 0) return true;
  return false;
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
  if (s->kind == ZORCH__STEP_DEFAULTS) free(s->name); /* else allocated with the step */
  zorch__strv_clear(&s->argv);
  zorch__strv_clear(&s->outputs);
  for (size_t i = 0; i < s->n_inputs; i++) {
    free(s->inputs[i].name);
    free(s->inputs[i].from_step);
    free(s->inputs[i].from_output);
  }
  free(s->inputs);
  free(s->after.v);
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
  if (p->n_steps == p->cap_steps) {
    size_t nc = p->cap_steps ? p->cap_steps * 2 : 8;
    zorch_step **ns = realloc(p->steps, nc * sizeof *ns);
    if (!ns) return zorch__error_oom();
    p->steps = ns;
    p->cap_steps = nc;
  }
  size_t nl = strlen(name) + 1;
  zorch_step *s = calloc(1, sizeof *s + nl); /* the name lives right after the step */
  if (!s) return zorch__error_oom();
  s->pipeline = p;
  s->kind = kind;
  s->settings = (zorch__settings *)&zorch__no_settings;
  s->name = memcpy((char *)(s + 1), name, nl);
  if (zorch__map_put_new(p->by_name, s->name, s, &rc) || rc) { /* one probe: check and insert */
    free(s);
    return rc ? zorch__error_oom()
              : zorch__error_set(ZORCH_EEXISTS, "pipeline '%s' already has a step named '%s'",
                                 p->name, name);
  }
  s->index = p->n_steps;
  p->steps[p->n_steps++] = s;
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
  return zorch__map_get(p->by_name, name);
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
  s->n_inputs++;
  return ZORCH_OK;
}

int zorch_step_after(zorch_step *s, const char *upstream) {
  int rc = not_on_defaults(s, "an 'after' dependency");
  if (rc) return rc;
  if ((rc = zorch__check_name("step", upstream)))
    return zorch__error_prefix("step '%s': after", s->name);
  if (names_has(&s->after, upstream)) return ZORCH_OK;
  return names_push(s->pipeline, &s->after, upstream);
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

/* Describe a cycle among the steps whose in-degree stayed > 0 after Kahn's
 * algorithm: walk predecessors (each such node has one that is also stuck)
 * until a node repeats. */
/* The index of the step called `name` (a pointer to it), or NULL. */
static const size_t *index_of(const zorch_pipeline *p, const char *name) {
  const zorch_step *s = zorch__map_get(p->by_name, name);
  return s ? &s->index : NULL;
}

static int report_cycle(const zorch_pipeline *p, const size_t *indeg) {
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
    /* pick a stuck predecessor */
    const zorch_step *s = p->steps[cur];
    size_t next = SIZE_MAX;
    for (size_t k = 0; k < s->n_inputs && next == SIZE_MAX; k++) {
      size_t j = *index_of(p, s->inputs[k].from_step);
      if (indeg[j] > 0) next = j;
    }
    for (size_t k = 0; k < s->after.n && next == SIZE_MAX; k++) {
      size_t j = *index_of(p, s->after.v[k]);
      if (indeg[j] > 0) next = j;
    }
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

int zorch__pipeline_order(const zorch_pipeline *p, size_t **order_out, size_t **edges_out) {
  if (edges_out) *edges_out = NULL;
  if (!p) return zorch__error_set(ZORCH_EINVALID, "pipeline is NULL");
  size_t n = p->n_steps;
  if (n == 0) return zorch__error_set(ZORCH_EINVALID, "pipeline '%s' has no steps", p->name);
  /* index of each step, by pointer identity through a map of names */
  size_t *indeg = calloc(n, sizeof *indeg);
  size_t *order = malloc(n * sizeof *order);
  size_t *succ_count = calloc(n + 1, sizeof *succ_count);
  size_t n_edges = 0;
  for (size_t i = 0; i < n; i++) n_edges += p->steps[i]->n_inputs + p->steps[i]->after.n;
  size_t *edge_from = malloc((n_edges + 1) * sizeof *edge_from); /* upstream of each edge, in order */
  size_t ne = 0;
  if (!indeg || !order || !succ_count || !edge_from) goto oom;
  /* check every reference, count edges (an input or an 'after' on the same
   * upstream counts once per occurrence: in-degree and successor lists agree) */
  for (size_t i = 0; i < n; i++) {
    const zorch_step *s = p->steps[i];
    /* the lookups of a large pipeline miss the cache: ask for the slots of
     * the step 16 ahead and for the steps named by the one 8 ahead */
    for (int d = 0; d < 2; d++) {
      size_t ahead = i + (d ? 8 : 16);
      if (ahead >= n) continue;
      const zorch_step *f = p->steps[ahead];
      for (size_t k = 0; k < f->after.n; k++) zorch__map_prefetch(p->by_name, f->after.v[k], d);
      for (size_t k = 0; k < f->n_inputs; k++)
        zorch__map_prefetch(p->by_name, f->inputs[k].from_step, d);
    }
    for (size_t k = 0; k < s->n_inputs; k++) {
      const zorch__input *in = &s->inputs[k];
      const size_t *u = index_of(p, in->from_step);
      if (!u) {
        zorch__error_set(ZORCH_EINVALID,
                         "step '%s': input '%s' is wired to step '%s', which does not exist",
                         s->name, in->name, in->from_step);
        goto fail;
      }
      if (*u == i) {
        zorch__error_set(ZORCH_ECYCLE, "step '%s': input '%s' is wired to the step itself",
                         s->name, in->name);
        goto fail;
      }
      if (!zorch__strv_has(&p->steps[*u]->outputs, in->from_output)) {
        zorch__buf b = ZORCH__BUF_INIT;
        const zorch__strv *outs = &p->steps[*u]->outputs;
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
      indeg[i]++;
      succ_count[*u]++;
      edge_from[ne++] = *u;
    }
    for (size_t k = 0; k < s->after.n; k++) {
      const size_t *u = index_of(p, s->after.v[k]);
      if (!u) {
        zorch__error_set(ZORCH_EINVALID, "step '%s' runs after step '%s', which does not exist",
                         s->name, s->after.v[k]);
        goto fail;
      }
      if (*u == i) {
        zorch__error_set(ZORCH_ECYCLE, "step '%s' is set to run after itself", s->name);
        goto fail;
      }
      indeg[i]++;
      succ_count[*u]++;
      edge_from[ne++] = *u;
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
  /* CSR successor lists */
  size_t *off = calloc(n + 1, sizeof *off);
  if (!off) goto oom;
  for (size_t i = 0; i < n; i++) off[i + 1] = off[i] + succ_count[i];
  size_t *succ = malloc((off[n] + 1) * sizeof *succ);
  if (!succ) {
    free(off);
    goto oom;
  }
  memset(succ_count, 0, (n + 1) * sizeof *succ_count);
  ne = 0;
  for (size_t i = 0; i < n; i++) {
    const zorch_step *s = p->steps[i];
    for (size_t k = 0; k < s->n_inputs + s->after.n; k++) {
      size_t u = edge_from[ne++];
      succ[off[u] + succ_count[u]++] = i;
    }
  }
  /* Kahn, stable: a FIFO seeded in insertion order */
  size_t head = 0, tail = 0;
  size_t *rem = malloc(n * sizeof *rem);
  if (!rem) {
    free(off);
    free(succ);
    goto oom;
  }
  memcpy(rem, indeg, n * sizeof *rem);
  for (size_t i = 0; i < n; i++)
    if (rem[i] == 0) order[tail++] = i;
  while (head < tail) {
    size_t u = order[head++];
    for (size_t e = off[u]; e < off[u + 1]; e++)
      if (--rem[succ[e]] == 0) order[tail++] = succ[e];
  }
  free(off);
  free(succ);
  if (tail != n) {
    report_cycle(p, rem);
    free(rem);
    goto fail;
  }
  free(rem);
  free(indeg);
  free(succ_count);
  if (edges_out) *edges_out = edge_from;
  else free(edge_from);
  *order_out = order;
  return ZORCH_OK;
oom:
  zorch__error_oom();
fail:
  free(indeg);
  free(order);
  free(succ_count);
  free(edge_from);
  return zorch_error_last()->code;
}

int zorch_pipeline_validate(const zorch_pipeline *p) {
  size_t *order = NULL;
  int rc = zorch__pipeline_order(p, &order, NULL);
  free(order);
  return rc;
}
