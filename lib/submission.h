/* zorch — submissions: the host side of a run, what a flavor plugin sees
 * through the zorch_host table (submission.c). */
#ifndef ZORCH_SUBMISSION_H
#define ZORCH_SUBMISSION_H

#include "client_int.h"
#include "deployment.h"
#include "executor.h"

struct zorch_submission {
  zorch_run *run;
  const zorch_pipeline *pipeline;
  char *config;
  char *deployment_path;
  char *zorch_command;
  pthread_mutex_t lock;
  bool status_set;
  zorch__exec *exec;        /* when the in-library executor runs it */
  zorch__exec_opts exec_opts;
  /* while the run is compiled and submitted: how (the deployment text of
   * an ephemeral run is made only if asked for) */
  const zorch__compile_info *compile_info;
};

void zorch__submission_free(zorch_submission *sub);

/* the zorch_host slots (registry.c fills the table with them) */
const char *zorch__submission_get(const zorch_submission *sub, const char *key);
int zorch__submission_set_metadata(zorch_submission *sub, const char *key, const char *value);
int zorch__submission_set_status(zorch_submission *sub, int status, const char *message);
int zorch__executor_start_host(void **out, zorch_submission *sub, const char *options_json);
int zorch__executor_wait_host(void *handle, int timeout_ms);
int zorch__executor_cancel_host(void *handle);
void zorch__executor_release_host(void *handle);
int zorch__executor_start_remote_host(void **out, zorch_submission *sub, const char *options_json,
                                      const zorch_step_launcher *ops, void *data);
int zorch__executor_step_done_host(void *handle, uint64_t attempt_id, int exit_code,
                                   const char *message);
/* host version 3 (plugin ABI 1.2) */
int zorch__executor_step_log_host(void *handle, uint64_t attempt_id, const void *data, size_t len);
int zorch__submission_run_record(char **out_json, const zorch_submission *sub);
int zorch__submission_step_record(char **out_json, const zorch_submission *sub, const char *step);

#endif /* ZORCH_SUBMISSION_H */
