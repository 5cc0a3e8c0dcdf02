/* zorch — what a running function step sees: its context.
 *
 * A zorch_step_ctx is valid only during the call of the step function it is
 * passed to, and only on that thread.  Strings and buffers it returns are
 * borrowed and live until the step function returns.
 */
#ifndef ZORCH_STEP_H
#define ZORCH_STEP_H

#include "common.h"
#include "pipeline.h"

ZORCH_BEGIN_DECLS

/** Name of the running step. */
ZORCH_API const char *zorch_ctx_step_name(const zorch_step_ctx *ctx);

/** Id of the run the step belongs to. */
ZORCH_API const char *zorch_ctx_run_id(const zorch_step_ctx *ctx);

/** Attempt number, 1 for the first try. */
ZORCH_API uint32_t zorch_ctx_attempt(const zorch_step_ctx *ctx);

/** The content of input `name`, mapped read-only in memory.  A directory
 *  artifact cannot be read this way (use zorch_ctx_input_path()). */
ZORCH_API int zorch_ctx_input(const zorch_step_ctx *ctx, const char *name, const void **data,
                              size_t *size);

/** The path of input `name` in the artifact store: a read-only file or
 *  directory.  Do not modify it. */
ZORCH_API int zorch_ctx_input_path(const zorch_step_ctx *ctx, const char *name,
                                   const char **path);

/** The JSON text of param `name` (a step-local param or a pipeline param
 *  the step declared with zorch_step_use_param()). */
ZORCH_API int zorch_ctx_param(const zorch_step_ctx *ctx, const char *name, const char **json);

/** Param `name` as a number.  ZORCH_EINVALID if it is not a JSON number. */
ZORCH_API int zorch_ctx_param_double(const zorch_step_ctx *ctx, const char *name, double *out);

/** Param `name` as an integer.  ZORCH_EINVALID if it is not a JSON integer. */
ZORCH_API int zorch_ctx_param_int(const zorch_step_ctx *ctx, const char *name, int64_t *out);

/** Param `name` as a string.  ZORCH_EINVALID if it is not a JSON string. */
ZORCH_API int zorch_ctx_param_string(const zorch_step_ctx *ctx, const char *name,
                                     const char **out);

/** Write output `name` from a buffer.  The bytes are stored durably and
 *  content-addressed when the step succeeds. */
ZORCH_API int zorch_ctx_output(zorch_step_ctx *ctx, const char *name, const void *data,
                               size_t size);

/** Write output `name` from an existing file or directory, which is copied
 *  and hashed without ever being read whole into memory; the original is left
 *  in place. */
ZORCH_API int zorch_ctx_output_file(zorch_step_ctx *ctx, const char *name, const char *path);

/** A fresh path inside the artifact store where the step may create output
 *  `name` as a file or a directory; it is published (without a copy) when
 *  the step returns 0, and removed otherwise. */
ZORCH_API int zorch_ctx_output_path(zorch_step_ctx *ctx, const char *name, const char **path);

/** Append a formatted line to the step's log. */
ZORCH_API int zorch_ctx_log(zorch_step_ctx *ctx, const char *fmt, ...) ZORCH_PRINTF(2, 3);

/** Append raw bytes to the step's log. */
ZORCH_API int zorch_ctx_log_write(zorch_step_ctx *ctx, const char *data, size_t size);

/** Non-zero once the run is cancelled or this attempt timed out: a long
 *  step should check it and return. */
ZORCH_API int zorch_ctx_cancelled(const zorch_step_ctx *ctx);

/** Record why the step failed; returns ZORCH_ESTEP so a step can
 *  `return zorch_ctx_fail(ctx, "bad row %d", n);`. */
ZORCH_API int zorch_ctx_fail(zorch_step_ctx *ctx, const char *fmt, ...) ZORCH_PRINTF(2, 3);

ZORCH_END_DECLS

#endif /* ZORCH_STEP_H */
