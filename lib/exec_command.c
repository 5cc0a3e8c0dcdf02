/* zorch — the executor's command-step launcher: a pool of command threads
 * (one per slot of max_parallel, up to the number of command steps), each
 * taking steps from x->cq, spawning the step's process, waiting for it on a
 * pidfd while copying its output into the step's log, storing its outputs
 * and doing the bookkeeping of its end itself (see exec_launch.h).  The
 * command-step entrypoint shares the step's environment and its outputs
 * (zorch__command_env, zorch__command_outputs). */
#include "exec_launch.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctx.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

extern char **environ;

static char *env_name(const char *prefix, const char *name) {
  char *s = zorch__asprintf("%s%s", prefix, name);
  if (!s) return NULL;
  for (char *p = s + strlen(prefix); *p; p++) {
    if (*p == '-') *p = '_';
    else if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
  }
  return s;
}

void zorch__command_scratch_free(char **scratch, uint32_t n) {
  if (!scratch) return;
  for (uint32_t k = 0; k < n; k++) {
    if (scratch[k]) zorch__rm_rf(scratch[k]);
    free(scratch[k]);
  }
  free(scratch);
}

static void free_scratch(xaux *xs, uint32_t n) {
  zorch__command_scratch_free(xs->scratch, n);
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

char **zorch__command_base_env(const char *const *own, size_t *n) {
  size_t ne = 0, nown = 0;
  while (environ[ne]) ne++;
  while (own && own[nown]) nown++;
  char **v = malloc((ne + nown + 1) * sizeof *v);
  if (!v) return NULL;
  size_t k = 0;
  for (size_t q = 0; q < nown; q++) v[k++] = (char *)own[q];
  for (size_t q = 0; q < ne; q++) {
    size_t l = strcspn(environ[q], "=");
    bool shadow = false;
    for (size_t t = 0; t < nown && !shadow; t++)
      shadow = !strncmp(own[t], environ[q], l) && own[t][l] == '=';
    if (!shadow) v[k++] = environ[q];
  }
  v[k] = NULL;
  *n = k;
  return v;
}

char **zorch__command_envp(const zorch__strv *extra, char *const *base, size_t nbase) {
  char **envp = malloc((nbase + extra->n + 1) * sizeof *envp);
  if (!envp) return NULL;
  size_t k = 0;
  for (size_t q = 0; q < extra->n; q++) envp[k++] = extra->v[q];
  /* all of zorch's variables start with ZORCH_: only such base ones need a look */
  for (size_t q = 0; q < nbase; q++) {
    const char *e = base[q];
    bool shadow = false;
    if (!strncmp(e, "ZORCH_", 6)) {
      size_t l = strcspn(e, "=");
      for (size_t t = 0; t < extra->n && !shadow; t++)
        shadow = !strncmp(extra->v[t], e, l) && extra->v[t][l] == '=';
    }
    if (!shadow) envp[k++] = (char *)e;
  }
  envp[k] = NULL;
  return envp;
}

int zorch__command_spawn(pid_t *pid, const zorch__pstep *s, const char *exe,
                         const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                         char *const *envp) {
  return exe ? posix_spawn(pid, exe, fa, attr, (char *const *)s->argv, envp)
             : posix_spawnp(pid, s->argv[0], fa, attr, (char *const *)s->argv, envp);
}

/* The base environment of step s (zorch__command_base_env).  That of the
 * steps that set none of their own (most) is merged once, when the run
 * spawns its first process, and kept; other steps get a fresh array (the
 * caller frees it when it is not x->env_base).  NULL on OOM.  spawn_mu
 * held. */
static char **step_env(zorch__exec *x, const zorch__pstep *s, size_t *n) {
  if (x->env_base && x->env_base_of == s->env) {
    *n = x->n_env_base;
    return x->env_base;
  }
  char **v = zorch__command_base_env(s->env, n);
  if (v && !x->env_base && s->env == x->plan->defaults.env) {
    x->env_base = v;
    x->n_env_base = *n;
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
   * ones (merged once per run, see step_env) */
  char **envp = NULL;
  if (!rc) {
    size_t nbase = 0;
    pthread_mutex_lock(&x->spawn_mu);
    char **base = step_env(x, s, &nbase);
    pthread_mutex_unlock(&x->spawn_mu);
    envp = base ? zorch__command_envp(&extra, base, nbase) : NULL;
    if (!envp) rc = zorch__error_oom();
    if (base != x->env_base) free(base);
  }
  if (rc) {
    *err = zorch__asprintf("cannot prepare the step: %s", zorch_error_last()->message);
    xs->outfd = -1;
    zorch__strv_clear(&extra);
    free_scratch(xs, s->n_outputs);
    return rc;
  }
  pthread_mutex_lock(&x->spawn_mu);
  const char *exe = resolve_exe(x, s->argv[0]);
  pthread_mutex_unlock(&x->spawn_mu);
  pid_t pid = 0;
  int src = zorch__command_spawn(&pid, s, exe, &sl->fa, &x->spawn_attr, envp);
  free(envp);
  zorch__strv_clear(&extra);
  if (src != 0) {
    xs->outfd = -1;
    *err = zorch__asprintf("cannot run '%s': %s", s->argv[0], strerror(src));
    free_scratch(xs, s->n_outputs);
    return ZORCH_ERROR;
  }
  *pid_out = pid;
  return ZORCH_OK;
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
  free_scratch(&x->xa[i], s->n_outputs);
  if (!ok && err) {
    char *lp = step_log_path(x, i);
    if (lp) zorch__log_append(lp, "zorch: step failed: %s", err);
    free(lp);
  }
  pthread_mutex_lock(&x->lock);
  zorch__exec_attempt_done_on(x, &x->cmd_self_take, i, ok, err, code, outs);
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
      zorch__exec_record(x, i);
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
    zorch__exec_attempt_done_on(x, &x->cmd_self_take, i, false, err, 127, NULL);
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
  if (xa->deadline_ns) zorch__exec_wake_loop(x); /* the loop keeps the deadlines */
  pthread_mutex_unlock(&x->lock);
  int status = wait_command(x, i, pid, pidfd);
  copy_output(x, i, true); /* everything it wrote is in the pipe now */
  /* a process left in the step's group may still hold the pipe */
  if (kill(-pid, 0) == 0 || errno != ESRCH) slot_drop_pipe(sl);
  command_exited(x, i, status);
}

/* A command worker: one per slot of max_parallel (up to the number of
 * command steps). */
void *zorch__exec_command_worker(void *arg) {
  pthread_setname_np(pthread_self(), "zorch-command");
  zorch__exec *x = arg;
  cmd_slot sl = {.pipe_r = -1, .pipe_w = -1};
  pthread_mutex_lock(&x->lock);
  for (;;) {
    uint32_t i = zorch__exec_next(x, &x->cq, &x->cmd_cv, &x->n_cmd_idle, &x->cmd_self_take);
    if (i == UINT32_MAX) break;
    pthread_mutex_unlock(&x->lock);
    run_command(x, i, &sl);
  }
  pthread_mutex_unlock(&x->lock);
  slot_drop_pipe(&sl);
  return NULL;
}

/* ---- the launcher's part of the executor ---------------------------------------------------- */

int zorch__exec_command_init(zorch__exec *x) {
  x->devnull = -1;
  pthread_mutex_init(&x->spawn_mu, NULL);
  spawn_attr_init(&x->spawn_attr);
  x->exe_cache = zorch__map_new(8);
  return x->exe_cache ? ZORCH_OK : zorch__error_oom();
}

void zorch__exec_command_cleanup(zorch__exec *x) {
  for (uint32_t i = 0; x->xa && i < x->n; i++)
    free_scratch(&x->xa[i], x->plan->steps[i].n_outputs);
}

void zorch__exec_command_free(zorch__exec *x) {
  if (x->devnull >= 0) close(x->devnull);
  zorch__exec_command_cleanup(x);
  zorch__map_free(x->exe_cache);
  zorch__strv_clear(&x->exe_names);
  free(x->env_base);
  pthread_mutex_destroy(&x->spawn_mu);
  posix_spawnattr_destroy(&x->spawn_attr);
}

void zorch__exec_command_stop(zorch__exec *x, uint32_t i, int64_t now, bool deadline) {
  xstep *xs = &x->xs[i];
  xaux *xa = &x->xa[i];
  if (!xs->killing) {
    if (deadline && !xs->stop_requested) xs->timed_out = true;
    kill(-xa->pid, SIGTERM);
    xs->killing = true;
    xa->deadline_ns = now + 2000000000LL; /* then SIGKILL */
  } else if (deadline) {
    kill(-xa->pid, SIGKILL);
    xa->deadline_ns = 0;
  }
}
