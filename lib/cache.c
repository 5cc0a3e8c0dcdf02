/* zorch — cache (to be written). */
#include "internal.h"
