/* zorch — error codes and the thread-local last error. */
#include "internal.h"

#include <errno.h>

#define ZORCH__ERRMSG_MAX 2048

typedef struct {
  zorch_error err;
  char buf[ZORCH__ERRMSG_MAX];
} tls_error;

static _Thread_local tls_error last = {{ZORCH_OK, "no error"}, {0}};

const zorch_error *zorch_error_last(void) {
  if (last.err.message == NULL) {
    last.err.code = ZORCH_OK;
    last.err.message = "no error";
  }
  return &last.err;
}

void zorch_error_clear(void) {
  last.err.code = ZORCH_OK;
  last.err.message = "no error";
  last.buf[0] = '\0';
}

const char *zorch_strerror(int code) {
  switch (code) {
  case ZORCH_OK: return "no error";
  case ZORCH_ERROR: return "error";
  case ZORCH_ENOTFOUND: return "not found";
  case ZORCH_EINVALID: return "invalid argument";
  case ZORCH_ENOMEM: return "out of memory";
  case ZORCH_EVERSION: return "unsupported version";
  case ZORCH_EPLUGIN: return "plugin error";
  case ZORCH_EIO: return "input/output error";
  case ZORCH_EEXISTS: return "already exists";
  case ZORCH_ECYCLE: return "cycle in pipeline";
  case ZORCH_ETIMEOUT: return "timed out";
  case ZORCH_ECANCELLED: return "cancelled";
  case ZORCH_ESTEP: return "step failed";
  case ZORCH_ENOTSUPPORTED: return "not supported";
  case ZORCH_EMISMATCH: return "pipeline does not match deployment";
  case ZORCH_EUSER: return "aborted by callback";
  default: return "unknown error";
  }
}

void zorch_free(void *ptr) { free(ptr); }

static int set_v(int code, const char *fmt, va_list ap) {
  vsnprintf(last.buf, sizeof last.buf, fmt, ap);
  last.err.code = code;
  last.err.message = last.buf;
  return code;
}

int zorch__error_set(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_v(code, fmt, ap);
  va_end(ap);
  return code;
}

int zorch__error_errno(int code, int errno_value, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_v(code, fmt, ap);
  va_end(ap);
  size_t n = strlen(last.buf);
  char eb[256];
  const char *s = strerror_r(errno_value, eb, sizeof eb);
  snprintf(last.buf + n, sizeof last.buf - n, ": %s", s);
  return code;
}

int zorch__error_prefix(const char *fmt, ...) {
  char old[ZORCH__ERRMSG_MAX];
  const zorch_error *e = zorch_error_last();
  snprintf(old, sizeof old, "%s", e->message);
  int code = e->code;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(last.buf, sizeof last.buf, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n < sizeof last.buf)
    snprintf(last.buf + n, sizeof last.buf - (size_t)n, ": %.*s", (int)(sizeof last.buf - (size_t)n), old);
  last.err.code = code;
  last.err.message = last.buf;
  return code;
}

int zorch__error_oom(void) {
  last.err.code = ZORCH_ENOMEM;
  last.err.message = "out of memory";
  return ZORCH_ENOMEM;
}
