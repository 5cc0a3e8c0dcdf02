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

/** A list of names whose strings belong to the pipeline (its string arena):
 *  only the array is the list's own. */
typedef struct zorch__names {
  char **v; /* NULL-terminated */
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
} zorch__input;

extern const zorch__settings zorch__no_settings;

enum { ZORCH__STEP_FUNCTION = 0, ZORCH__STEP_COMMAND = 1, ZORCH__STEP_DEFAULTS = 2 };

struct zorch_step {
  zorch_pipeline *pipeline;
  size_t index; /* position in pipeline->steps */
  char *name;
  int kind;
  zorch_step_fn fn;
  void *payload;
  zorch__strv argv;
  zorch__strv outputs;
  zorch__input *inputs;
  size_t n_inputs, cap_inputs;
  zorch__names after;  /* names in the pipeline's string arena */
  zorch__strv use_params;
  zorch__kvs params; /* step-local params */
  /* &zorch__no_settings until the first setting is set (most steps have
   * none: a large pipeline then costs no settings block per step) */
  zorch__settings *settings;
};

struct zorch_pipeline {
  char *name;
  zorch__kvs params; /* declared params with defaults */
  zorch_step **steps;
  size_t n_steps, cap_steps;
  zorch__map *by_name;
  zorch_step defaults;
  zorch__strv entrypoint; /* zorch_pipeline_set_entrypoint(); empty: the program itself */
  void *strings; /* arena of names shared by the steps (freed with the pipeline) */
};

/** Topological order of the steps (indices into pipeline->steps); validates.
 *  *order is malloc'd.  When `edges` is not NULL, *edges (malloc'd) lists the
 *  upstream step of every edge: step by step in pipeline order, each step's
 *  inputs, then its 'after' steps. */
int zorch__pipeline_order(const zorch_pipeline *p, size_t **order, size_t **edges);


#endif
