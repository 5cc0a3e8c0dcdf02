/* zorch — compiling a pipeline to its deployment document (versioned JSON IR)
 * and its plan (deployment.c); the plan itself is in plan.h. */
#ifndef ZORCH_DEPLOYMENT_H
#define ZORCH_DEPLOYMENT_H

#include "plan.h"

typedef struct zorch__compile_info {
  const char *run_id;
  const char *run_name;
  const char *params_json;   /* overrides, may be NULL */
  const char *stack;         /* may be NULL */
  const char *orchestrator;  /* component name, may be NULL */
  const char *flavor;        /* orchestrator flavor, may be NULL */
  const char *store_path;    /* local artifact store root, may be NULL */
  const char *zorch_command; /* the zorch CLI for command steps; NULL: the installed one */
  int failure_mode;
  double created;
} zorch__compile_info;

/** Compile a pipeline (it is validated on the way) to deployment JSON text
 *  (malloc'd) when `out` is not NULL, and, when `plan` is not NULL, to the
 *  plan that loading that text would make, with the function steps bound
 *  (made from the pipeline directly: the text is never parsed, and need not
 *  be written at all). */
int zorch__deployment_compile(char **out, struct zorch__plan **plan, const zorch_pipeline *p,
                              const zorch__compile_info *info);

/** The program's code identity: "build-id:<hex>" from its GNU build-id note,
 *  else "sha256:<hex>" of /proc/self/exe.  Computed once. */
const char *zorch__program_version(void);
/** Absolute path of the running program. */
const char *zorch__program_path(void);

#endif
