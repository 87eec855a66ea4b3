# cloud.py: a node on an imported cloud image beside the busybox guest,
# written as MergeTB writes models (`2204` is MergeTB's name for Ubuntu
# 22.04, which mx cannot build from Debian packages: import it).
#
#   mxc image import 2204 jammy-server-cloudimg-amd64.img --os "Ubuntu 22.04"
#   mxc up examples/cloud.py
#   mxc exec cloud u -- ping -c 3 a
#   mxc ssh cloud u
#   mxc down cloud
from mergexp import *

net = Network('cloud', addressing == ipv4, routing == static)

u = net.node('u', image == '2204', memory.capacity >= mb(1024))
a = net.node('a', memory.capacity >= mb(256))

net.connect([u, a])

experiment(net)
