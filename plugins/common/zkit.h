/* zorch plugin kit — the floor every kit module stands on: one error
 * convention, and the few helpers every flavor wrote for itself.
 *
 * Errors.  Kit functions return ZORCH_OK or a negative ZORCH_* code, and
 * report what went wrong through the flavor's host table (host->error_set,
 * which prefixes the plugin's name).  Because a plugin cannot read the
 * host's error back, the kit keeps a copy of the last message it reported
 * on this thread: zkit_error_message().  A flavor that adds context writes
 *
 *     if ((rc = zk_json(k, "POST", path, body, NULL)))
 *       return zorch_host_errorf(h, rc, "step '%s': %s", step, zkit_error_message());
 *
 * Lower layers with their own detail (zhttp's zh_error with the HTTP status,
 * zkconfig's message buffer) are mapped to this once, in zkit_http_fail()
 * and at the kit module that calls them.
 *
 * Thread-safety: everything here may be called from any thread.
 */
#ifndef ZORCH_ZKIT_H
#define ZORCH_ZKIT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <zorch/plugin.h>

#include "zhttp.h"

#if defined(__GNUC__)
#define ZKIT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ZKIT_PRINTF(f, a)
#endif

/** Report `code` with a message through host->error_set (when h is not
 *  NULL), keep the message for zkit_error_message(), return `code`. */
int zkit_errorf(const zorch_host *h, int code, const char *fmt, ...) ZKIT_PRINTF(3, 4);

/** The last message zkit_errorf reported on this thread ("" if none).
 *  Ownership: borrowed, valid until this thread's next zkit_errorf. */
const char *zkit_error_message(void);

/** The ZORCH_* code of a zhttp result: 404 ZORCH_ENOTFOUND, 409
 *  ZORCH_EEXISTS, 400/401/403/422 and missing credentials ZORCH_EINVALID,
 *  out of memory ZORCH_ENOMEM, a stopped stream ZORCH_ECANCELLED, any other
 *  HTTP or transport failure ZORCH_EIO. */
int zkit_http_code(int zh_rc, const zh_error *e);

/** zkit_errorf with the code of zkit_http_code and "<fmt>: <e->message>". */
int zkit_http_fail(const zorch_host *h, int zh_rc, const zh_error *e, const char *fmt, ...) ZKIT_PRINTF(4, 5);

/** malloc'd printf; NULL on OOM. */
char *zkit_asprintf(const char *fmt, ...) ZKIT_PRINTF(1, 2);

/** strdup that keeps NULL. */
char *zkit_strdup(const char *s);

/** Seconds on the monotonic clock. */
double zkit_now(void);

/** Sleep this many seconds (fractions allowed). */
void zkit_sleep(double seconds);

/** The string at key k of object o, or NULL. */
const char *zkit_jstr(const json_t *o, const char *k);

/** A "K=V" list as a JSON object {K: V} (new reference; entries without '='
 *  are skipped; a later K wins). */
json_t *zkit_env_object(const char *const *env);

/** The directory of the plugin this kit is linked into ("" if unknown), as
 *  dladdr names it.  Ownership: static, valid while the plugin is loaded. */
const char *zkit_plugin_dir(void);

#endif
