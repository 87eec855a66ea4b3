#!/bin/bash
# run.sh VARIANT [REPS]   -- prints one line per repetition: variant rep build_s teardown_s [parts]
# Variants: bare base vlanbr portsonly brfirst netns expedited rcunormal downfirst macvtap macvlan
set -u
D=$(cd "$(dirname "$0")" && pwd)
V=$1; REPS=${2:-3}
now() { date +%s.%N; }
el() { echo "$2 - $1" | bc; }
for ((r=1;r<=REPS;r++)); do
  NS=tdstudy-$V-$r
  ip netns del $NS 2>/dev/null
  ip netns add $NS
  case $V in
    bare) MODE=bare;; vlanbr) MODE=vlanbr;; macvtap) MODE=macvtap;; macvlan) MODE=macvlan;; *) MODE=bridge;;
  esac
  if [ $V = brfirst ] || [ $V = portsonly ]; then GRP_BR=8 "$D/gen.sh" $MODE > /tmp/$NS.batch; else "$D/gen.sh" $MODE > /tmp/$NS.batch; fi
  t0=$(now); ip -n $NS -b /tmp/$NS.batch || { echo "batch failed"; exit 1; }; t1=$(now)
  if [ $MODE = vlanbr ]; then "$D/gen.sh" vlanbr-bridgecmds > /tmp/$NS.bbatch; bridge -n $NS -b /tmp/$NS.bbatch || exit 1; t1=$(now); rm -f /tmp/$NS.bbatch; fi
  build=$(el $t0 $t1)
  ndev=$(ip -n $NS -o link show | wc -l)
  sleep 2
  extra=""
  case $V in
    bare|base|macvtap|macvlan|vlanbr)
      a=$(now); ip -n $NS link del group 7; b=$(now); td=$(el $a $b);;
    expedited)
      orig=$(cat /sys/kernel/rcu_expedited); echo 1 > /sys/kernel/rcu_expedited
      a=$(now); ip -n $NS link del group 7; b=$(now); td=$(el $a $b)
      echo $orig > /sys/kernel/rcu_expedited;;
    rcunormal)
      orig=$(cat /sys/kernel/rcu_normal); echo 1 > /sys/kernel/rcu_normal
      a=$(now); ip -n $NS link del group 7; b=$(now); td=$(el $a $b)
      echo $orig > /sys/kernel/rcu_normal;;
    brfirst)
      a=$(now); ip -n $NS link del group 8; m=$(now); ip -n $NS link del group 7; b=$(now)
      td=$(el $a $b); extra="bridges=$(el $a $m) rest=$(el $m $b)";;
    downfirst)
      a=$(now); ip -n $NS link set group 7 down; m=$(now); ip -n $NS link del group 7; b=$(now)
      td=$(el $a $b); extra="down=$(el $a $m) del=$(el $m $b)";;
    portsonly)
      # bridges (group 8) stay (to be reused / deleted later); only taps+vxlan (group 7) go
      a=$(now); ip -n $NS link del group 7; b=$(now); td=$(el $a $b)
      extra="(bridges kept) later_bridge_del=$( m=$(now); ip -n $NS link del group 8; el $m $(now) )";;
    netns)
      # see netns-wait.sh for how the asynchronous cleanup is measured
      out=$("$D/netns-wait.sh" $NS); td=$(echo "$out" | awk '{print $1}'); extra="$out";;
  esac
  left=$(ip -n $NS -o link show group 7 2>/dev/null | wc -l)
  echo "$V rep=$r devs=$ndev build=${build}s teardown=${td}s left_in_group7=$left $extra"
  ip netns del $NS 2>/dev/null; rm -f /tmp/$NS.batch
  sleep 3   # let async netns cleanup of the leftover ul0/ul1/lo finish
done
