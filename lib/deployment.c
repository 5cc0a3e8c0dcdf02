/* zorch — compiling pipelines to deployments, and loading deployments into plans. */
#include "deployment.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- program identity --------------------------------------------------------- */

static pthread_once_t prog_once = PTHREAD_ONCE_INIT;
static char prog_version[80];
static char prog_path[4096];

static int find_build_id(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  char *out = data;
  if (info->dlpi_name && info->dlpi_name[0]) return 1; /* the main program comes first */
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
    const char *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
      const char *name = p + sizeof *nh;
      const unsigned char *desc = (const unsigned char *)(name + ((nh->n_namesz + 3) & ~3u));
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(name, "GNU", 4) &&
          nh->n_descsz > 0 && nh->n_descsz <= 32) {
        strcpy(out, "build-id:");
        char *o = out + strlen(out);
        for (unsigned k = 0; k < nh->n_descsz; k++) o += sprintf(o, "%02x", desc[k]);
        return 1;
      }
      p = (const char *)desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return 1;
}

static void prog_init(void) {
  ssize_t n = readlink("/proc/self/exe", prog_path, sizeof prog_path - 1);
  prog_path[n > 0 ? n : 0] = '\0';
  dl_iterate_phdr(find_build_id, prog_version);
  if (!prog_version[0]) {
    char d[ZORCH__DIGEST_HEX];
    if (zorch__sha256_file("/proc/self/exe", d, NULL) == ZORCH_OK)
      snprintf(prog_version, sizeof prog_version, "sha256:%s", d);
    else
      strcpy(prog_version, "unknown");
  }
}

const char *zorch__program_version(void) {
  pthread_once(&prog_once, prog_init);
  return prog_version;
}

const char *zorch__program_path(void) {
  pthread_once(&prog_once, prog_init);
  return prog_path;
}

/* Content identity of a file for command-step versions: SHA-256 of files up
 * to 64 MiB, else size and modification time. */
static int file_identity(zorch__sha256 *h, const char *path) {
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  char buf[160];
  if (st.st_size <= (64 << 20)) {
    char d[ZORCH__DIGEST_HEX];
    if (zorch__sha256_file(path, d, NULL) != ZORCH_OK) return 0;
    snprintf(buf, sizeof buf, "%s\n", d);
  } else {
    snprintf(buf, sizeof buf, "%lld:%lld.%09ld\n", (long long)st.st_size,
             (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
  zorch__sha256_update(h, path, strlen(path));
  zorch__sha256_update(h, "\n", 1);
  zorch__sha256_update(h, buf, strlen(buf));
  return 1;
}

static char *which(const char *cmd) {
  if (strchr(cmd, '/')) return zorch__strdup(cmd);
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    size_t n = strcspn(path, ":");
    char *cand = zorch__asprintf("%.*s/%s", (int)n, path, cmd);
    if (cand && access(cand, X_OK) == 0) return cand;
    free(cand);
    path += n;
    if (*path == ':') path++;
  }
  return NULL;
}

/* memo of command versions per argv text within one compile */
static char *command_version(char **argv, zorch__map *memo, zorch__strv *keep) {
  zorch__buf key = ZORCH__BUF_INIT;
  for (size_t i = 0; argv[i]; i++) {
    zorch__buf_puts(&key, argv[i]);
    zorch__buf_put(&key, "", 1);
  }
  const char *hit = key.data ? zorch__map_get(memo, key.data) : NULL;
  if (hit) {
    zorch__buf_free(&key);
    return zorch__strdup(hit);
  }
  zorch__sha256 *h = zorch__sha256_new();
  if (!h) {
    zorch__buf_free(&key);
    return NULL;
  }
  char *exe = which(argv[0]);
  if (exe) file_identity(h, exe);
  free(exe);
  for (size_t i = 1; argv[i]; i++) file_identity(h, argv[i]);
  char d[ZORCH__DIGEST_HEX];
  zorch__sha256_final_hex(h, d);
  char *v = zorch__asprintf("files:%.32s", d);
  if (v && key.data && zorch__strv_push(keep, key.data) == ZORCH_OK) {
    char *stored = zorch__strdup(v);
    if (stored && zorch__strv_push(keep, stored) == ZORCH_OK)
      zorch__map_put(memo, keep->v[keep->n - 2], keep->v[keep->n - 1]);
    free(stored);
  }
  zorch__buf_free(&key);
  return v;
}

/* ---- compiling ------------------------------------------------------------------- */

static const char *failure_mode_name(int m) {
  switch (m) {
  case ZORCH_STOP_ON_FAILURE: return "stop_on_failure";
  case ZORCH_FAIL_FAST: return "fail_fast";
  default: return "continue_on_failure";
  }
}

static int failure_mode_parse(const char *s) {
  if (!s) return -1;
  if (!strcmp(s, "continue_on_failure")) return ZORCH_CONTINUE_ON_FAILURE;
  if (!strcmp(s, "stop_on_failure")) return ZORCH_STOP_ON_FAILURE;
  if (!strcmp(s, "fail_fast")) return ZORCH_FAIL_FAST;
  return -1;
}

static json_t *json_text(const char *text) {
  return json_loads(text, JSON_DECODE_ANY, NULL);
}

/* effective settings of a step: step value, else pipeline default, else built-in */
static json_t *settings_json(const zorch_step *s, const zorch__settings *d) {
  const zorch__settings *st = &s->settings;
  json_t *res = json_object();
  double cpu = st->has_cpu ? st->cpu : d->has_cpu ? d->cpu : 0;
  uint64_t mem = st->has_memory ? st->memory : d->has_memory ? d->memory : 0;
  uint32_t gpu = st->has_gpu ? st->gpu : d->has_gpu ? d->gpu : 0;
  const char *gpu_type = st->has_gpu ? st->gpu_type : d->has_gpu ? d->gpu_type : NULL;
  json_t *r = json_object();
  if (cpu > 0) json_object_set_new(r, "cpu", json_real(cpu));
  if (mem > 0) json_object_set_new(r, "memory", json_integer((json_int_t)mem));
  if (gpu > 0) json_object_set_new(r, "gpu", json_integer(gpu));
  if (gpu_type) json_object_set_new(r, "gpu_type", json_string(gpu_type));
  json_object_set_new(res, "resources", r);
  json_t *env = json_object();
  for (size_t i = 0; i < d->env.n; i++)
    json_object_set_new(env, d->env.v[i].key, json_string(d->env.v[i].value));
  for (size_t i = 0; i < st->env.n; i++)
    json_object_set_new(env, st->env.v[i].key, json_string(st->env.v[i].value));
  json_object_set_new(res, "env", env);
  const zorch__settings *rs = st->has_retry ? st : d->has_retry ? d : NULL;
  json_object_set_new(res, "retries",
                      json_pack("{s:i,s:f,s:f}", "max", rs ? (json_int_t)rs->retries : 0,
                                "delay", rs ? rs->retry_delay : 0.0, "backoff",
                                rs ? rs->retry_backoff : 1.0));
  json_object_set_new(res, "timeout",
                      json_real(st->has_timeout ? st->timeout : d->has_timeout ? d->timeout : 0));
  json_object_set_new(res, "cache",
                      json_boolean(st->has_cache ? st->cache : d->has_cache ? d->cache : true));
  const char *image = st->image ? st->image : d->image;
  json_object_set_new(res, "image", image ? json_string(image) : json_null());
  json_t *fl = json_object();
  for (size_t i = 0; i < d->flavor.n; i++)
    json_object_set_new(fl, d->flavor.v[i].key, json_text(d->flavor.v[i].value));
  for (size_t i = 0; i < st->flavor.n; i++) {
    json_t *v = json_text(st->flavor.v[i].value);
    json_t *base = json_object_get(fl, st->flavor.v[i].key);
    if (base && json_is_object(v)) {
      json_t *merged = json_deep_copy(base);
      json_object_update(merged, v);
      json_decref(v);
      v = merged;
    }
    json_object_set_new(fl, st->flavor.v[i].key, v);
  }
  json_object_set_new(res, "flavor", fl);
  return res;
}

static bool has_own_settings(const zorch_step *s) {
  const zorch__settings *st = &s->settings;
  return st->has_cpu || st->has_memory || st->has_gpu || st->has_retry || st->has_timeout ||
         st->has_cache || st->image || st->env.n || st->flavor.n;
}

static void put_json(zorch__buf *b, json_t *v) {
  char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
  zorch__buf_puts(b, t ? t : "null");
  free(t);
}

static void put_strv(zorch__buf *b, const char *key, char **v, size_t n) {
  zorch__buf_printf(b, ",\"%s\":[", key);
  for (size_t i = 0; i < n; i++) {
    if (i) zorch__buf_put(b, ",", 1);
    zorch__buf_json_string(b, v[i]);
  }
  zorch__buf_put(b, "]", 1);
}

static void put_entrypoint(zorch__buf *b, const char *head, const char *dep_path,
                           const char *run_id) {
  zorch__buf_puts(b, "[");
  zorch__buf_puts(b, head);
  zorch__buf_puts(b, ",\"--zorch-step\",\"{step}\",\"--zorch-deployment\",");
  zorch__buf_json_string(b, dep_path);
  zorch__buf_puts(b, ",\"--zorch-run\",");
  zorch__buf_json_string(b, run_id ? run_id : "");
  zorch__buf_puts(b, "]");
}

/* The document lists the steps in topological order.  What most steps share
 * is said once: "defaults" holds the effective settings and code version of a
 * step that sets none of its own, "entrypoint" the command template of each
 * kind ({step} stands for the step's name).  A step carries only the fields
 * that are not empty and the settings it overrides, so a large pipeline costs
 * tens of bytes per step. */
int zorch__deployment_compile(char **out, const zorch_pipeline *p,
                              const zorch__compile_info *info) {
  *out = NULL;
  size_t *order = NULL;
  int rc = zorch__pipeline_order(p, &order);
  if (rc) return rc;
  json_t *overrides = NULL;
  if (info->params_json && *info->params_json) {
    json_error_t err;
    overrides = json_loads(info->params_json, 0, &err);
    if (!overrides || !json_is_object(overrides)) {
      json_decref(overrides);
      free(order);
      return zorch__error_set(ZORCH_EINVALID, "run params must be a JSON object%s%s",
                              overrides ? "" : ": ", overrides ? "" : err.text);
    }
    const char *k;
    json_t *v;
    json_object_foreach(overrides, k, v) {
      if (!zorch__kvs_get(&p->params, k)) {
        zorch__buf b = ZORCH__BUF_INIT;
        for (size_t i = 0; i < p->params.n; i++) {
          zorch__buf_puts(&b, i ? ", " : "");
          zorch__buf_puts(&b, p->params.v[i].key);
        }
        zorch__error_set(ZORCH_EINVALID, "unknown param '%s': pipeline '%s' declares %s%s", k,
                         p->name, b.len ? "" : "no params", b.len ? b.data : "");
        zorch__buf_free(&b);
        json_decref(overrides);
        free(order);
        return ZORCH_EINVALID;
      }
    }
  }
  /* resolved pipeline params, as JSON values */
  json_t *params = json_object();
  for (size_t i = 0; i < p->params.n; i++) {
    json_t *ov = overrides ? json_object_get(overrides, p->params.v[i].key) : NULL;
    json_object_set_new(params, p->params.v[i].key,
                        ov ? json_incref(ov) : json_text(p->params.v[i].value));
  }
  json_decref(overrides);
  const char *zorch_cmd = getenv("ZORCH_COMMAND");
  char *default_cmd = zorch_cmd && *zorch_cmd ? NULL : zorch__asprintf("%s/zorch", ZORCH_BINDIR);
  if (!zorch_cmd || !*zorch_cmd) zorch_cmd = default_cmd;
  char *dep_path = info->store_path && info->run_id
                       ? zorch__asprintf("%s/runs/%s/deployment.json", info->store_path,
                                         info->run_id)
                       : zorch__strdup("deployment.json");
  const char *default_version =
      p->defaults.settings.version ? p->defaults.settings.version : zorch__program_version();

  zorch__buf b = ZORCH__BUF_INIT;
  zorch__buf_grow(&b, 1024 + p->n_steps * 64);
  zorch__buf_printf(&b, "{\"zorch_deployment\":%d,\"pipeline\":", ZORCH__DEPLOYMENT_VERSION);
  zorch__buf_json_string(&b, p->name);
  zorch__buf_puts(&b, ",\"run\":{\"id\":");
  zorch__buf_json_string(&b, info->run_id ? info->run_id : "");
  zorch__buf_puts(&b, ",\"name\":");
  zorch__buf_json_string(&b, info->run_name ? info->run_name : "");
  zorch__buf_printf(&b, ",\"created\":%.6f},\"program\":{\"path\":", info->created);
  zorch__buf_json_string(&b, zorch__program_path());
  zorch__buf_puts(&b, ",\"version\":");
  zorch__buf_json_string(&b, zorch__program_version());
  zorch__buf_puts(&b, "},\"stack\":{\"name\":");
  zorch__buf_json_string(&b, info->stack ? info->stack : "");
  zorch__buf_puts(&b, ",\"orchestrator\":");
  zorch__buf_json_string(&b, info->orchestrator ? info->orchestrator : "");
  zorch__buf_puts(&b, ",\"flavor\":");
  zorch__buf_json_string(&b, info->flavor ? info->flavor : "");
  zorch__buf_puts(&b, "},\"artifact_store\":{\"flavor\":\"local\",\"path\":");
  zorch__buf_json_string(&b, info->store_path ? info->store_path : "");
  zorch__buf_printf(&b, "},\"failure_mode\":\"%s\",\"params\":",
                    failure_mode_name(info->failure_mode));
  put_json(&b, params);
  zorch__buf_puts(&b, ",\"entrypoint\":{\"function\":");
  zorch__buf json_prog = ZORCH__BUF_INIT;
  zorch__buf_json_string(&json_prog, zorch__program_path());
  put_entrypoint(&b, json_prog.data, dep_path, info->run_id);
  zorch__buf_free(&json_prog);
  zorch__buf_puts(&b, ",\"command\":");
  zorch__buf cmdhead = ZORCH__BUF_INIT;
  zorch__buf_json_string(&cmdhead, zorch_cmd);
  zorch__buf_puts(&cmdhead, ",\"step\",\"run\"");
  put_entrypoint(&b, cmdhead.data, dep_path, info->run_id);
  zorch__buf_free(&cmdhead);
  zorch__buf_puts(&b, "},\"defaults\":{\"version\":");
  zorch__buf_json_string(&b, default_version);
  zorch__buf_puts(&b, ",\"settings\":");
  zorch_step none;
  memset(&none, 0, sizeof none);
  json_t *dset = settings_json(&none, &p->defaults.settings);
  put_json(&b, dset);
  json_decref(dset);
  zorch__buf_puts(&b, "},\"steps\":[");

  zorch__map *memo = zorch__map_new(8);
  zorch__strv keep = {0};
  for (size_t oi = 0; oi < p->n_steps; oi++) {
    const zorch_step *s = p->steps[order[oi]];
    zorch__buf_puts(&b, oi ? ",{\"name\":" : "{\"name\":");
    zorch__buf_json_string(&b, s->name);
    zorch__buf_puts(&b, s->kind == ZORCH__STEP_COMMAND ? ",\"kind\":\"command\""
                                                       : ",\"kind\":\"function\"");
    if (s->kind == ZORCH__STEP_COMMAND) put_strv(&b, "command", s->argv.v, s->argv.n);
    if (s->n_inputs) {
      zorch__buf_puts(&b, ",\"inputs\":{");
      for (size_t i = 0; i < s->n_inputs; i++) {
        if (i) zorch__buf_put(&b, ",", 1);
        zorch__buf_json_string(&b, s->inputs[i].name);
        zorch__buf_puts(&b, ":{\"step\":");
        zorch__buf_json_string(&b, s->inputs[i].from_step);
        zorch__buf_puts(&b, ",\"output\":");
        zorch__buf_json_string(&b, s->inputs[i].from_output);
        zorch__buf_put(&b, "}", 1);
      }
      zorch__buf_put(&b, "}", 1);
    }
    if (s->outputs.n) put_strv(&b, "outputs", s->outputs.v, s->outputs.n);
    if (s->after.n) put_strv(&b, "after", s->after.v, s->after.n);
    if (s->use_params.n) put_strv(&b, "uses", s->use_params.v, s->use_params.n);
    if (s->use_params.n || s->params.n) {
      json_t *sp = json_object();
      for (size_t i = 0; i < s->use_params.n; i++) {
        json_t *v = json_object_get(params, s->use_params.v[i]);
        if (v) json_object_set(sp, s->use_params.v[i], v);
      }
      for (size_t i = 0; i < s->params.n; i++)
        json_object_set_new(sp, s->params.v[i].key, json_text(s->params.v[i].value));
      zorch__buf_puts(&b, ",\"params\":");
      put_json(&b, sp);
      json_decref(sp);
    }
    const char *ver = s->settings.version ? s->settings.version : NULL;
    char *autover = NULL;
    if (!ver && s->kind == ZORCH__STEP_COMMAND && !p->defaults.settings.version) {
      autover = command_version(s->argv.v, memo, &keep);
      ver = autover ? autover : "unknown";
    }
    if (ver && strcmp(ver, default_version) != 0) {
      zorch__buf_puts(&b, ",\"version\":");
      zorch__buf_json_string(&b, ver);
    }
    free(autover);
    if (has_own_settings(s)) {
      json_t *st = settings_json(s, &p->defaults.settings);
      zorch__buf_puts(&b, ",\"settings\":");
      put_json(&b, st);
      json_decref(st);
    }
    zorch__buf_put(&b, "}", 1);
  }
  zorch__buf_puts(&b, "]}");
  json_decref(params);
  zorch__map_free(memo);
  zorch__strv_clear(&keep);
  free(default_cmd);
  free(dep_path);
  free(order);
  if (!b.data || b.len == 0) {
    zorch__buf_free(&b);
    return zorch__error_oom();
  }
  *out = zorch__buf_detach(&b);
  return ZORCH_OK;
}

/* ---- loading plans ------------------------------------------------------------------- */

static int bad(const char *where, const char *what) {
  return zorch__error_set(ZORCH_EINVALID, "deployment: %s: %s", where, what);
}

void zorch__plan_free(zorch__plan *plan) {
  if (!plan) return;
  for (uint32_t i = 0; i < plan->n_steps; i++) {
    zorch__pstep *s = &plan->steps[i];
    free(s->argv);
    free(s->outputs);
    free(s->inputs);
    free(s->params_canon);
    if (s->own_env) free(s->env);
  }
  free(plan->steps);
  free(plan->succ);
  zorch__map_free(plan->by_name);
  free(plan->defaults.env);
  zorch__strv_clear(&plan->strings);
  json_decref(plan->empty);
  json_decref(plan->doc);
  free(plan->text);
  free(plan);
}

int64_t zorch__plan_find(const zorch__plan *plan, const char *name) {
  void *v = zorch__map_get(plan->by_name, name);
  return v ? (int64_t)((uintptr_t)v - 1) : -1;
}

static const char *get_str(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Settings of one step (or the defaults) from their JSON object. */
static int parse_settings(zorch__plan *pl, zorch__pstep *s, json_t *st, const char *where) {
  if (!json_is_object(st)) return bad(where, "settings must be an object");
  json_t *env = json_object_get(st, "env");
  size_t ne = json_object_size(env);
  s->env = calloc(ne + 1, sizeof *s->env);
  if (!s->env) return zorch__error_oom();
  const char *ek;
  json_t *ev;
  size_t e = 0;
  json_object_foreach(env, ek, ev) {
    if (!json_is_string(ev)) return bad(where, "settings.env values must be strings");
    char *kv = zorch__asprintf("%s=%s", ek, json_string_value(ev));
    if (!kv || zorch__strv_push(&pl->strings, kv)) {
      free(kv);
      return zorch__error_oom();
    }
    free(kv);
    s->env[e++] = pl->strings.v[pl->strings.n - 1];
  }
  json_t *r = json_object_get(st, "retries");
  s->retries = (uint32_t)json_integer_value(json_object_get(r, "max"));
  s->retry_delay = json_number_value(json_object_get(r, "delay"));
  s->retry_backoff = json_number_value(json_object_get(r, "backoff"));
  if (s->retry_backoff < 1) s->retry_backoff = 1;
  s->timeout = json_number_value(json_object_get(st, "timeout"));
  json_t *c = json_object_get(st, "cache");
  s->cache = c ? json_is_true(c) : true;
  s->image = get_str(st, "image");
  return ZORCH_OK;
}

int zorch__plan_load(zorch__plan **out, const char *text) {
  *out = NULL;
  json_error_t err;
  json_t *doc = json_loads(text, 0, &err);
  if (!doc)
    return zorch__error_set(ZORCH_EINVALID, "deployment: line %d, column %d: %s", err.line,
                            err.column, err.text);
  zorch__plan *pl = calloc(1, sizeof *pl);
  if (!pl) {
    json_decref(doc);
    return zorch__error_oom();
  }
  pl->doc = doc;
  pl->text = zorch__strdup(text);
  int rc = ZORCH_OK;
  json_t *ver = json_object_get(doc, "zorch_deployment");
  if (!json_is_integer(ver)) {
    rc = bad("zorch_deployment", "missing or not an integer (is this a zorch deployment?)");
    goto fail;
  }
  if (json_integer_value(ver) > ZORCH__DEPLOYMENT_VERSION || json_integer_value(ver) < 1) {
    rc = zorch__error_set(ZORCH_EVERSION,
                          "deployment version %lld is not supported by zorch %s (it reads "
                          "versions 1 to %d)",
                          (long long)json_integer_value(ver), ZORCH_VERSION_STRING,
                          ZORCH__DEPLOYMENT_VERSION);
    goto fail;
  }
  pl->pipeline = get_str(doc, "pipeline");
  if (!pl->pipeline) {
    rc = bad("pipeline", "missing or not a string");
    goto fail;
  }
  json_t *run = json_object_get(doc, "run");
  pl->run_id = get_str(run, "id");
  pl->run_name = get_str(run, "name");
  pl->store_path = get_str(json_object_get(doc, "artifact_store"), "path");
  pl->stack = get_str(json_object_get(doc, "stack"), "name");
  pl->flavor = get_str(json_object_get(doc, "stack"), "flavor");
  int fm = failure_mode_parse(get_str(doc, "failure_mode"));
  if (fm < 0) {
    rc = bad("failure_mode", "must be continue_on_failure, stop_on_failure or fail_fast");
    goto fail;
  }
  pl->failure_mode = fm;
  pl->empty = json_object();
  json_t *defaults = json_object_get(doc, "defaults");
  pl->default_version = get_str(defaults, "version");
  if (!pl->default_version) {
    rc = bad("defaults.version", "missing or not a string");
    goto fail;
  }
  if ((rc = parse_settings(pl, &pl->defaults, json_object_get(defaults, "settings"), "defaults.settings")))
    goto fail;
  json_t *steps = json_object_get(doc, "steps");
  if (!json_is_array(steps) || json_array_size(steps) == 0) {
    rc = bad("steps", "missing, empty or not an array");
    goto fail;
  }
  size_t n = json_array_size(steps);
  if (n > UINT32_MAX - 1) {
    rc = bad("steps", "too many steps");
    goto fail;
  }
  pl->n_steps = (uint32_t)n;
  pl->steps = calloc(n, sizeof *pl->steps);
  pl->by_name = zorch__map_new(n);
  uint32_t *succ_count = calloc(n + 1, sizeof *succ_count);
  if (!pl->steps || !pl->by_name || !succ_count) {
    free(succ_count);
    rc = zorch__error_oom();
    goto fail;
  }
  char where[160];
  size_t n_edges = 0;
  for (size_t i = 0; i < n; i++) {
    json_t *js = json_array_get(steps, i);
    zorch__pstep *s = &pl->steps[i];
    snprintf(where, sizeof where, "steps[%zu]", i);
    if (!json_is_object(js)) {
      rc = bad(where, "not an object");
      break;
    }
    s->name = get_str(js, "name");
    if (!s->name || zorch__check_name("step", s->name)) {
      rc = bad(where, s->name ? zorch_error_last()->message : "name missing");
      break;
    }
    if (zorch__map_get(pl->by_name, s->name)) {
      rc = bad(where, "duplicate step name");
      break;
    }
    zorch__map_put(pl->by_name, s->name, (void *)(uintptr_t)(i + 1));
    snprintf(where, sizeof where, "step '%s'", s->name);
    const char *kind = get_str(js, "kind");
    if (kind && !strcmp(kind, "function"))
      s->kind = ZORCH__STEP_FUNCTION;
    else if (kind && !strcmp(kind, "command"))
      s->kind = ZORCH__STEP_COMMAND;
    else {
      rc = bad(where, "kind must be \"function\" or \"command\"");
      break;
    }
    if (s->kind == ZORCH__STEP_COMMAND) {
      json_t *cmd = json_object_get(js, "command");
      size_t an = json_array_size(cmd);
      if (!json_is_array(cmd) || an == 0) {
        rc = bad(where, "command must be a non-empty array of strings");
        break;
      }
      s->argv = calloc(an + 1, sizeof *s->argv);
      if (!s->argv) {
        rc = zorch__error_oom();
        break;
      }
      for (size_t a = 0; a < an; a++) {
        s->argv[a] = json_string_value(json_array_get(cmd, a));
        if (!s->argv[a]) {
          rc = bad(where, "command must be a non-empty array of strings");
          break;
        }
      }
      if (rc) break;
    }
    json_t *outs = json_object_get(js, "outputs");
    s->n_outputs = (uint32_t)json_array_size(outs);
    s->outputs = calloc(s->n_outputs + 1, sizeof *s->outputs);
    if (!s->outputs) {
      rc = zorch__error_oom();
      break;
    }
    for (uint32_t o = 0; o < s->n_outputs; o++) {
      s->outputs[o] = json_string_value(json_array_get(outs, o));
      if (!s->outputs[o]) {
        rc = bad(where, "outputs must be an array of names");
        break;
      }
    }
    if (rc) break;
    json_t *ins = json_object_get(js, "inputs");
    json_t *after = json_object_get(js, "after");
    s->n_inputs = (uint32_t)json_object_size(ins);
    s->inputs = calloc(s->n_inputs + 1, sizeof *s->inputs);
    if (!s->inputs) {
      rc = zorch__error_oom();
      break;
    }
    const char *iname;
    json_t *iv;
    uint32_t k = 0;
    json_object_foreach(ins, iname, iv) {
      const char *fs = get_str(iv, "step"), *fo = get_str(iv, "output");
      int64_t u = fs ? zorch__plan_find(pl, fs) : -1;
      if (u < 0) {
        zorch__error_set(ZORCH_EINVALID,
                         "deployment: %s: input '%s' refers to step '%s', which is not an "
                         "earlier step",
                         where, iname, fs ? fs : "(missing)");
        rc = ZORCH_EINVALID;
        break;
      }
      int64_t oix = -1;
      for (uint32_t o = 0; fo && o < pl->steps[u].n_outputs; o++)
        if (!strcmp(pl->steps[u].outputs[o], fo)) oix = o;
      if (oix < 0) {
        zorch__error_set(ZORCH_EINVALID,
                         "deployment: %s: input '%s' refers to output '%s' of step '%s', "
                         "which it does not declare",
                         where, iname, fo ? fo : "(missing)", fs);
        rc = ZORCH_EINVALID;
        break;
      }
      s->inputs[k].name = iname;
      s->inputs[k].step = (uint32_t)u;
      s->inputs[k].output = (uint32_t)oix;
      succ_count[u]++;
      k++;
    }
    if (rc) break;
    for (size_t a = 0; a < json_array_size(after); a++) {
      const char *an = json_string_value(json_array_get(after, a));
      int64_t u = an ? zorch__plan_find(pl, an) : -1;
      if (u < 0) {
        zorch__error_set(ZORCH_EINVALID,
                         "deployment: %s: 'after' refers to step '%s', which is not an earlier "
                         "step",
                         where, an ? an : "(not a string)");
        rc = ZORCH_EINVALID;
        break;
      }
      succ_count[u]++;
    }
    if (rc) break;
    s->n_preds = s->n_inputs + (uint32_t)json_array_size(after);
    n_edges += s->n_preds;
    s->params = json_object_get(js, "params");
    if (!s->params) s->params = pl->empty;
    if (!json_is_object(s->params)) {
      rc = bad(where, "params must be an object");
      break;
    }
    s->params_canon = json_dumps(s->params, JSON_COMPACT | JSON_SORT_KEYS);
    s->version = get_str(js, "version");
    if (!s->version) s->version = pl->default_version;
    json_t *st = json_object_get(js, "settings");
    if (st) {
      s->own_env = true;
      if ((rc = parse_settings(pl, s, st, where))) break;
    } else {
      s->env = pl->defaults.env;
      s->retries = pl->defaults.retries;
      s->retry_delay = pl->defaults.retry_delay;
      s->retry_backoff = pl->defaults.retry_backoff;
      s->timeout = pl->defaults.timeout;
      s->cache = pl->defaults.cache;
      s->image = pl->defaults.image;
    }
  }
  if (rc) {
    free(succ_count);
    goto fail;
  }
  /* CSR successor lists */
  pl->succ = malloc((n_edges + 1) * sizeof *pl->succ);
  if (!pl->succ) {
    free(succ_count);
    rc = zorch__error_oom();
    goto fail;
  }
  uint32_t off = 0;
  for (size_t i = 0; i < n; i++) {
    pl->steps[i].succ_off = off;
    off += succ_count[i];
    pl->steps[i].n_succ = 0;
  }
  for (size_t i = 0; i < n; i++) {
    zorch__pstep *s = &pl->steps[i];
    for (uint32_t k2 = 0; k2 < s->n_inputs; k2++) {
      zorch__pstep *u = &pl->steps[s->inputs[k2].step];
      pl->succ[u->succ_off + u->n_succ++] = (uint32_t)i;
    }
    json_t *after = json_object_get(json_array_get(steps, i), "after");
    for (size_t a = 0; a < json_array_size(after); a++) {
      zorch__pstep *u = &pl->steps[zorch__plan_find(pl, json_string_value(json_array_get(after, a)))];
      pl->succ[u->succ_off + u->n_succ++] = (uint32_t)i;
    }
  }
  free(succ_count);
  *out = pl;
  return ZORCH_OK;
fail:
  zorch__plan_free(pl);
  return rc;
}

int zorch__plan_bind(zorch__plan *plan, const zorch_pipeline *p) {
  for (uint32_t i = 0; i < plan->n_steps; i++) {
    zorch__pstep *s = &plan->steps[i];
    if (s->kind != ZORCH__STEP_FUNCTION) continue;
    const zorch_step *st = p ? zorch_pipeline_step(p, s->name) : NULL;
    if (!st || st->kind != ZORCH__STEP_FUNCTION)
      return zorch__error_set(ZORCH_EMISMATCH,
                              "function step '%s' of the deployment has no function in this "
                              "program's pipeline '%s'",
                              s->name, p ? p->name : "(none)");
    s->fn = st->fn;
    s->payload = st->payload;
  }
  return ZORCH_OK;
}
