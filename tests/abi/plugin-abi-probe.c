/* The plugin ABI as a shared object abidw can read.
 *
 * libzorch exports no function that takes the <zorch/plugin.h> types (a
 * plugin reaches the host through the zorch_host table, not through
 * symbols), so abidiff of libzorch alone would never see a change to them.
 * This library exports one function per type of the plugin ABI; built with
 * -g, abidw records their layout and tests/abi/check-abi.py compares it with
 * abi/zorch-plugin-1.xml.  A type added to the plugin ABI gets a function of
 * its own here (an added function is a compatible change; changing the
 * parameters of an existing one is not).
 */
#include <zorch/plugin.h>

#define PROBE(name, type)                                                            \
  ZORCH_PLUGIN_EXPORT size_t zorch_plugin_abi_probe_##name(const type *p);           \
  ZORCH_PLUGIN_EXPORT size_t zorch_plugin_abi_probe_##name(const type *p) {          \
    return sizeof *p;                                                                \
  }

PROBE(plugin_desc, zorch_plugin_desc)
PROBE(flavor_desc, zorch_flavor_desc)
PROBE(orchestrator_ops, zorch_orchestrator_ops)
PROBE(host, zorch_host)
/* plugin ABI 1.1 (host version 2) */
PROBE(step_launch, zorch_step_launch)
PROBE(step_launcher, zorch_step_launcher)
/* plugin ABI 1.2 (host version 3) */
PROBE(artifact_store_ops, zorch_artifact_store_ops)
PROBE(image_builder_ops, zorch_image_builder_ops)

ZORCH_PLUGIN_EXPORT zorch_plugin_describe_fn zorch_plugin_abi_probe_describe(zorch_plugin_describe_fn f);
ZORCH_PLUGIN_EXPORT zorch_plugin_describe_fn zorch_plugin_abi_probe_describe(zorch_plugin_describe_fn f) {
  return f;
}
