/* zorch — executor (to be written). */
#include "internal.h"
