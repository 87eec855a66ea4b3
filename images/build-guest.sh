#!/usr/bin/env bash
# build-guest.sh OUTDIR
#
# Builds a small x86_64 (default) or aarch64 guest for QEMU from Debian packages:
#   OUTDIR/vmlinuz            copy of a Debian kernel (x86_64: from /boot;
#                             aarch64: the arm64 Image from the package)
#   OUTDIR/initramfs.cpio.gz  busybox-static + the NIC drivers + /init (newc, gzip)
# and prints the two absolute paths, one per line, on stdout (all logging goes
# to stderr). The initramfs is reproducible: two builds from the same packages
# give byte-identical files. See images/README.md for the kernel command line
# protocol that /init speaks.
#
# Environment:
#   MX_GUEST_ARCH     x86_64 (default) or aarch64 (alias arm64). aarch64 takes
#                     the Debian arm64 kernel and busybox-static:arm64 without
#                     installing them: dpkg --add-architecture arm64 (once, as
#                     root), apt-get download, dpkg-deb -x. The .debs are kept
#                     in MX_GUEST_DEBS (default OUTDIR/.debs), so a rebuild
#                     needs no network. Boot it with qemu-system-aarch64
#                     -machine virt, console=ttyAMA0.
#   MX_GUEST_DEBS     where aarch64 .debs are cached (default OUTDIR/.debs).
#   MX_GUEST_KERNEL   which kernel: "generic" (default; Debian linux-image-amd64,
#                     drives virtio-net, e1000, e1000e, rtl8139 and vmxnet3),
#                     "cloud" (linux-image-cloud-amd64: virtio-net and vmxnet3
#                     only, the cloud flavour has no e1000/e1000e/rtl8139
#                     drivers), or an exact version such as 6.1.0-56-amd64.
#                     aarch64: generic (linux-image-arm64), cloud
#                     (linux-image-cloud-arm64) or e.g. 6.1.0-56-arm64.
#   MX_GUEST_FORCE=1  rebuild even if the outputs are up to date.
#   MX_GUEST_VMLINUX=1  also write OUTDIR/vmlinux, the kernel decompressed to a
#                     plain ELF that QEMU boots through its PVH entry point
#                     (-kernel OUTDIR/vmlinux): under TCG this skips ~2.5 s of
#                     xz decompression per boot of the generic kernel. Printed
#                     as a third line. Ignored for aarch64, whose vmlinuz is
#                     already an uncompressed Image.
#   SOURCE_DATE_EPOCH mtime of every file inside the initramfs (default 0).
#
# Missing packages (kernel, busybox-static, cpio, kmod) are installed with
# apt-get when running as root; otherwise the script says what to install.
# (aarch64 needs root only once, to add the arm64 architecture to dpkg and
# apt-get update; apt-get download itself works as any user.)
set -Eeuo pipefail
umask 022
export LC_ALL=C
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf 'build-guest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# A command that fails under set -e says which, rather than end the build
# without a word.
trap 'rc=$?; log "error: line $LINENO: \`$BASH_COMMAND\` failed (exit $rc)"' ERR

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUTDIR=$1
SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
# The guest's own scripts (configuration from fw_cfg, the agent), shared
# with the Debian images.
GUEST=${MX_GUEST_SCRIPTS:-$(dirname "$SCRIPT")/guest}
for f in mx-setup mx-agent; do
  [ -r "$GUEST/$f" ] || die "$GUEST/$f is missing (set MX_GUEST_SCRIPTS to the images/guest directory)"
done
GUEST_SHA=$(cat "$GUEST/mx-setup" "$GUEST/mx-agent" | sha256sum | cut -d' ' -f1)
FLAVOUR=${MX_GUEST_KERNEL:-generic}
WANT_VMLINUX=${MX_GUEST_VMLINUX:-0}
EPOCH=${SOURCE_DATE_EPOCH:-0}
ARCH=${MX_GUEST_ARCH:-x86_64}
case "$ARCH" in
  x86_64|amd64)  ARCH=x86_64 ;;
  aarch64|arm64) ARCH=aarch64 ;;
  *) die "MX_GUEST_ARCH=$ARCH: want x86_64 or aarch64" ;;
esac

# Network drivers for QEMU NIC models (q35 / pc), in the order they are
# loaded; dependencies are resolved from modules.dep and loaded first.
WANTED_MODULES=(
  virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
  failover net_failover virtio_net
  e1000 e1000e 8139cp 8139too vmxnet3
  qemu_fw_cfg virtio_console
)
# aarch64 (-machine virt, whose PCIe host bridge pci-host-generic is built
# in): the same, plus virtio_mmio for the virtio-*-device models on the
# board's MMIO transports.
if [ "$ARCH" = aarch64 ]; then
  WANTED_MODULES=(
    virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
    virtio_mmio failover net_failover virtio_net
    e1000 e1000e 8139cp 8139too vmxnet3
    qemu_fw_cfg virtio_console
  )
fi
MODPROBE_ROOT=() # modprobe -d DIR: where the module tree is, when not /

apt_updated=
ensure_pkg() { # ensure_pkg PACKAGE
  local p=$1
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    die "package $p is missing; install it with: apt-get install -y $p"
  fi
  log "installing $p"
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$p" >&2
}

# --- pick the kernel ---------------------------------------------------------
if [ "$ARCH" = x86_64 ]; then
  case "$FLAVOUR" in
    generic) meta=linux-image-amd64;       re='-amd64$';       exclude='-(cloud|rt)-amd64$' ;;
    cloud)   meta=linux-image-cloud-amd64; re='-cloud-amd64$'; exclude='^$' ;;
    *)       meta= ;;
  esac
  pick() { # newest /boot/vmlinuz-VERSION of the flavour that has a module tree
    local v
    for v in /boot/vmlinuz-*; do
      v=${v#/boot/vmlinuz-}
      if [ -d "/lib/modules/$v" ]; then echo "$v"; fi
    done | grep -E -- "$re" | grep -Ev -- "$exclude" | sort -V | tail -n 1 || true
  }
  if [ -n "$meta" ]; then
    KVER=$(pick)
    if [ -z "$KVER" ]; then
      ensure_pkg "$meta"
      KVER=$(pick)
    fi
    [ -n "$KVER" ] || die "no $FLAVOUR kernel found in /boot after installing $meta"
  else
    KVER=$FLAVOUR
  fi
  KIMG=/boot/vmlinuz-$KVER
  MODDIR=/lib/modules/$KVER
  [ -r "$KIMG" ] || die "cannot read $KIMG (try as root, or set MX_GUEST_KERNEL)"
  [ -d "$MODDIR" ] || die "no module tree $MODDIR"

  ensure_pkg busybox-static
  ensure_pkg cpio
  ensure_pkg kmod
  BUSYBOX=/bin/busybox
  [ -x "$BUSYBOX" ] || die "$BUSYBOX missing"
  # The initramfs has no libc: refuse a dynamically linked busybox.
  if command -v ldd >/dev/null && ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; install busybox-static"
  fi
  BBVER=$("$BUSYBOX" --help 2>&1 | sed -n 1p)
else
  # --- aarch64: Debian arm64 packages, downloaded and unpacked, not installed
  if [ "$WANT_VMLINUX" = 1 ]; then
    log "MX_GUEST_VMLINUX=1 ignored for aarch64: vmlinuz is already an uncompressed Image"
    WANT_VMLINUX=0
  fi
  mkdir -p "$OUTDIR"
  DEBS=${MX_GUEST_DEBS:-$OUTDIR/.debs}
  mkdir -p "$DEBS"
  DEBS=$(readlink -f "$DEBS")
  case "$FLAVOUR" in
    generic) meta=linux-image-arm64;       re='-arm64$';       exclude='-(cloud|rt)-arm64$' ;;
    cloud)   meta=linux-image-cloud-arm64; re='-cloud-arm64$'; exclude='^$' ;;
    *-arm64) meta= ;;
    *) die "MX_GUEST_KERNEL=$FLAVOUR is not an arm64 kernel (generic, cloud or VERSION-arm64)" ;;
  esac
  arm64_tried=
  arm64_lists() { # make apt know the arm64 packages (root only, once); false if it cannot
    [ -z "$arm64_tried" ] || return 1
    arm64_tried=1
    if [ "$(id -u)" -ne 0 ]; then return 1; fi
    if ! grep -qx arm64 <<<"$(dpkg --print-foreign-architectures)"; then
      log "dpkg --add-architecture arm64"
      dpkg --add-architecture arm64
    fi
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
    apt_updated=1
  }
  arm64_show() { # arm64_show PACKAGE...: "PACKAGE<tab>VERSION<tab>DEPENDS" of each candidate
    apt-cache show --no-all-versions "${@/%/:arm64}" 2>/dev/null | awk '
      /^Package: / { p = $2 } /^Version: / { v = $2 } /^Depends: / { d = substr($0, 10) }
      /^$/ { if (p != "") print p "\t" v "\t" d; p = v = d = "" }
      END { if (p != "") print p "\t" v "\t" d }' || true
  }
  field() { # field PACKAGE N <<<"$info"
    awk -F'\t' -v p="$1" -v n="$2" '$1 == p { print $n; exit }'
  }
  arm64_resolve() { # sets KVER (for a flavour), KV and BBV: the candidate versions of
    # linux-image-KVER:arm64 and busybox-static:arm64, empty where apt knows none.
    # One apt-cache call where it can: apt-cache can take a second per call.
    local info dep dep_re='linux-image-([^ ,:]+-arm64)(:arm64)?( \(= ([^)]+)\))?'
    KV= BBV=
    if [ -n "$meta" ]; then
      KVER=
      info=$(arm64_show "$meta" busybox-static)
      dep=$(field "$meta" 3 <<<"$info")
      if [[ $dep =~ $dep_re ]]; then KVER=${BASH_REMATCH[1]} KV=${BASH_REMATCH[4]}; fi
    fi
    if [ -n "$KVER" ] && [ -z "$KV" ]; then
      info=$(arm64_show "linux-image-$KVER" busybox-static)
      KV=$(field "linux-image-$KVER" 2 <<<"$info")
    fi
    BBV=$(field busybox-static 2 <<<"${info:-}")
  }
  cached() { # cached GLOB: the newest $DEBS/GLOB
    find "$DEBS" -maxdepth 1 -name "$1" -printf '%f\n' | sort -V | tail -n 1 || true
  }
  fetch_deb() { # fetch_deb PACKAGE VERSION VAR: VAR= $DEBS/PACKAGE_VERSION_arm64.deb, downloaded once
    local p=$1 v=$2 f tmp
    f=$DEBS/${p}_${v//:/%3a}_arm64.deb # the name apt-get download gives it
    if [ ! -s "$f" ]; then
      log "downloading $p:arm64 $v"
      tmp=$(mktemp -d "$DEBS/.dl.XXXXXX")
      # apt drops root to _apt for downloads: let it write there
      if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
      if ! (cd "$tmp" && apt-get download -q "$p:arm64=$v" >&2) || [ ! -s "$tmp/${f##*/}" ]; then
        rm -rf "$tmp"
        die "apt-get download $p:arm64=$v failed"
      fi
      mv -f "$tmp/${f##*/}" "$f"
      rm -rf "$tmp"
      # older versions of the package are of no more use
      find "$DEBS" -maxdepth 1 -name "${p}_*_arm64.deb" ! -name "${f##*/}" -delete
    fi
    printf -v "$3" '%s' "$f"
  }
  no_arm64="apt knows no arm64 packages; as root run: dpkg --add-architecture arm64 && apt-get update (or run this script as root)"
  KVER=
  if [ -z "$meta" ]; then KVER=$FLAVOUR; fi
  arm64_resolve
  if { [ -z "$KV" ] || [ -z "$BBV" ]; } && arm64_lists; then arm64_resolve; fi
  if [ -n "$KV" ]; then
    fetch_deb "linux-image-$KVER" "$KV" KDEB
  else # offline, or not root: the newest cached kernel
    if [ -n "$meta" ]; then
      KVER=$(find "$DEBS" -maxdepth 1 -name 'linux-image-*_arm64.deb' -printf '%f\n' \
        | awk -F_ '{ print $1 }' | sed 's/^linux-image-//' | grep -E -- "$re" | grep -Ev -- "$exclude" \
        | sort -V | tail -n 1 || true)
      [ -n "$KVER" ] || die "no $FLAVOUR arm64 kernel: $no_arm64"
    fi
    KDEB=$(cached "linux-image-${KVER}_*_arm64.deb")
    [ -n "$KDEB" ] || die "no linux-image-$KVER:arm64: $no_arm64"
    log "apt knows no linux-image-$KVER:arm64: using the cached $KDEB"
    KDEB=$DEBS/$KDEB
  fi
  if [ -n "$BBV" ]; then
    fetch_deb busybox-static "$BBV" BBDEB
  else
    BBDEB=$(cached 'busybox-static_*_arm64.deb')
    [ -n "$BBDEB" ] || die "no busybox-static:arm64: $no_arm64"
    log "apt knows no busybox-static:arm64: using the cached $BBDEB"
    BBDEB=$DEBS/$BBDEB
  fi
  ensure_pkg cpio
  ensure_pkg kmod
  # Known after unpacking, in the work directory.
  KIMG= MODDIR= BUSYBOX=
  BBVER=${BBDEB##*/}
fi

# --- cache -------------------------------------------------------------------
mkdir -p "$OUTDIR"
OUTDIR=$(readlink -f "$OUTDIR")
OUT_K=$OUTDIR/vmlinuz
OUT_I=$OUTDIR/initramfs.cpio.gz
STAMP=$OUTDIR/.build-guest.stamp
OUT_X=$OUTDIR/vmlinux
if [ "$ARCH" = x86_64 ]; then
  stamp_text=$(printf 'kernel %s\nkernel-sha %s\nbusybox %s\nepoch %s\nvmlinux %s\nguest %s\n' \
    "$KVER" "$(sha256sum "$KIMG" | cut -d' ' -f1)" "$BBVER" "$EPOCH" "$WANT_VMLINUX" "$GUEST_SHA")
else
  stamp_text=$(printf 'arch %s\nkernel %s\nkernel-deb %s %s\nbusybox-deb %s %s\nepoch %s\nguest %s\n' \
    "$ARCH" "$KVER" "${KDEB##*/}" "$(sha256sum "$KDEB" | cut -d' ' -f1)" \
    "${BBDEB##*/}" "$(sha256sum "$BBDEB" | cut -d' ' -f1)" "$EPOCH" "$GUEST_SHA")
fi
print_outputs() {
  printf '%s\n%s\n' "$OUT_K" "$OUT_I"
  if [ "$WANT_VMLINUX" = 1 ]; then printf '%s\n' "$OUT_X"; fi
}

exec 9>"$OUTDIR/.build-guest.lock"
if command -v flock >/dev/null; then flock 9; fi

if [ "${MX_GUEST_FORCE:-0}" != 1 ] && [ -f "$OUT_K" ] && [ -f "$OUT_I" ] \
   && [ "$OUT_K" -nt "$SCRIPT" ] && [ "$OUT_I" -nt "$SCRIPT" ] \
   && { [ "$WANT_VMLINUX" != 1 ] || [ "$OUT_X" -nt "$SCRIPT" ]; } \
   && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp_text" ]; then
  log "up to date ($ARCH, $KVER)"
  print_outputs
  exit 0
fi

log "building $ARCH guest with kernel $KVER"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/build-guest.XXXXXX")
trap 'rm -rf "$WORK"; rm -f "$OUTDIR"/*.tmp.$$' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"

# --- aarch64: unpack the packages (~350 MB, a few seconds) -----------------------
busybox_applets() { # busybox_applets BUSYBOX: its applet names, without running it
  # busybox keeps them as one NUL-separated, sorted string: "[", "[[", ...
  local off
  off=$(grep -aboP '\[\x00\[\[\x00' "$1" | awk -F: 'NR == 1 { print $1 }')
  [ -n "$off" ] || return 0
  # awk reads to the end rather than exit at the list's end: under pipefail,
  # an early exit could kill tr with SIGPIPE mid-write and fail the build
  # (seen in CI, and 4 in 300 runs on a loaded machine).
  dd if="$1" bs=16384 count=1 iflag=skip_bytes skip="$off" 2>/dev/null | tr '\0' '\n' \
    | awk 'done { next }
           NR <= 2 || ($0 ~ /^[a-z0-9][a-z0-9_.-]*$/ && $0 > prev) { print; prev = $0; next }
           { done = 1 }'
}
if [ "$ARCH" = aarch64 ]; then
  PKG=$WORK/pkg
  log "unpacking ${KDEB##*/} and ${BBDEB##*/}"
  dpkg-deb -x "$KDEB" "$PKG"
  dpkg-deb -x "$BBDEB" "$PKG"
  PKG=$(readlink -f "$PKG")
  KIMG=$PKG/boot/vmlinuz-$KVER
  MODDIR=$PKG/lib/modules/$KVER
  BUSYBOX=$PKG/bin/busybox
  [ -r "$KIMG" ] || die "${KDEB##*/} has no boot/vmlinuz-$KVER"
  [ -d "$MODDIR" ] || die "${KDEB##*/} has no lib/modules/$KVER"
  [ -r "$BUSYBOX" ] || die "${BBDEB##*/} has no bin/busybox"
  # QEMU -kernel on -machine virt boots a raw arm64 Image ("ARM\x64" at
  # offset 56; Debian 12 ships that, with an EFI stub) or a gzip'd one.
  kmagic=$(od -An -tx1 -j 56 -N 4 "$KIMG" | tr -d ' \n')
  kgzip=$(od -An -tx1 -N 2 "$KIMG" | tr -d ' \n')
  [ "$kmagic" = 41524d64 ] || [ "$kgzip" = 1f8b ] \
    || die "$KIMG is neither an arm64 Image nor a gzip'd one"
  # The initramfs has no libc: refuse a dynamically linked busybox (an
  # ELF64 program header of type PT_INTERP).
  [ "$(od -An -tu2 -j 18 -N 2 "$BUSYBOX" | tr -d ' ')" = 183 ] \
    || die "${BBDEB##*/}: bin/busybox is not an AArch64 ELF"
  phoff=$(od -An -tu8 -j 32 -N 8 "$BUSYBOX" | tr -d ' ')
  phsize=$(od -An -tu2 -j 54 -N 2 "$BUSYBOX" | tr -d ' ')
  phnum=$(od -An -tu2 -j 56 -N 2 "$BUSYBOX" | tr -d ' ')
  for ((i = 0; i < phnum; i++)); do
    if [ "$(od -An -tu4 -j $((phoff + i * phsize)) -N 4 "$BUSYBOX" | tr -d ' ')" = 3 ]; then
      die "${BBDEB##*/}: busybox is dynamically linked"
    fi
  done
  # The package has no modules.dep (its postinst runs depmod): make one.
  depmod -b "$PKG" "$KVER"
  MODPROBE_ROOT=(-d "$PKG")
  busybox_applets "$BUSYBOX" >"$WORK/applets"
  for a in sh mount insmod ip ping cttyhack setsid usleep poweroff; do
    grep -qx -- "$a" "$WORK/applets" || die "cannot list the applets of ${BBDEB##*/} (no $a)"
  done
fi
applets() {
  if [ "$ARCH" = x86_64 ]; then "$BUSYBOX" --list; else cat "$WORK/applets"; fi
}

# --- filesystem skeleton + busybox -------------------------------------------
for d in bin dev proc sys tmp run root etc mnt "lib/modules/$KVER"; do
  mkdir -p "$ROOT/$d"
done
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"
install -m 0755 "$BUSYBOX" "$ROOT/bin/busybox"
applets | sort -u | while read -r applet; do
  case "$applet" in busybox|'') continue ;; esac
  ln -s busybox "$ROOT/bin/$applet"
done
ln -s bin "$ROOT/sbin"
mkdir -p "$ROOT/usr"
ln -s ../bin "$ROOT/usr/bin"
ln -s ../bin "$ROOT/usr/sbin"

printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$ROOT/etc/hosts"

# --- kernel modules ------------------------------------------------------------
declare -A seen=()
order=()
builtin_list=()
missing_list=()
is_builtin() { # is_builtin NAME (modules.builtin lists kernel/.../name.ko)
  local n=${1//-/_}
  grep -Eq "/(${n}|${n//_/-})\.ko\$" "$MODDIR/modules.builtin" 2>/dev/null
}
for m in "${WANTED_MODULES[@]}"; do
  if is_builtin "$m"; then builtin_list+=("$m"); continue; fi
  if ! deps=$(modprobe "${MODPROBE_ROOT[@]}" -S "$KVER" --show-depends --ignore-install "$m" 2>/dev/null); then
    missing_list+=("$m"); continue
  fi
  while read -r kind path _; do
    [ "$kind" = insmod ] || continue
    [ -n "${seen[$path]:-}" ] && continue
    seen[$path]=1
    order+=("$path")
  done <<<"$deps"
done
[ ${#order[@]} -gt 0 ] || die "none of the wanted modules exist for $KVER"
[ ${#builtin_list[@]} -eq 0 ] || log "built in: ${builtin_list[*]}"
[ ${#missing_list[@]} -eq 0 ] || log "not available in $KVER (skipped): ${missing_list[*]}"

: >"$ROOT/lib/modules/$KVER/modules.load"
names=()
for src in "${order[@]}"; do
  rel=${src#"$MODDIR"/}
  case "$rel" in
    *.ko)     dst=$rel ;              cat_cmd=(cat) ;;
    *.ko.xz)  dst=${rel%.xz};  ensure_pkg xz-utils; cat_cmd=(xz -dc) ;;
    *.ko.zst) dst=${rel%.zst}; ensure_pkg zstd;     cat_cmd=(zstd -dcq) ;;
    *.ko.gz)  dst=${rel%.gz};  cat_cmd=(gzip -dc) ;;
    *) die "unknown module format: $src" ;;
  esac
  mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$dst")"
  "${cat_cmd[@]}" "$src" >"$ROOT/lib/modules/$KVER/$dst"
  chmod 0644 "$ROOT/lib/modules/$KVER/$dst"
  echo "$dst" >>"$ROOT/lib/modules/$KVER/modules.load"
  n=${dst##*/}; names+=("${n%.ko}")
done
# A modules.dep for busybox modprobe, limited to what is in the image.
for src in "${order[@]}"; do
  line=$(grep -E "^${src#"$MODDIR"/}:" "$MODDIR/modules.dep" || true)
  if [ -n "$line" ]; then printf '%s\n' "$line"; fi
done | sed -E 's/\.ko\.(xz|zst|gz)\b/.ko/g' >"$ROOT/lib/modules/$KVER/modules.dep"
cp "$MODDIR/modules.builtin" "$ROOT/lib/modules/$KVER/" 2>/dev/null || true
log "modules (load order): ${names[*]}"

# --- /init ---------------------------------------------------------------------
cat >"$ROOT/init" <<'INIT'
#!/bin/sh
# mx guest init: see images/README.md for the kernel command line protocol.
export PATH=/bin HOME=/root TERM="${TERM:-vt100}"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
had_console=; [ -c /dev/console ] && had_console=1
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Without a /dev/console node in the archive the kernel could not give /init
# its stdio: take the console now that devtmpfs provides it.
[ -n "$had_console" ] || exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

up() { cut -d' ' -f1 /proc/uptime; }

# --- kernel command line: the knobs for measurements ---
NAME=mx
BURN=0
TICK=0
set -f
# shellcheck disable=SC2013 # the command line is words
for w in $(cat /proc/cmdline); do
  case "$w" in
    mx.burn=*)  BURN=${w#mx.burn=} ;;
    mx.tick=*)  TICK=${w#mx.tick=} ;;
  esac
done
set +f
# Firmware/kernel may leave terminal escapes without a newline on the
# console: start on a fresh line so every MX- line begins a line.
echo
BOOT=$(up)

# --- modules ---
KVER=$(uname -r)
while read -r m; do
  [ -n "$m" ] || continue
  insmod "/lib/modules/$KVER/$m" 2>/dev/null || echo "MX-WARN insmod ${m##*/} failed"
done <"/lib/modules/$KVER/modules.load"
NAME=$(awk '$1 == "name" { print $2; exit }' /sys/firmware/qemu_fw_cfg/by_name/opt/mx/config/raw 2>/dev/null)
echo "MX-BOOT ${NAME:-mx} $BOOT"

# --- the agent mxc exec and cp speak to, then the experiment's
# configuration (fw_cfg), up to MX-READY and the neighbours' pings ---
setsid /bin/mx-agent </dev/null >/dev/null 2>&1 &
# The runtime hands over the set-up script it speaks to (the copy in the
# image is for a guest booted by hand, from the kernel command line).
SETUP=/sys/firmware/qemu_fw_cfg/by_name/opt/mx/setup/raw
if [ -r "$SETUP" ]; then cat "$SETUP" >/run/mx-setup; else cp /bin/mx-setup /run/mx-setup; fi
sh /run/mx-setup
NAME=$(hostname)

# --- mx.tick=S: the guest's own clock every S seconds of guest time (for
# measuring time dilation against the host's) ---
if [ -n "$TICK" ] && [ "$TICK" != 0 ]; then
  ( while :; do echo "MX-TICK $NAME $(up)"; sleep "$TICK"; done ) &
fi

# --- mx.burn=N: N CPU-bound loops (for measuring CPU bandwidth) ---
if [ "$BURN" -gt 0 ] 2>/dev/null; then
  i=0
  while [ $i -lt "$BURN" ]; do ( while :; do :; done ) & i=$((i + 1)); done
  echo "MX-BURN $NAME $BURN"
fi

# --- a shell on the console for `mxc console`, started again when it
# exits (poweroff -f stops the guest) ---
export PS1="$NAME:\w# "
while :; do
  setsid cttyhack sh
  echo
done
INIT
chmod 0755 "$ROOT/init"
install -m 0755 "$GUEST/mx-setup" "$ROOT/bin/mx-setup"
install -m 0755 "$GUEST/mx-agent" "$ROOT/bin/mx-agent"

# --- archive ---------------------------------------------------------------------
find "$ROOT" -exec touch -h -d "@$EPOCH" {} +
repro=()
if cpio --help 2>&1 | grep -- --reproducible >/dev/null; then repro=(--reproducible); fi
# The kernel opens /dev/console for /init before anything is mounted, so the
# archive needs that device node; mknod needs root, so it is written by hand
# as a second little newc archive after the main one (the kernel unpacks
# concatenated archives; `cpio -t` lists the first one only).
newc_entry() { # newc_entry NAME MODE NLINK RDEVMAJOR RDEVMINOR
  local name=$1 n=$((${#1} + 1)) pad
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    0 "$2" 0 0 "$3" "$EPOCH" 0 0 0 "$4" "$5" "$n" 0
  printf '%s\0' "$name"
  pad=$(( (4 - (110 + n) % 4) % 4 ))
  while [ "$pad" -gt 0 ]; do printf '\0'; pad=$((pad - 1)); done
}
(
  cd "$ROOT"
  find . -mindepth 1 -printf '%P\0' | sort -z \
    | cpio --quiet --null -o -H newc -R 0:0 "${repro[@]}"
  newc_entry dev/console $((0020600)) 1 5 1
  newc_entry 'TRAILER!!!' 0 1 0 0
) | gzip -9 -n >"$WORK/initramfs.cpio.gz"

# --- optional uncompressed kernel for PVH boot --------------------------------------
extract_vmlinux() { # extract_vmlinux BZIMAGE OUT: the payload, as extract-vmlinux does
  local img=$1 out=$2 cfg=/boot/config-$KVER magic tool off
  grep -q '^CONFIG_PVH=y' "$cfg" 2>/dev/null || die "$KVER has no PVH entry (CONFIG_PVH)"
  case "$(sed -n 's/^CONFIG_KERNEL_\([A-Z0-9]*\)=y$/\1/p' "$cfg")" in
    XZ)   magic='\xfd7zXZ\x00';   tool=(xz -dc) ;;
    ZSTD) magic='\x28\xb5\x2f\xfd'; ensure_pkg zstd; tool=(zstd -dcq) ;;
    GZIP) magic='\x1f\x8b\x08';   tool=(gzip -dc) ;;
    LZ4)  magic='\x02\x21\x4c\x18'; ensure_pkg lz4; tool=(lz4 -dc) ;;
    *) die "cannot decompress the $KVER kernel (see $cfg, CONFIG_KERNEL_*)" ;;
  esac
  # shellcheck disable=SC2013 # offsets are single words
  for off in $(grep -aboP "$magic" "$img" | cut -d: -f1); do
    # trailing data after the stream makes the decompressor complain: ignore
    tail -c "+$((off + 1))" "$img" | "${tool[@]}" >"$out" 2>/dev/null || true
    if [ "$(head -c 4 "$out" | od -An -c | tr -d ' ')" = '177ELF' ]; then return 0; fi
  done
  die "no ELF payload found in $img"
}
if [ "$WANT_VMLINUX" = 1 ]; then extract_vmlinux "$KIMG" "$WORK/vmlinux"; fi

cp "$KIMG" "$WORK/vmlinuz"
publish() { # publish FILE DEST: whole-file replace (a running QEMU keeps the old one)
  cp "$1" "$2.tmp.$$"
  chmod 0644 "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
}
publish "$WORK/vmlinuz" "$OUT_K"
publish "$WORK/initramfs.cpio.gz" "$OUT_I"
if [ "$WANT_VMLINUX" = 1 ]; then publish "$WORK/vmlinux" "$OUT_X"; else rm -f "$OUT_X"; fi
printf '%s\n' "$stamp_text" >"$STAMP"
log "initramfs $(stat -c %s "$OUT_I") bytes, sha256 $(sha256sum "$OUT_I" | cut -d' ' -f1)"
print_outputs
