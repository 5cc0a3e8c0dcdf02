/* zorch plugin kit — the remote-flavor frame (see zremote.h for the
 * concurrency model: one lock per run, reference-counted attempts). */
#include "zremote.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- the run frame -------------------------------------------------------------------------- */

/* A malloc'd message of an optional format (NULL for none, or on OOM). */
static char *vmessage(const char *fmt, va_list ap) {
  char *msg = NULL;
  if (fmt && vasprintf(&msg, fmt, ap) < 0) msg = NULL;
  return msg;
}

static char *sub_get(const zorch_host *h, zorch_submission *sub, const char *key) {
  const char *v = sub ? h->submission_get(sub, key) : NULL;
  return v && *v ? strdup(v) : NULL;
}

int zr_run_init(zr_run *r, const zorch_host *h, zorch_submission *sub, const char *config_json,
                const zr_run_options *o) {
  memset(r, 0, sizeof *r);
  r->host = h;
  r->sub = sub;
  r->opts = *o;
  r->flavor = o->flavor ? o->flavor : "remote";
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->cond, NULL);
  if (!config_json && sub) config_json = h->submission_get(sub, "config");
  json_error_t je;
  r->config = json_loads(config_json && *config_json ? config_json : "{}", 0, &je);
  if (!json_is_object(r->config)) {
    zr_run_fini(r);
    return zkit_errorf(h, ZORCH_EINVALID, "the %s orchestrator's config is not a JSON object: %s", o->flavor,
                       je.text);
  }
  r->run_id = sub_get(h, sub, "run_id");
  r->run_name = sub_get(h, sub, "run_name");
  r->pipeline = sub_get(h, sub, "pipeline");
  r->deployment_path = sub_get(h, sub, "deployment_path");
  r->zorch_command = sub_get(h, sub, "zorch_command");
  r->store_path = sub_get(h, sub, "store_path");
  r->store_uri = sub_get(h, sub, "store_uri");
  if (!r->store_uri && r->store_path) r->store_uri = zkit_asprintf("file://%s", r->store_path);
  char *nc = sub_get(h, sub, "no_cache");
  r->no_cache = nc && !strcmp(nc, "1");
  free(nc);
  if (!r->run_id) r->run_id = strdup("");
  if (!r->run_name) r->run_name = strdup("");
  if (!r->pipeline) r->pipeline = strdup("");
  json_t *mp = o->max_parallel_key ? json_object_get(r->config, o->max_parallel_key) : NULL;
  if (json_is_integer(mp))
    snprintf(r->exec_opts, sizeof r->exec_opts, "{\"max_parallel\":%lld}", (long long)json_integer_value(mp));
  else
    snprintf(r->exec_opts, sizeof r->exec_opts, "{}");
  if (!r->run_id || !r->run_name || !r->pipeline || (r->store_path && !r->store_uri)) {
    zr_run_fini(r);
    return zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
  }
  return ZORCH_OK;
}

int zr_run_new(void **out, size_t size, const zorch_host *h, zorch_submission *sub, const char *config_json,
               const zr_run_options *o) {
  *out = NULL;
  zr_run *r = calloc(1, size < sizeof *r ? sizeof *r : size);
  if (!r) return zkit_errorf(h, ZORCH_ENOMEM, "out of memory");
  int rc = zr_run_init(r, h, sub, config_json, o);
  if (rc) free(r);
  else *out = r;
  return rc;
}

void zr_run_free(zr_run *r) {
  if (!r) return;
  zr_run_fini(r);
  free(r);
}

static void attempt_free(zr_attempt *a) {
  if (a->free_data) a->free_data(a->data);
  if (a->log_fd >= 0) close(a->log_fd);
  free(a->step);
  free(a->log_path);
  free(a->remote);
  free(a);
}

void zr_run_fini(zr_run *r) {
  if (!r->host) return;
  pthread_mutex_lock(&r->lock);
  for (zr_attempt *a = r->attempts; a; a = a->next) a->abort = 1;
  pthread_mutex_unlock(&r->lock);
  for (zr_attempt *a = r->attempts; a; a = a->next)
    if (a->has_thread) pthread_join(a->thread, NULL);
  for (zr_attempt *a = r->attempts, *n; a; a = n) {
    n = a->next;
    attempt_free(a);
  }
  json_decref(r->config);
  free(r->run_id);
  free(r->run_name);
  free(r->pipeline);
  free(r->deployment_path);
  free(r->zorch_command);
  free(r->store_path);
  free(r->store_uri);
  free(r->end_message);
  pthread_cond_destroy(&r->cond);
  pthread_mutex_destroy(&r->lock);
  memset(r, 0, sizeof *r);
}

static const zorch_step_launcher kit_launcher = {
    .version = ZORCH_STEP_LAUNCHER_VERSION,
    .launch = zr_op_launch,
    .stop = zr_op_stop,
};

int zr_run_start_remote(zr_run *r) {
  const zorch_host *h = r->host;
  if (h->version < 2 || !h->executor_start_remote)
    return zkit_errorf(h, ZORCH_EVERSION, "this libzorch is too old for the %s flavor (host table version %u, "
                       "it needs 2 or later)", r->flavor, h->version);
  if (!r->opts.launch) return zkit_errorf(h, ZORCH_EINVALID, "the %s flavor launches no steps", r->flavor);
  return h->executor_start_remote(&r->exec, r->sub, r->exec_opts, &kit_launcher, r);
}

static void deadline_of(struct timespec *ts, double seconds) {
  struct timeval tv;
  gettimeofday(&tv, NULL); /* the condition variable's clock */
  double t = (double)tv.tv_sec + (double)tv.tv_usec / 1e6 + seconds;
  ts->tv_sec = (time_t)t;
  ts->tv_nsec = (long)((t - (double)ts->tv_sec) * 1e9);
}

int zr_run_wait(zr_run *r, int timeout_ms) {
  if (r->exec) return r->host->executor_wait(r->exec, timeout_ms);
  struct timespec until;
  deadline_of(&until, timeout_ms < 0 ? 0 : timeout_ms / 1000.0);
  pthread_mutex_lock(&r->lock);
  while (!r->ended) {
    int rc = timeout_ms < 0 ? pthread_cond_wait(&r->cond, &r->lock)
                            : pthread_cond_timedwait(&r->cond, &r->lock, &until);
    if (rc == ETIMEDOUT) break;
  }
  bool report = r->ended && !r->reported;
  bool ended = r->ended;
  r->reported = r->reported || report;
  int status = r->end_status;
  char *msg = report ? zkit_strdup(r->end_message) : NULL;
  pthread_mutex_unlock(&r->lock);
  if (report) r->host->submission_set_status(r->sub, status, msg);
  free(msg);
  return ended ? ZORCH_OK : ZORCH_ETIMEOUT;
}

int zr_run_cancel(zr_run *r) {
  atomic_store(&r->cancelled, 1);
  return r->exec ? r->host->executor_cancel(r->exec) : ZORCH_OK;
}

void zr_run_release(zr_run *r) {
  if (r->exec) r->host->executor_release(r->exec);
  r->exec = NULL;
}

void zr_run_end(zr_run *r, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = vmessage(fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&r->lock);
  if (!r->ended) {
    r->ended = true;
    r->end_status = status;
    r->end_message = msg;
    msg = NULL;
    pthread_cond_broadcast(&r->cond);
  }
  pthread_mutex_unlock(&r->lock);
  free(msg);
}

bool zr_run_ended(zr_run *r) {
  pthread_mutex_lock(&r->lock);
  bool e = r->ended;
  pthread_mutex_unlock(&r->lock);
  return e;
}

static void vpending(zr_pending *p, bool restart, const char *fmt, va_list ap) {
  if (restart || !p->since) p->since = zkit_now();
  p->running = false;
  if (fmt) vsnprintf(p->why, sizeof p->why, fmt, ap);
}

void zr_run_pending(zr_run *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&r->lock);
  vpending(&r->pending, false, fmt, ap);
  pthread_mutex_unlock(&r->lock);
  va_end(ap);
}

void zr_run_running(zr_run *r) {
  pthread_mutex_lock(&r->lock);
  r->pending.running = true;
  pthread_mutex_unlock(&r->lock);
}

int zr_run_record(zr_run *r, json_t **out) {
  *out = NULL;
  const zorch_host *h = r->host;
  if (!r->sub) return zkit_errorf(h, ZORCH_EINVALID, "no submission: no run record to read");
  char *text = NULL;
  int rc;
  if (h->version >= 3 && h->submission_run_record) {
    rc = h->submission_run_record(&text, r->sub);
    if (rc) return zkit_errorf(h, rc, "cannot read the record of run %s", r->run_id);
  } else {
    return zkit_errorf(h, ZORCH_EVERSION, "this libzorch cannot hand the %s flavor the run's record (host "
                       "table version %u without submission_run_record)", r->flavor, h->version);
  }
  json_error_t je;
  *out = json_loads(text ? text : "", 0, &je);
  h->free(text);
  return *out ? ZORCH_OK : zkit_errorf(h, ZORCH_EINVALID, "the run's record is not JSON: %s", je.text);
}

static zdep_options settings_options(zr_run *r) {
  json_t *base = r->opts.settings_base_key ? json_object_get(r->config, r->opts.settings_base_key) : r->config;
  zdep_options o = {.flavor = r->flavor, .base = base, .default_image = zkit_jstr(r->config, "image")};
  return o;
}

int zr_settings(zdep_settings *out, zr_run *r, const zorch_step_launch *L) {
  zdep_options o = settings_options(r);
  char where[300];
  snprintf(where, sizeof where, "step '%s'", L->step ? L->step : "?");
  return zdep_settings_parse(out, r->host, L->settings_json, &o, where);
}

int zr_deployment(zdep **out, zr_run *r) {
  *out = NULL;
  zdep_options o = settings_options(r);
  const char *text = r->sub ? r->host->submission_get(r->sub, "deployment") : NULL;
  if (!text) return zkit_errorf(r->host, ZORCH_EINVALID, "the submission has no deployment");
  int rc = zdep_load(out, r->host, text, &o);
  return rc ? zkit_errorf(r->host, rc, "cannot read the run's deployment: %s", zkit_error_message()) : ZORCH_OK;
}

zr_store zr_launch_store(const zorch_step_launch *L) {
  static const char *const none[] = {NULL};
  zr_store s = {.path = L->store_path && *L->store_path ? L->store_path : NULL, .env = none};
  if (L->version >= 2) {
    s.uri = L->store_uri && *L->store_uri ? L->store_uri : NULL;
    if (L->store_env) s.env = L->store_env;
  }
  return s;
}

/* ---- the attempt table ---------------------------------------------------------------------- */

void zr_lock(zr_run *r) { pthread_mutex_lock(&r->lock); }
void zr_unlock(zr_run *r) { pthread_mutex_unlock(&r->lock); }

/* Take the finished attempts out of the table.  Lock held.  Those whose
 * thread still runs stay until it returned. */
static zr_attempt *unlink_finished(zr_run *r) {
  zr_attempt *out = NULL;
  for (zr_attempt **pp = &r->attempts; *pp;) {
    zr_attempt *a = *pp;
    if (a->done && (!a->has_thread || a->thread_exited)) {
      *pp = a->next;
      a->in_table = false;
      a->next = out;
      out = a;
    } else {
      pp = &a->next;
    }
  }
  return out;
}

void zr_reap(zr_run *r) {
  pthread_mutex_lock(&r->lock);
  zr_attempt *gone = unlink_finished(r);
  pthread_mutex_unlock(&r->lock);
  for (zr_attempt *a = gone, *n; a; a = n) {
    n = a->next;
    if (a->has_thread) pthread_join(a->thread, NULL);
    zr_attempt_unref(a); /* the table's reference */
  }
}

int zr_attempt_add(zr_attempt **out, zr_run *r, const zorch_step_launch *L, void *data,
                   void (*free_data)(void *)) {
  *out = NULL;
  zr_reap(r);
  zr_attempt *a = calloc(1, sizeof *a);
  if (!a) {
    if (free_data) free_data(data);
    return zkit_errorf(r->host, ZORCH_ENOMEM, "out of memory");
  }
  a->run = r;
  a->id = L->attempt_id;
  a->executor = L->executor;
  a->number = L->attempt;
  a->step = strdup(L->step ? L->step : "?");
  a->log_path = zkit_strdup(L->log_path);
  a->data = data;
  a->free_data = free_data;
  a->log_fd = -1;
  a->refs = 2; /* the table's and the caller's */
  a->pending.since = zkit_now();
  if (!a->step || (L->log_path && !a->log_path)) {
    attempt_free(a);
    return zkit_errorf(r->host, ZORCH_ENOMEM, "out of memory");
  }
  pthread_mutex_lock(&r->lock);
  a->in_table = true;
  a->next = r->attempts;
  r->attempts = a;
  pthread_mutex_unlock(&r->lock);
  *out = a;
  return ZORCH_OK;
}

zr_attempt *zr_attempt_find(zr_run *r, uint64_t id) {
  pthread_mutex_lock(&r->lock);
  zr_attempt *a = r->attempts;
  while (a && a->id != id) a = a->next;
  if (a) a->refs++;
  pthread_mutex_unlock(&r->lock);
  return a;
}

void zr_attempt_ref(zr_attempt *a) {
  pthread_mutex_lock(&a->run->lock);
  a->refs++;
  pthread_mutex_unlock(&a->run->lock);
}

void zr_attempt_unref(zr_attempt *a) {
  if (!a) return;
  pthread_mutex_lock(&a->run->lock);
  bool last = --a->refs == 0;
  pthread_mutex_unlock(&a->run->lock);
  if (last) attempt_free(a);
}

bool zr_finish(zr_attempt *a, int exit_code, unsigned flags, const char *fmt, ...) {
  zr_run *r = a->run;
  pthread_mutex_lock(&r->lock);
  bool mine = !a->done;
  a->done = true;
  pthread_mutex_unlock(&r->lock);
  if (!mine) return false;
  va_list ap;
  va_start(ap, fmt);
  char *msg = vmessage(fmt, ap);
  va_end(ap);
  if (r->opts.on_finish) r->opts.on_finish(a, exit_code, flags);
  r->host->executor_step_done(a->executor, a->id, exit_code, msg);
  free(msg);
  return true;
}

void zr_attempt_abandon(zr_attempt *a) {
  pthread_mutex_lock(&a->run->lock);
  a->done = true;
  pthread_mutex_unlock(&a->run->lock);
}

zr_attempt *zr_attempt_stop(zr_run *r, uint64_t id) {
  pthread_mutex_lock(&r->lock);
  zr_attempt *a = r->attempts;
  while (a && a->id != id) a = a->next;
  if (a && !a->done) {
    a->stopping = true;
    a->refs++;
  } else {
    a = NULL;
  }
  pthread_mutex_unlock(&r->lock);
  return a;
}

int zr_op_launch(void *run, const zorch_step_launch *L) {
  zr_run *r = run;
  zdep_settings set;
  int rc = zr_settings(&set, r, L);
  if (rc) return rc;
  if (!set.image) set.image = r->default_image;
  if (!set.image && r->opts.needs_image)
    rc = zkit_errorf(r->host, ZORCH_EINVALID, "step '%s' has no image: set the step's image setting or the "
                     "orchestrator's 'image' (an image holding %s, e.g. one made by `zorch image build`)", L->step,
                     L->argv && L->argv[0] ? L->argv[0] : "the step's program");
  else
    rc = r->opts.launch(r, L, &set);
  zdep_settings_free(&set);
  return rc;
}

void zr_op_stop(void *run, void *executor, uint64_t attempt_id) {
  zr_run *r = run;
  (void)executor; /* one executor per run */
  zr_attempt *a = zr_attempt_stop(r, attempt_id);
  if (!a) return;
  char *remote = zr_attempt_remote(a);
  if (r->opts.on_stop) r->opts.on_stop(a, remote);
  free(remote);
  zr_attempt_unref(a);
}

void zr_finish_all(zr_run *r, int exit_code, unsigned flags, const char *message) {
  for (;;) {
    pthread_mutex_lock(&r->lock);
    zr_attempt *a = r->attempts;
    while (a && a->done) a = a->next;
    if (a) a->refs++;
    pthread_mutex_unlock(&r->lock);
    if (!a) return;
    zr_finish(a, exit_code, flags, "%s", message);
    zr_attempt_unref(a);
  }
}

static void *attempt_thread(void *p) {
  zr_attempt *a = p;
  a->thread_main(a);
  zr_finish(a, 125, 0, "the flavor's attempt thread ended without a result");
  pthread_mutex_lock(&a->run->lock);
  a->thread_exited = true;
  pthread_mutex_unlock(&a->run->lock);
  zr_attempt_unref(a);
  return NULL;
}

int zr_attempt_thread(zr_attempt *a, void (*main)(zr_attempt *a)) {
  zr_run *r = a->run;
  a->thread_main = main;
  pthread_mutex_lock(&r->lock);
  a->refs++; /* the thread's */
  int rc = pthread_create(&a->thread, NULL, attempt_thread, a);
  if (rc == 0) a->has_thread = true;
  else a->refs--;
  pthread_mutex_unlock(&r->lock);
  return rc ? zkit_errorf(r->host, ZORCH_ERROR, "cannot start a thread for step '%s': %s", a->step, strerror(rc))
            : ZORCH_OK;
}

char *zr_attempt_remote(zr_attempt *a) {
  pthread_mutex_lock(&a->run->lock);
  char *s = zkit_strdup(a->remote);
  pthread_mutex_unlock(&a->run->lock);
  return s;
}

bool zr_attempt_stopping(zr_attempt *a) {
  pthread_mutex_lock(&a->run->lock);
  bool s = a->stopping;
  pthread_mutex_unlock(&a->run->lock);
  return s;
}

void zr_attempt_set_remote(zr_attempt *a, const char *remote) {
  char *s = zkit_strdup(remote);
  pthread_mutex_lock(&a->run->lock);
  if (s || !remote) {
    free(a->remote);
    a->remote = s;
  }
  pthread_mutex_unlock(&a->run->lock);
}

void zr_attempt_pending(zr_attempt *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&a->run->lock);
  vpending(&a->pending, false, fmt, ap);
  pthread_mutex_unlock(&a->run->lock);
  va_end(ap);
}

void zr_attempt_running(zr_attempt *a) {
  pthread_mutex_lock(&a->run->lock);
  a->pending.running = true;
  pthread_mutex_unlock(&a->run->lock);
}

void zr_log(zr_attempt *a, const void *data, size_t len) {
  const zorch_host *h = a->run->host;
  if (!len) return;
  if (h->version >= 3 && h->executor_step_log) {
    h->executor_step_log(a->executor, a->id, data, len); /* an ended attempt's bytes are dropped */
    return;
  }
  if (!a->log_path) return;
  pthread_mutex_lock(&a->run->lock);
  if (a->log_fd < 0) {
    a->log_fd = open(a->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (a->log_fd >= 0 && a->number > 1) dprintf(a->log_fd, "--- zorch: attempt %u ---\n", a->number);
  }
  int fd = a->log_fd;
  pthread_mutex_unlock(&a->run->lock);
  const char *d = data;
  while (fd >= 0 && len > 0) { /* O_APPEND: writers of one attempt do not interleave within a write */
    ssize_t w = write(fd, d, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break; /* a log that cannot be written does not fail the step */
    d += w;
    len -= (size_t)w;
  }
}

/* ---- the poller ------------------------------------------------------------------------------ */

struct zr_poller {
  zr_run *run;
  zr_poller_options o;
  pthread_t thread;
  volatile int stop;        /* also the abort flag of a round's stream */
  pthread_mutex_t lock;     /* with cond: wakes the poller's sleeps at stop */
  pthread_cond_t cond;
  bool cancel_handled;
};

/* Sleep up to `seconds`, waking early at stop or at cancel (checked every 0.2 s:
 * zr_run_cancel may run in a signal handler, which cannot signal a condition). */
static void poller_sleep(zr_poller *p, double seconds) {
  double end = zkit_now() + seconds;
  pthread_mutex_lock(&p->lock);
  while (!p->stop && !(atomic_load(&p->run->cancelled) && !p->cancel_handled)) {
    double left = end - zkit_now();
    if (left <= 0) break;
    struct timespec until;
    deadline_of(&until, left < 0.2 ? left : 0.2);
    pthread_cond_timedwait(&p->cond, &p->lock, &until);
  }
  pthread_mutex_unlock(&p->lock);
}

static void check_pending(zr_poller *p) {
  zr_run *r = p->run;
  double limit = p->o.pending_timeout_s, now = zkit_now();
  if (limit <= 0) return;
  pthread_mutex_lock(&r->lock);
  bool run_expired = !r->exec && !r->ended && r->pending.since > 0 && !r->pending.running &&
                     now - r->pending.since > limit;
  pthread_mutex_unlock(&r->lock);
  if (run_expired) {
    if (p->o.pending_expired) {
      p->o.pending_expired(r, NULL, p->o.ctx);
    } else {
      pthread_mutex_lock(&r->lock);
      char why[sizeof r->pending.why];
      snprintf(why, sizeof why, "%s", r->pending.why[0] ? r->pending.why : "no reason given");
      pthread_mutex_unlock(&r->lock);
      zr_run_end(r, ZORCH_STATUS_FAILED, "the run stayed pending for more than %g s: %s", limit, why);
    }
  }
  for (;;) { /* one expired attempt at a time: the callback may take a while */
    pthread_mutex_lock(&r->lock);
    zr_attempt *a = r->attempts;
    while (a && (a->done || a->stopping || a->pending.running || now - a->pending.since <= limit)) a = a->next;
    char why[sizeof a->pending.why];
    if (a) {
      a->refs++;
      snprintf(why, sizeof why, "%s", a->pending.why[0] ? a->pending.why : "no reason given");
    }
    pthread_mutex_unlock(&r->lock);
    if (!a) return;
    if (p->o.pending_expired)
      p->o.pending_expired(r, a, p->o.ctx);
    else
      zr_finish(a, 1, ZR_FINISH_DISCARD, "step '%s' stayed pending for more than %g s: %s", a->step, limit, why);
    /* still not running or finished: the callback decided to wait on */
    pthread_mutex_lock(&r->lock);
    if (!a->done && !a->pending.running) a->pending.since = zkit_now();
    pthread_mutex_unlock(&r->lock);
    zr_attempt_unref(a);
  }
}

static void *poller_main(void *arg) {
  zr_poller *p = arg;
  zr_run *r = p->run;
  double base = p->o.backoff_base_s > 0 ? p->o.backoff_base_s : 0.5;
  double cap = p->o.backoff_cap_s > 0 ? p->o.backoff_cap_s : 10;
  double lost = p->o.lost_after_s > 0 ? p->o.lost_after_s : 60;
  const char *what = p->o.what ? p->o.what : "the API";
  double last_ok = zkit_now();
  unsigned failures = 0;
  char last_error[1024] = "";
  while (!p->stop) {
    if (atomic_load(&r->cancelled) && !p->cancel_handled) {
      p->cancel_handled = true;
      if (p->o.on_cancel) p->o.on_cancel(r, p->o.ctx);
    }
    int rc = p->o.poll(r, p->o.ctx, &p->stop);
    if (p->stop) break;
    if (rc == ZR_DONE) break;
    if (rc == ZORCH_OK) {
      last_ok = zkit_now();
      failures = 0;
      check_pending(p);
      if (p->o.interval_s > 0) poller_sleep(p, p->o.interval_s);
      continue;
    }
    snprintf(last_error, sizeof last_error, "%s", zkit_error_message());
    double t = zkit_now();
    if (t - last_ok > lost) {
      char msg[1300];
      snprintf(msg, sizeof msg, "lost %s for %g s: %s", what, lost, last_error[0] ? last_error : "no answer");
      if (r->exec) zr_finish_all(r, 1, 0, msg);
      else zr_run_end(r, ZORCH_STATUS_FAILED, "%s", msg);
      last_ok = t; /* a new window for what comes next */
    }
    long ms = zh_backoff_ms((long)(base * 1000), (long)(cap * 1000), failures < 30 ? failures : 30);
    failures++;
    poller_sleep(p, (double)ms / 1000.0);
  }
  return NULL;
}

int zr_poller_start(zr_poller **out, zr_run *r, const zr_poller_options *o) {
  *out = NULL;
  zr_poller *p = calloc(1, sizeof *p);
  if (!p) return zkit_errorf(r->host, ZORCH_ENOMEM, "out of memory");
  p->run = r;
  p->o = *o;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->cond, NULL);
  int rc = pthread_create(&p->thread, NULL, poller_main, p);
  if (rc) {
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return zkit_errorf(r->host, ZORCH_ERROR, "cannot start the %s poller thread: %s", r->flavor, strerror(rc));
  }
  *out = p;
  return ZORCH_OK;
}

void zr_poller_stop(zr_poller *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  p->stop = 1;
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
  pthread_join(p->thread, NULL);
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

/* ---- the plugin ------------------------------------------------------------------------------ */

int zr_plugin_add(const zorch_host *h, zorch_registrar *reg, const zorch_flavor_desc *d) {
  if (h->version < 2)
    return zkit_errorf(h, ZORCH_EVERSION, "the %s flavor needs host table version 2 or later (this libzorch has "
                       "%u): upgrade zorch", d->name, h->version);
  int rc = h->add_flavor(reg, d, (void *)h);
  return rc == ZORCH_EEXISTS ? ZORCH_OK : rc; /* the host names who provides it already */
}

int zr_op_wait(void *run, int timeout_ms) { return zr_run_wait(run, timeout_ms); }
int zr_op_cancel(void *run) { return zr_run_cancel(run); }

/* ---- long-running operations -------------------------------------------------------------- */

int zr_lro_wait(const zorch_host *h, const zr_lro_options *o, int (*poll)(void *ctx), void *ctx) {
  double base = o->base_s > 0 ? o->base_s : 1, cap = o->cap_s > 0 ? o->cap_s : 30;
  double lost = o->lost_after_s > 0 ? o->lost_after_s : 60;
  const char *what = o->what ? o->what : "the operation";
  double start = zkit_now(), last_ok = start;
  char last_error[1024] = "";
  for (unsigned n = 0;; n++) {
    if (o->cancel && *o->cancel) return zkit_errorf(h, ZORCH_ECANCELLED, "cancelled while waiting for %s", what);
    int rc = poll(ctx);
    double t = zkit_now();
    if (rc == ZR_DONE) return ZORCH_OK;
    if (rc < 0) return zkit_errorf(h, rc, "%s: %s", what, zkit_error_message());
    if (rc == ZORCH_OK) {
      last_ok = t;
    } else {
      snprintf(last_error, sizeof last_error, "%s", zkit_error_message());
      if (t - last_ok > lost)
        return zkit_errorf(h, ZORCH_EIO, "lost the API while waiting for %s (no answer for %g s): %s", what, lost,
                           last_error[0] ? last_error : "no answer");
    }
    double wait = (double)zh_backoff_ms((long)(base * 1000), (long)(cap * 1000), n < 30 ? n : 30) / 1000.0;
    if (o->deadline_s > 0 && t + wait - start > o->deadline_s) {
      if (t - start >= o->deadline_s)
        return zkit_errorf(h, ZORCH_ETIMEOUT, "%s did not finish within %g s", what, o->deadline_s);
      wait = o->deadline_s - (t - start); /* one last poll at the deadline */
    }
    for (double slept = 0; slept < wait && !(o->cancel && *o->cancel); slept += 0.2)
      zkit_sleep(wait - slept < 0.2 ? wait - slept : 0.2);
  }
}
