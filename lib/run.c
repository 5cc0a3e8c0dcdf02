/* zorch — run (to be written). */
#include "internal.h"
