/* zorch — run and step statuses by name (status.c). */
#ifndef ZORCH_STATUS_H
#define ZORCH_STATUS_H

#include "internal.h"

/** The status that zorch_status_name() names `s`, or -1 (also for NULL). */
int zorch__status_parse(const char *s);

#endif /* ZORCH_STATUS_H */
