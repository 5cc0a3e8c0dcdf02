/* zorch — the JSON pipeline spec (docs/pipeline-spec.md).
 *
 * Builds a pipeline of command steps through the public pipeline API only,
 * so a spec can express exactly what a C program can, and no more.  Every
 * rejection names the source and the JSON path of the offending field.
 */
#include "internal.h"

#include <jansson.h>
#include <math.h>

#define SPEC_VERSION 1

typedef struct spec {
  const char *src;        /* prefix of every message */
  zorch_pipeline *p;
  const json_t *params;   /* top-level "params" object, or NULL */
  json_t *index;          /* step name -> integer index into the "steps" array */
} spec;

/* ---- messages -------------------------------------------------------------- */

static int failv(const spec *s, int code, const char *path, const char *fmt, va_list ap) {
  char msg[1536];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (path && *path) return zorch__error_set(code, "%s: %s: %s", s->src, path, msg);
  return zorch__error_set(code, "%s: %s", s->src, msg);
}

static int fail(const spec *s, const char *path, const char *fmt, ...) ZORCH_PRINTF(3, 4);
static int fail(const spec *s, const char *path, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = failv(s, ZORCH_EINVALID, path, fmt, ap);
  va_end(ap);
  return rc;
}

static int fail_code(const spec *s, int code, const char *path, const char *fmt, ...)
    ZORCH_PRINTF(4, 5);
static int fail_code(const spec *s, int code, const char *path, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = failv(s, code, path, fmt, ap);
  va_end(ap);
  return rc;
}

/* A pipeline API call failed: keep its message, put the source and path in
 * front, and report the spec as invalid (a name taken twice is a bad spec,
 * not ZORCH_EEXISTS).  Out-of-memory stays what it is. */
static int fail_lib(const spec *s, const char *path) {
  const zorch_error *e = zorch_error_last();
  if (e->code == ZORCH_ENOMEM) return ZORCH_ENOMEM;
  int code = e->code == ZORCH_ECYCLE ? ZORCH_ECYCLE : ZORCH_EINVALID;
  char msg[1536];
  snprintf(msg, sizeof msg, "%s", e->message);
  return fail_code(s, code, path, "%s", msg);
}

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "object";
  case JSON_ARRAY: return "array";
  case JSON_STRING: return "string";
  case JSON_INTEGER: return "integer";
  case JSON_REAL: return "number";
  case JSON_TRUE:
  case JSON_FALSE: return "boolean";
  case JSON_NULL: return "null";
  }
  return "?";
}

/* ---- JSON paths --------------------------------------------------------------- */

#define PATH_MAX_LEN 256

static bool plain_key(const char *k) {
  if (!*k) return false;
  for (const char *c = k; *c; c++) {
    unsigned char u = (unsigned char)*c;
    if (!((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_' || u == '-' ||
          (c != k && u >= '0' && u <= '9')))
      return false;
  }
  return true;
}

/* Paths are built for every field, not only for errors, so they are built
 * with plain copies (snprintf cost a third of the time of a 100k-step spec). */
static size_t put(char *out, size_t at, const char *s, size_t n) {
  if (at + n > PATH_MAX_LEN - 1) n = at < PATH_MAX_LEN - 1 ? PATH_MAX_LEN - 1 - at : 0;
  memcpy(out + at, s, n);
  return at + n;
}

/* base + ".key" (or ["key"] when the key is not a plain word).  Keys are
 * cut at 64 characters; a path too long for the buffer is cut short, which
 * only shortens a message.  `out` may be `base`. */
static void path_key(char out[PATH_MAX_LEN], const char *base, const char *key) {
  size_t at = strnlen(base, PATH_MAX_LEN - 1);
  if (out != base) memcpy(out, base, at);
  size_t kl = strnlen(key, 64);
  if (plain_key(key)) {
    if (at) at = put(out, at, ".", 1);
    at = put(out, at, key, kl);
  } else {
    at = put(out, at, "[\"", 2);
    at = put(out, at, key, kl);
    at = put(out, at, "\"]", 2);
  }
  out[at] = '\0';
}

static void path_index(char out[PATH_MAX_LEN], const char *base, size_t i) {
  char digits[24];
  size_t n = sizeof digits;
  digits[--n] = ']';
  do {
    digits[--n] = (char)('0' + i % 10);
    i /= 10;
  } while (i);
  digits[--n] = '[';
  size_t at = strnlen(base, PATH_MAX_LEN - 1);
  if (out != base) memcpy(out, base, at);
  at = put(out, at, digits + n, sizeof digits - n);
  out[at] = '\0';
}

/* ---- structure checks ----------------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 32 || lb > 32) return SIZE_MAX;
  size_t row[33];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* Reject any key of `obj` not in `allowed` (NULL-terminated). */
static int check_fields(const spec *s, const char *path, const json_t *obj,
                        const char *const *allowed) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    bool ok = false;
    for (size_t i = 0; allowed[i] && !ok; i++) ok = strcmp(key, allowed[i]) == 0;
    if (ok) continue;
    const char *close = NULL;
    size_t best = SIZE_MAX;
    for (size_t i = 0; allowed[i]; i++) {
      size_t d = edit_distance(key, allowed[i]);
      if (d < best) {
        best = d;
        close = allowed[i];
      }
    }
    zorch__buf hint = ZORCH__BUF_INIT;
    size_t near = close ? strlen(close) / 3 + 1 : 0;
    if (near < 2) near = 2;
    if (close && best <= near && best < strlen(close)) {
      zorch__buf_printf(&hint, " (did you mean '%s'?)", close);
    } else {
      zorch__buf_puts(&hint, " (allowed: ");
      for (size_t i = 0; allowed[i]; i++) zorch__buf_printf(&hint, "%s%s", i ? ", " : "", allowed[i]);
      zorch__buf_puts(&hint, ")");
    }
    int rc;
    if (*path)
      rc = fail(s, path, "unknown field '%.64s'%s", key, hint.data ? hint.data : "");
    else
      rc = fail(s, NULL, "unknown field '%.64s' at top level%s", key, hint.data ? hint.data : "");
    zorch__buf_free(&hint);
    return rc;
  }
  return ZORCH_OK;
}

static int missing(const spec *s, const char *path, const char *field) {
  if (*path) return fail(s, path, "missing required field '%s'", field);
  return fail(s, NULL, "missing required field '%s' at top level", field);
}

static int expect(const spec *s, const char *path, const json_t *v, json_type t,
                  const char *want) {
  if (json_typeof(v) == t) return ZORCH_OK;
  return fail(s, path, "expected %s, got %s", want, type_name(v));
}

static int expect_bool(const spec *s, const char *path, const json_t *v) {
  if (json_is_boolean(v)) return ZORCH_OK;
  return fail(s, path, "expected boolean, got %s", type_name(v));
}

static int expect_nonempty_string(const spec *s, const char *path, const json_t *v) {
  int rc = expect(s, path, v, JSON_STRING, "string");
  if (rc) return rc;
  if (!*json_string_value(v)) return fail(s, path, "must not be empty");
  return ZORCH_OK;
}

/* A JSON number (integer or real) that is finite and >= min (> min when strict). */
static int expect_number(const spec *s, const char *path, const json_t *v, double min,
                         bool strict, double *out) {
  if (!json_is_number(v)) return fail(s, path, "expected number, got %s", type_name(v));
  double d = json_number_value(v);
  if (!isfinite(d) || (strict ? !(d > min) : !(d >= min)))
    return fail(s, path, "must be a number %s %g, got %g", strict ? ">" : ">=", min, d);
  *out = d;
  return ZORCH_OK;
}

static int expect_uint32(const spec *s, const char *path, const json_t *v, uint32_t *out) {
  if (!json_is_integer(v)) return fail(s, path, "expected integer, got %s", type_name(v));
  json_int_t i = json_integer_value(v);
  if (i < 0 || (uint64_t)i > UINT32_MAX)
    return fail(s, path, "must be an integer from 0 to %u, got %" JSON_INTEGER_FORMAT,
                (unsigned)UINT32_MAX, i);
  *out = (uint32_t)i;
  return ZORCH_OK;
}

/* Compact JSON text of any value, with every real written in its shortest
 * form that reads back to the same double (jansson's default precision, 17
 * digits, would turn 0.1 into 0.10000000000000001 in ZORCH_PARAM_*).
 * Free with free(). */
static char *dump_json(const json_t *v) {
  size_t flags = JSON_ENCODE_ANY | JSON_COMPACT;
  for (int prec = 1; prec <= 17; prec++) {
    char *t = json_dumps(v, flags | JSON_REAL_PRECISION(prec));
    if (!t) return NULL;
    json_t *back = json_loads(t, JSON_DECODE_ANY, NULL);
    bool same = back && json_equal(back, (json_t *)v);
    json_decref(back);
    if (same || prec == 17) return t;
    free(t);
  }
  return NULL;
}

/* ---- memory sizes -------------------------------------------------------------------- */

static const struct {
  const char *suffix;
  uint64_t mult;
} memory_units[] = {
    {"K", 1000ull},         {"M", 1000000ull},         {"G", 1000000000ull},
    {"KB", 1000ull},        {"MB", 1000000ull},        {"GB", 1000000000ull},
    {"Ki", 1ull << 10},     {"Mi", 1ull << 20},        {"Gi", 1ull << 30},
    {"KiB", 1ull << 10},    {"MiB", 1ull << 20},       {"GiB", 1ull << 30},
};

#define MEMORY_HINT                                                                   \
  "expected an integer number of bytes or a string such as \"512MiB\" or \"1.5G\" " \
  "(units: K, M, G, KB, MB, GB, Ki, Mi, Gi, KiB, MiB, GiB)"

/* "<digits>[.<digits>]<unit>" with a unit from the table, exact arithmetic.
 * Returns 0 and sets *out, or -1 with *why set. */
static int parse_memory_string(const char *str, uint64_t *out, const char **why) {
  const char *c = str;
  uint64_t whole = 0, frac = 0, scale = 1;
  size_t nd = 0;
  *why = MEMORY_HINT;
  for (; *c >= '0' && *c <= '9'; c++, nd++) {
    if (__builtin_mul_overflow(whole, 10, &whole) ||
        __builtin_add_overflow(whole, (uint64_t)(*c - '0'), &whole)) {
      *why = "too large";
      return -1;
    }
  }
  if (nd == 0) return -1;
  if (*c == '.') {
    c++;
    size_t nf = 0;
    for (; *c >= '0' && *c <= '9'; c++, nf++) {
      if (nf >= 9) {
        *why = "too many decimal places (at most 9)";
        return -1;
      }
      frac = frac * 10 + (uint64_t)(*c - '0');
      scale *= 10;
    }
    if (nf == 0) return -1;
  }
  uint64_t mult = 0;
  for (size_t i = 0; i < sizeof memory_units / sizeof *memory_units; i++)
    if (strcmp(c, memory_units[i].suffix) == 0) mult = memory_units[i].mult;
  if (!mult) return -1; /* no unit, an unknown one, or trailing junk */
  uint64_t bytes, fbytes;
  if (__builtin_mul_overflow(whole, mult, &bytes)) {
    *why = "too large";
    return -1;
  }
  /* frac < 10^9 and mult <= 2^30 or 10^9: the product fits in 64 bits */
  fbytes = frac * mult;
  if (fbytes % scale) {
    *why = "not a whole number of bytes";
    return -1;
  }
  if (__builtin_add_overflow(bytes, fbytes / scale, &bytes)) {
    *why = "too large";
    return -1;
  }
  if (bytes == 0) {
    *why = "must be more than 0 bytes";
    return -1;
  }
  *out = bytes;
  return 0;
}

static int parse_memory(const spec *s, const char *path, const json_t *v, uint64_t *out) {
  if (json_is_integer(v)) {
    json_int_t i = json_integer_value(v);
    if (i <= 0) return fail(s, path, "must be more than 0 bytes, got %" JSON_INTEGER_FORMAT, i);
    *out = (uint64_t)i;
    return ZORCH_OK;
  }
  if (!json_is_string(v)) return fail(s, path, MEMORY_HINT ", got %s", type_name(v));
  const char *why;
  if (parse_memory_string(json_string_value(v), out, &why))
    return fail(s, path, "invalid memory size \"%.64s\": %s", json_string_value(v), why);
  return ZORCH_OK;
}

/* ---- settings (top level: the pipeline defaults; per step) ------------------------------ */

static const char *const settings_fields[] = {"env",   "retries",   "timeout", "cache",
                                              "image", "resources", "flavor",  NULL};
static const char *const retries_fields[] = {"max", "delay", "backoff", NULL};
static const char *const resources_fields[] = {"cpu", "memory", "gpu", "gpu_type", NULL};

static int parse_retries(const spec *s, const char *path, const json_t *v, zorch_step *st) {
  int rc = expect(s, path, v, JSON_OBJECT, "object");
  if (rc || (rc = check_fields(s, path, v, retries_fields))) return rc;
  char p[PATH_MAX_LEN];
  uint32_t max = 0;
  double delay = 0, backoff = 1;
  const json_t *f = json_object_get(v, "max");
  if (!f) return missing(s, path, "max");
  path_key(p, path, "max");
  if ((rc = expect_uint32(s, p, f, &max))) return rc;
  if ((f = json_object_get(v, "delay"))) {
    path_key(p, path, "delay");
    if ((rc = expect_number(s, p, f, 0, false, &delay))) return rc;
  }
  if ((f = json_object_get(v, "backoff"))) {
    path_key(p, path, "backoff");
    if ((rc = expect_number(s, p, f, 1, false, &backoff))) return rc;
  }
  if (zorch_step_set_retry(st, max, delay, backoff)) return fail_lib(s, path);
  return ZORCH_OK;
}

static int parse_resources(const spec *s, const char *path, const json_t *v, zorch_step *st) {
  int rc = expect(s, path, v, JSON_OBJECT, "object");
  if (rc || (rc = check_fields(s, path, v, resources_fields))) return rc;
  char p[PATH_MAX_LEN];
  double cpu = 0;
  uint64_t memory = 0;
  const json_t *f;
  if ((f = json_object_get(v, "cpu"))) {
    path_key(p, path, "cpu");
    if ((rc = expect_number(s, p, f, 0, true, &cpu))) return rc;
  }
  if ((f = json_object_get(v, "memory"))) {
    path_key(p, path, "memory");
    if ((rc = parse_memory(s, p, f, &memory))) return rc;
  }
  if ((cpu > 0 || memory > 0) && zorch_step_set_resources(st, cpu, memory))
    return fail_lib(s, path);
  const json_t *gpu = json_object_get(v, "gpu"), *type = json_object_get(v, "gpu_type");
  uint32_t count = 0;
  if (gpu) {
    path_key(p, path, "gpu");
    if ((rc = expect_uint32(s, p, gpu, &count))) return rc;
  }
  if (type) {
    path_key(p, path, "gpu_type");
    if ((rc = expect_nonempty_string(s, p, type))) return rc;
    if (!gpu) return fail(s, p, "needs \"gpu\", the number of GPUs, beside it");
  }
  if (gpu && zorch_step_set_gpu(st, count, type ? json_string_value(type) : NULL))
    return fail_lib(s, path);
  return ZORCH_OK;
}

static int parse_settings(const spec *s, const char *path, const json_t *v, zorch_step *st) {
  int rc = expect(s, path, v, JSON_OBJECT, "object");
  if (rc || (rc = check_fields(s, path, v, settings_fields))) return rc;
  char p[PATH_MAX_LEN], q[PATH_MAX_LEN];
  const json_t *f;
  const char *key;
  json_t *e;
  if ((f = json_object_get(v, "env"))) {
    path_key(p, path, "env");
    if ((rc = expect(s, p, f, JSON_OBJECT, "object"))) return rc;
    json_object_foreach((json_t *)f, key, e) {
      path_key(q, p, key);
      if (!*key || strchr(key, '='))
        return fail(s, q, "invalid environment variable name '%.64s'", key);
      if ((rc = expect(s, q, e, JSON_STRING, "string"))) return rc;
      if (zorch_step_set_env(st, key, json_string_value(e))) return fail_lib(s, q);
    }
  }
  if ((f = json_object_get(v, "retries"))) {
    path_key(p, path, "retries");
    if ((rc = parse_retries(s, p, f, st))) return rc;
  }
  if ((f = json_object_get(v, "timeout"))) {
    double t;
    path_key(p, path, "timeout");
    if ((rc = expect_number(s, p, f, 0, false, &t))) return rc;
    if (zorch_step_set_timeout(st, t)) return fail_lib(s, p);
  }
  if ((f = json_object_get(v, "cache"))) {
    path_key(p, path, "cache");
    if ((rc = expect_bool(s, p, f))) return rc;
    if (zorch_step_set_cache(st, json_is_true(f))) return fail_lib(s, p);
  }
  if ((f = json_object_get(v, "image"))) {
    path_key(p, path, "image");
    if ((rc = expect_nonempty_string(s, p, f))) return rc;
    if (zorch_step_set_image(st, json_string_value(f))) return fail_lib(s, p);
  }
  if ((f = json_object_get(v, "resources"))) {
    path_key(p, path, "resources");
    if ((rc = parse_resources(s, p, f, st))) return rc;
  }
  if ((f = json_object_get(v, "flavor"))) {
    path_key(p, path, "flavor");
    if ((rc = expect(s, p, f, JSON_OBJECT, "object"))) return rc;
    json_object_foreach((json_t *)f, key, e) {
      path_key(q, p, key);
      if (!*key) return fail(s, q, "flavor name is empty");
      if ((rc = expect(s, q, e, JSON_OBJECT, "object"))) return rc;
      char *text = dump_json(e);
      if (!text) return zorch__error_oom();
      rc = zorch_step_set_flavor_settings(st, key, text);
      free(text);
      if (rc) return fail_lib(s, q);
    }
  }
  return ZORCH_OK;
}

/* ---- steps ----------------------------------------------------------------------------------- */

static const char *const step_fields[] = {"name",  "command",  "inputs",  "outputs",     "params",
                                          "after", "settings", "version", "step_params", NULL};

/* Validate "command" and add the step; the pipeline API checks the name. */
static int add_command(const spec *s, const char *path, const json_t *v, const char *name,
                       const char *name_path) {
  if (!json_is_array(v) || json_array_size(v) == 0)
    return fail(s, path, "must be a non-empty array of strings");
  size_t n = json_array_size(v);
  const char **argv = calloc(n + 1, sizeof *argv);
  if (!argv) return zorch__error_oom();
  char p[PATH_MAX_LEN];
  int rc = ZORCH_OK;
  for (size_t i = 0; i < n && !rc; i++) {
    const json_t *a = json_array_get(v, i);
    path_index(p, path, i);
    if (!json_is_string(a))
      rc = fail(s, p, "must be a non-empty array of strings: expected string, got %s",
                type_name(a));
    else if (i == 0 && !*json_string_value(a))
      rc = fail(s, p, "the program name is empty");
    else
      argv[i] = json_string_value(a);
  }
  if (!rc && zorch_pipeline_add_command_step(NULL, s->p, name, argv)) rc = fail_lib(s, name_path);
  free(argv);
  return rc;
}

/* A JSON array of strings, each handed to `add`. */
static int parse_string_list(const spec *s, const char *path, const json_t *v, zorch_step *st,
                             int (*add)(zorch_step *, const char *)) {
  int rc = expect(s, path, v, JSON_ARRAY, "array of strings");
  if (rc) return rc;
  char p[PATH_MAX_LEN];
  size_t i;
  json_t *e;
  json_array_foreach(v, i, e) {
    path_index(p, path, i);
    if ((rc = expect(s, p, e, JSON_STRING, "string"))) return rc;
    if (add(st, json_string_value(e))) return fail_lib(s, p);
  }
  return ZORCH_OK;
}

static int parse_inputs(const spec *s, const char *path, const json_t *v, zorch_step *st) {
  int rc = expect(s, path, v, JSON_OBJECT, "object");
  if (rc) return rc;
  char p[PATH_MAX_LEN];
  const char *key;
  json_t *e;
  json_object_foreach((json_t *)v, key, e) {
    path_key(p, path, key);
    if (!json_is_string(e))
      return fail(s, p, "expected \"step.output\", got %s", type_name(e));
    const char *ref = json_string_value(e);
    const char *dot = strchr(ref, '.');
    if (!dot || dot == ref || !dot[1] || strchr(dot + 1, '.'))
      return fail(s, p, "expected \"step.output\", got \"%.64s\"", ref);
    char *from = zorch__strndup(ref, (size_t)(dot - ref));
    if (!from) return zorch__error_oom();
    rc = zorch_step_add_input(st, key, from, dot + 1);
    free(from);
    if (rc) return fail_lib(s, p);
  }
  return ZORCH_OK;
}

static int parse_step_params(const spec *s, const char *path, const json_t *v, zorch_step *st) {
  int rc = expect(s, path, v, JSON_OBJECT, "object");
  if (rc) return rc;
  char p[PATH_MAX_LEN];
  const char *key;
  json_t *e;
  json_object_foreach((json_t *)v, key, e) {
    path_key(p, path, key);
    char *text = dump_json(e);
    if (!text) return zorch__error_oom();
    rc = zorch_step_set_param(st, key, text);
    free(text);
    if (rc) return fail_lib(s, p);
  }
  return ZORCH_OK;
}

static int parse_step(spec *s, size_t idx, const json_t *v) {
  char path[PATH_MAX_LEN], p[PATH_MAX_LEN];
  path_index(path, "steps", idx);
  int rc = expect(s, path, v, JSON_OBJECT, "object");
  if (rc || (rc = check_fields(s, path, v, step_fields))) return rc;

  const json_t *name = json_object_get(v, "name");
  if (!name) return missing(s, path, "name");
  path_key(p, path, "name");
  if ((rc = expect(s, p, name, JSON_STRING, "string"))) return rc;
  const char *n = json_string_value(name);
  const json_t *prev = json_object_get(s->index, n);
  if (prev)
    return fail(s, p, "duplicate step name '%.64s' (also steps[%" JSON_INTEGER_FORMAT "])", n,
                json_integer_value(prev));

  const json_t *cmd = json_object_get(v, "command");
  if (!cmd) return missing(s, path, "command");
  char cp[PATH_MAX_LEN];
  path_key(cp, path, "command");
  if ((rc = add_command(s, cp, cmd, n, p))) return rc;
  if (json_object_set_new(s->index, n, json_integer((json_int_t)idx))) return zorch__error_oom();
  zorch_step *st = zorch_pipeline_step(s->p, n);

  const json_t *f;
  if ((f = json_object_get(v, "outputs"))) {
    path_key(p, path, "outputs");
    if ((rc = parse_string_list(s, p, f, st, zorch_step_add_output))) return rc;
  }
  if ((f = json_object_get(v, "inputs"))) {
    path_key(p, path, "inputs");
    if ((rc = parse_inputs(s, p, f, st))) return rc;
  }
  if ((f = json_object_get(v, "after"))) {
    path_key(p, path, "after");
    if ((rc = parse_string_list(s, p, f, st, zorch_step_after))) return rc;
  }
  if ((f = json_object_get(v, "params"))) {
    path_key(p, path, "params");
    if ((rc = parse_string_list(s, p, f, st, zorch_step_use_param))) return rc;
  }
  if ((f = json_object_get(v, "step_params"))) {
    path_key(p, path, "step_params");
    if ((rc = parse_step_params(s, p, f, st))) return rc;
  }
  if ((f = json_object_get(v, "version"))) {
    path_key(p, path, "version");
    if ((rc = expect_nonempty_string(s, p, f))) return rc;
    if (zorch_step_set_version(st, json_string_value(f))) return fail_lib(s, p);
  }
  if ((f = json_object_get(v, "settings"))) {
    path_key(p, path, "settings");
    if ((rc = parse_settings(s, p, f, st))) return rc;
  }
  return ZORCH_OK;
}

/* Wiring that names other steps or params, checked once every step is known
 * so that the message can carry the JSON path (zorch_pipeline_validate()
 * knows only step names). */
static int check_references(const spec *s, const json_t *steps) {
  char path[PATH_MAX_LEN], p[PATH_MAX_LEN], q[PATH_MAX_LEN];
  size_t i, k;
  json_t *step, *e;
  const char *key;
  json_array_foreach(steps, i, step) {
    path_index(path, "steps", i);
    const char *self = json_string_value(json_object_get(step, "name"));
    const json_t *inputs = json_object_get(step, "inputs");
    path_key(p, path, "inputs");
    json_object_foreach((json_t *)inputs, key, e) {
      path_key(q, p, key);
      const char *ref = json_string_value(e);
      size_t len = strcspn(ref, ".");
      char from[64];
      snprintf(from, sizeof from, "%.*s", (int)len, ref);
      const char *out = ref + len + 1;
      if (strcmp(from, self) == 0)
        return fail_code(s, ZORCH_ECYCLE, q, "step '%s' cannot take an input from itself", self);
      const json_t *j = json_object_get(s->index, from);
      if (!j) return fail(s, q, "unknown step '%s'", from);
      const json_t *outs = json_object_get(json_array_get(steps, (size_t)json_integer_value(j)),
                                           "outputs");
      bool found = false;
      zorch__buf have = ZORCH__BUF_INIT;
      for (size_t o = 0; o < json_array_size(outs) && !found; o++) {
        const char *name = json_string_value(json_array_get(outs, o));
        found = strcmp(name, out) == 0;
        zorch__buf_printf(&have, "%s%s", o ? ", " : "", name);
      }
      if (!found) {
        int rc = fail(s, q, "step '%s' has no output '%s' (%s%s)", from, out,
                      have.len ? "it has: " : "it has no outputs", have.len ? have.data : "");
        zorch__buf_free(&have);
        return rc;
      }
      zorch__buf_free(&have);
    }
    const json_t *after = json_object_get(step, "after");
    path_key(p, path, "after");
    json_array_foreach(after, k, e) {
      path_index(q, p, k);
      const char *up = json_string_value(e);
      if (strcmp(up, self) == 0)
        return fail_code(s, ZORCH_ECYCLE, q, "step '%s' cannot run after itself", self);
      if (!json_object_get(s->index, up)) return fail(s, q, "unknown step '%s'", up);
    }
    const json_t *params = json_object_get(step, "params");
    const json_t *local = json_object_get(step, "step_params");
    path_key(p, path, "params");
    json_array_foreach(params, k, e) {
      path_index(q, p, k);
      const char *name = json_string_value(e);
      if (!json_object_get(s->params, name) && !json_object_get(local, name))
        return fail(s, q, "unknown param '%s' (declare it in the top-level \"params\")", name);
    }
  }
  return ZORCH_OK;
}

/* ---- the document ------------------------------------------------------------------------------ */

static const char *const top_fields[] = {"zorch_pipeline", "name", "params", "settings", "steps",
                                         NULL};

static int parse_document(spec *s, const json_t *root) {
  int rc;
  if (!json_is_object(root))
    return fail(s, NULL, "expected a JSON object at top level, got %s", type_name(root));
  /* the version first: a newer document may well have fields we do not know */
  const json_t *ver = json_object_get(root, "zorch_pipeline");
  if (!ver)
    return fail(s, NULL,
                "missing required field 'zorch_pipeline' at top level (the spec format "
                "version, %d)",
                SPEC_VERSION);
  if (!json_is_integer(ver))
    return fail(s, "zorch_pipeline", "expected integer, got %s", type_name(ver));
  json_int_t version = json_integer_value(ver);
  if (version > SPEC_VERSION)
    return fail_code(s, ZORCH_EVERSION, "zorch_pipeline",
                     "spec version %" JSON_INTEGER_FORMAT
                     " is newer than this zorch supports (%d); upgrade zorch",
                     version, SPEC_VERSION);
  if (version < 1)
    return fail(s, "zorch_pipeline", "must be %d, got %" JSON_INTEGER_FORMAT, SPEC_VERSION,
                version);
  if ((rc = check_fields(s, "", root, top_fields))) return rc;

  const json_t *name = json_object_get(root, "name");
  if (!name) return missing(s, "", "name");
  if ((rc = expect(s, "name", name, JSON_STRING, "string"))) return rc;
  if (zorch_pipeline_new(&s->p, json_string_value(name))) return fail_lib(s, "name");

  char p[PATH_MAX_LEN];
  const json_t *f;
  if ((f = json_object_get(root, "params"))) {
    if ((rc = expect(s, "params", f, JSON_OBJECT, "object"))) return rc;
    s->params = f;
    const char *key;
    json_t *e;
    json_object_foreach((json_t *)f, key, e) {
      path_key(p, "params", key);
      char *text = dump_json(e);
      if (!text) return zorch__error_oom();
      rc = zorch_pipeline_add_param(s->p, key, text);
      free(text);
      if (rc) return fail_lib(s, p);
    }
  }
  if ((f = json_object_get(root, "settings")) &&
      (rc = parse_settings(s, "settings", f, zorch_pipeline_defaults(s->p))))
    return rc;

  const json_t *steps = json_object_get(root, "steps");
  if (!steps) return missing(s, "", "steps");
  if (!json_is_array(steps) || json_array_size(steps) == 0)
    return fail(s, "steps", "must be a non-empty array of steps");
  size_t i;
  json_t *step;
  json_array_foreach(steps, i, step) {
    if ((rc = parse_step(s, i, step))) return rc;
  }
  if ((rc = check_references(s, steps))) return rc;
  if (zorch_pipeline_validate(s->p)) return fail_lib(s, NULL);
  return ZORCH_OK;
}

int zorch_pipeline_from_spec(zorch_pipeline **out, const char *spec_json, const char *source) {
  if (!out) return zorch__error_set(ZORCH_EINVALID, "zorch_pipeline_from_spec: out is NULL");
  *out = NULL;
  spec s = {source && *source ? source : "pipeline spec", NULL, NULL, NULL};
  if (!spec_json) return fail(&s, NULL, "no spec text (NULL)");
  json_error_t err;
  json_t *root = json_loads(spec_json, JSON_REJECT_DUPLICATES, &err);
  if (!root) {
    if (err.line > 0)
      return fail(&s, NULL, "line %d, column %d: %s", err.line, err.column, err.text);
    return fail(&s, NULL, "%s", err.text);
  }
  s.index = json_object();
  int rc = s.index ? parse_document(&s, root) : zorch__error_oom();
  json_decref(s.index);
  json_decref(root);
  if (rc) {
    zorch_pipeline_free(s.p);
    return rc;
  }
  *out = s.p;
  return ZORCH_OK;
}
