/* zorch — the `local` orchestrator flavor: runs a pipeline in this process
 * with libzorch's own DAG executor, reached through the host table.
 *
 * It links nothing of libzorch and keeps no global state: the same file may
 * be loaded by several clients of one process (dlopen returns one handle),
 * each with its own host table, so the host pointer lives in a per-init
 * context that is the flavor payload.
 */
#include <zorch/plugin.h>

typedef struct {
  const zorch_host *host;
} local_ctx;

typedef struct {
  const zorch_host *host;
  void *exec; /* the host executor's handle */
} local_run;

static const char config_schema[] =
    "{\"type\":\"object\","
    "\"properties\":{\"max_parallel\":{\"type\":\"integer\",\"minimum\":1,"
    "\"description\":\"how many steps may run at once (default: the number of CPUs)\"}},"
    "\"additionalProperties\":false}";

static int local_submit(void **out_run, void *payload, zorch_submission *sub) {
  const zorch_host *host = ((local_ctx *)payload)->host;
  *out_run = NULL;
  local_run *run = host->alloc(sizeof *run);
  if (!run) return zorch_host_errorf(host, ZORCH_ENOMEM, "out of memory");
  run->host = host;
  run->exec = NULL;
  const char *config = host->submission_get(sub, "config");
  int rc = host->executor_start(&run->exec, sub, config ? config : "{}");
  if (rc != ZORCH_OK) { /* the executor has set the error */
    host->free(run);
    return rc;
  }
  *out_run = run;
  return ZORCH_OK;
}

static int local_wait(void *r, int timeout_ms) {
  local_run *run = r;
  return run->host->executor_wait(run->exec, timeout_ms);
}

static int local_cancel(void *r) {
  local_run *run = r;
  return run->host->executor_cancel(run->exec);
}

static void local_release(void *r) {
  local_run *run = r;
  if (!run) return;
  const zorch_host *host = run->host;
  host->executor_release(run->exec);
  host->free(run);
}

static const zorch_orchestrator_ops local_ops = {
    .version = ZORCH_ORCHESTRATOR_OPS_VERSION,
    .check_config = NULL, /* the schema says it all */
    .submit = local_submit,
    .wait = local_wait,
    .cancel = local_cancel,
    .release = local_release,
};

static const zorch_flavor_desc local_flavor = {
    .version = ZORCH_FLAVOR_DESC_VERSION,
    .type = ZORCH_COMPONENT_ORCHESTRATOR,
    .name = "local",
    .integration = "built-in",
    .description = "Runs pipelines locally in this process: independent steps in parallel",
    .config_schema = config_schema,
    .ops = &local_ops,
    /* the host's executor runs the steps here, next to the store's directory */
    .flags = ZORCH_FLAVOR_IN_PROCESS | ZORCH_FLAVOR_LOCAL_STORE,
};

static int local_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  local_ctx *ctx = host->alloc(sizeof *ctx);
  if (!ctx) return zorch_host_errorf(host, ZORCH_ENOMEM, "out of memory");
  ctx->host = host;
  *plugin_ctx = ctx;
  int rc = host->add_flavor(reg, &local_flavor, ctx);
  /* Another plugin found first provides "local": the host keeps that one and
   * reports ours; that is no reason to fail. */
  return rc == ZORCH_EEXISTS ? ZORCH_OK : rc;
}

static void local_teardown(void *plugin_ctx) {
  local_ctx *ctx = plugin_ctx;
  if (ctx) ctx->host->free(ctx);
}

/* The descriptor names the plugin ABI of the header it is built with: a
 * zorch of another ABI major, or of an older minor, refuses it. */
ZORCH_PLUGIN_DEFINE("local", "1.0", "The local orchestrator: runs steps in this process", local_init,
                    local_teardown)
