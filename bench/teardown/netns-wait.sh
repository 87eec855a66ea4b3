#!/bin/bash
# netns-wait.sh NS -- tear NS down with `ip netns del` and measure until the kernel's
# asynchronous cleanup (cleanup_net -> default_device_exit_batch, which holds RTNL while it
# unregisters every device of the namespace) has finished.
# Method: 1) write a marker into the kernel log, 2) ip netns del, 3) wait until the kernel log
# shows the first bridge-port message after the marker (= cleanup_net has started and holds
# RTNL), 4) issue an RTNL-taking request in a separate probe namespace; it can only complete
# once cleanup_net has dropped RTNL, i.e. after all devices were unregistered.
# Prints: total_s ns_del_returned_s cleanup_seen_s
# (The kernel log ring buffer is too small to hold the ~5,000 bridge messages, so log
#  timestamps are only used to detect the start of the cleanup.)
NS=$1; P=tdstudy-probe
now() { date +%s.%N; }
ip netns list | grep -qw $P || ip netns add $P
mark="tdstudy-mark-$NS-$$-$RANDOM"
echo "<6>$mark" > /dev/kmsg
a=$(now); ip netns del $NS; b=$(now)
while ! dmesg | sed -n "/$mark/,\$p" | grep -q 'entered disabled state'; do sleep 0.01; done
c=$(now)
ip -n $P link add pv0 type veth peer name pv1; d=$(now)
ip -n $P link del pv0
echo "$(echo "$d - $a" | bc) ns_del_returned=$(echo "$b - $a" | bc) cleanup_seen=$(echo "$c - $a" | bc)"
