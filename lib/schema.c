/* zorch — schema (to be written). */
#include "internal.h"
