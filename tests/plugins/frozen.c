/* A flavor plugin compiled against the frozen plugin ABI 1.0 header
 * (tests/plugins/frozen-1.0/zorch/plugin.h, never edited), loaded by the
 * current library in the registry test frozen_plugin_runs_a_pipeline.
 *
 * It uses every slot of the 1.0 host table a real flavor uses: log,
 * error_set, alloc/free, add_flavor, submission_get, submission_set_metadata,
 * and the in-process executor (executor_start/wait/cancel/release).  Its
 * check_config refuses {"label": ""}; its submit records metadata a test can
 * read back ("frozen_abi" = the ABI it was built for, "frozen_label" = the
 * config's label, "orchestrator_run_id" = "frozen-<run id>").
 */
#include <stdio.h>
#include <string.h>

#include <zorch/plugin.h>

#if ZORCH_PLUGIN_ABI_MAJOR != 1 || ZORCH_PLUGIN_ABI_MINOR != 0
#error "frozen.c must be built against the frozen 1.0 header (tests/plugins/frozen-1.0)"
#endif

typedef struct {
  const zorch_host *host;
} fz_ctx;

typedef struct {
  const zorch_host *host;
  void *exec;
} fz_run;

/* The value of "label" in a flat JSON object, or "" (enough for a fixture:
 * the host already validated the config against the schema). */
static void label_of(const char *config, char *out, size_t n) {
  out[0] = '\0';
  const char *k = config ? strstr(config, "\"label\"") : NULL;
  if (!k) return;
  const char *q = strchr(k + 7, '"');
  if (!q) return;
  const char *e = strchr(q + 1, '"');
  if (!e) return;
  snprintf(out, n, "%.*s", (int)(e - q - 1), q + 1);
}

static int fz_check_config(void *payload, const char *config_json) {
  const zorch_host *host = ((fz_ctx *)payload)->host;
  if (strstr(config_json, "\"label\"")) {
    char label[128];
    label_of(config_json, label, sizeof label);
    if (!label[0]) {
      host->error_set(host, ZORCH_EINVALID, "label must not be empty");
      return ZORCH_EINVALID;
    }
  }
  return ZORCH_OK;
}

static int fz_submit(void **out_run, void *payload, zorch_submission *sub) {
  const zorch_host *host = ((fz_ctx *)payload)->host;
  *out_run = NULL;
  fz_run *run = host->alloc(sizeof *run);
  if (!run) {
    host->error_set(host, ZORCH_ENOMEM, "out of memory");
    return ZORCH_ENOMEM;
  }
  run->host = host;
  run->exec = NULL;
  const char *config = host->submission_get(sub, "config");
  const char *run_id = host->submission_get(sub, "run_id");
  char label[128], id[256];
  label_of(config, label, sizeof label);
  snprintf(id, sizeof id, "frozen-%s", run_id ? run_id : "?");
  host->submission_set_metadata(sub, "frozen_abi", "1.0");
  host->submission_set_metadata(sub, "frozen_label", label);
  host->submission_set_metadata(sub, "orchestrator_run_id", id);
  host->log(host, 3, "submitting through the executor");
  int rc = host->executor_start(&run->exec, sub, "{}");
  if (rc != ZORCH_OK) {
    host->free(run);
    return rc;
  }
  *out_run = run;
  return ZORCH_OK;
}

static int fz_wait(void *r, int timeout_ms) {
  fz_run *run = r;
  return run->host->executor_wait(run->exec, timeout_ms);
}

static int fz_cancel(void *r) {
  fz_run *run = r;
  return run->host->executor_cancel(run->exec);
}

static void fz_release(void *r) {
  fz_run *run = r;
  if (!run) return;
  run->host->executor_release(run->exec);
  run->host->free(run);
}

static const zorch_orchestrator_ops fz_ops = {
    .version = ZORCH_ORCHESTRATOR_OPS_VERSION, /* 1, frozen */
    .check_config = fz_check_config,
    .submit = fz_submit,
    .wait = fz_wait,
    .cancel = fz_cancel,
    .release = fz_release,
};

static const zorch_flavor_desc fz_flavor = {
    .version = ZORCH_FLAVOR_DESC_VERSION,
    .type = ZORCH_COMPONENT_ORCHESTRATOR,
    .name = "frozen_1_0",
    .integration = "abi-test",
    .description = "A flavor built against the frozen plugin ABI 1.0 header",
    .config_schema = "{\"type\":\"object\",\"properties\":{\"label\":{\"type\":\"string\"}},"
                     "\"additionalProperties\":false}",
    .ops = &fz_ops,
};

static int fz_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  if (host->version < 1 || host->size < sizeof(zorch_host)) return ZORCH_EVERSION;
  fz_ctx *ctx = host->alloc(sizeof *ctx);
  if (!ctx) return ZORCH_ENOMEM;
  ctx->host = host;
  *plugin_ctx = ctx;
  return host->add_flavor(reg, &fz_flavor, ctx);
}

static void fz_teardown(void *plugin_ctx) {
  fz_ctx *ctx = plugin_ctx;
  if (ctx) ctx->host->free(ctx);
}

static const zorch_plugin_desc fz_plugin = {
    .abi_major = ZORCH_PLUGIN_ABI_MAJOR,
    .abi_minor = ZORCH_PLUGIN_ABI_MINOR,
    .name = "frozen_1_0",
    .version = "1.0",
    .description = "plugin ABI 1.0 compatibility fixture",
    .init = fz_init,
    .teardown = fz_teardown,
};

ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,
                                                                   uint32_t host_abi_minor);
ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *zorch_plugin_describe(uint32_t host_abi_major,
                                                                   uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return host_abi_major == 1 ? &fz_plugin : NULL;
}
