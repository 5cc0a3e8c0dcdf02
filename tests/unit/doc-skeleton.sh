#!/usr/bin/env bash
# The skeleton of a remote flavor in docs/writing-a-flavor.md ("The skeleton
# of a remote flavor") is a real plugin: extract it, build it against the
# plugin kit with -Werror, and check it exports only the entry point.
# Usage: doc-skeleton.sh SOURCE_ROOT BUILD_ROOT KIT_ARCHIVE [SANITIZERS]
# (SANITIZERS: meson's b_sanitize, so an instrumented kit links.)
set -euo pipefail
src=$1 build=$2 kit=$3 san=${4:-none}
sanflags=()
[[ $san != none && -n $san ]] && sanflags=(-fsanitize="$san")
work=$(mktemp -d "${TMPDIR:-/tmp}/zorch-doc-skeleton.XXXXXX")
trap 'rm -rf "$work"' EXIT
awk '/^### The skeleton of a remote flavor/ { on = 1 } on && /^```c$/ { code = 1; next }
     code && /^```$/ { exit } code { print }' "$src/docs/writing-a-flavor.md" >"$work/skeleton.c"
[[ -s $work/skeleton.c ]] || { echo "FAIL: no skeleton found in docs/writing-a-flavor.md"; exit 1; }
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror -fPIC -fvisibility=hidden -shared "${sanflags[@]}" \
  -I"$src/include" -I"$build/include" -I"$src/plugins/common" -o "$work/zorch-flavor-skeleton.so" \
  "$work/skeleton.c" "$kit" -ljansson -lcurl -lpthread -ldl -lm -Wl,--no-undefined ||
  { echo "FAIL: the skeleton does not build"; exit 1; }
exports=$(nm -D --defined-only "$work/zorch-flavor-skeleton.so" | awk '$2 == "T" && $3 !~ /^__/ { print $3 }')
[[ $exports == zorch_plugin_describe ]] || { echo "FAIL: the skeleton exports: $exports"; exit 1; }
echo "ok: the skeleton of docs/writing-a-flavor.md builds and exports only zorch_plugin_describe"
