/* zorch — the loaded library's version. */
#include "internal.h"

uint32_t zorch_version_number(void) { return ZORCH_VERSION_NUMBER; }
const char *zorch_version(void) { return ZORCH_VERSION_STRING; }
