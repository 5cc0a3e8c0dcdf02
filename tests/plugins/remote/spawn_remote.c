/* Test flavor `spawn_remote`: the host's DAG executor drives the run
 * (host->executor_start_remote) and this plugin launches every attempt as a
 * child process running the step entrypoint argv the host hands it, with the
 * step's env; one thread per attempt waits for it and reports the exit code.
 * It appends "launch STEP ATTEMPT" / "stop STEP" lines to
 * $ZORCH_TEST_LAUNCH_LOG so tests can see what reached the plugin. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
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
  void *exec;
  uint64_t id;
  char step[128];
  const zorch_host *host;
} att;

typedef struct {
  const zorch_host *host;
  void *exec;
  pthread_mutex_t lock;
  att *list;
} srun;

static void note(const char *fmt, const char *a, unsigned n) {
  const char *p = getenv("ZORCH_TEST_LAUNCH_LOG");
  if (!p) return;
  int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  dprintf(fd, fmt, a, n);
  close(fd);
}

static void *waiter(void *arg) {
  att *a = arg;
  int st = 0;
  while (waitpid(a->pid, &st, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  char msg[128];
  snprintf(msg, sizeof msg, "the step process exited with status %d", code);
  a->host->executor_step_done(a->exec, a->id, code, code ? msg : NULL);
  return NULL;
}

static int sr_launch(void *data, const zorch_step_launch *L) {
  srun *r = data;
  note("launch %s %u\n", L->step, L->attempt);
  att *a = calloc(1, sizeof *a);
  if (!a) return ZORCH_ENOMEM;
  a->exec = L->executor;
  a->id = L->attempt_id;
  a->host = r->host;
  snprintf(a->step, sizeof a->step, "%s", L->step);
  size_t ne = 0, nenv = 0;
  while (environ[ne]) ne++;
  while (L->env[nenv]) nenv++;
  char **envp = calloc(ne + nenv + 1, sizeof *envp);
  for (size_t i = 0; i < nenv; i++) envp[i] = (char *)L->env[i];
  for (size_t i = 0; i < ne; i++) envp[nenv + i] = environ[i];
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  int lfd = open(L->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (lfd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, lfd, 1);
    posix_spawn_file_actions_adddup2(&fa, lfd, 2);
  }
  int rc = posix_spawn(&a->pid, L->argv[0], &fa, NULL, (char *const *)L->argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  if (lfd >= 0) close(lfd);
  free(envp);
  if (rc) {
    free(a);
    r->host->error_set(r->host, ZORCH_EIO, "cannot spawn the step entrypoint");
    return ZORCH_EIO;
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
      note("stop %s %u\n", a->step, 0);
      kill(a->pid, SIGKILL);
    }
  pthread_mutex_unlock(&r->lock);
}

static const zorch_step_launcher launcher = {ZORCH_STEP_LAUNCHER_VERSION, sr_launch, sr_stop};

static int sr_submit(void **out, void *payload, zorch_submission *sub) {
  const zorch_host *h = payload;
  srun *r = calloc(1, sizeof *r);
  if (!r) return ZORCH_ENOMEM;
  r->host = h;
  pthread_mutex_init(&r->lock, NULL);
  int rc = h->executor_start_remote(&r->exec, sub, "{}", &launcher, r);
  if (rc) {
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
  r->host->executor_release(r->exec);
  for (att *a = r->list, *n; a; a = n) {
    n = a->next;
    pthread_join(a->th, NULL);
    free(a);
  }
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
  if (host->version < 2) return ZORCH_EVERSION;
  return host->add_flavor(reg, &flavor, (void *)host);
}

static const zorch_plugin_desc desc = {
    .abi_major = ZORCH_PLUGIN_ABI_MAJOR,
    .abi_minor = ZORCH_PLUGIN_ABI_MINOR,
    .name = "spawn_remote",
    .version = "1.0",
    .description = "test flavor",
    .init = sr_init,
};

ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t major, uint32_t minor);
ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t major, uint32_t minor) {
  return major == ZORCH_PLUGIN_ABI_MAJOR && minor >= 1 ? &desc : NULL;
}
