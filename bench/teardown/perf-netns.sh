#!/bin/bash
# perf-netns.sh -- which kernel path does the asynchronous `ip netns del` cleanup block in?
D=$(cd "$(dirname "$0")" && pwd); NS=tdstudy-perfns
ip netns add $NS; "$D/gen.sh" bridge > /tmp/$NS.b; ip -n $NS -b /tmp/$NS.b; sleep 2
perf record -q -e sched:sched_switch -g -a -o /tmp/$NS.data -- bash -c "ip netns del $NS; sleep 3" 2>&1 | grep -v '^\['
perf script -i /tmp/$NS.data -F comm,pid,tid,time,event,trace,ip,sym 2>/dev/null > /tmp/$NS.txt
echo "switch-outs of the cleanup_net worker blocked in rcu_barrier<-br_multicast_dev_del:"
awk '/^[^ \t]/{hdr=$0; inb=0; c=0} /rcu_barrier/{rb=1} /br_multicast_dev_del/{if(rb)m=1} /cleanup_net/{if(m){n++; t=$0}} /^$/{rb=0;m=0}
     END{print n}' /tmp/$NS.txt
rm -f /tmp/$NS.b /tmp/$NS.data /tmp/$NS.txt
