//! Loading and checking bundles. Everything is checked before the runtime
//! touches the machine: digests against the manifest, the schema version,
//! names the kernel will accept, and references between fragments.

use mx_diag::code;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mx_diag::Diagnostic;
use mx_materializer::Bundle;
use mx_xir::{FRAGMENT_VERSION, Fragment, IfName, Manifest, NicAttach, Spec, VmGpu};
use sha2::{Digest, Sha256};

fn bad(message: impl Into<String>, help: &str) -> Diagnostic {
    Diagnostic::error(code::E0402, message).help(help)
}

/// Names a host's guests resolve: the largest realization mx plans.
const MAX_NAMES: usize = 1_000_000;
/// A VM's overlay: more than any disk the facility model can describe.
const MAX_DISK: u64 = 64 << 40;
/// Routes a guest installs (the 10,000-node benchmark needs under 100).
const MAX_ROUTES: usize = 100_000;

const REMATERIALIZE: &str =
    "materialize the realization again (`mxc materialize REALIZATION -o DIR`)";

/// The longest link name a NIC may carry: a LAN of several thousand
/// members.
const MAX_LINK_NAME: usize = 1 << 16;

/// Bundles from their JSON form (an array of [`Bundle`]s, as the runtime
/// keeps them in an experiment's state). Values are validated as they are
/// read (the types of [`mx_xir::domain`]); [`validate`] checks how they fit
/// together, each fragment's host and experiment included.
pub fn from_json(bytes: &[u8], origin: &Path) -> Result<Vec<Bundle>, Diagnostic> {
    serde_json::from_slice(bytes).map_err(|e| {
        bad(
            format!(
                "{}:{}:{}: malformed bundles: {e}",
                origin.display(),
                e.line(),
                e.column()
            ),
            REMATERIALIZE,
        )
    })
}

/// Reads every `<host>/manifest.json` under `dir`, checking each fragment
/// file against its digest. Hosts come back sorted by name. Every value is
/// validated as it is read (names, interface names, addresses: the types of
/// [`mx_xir::domain`]); [`validate`] checks how they fit together.
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

/// Reads one host's bundle directory. The manifest names its host, and the
/// directory must be named after it.
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
                printable(&manifest.version)
            ),
            "materialize with the same mx version as the runtime",
        ));
    }
    if hdir.file_name().and_then(|n| n.to_str()) != Some(manifest.host.as_str()) {
        return Err(bad(
            format!(
                "{}: the manifest is for host `{}`, but sits in {}",
                mpath.display(),
                manifest.host,
                hdir.display()
            ),
            REMATERIALIZE,
        ));
    }
    if manifest.fragments.is_empty() {
        return Err(bad(
            format!("{}: the bundle lists no fragment", mpath.display()),
            REMATERIALIZE,
        ));
    }
    let mut fragments = Vec::new();
    for e in &manifest.fragments {
        if !file_ok(&e.file) {
            return Err(bad(
                format!(
                    "{}: fragment file `{}` is not a file of the bundle",
                    mpath.display(),
                    printable(&e.file)
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
                    printable(&f.id),
                    printable(&e.id)
                ),
                REMATERIALIZE,
            ));
        }
        fragments.push(f);
    }
    Ok(Bundle {
        experiment: manifest.experiment,
        host: manifest.host,
        fragments,
    })
}

/// A fragment file's name: `NNN-<id with - for />.json`, nothing that
/// leaves the directory.
fn file_ok(f: &str) -> bool {
    f.len() <= 200
        && f.ends_with(".json")
        && f != "manifest.json"
        && !f.starts_with('.')
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A fragment id: `kind/name`, printable, short.
fn id_ok(id: &str, kind: &str) -> bool {
    id.len() <= 200
        && id
            .strip_prefix(kind)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b))
}

/// `s` with control characters shown as `?`, for messages: a bundle's text
/// never reaches the terminal raw.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Checks a set of bundles for one experiment before anything is touched;
/// every problem is reported. Bundles are untrusted (they may come from
/// another machine): besides the types' own validation, this ties every name
/// the runtime acts on to the experiment, so nothing of another experiment
/// or of the host can be adopted, changed or deleted.
pub fn validate(bundles: &[Bundle]) -> Result<(), Vec<Diagnostic>> {
    let mut errs = Vec::new();
    let Some(first) = bundles.first() else {
        return Err(vec![bad("there is no bundle", REMATERIALIZE)]);
    };
    let experiment = &first.experiment;
    let tag = first.fragments.first().map_or(0, |f| f.tag);
    if tag == 0 || tag >= 1 << 24 {
        errs.push(bad(
            format!("experiment `{experiment}` has no valid tag ({tag:#x})"),
            REMATERIALIZE,
        ));
    }
    let t = mx_materializer::tag_hex(tag);
    let mut ids = BTreeSet::new();
    let mut vms = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for b in bundles {
        if !hosts.insert(b.host.as_str()) {
            errs.push(bad(
                format!("host `{}` has two bundles", b.host),
                REMATERIALIZE,
            ));
        }
        if b.experiment != *experiment {
            errs.push(bad(
                format!(
                    "the bundle of host `{}` belongs to experiment `{}`, not `{experiment}`",
                    b.host, b.experiment
                ),
                "bundles of one experiment only",
            ));
        }
        let mut devices = BTreeSet::new();
        let mut taps = BTreeMap::new();
        let mut vteps = BTreeSet::new();
        for f in &b.fragments {
            let at = format!("fragment `{}` (host {})", printable(&f.id), b.host);
            if f.version != FRAGMENT_VERSION {
                errs.push(bad(
                    format!(
                        "{at}: version `{}`, expected `{FRAGMENT_VERSION}`",
                        printable(&f.version)
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
            if f.experiment != *experiment || f.tag != tag {
                errs.push(bad(
                    format!(
                        "{at}: belongs to experiment `{}` (tag {:#x}), not `{experiment}` (tag {tag:#x})",
                        f.experiment, f.tag
                    ),
                    "bundles of one experiment only",
                ));
            }
            if !id_ok(&f.id, f.spec.kind()) {
                errs.push(bad(
                    format!(
                        "{at}: the id does not read `{}/<name>` in letters, digits and _.:/-",
                        f.spec.kind()
                    ),
                    REMATERIALIZE,
                ));
            }
            if !ids.insert(f.id.clone()) {
                errs.push(bad(format!("{at}: duplicate fragment id"), REMATERIALIZE));
            }
            // A device the experiment creates carries its tag in its name,
            // after a letter saying what it is: two experiments (distinct
            // tags) never name the same device, and nothing else is named so.
            let mut own = |d: &IfName, kind: char| {
                let prefix = format!("{kind}{t}");
                if !d.starts_with(&prefix) || d.len() == prefix.len() {
                    errs.push(bad(
                        format!("{at}: device `{d}` is not named `{prefix}...` after the experiment's tag"),
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
                    device,
                    peer,
                    underlay_addr,
                    ..
                } => {
                    // Only the host's own namespace, with the shared
                    // underlay's device names.
                    if netns.as_str() != format!("mxh-{}", b.host)
                        || device.as_str() != "mxul"
                        || !(peer.len() == 7
                            && peer.starts_with('u')
                            && peer[1..].bytes().all(|c| c.is_ascii_hexdigit()))
                        || underlay_addr.len != 24
                    {
                        errs.push(bad(
                            format!("{at}: a host's namespace is `mxh-<host>`, joined by `mxul` and `u<6 hex>` on a /24 underlay"),
                            REMATERIALIZE,
                        ));
                    }
                    devices.insert(device.to_string());
                }
                Spec::Vtep { device, vni, .. } => {
                    own(device, 'v');
                    vteps.insert(device.to_string());
                    if *vni == 0 || *vni >= 1 << 24 {
                        errs.push(bad(
                            format!("{at}: VNI {vni} is outside 1..16777215"),
                            REMATERIALIZE,
                        ));
                    }
                }
                Spec::Tap { device, vm } => {
                    own(device, 't');
                    taps.insert(device.to_string(), vm.clone());
                }
                Spec::Bridge { device, .. } => own(device, 'b'),
                Spec::Vf { vlan, .. } | Spec::SwitchVlan { vlan, .. } => {
                    if *vlan == 0 || *vlan > 4094 {
                        errs.push(bad(
                            format!("{at}: VLAN {vlan} is outside 1..4094"),
                            REMATERIALIZE,
                        ));
                    }
                    // Port and VF numbers name devices (`f{port}v{vf}`,
                    // `swp{port}`), which have 15 bytes.
                    let numbers = match &f.spec {
                        Spec::Vf { pf_port, vf, .. } => [*pf_port, *vf],
                        Spec::SwitchVlan {
                            switch_port, port, ..
                        } => [*switch_port, *port],
                        _ => [0, 0],
                    };
                    if numbers.iter().any(|n| *n > 0xffff) {
                        errs.push(bad(
                            format!("{at}: a port or VF number is above 65535"),
                            REMATERIALIZE,
                        ));
                    }
                }
                Spec::XdpPair { .. } => {}
                Spec::Names { entries } => {
                    // One file a host, written to the state directory.
                    let mut seen = BTreeSet::new();
                    if f.id != format!("names/{}", b.host)
                        || entries.len() > MAX_NAMES
                        || !entries.iter().all(|e| seen.insert(e.name.as_str()))
                    {
                        errs.push(bad(
                            format!("{at}: a names fragment is `names/<host>`, with at most {MAX_NAMES} distinct names"),
                            REMATERIALIZE,
                        ));
                    }
                }
                Spec::Emulation {
                    rate,
                    latency,
                    loss,
                    jitter,
                    profile,
                    ..
                } => {
                    let bounded = rate.is_none_or(|r| r > 0 && r <= 1 << 50)
                        && latency.is_none_or(|l| l <= 3_600_000_000_000)
                        && jitter.is_none_or(|j| j <= 3_600_000_000_000)
                        && loss.is_none_or(|l| (0.0..=1.0).contains(&l))
                        && profile
                            .as_deref()
                            .is_none_or(|p| mx_materializer::profile(p).is_some());
                    if !bounded {
                        errs.push(bad(
                            format!("{at}: rate, delay, loss or profile out of range"),
                            REMATERIALIZE,
                        ));
                    }
                }
                Spec::Vm(vm) => {
                    if !vms.insert(vm.name.clone()) {
                        errs.push(bad(
                            format!("{at}: VM `{}` is defined twice", vm.name),
                            REMATERIALIZE,
                        ));
                    }
                    if f.id != format!("vm/{}", vm.name) {
                        errs.push(bad(
                            format!("{at}: a VM's fragment is `vm/<its name>`"),
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
                    let machine = match vm.arch.as_str() {
                        "x86_64" => Some(mx_xir::Machine::Q35),
                        "aarch64" | "riscv64" => Some(mx_xir::Machine::Virt),
                        _ => None,
                    };
                    if machine != Some(vm.machine) {
                        errs.push(bad(
                            format!(
                                "{at}: architecture `{}` on machine `{}` is not one mx runs",
                                printable(&vm.arch),
                                vm.machine.as_str()
                            ),
                            REMATERIALIZE,
                        ));
                    }
                    if vm.cpu_share.is_some_and(|s| !(s > 0.0 && s <= 1.0))
                        || vm.tdf.is_some_and(|t| !(t > 0.0 && t <= 1000.0))
                    {
                        errs.push(bad(
                            format!("{at}: CPU share must be in (0, 1], tdf in (0, 1000]"),
                            REMATERIALIZE,
                        ));
                    }
                    if vm.disk > MAX_DISK || vm.routes.len() > MAX_ROUTES {
                        errs.push(bad(
                            format!(
                                "{at}: at most {} TiB of disk and {MAX_ROUTES} routes",
                                MAX_DISK >> 40
                            ),
                            REMATERIALIZE,
                        ));
                    }
                    if vm.cpus.len() > vm.vcpus as usize || vm.cpus.iter().any(|c| *c >= 4096) {
                        errs.push(bad(
                            format!("{at}: pinned cores do not fit the VM"),
                            REMATERIALIZE,
                        ));
                    }
                    if let Some(g) = &vm.gpu {
                        let model = match g {
                            VmGpu::Passthrough { model, .. }
                            | VmGpu::Mdev { model, .. }
                            | VmGpu::Vf { model, .. } => model,
                        };
                        if !mx_xir::domain::is_name(model) {
                            errs.push(bad(
                                format!(
                                    "{at}: GPU model `{}` is not a plain name",
                                    printable(model)
                                ),
                                REMATERIALIZE,
                            ));
                        }
                    }
                    for n in &vm.nics {
                        let model_ok = match n.attach {
                            NicAttach::Tap { .. } => crate::plan::nic_device(&n.model).is_some(),
                            NicAttach::Vf { .. } => n.model == "vf",
                            NicAttach::Passthrough { .. } => n.model == "passthrough",
                        };
                        if !model_ok {
                            errs.push(bad(
                                format!(
                                    "{at}: NIC model `{}` does not fit its attachment",
                                    printable(&n.model)
                                ),
                                REMATERIALIZE,
                            ));
                        }
                        // A LAN's name joins its members' endpoints
                        // (`a.0~b.0~...`): a 100-node LAN's is about 700
                        // bytes. Nothing runs it; it is bounded and plain.
                        if n.link.len() > MAX_LINK_NAME
                            || !n.link.bytes().all(|b| b.is_ascii_graphic())
                        {
                            errs.push(bad(
                                format!(
                                    "{at}: link name is longer than {MAX_LINK_NAME} bytes or not plain ASCII"
                                ),
                                REMATERIALIZE,
                            ));
                        }
                    }
                    if !vm.kernel_args.iter().all(|w| {
                        !w.is_empty()
                            && w.len() <= 256
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
                }
            }
        }
        // References stay within the host's bundle, and to the experiment's
        // own devices.
        for f in &b.fragments {
            let at = format!("fragment `{}` (host {})", printable(&f.id), b.host);
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
                    need(bb, "tap or VTEP");
                    // Two VMs' taps on this host, or a tap and the VTEP of
                    // its point-to-point link to another host.
                    if !taps.contains_key(a.as_str())
                        || !(taps.contains_key(bb.as_str()) || vteps.contains(bb.as_str()))
                    {
                        misowned.push(format!(
                            "{at}: an XDP pair joins a tap to another tap or to a VTEP"
                        ));
                    }
                }
                Spec::Emulation { device, .. } => {
                    need(device, "device");
                    if !taps.contains_key(device.as_str()) {
                        misowned.push(format!("{at}: only taps are shaped"));
                    }
                }
                Spec::Vm(vm) => {
                    for n in &vm.nics {
                        if let NicAttach::Tap { device } = &n.attach {
                            need(device, "tap");
                            if taps
                                .get(device.as_str())
                                .is_some_and(|owner| *owner != vm.name)
                            {
                                misowned
                                    .push(format!("{at}: tap `{device}` belongs to another VM"));
                            }
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
