/* zorch — the `local_docker` orchestrator flavor: every step in its own
 * container on a local Docker Engine API (Docker, or Podman's compatible
 * service), independent steps in parallel.
 *
 * libzorch's DAG executor drives the run (host->executor_start_remote):
 * readiness, cache hits, retries, timeouts, failure modes, cancel and the
 * records stay in the host; this plugin launches each attempt as a container
 * that runs the step entrypoint (the host program for a function step,
 * `zorch step run` for a command step) with the artifact store mounted at
 * its own path.  One thread per running attempt: create, start, stream the
 * logs into the step's log, wait, inspect, remove, report.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zorch/plugin.h>

#include "image_builder.h"
#include "zdocker.h"
#include "zhttp.h"

typedef struct ld_ctx {
  const zorch_host *host;
} ld_ctx;

typedef struct ld_run ld_run;

typedef struct ld_attempt {
  ld_run *run;
  struct ld_attempt *next;
  pthread_t thread;
  bool joined;
  void *executor;
  uint64_t attempt_id;
  uint32_t attempt;
  char *step, *image, *log_path, *name;
  char *create_body;
  char *container_id;   /* under run->lock */
  bool stop;            /* under run->lock */
  bool finished;        /* under run->lock: the thread is returning */
  volatile int abort;   /* ends a log stream at once (release) */
  long memory;          /* the memory limit, for the OOM message */
  /* the last bytes of the log, for failure messages */
  int log_fd;
  /* log frame parser */
  unsigned char hdr[8];
  size_t hdr_len;
  size_t frame_left;
} ld_attempt;

struct ld_run {
  const zorch_host *host;
  zorch_submission *sub;
  zd_engine eng;
  void *exec;
  pthread_mutex_t lock;
  ld_attempt *attempts;
  json_t *config;
  char *run_id, *run_name, *pipeline, *store_path;
  char *default_image;  /* built from the host program when a step names none */
  char user[64];
};

static const char config_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"docker_host\":{\"type\":\"string\",\"description\":\"the engine's socket as DOCKER_HOST spells it "
    "(unix:///path or tcp://host:port); default: $DOCKER_HOST, else unix:///var/run/docker.sock\"},"
    "\"image\":{\"type\":\"string\",\"description\":\"image for steps whose settings name none; default: "
    "one built from the host program (zorch image build)\"},"
    "\"image_add\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":\"more "
    "programs (with their libraries), files or directories (recursively) for the image built from the "
    "host program, e.g. the tools command steps run; bare names are looked up in PATH\"},"
    "\"max_parallel\":{\"type\":\"integer\",\"minimum\":1,\"description\":\"how many step containers may "
    "run at once (default: the number of CPUs)\"},"
    "\"network\":{\"type\":\"string\",\"description\":\"network mode or network name (HostConfig.NetworkMode)\"},"
    "\"user\":{\"type\":\"string\",\"description\":\"user[:group] in the container (default: the calling "
    "process's uid:gid, so artifacts stay yours)\"},"
    "\"shm_size\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"size of /dev/shm in bytes\"},"
    "\"mounts\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":\"extra bind mounts "
    "SRC:DST[:ro]\"},"
    "\"environment\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},\"description\":"
    "\"extra environment of every step\"},"
    "\"run_args\":{\"type\":\"object\",\"description\":\"free-form container create fields merged into the "
    "request (HostConfig merged key by key), e.g. {\\\"HostConfig\\\":{\\\"CapAdd\\\":[\\\"SYS_PTRACE\\\"]}}\"}"
    "},\"additionalProperties\":false}";

/* keys a step's settings.flavor.local_docker may set */
static const char *const step_keys[] = {"image", "network", "user", "shm_size", "mounts",
                                        "environment", "run_args", "image_add", NULL};

/* ---- small helpers ---------------------------------------------------------------- */

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

static int fail(const zorch_host *h, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(const zorch_host *h, int code, const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  h->error_set(h, code, msg);
  return code;
}

/* A step's value for a key: its flavor settings, then the component config. */
static json_t *setting(const ld_run *run, json_t *step_flavor, const char *key) {
  json_t *v = json_object_get(step_flavor, key);
  return v ? v : json_object_get(run->config, key);
}

static json_t *flavor_settings(json_t *settings) {
  return json_object_get(json_object_get(settings, "flavor"), "local_docker");
}

/* Check one step's settings.flavor.local_docker; NULL when fine, else a message. */
static int check_step_settings(const zorch_host *h, const char *step, json_t *fs) {
  if (!fs) return ZORCH_OK;
  if (!json_is_object(fs))
    return fail(h, ZORCH_EINVALID, "step '%s': settings for flavor local_docker must be a JSON object", step);
  const char *k;
  json_t *v;
  json_object_foreach(fs, k, v) {
    bool known = false;
    for (size_t i = 0; step_keys[i]; i++) known = known || !strcmp(step_keys[i], k);
    if (!known)
      return fail(h, ZORCH_EINVALID,
                  "step '%s': unknown local_docker setting '%s' (known: image, network, user, shm_size, "
                  "mounts, environment, run_args, image_add)",
                  step, k);
    bool ok = true;
    if (!strcmp(k, "image") || !strcmp(k, "network") || !strcmp(k, "user")) ok = json_is_string(v);
    else if (!strcmp(k, "shm_size")) ok = json_is_integer(v) && json_integer_value(v) >= 0;
    else if (!strcmp(k, "mounts") || !strcmp(k, "image_add")) {
      ok = json_is_array(v);
      for (size_t i = 0; ok && i < json_array_size(v); i++) ok = json_is_string(json_array_get(v, i));
    } else if (!strcmp(k, "environment")) {
      const char *ek;
      json_t *ev;
      ok = json_is_object(v);
      json_object_foreach(v, ek, ev) ok = ok && json_is_string(ev);
    } else if (!strcmp(k, "run_args")) ok = json_is_object(v);
    if (!ok)
      return fail(h, ZORCH_EINVALID, "step '%s': local_docker setting '%s' has the wrong type (see `zorch "
                  "orchestrator flavor describe local_docker`)", step, k);
  }
  return ZORCH_OK;
}

/* ---- the request that creates a step's container --------------------------------------------- */

static json_t *create_body(ld_run *run, const zorch_step_launch *L, const char *image, long *memory) {
  json_t *settings = json_loads(L->settings_json ? L->settings_json : "{}", 0, NULL);
  json_t *fs = flavor_settings(settings);
  json_t *body = json_object();
  json_object_set_new(body, "Image", json_string(image));
  json_t *ep = json_array(), *cmd = json_array();
  for (size_t i = 0; L->argv[i]; i++) json_array_append_new(i ? cmd : ep, json_string(L->argv[i]));
  json_object_set_new(body, "Entrypoint", ep);
  json_object_set_new(body, "Cmd", cmd);
  json_t *env = json_array();
  for (size_t i = 0; L->env && L->env[i]; i++) json_array_append_new(env, json_string(L->env[i]));
  const char *ek;
  json_t *ev;
  json_object_foreach(json_object_get(run->config, "environment"), ek, ev) {
    char kv[8192];
    snprintf(kv, sizeof kv, "%s=%s", ek, json_string_value(ev));
    json_array_append_new(env, json_string(kv));
  }
  json_object_foreach(json_object_get(fs, "environment"), ek, ev) {
    char kv[8192];
    snprintf(kv, sizeof kv, "%s=%s", ek, json_string_value(ev));
    json_array_append_new(env, json_string(kv));
  }
  char kv[512];
  snprintf(kv, sizeof kv, "ZORCH_DOCKER_RUN_ID=%s", run->run_id);
  json_array_append_new(env, json_string(kv));
  json_object_set_new(body, "Env", env);
  json_t *user = setting(run, fs, "user");
  json_object_set_new(body, "User", json_string(json_is_string(user) ? json_string_value(user) : run->user));
  char att[16];
  snprintf(att, sizeof att, "%u", L->attempt);
  json_object_set_new(body, "Labels",
                      json_pack("{s:s,s:s,s:s,s:s,s:s}", "zorch.run_id", run->run_id, "zorch.run_name",
                                run->run_name ? run->run_name : "", "zorch.pipeline", run->pipeline,
                                "zorch.step", L->step, "zorch.attempt", att));
  json_t *hc = json_object();
  json_t *binds = json_array();
  char bind[8192];
  snprintf(bind, sizeof bind, "%s:%s:rw", run->store_path, run->store_path);
  json_array_append_new(binds, json_string(bind));
  json_t *mounts = setting(run, fs, "mounts");
  for (size_t i = 0; i < json_array_size(mounts); i++)
    json_array_append(binds, json_array_get(mounts, i));
  json_object_set_new(hc, "Binds", binds);
  json_t *net = setting(run, fs, "network");
  if (json_is_string(net)) json_object_set(hc, "NetworkMode", net);
  json_t *shm = setting(run, fs, "shm_size");
  if (json_is_integer(shm) && json_integer_value(shm) > 0) json_object_set(hc, "ShmSize", shm);
  json_t *res = json_object_get(settings, "resources");
  json_t *mem = json_object_get(res, "memory");
  *memory = 0;
  if (json_is_integer(mem) && json_integer_value(mem) > 0) {
    *memory = (long)json_integer_value(mem);
    json_object_set(hc, "Memory", mem);
    json_object_set(hc, "MemorySwap", mem); /* no swap beyond the limit: OOM is OOM */
  }
  double cpu = json_number_value(json_object_get(res, "cpu"));
  if (cpu > 0) json_object_set_new(hc, "NanoCpus", json_integer((json_int_t)(cpu * 1e9)));
  json_int_t gpu = json_integer_value(json_object_get(res, "gpu"));
  if (gpu > 0) {
    json_t *dr = json_pack("{s:s,s:I,s:[[s]]}", "Driver", "", "Count", gpu, "Capabilities", "gpu");
    const char *gt = json_string_value(json_object_get(res, "gpu_type"));
    if (gt) json_object_set_new(dr, "Options", json_pack("{s:s}", "gpu_type", gt));
    json_object_set_new(hc, "DeviceRequests", json_pack("[o]", dr));
  }
  /* run_args: the component's, then the step's, merged over what zorch set */
  json_t *ra[2] = {json_object_get(run->config, "run_args"), json_object_get(fs, "run_args")};
  for (int r = 0; r < 2; r++) {
    const char *k;
    json_t *v;
    json_object_foreach(ra[r], k, v) {
      if (!strcmp(k, "HostConfig") && json_is_object(v)) json_object_update(hc, v);
      else json_object_set(body, k, v);
    }
  }
  json_object_set_new(body, "HostConfig", hc);
  json_decref(settings);
  return body;
}

static const char *step_image(ld_run *run, const zorch_step_launch *L, json_t *fs) {
  const char *img = json_string_value(json_object_get(fs, "image"));
  if (!img) img = L->image;
  if (!img) img = json_string_value(json_object_get(run->config, "image"));
  if (!img) img = run->default_image;
  return img;
}

/* ---- one attempt's thread ---------------------------------------------------------------- */

static void log_write(ld_attempt *a, const char *d, size_t n) {
  if (a->log_fd < 0 && a->log_path) {
    a->log_fd = open(a->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (a->log_fd >= 0 && a->attempt > 1) dprintf(a->log_fd, "--- zorch: attempt %u ---\n", a->attempt);
  }
  while (a->log_fd >= 0 && n > 0) {
    ssize_t w = write(a->log_fd, d, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break; /* a log that cannot be written does not fail the step */
    d += w;
    n -= (size_t)w;
  }
}

/* The logs endpoint of a container without a TTY multiplexes stdout and
 * stderr in frames: 8-byte header (stream, 0, 0, 0, big-endian length). */
static int on_log_chunk(const char *data, size_t n, void *p) {
  ld_attempt *a = p;
  while (n > 0) {
    if (a->frame_left == 0) {
      size_t take = 8 - a->hdr_len < n ? 8 - a->hdr_len : n;
      memcpy(a->hdr + a->hdr_len, data, take);
      a->hdr_len += take;
      data += take;
      n -= take;
      if (a->hdr_len < 8) break;
      a->hdr_len = 0;
      if (a->hdr[0] > 2 || a->hdr[1] || a->hdr[2] || a->hdr[3]) {
        /* not a frame: a TTY stream (run_args Tty: true) is raw */
        log_write(a, (const char *)a->hdr, 8);
        continue;
      }
      a->frame_left = (size_t)a->hdr[4] << 24 | (size_t)a->hdr[5] << 16 | (size_t)a->hdr[6] << 8 | a->hdr[7];
      continue;
    }
    size_t take = a->frame_left < n ? a->frame_left : n;
    log_write(a, data, take);
    data += take;
    n -= take;
    a->frame_left -= take;
  }
  return 0;
}


static void remove_container(ld_run *run, const char *id) {
  char *p = zd_path(&run->eng, "/containers/%s?force=1&v=1", id);
  zh_error e = {0};
  zh_request rq = {.method = "DELETE", .path = p};
  if (p && zh_do(run->eng.http, &rq, NULL, &e) != ZH_OK && e.status != 404) {
    char msg[1200];
    snprintf(msg, sizeof msg, "cannot remove container %.12s: %s", id, e.message);
    run->host->log(run->host, 2, msg);
  }
  zh_error_clear(&e);
  free(p);
}

static void kill_container(ld_run *run, const char *id) {
  char *p = zd_path(&run->eng, "/containers/%s/kill?signal=SIGKILL", id);
  zh_error e = {0};
  zh_request rq = {.method = "POST", .path = p, .flags = ZH_IDEMPOTENT};
  if (p) zh_do(run->eng.http, &rq, NULL, &e); /* 409: not running any more */
  zh_error_clear(&e);
  free(p);
}

static void *attempt_main(void *arg) {
  ld_attempt *a = arg;
  ld_run *run = a->run;
  zh_client *http = run->eng.http;
  zh_error e = {0};
  int code = -1;
  char *msg = NULL;
  char buf[2048];
  json_t *created = NULL;
  char *esc = zh_escape(a->name);
  char *p = esc ? zd_path(&run->eng, "/containers/create?name=%s", esc) : NULL;
  free(esc);
  zh_request rq = {.method = "POST", .path = p, .content_type = "application/json",
                   .body = a->create_body, .body_len = strlen(a->create_body)};
  zh_response resp = {0};
  int rc = p ? zh_do(http, &rq, &resp, &e) : ZH_ENOMEM;
  free(p);
  if (rc == ZH_OK) created = json_loadb(resp.body, resp.len, 0, NULL);
  zh_response_free(&resp);
  const char *id = json_string_value(json_object_get(created, "Id"));
  if (!id) {
    if (rc == ZH_EHTTP && e.status == 404)
      snprintf(buf, sizeof buf,
               "image '%s' is not in the Docker engine at %s: build it with `zorch image build %s` or "
               "pull it (`docker pull %s`) (%s)",
               a->image, run->eng.where, a->image, a->image, e.api_message);
    else
      snprintf(buf, sizeof buf, "cannot create the step's container: %s", rc == ZH_OK ? "no Id in the answer" : e.message);
    msg = strdup(buf);
    goto report;
  }
  pthread_mutex_lock(&run->lock);
  a->container_id = strdup(id);
  bool stop = a->stop;
  pthread_mutex_unlock(&run->lock);
  if (stop) goto remove;
  p = zd_path(&run->eng, "/containers/%s/start", id);
  zh_request st = {.method = "POST", .path = p};
  rc = p ? zh_do(http, &st, NULL, &e) : ZH_ENOMEM;
  free(p);
  if (rc != ZH_OK) {
    bool no_entry = strstr(e.message, "no such file or directory") && strstr(e.message, "exec");
    snprintf(buf, sizeof buf, "cannot start the step's container %.12s: %s%s%s%s", id, e.message,
             no_entry ? "; the image '" : "", no_entry ? a->image : "",
             no_entry ? "' lacks the step's entrypoint: build it with `zorch image build` (it adds "
                        "the program and the zorch CLI at their own paths)"
                      : "");
    msg = strdup(buf);
    goto remove;
  }
  pthread_mutex_lock(&run->lock);
  stop = a->stop;
  pthread_mutex_unlock(&run->lock);
  if (stop) kill_container(run, id); /* stop() came while it started */
  /* the logs until the container ends */
  p = zd_path(&run->eng, "/containers/%s/logs?follow=1&stdout=1&stderr=1", id);
  zh_request lg = {.method = "GET", .path = p, .chunk_cb = on_log_chunk, .chunk_payload = a,
                   .abort_flag = &a->abort, .flags = ZH_NO_RETRY};
  rc = p ? zh_do(http, &lg, NULL, &e) : ZH_ENOMEM;
  free(p);
  if (rc != ZH_OK && rc != ZH_STOPPED) {
    snprintf(buf, sizeof buf, "zorch: cannot follow the container's log: %s\n", e.message);
    log_write(a, buf, strlen(buf));
  }
  p = zd_path(&run->eng, "/containers/%s/wait", id);
  json_t *w = NULL;
  rc = p ? zh_json(http, "POST", p, NULL, &w, &e) : ZH_ENOMEM;
  free(p);
  if (rc == ZH_OK) code = (int)json_integer_value(json_object_get(w, "StatusCode"));
  json_decref(w);
  /* the exit code and the OOM flag from the container's state */
  p = zd_path(&run->eng, "/containers/%s/json", id);
  json_t *ins = NULL;
  bool oom = false;
  if (p && zh_json(http, "GET", p, NULL, &ins, &e) == ZH_OK) {
    json_t *state = json_object_get(ins, "State");
    oom = json_is_true(json_object_get(state, "OOMKilled"));
    json_t *ec = json_object_get(state, "ExitCode");
    if (json_is_integer(ec)) code = (int)json_integer_value(ec);
  }
  free(p);
  json_decref(ins);
  if (code < 0) {
    snprintf(buf, sizeof buf, "cannot learn how the step's container %.12s ended: %s", id, e.message);
    msg = strdup(buf);
  } else if (code != 0) {
    char what[1024];
    if (code == 137 && (oom || a->memory > 0))
      snprintf(what, sizeof what,
               "the step's container was killed for using too much memory (exit 137%s; its limit is "
               "%ld MiB from the step's resources.memory: raise it)",
               oom ? ", OOMKilled" : "", a->memory >> 20);
    else if (code == 137)
      snprintf(what, sizeof what,
               "the step's container was killed (exit 137: SIGKILL, often the kernel's out-of-memory "
               "killer; give the step a memory setting or more memory)");
    else
      snprintf(what, sizeof what, "the step's container exited with status %d", code);
    msg = strdup(what); /* the executor adds the last lines of the step's log */
  }
remove:
  remove_container(run, id);
report:
  zh_error_clear(&e);
  json_decref(created);
  if (a->log_fd >= 0) {
    close(a->log_fd);
    a->log_fd = -1;
  }
  if (code < 0 && !msg) msg = strdup("the step's container did not run");
  run->host->executor_step_done(a->executor, a->attempt_id, code < 0 ? 125 : code, msg);
  free(msg);
  /* run_free joins every thread before it destroys the lock */
  pthread_mutex_lock(&run->lock);
  a->finished = true;
  pthread_mutex_unlock(&run->lock);
  return NULL;
}

static void attempt_free(ld_attempt *a) {
  free(a->step), free(a->image), free(a->log_path), free(a->name), free(a->create_body);
  free(a->container_id);
  free(a);
}

/* Join and free the attempts whose threads are done, so that a long run
 * holds threads only for its running steps. */
static void reap(ld_run *run) {
  ld_attempt *done = NULL;
  pthread_mutex_lock(&run->lock);
  for (ld_attempt **pp = &run->attempts; *pp;) {
    ld_attempt *a = *pp;
    if (a->finished) {
      *pp = a->next;
      a->next = done;
      done = a;
    } else {
      pp = &a->next;
    }
  }
  pthread_mutex_unlock(&run->lock);
  for (ld_attempt *a = done, *n; a; a = n) {
    n = a->next;
    pthread_join(a->thread, NULL);
    attempt_free(a);
  }
}

/* ---- the launcher the host calls --------------------------------------------------------- */

static int ld_launch(void *data, const zorch_step_launch *L) {
  ld_run *run = data;
  const zorch_host *h = run->host;
  reap(run);
  json_t *settings = json_loads(L->settings_json ? L->settings_json : "{}", 0, NULL);
  const char *image = step_image(run, L, flavor_settings(settings));
  if (!image) {
    json_decref(settings);
    return fail(h, ZORCH_EINVALID, "step '%s' has no image (set one in its settings or in the orchestrator config)", L->step);
  }
  ld_attempt *a = calloc(1, sizeof *a);
  if (!a) {
    json_decref(settings);
    return fail(h, ZORCH_ENOMEM, "out of memory");
  }
  a->run = run;
  a->executor = L->executor;
  a->attempt_id = L->attempt_id;
  a->attempt = L->attempt;
  a->log_fd = -1;
  a->step = xstrdup(L->step);
  a->image = xstrdup(image);
  a->log_path = xstrdup(L->log_path);
  json_decref(settings);
  char name[256];
  snprintf(name, sizeof name, "zorch-%.12s-%s-%u", run->run_id, L->step, L->attempt);
  a->name = strdup(name);
  json_t *body = create_body(run, L, image, &a->memory);
  a->create_body = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!a->step || !a->image || !a->name || !a->create_body) {
    attempt_free(a);
    return fail(h, ZORCH_ENOMEM, "out of memory");
  }
  { /* ZORCH_LOG_LEVEL=debug shows what the engine is asked for */
    size_t ml = strlen(a->create_body) + strlen(a->name) + 64;
    char *m = malloc(ml);
    if (m) {
      snprintf(m, ml, "POST /containers/create?name=%s %s", a->name, a->create_body);
      h->log(h, 4, m);
      free(m);
    }
  }
  pthread_mutex_lock(&run->lock);
  a->next = run->attempts;
  run->attempts = a;
  int prc = pthread_create(&a->thread, NULL, attempt_main, a);
  if (prc != 0) {
    run->attempts = a->next;
    pthread_mutex_unlock(&run->lock);
    attempt_free(a);
    return fail(h, ZORCH_ERROR, "cannot start a thread for the step: %s", strerror(prc));
  }
  pthread_mutex_unlock(&run->lock);
  return ZORCH_OK;
}

static void ld_stop(void *data, void *executor, uint64_t attempt_id) {
  ld_run *run = data;
  char *id = NULL;
  pthread_mutex_lock(&run->lock);
  for (ld_attempt *a = run->attempts; a; a = a->next)
    if (a->executor == executor && a->attempt_id == attempt_id) {
      a->stop = true;
      id = xstrdup(a->container_id);
    }
  pthread_mutex_unlock(&run->lock);
  if (id) kill_container(run, id);
  free(id);
}

static const zorch_step_launcher launcher = {
    .version = ZORCH_STEP_LAUNCHER_VERSION,
    .launch = ld_launch,
    .stop = ld_stop,
};

/* ---- the default image: image_builder.c ------------------------------------------------ */

static int ensure_default_image(ld_run *run, json_t *dep) {
  return ldib_default_image(&run->default_image, run->host, &run->eng, run->pipeline, dep,
                            run->config, run->host->submission_get(run->sub, "zorch_command"));
}

/* ---- the flavor's operations ------------------------------------------------------------- */

static void run_free(ld_run *run) {
  if (!run) return;
  /* every attempt thread has reported by now (the executor waited for them) */
  for (ld_attempt *a = run->attempts, *n; a; a = n) {
    n = a->next;
    a->abort = 1;
    pthread_join(a->thread, NULL);
    attempt_free(a);
  }
  json_decref(run->config);
  zd_close(&run->eng);
  pthread_mutex_destroy(&run->lock);
  free(run->run_id), free(run->run_name), free(run->pipeline), free(run->store_path);
  free(run->default_image);
  run->host->free(run);
}

/* Remove whatever container of this run is still there (a thread that could
 * not remove its own, a crash of an earlier process). */
static void sweep(ld_run *run) {
  char filt[512];
  snprintf(filt, sizeof filt, "{\"label\":[\"zorch.run_id=%s\"]}", run->run_id);
  char *ef = zh_escape(filt);
  char *p = ef ? zd_path(&run->eng, "/containers/json?all=1&filters=%s", ef) : NULL;
  free(ef);
  json_t *list = NULL;
  zh_error e = {0};
  if (p && zh_json(run->eng.http, "GET", p, NULL, &list, &e) == ZH_OK)
    for (size_t i = 0; i < json_array_size(list); i++) {
      const char *id = json_string_value(json_object_get(json_array_get(list, i), "Id"));
      if (id) remove_container(run, id);
    }
  json_decref(list);
  zh_error_clear(&e);
  free(p);
}

static int ld_submit(void **out_run, void *payload, zorch_submission *sub) {
  const zorch_host *h = ((ld_ctx *)payload)->host;
  *out_run = NULL;
  if (h->version < 2 || !h->executor_start_remote)
    return fail(h, ZORCH_EVERSION, "this libzorch is too old for local_docker (needs host table version 2)");
  ld_run *run = h->alloc(sizeof *run);
  if (!run) return fail(h, ZORCH_ENOMEM, "out of memory");
  memset(run, 0, sizeof *run);
  run->host = h;
  run->sub = sub;
  pthread_mutex_init(&run->lock, NULL);
  const char *cfg = h->submission_get(sub, "config");
  run->config = json_loads(cfg ? cfg : "{}", 0, NULL);
  if (!run->config) run->config = json_object();
  run->run_id = xstrdup(h->submission_get(sub, "run_id"));
  run->run_name = xstrdup(h->submission_get(sub, "run_name"));
  run->pipeline = xstrdup(h->submission_get(sub, "pipeline"));
  run->store_path = xstrdup(h->submission_get(sub, "store_path"));
  snprintf(run->user, sizeof run->user, "%u:%u", (unsigned)getuid(), (unsigned)getgid());
  int rc = ZORCH_OK;
  json_t *dep = NULL;
  if (!run->run_id || !run->pipeline || !run->store_path) {
    rc = fail(h, ZORCH_EINVALID, "the submission lacks its run id, pipeline or artifact store path");
    goto fail;
  }
  char err[2048];
  if (zd_connect(&run->eng, json_string_value(json_object_get(run->config, "docker_host")), err, sizeof err)) {
    rc = fail(h, ZORCH_EIO, "%s", err);
    goto fail;
  }
  dep = json_loads(h->submission_get(sub, "deployment") ?: "", 0, NULL);
  if (!dep) {
    rc = fail(h, ZORCH_EINVALID, "cannot read the run's deployment");
    goto fail;
  }
  /* settings first: a typo fails the run before any container starts */
  json_t *steps = json_object_get(dep, "steps");
  json_t *dflt = json_object_get(json_object_get(dep, "defaults"), "settings");
  if ((rc = check_step_settings(h, "(pipeline defaults)", flavor_settings(dflt)))) goto fail;
  bool need_default = false;
  const char *cfg_image = json_string_value(json_object_get(run->config, "image"));
  for (size_t i = 0; i < json_array_size(steps); i++) {
    json_t *s = json_array_get(steps, i);
    json_t *set = json_object_get(s, "settings");
    if (!set) set = dflt;
    const char *sn = json_string_value(json_object_get(s, "name"));
    json_t *fs = flavor_settings(set);
    if ((rc = check_step_settings(h, sn ? sn : "?", fs))) goto fail;
    const char *img = json_string_value(json_object_get(fs, "image"));
    if (!img) img = json_string_value(json_object_get(set, "image"));
    if (!img) img = cfg_image;
    if (!img) {
      need_default = true;
      continue;
    }
    zh_error e = {0};
    int have = zd_image_exists(&run->eng, img, &e);
    if (have <= 0) {
      rc = have == 0 ? fail(h, ZORCH_ENOTFOUND,
                            "image '%s' of step '%s' is not in the Docker engine at %s: build it with "
                            "`zorch image build %s` or pull it (`docker pull %s`)",
                            img, sn ? sn : "?", run->eng.where, img, img)
                     : fail(h, ZORCH_EIO, "cannot look up image '%s': %s", img, e.message);
      zh_error_clear(&e);
      goto fail;
    }
    zh_error_clear(&e);
  }
  if (need_default && (rc = ensure_default_image(run, dep))) goto fail;
  json_decref(dep);
  dep = NULL;
  h->submission_set_metadata(sub, "orchestrator_run_id", run->run_id);
  char url[600];
  snprintf(url, sizeof url, "%s", run->eng.where);
  h->submission_set_metadata(sub, "orchestrator_url", url);
  h->submission_set_metadata(sub, "docker_engine", run->eng.engine);
  json_t *mp = json_object_get(run->config, "max_parallel");
  char opts[64] = "{}";
  if (json_is_integer(mp)) snprintf(opts, sizeof opts, "{\"max_parallel\":%lld}", (long long)json_integer_value(mp));
  rc = h->executor_start_remote(&run->exec, sub, opts, &launcher, run);
  if (rc) goto fail;
  *out_run = run;
  return ZORCH_OK;
fail:
  json_decref(dep);
  run_free(run);
  return rc;
}

static int ld_wait(void *r, int timeout_ms) {
  ld_run *run = r;
  return run->host->executor_wait(run->exec, timeout_ms);
}

static int ld_cancel(void *r) {
  ld_run *run = r;
  return run->host->executor_cancel(run->exec); /* async-signal-safe */
}

static void ld_release(void *r) {
  ld_run *run = r;
  if (!run) return;
  run->host->executor_release(run->exec); /* waits for the end */
  sweep(run);
  run_free(run);
}

static int ld_check_config(void *payload, const char *config_json) {
  const zorch_host *h = ((ld_ctx *)payload)->host;
  json_t *c = json_loads(config_json, 0, NULL);
  int rc = ZORCH_OK;
  const char *dh = json_string_value(json_object_get(c, "docker_host"));
  if (dh && strncmp(dh, "unix://", 7) && strncmp(dh, "tcp://", 6))
    rc = fail(h, ZORCH_EINVALID, "docker_host '%s' must start with unix:// or tcp://", dh);
  json_t *m = json_object_get(c, "mounts");
  for (size_t i = 0; !rc && i < json_array_size(m); i++) {
    const char *s = json_string_value(json_array_get(m, i));
    const char *colon = s ? strchr(s, ':') : NULL;
    if (!colon || colon == s || colon[1] != '/')
      rc = fail(h, ZORCH_EINVALID,
                "mount '%s' must be SRC:DST[:ro]: SRC a host path or a volume name, DST an absolute "
                "path in the container", s ? s : "?");
  }
  json_decref(c);
  return rc;
}

static const zorch_orchestrator_ops ld_ops = {
    .version = ZORCH_ORCHESTRATOR_OPS_VERSION,
    .check_config = ld_check_config,
    .submit = ld_submit,
    .wait = ld_wait,
    .cancel = ld_cancel,
    .release = ld_release,
};

static const zorch_flavor_desc ld_flavor = {
    .version = ZORCH_FLAVOR_DESC_VERSION,
    .flags = ZORCH_FLAVOR_LOCAL_STORE,
    .type = ZORCH_COMPONENT_ORCHESTRATOR,
    .name = "local_docker",
    .integration = "built-in",
    .description = "Runs each step in its own container on a local Docker engine (or Podman's API); "
                   "independent steps in parallel",
    .config_schema = config_schema,
    .ops = &ld_ops,
};

static int ld_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  ld_ctx *ctx = host->alloc(sizeof *ctx);
  if (!ctx) return fail(host, ZORCH_ENOMEM, "out of memory");
  ctx->host = host;
  *plugin_ctx = ctx;
  int rc = host->add_flavor(reg, &ld_flavor, ctx);
  /* the image builder (image_builder.c); a refusal is a problem of its own */
  host->add_flavor(reg, &ldib_flavor, &ctx->host);
  return rc == ZORCH_EEXISTS ? ZORCH_OK : rc;
}

static void ld_teardown(void *plugin_ctx) {
  ld_ctx *ctx = plugin_ctx;
  if (ctx) ctx->host->free(ctx);
}

static const zorch_plugin_desc ld_plugin = {
    .abi_major = ZORCH_PLUGIN_ABI_MAJOR,
    .abi_minor = ZORCH_PLUGIN_ABI_MINOR,
    .name = "local_docker",
    .version = "1.0",
    .description = "The local_docker orchestrator (steps in containers) and image builder, through the "
                   "Docker Engine API",
    .init = ld_init,
    .teardown = ld_teardown,
};

ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,
                                                                   uint32_t host_abi_minor);

ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,
                                                                   uint32_t host_abi_minor) {
  /* needs the remote-step slots of ABI 1.1 */
  return host_abi_major == ZORCH_PLUGIN_ABI_MAJOR && host_abi_minor >= 1 ? &ld_plugin : NULL;
}
