/* zorch — entrypoint (to be written). */
#include "internal.h"
