#!/bin/bash
# perf-offcpu.sh [MODE] -- build the bridge scenario, record sched_switch with kernel
# call chains during `ip link del group 7`, then attribute the delete's off-CPU time
# to the kernel function it was blocked in (synchronize_rcu_expedited etc).
D=$(cd "$(dirname "$0")" && pwd); MODE=${1:-bridge}
NS=tdstudy-perf
ip netns del $NS 2>/dev/null; ip netns add $NS
"$D/gen.sh" $MODE > /tmp/$NS.batch; ip -n $NS -b /tmp/$NS.batch; sleep 2
perf record -q -e sched:sched_switch -g -a -o /tmp/$NS.data -- \
  bash -c "s=\$(date +%s.%N); ip -n $NS link del group 7; e=\$(date +%s.%N); echo \"wall=\$(echo \$e - \$s | bc)s\"" 2>&1 | grep -v '^\[' 
perf script -i /tmp/$NS.data -F comm,pid,tid,time,event,trace,ip,sym 2>/dev/null > /tmp/$NS.txt
python3 "$D/offcpu.py" /tmp/$NS.txt
ip netns del $NS; rm -f /tmp/$NS.batch /tmp/$NS.data /tmp/$NS.txt
