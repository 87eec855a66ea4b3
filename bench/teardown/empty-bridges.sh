#!/bin/bash
# empty-bridges.sh N [extra bridge options]  -- time deleting N bridges that have no ports
N=$1; shift; NS=tdstudy-empty
for r in 1 2 3; do
  ip netns add $NS
  for ((b=0;b<N;b++)); do echo "link add br$b group 7 type bridge $*"; echo "link set br$b up"; done > /tmp/$NS.b
  ip -n $NS -b /tmp/$NS.b; sleep 1
  a=$(date +%s.%N); ip -n $NS link del group 7; e=$(date +%s.%N)
  echo "N=$N opts='$*' rep=$r del=$(echo "$e - $a" | bc)s"
  ip netns del $NS; rm -f /tmp/$NS.b; sleep 1
done
