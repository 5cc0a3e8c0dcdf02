/* zorch CLI (to be written) */
#include <zorch/zorch.h>
int main(void) { return 0; }
