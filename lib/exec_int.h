/* zorch — the executor's shared state: what the scheduler (executor.c) and
 * its launchers (exec_function.c, exec_command.c, exec_remote.c) all read.
 * Private to those four files; see exec_launch.h for how they call each
 * other. */
#ifndef ZORCH_EXEC_INT_H
#define ZORCH_EXEC_INT_H

#include <pthread.h>
#include <spawn.h>
#include <time.h>

#include "executor.h"
#include "map.h"

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

static inline void ring_push(ring *r, uint32_t x) {
  size_t at = r->head + r->len;
  r->v[at >= r->cap ? at - r->cap : at] = x;
  r->len++;
}
static inline uint32_t ring_pop(ring *r) {
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
   * which would find the queue empty (see zorch__exec_attempt_done_on) */
  bool fn_self_take, cmd_self_take;
  uint32_t n_failed;       /* steps that ended failed */
  zorch__buf key_text;     /* the text of cache keys made under the lock */
  bool stopping, cancelled, sched_done, shutdown, finished;
  char *stop_reason;
  int run_status;
  char *run_message;
  atomic_int cancel_flag;
  int evfd;        /* wakes the loop thread (zorch__exec_wake_loop) */
  pthread_t loop_thread;
  pthread_t *workers;
  uint32_t n_workers;
  pthread_cond_t cmd_cv; /* idle command workers wait here */
  uint32_t n_cmd_idle;
  pthread_t *cmd_workers;
  uint32_t n_cmd_workers;
  bool loop_started;
  pthread_mutex_t spawn_mu; /* exe_cache, exe_names, devnull and env_base: command workers share them */
  posix_spawnattr_t spawn_attr; /* of every command process (exec_command.c) */
  zorch__map *exe_cache;  /* argv[0] -> resolved path */
  zorch__strv exe_names;
  /* A worker journals the end record of a function step that succeeded
   * (and appends its cache entry) before it takes the lock, so that two
   * workers do that work in parallel and the lock is held briefly;
   * zorch__exec_record() then skips that step within the same critical
   * section. */
  uint32_t pre_step;
  bool pre_recorded;
  bool pre_cache_done;
  double pre_finished;  /* when it ended (0: not known) */
  /* the time a completion under way read (0: none): the steps it makes
   * ready are dispatched at that time, without a second clock read */
  double now_hint;
  int devnull;               /* stdin of command steps, -1 until the first */
  char **env_base;           /* see step_env (exec_command.c) */
  size_t n_env_base;
  const char **env_base_of;
};

enum {
  SF_WORKER = 1,          /* a function step run here by the workers */
  SF_TIMEOUT = 2,         /* it has a timeout */
  SF_CACHE = 4,           /* its results may come from the cache */
  SF_UPSTREAM_FAILED = 8, /* a predecessor ended without completing (lock held) */
};

/* The time a function step starts or ends.  An ephemeral run reads the
 * coarse clock (a few ms of resolution, a fraction of the cost: with no-op
 * steps the precise one was a fifth of a step's time); see run.h. */
static inline double step_clock(const zorch__exec *x) {
  if (!(x->opts.flags & ZORCH_RUN_EPHEMERAL)) return zorch__now();
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Where step i's log goes; NULL when the run keeps no logs (or on OOM). */
static inline char *step_log_path(const zorch__exec *x, uint32_t i) {
  if (!x->run_dir) return NULL;
  return zorch__asprintf("%s/logs/%s.log", x->run_dir, x->plan->steps[i].name);
}

/* The last `lines` lines of step i's log, or NULL. */
static inline char *log_tail(const zorch__exec *x, uint32_t i, int lines) {
  char *lp = step_log_path(x, i);
  char *t = lp ? zorch__file_tail(lp, lines) : NULL;
  free(lp);
  return t;
}

#endif /* ZORCH_EXEC_INT_H */
