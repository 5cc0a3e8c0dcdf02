/* A fixture image-builder flavor (plugin ABI 1.2) for the routing tests of
 * zorch_image_build() and `zorch image build`: it builds nothing.  build()
 * writes the config and the request it got to $ZORCH_FIXTURE_IMAGE_OUT
 * (two lines: config, request) and answers "sha256:fixture-<name>".  A name
 * that starts with "fail" fails with ZORCH_EIO and a message.
 *
 * It registers `fixture_image`, and `fixture_image_two` as well when
 * $ZORCH_FIXTURE_IMAGE_TWO is set (two builders loaded at once).
 */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zorch/plugin.h>

typedef struct {
  const zorch_host *host;
  const char *flavor;
} fx_payload;

static int fx_check_config(void *payload, const char *config_json) {
  const fx_payload *p = payload;
  if (strstr(config_json, "refuse"))
    return zorch_host_errorf(p->host, ZORCH_EINVALID, "%s refuses this config", p->flavor);
  return ZORCH_OK;
}

static int fx_build(char **out_image_id, void *payload, const char *config_json,
                    const char *request_json) {
  const fx_payload *p = payload;
  *out_image_id = NULL;
  const char *out = getenv("ZORCH_FIXTURE_IMAGE_OUT");
  if (out && *out) {
    FILE *f = fopen(out, "w");
    if (f) {
      fprintf(f, "%s\n%s\n%s\n", p->flavor, config_json, request_json);
      fclose(f);
    }
  }
  const char *name = strstr(request_json, "\"name\":\"");
  if (!name) return zorch_host_errorf(p->host, ZORCH_EINVALID, "the request has no name");
  name += 8;
  size_t n = strcspn(name, "\"");
  if (!strncmp(name, "fail", 4))
    return zorch_host_errorf(p->host, ZORCH_EIO, "the fixture engine refuses %.*s", (int)n, name);
  char id[256];
  snprintf(id, sizeof id, "sha256:fixture-%.*s", (int)n, name);
  *out_image_id = p->host->alloc(strlen(id) + 1);
  if (!*out_image_id) return ZORCH_ENOMEM;
  memcpy(*out_image_id, id, strlen(id) + 1);
  return ZORCH_OK;
}

static const zorch_image_builder_ops fx_ops = {
    .version = ZORCH_IMAGE_BUILDER_OPS_VERSION, .check_config = fx_check_config, .build = fx_build};

#define FX_SCHEMA                                                                                 \
  "{\"type\":\"object\",\"properties\":{\"docker_host\":{\"type\":\"string\",\"pattern\":"        \
  "\"^(unix|tcp)://\"}},\"additionalProperties\":false}"

static const zorch_flavor_desc fx_one = {
    .version = ZORCH_FLAVOR_DESC_VERSION, .type = ZORCH_COMPONENT_IMAGE_BUILDER,
    .name = "fixture_image", .integration = "test", .description = "An image builder that builds nothing",
    .config_schema = FX_SCHEMA, .ops = &fx_ops};
static const zorch_flavor_desc fx_two = {
    .version = ZORCH_FLAVOR_DESC_VERSION, .type = ZORCH_COMPONENT_IMAGE_BUILDER,
    .name = "fixture_image_two", .integration = "test", .description = "A second one",
    .config_schema = FX_SCHEMA, .ops = &fx_ops};

static int fx_init(const zorch_host *host, zorch_registrar *reg, void **plugin_ctx) {
  fx_payload *p = host->alloc(2 * sizeof *p);
  if (!p) return ZORCH_ENOMEM;
  p[0] = (fx_payload){host, "fixture_image"};
  p[1] = (fx_payload){host, "fixture_image_two"};
  *plugin_ctx = p;
  int rc = host->add_flavor(reg, &fx_one, &p[0]);
  const char *two = getenv("ZORCH_FIXTURE_IMAGE_TWO");
  if (!rc && two && *two) rc = host->add_flavor(reg, &fx_two, &p[1]);
  return rc;
}

static void fx_teardown(void *plugin_ctx) {
  fx_payload *p = plugin_ctx;
  if (p) p->host->free(p);
}

ZORCH_PLUGIN_DEFINE("fixture_image", "0.0", "image-builder test fixture", fx_init, fx_teardown)
