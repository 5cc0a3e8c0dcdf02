/* zorch — error codes and the thread-local error message.
 *
 * Every function that can fail returns an int: ZORCH_OK (0) on success or one
 * of the negative codes below.  Check the return code first; only then read
 * zorch_error_last() for the message.  Codes are never renumbered; retired
 * codes stay reserved.
 */
#ifndef ZORCH_ERRORS_H
#define ZORCH_ERRORS_H

#include "common.h"

ZORCH_BEGIN_DECLS

typedef enum zorch_error_code {
  ZORCH_OK = 0,
  ZORCH_ERROR = -1,        /**< generic failure */
  ZORCH_ENOTFOUND = -2,    /**< a named thing (step, run, stack, flavor, file) does not exist */
  ZORCH_EINVALID = -3,     /**< invalid argument, name, document or configuration */
  ZORCH_ENOMEM = -4,       /**< out of memory */
  ZORCH_EVERSION = -5,     /**< unsupported struct, document or ABI version */
  ZORCH_EPLUGIN = -6,      /**< a plugin could not be loaded or failed */
  ZORCH_EIO = -7,          /**< an operating-system or storage error */
  ZORCH_EEXISTS = -8,      /**< the name is already taken */
  ZORCH_ECYCLE = -9,       /**< the pipeline's steps form a cycle */
  ZORCH_ETIMEOUT = -10,    /**< a wait ran out of time (the operation goes on) */
  ZORCH_ECANCELLED = -11,  /**< the run was cancelled and recorded as stopped */
  ZORCH_ESTEP = -12,       /**< one or more steps failed */
  ZORCH_ENOTSUPPORTED = -13, /**< the flavor or object does not support this */
  ZORCH_EMISMATCH = -14,   /**< the program's pipeline differs from the deployment */
  ZORCH_EUSER = -15        /**< never produced by zorch: for callbacks to abort */
} zorch_error_code;

/** The last error of the calling thread. */
typedef struct zorch_error {
  int code;                /**< one of zorch_error_code */
  const char *message;     /**< human-readable, never NULL */
} zorch_error;

/** The calling thread's last error.  Never NULL; when no error was recorded
 *  it is {ZORCH_OK, "no error"}.  Ownership: borrowed, valid until the next
 *  zorch call on this thread.  Thread-safety: the state is thread-local. */
ZORCH_API const zorch_error *zorch_error_last(void);

/** Forget the calling thread's last error. */
ZORCH_API void zorch_error_clear(void);

/** A static description of an error code ("not found", ...). Never NULL. */
ZORCH_API const char *zorch_strerror(int code);

/** Free memory that zorch returned through a `char **` or `void **` out
 *  parameter.  NULL is a no-op.  Never use free() on it. */
ZORCH_API void zorch_free(void *ptr);

ZORCH_END_DECLS

#endif /* ZORCH_ERRORS_H */
