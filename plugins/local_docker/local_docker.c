/* zorch — the `local_docker` orchestrator flavor: every step in its own
 * container on a local Docker Engine API (Docker, or Podman's compatible
 * service), independent steps in parallel.
 *
 * libzorch's DAG executor drives the run (host->executor_start_remote):
 * readiness, cache hits, retries, timeouts, failure modes, cancel and the
 * records stay in the host; this plugin launches each attempt as a container
 * that runs the step entrypoint (the host program for a function step,
 * `zorch step run` for a command step) with the artifact store mounted at
 * its own path, or, for a store the containers reach over the network, its
 * URI and credential references alone.  Each attempt has a thread of its own
 * (the kit's attempt table): create, start, hand the logs to the host, wait,
 * inspect, remove, report.
 */
#include <zorch/plugin.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image_builder.h"
#include "zdeploy.h"
#include "zdocker.h"
#include "zremote.h"

typedef struct ld_run {
  zr_run r;             /* first: the kit's frame */
  zd_engine eng;
  char *default_image;  /* built from the host program when a step names none */
  char user[64];
} ld_run;

/* One attempt's own: written before its thread starts, then only by it. */
typedef struct ld_attempt {
  char *image, *name, *create_body;
  uint64_t memory;      /* the memory limit, for the OOM message */
  /* log frame parser */
  unsigned char hdr[8];
  size_t hdr_len, frame_left;
} ld_attempt;

#define STRINGS "{\"type\":\"array\",\"items\":{\"type\":\"string\"}}"
/* Keys both the config and a step's settings.flavor.local_docker take. */
#define STEP_KEYS                                                                                             \
  "\"image\":{\"type\":\"string\",\"description\":\"image for steps whose settings name none; default: "       \
  "one built from the host program (zorch image build)\"},"                                                   \
  "\"image_add\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"description\":\"more "                 \
  "programs (with their libraries), files or directories (recursively) for the image built from the "         \
  "host program, e.g. the tools command steps run; bare names are looked up in PATH\"},"                     \
  "\"network\":{\"type\":\"string\",\"description\":\"network mode or network name (HostConfig.NetworkMode)\"},"\
  "\"user\":{\"type\":\"string\",\"description\":\"user[:group] in the container (default: the calling "      \
  "process's uid:gid, so artifacts stay yours)\"},"                                                           \
  "\"shm_size\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"size of /dev/shm in bytes\"},"         \
  "\"mounts\":" STRINGS ","                                                                                   \
  "\"environment\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},\"description\":"    \
  "\"extra environment of every step\"},"                                                                     \
  "\"run_args\":{\"type\":\"object\",\"description\":\"free-form container create fields merged into the "   \
  "request (HostConfig merged key by key), e.g. {\\\"HostConfig\\\":{\\\"CapAdd\\\":[\\\"SYS_PTRACE\\\"]}}\"}"

static const char config_schema[] =
    "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
    "\"docker_host\":{\"type\":\"string\",\"description\":\"the engine's socket as DOCKER_HOST spells it "
    "(unix:///path or tcp://host:port); default: $DOCKER_HOST, else unix:///var/run/docker.sock\"},"
    "\"max_parallel\":{\"type\":\"integer\",\"minimum\":1,\"description\":\"how many step containers may "
    "run at once (default: the number of CPUs)\"}," STEP_KEYS "}}";

static const char step_settings_schema[] = "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
                                           STEP_KEYS "}}";

static const zorch_host *host_of(void *payload) { return payload; }

/* ---- the request that creates a step's container ------------------------------------------- */

static json_t *create_body(ld_run *run, const zorch_step_launch *L, const zdep_settings *set, const char *image) {
  json_t *fs = set->flavor; /* the step's flavor settings over the config */
  zr_store store = zr_launch_store(L);
  json_t *body = json_pack("{s:s}", "Image", image);
  json_t *ep = json_array(), *cmd = json_array();
  for (size_t i = 0; L->argv[i]; i++) json_array_append_new(i ? cmd : ep, json_string(L->argv[i]));
  json_object_set_new(body, "Entrypoint", ep);
  json_object_set_new(body, "Cmd", cmd);
  json_t *env = json_array();
  for (size_t i = 0; L->env && L->env[i]; i++) json_array_append_new(env, json_string(L->env[i]));
  const char *ek;
  json_t *ev;
  json_object_foreach(json_object_get(fs, "environment"), ek, ev) {
    char *kv = zkit_asprintf("%s=%s", ek, json_string_value(ev) ?: "");
    if (kv) json_array_append_new(env, json_string(kv));
    free(kv);
  }
  for (size_t i = 0; store.env[i]; i++) json_array_append_new(env, json_string(store.env[i]));
  char *rid = zkit_asprintf("ZORCH_DOCKER_RUN_ID=%s", run->r.run_id);
  if (rid) json_array_append_new(env, json_string(rid));
  free(rid);
  json_object_set_new(body, "Env", env);
  json_object_set_new(body, "User", json_string(zkit_jstr(fs, "user") ?: run->user));
  char att[16];
  snprintf(att, sizeof att, "%u", L->attempt);
  json_object_set_new(body, "Labels", json_pack("{s:s,s:s,s:s,s:s,s:s}", "zorch.run_id", run->r.run_id,
                                                "zorch.run_name", run->r.run_name, "zorch.pipeline",
                                                run->r.pipeline, "zorch.step", L->step, "zorch.attempt", att));
  json_t *hc = json_object(), *binds = json_array();
  if (store.path) { /* else the store is reached over the network: no bind */
    char *bind = zkit_asprintf("%s:%s:rw", store.path, store.path);
    if (bind) json_array_append_new(binds, json_string(bind));
    free(bind);
  }
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(fs, "mounts"), i, m) json_array_append(binds, m);
  if (json_array_size(binds)) json_object_set(hc, "Binds", binds);
  json_decref(binds);
  if (zkit_jstr(fs, "network")) json_object_set(hc, "NetworkMode", json_object_get(fs, "network"));
  json_t *shm = json_object_get(fs, "shm_size");
  if (json_is_integer(shm) && json_integer_value(shm) > 0) json_object_set(hc, "ShmSize", shm);
  const zdep_resources *res = &set->res;
  if (res->memory) {
    json_object_set_new(hc, "Memory", json_integer((json_int_t)res->memory));
    json_object_set_new(hc, "MemorySwap", json_integer((json_int_t)res->memory)); /* no swap: OOM is OOM */
  }
  if (res->cpu > 0) json_object_set_new(hc, "NanoCpus", json_integer((json_int_t)(res->cpu * 1e9)));
  if (res->gpu) {
    json_t *dr = json_pack("{s:s,s:I,s:[[s]]}", "Driver", "", "Count", (json_int_t)res->gpu, "Capabilities", "gpu");
    if (res->gpu_type) json_object_set_new(dr, "Options", json_pack("{s:s}", "gpu_type", res->gpu_type));
    json_object_set_new(hc, "DeviceRequests", json_pack("[o]", dr));
  }
  /* run_args (the config's and the step's, merged) over what zorch set */
  json_object_foreach(json_object_get(fs, "run_args"), ek, ev) {
    if (!strcmp(ek, "HostConfig") && json_is_object(ev)) json_object_update(hc, ev);
    else json_object_set(body, ek, ev);
  }
  json_object_set_new(body, "HostConfig", hc);
  return body;
}

/* ---- one attempt's thread -------------------------------------------------------------------- */

/* The logs endpoint of a container without a TTY multiplexes stdout and
 * stderr in frames: 8-byte header (stream, 0, 0, 0, big-endian length). */
static int on_log_chunk(const char *data, size_t n, void *p) {
  zr_attempt *a = p;
  ld_attempt *la = a->data;
  while (n > 0) {
    if (la->frame_left == 0) {
      size_t take = 8 - la->hdr_len < n ? 8 - la->hdr_len : n;
      memcpy(la->hdr + la->hdr_len, data, take);
      la->hdr_len += take;
      data += take;
      n -= take;
      if (la->hdr_len < 8) break;
      la->hdr_len = 0;
      if (la->hdr[0] > 2 || la->hdr[1] || la->hdr[2] || la->hdr[3]) {
        zr_log(a, la->hdr, 8); /* not a frame: a TTY stream (run_args Tty: true) is raw */
        continue;
      }
      la->frame_left = (size_t)la->hdr[4] << 24 | (size_t)la->hdr[5] << 16 | (size_t)la->hdr[6] << 8 | la->hdr[7];
      continue;
    }
    size_t take = la->frame_left < n ? la->frame_left : n;
    zr_log(a, data, take);
    data += take;
    n -= take;
    la->frame_left -= take;
  }
  return 0;
}

/* A request on the engine (the path after the API version, printf-style):
 * ZORCH_OK, or the kit's code for it with the engine's answer as the
 * message (zkit_error_message()).  *out (may be NULL) the JSON answer. */
static int engine(ld_run *run, const char *method, json_t **out, int flags, const char *fmt, ...)
    ZKIT_PRINTF(5, 6);
static int engine(ld_run *run, const char *method, json_t **out, int flags, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *tail = NULL;
  if (vasprintf(&tail, fmt, ap) < 0) tail = NULL;
  va_end(ap);
  char *p = tail ? zd_path(&run->eng, "%s", tail) : NULL;
  free(tail);
  zh_request rq = {.method = method, .path = p, .flags = flags};
  zh_response resp;
  zh_error e = {0};
  int rc = p ? zh_do(run->eng.http, &rq, &resp, &e) : ZH_ENOMEM;
  if (rc == ZH_OK) {
    if (out) *out = json_loadb(resp.body, resp.len, 0, NULL);
    zh_response_free(&resp);
  }
  int code = rc ? zkit_errorf(NULL, zkit_http_code(rc, &e), "%s", e.message[0] ? e.message : "out of memory")
                : ZORCH_OK;
  zh_error_clear(&e);
  free(p);
  return code;
}

static void remove_container(ld_run *run, const char *id) {
  int rc = engine(run, "DELETE", NULL, 0, "/containers/%s?force=1&v=1", id);
  if (rc && rc != ZORCH_ENOTFOUND)
    zorch_host_logf(run->r.host, ZORCH_LOG_WARNING, "cannot remove container %.12s: %s", id, zkit_error_message());
}

static void kill_container(ld_run *run, const char *id) {
  engine(run, "POST", NULL, ZH_IDEMPOTENT, "/containers/%s/kill?signal=SIGKILL", id); /* 409: not running */
}

static void attempt_main(zr_attempt *a) {
  ld_run *run = (ld_run *)a->run;
  ld_attempt *la = a->data;
  char *esc = zh_escape(la->name);
  char *p = esc ? zd_path(&run->eng, "/containers/create?name=%s", esc) : NULL;
  free(esc);
  zh_request rq = {.method = "POST", .path = p, .content_type = "application/json", .body = la->create_body,
                   .body_len = strlen(la->create_body)};
  zh_response resp;
  zh_error e = {0};
  json_t *created = NULL;
  int rc = p ? zh_do(run->eng.http, &rq, &resp, &e) : ZH_ENOMEM;
  free(p);
  if (rc == ZH_OK) {
    created = json_loadb(resp.body, resp.len, 0, NULL);
    zh_response_free(&resp);
  }
  const char *id = zkit_jstr(created, "Id");
  if (!id) {
    if (rc == ZH_EHTTP && e.status == 404)
      zr_finish(a, 125, 0, "image '%s' is not in the Docker engine at %s: build it with `zorch image build %s` or "
                "pull it (`docker pull %s`) (%s)", la->image, run->eng.where, la->image, la->image, e.api_message);
    else
      zr_finish(a, 125, 0, "cannot create the step's container: %s", rc == ZH_OK ? "no Id in the answer" : e.message);
    zh_error_clear(&e);
    json_decref(created);
    return;
  }
  zh_error_clear(&e);
  zr_attempt_set_remote(a, id);
  int code = -1;
  char *msg = NULL;
  if (zr_attempt_stopping(a)) goto remove;
  if ((rc = engine(run, "POST", NULL, 0, "/containers/%s/start", id))) {
    const char *m = zkit_error_message();
    bool no_entry = strstr(m, "no such file or directory") && strstr(m, "exec");
    msg = zkit_asprintf("cannot start the step's container %.12s: %s%s%s%s", id, m, no_entry ? "; the image '" : "",
                        no_entry ? la->image : "",
                        no_entry ? "' lacks the step's entrypoint: build it with `zorch image build` (it adds "
                                   "the program and the zorch CLI at their own paths)" : "");
    goto remove;
  }
  if (zr_attempt_stopping(a)) kill_container(run, id); /* stop() came while it started */
  /* the logs until the container ends */
  p = zd_path(&run->eng, "/containers/%s/logs?follow=1&stdout=1&stderr=1", id);
  zh_request lg = {.method = "GET", .path = p, .chunk_cb = on_log_chunk, .chunk_payload = a,
                   .abort_flag = &a->abort, .flags = ZH_NO_RETRY};
  rc = p ? zh_do(run->eng.http, &lg, NULL, &e) : ZH_ENOMEM;
  free(p);
  if (rc != ZH_OK && rc != ZH_STOPPED) {
    char *line = zkit_asprintf("zorch: cannot follow the container's log: %s\n", e.message);
    if (line) zr_log(a, line, strlen(line));
    free(line);
  }
  zh_error_clear(&e);
  json_t *w = NULL, *ins = NULL;
  if (engine(run, "POST", &w, 0, "/containers/%s/wait", id) == ZORCH_OK)
    code = (int)json_integer_value(json_object_get(w, "StatusCode"));
  json_decref(w);
  /* the exit code and the OOM flag from the container's state */
  bool oom = false;
  if (engine(run, "GET", &ins, 0, "/containers/%s/json", id) == ZORCH_OK) {
    json_t *state = json_object_get(ins, "State");
    oom = json_is_true(json_object_get(state, "OOMKilled"));
    json_t *ec = json_object_get(state, "ExitCode");
    if (json_is_integer(ec)) code = (int)json_integer_value(ec);
  }
  json_decref(ins);
  if (code < 0)
    msg = zkit_asprintf("cannot learn how the step's container %.12s ended: %s", id, zkit_error_message());
  else if (code == 137 && (oom || la->memory))
    msg = zkit_asprintf("the step's container was killed for using too much memory (exit 137%s; its limit is "
                        "%llu MiB from the step's resources.memory: raise it)", oom ? ", OOMKilled" : "",
                        (unsigned long long)(la->memory >> 20));
  else if (code == 137)
    msg = zkit_asprintf("the step's container was killed (exit 137: SIGKILL, often the kernel's out-of-memory "
                        "killer; give the step a memory setting or more memory)");
  else if (code != 0)
    msg = zkit_asprintf("the step's container exited with status %d", code); /* the host adds the log's tail */
remove:
  remove_container(run, id);
  json_decref(created);
  if (code < 0 && !msg) msg = strdup("the step's container did not run");
  if (msg) zr_finish(a, code < 0 ? 125 : code, 0, "%s", msg);
  else zr_finish(a, code, 0, NULL);
  free(msg);
}

static void attempt_free(void *p) {
  ld_attempt *la = p;
  if (!la) return;
  free(la->image);
  free(la->name);
  free(la->create_body);
  free(la);
}

/* ---- the launcher the host calls ---------------------------------------------------------- */

static int step_launch(zr_run *r, const zorch_step_launch *L, const zdep_settings *set) {
  ld_run *run = (ld_run *)r;
  ld_attempt *la = calloc(1, sizeof *la);
  if (la) {
    la->image = strdup(set->image);
    la->name = zkit_asprintf("zorch-%.12s-%s-%u", r->run_id, L->step, L->attempt);
    la->memory = set->res.memory;
    json_t *body = create_body(run, L, set, set->image);
    la->create_body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
  }
  if (!la || !la->image || !la->name || !la->create_body) {
    attempt_free(la);
    return zorch_host_errorf(r->host, ZORCH_ENOMEM, "out of memory");
  }
  /* ZORCH_LOG_LEVEL=debug shows what the engine is asked for */
  zorch_host_logf(r->host, ZORCH_LOG_DEBUG, "POST /containers/create?name=%s %.900s", la->name, la->create_body);
  zr_attempt *a;
  int rc = zr_attempt_add(&a, r, L, la, attempt_free);
  if (rc) return rc;
  if ((rc = zr_attempt_thread(a, attempt_main))) zr_attempt_abandon(a);
  zr_attempt_unref(a);
  return rc;
}

/* The host asks to stop an attempt: kill its container (with none yet, the
 * attempt's thread sees `stopping` once it created it). */
static void container_stop(zr_attempt *a, const char *id) {
  if (id) kill_container((ld_run *)a->run, id);
}


/* ---- the default image: image_builder.c ------------------------------------------------ */

static int ensure_default_image(ld_run *run, const zdep *dep) {
  int rc = ldib_default_image(&run->default_image, run->r.host, &run->eng, run->r.pipeline, dep,
                              run->r.config, run->r.zorch_command);
  run->r.default_image = run->default_image;
  return rc;
}

/* ---- the flavor's operations ------------------------------------------------------------- */

static void run_free(ld_run *run) {
  zd_close(&run->eng);
  free(run->default_image);
  zr_run_free(&run->r); /* joins the attempts' threads */
}

/* Remove whatever container of this run is still there (a thread that could
 * not remove its own, a crash of an earlier process). */
static void sweep(ld_run *run) {
  char *filt = zkit_asprintf("{\"label\":[\"zorch.run_id=%s\"]}", run->r.run_id);
  char *ef = filt ? zh_escape(filt) : NULL;
  json_t *list = NULL;
  if (ef && engine(run, "GET", &list, 0, "/containers/json?all=1&filters=%s", ef) == ZORCH_OK)
    for (size_t i = 0; i < json_array_size(list); i++) {
      const char *id = zkit_jstr(json_array_get(list, i), "Id");
      if (id) remove_container(run, id);
    }
  json_decref(list);
  free(ef);
  free(filt);
}

/* Every step's image is in the engine, or the default one is built. */
static int check_images(ld_run *run, const zdep *dep) {
  const zorch_host *h = run->r.host;
  bool need_default = false;
  for (size_t i = 0; i < dep->n_steps; i++) {
    const zdep_step *s = &dep->steps[i];
    const char *img = s->set.image;
    if (!img) {
      need_default = true;
      continue;
    }
    zh_error e = {0};
    int have = zd_image_exists(&run->eng, img, &e);
    int rc = have > 0 ? ZORCH_OK
             : have == 0 ? zorch_host_errorf(h, ZORCH_ENOTFOUND, "image '%s' of step '%s' is not in the Docker engine "
                                             "at %s: build it with `zorch image build %s` or pull it (`docker pull "
                                             "%s`)", img, s->name, run->eng.where, img, img)
                         : zorch_host_errorf(h, ZORCH_EIO, "cannot look up image '%s': %s", img, e.message);
    zh_error_clear(&e);
    if (rc) return rc;
  }
  return need_default ? ensure_default_image(run, dep) : ZORCH_OK;
}

static int ld_submit(void **out_run, void *payload, zorch_submission *sub) {
  const zorch_host *h = host_of(payload);
  *out_run = NULL;
  zr_run_options ro = {.flavor = "local_docker", .max_parallel_key = "max_parallel", .launch = step_launch,
                       .needs_image = true, .on_stop = container_stop};
  ld_run *run;
  int rc = zr_run_new((void **)&run, sizeof *run, h, sub, NULL, &ro);
  if (rc) return rc;
  snprintf(run->user, sizeof run->user, "%u:%u", (unsigned)getuid(), (unsigned)getgid());
  zdep *dep = NULL;
  char err[2048];
  if (!run->r.run_id[0] || !run->r.pipeline[0]) {
    rc = zorch_host_errorf(h, ZORCH_EINVALID, "the submission lacks its run id or pipeline");
  } else if (zd_connect(&run->eng, zkit_jstr(run->r.config, "docker_host"), err, sizeof err)) {
    rc = zorch_host_errorf(h, ZORCH_EIO, "%s", err);
  } else {
    rc = zr_deployment(&dep, &run->r);
  }
  if (!rc) rc = check_images(run, dep);
  zdep_free(dep);
  if (!rc) {
    h->submission_set_metadata(sub, "orchestrator_run_id", run->r.run_id);
    h->submission_set_metadata(sub, "orchestrator_url", run->eng.where);
    h->submission_set_metadata(sub, "docker_engine", run->eng.engine);
    rc = zr_run_start_remote(&run->r);
  }
  if (rc) run_free(run);
  else *out_run = run;
  return rc;
}

static void ld_release(void *r) {
  ld_run *run = r;
  if (!run) return;
  zr_run_release(&run->r); /* waits for the end */
  sweep(run);
  run_free(run);
}

static int ld_check_config(void *payload, const char *config_json) {
  const zorch_host *h = host_of(payload);
  json_t *c = json_loads(config_json, 0, NULL);
  int rc = ZORCH_OK;
  const char *dh = zkit_jstr(c, "docker_host");
  if (dh && !zd_host_supported(dh))
    rc = zorch_host_errorf(h, ZORCH_EINVALID, "docker_host '%s' must start with unix:// or tcp://", dh);
  json_t *m = json_object_get(c, "mounts");
  for (size_t i = 0; !rc && i < json_array_size(m); i++) {
    const char *s = json_string_value(json_array_get(m, i));
    const char *colon = s ? strchr(s, ':') : NULL;
    if (!colon || colon == s || colon[1] != '/')
      rc = zorch_host_errorf(h, ZORCH_EINVALID, "mount '%s' must be SRC:DST[:ro]: SRC a host path or a volume name, "
                             "DST an absolute path in the container", s ? s : "?");
  }
  json_decref(c);
  return rc;
}

/* wait and cancel are the kit's (the executor's) */
ZR_ORCHESTRATOR_FLAVOR(ld, "local_docker", "built-in",
                       "Runs each step in its own container on a local Docker engine (or Podman's API); "
                       "independent steps in parallel",
                       config_schema, step_settings_schema,
                       ZORCH_FLAVOR_LOCAL_STORE, /* the store's directory is bound into the containers */
                       .check_config = ld_check_config, .submit = ld_submit, .release = ld_release);

/* The orchestrator, and the image builder (image_builder.c): a refusal of
 * the latter is a problem of its own.  Both take the host table as payload. */
static int ld_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  *plugin_ctx = NULL;
  int rc = zr_plugin_add(host, reg, &ld_flavor);
  if (rc == ZORCH_OK) host->add_flavor(reg, &ldib_flavor, (void *)host);
  return rc;
}

ZORCH_PLUGIN_DEFINE("local_docker", "1.1", "The local_docker orchestrator (steps in containers) and image builder, "
                    "through the Docker Engine API", ld_init, NULL)
