/* zorch plugin kit — the deployment view (see zdeploy.h). */
#include "zdeploy.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the settings rule -------------------------------------------------------------------- */

json_t *zdep_merge(json_t *base, json_t *over) {
  if (!json_is_object(over)) return json_is_object(base) ? json_deep_copy(base) : json_object();
  json_t *out = json_is_object(base) ? json_deep_copy(base) : json_object();
  const char *k;
  json_t *v;
  json_object_foreach(over, k, v) {
    json_t *cur = json_object_get(out, k);
    if (json_is_object(cur) && json_is_object(v))
      json_object_set_new(out, k, zdep_merge(cur, v));
    else
      json_object_set_new(out, k, json_deep_copy(v));
  }
  return out;
}

/* ---- resources ------------------------------------------------------------------------------- */

int zdep_cpu(double *out, const zorch_host *h, json_t *v, const char *where) {
  *out = 0;
  if (!v || json_is_null(v)) return ZORCH_OK;
  double c = -1;
  if (json_is_number(v)) {
    c = json_number_value(v);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end = NULL;
    double x = strtod(s, &end);
    if (end != s && *s >= '0' && *s <= '9') {
      if (!strcmp(end, "m")) c = x / 1000; /* millicores */
      else if (!*end) c = x;
    }
  }
  if (!(c > 0) || !isfinite(c))
    return zkit_errorf(h, ZORCH_EINVALID, "%s: cpu must be a number of cores > 0 (2, 0.5) or millicores "
                       "(\"500m\")", where);
  *out = c;
  return ZORCH_OK;
}

static const struct {
  const char *unit;
  uint64_t factor;
} units[] = {{"K", 1000ull}, {"M", 1000000ull}, {"G", 1000000000ull}, {"KB", 1000ull}, {"MB", 1000000ull},
             {"GB", 1000000000ull}, {"Ki", 1ull << 10}, {"Mi", 1ull << 20}, {"Gi", 1ull << 30},
             {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}};

/* "<digits>[.<1-9 digits>]<unit>" in exact integer arithmetic: 0 or -1. */
static int memory_text(const char *s, uint64_t *out) {
  uint64_t whole = 0, frac = 0, denom = 1;
  const char *p = s;
  if (*p < '0' || *p > '9') return -1;
  for (; *p >= '0' && *p <= '9'; p++)
    if (__builtin_mul_overflow(whole, 10, &whole) || __builtin_add_overflow(whole, (uint64_t)(*p - '0'), &whole))
      return -1;
  if (*p == '.') {
    int digits = 0;
    for (p++; *p >= '0' && *p <= '9'; p++) {
      if (++digits > 9) return -1;
      frac = frac * 10 + (uint64_t)(*p - '0');
      denom *= 10;
    }
    if (!digits) return -1;
  }
  for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
    if (strcmp(p, units[i].unit)) continue;
    uint64_t bytes, part = frac * units[i].factor; /* < 10^9 * 2^30: fits */
    if (part % denom || __builtin_mul_overflow(whole, units[i].factor, &bytes) ||
        __builtin_add_overflow(bytes, part / denom, &bytes) || !bytes)
      return -1;
    *out = bytes;
    return 0;
  }
  return -1;
}

int zdep_memory(uint64_t *out, const zorch_host *h, json_t *v, const char *where) {
  *out = 0;
  if (!v || json_is_null(v)) return ZORCH_OK;
  if (json_is_integer(v) && json_integer_value(v) > 0) {
    *out = (uint64_t)json_integer_value(v);
    return ZORCH_OK;
  }
  if (json_is_string(v) && memory_text(json_string_value(v), out) == 0) return ZORCH_OK;
  return zkit_errorf(h, ZORCH_EINVALID, "%s: memory must be a number of bytes > 0 or a size such as \"512MiB\", "
                     "\"2Gi\" or \"1.5G\" (units K, M, G, KB, MB, GB, Ki, Mi, Gi, KiB, MiB, GiB)", where);
}

int zdep_resources_of(zdep_resources *out, const zorch_host *h, json_t *res, const char *where) {
  memset(out, 0, sizeof *out);
  if (!res || json_is_null(res)) return ZORCH_OK;
  if (!json_is_object(res)) return zkit_errorf(h, ZORCH_EINVALID, "%s: resources must be an object", where);
  int rc = zdep_cpu(&out->cpu, h, json_object_get(res, "cpu"), where);
  if (!rc) rc = zdep_memory(&out->memory, h, json_object_get(res, "memory"), where);
  json_t *g = json_object_get(res, "gpu");
  if (!rc && g && !json_is_null(g)) {
    if (!json_is_integer(g) || json_integer_value(g) < 0 || json_integer_value(g) > UINT32_MAX)
      rc = zkit_errorf(h, ZORCH_EINVALID, "%s: gpu must be a whole number >= 0", where);
    else
      out->gpu = (uint32_t)json_integer_value(g);
  }
  out->gpu_type = zkit_jstr(res, "gpu_type");
  return rc;
}

/* ---- settings ------------------------------------------------------------------------------- */

static char **env_list(json_t *env) {
  char **v = calloc(json_object_size(env) + 1, sizeof *v);
  size_t n = 0;
  const char *k;
  json_t *x;
  if (v) json_object_foreach(env, k, x) {
      if (!json_is_string(x)) continue;
      if (!(v[n] = zkit_asprintf("%s=%s", k, json_string_value(x)))) {
        zdep_strv_free(v);
        return NULL;
      }
      n++;
    }
  return v;
}

int zdep_settings_of(zdep_settings *out, const zorch_host *h, json_t *settings, const zdep_options *o,
                     const char *where) {
  memset(out, 0, sizeof *out);
  out->all = json_is_object(settings) ? json_incref(settings) : json_object();
  json_t *fo = o->flavor ? json_object_get(json_object_get(out->all, "flavor"), o->flavor) : NULL;
  out->flavor_own = json_is_object(fo) ? fo : NULL;
  out->flavor = zdep_merge(o->base, out->flavor_own);
  out->env = env_list(json_object_get(out->all, "env"));
  if (!out->all || !out->flavor || !out->env) {
    zdep_settings_free(out);
    return zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
  }
  out->image = zkit_jstr(out->flavor_own, "image");
  if (!out->image) out->image = zkit_jstr(out->all, "image");
  if (!out->image) out->image = o->default_image;
  int rc = zdep_resources_of(&out->res, h, json_object_get(out->all, "resources"), where);
  if (rc) zdep_settings_free(out);
  return rc;
}

int zdep_settings_parse(zdep_settings *out, const zorch_host *h, const char *text, const zdep_options *o,
                        const char *where) {
  json_error_t je;
  json_t *s = text && *text ? json_loads(text, 0, &je) : NULL;
  if (text && *text && !json_is_object(s)) {
    memset(out, 0, sizeof *out);
    json_decref(s);
    return zkit_errorf(h, ZORCH_EINVALID, "%s: the settings are not a JSON object", where);
  }
  int rc = zdep_settings_of(out, h, s, o, where);
  json_decref(s);
  return rc;
}

void zdep_settings_free(zdep_settings *s) {
  json_decref(s->all);
  json_decref(s->flavor);
  zdep_strv_free(s->env);
  memset(s, 0, sizeof *s);
}

/* ---- entrypoints ---------------------------------------------------------------------------- */

void zdep_strv_free(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

static char *fill(const char *t, const char *step) {
  size_t n = 0, sl = strlen(step);
  for (const char *p = t; (p = strstr(p, "{step}")); p += 6) n++;
  char *o = malloc(strlen(t) + n * sl + 1), *w = o;
  if (!o) return NULL;
  for (const char *p = t, *q; *p; p = q + 6) {
    q = strstr(p, "{step}");
    size_t l = q ? (size_t)(q - p) : strlen(p);
    memcpy(w, p, l);
    w += l;
    if (!q) break;
    memcpy(w, step, sl);
    w += sl;
  }
  *w = '\0';
  return o;
}

char **zdep_entrypoint(const zorch_host *h, json_t *doc, const char *kind, const char *step) {
  json_t *t = json_object_get(json_object_get(doc, "entrypoint"), kind);
  size_t n = json_array_size(t);
  if (!n) {
    zkit_errorf(h, ZORCH_EINVALID, "the deployment has no %s entrypoint template (for step '%s')", kind, step);
    return NULL;
  }
  char **v = calloc(n + 1, sizeof *v);
  for (size_t i = 0; v && i < n; i++) {
    const char *a = json_string_value(json_array_get(t, i));
    if (!a || !(v[i] = fill(a, step))) {
      zdep_strv_free(v);
      zkit_errorf(h, a ? ZORCH_ENOMEM : ZORCH_EINVALID, "the deployment's %s entrypoint template is not an array "
                  "of strings", kind);
      return NULL;
    }
  }
  if (!v) zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
  return v;
}

/* ---- the view ------------------------------------------------------------------------------ */

static uint64_t name_hash(const char *s) {
  uint64_t x = 1469598103934665603ULL;
  for (; *s; s++) x = (x ^ (unsigned char)*s) * 1099511628211ULL;
  return x;
}

/* Open addressing over positions in `names` (+1; 0 is empty). */
static size_t lookup(const size_t *slots, size_t n_slots, const char *const *names, const char *name) {
  for (size_t i = name_hash(name) & (n_slots - 1);; i = (i + 1) & (n_slots - 1)) {
    if (!slots[i]) return SIZE_MAX;
    if (!strcmp(names[slots[i] - 1], name)) return slots[i] - 1;
  }
}

static void step_free(zdep_step *s) {
  free(s->upstream);
  zdep_settings_free(&s->set);
  zdep_strv_free(s->argv);
}

void zdep_free(zdep *d) {
  if (!d) return;
  for (size_t i = 0; i < d->n_steps; i++) step_free(&d->steps[i]);
  free(d->steps);
  free(d->slots);
  json_decref(d->doc);
  free(d);
}

const zdep_step *zdep_find(const zdep *d, const char *name) {
  if (!d->n_slots || !name) return NULL;
  for (size_t i = name_hash(name) & (d->n_slots - 1);; i = (i + 1) & (d->n_slots - 1)) {
    if (!d->slots[i]) return NULL;
    if (!strcmp(d->steps[d->slots[i] - 1].name, name)) return &d->steps[d->slots[i] - 1];
  }
}

/* The names step k waits for: its inputs' producers and its "after". */
static size_t deps_of(json_t *st, const char **out, size_t max) {
  size_t n = 0;
  const char *k;
  json_t *in, *x;
  json_object_foreach(json_object_get(st, "inputs"), k, in) {
    const char *u = json_is_string(in) ? json_string_value(in) : zkit_jstr(in, "step"); /* {"step","output"} */
    if (u && n < max) out[n++] = u;
  }
  size_t i;
  json_array_foreach(json_object_get(st, "after"), i, x) if (json_is_string(x) && n < max) out[n++] =
      json_string_value(x);
  return n;
}

int zdep_load(zdep **out, const zorch_host *h, const char *text, const zdep_options *o) {
  *out = NULL;
  json_error_t je;
  json_t *doc = json_loads(text ? text : "", 0, &je);
  if (!json_is_object(doc)) {
    json_decref(doc);
    return zkit_errorf(h, ZORCH_EINVALID, "the deployment is not a JSON object: %s", je.text);
  }
  json_t *steps = json_object_get(doc, "steps");
  size_t n = json_array_size(steps), n_slots = 16;
  while (n_slots < 2 * n) n_slots *= 2;
  zdep *d = calloc(1, sizeof *d);
  const char **names = calloc(n + 1, sizeof *names);
  size_t *indeg = calloc(n + 1, sizeof *indeg), *order = calloc(n + 1, sizeof *order);
  size_t **deps = calloc(n + 1, sizeof *deps), *ndeps = calloc(n + 1, sizeof *ndeps);
  size_t *slots = calloc(n_slots, sizeof *slots);
  int rc = ZORCH_OK;
  if (!d || !names || !indeg || !order || !deps || !ndeps || !slots) {
    rc = zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
    goto out;
  }
  d->doc = doc;
  doc = NULL;
  /* names, each once */
  for (size_t k = 0; k < n; k++) {
    json_t *st = json_array_get(steps, k);
    names[k] = zkit_jstr(st, "name");
    if (!names[k]) {
      rc = zkit_errorf(h, ZORCH_EINVALID, "the deployment's step %zu has no name", k);
      goto out;
    }
    if (lookup(slots, n_slots, names, names[k]) != SIZE_MAX) {
      rc = zkit_errorf(h, ZORCH_EINVALID, "the deployment names step '%s' twice", names[k]);
      goto out;
    }
    size_t i = name_hash(names[k]) & (n_slots - 1);
    while (slots[i]) i = (i + 1) & (n_slots - 1);
    slots[i] = k + 1;
  }
  /* edges, then Kahn's algorithm; ties keep the document's order */
  for (size_t k = 0; k < n; k++) {
    json_t *st = json_array_get(steps, k);
    size_t cap = json_object_size(json_object_get(st, "inputs")) + json_array_size(json_object_get(st, "after"));
    const char **dn = calloc(cap + 1, sizeof *dn);
    deps[k] = calloc(cap + 1, sizeof **deps);
    if (!dn || !deps[k]) {
      free(dn);
      rc = zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
      goto out;
    }
    size_t m = deps_of(st, dn, cap);
    for (size_t j = 0; j < m; j++) {
      size_t u = lookup(slots, n_slots, names, dn[j]);
      if (u == SIZE_MAX) {
        rc = zkit_errorf(h, ZORCH_EINVALID, "step '%s' of the deployment waits for step '%s', which it does not "
                         "have", names[k], dn[j]);
        free(dn);
        goto out;
      }
      bool dup = false;
      for (size_t q = 0; q < ndeps[k]; q++) dup = dup || deps[k][q] == u;
      if (!dup) deps[k][ndeps[k]++] = u;
    }
    free(dn);
    indeg[k] = ndeps[k];
  }
  /* successor lists (CSR), then Kahn's algorithm: O(V+E) */
  size_t *first = calloc(n + 2, sizeof *first), *succ = NULL, total = 0;
  for (size_t k = 0; first && k < n; k++) total += ndeps[k];
  succ = first ? calloc(total + 1, sizeof *succ) : NULL;
  if (!succ) {
    free(first);
    rc = zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t k = 0; k < n; k++)
    for (size_t q = 0; q < ndeps[k]; q++) first[deps[k][q] + 2]++;
  for (size_t u = 2; u < n + 2; u++) first[u] += first[u - 1];
  for (size_t k = 0; k < n; k++)
    for (size_t q = 0; q < ndeps[k]; q++) succ[first[deps[k][q] + 1]++] = k;
  size_t placed = 0; /* first[u]..first[u+1]: u's successors, in document order */
  for (size_t k = 0; k < n; k++)
    if (!indeg[k]) order[placed++] = k;
  for (size_t head = 0; head < placed; head++) {
    size_t u = order[head];
    for (size_t e = first[u]; e < first[u + 1]; e++)
      if (--indeg[succ[e]] == 0) order[placed++] = succ[e];
  }
  free(first);
  free(succ);
  if (placed < n) {
    size_t k = 0;
    while (!indeg[k]) k++;
    rc = zkit_errorf(h, ZORCH_EINVALID, "the deployment's steps form a cycle (through step '%s')", names[k]);
    goto out;
  }
  d->pipeline = zkit_jstr(d->doc, "pipeline");
  d->run_id = zkit_jstr(json_object_get(d->doc, "run"), "id");
  d->run_name = zkit_jstr(json_object_get(d->doc, "run"), "name");
  d->program = zkit_jstr(json_object_get(d->doc, "program"), "path");
  if (!d->pipeline) d->pipeline = "";
  if (!d->run_id) d->run_id = "";
  if (!d->run_name) d->run_name = "";
  d->defaults = json_object_get(json_object_get(d->doc, "defaults"), "settings");
  d->steps = calloc(n + 1, sizeof *d->steps);
  if (!d->steps) {
    rc = zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
    goto out;
  }
  size_t *pos = indeg; /* reused: document index -> place in topological order */
  for (size_t i = 0; i < n; i++) pos[order[i]] = i;
  for (size_t i = 0; i < n && !rc; i++) {
    size_t k = order[i];
    zdep_step *s = &d->steps[i];
    d->n_steps = i + 1;
    s->doc = json_array_get(steps, k);
    s->name = names[k];
    s->kind = zkit_jstr(s->doc, "kind");
    if (!s->kind) s->kind = "function";
    s->index = i;
    s->upstream = deps[k];
    deps[k] = NULL;
    s->n_upstream = ndeps[k];
    for (size_t q = 0; q < s->n_upstream; q++) s->upstream[q] = pos[s->upstream[q]];
    json_t *own = json_object_get(s->doc, "settings");
    char where[600];
    snprintf(where, sizeof where, "step '%s'", s->name);
    rc = zdep_settings_of(&s->set, h, own ? own : d->defaults, o, where);
    if (!rc && !(s->argv = zdep_entrypoint(h, d->doc, s->kind, s->name))) rc = ZORCH_EINVALID;
  }
  if (rc) goto out;
  /* lookups by name go to topological places */
  memset(slots, 0, n_slots * sizeof *slots);
  for (size_t i = 0; i < n; i++) {
    size_t j = name_hash(d->steps[i].name) & (n_slots - 1);
    while (slots[j]) j = (j + 1) & (n_slots - 1);
    slots[j] = i + 1;
  }
  d->slots = slots;
  d->n_slots = n_slots;
  slots = NULL;
  *out = d;
  d = NULL;
out:
  for (size_t k = 0; deps && k < n; k++) free(deps[k]);
  free(deps);
  free(ndeps);
  free(names);
  free(indeg);
  free(order);
  free(slots);
  json_decref(doc);
  zdep_free(d);
  return rc;
}
