/* Header test (C): the public headers compile as strict C99 with
 * -std=c99 -pedantic -Wall -Wextra -Werror (see tests/abi/meson.build), and
 * their INIT macros, callback types, plugin structs, ZORCH_PLUGIN_DEFINE and
 * the inline zorch_host_errorf/logf helpers can be used without a single
 * warning.  Nothing here needs to link: the program only runs to
 * check a few values. */
#include <zorch/zorch.h>
#include <zorch/plugin.h>

#include <stdio.h>
#include <string.h>

/* Compile-time checks without C11's _Static_assert. */
#define HT_ASSERT(name, cond) typedef char ht_assert_##name[(cond) ? 1 : -1]

HT_ASSERT(version_number, ZORCH_VERSION_NUMBER ==
                              ((ZORCH_VERSION_MAJOR << 16) | (ZORCH_VERSION_MINOR << 8) |
                               ZORCH_VERSION_PATCH));
HT_ASSERT(check_version_self, ZORCH_CHECK_VERSION(ZORCH_VERSION_MAJOR, ZORCH_VERSION_MINOR,
                                                  ZORCH_VERSION_PATCH));
HT_ASSERT(check_version_newer, !ZORCH_CHECK_VERSION(ZORCH_VERSION_MAJOR + 1, 0, 0));
HT_ASSERT(ok_is_zero, ZORCH_OK == 0);
HT_ASSERT(euser_last, ZORCH_EUSER == -15);
HT_ASSERT(plugin_abi_major, ZORCH_PLUGIN_ABI_MAJOR == 1);

static int step_fn(zorch_step_ctx *ctx, void *payload) {
  (void)ctx;
  (void)payload;
  return 0;
}

static void log_fn(int level, const char *domain, const char *message, void *payload) {
  (void)level, (void)domain, (void)message, (void)payload;
}

static void progress_fn(const char *run_id, const char *step, int status, void *payload) {
  (void)run_id, (void)step, (void)status, (void)payload;
}

static int build_fn(zorch_pipeline **out, const char *name, void *payload) {
  (void)name, (void)payload;
  *out = NULL;
  return ZORCH_ENOTFOUND;
}

static int plugin_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  (void)host, (void)reg;
  *plugin_ctx = NULL;
  return 0;
}

/* Designated initializers: appending a slot to these structs (which the
 * ABI allows) must not break this test. */
static const zorch_orchestrator_ops ops = {.version = ZORCH_ORCHESTRATOR_OPS_VERSION};
static const zorch_flavor_desc flavor = {.version = ZORCH_FLAVOR_DESC_VERSION,
                                         .type = ZORCH_COMPONENT_ORCHESTRATOR,
                                         .name = "headertest",
                                         .integration = "built-in",
                                         .description = "a flavor that only has to compile",
                                         .config_schema = "{\"type\":\"object\"}",
                                         .ops = &ops,
                                         .flags = ZORCH_FLAVOR_LOCAL_STORE,
                                         .step_settings_schema = "{\"type\":\"object\"}"};
static const zorch_plugin_desc plugin = {.abi_major = ZORCH_PLUGIN_ABI_MAJOR,
                                         .abi_minor = ZORCH_PLUGIN_ABI_MINOR,
                                         .name = "headertest",
                                         .version = "1.0",
                                         .description = "a plugin that only has to compile",
                                         .init = plugin_init};

static const zorch_plugin_desc *describe(uint32_t major, uint32_t minor) {
  (void)minor;
  return major == ZORCH_PLUGIN_ABI_MAJOR ? &plugin : NULL;
}

/* ZORCH_PLUGIN_DEFINE: the descriptor and the exported entry point. */
ZORCH_PLUGIN_DEFINE("headertest_defined", "1.2.0", "made by ZORCH_PLUGIN_DEFINE", plugin_init, NULL)

/* A host table whose log and error_set keep what the inline helpers pass. */
static int seen_code, seen_level;
static char seen_message[1100];

static void host_log(const zorch_host *host, int level, const char *message) {
  (void)host;
  seen_level = level;
  strcpy(seen_message, message);
}

static void host_error_set(const zorch_host *host, int code, const char *message) {
  (void)host;
  seen_code = code;
  strcpy(seen_message, message);
}

static int check_helpers(void) {
  int failures = 0;
  zorch_host host;
  memset(&host, 0, sizeof host);
  host.version = ZORCH_HOST_VERSION;
  host.size = (uint32_t)sizeof host;
  host.log = host_log;
  host.error_set = host_error_set;
  if (zorch_host_errorf(&host, ZORCH_EINVALID, "step '%s': %d apples", "x", 3) != ZORCH_EINVALID ||
      seen_code != ZORCH_EINVALID || strcmp(seen_message, "step 'x': 3 apples") != 0)
    failures++, fprintf(stderr, "zorch_host_errorf\n");
  zorch_host_logf(&host, ZORCH_LOG_WARNING, "%s of %u", "one", 2u);
  if (seen_level != ZORCH_LOG_WARNING || strcmp(seen_message, "one of 2") != 0)
    failures++, fprintf(stderr, "zorch_host_logf\n");
  return failures;
}

int main(void) {
  zorch_client_options copts = ZORCH_CLIENT_OPTIONS_INIT;
  zorch_run_options ropts = ZORCH_RUN_OPTIONS_INIT;
  zorch_step_fn sf = step_fn;
  zorch_log_cb lf = log_fn;
  zorch_progress_cb pf = progress_fn;
  zorch_build_cb bf = build_fn;
  zorch_plugin_describe_fn df = describe;
  zorch_error err = {ZORCH_OK, "no error"};
  int failures = 0;

  copts.log_cb = lf;
  ropts.progress_cb = pf;
  ropts.flags = ZORCH_RUN_HANDLE_SIGINT | ZORCH_RUN_NO_CACHE;
  copts.flags = ZORCH_CLIENT_NO_ENV;

  if (copts.version != ZORCH_CLIENT_OPTIONS_VERSION || ropts.version != ZORCH_RUN_OPTIONS_VERSION)
    failures++, fprintf(stderr, "an INIT macro does not set the version first\n");
  if (df(ZORCH_PLUGIN_ABI_MAJOR, ZORCH_PLUGIN_ABI_MINOR) != &plugin || flavor.ops != &ops)
    failures++, fprintf(stderr, "plugin descriptor types\n");
  if (strcmp(ZORCH_PLUGIN_ENTRY_SYMBOL, "zorch_plugin_describe") != 0)
    failures++, fprintf(stderr, "ZORCH_PLUGIN_ENTRY_SYMBOL\n");
  {
    const zorch_plugin_desc *d = zorch_plugin_describe(1, 0);
    if (d->abi_major != ZORCH_PLUGIN_ABI_MAJOR || d->abi_minor != ZORCH_PLUGIN_ABI_MINOR ||
        d->abi_minor != 2 || strcmp(d->name, "headertest_defined") != 0 ||
        d->init != plugin_init || d->teardown != NULL)
      failures++, fprintf(stderr, "ZORCH_PLUGIN_DEFINE\n");
  }
  if (flavor.flags != ZORCH_FLAVOR_LOCAL_STORE || !flavor.step_settings_schema)
    failures++, fprintf(stderr, "flavor descriptor version 2\n");
  failures += check_helpers();
  if (sf(NULL, NULL) != 0 || bf != build_fn || err.code != ZORCH_OK)
    failures++, fprintf(stderr, "callback types\n");
  return failures ? 1 : 0;
}
