//! Host devices a VM takes with it: VFs and whole ports for its endpoints.

use std::collections::BTreeMap;

use crate::matching::{Need, NicNeed, nic_model_ok};
use crate::usage::Usage;

/// Free VFs and ports for the node's endpoints on host `hi`.
pub(crate) fn endpoint_room(
    n: &Need,
    h: &mx_xir::Host,
    hi: usize,
    u: &Usage,
    vfs: &BTreeMap<(usize, usize), u32>,
    ports: &BTreeMap<usize, u32>,
) -> bool {
    let used = u.host(&h.name);
    let mut want_vf: BTreeMap<usize, u32> = BTreeMap::new();
    let mut want_ports = 0;
    for (_, _, need) in &n.nics {
        match need {
            NicNeed::Vf(cs) => {
                let Some(ni) = h.nics.iter().enumerate().position(|(i, nic)| {
                    let taken = used.vfs.get(&i).map_or(0, |s| s.len() as u32)
                        + vfs.get(&(hi, i)).copied().unwrap_or(0)
                        + want_vf.get(&i).copied().unwrap_or(0);
                    nic.max_vfs > taken && nic_model_ok(cs, &nic.model)
                }) else {
                    return false;
                };
                *want_vf.entry(ni).or_default() += 1;
            }
            NicNeed::Port(_) => want_ports += 1,
            NicNeed::Virtual(_) | NicNeed::Any => {}
        }
    }
    // One port stays the host's uplink.
    let free_ports = h
        .ports()
        .saturating_sub(1 + used.ports.len() as u32 + ports.get(&hi).copied().unwrap_or(0));
    want_ports <= free_ports
}

pub(crate) fn reserve_endpoints(
    n: &Need,
    h: &mx_xir::Host,
    hi: usize,
    u: &Usage,
    vfs: &mut BTreeMap<(usize, usize), u32>,
    ports: &mut BTreeMap<usize, u32>,
) {
    let used = u.host(&h.name);
    for (_, _, need) in &n.nics {
        match need {
            NicNeed::Vf(cs) => {
                if let Some(ni) = h.nics.iter().enumerate().position(|(i, nic)| {
                    let taken = used.vfs.get(&i).map_or(0, |s| s.len() as u32)
                        + vfs.get(&(hi, i)).copied().unwrap_or(0);
                    nic.max_vfs > taken && nic_model_ok(cs, &nic.model)
                }) {
                    *vfs.entry((hi, ni)).or_default() += 1;
                }
            }
            NicNeed::Port(_) => *ports.entry(hi).or_default() += 1,
            NicNeed::Virtual(_) | NicNeed::Any => {}
        }
    }
}
