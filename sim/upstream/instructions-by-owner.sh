#!/bin/bash
# Splits a callgrind profile's instructions (self cost) by whose code ran them: tokio, turmoil,
# the hashing of turmoil's maps, indexmap, libc's copies, the allocator, tether's own code (the
# engine in core/, the models in sim/, SHA-256 of affinity keys), the standard library's
# remaining helpers. Code the compiler inlined from std into a crate's function counts as that
# crate's. Needs valgrind (apt-get install -y valgrind).
#
#   valgrind --tool=callgrind --callgrind-out-file=day.cg tether sim sim/scenarios/day-peak-hour.toml
#   sim/upstream/instructions-by-owner.sh day.cg
set -eu
[ $# -eq 1 ] || { echo "usage: $0 CALLGRIND_OUT" >&2; exit 2; }
callgrind_annotate --auto=no --threshold=100 "$1" \
  | grep "%)" | sed 's/^ *\([0-9,]*\) ([ 0-9.%]*)  /\1\t/' | awk -F'\t' '
    $1 !~ /^[0-9,]+$/ { next }
    {
        n = $1; gsub(",", "", n); f = $2; split(f, a, ":"); file = a[1]
        fn = substr(f, length(file) + 2)
        if (f ~ /PROGRAM TOTALS/) next
        if (file ~ /(^|\/)(core|sim)\/src\// && file !~ /registry|rustc/) g = "tether (engine, models)"
        else if (file ~ /sha2-/) g = "tether (engine, models)"
        else if (file ~ /turmoil-/) g = "turmoil"
        else if (file ~ /tokio-/) g = "tokio"
        else if (file ~ /mimalloc/) g = "allocator"
        else if (file ~ /indexmap-|hashbrown-/) g = "indexmap (turmoil maps)"
        else if (file ~ /\/rustc\//) {
            if (file ~ /hash/ || fn ~ /hash/) g = "SipHash (turmoil maps)"
            else if (fn ~ /turmoil/) g = "turmoil"
            else if (fn ~ /tokio/) g = "tokio"
            else if (fn ~ /tether_core|tether_sim|sha2/) g = "tether (engine, models)"
            else g = "std (time, Vec, other)"
        }
        else if (file ~ /sysdeps|string|libc/) g = "libc (memcpy, memset, clock)"
        else g = "other"
        s[g] += n; t += n
    }
    END { for (g in s) printf "%6.1f %%  %s\n", 100 * s[g] / t, g }' | sort -rn
