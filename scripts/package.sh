#!/usr/bin/env bash
# Builds the Debian package: target/debian/gatehouse_<version>-1_<arch>.deb,
# with the binary of the `dist` profile (release, no debug info, stripped).
# Installs cargo-deb from crates.io when missing. Prints the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_deb_version=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$cargo_deb_version"; then
  echo "== installing cargo-deb $cargo_deb_version" >&2
  cargo install cargo-deb --locked --version "$cargo_deb_version" >&2
fi

# The packaged config is the documented example with the package's paths:
# state (journal, CA) in the unit's StateDirectory, rules beside the config.
out=target/package
mkdir -p "$out"
sed -e 's|^dir = "certs"|dir = "/var/lib/gatehouse/ca"|' \
    -e 's|^dir = "dlp-rules"|dir = "/etc/gatehouse/dlp-rules"|' \
    -e 's|^journal_dir = "var/journal"|journal_dir = "/var/lib/gatehouse/journal"|' \
    gatehouse.example.toml > "$out/gatehouse.toml.new"
for want in /var/lib/gatehouse/ca /etc/gatehouse/dlp-rules /var/lib/gatehouse/journal; do
  grep -q "\"$want\"" "$out/gatehouse.toml.new" || {
    echo "scripts/package.sh: gatehouse.example.toml no longer has the key that becomes $want" >&2
    exit 1
  }
done
# Rewritten only when it changes, so cargo-deb's inputs keep their dates.
cmp -s "$out/gatehouse.toml.new" "$out/gatehouse.toml" 2>/dev/null \
  && rm "$out/gatehouse.toml.new" \
  || mv "$out/gatehouse.toml.new" "$out/gatehouse.toml"

# --fast: gzip-speed compression; the package build stays quick in CI.
cargo deb --locked --fast --profile dist -p gatehouse --output target/debian >&2
ls -t target/debian/gatehouse_*.deb | head -1
