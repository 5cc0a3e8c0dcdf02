/* zorch — pipeline internals shared by pipeline.c, deployment.c and run.c. */
#ifndef ZORCH_PIPELINE_INT_H
#define ZORCH_PIPELINE_INT_H

#include "internal.h"
#include "map.h"

typedef struct zorch__kv {
  char *key;
  char *value; /* JSON text for params/flavor settings, plain string for env */
} zorch__kv;

typedef struct zorch__kvs {
  zorch__kv *v;
  size_t n, cap;
} zorch__kvs;

int zorch__kvs_set(zorch__kvs *kvs, const char *key, const char *value);
const char *zorch__kvs_get(const zorch__kvs *kvs, const char *key);
void zorch__kvs_free(zorch__kvs *kvs);

typedef struct zorch__strv {
  char **v;
  size_t n, cap;
} zorch__strv;

int zorch__strv_push(zorch__strv *s, const char *str);
bool zorch__strv_has(const zorch__strv *s, const char *str);
void zorch__strv_clear(zorch__strv *s);

/** An upstream step not added yet when a step was wired to it. */
#define ZORCH__UNRESOLVED UINT32_MAX

/** A step's 'after' dependencies: their names, whose strings belong to the
 *  pipeline (the upstream step's own name, or a copy in its string arena;
 *  only the arrays are the list's own), and the index of each upstream step
 *  in pipeline->steps, looked up when the dependency was added
 *  (ZORCH__UNRESOLVED when that step did not exist yet: validation looks it
 *  up by name). */
typedef struct zorch__names {
  char **v;      /* NULL-terminated */
  uint32_t *idx; /* in v's block */
  size_t n, cap;
} zorch__names;

/** Per-step settings; has_* tell which were set (defaults fill the rest). */
typedef struct zorch__settings {
  bool has_cpu, has_memory, has_gpu, has_retry, has_timeout, has_cache;
  double cpu;
  uint64_t memory;
  uint32_t gpu;
  char *gpu_type;
  uint32_t retries;
  double retry_delay, retry_backoff;
  double timeout;
  bool cache;
  char *image;
  char *version;
  zorch__kvs env;
  zorch__kvs flavor; /* flavor name -> JSON object text */
} zorch__settings;

typedef struct zorch__input {
  char *name, *from_step, *from_output;
  uint32_t from_idx; /* index of from_step, or ZORCH__UNRESOLVED (see zorch__names) */
} zorch__input;

extern const zorch__settings zorch__no_settings;

enum { ZORCH__STEP_FUNCTION = 0, ZORCH__STEP_COMMAND = 1, ZORCH__STEP_DEFAULTS = 2 };

struct zorch_step {
  /* what validating and compiling a large pipeline reads of every step
   * comes first (two cache lines) */
  char *name;
  uint32_t name_len; /* strlen(name) */
  int kind;
  size_t n_inputs, cap_inputs;
  zorch__input *inputs;
  zorch__names after;
  /* &zorch__no_settings until the first setting is set (most steps have
   * none: a large pipeline then costs no settings block per step) */
  zorch__settings *settings;
  zorch_step_fn fn;
  void *payload;
  zorch__strv use_params;
  zorch__kvs params; /* step-local params */
  zorch__strv argv;
  zorch__strv outputs;
  zorch_pipeline *pipeline;
  size_t index; /* position in pipeline->steps */
};

struct zorch_pipeline {
  char *name;
  zorch__kvs params; /* declared params with defaults */
  zorch_step **steps;
  size_t n_steps, cap_steps;
  size_t n_edges;    /* inputs and 'after' dependencies of all steps */
  size_t n_function; /* function steps */
  zorch__map *by_name;
  zorch_step defaults;
  zorch__strv entrypoint; /* zorch_pipeline_set_entrypoint(); empty: the program itself */
  void *strings; /* arena of names shared by the steps (freed with the pipeline) */
  void *names;   /* arena of the steps' own names */
};

/** In a loop over the steps (in pipeline order, or in the order `order`
 *  when not NULL), ask for what the steps a few places ahead of place i hold
 *  (a large pipeline's steps miss the cache). */
static inline void zorch__prefetch_step(const zorch_pipeline *p, const uint32_t *order, size_t i) {
  if (i + 16 < p->n_steps) {
    const char *s = (const char *)p->steps[order ? order[i + 16] : i + 16];
    __builtin_prefetch(s);
    __builtin_prefetch(s + 64);
    __builtin_prefetch(s + 128);
  }
  if (i + 8 < p->n_steps) __builtin_prefetch(p->steps[order ? order[i + 8] : i + 8]->after.v);
}

/** A validated pipeline's steps in topological order: level by level
 *  (Kahn's algorithm, a FIFO seeded with the steps that depend on none, in
 *  the order they were added). */
typedef struct zorch__topo {
  /* place in the order -> index in pipeline->steps, and back */
  uint32_t *order, *pos;
  /* when asked for: the upstream (index in pipeline->steps) of every edge,
   * step by step in pipeline order: each step's inputs, then its 'after'
   * steps; and where each step's edges begin (n_steps + 1 entries) */
  uint32_t *edges, *eoff;
  /* with the edges: where each step's successors would begin in a list of
   * all of them, one per edge (n_steps + 1 entries; step i has
   * succ_off[i + 1] - succ_off[i]) */
  uint32_t *succ_off;
  /* with the edges: what a plan needs of most steps, in pipeline order (a
   * compact copy, read in plan order) */
  struct zorch__tstep *steps;
} zorch__topo;

typedef struct zorch__tstep {
  const char *name;
  zorch_step_fn fn;
  void *payload;
  uint32_t name_len;
  uint8_t kind;
  bool rare; /* it has more than a name, a function and 'after' steps */
} zorch__tstep;


/** Validate the pipeline and order its steps.  `want_edges`: fill t->edges. */
int zorch__pipeline_order(const zorch_pipeline *p, zorch__topo *t, bool want_edges);
void zorch__topo_free(zorch__topo *t);


#endif
