//! The experiment's own IP network, as MergeTB's "reticulators" make it:
//! `addressing == ipv4` gives every endpoint without an address one (a
//! subnet per link or LAN), `routing == static` computes every node's routes
//! to every subnet over the experiment graph, and unless
//! `experimentnetresolution == false` every node's name resolves to its
//! experiment address. All of it is decided here and recorded in the
//! realization; the materializer and the guests only carry it out.

use mx_diag::code;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use mx_diag::Diagnostic;
use mx_xir::{Experiment, Ipv4Cidr, LinkPlan, Op, Route, Value};
use rayon::prelude::*;

/// Where automatic subnets come from: 10.0.0.0/8, one /24 per link unless a
/// LAN needs more.
const POOL: (u32, u8) = (0x0a00_0000, 8);

/// What the experiment asks of its network (its topology constraints).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asks {
    /// `addressing == ipv4`.
    pub addressing: bool,
    /// `routing == static`.
    pub routing: bool,
    /// Names resolve in the guests (`experimentnetresolution` is not false).
    pub resolution: bool,
}

impl Asks {
    pub fn of(exp: &Experiment) -> Asks {
        let is = |prop: &str, want: &str| {
            exp.constraints.iter().any(|c| {
                c.property == prop
                    && c.op == Op::Eq
                    && matches!(&c.value, Value::Text(t) if t.eq_ignore_ascii_case(want))
            })
        };
        let resolution_off = exp.constraints.iter().any(|c| {
            c.property == "experimentnetresolution"
                && match (c.op, &c.value) {
                    (Op::Eq, Value::Bool(b)) => !b,
                    (Op::Ne, Value::Bool(b)) => *b,
                    _ => false,
                }
        });
        Asks {
            addressing: is("addressing", "ipv4"),
            routing: is("routing", "static"),
            resolution: !resolution_off,
        }
    }
}

fn cidr(addr: u32, len: u8) -> Ipv4Cidr {
    Ipv4Cidr {
        addr: Ipv4Addr::from(addr),
        len,
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

/// Gives every endpoint without an address one. A link whose endpoints
/// wrote none gets the next free subnet of the pool (a /24, or larger for a
/// LAN of more than 253), skipping every subnet the model writes; a link
/// where some endpoints wrote addresses gives the others free addresses in
/// the first written one's subnet. Deterministic: links and endpoints in
/// model order.
pub fn assign(exp: &Experiment, plans: &mut [LinkPlan]) -> Result<(), Diagnostic> {
    // Every written subnet and address, to stay clear of.
    let mut written: Vec<(u32, u32)> = Vec::new(); // (network, mask)
    let mut taken: BTreeSet<u32> = BTreeSet::new();
    for p in plans.iter() {
        for e in &p.endpoints {
            for a in &e.addrs {
                let m = mask(a.len);
                written.push((u32::from(a.addr) & m, m));
                taken.insert(u32::from(a.addr));
            }
        }
    }
    written.sort_unstable();
    written.dedup();
    let overlaps = |net: u32, m: u32| {
        written
            .iter()
            .any(|&(w, wm)| (net & wm) == w || (w & m) == net)
    };
    let mut next = POOL.0;
    let pool_end = POOL.0 | !mask(POOL.1);
    for (li, p) in plans.iter_mut().enumerate() {
        let missing = p.endpoints.iter().filter(|e| e.addrs.is_empty()).count();
        if missing == 0 {
            continue;
        }
        let span = exp.links[li].span;
        let first = p.endpoints.iter().find_map(|e| e.addrs.first().copied());
        match first {
            Some(w) => {
                // Mixed: the rest from the written subnet.
                let m = mask(w.len);
                let net = u32::from(w.addr) & m;
                let last = net | !m;
                let mut cursor = net + 1;
                for e in p.endpoints.iter_mut().filter(|e| e.addrs.is_empty()) {
                    while cursor < last && taken.contains(&cursor) {
                        cursor += 1;
                    }
                    let a = cursor;
                    if a >= last {
                        return Err(Diagnostic::error(
                            code::E0309,
                            format!(
                                "link `{}` has no free address left in {} for node `{}`",
                                p.link,
                                cidr(net, w.len),
                                e.node
                            ),
                        )
                        .primary(span.range(), "this link mixes written and automatic addresses")
                        .help("write every address on this link, or none and let `addressing == ipv4` pick a subnet"));
                    }
                    taken.insert(a);
                    e.addrs.push(cidr(a, w.len));
                }
            }
            None => {
                // Room for every endpoint, the network and the broadcast address.
                let want = p.endpoints.len() as u64 + 2;
                let len = (32 - (want.next_power_of_two().trailing_zeros()) as u8).min(24);
                let m = mask(len);
                let size = !m as u64 + 1;
                let mut net = next;
                loop {
                    net = ((net as u64).div_ceil(size) * size) as u32;
                    if net as u64 + size - 1 > pool_end as u64 {
                        return Err(Diagnostic::error(
                            code::E0309,
                            format!("the address pool {} is used up", cidr(POOL.0, POOL.1)),
                        )
                        .primary(span.range(), format!("link `{}` needs a /{len}", p.link))
                        .help("write addresses for some links yourself (outside 10.0.0.0/8), or use fewer links"));
                    }
                    if !overlaps(net, m) {
                        break;
                    }
                    net += size as u32;
                }
                next = net + size as u32;
                for (i, e) in p.endpoints.iter_mut().enumerate() {
                    e.addrs.push(cidr(net + 1 + i as u32, len));
                }
            }
        }
    }
    Ok(())
}

/// One node's routing: its routes and whether it forwards.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRoutes {
    pub routes: Vec<Route>,
    pub forward: bool,
}

/// Routes for every node to every subnet of the experiment: shortest paths
/// over the experiment graph (a LAN joins all its members). Where several
/// neighbours start a shortest path to a subnet, the choice is made so that
/// routes merge: subnets are taken in address order, and a run of subnets
/// keeps the neighbour that reaches furthest before another is needed (the
/// lower-indexed one among equals). A route goes to the neighbour's address
/// on the link the two share (the lowest such link). Each run becomes the
/// fewest prefixes covering exactly its subnets, so a node behind one router
/// needs one route, and a router in a mesh of 10,000 nodes tens rather than
/// thousands. Nodes with more than one link forward.
pub fn routes(nodes: usize, plans: &[LinkPlan], index: &HashMap<&str, usize>) -> Vec<NodeRoutes> {
    // Per node: (neighbour, gateway address on the lowest shared link).
    let mut adj: Vec<BTreeMap<usize, Ipv4Addr>> = vec![BTreeMap::new(); nodes];
    // Each subnet, sorted by address: (network, length, nodes on it).
    let mut subnets: BTreeMap<(u32, u8), Vec<usize>> = BTreeMap::new();
    let mut links_of = vec![0usize; nodes];
    for p in plans {
        let ends: Vec<(usize, Option<Ipv4Cidr>)> = p
            .endpoints
            .iter()
            .map(|e| (index[e.node.as_str()], e.addrs.first().copied()))
            .collect();
        for &(n, a) in &ends {
            links_of[n] += 1;
            if let Some(a) = a {
                let m = mask(a.len);
                subnets
                    .entry((u32::from(a.addr) & m, a.len))
                    .or_default()
                    .push(n);
            }
        }
        for &(a, _) in &ends {
            for &(b, addr) in &ends {
                if a != b
                    && let Some(addr) = addr
                {
                    adj[a].entry(b).or_insert(addr.addr);
                }
            }
        }
    }
    let spans: Vec<(u32, u32)> = subnets
        .keys()
        .map(|(net, len)| (*net, net | !mask(*len)))
        .collect();
    // Flat arrays (compressed rows): the walks below touch them 10^8 times
    // on a 10,000-node mesh, and pointer chasing through nested vectors
    // would dominate.
    let (mut on_off, mut on_node) = (vec![0u32], Vec::new());
    for on in subnets.values() {
        on_node.extend(on.iter().map(|&n| n as u32));
        on_off.push(on_node.len() as u32);
    }
    let (mut adj_off, mut adj_to, mut adj_gw) = (vec![0u32], Vec::new(), Vec::new());
    for m in &adj {
        for (&b, &gw) in m {
            adj_to.push(b as u32);
            adj_gw.push(gw);
        }
        adj_off.push(adj_to.len() as u32);
    }
    let g = Graph {
        off: &adj_off,
        to: &adj_to,
    };
    (0..nodes)
        .into_par_iter()
        .map_init(Scratch::default, |scratch, s| {
            let words = g.degree(s).div_ceil(64).max(1);
            bfs(s, &g, words, scratch);
            let (dist, firsts) = (&scratch.dist, &scratch.firsts);
            // Per subnet in address order: the neighbours (bits by position
            // among s's neighbours) that start a shortest path to it; none
            // for the node's own subnets and unreachable ones.
            let cands = &mut scratch.cands;
            cands.clear();
            cands.resize(spans.len() * words, 0);
            // One pass per subnet: the nearest of its nodes, and the union
            // of their first hops (one word a node: the usual case, kept
            // scalar, as it runs nodes x subnets times).
            if words == 1 {
                for (i, c) in cands.iter_mut().enumerate() {
                    let on = &on_node[on_off[i] as usize..on_off[i + 1] as usize];
                    let (mut d, mut u) = (u32::MAX, 0u64);
                    for &n in on {
                        let dn = dist[n as usize];
                        if dn < d {
                            (d, u) = (dn, firsts[n as usize]);
                        } else if dn == d {
                            u |= firsts[n as usize];
                        }
                    }
                    *c = if d == 0 || d == u32::MAX { 0 } else { u };
                }
            } else {
                for (i, c) in cands.chunks_exact_mut(words).enumerate() {
                    let on = &on_node[on_off[i] as usize..on_off[i + 1] as usize];
                    let mut d = u32::MAX;
                    for &n in on {
                        let n = n as usize;
                        let dn = dist[n];
                        let f = &firsts[n * words..(n + 1) * words];
                        if dn < d {
                            d = dn;
                            c.copy_from_slice(f);
                        } else if dn == d {
                            for (a, b) in c.iter_mut().zip(f) {
                                *a |= b;
                            }
                        }
                    }
                    if d == 0 || d == u32::MAX {
                        // Its own subnet, or out of reach.
                        c.fill(0);
                    }
                }
            }
            let lo = adj_off[s] as usize;
            NodeRoutes {
                routes: merge(&spans, cands, words, &adj_gw[lo..adj_off[s + 1] as usize]),
                forward: links_of[s] > 1,
            }
        })
        .collect()
}

/// The experiment graph in compressed rows: node `n`'s neighbours are
/// `to[off[n]..off[n + 1]]`, in index order.
struct Graph<'a> {
    off: &'a [u32],
    to: &'a [u32],
}

impl Graph<'_> {
    fn neighbours(&self, n: usize) -> &[u32] {
        &self.to[self.off[n] as usize..self.off[n + 1] as usize]
    }

    fn degree(&self, n: usize) -> usize {
        (self.off[n + 1] - self.off[n]) as usize
    }
}

/// Buffers one thread reuses from source to source.
#[derive(Default)]
struct Scratch {
    dist: Vec<u32>,
    firsts: Vec<u64>,
    queue: Vec<u32>,
    cands: Vec<u64>,
}

/// Breadth first from `s`: distances, and for each node the set of `s`'s
/// neighbours (bits by position among them, `words` u64 per node) that
/// start a shortest path to it.
fn bfs(s: usize, g: &Graph, words: usize, sc: &mut Scratch) {
    let n = g.off.len() - 1;
    sc.dist.clear();
    sc.dist.resize(n, u32::MAX);
    sc.firsts.clear();
    sc.firsts.resize(n * words, 0);
    sc.queue.clear();
    sc.dist[s] = 0;
    for (k, &y) in g.neighbours(s).iter().enumerate() {
        let y = y as usize;
        sc.dist[y] = 1;
        sc.firsts[y * words + k / 64] |= 1 << (k % 64);
        sc.queue.push(y as u32);
    }
    let mut head = 0;
    if words == 1 {
        // The usual case (fewer than 65 neighbours): one word a node.
        while head < sc.queue.len() {
            let x = sc.queue[head] as usize;
            head += 1;
            let (next, fx) = (sc.dist[x] + 1, sc.firsts[x]);
            for &y in g.neighbours(x) {
                let y = y as usize;
                let dy = sc.dist[y];
                if dy == u32::MAX {
                    sc.dist[y] = next;
                    sc.firsts[y] = fx;
                    sc.queue.push(y as u32);
                } else if dy == next {
                    sc.firsts[y] |= fx;
                }
            }
        }
        return;
    }
    while head < sc.queue.len() {
        let x = sc.queue[head] as usize;
        head += 1;
        let next = sc.dist[x] + 1;
        for &y in g.neighbours(x) {
            let y = y as usize;
            if sc.dist[y] == u32::MAX {
                sc.dist[y] = next;
                sc.queue.push(y as u32);
            }
            if sc.dist[y] == next {
                for w in 0..words {
                    let f = sc.firsts[x * words + w];
                    sc.firsts[y * words + w] |= f;
                }
            }
        }
    }
}

/// Routes from the subnets' spans (address order) and their candidate
/// first hops: at each subnet that needs a route, the candidate that covers
/// the longest run of subnets from there (greedy, which gives the fewest
/// runs; the lowest-placed among equals); each run becomes the fewest
/// prefixes covering exactly its span, which never reaches into another run
/// (runs are consecutive).
fn merge(spans: &[(u32, u32)], cands: &[u64], words: usize, hops: &[Ipv4Addr]) -> Vec<Route> {
    let mut out = Vec::new();
    if words == 1 {
        // The usual case, scalar: it runs once a node over every subnet.
        let mut i = 0;
        while i < spans.len() {
            let mut common = cands[i];
            if common == 0 {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < spans.len() && common & cands[j] != 0 {
                common &= cands[j];
                j += 1;
            }
            let best = common.trailing_zeros() as usize;
            let end = spans[i..j].iter().map(|s| s.1).max().unwrap_or(spans[i].1);
            for (net, len) in range_to_prefixes(spans[i].0, end) {
                out.push(Route {
                    dst: cidr(net, len),
                    via: hops[best],
                });
            }
            i = j;
        }
        return out;
    }
    let set = |i: usize| &cands[i * words..(i + 1) * words];
    let mut common = vec![0u64; words];
    let mut i = 0;
    while i < spans.len() {
        if set(i).iter().all(|&w| w == 0) {
            i += 1;
            continue;
        }
        // Narrow the candidates while the run can go on: what is left when
        // it cannot are the hops that reach furthest.
        common.copy_from_slice(set(i));
        let mut j = i + 1;
        while j < spans.len() {
            let next = set(j);
            if common.iter().zip(next).all(|(a, b)| a & b == 0) {
                break;
            }
            for (a, b) in common.iter_mut().zip(next) {
                *a &= b;
            }
            j += 1;
        }
        let best = common
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(k, w)| k * 64 + w.trailing_zeros() as usize)
            .unwrap_or(0);
        let end = spans[i..j].iter().map(|s| s.1).max().unwrap_or(spans[i].1);
        for (net, len) in range_to_prefixes(spans[i].0, end) {
            out.push(Route {
                dst: cidr(net, len),
                via: hops[best],
            });
        }
        i = j;
    }
    out
}

/// The fewest aligned prefixes covering `start..=end` exactly.
fn range_to_prefixes(start: u32, end: u32) -> Vec<(u32, u8)> {
    let mut out = Vec::new();
    let (mut cur, end) = (start as u64, end as u64);
    while cur <= end {
        let align = if cur == 0 {
            32
        } else {
            cur.trailing_zeros().min(32)
        };
        let mut size_log = align;
        while size_log > 0 && cur + (1u64 << size_log) - 1 > end {
            size_log -= 1;
        }
        out.push((cur as u32, 32 - size_log as u8));
        cur += 1u64 << size_log;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_exact_prefixes() {
        let p = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            range_to_prefixes(p("10.0.0.0"), p("10.0.3.255")),
            vec![(p("10.0.0.0"), 22)]
        );
        assert_eq!(
            range_to_prefixes(p("10.0.1.0"), p("10.0.2.255")),
            vec![(p("10.0.1.0"), 24), (p("10.0.2.0"), 24)]
        );
        assert_eq!(range_to_prefixes(0, u32::MAX), vec![(0, 0)]);
    }
}
