/* A flavor plugin compiled against the frozen plugin ABI 1.1 header
 * (tests/plugins/frozen-1.1/zorch/plugin.h, never edited): a version-1
 * flavor descriptor, which ends before the capability flags and the
 * step-settings schema of ABI 1.2.
 *
 * Default build: flavor "frozen_1_1" launches every attempt as a child
 * process through executor_start_remote (the 1.1 host API), writes the
 * step's output to log_path itself, and reports the end with
 * executor_step_done.  Its submit records the metadata "frozen_abi" = "1.1".
 *
 * -DFZ_LOCAL: the flavor is named "local" and runs the steps with the
 * in-process executor (executor_start), as the local plugin of 1.1 did.
 */
#define _GNU_SOURCE 1
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

#if ZORCH_PLUGIN_ABI_MAJOR != 1 || ZORCH_PLUGIN_ABI_MINOR != 1
#error "frozen11.c must be built against the frozen 1.1 header (tests/plugins/frozen-1.1)"
#endif

#ifdef FZ_LOCAL
#define FZ_NAME "local"
#define FZ_SUFFIX "_local"
#else
#define FZ_NAME "frozen_1_1"
#define FZ_SUFFIX ""
#endif

extern char **environ;

typedef struct fz_att {
  struct fz_att *next;
  pthread_t th;
  pid_t pid;
  void *exec;
  uint64_t id;
  const zorch_host *host;
} fz_att;

typedef struct {
  const zorch_host *host;
  void *exec;
  pthread_mutex_t lock;
  fz_att *list;
} fz_run;

static void *fz_waiter(void *arg) {
  fz_att *a = arg;
  int st = 0;
  while (waitpid(a->pid, &st, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  a->host->executor_step_done(a->exec, a->id, code, code ? "the step process failed" : NULL);
  return NULL;
}

static int fz_launch(void *data, const zorch_step_launch *L) {
  fz_run *r = data;
  fz_att *a = calloc(1, sizeof *a);
  if (!a) return ZORCH_ENOMEM;
  a->exec = L->executor;
  a->id = L->attempt_id;
  a->host = r->host;
  size_t ne = 0, nenv = 0;
  while (environ[ne]) ne++;
  while (L->env[nenv]) nenv++;
  char **envp = calloc(ne + nenv + 1, sizeof *envp);
  if (!envp) {
    free(a);
    return ZORCH_ENOMEM;
  }
  for (size_t i = 0; i < nenv; i++) envp[i] = (char *)L->env[i];
  for (size_t i = 0; i < ne; i++) envp[nenv + i] = environ[i];
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  /* ABI 1.1: the plugin writes the step's log itself */
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
  pthread_create(&a->th, NULL, fz_waiter, a);
  pthread_mutex_unlock(&r->lock);
  return ZORCH_OK;
}

static void fz_stop(void *data, void *exec, uint64_t id) {
  fz_run *r = data;
  pthread_mutex_lock(&r->lock);
  for (fz_att *a = r->list; a; a = a->next)
    if (a->exec == exec && a->id == id) kill(a->pid, SIGKILL);
  pthread_mutex_unlock(&r->lock);
}

__attribute__((unused)) static const zorch_step_launcher fz_launcher = {ZORCH_STEP_LAUNCHER_VERSION, fz_launch, fz_stop};

static int fz_submit(void **out, void *payload, zorch_submission *sub) {
  const zorch_host *h = payload;
  *out = NULL;
  fz_run *r = calloc(1, sizeof *r);
  if (!r) return ZORCH_ENOMEM;
  r->host = h;
  pthread_mutex_init(&r->lock, NULL);
  h->submission_set_metadata(sub, "frozen_abi", "1.1");
#ifdef FZ_LOCAL
  int rc = h->executor_start(&r->exec, sub, "{}");
#else
  int rc = h->executor_start_remote(&r->exec, sub, "{}", &fz_launcher, r);
#endif
  if (rc) {
    pthread_mutex_destroy(&r->lock);
    free(r);
    return rc;
  }
  *out = r;
  return ZORCH_OK;
}

static int fz_wait(void *run, int ms) {
  fz_run *r = run;
  return r->host->executor_wait(r->exec, ms);
}

static int fz_cancel(void *run) {
  fz_run *r = run;
  return r->host->executor_cancel(r->exec);
}

static void fz_release(void *run) {
  fz_run *r = run;
  r->host->executor_release(r->exec);
  for (fz_att *a = r->list, *n; a; a = n) {
    n = a->next;
    pthread_join(a->th, NULL);
    free(a);
  }
  pthread_mutex_destroy(&r->lock);
  free(r);
}

static const zorch_orchestrator_ops fz_ops = {
    .version = ZORCH_ORCHESTRATOR_OPS_VERSION, /* 2, frozen */
    .submit = fz_submit,
    .wait = fz_wait,
    .cancel = fz_cancel,
    .release = fz_release,
};

static const zorch_flavor_desc fz_flavor = {
    .version = ZORCH_FLAVOR_DESC_VERSION, /* 1, frozen: no flags, no step schema */
    .type = ZORCH_COMPONENT_ORCHESTRATOR,
    .name = FZ_NAME,
    .integration = "abi-test",
    .description = "A flavor built against the frozen plugin ABI 1.1 header",
    .config_schema = "{\"type\":\"object\"}",
    .ops = &fz_ops,
};

static int fz_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  *plugin_ctx = NULL;
  if (host->version < 2 || host->size < sizeof(zorch_host)) return ZORCH_EVERSION;
  return host->add_flavor(reg, &fz_flavor, (void *)host);
}

static const zorch_plugin_desc fz_plugin = {
    .abi_major = ZORCH_PLUGIN_ABI_MAJOR,
    .abi_minor = ZORCH_PLUGIN_ABI_MINOR,
    .name = "frozen_1_1" FZ_SUFFIX,
    .version = "1.1",
    .description = "plugin ABI 1.1 compatibility fixture",
    .init = fz_init,
};

ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,
                                                                   uint32_t host_abi_minor);
ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,
                                                                   uint32_t host_abi_minor) {
  return host_abi_major == 1 && host_abi_minor >= 1 ? &fz_plugin : NULL;
}
