/* zorch — registry (to be written). */
#include "internal.h"
