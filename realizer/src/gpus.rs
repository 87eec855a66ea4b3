//! GPUs as allocatable units: a VM holds a whole GPU (passthrough) or one
//! virtual GPU cut from a virtualizable one, never both on the same GPU, and
//! never one somebody else holds.

use std::collections::{BTreeMap, BTreeSet};

use mx_xir::{Constraint, GpuGrant, Host};

/// What is taken of one GPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuUse {
    /// Held whole by a VM.
    pub whole: bool,
    /// Virtual GPUs held, by number.
    pub slices: BTreeSet<u32>,
}

impl GpuUse {
    pub fn free(&self) -> bool {
        !self.whole && self.slices.is_empty()
    }
}

/// What a VM asks of a GPU: the `gpu` constraints its model must meet, and
/// whether a virtual GPU will do (`gpu_mode == virtual`).
#[derive(Clone, Debug, PartialEq)]
pub struct GpuNeed {
    pub model: Vec<Constraint>,
    pub virtual_: bool,
}

/// Every GPU of a host in declaration order: (index, declaration, ordinal
/// within the declaration).
pub fn units(host: &Host) -> impl Iterator<Item = (u32, &mx_xir::Gpu, usize)> {
    host.gpus
        .iter()
        .flat_map(|g| (0..g.count as usize).map(move |k| (g, k)))
        .enumerate()
        .map(|(i, (g, k))| (i as u32, g, k))
}

/// The GPU a VM with `need` gets on `host` given what is taken, or `None`.
/// A whole GPU is the first free one; a virtual GPU packs onto the GPU with
/// the most slices already out (leaving whole GPUs whole), lowest slice
/// number first. Deterministic: a function of the facility and the table.
pub fn pick(host: &Host, used: &BTreeMap<u32, GpuUse>, need: &GpuNeed) -> Option<GpuGrant> {
    let none = GpuUse::default();
    let model_ok = |g: &mx_xir::Gpu| {
        need.model
            .iter()
            .all(|c| crate::matching::holds_text(c, &g.model))
    };
    let grant = |i: u32, g: &mx_xir::Gpu, k: usize, slice: Option<u32>| GpuGrant {
        index: i,
        model: g.model.clone(),
        device: g.devices.get(k).cloned(),
        slice,
        via: slice.and_then(|_| {
            if g.mdev.is_some() {
                Some("mdev".to_string())
            } else if g.vfs > 0 {
                Some("vf".to_string())
            } else {
                None
            }
        }),
        mdev: slice.and(g.mdev.clone()),
    };
    if !need.virtual_ {
        return units(host)
            .find(|(i, g, _)| model_ok(g) && used.get(i).unwrap_or(&none).free())
            .map(|(i, g, k)| grant(i, g, k, None));
    }
    units(host)
        .filter(|(i, g, _)| {
            let u = used.get(i).unwrap_or(&none);
            g.virtualizable && model_ok(g) && !u.whole && (u.slices.len() as u32) < g.slices
        })
        .max_by_key(|(i, _, _)| {
            (
                used.get(i).map_or(0, |u| u.slices.len()),
                std::cmp::Reverse(*i),
            )
        })
        .map(|(i, g, k)| {
            let taken = used.get(&i).map(|u| &u.slices);
            let slice = (0..g.slices)
                .find(|s| !taken.is_some_and(|t| t.contains(s)))
                .expect("a free slice was counted");
            grant(i, g, k, Some(slice))
        })
}

/// Records `grant` as taken.
pub fn take(used: &mut BTreeMap<u32, GpuUse>, grant: &GpuGrant) {
    let u = used.entry(grant.index).or_default();
    match grant.slice {
        Some(s) => {
            u.slices.insert(s);
        }
        None => u.whole = true,
    }
}
