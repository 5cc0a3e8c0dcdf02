/* zorch — the DAG executor.
 *
 * One scheduler lock protects all scheduling state.  Function steps run on a
 * pool of worker threads; a worker that finishes a step does the bookkeeping
 * itself (propagates to successors, dispatches ready steps) and takes the next
 * step without sleeping when one is ready.  Command steps run the same way on
 * a second pool (one thread per slot of max_parallel): its thread spawns the
 * process, waits for it on a pidfd while copying its output into the step's
 * log, does the bookkeeping and spawns the next ready command itself.  So a
 * chain of commands costs no thread hand-off per step, and the slots of a
 * fan-out spawn in parallel (posix_spawn blocks its caller until the child has
 * exec'd; one spawning thread would serialise that).  The event-loop thread
 * handles timeouts, retry delays, cancellation and remote steps.  Every
 * scheduling operation is O(1) or O(out-degree): no scan of all steps per
 * completion.
 */
#include "executor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client_int.h"
#include "ctx.h"
#include "map.h"

extern char **environ;


#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* ---- cache keys ------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void zorch__cache_key(const zorch__plan *plan, uint32_t i, const zorch__step_rec *recs,
                      char out[ZORCH__DIGEST_HEX]) {
  zorch__buf b = ZORCH__BUF_INIT;
  zorch__cache_key_with(&b, plan, i, recs, out);
  zorch__buf_free(&b);
}

void zorch__cache_key_with(zorch__buf *scratch, const zorch__plan *plan, uint32_t i,
                           const zorch__step_rec *recs, char out[ZORCH__DIGEST_HEX]) {
  const zorch__pstep *s = &plan->steps[i];
  zorch__buf b = *scratch;
  b.len = 0;
  /* the fixed part in one go (this is made for every step) */
  size_t lp = strlen(plan->pipeline), ln = strlen(s->name), lv = strlen(s->version);
  if (zorch__buf_grow(&b, 64 + lp + ln + lv) == ZORCH_OK) {
    char *p = b.data;
    p = ZORCH__PUT_LIT(p, "zorch-cache-1\npipeline=");
    memcpy(p, plan->pipeline, lp);
    p = ZORCH__PUT_LIT(p + lp, "\nstep=");
    memcpy(p, s->name, ln);
    p += ln;
    if (s->kind == ZORCH__STEP_COMMAND) p = ZORCH__PUT_LIT(p, "\nkind=1\nversion=");
    else p = ZORCH__PUT_LIT(p, "\nkind=0\nversion=");
    memcpy(p, s->version, lv);
    p += lv;
    *p++ = '\n';
    *p = '\0';
    b.len = (size_t)(p - b.data);
  }
  if (s->argv)
    for (size_t a = 0; s->argv[a]; a++) {
      zorch__buf_puts(&b, "arg=");
      zorch__buf_put(&b, s->argv[a], strlen(s->argv[a]) + 1);
    }
  zorch__buf_cat(&b, "\nparams=", s->params_canon ? s->params_canon : "{}", "\n", NULL);
  size_t ne = 0;
  while (s->env && s->env[ne]) ne++;
  if (ne) {
    const char **env = malloc(ne * sizeof *env);
    if (env) {
      memcpy(env, s->env, ne * sizeof *env);
      qsort(env, ne, sizeof *env, cmp_str);
      for (size_t k = 0; k < ne; k++) {
        zorch__buf_puts(&b, "env=");
        zorch__buf_put(&b, env[k], strlen(env[k]) + 1);
      }
      free(env);
    }
  }
  for (uint32_t k = 0; k < s->n_outputs; k++) zorch__buf_cat(&b, "out=", s->outputs[k], "\n", NULL);
  /* inputs in name order */
  uint32_t ni = s->n_inputs;
  const zorch__pin *few[8];
  const zorch__pin **ins = ni <= 8 ? few : malloc(ni * sizeof *ins);
  for (uint32_t k = 0; ins && k < ni; k++) ins[k] = &s->inputs[k];
  for (uint32_t a = 1; ins && a < ni; a++) /* insertion sort: inputs are few */
    for (uint32_t c = a; c > 0 && strcmp(ins[c - 1]->name, ins[c]->name) > 0; c--) {
      const zorch__pin *t = ins[c];
      ins[c] = ins[c - 1];
      ins[c - 1] = t;
    }
  for (uint32_t k = 0; ins && k < ni; k++)
    zorch__buf_cat(&b, "in=", ins[k]->name, ":", recs[ins[k]->step].outputs[ins[k]->output].digest,
                   "\n", NULL);
  if (ins != few) free(ins);
  zorch__sha256_hex(b.data ? b.data : "", b.len, out);
  *scratch = b;
}

/* ---- executor state ---------------------------------------------------------------------- */

typedef struct xstep {       /* every step's (20 bytes: a large run has many) */
  bool terminal;
  bool timed_out;
  bool killing;            /* SIGTERM sent; SIGKILL at deadline */
  bool stop_requested;     /* stopped by fail-fast or cancel */
  bool started;            /* its process or function is running */
  bool stop_queued;        /* remote: in the stop queue */
  atomic_int cancelled;    /* function steps: seen by zorch_ctx_cancelled */
  uint32_t active;         /* 1 + its index in x->active, 0 when not there */
  uint32_t upstream;       /* 1 + the plan index of its failed upstream, 0: none */
} xstep;

/* What only a step with a process, a deadline, a retry or a remote attempt
 * needs: x->xa, made when the run has such a step (else NULL). */
typedef struct xaux {
  int64_t deadline_ns;     /* 0: none */
  int64_t retry_due_ns;
  pid_t pid;               /* > 0 while its process runs and is not reaped */
  int outfd;               /* while it runs: the read end of its command worker's pipe */
  int logfd;               /* the step's log file, opened when the first byte arrives */
  char **scratch;          /* command steps: per output scratch path */
} xaux;

typedef struct ring {
  uint32_t *v;
  size_t cap, head, len;
} ring;

static int ring_init(ring *r, size_t cap) {
  r->cap = cap ? cap : 1;
  r->v = zorch__big_calloc(r->cap, sizeof *r->v);
  r->head = r->len = 0;
  return r->v ? ZORCH_OK : zorch__error_oom();
}
static void ring_push(ring *r, uint32_t x) {
  size_t at = r->head + r->len;
  r->v[at >= r->cap ? at - r->cap : at] = x;
  r->len++;
}
static uint32_t ring_pop(ring *r) {
  uint32_t x = r->v[r->head];
  if (++r->head == r->cap) r->head = 0;
  r->len--;
  return x;
}

struct zorch__exec {
  zorch__plan *plan;
  zorch__store *store;
  zorch__journal *journal;
  zorch__cache *cache;
  zorch__exec_opts opts;
  char *run_dir;
  zorch__step_rec *recs;
  xstep *xs;
  xaux *xa;         /* NULL: no step needs it (see xaux) */
  /* per step: predecessors not yet done.  Apart from xs: a completion
   * touches it for every successor, and 4 bytes a step stay in the cache
   * where xs would not. */
  uint32_t *remaining;
  /* per step: SF_* bits, one byte, for the same reason: making a step ready
   * and dispatching it need to know no more of the step */
  uint8_t *sflags;
  uint32_t n;

  pthread_mutex_t lock;
  pthread_cond_t work_cv;
  pthread_cond_t done_cv;
  ring ready;       /* ready to dispatch */
  ring fq;          /* function steps handed to workers */
  ring cq;          /* command steps for the command workers to spawn */
  ring retry;       /* steps waiting out a retry delay */
  ring rq;          /* remote: steps to launch */
  ring sq;          /* remote: launched steps to stop */
  zorch__remote *remote;
  uint32_t *work;   /* propagation worklist (each step enters it at most once) */
  uint32_t n_work;
  uint32_t *active; /* dispatched, not yet done */
  uint32_t n_active;
  uint32_t running, max_parallel, n_done, n_idle;
  /* a function (command) worker is doing the bookkeeping of its step: the
   * first function (command) step that dispatches is the next it runs (it
   * looks at its queue before it sleeps), without waking another worker,
   * which would find the queue empty (see attempt_done_on) */
  bool fn_self_take, cmd_self_take;
  uint32_t n_failed;       /* steps that ended failed */
  zorch__buf key_text;     /* the text of cache keys made under the lock */
  bool stopping, cancelled, sched_done, shutdown, finished;
  char *stop_reason;
  int run_status;
  char *run_message;
  atomic_int cancel_flag;
  int evfd;        /* wakes the loop thread (wake_loop) */
  pthread_t loop_thread;
  pthread_t *workers;
  uint32_t n_workers;
  pthread_cond_t cmd_cv; /* idle command workers wait here */
  uint32_t n_cmd_idle;
  pthread_t *cmd_workers;
  uint32_t n_cmd_workers;
  bool loop_started;
  pthread_mutex_t spawn_mu; /* exe_cache, exe_names, devnull and env_base: command workers share them */
  posix_spawnattr_t spawn_attr; /* of every command process (spawn_attr_init) */
  zorch__map *exe_cache;  /* argv[0] -> resolved path */
  zorch__strv exe_names;
  /* A worker journals the end record of a function step that succeeded
   * (and appends its cache entry) before it takes the lock, so that two
   * workers do that work in parallel and the lock is held briefly;
   * record() then skips that step within the same critical section. */
  uint32_t pre_step;
  bool pre_recorded;
  bool pre_cache_done;
  double pre_finished;  /* when it ended (0: not known) */
  /* the time a completion under way read (0: none): the steps it makes
   * ready are dispatched at that time, without a second clock read */
  double now_hint;
  int devnull;               /* stdin of command steps, -1 until the first */
  char **env_base;           /* see step_env */
  size_t n_env_base;
  const char **env_base_of;
};

enum {
  SF_WORKER = 1,          /* a function step run here by the workers */
  SF_TIMEOUT = 2,         /* it has a timeout */
  SF_CACHE = 4,           /* its results may come from the cache */
  SF_UPSTREAM_FAILED = 8, /* a predecessor ended without completing (lock held) */
};

/* Set on an executor's event-loop thread: it needs no wake-up from itself,
 * because it looks at its queues and timers again before it sleeps. */
static _Thread_local const zorch__exec *loop_of_this_thread;

static void wake_loop(zorch__exec *x) {
  if (loop_of_this_thread == x) return;
  uint64_t one = 1;
  ssize_t r = write(x->evfd, &one, sizeof one);
  (void)r;
}

/* The time a function step starts or ends.  An ephemeral run reads the
 * coarse clock (a few ms of resolution, a fraction of the cost: with no-op
 * steps the precise one was a fifth of a step's time); see run.h. */
static double step_clock(const zorch__exec *x) {
  if (!(x->opts.flags & ZORCH_RUN_EPHEMERAL)) return zorch__now();
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(zorch__exec *x, uint32_t i, int status) {
  if (x->opts.progress_cb)
    x->opts.progress_cb(x->plan->run_id ? x->plan->run_id : "", x->plan->steps[i].name, status,
                        x->opts.progress_payload);
}

static void record(zorch__exec *x, uint32_t i) {
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

static char *step_log_path(zorch__exec *x, uint32_t i) {
  if (!x->run_dir) return NULL;
  return zorch__asprintf("%s/logs/%s.log", x->run_dir, x->plan->steps[i].name);
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
  record(x, i);
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
    uint8_t f = x->sflags[i];
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
    if (x->remote) record(x, i);
    progress(x, i, ZORCH_STATUS_RUNNING);
    if (x->remote) {
      ring_push(&x->rq, i);
      wake = true;
    } else if (f & SF_WORKER) {
      /* its worker reads the plan's step first thing */
      __builtin_prefetch(&x->plan->steps[i]);
      __builtin_prefetch((const char *)&x->plan->steps[i] + 64);
      ring_push(&x->fq, i);
      if (x->fn_self_take) x->fn_self_take = false;
      else if (x->n_idle) pthread_cond_signal(&x->work_cv);
      if (f & SF_TIMEOUT) wake = true; /* the loop must learn the deadline */
    } else {
      ring_push(&x->cq, i);
      if (x->cmd_self_take) x->cmd_self_take = false;
      else if (x->n_cmd_idle) pthread_cond_signal(&x->cmd_cv);
    }
  }
  if (wake) wake_loop(x);
}

static void check_done(zorch__exec *x) {
  if (x->sched_done) return;
  if (x->n_done == x->n || (x->stopping && x->running == 0)) {
    x->sched_done = true;
    wake_loop(x);
  }
}

static void drain(zorch__exec *x) {
  while (x->n_work) make_ready(x, x->work[--x->n_work]);
  dispatch(x);
  check_done(x);
}

/* Remote: ask the plugin to stop a launched attempt (from the loop, unlocked). */
static void queue_stop(zorch__exec *x, uint32_t i) {
  xstep *xs = &x->xs[i];
  if (xs->stop_queued || xs->killing) return;
  xs->stop_queued = true;
  xs->killing = true;
  ring_push(&x->sq, i);
}

static void kill_active(zorch__exec *x) {
  int64_t now = zorch__mono_ns();
  for (uint32_t a = 0; a < x->n_active; a++) {
    uint32_t i = x->active[a];
    xstep *xs = &x->xs[i];
    xaux *xa = x->xa ? &x->xa[i] : NULL;
    xs->stop_requested = true;
    atomic_store(&xs->cancelled, 1);
    if (xa && xa->pid > 0 && !xs->killing) {
      kill(-xa->pid, SIGTERM);
      xs->killing = true;
      xa->deadline_ns = now + 2000000000LL; /* then SIGKILL */
    } else if (x->remote && xs->started) {
      queue_stop(x, i);
    }
  }
  wake_loop(x);
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

/* An attempt ended.  `outs` holds the outputs on success.  Lock held. */
static void attempt_done(zorch__exec *x, uint32_t i, bool ok, char *error, int exit_code,
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
      record(x, i);
      progress(x, i, ZORCH_STATUS_RETRYING);
      double delay = s->retry_delay * pow(s->retry_backoff, (double)(r->attempts - 1));
      x->xa[i].retry_due_ns = zorch__mono_ns() + (int64_t)(delay * 1e9); /* a run with retries has xa */
      ring_push(&x->retry, i);
      wake_loop(x);
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

/* The same on the worker that ran the attempt, which takes its next step
 * from its queue right after: `self_take` (x->fn_self_take or
 * x->cmd_self_take) leaves it the first step of its kind that the
 * bookkeeping dispatches.  Lock held. */
static void attempt_done_on(zorch__exec *x, bool *self_take, uint32_t i, bool ok, char *error,
                            int exit_code, const zorch__output_rec *outs) {
  *self_take = true;
  attempt_done(x, i, ok, error, exit_code, outs);
  *self_take = false;
}

/* ---- function steps ---------------------------------------------------------------------- */

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
   * attempt_done), its successors are made ready only under the lock below
   * (so their lines follow this one), and its outputs are published
   * already (the record and the entry may name them). */
  bool cache_done = false, recorded = false;
  double finished = 0;
  char key[ZORCH__DIGEST_HEX] = "";
  if (ok) {
    const zorch__step_rec *r = &x->recs[i];
    finished = step_clock(x);
    /* the key, when the run records one: made in make_ready, or here (its
     * inputs are final); written to the record under the lock below */
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
  /* the outputs stay in ctx until attempt_done has copied them */
  if (rc == ZORCH_OK) zorch__ctx_release(&ctx);
  pthread_mutex_lock(&x->lock);
  if (ok) {
    x->pre_step = i;
    x->pre_recorded = recorded;
    x->pre_cache_done = cache_done;
    x->pre_finished = finished;
    if (key[0] && x->recs[i].cache_key) memcpy(x->recs[i].cache_key, key, sizeof key);
  }
  attempt_done_on(x, &x->fn_self_take, i, ok, err, -1, ok ? ctx.outputs : NULL);
  if (rc == ZORCH_OK) zorch__ctx_free_outputs(&ctx);
}

static void *worker_main(void *arg) {
  zorch__exec *x = arg;
  pthread_setname_np(pthread_self(), "zorch-worker");
  worker w = {.buf = {ZORCH__BUF_INIT, ZORCH__BUF_INIT}};
  pthread_mutex_lock(&x->lock);
  for (;;) {
    while (!x->fq.len && !x->shutdown) {
      x->n_idle++;
      pthread_cond_wait(&x->work_cv, &x->lock);
      x->n_idle--;
    }
    if (!x->fq.len) break;
    uint32_t i = ring_pop(&x->fq);
    if (x->xs[i].stop_requested) {
      attempt_done_on(x, &x->fn_self_take, i, false, NULL, -1, NULL);
      continue;
    }
    x->xs[i].started = true;
    if (x->sflags[i] & SF_TIMEOUT) { /* the loop learns the deadline only now: wake it */
      x->xa[i].deadline_ns = zorch__mono_ns() + (int64_t)(x->plan->steps[i].timeout * 1e9);
      wake_loop(x);
    }
    /* the completion takes the next step in the same critical section */
    run_function(x, i, x->recs[i].attempts, &w);
  }
  pthread_mutex_unlock(&x->lock);
  zorch__buf_free(&w.buf[0]);
  zorch__buf_free(&w.buf[1]);
  return NULL;
}

/* ---- command steps ------------------------------------------------------------------------- */

static char *env_name(const char *prefix, const char *name) {
  char *s = zorch__asprintf("%s%s", prefix, name);
  if (!s) return NULL;
  for (char *p = s + strlen(prefix); *p; p++) {
    if (*p == '-') *p = '_';
    else if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
  }
  return s;
}

static void free_scratch(xaux *xs, uint32_t n, bool remove) {
  if (!xs->scratch) return;
  for (uint32_t k = 0; k < n; k++) {
    if (remove && xs->scratch[k]) zorch__rm_rf(xs->scratch[k]);
    free(xs->scratch[k]);
  }
  free(xs->scratch);
  xs->scratch = NULL;
}

/* argv[0] looked up in PATH once per executor (as posix_spawnp would, without
 * trying every PATH entry for every step); NULL: let posix_spawnp search.
 * spawn_mu held. */
static const char *resolve_exe(zorch__exec *x, const char *cmd) {
  if (strchr(cmd, '/')) return cmd;
  const char *hit = zorch__map_get(x->exe_cache, cmd);
  if (hit) return hit;
  char *found = zorch__which(cmd);
  if (!found || zorch__strv_push(&x->exe_names, cmd) || zorch__strv_push(&x->exe_names, found)) {
    free(found);
    return NULL;
  }
  free(found);
  zorch__map_put(x->exe_cache, x->exe_names.v[x->exe_names.n - 2], x->exe_names.v[x->exe_names.n - 1]);
  return x->exe_names.v[x->exe_names.n - 1];
}

/* Copy what the process wrote so far into its log; at_exit: until nothing is
 * left.  Only on the command worker running step i. */
static void copy_output(zorch__exec *x, uint32_t i, bool at_exit) {
  xaux *xs = &x->xa[i];
  char buf[65536];
  while (xs->outfd >= 0) {
    ssize_t n = read(xs->outfd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (at_exit) { /* all read: the pipe goes back to the worker's slot */
        xs->outfd = -1;
      }
      break;
    }
    if (xs->logfd < 0) {
      char *lp = step_log_path(x, i);
      xs->logfd = lp ? open(lp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
      free(lp);
      if (xs->logfd >= 0 && x->recs[i].attempts > 1)
        dprintf(xs->logfd, "--- zorch: attempt %u ---\n", x->recs[i].attempts);
    }
    for (ssize_t off = 0; xs->logfd >= 0 && off < n;) {
      ssize_t w = write(xs->logfd, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break; /* a log that cannot be written does not fail the step */
      off += w;
    }
  }
  if (at_exit && xs->logfd >= 0) {
    close(xs->logfd);
    xs->logfd = -1;
  }
}

/* The variables zorch gives a command step: ZORCH_RUN_ID, ZORCH_STEP_NAME,
 * ZORCH_INPUT_<NAME> (artifact paths in the store), ZORCH_OUTPUT_<NAME> (new
 * scratch paths, stored in scratch[]) and ZORCH_PARAM_<NAME>. */
int zorch__command_env(zorch__strv *extra, zorch__store *store, const zorch__plan *plan, uint32_t i,
                       const zorch__step_rec *recs, char **scratch) {
  const zorch__pstep *s = &plan->steps[i];
  int rc = ZORCH_OK;
  char *v = zorch__asprintf("ZORCH_RUN_ID=%s", plan->run_id ? plan->run_id : "");
  zorch__strv_push(extra, v);
  free(v);
  v = zorch__asprintf("ZORCH_STEP_NAME=%s", s->name);
  zorch__strv_push(extra, v);
  free(v);
  for (uint32_t k = 0; k < s->n_inputs && rc == ZORCH_OK; k++) {
    const zorch__output_rec *o = &recs[s->inputs[k].step].outputs[s->inputs[k].output];
    char *path = zorch__store_artifact_path(store, o->digest);
    char *nm = env_name("ZORCH_INPUT_", s->inputs[k].name);
    v = nm && path ? zorch__asprintf("%s=%s", nm, path) : NULL;
    if (v) zorch__strv_push(extra, v);
    else rc = zorch__error_oom();
    free(v);
    free(nm);
    free(path);
  }
  for (uint32_t k = 0; k < s->n_outputs && rc == ZORCH_OK; k++) {
    if ((rc = zorch__store_scratch(store, s->outputs[k], &scratch[k]))) break;
    char *nm = env_name("ZORCH_OUTPUT_", s->outputs[k]);
    v = nm ? zorch__asprintf("%s=%s", nm, scratch[k]) : NULL;
    if (v) zorch__strv_push(extra, v);
    else rc = zorch__error_oom();
    free(v);
    free(nm);
  }
  const char *pk;
  json_t *pv;
  json_object_foreach(s->params, pk, pv) {
    char *nm = env_name("ZORCH_PARAM_", pk);
    char *txt;
    if (json_is_string(pv)) {
      txt = zorch__strdup(json_string_value(pv));
    } else if (json_is_real(pv)) { /* the shortest text that reads back as the same double */
      double d = json_real_value(pv);
      txt = zorch__asprintf("%.15g", d);
      if (txt && strtod(txt, NULL) != d) {
        free(txt);
        txt = zorch__asprintf("%.17g", d);
      }
    } else {
      txt = json_dumps(pv, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    v = nm && txt ? zorch__asprintf("%s=%s", nm, txt) : NULL;
    if (v) zorch__strv_push(extra, v);
    free(v);
    free(nm);
    free(txt);
  }
  return rc;
}

/* Store the outputs a command step wrote at its scratch paths (taken:
 * scratch[k] is freed and cleared for each stored output).  false with *err. */
bool zorch__command_outputs(zorch__store *store, const zorch__plan *plan, uint32_t i, char **scratch,
                            zorch__output_rec *outs, char **err) {
  const zorch__pstep *s = &plan->steps[i];
  for (uint32_t k = 0; k < s->n_outputs; k++) {
    struct stat st;
    if (lstat(scratch[k], &st) != 0) {
      char *nm = env_name("ZORCH_OUTPUT_", s->outputs[k]);
      *err = zorch__asprintf("command exited 0 but did not write output '%s' (a file or "
                             "directory at $%s)",
                             s->outputs[k], nm ? nm : "ZORCH_OUTPUT_?");
      free(nm);
      return false;
    }
    bool is_dir = false;
    if (zorch__store_put_path(store, scratch[k], true, outs[k].digest, &outs[k].size, &is_dir) !=
        ZORCH_OK) {
      *err = zorch__asprintf("cannot store output '%s': %s", s->outputs[k], zorch_error_last()->message);
      return false;
    }
    outs[k].is_dir = is_dir;
    outs[k].set = true;
    outs[k].name = s->outputs[k];
    free(scratch[k]);
    scratch[k] = NULL;
  }
  return true;
}

/* The last `lines` lines of a text file (at most 2 KiB), or NULL. */
char *zorch__file_tail(const char *path, int lines) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  char buf[2048];
  off_t end = lseek(fd, 0, SEEK_END);
  off_t start = end > (off_t)sizeof buf - 1 ? end - (off_t)(sizeof buf - 1) : 0;
  ssize_t n = pread(fd, buf, sizeof buf - 1, start);
  close(fd);
  if (n <= 0) return NULL;
  buf[n] = '\0';
  while (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  char *p = buf + n;
  int seen = 0;
  while (p > buf) {
    if (p[-1] == '\n' && ++seen == lines) break;
    p--;
  }
  return *p ? zorch__strdup(p) : NULL;
}

/* The step's own variables followed by the inherited ones it does not
 * override.  The environment of the steps that set none of their own (most)
 * is merged once, when the run spawns its first process, and kept; other
 * steps get a fresh array (the caller frees it when it is not x->env_base).
 * NULL on OOM.  spawn_mu held. */
static char **step_env(zorch__exec *x, const zorch__pstep *s, size_t *n) {
  if (x->env_base && x->env_base_of == s->env) {
    *n = x->n_env_base;
    return x->env_base;
  }
  size_t ne = 0, nown = 0;
  while (environ[ne]) ne++;
  while (s->env && s->env[nown]) nown++;
  char **v = malloc((ne + nown + 1) * sizeof *v);
  if (!v) return NULL;
  size_t k = 0;
  for (size_t q = 0; q < nown; q++) v[k++] = (char *)s->env[q];
  for (size_t q = 0; q < ne; q++) {
    size_t l = strcspn(environ[q], "=");
    bool shadow = false;
    for (size_t t = 0; t < nown && !shadow; t++)
      shadow = !strncmp(s->env[t], environ[q], l) && s->env[t][l] == '=';
    if (!shadow) v[k++] = environ[q];
  }
  v[k] = NULL;
  *n = k;
  if (!x->env_base && s->env == x->plan->defaults.env) {
    x->env_base = v;
    x->n_env_base = k;
    x->env_base_of = s->env;
  }
  return v;
}

/* What a command worker keeps from one step to the next: the pipe its
 * processes write their stdout and stderr to, and the file actions that put
 * it there.  The worker holds both ends: the read end is drained into the
 * running step's log, and the held write end means a process's exit never
 * hangs the pipe up (a hang-up a moment before the pidfd turns readable would
 * wake the worker twice per step).  The pipe is reused while each step leaves
 * no process behind in its process group; otherwise it is dropped (a leftover
 * process's later output must not land in the next step's log) and the next
 * step gets a new one.  A pipe, its two closes and the file actions cost
 * about 11 us a step on the reference VM. */
typedef struct cmd_slot {
  int pipe_r, pipe_w;
  posix_spawn_file_actions_t fa;
  bool fa_ready;
} cmd_slot;

static void slot_drop_pipe(cmd_slot *sl) {
  if (sl->fa_ready) posix_spawn_file_actions_destroy(&sl->fa);
  sl->fa_ready = false;
  if (sl->pipe_r >= 0) close(sl->pipe_r);
  if (sl->pipe_w >= 0) close(sl->pipe_w);
  sl->pipe_r = sl->pipe_w = -1;
}

/* The slot's pipe and file actions, made when it has none. */
static int slot_ready(zorch__exec *x, cmd_slot *sl, char **err) {
  if (sl->pipe_r >= 0 && sl->fa_ready) return ZORCH_OK;
  slot_drop_pipe(sl);
  int pfds[2];
  if (pipe2(pfds, O_CLOEXEC) != 0) {
    *err = zorch__asprintf("cannot create a pipe for the step's output: %s", strerror(errno));
    return ZORCH_EIO;
  }
  fcntl(pfds[0], F_SETFL, O_NONBLOCK);
  sl->pipe_r = pfds[0];
  sl->pipe_w = pfds[1];
  /* stdin: /dev/null, opened once per run (no path lookup in every child) */
  pthread_mutex_lock(&x->spawn_mu);
  if (x->devnull < 0) x->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int devnull = x->devnull;
  pthread_mutex_unlock(&x->spawn_mu);
  posix_spawn_file_actions_init(&sl->fa);
  if (devnull >= 0) posix_spawn_file_actions_adddup2(&sl->fa, devnull, 0);
  else posix_spawn_file_actions_addopen(&sl->fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&sl->fa, sl->pipe_w, 1);
  posix_spawn_file_actions_adddup2(&sl->fa, sl->pipe_w, 2);
  sl->fa_ready = true;
  return ZORCH_OK;
}

/* The attributes of every command step's process: its own process group (a
 * timeout or a cancel kills the group), no blocked signal, and the signals a
 * host program commonly handles back at their defaults.  Made once per run. */
static void spawn_attr_init(posix_spawnattr_t *attr) {
  posix_spawnattr_init(attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigemptyset(&all);
  sigaddset(&all, SIGINT);
  sigaddset(&all, SIGTERM);
  sigaddset(&all, SIGPIPE);
  sigaddset(&all, SIGQUIT);
  sigaddset(&all, SIGHUP);
  posix_spawnattr_setsigmask(attr, &none);
  posix_spawnattr_setsigdefault(attr, &all);
  posix_spawnattr_setpgroup(attr, 0);
  posix_spawnattr_setflags(attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                     POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_USEVFORK);
}

/* Spawn the process of command step i through the worker's slot.  Not under the lock. */
static int spawn_command(zorch__exec *x, uint32_t i, cmd_slot *sl, pid_t *pid_out, char **err) {
  const zorch__pstep *s = &x->plan->steps[i];
  xaux *xs = &x->xa[i];
  *err = NULL;
  int rc = slot_ready(x, sl, err);
  if (rc) return rc;
  xs->outfd = sl->pipe_r;
  xs->logfd = -1;
  zorch__strv extra = {0};
  xs->scratch = calloc(s->n_outputs + 1, sizeof *xs->scratch);
  rc = xs->scratch ? zorch__command_env(&extra, x->store, x->plan, i, x->recs, xs->scratch)
                       : zorch__error_oom();
  /* environment: zorch's variables override the step's and the inherited
   * ones (merged once per run, see step_env); all of zorch's start with
   * ZORCH_, so only such inherited ones need a look */
  char **envp = NULL;
  if (!rc) {
    size_t nbase = 0, k = 0;
    pthread_mutex_lock(&x->spawn_mu);
    char **base = step_env(x, s, &nbase);
    pthread_mutex_unlock(&x->spawn_mu);
    envp = base ? malloc((nbase + extra.n + 1) * sizeof *envp) : NULL;
    if (envp) {
      for (size_t q = 0; q < extra.n; q++) envp[k++] = extra.v[q];
      for (size_t q = 0; q < nbase; q++) {
        const char *e = base[q];
        bool shadow = false;
        if (!strncmp(e, "ZORCH_", 6)) {
          size_t l = strcspn(e, "=");
          for (size_t t = 0; t < extra.n && !shadow; t++)
            shadow = !strncmp(extra.v[t], e, l) && extra.v[t][l] == '=';
        }
        if (!shadow) envp[k++] = (char *)e;
      }
      envp[k] = NULL;
    } else {
      rc = zorch__error_oom();
    }
    if (base != x->env_base) free(base);
  }
  if (rc) {
    *err = zorch__asprintf("cannot prepare the step: %s", zorch_error_last()->message);
    xs->outfd = -1;
    zorch__strv_clear(&extra);
    free_scratch(xs, s->n_outputs, true);
    return rc;
  }
  pthread_mutex_lock(&x->spawn_mu);
  const char *exe = resolve_exe(x, s->argv[0]);
  pthread_mutex_unlock(&x->spawn_mu);
  pid_t pid = 0;
  int src = exe ? posix_spawn(&pid, exe, &sl->fa, &x->spawn_attr, (char *const *)s->argv, envp)
                : posix_spawnp(&pid, s->argv[0], &sl->fa, &x->spawn_attr, (char *const *)s->argv, envp);
  free(envp);
  zorch__strv_clear(&extra);
  if (src != 0) {
    xs->outfd = -1;
    *err = zorch__asprintf("cannot run '%s': %s", s->argv[0], strerror(src));
    free_scratch(xs, s->n_outputs, true);
    return ZORCH_ERROR;
  }
  *pid_out = pid;
  return ZORCH_OK;
}

static char *log_tail(zorch__exec *x, uint32_t i, int lines) {
  char *lp = step_log_path(x, i);
  char *t = lp ? zorch__file_tail(lp, lines) : NULL;
  free(lp);
  return t;
}

/* The process of command step i exited with wait status `status`: its
 * bookkeeping.  Called without the lock; returns with it held. */
static void command_exited(zorch__exec *x, uint32_t i, int status) {
  const zorch__pstep *s = &x->plan->steps[i];
  xstep *xs = &x->xs[i];
  pthread_mutex_lock(&x->lock);
  bool timed_out = xs->timed_out, stopped = xs->stop_requested;
  pthread_mutex_unlock(&x->lock);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  char *err = NULL;
  zorch__output_rec *outs = calloc(s->n_outputs + 1, sizeof *outs);
  bool ok = false;
  if (timed_out) {
    err = zorch__asprintf("timed out after %g s and was killed", s->timeout);
  } else if (stopped) {
    err = NULL;
  } else if (WIFSIGNALED(status)) {
    char *tail = log_tail(x, i, 5);
    err = zorch__asprintf("command '%s' was killed by signal %d (%s)%s%s", s->argv[0],
                          WTERMSIG(status), strsignal(WTERMSIG(status)),
                          tail ? "; last lines of its log:\n" : "", tail ? tail : "");
    free(tail);
  } else if (code != 0) {
    char *tail = log_tail(x, i, 5);
    err = zorch__asprintf("command '%s' exited with status %d%s%s", s->argv[0], code,
                          tail ? "; last lines of its log:\n" : "", tail ? tail : "");
    free(tail);
  } else {
    ok = zorch__command_outputs(x->store, x->plan, i, x->xa[i].scratch, outs, &err);
  }
  free_scratch(&x->xa[i], s->n_outputs, true);
  if (!ok && err) {
    char *lp = step_log_path(x, i);
    if (lp) zorch__log_append(lp, "zorch: step failed: %s", err);
    free(lp);
  }
  pthread_mutex_lock(&x->lock);
  attempt_done_on(x, &x->cmd_self_take, i, ok, err, code, outs);
  free(outs);
}

/* A command step's start is journaled once its process has run this long:
 * the journal writes a batch per 5 ms window, so the start line of a process
 * that ends sooner would reach the file in the same batch as its end line
 * (or one window before it) and tell a reader nothing. */
#define START_RECORD_DELAY_NS 5000000LL

/* Wait for the process of command step i (pidfd: -1 when the kernel has
 * none), copying its output into the log meanwhile; returns its wait status.
 * The reaping happens under the lock and clears its pid with it, so that no
 * kill (timeout, cancel, fail-fast) can reach a reused pid. */
static int wait_command(zorch__exec *x, uint32_t i, pid_t pid, int pidfd) {
  xaux *xs = &x->xa[i];
  int64_t start_due = x->journal ? zorch__mono_ns() + START_RECORD_DELAY_NS : 0;
  for (;;) {
    struct pollfd pf[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = xs->outfd, .events = POLLIN}};
    int timeout = -1;
    if (start_due) {
      int64_t left = start_due - zorch__mono_ns();
      timeout = left > 0 ? (int)((left + 999999) / 1000000) : 0;
    }
    /* without a pidfd (kernels before 5.3) the exit is polled for */
    int n = pidfd >= 0 ? poll(pf, 2, timeout) : poll(pf + 1, 1, 20);
    if (n < 0 && errno != EINTR) n = 0; /* cannot poll: look at the process */
    /* n == 0 (the start record's moment, or poll failed): a look costs one waitpid */
    if (n > 0 && pf[1].revents) copy_output(x, i, false);
    if (start_due && zorch__mono_ns() >= start_due && !(n > 0 && pf[0].revents)) {
      start_due = 0;
      pthread_mutex_lock(&x->lock);
      record(x, i);
      pthread_mutex_unlock(&x->lock);
    }
    if (pidfd >= 0 && !pf[0].revents && n != 0) continue;
    int status = 0;
    pthread_mutex_lock(&x->lock);
    pid_t w;
    do w = waitpid(pid, &status, WNOHANG); while (w < 0 && errno == EINTR);
    if (w != 0) xs->pid = 0;
    pthread_mutex_unlock(&x->lock);
    if (w == 0) continue;
    if (w < 0) status = 127 << 8; /* reaped by somebody else (SIGCHLD ignored?) */
    if (pidfd >= 0) close(pidfd);
    return status;
  }
}

/* Spawn command step i, wait for it and do its bookkeeping.  Called on a
 * command worker without the lock; returns with the lock held. */
static void run_command(zorch__exec *x, uint32_t i, cmd_slot *sl) {
  xstep *xs = &x->xs[i];
  const zorch__pstep *s = &x->plan->steps[i];
  pid_t pid = 0;
  char *err = NULL;
  int rc = spawn_command(x, i, sl, &pid, &err);
  if (rc != ZORCH_OK) {
    char *lp = step_log_path(x, i);
    if (lp && err) zorch__log_append(lp, "zorch: step failed: %s", err);
    free(lp);
    pthread_mutex_lock(&x->lock);
    attempt_done_on(x, &x->cmd_self_take, i, false, err, 127, NULL);
    return;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  pthread_mutex_lock(&x->lock);
  xaux *xa = &x->xa[i];
  xa->pid = pid;
  xs->started = true;
  xa->deadline_ns = s->timeout > 0 ? zorch__mono_ns() + (int64_t)(s->timeout * 1e9) : 0;
  if (xs->stop_requested) { /* stopped while spawning */
    kill(-pid, SIGTERM);
    xs->killing = true;
    xa->deadline_ns = zorch__mono_ns() + 2000000000LL;
  }
  if (xa->deadline_ns) wake_loop(x); /* the loop keeps the deadlines */
  pthread_mutex_unlock(&x->lock);
  int status = wait_command(x, i, pid, pidfd);
  copy_output(x, i, true); /* everything it wrote is in the pipe now */
  /* a process left in the step's group may still hold the pipe */
  if (kill(-pid, 0) == 0 || errno != ESRCH) slot_drop_pipe(sl);
  command_exited(x, i, status);
}

/* A command worker: one per slot of max_parallel (up to the number of
 * command steps). */
static void *cmd_worker_main(void *arg) {
  pthread_setname_np(pthread_self(), "zorch-command");
  zorch__exec *x = arg;
  cmd_slot sl = {.pipe_r = -1, .pipe_w = -1};
  pthread_mutex_lock(&x->lock);
  for (;;) {
    while (!x->cq.len && !x->shutdown) {
      x->n_cmd_idle++;
      pthread_cond_wait(&x->cmd_cv, &x->lock);
      x->n_cmd_idle--;
    }
    if (!x->cq.len) break;
    uint32_t i = ring_pop(&x->cq);
    if (x->xs[i].stop_requested) {
      attempt_done_on(x, &x->cmd_self_take, i, false, NULL, -1, NULL);
      continue;
    }
    pthread_mutex_unlock(&x->lock);
    run_command(x, i, &sl);
  }
  pthread_mutex_unlock(&x->lock);
  slot_drop_pipe(&sl);
  return NULL;
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
    if (xa->pid > 0) {
      if (!xs->killing) {
        if (!xs->stop_requested) xs->timed_out = true;
        kill(-xa->pid, SIGTERM);
        xs->killing = true;
        xa->deadline_ns = now + 2000000000LL;
        if (xa->deadline_ns < next) next = xa->deadline_ns;
      } else {
        kill(-xa->pid, SIGKILL);
        xa->deadline_ns = 0;
      }
    } else if (x->remote) { /* launched elsewhere: the plugin stops it */
      if (!xs->stop_requested) xs->timed_out = true;
      queue_stop(x, i);
      xa->deadline_ns = 0;
    } else { /* a function step: ask it to stop; it is failed when it returns */
      xs->timed_out = true;
      atomic_store(&xs->cancelled, 1);
      xa->deadline_ns = 0;
    }
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

/* ---- remote steps: a plugin launches them elsewhere ------------------------------------ */

static void remote_free(zorch__remote *rm) {
  if (!rm) return;
  if (rm->settings)
    for (size_t i = 0; rm->settings[i]; i++) free(rm->settings[i]);
  free(rm->settings);
  free(rm->store_path);
  free(rm);
}

/* The entrypoint command of step i: the deployment's template of its kind
 * with {step} replaced.  Strings in *keep. */
static int remote_argv(zorch__exec *x, uint32_t i, zorch__strv *keep) {
  const zorch__pstep *s = &x->plan->steps[i];
  json_t *tmpl = json_object_get(json_object_get(x->plan->doc, "entrypoint"),
                                 s->kind == ZORCH__STEP_COMMAND ? "command" : "function");
  if (!json_is_array(tmpl) || !json_array_size(tmpl))
    return zorch__error_set(ZORCH_EINVALID, "the deployment has no %s entrypoint template",
                            s->kind == ZORCH__STEP_COMMAND ? "command" : "function");
  for (size_t a = 0; a < json_array_size(tmpl); a++) {
    const char *t = json_string_value(json_array_get(tmpl, a));
    if (!t) return zorch__error_set(ZORCH_EINVALID, "the deployment's entrypoint template is not an array of strings");
    zorch__buf b = ZORCH__BUF_INIT;
    for (const char *p = t; *p;) {
      const char *q = strstr(p, "{step}");
      if (!q) {
        zorch__buf_puts(&b, p);
        break;
      }
      zorch__buf_put(&b, p, (size_t)(q - p));
      zorch__buf_puts(&b, s->name);
      p = q + 6;
    }
    if (!b.data) zorch__buf_puts(&b, "");
    int rc = b.data ? zorch__strv_push(keep, b.data) : zorch__error_oom();
    zorch__buf_free(&b);
    if (rc) return rc;
  }
  return ZORCH_OK;
}

/* Launch one attempt through the plugin.  Not under the lock. */
static int remote_launch(zorch__exec *x, uint32_t i, uint32_t attempt, char **err) {
  const zorch__pstep *s = &x->plan->steps[i];
  zorch__strv argv = {0};
  int rc = remote_argv(x, i, &argv);
  /* the step entrypoint reads the records of earlier steps (cache hits are
   * only in the journal) and writes its own: stale ones must not count */
  if (!rc && x->journal) rc = zorch__journal_flush(x->journal);
  char *rec = x->run_dir ? zorch__asprintf("%s/steps/%s.json", x->run_dir, s->name) : NULL;
  if (rec) unlink(rec);
  free(rec);
  char *lp = step_log_path(x, i);
  if (!rc && !argv.v) rc = zorch__error_oom(); /* argv.v is NULL-terminated */
  if (rc) {
    *err = zorch__asprintf("cannot launch the step: %s", zorch_error_last()->message);
    zorch__strv_clear(&argv);
    free(lp);
    return rc;
  }
  static const char *no_env[1] = {NULL};
  zorch_step_launch L = {
      .version = ZORCH_STEP_LAUNCH_VERSION,
      .executor = x,
      .attempt_id = ((uint64_t)attempt << 32) | i,
      .run_id = x->plan->run_id,
      .run_name = x->plan->run_name,
      .pipeline = x->plan->pipeline,
      .step = s->name,
      .kind = s->kind == ZORCH__STEP_COMMAND ? "command" : "function",
      .attempt = attempt,
      .argv = (const char *const *)argv.v,
      .env = s->env ? (const char *const *)s->env : no_env,
      .settings_json = x->remote->settings ? x->remote->settings[i] : "{}",
      .image = s->image,
      .log_path = lp,
      .store_path = x->remote->store_path,
  };
  zorch_error_clear();
  rc = x->remote->ops->launch(x->remote->data, &L);
  if (rc) {
    const char *m = zorch_error_last()->message;
    *err = zorch__asprintf("cannot launch the step: %s", m && *m ? m : zorch_strerror(rc));
    if (lp && *err) zorch__log_append(lp, "zorch: step failed: %s", *err);
  }
  zorch__strv_clear(&argv);
  free(lp);
  return rc;
}

/* Launch the queued steps and send the queued stops.  Lock held (dropped
 * around each call into the plugin). */
static void remote_launch_and_stop(zorch__exec *x) {
  while (x->rq.len) {
    uint32_t i = ring_pop(&x->rq);
    xstep *xs = &x->xs[i];
    if (xs->stop_requested) {
      attempt_done(x, i, false, NULL, -1, NULL);
      continue;
    }
    const zorch__pstep *s = &x->plan->steps[i];
    uint32_t attempt = x->recs[i].attempts;
    xs->started = true;
    xs->stop_queued = false;
    x->xa[i].deadline_ns = s->timeout > 0 ? zorch__mono_ns() + (int64_t)(s->timeout * 1e9) : 0;
    pthread_mutex_unlock(&x->lock);
    char *err = NULL;
    int rc = remote_launch(x, i, attempt, &err);
    pthread_mutex_lock(&x->lock);
    if (rc) attempt_done(x, i, false, err, -1, NULL);
  }
  while (x->sq.len) {
    uint32_t i = ring_pop(&x->sq);
    xstep *xs = &x->xs[i];
    if (!xs->stop_queued) continue;
    xs->stop_queued = false;
    if (!xs->started) continue; /* ended meanwhile */
    uint64_t id = ((uint64_t)x->recs[i].attempts << 32) | i;
    pthread_mutex_unlock(&x->lock);
    x->remote->ops->stop(x->remote->data, x, id);
    pthread_mutex_lock(&x->lock);
  }
}

/* The last lines of a remote step's log, without zorch's own "zorch: step
 * ..." lines (the entrypoint's failure lines: the step's error says it). */
static char *remote_log_tail(zorch__exec *x, uint32_t i) {
  enum { LINES = 10 };
  char *t = log_tail(x, i, 3 * LINES);
  if (!t) return NULL;
  char *keep[3 * LINES];
  int n = 0;
  for (char *save = NULL, *ln = strtok_r(t, "\n", &save); ln && n < 3 * LINES;
       ln = strtok_r(NULL, "\n", &save))
    if (strncmp(ln, "zorch: step ", 12) != 0) keep[n++] = ln;
  zorch__buf out = {0};
  for (int k = n > LINES ? n - LINES : 0; k < n; k++)
    zorch__buf_cat(&out, out.len ? "\n" : "", keep[k], (const char *)NULL);
  free(t);
  if (out.len) return zorch__buf_detach(&out);
  zorch__buf_free(&out);
  return NULL;
}

int zorch__exec_remote_done(zorch__exec *x, uint64_t attempt_id, int exit_code, const char *message) {
  uint32_t i = (uint32_t)(attempt_id & 0xffffffffu), attempt = (uint32_t)(attempt_id >> 32);
  pthread_mutex_lock(&x->lock);
  bool live = x->remote && i < x->n && x->xs && x->xs[i].started &&
              x->xs[i].active && x->recs[i].attempts == attempt;
  bool timed_out = live && x->xs[i].timed_out, stopped = live && x->xs[i].stop_requested;
  pthread_mutex_unlock(&x->lock);
  if (!live)
    return zorch__error_set(ZORCH_ENOTFOUND, "executor_step_done: no running attempt %u of step #%u",
                            attempt, i);
  const zorch__pstep *s = &x->plan->steps[i];
  /* what the step entrypoint recorded: status, outputs, the command's exit */
  zorch__step_rec *tmp = zorch__step_recs_new(x->plan);
  char *rp = x->run_dir ? zorch__asprintf("%s/steps/%s.json", x->run_dir, s->name) : NULL;
  char *text = NULL;
  size_t tl = 0;
  bool have = tmp && rp && zorch__read_file(rp, &text, &tl) == ZORCH_OK &&
              zorch__step_rec_apply(x->plan, tmp, text, tl) == ZORCH_OK;
  free(text);
  free(rp);
  zorch__step_rec *r = have ? &tmp[i] : NULL;
  bool ok = false;
  char *err = NULL;
  int code = r && r->exit_code >= 0 ? r->exit_code : exit_code;
  if (timed_out) {
    err = zorch__asprintf("timed out after %g s", s->timeout);
  } else if (stopped) {
    err = NULL;
  } else if (exit_code == 0) {
    if (!r || r->status != ZORCH_STATUS_COMPLETED) {
      err = zorch__asprintf("the step exited 0 but its entrypoint recorded %s (is the artifact "
                            "store '%s' mounted at the same path where the step runs?)",
                            r ? zorch_status_name(r->status) : "nothing",
                            x->remote->store_path ? x->remote->store_path : "?");
    } else {
      ok = true;
      for (uint32_t k = 0; k < s->n_outputs && ok; k++)
        if (!r->outputs[k].set || !zorch__store_has(x->store, r->outputs[k].digest)) {
          ok = false;
          err = zorch__asprintf("output '%s' is not in the artifact store after the step", s->outputs[k]);
        }
    }
  } else {
    char *why;
    if (r && r->status == ZORCH_STATUS_FAILED && r->error)
      why = message && *message ? zorch__asprintf("%s; %s", r->error, message) : zorch__strdup(r->error);
    else
      why = message && *message ? zorch__strdup(message)
                                : zorch__asprintf("the step process exited with status %d", exit_code);
    /* the last lines of what the step printed, whatever flavor ran it */
    char *tail = remote_log_tail(x, i);
    err = tail && why ? zorch__asprintf("%s; last lines of its log:\n%s", why, tail) : why;
    if (err != why) free(why);
    free(tail);
  }
  uint32_t n = x->n;
  pthread_mutex_lock(&x->lock);
  /* still the same attempt? (a cancel may not end it twice) */
  if (x->xs && x->xs[i].started && x->recs[i].attempts == attempt) {
    attempt_done(x, i, ok, err, code, ok ? r->outputs : NULL);
    err = NULL;
  }
  /* the run may end with this step: x may be freed once the lock is released */
  pthread_mutex_unlock(&x->lock);
  free(err);
  zorch__step_recs_free(tmp, n);
  return ZORCH_OK;
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
      record(x, i);
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
    if (x->remote) remote_launch_and_stop(x);
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
  for (uint32_t i = 0; x->n_cmd_workers && x->xa && i < x->n; i++)
    free_scratch(&x->xa[i], x->plan->steps[i].n_outputs, true);
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
  if (x->devnull >= 0) close(x->devnull);
  if (x->xa)
    for (uint32_t i = 0; i < x->n; i++) free_scratch(&x->xa[i], x->plan->steps[i].n_outputs, true);
  zorch__journal_close(x->journal);
  zorch__cache_close(x->cache);
  zorch__step_recs_free(x->recs, x->n);
  sched_state_free(x);
  remote_free(x->remote);
  free(x->active);
  free(x->workers);
  free(x->cmd_workers);
  free(x->run_dir);
  free(x->stop_reason);
  free(x->run_message);
  zorch__map_free(x->exe_cache);
  zorch__strv_clear(&x->exe_names);
  free(x->env_base);
  zorch__plan_free(x->plan);
  pthread_mutex_destroy(&x->lock);
  pthread_cond_destroy(&x->work_cv);
  pthread_cond_destroy(&x->cmd_cv);
  pthread_mutex_destroy(&x->spawn_mu);
  posix_spawnattr_destroy(&x->spawn_attr);
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
    remote_free(opts->remote);
    zorch__plan_free(plan);
    return zorch__error_oom();
  }
  x->plan = plan;
  x->store = store;
  x->opts = *opts;
  x->remote = opts->remote;
  x->opts.remote = NULL;
  x->n = plan->n_steps;
  x->evfd = x->devnull = -1;
  /* critical sections are short (a completion, a dispatch): spin a little
   * before sleeping, since waking a sleeping thread costs far more */
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(&x->lock, &ma);
  pthread_mutexattr_destroy(&ma);
  pthread_cond_init(&x->work_cv, NULL);
  pthread_cond_init(&x->cmd_cv, NULL);
  pthread_mutex_init(&x->spawn_mu, NULL);
  spawn_attr_init(&x->spawn_attr);
  pthread_cond_init(&x->done_cv, NULL);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  x->max_parallel = opts->max_parallel ? opts->max_parallel : (uint32_t)(cpus > 0 ? cpus : 1);
  int rc = ZORCH_OK;
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
  x->exe_cache = zorch__map_new(8);
  if (!x->exe_cache) {
    rc = zorch__error_oom();
    goto fail;
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
    if (pthread_create(&x->workers[w], NULL, worker_main, x) != 0) {
      x->n_workers = w;
      break;
    }
  }
  for (uint32_t w = 0; w < want_cmd; w++) {
    if (pthread_create(&x->cmd_workers[w], NULL, cmd_worker_main, x) != 0) {
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
