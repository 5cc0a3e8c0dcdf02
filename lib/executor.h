/* zorch — the DAG executor: runs a plan in this process. */
#ifndef ZORCH_EXECUTOR_H
#define ZORCH_EXECUTOR_H

#include <spawn.h>

#include "plan.h"
#include "steprec.h"
#include <zorch/plugin.h>
#include "store.h"

typedef struct zorch__exec zorch__exec;

typedef void (*zorch__finish_cb)(int run_status, const char *message, void *payload);

/** Remote steps: a plugin launches every step elsewhere (see
 *  zorch_host.executor_start_remote). */
typedef struct zorch__remote {
  const zorch_step_launcher *ops;
  void *data;
  char **settings;                  /* per step: effective settings JSON (malloc'd) */
  char *store_path;
  char *flavor;                     /* the orchestrator flavor's name (log headers) */
  /* executor_step_log: per step, its log file while an attempt hands bytes
   * (fd -1 otherwise) and the attempt whose header was written; the lock
   * serialises the writes (never taken with the executor's lock held) */
  struct zorch__remote_log {
    int fd;
    uint32_t attempt;
  } *logs;
  uint32_t n_logs;
  pthread_mutex_t log_lock;         /* initialised when logs is set */
} zorch__remote;

/** A remote launcher's state for a plan of n steps (zorch__exec_opts.remote):
 *  settings, store_path and flavor are the caller's to set.  NULL on OOM. */
zorch__remote *zorch__remote_new(const zorch_step_launcher *ops, void *data, uint32_t n);
/** Free it (closing the log files still open).  NULL is a no-op. */
void zorch__remote_free(zorch__remote *rm);

/** Does a run with these ZORCH_RUN_* flags use the cache index and make
 *  cache keys?  Not an ephemeral run with the cache off: it neither reads
 *  nor writes the index, and computes no key at all. */
static inline bool zorch__run_makes_keys(uint32_t flags) {
  return !((flags & ZORCH_RUN_EPHEMERAL) && (flags & ZORCH_RUN_NO_CACHE));
}

typedef struct zorch__exec_opts {
  uint32_t max_parallel;            /* 0: number of online CPUs */
  uint32_t flags;                   /* ZORCH_RUN_NO_CACHE, ZORCH_RUN_EPHEMERAL */
  zorch_progress_cb progress_cb;
  void *progress_payload;
  zorch__finish_cb finish_cb;       /* called once, on the executor's thread, at the end */
  void *finish_payload;
  zorch__remote *remote;            /* NULL: run steps here; else owned by the executor */
} zorch__exec_opts;

/** Start executing `plan` (ownership taken) against `store` (borrowed; must
 *  outlive the executor).  Returns once the run is under way. */
int zorch__exec_start(zorch__exec **out, zorch__plan *plan, zorch__store *store,
                      const zorch__exec_opts *opts);
/** ZORCH_OK once finished (records durable), ZORCH_ETIMEOUT otherwise. */
int zorch__exec_wait(zorch__exec *x, int timeout_ms);
/** A launched remote attempt ended (zorch_host.executor_step_done). */
int zorch__exec_remote_done(zorch__exec *x, uint64_t attempt_id, int exit_code, const char *message);
/** Bytes a launched remote attempt printed (zorch_host.executor_step_log):
 *  appended to the step's log after a "--- attempt N (flavor) ---" header
 *  the first time the attempt hands any.  Any thread.  ZORCH_ENOTFOUND for
 *  an attempt that is not running. */
int zorch__exec_remote_log(zorch__exec *x, uint64_t attempt_id, const void *data, size_t len);
/** Request cancellation; async-signal-safe. */
int zorch__exec_cancel(zorch__exec *x);
/** Final run status (valid after wait returned ZORCH_OK) and its message. */
int zorch__exec_status(const zorch__exec *x, const char **message);
/** Copy the current step records (thread-safe); free with zorch__step_recs_free.
 *  NULL on OOM or once the records were taken. */
zorch__step_rec *zorch__exec_snapshot(zorch__exec *x);
/** After the end: hand the records over without a copy (once); NULL before
 *  the end or when already taken. */
zorch__step_rec *zorch__exec_take_records(zorch__exec *x);
const zorch__plan *zorch__exec_plan(const zorch__exec *x);
/** Wait for the end, then free.  NULL is a no-op. */
void zorch__exec_free(zorch__exec *x);

/* ---- command steps (exec_command.c), shared with the command-step entrypoint ---- */

/** Push the ZORCH_* variables of command step i onto *extra; makes a scratch
 *  path per output in scratch[] (n_outputs slots, zeroed). */
int zorch__command_env(zorch__strv *extra, zorch__store *store, const zorch__plan *plan, uint32_t i,
                       const zorch__step_rec *recs, char **scratch);
/** The step's own variables (`own`, NULL-terminated, may be NULL) followed
 *  by the inherited ones (environ) it does not override; *n: how many.  A
 *  malloc'd array of borrowed strings, NULL-terminated; NULL on OOM. */
char **zorch__command_base_env(const char *const *own, size_t *n);
/** The environment of a command step's process: zorch's variables (`extra`,
 *  from zorch__command_env) followed by the nbase `base` ones they do not
 *  override.  A malloc'd array of borrowed strings, NULL-terminated; NULL
 *  on OOM. */
char **zorch__command_envp(const zorch__strv *extra, char *const *base, size_t nbase);
/** Spawn the process of command step s with the environment envp: `exe`
 *  when the caller looked argv[0] up, else argv[0] as posix_spawnp(3) finds
 *  it.  `fa` and `attr` may be NULL.  0, or the error number. */
int zorch__command_spawn(pid_t *pid, const zorch__pstep *s, const char *exe,
                         const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                         char *const *envp);
/** Store the outputs written at the scratch paths into outs[] (each stored
 *  one's scratch path is freed and cleared); false with *err. */
bool zorch__command_outputs(zorch__store *store, const zorch__plan *plan, uint32_t i, char **scratch,
                            zorch__output_rec *outs, char **err);
/** Remove what is left at n scratch paths and free them, and the array.
 *  NULL is a no-op. */
void zorch__command_scratch_free(char **scratch, uint32_t n);

#endif
