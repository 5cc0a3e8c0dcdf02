/* zorch — step records: their memory, their JSON line (the journal's and a
 * step record file's), reading them back, and the outputs JSON of a cache
 * entry. */
#include "steprec.h"

#include <dirent.h>

#include "status.h"
#include "store.h"

size_t zorch__step_recs_count_outputs(const zorch__plan *plan, uint32_t lo, uint32_t hi) {
  size_t n = 0;
  for (uint32_t i = lo; i < hi; i++) n += plan->steps[i].n_outputs;
  return n;
}

void zorch__step_recs_init(const zorch__plan *plan, zorch__step_rec *recs, zorch__output_rec *outs,
                           char *keys, uint32_t lo, uint32_t hi, size_t o) {
  for (uint32_t i = lo; i < hi; i++) {
    recs[i].exit_code = -1;
    recs[i].outputs = outs + o;
    recs[i].cache_key = keys ? keys + (size_t)i * ZORCH__DIGEST_HEX : NULL;
    for (uint32_t k = 0; k < plan->steps[i].n_outputs; k++)
      recs[i].outputs[k].name = plan->steps[i].outputs[k];
    o += plan->steps[i].n_outputs;
  }
}

zorch__step_rec *zorch__step_recs_alloc(uint32_t n, size_t total_out, bool with_keys,
                                        zorch__output_rec **outs_out, char **keys_out) {
  zorch__step_rec *recs = zorch__big_calloc(n ? n : 1, sizeof *recs);
  zorch__output_rec *outs = zorch__big_calloc(total_out ? total_out : 1, sizeof *outs);
  char *keys = with_keys ? zorch__big_calloc(n ? n : 1, ZORCH__DIGEST_HEX) : NULL;
  if (!recs || !outs || (with_keys && !keys)) {
    zorch__big_free(recs);
    zorch__big_free(outs);
    zorch__big_free(keys);
    return NULL;
  }
  /* what zorch__step_recs_free frees, even for 0 steps */
  recs[0].outputs = outs;
  recs[0].cache_key = keys;
  *outs_out = outs;
  *keys_out = keys;
  return recs;
}

zorch__step_rec *zorch__step_recs_new(const zorch__plan *plan) {
  zorch__output_rec *outs;
  char *keys;
  zorch__step_rec *recs = zorch__step_recs_alloc(
      plan->n_steps, zorch__step_recs_count_outputs(plan, 0, plan->n_steps), true, &outs, &keys);
  if (recs) zorch__step_recs_init(plan, recs, outs, keys, 0, plan->n_steps, 0);
  return recs;
}

void zorch__step_recs_free(zorch__step_rec *recs, uint32_t n) {
  if (!recs) return;
  for (uint32_t i = 0; i < n; i++) free(recs[i].error);
  zorch__big_free(recs[0].outputs);
  zorch__big_free(recs[0].cache_key);
  zorch__big_free(recs);
}

int zorch__step_rec_json(zorch__buf *b, const zorch__plan *plan, uint32_t i,
                         const zorch__step_rec *r) {
  const zorch__pstep *s = &plan->steps[i];
  bool with_outputs = r->status == ZORCH_STATUS_COMPLETED || r->status == ZORCH_STATUS_CACHED;
  /* room for the longest line these fields make, reserved once */
  size_t name_len = strlen(s->name), err_len = r->error ? strlen(r->error) : 0;
  size_t room = 256 + 2 * ZORCH__TIME_MAX + ZORCH__JSON_STRING_MAX(name_len) + ZORCH__DIGEST_HEX +
                (r->error ? ZORCH__JSON_STRING_MAX(err_len) : 0);
  for (uint32_t k = 0; with_outputs && k < s->n_outputs; k++)
    room += 64 + ZORCH__DIGEST_HEX + 20 + ZORCH__JSON_STRING_MAX(strlen(s->outputs[k]));
  if (zorch__buf_grow(b, room)) return ZORCH_ENOMEM;
  char *p = b->data + b->len;
  p = ZORCH__PUT_LIT(p, "{\"step\":");
  p = zorch__put_json_string(p, s->name, name_len);
  p = ZORCH__PUT_LIT(p, ",\"status\":\"");
  const char *st = zorch_status_name(r->status);
  size_t st_len = strlen(st);
  memcpy(p, st, st_len);
  p += st_len;
  p = ZORCH__PUT_LIT(p, "\",\"attempt\":");
  p = zorch__put_u64(p, r->attempts);
  p = ZORCH__PUT_LIT(p, ",\"started\":");
  p = zorch__put_time(p, r->started);
  p = ZORCH__PUT_LIT(p, ",\"finished\":");
  p = zorch__put_time(p, r->finished);
  if (r->exit_code >= 0) {
    p = ZORCH__PUT_LIT(p, ",\"exit\":");
    p = zorch__put_u64(p, (uint64_t)r->exit_code);
  }
  if (r->cache_key && r->cache_key[0]) {
    p = ZORCH__PUT_LIT(p, ",\"cache_key\":\"");
    size_t kl = strnlen(r->cache_key, ZORCH__DIGEST_HEX - 1);
    memcpy(p, r->cache_key, kl);
    p += kl;
    *p++ = '"';
  }
  if (r->error) {
    p = ZORCH__PUT_LIT(p, ",\"error\":");
    p = zorch__put_json_string(p, r->error, err_len);
  }
  if (with_outputs) {
    p = ZORCH__PUT_LIT(p, ",\"outputs\":[");
    for (uint32_t k = 0; k < s->n_outputs; k++) {
      const zorch__output_rec *o = &r->outputs[k];
      if (k) *p++ = ',';
      p = ZORCH__PUT_LIT(p, "{\"name\":");
      p = zorch__put_json_string(p, s->outputs[k], strlen(s->outputs[k]));
      p = ZORCH__PUT_LIT(p, ",\"digest\":\"");
      size_t dl = strnlen(o->digest, ZORCH__DIGEST_HEX - 1);
      memcpy(p, o->digest, dl);
      p += dl;
      p = ZORCH__PUT_LIT(p, "\",\"size\":");
      p = zorch__put_u64(p, o->size);
      if (o->is_dir) p = ZORCH__PUT_LIT(p, ",\"kind\":\"dir\"}");
      else p = ZORCH__PUT_LIT(p, ",\"kind\":\"file\"}");
    }
    *p++ = ']';
  }
  *p++ = '}';
  *p = '\0';
  b->len = (size_t)(p - b->data);
  return ZORCH_OK;
}

int zorch__step_rec_apply(const zorch__plan *plan, zorch__step_rec *recs, const char *line,
                          size_t len) {
  json_error_t err;
  json_t *o = json_loadb(line, len, 0, &err);
  if (!o) return ZORCH_OK; /* an unreadable record is skipped; the step shows its older state */
  const char *name = json_string_value(json_object_get(o, "step"));
  int64_t i = name ? zorch__plan_find(plan, name) : -1;
  int st = zorch__status_parse(json_string_value(json_object_get(o, "status")));
  if (i < 0 || st < 0) {
    json_decref(o);
    return ZORCH_OK;
  }
  zorch__step_rec *r = &recs[i];
  r->status = st;
  r->attempts = (uint32_t)json_integer_value(json_object_get(o, "attempt"));
  r->started = json_number_value(json_object_get(o, "started"));
  r->finished = json_number_value(json_object_get(o, "finished"));
  json_t *ex = json_object_get(o, "exit");
  r->exit_code = ex ? (int)json_integer_value(ex) : -1;
  const char *ck = json_string_value(json_object_get(o, "cache_key"));
  if (r->cache_key) snprintf(r->cache_key, ZORCH__DIGEST_HEX, "%s", ck && zorch__is_digest(ck) ? ck : "");
  free(r->error);
  const char *e = json_string_value(json_object_get(o, "error"));
  r->error = e ? zorch__strdup(e) : NULL;
  json_t *outs = json_object_get(o, "outputs");
  const zorch__pstep *s = &plan->steps[i];
  for (uint32_t k = 0; k < s->n_outputs; k++) r->outputs[k].set = false;
  for (size_t k = 0; k < json_array_size(outs); k++) {
    json_t *jo = json_array_get(outs, k);
    const char *on = json_string_value(json_object_get(jo, "name"));
    const char *dg = json_string_value(json_object_get(jo, "digest"));
    for (uint32_t q = 0; on && dg && q < s->n_outputs; q++) {
      if (strcmp(s->outputs[q], on) != 0 || !zorch__is_digest(dg)) continue;
      zorch__output_rec *out = &r->outputs[q];
      memcpy(out->digest, dg, ZORCH__DIGEST_HEX);
      out->size = (uint64_t)json_integer_value(json_object_get(jo, "size"));
      const char *kind = json_string_value(json_object_get(jo, "kind"));
      out->is_dir = kind && !strcmp(kind, "dir");
      out->set = true;
    }
  }
  json_decref(o);
  return ZORCH_OK;
}

int zorch__step_rec_write(zorch__store *st, const zorch__plan *plan, uint32_t i,
                          const zorch__step_rec *r) {
  zorch__buf b = ZORCH__BUF_INIT;
  zorch__step_rec_json(&b, plan, i, r);
  char *rel = zorch__asprintf("runs/%s/steps/%s.json", plan->run_id, plan->steps[i].name);
  int rc = rel && b.data ? zorch__store_write_doc(st, rel, b.data, b.len, true) : zorch__error_oom();
  free(rel);
  zorch__buf_free(&b);
  return rc;
}

static int apply_line(const char *line, size_t len, void *payload) {
  void **pp = payload;
  return zorch__step_rec_apply(pp[0], pp[1], line, len);
}

int zorch__step_recs_load(const zorch__plan *plan, zorch__step_rec *recs, const char *run_dir) {
  void *pp[2] = {(void *)plan, recs};
  char *jp = zorch__path_join(run_dir, "journal.jsonl");
  int rc = jp ? zorch__journal_replay(jp, apply_line, pp) : zorch__error_oom();
  free(jp);
  if (rc && rc != ZORCH_ENOTFOUND) return rc;
  char *sd = zorch__path_join(run_dir, "steps");
  DIR *d = sd ? opendir(sd) : NULL;
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      size_t l = strlen(de->d_name);
      if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
      char *p = zorch__path_join(sd, de->d_name);
      char *text = NULL;
      size_t tl = 0;
      if (p && zorch__read_file(p, &text, &tl) == ZORCH_OK)
        zorch__step_rec_apply(plan, recs, text, tl);
      free(text);
      free(p);
    }
    closedir(d);
  }
  free(sd);
  return ZORCH_OK;
}

char *zorch__outputs_json(const zorch__plan *plan, uint32_t i, const zorch__step_rec *r) {
  zorch__buf b = ZORCH__BUF_INIT;
  if (zorch__outputs_json_to(&b, plan, i, r)) {
    zorch__buf_free(&b);
    return NULL;
  }
  return zorch__buf_detach(&b);
}

int zorch__outputs_json_to(zorch__buf *out, const zorch__plan *plan, uint32_t i,
                           const zorch__step_rec *r) {
  zorch__buf b = *out;
  b.len = 0;
  zorch__buf_puts(&b, "[");
  const zorch__pstep *s = &plan->steps[i];
  for (uint32_t k = 0; k < s->n_outputs; k++) {
    zorch__buf_puts(&b, k ? ",{\"name\":" : "{\"name\":");
    zorch__buf_json_string(&b, s->outputs[k]);
    zorch__buf_cat(&b, ",\"digest\":\"", r->outputs[k].digest, "\",\"size\":", NULL);
    zorch__buf_u64(&b, r->outputs[k].size);
    zorch__buf_cat(&b, ",\"kind\":\"", r->outputs[k].is_dir ? "dir" : "file", "\"}", NULL);
  }
  int rc = zorch__buf_puts(&b, "]");
  *out = b;
  return rc;
}
