/* zorch — the step entrypoint: a host program started as one step of one run. */
#include "entrypoint_int.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "client_int.h"
#include "ctx.h"
#include "deployment.h"
#include "executor.h"
#include "store_layout.h"

atomic_int zorch__entrypoint_registered;

int zorch__entrypoint_check(const zorch__plan *dep, const char *dep_text, const zorch_pipeline *p) {
  zorch__compile_info ci = {.run_id = dep->run_id, .run_name = dep->run_name,
                            .store_path = dep->store_path, .failure_mode = dep->failure_mode};
  json_t *params = json_object_get(dep->doc, "params");
  char *ptext = params ? json_dumps(params, JSON_COMPACT) : NULL;
  ci.params_json = ptext;
  char *mine = NULL;
  int rc = zorch__deployment_compile(&mine, NULL, p, &ci);
  free(ptext);
  if (rc) return zorch__error_prefix("the program's pipeline '%s' does not compile", p->name);
  json_t *m = json_loads(mine, 0, NULL);
  free(mine);
  json_t *d = json_loads(dep_text, 0, NULL);
  json_t *ds = json_object_get(d, "steps"), *ms = json_object_get(m, "steps");
  if (json_array_size(ds) != json_array_size(ms)) {
    rc = zorch__error_set(ZORCH_EMISMATCH,
                          "the program's pipeline '%s' has %zu steps, the deployment has %zu",
                          p->name, json_array_size(ms), json_array_size(ds));
    json_decref(m);
    json_decref(d);
    return rc;
  }
  /* The deployment's step k is the k-th of its plan, whose name map finds
   * it by name: mine_of[k] is the index of the program's step of that name
   * (one lookup per step, not a scan of all steps per step). */
  size_t n = json_array_size(ds);
  size_t *mine_of = malloc((n + 1) * sizeof *mine_of);
  if (!mine_of) {
    json_decref(m);
    json_decref(d);
    return zorch__error_oom();
  }
  for (size_t k = 0; k < n; k++) mine_of[k] = SIZE_MAX;
  for (size_t j = 0; j < n; j++) {
    const char *name = json_string_value(json_object_get(json_array_get(ms, j), "name"));
    int64_t k = name ? zorch__plan_find(dep, name) : -1;
    if (k >= 0 && (size_t)k < n) mine_of[k] = j;
  }
  static const char *keys[] = {"name", "kind", "command", "inputs", "outputs", "after",
                               "uses", "params", "version", "settings"};
  for (size_t i = 0; i < n; i++) {
    json_t *a = json_array_get(ds, i);
    json_t *b = mine_of[i] != SIZE_MAX ? json_array_get(ms, mine_of[i]) : NULL;
    const char *name = json_string_value(json_object_get(a, "name"));
    if (!b) {
      rc = zorch__error_set(ZORCH_EMISMATCH, "step '%s' of the deployment is not in the program's pipeline '%s'",
                            name ? name : "?", p->name);
      break;
    }
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
      json_t *va = json_object_get(a, keys[k]), *vb = json_object_get(b, keys[k]);
      if ((va || vb) && !(va && vb && json_equal(va, vb))) {
        char *ta = va ? json_dumps(va, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        char *tb = vb ? json_dumps(vb, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        rc = zorch__error_set(ZORCH_EMISMATCH,
                              "step '%s' differs between the deployment and this program: %s is "
                              "%.300s in the deployment but %.300s here",
                              name, keys[k], ta ? ta : "absent", tb ? tb : "absent");
        free(ta);
        free(tb);
        break;
      }
    }
    if (rc) break;
  }
  free(mine_of);
  json_decref(m);
  json_decref(d);
  return rc;
}

static volatile sig_atomic_t child_pid;

static void forward_signal(int sig) {
  pid_t p = child_pid;
  if (p > 0) kill(p, sig);
}

/* Spawn the process of command step s with the environment envp.  Its
 * argv[0] is looked up in the PATH it runs with (posix_spawnp looks in this
 * process's; a step may set its own).  0, or the error number; *path: that
 * PATH. */
static int spawn_step(pid_t *pid, const zorch__pstep *s, char *const *envp, const char **path) {
  const char *mine = getenv("PATH");
  *path = mine;
  for (char *const *e = envp; *e; e++)
    if (!strncmp(*e, "PATH=", 5)) {
      *path = *e + 5;
      break;
    }
  if (*path == mine || (mine && *path && !strcmp(*path, mine)) || strchr(s->argv[0], '/'))
    return zorch__command_spawn(pid, s, NULL, NULL, NULL, envp);
  char *exe = zorch__which_in(s->argv[0], *path);
  int rc = exe ? zorch__command_spawn(pid, s, exe, NULL, NULL, envp) : ENOENT;
  free(exe);
  return rc;
}

/* Run the command of command step i with the environment the executor
 * gives it (its ZORCH_* variables, its own, the inherited ones), wait for it
 * and store its outputs.  Its output goes to this process's stdout/stderr
 * (which the flavor collects into the step log). */
static bool run_command(zorch__store *st, const zorch__plan *plan, uint32_t i,
                        const zorch__step_rec *recs, zorch__output_rec *outs, int *exit_code,
                        int *signal_no, char **err) {
  const zorch__pstep *s = &plan->steps[i];
  zorch__strv extra = {0};
  char **scratch = calloc(s->n_outputs + 1, sizeof *scratch);
  int rc = scratch ? zorch__command_env(&extra, st, plan, i, recs, scratch) : zorch__error_oom();
  size_t nbase = 0;
  char **base = rc ? NULL : zorch__command_base_env(s->env, &nbase);
  char **envp = base ? zorch__command_envp(&extra, base, nbase) : NULL;
  if (!rc && !envp) rc = zorch__error_oom();
  bool ok = false;
  pid_t pid = 0;
  if (rc) {
    *err = zorch__asprintf("cannot prepare the step: %s", zorch_error_last()->message);
  } else {
    fflush(stdout);
    fflush(stderr);
    const char *path = NULL;
    int src = spawn_step(&pid, s, envp, &path);
    if (src != 0) {
      *exit_code = 127;
      *err = zorch__asprintf("cannot run command '%s': %s%s%s%s", s->argv[0], strerror(src),
                             strchr(s->argv[0], '/') ? "" : " (looked in PATH=",
                             strchr(s->argv[0], '/') ? "" : path ? path : "(unset)",
                             strchr(s->argv[0], '/') ? "" : "; in a container, the image must hold it)");
    } else {
      child_pid = pid;
      struct sigaction sa = {.sa_handler = forward_signal};
      sigemptyset(&sa.sa_mask);
      sigaction(SIGTERM, &sa, NULL);
      sigaction(SIGINT, &sa, NULL);
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      child_pid = 0;
      *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (WIFSIGNALED(status)) *signal_no = WTERMSIG(status);
      if (WIFSIGNALED(status))
        *err = zorch__asprintf("command '%s' was killed by signal %d (%s)", s->argv[0],
                               WTERMSIG(status), strsignal(WTERMSIG(status)));
      else if (*exit_code != 0)
        *err = zorch__asprintf("command '%s' exited with status %d", s->argv[0], *exit_code);
      else
        ok = zorch__command_outputs(st, plan, i, scratch, outs, err);
    }
  }
  free(envp);
  free(base);
  zorch__strv_clear(&extra);
  zorch__command_scratch_free(scratch, s->n_outputs);
  return ok;
}

/* Open the store a step names: a local one by itself, any other through a
 * client's registry (its artifact-store plugins), made on the way. */
static int open_store(zorch__store **st, zorch_client **client, const char *uri) {
  bool local = uri[0] == '/' || !strncmp(uri, "file://", 7);
  if (!local && !*client) {
    int rc = zorch_client_new(client, NULL);
    if (rc) return rc;
  }
  return zorch__store_open_uri(st, *client, uri);
}

/* Run one step of a deployment: a function step of this program (build !=
 * NULL) or a command step (build == NULL).  The deployment is read from
 * `dep_path`, or else from the store `store_uri` names (the step's
 * --zorch-store, else $ZORCH_STORE_URI); the store is that one, or else the
 * deployment's.  Returns a ZORCH_EXIT_* code. */
static int run_step(const char *dep_path, const char *store_uri, const char *run_id,
                    const char *step, zorch_build_cb build, void *payload) {
  zorch_client *client = NULL;
  zorch__store *st = NULL;
  char *text = NULL;
  int rc;
  if (dep_path) {
    rc = zorch__read_file(dep_path, &text, NULL);
  } else if (!(rc = open_store(&st, &client, store_uri))) {
    char *key = zorch__layout_deployment(run_id);
    rc = key ? zorch__store_read_doc(st, key, &text, NULL) : zorch__error_oom();
    free(key);
  }
  if (rc) {
    fprintf(stderr, "zorch: cannot read the deployment: %s\n", zorch_error_last()->message);
    zorch__store_close(st);
    zorch_client_free(client);
    return ZORCH_EXIT_USAGE;
  }
  zorch__plan *plan = NULL;
  rc = zorch__plan_load(&plan, text);
  if (rc) {
    fprintf(stderr, "zorch: %s: %s\n", dep_path ? dep_path : "the deployment",
            zorch_error_last()->message);
    free(text);
    zorch__store_close(st);
    zorch_client_free(client);
    return ZORCH_EXIT_USAGE;
  }
  int exit_code = ZORCH_EXIT_USAGE;
  zorch_pipeline *p = NULL;
  zorch__step_rec *recs = NULL;
  char *logs = NULL;
  int64_t i = zorch__plan_find(plan, step);
  if (i < 0) {
    fprintf(stderr, "zorch: the deployment of pipeline '%s' has no step '%s'\n", plan->pipeline, step);
    goto out;
  }
  if (!plan->run_id || strcmp(plan->run_id, run_id) != 0) {
    fprintf(stderr, "zorch: the deployment belongs to run '%s', not '%s'\n",
            plan->run_id ? plan->run_id : "(none)", run_id);
    goto out;
  }
  if (build && plan->steps[i].kind != ZORCH__STEP_FUNCTION) {
    fprintf(stderr, "zorch: step '%s' is a command step: run it with `zorch step run`\n", step);
    goto out;
  }
  if (!build && plan->steps[i].kind != ZORCH__STEP_COMMAND) {
    fprintf(stderr, "zorch: step '%s' is a function step: run it with its program (%s)\n", step,
            json_string_value(json_object_get(json_object_get(plan->doc, "program"), "path")) ?: "?");
    goto out;
  }
  if (build && (build(&p, plan->pipeline, payload) != 0 || !p)) {
    fprintf(stderr, "zorch: the program could not build pipeline '%s': %s\n", plan->pipeline,
            zorch_error_last()->message);
    goto out;
  }
  if (p && (zorch__entrypoint_check(plan, text, p) != ZORCH_OK || zorch__plan_bind(plan, p) != ZORCH_OK)) {
    fprintf(stderr, "zorch: %s\n", zorch_error_last()->message);
    exit_code = ZORCH_EXIT_MISMATCH;
    goto out;
  }
  /* the store: as named, else the deployment's (by URI; by path before URIs) */
  const char *where = store_uri ? store_uri : plan->store_uri ? plan->store_uri : plan->store_path;
  if (!st && (!where || !*where || open_store(&st, &client, where) != ZORCH_OK)) {
    fprintf(stderr, "zorch: cannot open the artifact store '%s': %s\n",
            where && *where ? where : "(none)", zorch_error_last()->message);
    goto out;
  }
  recs = zorch__step_recs_new(plan);
  if (!recs || zorch__step_recs_load(plan, recs, st, plan->run_id)) {
    fprintf(stderr, "zorch: cannot read the run's records: %s\n", zorch_error_last()->message);
    goto out;
  }
  /* On a local store the step's log is its file in the store.  On another
   * one the host that launched the step keeps the log (what the step
   * prints), so the step's own log lines go to stderr. */
  if (zorch__store_is_local(st)) {
    char *key = zorch__layout_logs(plan->run_id);
    logs = key ? zorch__path_join(zorch__store_root(st), key) : NULL;
    free(key);
    if (!logs || zorch__mkdirs(logs)) {
      fprintf(stderr, "zorch: cannot make the run's log directory: %s\n", zorch_error_last()->message);
      goto out;
    }
  }
  const zorch__pstep *s = &plan->steps[i];
  for (uint32_t k = 0; k < s->n_inputs; k++) {
    const zorch__output_rec *o = &recs[s->inputs[k].step].outputs[s->inputs[k].output];
    if (!o->set || !zorch__store_has(st, o->digest)) {
      fprintf(stderr, "zorch: input '%s' of step '%s' (output '%s' of step '%s') is not in the store yet\n",
              s->inputs[k].name, step, plan->steps[s->inputs[k].step].outputs[s->inputs[k].output],
              plan->steps[s->inputs[k].step].name);
      goto out;
    }
  }
  char *lp = logs ? zorch__layout_step_log_in(logs, step) : NULL;
  zorch__step_rec *r = &recs[i];
  /* The executor that launched this attempt journaled its start (running,
   * with this attempt's number) before launching it; a step started by hand
   * is one attempt more than its last record. */
  if (r->status != ZORCH_STATUS_RUNNING || r->attempts == 0) r->attempts = r->attempts + 1;
  r->status = ZORCH_STATUS_RUNNING;
  r->started = zorch__now();
  r->finished = 0;
  r->exit_code = -1;
  if (s->cache) zorch__cache_key(plan, (uint32_t)i, recs, r->cache_key);
  zorch__step_rec_write(st, plan, (uint32_t)i, r);
  atomic_int cancelled = 0;
  zorch_step_ctx ctx;
  char *err = NULL;
  bool ok = false;
  int killed_by = 0;
  if (!build) {
    int code = -1;
    ok = run_command(st, plan, (uint32_t)i, recs, r->outputs, &code, &killed_by, &err);
    r->exit_code = code;
  } else if (zorch__ctx_init(&ctx, st, plan, (uint32_t)i, r->attempts, recs, &cancelled, logs) != ZORCH_OK) {
    err = zorch__strdup(zorch_error_last()->message);
  } else {
    if (!logs) ctx.log_fd = dup(STDERR_FILENO); /* see above */
    ok = zorch__ctx_outcome(&ctx, s->fn(&ctx, s->payload), &err);
    if (ok)
      for (uint32_t k = 0; k < s->n_outputs; k++) r->outputs[k] = ctx.outputs[k];
    zorch__ctx_cleanup(&ctx);
  }
  r->finished = zorch__now();
  r->status = ok ? ZORCH_STATUS_COMPLETED : ZORCH_STATUS_FAILED;
  free(r->error);
  r->error = err;
  if (err) {
    zorch__log_append(lp, "zorch: step failed: %s", err);
    fprintf(stderr, "zorch: step '%s' failed: %s\n", step, err);
  }
  free(lp);
  if (zorch__step_rec_write(st, plan, (uint32_t)i, r) != ZORCH_OK) {
    fprintf(stderr, "zorch: cannot write the step record: %s\n", zorch_error_last()->message);
    ok = false;
  }
  if (ok && r->cache_key[0]) {
    zorch__cache *cache = NULL;
    if (zorch__cache_open(&cache, st, plan->pipeline, false) == ZORCH_OK) {
      char *oj = zorch__outputs_json(plan, (uint32_t)i, r);
      if (oj) zorch__cache_put(cache, r->cache_key, oj);
      free(oj);
      zorch__cache_close(cache);
    }
  }
  /* a command killed by a signal: exit as a shell would (128 + signal), so
   * that the flavor sees e.g. 137 for the OOM killer's SIGKILL */
  exit_code = ok ? ZORCH_EXIT_OK : killed_by ? 128 + killed_by : ZORCH_EXIT_STEP_FAILED;
out:
  free(text);
  free(logs);
  if (recs) zorch__step_recs_free(recs, plan->n_steps);
  zorch__store_close(st);
  zorch_pipeline_free(p);
  zorch__plan_free(plan);
  zorch_client_free(client); /* after the store: its plugin's code */
  return exit_code;
}

#define STEP_USAGE                                                                    \
  "zorch: a step needs --zorch-step and --zorch-run, and --zorch-store (or $ZORCH_STORE_URI) " \
  "or --zorch-deployment\n"

/* What names a step in argv: --zorch-step, --zorch-run, and the store
 * (--zorch-store URI, else $ZORCH_STORE_URI) or the deployment's path
 * (--zorch-deployment, which names the store too).  1 when argv names no
 * step, 0 when it names one, exits with a usage error when it is half
 * there. */
typedef struct step_argv {
  const char *step, *dep, *run, *store;
} step_argv;

static int step_args(int argc, char **argv, step_argv *s) {
  for (int a = 1; a < argc; a++) {
    const char **slot = !strcmp(argv[a], "--zorch-step")         ? &s->step
                        : !strcmp(argv[a], "--zorch-deployment") ? &s->dep
                        : !strcmp(argv[a], "--zorch-run")        ? &s->run
                        : !strcmp(argv[a], "--zorch-store")      ? &s->store
                                                                 : NULL;
    if (!slot) continue;
    if (a + 1 >= argc) {
      fprintf(stderr, "zorch: %s needs a value\n", argv[a]);
      exit(ZORCH_EXIT_USAGE);
    }
    *slot = argv[++a];
  }
  if (!s->step && !s->dep && !s->run && !s->store) return 1;
  if (!s->store) {
    const char *env = getenv("ZORCH_STORE_URI");
    if (env && *env) s->store = env;
  }
  if (!s->step || !s->run || (!s->dep && !s->store)) {
    fputs(STEP_USAGE, stderr);
    exit(ZORCH_EXIT_USAGE);
  }
  return 0;
}

int zorch_command_step_main(int argc, char **argv) {
  step_argv s = {0};
  if (step_args(argc, argv, &s)) {
    fputs(STEP_USAGE, stderr);
    return ZORCH_EXIT_USAGE;
  }
  fflush(stdout);
  return run_step(s.dep, s.store, s.run, s.step, NULL, NULL);
}

int zorch_main(int argc, char **argv, zorch_build_cb build, void *payload) {
  if (!build) return zorch__error_set(ZORCH_EINVALID, "zorch_main: build callback is NULL");
  step_argv s = {0};
  int none = step_args(argc, argv, &s);
  atomic_store(&zorch__entrypoint_registered, 1);
  if (none) return ZORCH_OK;
  fflush(stdout);
  exit(run_step(s.dep, s.store, s.run, s.step, build, payload));
}
