#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The job disk's init, run as PID 1 of a kernel-matrix guest (ntf-init
# execs it): the mounts a systemd host would have made, the modules the
# tests use, then job.sh with its results on this disk, then power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t bpf -o mode=0700 bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
# veth and tun for the topologies, sch_ingress for clsact, cls_bpf for the
# legacy attach mode (the kernel would load most of them on demand).
modprobe -a veth tun sch_ingress cls_bpf 2>/dev/null
hostname "$(cat /etc/hostname)"
ip link set lo up
echo "ntf-guest: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024) " MB"}' /proc/meminfo), $(cat /proc/uptime | cut -d' ' -f1) s since boot" >/dev/console
/job/job.sh /job/bin /job/results >/dev/console 2>&1
echo "ntf-guest: job finished with $?" >/dev/console
sync
mount -o remount,ro /job
echo o >/proc/sysrq-trigger
# Power-off is under way: wait for it without starting a program (their
# pages would be read from a disk that is going away).
while :; do :; done
