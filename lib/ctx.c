/* zorch — the context of a running function step (zorch_ctx_* API). */
#include "ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int zorch__ctx_init(zorch_step_ctx *ctx, zorch__store *store, const zorch__plan *plan, uint32_t i,
                    uint32_t attempt, const zorch__step_rec *recs, atomic_int *cancelled,
                    const char *run_dir) {
  /* every field but the inline slots (last in the struct), which are
   * cleared as far as used: a context is made for every step, and most
   * steps have few outputs or none */
  enum { PREFIX = offsetof(zorch_step_ctx, out_inline), HALF = PREFIX / 2 };
  memset(ctx, 0, HALF); /* in two parts, each cleared with a few vector stores */
  memset((char *)ctx + HALF, 0, PREFIX - HALF);
  ctx->store = store;
  ctx->plan = plan;
  ctx->step = i;
  ctx->attempt = attempt;
  ctx->recs = recs;
  ctx->cancelled = cancelled;
  ctx->log_fd = -1;
  ctx->run_dir = run_dir;
  uint32_t n = plan->steps[i].n_outputs;
  if (n <= 4) {
    ctx->outputs = ctx->out_inline;
    ctx->scratch = ctx->scratch_inline;
    if (n) {
      memset(ctx->out_inline, 0, n * sizeof ctx->out_inline[0]);
      memset(ctx->scratch_inline, 0, n * sizeof ctx->scratch_inline[0]);
    }
  } else {
    ctx->outputs = calloc(n, sizeof *ctx->outputs);
    ctx->scratch = calloc(n, sizeof *ctx->scratch);
    if (!ctx->outputs || !ctx->scratch) {
      free(ctx->outputs);
      free(ctx->scratch);
      return zorch__error_oom();
    }
  }
  for (uint32_t k = 0; k < n; k++) ctx->outputs[k].name = plan->steps[i].outputs[k];
  return ZORCH_OK;
}

/* The step's log file path, made on first use; NULL when no logs are kept. */
static const char *ctx_log_path(zorch_step_ctx *ctx) {
  if (!ctx->log_path && ctx->run_dir)
    ctx->log_path = zorch__asprintf("%s/logs/%s.log", ctx->run_dir, ctx->plan->steps[ctx->step].name);
  return ctx->log_path;
}

void zorch__ctx_release(zorch_step_ctx *ctx) {
  const zorch__pstep *s = &ctx->plan->steps[ctx->step];
  for (uint32_t k = 0; ctx->scratch && k < s->n_outputs; k++) {
    if (ctx->scratch[k]) {
      zorch__rm_rf(ctx->scratch[k]);
      free(ctx->scratch[k]);
      ctx->scratch[k] = NULL;
    }
  }
  if (ctx->scratch != ctx->scratch_inline) free(ctx->scratch);
  ctx->scratch = NULL;
  for (size_t m = 0; m < ctx->n_maps; m++)
    if (ctx->maps[m].len) munmap(ctx->maps[m].addr, ctx->maps[m].len);
  free(ctx->maps);
  ctx->maps = NULL;
  ctx->n_maps = 0;
  for (size_t q = 0; q < ctx->n_param_strings; q++) free(ctx->param_strings[q]);
  free(ctx->param_strings);
  ctx->param_strings = NULL;
  ctx->n_param_strings = 0;
  if (ctx->log_fd >= 0) close(ctx->log_fd);
  ctx->log_fd = -1;
  free(ctx->log_path);
  ctx->log_path = NULL;
  free(ctx->fail_message);
  ctx->fail_message = NULL;
}

void zorch__ctx_free_outputs(zorch_step_ctx *ctx) {
  if (ctx->outputs != ctx->out_inline) free(ctx->outputs);
  ctx->outputs = NULL;
}

void zorch__ctx_cleanup(zorch_step_ctx *ctx) {
  zorch__ctx_release(ctx);
  zorch__ctx_free_outputs(ctx);
}

int zorch__ctx_finish(zorch_step_ctx *ctx) {
  const zorch__pstep *s = &ctx->plan->steps[ctx->step];
  for (uint32_t k = 0; k < s->n_outputs; k++) {
    zorch__output_rec *o = &ctx->outputs[k];
    if (!o->set && ctx->scratch[k]) {
      struct stat st;
      if (lstat(ctx->scratch[k], &st) != 0)
        return zorch__error_set(ZORCH_EINVALID,
                                "step '%s': output '%s': zorch_ctx_output_path() gave '%s' but "
                                "the step created nothing there",
                                s->name, s->outputs[k], ctx->scratch[k]);
      bool is_dir = false;
      int rc = zorch__store_put_path(ctx->store, ctx->scratch[k], true, o->digest, &o->size, &is_dir);
      if (rc) return zorch__error_prefix("step '%s': output '%s'", s->name, s->outputs[k]);
      free(ctx->scratch[k]);
      ctx->scratch[k] = NULL;
      o->is_dir = is_dir;
      o->set = true;
    }
    if (!o->set)
      return zorch__error_set(ZORCH_EINVALID,
                              "step '%s' returned success but did not write its output '%s'",
                              s->name, s->outputs[k]);
  }
  return ZORCH_OK;
}

bool zorch__ctx_outcome(zorch_step_ctx *ctx, int frc, char **error) {
  *error = NULL;
  if (frc != 0)
    *error = ctx->fail_message ? zorch__strdup(ctx->fail_message)
                               : zorch__asprintf("step function returned %d", frc);
  else if (zorch__ctx_finish(ctx) != ZORCH_OK)
    *error = zorch__strdup(zorch_error_last()->message);
  else
    return true;
  return false;
}

void zorch__log_append(const char *log_path, const char *fmt, ...) {
  if (!log_path) return;
  int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t w = write(fd, buf, (size_t)n);
  (void)w;
  close(fd);
}

/* ---- public accessors ---- */

#define CTX_CHECK(ctx)                                                             \
  do {                                                                             \
    if (!(ctx)) return zorch__error_set(ZORCH_EINVALID, "step context is NULL");   \
  } while (0)

const char *zorch_ctx_step_name(const zorch_step_ctx *ctx) {
  return ctx ? ctx->plan->steps[ctx->step].name : NULL;
}

const char *zorch_ctx_run_id(const zorch_step_ctx *ctx) {
  return ctx ? (ctx->plan->run_id ? ctx->plan->run_id : "") : NULL;
}

uint32_t zorch_ctx_attempt(const zorch_step_ctx *ctx) { return ctx ? ctx->attempt : 0; }

static int find_input(const zorch_step_ctx *ctx, const char *name, const zorch__output_rec **out) {
  const zorch__pstep *s = &ctx->plan->steps[ctx->step];
  for (uint32_t k = 0; name && k < s->n_inputs; k++) {
    if (strcmp(s->inputs[k].name, name) == 0) {
      *out = &ctx->recs[s->inputs[k].step].outputs[s->inputs[k].output];
      return ZORCH_OK;
    }
  }
  zorch__buf b = ZORCH__BUF_INIT;
  for (uint32_t k = 0; k < s->n_inputs; k++) {
    zorch__buf_puts(&b, k ? ", " : "");
    zorch__buf_puts(&b, s->inputs[k].name);
  }
  zorch__error_set(ZORCH_ENOTFOUND, "step '%s' has no input '%s' (its inputs: %s)", s->name,
                   name ? name : "(null)", b.len ? b.data : "none");
  zorch__buf_free(&b);
  return ZORCH_ENOTFOUND;
}

static const char *keep_string(zorch_step_ctx *ctx, char *s) {
  if (!s) return NULL;
  char **nv = realloc(ctx->param_strings, (ctx->n_param_strings + 1) * sizeof *nv);
  if (!nv) {
    free(s);
    return NULL;
  }
  ctx->param_strings = nv;
  nv[ctx->n_param_strings++] = s;
  return s;
}

int zorch_ctx_input_path(const zorch_step_ctx *cctx, const char *name, const char **path) {
  CTX_CHECK(cctx);
  zorch_step_ctx *ctx = (zorch_step_ctx *)cctx;
  const zorch__output_rec *o;
  int rc = find_input(ctx, name, &o);
  if (rc) return rc;
  const char *p = keep_string(ctx, zorch__store_artifact_path(ctx->store, o->digest));
  if (!p) return zorch__error_oom();
  *path = p;
  return ZORCH_OK;
}

int zorch_ctx_input(const zorch_step_ctx *cctx, const char *name, const void **data, size_t *size) {
  CTX_CHECK(cctx);
  zorch_step_ctx *ctx = (zorch_step_ctx *)cctx;
  const zorch__output_rec *o;
  int rc = find_input(ctx, name, &o);
  if (rc) return rc;
  if (o->is_dir)
    return zorch__error_set(ZORCH_EINVALID,
                            "input '%s' is a directory artifact: use zorch_ctx_input_path()", name);
  char *path = zorch__store_artifact_path(ctx->store, o->digest);
  if (!path) return zorch__error_oom();
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "input '%s': cannot open artifact '%s'", name, path);
    free(path);
    return rc;
  }
  struct stat st;
  fstat(fd, &st);
  void *addr = NULL;
  size_t len = (size_t)st.st_size;
  if (len > 0) {
    addr = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      rc = zorch__error_errno(ZORCH_EIO, errno, "input '%s': cannot map artifact '%s'", name, path);
      close(fd);
      free(path);
      return rc;
    }
  }
  close(fd);
  free(path);
  void *nm = realloc(ctx->maps, (ctx->n_maps + 1) * sizeof *ctx->maps);
  if (!nm) {
    if (len) munmap(addr, len);
    return zorch__error_oom();
  }
  ctx->maps = nm;
  ctx->maps[ctx->n_maps].addr = addr;
  ctx->maps[ctx->n_maps].len = len;
  ctx->n_maps++;
  *data = len ? addr : "";
  *size = len;
  return ZORCH_OK;
}

static json_t *param(const zorch_step_ctx *ctx, const char *name) {
  const zorch__pstep *s = &ctx->plan->steps[ctx->step];
  json_t *v = name ? json_object_get(s->params, name) : NULL;
  if (!v)
    zorch__error_set(ZORCH_ENOTFOUND,
                     "step '%s' has no param '%s' (a step reads only its own params and the "
                     "pipeline params it declared with zorch_step_use_param())",
                     s->name, name ? name : "(null)");
  return v;
}

int zorch_ctx_param(const zorch_step_ctx *cctx, const char *name, const char **json) {
  CTX_CHECK(cctx);
  zorch_step_ctx *ctx = (zorch_step_ctx *)cctx;
  json_t *v = param(ctx, name);
  if (!v) return ZORCH_ENOTFOUND;
  const char *t = keep_string(ctx, json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY));
  if (!t) return zorch__error_oom();
  *json = t;
  return ZORCH_OK;
}

int zorch_ctx_param_double(const zorch_step_ctx *ctx, const char *name, double *out) {
  CTX_CHECK(ctx);
  json_t *v = param(ctx, name);
  if (!v) return ZORCH_ENOTFOUND;
  if (!json_is_number(v))
    return zorch__error_set(ZORCH_EINVALID, "param '%s' is not a number", name);
  *out = json_number_value(v);
  return ZORCH_OK;
}

int zorch_ctx_param_int(const zorch_step_ctx *ctx, const char *name, int64_t *out) {
  CTX_CHECK(ctx);
  json_t *v = param(ctx, name);
  if (!v) return ZORCH_ENOTFOUND;
  if (!json_is_integer(v))
    return zorch__error_set(ZORCH_EINVALID, "param '%s' is not an integer", name);
  *out = (int64_t)json_integer_value(v);
  return ZORCH_OK;
}

int zorch_ctx_param_string(const zorch_step_ctx *ctx, const char *name, const char **out) {
  CTX_CHECK(ctx);
  json_t *v = param(ctx, name);
  if (!v) return ZORCH_ENOTFOUND;
  if (!json_is_string(v))
    return zorch__error_set(ZORCH_EINVALID, "param '%s' is not a string", name);
  *out = json_string_value(v);
  return ZORCH_OK;
}

static int find_output(zorch_step_ctx *ctx, const char *name, uint32_t *k) {
  const zorch__pstep *s = &ctx->plan->steps[ctx->step];
  for (uint32_t q = 0; name && q < s->n_outputs; q++) {
    if (strcmp(s->outputs[q], name) == 0) {
      if (ctx->outputs[q].set || ctx->scratch[q])
        return zorch__error_set(ZORCH_EEXISTS, "step '%s': output '%s' was already written",
                                s->name, name);
      *k = q;
      return ZORCH_OK;
    }
  }
  return zorch__error_set(ZORCH_ENOTFOUND, "step '%s' declares no output '%s'", s->name,
                          name ? name : "(null)");
}

int zorch_ctx_output(zorch_step_ctx *ctx, const char *name, const void *data, size_t size) {
  CTX_CHECK(ctx);
  if (!data && size)
    return zorch__error_set(ZORCH_EINVALID, "output '%s': data is NULL", name ? name : "(null)");
  uint32_t k;
  int rc = find_output(ctx, name, &k);
  if (rc) return rc;
  zorch__output_rec *o = &ctx->outputs[k];
  rc = zorch__store_put_bytes(ctx->store, size ? data : "", size, o->digest);
  if (rc) return zorch__error_prefix("output '%s'", name);
  o->size = size;
  o->is_dir = false;
  o->set = true;
  return ZORCH_OK;
}

int zorch_ctx_output_file(zorch_step_ctx *ctx, const char *name, const char *path) {
  CTX_CHECK(ctx);
  uint32_t k;
  int rc = find_output(ctx, name, &k);
  if (rc) return rc;
  if (!path) return zorch__error_set(ZORCH_EINVALID, "output '%s': path is NULL", name);
  zorch__output_rec *o = &ctx->outputs[k];
  bool is_dir = false;
  rc = zorch__store_put_path(ctx->store, path, false, o->digest, &o->size, &is_dir);
  if (rc) return zorch__error_prefix("output '%s'", name);
  o->is_dir = is_dir;
  o->set = true;
  return ZORCH_OK;
}

int zorch_ctx_output_path(zorch_step_ctx *ctx, const char *name, const char **path) {
  CTX_CHECK(ctx);
  uint32_t k;
  int rc = find_output(ctx, name, &k);
  if (rc) return rc;
  rc = zorch__store_scratch(ctx->store, name, &ctx->scratch[k]);
  if (rc) return rc;
  *path = ctx->scratch[k];
  return ZORCH_OK;
}

int zorch_ctx_log_write(zorch_step_ctx *ctx, const char *data, size_t size) {
  CTX_CHECK(ctx);
  if (ctx->log_fd < 0) {
    if (!ctx_log_path(ctx)) return ZORCH_OK; /* ephemeral run: no logs kept */
    ctx->log_fd = open(ctx->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (ctx->log_fd < 0)
      return zorch__error_errno(ZORCH_EIO, errno, "cannot open step log '%s'", ctx->log_path);
  }
  while (size) {
    ssize_t w = write(ctx->log_fd, data, size);
    if (w < 0) {
      if (errno == EINTR) continue;
      return zorch__error_errno(ZORCH_EIO, errno, "cannot write step log '%s'", ctx->log_path);
    }
    data += w;
    size -= (size_t)w;
  }
  return ZORCH_OK;
}

int zorch_ctx_log(zorch_step_ctx *ctx, const char *fmt, ...) {
  CTX_CHECK(ctx);
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return zorch__error_set(ZORCH_EINVALID, "bad log format");
  if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
  if (n == 0 || buf[n - 1] != '\n') buf[n++] = '\n';
  return zorch_ctx_log_write(ctx, buf, (size_t)n);
}

int zorch_ctx_cancelled(const zorch_step_ctx *ctx) {
  return ctx && ctx->cancelled ? atomic_load(ctx->cancelled) : 0;
}

int zorch_ctx_fail(zorch_step_ctx *ctx, const char *fmt, ...) {
  if (!ctx) return ZORCH_ESTEP;
  va_list ap;
  va_start(ap, fmt);
  char *m = NULL;
  if (vasprintf(&m, fmt, ap) < 0) m = NULL;
  va_end(ap);
  free(ctx->fail_message);
  ctx->fail_message = m;
  zorch__error_set(ZORCH_ESTEP, "%s", m ? m : "step failed");
  return ZORCH_ESTEP;
}
