#!/usr/bin/env bash
# Builds the annal Debian package (annald, annal-verify, the systemd unit,
# the sysusers entry, the default config, docs) with cargo-deb, then checks
# it with lintian and fails on any lintian error. Prints the .deb's path as
# the last line. The package metadata is [package.metadata.deb] in
# daemon/Cargo.toml; the .deb lands in <cargo target dir>/debian/.
#
# Needs: the Rust toolchain, lintian and dpkg-dev (`apt-get install lintian
# dpkg-dev`); installs cargo-deb (crates.io) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "== installing cargo-deb" >&2
    cargo install cargo-deb --locked
fi
for tool in lintian dpkg-shlibdeps; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build-deb: $tool is missing: apt-get install lintian dpkg-dev" >&2
        exit 1
    fi
done

# The Debian changelog's newest entry must be this version, revision 1
# (cargo-deb's default): lintian cannot see a stale changelog, dpkg users can.
id=$(cargo pkgid -p annal-daemon)
version=${id##*[@#]}
changelog=$(sed -n '1s/^annal (\([^)]*\)).*/\1/p' packaging/debian/changelog)
if [ "$changelog" != "$version-1" ]; then
    echo "build-deb: packaging/debian/changelog starts at '$changelog', the crate is $version-1: add an entry" >&2
    exit 1
fi

echo "== building release binaries" >&2
# Both binaries in one build; cargo-deb then packages them as they are.
cargo build --release --locked -p annal-daemon -p annal-verify --bins >&2

echo "== packaging" >&2
# --strip: the release profile keeps line tables, which cargo-deb would ship.
deb=$(cargo deb -p annal-daemon --no-build --strip | tail -n 1)
if [ ! -f "$deb" ]; then
    echo "build-deb: cargo-deb did not report a package (got '$deb')" >&2
    exit 1
fi

echo "== lintian $deb" >&2
# Overrides, each with its reason, ship inside the package
# (packaging/lintian-overrides); lintian reads them from there.
lintian --fail-on error --display-info "$deb" >&2

echo "$deb"
