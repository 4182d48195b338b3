#!/bin/sh
# deb-buildroot.sh DIST ROOT SRC: the build tree for `make deb DIST=...`.
#
# Makes ROOT once with `debootstrap --variant=minbase DIST` (made beside it and renamed in one
# step: an interrupted run never leaves a half tree that a later run takes for a cached one),
# then installs what SRC/debian/control's Build-Depends name, with `apt-get build-dep`, whenever
# debian/control changed since the last time (a stamp beside the tree). Nothing is booted: a
# plain systemd-nspawn shares the host's network for apt.
set -eu
dist=$1 root=$2 src=$3
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8

if [ ! -x "$root/usr/bin/apt-get" ]; then
    echo "deb-buildroot: debootstrap $dist into $root (once)"
    rm -rf "$root.tmp"
    mkdir -p "$(dirname "$root")"
    debootstrap --variant=minbase --include=ca-certificates "$dist" "$root.tmp" >"$root.debootstrap.log"
    mv "$root.tmp" "$root"
fi

stamp=$root.build-deps
wanted=$(sha256sum "$src/debian/control" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "deb-buildroot: build dependencies of debian/control into $root"
    systemd-nspawn -q -D "$root" --register=no --keep-unit --pipe \
        --setenv=DEBIAN_FRONTEND=noninteractive --bind-ro="$src/debian:/srv/debian" \
        sh -c 'set -e; mkdir -p /tmp/src; cp -r /srv/debian /tmp/src/; apt-get update -q;
               apt-get build-dep -y -q --no-install-recommends /tmp/src; apt-get clean' \
        </dev/null
    echo "$wanted" >"$stamp"
fi
