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
  char *exe = zorch__which(argv[0]);
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

static json_t *json_text(const char *text) {
  return json_loads(text, JSON_DECODE_ANY, NULL);
}

/* effective settings of a step: step value, else pipeline default, else built-in */
static json_t *settings_json(const zorch_step *s, const zorch__settings *d) {
  const zorch__settings *st = s->settings;
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
  const zorch__settings *st = s->settings;
  return st->has_cpu || st->has_memory || st->has_gpu || st->has_retry || st->has_timeout ||
         st->has_cache || st->image || st->env.n || st->flavor.n;
}

static void put_json(zorch__buf *b, json_t *v) {
  char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
  zorch__buf_puts(b, t ? t : "null");
  free(t);
}

static void put_strv(zorch__buf *b, const char *key, char **v, size_t n) {
  zorch__buf_cat(b, ",\"", key, "\":[", NULL);
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

/* The steps in plan order: their text (when `text`) and their plan steps
 * (when `pb`), in one pass or in two (one per thread). */
typedef struct step_pass {
  const zorch_pipeline *p;
  const zorch__topo *t;
  const size_t *eoff;         /* pipeline index -> its first entry in t->edges (NULL: in order) */
  json_t *params;             /* resolved pipeline params (only read) */
  const char *default_version;
  zorch__buf *text;           /* NULL: no text */
  zorch__plan_builder *pb;    /* NULL: no plan */
  zorch__map *memo;           /* command versions; NULL when no step needs one */
  zorch__strv *keep;
  int rc;
  char err[1024];             /* the message of rc, when run as a thread */
} step_pass;

/* The step's resolved params (new), or NULL when it uses and sets none. */
static json_t *step_params(const step_pass *sp, const zorch_step *s) {
  if (!s->use_params.n && !s->params.n) return NULL;
  json_t *spj = json_object();
  for (size_t i = 0; i < s->use_params.n; i++) {
    json_t *v = json_object_get(sp->params, s->use_params.v[i]);
    if (v) json_object_set(spj, s->use_params.v[i], v);
  }
  for (size_t i = 0; i < s->params.n; i++)
    json_object_set_new(spj, s->params.v[i].key, json_text(s->params.v[i].value));
  return spj;
}

/* The step's code version when it differs from the document's default, else
 * NULL.  A command step without one gets the identity of its files (*made,
 * malloc'd; a pass without a memo never meets such a step: see the caller). */
static const char *step_version(const step_pass *sp, const zorch_step *s, char **made) {
  const char *ver = s->settings->version;
  *made = NULL;
  if (!ver && s->kind == ZORCH__STEP_COMMAND && !sp->p->defaults.settings->version) {
    *made = sp->memo ? command_version(s->argv.v, sp->memo, sp->keep) : NULL;
    ver = *made ? *made : "unknown";
  }
  return ver && strcmp(ver, sp->default_version) != 0 ? ver : NULL;
}

/* Names of steps, outputs, inputs and params were checked when they were
 * given ([A-Za-z][A-Za-z0-9_-]*): they are written as they are, no escape.
 * The writers below write into room the caller made. */
static char *put_raw(char *o, const char *s, size_t len) {
  memcpy(o, s, len);
  return o + len;
}
#define PUT_RAW_LIT(o, lit) put_raw((o), (lit), sizeof(lit) - 1)

static char *put_name(char *o, const char *name, size_t len) {
  *o++ = '"';
  o = put_raw(o, name, len);
  *o++ = '"';
  return o;
}

/* ,"key":["a","b"] of names; room: 6 + strlen(key) + sum of (strlen + 3) */
static char *put_names(char *o, const char *key, char **v, size_t n) {
  *o++ = ',';
  o = put_name(o, key, strlen(key));
  *o++ = ':';
  *o++ = '[';
  for (size_t i = 0; i < n; i++) {
    if (i) *o++ = ',';
    o = put_name(o, v[i], strlen(v[i]));
  }
  *o++ = ']';
  return o;
}

static size_t names_room(const char *key, char **v, size_t n) {
  size_t need = 6 + strlen(key);
  for (size_t i = 0; i < n; i++) need += strlen(v[i]) + 3;
  return need;
}

/* The step's object in the document. */
static int step_text(const step_pass *sp, const zorch_step *s, bool first) {
  zorch__buf *tb = sp->text;
  /* what every step has, and its names, at once */
  size_t need = 48 + s->name_len;
  if (s->after.n) need += names_room("after", s->after.v, s->after.n);
  if (s->outputs.n) need += names_room("outputs", s->outputs.v, s->outputs.n);
  if (s->use_params.n) need += names_room("uses", s->use_params.v, s->use_params.n);
  for (size_t i = 0; i < s->n_inputs; i++)
    need += 32 + strlen(s->inputs[i].name) + strlen(s->inputs[i].from_step) +
            strlen(s->inputs[i].from_output);
  if (zorch__buf_grow(tb, need)) return ZORCH_ENOMEM;
  char *o = tb->data + tb->len;
  if (!first) *o++ = ',';
  o = PUT_RAW_LIT(o, "{\"name\":");
  o = put_name(o, s->name, s->name_len);
  if (s->kind == ZORCH__STEP_FUNCTION) {
    o = PUT_RAW_LIT(o, ",\"kind\":\"function\"");
  } else {
    o = PUT_RAW_LIT(o, ",\"kind\":\"command\"");
    tb->len = (size_t)(o - tb->data);
    put_strv(tb, "command", s->argv.v, s->argv.n); /* any text: escaped */
    if (zorch__buf_grow(tb, need)) return ZORCH_ENOMEM;
    o = tb->data + tb->len;
  }
  if (s->n_inputs) {
    o = PUT_RAW_LIT(o, ",\"inputs\":{");
    for (size_t i = 0; i < s->n_inputs; i++) {
      const zorch__input *in = &s->inputs[i];
      if (i) *o++ = ',';
      o = put_name(o, in->name, strlen(in->name));
      o = PUT_RAW_LIT(o, ":{\"step\":");
      o = put_name(o, in->from_step, strlen(in->from_step));
      o = PUT_RAW_LIT(o, ",\"output\":");
      o = put_name(o, in->from_output, strlen(in->from_output));
      *o++ = '}';
    }
    *o++ = '}';
  }
  if (s->outputs.n) o = put_names(o, "outputs", s->outputs.v, s->outputs.n);
  if (s->after.n) o = put_names(o, "after", s->after.v, s->after.n);
  if (s->use_params.n) o = put_names(o, "uses", s->use_params.v, s->use_params.n);
  tb->len = (size_t)(o - tb->data);
  /* the rest is rare: any text, escaped */
  json_t *spj = step_params(sp, s);
  if (spj) {
    zorch__buf_puts(tb, ",\"params\":");
    put_json(tb, spj);
    json_decref(spj);
  }
  char *made;
  const char *ver = step_version(sp, s, &made);
  if (ver) {
    zorch__buf_puts(tb, ",\"version\":");
    zorch__buf_json_string(tb, ver);
  }
  free(made);
  if (has_own_settings(s)) {
    json_t *st = settings_json(s, sp->p->defaults.settings);
    zorch__buf_puts(tb, ",\"settings\":");
    put_json(tb, st);
    json_decref(st);
  }
  return zorch__buf_put(tb, "}", 1); /* and the NUL after it */
}

/* The step's place in the plan, built from the pipeline directly. */
static int step_plan(const step_pass *sp, const zorch_step *s, const uint32_t *edges,
                     zorch__pin *pins, uint32_t *after) {
  const zorch_pipeline *p = sp->p;
  const zorch__topo *t = sp->t;
  for (size_t k = 0; k < s->n_inputs; k++) {
    uint32_t u = edges[k];
    const zorch__strv *outs = &p->steps[u]->outputs;
    uint32_t o = 0;
    while (o < outs->n && strcmp(outs->v[o], s->inputs[k].from_output) != 0) o++;
    pins[k] = (zorch__pin){.name = s->inputs[k].name, .step = ZORCH__TOPO_POS(t, u), .output = o};
  }
  for (size_t k = 0; k < s->after.n; k++) after[k] = ZORCH__TOPO_POS(t, edges[s->n_inputs + k]);
  char *made;
  const char *ver = step_version(sp, s, &made);
  zorch__step_def def = {.name = s->name,
                         .name_len = s->name_len,
                         .kind = s->kind,
                         .command = (const char *const *)s->argv.v,
                         .n_command = (uint32_t)s->argv.n,
                         .outputs = (const char *const *)s->outputs.v,
                         .n_outputs = (uint32_t)s->outputs.n,
                         .inputs = pins,
                         .n_inputs = (uint32_t)s->n_inputs,
                         .after = after,
                         .n_after = (uint32_t)s->after.n,
                         .params = step_params(sp, s),
                         .settings = has_own_settings(s) ? settings_json(s, p->defaults.settings) : NULL,
                         .version = ver,
                         .fn = s->fn,
                         .payload = s->payload};
  int rc = zorch__plan_builder_step(sp->pb, &def); /* takes params and settings */
  free(made);
  return rc;
}

static int steps_pass(step_pass *sp) {
  const zorch_pipeline *p = sp->p;
  const zorch__topo *t = sp->t;
  /* one step's inputs and 'after' steps, resolved */
  zorch__pin *pins = NULL;
  uint32_t *after = NULL;
  size_t cap_pins = 0, cap_after = 0;
  size_t e = 0; /* in pipeline order: the step's first edge */
  int rc = ZORCH_OK;
  for (size_t oi = 0; oi < p->n_steps && !rc; oi++) {
    uint32_t i = ZORCH__TOPO_AT(t, oi);
    const zorch_step *s = p->steps[i];
    if (!t->order) zorch__prefetch_step(p, i);
    if (sp->text) rc = step_text(sp, s, oi == 0);
    if (sp->pb && !rc) {
      if (!pins || s->n_inputs > cap_pins || s->after.n > cap_after) {
        cap_pins = s->n_inputs > cap_pins ? s->n_inputs : cap_pins ? cap_pins : 4;
        cap_after = s->after.n > cap_after ? s->after.n : cap_after ? cap_after : 4;
        zorch__pin *np = realloc(pins, cap_pins * sizeof *np);
        if (np) pins = np;
        uint32_t *na = realloc(after, cap_after * sizeof *na);
        if (na) after = na;
        if (!np || !na) {
          rc = zorch__error_oom();
          break;
        }
      }
      rc = step_plan(sp, s, t->edges + (sp->eoff ? sp->eoff[i] : e), pins, after);
    }
    e += s->n_inputs + s->after.n;
  }
  free(pins);
  free(after);
  return rc;
}

static void *steps_pass_thread(void *arg) {
  step_pass *sp = arg;
  sp->rc = steps_pass(sp);
  if (sp->rc) snprintf(sp->err, sizeof sp->err, "%s", zorch_error_last()->message);
  return NULL;
}

/* The document lists the steps in topological order.  What most steps share
 * is said once: "defaults" holds the effective settings and code version of a
 * step that sets none of its own, "entrypoint" the command template of each
 * kind ({step} stands for the step's name).  A step carries only the fields
 * that are not empty and the settings it overrides, so a large pipeline costs
 * tens of bytes per step. */
int zorch__deployment_compile(char **out, zorch__plan **plan_out, const zorch_pipeline *p,
                              const zorch__compile_info *info) {
  if (out) *out = NULL;
  if (plan_out) *plan_out = NULL;
  zorch__topo topo;
  int rc = zorch__pipeline_order(p, &topo, plan_out != NULL);
  if (rc) return rc;
  json_t *overrides = NULL;
  if (info->params_json && *info->params_json) {
    json_error_t err;
    overrides = json_loads(info->params_json, 0, &err);
    if (!overrides || !json_is_object(overrides)) {
      json_decref(overrides);
      zorch__topo_free(&topo);
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
        zorch__topo_free(&topo);
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
  const char *zorch_cmd = info->zorch_command;
  char *default_cmd = zorch_cmd && *zorch_cmd ? NULL : zorch__asprintf("%s/zorch", ZORCH_BINDIR);
  if (!zorch_cmd || !*zorch_cmd) zorch_cmd = default_cmd;
  char *dep_path = info->store_path && info->run_id
                       ? zorch__asprintf("%s/runs/%s/deployment.json", info->store_path,
                                         info->run_id)
                       : zorch__strdup("deployment.json");
  const char *default_version =
      p->defaults.settings->version ? p->defaults.settings->version : zorch__program_version();

  /* the header: written as text, and parsed for the plan (it is small) */
  zorch__buf b = ZORCH__BUF_INIT;
  zorch__buf_grow(&b, 1024 + (out ? p->n_steps * 64 : 0));
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
  if (p->entrypoint.n) {
    for (size_t i = 0; i < p->entrypoint.n; i++) {
      if (i) zorch__buf_put(&json_prog, ",", 1);
      zorch__buf_json_string(&json_prog, p->entrypoint.v[i]);
    }
  } else {
    zorch__buf_json_string(&json_prog, zorch__program_path());
  }
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
  none.settings = (zorch__settings *)&zorch__no_settings;
  json_t *dset = settings_json(&none, p->defaults.settings);
  put_json(&b, dset);
  json_decref(dset);
  zorch__buf_puts(&b, "},\"steps\":[");

  /* the plan: the header is parsed, the steps are added from the pipeline */
  zorch__plan_builder *pb = NULL;
  size_t *eoff = NULL;      /* pipeline index -> its first entry in topo.edges */
  size_t autover_steps = 0; /* command steps whose version is made from their files */
  if (!p->defaults.settings->version && p->n_function < p->n_steps)
    for (size_t i = 0; i < p->n_steps; i++)
      if (p->steps[i]->kind == ZORCH__STEP_COMMAND && !p->steps[i]->settings->version) autover_steps++;
  if (plan_out) {
    rc = zorch__plan_builder_new(&pb, true);
    if (!rc) rc = zorch__plan_builder_reserve(pb, (uint32_t)p->n_steps, p->n_edges);
    if (!rc) rc = zorch__plan_builder_feed(pb, b.data, b.len);
    if (!rc && topo.order) { /* out of pipeline order: each step's edges by index */
      eoff = malloc((p->n_steps + 1) * sizeof *eoff);
      if (!eoff) rc = zorch__error_oom();
      else eoff[0] = 0;
      for (size_t i = 0; eoff && i < p->n_steps; i++)
        eoff[i + 1] = eoff[i] + p->steps[i]->n_inputs + p->steps[i]->after.n;
    }
  }

  zorch__map *memo = autover_steps ? zorch__map_new(8) : NULL;
  zorch__strv keep = {0};
  step_pass text = {.p = p, .t = &topo, .eoff = eoff, .params = params,
                    .default_version = default_version, .text = out ? &b : NULL, .pb = pb,
                    .memo = memo, .keep = &keep};
  if (!rc && autover_steps && !memo) rc = zorch__error_oom();
  if (!rc) {
    /* A large plan is built by a second thread while this one writes the
     * text (both only read the pipeline).  Not when a command step needs its
     * version computed from files: that is done once, here. */
    step_pass plan = text;
    pthread_t t;
    bool split = out && pb && p->n_steps >= 8192 && !autover_steps &&
                 sysconf(_SC_NPROCESSORS_ONLN) > 1;
    if (split) {
      text.pb = NULL;
      plan.text = NULL;
      plan.memo = NULL;
      plan.keep = NULL;
      split = pthread_create(&t, NULL, steps_pass_thread, &plan) == 0;
      if (!split) text.pb = pb;
    }
    rc = steps_pass(&text);
    if (split) {
      pthread_join(t, NULL);
      if (!rc && plan.rc) rc = zorch__error_set(plan.rc, "%s", plan.err);
    }
  }
  zorch__buf_puts(&b, "]}");
  if (pb && !rc) rc = zorch__plan_builder_feed(pb, "]}", 2);
  json_decref(params);
  zorch__map_free(memo);
  zorch__strv_clear(&keep);
  free(default_cmd);
  free(dep_path);
  zorch__topo_free(&topo);
  free(eoff);
  if (!rc && (!b.data || b.len == 0)) rc = zorch__error_oom();
  if (pb) {
    if (rc) zorch__plan_builder_free(pb);
    else rc = zorch__plan_builder_finish(pb, plan_out);
  }
  if (rc || !out) {
    zorch__buf_free(&b);
    return rc;
  }
  *out = zorch__buf_detach(&b);
  return ZORCH_OK;
}
