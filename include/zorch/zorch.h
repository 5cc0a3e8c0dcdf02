/* zorch — umbrella header.  Include this one. */
#ifndef ZORCH_H
#define ZORCH_H

#include "common.h"
#include <zorch/version.h>
#include "errors.h"
#include "types.h"
#include "client.h"
#include "pipeline.h"
#include "step.h"
#include "run.h"
#include "entrypoint.h"
#include "image.h"

#endif /* ZORCH_H */
