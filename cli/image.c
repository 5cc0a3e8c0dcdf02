/* zorch CLI — `zorch step run` (the command-step entrypoint) and `zorch image build`. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int cmd_step_run(const cli_cmd *cmd, int argc, char **argv) {
  (void)cmd;
  for (int i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      cli_print_help(cmd, stdout);
      return CLI_EXIT_OK;
    }
  /* zorch_command_step_main reads argv[1..] like a main() */
  return zorch_command_step_main(argc + 1, argv - 1);
}

int cmd_image_build(const cli_cmd *cmd, int argc, char **argv) {
  static const cli_opt opts[] = {{"program", 'p', true}, {"add", 'a', true},
                                 {"docker-host", 'H', true}, {"no-zorch", 0, false},
                                 {"builder", 'b', true}, {NULL, 0, false}};
  cli_parser p;
  cli_parser_init(&p, cmd, opts, argc, argv);
  const char *name = NULL, *val;
  zorch_image_options o = ZORCH_IMAGE_OPTIONS_INIT;
  const char **extra = calloc((size_t)argc + 1, sizeof *extra);
  size_t n_extra = 0;
  int r;
  if (!extra) return cli_error("out of memory");
  while ((r = cli_getopt(&p, &val)) != CLI_OPT_END) {
    switch (r) {
    case 0: o.program = val; break;
    case 1: extra[n_extra++] = val; break;
    case 2: o.docker_host = val; break;
    case 3: o.no_zorch = 1; break;
    case 4: o.builder = val; break;
    case CLI_OPT_POSITIONAL:
      if (name) {
        free(extra);
        return cli_usage_error(cmd, "unexpected argument '%s'", val);
      }
      name = val;
      break;
    default:
      free(extra);
      return cli_opt_exit(cmd, r);
    }
  }
  if (!name) {
    free(extra);
    return cli_usage_error(cmd, "the image NAME is missing");
  }
  if (!o.program) {
    free(extra);
    return cli_usage_error(cmd, "--program is missing: the program whose steps the image runs");
  }
  o.extra = n_extra ? extra : NULL;
  char *id = NULL;
  /* through the registry: an image-builder flavor builds (see zorch/image.h) */
  int rc = zorch_image_build(name, &o, &id);
  free(extra);
  if (rc) return cli_lib_error();
  printf("%s %s\n", name, id ? id : "");
  zorch_free(id);
  return CLI_EXIT_OK;
}
