/* zorch — a flavor's step settings, checked by the host before a run starts.
 *
 * A flavor of descriptor version 2 may publish a step_settings_schema: the
 * JSON Schema of the object at settings.flavor.<flavor> of a step.  Before
 * a run (or a schedule) is submitted, that object is validated for the
 * pipeline's defaults and for every step that sets it itself, as the step
 * will get it: the defaults' object with the step's own keys over it (the
 * effective settings the deployment document holds).  Only steps that name
 * the flavor are looked at, so a large pipeline without flavor settings
 * costs one pass over its steps.  An error names the step and the setting:
 *
 *   step 'train': setting 'shm_size' of flavor local_docker: -1 is less than the minimum 0
 */
#include "client_int.h"
#include "pipeline_int.h"

#include <jansson.h>

/* Validate `obj` (the object at settings.flavor.<flavor> of `whose`). */
static int check_one(const json_t *schema, const json_t *obj, const char *flavor,
                     const char *whose) {
  char *path = NULL, *problem = NULL;
  int rc = zorch__schema_validate_parsed(&path, &problem, schema, obj);
  if (rc && path && problem) {
    /* "$" is the object itself; "$.a.b", "$.a[2]", "$[\"x-y\"]" a setting in it */
    const char *p = path[0] == '$' ? path + 1 : path;
    if (*p == '.') p++;
    if (*p)
      rc = zorch__error_set(rc, "%s: setting '%s' of flavor %s: %s", whose, p, flavor, problem);
    else
      rc = zorch__error_set(rc, "%s: the settings of flavor %s: %s", whose, flavor, problem);
  }
  free(path);
  free(problem);
  return rc;
}

static int load(json_t **schema, const zorch__flavor *fl) {
  *schema = NULL;
  if (!fl->step_settings_schema) return ZORCH_OK;
  /* checked when the flavor was added: a failure here is out of memory */
  return zorch__schema_load(schema, fl->step_settings_schema, "step_settings_schema");
}

int zorch__step_settings_check_pipeline(const zorch__flavor *fl, const zorch_pipeline *p) {
  json_t *schema;
  int rc = load(&schema, fl);
  if (rc || !schema) return rc;
  const char *name = fl->desc->name;
  json_t *dflt = NULL;
  const char *dtext = zorch__kvs_get(&p->defaults.settings->flavor, name);
  if (dtext) {
    dflt = json_loads(dtext, 0, NULL);
    rc = dflt ? check_one(schema, dflt, name, "the pipeline's default settings") : zorch__error_oom();
  }
  for (size_t i = 0; !rc && i < p->n_steps; i++) {
    const zorch_step *s = p->steps[i];
    const char *text = zorch__kvs_get(&s->settings->flavor, name);
    if (!text) continue; /* the defaults' object, checked above */
    json_t *own = json_loads(text, 0, NULL);
    json_t *eff = own && json_is_object(dflt) && json_is_object(own) ? json_deep_copy(dflt) : NULL;
    if (eff && json_object_update(eff, own)) {
      json_decref(eff);
      eff = NULL;
    }
    if (!own || (json_is_object(dflt) && !eff)) {
      rc = zorch__error_oom();
    } else {
      char *whose = zorch__asprintf("step '%s'", s->name);
      rc = whose ? check_one(schema, eff ? eff : own, name, whose) : zorch__error_oom();
      free(whose);
    }
    json_decref(eff);
    json_decref(own);
  }
  json_decref(dflt);
  json_decref(schema);
  return rc;
}

int zorch__step_settings_check_doc(const zorch__flavor *fl, const json_t *doc) {
  json_t *schema;
  int rc = load(&schema, fl);
  if (rc || !schema) return rc;
  const char *name = fl->desc->name;
  const json_t *d = json_object_get(
      json_object_get(json_object_get(json_object_get(doc, "defaults"), "settings"), "flavor"),
      name);
  if (d) rc = check_one(schema, d, name, "the pipeline's default settings");
  size_t i;
  const json_t *st;
  json_array_foreach(json_object_get(doc, "steps"), i, st) {
    if (rc) break;
    /* a step's own settings in the document are its effective ones */
    const json_t *o = json_object_get(
        json_object_get(json_object_get(st, "settings"), "flavor"), name);
    if (!o) continue;
    const char *sn = json_string_value(json_object_get(st, "name"));
    char *whose = zorch__asprintf("step '%s'", sn ? sn : "?");
    rc = whose ? check_one(schema, o, name, whose) : zorch__error_oom();
    free(whose);
  }
  json_decref(schema);
  return rc;
}
