/* zorch — deployment (to be written). */
#include "internal.h"
