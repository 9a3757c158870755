# shellcheck shell=sh
# The guest's /init (build.py adds the '#!/bin/busybox sh' line): PID 1 of the busybox initramfs.
# PID 1 of the lab guest (busybox initramfs). Kernel command-line parameters, all prefixed vmm.:
#   vmm.name=NAME vmm.ip=A.B.C.D/NN vmm.ip6=ADDR/64 vmm.mem=MIB vmm.memrate=MIB_PER_S
#   vmm.disk=DEV vmm.diskms=MS vmm.route=PREFIX vmm.route6=PREFIX vmm.gw6=ADDR
#   (routes for routed designs: IPv4 on-link, IPv6 through the anycast gateway GW6)
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
for app in $(/bin/busybox --list); do
    [ "$app" = busybox ] || [ -e "/bin/$app" ] || /bin/busybox ln -s busybox "/bin/$app"
done
export PATH=/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mkdir -p /run/status
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover \
         net_failover virtio_net virtio_blk button evdev virtio_console; do
    [ -e "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko"
done

name=guest ip='' ip6='' mem=0 memrate=0 disk='' diskms=100 route='' route6='' gw6=''
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
    case "$arg" in
        vmm.name=*) name=${arg#vmm.name=} ;;
        vmm.ip=*) ip=${arg#vmm.ip=} ;;
        vmm.ip6=*) ip6=${arg#vmm.ip6=} ;;
        vmm.mem=*) mem=${arg#vmm.mem=} ;;
        vmm.memrate=*) memrate=${arg#vmm.memrate=} ;;
        vmm.disk=*) disk=${arg#vmm.disk=} ;;
        vmm.diskms=*) diskms=${arg#vmm.diskms=} ;;
        vmm.route=*) route=${arg#vmm.route=} ;;
        vmm.route6=*) route6=${arg#vmm.route6=} ;;
        vmm.gw6=*) gw6=${arg#vmm.gw6=} ;;
    esac
done
hostname "$name"
echo "name=$name" > /run/status/guest
ip link set lo up
ip link set eth0 up
[ -n "$ip" ] && ip addr add "$ip" dev eth0
# routed designs: the guest has a /32 and reaches a prefix on-link (its host answers by proxy-ARP)
[ -n "$route" ] && ip route add "$route" dev eth0
if [ -n "$ip6" ]; then
    echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad
    ip -6 addr add "$ip6" dev eth0
    [ -n "$route6" ] && ip -6 route add "$route6" via "$gw6" dev eth0
fi
labguest powerwatch &
# a minimal guest agent (libvirt's agent address source), reporting the addresses configured above
set -- eth0
[ -n "$ip" ] && set -- "$@" "$ip"
[ -n "$ip6" ] && set -- "$@" "$ip6"
labguest agent "$@" &
labguest serve 7777 /run/status &
[ "$mem" != 0 ] && labguest mem "$mem" "$memrate" /run/status/mem &
if [ -n "$disk" ]; then
    i=0
    while [ ! -b "/dev/$disk" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    labguest disk "/dev/$disk" "$diskms" /run/status/disk &
fi
echo "vmm-guest $name ready ip=$ip ip6=$ip6 mem=$mem memrate=$memrate disk=$disk"
while true; do sleep 3600; done
