#!/bin/bash
# tc-taps.sh -- teardown cost of a bridge-less tc datapath: 100 vxlan + 1000 taps (group 7),
# each tap with an ingress qdisc and a u32 (match-all) mirred-redirect to its LAN's vxlan
# (forwarding semantics are NOT complete -- only the teardown cost is of interest).
D=$(cd "$(dirname "$0")" && pwd); NS=tdstudy-tc
for r in 1 2 3; do
  ip netns add $NS
  "$D/gen.sh" bare > /tmp/$NS.b
  for ((b=0;b<100;b++)); do echo "link add vx$b group 7 type vxlan id $((b+1)) local 192.0.2.1 dstport 4789 nolearning"; echo "link set vx$b up"; done >> /tmp/$NS.b
  ip -n $NS -b /tmp/$NS.b
  for ((n=0;n<1000;n++)); do echo "qdisc add dev t$n ingress"; echo "filter add dev t$n ingress protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev vx$((n/10))"; done > /tmp/$NS.tc
  tc -n $NS -b /tmp/$NS.tc || exit 1
  sleep 1
  a=$(date +%s.%N); ip -n $NS link del group 7; e=$(date +%s.%N)
  echo "tc rep=$r devs=$(ip -n $NS -o link | wc -l) del=$(echo "$e - $a" | bc)s"
  ip netns del $NS; rm -f /tmp/$NS.b /tmp/$NS.tc; sleep 1
done
