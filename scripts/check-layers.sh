#!/usr/bin/env bash
# Checks every #include "..." under a source tree against Sluice's layers:
#
#   lib     pure code (no globals, no logging)       may include lib
#   core    the daemon runtime, knows no tier         may include lib, core
#   TIER    proxy, l4, registry, ha, ...              may include lib, core, itself,
#                                                     and another tier's published *_abi.h
#   client  libsluice                                 may include lib, client
#   cmd     the sluice executable                     may include anything
#
# A folder under src/ that is none of lib, core, client or cmd is a tier,
# so a new tier needs no change here. Includes without a folder
# ("vmlinux.h", generated skeletons) and <system> headers are not checked.
#
#   scripts/check-layers.sh [SRC_DIR]      default: src; exit 1 on a violation
#   scripts/check-layers.sh --self-test    checks the checker: a small tree that
#                                          keeps the rules passes, and each of
#                                          several planted violations fails it
set -u

layer_of() {
    case "$1" in
        lib) echo 0 ;;
        core) echo 1 ;;
        client) echo 1 ;;   # beside core: it may use lib only (see allowed())
        cmd) echo 3 ;;
        *) echo 2 ;;        # a tier
    esac
}

# allowed FROM_TOP TO_TOP TO_PATH -> 0 if the include is within the rules
allowed() {
    local from=$1 to=$2 path=$3
    [ "$from" = "$to" ] && return 0
    [ "$from" = cmd ] && return 0
    case "$from" in
        lib) return 1 ;;
        client) [ "$to" = lib ] && return 0; return 1 ;;
        core) [ "$to" = lib ] && return 0; return 1 ;;
    esac
    # from a tier
    case "$to" in
        lib | core) return 0 ;;
        cmd | client) return 1 ;;
    esac
    # another tier: only its published contracts
    case "$path" in
        *_abi.h) return 0 ;;
    esac
    return 1
}

check_tree() {
    local src=$1 bad=0 file rel from inc to
    while IFS= read -r file; do
        rel=${file#"$src"/}
        from=${rel%%/*}
        while IFS= read -r inc; do
            case "$inc" in
                */*) ;;
                *) continue ;;
            esac
            to=${inc%%/*}
            [ -d "$src/$to" ] || continue   # not one of ours (e.g. bpf/bpf_helpers.h)
            if ! allowed "$from" "$to" "$inc"; then
                echo "layers: $rel includes \"$inc\": $(describe "$from" "$to")"
                bad=1
            fi
        done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
    done < <(find "$src" -type f \( -name '*.c' -o -name '*.h' \) | sort)
    return $bad
}

describe() {
    local from=$1 to=$2
    case "$from" in
        lib) echo "lib may include only lib" ;;
        core) echo "core knows no tier: it may include lib and core only" ;;
        client) echo "the client library may include lib and client only" ;;
        *) if [ "$to" = cmd ] || [ "$to" = client ]; then
               echo "a tier may not include $to"
           else
               echo "a tier may include another tier ($to) only through its *_abi.h"
           fi ;;
    esac
}

self_test() {
    local tmp fails=0
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    # A small tree in which every kind of allowed include occurs once.
    base() {
        rm -rf "$tmp/src"
        mkdir -p "$tmp/src"/{lib,core,client,cmd,proxy,l4/bpf}
        printf '#include "lib/a.h"\n#include <stdio.h>\n#include "vmlinux.h"\n' >"$tmp/src/lib/b.c"
        printf '#include "lib/a.h"\n#include "core/c.h"\n' >"$tmp/src/core/d.c"
        printf '#include "lib/a.h"\n' >"$tmp/src/client/e.c"
        printf '#include "lib/a.h"\n#include "core/c.h"\n#include "proxy/f.h"\n#include "l4/bpf/g_abi.h"\n' \
            >"$tmp/src/proxy/h.c"
        printf '#include "core/c.h"\n#include "l4/i.h"\n' >"$tmp/src/l4/j.c"
        printf '#include "proxy/f.h"\n#include "l4/i.h"\n#include "core/c.h"\n' >"$tmp/src/cmd/main.c"
    }
    plant() {   # plant FILE INCLUDE: the allowed tree plus one violation
        base
        mkdir -p "$(dirname "$tmp/src/$1")"
        printf '#include "%s"\n' "$2" >>"$tmp/src/$1"
        if check_tree "$tmp/src" >/dev/null; then
            echo "self-test: planted $1 -> $2 was not caught"
            fails=1
        fi
    }
    base
    if ! check_tree "$tmp/src"; then
        echo "self-test: a tree that keeps the rules does not pass"
        return 1
    fi
    plant lib/b.c core/c.h                 # lib -> core
    plant core/d.c proxy/f.h               # core -> tier
    plant client/e.c core/c.h              # client -> core
    plant proxy/h.c l4/i.h                 # tier -> tier, not an ABI
    plant l4/j.c cmd/k.h                   # tier -> cmd
    plant registry/m.c proxy/f.h           # a new folder is a tier too
    [ $fails -eq 0 ] && echo "self-test: a tree that keeps the rules passes; each of 6 planted violations is caught"
    return $fails
}

if [ "${1:-}" = --self-test ]; then
    self_test
    exit $?
fi
src=${1:-src}
if check_tree "$src"; then
    echo "layers: $(find "$src" -type f \( -name '*.c' -o -name '*.h' \) | wc -l) files keep lib <- core <- tiers <- cmd"
    exit 0
fi
exit 1
