/* zorch — constants both tiers share: the application API (run.h,
 * client.h) and the flavor-plugin ABI (plugin.h).
 *
 * Values are never renumbered; new ones are only appended.
 */
#ifndef ZORCH_TYPES_H
#define ZORCH_TYPES_H

#include "common.h"

ZORCH_BEGIN_DECLS

/** Status of a run or a step.  Values are never renumbered. */
typedef enum zorch_status {
  ZORCH_STATUS_PENDING = 0,   /**< not started yet */
  ZORCH_STATUS_RUNNING = 1,
  ZORCH_STATUS_COMPLETED = 2,
  ZORCH_STATUS_FAILED = 3,
  ZORCH_STATUS_CACHED = 4,    /**< step only: outputs reused from an earlier run */
  ZORCH_STATUS_SKIPPED = 5,   /**< step only: an upstream step failed */
  ZORCH_STATUS_STOPPED = 6,   /**< cancelled */
  ZORCH_STATUS_RETRYING = 7   /**< step only: failed, waiting to run again */
} zorch_status;

/** Log levels, lowest number most severe. */
typedef enum zorch_log_level {
  ZORCH_LOG_ERROR = 1,
  ZORCH_LOG_WARNING = 2,
  ZORCH_LOG_INFO = 3,
  ZORCH_LOG_DEBUG = 4
} zorch_log_level;

/** Component types a flavor can implement (zorch_flavor_desc.type). */
#define ZORCH_COMPONENT_ORCHESTRATOR "orchestrator"
/** An artifact store (plugin ABI 1.2): ops are a zorch_artifact_store_ops. */
#define ZORCH_COMPONENT_ARTIFACT_STORE "artifact_store"
/** An image builder (plugin ABI 1.2): ops are a zorch_image_builder_ops. */
#define ZORCH_COMPONENT_IMAGE_BUILDER "image_builder"

ZORCH_END_DECLS

#endif /* ZORCH_TYPES_H */
