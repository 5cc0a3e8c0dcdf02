#!/usr/bin/env bash
# Export test: what libzorch.so exports, what lib/libzorch.map lists and what
# the public headers declare with ZORCH_API must be the same set of names.
# Every exported symbol must carry the version node the map puts it in
# (readelf --dyn-syms: name@@ZORCH_1.0), and the SONAME must be libzorch.so.1.
# (jansson's check-exports, xkbcommon's symbols-leak-test, systemd's
# generate-sym-test.)
#
# Usage: check-exports.sh LIBZORCH_SO SOURCE_ROOT
set -euo pipefail

lib=${1:?usage: check-exports.sh LIBZORCH_SO SOURCE_ROOT}
src=${2:?usage: check-exports.sh LIBZORCH_SO SOURCE_ROOT}
map=$src/lib/libzorch.map
expected_soname=libzorch.so.1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zorch-exports.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0
fail() { echo "FAIL: $*"; status=1; }
indent() { sed 's/^/    /'; }

# 1. Names the headers declare with ZORCH_API (a declaration may span lines:
#    its name is the last identifier before the first '(').
awk '
  /^[ \t]*ZORCH_API([ \t]|$)/ { decl = ""; collecting = 1 }
  collecting {
    decl = decl " " $0
    if (decl ~ /\(/ || decl ~ /;/) {
      sub(/\(.*/, "", decl); sub(/;.*/, "", decl); sub(/\[.*/, "", decl)
      n = split(decl, words, /[^A-Za-z0-9_]+/)
      for (i = n; i > 0 && words[i] == ""; i--) ;
      print words[i]
      collecting = 0
    }
  }' "$src"/include/zorch/*.h "$src"/include/zorch/version.h.in | LC_ALL=C sort >"$tmp/headers"

# 2. Names the version script lists, as "name node".
awk '
  /^[ \t]*[A-Za-z_][A-Za-z0-9_.]*[ \t]*\{/ { node = $1; sub(/\{.*/, "", node); next }
  /^[ \t]*(global|local)[ \t]*:/ { scope = $1; sub(/:.*/, "", scope); next }
  /^[ \t]*\}/ { node = ""; next }
  node != "" && scope == "global" {
    line = $0; sub(/\/\*.*\*\//, "", line); sub(/#.*/, "", line)
    gsub(/[ \t;]/, "", line)
    if (line != "") print line, node
  }' "$map" | LC_ALL=C sort >"$tmp/map-nodes"
cut -d' ' -f1 "$tmp/map-nodes" >"$tmp/map"
tr -d ' \t\n' <"$map" | grep -q 'local:\*;' ||
  fail "$map has no 'local: *;': every symbol not listed would leak"

# 3. Names the shared object defines in its dynamic symbol table (nm prints
#    name@@VERSION; the version nodes themselves appear as absolute symbols).
nm -D --defined-only "$lib" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' |
  LC_ALL=C sort -u >"$tmp/exports"

[[ -s $tmp/headers ]] || fail "no ZORCH_API declaration found under $src/include/zorch"
[[ -s $tmp/map ]] || fail "no global symbol found in $map"

compare() { # compare A-NAME A-FILE B-NAME B-FILE
  local only_a only_b
  only_a=$(LC_ALL=C comm -23 "$2" "$4")
  only_b=$(LC_ALL=C comm -13 "$2" "$4")
  if [[ -n $only_a ]]; then
    fail "in $1 but not in $3:"
    indent <<<"$only_a"
  fi
  if [[ -n $only_b ]]; then
    fail "in $3 but not in $1:"
    indent <<<"$only_b"
  fi
}
compare "the headers (ZORCH_API)" "$tmp/headers" "lib/libzorch.map" "$tmp/map"
compare "lib/libzorch.map" "$tmp/map" "the exports of $(basename "$lib")" "$tmp/exports"

dups=$(uniq -d "$tmp/map")
[[ -z $dups ]] || { fail "listed more than once in the map:"; indent <<<"$dups"; }
bad=$(grep -v '^zorch_[a-z0-9]' "$tmp/map" || true)
[[ -z $bad ]] || { fail "map names outside the zorch_ namespace or internal (zorch__):"; indent <<<"$bad"; }

# 4. Each defined symbol has, as its default version (name@@NODE), the node
#    the map lists it under.
readelf --dyn-syms -W "$lib" >"$tmp/dynsyms"
awk '$7 != "UND" && $8 ~ /@/ {
    name = $8; ver = $8
    sub(/@.*/, "", name); sub(/^[^@]*/, "", ver)
    print name, ver
  }' "$tmp/dynsyms" | LC_ALL=C sort -u >"$tmp/versions"
misversioned=$(awk 'NR == FNR { ver[$1] = $2; next }
  ver[$1] != "@@" $2 { print $1 ": " $1 (ver[$1] == "" ? " (unversioned)" : ver[$1]) \
                             ", expected " $1 "@@" $2 }' "$tmp/versions" "$tmp/map-nodes")
[[ -z $misversioned ]] || { fail "symbol versions differ from the map:"; indent <<<"$misversioned"; }
grep -q '@@ZORCH_1\.0$' "$tmp/dynsyms" ||
  fail "readelf --dyn-syms shows no symbol at the default version @@ZORCH_1.0"

# 5. SONAME.
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[[ $soname == "$expected_soname" ]] || fail "SONAME is '${soname:-none}', expected $expected_soname"

if [[ $status == 0 ]]; then
  echo "ok: $(wc -l <"$tmp/exports") symbols: headers = map = exports of $(basename "$lib")," \
    "versioned as in the map, SONAME $soname"
fi
exit "$status"
