#!/usr/bin/env bash
# Build the cached guest for one Debian suite and architecture: a minbase
# root filesystem with the suite's stock cloud kernel installed (so its
# initramfs is the one Debian generates), as an ext4 image, with the kernel
# and initrd beside it.
#
#   rootfs.sh SUITE[-ARCH] DIR   e.g. rootfs.sh bookworm /var/cache/net-tc-filter-kernels/bookworm
#                                     rootfs.sh bookworm-arm64 /var/cache/net-tc-filter-kernels/bookworm-arm64
#
# ARCH is a Debian architecture (default: the host's). A foreign one is
# built on this host through qemu-user-static: debootstrap's second stage
# and the kernel's postinst (update-initramfs) run its binaries emulated.
# Unless the host already has a handler for it, a binfmt_misc entry of our
# own is registered for the build and removed afterwards.
#
# The kernel comes from SUITE, SUITE-updates and SUITE-security: what an
# up-to-date Debian cloud image runs. DIR gets rootfs.img, vmlinuz, initrd.img,
# kernel.txt (the package and version) and stamp (the recipe's hash, so a
# changed recipe rebuilds). Nothing of the host's apt configuration is used
# or changed.
set -euo pipefail

target=$1 dir=$2
suite=${target%%-*}
host_arch=$(dpkg --print-architecture)
arch=$host_arch
[[ $target != *-* ]] || arch=${target#*-}
mirror=${NTF_KERNELS_MIRROR:-http://deb.debian.org/debian}
security=${NTF_KERNELS_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
here=$(cd "$(dirname "$0")" && pwd)
# What the test suite needs in the guest: iproute2 (ip), util-linux
# (nsenter, unshare, setpriv: essential), passwd (useradd: required), kmod
# (modprobe for veth, tun, sch_ingress, cls_bpf), procps; for the D-Bus
# tests dbus (dbus-daemon, dbus-send) and systemd (busctl; not as init).
packages="iproute2 kmod procps dbus systemd"
stamp=$(cat "$0" "$here/ntf-init" | sha256sum | cut -c1-16)

if [[ -f $dir/stamp && $(cat "$dir/stamp") == "$stamp" && -f $dir/rootfs.img ]]; then
	echo "rootfs $target: cached in $dir ($(cat "$dir/kernel.txt"))"
	exit 0
fi

work=$dir.build
root=$work/root
mounts=()
binfmt=/proc/sys/fs/binfmt_misc
binfmt_entry="" binfmt_mounted=""
cleanup() {
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
	# Never into a mount left behind (the host's /dev is bind-mounted).
	rm -rf --one-file-system "$work"
	[[ -z $binfmt_entry ]] || echo -1 >"$binfmt/$binfmt_entry" || true
	[[ -z $binfmt_mounted ]] || umount "$binfmt" || true
}
trap cleanup EXIT

# A foreign architecture: its binaries run through qemu-user-static, found
# by the kernel's binfmt_misc. Debian's qemu-user-static ships the entries
# (for systemd-binfmt); with the F flag the interpreter is opened now, so it
# works inside the chroot without a copy there.
if [[ $arch != "$host_arch" ]]; then
	qarch=$(case $arch in arm64) echo aarch64 ;; armhf) echo arm ;; ppc64el) echo ppc64le ;; *) echo "$arch" ;; esac)
	conf=/usr/lib/binfmt.d/qemu-$qarch.conf
	[[ -f $conf ]] || { echo "rootfs $target: $conf is missing (apt-get install qemu-user-static)" >&2; exit 1; }
	if ! mountpoint -q "$binfmt"; then
		mount -t binfmt_misc binfmt_misc "$binfmt"
		binfmt_mounted=1
	fi
	if ! grep -qx enabled "$binfmt/qemu-$qarch" 2>/dev/null; then
		binfmt_entry=ntf-qemu-$qarch
		[[ ! -e $binfmt/$binfmt_entry ]] || echo -1 >"$binfmt/$binfmt_entry"
		sed "s/^:qemu-$qarch:/:$binfmt_entry:/" "$conf" >"$binfmt/register"
	fi
fi

rm -rf --one-file-system "$work"
mkdir -p "$work"
start=$SECONDS

echo "rootfs $target: debootstrap (minbase, $arch) from $mirror"
debootstrap --variant=minbase --arch="$arch" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
	{ tail -n 30 "$work/debootstrap.log" "$root/debootstrap/debootstrap.log" 2>/dev/null; exit 1; }

cat >"$root/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
SRC
for m in proc sys dev; do
	case $m in
	proc) mount -t proc proc "$root/proc" ;;
	sys) mount -t sysfs sys "$root/sys" ;;
	dev) mount --bind /dev "$root/dev" ;;
	esac
	mounts+=("$root/$m")
done
echo "rootfs $target: installing linux-image-cloud-$arch (with its initramfs) and $packages"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -ec "
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends linux-image-cloud-$arch initramfs-tools zstd $packages
	apt-get clean
	rm -rf /var/lib/apt/lists/*" >"$work/kernel.log" 2>&1 || { tail -n 30 "$work/kernel.log"; exit 1; }
for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}"; done
mounts=()

kpkg=$(chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' "linux-image-[0-9]*-cloud-$arch" | head -n1)
kver=$(ls "$root/lib/modules" | head -n1)
[[ -n $kver && -f $root/boot/vmlinuz-$kver && -f $root/boot/initrd.img-$kver ]] ||
	{ echo "rootfs $target: no kernel or initrd in the rootfs" >&2; exit 1; }

install -m 0755 "$here/ntf-init" "$root/sbin/ntf-init"
echo "ntf-$target" >"$root/etc/hostname"
mkdir -p "$root/job"
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
# The guest does not need a second copy of the kernel on its root disk.
rm -f "$root/boot/vmlinuz-$kver" "$root/boot/initrd.img-$kver"

size=$(($(du -sm "$root" | cut -f1) * 13 / 10 + 256))
mkfs.ext4 -q -F -L ntf-root -d "$root" "$work/rootfs.img" "${size}M" >/dev/null
echo "$kpkg ($kver)" >"$work/kernel.txt"

mkdir -p "$dir"
mv "$work/rootfs.img" "$work/vmlinuz" "$work/initrd.img" "$work/kernel.txt" "$dir/"
echo "$stamp" >"$dir/stamp"
echo "rootfs $target: built in $((SECONDS - start)) s: $(cat "$dir/kernel.txt"), ${size} MB image"
