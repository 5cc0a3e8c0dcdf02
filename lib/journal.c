/* zorch — journal (to be written). */
#include "internal.h"
