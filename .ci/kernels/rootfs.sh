#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the cached guest for one Debian suite and architecture: a root
# filesystem of the suite's essential and required packages plus what the
# tests use, with the suite's stock cloud kernel, as an ext4 image, with the
# kernel and a small initramfs beside it.
#
#   rootfs.sh SUITE[-ARCH] DIR   e.g. rootfs.sh bookworm /var/cache/net-tc-filter-kernels/bookworm
#                                     rootfs.sh bookworm-arm64 /var/cache/net-tc-filter-kernels/bookworm-arm64
#
# ARCH is a Debian architecture (default: the host's). Nothing of the guest
# runs on the host, for any architecture: mmdebstrap's extract variant
# downloads the packages (dependencies resolved by apt, signatures checked
# against the host's Debian keyring) and unpacks them without running a
# maintainer script, so a foreign architecture needs no qemu-user and a
# fresh build takes well under a minute instead of the ~12 minutes of CPU a
# debootstrap through qemu-user took (its second stage and the kernel's
# postinst building the initramfs, twice). What those scripts would have
# done and the tests rely on is done here with host tools: accounts
# (base-passwd's masters, shadow), nsswitch.conf, awk, the modules' index
# (depmod), the loader's cache. The initramfs is ours: the cloud kernel has
# virtio and virtio_blk as modules, so a static busybox of the guest's
# architecture loads them, mounts root= and switch_roots to init=.
#
# The kernel comes from SUITE, SUITE-updates and SUITE-security: what an
# up-to-date Debian cloud image runs. DIR gets rootfs.img, vmlinuz,
# initrd.img, kernel.txt (the package and version), packages.txt (every
# package in the image) and stamp (the recipe's hash, so a changed recipe
# rebuilds). Nothing of the host's apt configuration is used or changed.
set -euo pipefail

target=$1 dir=$2
suite=${target%%-*}
host_arch=$(dpkg --print-architecture)
arch=$host_arch
[[ $target != *-* ]] || arch=${target#*-}
mirror=${NTF_KERNELS_MIRROR:-http://deb.debian.org/debian}
security=${NTF_KERNELS_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
here=$(cd "$(dirname "$0")" && pwd)
# What the test suite needs in the guest beyond the essential and required
# packages (coreutils, util-linux's nsenter, unshare and setpriv, passwd's
# useradd, mawk): iproute2 (ip), kmod (modprobe for veth, tun, sch_ingress,
# cls_bpf), procps; for the D-Bus tests dbus (dbus-daemon, dbus-send) and
# systemd (busctl; not as init); busybox-static for the initramfs.
packages="linux-image-cloud-$arch iproute2 kmod procps dbus systemd busybox-static"
stamp=$(cat "$0" "$here/ntf-init" | sha256sum | cut -c1-16)

if [[ -f $dir/stamp && $(cat "$dir/stamp") == "$stamp" && -f $dir/rootfs.img ]]; then
	echo "rootfs $target: cached in $dir ($(cat "$dir/kernel.txt"))"
	exit 0
fi
for tool in mmdebstrap depmod cpio xz mkfs.ext4 pwconv systemd-sysusers; do
	command -v "$tool" >/dev/null || { echo "rootfs $target: $tool is missing (make kernels installs it)" >&2; exit 1; }
done

work=$dir.build
root=$work/root
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT
rm -rf --one-file-system "$work"
mkdir -p "$work"
start=$SECONDS

# Merged /usr, as debootstrap makes it for these suites (trixie's packages
# ship nothing else): the top-level directories are links into /usr before
# anything is unpacked, and unpacking keeps them (mmdebstrap extracts with
# --keep-directory-symlink). amd64's loader is /lib64/ld-linux-x86-64.so.2.
links="bin sbin lib"
[[ $arch != amd64 ]] || links+=" lib64"
echo "rootfs $target: mmdebstrap (extract, $arch) from $mirror"
mmdebstrap --mode=root --variant=extract --arch="$arch" --format=directory \
	--include='?essential' --include='?priority(required)' --include="${packages// /,}" \
	--setup-hook="for d in $links; do mkdir -p \"\$1/usr/\$d\" && ln -s usr/\$d \"\$1/\$d\"; done" \
	--extract-hook="ls \"\$1/var/cache/apt/archives\" | sed -n 's/%3a/:/g; s/_[^_]*\.deb\$//p' >$work/packages.txt" \
	"$suite" "$root" \
	"deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" \
	>"$work/mmdebstrap.log" 2>&1 || { tail -n 30 "$work/mmdebstrap.log"; exit 1; }

kver=$(ls "$root/lib/modules" | head -n1)
kpkg=$(grep "^linux-image-${kver}_" "$work/packages.txt" | sed 's/_/ /' || true)
[[ -n $kver && -f $root/boot/vmlinuz-$kver ]] || { echo "rootfs $target: no kernel in the rootfs" >&2; exit 1; }

# What the skipped maintainer scripts did that the guest uses.
# base-passwd: the static accounts; passwd: shadowed passwords (useradd and
# userdel keep /etc/shadow and /etc/gshadow as on any Debian host).
cp "$root/usr/share/base-passwd/passwd.master" "$root/etc/passwd"
cp "$root/usr/share/base-passwd/group.master" "$root/etc/group"
# dbus and systemd: their system users (messagebus, systemd-journal...),
# from their sysusers.d as their postinsts would.
systemd-sysusers --root="$root" >"$work/sysusers.log" 2>&1 || { cat "$work/sysusers.log"; exit 1; }
pwconv -R "$root"
grpconv -R "$root"
# libc-bin: the name service switch (files: the accounts the tests add).
[[ -f $root/etc/nsswitch.conf ]] || cp "$root/usr/share/libc-bin/nsswitch.conf" "$root/etc/nsswitch.conf"
# mawk: the awk alternative (guest-init.sh uses awk).
[[ -e $root/usr/bin/awk ]] || ln -s mawk "$root/usr/bin/awk"
# systemd: a machine id (dbus-daemon reads it); one per image is enough.
[[ -s $root/etc/machine-id ]] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
echo >>"$root/etc/machine-id"
# kmod (the kernel's postinst): modprobe's index.
depmod -b "$root" "$kver"
# libc-bin's trigger: the loader's cache. The loader finds Debian's
# multiarch directories without it; it only spares lookups.
[[ $arch != "$host_arch" ]] || ldconfig -r "$root"

install -m 0755 "$here/ntf-init" "$root/sbin/ntf-init"
echo "ntf-$target" >"$root/etc/hostname"
mkdir -p "$root/job"
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"

# The initramfs: busybox, the modules root= needs (with what they depend
# on, in load order; compressed ones unpacked, busybox's insmod reads plain
# ELF), /dev/console for init's output, and /init.
initrd=$work/initrd
mkdir -p "$initrd"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$root/usr/bin/busybox" "$initrd/bin/busybox"
mknod -m 600 "$initrd/dev/console" c 5 1
moddir=$root/lib/modules/$kver
declare -A seen=()
order=()
want() {
	local path=$1 dep
	[[ -z ${seen[$path]:-} ]] || return 0
	seen[$path]=1
	for dep in $(sed -n "s|^$path: *||p" "$moddir/modules.dep"); do want "$dep"; done
	order+=("$path")
}
# virtio_pci for x86's and the virt board's PCI devices, virtio_mmio in
# case, the disk, and whatever of ext4 and its checksum is modular.
for name in virtio_pci virtio_mmio virtio_blk ext4 crc32c_generic crc32c-intel crc32c_intel; do
	path=$(grep -oE "^[^:]*/$name\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | tr -d : || true)
	[[ -z $path ]] || want "$path"
done
for m in "${order[@]}"; do
	base=$(basename "$m")
	case $base in
	*.ko.xz) xz -dc "$moddir/$m" >"$initrd/lib/modules/${base%.xz}" ;;
	*.ko.zst) zstd -qdc "$moddir/$m" >"$initrd/lib/modules/${base%.zst}" ;;
	*.ko.gz) gzip -dc "$moddir/$m" >"$initrd/lib/modules/${base%.gz}" ;;
	*) cp "$moddir/$m" "$initrd/lib/modules/$base" ;;
	esac
	basename "${base%.ko*}.ko" >>"$initrd/modules"
done
cat >"$initrd/init" <<'INIT'
#!/bin/busybox sh
# Load the disk's modules, mount root= (rw when asked) and hand over to init=.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules); do insmod "/lib/modules/$m" || echo "initramfs: insmod $m failed"; done
root=/dev/vda init=/sbin/init mode=ro
for arg in $(cat /proc/cmdline); do
	case $arg in
	root=*) root=${arg#root=} ;;
	init=*) init=${arg#init=} ;;
	rw) mode=rw ;;
	esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if mount -t ext4 -o "$mode" "$root" /newroot; then
	umount /proc
	mount --move /dev /newroot/dev
	exec switch_root /newroot "$init"
fi
echo "initramfs: cannot mount $root" >/dev/console
echo o >/proc/sysrq-trigger
INIT
chmod 0755 "$initrd/init"
(cd "$initrd" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$work/initrd.img"

# The guest does not need the kernel on its root disk, nor the package cache.
rm -rf "$root/boot/vmlinuz-$kver" "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
size=$(($(du -sm "$root" | cut -f1) * 13 / 10 + 256))
mkfs.ext4 -q -F -L ntf-root -d "$root" "$work/rootfs.img" "${size}M" >/dev/null
echo "$kpkg ($kver)" >"$work/kernel.txt"

mkdir -p "$dir"
mv "$work/rootfs.img" "$work/vmlinuz" "$work/initrd.img" "$work/kernel.txt" "$work/packages.txt" "$dir/"
echo "$stamp" >"$dir/stamp"
echo "rootfs $target: built in $((SECONDS - start)) s: $(cat "$dir/kernel.txt"), ${size} MB image"
