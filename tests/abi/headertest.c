/* Header test (C): the public headers compile as strict C99 with
 * -std=c99 -pedantic -Wall -Wextra -Werror (see tests/abi/meson.build), and
 * their INIT macros, callback types and plugin structs can be used without
 * a single warning.  Nothing here needs to link: the program only runs to
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
                                         .ops = &ops};
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
  if (sf(NULL, NULL) != 0 || bf != build_fn || err.code != ZORCH_OK)
    failures++, fprintf(stderr, "callback types\n");
  return failures ? 1 : 0;
}
