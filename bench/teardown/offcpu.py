import sys, re, collections
# parse `perf script` output of sched:sched_switch with call chains
evs=[]; cur=None
for line in open(sys.argv[1], errors='replace'):
    if not line.strip():
        continue
    if not line.startswith((' ', '\t')):
        m = re.match(r'\s*(\S+)\s+(\d+)(?:/(\d+))?\s+([\d.]+):\s+(\S+):\s*(.*)', line)
        if not m: cur=None; continue
        comm,pid,tid,t,ev,trace = m.groups()
        cur={'comm':comm,'tid':int(tid or pid),'t':float(t),'trace':trace,'stack':[]}
        evs.append(cur)
    elif cur is not None:
        parts=line.split()
        if len(parts)>=2: cur['stack'].append(parts[1].split('+')[0])
# find the pid of the "ip" process doing the delete (the one with synchronize in its stacks)
cand=collections.Counter(e['tid'] for e in evs if e['comm']=='ip' and any('synchronize' in s for s in e['stack']))
if not cand: print("no ip process found"); sys.exit()
tid=cand.most_common(1)[0][0]
out=None; waits=collections.defaultdict(list); first=last=None
for e in evs:
    m=re.search(r'prev_pid=(\d+).*next_pid=(\d+)', e['trace'])
    if not m: continue
    prev,nxt=int(m.group(1)),int(m.group(2))
    if prev==tid:
        st=e['stack']
        key='other:'+'<'.join(st[2:5])
        for f in ('synchronize_rcu_expedited','synchronize_rcu','rcu_barrier','netdev_wait_allrefs','msleep'):
            if f in st:
                i=st.index(f); key=f+' <- '+' <- '.join(x for x in st[i+1:i+5]); break
        out=(e['t'],key)
        if first is None: first=e['t']
    if nxt==tid and out:
        waits[out[1]].append(e['t']-out[0]); out=None; last=e['t']
tot=0
for k,v in sorted(waits.items(), key=lambda kv:-sum(kv[1])):
    s=sum(v); tot+=s
    print(f"{len(v):6d} waits  total {s*1000:8.1f} ms  mean {s/len(v)*1000:6.3f} ms  median {sorted(v)[len(v)//2]*1000:6.3f} ms  {k}")
print(f"total off-CPU time of ip (tid {tid}): {tot*1000:.1f} ms")
