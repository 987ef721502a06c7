#!/usr/bin/env bash
# Builds the Debian package: binary, systemd unit, man pages, shell completions, example config.
#
#   packaging/build-deb.sh            release build (target/debian/tether_*.deb)
#   PROFILE=dev packaging/build-deb.sh  package the debug binary already built (CI: no release
#                                       compile on 2 cores)
#
# Installs cargo-deb (cargo install --locked) only when it is not on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${PROFILE:-release}"
case "$PROFILE" in
    release) bindir=target/release ;;
    dev) bindir=target/debug ;;
    *) echo "PROFILE must be release or dev, not $PROFILE" >&2; exit 2 ;;
esac

if ! command -v cargo-deb >/dev/null; then
    echo "installing cargo-deb (once)" >&2
    cargo install --locked cargo-deb
fi

cargo build -p tether --profile "$PROFILE"

# Man pages and completions come from the binary's own clap definition.
out=target/packaging
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bindir/tether" man "$out/man" >/dev/null
gzip -9n "$out"/man/*.1
"$bindir/tether" completions bash >"$out/completions/tether.bash"
"$bindir/tether" completions zsh >"$out/completions/_tether"
"$bindir/tether" completions fish >"$out/completions/tether.fish"

cargo deb -p tether --no-build --profile "$PROFILE"
