//! Loading and checking bundles. Everything is checked before the runtime
//! touches the machine: digests against the manifest, the schema version,
//! names the kernel will accept, and references between fragments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mx_diag::Diagnostic;
use mx_materializer::Bundle;
use mx_xir::{FRAGMENT_VERSION, Fragment, Manifest, NicAttach, Spec};
use sha2::{Digest, Sha256};

fn bad(message: impl Into<String>, help: &str) -> Diagnostic {
    Diagnostic::error("E0402", message).help(help)
}

const REMATERIALIZE: &str =
    "materialize the realization again (`mxc materialize REALIZATION -o DIR`)";

/// Reads every `<host>/manifest.json` under `dir`, checking each fragment
/// file against its digest. Hosts come back sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Bundle>, Diagnostic> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        bad(
            format!("cannot read bundle directory {}: {e}", dir.display()),
            REMATERIALIZE,
        )
    })?;
    let mut hosts: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    hosts.sort();
    if hosts.is_empty() {
        return Err(bad(
            format!(
                "{} holds no bundle (no <host>/manifest.json)",
                dir.display()
            ),
            REMATERIALIZE,
        ));
    }
    hosts.iter().map(|h| load_bundle(h)).collect()
}

/// Reads one host's bundle directory.
pub fn load_bundle(hdir: &Path) -> Result<Bundle, Diagnostic> {
    let mpath = hdir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| {
        bad(
            format!("cannot read {}: {e}", mpath.display()),
            REMATERIALIZE,
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        bad(
            format!(
                "{}:{}:{}: malformed manifest: {e}",
                mpath.display(),
                e.line(),
                e.column()
            ),
            REMATERIALIZE,
        )
    })?;
    if manifest.version != FRAGMENT_VERSION {
        return Err(bad(
            format!(
                "{}: bundle version `{}`, this runtime reads `{FRAGMENT_VERSION}`",
                mpath.display(),
                manifest.version
            ),
            "materialize with the same mx version as the runtime",
        ));
    }
    let mut fragments = Vec::new();
    for e in &manifest.fragments {
        if e.file.contains('/') || e.file.starts_with('.') {
            return Err(bad(
                format!(
                    "{}: fragment file `{}` is outside the bundle",
                    mpath.display(),
                    e.file
                ),
                REMATERIALIZE,
            ));
        }
        let fpath = hdir.join(&e.file);
        let bytes = std::fs::read(&fpath).map_err(|err| {
            bad(
                format!("cannot read {}: {err}", fpath.display()),
                REMATERIALIZE,
            )
        })?;
        let digest = mx_materializer::hex(&Sha256::digest(&bytes));
        if digest != e.sha256 {
            return Err(bad(
                format!(
                    "{} does not match its digest in the manifest (it was altered or truncated)",
                    fpath.display()
                ),
                REMATERIALIZE,
            ));
        }
        let f: Fragment = serde_json::from_slice(&bytes).map_err(|err| {
            bad(
                format!(
                    "{}:{}:{}: malformed fragment: {err}",
                    fpath.display(),
                    err.line(),
                    err.column()
                ),
                REMATERIALIZE,
            )
        })?;
        if f.id != e.id {
            return Err(bad(
                format!(
                    "{}: fragment id `{}`, the manifest says `{}`",
                    fpath.display(),
                    f.id,
                    e.id
                ),
                REMATERIALIZE,
            ));
        }
        fragments.push(f);
    }
    Ok(Bundle {
        host: manifest.host,
        fragments,
    })
}

/// Whether the kernel will take `name` as an interface name.
fn ifname_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn mac_ok(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

fn cidr_ok(c: &str) -> bool {
    let Some((ip, len)) = c.split_once('/') else {
        return false;
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

fn ip_ok(c: &str) -> bool {
    c.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Names that end up in paths and command lines: no separators, no options.
fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && !n.starts_with(['-', '.'])
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Checks a set of bundles for one experiment; every problem is reported.
pub fn validate(bundles: &[Bundle]) -> Result<(), Vec<Diagnostic>> {
    let mut errs = Vec::new();
    let mut experiment: Option<&str> = None;
    let mut ids = BTreeSet::new();
    for b in bundles {
        let mut devices = BTreeSet::new();
        let mut taps = BTreeMap::new();
        for f in &b.fragments {
            let at = format!("fragment `{}` (host {})", f.id, b.host);
            if f.version != FRAGMENT_VERSION {
                errs.push(bad(
                    format!(
                        "{at}: version `{}`, expected `{FRAGMENT_VERSION}`",
                        f.version
                    ),
                    REMATERIALIZE,
                ));
            }
            if f.host != b.host {
                errs.push(bad(
                    format!(
                        "{at}: names host `{}` but sits in `{}`'s bundle",
                        f.host, b.host
                    ),
                    REMATERIALIZE,
                ));
            }
            match experiment {
                None => experiment = Some(&f.experiment),
                Some(e) if e != f.experiment => errs.push(bad(
                    format!("{at}: belongs to experiment `{}`, not `{e}`", f.experiment),
                    "bundles of one experiment only",
                )),
                _ => {}
            }
            if !name_ok(&f.experiment) || !name_ok(&f.host) {
                errs.push(bad(
                    format!("{at}: experiment and host names must be plain words"),
                    REMATERIALIZE,
                ));
            }
            if !ids.insert(f.id.clone()) {
                errs.push(bad(format!("{at}: duplicate fragment id"), REMATERIALIZE));
            }
            let mut dev = |d: &str| {
                if !ifname_ok(d) {
                    errs.push(bad(
                        format!("{at}: `{d}` is not a valid interface name (1 to 15 of a-z, 0-9, - and _)"),
                        REMATERIALIZE,
                    ));
                }
                if !devices.insert(d.to_string()) {
                    errs.push(bad(
                        format!("{at}: device `{d}` is defined twice"),
                        REMATERIALIZE,
                    ));
                }
            };
            match &f.spec {
                Spec::Netns {
                    netns,
                    underlay_netns,
                    underlay_addr,
                    device,
                    peer,
                } => {
                    dev(device);
                    if !ifname_ok(peer)
                        || !name_ok(netns)
                        || !name_ok(underlay_netns)
                        || !cidr_ok(underlay_addr)
                    {
                        errs.push(bad(
                            format!("{at}: malformed namespace, peer or underlay address"),
                            REMATERIALIZE,
                        ));
                    }
                }
                Spec::Vtep {
                    device,
                    vni,
                    local,
                    remotes,
                    ..
                } => {
                    dev(device);
                    if *vni == 0 || *vni >= 1 << 24 {
                        errs.push(bad(
                            format!("{at}: VNI {vni} is outside 1..16777215"),
                            REMATERIALIZE,
                        ));
                    }
                    if !ip_ok(local) || !remotes.iter().all(|r| ip_ok(r)) {
                        errs.push(bad(
                            format!("{at}: malformed underlay address"),
                            REMATERIALIZE,
                        ));
                    }
                }
                Spec::Tap { device, vm } => {
                    dev(device);
                    taps.insert(device.clone(), vm.clone());
                }
                Spec::Bridge { device, .. } => dev(device),
                Spec::Vf { mac, vlan, pf, .. } => {
                    if !mac_ok(mac) || *vlan == 0 || *vlan > 4094 {
                        errs.push(bad(format!("{at}: malformed MAC or VLAN"), REMATERIALIZE));
                    }
                    if !pf.is_empty() && !ifname_ok(pf) {
                        errs.push(bad(
                            format!("{at}: `{pf}` is not an interface name"),
                            REMATERIALIZE,
                        ));
                    }
                }
                Spec::SwitchVlan { vlan, .. } => {
                    if *vlan == 0 || *vlan > 4094 {
                        errs.push(bad(
                            format!("{at}: VLAN {vlan} is outside 1..4094"),
                            REMATERIALIZE,
                        ));
                    }
                }
                Spec::XdpPair { .. } | Spec::Emulation { .. } => {}
                Spec::Vm(vm) => {
                    if !name_ok(&vm.name) || !name_ok(&vm.image) {
                        errs.push(bad(
                            format!("{at}: VM and image names must be plain words"),
                            REMATERIALIZE,
                        ));
                    }
                    if vm.vcpus == 0
                        || vm.vcpus > 64
                        || vm.memory_mib < 64
                        || vm.memory_mib > 1 << 20
                    {
                        errs.push(bad(
                            format!(
                                "{at}: {} vCPUs and {} MiB is not a VM QEMU can run",
                                vm.vcpus, vm.memory_mib
                            ),
                            REMATERIALIZE,
                        ));
                    }
                    if !["x86_64", "aarch64", "riscv64"].contains(&vm.arch.as_str()) {
                        errs.push(bad(
                            format!("{at}: unknown architecture `{}`", vm.arch),
                            REMATERIALIZE,
                        ));
                    }
                    if vm.cpu_share.is_some_and(|s| !(s > 0.0 && s <= 1.0)) {
                        errs.push(bad(
                            format!("{at}: CPU share must be in (0, 1]"),
                            REMATERIALIZE,
                        ));
                    }
                    for n in &vm.nics {
                        if !mac_ok(&n.mac) || !n.addrs.iter().all(|a| cidr_ok(a)) {
                            errs.push(bad(
                                format!("{at}: malformed MAC `{}` or address", n.mac),
                                REMATERIALIZE,
                            ));
                        }
                        let attached = match &n.attach {
                            NicAttach::Vf { pf: d, .. }
                            | NicAttach::Passthrough { device: d, .. } => d,
                            NicAttach::Tap { device } => device,
                        };
                        if !attached.is_empty() && !ifname_ok(attached) {
                            errs.push(bad(
                                format!("{at}: `{attached}` is not an interface name"),
                                REMATERIALIZE,
                            ));
                        }
                        if crate::plan::nic_device(&n.model).is_none()
                            && !matches!(
                                n.attach,
                                NicAttach::Vf { .. } | NicAttach::Passthrough { .. }
                            )
                        {
                            errs.push(bad(
                                format!("{at}: unknown NIC model `{}`", n.model),
                                REMATERIALIZE,
                            ));
                        }
                    }
                    if !vm.kernel_args.iter().all(|w| {
                        !w.is_empty()
                            && w.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"._=,:/-+".contains(&b))
                    }) {
                        errs.push(bad(
                            format!(
                                "{at}: kernel arguments may only use letters, digits and ._=,:/-+"
                            ),
                            REMATERIALIZE,
                        ));
                    }
                    if !vm.neighbours.iter().all(|a| ip_ok(a)) {
                        errs.push(bad(
                            format!("{at}: malformed neighbour address"),
                            REMATERIALIZE,
                        ));
                    }
                }
            }
        }
        // References stay within the host's bundle.
        for f in &b.fragments {
            let at = format!("fragment `{}` (host {})", f.id, b.host);
            let mut missing = Vec::new();
            let mut misowned = Vec::new();
            let mut need = |d: &str, what: &str| {
                if !devices.contains(d) {
                    missing.push(format!(
                        "{at}: {what} `{d}` is not defined on host {}",
                        b.host
                    ));
                }
            };
            match &f.spec {
                Spec::Bridge { ports, .. } => ports.iter().for_each(|p| need(p, "port")),
                Spec::XdpPair { a, b: bb } => {
                    need(a, "tap");
                    need(bb, "tap");
                }
                Spec::Emulation { device, .. } => need(device, "device"),
                Spec::Vm(vm) => {
                    for n in &vm.nics {
                        if let NicAttach::Tap { device } = &n.attach {
                            need(device, "tap");
                        }
                    }
                    for n in &vm.nics {
                        if let NicAttach::Tap { device } = &n.attach
                            && taps.get(device).is_some_and(|owner| owner != &vm.name)
                        {
                            misowned.push(format!("{at}: tap `{device}` belongs to another VM"));
                        }
                    }
                }
                _ => {}
            }
            errs.extend(
                missing
                    .into_iter()
                    .chain(misowned)
                    .map(|m| bad(m, REMATERIALIZE)),
            );
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}
