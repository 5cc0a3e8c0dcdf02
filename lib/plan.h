/* zorch — the executable plan of a deployment document: its steps in
 * topological order, loaded from the document or built by the compiler
 * (plan.c). */
#ifndef ZORCH_PLAN_H
#define ZORCH_PLAN_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "map.h"
#include "pipeline_int.h"

/** The version of the deployment document this library writes and reads. */
#define ZORCH__DEPLOYMENT_VERSION 1

typedef struct zorch__plan zorch__plan;

/** An input: from which step and which of its outputs. */
typedef struct zorch__pin {
  const char *name;
  uint32_t step;
  uint32_t output;
} zorch__pin;

typedef struct zorch__pstep {
  /* what scheduling reads comes first; no padding (a large run has many) */
  const char *name;
  zorch_step_fn fn;         /* function steps, after zorch__plan_bind */
  void *payload;
  int kind;                 /* ZORCH__STEP_FUNCTION / _COMMAND */
  uint32_t n_preds;         /* edges into this step (inputs and 'after') */
  uint32_t succ_off, n_succ;
  double timeout;
  bool cache;
  bool own_env;             /* env allocated for this step (else shared with defaults) */
  uint32_t retries;
  uint32_t n_outputs;
  uint32_t n_inputs;
  const char **argv;        /* command steps: NULL-terminated */
  const char **outputs;
  zorch__pin *inputs;
  json_t *params;           /* object: resolved params (the step's own, or plan->empty) */
  char *params_canon;       /* canonical text of params (sorted keys, compact) */
  const char **env;         /* "K=V" strings, NULL-terminated (may be empty) */
  const char *version;
  const char *image;
  double retry_delay, retry_backoff;
} zorch__pstep;

typedef struct zorch__plan {
  atomic_int refs;
  json_t *doc;              /* the document's members other than "steps" */
  const char *pipeline, *run_id, *run_name, *store_path, *stack, *flavor;
  int failure_mode;
  uint32_t n_steps;
  zorch__pstep *steps;      /* in topological order */
  bool bound;               /* every function step has its function */
  uint32_t n_owning;        /* steps with params or settings of their own (to free) */
  bool steps_big;           /* steps from zorch__big_calloc */
  uint32_t *succ;
  /* name -> (uintptr_t)index+1: made when the plan is loaded from a
   * document, and on the first zorch__plan_find() of a plan the compiler
   * built (a local run may never need it) */
  _Atomic(zorch__map *) by_name;
  pthread_mutex_t find_mu;  /* making by_name */
  zorch__pstep defaults;    /* settings of steps that set none of their own */
  const char *default_version;
  json_t *empty;            /* {} for steps without params */
  zorch__strv strings;      /* strings the plan made (env "K=V") */
  void *arena;              /* names, arrays and strings of the steps */
} zorch__plan;

/** Parse and check a deployment document.  ZORCH_EVERSION when newer than
 *  this library; ZORCH_EINVALID naming the offending field otherwise. */
int zorch__plan_load(zorch__plan **out, const char *deployment_json);

/** A plan under construction: a deployment document fed as text (in one
 *  piece or several), or its header fed as text and the steps added
 *  directly by the compiler (zorch__deployment_compile), which saves parsing
 *  back the document it has just written.  Both ways go through the same
 *  checks and make the same plan. */
typedef struct zorch__plan_builder zorch__plan_builder;

/** One step as the compiler adds it, its references resolved: the members
 *  of its object in the document, with its inputs' and 'after' steps as
 *  indices of earlier steps of the plan.  Strings are copied. */
typedef struct zorch__step_def {
  const char *name;
  uint32_t name_len;              /* strlen(name) */
  int kind;                       /* ZORCH__STEP_FUNCTION / _COMMAND */
  const char *const *command;     /* n_command strings */
  uint32_t n_command;
  const char *const *outputs;     /* n_outputs strings */
  uint32_t n_outputs;
  const zorch__pin *inputs;       /* n_inputs inputs, in the order the step declares them */
  uint32_t n_inputs;
  const uint32_t *after;          /* n_after indices of earlier steps of the plan */
  uint32_t n_after;
  json_t *params;                 /* taken: the step's resolved params, or NULL */
  json_t *settings;               /* taken: the step's own settings, or NULL */
  const char *version;            /* NULL: the document's default */
  zorch_step_fn fn;               /* function steps: bound at once */
  void *payload;
  uint32_t succ_off, n_succ;      /* see zorch__plan_builder_direct (succ_at) */
} zorch__step_def;

/** `trusted`: the steps come from a validated pipeline (the compiler): their
 *  names are not checked again and no name map is made while building. */
int zorch__plan_builder_new(zorch__plan_builder **out, bool trusted);
/** Parse the next piece of the document's text. */
int zorch__plan_builder_feed(zorch__plan_builder *b, const char *text, size_t len);
/** The compiler's way: once the text fed ends inside the "steps" array, the
 *  plan has n_steps steps, step k with pred_count[k] predecessors (its
 *  'after' steps and its inputs' steps) and its name at name_off[k] of one
 *  block of name_off[n_steps] bytes (name_off lives until the last step is
 *  put); each step is then put in its place, in any order, with
 *  zorch__plan_builder_put() or _put_plain().  `succ_at`: NULL (finishing
 *  the plan counts every step's successors), or n_steps + 1 entries (from
 *  zorch__big_calloc; taken) where the caller writes, before the plan is
 *  finished, where step k's successor list begins (the lists in plan
 *  order, one entry per time a later step names it); each step is then put
 *  with that place and its number of successors (def->succ_off, n_succ). */
int zorch__plan_builder_direct(zorch__plan_builder *b, uint32_t n_steps, const uint32_t *pred_count,
                               const uint32_t *name_off, uint32_t *succ_at);
/** Put step k (each once); the steps it names must be earlier ones. */
int zorch__plan_builder_put(zorch__plan_builder *b, uint32_t k, const zorch__step_def *def);
/** Put step k when it has only a name, a kind, a function and 'after'
 *  steps (no inputs, outputs, command, params, settings or own version): it
 *  writes nothing but the step's own parts.  A failure is returned (with
 *  the thread's error), not kept in the builder. */
int zorch__plan_builder_put_plain(zorch__plan_builder *b, uint32_t k, const zorch__step_def *def);
/** The plan under construction (its steps are read-only). */
const zorch__plan *zorch__plan_builder_plan(const zorch__plan_builder *b);
/** Step k's predecessors as put: its 'after' steps, then its inputs' steps. */
const uint32_t *zorch__plan_builder_preds(const zorch__plan_builder *b, uint32_t k, uint32_t *n);
/** Check the document is complete and hand the plan over; frees the builder. */
int zorch__plan_builder_finish(zorch__plan_builder *b, zorch__plan **out);
/** Give up on a builder (after an error). */
void zorch__plan_builder_free(zorch__plan_builder *b);

/** Attach each function step's callback from the in-memory pipeline (steps
 *  that have one already, from zorch__deployment_compile, keep it). */
int zorch__plan_bind(zorch__plan *plan, const zorch_pipeline *p);

/** Index of a step, or -1. */
int64_t zorch__plan_find(const zorch__plan *plan, const char *name);

/** Take one more reference; zorch__plan_free() drops one and frees at zero. */
zorch__plan *zorch__plan_ref(zorch__plan *plan);
void zorch__plan_free(zorch__plan *plan);

#endif /* ZORCH_PLAN_H */
