/* zorch — helpers shared by the Check test suites. */
#ifndef ZORCH_CHECK_H
#define ZORCH_CHECK_H

#include <check.h>
#include <stdlib.h>
#include <sys/types.h>

#include "zorch/zorch.h"

/** Each suite file defines `Suite *<name>_suite(void)` and ends with
 *  ZORCH_CHECK_MAIN(name). */
#define ZORCH_CHECK_MAIN(name)                       \
  int main(void) {                                   \
    extern Suite *name##_suite(void);                \
    return zt_run_suite(name##_suite());             \
  }

int zt_run_suite(Suite *s);

/** A fresh temporary directory (removed at exit of the test process unless
 *  ZORCH_TEST_KEEP is set).  Never NULL. */
const char *zt_tmpdir(void);

/** A client whose home is a fresh temporary directory. */
static inline zorch_client *zt_client(void) {
  zorch_client_options o = ZORCH_CLIENT_OPTIONS_INIT;
  o.home = zt_tmpdir();
  zorch_client *c = NULL;
  int rc = zorch_client_new(&c, &o);
  ck_assert_msg(rc == ZORCH_OK, "zorch_client_new: %s", zorch_error_last()->message);
  return c;
}

/** Assert a zorch call returned `want`, printing zorch's message otherwise. */
#define zt_assert_rc(call, want)                                                      \
  do {                                                                                \
    int zt_rc_ = (call);                                                              \
    ck_assert_msg(zt_rc_ == (want), "%s returned %d (%s), wanted %d", #call, zt_rc_,  \
                  zorch_error_last()->message, (int)(want));                         \
  } while (0)
#define zt_ok(call) zt_assert_rc(call, ZORCH_OK)

/** Assert the last error message contains `needle`. */
#define zt_assert_msg_has(needle)                                                       \
  ck_assert_msg(strstr(zorch_error_last()->message, (needle)) != NULL,                 \
                "error message \"%s\" lacks \"%s\"", zorch_error_last()->message, (needle))

/** Run a command (argv), capture stdout+stderr into *out (malloc'd), return exit status
 *  (128+sig if signalled). */
int zt_run(char **out, const char *const *argv, const char *const *extra_env);

/** Path to a built file under the build dir / a source file under the source dir. */
char *zt_build_path(const char *rel);
char *zt_src_path(const char *rel);

/** Start tests/unit/http-fixture.py (HTTPS when cert and key are given) with
 *  its port file in dir under `name`; writes its base URL into base.  Start
 *  it in main(), before Check forks the tests.  Exits on failure. */
pid_t zt_fixture_start(const char *dir, const char *name, const char *cert, const char *key, char *base,
                       size_t n);
void zt_fixture_stop(pid_t pid);
/** A self-signed certificate for 127.0.0.1: dir/cert.pem and dir/key.pem. */
void zt_make_cert(const char *dir);

#endif
