#!/usr/bin/env bash
# Build the Cairn node image (deploy/Containerfile) FROM scratch, with no base image to pull:
# stage the binary and exactly its run-time files from this machine into a build context, then
# `podman build` it (`buildah build` where podman is missing).
#
#   deploy/build-image.sh [BINARY [IMAGE]]
#
# BINARY defaults to target/release/cairn, IMAGE to cairn:latest (what deploy/compose.yaml
# runs). The binary is copied without its debug information (`strip --strip-debug`: symbols
# stay, so backtraces still name functions). Its shared libraries and the dynamic loader are
# the ones `ldd` names, copied to the same paths; CA certificates (ca-certificates) and the
# Debian archive keyring (debian-archive-keyring) come from this machine, which must have them.
# Build on the distribution whose libraries the binary was linked against (Debian bookworm).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
binary=${1:-$repo/target/release/cairn}
image=${2:-cairn:latest}
uid=10001

die() { echo "build-image: $*" >&2; exit 1; }

[ -x "$binary" ] || die "no executable at $binary (build it: cargo build --release --locked --bin cairn)"
command -v strip >/dev/null || die "strip is required (binutils)"
if command -v podman >/dev/null; then
  build=(podman build)
elif command -v buildah >/dev/null; then
  build=(buildah build)
else
  die "podman or buildah is required"
fi
certs=/etc/ssl/certs/ca-certificates.crt
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$certs" ] || die "$certs is missing (install ca-certificates)"
[ -f "$keyring" ] || die "$keyring is missing (install debian-archive-keyring)"

context=$(mktemp -d "${TMPDIR:-/tmp}/cairn-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
root=$context/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/usr/share/keyrings" "$root/var/lib"

strip --strip-debug -o "$root/usr/local/bin/cairn" "$binary"
chmod 0755 "$root/usr/local/bin/cairn"

# `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", the loader as
# "/lib64/ld-linux-x86-64.so.2 (0x…)", and the kernel's vDSO with no path. A static binary has
# none ("not a dynamic executable").
if libraries=$(ldd "$binary" 2>&1); then
  ! grep -q 'not found' <<<"$libraries" || die "ldd $binary: a library is missing:"$'\n'"$libraries"
  while read -r path; do
    [ -n "$path" ] || continue
    mkdir -p "$root$(dirname "$path")"
    cp -L "$path" "$root$path"
  done < <(printf '%s\n' "$libraries" | awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }')
  [ -n "$(find "$root" -name 'ld-linux*' -print -quit)" ] \
    || die "ldd named no dynamic loader for $binary:"$'\n'"$libraries"
elif ! grep -q 'not a dynamic executable' <<<"$libraries"; then
  die "ldd $binary: $libraries"
fi

cp -L "$certs" "$root$certs"
cp -L "$keyring" "$root$keyring"
chmod 0644 "$root$certs" "$root$keyring"
printf 'root:x:0:0:root:/root:/sbin/nologin\ncairn:x:%s:%s:Cairn:/var/lib/cairn:/sbin/nologin\n' \
  "$uid" "$uid" >"$root/etc/passwd"
printf 'root:x:0:\ncairn:x:%s:\n' "$uid" >"$root/etc/group"
# Names resolve from /etc/hosts (the container engine writes it) and then DNS.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
mkdir -m 1777 "$root/tmp"
# The store's directory, 0700 and the user's; /var/lib above it stays root's.
mkdir -p "$context/store/cairn"
chmod 0700 "$context/store/cairn"

"${build[@]}" --format docker --file "$repo/deploy/Containerfile" --tag "$image" "$context"
