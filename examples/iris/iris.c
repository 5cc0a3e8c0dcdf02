/* zorch example: classify iris flowers with multinomial logistic regression.
 *
 * A real machine-learning pipeline in plain C on zorch's public API only:
 *
 *   load ──dataset──▶ split ──train──▶ train ──model──▶ evaluate ──▶ metrics, report
 *                          └──test───────────────────────▲
 *
 *   load      reads the iris CSV (150 rows, 4 features, 3 classes) and checks it
 *   split     a seeded, stratified, shuffled train/test split
 *   train     softmax regression by full-batch gradient descent, with feature
 *             standardisation fitted on the training rows and L2 regularisation
 *   evaluate  accuracy, per-class precision/recall/F1 and the confusion matrix
 *
 * Every step is a function step: it reads inputs and params through its
 * context and writes outputs through it.  zorch stores the outputs
 * content-addressed, and the next run skips (caches) every step whose code,
 * params and inputs did not change.
 *
 * Usage: zorch-example-iris [--data PATH] [--param NAME=JSON]... [--stack NAME] [--no-cache]
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup, strndup */
#endif
#include <zorch/zorch.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IRIS_PIPELINE "iris"
#define IRIS_DEFAULT_DATA "/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv"
#define IRIS_MODEL_FORMAT "zorch-example-iris/softmax-1"

/* Limits that keep a malformed file from asking for absurd allocations. */
#define MAX_ROWS 10000000u
#define MAX_FEATURES 4096u
#define MAX_CLASSES 256u

/* ======================================================================
 * Small utilities: a growable text buffer, JSON numbers and strings
 * ====================================================================== */

typedef struct textbuf {
  char *data;
  size_t len, cap;
  bool oom;
} textbuf;

static void tb_reserve(textbuf *b, size_t extra) {
  if (b->oom || b->len + extra + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->oom = true;
    return;
  }
  b->data = p;
  b->cap = cap;
}

static void tb_printf(textbuf *b, const char *fmt, ...) ZORCH_PRINTF(2, 3);
static void tb_printf(textbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->oom = true;
    return;
  }
  tb_reserve(b, (size_t)n);
  if (b->oom)
    return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

static void tb_free(textbuf *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

/* The shortest %g form that reads back as the same double, so that the
 * artifacts are exact, readable and identical from run to run. */
static void tb_number(textbuf *b, double v) {
  if (!isfinite(v)) {
    tb_printf(b, "null");
    return;
  }
  char s[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(s, sizeof(s), "%.*g", prec, v);
    if (strtod(s, NULL) == v)
      break;
  }
  tb_printf(b, "%s", s);
}

static void tb_json_string(textbuf *b, const char *s) {
  tb_printf(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      tb_printf(b, "\\%c", *p);
    else if (*p < 0x20)
      tb_printf(b, "\\u%04x", *p);
    else
      tb_printf(b, "%c", *p);
  }
  tb_printf(b, "\"");
}

/* Decode a JSON string literal (surrounding blanks allowed).  Returns a
 * malloc'd string, or NULL when `json` is not a JSON string. */
static char *json_string_decode(const char *json) {
  const char *p = json;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  if (*p++ != '"')
    return NULL;
  char *out = malloc(strlen(p) + 1);
  if (!out)
    return NULL;
  size_t n = 0;
  for (;;) {
    unsigned char c = (unsigned char)*p++;
    if (c == '\0' || c < 0x20)
      goto bad;
    if (c == '"')
      break;
    if (c != '\\') {
      out[n++] = (char)c;
      continue;
    }
    switch (*p++) {
    case '"': out[n++] = '"'; break;
    case '\\': out[n++] = '\\'; break;
    case '/': out[n++] = '/'; break;
    case 'b': out[n++] = '\b'; break;
    case 'f': out[n++] = '\f'; break;
    case 'n': out[n++] = '\n'; break;
    case 'r': out[n++] = '\r'; break;
    case 't': out[n++] = '\t'; break;
    case 'u': {
      unsigned cp = 0;
      for (int i = 0; i < 4; i++) {
        char h = *p++;
        cp <<= 4;
        if (h >= '0' && h <= '9')
          cp |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f')
          cp |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
          cp |= (unsigned)(h - 'A' + 10);
        else
          goto bad;
      }
      if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
        goto bad; /* NUL or a surrogate: not a usable file name */
      if (cp < 0x80) {
        out[n++] = (char)cp;
      } else if (cp < 0x800) {
        out[n++] = (char)(0xc0 | (cp >> 6));
        out[n++] = (char)(0x80 | (cp & 0x3f));
      } else {
        out[n++] = (char)(0xe0 | (cp >> 12));
        out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[n++] = (char)(0x80 | (cp & 0x3f));
      }
      break;
    }
    default:
      goto bad;
    }
  }
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  if (*p != '\0')
    goto bad;
  out[n] = '\0';
  return out;
bad:
  free(out);
  return NULL;
}

/* Find `"key":` in a JSON document we wrote ourselves and read the next
 * `count` numbers after it, skipping brackets and commas (so a nested array
 * is read flattened, row by row).  Returns 0 or -1. */
static int json_read_numbers(const char *json, const char *key, double *out, size_t count) {
  char needle[80];
  snprintf(needle, sizeof(needle), "\"%s\":", key);
  const char *p = strstr(json, needle);
  if (!p)
    return -1;
  p += strlen(needle);
  for (size_t got = 0; got < count;) {
    if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' || *p == '[' || *p == ']' ||
        *p == ',') {
      p++;
      continue;
    }
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno == ERANGE)
      return -1;
    out[got++] = v;
    p = end;
  }
  return 0;
}

/* A fingerprint of the data file's content (64-bit FNV-1a and the size).
 * It is passed to `load` as a param, so the load step's cache key changes
 * when the file changes, not only when its path does. */
static void fingerprint(char out[48], const void *data, size_t len) {
  uint64_t h = 0xcbf29ce484222325u;
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3u;
  }
  snprintf(out, 48, "fnv1a64:%016llx:%zu", (unsigned long long)h, len);
}

static int read_whole_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  textbuf b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
    tb_reserve(&b, n);
    if (b.oom)
      break;
    memcpy(b.data + b.len, chunk, n);
    b.len += n;
  }
  int err = ferror(f) ? errno : 0;
  fclose(f);
  if (b.oom || err) {
    tb_free(&b);
    errno = err ? err : ENOMEM;
    return -1;
  }
  tb_reserve(&b, 0);
  if (b.oom) {
    tb_free(&b);
    errno = ENOMEM;
    return -1;
  }
  b.data[b.len] = '\0';
  *out = b.data;
  *len = b.len;
  return 0;
}

/* A deterministic generator (splitmix64): same seed, same split everywhere. */
static uint64_t rng_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static void shuffle(size_t *v, size_t n, uint64_t *rng) {
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)(rng_next(rng) % i);
    size_t t = v[i - 1];
    v[i - 1] = v[j];
    v[j] = t;
  }
}

/* ======================================================================
 * The dataset: the CSV format of scikit-learn's bundled data sets
 *
 *   <rows>,<features>,<class name 0>,<class name 1>,...
 *   <x0>,<x1>,...,<class index>
 *
 * `load`, `split` read it and `split` writes its outputs in it too.
 * ====================================================================== */

typedef struct dataset {
  size_t rows, features, classes;
  char **class_names;
  double *x; /* rows × features, row-major */
  int *y;    /* rows */
} dataset;

static void dataset_free(dataset *ds) {
  if (ds->class_names)
    for (size_t i = 0; i < ds->classes; i++)
      free(ds->class_names[i]);
  free(ds->class_names);
  free(ds->x);
  free(ds->y);
  memset(ds, 0, sizeof(*ds));
}

/* Cut the next ','-separated field of *p in place (blanks trimmed). */
static char *next_field(char **p) {
  char *s = *p;
  if (!s)
    return NULL;
  char *comma = strchr(s, ',');
  if (comma) {
    *comma = '\0';
    *p = comma + 1;
  } else {
    *p = NULL;
  }
  while (*s == ' ' || *s == '\t')
    s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
    *--e = '\0';
  return s;
}

static bool parse_double(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
    return false;
  *out = v;
  return true;
}

static bool parse_size(const char *s, size_t max, size_t *out) {
  char *end;
  if (*s < '0' || *s > '9')
    return false;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end != '\0' || errno == ERANGE || v > max)
    return false;
  *out = (size_t)v;
  return true;
}

/* Parse `len` bytes of dataset text.  On failure returns -1 with a message
 * in err. */
static int dataset_parse(dataset *ds, const char *data, size_t len, char *err, size_t errlen) {
  memset(ds, 0, sizeof(*ds));
  char *text = malloc(len + 1);
  if (!text) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  memcpy(text, data, len);
  text[len] = '\0';
  if (memchr(text, '\0', len)) {
    snprintf(err, errlen, "not a text file");
    goto fail;
  }

  char *line = text, *rest;
  size_t lineno = 1;
  rest = strchr(line, '\n');
  if (rest)
    *rest++ = '\0';

  /* header */
  char *f = line, *field;
  field = next_field(&f);
  if (!field || !parse_size(field, MAX_ROWS, &ds->rows) || ds->rows == 0) {
    snprintf(err, errlen, "line 1: expected the number of rows, got '%s'", field ? field : "");
    goto fail;
  }
  field = next_field(&f);
  if (!field || !parse_size(field, MAX_FEATURES, &ds->features) || ds->features == 0) {
    snprintf(err, errlen, "line 1: expected the number of features, got '%s'",
             field ? field : "");
    goto fail;
  }
  ds->class_names = calloc(MAX_CLASSES, sizeof(char *));
  if (!ds->class_names) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  while ((field = next_field(&f)) != NULL) {
    if (ds->classes == MAX_CLASSES) {
      snprintf(err, errlen, "line 1: more than %u classes", MAX_CLASSES);
      goto fail;
    }
    if (!*field) {
      snprintf(err, errlen, "line 1: class %zu has an empty name", ds->classes);
      goto fail;
    }
    if (!(ds->class_names[ds->classes++] = strdup(field))) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
  }
  if (ds->classes < 2) {
    snprintf(err, errlen, "line 1: expected at least two class names");
    goto fail;
  }

  ds->x = malloc(ds->rows * ds->features * sizeof(double));
  ds->y = malloc(ds->rows * sizeof(int));
  if (!ds->x || !ds->y) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }

  size_t row = 0;
  while (rest && *rest) {
    line = rest;
    lineno++;
    rest = strchr(line, '\n');
    if (rest)
      *rest++ = '\0';
    if (line[strspn(line, " \t\r")] == '\0')
      continue; /* blank line */
    if (row == ds->rows) {
      snprintf(err, errlen, "line %zu: more rows than the %zu announced", lineno, ds->rows);
      goto fail;
    }
    f = line;
    for (size_t j = 0; j < ds->features; j++) {
      field = next_field(&f);
      if (!field || !parse_double(field, &ds->x[row * ds->features + j])) {
        snprintf(err, errlen, "line %zu, column %zu: expected a number, got '%s'", lineno,
                 j + 1, field ? field : "");
        goto fail;
      }
    }
    size_t label;
    field = next_field(&f);
    if (!field || !parse_size(field, ds->classes - 1, &label)) {
      snprintf(err, errlen, "line %zu: expected a class index 0..%zu, got '%s'", lineno,
               ds->classes - 1, field ? field : "");
      goto fail;
    }
    if (f) {
      snprintf(err, errlen, "line %zu: more than %zu columns", lineno, ds->features + 1);
      goto fail;
    }
    ds->y[row++] = (int)label;
  }
  if (row != ds->rows) {
    snprintf(err, errlen, "%zu rows announced, %zu found", ds->rows, row);
    goto fail;
  }
  free(text);
  return 0;

fail:
  free(text);
  dataset_free(ds);
  return -1;
}

/* Write the rows `which[0..count-1]` of ds in the dataset format. */
static void dataset_write(textbuf *b, const dataset *ds, const size_t *which, size_t count) {
  tb_printf(b, "%zu,%zu", count, ds->features);
  for (size_t c = 0; c < ds->classes; c++)
    tb_printf(b, ",%s", ds->class_names[c]);
  tb_printf(b, "\n");
  for (size_t i = 0; i < count; i++) {
    const double *xr = &ds->x[which[i] * ds->features];
    for (size_t j = 0; j < ds->features; j++) {
      tb_number(b, xr[j]);
      tb_printf(b, ",");
    }
    tb_printf(b, "%d\n", ds->y[which[i]]);
  }
}

/* ======================================================================
 * Step helpers
 * ====================================================================== */

/* Read and parse dataset input `name`; fails the step on error. */
static int input_dataset(zorch_step_ctx *ctx, const char *name, dataset *ds) {
  const void *data;
  size_t size;
  if (zorch_ctx_input(ctx, name, &data, &size) != ZORCH_OK)
    return zorch_ctx_fail(ctx, "input %s: %s", name, zorch_error_last()->message);
  char err[256];
  if (dataset_parse(ds, data, size, err, sizeof(err)) != 0)
    return zorch_ctx_fail(ctx, "input %s: %s", name, err);
  return 0;
}

/* Store a finished text buffer as output `name` and free it. */
static int output_text(zorch_step_ctx *ctx, const char *name, textbuf *b) {
  int rc;
  if (b->oom)
    rc = zorch_ctx_fail(ctx, "output %s: out of memory", name);
  else if (zorch_ctx_output(ctx, name, b->data ? b->data : "", b->len) != ZORCH_OK)
    rc = zorch_ctx_fail(ctx, "output %s: %s", name, zorch_error_last()->message);
  else
    rc = 0;
  tb_free(b);
  return rc;
}

static int param_double(zorch_step_ctx *ctx, const char *name, double *out) {
  if (zorch_ctx_param_double(ctx, name, out) != ZORCH_OK)
    return zorch_ctx_fail(ctx, "%s", zorch_error_last()->message); /* names the param */
  return 0;
}

static int param_int(zorch_step_ctx *ctx, const char *name, int64_t *out) {
  if (zorch_ctx_param_int(ctx, name, out) != ZORCH_OK)
    return zorch_ctx_fail(ctx, "%s", zorch_error_last()->message); /* names the param */
  return 0;
}

/* ======================================================================
 * Step `load`: read and check the CSV
 *   params  data (string: path), data_fingerprint (string, "" = unchecked)
 *   output  dataset
 * ====================================================================== */

static int step_load(zorch_step_ctx *ctx, void *payload) {
  const char *path, *expected;
  if (zorch_ctx_param_string(ctx, "data", &path) != ZORCH_OK ||
      zorch_ctx_param_string(ctx, "data_fingerprint", &expected) != ZORCH_OK)
    return zorch_ctx_fail(ctx, "%s", zorch_error_last()->message);

  char *text;
  size_t len;
  if (read_whole_file(path, &text, &len) != 0)
    return zorch_ctx_fail(ctx, "cannot read %s: %s", path, strerror(errno));

  char fp[48];
  fingerprint(fp, text, len);
  if (*expected && strcmp(fp, expected) != 0) {
    free(text);
    return zorch_ctx_fail(ctx, "%s changed since the run started (%s, expected %s)", path, fp,
                          expected);
  }

  dataset ds;
  char err[256];
  int rc = dataset_parse(&ds, text, len, err, sizeof(err));
  free(text);
  if (rc != 0)
    return zorch_ctx_fail(ctx, "%s: %s", path, err);

  /* Re-write it canonically: downstream steps get exactly the parsed data. */
  size_t *all = malloc(ds.rows * sizeof(size_t));
  if (!all) {
    dataset_free(&ds);
    return zorch_ctx_fail(ctx, "out of memory");
  }
  for (size_t i = 0; i < ds.rows; i++)
    all[i] = i;
  textbuf out = {0};
  dataset_write(&out, &ds, all, ds.rows);
  free(all);
  zorch_ctx_log(ctx, "read %s: %zu rows, %zu features, %zu classes", path, ds.rows,
                ds.features, ds.classes);
  dataset_free(&ds);
  return output_text(ctx, "dataset", &out);
}

/* ======================================================================
 * Step `split`: stratified, shuffled train/test split
 *   input   dataset
 *   params  seed (integer), test_fraction (number in (0,1))
 *   outputs train, test
 * ====================================================================== */

static int step_split(zorch_step_ctx *ctx, void *payload) {
  int64_t seed;
  double fraction;
  if (param_int(ctx, "seed", &seed) || param_double(ctx, "test_fraction", &fraction))
    return ZORCH_ESTEP;
  if (!(fraction > 0.0 && fraction < 1.0))
    return zorch_ctx_fail(ctx, "param test_fraction: %g is not between 0 and 1", fraction);

  dataset ds;
  if (input_dataset(ctx, "dataset", &ds))
    return ZORCH_ESTEP;

  size_t *by_class = malloc(ds.rows * sizeof(size_t));
  size_t *train = malloc(ds.rows * sizeof(size_t));
  size_t *test = malloc(ds.rows * sizeof(size_t));
  if (!by_class || !train || !test) {
    free(by_class), free(train), free(test), dataset_free(&ds);
    return zorch_ctx_fail(ctx, "out of memory");
  }

  /* Each class is shuffled and cut separately, so both sides keep the
   * class proportions; then each side is shuffled as a whole. */
  uint64_t rng = (uint64_t)seed;
  size_t ntrain = 0, ntest = 0;
  for (size_t c = 0; c < ds.classes; c++) {
    size_t n = 0;
    for (size_t i = 0; i < ds.rows; i++)
      if ((size_t)ds.y[i] == c)
        by_class[n++] = i;
    shuffle(by_class, n, &rng);
    size_t k = (size_t)llround(fraction * (double)n);
    if (n >= 2 && k == 0)
      k = 1;
    if (n >= 2 && k == n)
      k = n - 1;
    for (size_t i = 0; i < n; i++) {
      if (i < k)
        test[ntest++] = by_class[i];
      else
        train[ntrain++] = by_class[i];
    }
  }
  shuffle(train, ntrain, &rng);
  shuffle(test, ntest, &rng);

  int rc = 0;
  if (ntrain == 0 || ntest == 0) {
    rc = zorch_ctx_fail(ctx, "test_fraction %g leaves %zu training and %zu test rows", fraction,
                        ntrain, ntest);
  } else {
    textbuf out = {0};
    dataset_write(&out, &ds, train, ntrain);
    rc = output_text(ctx, "train", &out);
    if (rc == 0) {
      dataset_write(&out, &ds, test, ntest);
      rc = output_text(ctx, "test", &out);
    }
    zorch_ctx_log(ctx, "seed %lld, test_fraction %g: %zu training rows, %zu test rows",
                  (long long)seed, fraction, ntrain, ntest);
  }
  free(by_class), free(train), free(test);
  dataset_free(&ds);
  return rc;
}

/* ======================================================================
 * The model: standardisation + softmax regression
 * ====================================================================== */

typedef struct model {
  size_t features, classes;
  double *mean, *scale; /* features */
  double *w;            /* classes × features */
  double *b;            /* classes */
} model;

static int model_alloc(model *m, size_t features, size_t classes) {
  m->features = features;
  m->classes = classes;
  m->mean = calloc(features, sizeof(double));
  m->scale = calloc(features, sizeof(double));
  m->w = calloc(features * classes, sizeof(double));
  m->b = calloc(classes, sizeof(double));
  return m->mean && m->scale && m->w && m->b ? 0 : -1;
}

static void model_free(model *m) {
  free(m->mean), free(m->scale), free(m->w), free(m->b);
  memset(m, 0, sizeof(*m));
}

/* Class probabilities of one row (z: standardised features). */
static void model_softmax(const model *m, const double *z, double *prob) {
  double max = -INFINITY;
  for (size_t c = 0; c < m->classes; c++) {
    double s = m->b[c];
    for (size_t j = 0; j < m->features; j++)
      s += m->w[c * m->features + j] * z[j];
    prob[c] = s;
    if (s > max)
      max = s;
  }
  double sum = 0.0;
  for (size_t c = 0; c < m->classes; c++)
    sum += (prob[c] = exp(prob[c] - max));
  for (size_t c = 0; c < m->classes; c++)
    prob[c] /= sum;
}

static void model_standardise(const model *m, const double *xr, double *z) {
  for (size_t j = 0; j < m->features; j++)
    z[j] = (xr[j] - m->mean[j]) / m->scale[j];
}

static size_t argmax(const double *v, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; i++)
    if (v[i] > v[best])
      best = i;
  return best;
}

/* ======================================================================
 * Step `train`
 *   input   train
 *   params  learning_rate (> 0), epochs (>= 1), l2 (>= 0)
 *   output  model (JSON)
 * ====================================================================== */

static int step_train(zorch_step_ctx *ctx, void *payload) {
  double lr, l2;
  int64_t epochs;
  if (param_double(ctx, "learning_rate", &lr) || param_int(ctx, "epochs", &epochs) ||
      param_double(ctx, "l2", &l2))
    return ZORCH_ESTEP;
  if (!(lr > 0.0) || epochs < 1 || epochs > 10000000 || !(l2 >= 0.0))
    return zorch_ctx_fail(ctx, "need learning_rate > 0, 1 <= epochs <= 1e7, l2 >= 0 "
                               "(got %g, %lld, %g)", lr, (long long)epochs, l2);

  dataset ds;
  if (input_dataset(ctx, "train", &ds))
    return ZORCH_ESTEP;
  const size_t n = ds.rows, d = ds.features, k = ds.classes;

  model m = {0};
  double *z = malloc(n * d * sizeof(double));
  double *gw = malloc(k * d * sizeof(double));
  double *gb = malloc(k * sizeof(double));
  double *prob = malloc(k * sizeof(double));
  int rc = 0;
  if (model_alloc(&m, d, k) || !z || !gw || !gb || !prob) {
    rc = zorch_ctx_fail(ctx, "out of memory");
    goto out;
  }

  /* Standardisation fitted on the training rows only. */
  for (size_t j = 0; j < d; j++) {
    double sum = 0.0, sq = 0.0;
    for (size_t i = 0; i < n; i++)
      sum += ds.x[i * d + j];
    m.mean[j] = sum / (double)n;
    for (size_t i = 0; i < n; i++) {
      double dev = ds.x[i * d + j] - m.mean[j];
      sq += dev * dev;
    }
    m.scale[j] = sqrt(sq / (double)n);
    if (!(m.scale[j] > 1e-12))
      m.scale[j] = 1.0; /* a constant feature */
  }
  for (size_t i = 0; i < n; i++)
    model_standardise(&m, &ds.x[i * d], &z[i * d]);

  /* Full-batch gradient descent on the mean cross-entropy + l2/2·|W|². */
  double loss = 0.0;
  int64_t report_every = epochs >= 10 ? epochs / 10 : 1;
  for (int64_t e = 1; e <= epochs; e++) {
    if ((e & 63) == 0 && zorch_ctx_cancelled(ctx)) {
      rc = zorch_ctx_fail(ctx, "cancelled at epoch %lld", (long long)e);
      goto out;
    }
    memset(gw, 0, k * d * sizeof(double));
    memset(gb, 0, k * sizeof(double));
    loss = 0.0;
    for (size_t i = 0; i < n; i++) {
      const double *zi = &z[i * d];
      model_softmax(&m, zi, prob);
      loss -= log(prob[ds.y[i]] > 1e-300 ? prob[ds.y[i]] : 1e-300);
      for (size_t c = 0; c < k; c++) {
        double g = prob[c] - ((size_t)ds.y[i] == c ? 1.0 : 0.0);
        gb[c] += g;
        for (size_t j = 0; j < d; j++)
          gw[c * d + j] += g * zi[j];
      }
    }
    loss /= (double)n;
    double penalty = 0.0;
    for (size_t c = 0; c < k; c++) {
      for (size_t j = 0; j < d; j++) {
        double *wcj = &m.w[c * d + j];
        penalty += *wcj * *wcj;
        *wcj -= lr * (gw[c * d + j] / (double)n + l2 * *wcj);
      }
      m.b[c] -= lr * gb[c] / (double)n;
    }
    loss += 0.5 * l2 * penalty; /* the objective before this epoch's update */
    if (!isfinite(loss)) {
      rc = zorch_ctx_fail(ctx, "diverged at epoch %lld: lower learning_rate", (long long)e);
      goto out;
    }
    if (e % report_every == 0 || e == 1)
      zorch_ctx_log(ctx, "epoch %lld: loss %.6f", (long long)e, loss);
  }

  size_t correct = 0;
  for (size_t i = 0; i < n; i++) {
    model_softmax(&m, &z[i * d], prob);
    correct += argmax(prob, k) == (size_t)ds.y[i];
  }
  double train_acc = (double)correct / (double)n;
  zorch_ctx_log(ctx, "training accuracy %.4f (%zu/%zu)", train_acc, correct, n);

  textbuf out = {0};
  tb_printf(&out, "{\n  \"format\": \"%s\",\n  \"num_features\": %zu,\n  \"num_classes\": %zu,\n"
                  "  \"classes\": [", IRIS_MODEL_FORMAT, d, k);
  for (size_t c = 0; c < k; c++) {
    tb_printf(&out, c ? ", " : "");
    tb_json_string(&out, ds.class_names[c]);
  }
  tb_printf(&out, "],\n  \"mean\": [");
  for (size_t j = 0; j < d; j++) {
    tb_printf(&out, j ? ", " : "");
    tb_number(&out, m.mean[j]);
  }
  tb_printf(&out, "],\n  \"scale\": [");
  for (size_t j = 0; j < d; j++) {
    tb_printf(&out, j ? ", " : "");
    tb_number(&out, m.scale[j]);
  }
  tb_printf(&out, "],\n  \"weights\": [");
  for (size_t c = 0; c < k; c++) {
    tb_printf(&out, c ? ",\n              [" : "[");
    for (size_t j = 0; j < d; j++) {
      tb_printf(&out, j ? ", " : "");
      tb_number(&out, m.w[c * d + j]);
    }
    tb_printf(&out, "]");
  }
  tb_printf(&out, "],\n  \"bias\": [");
  for (size_t c = 0; c < k; c++) {
    tb_printf(&out, c ? ", " : "");
    tb_number(&out, m.b[c]);
  }
  tb_printf(&out, "],\n  \"training\": {\"rows\": %zu, \"epochs\": %lld, \"learning_rate\": ", n,
            (long long)epochs);
  tb_number(&out, lr);
  tb_printf(&out, ", \"l2\": ");
  tb_number(&out, l2);
  tb_printf(&out, ", \"loss\": ");
  tb_number(&out, loss);
  tb_printf(&out, ", \"accuracy\": ");
  tb_number(&out, train_acc);
  tb_printf(&out, "}\n}\n");
  rc = output_text(ctx, "model", &out);

out:
  free(z), free(gw), free(gb), free(prob);
  model_free(&m);
  dataset_free(&ds);
  return rc;
}

/* ======================================================================
 * Step `evaluate`
 *   inputs  model, test
 *   outputs metrics (JSON), report (text)
 * ====================================================================== */

static int input_model(zorch_step_ctx *ctx, model *m) {
  const void *data;
  size_t size;
  if (zorch_ctx_input(ctx, "model", &data, &size) != ZORCH_OK)
    return zorch_ctx_fail(ctx, "input model: %s", zorch_error_last()->message);
  char *json = malloc(size + 1);
  if (!json)
    return zorch_ctx_fail(ctx, "out of memory");
  memcpy(json, data, size);
  json[size] = '\0';

  int rc = 0;
  double dims[2];
  if (!strstr(json, "\"" IRIS_MODEL_FORMAT "\"") ||
      json_read_numbers(json, "num_features", &dims[0], 1) ||
      json_read_numbers(json, "num_classes", &dims[1], 1) || !(dims[0] >= 1) ||
      !(dims[0] <= MAX_FEATURES) || !(dims[1] >= 2) || !(dims[1] <= MAX_CLASSES)) {
    rc = zorch_ctx_fail(ctx, "input model: not a %s model", IRIS_MODEL_FORMAT);
  } else if (model_alloc(m, (size_t)dims[0], (size_t)dims[1])) {
    rc = zorch_ctx_fail(ctx, "out of memory");
  } else if (json_read_numbers(json, "mean", m->mean, m->features) ||
             json_read_numbers(json, "scale", m->scale, m->features) ||
             json_read_numbers(json, "weights", m->w, m->features * m->classes) ||
             json_read_numbers(json, "bias", m->b, m->classes)) {
    rc = zorch_ctx_fail(ctx, "input model: malformed parameters");
  }
  free(json);
  return rc;
}

static int step_evaluate(zorch_step_ctx *ctx, void *payload) {
  model m = {0};
  dataset ds = {0};
  size_t *confusion = NULL;
  double *z = NULL, *prob = NULL;
  int rc;
  if ((rc = input_model(ctx, &m)) || (rc = input_dataset(ctx, "test", &ds)))
    goto out;
  if (ds.features != m.features || ds.classes != m.classes) {
    rc = zorch_ctx_fail(ctx, "the test set has %zu features and %zu classes, the model %zu and %zu",
                        ds.features, ds.classes, m.features, m.classes);
    goto out;
  }
  const size_t n = ds.rows, k = ds.classes;
  confusion = calloc(k * k, sizeof(size_t)); /* [true][predicted] */
  z = malloc(ds.features * sizeof(double));
  prob = malloc(k * sizeof(double));
  if (!confusion || !z || !prob) {
    rc = zorch_ctx_fail(ctx, "out of memory");
    goto out;
  }
  size_t correct = 0;
  for (size_t i = 0; i < n; i++) {
    model_standardise(&m, &ds.x[i * ds.features], z);
    model_softmax(&m, z, prob);
    size_t pred = argmax(prob, k);
    confusion[(size_t)ds.y[i] * k + pred]++;
    correct += pred == (size_t)ds.y[i];
  }
  double accuracy = (double)correct / (double)n;

  textbuf metrics = {0}, report = {0};
  tb_printf(&metrics, "{\n  \"accuracy\": ");
  tb_number(&metrics, accuracy);
  tb_printf(&metrics, ",\n  \"correct\": %zu,\n  \"test_rows\": %zu,\n  \"classes\": {", correct,
            n);
  tb_printf(&report, "test accuracy: %.4f (%zu of %zu)\n\n", accuracy, correct, n);
  tb_printf(&report, "%-16s %9s %9s %9s %8s\n", "class", "precision", "recall", "f1", "support");
  double macro_f1 = 0.0;
  for (size_t c = 0; c < k; c++) {
    size_t tp = confusion[c * k + c], predicted = 0, actual = 0;
    for (size_t o = 0; o < k; o++) {
      predicted += confusion[o * k + c];
      actual += confusion[c * k + o];
    }
    /* No prediction of (or no row of) a class: its precision (recall) is 0. */
    double precision = predicted ? (double)tp / (double)predicted : 0.0;
    double recall = actual ? (double)tp / (double)actual : 0.0;
    double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
    macro_f1 += f1 / (double)k;
    tb_printf(&metrics, "%s\n    ", c ? "," : "");
    tb_json_string(&metrics, ds.class_names[c]);
    tb_printf(&metrics, ": {\"precision\": ");
    tb_number(&metrics, precision);
    tb_printf(&metrics, ", \"recall\": ");
    tb_number(&metrics, recall);
    tb_printf(&metrics, ", \"f1\": ");
    tb_number(&metrics, f1);
    tb_printf(&metrics, ", \"support\": %zu}", actual);
    tb_printf(&report, "%-16s %9.3f %9.3f %9.3f %8zu\n", ds.class_names[c], precision, recall,
              f1, actual);
  }
  tb_printf(&metrics, "\n  },\n  \"macro_f1\": ");
  tb_number(&metrics, macro_f1);
  tb_printf(&metrics, ",\n  \"confusion_matrix\": {\"rows\": \"true class\", "
                      "\"columns\": \"predicted class\", \"labels\": [");
  tb_printf(&report, "\nconfusion matrix (rows: true class, columns: predicted class)\n%-16s",
            "");
  for (size_t c = 0; c < k; c++) {
    tb_printf(&metrics, c ? ", " : "");
    tb_json_string(&metrics, ds.class_names[c]);
    tb_printf(&report, " %12.12s", ds.class_names[c]);
  }
  tb_printf(&metrics, "],\n    \"counts\": [");
  tb_printf(&report, "\n");
  for (size_t t = 0; t < k; t++) {
    tb_printf(&metrics, t ? ", [" : "[");
    tb_printf(&report, "%-16s", ds.class_names[t]);
    for (size_t p = 0; p < k; p++) {
      tb_printf(&metrics, p ? ", %zu" : "%zu", confusion[t * k + p]);
      tb_printf(&report, " %12zu", confusion[t * k + p]);
    }
    tb_printf(&metrics, "]");
    tb_printf(&report, "\n");
  }
  tb_printf(&metrics, "]}\n}\n");
  zorch_ctx_log(ctx, "test accuracy %.4f (%zu/%zu)", accuracy, correct, n);

  rc = output_text(ctx, "metrics", &metrics);
  if (rc == 0)
    rc = output_text(ctx, "report", &report);
  else
    tb_free(&report);

out:
  free(confusion), free(z), free(prob);
  model_free(&m);
  dataset_free(&ds);
  return rc;
}

/* ======================================================================
 * The pipeline
 * ====================================================================== */

/* Builds the pipeline.  zorch_main() calls it too, when this program is
 * started as one step of a run on a remote flavor, so it must build exactly
 * the same pipeline every time; run-time choices travel as params. */
static int build_pipeline(zorch_pipeline **out, const char *name, void *payload) {
  if (strcmp(name, IRIS_PIPELINE) != 0)
    return ZORCH_ENOTFOUND;

  zorch_pipeline *p = NULL;
  zorch_step *load, *split, *train, *evaluate;
  int rc;
#define TRY(expr)                                                                                \
  do {                                                                                           \
    if ((rc = (expr)) != ZORCH_OK)                                                               \
      goto fail;                                                                                 \
  } while (0)

  TRY(zorch_pipeline_new(&p, IRIS_PIPELINE));
  TRY(zorch_pipeline_add_param(p, "data", "\"" IRIS_DEFAULT_DATA "\""));
  TRY(zorch_pipeline_add_param(p, "data_fingerprint", "\"\""));
  TRY(zorch_pipeline_add_param(p, "seed", "42"));
  TRY(zorch_pipeline_add_param(p, "test_fraction", "0.3"));
  TRY(zorch_pipeline_add_param(p, "learning_rate", "0.5"));
  TRY(zorch_pipeline_add_param(p, "epochs", "1000"));
  TRY(zorch_pipeline_add_param(p, "l2", "0.001"));

  TRY(zorch_pipeline_add_function_step(&load, p, "load", step_load, NULL));
  TRY(zorch_step_use_param(load, "data"));
  TRY(zorch_step_use_param(load, "data_fingerprint"));
  TRY(zorch_step_add_output(load, "dataset"));

  TRY(zorch_pipeline_add_function_step(&split, p, "split", step_split, NULL));
  TRY(zorch_step_add_input(split, "dataset", "load", "dataset"));
  TRY(zorch_step_use_param(split, "seed"));
  TRY(zorch_step_use_param(split, "test_fraction"));
  TRY(zorch_step_add_output(split, "train"));
  TRY(zorch_step_add_output(split, "test"));

  TRY(zorch_pipeline_add_function_step(&train, p, "train", step_train, NULL));
  TRY(zorch_step_add_input(train, "train", "split", "train"));
  TRY(zorch_step_use_param(train, "learning_rate"));
  TRY(zorch_step_use_param(train, "epochs"));
  TRY(zorch_step_use_param(train, "l2"));
  TRY(zorch_step_add_output(train, "model"));

  TRY(zorch_pipeline_add_function_step(&evaluate, p, "evaluate", step_evaluate, NULL));
  TRY(zorch_step_add_input(evaluate, "model", "train", "model"));
  TRY(zorch_step_add_input(evaluate, "test", "split", "test"));
  TRY(zorch_step_add_output(evaluate, "metrics"));
  TRY(zorch_step_add_output(evaluate, "report"));
#undef TRY

  *out = p;
  return ZORCH_OK;
fail:
  zorch_pipeline_free(p);
  return rc;
}

/* ======================================================================
 * The program
 * ====================================================================== */

static void usage(FILE *f) {
  fprintf(f,
          "usage: zorch-example-iris [--data PATH] [--param NAME=JSON]... [--stack NAME]"
          " [--no-cache]\n"
          "\n"
          "Trains and evaluates a softmax classifier of the iris flowers as a zorch pipeline\n"
          "(steps load, split, train, evaluate) on the active stack, then prints each step's\n"
          "status and the test metrics.  A second run with the same inputs is all cached.\n"
          "\n"
          "  --data PATH          the iris CSV (default " IRIS_DEFAULT_DATA ")\n"
          "  --param NAME=JSON    override a pipeline param, for example --param seed=7 or\n"
          "                       --param learning_rate=0.05; params: data, seed,\n"
          "                       test_fraction, learning_rate, epochs, l2\n"
          "  --stack NAME         run on this stack instead of the active one\n"
          "  --no-cache           run every step even if a cached result exists\n");
}

static void log_to_stderr(int level, const char *domain, const char *message, void *payload) {
  static const char *const names[] = {"", "error", "warning", "info", "debug"};
  fprintf(stderr, "%s: %s: %s\n", domain,
          level >= 1 && level <= 4 ? names[level] : "log", message);
}

/* Option value for "--opt VALUE" or "--opt=VALUE"; NULL if argv[*i] is not
 * --opt.  Exits on a missing value. */
static const char *option_value(int argc, char **argv, int *i, const char *opt) {
  size_t n = strlen(opt);
  if (strncmp(argv[*i], opt, n) != 0)
    return NULL;
  if (argv[*i][n] == '=')
    return argv[*i] + n + 1;
  if (argv[*i][n] != '\0')
    return NULL;
  if (*i + 1 >= argc) {
    fprintf(stderr, "zorch-example-iris: %s needs a value\n", opt);
    exit(2);
  }
  return argv[++*i];
}

typedef struct param_override {
  char *name;
  char *json;
} param_override;

static const char *or_unknown(const char *s) { return s ? s : "?"; }

static void print_run(const zorch_run *run) {
  printf("run %s (%s) on stack %s: %s\n", or_unknown(zorch_run_name(run)),
         or_unknown(zorch_run_id(run)), or_unknown(zorch_run_stack(run)),
         zorch_status_name(zorch_run_status(run)));
  for (size_t i = 0; i < zorch_run_step_count(run); i++) {
    int st = zorch_run_step_status(run, i);
    double t0 = zorch_run_step_started_at(run, i), t1 = zorch_run_step_finished_at(run, i);
    const char *err = zorch_run_step_error(run, i);
    printf("  %-10s %s", zorch_run_step_name(run, i), zorch_status_name(st));
    if (st == ZORCH_STATUS_COMPLETED && t0 > 0 && t1 >= t0)
      printf("%*s%8.3f s", 11 - (int)strlen(zorch_status_name(st)), "", t1 - t0);
    else if (err && (st == ZORCH_STATUS_FAILED || st == ZORCH_STATUS_SKIPPED))
      printf("%*s%s", 11 - (int)strlen(zorch_status_name(st)), "", err);
    printf("\n");
  }
}

static void overrides_free(param_override *ov, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(ov[i].name), free(ov[i].json);
  free(ov);
}

/* The params object for the run: the data fingerprint, then the overrides
 * from the command line in order; each name once, the last one winning.
 * Returns 0, 2 on a usage error or -1 on OOM. */
static int make_params(textbuf *params, param_override *ov, size_t nov) {
  /* The data file actually used, fingerprinted so that `load` runs again
   * when the file's content changes, not only when its path does. */
  const char *data_json = NULL;
  for (size_t i = 1; i < nov; i++)
    if (!strcmp(ov[i].name, "data"))
      data_json = ov[i].json;
  char *path = data_json ? json_string_decode(data_json) : strdup(IRIS_DEFAULT_DATA);
  if (!path) {
    if (!data_json)
      return -1;
    fprintf(stderr, "zorch-example-iris: param data: expected a JSON string, got %s\n",
            data_json);
    return 2;
  }
  char *text, fp[48];
  size_t len;
  if (read_whole_file(path, &text, &len) != 0) {
    fprintf(stderr, "zorch-example-iris: cannot read %s: %s\n", path, strerror(errno));
    if (!data_json)
      fprintf(stderr, "zorch-example-iris: install python3-sklearn, or give --data PATH\n");
    free(path);
    return 2;
  }
  free(path);
  fingerprint(fp, text, len);
  free(text);
  textbuf fpjson = {0};
  tb_json_string(&fpjson, fp);
  if (fpjson.oom || !(ov[0].name = strdup("data_fingerprint"))) {
    tb_free(&fpjson);
    return -1;
  }
  ov[0].json = fpjson.data;

  tb_printf(params, "{");
  bool first = true;
  for (size_t i = 0; i < nov; i++) {
    bool later = false;
    for (size_t j = i + 1; j < nov && !later; j++)
      later = !strcmp(ov[i].name, ov[j].name);
    if (later)
      continue;
    tb_printf(params, "%s", first ? "" : ",");
    tb_json_string(params, ov[i].name);
    tb_printf(params, ":%s", ov[i].json);
    first = false;
  }
  tb_printf(params, "}");
  return params->oom ? -1 : 0;
}

int main(int argc, char **argv) {
  /* First: when a flavor started this program as one step of a run, this
   * runs that step and exits. */
  if (zorch_main(argc, argv, build_pipeline, NULL) != ZORCH_OK) {
    fprintf(stderr, "zorch-example-iris: %s\n", zorch_error_last()->message);
    return 2;
  }

  const char *stack = NULL;
  uint32_t flags = ZORCH_RUN_HANDLE_SIGINT;
  /* ov[0] is the data fingerprint, then one entry per --data or --param. */
  param_override *ov = calloc((size_t)argc + 1, sizeof(*ov));
  size_t nov = 1;
  if (!ov)
    goto oom;
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      overrides_free(ov, nov);
      return 0;
    } else if (!strcmp(argv[i], "--no-cache")) {
      flags |= ZORCH_RUN_NO_CACHE;
    } else if ((v = option_value(argc, argv, &i, "--stack"))) {
      stack = v;
    } else if ((v = option_value(argc, argv, &i, "--data"))) {
      textbuf b = {0};
      tb_json_string(&b, v);
      ov[nov].json = b.data;
      if (!(ov[nov++].name = strdup("data")) || b.oom)
        goto oom;
    } else if ((v = option_value(argc, argv, &i, "--param"))) {
      const char *eq = strchr(v, '=');
      if (!eq || eq == v) {
        fprintf(stderr, "zorch-example-iris: --param wants NAME=JSON, got '%s'\n", v);
        overrides_free(ov, nov);
        return 2;
      }
      ov[nov].name = strndup(v, (size_t)(eq - v));
      if (!(ov[nov++].json = strdup(eq + 1)) || !ov[nov - 1].name)
        goto oom;
    } else {
      fprintf(stderr, "zorch-example-iris: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      overrides_free(ov, nov);
      return 2;
    }
  }

  textbuf params = {0};
  int rc = make_params(&params, ov, nov);
  overrides_free(ov, nov);
  ov = NULL;
  if (rc != 0) {
    tb_free(&params);
    if (rc < 0)
      goto oom;
    return rc;
  }

  zorch_pipeline *pipeline = NULL;
  zorch_client *client = NULL;
  zorch_run *run = NULL;
  int exit_code = 2;
  zorch_client_options copts = ZORCH_CLIENT_OPTIONS_INIT;
  copts.log_cb = log_to_stderr;

  if (build_pipeline(&pipeline, IRIS_PIPELINE, NULL) != ZORCH_OK ||
      zorch_client_new(&client, &copts) != ZORCH_OK) {
    fprintf(stderr, "zorch-example-iris: %s\n", zorch_error_last()->message);
    goto out;
  }

  zorch_run_options opts = ZORCH_RUN_OPTIONS_INIT;
  opts.stack = stack;
  opts.params_json = params.data;
  opts.flags = flags;
  rc = zorch_pipeline_run(&run, client, pipeline, &opts);
  if (!run) {
    fprintf(stderr, "zorch-example-iris: cannot start the run: %s\n",
            zorch_error_last()->message);
    goto out;
  }
  if (rc != ZORCH_OK) {
    /* Print the reason before anything else can overwrite it. */
    fprintf(stderr, "zorch-example-iris: %s\n", zorch_error_last()->message);
    exit_code = rc == ZORCH_ECANCELLED ? 130 : 1;
  }
  print_run(run);

  if (rc == ZORCH_OK) {
    void *report;
    size_t size;
    char *metrics_path;
    if (zorch_run_read_output(&report, &size, run, "evaluate", "report") == ZORCH_OK) {
      printf("\n%s", (const char *)report);
      zorch_free(report);
    }
    if (zorch_run_output_path(&metrics_path, run, "evaluate", "metrics") == ZORCH_OK) {
      printf("\nmetrics (JSON): %s\n", metrics_path);
      zorch_free(metrics_path);
    }
    exit_code = 0;
  }

out:
  zorch_run_free(run);
  zorch_pipeline_free(pipeline);
  zorch_client_free(client);
  tb_free(&params);
  return exit_code;

oom:
  overrides_free(ov, nov);
  fprintf(stderr, "zorch-example-iris: out of memory\n");
  return 2;
}
