#!/bin/bash
# gen.sh MODE [NBR] [TAPS_PER_BR]  -> prints an `ip -batch` file on stdout
# MODE: bridge | bare | macvtap | macvlan | vlanbr
#   vlanbr: ONE vlan-aware bridge (vlan_filtering 1, no default pvid); LAN b = VLAN b+1;
#           vxlan vx<b> and the taps of LAN b are untagged access ports (pvid) of VLAN b+1.
#           Needs the companion `bridge -batch` file printed by: gen.sh vlanbr-bridgecmds
# Everything that is to be torn down is put in group 7 (bridges in group 8 when GRP_BR=8).
MODE=$1; NBR=${2:-100}; PER=${3:-10}; GRP_BR=${GRP_BR:-7}
# CONFIG_DUMMY is not built into this kernel (and modules are disabled), so the
# underlay address 192.0.2.1/24 lives on a veth pair inside the namespace
# (not in group 7, it is not part of the teardown under test).
if [ "$MODE" = vlanbr-bridgecmds ]; then
  for ((b=0;b<NBR;b++)); do
    echo "vlan add dev vx$b vid $((b+1)) pvid untagged"
    for ((t=0;t<PER;t++)); do echo "vlan add dev t$((b*PER+t)) vid $((b+1)) pvid untagged"; done
  done; exit 0
fi
echo "link add ul0 type veth peer name ul1"
echo "addr add 192.0.2.1/24 dev ul0"
echo "link set ul0 up"
echo "link set ul1 up"
echo "link set lo up"
if [ "$MODE" = vlanbr ]; then
  echo "link add br0 group $GRP_BR type bridge vlan_filtering 1 vlan_default_pvid 0"
  echo "link set br0 up"
fi
for ((b=0;b<NBR;b++)); do
  case $MODE in
  vlanbr)
    echo "link add vx$b group 7 type vxlan id $((b+1)) local 192.0.2.1 dstport 4789 nolearning"
    echo "link set vx$b master br0 up"
    for ((t=0;t<PER;t++)); do n=$((b*PER+t))
      echo "tuntap add dev t$n mode tap"
      echo "link set t$n group 7 master br0 up"
    done;;
  bridge)
    echo "link add br$b group $GRP_BR type bridge"
    echo "link set br$b up"
    echo "link add vx$b group 7 type vxlan id $((b+1)) local 192.0.2.1 dstport 4789 nolearning"
    echo "link set vx$b master br$b up"
    for ((t=0;t<PER;t++)); do n=$((b*PER+t))
      echo "tuntap add dev t$n mode tap"
      echo "link set t$n group 7 master br$b up"
    done;;
  bare)
    for ((t=0;t<PER;t++)); do n=$((b*PER+t))
      echo "tuntap add dev t$n mode tap"
      echo "link set t$n group 7 up"
    done;;
  macvtap|macvlan)
    echo "link add vx$b group 7 type vxlan id $((b+1)) local 192.0.2.1 dstport 4789 nolearning"
    echo "link set vx$b up"
    for ((t=0;t<PER;t++)); do n=$((b*PER+t))
      echo "link add link vx$b name mv$n group 7 type $MODE mode bridge"
      echo "link set mv$n up"
    done;;
  esac
done
