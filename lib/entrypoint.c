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

atomic_int zorch__entrypoint_registered;

int zorch__entrypoint_check(const zorch__plan *dep, const char *dep_text, const zorch_pipeline *p,
                            size_t *lookups) {
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
    if (lookups) ++*lookups;
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

/* Run one step of a deployment: a function step of this program (build !=
 * NULL) or a command step (build == NULL).  Returns a ZORCH_EXIT_* code. */
static int run_step(const char *dep_path, const char *run_id, const char *step,
                    zorch_build_cb build, void *payload) {
  char *text = NULL;
  int rc = zorch__read_file(dep_path, &text, NULL);
  if (rc) {
    fprintf(stderr, "zorch: cannot read the deployment: %s\n", zorch_error_last()->message);
    return ZORCH_EXIT_USAGE;
  }
  zorch__plan *plan = NULL;
  rc = zorch__plan_load(&plan, text);
  if (rc) {
    fprintf(stderr, "zorch: %s: %s\n", dep_path, zorch_error_last()->message);
    free(text);
    return ZORCH_EXIT_USAGE;
  }
  int exit_code = ZORCH_EXIT_USAGE;
  zorch_pipeline *p = NULL;
  zorch__store *st = NULL;
  zorch__step_rec *recs = NULL;
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
  if (p && (zorch__entrypoint_check(plan, text, p, NULL) != ZORCH_OK || zorch__plan_bind(plan, p) != ZORCH_OK)) {
    fprintf(stderr, "zorch: %s\n", zorch_error_last()->message);
    exit_code = ZORCH_EXIT_MISMATCH;
    goto out;
  }
  if (!plan->store_path || zorch__store_open(&st, plan->store_path) != ZORCH_OK) {
    fprintf(stderr, "zorch: cannot open the artifact store '%s': %s\n",
            plan->store_path ? plan->store_path : "(none)", zorch_error_last()->message);
    goto out;
  }
  recs = zorch__step_recs_new(plan);
  char *run_dir = zorch__asprintf("%s/runs/%s", plan->store_path, plan->run_id);
  char *logs = run_dir ? zorch__path_join(run_dir, "logs") : NULL;
  if (!recs || !run_dir || !logs || zorch__step_recs_load(plan, recs, run_dir) || zorch__mkdirs(logs)) {
    fprintf(stderr, "zorch: cannot read the run's records: %s\n", zorch_error_last()->message);
    free(run_dir);
    free(logs);
    goto out;
  }
  const zorch__pstep *s = &plan->steps[i];
  for (uint32_t k = 0; k < s->n_inputs; k++) {
    const zorch__output_rec *o = &recs[s->inputs[k].step].outputs[s->inputs[k].output];
    if (!o->set || !zorch__store_has(st, o->digest)) {
      fprintf(stderr, "zorch: input '%s' of step '%s' (output '%s' of step '%s') is not in the store yet\n",
              s->inputs[k].name, step, plan->steps[s->inputs[k].step].outputs[s->inputs[k].output],
              plan->steps[s->inputs[k].step].name);
      free(run_dir);
      free(logs);
      goto out;
    }
  }
  char *lp = zorch__asprintf("%s/%s.log", logs, step);
  free(logs);
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
  } else if (zorch__ctx_init(&ctx, st, plan, (uint32_t)i, r->attempts, recs, &cancelled, run_dir) != ZORCH_OK) {
    err = zorch__strdup(zorch_error_last()->message);
  } else {
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
  free(run_dir);
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
  if (recs) zorch__step_recs_free(recs, plan->n_steps);
  if (st) zorch__store_close(st);
  zorch_pipeline_free(p);
  zorch__plan_free(plan);
  return exit_code;
}

/* --zorch-step/--zorch-deployment/--zorch-run from argv; 1 when none is
 * there, 0 when all are, exits with a usage error otherwise. */
static int step_args(int argc, char **argv, const char **step, const char **dep, const char **run) {
  for (int a = 1; a < argc; a++) {
    const char **slot = !strcmp(argv[a], "--zorch-step")         ? step
                        : !strcmp(argv[a], "--zorch-deployment") ? dep
                        : !strcmp(argv[a], "--zorch-run")        ? run
                                                                 : NULL;
    if (!slot) continue;
    if (a + 1 >= argc) {
      fprintf(stderr, "zorch: %s needs a value\n", argv[a]);
      exit(ZORCH_EXIT_USAGE);
    }
    *slot = argv[++a];
  }
  if (!*step && !*dep && !*run) return 1;
  if (!*step || !*dep || !*run) {
    fprintf(stderr, "zorch: a step needs --zorch-step, --zorch-deployment and --zorch-run\n");
    exit(ZORCH_EXIT_USAGE);
  }
  return 0;
}

int zorch_command_step_main(int argc, char **argv) {
  const char *step = NULL, *dep = NULL, *run = NULL;
  if (step_args(argc, argv, &step, &dep, &run)) {
    fprintf(stderr, "zorch: a step needs --zorch-step, --zorch-deployment and --zorch-run\n");
    return ZORCH_EXIT_USAGE;
  }
  fflush(stdout);
  return run_step(dep, run, step, NULL, NULL);
}

int zorch_main(int argc, char **argv, zorch_build_cb build, void *payload) {
  const char *step = NULL, *dep = NULL, *run = NULL;
  if (!build) return zorch__error_set(ZORCH_EINVALID, "zorch_main: build callback is NULL");
  int none = step_args(argc, argv, &step, &dep, &run);
  atomic_store(&zorch__entrypoint_registered, 1);
  if (none) return ZORCH_OK;
  fflush(stdout);
  exit(run_step(dep, run, step, build, payload));
}
