/* zorch — the executor's launchers: how one attempt of a step starts and stops.
 *
 * The scheduler (executor.c) decides when an attempt runs; a launcher runs
 * it.  Each step has one launcher for the whole run:
 *
 *   function steps  exec_function.c  a worker thread calls the step's function
 *   command steps   exec_command.c   a command thread spawns the process and
 *                                    waits for it, copying its output to the log
 *   remote steps    exec_remote.c    a plugin launches the step elsewhere (every
 *                                    step of a run with zorch__exec_opts.remote)
 *
 * The scheduler calls zorch__exec_launch() for each attempt it dispatches and
 * zorch__exec_stop() to end one early (timeout, cancel, fail-fast), both with
 * its lock held.  Every launched attempt ends with exactly one call of
 * zorch__exec_attempt_done(), lock held, on whatever thread the launcher
 * learnt the end: a function or command worker calls it itself and, through
 * zorch__exec_attempt_done_on(), takes the next step of its kind that the
 * bookkeeping dispatches, with no hand-off to another thread.
 *
 * Launching and stopping are inline: dispatching a step must cost no call
 * beyond what it did before the launchers were separate files.
 */
#ifndef ZORCH_EXEC_LAUNCH_H
#define ZORCH_EXEC_LAUNCH_H

#include "exec_int.h"

/* ---- the scheduler, for the launchers (executor.c) ---- */

/** An attempt of step i ended: ok (its outputs in outs[], copied) or not
 *  (`error` taken: why, or NULL), with its exit code (-1: not a process).
 *  Does the bookkeeping and dispatches what became ready.  Lock held. */
void zorch__exec_attempt_done(zorch__exec *x, uint32_t i, bool ok, char *error, int exit_code,
                              const zorch__output_rec *outs);

/** The same on the worker that ran the attempt, which takes its next step
 *  from its queue right after: `self_take` (x->fn_self_take or
 *  x->cmd_self_take) leaves it the first step of its kind that the
 *  bookkeeping dispatches.  Lock held. */
static inline void zorch__exec_attempt_done_on(zorch__exec *x, bool *self_take, uint32_t i, bool ok,
                                               char *error, int exit_code,
                                               const zorch__output_rec *outs) {
  *self_take = true;
  zorch__exec_attempt_done(x, i, ok, error, exit_code, outs);
  *self_take = false;
}

/** The next step for a worker of queue q (x->fq or x->cq): waits on cv,
 *  counted in *n_idle, while the queue is empty; UINT32_MAX once the queue
 *  is empty at shutdown.  A step stopped before it started ends here (its
 *  worker's `self_take`, see above).  Lock held. */
static inline uint32_t zorch__exec_next(zorch__exec *x, ring *q, pthread_cond_t *cv, uint32_t *n_idle,
                                        bool *self_take) {
  for (;;) {
    while (!q->len && !x->shutdown) {
      (*n_idle)++;
      pthread_cond_wait(cv, &x->lock);
      (*n_idle)--;
    }
    if (!q->len) return UINT32_MAX;
    uint32_t i = ring_pop(q);
    if (!x->xs[i].stop_requested) return i;
    zorch__exec_attempt_done_on(x, self_take, i, false, NULL, -1, NULL);
  }
}

/** Journal step i's record as it is now.  Lock held. */
void zorch__exec_record(zorch__exec *x, uint32_t i);

/** Wake the event-loop thread (to learn a deadline, launch or stop remote
 *  steps); a no-op on that thread itself. */
void zorch__exec_wake_loop(zorch__exec *x);

/* ---- function steps (exec_function.c) ---- */

/** A function worker's thread (one per slot of max_parallel, up to the
 *  number of function steps): takes steps from x->fq until shutdown. */
void *zorch__exec_function_worker(void *x);

/* ---- command steps (exec_command.c) ---- */

/** The command launcher's part of x: spawn attributes, the PATH lookups, the
 *  inherited environment.  ZORCH_ENOMEM on failure (then free it anyway). */
int zorch__exec_command_init(zorch__exec *x);
/** Remove what steps left at their scratch paths (the command workers have
 *  ended). */
void zorch__exec_command_cleanup(zorch__exec *x);
/** Free the command launcher's part of x (cleaning up first). */
void zorch__exec_command_free(zorch__exec *x);
/** A command worker's thread (one per slot of max_parallel, up to the
 *  number of command steps): takes steps from x->cq until shutdown. */
void *zorch__exec_command_worker(void *x);
/** Stop the process of step i (see zorch__exec_stop).  Lock held. */
void zorch__exec_command_stop(zorch__exec *x, uint32_t i, int64_t now, bool deadline);

/* ---- remote steps (exec_remote.c) ---- */

/** Launch the queued attempts (x->rq) and send the queued stops (x->sq),
 *  on the event-loop thread.  Lock held (dropped around each call into the
 *  plugin). */
void zorch__exec_remote_pump(zorch__exec *x);
/** Stop the attempt of step i (see zorch__exec_stop).  Lock held. */
void zorch__exec_remote_stop(zorch__exec *x, uint32_t i, bool deadline);

/* ---- launch and stop ---- */

/** Hand attempt `attempt` of step i, just dispatched, to its launcher: to
 *  the queue its threads take steps from.  True when the event-loop thread
 *  must be woken (the caller wakes it once for several).  Lock held. */
static inline bool zorch__exec_launch(zorch__exec *x, uint32_t i, uint32_t attempt) {
  (void)attempt; /* each launcher reads it from the step's record when it starts */
  uint8_t f = x->sflags[i];
  if (x->remote) { /* launched from the loop: a call into the plugin may block */
    ring_push(&x->rq, i);
    return true;
  }
  if (f & SF_WORKER) {
    /* its worker reads the plan's step first thing */
    __builtin_prefetch(&x->plan->steps[i]);
    __builtin_prefetch((const char *)&x->plan->steps[i] + 64);
    ring_push(&x->fq, i);
    if (x->fn_self_take) x->fn_self_take = false;
    else if (x->n_idle) pthread_cond_signal(&x->work_cv);
    return f & SF_TIMEOUT; /* the loop must learn the deadline */
  }
  ring_push(&x->cq, i);
  if (x->cmd_self_take) x->cmd_self_take = false;
  else if (x->n_cmd_idle) pthread_cond_signal(&x->cmd_cv);
  return false;
}

/** End the running attempt of step i early.  `deadline`: its deadline
 *  passed (a timeout, or a process that did not heed SIGTERM in time: the
 *  launcher sets a new deadline in x->xa[i] when it wants to be called
 *  again); else the run stops it (cancel, fail-fast; x->xs[i].stop_requested
 *  is set).  A step whose process runs is the command launcher's; else a
 *  remote run's steps are the remote launcher's, and the rest are function
 *  steps, asked to return through zorch_ctx_cancelled().  Lock held. */
static inline void zorch__exec_stop(zorch__exec *x, uint32_t i, int64_t now, bool deadline) {
  if (x->xa && x->xa[i].pid > 0) {
    zorch__exec_command_stop(x, i, now, deadline);
  } else if (x->remote) {
    zorch__exec_remote_stop(x, i, deadline);
  } else {
    if (deadline) {
      x->xs[i].timed_out = true;
      x->xa[i].deadline_ns = 0;
    }
    atomic_store(&x->xs[i].cancelled, 1);
  }
}

#endif /* ZORCH_EXEC_LAUNCH_H */
