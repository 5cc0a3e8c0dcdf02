/* zorch — the names of run and step statuses. */
#include "status.h"

const char *zorch_status_name(int status) {
  switch (status) {
  case ZORCH_STATUS_PENDING: return "pending";
  case ZORCH_STATUS_RUNNING: return "running";
  case ZORCH_STATUS_COMPLETED: return "completed";
  case ZORCH_STATUS_FAILED: return "failed";
  case ZORCH_STATUS_CACHED: return "cached";
  case ZORCH_STATUS_SKIPPED: return "skipped";
  case ZORCH_STATUS_STOPPED: return "stopped";
  case ZORCH_STATUS_RETRYING: return "retrying";
  default: return "unknown";
  }
}

int zorch__status_parse(const char *s) {
  for (int st = 0; s && st <= ZORCH_STATUS_RETRYING; st++)
    if (!strcmp(zorch_status_name(st), s)) return st;
  return -1;
}
