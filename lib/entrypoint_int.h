/* zorch — the step entrypoint (entrypoint.c): a host program, or the zorch
 * CLI, started as one step of one run. */
#ifndef ZORCH_ENTRYPOINT_INT_H
#define ZORCH_ENTRYPOINT_INT_H

#include "plan.h"

/** Set by zorch_main(): this program can be started again as one step. */
extern atomic_int zorch__entrypoint_registered;

/** Check that the program's pipeline `p` defines every step as the
 *  deployment (its plan `dep`, loaded from `dep_text`) does: compiled with
 *  the deployment's run and params, each step's definition must equal the
 *  deployment's.  ZORCH_EMISMATCH names the first step (in the deployment's
 *  order) that is missing or differs.  Linear in the steps: each of the
 *  program's steps is looked up once, by name, in the plan's name map. */
int zorch__entrypoint_check(const zorch__plan *dep, const char *dep_text, const zorch_pipeline *p);

#endif /* ZORCH_ENTRYPOINT_INT_H */
