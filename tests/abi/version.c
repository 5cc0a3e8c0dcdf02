/* Version test: the headers a program is compiled with and the library it
 * runs with agree (SQLite's sqlite3_libversion_number() check). */
#include <zorch/zorch.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  char expected[32];
  int failures = 0;

  if (zorch_version_number() != (uint32_t)ZORCH_VERSION_NUMBER) {
    fprintf(stderr, "zorch_version_number() = 0x%06lx, ZORCH_VERSION_NUMBER = 0x%06lx\n",
            (unsigned long)zorch_version_number(), (unsigned long)ZORCH_VERSION_NUMBER);
    failures++;
  }
  if (strcmp(zorch_version(), ZORCH_VERSION_STRING) != 0) {
    fprintf(stderr, "zorch_version() = \"%s\", ZORCH_VERSION_STRING = \"%s\"\n", zorch_version(),
            ZORCH_VERSION_STRING);
    failures++;
  }
  snprintf(expected, sizeof(expected), "%d.%d.%d", ZORCH_VERSION_MAJOR, ZORCH_VERSION_MINOR,
           ZORCH_VERSION_PATCH);
  if (strcmp(ZORCH_VERSION_STRING, expected) != 0) {
    fprintf(stderr, "ZORCH_VERSION_STRING \"%s\" is not MAJOR.MINOR.PATCH \"%s\"\n",
            ZORCH_VERSION_STRING, expected);
    failures++;
  }
  if (strcmp(ZORCH_VERSION_STRING, ZORCH_TEST_PROJECT_VERSION) != 0) {
    fprintf(stderr, "ZORCH_VERSION_STRING \"%s\" differs from the project version \"%s\"\n",
            ZORCH_VERSION_STRING, ZORCH_TEST_PROJECT_VERSION);
    failures++;
  }
  if (!ZORCH_CHECK_VERSION(ZORCH_VERSION_MAJOR, ZORCH_VERSION_MINOR, ZORCH_VERSION_PATCH) ||
      ZORCH_CHECK_VERSION(ZORCH_VERSION_MAJOR, ZORCH_VERSION_MINOR, ZORCH_VERSION_PATCH + 1)) {
    fprintf(stderr, "ZORCH_CHECK_VERSION is wrong at its own version\n");
    failures++;
  }
  if (!failures)
    printf("headers and library are both %s (0x%06lx)\n", zorch_version(),
           (unsigned long)zorch_version_number());
  return failures ? 1 : 0;
}
