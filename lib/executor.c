/* zorch — the DAG executor: the scheduler.
 *
 * One scheduler lock protects all scheduling state.  The scheduler counts
 * each step's predecessors down as they end, makes a step whose count
 * reaches zero ready (or cached, or skipped), and dispatches ready steps up
 * to max_parallel, each to its launcher (see exec_launch.h): function steps
 * run on a pool of worker threads (exec_function.c), command steps on a
 * second pool, one thread per slot of max_parallel, that spawns the process
 * and waits for it on a pidfd while copying its output into the step's log
 * (exec_command.c), remote steps through a plugin (exec_remote.c).  A worker
 * that finishes a step does the bookkeeping itself (propagates to
 * successors, dispatches ready steps) and takes the next step of its kind
 * without sleeping when one is ready.  So a chain of commands costs no
 * thread hand-off per step, and the slots of a fan-out spawn in parallel
 * (posix_spawn blocks its caller until the child has exec'd; one spawning
 * thread would serialise that).  The event-loop thread handles timeouts,
 * retry delays, cancellation and remote steps.  Every scheduling operation
 * is O(1) or O(out-degree): no scan of all steps per completion.
 */
#include "exec_launch.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cache.h"

/* ---- executor state ---------------------------------------------------------------------- */

static int ring_init(ring *r, size_t cap) {
  r->cap = cap ? cap : 1;
  r->v = zorch__big_calloc(r->cap, sizeof *r->v);
  r->head = r->len = 0;
  return r->v ? ZORCH_OK : zorch__error_oom();
}

/* Set on an executor's event-loop thread: it needs no wake-up from itself,
 * because it looks at its queues and timers again before it sleeps. */
static _Thread_local const zorch__exec *loop_of_this_thread;

void zorch__exec_wake_loop(zorch__exec *x) {
  if (loop_of_this_thread == x) return;
  uint64_t one = 1;
  ssize_t r = write(x->evfd, &one, sizeof one);
  (void)r;
}

static void progress(zorch__exec *x, uint32_t i, int status) {
  if (x->opts.progress_cb)
    x->opts.progress_cb(x->plan->run_id ? x->plan->run_id : "", x->plan->steps[i].name, status,
                        x->opts.progress_payload);
}

void zorch__exec_record(zorch__exec *x, uint32_t i) {
  if (!x->journal) return;
  if (x->pre_recorded && x->pre_step == i) { /* journaled by its worker */
    x->pre_recorded = false;
    return;
  }
  zorch__buf b = ZORCH__BUF_INIT;
  if (zorch__step_rec_json(&b, x->plan, i, &x->recs[i]) == ZORCH_OK)
    zorch__journal_append(x->journal, b.data, b.len);
  zorch__buf_free(&b);
}

static void set_error(zorch__step_rec *r, char *msg) {
  free(r->error);
  r->error = msg;
}

static void active_add(zorch__exec *x, uint32_t i) {
  x->active[x->n_active++] = i;
  x->xs[i].active = x->n_active;
}

static void active_remove(zorch__exec *x, uint32_t i) {
  uint32_t slot = x->xs[i].active;
  if (!slot) return;
  uint32_t last = x->active[--x->n_active];
  x->active[slot - 1] = last;
  x->xs[last].active = slot;
  x->xs[i].active = 0;
}

/* Step i reached a terminal status: record it, tell its successors.  Lock held. */
static void step_terminal(zorch__exec *x, uint32_t i, int status) {
  zorch__step_rec *r = &x->recs[i];
  r->status = status;
  if (!r->finished) r->finished = zorch__now();
  x->xs[i].terminal = true;
  x->n_done++;
  if (status == ZORCH_STATUS_FAILED) x->n_failed++;
  zorch__exec_record(x, i);
  progress(x, i, status);
  const zorch__pstep *s = &x->plan->steps[i];
  bool ok = status == ZORCH_STATUS_COMPLETED || status == ZORCH_STATUS_CACHED;
  for (uint32_t e = 0; e < s->n_succ; e++) {
    uint32_t j = x->plan->succ[s->succ_off + e];
    if (!ok && !(x->sflags[j] & SF_UPSTREAM_FAILED)) {
      x->sflags[j] |= SF_UPSTREAM_FAILED;
      x->xs[j].upstream = i + 1;
    }
    if (--x->remaining[j] == 0) x->work[x->n_work++] = j;
  }
}

static bool cache_hit(zorch__exec *x, uint32_t i) {
  zorch__step_rec *r = &x->recs[i];
  const char *outs = zorch__cache_lookup(x->cache, r->cache_key);
  if (!outs) return false;
  const zorch__pstep *s = &x->plan->steps[i];
  if (s->n_outputs == 0) return outs[0] == '['; /* no output to check: no need to parse */
  json_t *arr = json_loads(outs, 0, NULL);
  if (!json_is_array(arr)) {
    json_decref(arr);
    return false;
  }
  bool ok = true;
  for (uint32_t k = 0; k < s->n_outputs && ok; k++) {
    ok = false;
    for (size_t q = 0; q < json_array_size(arr); q++) {
      json_t *o = json_array_get(arr, q);
      const char *nm = json_string_value(json_object_get(o, "name"));
      const char *dg = json_string_value(json_object_get(o, "digest"));
      if (!nm || strcmp(nm, s->outputs[k]) != 0 || !zorch__is_digest(dg)) continue;
      if (!zorch__store_has(x->store, dg)) break;
      memcpy(r->outputs[k].digest, dg, ZORCH__DIGEST_HEX);
      r->outputs[k].size = (uint64_t)json_integer_value(json_object_get(o, "size"));
      const char *kind = json_string_value(json_object_get(o, "kind"));
      r->outputs[k].is_dir = kind && !strcmp(kind, "dir");
      r->outputs[k].set = true;
      ok = true;
      break;
    }
  }
  json_decref(arr);
  return ok;
}

/* All predecessors of i are done.  Lock held. */
static void make_ready(zorch__exec *x, uint32_t i) {
  zorch__step_rec *r = &x->recs[i];
  if (x->cancelled) return; /* marked stopped when the run ends */
  if (x->sflags[i] & SF_UPSTREAM_FAILED) {
    set_error(r, zorch__asprintf("not run: upstream step '%s' did not complete", x->plan->steps[x->xs[i].upstream - 1].name));
    step_terminal(x, i, ZORCH_STATUS_SKIPPED);
    return;
  }
  if (x->stopping) return; /* left pending; marked when the run ends */
  /* with the cache off the key is needed only for the records: a function
   * step's worker computes it outside the lock (see ensure_cache_key) */
  if (x->cache && !(x->opts.flags & ZORCH_RUN_NO_CACHE) && (x->sflags[i] & SF_CACHE)) {
    zorch__cache_key_with(&x->key_text, x->plan, i, x->recs, r->cache_key);
    if (cache_hit(x, i)) {
      r->started = r->finished = zorch__now();
      step_terminal(x, i, ZORCH_STATUS_CACHED);
      return;
    }
  }
  ring_push(&x->ready, i);
}

static void dispatch(zorch__exec *x) {
  bool wake = false;
  double now = x->now_hint;
  while (!x->stopping && x->running < x->max_parallel && x->ready.len) {
    if (!now) now = step_clock(x);
    uint32_t i = ring_pop(&x->ready);
    if (x->ready.len) { /* most likely the next to go: fetch its state meanwhile */
      uint32_t nx = x->ready.v[x->ready.head];
      __builtin_prefetch(&x->recs[nx], 1);
      __builtin_prefetch(&x->xs[nx], 1);
    }
    zorch__step_rec *r = &x->recs[i];
    x->running++;
    r->attempts++;
    r->status = ZORCH_STATUS_RUNNING;
    r->started = now;
    r->finished = 0;
    r->exit_code = -1;
    x->xs[i].timed_out = x->xs[i].killing = false;
    if (x->xa) x->xa[i].deadline_ns = 0;
    /* under the lock, which orders it before the step's worker reads it */
    atomic_store_explicit(&x->xs[i].cancelled, 0, memory_order_relaxed);
    active_add(x, i);
    /* a remote step's start is journaled here, a command step's once its
     * process has run a moment (see START_RECORD_DELAY_NS): both can run
     * long enough for another process to want to see them.  A function step
     * records only its end. */
    if (x->remote) zorch__exec_record(x, i);
    progress(x, i, ZORCH_STATUS_RUNNING);
    if (zorch__exec_launch(x, i, r->attempts)) wake = true;
  }
  if (wake) zorch__exec_wake_loop(x);
}

static void check_done(zorch__exec *x) {
  if (x->sched_done) return;
  if (x->n_done == x->n || (x->stopping && x->running == 0)) {
    x->sched_done = true;
    zorch__exec_wake_loop(x);
  }
}

static void drain(zorch__exec *x) {
  while (x->n_work) make_ready(x, x->work[--x->n_work]);
  dispatch(x);
  check_done(x);
}

static void kill_active(zorch__exec *x) {
  int64_t now = zorch__mono_ns();
  for (uint32_t a = 0; a < x->n_active; a++) {
    uint32_t i = x->active[a];
    x->xs[i].stop_requested = true;
    zorch__exec_stop(x, i, now, false);
  }
  zorch__exec_wake_loop(x);
}

static void step_failed_finally(zorch__exec *x, uint32_t i) {
  step_terminal(x, i, ZORCH_STATUS_FAILED);
  int mode = x->plan->failure_mode;
  if (mode == ZORCH_CONTINUE_ON_FAILURE || x->stopping) return;
  x->stopping = true;
  free(x->stop_reason);
  x->stop_reason = zorch__asprintf(
      "step '%s' failed and the run uses %s", x->plan->steps[i].name,
      mode == ZORCH_FAIL_FAST ? "fail_fast" : "stop_on_failure");
  if (mode == ZORCH_FAIL_FAST) kill_active(x);
}

/* The cache key of step i, when the run records one and it is not made yet
 * (with the cache off, make_ready leaves it to the end of the attempt).
 * Lock held. */
static void ensure_cache_key(zorch__exec *x, uint32_t i) {
  zorch__step_rec *r = &x->recs[i];
  if (x->cache && x->plan->steps[i].cache && !r->cache_key[0])
    zorch__cache_key_with(&x->key_text, x->plan, i, x->recs, r->cache_key);
}

void zorch__exec_attempt_done(zorch__exec *x, uint32_t i, bool ok, char *error, int exit_code,
                              const zorch__output_rec *outs) {
  zorch__step_rec *r = &x->recs[i];
  xstep *xs = &x->xs[i];
  const zorch__pstep *s = &x->plan->steps[i];
  x->running--;
  active_remove(x, i);
  if (x->xa) x->xa[i].pid = 0;
  xs->started = false;
  xs->killing = false;
  r->exit_code = exit_code;
  /* the time its worker saw it end (and wrote into its record), if known */
  r->finished = x->pre_step == i && x->pre_finished ? x->pre_finished : zorch__now();
  x->now_hint = r->finished;
  ensure_cache_key(x, i);
  if (ok) {
    for (uint32_t k = 0; k < s->n_outputs; k++) r->outputs[k] = outs[k];
    set_error(r, NULL);
    free(error);
    step_terminal(x, i, ZORCH_STATUS_COMPLETED);
    if (x->cache && r->cache_key[0] && !x->pre_cache_done) {
      char *oj = zorch__outputs_json(x->plan, i, r);
      if (oj) zorch__cache_append(x->cache, r->cache_key, oj); /* no step of this run looks it up */
      free(oj);
    }
  } else if (xs->stop_requested) {
    free(error);
    set_error(r, x->cancelled ? zorch__strdup("stopped: the run was cancelled")
                              : zorch__asprintf("stopped: %s", x->stop_reason ? x->stop_reason : "the run stopped"));
    step_terminal(x, i, ZORCH_STATUS_STOPPED);
  } else {
    set_error(r, error);
    if (r->attempts <= s->retries && !x->stopping) {
      r->status = ZORCH_STATUS_RETRYING;
      zorch__exec_record(x, i);
      progress(x, i, ZORCH_STATUS_RETRYING);
      double delay = s->retry_delay * pow(s->retry_backoff, (double)(r->attempts - 1));
      x->xa[i].retry_due_ns = zorch__mono_ns() + (int64_t)(delay * 1e9); /* a run with retries has xa */
      ring_push(&x->retry, i);
      zorch__exec_wake_loop(x);
    } else {
      step_failed_finally(x, i);
    }
  }
  x->pre_recorded = false;
  x->pre_cache_done = false;
  x->pre_finished = 0;
  drain(x);
  x->now_hint = 0;
}

/* ---- the event loop --------------------------------------------------------------------------- */

/* Handle deadlines and retry timers; returns the ms until the next one (-1: none). Lock held. */
static int timers(zorch__exec *x) {
  int64_t now = zorch__mono_ns(), next = INT64_MAX;
  for (uint32_t a = 0; x->xa && a < x->n_active; a++) { /* deadlines only where there is xa */
    uint32_t i = x->active[a];
    xstep *xs = &x->xs[i];
    xaux *xa = &x->xa[i];
    if (!xa->deadline_ns || !xs->started) continue;
    if (xa->deadline_ns > now) {
      if (xa->deadline_ns < next) next = xa->deadline_ns;
      continue;
    }
    /* its launcher stops it (a function step is failed when it returns)
     * and may set a later deadline (SIGKILL after SIGTERM) */
    zorch__exec_stop(x, i, now, true);
    if (xa->deadline_ns && xa->deadline_ns < next) next = xa->deadline_ns;
  }
  for (size_t r = x->retry.len; r > 0; r--) {
    uint32_t i = ring_pop(&x->retry);
    if (x->stopping) {
      ring_push(&x->retry, i); /* kept: failed at the end */
      continue;
    }
    if (x->xa[i].retry_due_ns <= now) {
      ring_push(&x->ready, i);
    } else {
      if (x->xa[i].retry_due_ns < next) next = x->xa[i].retry_due_ns;
      ring_push(&x->retry, i);
    }
  }
  if (next == INT64_MAX) return -1;
  int64_t ms = (next - now + 999999) / 1000000;
  return ms > 60000 ? 60000 : (int)ms;
}

static void finalize(zorch__exec *x) {
  /* When every step ended (the usual case) there is nothing to mark, and
   * the failures were counted: no pass over all steps. */
  for (uint32_t i = 0; x->n_done < x->n && i < x->n; i++) {
    zorch__step_rec *r = &x->recs[i];
    if (!x->xs[i].terminal) {
      int st;
      if (r->status == ZORCH_STATUS_RETRYING) {
        st = ZORCH_STATUS_FAILED;
      } else if (x->cancelled) {
        st = ZORCH_STATUS_STOPPED;
        set_error(r, zorch__strdup("not run: the run was cancelled"));
      } else {
        st = ZORCH_STATUS_SKIPPED;
        set_error(r, zorch__asprintf("not run: %s", x->stop_reason ? x->stop_reason : "the run stopped"));
      }
      r->finished = r->started ? zorch__now() : 0;
      r->status = st;
      x->xs[i].terminal = true;
      x->n_done++;
      if (st == ZORCH_STATUS_FAILED) x->n_failed++;
      zorch__exec_record(x, i);
      progress(x, i, st);
    }
  }
  bool any_failed = x->n_failed > 0;
  zorch__buf msg = ZORCH__BUF_INIT;
  if (x->cancelled) {
    x->run_status = ZORCH_STATUS_STOPPED;
    zorch__buf_puts(&msg, "the run was cancelled");
  } else if (any_failed) {
    x->run_status = ZORCH_STATUS_FAILED;
    size_t nf = 0;
    for (uint32_t i = 0; i < x->n; i++) {
      if (x->recs[i].status != ZORCH_STATUS_FAILED) continue;
      if (nf++ < 5)
        zorch__buf_printf(&msg, "%sstep '%s' failed: %s", nf > 1 ? "; " : "",
                          x->plan->steps[i].name, x->recs[i].error ? x->recs[i].error : "");
    }
    if (nf > 5) zorch__buf_printf(&msg, "; and %zu more failed steps", nf - 5);
  } else {
    x->run_status = ZORCH_STATUS_COMPLETED;
  }
  x->run_message = msg.data ? zorch__buf_detach(&msg) : NULL;
}

/* The scheduling state (per-step state, counters, queues): freed as soon as
 * the run has ended, and again (no-op) when the executor is. */
static void sched_state_free(zorch__exec *x) {
  zorch__big_free(x->xs);
  zorch__big_free(x->xa);
  zorch__big_free(x->remaining);
  zorch__big_free(x->sflags);
  x->xs = NULL;
  x->xa = NULL;
  x->remaining = NULL;
  x->sflags = NULL;
  ring *rings[] = {&x->ready, &x->fq, &x->cq, &x->retry, &x->rq, &x->sq};
  for (size_t k = 0; k < sizeof rings / sizeof *rings; k++) {
    zorch__big_free(rings[k]->v);
    rings[k]->v = NULL;
  }
  zorch__big_free(x->work);
  x->work = NULL;
}

static void *loop_main(void *arg) {
  pthread_setname_np(pthread_self(), "zorch-loop");
  zorch__exec *x = arg;
  loop_of_this_thread = x;
  pthread_mutex_lock(&x->lock);
  for (;;) {
    if (atomic_load(&x->cancel_flag) && !x->cancelled) {
      x->cancelled = true;
      x->stopping = true;
      kill_active(x);
    }
    if (x->remote) zorch__exec_remote_pump(x);
    int timeout = timers(x);
    drain(x);
    if (x->sched_done) break;
    if (x->rq.len || x->sq.len) continue;
    pthread_mutex_unlock(&x->lock);
    struct pollfd pf = {.fd = x->evfd, .events = POLLIN};
    if (poll(&pf, 1, timeout) > 0) {
      uint64_t v;
      ssize_t r = read(x->evfd, &v, sizeof v);
      (void)r;
    }
    pthread_mutex_lock(&x->lock);
  }
  finalize(x);
  x->shutdown = true;
  pthread_cond_broadcast(&x->work_cv);
  pthread_cond_broadcast(&x->cmd_cv);
  pthread_mutex_unlock(&x->lock);
  for (uint32_t w = 0; w < x->n_workers; w++) pthread_join(x->workers[w], NULL);
  for (uint32_t w = 0; w < x->n_cmd_workers; w++) pthread_join(x->cmd_workers[w], NULL);
  /* only command steps have scratch outputs to remove */
  if (x->n_cmd_workers) zorch__exec_command_cleanup(x);
  int jrc = zorch__journal_close(x->journal);
  x->journal = NULL;
  zorch__cache_close(x->cache);
  x->cache = NULL;
  if (jrc && x->run_status == ZORCH_STATUS_COMPLETED) {
    x->run_status = ZORCH_STATUS_FAILED;
    free(x->run_message);
    x->run_message = zorch__asprintf("cannot write the run journal: %s", zorch_error_last()->message);
  }
  if (x->opts.finish_cb) x->opts.finish_cb(x->run_status, x->run_message, x->opts.finish_payload);
  pthread_mutex_lock(&x->lock);
  x->finished = true;
  pthread_cond_broadcast(&x->done_cv);
  pthread_mutex_unlock(&x->lock);
  /* The scheduling state is not needed any more: its memory goes back now,
   * after the waiter was told (a late zorch__exec_remote_done() finds it
   * gone, under the lock; zorch__exec_free() joins this thread). */
  pthread_mutex_lock(&x->lock);
  sched_state_free(x);
  pthread_mutex_unlock(&x->lock);
  return NULL;
}

/* ---- public (internal) API ---------------------------------------------------------------------- */

static void exec_destroy(zorch__exec *x) {
  if (!x) return;
  zorch__buf_free(&x->key_text);
  if (x->evfd >= 0) close(x->evfd);
  zorch__exec_command_free(x);
  zorch__journal_close(x->journal);
  zorch__cache_close(x->cache);
  zorch__step_recs_free(x->recs, x->n);
  sched_state_free(x);
  zorch__remote_free(x->remote);
  free(x->active);
  free(x->workers);
  free(x->cmd_workers);
  free(x->run_dir);
  free(x->stop_reason);
  free(x->run_message);
  zorch__plan_free(x->plan);
  pthread_mutex_destroy(&x->lock);
  pthread_cond_destroy(&x->work_cv);
  pthread_cond_destroy(&x->cmd_cv);
  pthread_cond_destroy(&x->done_cv);
  free(x);
}

/* One part [lo, hi) of a run's steps, set up by zorch__exec_start. */
typedef struct init_part {
  zorch__exec *x;
  uint32_t lo, hi;
  size_t n_out, out_off;     /* the part's output slots; where they start */
  zorch__output_rec *outs;
  char *keys;                /* the key block, NULL when the run makes no keys */
  uint32_t n_func, n_cmd, n_retry, n_timeout;
  uint32_t unbound;          /* first function step without a function, or UINT32_MAX */
} init_part;

static void *init_part_count(void *arg) {
  init_part *p = arg;
  p->n_out = zorch__step_recs_count_outputs(p->x->plan, p->lo, p->hi);
  return NULL;
}

static void *init_part_state(void *arg) {
  init_part *p = arg;
  zorch__exec *x = p->x;
  const zorch__plan *plan = x->plan;
  zorch__step_recs_init(plan, x->recs, p->outs, p->keys, p->lo, p->hi, p->out_off);
  p->unbound = UINT32_MAX;
  for (uint32_t i = p->lo; i < p->hi; i++) {
    const zorch__pstep *s = &plan->steps[i];
    x->remaining[i] = s->n_preds;
    x->sflags[i] = (uint8_t)((s->kind == ZORCH__STEP_FUNCTION && !x->remote ? SF_WORKER : 0) |
                             (s->timeout > 0 ? SF_TIMEOUT : 0) | (s->cache ? SF_CACHE : 0));
    if (s->retries) p->n_retry++;
    if (s->timeout > 0) p->n_timeout++;
    if (s->kind == ZORCH__STEP_FUNCTION && !x->remote) {
      p->n_func++;
      if (!s->fn && p->unbound == UINT32_MAX) p->unbound = i;
    } else if (s->kind == ZORCH__STEP_COMMAND && !x->remote) {
      p->n_cmd++;
    }
  }
  return NULL;
}

/* fn over both parts, the second on a helper thread when `two` (and the
 * helper can be made); whether it can be again. */
static bool both_parts(void *(*fn)(void *), init_part parts[2], bool two) {
  pthread_t helper;
  two = two && pthread_create(&helper, NULL, fn, &parts[1]) == 0;
  fn(&parts[0]);
  if (two) pthread_join(helper, NULL);
  else fn(&parts[1]);
  return two;
}

int zorch__exec_start(zorch__exec **out, zorch__plan *plan, zorch__store *store,
                      const zorch__exec_opts *opts) {
  *out = NULL;
  zorch__exec *x = calloc(1, sizeof *x);
  if (!x) {
    zorch__remote_free(opts->remote);
    zorch__plan_free(plan);
    return zorch__error_oom();
  }
  x->plan = plan;
  x->store = store;
  x->opts = *opts;
  x->remote = opts->remote;
  x->opts.remote = NULL;
  x->n = plan->n_steps;
  x->evfd = -1;
  /* critical sections are short (a completion, a dispatch): spin a little
   * before sleeping, since waking a sleeping thread costs far more */
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(&x->lock, &ma);
  pthread_mutexattr_destroy(&ma);
  pthread_cond_init(&x->work_cv, NULL);
  pthread_cond_init(&x->cmd_cv, NULL);
  pthread_cond_init(&x->done_cv, NULL);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  x->max_parallel = opts->max_parallel ? opts->max_parallel : (uint32_t)(cpus > 0 ? cpus : 1);
  int rc = zorch__exec_command_init(x);
  if (rc) goto fail;
  x->xs = zorch__big_calloc(x->n, sizeof *x->xs);
  x->remaining = zorch__big_calloc(x->n, sizeof *x->remaining);
  x->sflags = zorch__big_calloc(x->n, sizeof *x->sflags);
  x->work = zorch__big_calloc(x->n, sizeof *x->work);
  x->active = malloc(((x->max_parallel < x->n ? x->max_parallel : x->n) + 1) * sizeof *x->active);
  if (!x->xs || !x->remaining || !x->sflags || !x->work || !x->active || ring_init(&x->ready, x->n) ||
      (x->remote && (ring_init(&x->rq, x->n) || ring_init(&x->sq, x->n)))) {
    rc = zorch__error_oom();
    goto fail;
  }
  /* The records and the per-step state, in two halves at once for a large
   * run: this is the first touch of some 200 bytes a step of new memory. */
  init_part parts[2] = {{.x = x, .lo = 0, .hi = x->n}, {.x = x, .lo = x->n, .hi = x->n}};
  bool two = x->n >= 65536;
  if (two) {
    parts[0].hi = parts[1].lo = x->n / 2;
    parts[1].hi = x->n;
  }
  two = both_parts(init_part_count, parts, two);
  zorch__output_rec *outs = NULL;
  char *keys = NULL;
  x->recs = zorch__step_recs_alloc(x->n, parts[0].n_out + parts[1].n_out,
                                   zorch__run_makes_keys(opts->flags), &outs, &keys);
  if (!x->recs) {
    rc = zorch__error_oom();
    goto fail;
  }
  parts[0].outs = parts[1].outs = outs;
  parts[0].keys = parts[1].keys = keys;
  parts[1].out_off = parts[0].n_out;
  both_parts(init_part_state, parts, two);
  uint32_t n_func = parts[0].n_func + parts[1].n_func, n_cmd = parts[0].n_cmd + parts[1].n_cmd;
  uint32_t n_retry = parts[0].n_retry + parts[1].n_retry;
  /* the per-step state only some steps need (see xaux) */
  if (n_cmd || x->remote || n_retry || parts[0].n_timeout + parts[1].n_timeout) {
    x->xa = zorch__big_calloc(x->n, sizeof *x->xa);
    if (!x->xa) {
      rc = zorch__error_oom();
      goto fail;
    }
    for (uint32_t i = 0; i < x->n; i++) x->xa[i].outfd = x->xa[i].logfd = -1;
  }
  /* each queue holds a step at most once: as large as the steps that can be in it */
  if (ring_init(&x->fq, n_func) || ring_init(&x->cq, n_cmd) || ring_init(&x->retry, n_retry)) {
    rc = zorch__error_oom();
    goto fail;
  }
  uint32_t unbound = parts[0].unbound < parts[1].unbound ? parts[0].unbound : parts[1].unbound;
  if (unbound != UINT32_MAX) {
    rc = zorch__error_set(ZORCH_EINVALID,
                          "function step '%s' has no function bound (run it from the "
                          "program that defines it)",
                          plan->steps[unbound].name);
    goto fail;
  }
  bool ephemeral = opts->flags & ZORCH_RUN_EPHEMERAL;
  if (plan->run_id && !ephemeral) {
    x->run_dir = zorch__asprintf("%s/runs/%s", zorch__store_root(store), plan->run_id);
    char *logs = x->run_dir ? zorch__path_join(x->run_dir, "logs") : NULL;
    char *jp = x->run_dir ? zorch__path_join(x->run_dir, "journal.jsonl") : NULL;
    if (!logs || !jp) rc = zorch__error_oom();
    if (!rc) rc = zorch__mkdirs(logs);
    if (!rc) rc = zorch__journal_open(&x->journal, jp, true);
    free(logs);
    free(jp);
    if (rc) goto fail;
  }
  /* The cache index is written without fsync: its entries name artifacts that
   * are already durable, and a lost entry only makes a step run again. */
  if (zorch__run_makes_keys(opts->flags)) {
    rc = zorch__cache_open(&x->cache, store, plan->pipeline, false);
    if (rc) goto fail;
  }
  x->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (x->evfd < 0) {
    rc = zorch__error_errno(ZORCH_EIO, errno, "cannot create the executor's event loop");
    goto fail;
  }
  x->n_workers = n_func < x->max_parallel ? n_func : x->max_parallel;
  x->workers = calloc(x->n_workers + 1, sizeof *x->workers);
  x->n_cmd_workers = n_cmd < x->max_parallel ? n_cmd : x->max_parallel;
  x->cmd_workers = calloc(x->n_cmd_workers + 1, sizeof *x->cmd_workers);
  if (!x->workers || !x->cmd_workers) {
    rc = zorch__error_oom();
    goto fail;
  }
  /* seed: steps with no predecessors */
  pthread_mutex_lock(&x->lock);
  for (uint32_t i = 0; i < x->n; i++)
    if (x->remaining[i] == 0) x->work[x->n_work++] = i;
  /* reverse so that the first roots are made ready first (the worklist is a stack) */
  for (uint32_t a = 0, b = x->n_work ? x->n_work - 1 : 0; a < b; a++, b--) {
    uint32_t t = x->work[a];
    x->work[a] = x->work[b];
    x->work[b] = t;
  }
  pthread_mutex_unlock(&x->lock);
  uint32_t want_workers = x->n_workers, want_cmd = x->n_cmd_workers;
  for (uint32_t w = 0; w < want_workers; w++) {
    if (pthread_create(&x->workers[w], NULL, zorch__exec_function_worker, x) != 0) {
      x->n_workers = w;
      break;
    }
  }
  for (uint32_t w = 0; w < want_cmd; w++) {
    if (pthread_create(&x->cmd_workers[w], NULL, zorch__exec_command_worker, x) != 0) {
      x->n_cmd_workers = w;
      break;
    }
  }
  /* fewer workers than slots still run everything; none would hang the run */
  if ((want_workers && !x->n_workers) || (want_cmd && !x->n_cmd_workers) ||
      pthread_create(&x->loop_thread, NULL, loop_main, x) != 0) {
    pthread_mutex_lock(&x->lock);
    x->shutdown = true;
    pthread_cond_broadcast(&x->work_cv);
    pthread_cond_broadcast(&x->cmd_cv);
    pthread_mutex_unlock(&x->lock);
    for (uint32_t w = 0; w < x->n_workers; w++) pthread_join(x->workers[w], NULL);
    for (uint32_t w = 0; w < x->n_cmd_workers; w++) pthread_join(x->cmd_workers[w], NULL);
    rc = zorch__error_set(ZORCH_ERROR, "cannot start the executor's threads");
    goto fail;
  }
  x->loop_started = true;
  *out = x;
  return ZORCH_OK;
fail:
  exec_destroy(x);
  return rc;
}

int zorch__exec_wait(zorch__exec *x, int timeout_ms) {
  pthread_mutex_lock(&x->lock);
  if (timeout_ms < 0) {
    while (!x->finished) pthread_cond_wait(&x->done_cv, &x->lock);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    while (!x->finished)
      if (pthread_cond_timedwait(&x->done_cv, &x->lock, &ts) == ETIMEDOUT) break;
  }
  bool done = x->finished;
  pthread_mutex_unlock(&x->lock);
  return done ? ZORCH_OK : ZORCH_ETIMEOUT;
}

int zorch__exec_cancel(zorch__exec *x) {
  atomic_store(&x->cancel_flag, 1);
  uint64_t one = 1;
  ssize_t r = write(x->evfd, &one, sizeof one);
  (void)r;
  return ZORCH_OK;
}

int zorch__exec_status(const zorch__exec *x, const char **message) {
  if (message) *message = x->run_message;
  return x->run_status;
}

const zorch__plan *zorch__exec_plan(const zorch__exec *x) { return x->plan; }

zorch__step_rec *zorch__exec_take_records(zorch__exec *x) {
  pthread_mutex_lock(&x->lock);
  zorch__step_rec *r = x->finished ? x->recs : NULL;
  if (r) x->recs = NULL;
  pthread_mutex_unlock(&x->lock);
  return r;
}

zorch__step_rec *zorch__exec_snapshot(zorch__exec *x) {
  zorch__step_rec *copy = zorch__step_recs_new(x->plan);
  if (!copy) return NULL;
  pthread_mutex_lock(&x->lock);
  if (!x->recs) {
    pthread_mutex_unlock(&x->lock);
    zorch__step_recs_free(copy, x->n);
    zorch__error_set(ZORCH_ERROR, "the run's records were handed over already");
    return NULL;
  }
  for (uint32_t i = 0; i < x->n; i++) {
    zorch__output_rec *outs = copy[i].outputs;
    char *key = copy[i].cache_key; /* the copy's own (zorch__step_recs_new makes keys) */
    copy[i] = x->recs[i];
    copy[i].outputs = outs;
    copy[i].cache_key = key;
    if (x->recs[i].cache_key) memcpy(key, x->recs[i].cache_key, ZORCH__DIGEST_HEX);
    copy[i].error = zorch__strdup(x->recs[i].error);
    for (uint32_t k = 0; k < x->plan->steps[i].n_outputs; k++) outs[k] = x->recs[i].outputs[k];
  }
  pthread_mutex_unlock(&x->lock);
  return copy;
}

void zorch__exec_free(zorch__exec *x) {
  if (!x) return;
  if (x->loop_started) {
    zorch__exec_wait(x, -1);
    pthread_join(x->loop_thread, NULL);
  }
  exec_destroy(x);
}
