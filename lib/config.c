/* zorch — config (to be written). */
#include "internal.h"
