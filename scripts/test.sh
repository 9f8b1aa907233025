#!/usr/bin/env bash
# Runs every test of Gatehouse on a Debian machine as root: installs what the
# build needs besides the Rust toolchain (a C compiler for ring, zstd, lz4)
# and what the tests talk to (ClickHouse, curl, openssl, iproute2, nftables,
# nginx as an origin, util-linux for prlimit, python peers, chromium for the
# browser tests, systemd and dpkg-dev for the package test), starts a
# throw-away ClickHouse on loopback, checks formatting and lints, runs the
# whole workspace's tests, and stops ClickHouse again (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh needs root (it installs packages and makes network namespaces)" >&2
  exit 1
fi

packages=(gcc libc6-dev clickhouse-server clickhouse-client curl openssl iproute2 nftables ca-certificates nginx util-linux procps python3 python3-pip mosquitto prosody prometheus nodejs chromium chromium-driver libnss3-tools systemd dpkg-dev dnsmasq-base bind9-dnsutils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The client-library tests name hosts for the gateway under `unshare
# --mount` by bind-mounting their own hosts file over /etc/hosts, which must
# exist (a bare debootstrap root has none; an installed Debian does).
[ -e /etc/hosts ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts

# Python peers for the end-to-end tests (real protocol client libraries);
# python3 and pip come with the package list above (one apt-get update).
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check --break-system-packages -r tests/requirements.txt

trap 'scripts/clickhouse.sh stop' EXIT
echo "== starting ClickHouse"
GATEHOUSE_TEST_CLICKHOUSE="$(scripts/clickhouse.sh start)"
export GATEHOUSE_TEST_CLICKHOUSE
echo "ClickHouse at $GATEHOUSE_TEST_CLICKHOUSE"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
