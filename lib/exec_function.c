/* zorch — the executor's function-step launcher: a pool of worker threads
 * (one per slot of max_parallel, up to the number of function steps), each
 * taking steps from x->fq, calling the step's function with its context and
 * doing the bookkeeping of its end itself (see exec_launch.h). */
#include "exec_launch.h"

#include "cache.h"
#include "ctx.h"

/* A worker's own state. */
typedef struct worker {
  zorch__buf buf[2]; /* scratch for a step's key text, outputs, cache entry and record */
} worker;

/* Run one attempt of function step i.  Called with the lock held and
 * returns with it held; the lock is free while the function runs and while
 * the end record is made and journaled. */
static void run_function(zorch__exec *x, uint32_t i, uint32_t attempt, worker *w) {
  zorch__buf *line = w->buf;
  const zorch__pstep *s = &x->plan->steps[i];
  pthread_mutex_unlock(&x->lock);
  zorch_step_ctx ctx;
  char *err = NULL;
  bool ok = false;
  int rc = zorch__ctx_init(&ctx, x->store, x->plan, i, attempt, x->recs, &x->xs[i].cancelled,
                           x->run_dir);
  if (rc) {
    err = zorch__asprintf("cannot set up the step: %s", zorch_error_last()->message);
  } else {
    if (attempt > 1) zorch_ctx_log(&ctx, "--- zorch: attempt %u ---", attempt);
    int frc = s->fn(&ctx, s->payload);
    /* the completion counts the successors down under the lock: fetch their
     * counters now (while the end is recorded), so that the lock is held
     * for less */
    for (uint32_t e = 0; e < s->n_succ; e++) {
      uint32_t j = x->plan->succ[s->succ_off + e];
      __builtin_prefetch(&x->remaining[j], 1);
      __builtin_prefetch(&x->sflags[j], 1);
    }
    /* the loop sets `cancelled` whenever it times a step out or stops it */
    bool timed_out = false, stopped = false;
    if (atomic_load(&x->xs[i].cancelled)) {
      pthread_mutex_lock(&x->lock);
      timed_out = x->xs[i].timed_out;
      stopped = x->xs[i].stop_requested;
      pthread_mutex_unlock(&x->lock);
    }
    if (timed_out) {
      err = zorch__asprintf("timed out after %g s", s->timeout);
    } else if (stopped) {
      err = NULL;
    } else {
      ok = zorch__ctx_outcome(&ctx, frc, &err);
    }
    if (!ok && err) zorch_ctx_log(&ctx, "zorch: step failed: %s", err);
  }
  /* Success: the end record is made and journaled, and the cache entry
   * appended, here, outside the lock.  Nothing else writes this step's
   * record while it runs (the success always ends it as completed, see
   * zorch__exec_attempt_done), its successors are made ready only under
   * the lock below (so their lines follow this one), and its outputs are
   * published already (the record and the entry may name them). */
  bool cache_done = false, recorded = false;
  double finished = 0;
  char key[ZORCH__DIGEST_HEX] = "";
  if (ok) {
    const zorch__step_rec *r = &x->recs[i];
    finished = step_clock(x);
    /* the key, when the run records one: made when the step became ready,
     * or here (its inputs are final); written to the record under the lock
     * below */
    if (r->cache_key && r->cache_key[0]) memcpy(key, r->cache_key, sizeof key);
    else if (x->cache && s->cache) zorch__cache_key_with(&line[0], x->plan, i, x->recs, key);
    if (x->cache && key[0]) {
      zorch__step_rec tmp = *r;
      tmp.outputs = ctx.outputs;
      line[0].len = 0;
      if (zorch__outputs_json_to(&line[1], x->plan, i, &tmp) == ZORCH_OK &&
          zorch__cache_entry_line(&line[0], key, line[1].data) == ZORCH_OK)
        zorch__cache_append_lines(x->cache, line[0].data, line[0].len); /* a lost entry costs a re-run */
      cache_done = true;
    }
    if (x->journal) {
      zorch__step_rec tmp = *r;
      tmp.cache_key = key;
      tmp.status = ZORCH_STATUS_COMPLETED;
      tmp.finished = finished;
      tmp.exit_code = -1;
      tmp.error = NULL;
      tmp.outputs = ctx.outputs;
      line[0].len = 0;
      /* a line that cannot be made or appended is made again under the lock */
      recorded = zorch__step_rec_json(&line[0], x->plan, i, &tmp) == ZORCH_OK &&
                 zorch__journal_append(x->journal, line[0].data, line[0].len) == ZORCH_OK;
    }
  }
  /* the outputs stay in ctx until zorch__exec_attempt_done has copied them */
  if (rc == ZORCH_OK) zorch__ctx_release(&ctx);
  pthread_mutex_lock(&x->lock);
  if (ok) {
    x->pre_step = i;
    x->pre_recorded = recorded;
    x->pre_cache_done = cache_done;
    x->pre_finished = finished;
    if (key[0] && x->recs[i].cache_key) memcpy(x->recs[i].cache_key, key, sizeof key);
  }
  zorch__exec_attempt_done_on(x, &x->fn_self_take, i, ok, err, -1, ok ? ctx.outputs : NULL);
  if (rc == ZORCH_OK) zorch__ctx_free_outputs(&ctx);
}

void *zorch__exec_function_worker(void *arg) {
  zorch__exec *x = arg;
  pthread_setname_np(pthread_self(), "zorch-worker");
  worker w = {.buf = {ZORCH__BUF_INIT, ZORCH__BUF_INIT}};
  pthread_mutex_lock(&x->lock);
  for (;;) {
    uint32_t i = zorch__exec_next(x, &x->fq, &x->work_cv, &x->n_idle, &x->fn_self_take);
    if (i == UINT32_MAX) break;
    x->xs[i].started = true;
    if (x->sflags[i] & SF_TIMEOUT) { /* the loop learns the deadline only now: wake it */
      x->xa[i].deadline_ns = zorch__mono_ns() + (int64_t)(x->plan->steps[i].timeout * 1e9);
      zorch__exec_wake_loop(x);
    }
    /* the completion takes the next step in the same critical section */
    run_function(x, i, x->recs[i].attempts, &w);
  }
  pthread_mutex_unlock(&x->lock);
  zorch__buf_free(&w.buf[0]);
  zorch__buf_free(&w.buf[1]);
  return NULL;
}

