/* zorch bench — the zorch side of every workload, through the public API only.
 *
 *   zorch-bench chain N [--ephemeral]   N command steps running `true`, one after another
 *   zorch-bench fan N [--ephemeral]     1 → N → 1 command steps running `true`
 *   zorch-bench dag N [--ephemeral]     N no-op function steps on the random DAG of dag.h
 *   zorch-bench cached N                the same DAG run twice; the second run is timed and
 *                                       every step must come back "cached"
 *   zorch-bench scale N                 a child process builds, runs and records the N-step
 *                                       DAG; reports its wall time, peak RSS and disk usage
 *   zorch-bench file PATH               one function step stores PATH with
 *                                       zorch_ctx_output_file(), twice; reports the artifact
 *                                       bytes on disk after each run
 *
 * Every run uses max_parallel 2 and the client of $ZORCH_HOME / $ZORCH_PLUGIN_PATH
 * (the harness gives each invocation a fresh home).  chain, fan, dag and file turn
 * the cache off (ZORCH_RUN_NO_CACHE) so every step really runs; records are
 * persisted unless --ephemeral.  cached and scale use the default flags.
 *
 * Timing is "all-in": client creation, building the pipeline, zorch_run_start
 * (validate, compile, submit), zorch_run_wait (run, records durable), and
 * freeing run, pipeline and client.  Checking the step statuses is not timed.
 * Prints one JSON line; exits 1 (with a message) when a run did not do what it
 * should.
 */
#include <fcntl.h>
#include <ftw.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zorch/zorch.h>

#include "benchutil.h"
#include "dag.h"

#define MAX_PARALLEL 2

static void log_cb(int level, const char *domain, const char *message, void *payload) {
  (void)payload;
  fprintf(stderr, "zorch-bench: [%s] %s: %s\n", level <= ZORCH_LOG_ERROR ? "error" : "warning",
          domain, message);
}

static void check(int rc, const char *what) {
  if (rc) bench_die("%s: %s (%s)", what, zorch_error_last()->message, zorch_strerror(rc));
}

/* ---- pipeline builders -------------------------------------------------------------------- */

static const char *const true_argv[] = {"true", NULL};

static int noop_step(zorch_step_ctx *ctx, void *payload) {
  (void)ctx;
  (void)payload;
  return 0;
}

typedef struct build_arg {
  uint32_t n;
  const bench_dag *dag;
  const char *path;
} build_arg;

static void build_chain(zorch_pipeline **out, const build_arg *a) {
  zorch_pipeline *p;
  check(zorch_pipeline_new(&p, "bench-chain"), "zorch_pipeline_new");
  char name[32], prev[32];
  for (uint32_t i = 0; i < a->n; i++) {
    zorch_step *s;
    snprintf(name, sizeof name, "c%u", i);
    check(zorch_pipeline_add_command_step(&s, p, name, true_argv), "add_command_step");
    if (i) check(zorch_step_after(s, prev), "zorch_step_after");
    memcpy(prev, name, sizeof name);
  }
  *out = p;
}

static void build_fan(zorch_pipeline **out, const build_arg *a) {
  zorch_pipeline *p;
  zorch_step *s, *sink;
  check(zorch_pipeline_new(&p, "bench-fan"), "zorch_pipeline_new");
  check(zorch_pipeline_add_command_step(&s, p, "src", true_argv), "add_command_step");
  check(zorch_pipeline_add_command_step(&sink, p, "sink", true_argv), "add_command_step");
  char name[32];
  for (uint32_t i = 0; i < a->n; i++) {
    snprintf(name, sizeof name, "f%u", i);
    check(zorch_pipeline_add_command_step(&s, p, name, true_argv), "add_command_step");
    check(zorch_step_after(s, "src"), "zorch_step_after");
    check(zorch_step_after(sink, name), "zorch_step_after");
  }
  *out = p;
}

static void build_dag(zorch_pipeline **out, const build_arg *a) {
  zorch_pipeline *p;
  check(zorch_pipeline_new(&p, "bench-dag"), "zorch_pipeline_new");
  const bench_dag *g = a->dag;
  char name[32], dep[32];
  for (uint32_t i = 0; i < g->n; i++) {
    zorch_step *s;
    snprintf(name, sizeof name, "s%u", i);
    check(zorch_pipeline_add_function_step(&s, p, name, noop_step, NULL), "add_function_step");
    for (uint32_t j = 0; j < g->ndeps[i]; j++) {
      snprintf(dep, sizeof dep, "s%u", g->deps[3 * (size_t)i + j]);
      check(zorch_step_after(s, dep), "zorch_step_after");
    }
  }
  *out = p;
}

static int store_file_step(zorch_step_ctx *ctx, void *payload) {
  return zorch_ctx_output_file(ctx, "data", (const char *)payload);
}

static void build_file(zorch_pipeline **out, const build_arg *a) {
  zorch_pipeline *p;
  zorch_step *s;
  check(zorch_pipeline_new(&p, "bench-file"), "zorch_pipeline_new");
  check(zorch_pipeline_add_function_step(&s, p, "store", store_file_step, (void *)a->path),
        "add_function_step");
  check(zorch_step_add_output(s, "data"), "zorch_step_add_output");
  *out = p;
}

/* ---- one timed run ------------------------------------------------------------------------ */

typedef struct result {
  double client_s, build_s, start_s, wait_s, free_s, wall_s;
  int run_status;
  size_t steps;
  size_t by_status[8];
  char digest[72];
  uint64_t out_size;
} result;

static void run_once(result *res, void (*build)(zorch_pipeline **, const build_arg *),
                     const build_arg *arg, uint32_t flags) {
  memset(res, 0, sizeof *res);
  zorch_client_options co = ZORCH_CLIENT_OPTIONS_INIT;
  co.log_cb = log_cb;
  zorch_run_options ro = ZORCH_RUN_OPTIONS_INIT;
  ro.max_parallel = MAX_PARALLEL;
  ro.flags = flags;

  double t0 = bench_now();
  zorch_client *c = NULL;
  check(zorch_client_new(&c, &co), "zorch_client_new");
  double t1 = bench_now();
  zorch_pipeline *p = NULL;
  build(&p, arg);
  double t2 = bench_now();
  zorch_run *r = NULL;
  check(zorch_run_start(&r, c, p, &ro), "zorch_run_start");
  double t3 = bench_now();
  int wrc = zorch_run_wait(r, -1);
  double t4 = bench_now();

  if (wrc) fprintf(stderr, "zorch-bench: run ended with %s: %s\n", zorch_strerror(wrc),
                   zorch_error_last()->message);
  res->run_status = zorch_run_status(r);
  res->steps = zorch_run_step_count(r);
  for (size_t i = 0; i < res->steps; i++) {
    int st = zorch_run_step_status(r, i);
    res->by_status[st >= 0 && st < 8 ? st : 0]++;
  }
  if (res->steps >= 1 && zorch_run_step_output_count(r, 0) >= 1) {
    const char *d = zorch_run_step_output_digest(r, 0, 0);
    snprintf(res->digest, sizeof res->digest, "%s", d ? d : "");
    res->out_size = zorch_run_step_output_size(r, 0, 0);
  }

  double t5 = bench_now();
  zorch_run_free(r);
  zorch_pipeline_free(p);
  zorch_client_free(c);
  double t6 = bench_now();
  res->client_s = t1 - t0;
  res->build_s = t2 - t1;
  res->start_s = t3 - t2;
  res->wait_s = t4 - t3;
  res->free_s = t6 - t5;
  res->wall_s = (t4 - t0) + (t6 - t5);
}

static void print_result(const char *tool, const char *mode, const result *r, const char *extra) {
  printf("{\"tool\":\"%s\",\"mode\":\"%s\",\"steps\":%zu,\"run_status\":\"%s\","
         "\"completed\":%zu,\"cached\":%zu,\"failed\":%zu,\"skipped\":%zu,"
         "\"client_s\":%.6f,\"build_s\":%.6f,\"start_s\":%.6f,\"wait_s\":%.6f,\"free_s\":%.6f,"
         "\"wall_s\":%.6f%s%s}\n",
         tool, mode, r->steps, zorch_status_name(r->run_status),
         r->by_status[ZORCH_STATUS_COMPLETED], r->by_status[ZORCH_STATUS_CACHED],
         r->by_status[ZORCH_STATUS_FAILED], r->by_status[ZORCH_STATUS_SKIPPED], r->client_s,
         r->build_s, r->start_s, r->wait_s, r->free_s, r->wall_s, extra ? "," : "",
         extra ? extra : "");
  fflush(stdout);
}

/* Every one of `want_steps` steps must have status `want`. */
static int verify(const result *r, size_t want_steps, int want, const char *what) {
  if (r->run_status == ZORCH_STATUS_COMPLETED && r->steps == want_steps &&
      r->by_status[want] == want_steps)
    return 0;
  fprintf(stderr,
          "zorch-bench: %s: FAILED CHECK: run %s, %zu steps (want %zu), %zu %s (want all); "
          "completed %zu, cached %zu, failed %zu, skipped %zu\n",
          what, zorch_status_name(r->run_status), r->steps, want_steps, r->by_status[want],
          zorch_status_name(want), r->by_status[ZORCH_STATUS_COMPLETED],
          r->by_status[ZORCH_STATUS_CACHED], r->by_status[ZORCH_STATUS_FAILED],
          r->by_status[ZORCH_STATUS_SKIPPED]);
  return 1;
}

/* ---- disk usage --------------------------------------------------------------------------- */

typedef struct du {
  uint64_t total_alloc, runs_alloc, cache_alloc, artifacts_alloc, artifacts_size;
  uint64_t artifact_files, files;
} du;
static du du_acc;

static int du_visit(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)ftw;
  if (type != FTW_F && type != FTW_D && type != FTW_SL) return 0;
  uint64_t alloc = (uint64_t)st->st_blocks * 512u;
  du_acc.total_alloc += alloc;
  if (type == FTW_F) du_acc.files++;
  if (strstr(path, "/runs/")) du_acc.runs_alloc += alloc;
  if (strstr(path, "/cache/")) du_acc.cache_alloc += alloc;
  if (strstr(path, "/artifacts/")) {
    du_acc.artifacts_alloc += alloc;
    if (type == FTW_F) {
      du_acc.artifacts_size += (uint64_t)st->st_size;
      du_acc.artifact_files++;
    }
  }
  return 0;
}

static du disk_usage(const char *root) {
  memset(&du_acc, 0, sizeof du_acc);
  if (nftw(root, du_visit, 64, FTW_PHYS) != 0) bench_die("cannot walk %s: %s", root, strerror(errno));
  return du_acc;
}

static const char *home_or_die(void) {
  const char *h = getenv("ZORCH_HOME");
  if (!h || !*h) bench_die("set ZORCH_HOME to a fresh directory");
  return h;
}

/* ---- subcommands -------------------------------------------------------------------------- */

static int cmd_simple(const char *mode, uint32_t n, int ephemeral) {
  build_arg a = {.n = n};
  bench_dag g = {0};
  void (*build)(zorch_pipeline **, const build_arg *);
  size_t want;
  if (!strcmp(mode, "chain")) {
    build = build_chain;
    want = n;
  } else if (!strcmp(mode, "fan")) {
    build = build_fan;
    want = (size_t)n + 2;
  } else {
    if (bench_dag_generate(&g, n, BENCH_DAG_SEED)) bench_die("out of memory");
    a.dag = &g;
    build = build_dag;
    want = n;
  }
  result r;
  run_once(&r, build, &a, ZORCH_RUN_NO_CACHE | (ephemeral ? ZORCH_RUN_EPHEMERAL : 0));
  char extra[160] = "";
  if (a.dag)
    snprintf(extra, sizeof extra, "\"edges\":%llu,\"checksum\":%llu",
             (unsigned long long)g.edges, (unsigned long long)bench_dag_checksum(&g));
  print_result("zorch", ephemeral ? "ephemeral" : "persisted", &r, a.dag ? extra : NULL);
  bench_dag_free(&g);
  return verify(&r, want, ZORCH_STATUS_COMPLETED, mode);
}

static int cmd_cached(uint32_t n) {
  bench_dag g;
  if (bench_dag_generate(&g, n, BENCH_DAG_SEED)) bench_die("out of memory");
  build_arg a = {.n = n, .dag = &g};
  result first, second;
  run_once(&first, build_dag, &a, 0);
  if (verify(&first, n, ZORCH_STATUS_COMPLETED, "cached (filling run)")) return 1;
  run_once(&second, build_dag, &a, 0);
  char extra[200];
  snprintf(extra, sizeof extra, "\"fill_wall_s\":%.6f,\"edges\":%llu,\"checksum\":%llu",
           first.wall_s, (unsigned long long)g.edges, (unsigned long long)bench_dag_checksum(&g));
  print_result("zorch", "cached", &second, extra);
  bench_dag_free(&g);
  return verify(&second, n, ZORCH_STATUS_CACHED, "cached (second run)");
}

static int cmd_scale(uint32_t n) {
  const char *home = home_or_die();
  int fds[2];
  if (pipe(fds)) bench_die("pipe: %s", strerror(errno));
  double t0 = bench_now();
  pid_t pid = fork();
  if (pid < 0) bench_die("fork: %s", strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    if (dup2(fds[1], 1) < 0) _exit(2);
    close(fds[1]);
    /* The whole thing happens here: edge list, build, compile, run, records, free. */
    bench_dag g;
    if (bench_dag_generate(&g, n, BENCH_DAG_SEED)) bench_die("out of memory");
    build_arg a = {.n = n, .dag = &g};
    result r;
    run_once(&r, build_dag, &a, 0);
    char extra[160];
    snprintf(extra, sizeof extra, "\"edges\":%llu,\"checksum\":%llu", (unsigned long long)g.edges,
             (unsigned long long)bench_dag_checksum(&g));
    print_result("zorch", "scale-child", &r, extra);
    int bad = verify(&r, n, ZORCH_STATUS_COMPLETED, "scale");
    bench_dag_free(&g);
    fflush(stdout);
    _exit(bad);
  }
  close(fds[1]);
  char buf[4096];
  size_t len = 0;
  for (;;) {
    ssize_t got = read(fds[0], buf + len, sizeof buf - 1 - len);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    len += (size_t)got;
    if (len == sizeof buf - 1) break;
  }
  close(fds[0]);
  buf[len] = 0;
  while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) buf[--len] = 0;
  int status;
  struct rusage ru;
  pid_t w;
  do w = wait4(pid, &status, 0, &ru); while (w < 0 && errno == EINTR);
  double wall = bench_now() - t0;
  if (w < 0) bench_die("wait4: %s", strerror(errno));
  du d = disk_usage(home);
  uint64_t rss = (uint64_t)ru.ru_maxrss * 1024u;
  printf("{\"tool\":\"zorch\",\"mode\":\"scale\",\"steps\":%u,\"wall_s\":%.6f,"
         "\"peak_rss_bytes\":%llu,\"rss_bytes_per_step\":%.1f,\"child_exit\":%d,"
         "\"disk_total_bytes\":%llu,\"disk_runs_bytes\":%llu,\"disk_cache_bytes\":%llu,"
         "\"disk_artifacts_bytes\":%llu,\"disk_records_bytes_per_step\":%.1f,\"files\":%llu,"
         "\"child\":%s}\n",
         n, wall, (unsigned long long)rss, n ? (double)rss / n : 0.0,
         WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
         (unsigned long long)d.total_alloc, (unsigned long long)d.runs_alloc,
         (unsigned long long)d.cache_alloc, (unsigned long long)d.artifacts_alloc,
         n ? (double)(d.runs_alloc + d.cache_alloc) / n : 0.0, (unsigned long long)d.files,
         len && buf[0] == '{' ? buf : "null");
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

static int cmd_file(const char *path) {
  const char *home = home_or_die();
  struct stat st;
  if (stat(path, &st) || !S_ISREG(st.st_mode)) bench_die("no regular file %s", path);
  build_arg a = {.path = path};
  result first, second;
  run_once(&first, build_file, &a, ZORCH_RUN_NO_CACHE);
  if (verify(&first, 1, ZORCH_STATUS_COMPLETED, "file (first store)")) return 1;
  du d1 = disk_usage(home);
  run_once(&second, build_file, &a, ZORCH_RUN_NO_CACHE);
  if (verify(&second, 1, ZORCH_STATUS_COMPLETED, "file (second store)")) return 1;
  du d2 = disk_usage(home);
  int same = first.digest[0] && !strcmp(first.digest, second.digest);
  char extra[900];
  snprintf(extra, sizeof extra,
           "\"bytes\":%llu,\"output_size\":%llu,\"digest\":\"%s\",\"same_digest\":%s,"
           "\"second_wall_s\":%.6f,\"artifacts_bytes_after_first\":%llu,"
           "\"artifacts_bytes_after_second\":%llu,\"artifact_files_after_first\":%llu,"
           "\"artifact_files_after_second\":%llu,\"home_bytes_after_first\":%llu,"
           "\"home_bytes_after_second\":%llu",
           (unsigned long long)st.st_size, (unsigned long long)first.out_size, first.digest,
           same ? "true" : "false", second.wall_s, (unsigned long long)d1.artifacts_alloc,
           (unsigned long long)d2.artifacts_alloc, (unsigned long long)d1.artifact_files,
           (unsigned long long)d2.artifact_files, (unsigned long long)d1.total_alloc,
           (unsigned long long)d2.total_alloc);
  print_result("zorch", "file", &first, extra);
  if (first.out_size != (uint64_t)st.st_size) {
    fprintf(stderr, "zorch-bench: file: stored %llu bytes, source has %llu\n",
            (unsigned long long)first.out_size, (unsigned long long)st.st_size);
    return 1;
  }
  return same ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 3)
    bench_die("usage: zorch-bench chain|fan|dag N [--ephemeral] | cached N | scale N | file PATH");
  const char *cmd = argv[1];
  int ephemeral = argc > 3 && !strcmp(argv[3], "--ephemeral");
  if (!strcmp(cmd, "file")) return cmd_file(argv[2]);
  uint32_t n = (uint32_t)bench_parse_u64(argv[2], "N");
  if (!strcmp(cmd, "chain") || !strcmp(cmd, "fan") || !strcmp(cmd, "dag"))
    return cmd_simple(cmd, n, ephemeral);
  if (!strcmp(cmd, "cached")) return cmd_cached(n);
  if (!strcmp(cmd, "scale")) return cmd_scale(n);
  bench_die("unknown subcommand '%s'", cmd);
}
