//! The experiment's own network (`addressing == ipv4`, `routing == static`,
//! name resolution): addresses and routes as the realization records them.

use mx_compiler::{Options, compile};
use mx_realizer::{Usage, realize};

const FACILITY: &str = "fac = facility('one')\nsw = fac.switch('sw', underlay='10.9.0.254')\n\
    h = fac.host('hv', roles=[hypervisor], cores=512, memory=gb(1024), disk=tb(100), underlay='10.9.0.1', nics=[nic(x710)])\n\
    fac.cable(h.port(0), sw.port(0))\n";

fn realized(model: &str) -> Result<mx_xir::Realization, Vec<mx_diag::Diagnostic>> {
    let fac = compile("f.mx", FACILITY, &Options::default())
        .facility
        .expect("facility");
    let out = compile("e.mx", model, &Options::default());
    let exp = out
        .xir
        .unwrap_or_else(|| panic!("compiles: {:?}", out.diagnostics));
    realize(&exp, &fac, &Usage::default(), &Default::default()).map(|o| o.realization)
}

/// Addresses per link and routes per node, as text.
fn network(real: &mx_xir::Realization) -> String {
    let mut s = String::new();
    for l in &real.links {
        let addrs: Vec<String> = l
            .endpoints
            .iter()
            .map(|e| {
                format!(
                    "{}={}",
                    e.node,
                    e.addrs
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
            .collect();
        s.push_str(&format!("link {}: {}\n", l.link, addrs.join(" ")));
    }
    for p in &real.nodes {
        let routes: Vec<String> = p
            .routes
            .iter()
            .map(|r| format!("{} via {}", r.dst, r.via))
            .collect();
        s.push_str(&format!(
            "node {}{}: {}\n",
            p.node,
            if p.forward { " (forwards)" } else { "" },
            routes.join(", ")
        ));
    }
    s
}

/// MergeTB's dumbbell: two LANs joined by a router, no addresses written.
const DUMBBELL: &str = "from mergexp import *\n\
    net = Network('dumbbell', addressing == ipv4, routing == static)\n\
    a = [net.node(n) for n in ['a0', 'a1', 'a2']]\n\
    b = [net.node(n) for n in ['b0', 'b1']]\n\
    r = net.node('r')\n\
    net.connect(a + [r])\n\
    net.connect(b + [r])\n\
    experiment(net)\n";

#[test]
fn two_lans_and_a_router() {
    let real = realized(DUMBBELL).expect("realizes");
    insta::assert_snapshot!(network(&real));
    // Deterministic: the same model gives the same network.
    assert_eq!(network(&realized(DUMBBELL).unwrap()), network(&real));
    assert!(real.resolve_names);
}

#[test]
fn written_subnets_are_avoided_and_mixed_links_share_the_written_subnet() {
    let model = "from mergexp import *\n\
        net = Network('w', addressing == ipv4, routing == static)\n\
        a, b, c, d = [net.node(n) for n in ['a', 'b', 'c', 'd']]\n\
        l0 = net.connect([a, b])\n\
        l1 = net.connect([b, c, d])\n\
        l2 = net.connect([a, d])\n\
        l0[a].socket.addrs = ip4('10.0.0.7/24')\n\
        l0[b].socket.addrs = ip4('10.0.0.1/24')\n\
        l1[c].socket.addrs = ip4('10.0.1.9/24')\n\
        experiment(net)\n";
    let real = realized(model).expect("realizes");
    insta::assert_snapshot!(network(&real));
    let all: Vec<String> = real
        .links
        .iter()
        .flat_map(|l| &l.endpoints)
        .flat_map(|e| e.addrs.iter().map(|a| a.addr.to_string()))
        .collect();
    let unique: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an address given twice: {all:?}");
}

#[test]
fn equal_paths_break_ties_by_node_order() {
    // A diamond: a reaches d's far subnet through b and through c, equally
    // far; b comes first.
    let model = "net = topology('diamond', addressing == ipv4, routing == static)\n\
        a, b, c, d, e = [net.device(n) for n in ['a', 'b', 'c', 'd', 'e']]\n\
        net.connect([a, b])\n\
        net.connect([a, c])\n\
        net.connect([b, d])\n\
        net.connect([c, d])\n\
        net.connect([d, e])\n";
    let real = realized(model).expect("realizes");
    insta::assert_snapshot!(network(&real));
}

#[test]
fn a_pool_with_no_room_is_an_error_at_the_link() {
    let model = "net = topology('full', addressing == ipv4)\n\
        a, b, c = [net.device(n) for n in ['a', 'b', 'c']]\n\
        big = net.connect([a, b])\n\
        big[a].socket.addrs = ip4('10.0.0.1/8')\n\
        big[b].socket.addrs = ip4('10.0.0.2/8')\n\
        net.connect([b, c])\n";
    let errs = realized(model).unwrap_err();
    assert_eq!(errs[0].code, "E0309", "{errs:?}");
    assert!(errs[0].message.contains("used up"), "{}", errs[0].message);
}

#[test]
fn without_the_constraints_nothing_is_added() {
    let model = "net = topology('plain')\na, b = [net.device(n) for n in ['a', 'b']]\nnet.connect([a, b])\n";
    let real = realized(model).expect("realizes");
    assert!(real.links[0].endpoints.iter().all(|e| e.addrs.is_empty()));
    assert!(real.nodes.iter().all(|p| p.routes.is_empty()));
}

#[test]
fn name_resolution_can_be_turned_off() {
    let model = "from mergexp import *\nnet = Network('n', experimentnetresolution == False)\n\
        a, b = [net.node(n) for n in ['a', 'b']]\nnet.connect([a, b])\nexperiment(net)\n";
    assert!(!realized(model).expect("realizes").resolve_names);
}
