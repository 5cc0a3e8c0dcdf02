/* zorch — the layout of the artifact store (see store_layout.h).  The only
 * file of libzorch that spells a key; tests/store-layout.sh checks that. */
#include "store_layout.h"

#define RUNS "runs"
#define STEPS "steps"
#define LOGS "logs"
#define CACHE "cache"

const char zorch__layout_artifacts[] = "artifacts";
const char zorch__layout_tmp[] = "tmp";
const char zorch__layout_runs[] = RUNS "/";
const char *const zorch__layout_local_dirs[] = {zorch__layout_tmp, zorch__layout_artifacts, RUNS,
                                                CACHE, NULL};

void zorch__layout_artifact(char out[ZORCH__LAYOUT_ARTIFACT_MAX], const char *digest) {
  /* on the hot path of every publish and lookup: no printf */
  memcpy(out, "artifacts/", 10);
  out[10] = digest[0];
  out[11] = digest[1];
  out[12] = '/';
  memcpy(out + 13, digest, 64);
  out[77] = '\0';
}

void zorch__layout_artifact_shard(char out[ZORCH__LAYOUT_ARTIFACT_MAX], const char *digest) {
  zorch__layout_artifact(out, digest);
  out[12] = '\0';
}

char *zorch__layout_run(const char *run_id) { return zorch__asprintf(RUNS "/%s", run_id); }

char *zorch__layout_run_record(const char *run_id) {
  return zorch__asprintf(RUNS "/%s/run.json", run_id);
}

const char zorch__layout_deployment_file[] = "deployment.json";

char *zorch__layout_deployment(const char *run_id) {
  return zorch__asprintf(RUNS "/%s/%s", run_id, zorch__layout_deployment_file);
}

char *zorch__layout_journal(const char *run_id) {
  return zorch__asprintf(RUNS "/%s/journal.jsonl", run_id);
}

char *zorch__layout_step_record(const char *run_id, const char *step) {
  return zorch__asprintf(RUNS "/%s/" STEPS "/%s.json", run_id, step);
}

char *zorch__layout_step_records(const char *run_id) {
  return zorch__asprintf(RUNS "/%s/" STEPS "/", run_id);
}

char *zorch__layout_step_log(const char *run_id, const char *step) {
  char *logs = zorch__layout_logs(run_id);
  char *key = logs ? zorch__layout_step_log_in(logs, step) : NULL;
  free(logs);
  return key;
}

char *zorch__layout_logs(const char *run_id) { return zorch__asprintf(RUNS "/%s/" LOGS, run_id); }

char *zorch__layout_step_log_in(const char *logs_dir, const char *step) {
  return zorch__asprintf("%s/%s.log", logs_dir, step);
}

char *zorch__layout_schedule_deployment(const char *name) {
  return zorch__asprintf("schedules/%s/%s", name, zorch__layout_deployment_file);
}

char *zorch__layout_cache_index(const char *pipeline) {
  return zorch__asprintf(CACHE "/%s.jsonl", pipeline);
}

char *zorch__layout_cache_entry(const char *pipeline, const char *key) {
  return zorch__asprintf(CACHE "/%s/%s.json", pipeline, key);
}

char *zorch__layout_cache_entries(const char *pipeline) {
  return zorch__asprintf(CACHE "/%s/", pipeline);
}

/* The part of `key` after the prefix `pre`, or NULL. */
static const char *after(const char *key, const char *pre) {
  size_t n = strlen(pre);
  return key && !strncmp(key, pre, n) ? key + n : NULL;
}

bool zorch__layout_run_of(const char *key, char *out, size_t n) {
  const char *id = after(key, zorch__layout_runs);
  size_t len = id ? strcspn(id, "/") : 0;
  if (!len || !id[len] || len >= n || id[0] == '.') return false;
  memcpy(out, id, len);
  out[len] = '\0';
  return true;
}

bool zorch__layout_is_run_record(const char *key) {
  const char *id = after(key, zorch__layout_runs);
  size_t len = id ? strcspn(id, "/") : 0;
  return len && !strcmp(id + len, "/run.json");
}

bool zorch__layout_is_step_record(const char *key) {
  const char *id = after(key, zorch__layout_runs);
  size_t len = id ? strcspn(id, "/") : 0;
  const char *rest = len ? after(id + len, "/" STEPS "/") : NULL;
  size_t rl = rest ? strlen(rest) : 0;
  return rl > 5 && !strchr(rest, '/') && !strcmp(rest + rl - 5, ".json");
}

bool zorch__layout_cache_key_of(const char *key, char *out, size_t n) {
  const char *p = after(key, CACHE "/");
  const char *slash = p ? strchr(p, '/') : NULL;
  if (!slash) return false;
  const char *k = slash + 1;
  size_t kl = strlen(k);
  if (kl <= 5 || strchr(k, '/') || strcmp(k + kl - 5, ".json") || kl - 5 >= n) return false;
  memcpy(out, k, kl - 5);
  out[kl - 5] = '\0';
  return true;
}
