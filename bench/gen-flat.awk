# Writes a flat .mx model of N nodes (one statement per node and per link,
# no loops), about two links per node, constraints on every node and link,
# an address on every endpoint. Usage: awk -v N=1000 -f gen-flat.awk
BEGIN {
    print "from mergexp import *"
    print "net = Network('flat', routing == static, addressing == ipv4)"
    for (i = 0; i < N; i++)
        printf "n%d = net.node('n%d', proc.cores >= 2, memory.capacity >= gb(4), disk >= gb(20))\n", i, i
    for (i = 0; i < N; i++) {
        for (k = 0; k < 2; k++) {
            j = (k == 0) ? (i + 1) % N : (i + 7) % N
            l = 2 * i + k
            a = int(l / 32768); b = int(l / 128) % 256; c = (l % 128) * 2
            printf "l = net.connect([n%d, n%d], capacity == mbps(100), latency == ms(1))\n", i, j
            printf "l[n%d].socket.addrs = ip4('10.%d.%d.%d/31')\n", i, a, b, c
            printf "l[n%d].socket.addrs = ip4('10.%d.%d.%d/31')\n", j, a, b, c + 1
        }
    }
    print "experiment(net)"
}
