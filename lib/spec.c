/* zorch — spec (to be written). */
#include "internal.h"
