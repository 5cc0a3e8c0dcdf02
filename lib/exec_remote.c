/* zorch — the executor's remote-step launcher: a flavor plugin launches each
 * attempt elsewhere (zorch_step_launcher) and reports its end through
 * zorch_host.executor_step_done; the step entrypoint it runs there writes
 * the step's record (see exec_launch.h). */
#include "exec_launch.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "ctx.h"
#include "store_int.h"

zorch__remote *zorch__remote_new(const zorch_step_launcher *ops, void *data, uint32_t n) {
  zorch__remote *rm = calloc(1, sizeof *rm);
  if (!rm) return NULL;
  rm->ops = ops;
  rm->data = data;
  rm->logs = zorch__big_calloc(n ? n : 1, sizeof *rm->logs);
  if (!rm->logs) {
    free(rm);
    return NULL;
  }
  rm->n_logs = n;
  for (uint32_t i = 0; i < n; i++) rm->logs[i].fd = -1;
  pthread_mutex_init(&rm->log_lock, NULL);
  return rm;
}

void zorch__remote_free(zorch__remote *rm) {
  if (!rm) return;
  if (rm->settings)
    for (size_t i = 0; rm->settings[i]; i++) free(rm->settings[i]);
  free(rm->settings);
  free(rm->flavor);
  if (rm->logs) {
    /* an attempt that handed bytes and then ended without executor_step_done
     * (its launch failed, the run was cancelled): its file is closed here */
    for (uint32_t i = 0; i < rm->n_logs; i++)
      if (rm->logs[i].fd >= 0) close(rm->logs[i].fd);
    zorch__big_free(rm->logs);
    pthread_mutex_destroy(&rm->log_lock);
  }
  free(rm);
}

/* Close step i's log file (its attempt ended).  Not under x->lock. */
static void remote_log_close(zorch__remote *rm, uint32_t i) {
  pthread_mutex_lock(&rm->log_lock);
  if (rm->logs[i].fd >= 0) close(rm->logs[i].fd);
  rm->logs[i].fd = -1;
  pthread_mutex_unlock(&rm->log_lock);
}

int zorch__exec_remote_log(zorch__exec *x, uint64_t attempt_id, const void *data, size_t len) {
  uint32_t i = (uint32_t)(attempt_id & 0xffffffffu), attempt = (uint32_t)(attempt_id >> 32);
  if (len && !data) return zorch__error_set(ZORCH_EINVALID, "executor_step_log: data is NULL");
  zorch__remote *rm = x->remote;
  if (!rm) /* an executor that launches nothing */
    return zorch__error_set(ZORCH_ENOTFOUND, "executor_step_log: no running attempt %u of step #%u",
                            attempt, i);
  /* the attempt is checked and its bytes written under the log lock: an
   * attempt's bytes land in the order given, one attempt's after another's */
  pthread_mutex_lock(&rm->log_lock);
  pthread_mutex_lock(&x->lock);
  bool live = i < x->n && x->xs && x->xs[i].started && x->xs[i].active &&
              x->recs[i].attempts == attempt;
  pthread_mutex_unlock(&x->lock);
  if (!live) {
    pthread_mutex_unlock(&rm->log_lock);
    return zorch__error_set(ZORCH_ENOTFOUND, "executor_step_log: no running attempt %u of step #%u",
                            attempt, i);
  }
  struct zorch__remote_log *lg = &rm->logs[i];
  int rc = ZORCH_OK;
  if (len && (lg->fd < 0 || lg->attempt != attempt)) {
    if (lg->fd >= 0) close(lg->fd); /* an earlier attempt's, not closed by its end */
    char *lp = step_log_path(x, i);
    lg->fd = lp ? open(lp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    if (lg->fd < 0) {
      rc = lp ? zorch__error_errno(ZORCH_EIO, errno, "executor_step_log: cannot open %s", lp)
              : zorch__error_set(ZORCH_EIO, "executor_step_log: the run keeps no logs");
    } else if (lg->attempt != attempt) { /* one header per attempt, before its first byte */
      lg->attempt = attempt;
      zorch__buf h = ZORCH__BUF_INIT;
      zorch__buf_printf(&h, "--- attempt %u (%s) ---\n", attempt, rm->flavor ? rm->flavor : "?");
      rc = h.data ? zorch__io_write_all(lg->fd, h.data, h.len, lp) : zorch__error_oom();
      if (rc) zorch__error_prefix("executor_step_log");
      zorch__buf_free(&h);
    }
    free(lp);
  }
  if (!rc && len && (rc = zorch__io_write_all(lg->fd, data, len, "its log")))
    zorch__error_prefix("executor_step_log: step '%s'", x->plan->steps[i].name);
  pthread_mutex_unlock(&rm->log_lock);
  return rc;
}

/* The entrypoint command of step i: the deployment's template of its kind
 * with {step} replaced.  Strings in *keep. */
static int remote_argv(zorch__exec *x, uint32_t i, zorch__strv *keep) {
  const zorch__pstep *s = &x->plan->steps[i];
  json_t *tmpl = json_object_get(json_object_get(x->plan->doc, "entrypoint"),
                                 s->kind == ZORCH__STEP_COMMAND ? "command" : "function");
  if (!json_is_array(tmpl) || !json_array_size(tmpl))
    return zorch__error_set(ZORCH_EINVALID, "the deployment has no %s entrypoint template",
                            s->kind == ZORCH__STEP_COMMAND ? "command" : "function");
  for (size_t a = 0; a < json_array_size(tmpl); a++) {
    const char *t = json_string_value(json_array_get(tmpl, a));
    if (!t) return zorch__error_set(ZORCH_EINVALID, "the deployment's entrypoint template is not an array of strings");
    zorch__buf b = ZORCH__BUF_INIT;
    for (const char *p = t; *p;) {
      const char *q = strstr(p, "{step}");
      if (!q) {
        zorch__buf_puts(&b, p);
        break;
      }
      zorch__buf_put(&b, p, (size_t)(q - p));
      zorch__buf_puts(&b, s->name);
      p = q + 6;
    }
    if (!b.data) zorch__buf_puts(&b, "");
    int rc = b.data ? zorch__strv_push(keep, b.data) : zorch__error_oom();
    zorch__buf_free(&b);
    if (rc) return rc;
  }
  return ZORCH_OK;
}

/* Launch one attempt through the plugin.  Not under the lock. */
static int remote_launch(zorch__exec *x, uint32_t i, uint32_t attempt, char **err) {
  const zorch__pstep *s = &x->plan->steps[i];
  zorch__strv argv = {0};
  int rc = remote_argv(x, i, &argv);
  /* the step entrypoint reads the records of earlier steps (cache hits are
   * only in the journal) and writes its own: stale ones must not count */
  if (!rc && x->journal) rc = zorch__journal_flush(x->journal);
  /* (on a store that is not local the flush just put this attempt's start
   * as the step's record object, over any earlier one) */
  if (!rc && zorch__store_is_local(x->store)) {
    char *rec = zorch__layout_step_record(x->plan->run_id, s->name);
    rc = rec ? zorch__store_remove(x->store, rec) : zorch__error_oom();
    free(rec);
  }
  char *lp = step_log_path(x, i);
  if (!rc && !argv.v) rc = zorch__error_oom(); /* argv.v is NULL-terminated */
  if (rc) {
    *err = zorch__asprintf("cannot launch the step: %s", zorch_error_last()->message);
    zorch__strv_clear(&argv);
    free(lp);
    return rc;
  }
  static const char *no_env[1] = {NULL};
  zorch_step_launch L = {
      .version = ZORCH_STEP_LAUNCH_VERSION,
      .executor = x,
      .attempt_id = ((uint64_t)attempt << 32) | i,
      .run_id = x->plan->run_id,
      .run_name = x->plan->run_name,
      .pipeline = x->plan->pipeline,
      .step = s->name,
      .kind = s->kind == ZORCH__STEP_COMMAND ? "command" : "function",
      .attempt = attempt,
      .argv = (const char *const *)argv.v,
      .env = s->env ? (const char *const *)s->env : no_env,
      .settings_json = x->remote->settings ? x->remote->settings[i] : "{}",
      .image = s->image,
      .log_path = lp,
      .store_path = zorch__store_root(x->store), /* a local store only */
      .store_uri = zorch__store_uri(x->store),
      .store_env = zorch__store_step_env(x->store),
  };
  zorch_error_clear();
  rc = x->remote->ops->launch(x->remote->data, &L);
  if (rc) {
    const char *m = zorch_error_last()->message;
    *err = zorch__asprintf("cannot launch the step: %s", m && *m ? m : zorch_strerror(rc));
    if (lp && *err) zorch__log_append(lp, "zorch: step failed: %s", *err);
  }
  zorch__strv_clear(&argv);
  free(lp);
  return rc;
}

/* Ask the plugin to stop a launched attempt (from the loop, unlocked). */
static void queue_stop(zorch__exec *x, uint32_t i) {
  xstep *xs = &x->xs[i];
  if (xs->stop_queued || xs->killing) return;
  xs->stop_queued = true;
  xs->killing = true;
  ring_push(&x->sq, i);
}

void zorch__exec_remote_stop(zorch__exec *x, uint32_t i, bool deadline) {
  xstep *xs = &x->xs[i];
  if (deadline) {
    if (!xs->stop_requested) xs->timed_out = true;
    x->xa[i].deadline_ns = 0;
  }
  if (xs->started) queue_stop(x, i);
}

void zorch__exec_remote_pump(zorch__exec *x) {
  while (x->rq.len) {
    uint32_t i = ring_pop(&x->rq);
    xstep *xs = &x->xs[i];
    if (xs->stop_requested) {
      zorch__exec_attempt_done(x, i, false, NULL, -1, NULL);
      continue;
    }
    const zorch__pstep *s = &x->plan->steps[i];
    uint32_t attempt = x->recs[i].attempts;
    xs->started = true;
    xs->stop_queued = false;
    x->xa[i].deadline_ns = s->timeout > 0 ? zorch__mono_ns() + (int64_t)(s->timeout * 1e9) : 0;
    pthread_mutex_unlock(&x->lock);
    char *err = NULL;
    int rc = remote_launch(x, i, attempt, &err);
    pthread_mutex_lock(&x->lock);
    if (rc) zorch__exec_attempt_done(x, i, false, err, -1, NULL);
  }
  while (x->sq.len) {
    uint32_t i = ring_pop(&x->sq);
    xstep *xs = &x->xs[i];
    if (!xs->stop_queued) continue;
    xs->stop_queued = false;
    if (!xs->started) continue; /* ended meanwhile */
    uint64_t id = ((uint64_t)x->recs[i].attempts << 32) | i;
    pthread_mutex_unlock(&x->lock);
    x->remote->ops->stop(x->remote->data, x, id);
    pthread_mutex_lock(&x->lock);
  }
}

/* The last lines of a remote step's log, without zorch's own "zorch: step
 * ..." lines (the entrypoint's failure lines: the step's error says it),
 * from after the last "--- attempt N (flavor) ---" header. */
static char *remote_log_tail(zorch__exec *x, uint32_t i) {
  enum { LINES = 10 };
  char *t = log_tail(x, i, 3 * LINES);
  if (!t) return NULL;
  char *keep[3 * LINES];
  int n = 0;
  for (char *save = NULL, *ln = strtok_r(t, "\n", &save); ln && n < 3 * LINES;
       ln = strtok_r(NULL, "\n", &save))
    if (!strncmp(ln, "--- attempt ", 12)) n = 0; /* the host's header: this attempt's lines follow */
    else if (strncmp(ln, "zorch: step ", 12) != 0) keep[n++] = ln;
  zorch__buf out = {0};
  for (int k = n > LINES ? n - LINES : 0; k < n; k++)
    zorch__buf_cat(&out, out.len ? "\n" : "", keep[k], (const char *)NULL);
  free(t);
  if (out.len) return zorch__buf_detach(&out);
  zorch__buf_free(&out);
  return NULL;
}

int zorch__exec_remote_done(zorch__exec *x, uint64_t attempt_id, int exit_code, const char *message) {
  uint32_t i = (uint32_t)(attempt_id & 0xffffffffu), attempt = (uint32_t)(attempt_id >> 32);
  pthread_mutex_lock(&x->lock);
  bool live = x->remote && i < x->n && x->xs && x->xs[i].started &&
              x->xs[i].active && x->recs[i].attempts == attempt;
  bool timed_out = live && x->xs[i].timed_out, stopped = live && x->xs[i].stop_requested;
  pthread_mutex_unlock(&x->lock);
  if (!live)
    return zorch__error_set(ZORCH_ENOTFOUND, "executor_step_done: no running attempt %u of step #%u",
                            attempt, i);
  remote_log_close(x->remote, i); /* the attempt's bytes are in the file */
  const zorch__pstep *s = &x->plan->steps[i];
  /* what the step entrypoint recorded: status, outputs, the command's exit */
  zorch__step_rec *tmp = zorch__step_recs_new(x->plan);
  char *rp = zorch__layout_step_record(x->plan->run_id, s->name);
  char *text = NULL;
  size_t tl = 0;
  bool have = tmp && rp && zorch__store_read_doc(x->store, rp, &text, &tl) == ZORCH_OK &&
              zorch__step_rec_apply(x->plan, tmp, text, tl) == ZORCH_OK;
  free(text);
  free(rp);
  zorch__step_rec *r = have ? &tmp[i] : NULL;
  bool ok = false;
  char *err = NULL;
  int code = r && r->exit_code >= 0 ? r->exit_code : exit_code;
  if (timed_out) {
    err = zorch__asprintf("timed out after %g s", s->timeout);
  } else if (stopped) {
    err = NULL;
  } else if (exit_code == 0) {
    if (!r || r->status != ZORCH_STATUS_COMPLETED) {
      err = zorch__asprintf("the step exited 0 but its entrypoint recorded %s (does the step "
                            "reach the artifact store %s where it runs?%s)",
                            r ? zorch_status_name(r->status) : "nothing", zorch__store_uri(x->store),
                            zorch__store_is_local(x->store) ? " it must be mounted at the same path" : "");
    } else {
      ok = true;
      for (uint32_t k = 0; k < s->n_outputs && ok; k++)
        if (!r->outputs[k].set || !zorch__store_has(x->store, r->outputs[k].digest)) {
          ok = false;
          err = zorch__asprintf("output '%s' is not in the artifact store after the step", s->outputs[k]);
        }
    }
  } else {
    char *why;
    if (r && r->status == ZORCH_STATUS_FAILED && r->error)
      why = message && *message ? zorch__asprintf("%s; %s", r->error, message) : zorch__strdup(r->error);
    else
      why = message && *message ? zorch__strdup(message)
                                : zorch__asprintf("the step process exited with status %d", exit_code);
    /* the last lines of what the step printed, whatever flavor ran it */
    char *tail = remote_log_tail(x, i);
    err = tail && why ? zorch__asprintf("%s; last lines of its log:\n%s", why, tail) : why;
    if (err != why) free(why);
    free(tail);
  }
  uint32_t n = x->n;
  pthread_mutex_lock(&x->lock);
  /* still the same attempt? (a cancel may not end it twice) */
  if (x->xs && x->xs[i].started && x->recs[i].attempts == attempt) {
    zorch__exec_attempt_done(x, i, ok, err, code, ok ? r->outputs : NULL);
    err = NULL;
  }
  /* the run may end with this step: x may be freed once the lock is released */
  pthread_mutex_unlock(&x->lock);
  free(err);
  zorch__step_recs_free(tmp, n);
  return ZORCH_OK;
}
