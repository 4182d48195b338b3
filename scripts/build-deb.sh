#!/bin/sh
# Builds build/deb/<release>/servingd_<version>+deb<N>_amd64.deb (`make deb [DIST=...]`).
#
# Without DIST: here, for this machine's own release. With DIST (bookworm, trixie): inside a
# debootstrap'd tree of that release (scripts/deb-buildroot.sh, cached in build/deb-root/DIST),
# entered with a plain systemd-nspawn (nothing booted, the host's network for pip), so one
# machine builds for both. The version gets the release's suffix (+deb12, +deb13): the two
# builds differ (each venv is tied to its release's python3.X) and a dist-upgrade from the
# bookworm build to the trixie one is an upgrade.
#
# dpkg-buildpackage runs on a clean copy of the working tree (tracked and new files, not the
# ignored ones: no .venv, no build/) with a clean PATH: pyenv shims would shadow /usr/bin/python3.
# TF_PACKAGE (tensorflow-cpu | tensorflow) and DEB_COMPRESSION / DEB_COMPRESSION_LEVEL pass
# through to debian/rules; so do the host's pip settings (its configuration files, PIP_*
# variables and the local package directories they name), which is how pip reaches the index.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dist=${DIST:-}
root=""
if [ -n "$dist" ]; then
    root=$top/build/deb-root/$dist
    "$top/scripts/deb-buildroot.sh" "$dist" "$root" "$top"
fi
release() { (. "$root/etc/os-release" && eval echo "\$$1"); }
codename=$(release VERSION_CODENAME)
suffix=+deb$(release VERSION_ID)

out=$top/build/deb/$codename
src=$out/src
rm -rf "$src"
rm -f "$out"/servingd_* "$out"/servingd-*
mkdir -p "$src"
cd "$top"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$src"
sed -i "1s/^servingd (\([^)]*\)) [a-z-]*;/servingd (\1$suffix) $codename;/" "$src/debian/changelog"
head -1 "$src/debian/changelog"

passed="TF_PACKAGE DEB_COMPRESSION DEB_COMPRESSION_LEVEL $(env | sed -n 's/^\(PIP_[A-Z_]*\)=.*/\1/p')"
if [ -z "$root" ]; then
    cd "$src"
    env -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME -u PYENV_VERSION \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        dpkg-buildpackage --build=binary --no-sign
else
    set --
    for v in $passed; do
        eval "[ -n \"\${$v:-}\" ]" && set -- "$@" "--setenv=$v=$(eval echo "\$$v")"
    done
    # pip's configuration files, and every local path its settings name (file:// indexes,
    # find-links, the certificate bundle): a file:// index's .../simple pages link to files
    # beside it, so its parent directory goes in.
    paths=$({ python3 -m pip config list 2>/dev/null || true; env | grep '^PIP_' || true; } |
        grep -oE "(file://)?/[^ '\"]+" | sed -e 's|^file://||' -e 's|/simple/*$||' | sort -u)
    for p in /etc/pip.conf /etc/xdg/pip $paths; do
        [ -e "$p" ] && set -- "$@" "--bind-ro=$p"
    done
    [ -d "$HOME/.config/pip" ] && set -- "$@" "--bind-ro=$HOME/.config/pip:/root/.config/pip"
    PATH=/usr/sbin:/usr/bin:/sbin:/bin systemd-nspawn -q -D "$root" --register=no --keep-unit \
        --pipe --bind="$out:/build" --chdir=/build/src --setenv=PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        --setenv=LC_ALL=C.UTF-8 --setenv=HOME=/root "$@" \
        dpkg-buildpackage --build=binary --no-sign </dev/null
fi
ls -l "$out"/*.deb
