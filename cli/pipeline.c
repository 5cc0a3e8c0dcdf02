/* zorch CLI — pipeline run / validate: JSON specs, live progress, the summary. */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Load and build a spec; NULL after printing the error. */
static zorch_pipeline *load_spec(const char *path) {
  char *text = cli_read_file(path);
  if (!text) return NULL;
  zorch_pipeline *p = NULL;
  if (zorch_pipeline_from_spec(&p, text, strcmp(path, "-") == 0 ? "<stdin>" : path))
    cli_lib_error();
  free(text);
  return p;
}

int cmd_pipeline_validate(const cli_cmd *cmd, int argc, char **argv) {
  const char *file;
  int r = cli_positional(cmd, argc, argv, 1, 1, &file);
  if (r >= 0) return r;
  zorch_pipeline *p = load_spec(file);
  if (!p) return CLI_EXIT_FAILED;
  size_t n = zorch_pipeline_step_count(p);
  printf("%s: pipeline '%s' is valid (%zu step%s).\n", strcmp(file, "-") ? file : "<stdin>", zorch_pipeline_name(p), n,
         n == 1 ? "" : "s");
  zorch_pipeline_free(p);
  return CLI_EXIT_OK;
}

/* ---- progress ---------------------------------------------------------------------- */

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct step_state {
  char *name;
  int status;      /* last status seen; -1 before the first event */
  double started;  /* monotonic time of the last "running" */
} step_state;

/* A terminal gets at most this many redraws a second: a run of 100k steps
 * must not spend its time (or its serialised callback) writing to a tty.
 * The main thread draws what the throttle held back (see cmd_pipeline_run). */
#define REDRAW_INTERVAL 0.1

/* What the progress callback keeps.  Its calls are serialised but come from
 * an executor thread, while the main thread prints the header and redraws:
 * `lock` guards all of it. */
typedef struct progress {
  pthread_mutex_t lock;
  bool tty;
  size_t total;
  size_t cap, used;      /* hash table of steps by name, open addressing */
  step_state *steps;
  size_t count[8];       /* steps per status */
  char last[256];        /* the latest change, for the status line */
  bool header_done;      /* until then, lines wait in `pending` */
  bool closed;           /* the run ended: draw nothing more */
  bool dirty;            /* a change not drawn yet */
  double last_draw;
  char *pending;
  size_t pending_len;
} progress;

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* The step's state, added on first sight; NULL if the table is full (a run
 * reporting more steps than its pipeline has). */
static step_state *step_lookup(progress *pg, const char *name) {
  size_t i = (size_t)hash_str(name) & (pg->cap - 1);
  while (pg->steps[i].name) {
    if (strcmp(pg->steps[i].name, name) == 0) return &pg->steps[i];
    i = (i + 1) & (pg->cap - 1);
  }
  if (pg->used + 1 >= pg->cap) return NULL;
  if (!(pg->steps[i].name = strdup(name))) abort();
  pg->steps[i].status = -1;
  pg->used++;
  return &pg->steps[i];
}

static void progress_init(progress *pg, size_t total) {
  memset(pg, 0, sizeof *pg);
  pthread_mutex_init(&pg->lock, NULL);
  pg->tty = cli_stdout_is_tty();
  pg->total = total;
  pg->cap = 16;
  while (pg->cap < 2 * total + 2) pg->cap *= 2;
  if (!(pg->steps = calloc(pg->cap, sizeof *pg->steps))) abort();
}

static void progress_free(progress *pg) {
  for (size_t i = 0; i < pg->cap; i++) free(pg->steps[i].name);
  free(pg->steps);
  free(pg->pending);
  pthread_mutex_destroy(&pg->lock);
}

/* A permanent line on stdout (above the status line on a terminal).  Lock held. */
static void progress_line(progress *pg, const char *line) {
  if (pg->closed) return; /* the summary says it all */
  if (pg->header_done) {
    cli_println(stdout, "%s", line);
    return;
  }
  size_t l = strlen(line);
  char *np = realloc(pg->pending, pg->pending_len + l + 2);
  if (!np) abort();
  pg->pending = np;
  memcpy(pg->pending + pg->pending_len, line, l);
  pg->pending[pg->pending_len + l] = '\n';
  pg->pending_len += l + 1;
  pg->pending[pg->pending_len] = '\0';
}

/* Draw the status line.  Lock held. */
static void progress_redraw(progress *pg) {
  if (!pg->tty || !pg->header_done || pg->closed) return;
  pg->dirty = false;
  pg->last_draw = mono_now();
  size_t finished = pg->count[ZORCH_STATUS_COMPLETED] + pg->count[ZORCH_STATUS_CACHED] +
                    pg->count[ZORCH_STATUS_FAILED] + pg->count[ZORCH_STATUS_SKIPPED] +
                    pg->count[ZORCH_STATUS_STOPPED];
  char plain[512];
  int n = snprintf(plain, sizeof plain, "[%zu/%zu] %zu done, %zu running, %zu failed, %zu cached",
                   finished, pg->total, pg->count[ZORCH_STATUS_COMPLETED],
                   pg->count[ZORCH_STATUS_RUNNING] + pg->count[ZORCH_STATUS_RETRYING],
                   pg->count[ZORCH_STATUS_FAILED], pg->count[ZORCH_STATUS_CACHED]);
  if (pg->count[ZORCH_STATUS_SKIPPED] && n > 0 && (size_t)n < sizeof plain)
    n += snprintf(plain + n, sizeof plain - (size_t)n, ", %zu skipped",
                  pg->count[ZORCH_STATUS_SKIPPED]);
  if (pg->last[0] && n > 0 && (size_t)n < sizeof plain)
    snprintf(plain + n, sizeof plain - (size_t)n, " | %s", pg->last);
  /* one line only: a wrapped line cannot be redrawn with \r */
  size_t width = (size_t)cli_term_width() - 1;
  size_t chars = 0, cut = 0;
  for (cut = 0; plain[cut]; cut++) {
    if (((unsigned char)plain[cut] & 0xC0) != 0x80 && ++chars > width) break;
  }
  plain[cut] = '\0';
  char line[600];
  snprintf(line, sizeof line, "%s%s%s", cli_color_bold(), plain, cli_color_reset());
  cli_status_set(line);
}

static void on_progress(const char *run_id, const char *step, int status, void *payload) {
  (void)run_id;
  progress *pg = payload;
  if (!step || status < 0 || status > ZORCH_STATUS_RETRYING) return;
  pthread_mutex_lock(&pg->lock);
  step_state *s = step_lookup(pg, step);
  if (!s || s->status == status) {
    pthread_mutex_unlock(&pg->lock);
    return;
  }
  if (s->status >= 0) pg->count[s->status]--;
  s->status = status;
  pg->count[status]++;
  double now = mono_now(), took = -1;
  if (status == ZORCH_STATUS_RUNNING) s->started = now;
  else if (s->started > 0) took = now - s->started;

  char dur[32] = "";
  if (took >= 0) {
    char d[24];
    cli_format_duration(d, sizeof d, took);
    snprintf(dur, sizeof dur, " (%s)", d);
  }
  const char *what = status == ZORCH_STATUS_RETRYING ? "failed, retrying" : zorch_status_name(status);
  bool finished = status == ZORCH_STATUS_COMPLETED || status == ZORCH_STATUS_CACHED ||
                  status == ZORCH_STATUS_FAILED || status == ZORCH_STATUS_SKIPPED ||
                  status == ZORCH_STATUS_STOPPED;
  char line[512];
  if (!pg->tty) {
    /* plain: one line per finished step (and per retry) */
    if (finished || status == ZORCH_STATUS_RETRYING) {
      snprintf(line, sizeof line, "%s: %s%s", step, what, dur);
      progress_line(pg, line);
    }
  } else {
    snprintf(pg->last, sizeof pg->last, "%s %s", step, zorch_status_name(status));
    if (status == ZORCH_STATUS_FAILED || status == ZORCH_STATUS_RETRYING) {
      /* failures stay on the screen above the status line */
      snprintf(line, sizeof line, "%s%s: %s%s%s", cli_status_color(status), step, what, dur,
               cli_color_reset());
      progress_line(pg, line);
    }
    if (now - pg->last_draw >= REDRAW_INTERVAL) progress_redraw(pg);
    else pg->dirty = true;
  }
  pthread_mutex_unlock(&pg->lock);
}

/* On a terminal the main thread waits in short slices to draw what the
 * throttle held back; Ctrl-C between two slices must still stop the run. */
static zorch_run *volatile sigint_run;

static void on_sigint(int sig) {
  (void)sig;
  zorch_run *r = sigint_run;
  if (r) zorch_run_cancel(r); /* async-signal-safe for a run of this process */
}

static int wait_run(zorch_run *run, progress *pg) {
  if (!pg->tty) return zorch_run_wait(run, -1);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigint_run = run;
  sigaction(SIGINT, &sa, &old);
  int rc;
  while ((rc = zorch_run_wait(run, (int)(REDRAW_INTERVAL * 1000))) == ZORCH_ETIMEOUT) {
    pthread_mutex_lock(&pg->lock);
    if (pg->dirty) progress_redraw(pg);
    pthread_mutex_unlock(&pg->lock);
  }
  sigaction(SIGINT, &old, NULL);
  sigint_run = NULL;
  return rc;
}

/* ---- pipeline run ------------------------------------------------------------------------------ */

int cmd_pipeline_run(const cli_cmd *cmd, int argc, char **argv) {
  static const cli_opt opts[] = {{"stack", 's', true},         {"param", 'p', true},
                                 {"name", 'n', true},          {"no-cache", 0, false},
                                 {"max-parallel", 0, true},    {"fail-fast", 0, false},
                                 {"stop-on-failure", 0, false}, {NULL, 0, false}};
  enum { O_STACK, O_PARAM, O_NAME, O_NO_CACHE, O_MAX_PARALLEL, O_FAIL_FAST, O_STOP };
  zorch_run_options ro = ZORCH_RUN_OPTIONS_INIT;
  const char *file = NULL;
  json_t *params = json_object();
  int mode = -1;
  cli_parser p;
  cli_parser_init(&p, cmd, opts, argc, argv);
  int r, rc = -1;
  const char *v;
  while (rc < 0 && (r = cli_getopt(&p, &v)) != CLI_OPT_END) {
    switch (r) {
    case O_STACK: ro.stack = v; break;
    case O_NAME: ro.run_name = v; break;
    case O_NO_CACHE: ro.flags |= ZORCH_RUN_NO_CACHE; break;
    case O_PARAM: {
      const char *eq = strchr(v, '=');
      if (!eq || eq == v) {
        rc = cli_usage_error(cmd, "--param wants KEY=JSON, got '%s'", v);
        break;
      }
      json_error_t err;
      json_t *val = json_loads(eq + 1, JSON_DECODE_ANY, &err);
      if (!val) {
        rc = cli_usage_error(cmd,
                             "--param %s: the value is not JSON (%s); a string needs quotes: "
                             "%.*s='\"%s\"'",
                             v, err.text, (int)(eq - v), v, eq + 1);
        break;
      }
      char *key = strndup(v, (size_t)(eq - v));
      json_object_set_new(params, key, val);
      free(key);
      break;
    }
    case O_MAX_PARALLEL: {
      char *end;
      errno = 0;
      unsigned long n = strtoul(v, &end, 10);
      if (!*v || *end || errno || n == 0 || n > UINT32_MAX || v[0] == '-')
        rc = cli_usage_error(cmd, "--max-parallel wants a positive integer, got '%s'", v);
      ro.max_parallel = (uint32_t)n;
      break;
    }
    case O_FAIL_FAST:
    case O_STOP: {
      int m = r == O_FAIL_FAST ? ZORCH_FAIL_FAST : ZORCH_STOP_ON_FAILURE;
      if (mode >= 0 && mode != m)
        rc = cli_usage_error(cmd, "--fail-fast and --stop-on-failure exclude each other");
      mode = m;
      break;
    }
    case CLI_OPT_POSITIONAL:
      if (file) rc = cli_usage_error(cmd, "unexpected argument '%s'", v);
      file = v;
      break;
    default: rc = cli_opt_exit(cmd, r);
    }
  }
  if (rc < 0 && !file) rc = cli_usage_error(cmd, "missing the pipeline spec FILE");
  if (rc >= 0) {
    json_decref(params);
    return rc;
  }
  ro.failure_mode = mode >= 0 ? mode : ZORCH_CONTINUE_ON_FAILURE;
  ro.flags |= ZORCH_RUN_HANDLE_SIGINT;
  char *params_json = json_object_size(params) ? json_dumps(params, JSON_COMPACT) : NULL;
  json_decref(params);
  ro.params_json = params_json;

  zorch_pipeline *pl = load_spec(file);
  if (!pl) {
    free(params_json);
    return CLI_EXIT_FAILED;
  }
  zorch_client *c = cli_client_open(true);
  if (!c) {
    zorch_pipeline_free(pl);
    free(params_json);
    return CLI_EXIT_FAILED;
  }
  progress pg;
  progress_init(&pg, zorch_pipeline_step_count(pl));
  ro.progress_cb = on_progress;
  ro.progress_payload = &pg;

  zorch_run *run = NULL;
  if (zorch_run_start(&run, c, pl, &ro)) {
    rc = cli_lib_error();
    goto out;
  }
  /* only command steps: the pipeline is not needed once the run started */
  zorch_pipeline_free(pl);
  pl = NULL;

  /* Read the run before taking the header lock: a progress callback may be
   * waiting for that lock inside the executor. */
  char header[1024];
  const char *url = zorch_run_metadata(run, "orchestrator_url");
  snprintf(header, sizeof header, "Running pipeline '%s' on stack '%s'.\nRun: %s (id %s)\n%s%s%s",
           zorch_run_pipeline_name(run), zorch_run_stack(run) ? zorch_run_stack(run) : "?",
           zorch_run_name(run), zorch_run_id(run), url ? "Orchestrator URL: " : "",
           url ? url : "", url ? "\n" : "");
  pthread_mutex_lock(&pg.lock);
  fputs(header, stdout);
  if (pg.pending) fputs(pg.pending, stdout);
  fflush(stdout);
  pg.header_done = true;
  progress_redraw(&pg);
  pthread_mutex_unlock(&pg.lock);

  int wrc = wait_run(run, &pg);
  /* keep the message: the accessors below may overwrite the thread's last error */
  char message[2048];
  snprintf(message, sizeof message, "%s", zorch_error_last()->message);
  pthread_mutex_lock(&pg.lock);
  pg.closed = true;
  pthread_mutex_unlock(&pg.lock);
  cli_status_clear();
  if (wrc == ZORCH_OK || wrc == ZORCH_ESTEP || wrc == ZORCH_ECANCELLED) cli_print_run_summary(run);
  fflush(stdout);
  switch (wrc) {
  case ZORCH_OK: rc = CLI_EXIT_OK; break;
  case ZORCH_ESTEP: rc = cli_error("%s", message); break;
  case ZORCH_ECANCELLED:
    cli_println(stderr, "zorch: run '%s' was stopped", zorch_run_name(run));
    rc = CLI_EXIT_STOPPED;
    break;
  default: rc = cli_error("%s", message);
  }
out:
  zorch_run_free(run);
  zorch_pipeline_free(pl);
  progress_free(&pg);
  zorch_client_free(c);
  free(params_json);
  return rc;
}
