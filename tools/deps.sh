#!/usr/bin/env bash
# Installs the Debian packages whorl needs, only those that are missing.
# Usage: tools/deps.sh [build|test|ci|bench|fuzz]   (test and bench include the
# previous sets; ci is test plus chromium for the report render check; fuzz is
# build plus clang's fuzzer runtime)
set -euo pipefail
set_name=${1:-test}

build_pkgs="build-essential pkg-config lua5.4 liblua5.4-dev libopenblas-dev libtiff-dev libstb-dev libcairo2-dev fonts-dejavu-core"
test_pkgs="lua-busted lua-cjson lua-argparse"
bench_pkgs="python3-torch"
ci_pkgs="chromium"
fuzz_pkgs="clang libclang-rt-14-dev libomp-dev"

pkgs="$build_pkgs"
case "$set_name" in
  build) ;;
  test) pkgs="$pkgs $test_pkgs" ;;
  ci) pkgs="$pkgs $test_pkgs $ci_pkgs" ;;
  bench) pkgs="$pkgs $test_pkgs $bench_pkgs" ;;
  fuzz) pkgs="$pkgs $fuzz_pkgs" ;;
  *) echo "deps.sh: unknown set '$set_name' (build, test, bench or fuzz)" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "whorl: installing missing Debian packages:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "whorl: need root (or sudo) to install:$missing" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
