#define _GNU_SOURCE 1 /* pipe2 */
/* Test flavor `spawn_remote`: the host's DAG executor drives the run
 * (host->executor_start_remote) and this plugin launches every attempt as a
 * child process running the step entrypoint argv the host hands it, with the
 * step's env; one thread per attempt reads what the child prints, hands it
 * to the host (host->executor_step_log, host version 3), waits for the child
 * and reports the exit code.
 *
 * For the tests it appends lines to $ZORCH_TEST_LAUNCH_LOG:
 *   "launch STEP ATTEMPT", "stop STEP"
 *   "bogus-log RC"         executor_step_log for an attempt that does not exist
 *   "late-log RC"          executor_step_log for an attempt after its end
 *   "no-step-record RC"    submission_step_record for a step the run lacks
 * and, before reporting each attempt's end, writes the step's record and the
 * run's record as the host hands them out to $ZORCH_TEST_LAUNCH_LOG.STEP.json
 * and $ZORCH_TEST_LAUNCH_LOG.run.json ("RC <code>" when refused). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zorch/plugin.h>

extern char **environ;

typedef struct att {
  struct att *next;
  pthread_t th;
  pid_t pid;
  int out;                 /* read end of the child's stdout+stderr */
  void *exec;
  uint64_t id;
  char step[128];
  const zorch_host *host;
  const zorch_submission *sub;
} att;

typedef struct {
  const zorch_host *host;
  const zorch_submission *sub;
  void *exec;
  pthread_mutex_t lock;
  att *list;
} srun;

static void note(const char *fmt, const char *a, int n) {
  const char *p = getenv("ZORCH_TEST_LAUNCH_LOG");
  if (!p) return;
  int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  dprintf(fd, fmt, a, n);
  close(fd);
}

/* One of the host's records, as handed out, to <launch log>.<what>.json. */
static void save_record(const zorch_host *h, const char *what, int rc, char *json) {
  const char *p = getenv("ZORCH_TEST_LAUNCH_LOG");
  if (p) {
    char path[4096];
    snprintf(path, sizeof path, "%s.%s.json", p, what);
    FILE *f = fopen(path, "w");
    if (f) {
      if (rc) fprintf(f, "RC %d", rc);
      else fputs(json, f);
      fclose(f);
    }
  }
  h->free(json);
}

static void *waiter(void *arg) {
  att *a = arg;
  const zorch_host *h = a->host;
  char buf[4096];
  int st = 0;
  bool exited = false;
  /* the child's output, in the order it printed it, until it ends; a
   * process it left behind (killed on stop) may hold the pipe open: once
   * the child has exited only what is there already is read */
  for (;;) {
    struct pollfd pfd = {.fd = a->out, .events = POLLIN};
    int pr = exited ? 1 : poll(&pfd, 1, 100);
    ssize_t n = pr > 0 ? read(a->out, buf, sizeof buf) : -1;
    if (n > 0) {
      int rc = h->executor_step_log(a->exec, a->id, buf, (size_t)n);
      if (rc) zorch_host_logf(h, ZORCH_LOG_WARNING, "step %s: log refused: %d", a->step, rc);
      continue;
    }
    if (n == 0 || (exited && n < 0 && errno != EINTR)) break; /* EOF, or drained */
    if (!exited && waitpid(a->pid, &st, WNOHANG) == a->pid) exited = true;
  }
  close(a->out);
  while (!exited && waitpid(a->pid, &st, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  /* what the host says of attempts and records while this one still runs */
  note("bogus-log %s%d\n", "", h->executor_step_log(a->exec, a->id + (99ull << 32), "x", 1));
  char *json = NULL;
  int rc = h->submission_step_record(&json, a->sub, a->step);
  save_record(h, a->step, rc, json);
  json = NULL;
  rc = h->submission_run_record(&json, a->sub);
  save_record(h, "run", rc, json);
  json = NULL;
  note("no-step-record %s%d\n", "", h->submission_step_record(&json, a->sub, "no_such_step"));
  char msg[128];
  snprintf(msg, sizeof msg, "the step process exited with status %d", code);
  h->executor_step_done(a->exec, a->id, code, code ? msg : NULL);
  note("late-log %s%d\n", "", h->executor_step_log(a->exec, a->id, "x", 1));
  return NULL;
}

static int sr_launch(void *data, const zorch_step_launch *L) {
  srun *r = data;
  const zorch_host *h = r->host;
  note("launch %s %d\n", L->step, (int)L->attempt);
  att *a = calloc(1, sizeof *a);
  int fds[2] = {-1, -1};
  if (!a || pipe2(fds, O_CLOEXEC) || fcntl(fds[0], F_SETFL, O_NONBLOCK)) { /* ours only */
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
    free(a);
    return zorch_host_errorf(h, ZORCH_EIO, "cannot make a pipe for step %s", L->step);
  }
  a->exec = L->executor;
  a->id = L->attempt_id;
  a->host = h;
  a->sub = r->sub;
  a->out = fds[0];
  snprintf(a->step, sizeof a->step, "%s", L->step);
  size_t ne = 0, nenv = 0;
  while (environ[ne]) ne++;
  while (L->env[nenv]) nenv++;
  char **envp = calloc(ne + nenv + 1, sizeof *envp);
  for (size_t i = 0; envp && i < nenv; i++) envp[i] = (char *)L->env[i];
  for (size_t i = 0; envp && i < ne; i++) envp[nenv + i] = environ[i];
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  int rc = envp ? posix_spawn(&a->pid, L->argv[0], &fa, NULL, (char *const *)L->argv, envp) : ENOMEM;
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  free(envp);
  if (rc) {
    close(fds[0]);
    free(a);
    return zorch_host_errorf(h, ZORCH_EIO, "cannot spawn the step entrypoint %s: %s", L->argv[0],
                             strerror(rc));
  }
  pthread_mutex_lock(&r->lock);
  a->next = r->list;
  r->list = a;
  pthread_create(&a->th, NULL, waiter, a);
  pthread_mutex_unlock(&r->lock);
  return ZORCH_OK;
}

static void sr_stop(void *data, void *exec, uint64_t id) {
  srun *r = data;
  pthread_mutex_lock(&r->lock);
  for (att *a = r->list; a; a = a->next)
    if (a->exec == exec && a->id == id) {
      note("stop %s %d\n", a->step, 0);
      kill(a->pid, SIGKILL);
    }
  pthread_mutex_unlock(&r->lock);
}

static const zorch_step_launcher launcher = {ZORCH_STEP_LAUNCHER_VERSION, sr_launch, sr_stop};

static int sr_submit(void **out, void *payload, zorch_submission *sub) {
  const zorch_host *h = payload;
  srun *r = calloc(1, sizeof *r);
  if (!r) return zorch_host_errorf(h, ZORCH_ENOMEM, "out of memory");
  r->host = h;
  r->sub = sub;
  pthread_mutex_init(&r->lock, NULL);
  int rc = h->executor_start_remote(&r->exec, sub, "{}", &launcher, r);
  if (rc) {
    pthread_mutex_destroy(&r->lock);
    free(r);
    return rc;
  }
  *out = r;
  return ZORCH_OK;
}

static int sr_wait(void *run, int ms) {
  srun *r = run;
  return r->host->executor_wait(r->exec, ms);
}

static int sr_cancel(void *run) {
  srun *r = run;
  return r->host->executor_cancel(r->exec);
}

static void sr_release(void *run) {
  srun *r = run;
  /* every attempt's thread first: after its step_done it still asks the
   * executor something (late-log), so the executor must outlive it */
  for (att *a = r->list, *n; a; a = n) {
    n = a->next;
    pthread_join(a->th, NULL);
    free(a);
  }
  r->host->executor_release(r->exec);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

static const zorch_orchestrator_ops ops = {
    .version = ZORCH_ORCHESTRATOR_OPS_VERSION,
    .submit = sr_submit,
    .wait = sr_wait,
    .cancel = sr_cancel,
    .release = sr_release,
};

static const zorch_flavor_desc flavor = {
    .version = ZORCH_FLAVOR_DESC_VERSION,
    .type = ZORCH_COMPONENT_ORCHESTRATOR,
    .name = "spawn_remote",
    .integration = "test",
    .description = "Test flavor: steps as child processes launched through the remote-step host API",
    .config_schema = "{\"type\":\"object\"}",
    .ops = &ops,
    .flags = ZORCH_FLAVOR_LOCAL_STORE, /* its steps run on this machine */
};

static int sr_init(const zorch_host *host, zorch_registrar *reg, void **ctx) {
  *ctx = NULL;
  if (host->version < 3) /* executor_step_log, submission_*_record */
    return zorch_host_errorf(host, ZORCH_EVERSION, "needs host table version 3, this zorch offers %u",
                             host->version);
  return host->add_flavor(reg, &flavor, (void *)host);
}

ZORCH_PLUGIN_DEFINE("spawn_remote", "1.0", "test flavor", sr_init, NULL)
