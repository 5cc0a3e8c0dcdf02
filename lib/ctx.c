/* zorch — ctx (to be written). */
#include "internal.h"
