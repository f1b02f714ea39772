#!/usr/bin/env bash
# Build the cached guest for one Debian suite: a minbase root filesystem with
# the suite's stock cloud kernel installed (so its initramfs is the one
# Debian generates), as an ext4 image, with the kernel and initrd beside it.
#
#   rootfs.sh SUITE DIR      e.g. rootfs.sh bookworm /var/cache/net-tc-filter-kernels/bookworm
#
# The kernel comes from SUITE, SUITE-updates and SUITE-security: what an
# up-to-date Debian cloud image runs. DIR gets rootfs.img, vmlinuz, initrd.img,
# kernel.txt (the package and version) and stamp (the recipe's hash, so a
# changed recipe rebuilds). Nothing of the host's apt configuration is used
# or changed.
set -euo pipefail

suite=$1 dir=$2
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
	echo "rootfs $suite: cached in $dir ($(cat "$dir/kernel.txt"))"
	exit 0
fi

work=$dir.build
root=$work/root
mounts=()
cleanup() {
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
	# Never into a mount left behind (the host's /dev is bind-mounted).
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT
rm -rf --one-file-system "$work"
mkdir -p "$work"
start=$SECONDS

echo "rootfs $suite: debootstrap (minbase) from $mirror"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
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
echo "rootfs $suite: installing linux-image-cloud-amd64 (with its initramfs) and $packages"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -ec "
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends linux-image-cloud-amd64 initramfs-tools zstd $packages
	apt-get clean
	rm -rf /var/lib/apt/lists/*" >"$work/kernel.log" 2>&1 || { tail -n 30 "$work/kernel.log"; exit 1; }
for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}"; done
mounts=()

kpkg=$(chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' 'linux-image-[0-9]*-cloud-amd64' | head -n1)
kver=$(ls "$root/lib/modules" | head -n1)
[[ -n $kver && -f $root/boot/vmlinuz-$kver && -f $root/boot/initrd.img-$kver ]] ||
	{ echo "rootfs $suite: no kernel or initrd in the rootfs" >&2; exit 1; }

install -m 0755 "$here/ntf-init" "$root/sbin/ntf-init"
echo "ntf-$suite" >"$root/etc/hostname"
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
echo "rootfs $suite: built in $((SECONDS - start)) s: $(cat "$dir/kernel.txt"), ${size} MB image"
