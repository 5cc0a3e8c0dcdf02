/* zorch — the step entrypoint of a host program.
 *
 * Flavors that run steps outside the calling process (containers, Pods,
 * VMs) start the host program again as one step of one run:
 *
 *     app --zorch-step NAME --zorch-store URI --zorch-run ID
 *
 * (the store: "file:///dir", or "<flavor>://..." of an artifact-store
 * plugin, loaded from ZORCH_PLUGIN_PATH; $ZORCH_STORE_URI when the flag is
 * not given; or --zorch-deployment PATH, the deployment's file, whose store
 * it names).  The program calls zorch_main() first thing in main(); when started that
 * way it rebuilds its pipeline through `build`, checks it matches the
 * deployment, runs that one step against the artifact store, writes the
 * outputs and the step record, and exits with the step's status.  Otherwise
 * zorch_main() returns 0 and main() goes on as usual.
 */
#ifndef ZORCH_ENTRYPOINT_H
#define ZORCH_ENTRYPOINT_H

#include "common.h"
#include "pipeline.h"

ZORCH_BEGIN_DECLS

/** Build the pipeline called `pipeline_name` exactly as the program does
 *  when it starts a run.  Ownership: *out is new (zorch frees it). */
typedef int (*zorch_build_cb)(zorch_pipeline **out, const char *pipeline_name, void *payload);

/** Exit status of a step process: 0 completed, 1 failed, 2 usage or
 *  deployment error, 3 pipeline mismatch. */
enum {
  ZORCH_EXIT_OK = 0,
  ZORCH_EXIT_STEP_FAILED = 1,
  ZORCH_EXIT_USAGE = 2,
  ZORCH_EXIT_MISMATCH = 3
};

/** Call first in main().  When argv asks for a step, runs it and exits the
 *  process with one of the ZORCH_EXIT_* codes (never returns); otherwise
 *  remembers that the program has an entrypoint (so its function steps may
 *  run on remote flavors) and returns ZORCH_OK. */
ZORCH_API int zorch_main(int argc, char **argv, zorch_build_cb build, void *payload);

/** The command-step entrypoint, what `zorch step run` calls:
 *
 *     zorch step run --zorch-step NAME --zorch-store URI --zorch-run ID
 *
 *  Loads the deployment from the artifact store, gives the step's command
 *  its inputs (ZORCH_INPUT_<NAME>: paths in the store), scratch paths for
 *  its outputs (ZORCH_OUTPUT_<NAME>), its params (ZORCH_PARAM_<NAME>) and
 *  environment, runs it with this process's stdout and stderr, stores the
 *  outputs it wrote, writes the step record and the cache entry.  SIGTERM
 *  and SIGINT are passed on to the command.  Returns a ZORCH_EXIT_* code
 *  (the command's own exit status is in the step record), or 128 + N when
 *  the command was killed by signal N (137: SIGKILL, e.g. the OOM killer). */
ZORCH_API int zorch_command_step_main(int argc, char **argv);

ZORCH_END_DECLS

#endif /* ZORCH_ENTRYPOINT_H */
