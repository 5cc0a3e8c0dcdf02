/* zorch — runs (to be written).  Temporary stubs of the host-side submission API. */
#include "client_int.h"

const char *zorch__submission_get(const zorch_submission *sub, const char *key) {
  (void)sub; (void)key;
  return NULL;
}
int zorch__submission_set_metadata(zorch_submission *sub, const char *key, const char *value) {
  (void)sub; (void)key; (void)value;
  return zorch__error_set(ZORCH_ENOTSUPPORTED, "not yet implemented");
}
int zorch__submission_set_status(zorch_submission *sub, int status, const char *message) {
  (void)sub; (void)status; (void)message;
  return zorch__error_set(ZORCH_ENOTSUPPORTED, "not yet implemented");
}
int zorch__executor_start_host(void **out, zorch_submission *sub, const char *options_json) {
  (void)out; (void)sub; (void)options_json;
  return zorch__error_set(ZORCH_ENOTSUPPORTED, "not yet implemented");
}
int zorch__executor_wait_host(void *handle, int timeout_ms) {
  (void)handle; (void)timeout_ms;
  return zorch__error_set(ZORCH_ENOTSUPPORTED, "not yet implemented");
}
int zorch__executor_cancel_host(void *handle) {
  (void)handle;
  return zorch__error_set(ZORCH_ENOTSUPPORTED, "not yet implemented");
}
void zorch__executor_release_host(void *handle) { (void)handle; }
