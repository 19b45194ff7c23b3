#!/usr/bin/env bash
# Build a Debian 12 Vagrant box offline (for libvirt), with every package the guests need baked in:
# the guests have no route out, so nothing can be installed in them later.
# Usage: build-box.sh OUT_DIR   -> OUT_DIR/kubelab-bookworm.box (added as local/kubelab-bookworm)
set -euo pipefail
out=${1:?usage: build-box.sh OUT_DIR}
mkdir -p "$out"
work=$(mktemp -d "$out/box.XXXXXX")
cleanup() {
  umount -R "$work/mnt" 2>/dev/null || true
  [ -n "${loopdev:-}" ] && losetup -d "$loopdev" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$work/rootfs
pkgs=systemd-sysv,linux-image-amd64,openssh-server,sudo,ifupdown,isc-dhcp-client,iproute2,netbase,rsync,ca-certificates
pkgs=$pkgs,dbus,python3,python3-venv,runc,iptables,busybox-static,containernetworking-plugins,skopeo,umoci,conntrack,kmod,curl,procps
pkgs=$pkgs,etcd-server,etcd-client,haproxy   # the HA control plane's (KUBELAB_CONTROL_PLANES=3)
debootstrap --include="$pkgs" bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log"

# The vagrant user with the insecure key (vagrant replaces it at first boot), no DNS anywhere.
chroot "$rootfs" useradd -m -s /bin/bash -G sudo vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$rootfs/etc/sudoers.d/vagrant"
install -d -m 700 -o 1000 -g 1000 "$rootfs/home/vagrant/.ssh"
install -m 600 -o 1000 -g 1000 /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
  "$rootfs/home/vagrant/.ssh/authorized_keys"
echo 'UseDNS no' >> "$rootfs/etc/ssh/sshd_config"
: > "$rootfs/etc/resolv.conf"            # debootstrap copies the host's: the guests must have none
printf 'auto lo\niface lo inet loopback\nauto eth0\niface eth0 inet dhcp\n' > "$rootfs/etc/network/interfaces"
echo 'LABEL=vroot / ext4 defaults 0 1' > "$rootfs/etc/fstab"
chroot "$rootfs" systemctl mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
# Debian enables its own etcd (plain HTTP on localhost) and haproxy: provisioning starts ours where needed.
chroot "$rootfs" systemctl disable etcd.service haproxy.service >/dev/null 2>&1 || true

# A 4 GB disk with one ext4 partition and GRUB (BIOS), booting with a serial console.
img=$work/box.raw
truncate -s 4G "$img"
parted -s "$img" mklabel msdos mkpart primary ext4 1MiB 100% set 1 boot on
loopdev=$(losetup --show -f -o 1048576 "$img")
mkfs.ext4 -q -L vroot "$loopdev"
mkdir -p "$work/mnt"
mount "$loopdev" "$work/mnt"
cp -a "$rootfs/." "$work/mnt/"
kernel=$(basename "$(ls "$work"/mnt/boot/vmlinuz-* | tail -1)")
initrd=$(basename "$(ls "$work"/mnt/boot/initrd.img-* | tail -1)")
mkdir -p "$work/mnt/boot/grub"
cat > "$work/mnt/boot/grub/grub.cfg" <<GRUB
serial --unit=0 --speed=115200
terminal_input serial; terminal_output serial
set timeout=0
menuentry kubelab { linux /boot/$kernel root=LABEL=vroot ro console=ttyS0 net.ifnames=0; initrd /boot/$initrd }
GRUB
umount "$work/mnt"
losetup -d "$loopdev"; loopdev=
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos ext2 linux normal serial terminal
dd if=/usr/lib/grub/i386-pc/boot.img of="$img" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$img" bs=512 seek=1 conv=notrunc status=none
qemu-img convert -O qcow2 "$img" "$work/box.img"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":4}\n' > "$work/metadata.json"
printf 'Vagrant.configure("2") { |c| c.vm.provider(:libvirt) { |lv| lv.driver = "kvm" } }\n' > "$work/Vagrantfile"
tar -C "$work" -cf "$out/kubelab-bookworm.box" metadata.json Vagrantfile box.img
echo "$out/kubelab-bookworm.box"
