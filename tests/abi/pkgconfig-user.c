/* A program built the way a user outside the tree builds one:
 *   cc pkgconfig-user.c $(pkg-config --cflags --libs zorch)
 * (see check-pkgconfig.sh). */
#include <zorch/zorch.h>
#include <zorch/plugin.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  zorch_pipeline *p = NULL;
  if (zorch_pipeline_new(&p, "pkgconfig") != ZORCH_OK) {
    fprintf(stderr, "zorch_pipeline_new: %s\n", zorch_error_last()->message);
    return 1;
  }
  zorch_pipeline_free(p);
  if (strcmp(zorch_version(), ZORCH_VERSION_STRING) != 0) {
    fprintf(stderr, "library %s, headers %s\n", zorch_version(), ZORCH_VERSION_STRING);
    return 1;
  }
  printf("linked against zorch %s, plugin ABI %d.%d\n", zorch_version(), ZORCH_PLUGIN_ABI_MAJOR,
         ZORCH_PLUGIN_ABI_MINOR);
  return 0;
}
