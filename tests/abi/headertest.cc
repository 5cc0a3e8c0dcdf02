// Header test (C++): the public headers compile as C++ with
// -Wall -Wextra -Werror -pedantic, and the functions they declare link with
// C linkage (a missing extern "C" would leave mangled names unresolved).
#include <zorch/zorch.h>
#include <zorch/plugin.h>

#include <cstdio>
#include <cstring>

namespace {

int step_fn(zorch_step_ctx *, void *) { return 0; }
void log_fn(int, const char *, const char *, void *) {}
int build_fn(zorch_pipeline **out, const char *, void *) {
  *out = nullptr;
  return ZORCH_ENOTFOUND;
}

// Value-initialised, then filled: appending a slot (which the ABI allows)
// must not break this test.
zorch_plugin_desc make_plugin() {
  zorch_plugin_desc d = zorch_plugin_desc();
  d.abi_major = ZORCH_PLUGIN_ABI_MAJOR;
  d.abi_minor = ZORCH_PLUGIN_ABI_MINOR;
  d.name = "headertest-cpp";
  d.version = "1.0";
  d.description = "a plugin that only has to compile";
  return d;
}

int seen_code, seen_level;
char seen_message[1100];

void host_log(const zorch_host *, int level, const char *message) {
  seen_level = level;
  std::strcpy(seen_message, message);
}

void host_error_set(const zorch_host *, int code, const char *message) {
  seen_code = code;
  std::strcpy(seen_message, message);
}

int plugin_init(const zorch_host *, zorch_registrar *, void **plugin_ctx) {
  *plugin_ctx = nullptr;
  return 0;
}

// The inline helpers, through a host table of our own.
int check_helpers() {
  int failures = 0;
  zorch_host host = zorch_host();
  host.version = ZORCH_HOST_VERSION;
  host.size = sizeof host;
  host.log = host_log;
  host.error_set = host_error_set;
  if (zorch_host_errorf(&host, ZORCH_EIO, "%s: %d", "disk", 7) != ZORCH_EIO ||
      seen_code != ZORCH_EIO || std::strcmp(seen_message, "disk: 7") != 0)
    failures++;
  zorch_host_logf(&host, ZORCH_LOG_DEBUG, "n=%zu", static_cast<size_t>(5));
  if (seen_level != ZORCH_LOG_DEBUG || std::strcmp(seen_message, "n=5") != 0) failures++;
  return failures;
}

} // namespace

// The descriptor and the exported entry point, with C linkage.
extern "C" {
ZORCH_PLUGIN_DEFINE("headertest_cpp", "1.2.0", "made by ZORCH_PLUGIN_DEFINE in C++", plugin_init,
                    nullptr)
}

static_assert(ZORCH_CHECK_VERSION(0, 0, 0), "ZORCH_CHECK_VERSION");
static_assert(sizeof(zorch_host) >= 2 * sizeof(uint32_t), "zorch_host");

int main() {
  zorch_client_options copts = ZORCH_CLIENT_OPTIONS_INIT;
  zorch_run_options ropts = ZORCH_RUN_OPTIONS_INIT;
  copts.log_cb = log_fn;
  zorch_step_fn sf = step_fn;
  zorch_build_cb bf = build_fn;
  zorch_orchestrator_ops ops = zorch_orchestrator_ops();
  ops.version = ZORCH_ORCHESTRATOR_OPS_VERSION;
  zorch_flavor_desc flavor = zorch_flavor_desc();
  flavor.ops = &ops;
  const zorch_plugin_desc plugin = make_plugin();

  int failures = 0;
  // One call per header family: each must resolve to the C symbol.
  if (zorch_version_number() != static_cast<uint32_t>(ZORCH_VERSION_NUMBER) ||
      std::strcmp(zorch_version(), ZORCH_VERSION_STRING) != 0) {
    std::fprintf(stderr, "library %s, headers %s\n", zorch_version(), ZORCH_VERSION_STRING);
    failures++;
  }
  if (std::strcmp(zorch_status_name(ZORCH_STATUS_CACHED), "cached") != 0) failures++;
  if (zorch_strerror(ZORCH_ENOTFOUND) == nullptr || zorch_error_last() == nullptr) failures++;
  if (zorch_client_options_init(&copts, ZORCH_CLIENT_OPTIONS_VERSION) != ZORCH_OK) failures++;
  if (zorch_run_options_init(&ropts, ZORCH_RUN_OPTIONS_VERSION) != ZORCH_OK) failures++;
  zorch_free(nullptr);
  zorch_pipeline_free(nullptr);
  zorch_run_free(nullptr);
  zorch_client_free(nullptr);
  if (sf(nullptr, nullptr) != 0 || bf == nullptr || flavor.ops != &ops || plugin.abi_major != 1)
    failures++;
  flavor.flags = ZORCH_FLAVOR_IN_PROCESS | ZORCH_FLAVOR_LOCAL_STORE;
  flavor.step_settings_schema = "{}";
  const zorch_plugin_desc *d = zorch_plugin_describe(1, 2);
  if (d->abi_minor != 2 || std::strcmp(d->name, "headertest_cpp") != 0 || d->init != plugin_init)
    failures++;
  failures += check_helpers();
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
