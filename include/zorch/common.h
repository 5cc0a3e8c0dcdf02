/* zorch — common definitions for every public header.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef ZORCH_COMMON_H
#define ZORCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) && __GNUC__ >= 4
#define ZORCH_API __attribute__((visibility("default")))
#else
#define ZORCH_API
#endif

#if defined(__GNUC__)
#define ZORCH_DEPRECATED __attribute__((deprecated))
#define ZORCH_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define ZORCH_DEPRECATED
#define ZORCH_PRINTF(fmt, args)
#endif

#ifdef __cplusplus
#define ZORCH_BEGIN_DECLS extern "C" {
#define ZORCH_END_DECLS }
#else
#define ZORCH_BEGIN_DECLS
#define ZORCH_END_DECLS
#endif

#endif /* ZORCH_COMMON_H */
