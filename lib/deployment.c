/* zorch — compiling pipelines to deployments, and loading deployments into plans. */
#include "deployment.h"
#include "store_layout.h"

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

/* The step entrypoint: the store by its URI (the step reads the deployment
 * from it); the deployment's path only when there is no URI (a deployment
 * compiled without a store). */
static void put_entrypoint(zorch__buf *b, const char *head, const char *dep_path,
                           const char *store_uri, const char *run_id) {
  zorch__buf_puts(b, "[");
  zorch__buf_puts(b, head);
  zorch__buf_puts(b, ",\"--zorch-step\",\"{step}\"");
  if (store_uri) {
    zorch__buf_puts(b, ",\"--zorch-store\",");
    zorch__buf_json_string(b, store_uri);
  } else {
    zorch__buf_puts(b, ",\"--zorch-deployment\",");
    zorch__buf_json_string(b, dep_path ? dep_path : "");
  }
  zorch__buf_puts(b, ",\"--zorch-run\",");
  zorch__buf_json_string(b, run_id ? run_id : "");
  zorch__buf_puts(b, "]");
}

/* Compiling: the plan is built first, from the pipeline in its own order
 * (each step put in its place in the plan); the document's steps are then
 * written in plan order from the plan, which holds all but a few rare
 * members (those are read from the pipeline's step). */
typedef struct compiler {
  const zorch_pipeline *p;
  const zorch__topo *t;
  json_t *params;             /* resolved pipeline params (only read) */
  const char *default_version;
  zorch__plan_builder *pb;
  uint32_t *succ_at;          /* where each plan step's successor list begins */
  zorch__map *memo;           /* command versions; NULL when no step needs one */
  zorch__strv *keep;
  uint8_t *rare;              /* per plan step: its text needs the pipeline's step */
  /* per plan step, for the text: its name in the plan, and the name's length
   * (small arrays: the plan's steps are large) */
  const char **names;
  uint8_t *name_len;
} compiler;

/* Step k was put: keep its name at hand for the text. */
static void note_name(const compiler *c, uint32_t k, uint32_t len) {
  if (!c->names) return;
  c->names[k] = zorch__plan_builder_plan(c->pb)->steps[k].name;
  c->name_len[k] = (uint8_t)len;
}

/* The step's resolved params (new), or NULL when it uses and sets none. */
static json_t *step_params(const compiler *c, const zorch_step *s) {
  if (!s->use_params.n && !s->params.n) return NULL;
  json_t *spj = json_object();
  for (size_t i = 0; i < s->use_params.n; i++) {
    json_t *v = json_object_get(c->params, s->use_params.v[i]);
    if (v) json_object_set(spj, s->use_params.v[i], v);
  }
  for (size_t i = 0; i < s->params.n; i++)
    json_object_set_new(spj, s->params.v[i].key, json_text(s->params.v[i].value));
  return spj;
}

/* The step's code version when it differs from the document's default, else
 * NULL.  A command step without one gets the identity of its files (*made,
 * malloc'd). */
static const char *step_version(const compiler *c, const zorch_step *s, char **made) {
  const char *ver = s->settings->version;
  *made = NULL;
  if (!ver && s->kind == ZORCH__STEP_COMMAND && !c->p->defaults.settings->version) {
    *made = command_version(s->argv.v, c->memo, c->keep);
    ver = *made ? *made : "unknown";
  }
  return ver && strcmp(ver, c->default_version) != 0 ? ver : NULL;
}

/* Step i of the pipeline, put in its place in the plan. */
static int step_plan(const compiler *c, uint32_t i, zorch__pin *pins, uint32_t *after,
                     uint32_t succ_off, uint32_t n_succ) {
  const zorch_pipeline *p = c->p;
  const zorch__topo *t = c->t;
  const zorch_step *s = p->steps[i];
  const uint32_t *edges = t->edges + t->eoff[i];
  for (size_t k = 0; k < s->n_inputs; k++) {
    uint32_t u = edges[k];
    const zorch__strv *outs = &p->steps[u]->outputs;
    uint32_t o = 0;
    while (o < outs->n && strcmp(outs->v[o], s->inputs[k].from_output) != 0) o++;
    pins[k] = (zorch__pin){.name = s->inputs[k].name, .step = t->pos[u], .output = o};
  }
  for (size_t k = 0; k < s->after.n; k++) after[k] = t->pos[edges[s->n_inputs + k]];
  char *made;
  const char *ver = step_version(c, s, &made);
  bool own = has_own_settings(s);
  if (c->rare) c->rare[t->pos[i]] = s->use_params.n || own; /* what the text needs of it */
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
                         .params = step_params(c, s),
                         .settings = own ? settings_json(s, p->defaults.settings) : NULL,
                         .version = ver,
                         .fn = s->fn,
                         .payload = s->payload,
                         .succ_off = succ_off,
                         .n_succ = n_succ};
  int rc = zorch__plan_builder_put(c->pb, t->pos[i], &def); /* takes params and settings */
  if (!rc) note_name(c, t->pos[i], s->name_len);
  free(made);
  return rc;
}

/* Every step of the plan, in plan order: most from the compact copy the
 * ordering made (read ahead), the rare ones from the pipeline's steps.  (Two
 * threads putting halves were no faster: this is bound by memory.) */
static int plan_steps(const compiler *c) {
  const zorch_pipeline *p = c->p;
  const zorch__topo *t = c->t;
  uint32_t n = (uint32_t)p->n_steps;
  zorch__pin *pins = NULL; /* one step's inputs and 'after' steps, resolved */
  uint32_t *after = NULL;
  size_t cap_pins = 0, cap_after = 0;
  zorch__step_def plain = {0};
  uint32_t succ_next = 0;
  int rc = ZORCH_OK;
  for (uint32_t k = 0; k < n && !rc; k++) {
    /* far ahead: the compact step and its edges' offset; nearer: what they point at */
    if (k + 32 < n) {
      __builtin_prefetch(&t->steps[t->order[k + 32]]);
      __builtin_prefetch(&t->eoff[t->order[k + 32]]);
      __builtin_prefetch(&t->succ_off[t->order[k + 32]]);
    }
    if (k + 16 < n) {
      uint32_t j = t->order[k + 16];
      __builtin_prefetch(t->steps[j].name);
      __builtin_prefetch(t->edges + t->eoff[j]);
    }
    if (k + 8 < n) { /* the places of its upstream steps */
      uint32_t j = t->order[k + 8];
      for (uint32_t e = t->eoff[j]; e < t->eoff[j + 1]; e++) __builtin_prefetch(&t->pos[t->edges[e]]);
    }
    uint32_t i = t->order[k];
    const zorch__tstep *ts = &t->steps[i];
    /* its successor list comes after those of the steps before it */
    uint32_t succ_off = succ_next, n_succ = t->succ_off[i + 1] - t->succ_off[i];
    c->succ_at[k] = succ_off;
    succ_next += n_succ;
    size_t n_in = ts->rare ? p->steps[i]->n_inputs : 0, n_edges = t->eoff[i + 1] - t->eoff[i];
    if (!pins || n_in > cap_pins || n_edges > cap_after) {
      cap_pins = n_in > cap_pins ? n_in : cap_pins ? cap_pins : 4;
      cap_after = n_edges > cap_after ? n_edges : cap_after ? cap_after : 4;
      zorch__pin *np = realloc(pins, cap_pins * sizeof *np);
      if (np) pins = np;
      uint32_t *na = realloc(after, cap_after * sizeof *na);
      if (na) after = na;
      if (!np || !na) {
        rc = zorch__error_oom();
        break;
      }
    }
    if (ts->rare) {
      rc = step_plan(c, i, pins, after, succ_off, n_succ);
      continue;
    }
    /* a function step with 'after' steps only (what the plain definition
     * leaves zero stays so from step to step) */
    const uint32_t *edges = t->edges + t->eoff[i];
    for (size_t e = 0; e < n_edges; e++) after[e] = t->pos[edges[e]];
    plain.name = ts->name;
    plain.name_len = ts->name_len;
    plain.kind = ts->kind;
    plain.after = after;
    plain.n_after = (uint32_t)n_edges;
    plain.fn = ts->fn;
    plain.payload = ts->payload;
    plain.succ_off = succ_off;
    plain.n_succ = n_succ;
    rc = zorch__plan_builder_put_plain(c->pb, k, &plain);
    if (!rc) note_name(c, k, ts->name_len);
  }
  free(pins);
  free(after);
  return rc;
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

/* ,"key":[ then "a","b" then ] : room 6 + strlen(key) + sum of (strlen + 3) */
static char *put_names_open(char *o, const char *key) {
  *o++ = ',';
  o = put_name(o, key, strlen(key));
  *o++ = ':';
  *o++ = '[';
  return o;
}

static char *put_names(char *o, const char *key, const char *const *v, size_t n) {
  o = put_names_open(o, key);
  for (size_t i = 0; i < n; i++) {
    if (i) *o++ = ',';
    o = put_name(o, v[i], strlen(v[i]));
  }
  *o++ = ']';
  return o;
}

/* One step of the document: plan step k, written from the plan (and, for a
 * rare member, from the pipeline's step). */
static int step_text(const compiler *c, zorch__buf *tb, uint32_t k) {
  const zorch__plan *pl = zorch__plan_builder_plan(c->pb);
  const zorch__pstep *ps = &pl->steps[k];
  uint32_t n_preds;
  const uint32_t *preds = zorch__plan_builder_preds(c->pb, k, &n_preds);
  uint32_t n_after = n_preds - ps->n_inputs;
  const zorch_step *s = c->rare[k] ? c->p->steps[c->t->order[k]] : NULL;
  /* what is made of names, at once */
  size_t need = 48 + c->name_len[k] + 18 + 12 * (size_t)ps->n_outputs + 16;
  for (uint32_t i = 0; i < n_after; i++) need += 3 + c->name_len[preds[i]];
  for (uint32_t i = 0; i < ps->n_outputs; i++) need += 3 + strlen(ps->outputs[i]);
  for (uint32_t i = 0; i < ps->n_inputs; i++) {
    const zorch__pstep *u = &pl->steps[ps->inputs[i].step];
    need += 32 + strlen(ps->inputs[i].name) + c->name_len[ps->inputs[i].step] +
            strlen(u->outputs[ps->inputs[i].output]);
  }
  if (s && s->use_params.n)
    for (size_t i = 0; i < s->use_params.n; i++) need += 3 + strlen(s->use_params.v[i]);
  if (zorch__buf_grow(tb, need)) return ZORCH_ENOMEM;
  char *o = tb->data + tb->len;
  if (k) *o++ = ',';
  o = PUT_RAW_LIT(o, "{\"name\":");
  o = put_name(o, c->names[k], c->name_len[k]);
  if (ps->kind == ZORCH__STEP_FUNCTION) {
    o = PUT_RAW_LIT(o, ",\"kind\":\"function\"");
  } else {
    o = PUT_RAW_LIT(o, ",\"kind\":\"command\"");
    tb->len = (size_t)(o - tb->data);
    uint32_t argc = 0;
    while (ps->argv[argc]) argc++;
    put_strv(tb, "command", (char **)ps->argv, argc); /* any text: escaped */
    if (zorch__buf_grow(tb, need)) return ZORCH_ENOMEM;
    o = tb->data + tb->len;
  }
  if (ps->n_inputs) {
    o = PUT_RAW_LIT(o, ",\"inputs\":{");
    for (uint32_t i = 0; i < ps->n_inputs; i++) {
      const zorch__pin *in = &ps->inputs[i];
      const zorch__pstep *u = &pl->steps[in->step];
      if (i) *o++ = ',';
      o = put_name(o, in->name, strlen(in->name));
      o = PUT_RAW_LIT(o, ":{\"step\":");
      o = put_name(o, c->names[in->step], c->name_len[in->step]);
      o = PUT_RAW_LIT(o, ",\"output\":");
      o = put_name(o, u->outputs[in->output], strlen(u->outputs[in->output]));
      *o++ = '}';
    }
    *o++ = '}';
  }
  if (ps->n_outputs) o = put_names(o, "outputs", ps->outputs, ps->n_outputs);
  if (n_after) {
    o = put_names_open(o, "after");
    for (uint32_t i = 0; i < n_after; i++) {
      if (i) *o++ = ',';
      o = put_name(o, c->names[preds[i]], c->name_len[preds[i]]);
    }
    *o++ = ']';
  }
  if (s && s->use_params.n)
    o = put_names(o, "uses", (const char *const *)s->use_params.v, s->use_params.n);
  tb->len = (size_t)(o - tb->data);
  /* the rest is rare: any text, escaped */
  if (ps->params != pl->empty) {
    zorch__buf_puts(tb, ",\"params\":");
    put_json(tb, ps->params);
  }
  if (ps->version != pl->default_version) {
    zorch__buf_puts(tb, ",\"version\":");
    zorch__buf_json_string(tb, ps->version);
  }
  if (s && has_own_settings(s)) {
    json_t *st = settings_json(s, c->p->defaults.settings);
    zorch__buf_puts(tb, ",\"settings\":");
    put_json(tb, st);
    json_decref(st);
  }
  return zorch__buf_put(tb, "}", 1); /* and the NUL after it */
}

/* Steps [from, to) of the document. */
typedef struct text_part {
  const compiler *c;
  zorch__buf *b;
  uint32_t from, to;
  int rc;
  char err[1024]; /* the message of rc, when run as a thread */
} text_part;

static int steps_text(text_part *tp) {
  int rc = ZORCH_OK;
  for (uint32_t k = tp->from; k < tp->to && !rc; k++) rc = step_text(tp->c, tp->b, k);
  return rc;
}

static void *steps_text_thread(void *arg) {
  text_part *tp = arg;
  tp->rc = steps_text(tp);
  if (tp->rc) snprintf(tp->err, sizeof tp->err, "%s", zorch_error_last()->message);
  return NULL;
}

/* The document's steps, appended to `b`: a large plan's second half is
 * written by a second thread meanwhile. */
static int write_steps(const compiler *c, zorch__buf *b) {
  uint32_t n = (uint32_t)c->p->n_steps;
  text_part first = {.c = c, .b = b, .from = 0, .to = n};
  zorch__buf b2 = ZORCH__BUF_INIT;
  text_part second = {.c = c, .b = &b2, .from = n / 2, .to = n};
  pthread_t t;
  bool split = n >= 8192 && sysconf(_SC_NPROCESSORS_ONLN) > 1 &&
               zorch__buf_grow(&b2, (size_t)(n - n / 2) * 48) == ZORCH_OK &&
               pthread_create(&t, NULL, steps_text_thread, &second) == 0;
  if (split) first.to = n / 2;
  int rc = steps_text(&first);
  if (split) {
    pthread_join(t, NULL);
    if (!rc && second.rc) rc = zorch__error_set(second.rc, "%s", second.err);
    if (!rc) rc = zorch__buf_put(b, b2.data, b2.len);
  }
  zorch__buf_free(&b2);
  return rc;
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
  int rc = zorch__pipeline_order(p, &topo, true);
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
  char *dep_key = info->run_id && !info->store_uri ? zorch__layout_deployment(info->run_id) : NULL;
  char *dep_path = info->store_uri               ? NULL
                   : info->store_path && dep_key ? zorch__path_join(info->store_path, dep_key)
                                                 : zorch__strdup(zorch__layout_deployment_file);
  free(dep_key);
  const char *store_uri = info->store_uri;
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
  zorch__buf_puts(&b, "},\"artifact_store\":{\"flavor\":");
  zorch__buf_json_string(&b, info->store_flavor ? info->store_flavor : "local");
  if (info->store_path || !store_uri) {
    zorch__buf_puts(&b, ",\"path\":");
    zorch__buf_json_string(&b, info->store_path ? info->store_path : "");
  }
  if (store_uri) {
    zorch__buf_puts(&b, ",\"uri\":");
    zorch__buf_json_string(&b, store_uri);
  }
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
  put_entrypoint(&b, json_prog.data, dep_path, store_uri, info->run_id);
  zorch__buf_free(&json_prog);
  zorch__buf_puts(&b, ",\"command\":");
  zorch__buf cmdhead = ZORCH__BUF_INIT;
  zorch__buf_json_string(&cmdhead, zorch_cmd);
  zorch__buf_puts(&cmdhead, ",\"step\",\"run\"");
  put_entrypoint(&b, cmdhead.data, dep_path, store_uri, info->run_id);
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

  /* the plan: the header is parsed, the steps are put from the pipeline */
  zorch__plan_builder *pb = NULL;
  bool autover = false; /* command steps whose version is made from their files */
  if (!p->defaults.settings->version && p->n_function < p->n_steps)
    for (size_t i = 0; i < p->n_steps && !autover; i++)
      autover = p->steps[i]->kind == ZORCH__STEP_COMMAND && !p->steps[i]->settings->version;
  zorch__map *memo = autover ? zorch__map_new(8) : NULL;
  zorch__strv keep = {0};
  uint32_t *pred_count = zorch__big_calloc(p->n_steps, sizeof *pred_count);
  uint32_t *name_off = zorch__big_calloc(p->n_steps + 1, sizeof *name_off);
  compiler c = {.p = p, .t = &topo, .params = params, .default_version = default_version,
                .memo = memo, .keep = &keep};
  if (out) {
    c.rare = calloc(p->n_steps, 1);
    c.names = malloc(p->n_steps * sizeof *c.names);
    c.name_len = malloc(p->n_steps);
  }
  rc = (autover && !memo) || !pred_count || !name_off || (out && (!c.rare || !c.names || !c.name_len))
           ? zorch__error_oom()
           : ZORCH_OK;
  if (!rc) rc = zorch__plan_builder_new(&pb, true);
  if (!rc) rc = zorch__plan_builder_feed(pb, b.data, b.len);
  if (!rc) {
    /* in pipeline order (the arrays it reads are in that order; the writes
     * land in small arrays), then the offsets summed up in plan order */
    name_off[0] = 0;
    for (size_t i = 0; i < p->n_steps; i++) {
      uint32_t k = topo.pos[i];
      pred_count[k] = topo.eoff[i + 1] - topo.eoff[i];
      name_off[k + 1] = topo.steps[i].name_len + 1;
    }
    for (size_t k = 0; k < p->n_steps; k++) name_off[k + 1] += name_off[k];
    c.pb = pb;
    c.succ_at = zorch__big_calloc(p->n_steps + 1, sizeof *c.succ_at);
    rc = c.succ_at ? zorch__plan_builder_direct(pb, (uint32_t)p->n_steps, pred_count, name_off, c.succ_at)
                   : zorch__error_oom(); /* succ_at is the builder's now */
  }
  if (!rc) rc = plan_steps(&c);
  if (!rc && out) rc = write_steps(&c, &b);
  zorch__buf_puts(&b, "]}");
  if (pb && !rc) rc = zorch__plan_builder_feed(pb, "]}", 2);
  zorch__big_free(pred_count);
  zorch__big_free(name_off);
  free(c.rare);
  free(c.names);
  free(c.name_len);
  json_decref(params);
  zorch__map_free(memo);
  zorch__strv_clear(&keep);
  free(default_cmd);
  free(dep_path);
  zorch__topo_free(&topo);
  if (!rc && (!b.data || b.len == 0)) rc = zorch__error_oom();
  zorch__plan *plan = NULL;
  if (pb) {
    if (rc) zorch__plan_builder_free(pb);
    else rc = zorch__plan_builder_finish(pb, &plan);
  }
  if (plan_out) *plan_out = plan;
  else zorch__plan_free(plan);
  if (rc || !out) {
    zorch__buf_free(&b);
    return rc;
  }
  *out = zorch__buf_detach(&b);
  return ZORCH_OK;
}
