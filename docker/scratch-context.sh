#!/bin/sh
# Assembles a docker build context for docker/Dockerfile.scratch from prebuilt static binaries.
#
# Usage: docker/scratch-context.sh DIR APPS_FILE [EXTRA_STATIC_BINARY]...
#   PMI_BIN   the static pmi (default: target/x86_64-unknown-linux-musl/release/pmi)
#   BUSYBOX   a static busybox for shell tools (default: /bin/busybox, Debian's busybox-static);
#             set BUSYBOX=none for an image with pmi and your binaries only.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DIR APPS_FILE [EXTRA_STATIC_BINARY]..." >&2; exit 2; }
out=$1
apps=$2
shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)
pmi=${PMI_BIN:-$repo/target/x86_64-unknown-linux-musl/release/pmi}
busybox=${BUSYBOX:-/bin/busybox}

[ -x "$pmi" ] || {
  echo "no pmi binary at $pmi: run cargo build --release --target x86_64-unknown-linux-musl" >&2
  exit 1
}
[ -f "$apps" ] || { echo "no apps file at $apps" >&2; exit 1; }

root=$out/rootfs
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/bin" "$root/app" "$root/run" "$root/tmp"
chmod 0755 "$root/run"
chmod 1777 "$root/tmp"
cp "$pmi" "$root/usr/local/bin/pmi"
if [ "$busybox" != none ]; then
  [ -x "$busybox" ] || { echo "no busybox at $busybox (apt-get install busybox-static, or BUSYBOX=none)" >&2; exit 1; }
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
fi
cp "$apps" "$root/app/"
for bin in "$@"; do
  cp "$bin" "$root/usr/local/bin/"
done
# The image runs the file it was given: CMD names it (Dockerfile.scratch's default is apps.yaml).
name=$(basename "$apps")
case $name in
  *'"'*|*'\'*) echo "the apps file's name must not contain \" or \\: $name" >&2; exit 2 ;;
esac
grep -v '^CMD ' "$repo/docker/Dockerfile.scratch" > "$out/Dockerfile"
printf 'CMD ["%s"]\n' "$name" >> "$out/Dockerfile"
echo "build context ready: docker build -t IMAGE $out"
