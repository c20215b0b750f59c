#!/usr/bin/env bash
# Makes a SoftHSM2 token available for the PKCS#11 tests and prints the environment they read, as
# `export` lines (the only output on stdout; progress goes to stderr):
#   eval "$(scripts/ensure-softhsm.sh)"
# On a fresh Debian machine (as root or with passwordless sudo) it installs Debian's softhsm2. The
# token lives in its own directory (default /tmp/kmsd-softhsm, or $KMSD_SOFTHSM_DIR) with its own
# softhsm2.conf, so it never touches the system's tokens; running the script again reuses it.
#
#   SOFTHSM2_CONF              the SoftHSM2 configuration naming that token directory
#   KMSD_TEST_PKCS11_MODULE    the PKCS#11 module, /usr/lib/softhsm/libsofthsm2.so
#   KMSD_TEST_PKCS11_TOKEN     the token label
#   KMSD_TEST_PKCS11_PIN_FILE  a file (mode 0600) holding the user PIN
set -euo pipefail

DIR="${KMSD_SOFTHSM_DIR:-/tmp/kmsd-softhsm}"
LABEL=kmsd-test
MODULE=/usr/lib/softhsm/libsofthsm2.so
# Test-only secrets of a throw-away token.
USER_PIN=kmsd-test-pin
SO_PIN=kmsd-test-so-pin

say() { echo "ensure-softhsm: $*" >&2; }
die() { say "$*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

if [ ! -e "$MODULE" ] || ! command -v softhsm2-util >/dev/null; then
  say "installing softhsm2 from Debian"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >&2
fi
[ -e "$MODULE" ] || die "softhsm2 is installed but $MODULE is missing"

mkdir -p "$DIR/tokens"
chmod 700 "$DIR"
CONF="$DIR/softhsm2.conf"
cat >"$CONF" <<EOF
directories.tokendir = $DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
export SOFTHSM2_CONF="$CONF"

PIN_FILE="$DIR/user.pin"
if ! softhsm2-util --show-slots 2>/dev/null | grep -Eq "^ *Label: *$LABEL *$" || [ ! -s "$PIN_FILE" ]; then
  say "initialising token $LABEL in $DIR/tokens"
  rm -rf "$DIR/tokens" && mkdir -p "$DIR/tokens"
  softhsm2-util --init-token --free --label "$LABEL" --pin "$USER_PIN" --so-pin "$SO_PIN" >&2
  (umask 077 && printf '%s' "$USER_PIN" >"$PIN_FILE")
fi
chmod 600 "$PIN_FILE"

echo "export SOFTHSM2_CONF='$CONF'"
echo "export KMSD_TEST_PKCS11_MODULE='$MODULE'"
echo "export KMSD_TEST_PKCS11_TOKEN='$LABEL'"
echo "export KMSD_TEST_PKCS11_PIN_FILE='$PIN_FILE'"
