/* zorch — pipeline (to be written). */
#include "internal.h"
