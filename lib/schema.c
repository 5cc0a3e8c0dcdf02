/* zorch — a small JSON Schema subset on jansson (flavor and config validation).
 *
 * Supported keywords: type (string or array), properties, required,
 * additionalProperties (bool or schema), items (one schema), enum, const,
 * minimum, maximum, exclusiveMinimum, exclusiveMaximum (number, or the
 * draft-4 boolean form), minLength, maxLength, pattern (POSIX ERE, unanchored
 * like JSON Schema), minItems, maxItems.  Annotations (default, description,
 * title, examples, format, $schema, $id, $comment, readOnly, writeOnly,
 * deprecated) are ignored.  Any other keyword makes the schema invalid, so a
 * schema never silently checks less than its author meant.  Boolean schemas
 * (true/false) are allowed below the top level.
 *
 * The schema is checked as a whole before the document, so a bad schema is
 * reported as such even when the document would not reach the bad part.
 * Only the first problem is reported, with its JSON path ($.a[2].b).
 */
#include "client_int.h"

#include <jansson.h>
#include <math.h>
#include <regex.h>

typedef struct {
  const char *what;  /* prefix of every message */
  zorch__buf path;   /* "$", "$.a", "$.a[2]" */
  bool keep;         /* also keep the failure's path and problem apart: */
  char *fail_path;   /* malloc'd */
  char *fail_problem;
} vctx;

static int path_init(vctx *v, const char *what) {
  v->what = what ? what : "document";
  v->path = (zorch__buf)ZORCH__BUF_INIT;
  v->keep = false;
  v->fail_path = v->fail_problem = NULL;
  return zorch__buf_puts(&v->path, "$");
}

static bool is_ident(const char *k) {
  if (!*k || (*k >= '0' && *k <= '9')) return false;
  for (; *k; k++)
    if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
          *k == '_'))
      return false;
  return true;
}

/* Append a path element; returns the length to restore afterwards, or
 * (size_t)-1 on OOM. */
static size_t path_key(vctx *v, const char *key) {
  size_t mark = v->path.len;
  int rc = is_ident(key) ? zorch__buf_printf(&v->path, ".%s", key)
                         : (zorch__buf_puts(&v->path, "[") || zorch__buf_json_string(&v->path, key) ||
                            zorch__buf_puts(&v->path, "]"));
  return rc ? (size_t)-1 : mark;
}

static size_t path_index(vctx *v, size_t i) {
  size_t mark = v->path.len;
  return zorch__buf_printf(&v->path, "[%zu]", i) ? (size_t)-1 : mark;
}

static void path_pop(vctx *v, size_t mark) {
  v->path.len = mark;
  v->path.data[mark] = '\0';
}

static int fail(vctx *v, const char *fmt, ...) ZORCH_PRINTF(2, 3);
static int fail(vctx *v, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (v->keep && !v->fail_path) {
    v->fail_path = zorch__strdup(v->path.data);
    v->fail_problem = zorch__strdup(msg);
    if (!v->fail_path || !v->fail_problem) return zorch__error_oom();
  }
  return zorch__error_set(ZORCH_EINVALID, "%s: %s: %s", v->what, v->path.data, msg);
}

/* A short rendering of a JSON value for messages (truncated).  json_dumpb
 * into our own memory: jansson's allocator may be the application's. */
static void show(char *out, size_t n, const json_t *j) {
  const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
  size_t need = json_dumpb(j, NULL, 0, flags);
  char *s = need ? malloc(need + 1) : NULL;
  if (!s || json_dumpb(j, s, need, flags) != need) {
    free(s);
    snprintf(out, n, "(value)");
    return;
  }
  s[need] = '\0';
  if (need > 60) snprintf(out, n, "%.57s...", s);
  else snprintf(out, n, "%s", s);
  free(s);
}

static const char *type_name(const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT: return "object";
  case JSON_ARRAY: return "array";
  case JSON_STRING: return "string";
  case JSON_INTEGER: return "integer";
  case JSON_REAL: return "number";
  case JSON_TRUE:
  case JSON_FALSE: return "boolean";
  case JSON_NULL: return "null";
  }
  return "value";
}

static const char *const known_types[] = {"object", "array",   "string", "number",
                                          "integer", "boolean", "null",   NULL};

static bool known_type(const char *t) {
  for (size_t i = 0; known_types[i]; i++)
    if (!strcmp(t, known_types[i])) return true;
  return false;
}

static bool type_matches(const char *t, const json_t *j) {
  if (!strcmp(t, "integer")) {
    if (json_is_integer(j)) return true;
    if (!json_is_real(j)) return false;
    double d = json_real_value(j);
    return isfinite(d) && floor(d) == d; /* 1.0 is an integer in JSON Schema */
  }
  if (!strcmp(t, "number")) return json_is_number(j);
  if (!strcmp(t, "boolean")) return json_is_boolean(j);
  return !strcmp(t, type_name(j));
}

static size_t utf8_len(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) n++;
  return n;
}

static void fmt_num(char *out, size_t n, const json_t *j) {
  if (json_is_integer(j)) snprintf(out, n, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
  else snprintf(out, n, "%.15g", json_number_value(j));
}

/* a <=> b for two JSON numbers, exact for two integers. */
static int num_cmp(const json_t *a, const json_t *b) {
  if (json_is_integer(a) && json_is_integer(b)) {
    json_int_t x = json_integer_value(a), y = json_integer_value(b);
    return x < y ? -1 : x > y;
  }
  double x = json_number_value(a), y = json_number_value(b);
  return x < y ? -1 : x > y;
}

/* ---- checking the schema itself ---------------------------------------------- */

static const char *const annotations[] = {"default",  "description", "title",    "examples",
                                          "format",   "$schema",     "$id",      "$comment",
                                          "readOnly", "writeOnly",   "deprecated", NULL};

static int check_schema(vctx *v, const json_t *s, bool top);

static int check_count(vctx *v, const char *kw, const json_t *val) {
  if (!json_is_integer(val) || json_integer_value(val) < 0)
    return fail(v, "'%s' must be a non-negative integer", kw);
  return ZORCH_OK;
}

static int check_keyword(vctx *v, const char *kw, const json_t *val) {
  if (!strcmp(kw, "type")) {
    if (json_is_string(val)) {
      if (!known_type(json_string_value(val)))
        return fail(v, "unknown type '%s'", json_string_value(val));
      return ZORCH_OK;
    }
    if (!json_is_array(val) || json_array_size(val) == 0)
      return fail(v, "'type' must be a type name or a non-empty array of type names");
    size_t i;
    const json_t *t;
    json_array_foreach(val, i, t) {
      if (!json_is_string(t)) return fail(v, "'type' must hold type names (strings)");
      if (!known_type(json_string_value(t)))
        return fail(v, "unknown type '%s'", json_string_value(t));
    }
    return ZORCH_OK;
  }
  if (!strcmp(kw, "properties")) {
    if (!json_is_object(val)) return fail(v, "'properties' must be an object");
    const char *k;
    const json_t *sub;
    json_object_foreach((json_t *)val, k, sub) {
      size_t m1 = path_key(v, "properties"), m2 = path_key(v, k);
      if (m1 == (size_t)-1 || m2 == (size_t)-1) return zorch__error_oom();
      int rc = check_schema(v, sub, false);
      path_pop(v, m1);
      if (rc) return rc;
    }
    return ZORCH_OK;
  }
  if (!strcmp(kw, "required")) {
    if (!json_is_array(val)) return fail(v, "'required' must be an array of property names");
    size_t i;
    const json_t *t;
    json_array_foreach(val, i, t) if (!json_is_string(t))
        return fail(v, "'required' must be an array of property names");
    return ZORCH_OK;
  }
  if (!strcmp(kw, "additionalProperties") || !strcmp(kw, "items")) {
    if (json_is_array(val) && !strcmp(kw, "items"))
      return fail(v, "'items' as an array (tuple validation) is not supported");
    size_t m = path_key(v, kw);
    if (m == (size_t)-1) return zorch__error_oom();
    int rc = check_schema(v, val, false);
    path_pop(v, m);
    return rc;
  }
  if (!strcmp(kw, "enum")) {
    if (!json_is_array(val) || json_array_size(val) == 0)
      return fail(v, "'enum' must be a non-empty array");
    return ZORCH_OK;
  }
  if (!strcmp(kw, "const")) return ZORCH_OK;
  if (!strcmp(kw, "minimum") || !strcmp(kw, "maximum")) {
    if (!json_is_number(val)) return fail(v, "'%s' must be a number", kw);
    return ZORCH_OK;
  }
  if (!strcmp(kw, "exclusiveMinimum") || !strcmp(kw, "exclusiveMaximum")) {
    if (!json_is_number(val) && !json_is_boolean(val))
      return fail(v, "'%s' must be a number (or a boolean, draft 4)", kw);
    return ZORCH_OK;
  }
  if (!strcmp(kw, "minLength") || !strcmp(kw, "maxLength") || !strcmp(kw, "minItems") ||
      !strcmp(kw, "maxItems"))
    return check_count(v, kw, val);
  if (!strcmp(kw, "pattern")) {
    if (!json_is_string(val)) return fail(v, "'pattern' must be a string");
    regex_t re;
    int e = regcomp(&re, json_string_value(val), REG_EXTENDED | REG_NOSUB);
    if (e) {
      char eb[256];
      regerror(e, &re, eb, sizeof eb);
      return fail(v, "'pattern' %s is not a POSIX extended regular expression: %s",
                  json_string_value(val), eb);
    }
    regfree(&re);
    return ZORCH_OK;
  }
  for (size_t i = 0; annotations[i]; i++)
    if (!strcmp(kw, annotations[i])) return ZORCH_OK;
  return fail(v,
              "keyword '%s' is not supported (zorch supports type, properties, required, "
              "additionalProperties, items, enum, const, minimum, maximum, exclusiveMinimum, "
              "exclusiveMaximum, minLength, maxLength, pattern, minItems, maxItems)",
              kw);
}

static int check_schema(vctx *v, const json_t *s, bool top) {
  if (json_is_boolean(s) && !top) return ZORCH_OK;
  if (!json_is_object(s))
    return fail(v, top ? "a schema must be a JSON object, got %s"
                       : "a schema must be a JSON object or a boolean, got %s",
                type_name(s));
  const char *kw;
  const json_t *val;
  json_object_foreach((json_t *)s, kw, val) {
    int rc = check_keyword(v, kw, val);
    if (rc) return rc;
  }
  return ZORCH_OK;
}

/* ---- validating a document ----------------------------------------------------- */

static int validate(vctx *v, const json_t *s, const json_t *j);

static int v_type(vctx *v, const json_t *t, const json_t *j) {
  if (json_is_string(t)) {
    if (type_matches(json_string_value(t), j)) return ZORCH_OK;
    return fail(v, "expected %s, got %s", json_string_value(t), type_name(j));
  }
  size_t i;
  const json_t *e;
  json_array_foreach(t, i, e) if (type_matches(json_string_value(e), j)) return ZORCH_OK;
  zorch__buf b = ZORCH__BUF_INIT;
  json_array_foreach(t, i, e) {
    if (i) zorch__buf_puts(&b, i + 1 == json_array_size(t) ? " or " : ", ");
    zorch__buf_puts(&b, json_string_value(e));
  }
  int rc = fail(v, "expected %s, got %s", b.data ? b.data : "?", type_name(j));
  zorch__buf_free(&b);
  return rc;
}

static int v_object(vctx *v, const json_t *s, const json_t *j) {
  const json_t *props = json_object_get(s, "properties");
  const json_t *req = json_object_get(s, "required");
  const json_t *add = json_object_get(s, "additionalProperties");
  size_t i;
  const json_t *r;
  json_array_foreach(req, i, r) {
    const char *k = json_string_value(r);
    if (json_object_get(j, k)) continue;
    size_t m = path_key(v, k);
    if (m == (size_t)-1) return zorch__error_oom();
    int rc = fail(v, "required property is missing");
    path_pop(v, m);
    return rc;
  }
  const char *k;
  const json_t *val;
  json_object_foreach((json_t *)j, k, val) {
    const json_t *sub = json_object_get(props, k);
    if (!sub) sub = add;
    if (!sub) continue;
    size_t m = path_key(v, k);
    if (m == (size_t)-1) return zorch__error_oom();
    int rc;
    if (json_is_false(sub) && sub == add) {
      zorch__buf b = ZORCH__BUF_INIT;
      const char *pk;
      const json_t *pv;
      json_object_foreach((json_t *)props, pk, pv) {
        if (b.len) zorch__buf_puts(&b, ", ");
        zorch__buf_puts(&b, pk);
      }
      rc = b.len ? fail(v, "unknown property (allowed: %s)", b.data)
                 : fail(v, "unknown property (no properties are allowed here)");
      zorch__buf_free(&b);
    } else {
      rc = validate(v, sub, val);
    }
    path_pop(v, m);
    if (rc) return rc;
  }
  return ZORCH_OK;
}

static int v_array(vctx *v, const json_t *s, const json_t *j) {
  const json_t *mn = json_object_get(s, "minItems"), *mx = json_object_get(s, "maxItems");
  size_t n = json_array_size(j);
  if (mn && (json_int_t)n < json_integer_value(mn))
    return fail(v, "array has %zu items, at least %" JSON_INTEGER_FORMAT " are required", n,
                json_integer_value(mn));
  if (mx && (json_int_t)n > json_integer_value(mx))
    return fail(v, "array has %zu items, at most %" JSON_INTEGER_FORMAT " are allowed", n,
                json_integer_value(mx));
  const json_t *items = json_object_get(s, "items");
  if (!items) return ZORCH_OK;
  for (size_t i = 0; i < n; i++) {
    size_t m = path_index(v, i);
    if (m == (size_t)-1) return zorch__error_oom();
    int rc = validate(v, items, json_array_get(j, i));
    path_pop(v, m);
    if (rc) return rc;
  }
  return ZORCH_OK;
}

static int v_string(vctx *v, const json_t *s, const json_t *j) {
  const char *str = json_string_value(j);
  const json_t *mn = json_object_get(s, "minLength"), *mx = json_object_get(s, "maxLength");
  const json_t *pat = json_object_get(s, "pattern");
  char shown[80];
  if (mn || mx) {
    size_t n = utf8_len(str);
    if (mn && (json_int_t)n < json_integer_value(mn))
      return fail(v, "string is %zu characters long, at least %" JSON_INTEGER_FORMAT
                     " are required", n, json_integer_value(mn));
    if (mx && (json_int_t)n > json_integer_value(mx))
      return fail(v, "string is %zu characters long, at most %" JSON_INTEGER_FORMAT
                     " are allowed", n, json_integer_value(mx));
  }
  if (pat) {
    regex_t re;
    if (regcomp(&re, json_string_value(pat), REG_EXTENDED | REG_NOSUB))
      return fail(v, "invalid pattern"); /* check_schema compiled it already */
    int m = regexec(&re, str, 0, NULL, 0);
    regfree(&re);
    if (m != 0) {
      show(shown, sizeof shown, j);
      const json_t *d = json_object_get(s, "description");
      if (json_is_string(d))
        return fail(v, "%s does not match the pattern %s (%s)", shown, json_string_value(pat),
                    json_string_value(d));
      return fail(v, "%s does not match the pattern %s", shown, json_string_value(pat));
    }
  }
  return ZORCH_OK;
}

static int v_number(vctx *v, const json_t *s, const json_t *j) {
  const json_t *mn = json_object_get(s, "minimum"), *mx = json_object_get(s, "maximum");
  const json_t *emn = json_object_get(s, "exclusiveMinimum");
  const json_t *emx = json_object_get(s, "exclusiveMaximum");
  char a[64], b[64];
  fmt_num(a, sizeof a, j);
  /* draft 4: a boolean exclusiveMinimum modifies minimum */
  if (mn && num_cmp(j, mn) < 0) {
    fmt_num(b, sizeof b, mn);
    return fail(v, "%s is less than the minimum %s", a, b);
  }
  if (mn && json_is_true(emn) && num_cmp(j, mn) == 0) {
    fmt_num(b, sizeof b, mn);
    return fail(v, "%s must be greater than %s", a, b);
  }
  if (mx && num_cmp(j, mx) > 0) {
    fmt_num(b, sizeof b, mx);
    return fail(v, "%s is greater than the maximum %s", a, b);
  }
  if (mx && json_is_true(emx) && num_cmp(j, mx) == 0) {
    fmt_num(b, sizeof b, mx);
    return fail(v, "%s must be less than %s", a, b);
  }
  if (json_is_number(emn) && num_cmp(j, emn) <= 0) {
    fmt_num(b, sizeof b, emn);
    return fail(v, "%s must be greater than %s", a, b);
  }
  if (json_is_number(emx) && num_cmp(j, emx) >= 0) {
    fmt_num(b, sizeof b, emx);
    return fail(v, "%s must be less than %s", a, b);
  }
  return ZORCH_OK;
}

static bool json_equal_num(const json_t *a, const json_t *b) {
  /* JSON Schema: 1 and 1.0 are equal; jansson's json_equal says they are not. */
  if (json_is_number(a) && json_is_number(b)) return num_cmp(a, b) == 0;
  return json_equal((json_t *)a, (json_t *)b);
}

static int validate(vctx *v, const json_t *s, const json_t *j) {
  if (json_is_true(s)) return ZORCH_OK;
  if (json_is_false(s)) return fail(v, "no value is allowed here");
  const json_t *t = json_object_get(s, "type");
  int rc;
  if (t && (rc = v_type(v, t, j))) return rc;
  const json_t *c = json_object_get(s, "const");
  char shown[80], want[80];
  if (c && !json_equal_num(c, j)) {
    show(shown, sizeof shown, j);
    show(want, sizeof want, c);
    return fail(v, "%s is not the required value %s", shown, want);
  }
  const json_t *e = json_object_get(s, "enum");
  if (e) {
    size_t i;
    const json_t *x;
    bool ok = false;
    json_array_foreach(e, i, x) if (json_equal_num(x, j)) ok = true;
    if (!ok) {
      zorch__buf b = ZORCH__BUF_INIT;
      json_array_foreach(e, i, x) {
        show(want, sizeof want, x);
        if (i) zorch__buf_puts(&b, ", ");
        zorch__buf_puts(&b, want);
      }
      show(shown, sizeof shown, j);
      rc = fail(v, "%s is not one of %s", shown, b.data ? b.data : "");
      zorch__buf_free(&b);
      return rc;
    }
  }
  if (json_is_object(j)) return v_object(v, s, j);
  if (json_is_array(j)) return v_array(v, s, j);
  if (json_is_string(j)) return v_string(v, s, j);
  if (json_is_number(j)) return v_number(v, s, j);
  return ZORCH_OK;
}

/* ---- entry points ------------------------------------------------------------------ */

static int parse(json_t **out, const char *text, const char *what, const char *which) {
  json_error_t err;
  *out = json_loads(text ? text : "", JSON_DECODE_ANY, &err);
  if (!*out)
    return zorch__error_set(ZORCH_EINVALID, "%s: %s is not valid JSON: line %d, column %d: %s",
                            what, which, err.line, err.column, err.text);
  return ZORCH_OK;
}

static int load_schema(json_t **out, const char *what, const char *schema_json) {
  int rc = parse(out, schema_json, what, "the schema");
  if (rc) return rc;
  char *w = zorch__asprintf("%s: invalid schema", what);
  vctx v;
  if (!w || path_init(&v, w)) {
    free(w);
    json_decref(*out);
    *out = NULL;
    return zorch__error_oom();
  }
  rc = check_schema(&v, *out, true);
  zorch__buf_free(&v.path);
  free(w);
  if (rc) {
    json_decref(*out);
    *out = NULL;
  }
  return rc;
}

int zorch__schema_check(const char *schema_json, const char *what) {
  json_t *s = NULL;
  int rc = load_schema(&s, what ? what : "schema", schema_json);
  json_decref(s);
  return rc;
}

int zorch__schema_load(json_t **out, const char *schema_json, const char *what) {
  *out = NULL;
  return load_schema(out, what ? what : "schema", schema_json);
}

int zorch__schema_validate_parsed(char **out_path, char **out_problem, const json_t *schema,
                                  const json_t *doc) {
  *out_path = *out_problem = NULL;
  vctx v;
  if (path_init(&v, "document")) return zorch__error_oom();
  v.keep = true;
  int rc = validate(&v, schema, doc);
  zorch__buf_free(&v.path);
  if (rc == ZORCH_EINVALID && v.fail_path) {
    *out_path = v.fail_path;
    *out_problem = v.fail_problem;
  } else {
    free(v.fail_path);
    free(v.fail_problem);
  }
  return rc;
}

int zorch__schema_validate(const char *schema_json, const char *doc_json, const char *what) {
  vctx v;
  if (path_init(&v, what)) return ZORCH_ENOMEM;
  json_t *s = NULL, *d = NULL;
  int rc = load_schema(&s, v.what, schema_json);
  if (!rc) rc = parse(&d, doc_json, v.what, "the document");
  if (!rc) rc = validate(&v, s, d);
  json_decref(s);
  json_decref(d);
  zorch__buf_free(&v.path);
  return rc;
}
