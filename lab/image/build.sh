#!/usr/bin/env bash
# Build the lab VM image: a Debian 12 root file system shaped like an Azure ML compute
# instance (user azureuser with passwordless sudo, sshd on port 50000 with key-only auth,
# python3, cron, journald), carrying the test doubles from tests/doubles/rootfs.
#
# Usage: build.sh IMAGE_REF
# Called by `lab/forge-lab image` when the recipe hash changes; not meant to be run by hand.
set -euo pipefail

image_ref=${1:?usage: build.sh IMAGE_REF}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mirror=${FORGE_LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Real CPython builds behind the conda double (/anaconda, as on Azure ML images): 3.10 is what
# Forge wants, 3.9 makes "an env with the wrong Python" possible. pyenv builds made on Debian 12.
pyenv_root=${FORGE_LAB_PYENV_ROOT:-${PYENV_ROOT:-/root/.pyenv}}
conda_pythons=(3.10.13 3.9.18)
for version in "${conda_pythons[@]}"; do
    if [[ ! -x "$pyenv_root/versions/$version/bin/python${version%.*}" ]]; then
        echo "forge-lab: the conda double needs CPython $version built by pyenv in" \
            "$pyenv_root/versions/$version (pyenv install $version, or set FORGE_LAB_PYENV_ROOT)" >&2
        exit 1
    fi
done

work=$(mktemp -d /var/tmp/forge-lab-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

echo "forge-lab: bootstrapping Debian 12 into $rootfs (about a minute)"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,sudo,cron,procps,iproute2,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES

# The image's own configuration, then the test doubles (mirroring their install paths).
cp -a "$here/rootfs/." "$rootfs/"
cp -a "$repo/tests/doubles/rootfs/." "$rootfs/"
chmod 0440 "$rootfs/etc/sudoers.d/90-azureuser"

# conda double: the Pythons as conda's package cache (pkgs/python-<v>-0, without their test
# suites, IDLE, Tk and static library), the base env and Azure ML's own env hard-linked from
# it as conda links packages. Their libpython is found through ld.so.conf (pyenv's RUNPATH
# points at the build machine's path).
for version in "${conda_pythons[@]}"; do
    pkg=$rootfs/anaconda/pkgs/python-$version-0
    mkdir -p "$pkg"
    tar -C "$pyenv_root/versions/$version" \
        --exclude='./lib/python*/test' --exclude='./lib/python*/idlelib' \
        --exclude='./lib/python*/tkinter' --exclude='./lib/python*/turtledemo' \
        --exclude='*.a' --exclude='./lib/python*/site-packages/_sandboxing*' -c . | tar -C "$pkg" -x
    echo "/anaconda/pkgs/python-$version-0/lib" >>"$rootfs/etc/ld.so.conf.d/anaconda-python.conf"
done
cp -al "$rootfs/anaconda/pkgs/python-3.10.13-0/." "$rootfs/anaconda/"
mkdir -p "$rootfs/anaconda/conda-meta" "$rootfs/anaconda/envs/azureml_py39/conda-meta"
cp -al "$rootfs/anaconda/pkgs/python-3.9.18-0/." "$rootfs/anaconda/envs/azureml_py39/"
echo "==> image build <==" >"$rootfs/anaconda/conda-meta/history"
echo "==> image build <==" >"$rootfs/anaconda/envs/azureml_py39/conda-meta/history"

# Every VM generates its own SSH host keys on first boot (ssh-host-keys.service).
rm -f "$rootfs"/etc/ssh/ssh_host_*

chroot "$rootfs" /bin/sh -euxc '
    useradd --create-home --shell /bin/bash azureuser
    passwd --lock azureuser
    install -d -m 0700 -o azureuser -g azureuser /home/azureuser/.ssh
    systemctl enable ssh-host-keys.service ssh.service cron.service
    ldconfig
    chown -R azureuser:azureuser /anaconda
    # Units that only make sense on a real machine and fail or hang in a container.
    systemctl mask getty@tty1.service console-getty.service systemd-remount-fs.service \
        sys-kernel-config.mount sys-kernel-debug.mount
    apt-get clean
' >"$work/chroot.log" 2>&1 || { cat "$work/chroot.log" >&2; exit 1; }

echo "forge-lab: importing $image_ref"
tar -C "$rootfs" -c . | podman import \
    --quiet --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
    - "$image_ref" >/dev/null
