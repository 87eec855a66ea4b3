# lans.py: two LANs joined by a router, written as MergeTB writes models.
# No addresses: `addressing == ipv4` gives every interface one (a subnet per
# LAN), `routing == static` installs routes in every node and makes the
# router forward, and every node's name resolves in every guest.
#
#   a1 --+                    +-- b1 (Debian 12)
#        +-- r (router) ------+
#   a2 --+     100 Mb/s       +-- b2
#
# Try it:
#   mxc image --build bookworm          # once: Debian 12 from the mirror
#   mxc up examples/lans.py
#   mxc exec lans a1 -- ping -c 3 b1
#   mxc exec lans b1 -- iperf3 -s -D
#   mxc exec lans a1 -- iperf3 -c b1 -t 5
#   mxc ssh lans b1
#   mxc down lans
from mergexp import *

net = Network('lans', addressing == ipv4, routing == static)

a = [net.node(name, memory.capacity >= mb(256)) for name in ['a1', 'a2']]
b = [
    net.node('b1', image == 'bookworm', memory.capacity >= mb(512)),
    net.node('b2', memory.capacity >= mb(256)),
]
r = net.node('r', memory.capacity >= mb(256))

net.connect(a + [r])
net.connect(b + [r], capacity == mbps(100))

experiment(net)
