/* zorch-flavor-prefix: an out-of-tree orchestrator flavor that runs every
 * step of a pipeline through a command prefix the user chooses.
 *
 *   zorch orchestrator register nice --flavor prefix --config '{"prefix": ["nice", "-n", "10"]}'
 *   zorch orchestrator register farm --flavor prefix \
 *       --config '{"prefix": ["ssh", "node7"], "join": true}'
 *
 * libzorch's DAG executor drives the run (readiness, cache, retries,
 * timeouts, failure modes, cancel, run records) through
 * host->executor_start_remote; for each step attempt it calls launch(),
 * which starts
 *
 *     <prefix...> <the step entrypoint argv...>
 *
 * as a child process, and a thread that hands what it prints to the host
 * (host->executor_step_log: the host appends it to the step's log), waits
 * for it and reports its exit status with host->executor_step_done.  The
 * step entrypoint (the deployment's "entrypoint" template: `zorch step run
 * ...` for a command step, the host program with --zorch-step for a
 * function step) reads inputs from and
 * writes outputs to the artifact store, so the prefix may move the step to
 * another machine (ssh, a batch system) as long as it sees the same store
 * path.  With "join": true the entrypoint is passed as one shell-quoted
 * word, for prefixes that take a command line (ssh, sh -c, sbatch --wrap).
 *
 * Built with nothing but `pkg-config --cflags zorch` (see Makefile): a
 * plugin does not link libzorch, everything comes through the host table.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zorch/plugin.h>

extern char **environ;

/* ---- config ---------------------------------------------------------------------- */

static const char config_schema[] =
    "{\"type\":\"object\","
    "\"properties\":{"
    "\"prefix\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,"
    "\"description\":\"the command put in front of each step's entrypoint, e.g. "
    "[\\\"nice\\\",\\\"-n\\\",\\\"10\\\"] or [\\\"ssh\\\",\\\"host\\\"]\"},"
    "\"join\":{\"type\":\"boolean\",\"description\":\"pass the step's entrypoint as one "
    "shell-quoted argument (for ssh, sh -c, sbatch --wrap); default false\"},"
    "\"max_parallel\":{\"type\":\"integer\",\"minimum\":1,"
    "\"description\":\"how many steps may run at once (default: the number of CPUs)\"}},"
    "\"required\":[\"prefix\"],"
    "\"additionalProperties\":false}";

typedef struct {
  char **prefix; /* NULL-terminated */
  size_t nprefix;
  int join;
  long max_parallel; /* 0: not set */
} px_config;

static void config_free(const zorch_host *host, px_config *c) {
  for (size_t i = 0; c->prefix && i < c->nprefix; i++) host->free(c->prefix[i]);
  host->free(c->prefix);
  memset(c, 0, sizeof *c);
}

/* A tiny reader for the config.  The host has validated it against the
 * schema above, so only the shapes the schema allows need handling. */
static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  return p;
}

/* Parse a JSON string at *pp (at its opening quote) into a new string. */
static char *read_string(const zorch_host *host, const char **pp) {
  const char *p = *pp;
  if (*p != '"') return NULL;
  p++;
  char *out = host->alloc(strlen(p) + 1), *o = out;
  if (!out) return NULL;
  while (*p && *p != '"') {
    if (*p != '\\') {
      *o++ = *p++;
      continue;
    }
    p++;
    switch (*p) {
    case 'n': *o++ = '\n'; break;
    case 't': *o++ = '\t'; break;
    case 'r': *o++ = '\r'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'u': { /* \uXXXX: enough for the BMP, as UTF-8 */
      unsigned v = 0;
      for (int i = 1; i <= 4 && p[i]; i++) {
        char h = p[i];
        v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
      }
      if (v < 0x80) *o++ = (char)v;
      else if (v < 0x800) *o++ = (char)(0xC0 | v >> 6), *o++ = (char)(0x80 | (v & 0x3F));
      else
        *o++ = (char)(0xE0 | v >> 12), *o++ = (char)(0x80 | ((v >> 6) & 0x3F)),
        *o++ = (char)(0x80 | (v & 0x3F));
      p += 4;
      break;
    }
    default: *o++ = *p; break; /* \" \\ \/ */
    }
    if (*p) p++;
  }
  *o = '\0';
  if (*p == '"') p++;
  *pp = p;
  return out;
}

/* The value of top-level key `key` in the object `json`, or NULL. */
static const char *find_key(const char *json, const char *key) {
  size_t n = strlen(key);
  int depth = 0;
  for (const char *p = json; *p; p++) {
    if (*p == '"') {
      const char *start = p + 1;
      for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1]) p++;
      if (!*p) return NULL;
      if (depth == 1 && (size_t)(p - start) == n && !strncmp(start, key, n)) {
        const char *v = skip_ws(p + 1);
        if (*v == ':') return skip_ws(v + 1);
      }
    } else if (*p == '{' || *p == '[') {
      depth++;
    } else if (*p == '}' || *p == ']') {
      depth--;
    }
  }
  return NULL;
}

static int config_parse(const zorch_host *host, const char *json, px_config *c) {
  memset(c, 0, sizeof *c);
  const char *p = json ? find_key(json, "prefix") : NULL;
  if (!p || *p != '[')
    return zorch_host_errorf(host, ZORCH_EINVALID, "config: \"prefix\" (an array of strings) is required");
  size_t cap = 4;
  c->prefix = host->alloc(cap * sizeof *c->prefix);
  if (!c->prefix) return ZORCH_ENOMEM;
  for (p = skip_ws(p + 1); *p == '"'; p = skip_ws(p)) {
    if (c->nprefix + 2 > cap) {
      char **nv = host->alloc(2 * cap * sizeof *nv);
      if (!nv) return ZORCH_ENOMEM;
      memcpy(nv, c->prefix, c->nprefix * sizeof *nv);
      host->free(c->prefix);
      c->prefix = nv;
      cap *= 2;
    }
    char *s = read_string(host, &p);
    if (!s) return ZORCH_ENOMEM;
    c->prefix[c->nprefix++] = s;
    p = skip_ws(p);
    if (*p == ',') p++;
  }
  c->prefix[c->nprefix] = NULL;
  const char *j = find_key(json, "join");
  c->join = j && !strncmp(j, "true", 4);
  const char *m = find_key(json, "max_parallel");
  c->max_parallel = m ? strtol(m, NULL, 10) : 0;
  return ZORCH_OK;
}

/* Is `cmd` an executable file, itself (with a '/') or in $PATH? */
static int findable(const char *cmd) {
  if (strchr(cmd, '/')) return access(cmd, X_OK) == 0;
  const char *path = getenv("PATH");
  if (!path) path = "/usr/bin:/bin";
  char buf[4096];
  for (const char *d = path; *d;) {
    size_t n = strcspn(d, ":");
    snprintf(buf, sizeof buf, "%.*s/%s", (int)(n ? n : 1), n ? d : ".", cmd);
    struct stat st;
    if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0) return 1;
    d += n;
    if (*d == ':') d++;
  }
  return 0;
}

/* ---- the flavor ---------------------------------------------------------------------- */

typedef struct {
  const zorch_host *host;
} px_flavor;

/* One launched attempt of one step. */
typedef struct attempt {
  struct attempt *next;
  struct run *run;
  void *executor;
  uint64_t attempt_id;
  pid_t pid;
  int out;      /* read end of the pipe the process prints into */
  pthread_t waiter;
  int ended;    /* under run->lock: the process ended (2: no waiter thread) */
  int reported; /* under run->lock: executor_step_done returned, the waiter exits */
} attempt;

typedef struct run {
  const zorch_host *host;
  px_config config;
  char *prefix_text; /* the prefix as one line, for messages */
  void *exec;        /* the host executor's handle */
  pthread_mutex_t lock;
  attempt *attempts;
} run;

/* Semantic checks beyond the schema: the prefix's program must exist. */
static int px_check_config(void *payload, const char *config_json) {
  const zorch_host *host = ((px_flavor *)payload)->host;
  px_config c;
  int rc = config_parse(host, config_json, &c);
  if (rc == ZORCH_OK && !c.prefix[0][0])
    rc = zorch_host_errorf(host, ZORCH_EINVALID, "prefix[0] is empty: name the program to run");
  else if (rc == ZORCH_OK && !findable(c.prefix[0]))
    rc = zorch_host_errorf(host, ZORCH_EINVALID, "prefix[0] '%.300s' is not an executable program%s",
                           c.prefix[0], strchr(c.prefix[0], '/') ? "" : " in $PATH");
  config_free(host, &c);
  return rc;
}

/* `s` quoted for a POSIX shell, appended to buf (size cap, used *len). */
static int shell_quote(char **buf, size_t *len, size_t *cap, const zorch_host *host,
                       const char *s) {
  size_t need = *len + 4 * strlen(s) + 4;
  if (need > *cap) {
    size_t ncap = need * 2;
    char *nb = host->alloc(ncap);
    if (!nb) return ZORCH_ENOMEM;
    memcpy(nb, *buf, *len);
    host->free(*buf);
    *buf = nb;
    *cap = ncap;
  }
  char *o = *buf + *len;
  if (*len) *o++ = ' ';
  *o++ = '\'';
  for (; *s; s++) {
    if (*s == '\'') {
      memcpy(o, "'\\''", 4);
      o += 4;
    } else {
      *o++ = *s;
    }
  }
  *o++ = '\'';
  *o = '\0';
  *len = (size_t)(o - *buf);
  return ZORCH_OK;
}

static void *waiter_main(void *arg) {
  attempt *a = arg;
  run *r = a->run;
  const zorch_host *host = r->host;
  int status = 0;
  pid_t got = 0;
  /* What the step prints goes to the host, which appends it to the step's
   * log after a "--- attempt N (prefix) ---" line of its own.  Until the
   * process ends; then only what the pipe holds already (something the step
   * left running in the background may keep the pipe open). */
  char buf[8192];
  for (;;) {
    struct pollfd pfd = {.fd = a->out, .events = POLLIN};
    int ready = got > 0 ? 1 : poll(&pfd, 1, 200);
    ssize_t n = ready > 0 ? read(a->out, buf, sizeof buf) : -1;
    if (n > 0) {
      if (host->executor_step_log(a->executor, a->attempt_id, buf, (size_t)n) != ZORCH_OK)
        zorch_host_logf(host, ZORCH_LOG_WARNING, "the step log refused output: %s",
                        "the attempt has ended");
      continue;
    }
    if (n == 0 || (got > 0 && errno != EINTR)) break; /* end of the pipe, or drained */
    if (got == 0) {
      got = waitpid(a->pid, &status, WNOHANG);
      if (got < 0 && errno == EINTR) got = 0;
      if (got < 0) break;
    }
  }
  close(a->out);
  while (got == 0) {
    got = waitpid(a->pid, &status, 0);
    if (got < 0 && errno == EINTR) got = 0;
  }
  int code;
  char msg[600];
  msg[0] = '\0';
  if (got < 0) {
    code = 127;
    snprintf(msg, sizeof msg, "prefix: cannot wait for the step process: %s", strerror(errno));
  } else if (WIFEXITED(status)) {
    code = WEXITSTATUS(status);
    if (code)
      snprintf(msg, sizeof msg, "the step entrypoint run through the prefix %.400s exited with "
               "status %d", r->prefix_text, code);
  } else {
    code = 128 + WTERMSIG(status);
    snprintf(msg, sizeof msg, "the step entrypoint run through the prefix %.400s was killed by "
             "signal %d", r->prefix_text, WTERMSIG(status));
  }
  pthread_mutex_lock(&r->lock);
  a->ended = 1;
  pthread_mutex_unlock(&r->lock);
  host->executor_step_done(a->executor, a->attempt_id, code, msg[0] ? msg : NULL);
  /* release() joins this thread before it frees the run, so `a` is alive */
  pthread_mutex_lock(&r->lock);
  a->reported = 1;
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

/* Join and free the attempts whose waiter is done, so a long run keeps
 * threads and memory only for the attempts still going. */
static void reap(run *r) {
  attempt *done = NULL;
  pthread_mutex_lock(&r->lock);
  for (attempt **pp = &r->attempts; *pp;) {
    attempt *a = *pp;
    if (a->reported || a->ended == 2) {
      *pp = a->next;
      a->next = done;
      done = a;
    } else {
      pp = &a->next;
    }
  }
  pthread_mutex_unlock(&r->lock);
  while (done) {
    attempt *next = done->next;
    if (done->ended != 2) pthread_join(done->waiter, NULL);
    r->host->free(done);
    done = next;
  }
}

/* Start one attempt: <prefix> <entrypoint argv>, its output into a pipe the
 * attempt's waiter thread reads. */
static int px_launch(void *data, const zorch_step_launch *step) {
  run *r = data;
  const zorch_host *host = r->host;
  const px_config *c = &r->config;
  reap(r);
  size_t nargv = 0;
  while (step->argv[nargv]) nargv++;
  size_t nenv = 0, nextra = 0;
  while (environ[nenv]) nenv++;
  while (step->env && step->env[nextra]) nextra++;

  char **argv = host->alloc((c->nprefix + nargv + 2) * sizeof *argv);
  char **envp = host->alloc((nenv + nextra + 1) * sizeof *envp);
  char *joined = NULL;
  size_t jlen = 0, jcap = 0;
  int rc = argv && envp ? ZORCH_OK : ZORCH_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; rc == ZORCH_OK && i < c->nprefix; i++) argv[k++] = c->prefix[i];
  if (rc == ZORCH_OK && c->join) {
    for (size_t i = 0; rc == ZORCH_OK && i < nargv; i++)
      rc = shell_quote(&joined, &jlen, &jcap, host, step->argv[i]);
    argv[k++] = joined;
  } else if (rc == ZORCH_OK) {
    for (size_t i = 0; i < nargv; i++) argv[k++] = (char *)step->argv[i];
  }
  if (rc == ZORCH_OK) {
    argv[k] = NULL;
    /* the step's environment settings override this process's */
    size_t e = 0;
    for (size_t i = 0; i < nenv; i++) {
      size_t klen = strcspn(environ[i], "=");
      int overridden = 0;
      for (size_t x = 0; x < nextra; x++)
        if (!strncmp(step->env[x], environ[i], klen + 1)) overridden = 1;
      if (!overridden) envp[e++] = environ[i];
    }
    for (size_t x = 0; x < nextra; x++) envp[e++] = (char *)step->env[x];
    envp[e] = NULL;
  }

  attempt *a = rc == ZORCH_OK ? host->alloc(sizeof *a) : NULL;
  if (rc == ZORCH_OK && !a) rc = ZORCH_ENOMEM;
  if (rc == ZORCH_ENOMEM) zorch_host_errorf(host, ZORCH_ENOMEM, "out of memory");
  int pfd[2] = {-1, -1};
  if (rc == ZORCH_OK && (pipe2(pfd, O_CLOEXEC) || fcntl(pfd[0], F_SETFL, O_NONBLOCK))) {
    rc = zorch_host_errorf(host, ZORCH_EIO, "cannot make a pipe for step %.100s: %s", step->step,
                           strerror(errno));
    if (pfd[0] >= 0) close(pfd[0]);
    if (pfd[1] >= 0) close(pfd[1]);
  }

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  if (rc == ZORCH_OK) {
    memset(a, 0, sizeof *a);
    a->run = r;
    a->executor = step->executor;
    a->attempt_id = step->attempt_id;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP); /* stop() signals the whole group */
    posix_spawnattr_setpgroup(&at, 0);
    zorch_host_logf(host, ZORCH_LOG_DEBUG, "step %.200s attempt %u: %.400s %s", step->step,
                    step->attempt, r->prefix_text, c->join ? "'<entrypoint>'" : "<entrypoint>");
    int err = posix_spawnp(&a->pid, argv[0], &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pfd[1]); /* the process has its copy */
    pfd[1] = -1;
    a->out = pfd[0];
    if (err) {
      close(a->out);
      rc = zorch_host_errorf(host, ZORCH_EIO, "cannot start '%.300s' for step %.100s: %s", argv[0],
                             step->step, strerror(err));
    }
  }
  if (rc == ZORCH_OK) {
    pthread_mutex_lock(&r->lock);
    a->next = r->attempts;
    r->attempts = a;
    int err = pthread_create(&a->waiter, NULL, waiter_main, a);
    pthread_mutex_unlock(&r->lock);
    if (err) { /* cannot happen often; reap the child here, report it failed */
      kill(-a->pid, SIGKILL);
      waitpid(a->pid, NULL, 0);
      close(a->out);
      pthread_mutex_lock(&r->lock);
      a->ended = 2; /* no thread to join */
      pthread_mutex_unlock(&r->lock);
      rc = zorch_host_errorf(host, ZORCH_EIO, "cannot create a thread to wait for the step");
    }
    a = NULL; /* the run owns it now */
  }
  host->free(a);
  host->free(argv);
  host->free(envp);
  host->free(joined);
  return rc;
}

/* Stop a launched attempt: SIGTERM to its process group (the step entrypoint
 * passes it on to the step's command); the waiter reports the end. */
static void px_stop(void *data, void *executor, uint64_t attempt_id) {
  run *r = data;
  pthread_mutex_lock(&r->lock);
  for (attempt *a = r->attempts; a; a = a->next)
    if (a->executor == executor && a->attempt_id == attempt_id && !a->ended) kill(-a->pid, SIGTERM);
  pthread_mutex_unlock(&r->lock);
}

static const zorch_step_launcher px_launcher = {
    .version = ZORCH_STEP_LAUNCHER_VERSION,
    .launch = px_launch,
    .stop = px_stop,
};

static void run_free(run *r) {
  const zorch_host *host = r->host;
  for (attempt *a = r->attempts, *next; a; a = next) { /* all ended with the run */
    next = a->next;
    if (a->ended != 2) pthread_join(a->waiter, NULL);
    host->free(a);
  }
  pthread_mutex_destroy(&r->lock);
  config_free(host, &r->config);
  host->free(r->prefix_text);
  host->free(r);
}

static int px_submit(void **out_run, void *payload, zorch_submission *sub) {
  const zorch_host *host = ((px_flavor *)payload)->host;
  *out_run = NULL;
  run *r = host->alloc(sizeof *r);
  if (!r) return zorch_host_errorf(host, ZORCH_ENOMEM, "out of memory");
  memset(r, 0, sizeof *r);
  r->host = host;
  pthread_mutex_init(&r->lock, NULL);
  int rc = config_parse(host, host->submission_get(sub, "config"), &r->config);
  size_t len = 0, cap = 0;
  for (size_t i = 0; rc == ZORCH_OK && i < r->config.nprefix; i++)
    rc = shell_quote(&r->prefix_text, &len, &cap, host, r->config.prefix[i]);
  if (rc != ZORCH_OK) {
    if (rc == ZORCH_ENOMEM) zorch_host_errorf(host, rc, "out of memory");
    run_free(r);
    return rc;
  }
  /* run metadata: shown by `zorch run show` */
  host->submission_set_metadata(sub, "prefix", r->prefix_text);
  char options[64] = "{}";
  if (r->config.max_parallel > 0)
    snprintf(options, sizeof options, "{\"max_parallel\":%ld}", r->config.max_parallel);
  rc = host->executor_start_remote(&r->exec, sub, options, &px_launcher, r);
  if (rc != ZORCH_OK) { /* the host has set the error */
    run_free(r);
    return rc;
  }
  *out_run = r;
  return ZORCH_OK;
}

static int px_wait(void *rp, int timeout_ms) {
  run *r = rp;
  return r->host->executor_wait(r->exec, timeout_ms);
}

static int px_cancel(void *rp) {
  run *r = rp;
  return r->host->executor_cancel(r->exec);
}

static void px_release(void *rp) {
  run *r = rp;
  if (!r) return;
  r->host->executor_release(r->exec);
  run_free(r);
}

static const zorch_orchestrator_ops px_ops = {
    .version = ZORCH_ORCHESTRATOR_OPS_VERSION,
    .check_config = px_check_config,
    .submit = px_submit,
    .wait = px_wait,
    .cancel = px_cancel,
    .release = px_release,
};

static const zorch_flavor_desc px_flavor_desc = {
    .version = ZORCH_FLAVOR_DESC_VERSION,
    .type = ZORCH_COMPONENT_ORCHESTRATOR,
    .name = "prefix",
    .integration = "example-prefix",
    .description = "Runs each step through a command prefix (nice, ssh host, a batch submitter)",
    .config_schema = config_schema,
    .ops = &px_ops,
    /* the steps must see the artifact store's directory at the same path */
    .flags = ZORCH_FLAVOR_LOCAL_STORE,
};

/* ---- the plugin ------------------------------------------------------------------------- */

/* executor_start_remote and executor_step_done (2), executor_step_log (3).
 * Built against the plugin ABI 1.2 header, the plugin loads only into a
 * zorch of ABI 1.2 or newer, whose host table is version 3 or newer: the
 * check says so should the plugin ever be built to load into an older one. */
#define PX_NEEDS_HOST 3

static int px_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  if (host->version < PX_NEEDS_HOST)
    return zorch_host_errorf(host, ZORCH_EVERSION,
                             "needs host table version %d (executor_step_log), this zorch offers "
                             "%u: upgrade zorch",
                             PX_NEEDS_HOST, host->version);
  px_flavor *f = host->alloc(sizeof *f);
  if (!f) return zorch_host_errorf(host, ZORCH_ENOMEM, "out of memory");
  f->host = host;
  *plugin_ctx = f;
  return host->add_flavor(reg, &px_flavor_desc, f);
}

static void px_teardown(void *plugin_ctx) {
  px_flavor *f = plugin_ctx;
  if (f) f->host->free(f);
}

/* The plugin descriptor (plugin ABI of the header) and its exported entry point. */
ZORCH_PLUGIN_DEFINE("prefix", "1.1.0", "Example flavor: steps through a command prefix", px_init,
                    px_teardown)
