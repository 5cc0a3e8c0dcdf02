/* flavor-check: does a flavor plugin load, and what does zorch see of it?
 *
 *   flavor-check NAME [PLUGIN_DIR_OR_FILE]
 *
 * Opens a zorch client whose plugin path is PLUGIN_DIR_OR_FILE (default:
 * $ZORCH_PLUGIN_PATH and the install directory), prints every plugin that
 * failed to load with the reason, and the description of orchestrator
 * flavor NAME.  Exit status 0 when NAME is registered and no plugin failed.
 * Plugin authors run it after each build; the example's test does too.
 */
#include <stdio.h>
#include <string.h>

#include <zorch/zorch.h>

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: flavor-check NAME [PLUGIN_DIR_OR_FILE]\n");
    return 2;
  }
  zorch_client_options o = ZORCH_CLIENT_OPTIONS_INIT;
  o.plugin_path = argc == 3 ? argv[2] : NULL;
  zorch_client *c = NULL;
  if (zorch_client_new(&c, &o) != ZORCH_OK) {
    fprintf(stderr, "flavor-check: %s\n", zorch_error_last()->message);
    return 1;
  }
  int status = 0;
  char *json = NULL;
  if (zorch_flavor_problems(&json, c) == ZORCH_OK && strcmp(json, "[]")) {
    printf("plugin problems: %s\n", json);
    status = 1;
  }
  zorch_free(json);
  json = NULL;
  if (zorch_flavor_describe(&json, c, "orchestrator", argv[1]) != ZORCH_OK) {
    fprintf(stderr, "flavor-check: %s\n", zorch_error_last()->message);
    status = 1;
  } else {
    printf("%s\n", json);
  }
  zorch_free(json);
  zorch_client_free(c);
  return status;
}
