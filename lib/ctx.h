/* zorch — the context of a function step's attempt (ctx.c): what the
 * zorch_ctx_* API works on. */
#ifndef ZORCH_CTX_H
#define ZORCH_CTX_H

#include <stdatomic.h>

#include "steprec.h"
#include "store.h"

typedef struct zorch__exec zorch__exec;

struct zorch_step_ctx {
  zorch__exec *exec;                /* NULL when run by the entrypoint */
  zorch__store *store;
  const zorch__plan *plan;
  uint32_t step;
  uint32_t attempt;
  const zorch__step_rec *recs;      /* to resolve input digests */
  zorch__output_rec *outputs;       /* this attempt's outputs */
  char **scratch;                   /* per output: scratch path handed out, or NULL */
  atomic_int *cancelled;
  int log_fd;                       /* -1 until first use */
  const char *run_dir;              /* NULL: no logs kept (ephemeral) */
  char *log_path;                   /* made on first use */
  char *fail_message;
  struct {
    void *addr;
    size_t len;
  } *maps;
  size_t n_maps;
  char *tmp_json;                   /* scratch for param accessors */
  char **param_strings;
  size_t n_param_strings;
  /* last: zorch__ctx_init clears the fields above, and of these only the
   * slots the step uses */
  zorch__output_rec out_inline[4];  /* small steps need no allocation */
  char *scratch_inline[4];
};

/** Set up / tear down a context for one attempt of step `i`. */
int zorch__ctx_init(zorch_step_ctx *ctx, zorch__store *store, const zorch__plan *plan, uint32_t i,
                    uint32_t attempt, const zorch__step_rec *recs, atomic_int *cancelled,
                    const char *run_dir);
/** After the function returned 0: publish scratch outputs, check all were written. */
int zorch__ctx_finish(zorch_step_ctx *ctx);
void zorch__ctx_cleanup(zorch_step_ctx *ctx);
/** zorch__ctx_cleanup in two parts: everything but the outputs array (the
 *  outputs stay readable), then that array. */
void zorch__ctx_release(zorch_step_ctx *ctx);
void zorch__ctx_free_outputs(zorch_step_ctx *ctx);
/** What the step function's return value `frc` means: true when the step
 *  succeeded (its outputs are published); false with *error saying why
 *  (malloc'd; NULL only when even that allocation failed). */
bool zorch__ctx_outcome(zorch_step_ctx *ctx, int frc, char **error);
/** Append a line to the step log from zorch itself. */
void zorch__log_append(const char *log_path, const char *fmt, ...) ZORCH_PRINTF(2, 3);

#endif /* ZORCH_CTX_H */
