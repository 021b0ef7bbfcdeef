#!/bin/sh
# Install the Debian packages cutmixd needs, only those that are missing.
#   scripts/deps.sh          build, test and demo packages (torchvision is
#                            the oracle of the recipe tests, dnsmasq-base
#                            the DNS server of the discovery tests, without
#                            a system service; jpegtran makes hostile-JPEG
#                            fixtures)
#   scripts/deps.sh bench    the same (kept for `make bench`)
#   scripts/deps.sh fuzz     also clang and libFuzzer's runtime
set -eu

pkgs="build-essential pkgconf libjpeg62-turbo-dev libturbojpeg0-dev libzmq3-dev
libinih-dev libsystemd-dev libcmocka-dev libspng-dev libwebp-dev python3-zmq python3-numpy
python3-pytest python3-pil iproute2 libsodium-dev libmicrohttpd-dev prometheus groff
man-db python3-yaml systemd shellcheck python3-torch python3-torchvision dnsmasq-base
libjpeg-turbo-progs python3-setuptools python3-wheel python3-venv python3-pip util-linux"
case "${1:-}" in
bench) ;;
fuzz)  pkgs="$pkgs clang libclang-rt-14-dev" ;;
esac

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
