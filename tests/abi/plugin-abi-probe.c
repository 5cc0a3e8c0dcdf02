/* The plugin ABI as a shared object abidw can read.
 *
 * libzorch exports no function that takes the <zorch/plugin.h> types (a
 * plugin reaches the host through the zorch_host table, not through
 * symbols), so abidiff of libzorch alone would never see a change to them.
 * This library exports one function whose parameters reach every type of
 * the plugin ABI; built with -g, abidw records their layout and
 * tests/abi/check-abi.py compares it with abi/zorch-plugin-1.xml.
 */
#include <zorch/plugin.h>

ZORCH_PLUGIN_EXPORT size_t zorch_plugin_abi_probe(const zorch_plugin_desc *plugin,
                                                  const zorch_flavor_desc *flavor,
                                                  const zorch_orchestrator_ops *ops,
                                                  const zorch_host *host,
                                                  zorch_plugin_describe_fn describe);

ZORCH_PLUGIN_EXPORT size_t zorch_plugin_abi_probe(const zorch_plugin_desc *plugin,
                                                  const zorch_flavor_desc *flavor,
                                                  const zorch_orchestrator_ops *ops,
                                                  const zorch_host *host,
                                                  zorch_plugin_describe_fn describe) {
  (void)describe;
  return sizeof *plugin + sizeof *flavor + sizeof *ops + sizeof *host;
}
