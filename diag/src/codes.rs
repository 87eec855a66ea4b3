//! The registry of diagnostic codes. Codes are stable: once published, a code
//! keeps its meaning. `E01xx` syntax, `E02xx` checks, `W02xx` warnings; later
//! phases take `E03xx` (realize) and `E04xx` (materialize and the runtime).

/// Documentation for one code, printed by `mxc explain`.
#[derive(Debug)]
pub struct CodeInfo {
    /// The code, e.g. `E0201`.
    pub code: &'static str,
    /// A short kebab-case name, e.g. `undefined-name`.
    pub name: &'static str,
    /// One line: what it means.
    pub summary: &'static str,
    /// Why it matters, an example and how to fix it.
    pub explanation: &'static str,
}

/// Looks up a code, case-insensitively, with or without a leading `mx::`.
pub fn lookup(code: &str) -> Option<&'static CodeInfo> {
    let code = code.trim();
    let code = code.rsplit("::").next().unwrap_or(code);
    CODES
        .iter()
        .find(|c| c.code.eq_ignore_ascii_case(code) || c.name.eq_ignore_ascii_case(code))
}

/// A registered diagnostic code. Only the constants in [`code`] make one,
/// so a diagnostic with a code missing from the registry (which `mxc
/// explain` could not explain) does not compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code(&'static str);

impl Code {
    /// The code as it is printed (`E0201`).
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl PartialEq<Code> for &str {
    fn eq(&self, other: &Code) -> bool {
        *self == other.0
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

macro_rules! codes {
    ($( $code:ident $name:literal $summary:literal => $expl:literal ;)*) => {
        /// Every code mx can report.
        pub static CODES: &[CodeInfo] = &[
            $( CodeInfo { code: stringify!($code), name: $name, summary: $summary, explanation: $expl }, )*
        ];

        /// The codes, one constant each: `Diagnostic::error(code::E0201, ..)`.
        #[allow(missing_docs)]
        pub mod code {
            use super::Code;
            $( pub const $code: Code = Code(stringify!($code)); )*
        }
    };
}

codes! {
    E0101 "syntax-error" "the model is not valid .mx syntax" =>
"The parser expected something else at this point. The label says what it
expected. Several syntax errors are reported at once: each logical line is
parsed on its own, so one mistake does not hide the next.

Example:
    x = topo.device('x' cores == 4)      # missing comma

Fix: write `topo.device('x', cores == 4)`.";

    E0102 "missing-colon" "a block header does not end with `:`" =>
"`for`, `while`, `if`, `elif`, `else` and `def` headers end with a colon, and
their body is indented below them.

Example:
    for i in range(3)
        net.node(f'n{i}')

Fix: `for i in range(3):`.";

    E0103 "unterminated-string" "a string literal is not closed" =>
"A quote opened a string that never ends on its line (or, for triple-quoted
strings, in the file).

Example:
    net = Network('hello)

Fix: close the string with the same quote that opened it.";

    E0104 "unbalanced-bracket" "a bracket is not closed, or closes the wrong bracket" =>
"Every `(`, `[` and `{` needs its matching closer. Inside brackets, lines
join, so an unclosed bracket can make the error appear far below it; the
label points at the bracket that was opened.

Example:
    net.connect([a, b)

Fix: `net.connect([a, b])`.";

    E0105 "bad-indentation" "indentation does not match any enclosing block" =>
"Blocks are delimited by indentation, as in Python. A line may only be
indented deeper right after a block header, and a dedent must return to the
indentation of an enclosing block. Mixing tabs and spaces is not allowed.

Example:
    for n in nodes:
            x = 1
        y = 2        # dedents to a level that was never opened

Fix: indent the block's lines consistently (four spaces is the convention).";

    E0106 "too-deeply-nested" "brackets, blocks or operators nest too deeply" =>
"The compiler bounds nesting (brackets, indentation, chained unary operators)
so that no input can exhaust its stack. Real models never come close.

Fix: flatten the expression with intermediate variables.";

    E0107 "bad-literal" "a number or string literal is malformed" =>
"An integer is too large for 64 bits, a float is malformed, or a string has an
invalid escape or an f-string has an unbalanced `{`.

Example:
    n = 99999999999999999999

Fix: use a value that fits in a signed 64-bit integer.";

    E0108 "not-utf8" "the model file is not valid UTF-8" =>
"Models are UTF-8 text. A byte sequence that is not UTF-8 (often a file saved
as Latin-1 or Windows-1252, or a binary file passed by mistake) is reported at
the first offending byte; the rest of the file is not compiled.

Fix: convert the file, e.g. `iconv -f latin1 -t utf-8 model.mx > fixed.mx`.";

    E0109 "model-too-large" "the model file is 4 GiB or larger" =>
"Offsets into a model, and so every label that points into it, are 32-bit,
so mx refuses a model of 4 GiB or more before parsing it. No real model
comes close: a 100,000-node model written one statement per line is 42 MB.

Fix: build a large topology with loops and comprehensions, not a line per
element.";

    E0201 "undefined-name" "a name is used that is not defined" =>
"The name is not a variable of the model, a parameter of the function, a
builtin or a mergexp name. The help suggests the closest known name.

Example:
    server, client = [net.node(n) for n in ['server', clinet]]

Fix: define the name first, or quote it if a string was meant (`'client'`).";

    E0202 "unknown-attribute" "an object has no attribute or property of that name" =>
"Attributes are looked up on the object: topologies have `device`, `node`,
`connect`; nodes have `properties`, `ingress`; lists have `append`, ... and
property groups such as `proc` and `memory` have fixed members
(`proc.cores`, `memory.capacity`).

Example:
    net.conect([a, b])

Fix: `net.connect([a, b])`.";

    E0203 "type-error" "a value has the wrong type for this operation" =>
"An operation or call got a value of a type it cannot use: adding a string to
a number, connecting something that is not a node, comparing a property to a
value of the wrong kind (`cores == 'four'`), or an ordered comparison on an
unordered property (`nic >= virtio`).

Fix: the label says what type was expected.";

    E0204 "unit-error" "a quantity has no unit or the wrong unit" =>
"Properties that measure something need a unit: `memory == gb(8)`, not
`memory == 8`; `capacity == mbps(100)`; `latency == ms(10)`;
`clock == ghz(2.2)`. A bare number would be ambiguous (bytes? gigabytes?), so
mx refuses it. A unit of the wrong dimension (`memory == mbps(1)`) is also an
error.

Units: kb mb gb tb (binary: gb(1) = 2^30 bytes), kbps mbps gbps tbps
(decimal bits per second), ns us ms s, hz khz mhz ghz.";

    E0205 "contradictory-constraints" "constraints on one element cannot all hold" =>
"No resource can satisfy this set of constraints, so the model can never be
realized. Checked per property (`cores == 4, cores >= 8`), across properties
(`virt == false` with a virtual NIC such as `nic == virtio`, or with `tdf`,
which needs a VM; `metal == true` with `virt == true`).

Fix: remove or relax one of the labelled constraints.";

    E0206 "duplicate-name" "two nodes have the same name" =>
"Node names identify nodes in the XIR, the realization and on the testbed, so
they must be unique within a topology.

Example:
    a = net.node('a'); b = net.node('a')

Fix: give each node its own name, e.g. with an f-string: `f'n{i}'`.";

    E0207 "short-link" "a link has fewer than two endpoints" =>
"A link joins two nodes (point-to-point) or more (a LAN). A link with one or
zero endpoints carries nothing.

Example:
    net.connect([a])

Fix: connect at least two nodes.";

    E0208 "not-on-link" "an endpoint is requested for a node that is not on the link" =>
"`link[x]` selects node x's endpoint on the link; x must be one of the nodes
passed to `connect`.

Example:
    l = net.connect([a, b]); l[c].socket.addrs = ip4('10.0.0.3/24')

Fix: index the link with one of its nodes, or connect c too.";

    E0209 "bad-address" "an IP address is malformed" =>
"Addresses are written in CIDR form, `a.b.c.d/len` with each part 0..255 and
len 0..32 (`ip4('10.0.0.1/24')`). Network and broadcast addresses of the
subnet cannot be assigned to an interface.";

    E0210 "duplicate-address" "the same address is assigned twice on one link" =>
"Two endpoints of the same link (the same layer-2 segment) cannot share an
address. (The same address on different links is a warning, W0204.)";

    E0211 "mixed-subnets-error" "(retired) endpoints of one link in different subnets" =>
"Retired: no longer reported. MergeTB accepts a link whose endpoints' addresses
sit in different subnets, and such a link can run (a static route or a /32
with a peer route makes it work), so mx now warns with W0207 instead.";

    E0212 "step-limit" "the model ran for too many steps" =>
"Models run in a sandbox with a step budget, so a runaway loop ends with this
error instead of hanging CI. The label points at the loop or function that was
running. The default budget (100 million steps) is far above what real models
need; raise it with `mxc compile --step-limit N` if a huge generated model
needs more.";

    E0213 "memory-limit" "the model built values that are too large" =>
"Models run in a sandbox with a memory budget: strings, lists and the topology
itself are bounded so a runaway model cannot exhaust the machine. Raise the
budget with `--memory-limit MB` if a huge generated model needs more.";

    E0214 "unknown-module" "a name from an unsupported module is used" =>
"Models run sandboxed: only `mergexp` (and `mx`) are available, and their names
are built in. Importing another module is a warning (W0201) so copied models
still load; using anything from it is this error.";

    E0215 "bad-arguments" "a call has the wrong number or names of arguments" =>
"A function or method was called with too many or too few positional
arguments, an unknown keyword argument, or the same argument twice.";

    E0216 "evaluation-error" "the model failed while running" =>
"An operation failed at run time: an index out of range, a missing dict key,
division by zero, `int('x')`, a value that cannot be unpacked, and so on.";

    E0217 "no-topology" "the model defines no topology" =>
"A model must create a topology (`Network('name')`, `topology('name')`, or use
the implicit `topo`). If it creates several, `experiment(net)` selects the one
to compile.";

    E0218 "bad-value" "a property is given a value it cannot take" =>
"The value is of the right type but not one the property accepts: an unknown
architecture, a negative core count, a loss outside 0..1, a port outside
1..65535, a NIC model mx does not know.";

    E0219 "recursion-limit" "functions call each other too deeply" =>
"Calls nest at most 400 deep, so unbounded recursion ends with this error
instead of a crash.";

    E0220 "bad-parameter" "a `--set` value does not fit the parameter" =>
"`--set N=V` overrides `param('N', default)`. The value is parsed as the
default's type (integer, float, bool or string) and must parse.";

    E0221 "port-in-use" "a facility port is cabled twice, or a cable loops back to its device" =>
"Each port of a host or switch takes one cable, and a cable joins two different devices.

Example:
    fac.cable(hv0.port(0), leaf0.port(1))
    fac.cable(hv1.port(0), leaf0.port(1))   # leaf0 port 1 is taken

Fix: use a free port.";
    E0222 "bad-port" "a cable names a host port the host does not have" =>
"Host ports are numbered from 0 across the host's NICs in the order they are declared: two
dual-port NICs give ports 0 to 3.

Example:
    hv = fac.host('hv0', cores=8, memory=gb(32), nics=[nic(connectx5, ports=2)])
    fac.cable(hv.port(2), leaf.port(0))   # hv0 has ports 0 and 1

Fix: use an existing port, or declare the NIC with more ports.";
    E0301 "unplaceable-node" "no resource of the facility can host a node" =>
"Every host was ruled out for this node. The labels show which constraint rules out which group of
hosts (\"rules out hv0..hv63 (64 hosts): has 32 cores\"); the help says how much room is left
when hosts match but are full.

Example:
    big = net.node('big', cores >= 64)   # the largest host has 32 cores

Fix: relax the constraint, pick another facility, or relinquish experiments that hold the
resources (`mxc alloc show`). `mxc realize --explain` lists every host and its verdict.";
    E0302 "no-free-port" "a host has no free port or VF for an endpoint" =>
"vfio endpoints need a free SR-IOV virtual function on a NIC of a matching model, passthrough
endpoints a whole free port that is cabled to a switch, and bare-metal endpoints a cabled port.

Fix: use a virtual NIC model (`nic == virtio`), or a facility with more SR-IOV capacity.";
    E0303 "no-free-vlan" "a leaf switch has run out of VLAN tags" =>
"Each link that reaches a leaf switch through a VF or a physical port takes a VLAN tag that is
unique on that leaf (100 to 4094).

Fix: relinquish experiments on that leaf, or use virtual NICs.";
    E0304 "unsound-realization" "the independent checker rejected a realization" =>
"Every realization is checked, apart from the solver, before it is allocated: constraints hold,
no host is over-committed, VNIs, VLAN tags and VFs are unique. This error means the realizer made
a mistake; nothing was allocated. Please report it with the model and facility.";
    E0305 "uplink-oversubscribed" "links that cross a host or leaf ask more of its uplink than it carries" =>
"A link between nodes on different hosts travels over each host's uplink (the cabled port), and a
link between hosts on different leaf switches also over each leaf's trunk (its cables to the
spines, summed). The capacity constraints of all links crossing a host must fit that port's
capacity (the lower of the NIC port's and the cable's), and those crossing a leaf its trunk. Links
without a capacity constraint are best effort and not counted. Placement already steers linked
nodes away from thin uplinks; this error means it found no way to.

Example:
    l = net.connect([a, b], capacity == gbps(100))   # a and b on hosts with 25 Gb/s uplinks

Fix: lower the capacity, or keep the endpoints on one host (`host == 'hv0'` on both).";
    E0306 "capacity-conflict" "a set of nodes cannot be placed together" =>
"Each of these nodes has hosts that match it, but not all of them fit at once. The set is the
smallest the realizer could prove: either together they ask more (cores, memory, disk, or whole
hosts for bare metal) than the hosts they can use have free, or the total would fit but the pieces
do not, host by host (three 10-core VMs on two 16-core hosts).

Example:
    for i in range(3):
        topo.device(f'big{i}', virt == true, cores == 10)   # two hypervisors of 16 free cores

Fix: shrink or drop one of the nodes, use a larger facility, or relinquish experiments that hold
its hosts (`mxc alloc show`).";
    E0307 "no-tunnel-endpoint" "a link needs a VXLAN tunnel endpoint the facility does not give" =>
"A link whose endpoints are on several hosts, or that joins virtual NICs (taps)
to VFs or whole ports, is a VXLAN segment. Every hypervisor with a tap on it
needs an underlay address for its VTEP, and every leaf switch with a VF or port
on it must map VLANs to VNIs (vxlan=True) at an underlay address of its own.

Example (facility):
    sw = fac.switch('sw0', role=leaf)                  # no underlay
    link[x].spec(nic == virtio); link[y].spec(nic >= connectx4)

Fix: fac.switch('sw0', role=leaf, vxlan=True, underlay='10.99.0.1'), and
underlay='...' on every hypervisor.";

    E0308 "no-free-tag" "every experiment tag is in use" =>
"Each realization holds a 24-bit tag in the allocation table; the names of its
devices, its MACs and its device group derive from it, so experiments on one
machine never touch each other's devices. All 16 million are held.

Fix: relinquish realizations that are no longer up.";

    E0309 "no-address" "automatic addressing found no free address or subnet" =>
"`addressing == ipv4` gives every endpoint without an address one: a link
where no endpoint wrote an address gets the next free subnet of 10.0.0.0/8
(a /24, or larger for a LAN of more than 253), skipping every subnet the
model writes; on a link where some endpoints wrote addresses, the others get
free addresses of the first written one's subnet. This error says that subnet
is full, or that the pool has no free subnet left.

Fix: write all of a link's addresses or none; write addresses outside
10.0.0.0/8 where the model takes much of it.";

    E0401 "unmaterializable" "a realization cannot be turned into fragments" =>
"The materializer needs every host that carries a VXLAN segment to have an underlay address, and
every node to have a shape QEMU can run (at least one vCPU and 64 MiB of memory).

Fix: give the host `underlay='192.0.2.1'` in the facility model, then realize again.";
    E0402 "bad-bundle" "a fragment bundle is malformed or was altered" =>
"Before the runtime touches anything it checks every bundle: the manifest's SHA-256 digests, the
fragment schema version, that interface names fit the kernel's 15 bytes, that MACs are well
formed, and that every reference (a bridge port, a VM's tap) names a fragment of the same host.

Fix: materialize the realization again (`mxc materialize REALIZATION -o DIR`); do not edit
fragments by hand.";
    E0403 "already-up" "the experiment is already materialized on this machine" =>
"An experiment's state directory exists, so it is up (or a run crashed half-way). Bringing it up
twice would fight over the same devices.

Fix: `mxc status NAME` to see it, `mxc down NAME` to remove it, then `mxc up` again.";
    E0404 "task-failed" "a runtime task failed" =>
"A task of the materialization DAG failed; the tasks that depend on it were not started and the
run stopped. What was created is recorded in the state directory.

Fix: read the task's message, then `mxc down NAME` removes everything that was created.";
    E0405 "unsupported-here" "the machine lacks a kernel feature a fragment needs" =>
"The runtime probes for SR-IOV, VFIO, netem and KVM before it uses them and refuses a fragment
whose feature the kernel lacks, before anything is touched.

Fix: realize onto a facility whose hosts have the feature, or drop the constraint that needs it.";
    E0406 "no-guest" "a node's guest cannot be reached" =>
"`mxc exec`, `cp`, `console` and `ssh` reach a VM of an experiment that is
up on this machine, over its management path (virtio-serial ports and the
serial console, never the experiment network). The node is not a VM of the
experiment, its QEMU is not running, or its guest agent does not answer
(still booting, or the image has none).

Fix: `mxc status NAME` lists the nodes and whether each is up; `mxc up
--resume NAME` starts what failed.";
    W0201 "unknown-import" "a module other than mergexp is imported" =>
"Only mergexp names exist in the sandbox. The import is ignored; using a name
from it is an error (E0214).";

    W0202 "islanded-network" "the topology falls apart into disconnected islands" =>
"Nodes in different islands cannot reach each other over the experiment
network. That is sometimes intended (two independent sub-experiments), often
a forgotten link.";

    W0203 "unconnected-node" "a node has no links" =>
"The node is not on any link, so it has no experiment network interface.";

    W0204 "reused-address" "the same address is assigned on different links" =>
"Two interfaces on different links share an address. Routing between them
will be ambiguous unless the links are deliberately isolated.";

    W0205 "unused-parameter" "a `--set` names a parameter the model never reads" =>
"`--set K=V` only affects `param('K', ...)` calls; the model made none for K,
so the value was ignored. Check the spelling.";

    W0206 "network-address" "an interface is given its subnet's network or broadcast address" =>
"`10.0.0.0/24` is the network address and `10.0.0.255/24` the broadcast address
of that subnet; hosts usually cannot use them.";

    W0207 "mixed-subnets" "endpoints of one link have addresses in different subnets" =>
"Addresses on one link usually share a subnet, or the nodes cannot reach each
other directly without extra routes. The check compares each address against
the link's first address with the first address's prefix length. It is a
warning, as MergeTB accepts such links: a model may add the routes itself.

Example:
    l[a].socket.addrs = ip4('10.0.0.1/24'); l[b].socket.addrs = ip4('10.0.1.2/24')";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_documented() {
        let mut seen = std::collections::BTreeSet::new();
        for c in CODES {
            assert!(seen.insert(c.code), "duplicate code {}", c.code);
            assert!(seen.insert(c.name), "duplicate name {}", c.name);
            assert!(c.code.len() == 5, "{}", c.code);
            assert!(!c.explanation.trim().is_empty(), "{} undocumented", c.code);
            assert!(
                c.summary
                    .chars()
                    .next()
                    .is_some_and(|ch| !ch.is_uppercase()),
                "{} summary must start lowercase",
                c.code
            );
        }
    }

    #[test]
    fn lookup_accepts_prefixes_and_names() {
        assert_eq!(lookup("mx::E0201").map(|c| c.code), Some("E0201"));
        assert_eq!(lookup("e0201").map(|c| c.code), Some("E0201"));
        assert_eq!(lookup("undefined-name").map(|c| c.code), Some("E0201"));
        assert!(lookup("E9999").is_none());
    }
}
