/* Fixture flavor plugins for the registry tests: one source, built once per
 * case with -D switches (tests/plugins/build/meson.build).
 *
 *   FX_ID="good"          name of the case (marker files, plugin name)
 *   FX_FLAVOR="x"         flavor name registered (default fixture_<id>)
 *   FX_ABI_MAJOR=n        abi_major in the descriptor
 *   FX_NEWER_MINOR        abi_minor one newer than the header's
 *   FX_NO_ENTRY           export a misspelt entry point instead
 *   FX_DESCRIBE_NULL      describe() returns NULL
 *   FX_NO_NAME, FX_NO_INIT  leave a required descriptor field NULL
 *   FX_INIT_FAIL          init reports an error with zorch_host_errorf and fails
 *   FX_TYPE="t"           the flavor's component type
 *   FX_NO_OPS             the flavor's ops are NULL
 *   FX_IGNORE_ADD         init ignores add_flavor's result (returns 0)
 *   FX_OPS_VERSION=n      the ops table's version (default: the header's)
 *   FX_DESC_VERSION=n     the flavor descriptor's version (default: the header's)
 *   FX_NEED_HOST=n        init needs host table version n (a host-version probe:
 *                         it fails with a message when the host is older)
 *   FX_LATE_ADD           check_config calls add_flavor (after init: refused)
 *   FX_FLAGS=n            the flavor's capability flags (default ZORCH_FLAVOR_LOCAL_STORE)
 *   FX_BAD_STEP_SCHEMA    the flavor's step_settings_schema uses a keyword zorch
 *                         does not support (default: a small valid one:
 *                         shm_size an integer >= 0, tags an array of strings)
 *
 * When $ZORCH_FIXTURE_MARKERS names a directory, init, teardown and the
 * library's unloading each create a file there: <id>.init, <id>.teardown,
 * <id>.unload.  The tests use them to prove what ran (and what did not).
 * A submission writes there <id>.deployment: the submission's "deployment"
 * as the flavor got it ("(none)" when it got NULL).
 */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zorch/plugin.h>

#ifndef FX_ID
#error "define FX_ID"
#endif
#ifndef FX_FLAVOR
#define FX_FLAVOR "fixture_" FX_ID
#endif
#ifdef FX_ABI_MAJOR
#define FX_ABI_MAJOR_SET
#else
#define FX_ABI_MAJOR ZORCH_PLUGIN_ABI_MAJOR
#endif
#ifdef FX_NEWER_MINOR
#define FX_ABI_MINOR (ZORCH_PLUGIN_ABI_MINOR + 1)
#else
#define FX_ABI_MINOR ZORCH_PLUGIN_ABI_MINOR
#endif
#ifndef FX_TYPE
#define FX_TYPE ZORCH_COMPONENT_ORCHESTRATOR
#endif
#ifndef FX_OPS_VERSION
#define FX_OPS_VERSION ZORCH_ORCHESTRATOR_OPS_VERSION
#endif
#ifndef FX_DESC_VERSION
#define FX_DESC_VERSION ZORCH_FLAVOR_DESC_VERSION
#endif
#ifndef FX_NEED_HOST
#define FX_NEED_HOST 1
#endif
#ifndef FX_FLAGS
#define FX_FLAGS ZORCH_FLAVOR_LOCAL_STORE
#endif
#ifdef FX_BAD_STEP_SCHEMA
#define FX_STEP_SCHEMA "{\"type\":\"object\",\"anyOf\":[]}"
#else
#define FX_STEP_SCHEMA                                                                     \
  "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"                     \
  "\"shm_size\":{\"type\":\"integer\",\"minimum\":0},"                                      \
  "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}}"
#endif

static void marker(const char *what) {
  const char *dir = getenv("ZORCH_FIXTURE_MARKERS");
  if (!dir || !*dir) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.%s", dir, FX_ID, what);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
}

__attribute__((destructor)) static void fx_unloaded(void) { marker("unload"); }

/* Some cases never reach parts of the plugin. */
#define FX_MAYBE_UNUSED __attribute__((unused))

typedef struct {
  const zorch_host *host;
  zorch_registrar *reg; /* kept only to show that a late add_flavor is refused */
} fx_ctx;

FX_MAYBE_UNUSED static const zorch_flavor_desc fx_flavor;

static int fx_check_config(void *payload, const char *config_json) {
  const zorch_host *host = ((fx_ctx *)payload)->host;
#ifdef FX_LATE_ADD
  /* after init the registrar is closed: the host refuses and says so */
  int late = host->add_flavor(((fx_ctx *)payload)->reg, &fx_flavor, payload);
  if (late != ZORCH_OK) return late;
#endif
  if (strstr(config_json, "\"reject\":true") || strstr(config_json, "\"reject\": true")) {
    return zorch_host_errorf(host, ZORCH_EINVALID, "fixture refuses a config with %s set",
                             "reject");
  }
  return ZORCH_OK;
}

static int fx_submit(void **out_run, void *payload, zorch_submission *sub) {
  const zorch_host *host = ((fx_ctx *)payload)->host;
  *out_run = NULL;
  const char *dir = getenv("ZORCH_FIXTURE_MARKERS");
  if (dir && *dir) {
    const char *dep = host->submission_get(sub, "deployment");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.deployment", dir, FX_ID);
    FILE *f = fopen(path, "w");
    if (f) {
      fputs(dep ? dep : "(none)", f);
      fclose(f);
    }
  }
  return zorch_host_errorf(host, ZORCH_ENOTSUPPORTED, "the fixture flavor runs %s", "nothing");
}
static int fx_wait(void *run, int timeout_ms) {
  (void)run;
  (void)timeout_ms;
  return ZORCH_OK;
}
static int fx_cancel(void *run) {
  (void)run;
  return ZORCH_OK;
}
static void fx_release(void *run) { (void)run; }

FX_MAYBE_UNUSED static const zorch_orchestrator_ops fx_ops = {
    .version = FX_OPS_VERSION,
    .check_config = fx_check_config,
    .submit = fx_submit,
    .wait = fx_wait,
    .cancel = fx_cancel,
    .release = fx_release,
};

FX_MAYBE_UNUSED static const zorch_flavor_desc fx_flavor = {
    .version = FX_DESC_VERSION,
    .type = FX_TYPE,
    .name = FX_FLAVOR,
    .integration = "test",
    .description = "A registry test fixture (" FX_ID ")",
    .config_schema = "{\"type\":\"object\",\"properties\":{"
                     "\"level\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9},"
                     "\"mode\":{\"enum\":[\"fast\",\"slow\"]},"
                     "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
                     "\"reject\":{\"type\":\"boolean\"}},"
                     "\"additionalProperties\":false}",
#ifdef FX_NO_OPS
    .ops = NULL,
#else
    .ops = &fx_ops,
#endif
    .flags = FX_FLAGS,
    .step_settings_schema = FX_STEP_SCHEMA,
};

FX_MAYBE_UNUSED static int fx_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  marker("init");
  if (host->version < 1 || host->size < sizeof(zorch_host)) return ZORCH_EVERSION;
  if (host->version < FX_NEED_HOST) /* a slot added in a later host version is needed */
    return zorch_host_errorf(host, ZORCH_EVERSION,
                             "needs host table version %d or newer, this zorch offers %u",
                             FX_NEED_HOST, host->version);
#ifdef FX_INIT_FAIL
  (void)reg;
  (void)plugin_ctx;
  return zorch_host_errorf(host, ZORCH_EPLUGIN, "the fixture's license server is %s",
                           "unreachable");
#else
  fx_ctx *ctx = host->alloc(sizeof *ctx);
  if (!ctx) return ZORCH_ENOMEM;
  ctx->host = host;
  ctx->reg = reg;
  *plugin_ctx = ctx;
  zorch_host_logf(host, ZORCH_LOG_INFO, "fixture %s ready", FX_ID);
  int rc = host->add_flavor(reg, &fx_flavor, ctx);
#ifdef FX_IGNORE_ADD
  rc = ZORCH_OK;
#endif
  return rc;
#endif
}

static void fx_teardown(void *plugin_ctx) {
  marker("teardown");
  fx_ctx *ctx = plugin_ctx;
  if (ctx) ctx->host->free(ctx);
}

/* The handshake cases write their descriptor and entry point by hand; every
 * other fixture is what ZORCH_PLUGIN_DEFINE makes (plugin ABI of this header). */
#if defined(FX_ABI_MAJOR_SET) || defined(FX_NEWER_MINOR) || defined(FX_NO_NAME) || \
    defined(FX_NO_INIT) || defined(FX_NO_ENTRY) || defined(FX_DESCRIBE_NULL)

FX_MAYBE_UNUSED static const zorch_plugin_desc fx_plugin = {
    .abi_major = FX_ABI_MAJOR,
    .abi_minor = FX_ABI_MINOR,
#ifdef FX_NO_NAME
    .name = NULL,
#else
    .name = "fixture_" FX_ID,
#endif
    .version = "0.0",
    .description = "registry test fixture",
#ifdef FX_NO_INIT
    .init = NULL,
#else
    .init = fx_init,
#endif
    .teardown = fx_teardown,
};

#ifdef FX_NO_ENTRY
#define FX_ENTRY zorch_plugin_descriptor /* misspelt on purpose */
#else
#define FX_ENTRY zorch_plugin_describe
#endif

ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *FX_ENTRY(uint32_t host_abi_major,
                                                      uint32_t host_abi_minor);
ZORCH_PLUGIN_EXPORT const zorch_plugin_desc *FX_ENTRY(uint32_t host_abi_major,
                                                      uint32_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
#ifdef FX_DESCRIBE_NULL
  return NULL;
#else
  return &fx_plugin;
#endif
}

#else

ZORCH_PLUGIN_DEFINE("fixture_" FX_ID, "0.0", "registry test fixture", fx_init, fx_teardown)

#endif
