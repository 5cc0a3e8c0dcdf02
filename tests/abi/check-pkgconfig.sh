#!/usr/bin/env bash
# pkg-config test: the uninstalled zorch.pc that meson generates in the build
# directory (meson-uninstalled/zorch-uninstalled.pc) names the plugin
# directory (an absolute path) and the plugin ABI, and a small program
# compiles, links and runs with nothing but
# `pkg-config --cflags --libs zorch` -- the way an out-of-tree flavor or
# host program is built.
#
# Usage: check-pkgconfig.sh BUILD_ROOT PROGRAM.c CC [EXTRA_CFLAG...]
#   EXTRA_CFLAGs are the sanitizer flags of the build, if any.
set -euo pipefail

build=${1:?usage: check-pkgconfig.sh BUILD_ROOT PROGRAM.c CC [EXTRA_CFLAG...]}
prog=${2:?}
read -r -a cc <<<"${3:?}"
shift 3

export PKG_CONFIG_PATH=$build/meson-uninstalled
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
status=0
fail() { echo "FAIL: $*"; status=1; }

if [[ ! -f $PKG_CONFIG_PATH/zorch-uninstalled.pc ]]; then
  echo "FAIL: $PKG_CONFIG_PATH/zorch-uninstalled.pc does not exist"
  exit 1
fi
pkg-config --exists --print-errors zorch

plugindir=$(pkg-config --variable=plugindir zorch)
[[ -n $plugindir ]] || fail "pkg-config --variable=plugindir zorch is empty"
[[ $plugindir == /* ]] || fail "plugindir '$plugindir' is not an absolute path"
plugin_abi=$(pkg-config --variable=plugin_abi zorch)
[[ $plugin_abi == 1 ]] || fail "plugin_abi is '$plugin_abi', expected 1 (ZORCH_PLUGIN_ABI_MAJOR)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zorch-pc.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
read -r -a cflags <<<"$(pkg-config --cflags zorch)"
read -r -a libs <<<"$(pkg-config --libs zorch)"
echo "cflags: ${cflags[*]}"
echo "libs: ${libs[*]}"
if ! "${cc[@]}" -std=c99 -Wall -Wextra -Werror "$@" "${cflags[@]}" -o "$tmp/user" "$prog" "${libs[@]}"; then
  fail "the program does not build with pkg-config --cflags --libs zorch"
else
  read -r -a ldirs <<<"$(pkg-config --libs-only-L zorch)"
  libdirs=$(IFS=:; echo "${ldirs[*]#-L}")
  if ! LD_LIBRARY_PATH=$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$tmp/user"; then
    fail "the program built with pkg-config does not run"
  fi
fi
[[ $status == 0 ]] && echo "ok: plugindir=$plugindir plugin_abi=$plugin_abi; program built and ran"
exit "$status"
