/* local flavor (to be written) */
#include "zorch/plugin.h"
