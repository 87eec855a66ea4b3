//! XDP redirect between a pair of devices (aya, pinned maps in bpffs).

#[allow(unused_imports)]
use super::*;

/// What setting up an XDP redirect failed at.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// mx was built without clang.
    #[error("this mx was built without clang, so it has no XDP program; install clang and rebuild")]
    NoProgram,
    /// bpffs could not be mounted.
    #[error("mount bpffs on /sys/fs/bpf: {0}")]
    Mount(#[source] nix::Error),
    /// A device to redirect between is missing.
    #[error("no device `{name}`: {source}")]
    NoDevice {
        name: String,
        #[source]
        source: nix::Error,
    },
    /// Loading, filling, attaching or pinning the program or its map
    /// (the step and what the kernel or aya said).
    #[error("{0}")]
    Bpf(String),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

type R<T> = Result<T, XdpError>;

/// An aya failure, named by its step.
fn aya_err(step: &str, e: impl std::fmt::Display) -> XdpError {
    XdpError::Bpf(if step.is_empty() {
        e.to_string()
    } else {
        format!("{step}: {e}")
    })
}

/// The XDP redirect program, built by build.rs (empty without clang).
pub(crate) static XDP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_redirect.o"));

/// Serializes making an experiment's shared program in a namespace (one
/// process runs a namespace's tasks: the runtime, or the host's agent).
static SHARED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Joins `a` and `b` by XDP redirects. One program and one devmap serve all
/// of an experiment's pairs in a namespace, loaded (and verified) once and
/// pinned beside the pairs as `xdp-<namespace>/{prog,map}`; a pair is two
/// map entries and two attachments, pinned as links under `pin`. Loading an
/// object per pair cost the verifier about 50 ms a pair, the most expensive
/// plumbing operation mx had.
pub(crate) fn xdp_pair(ns: Option<&str>, a: &str, b: &str, pin: &Path) -> R<()> {
    use aya::maps::{DevMapHash, Map, MapData};
    use aya::programs::{Xdp, XdpMode, links::FdLink};
    if XDP_OBJECT.is_empty() {
        return Err(XdpError::NoProgram);
    }
    mount_bpffs()?;
    if pin.join("link-a").exists() && pin.join("link-b").exists() {
        return Ok(());
    }
    let parent = pin.parent().unwrap_or(Path::new("/sys/fs/bpf"));
    // bpffs refuses names with dots.
    let shared = parent.join(format!("xdp-{}", ns.unwrap_or("-").replace('.', "_")));
    let _ = fs::remove_dir_all(pin);
    fs::create_dir_all(pin).at(pin)?;
    let _held = SHARED
        .lock()
        .map_err(|_| XdpError::Bpf("XDP lock poisoned".into()))?;
    let res = in_ns(ns, || {
        let idx = |n: &str| -> R<u32> {
            nix::net::if_::if_nametoindex(n).map_err(|source| XdpError::NoDevice {
                name: n.to_string(),
                source,
            })
        };
        let (ia, ib) = (idx(a)?, idx(b)?);
        let (prog_pin, map_pin) = (shared.join("prog"), shared.join("map"));
        let (mut prog, map) = if prog_pin.exists() && map_pin.exists() {
            let prog = Xdp::from_pin(&prog_pin, aya_obj::programs::XdpAttachType::Interface)
                .map_err(|e| aya_err("open the pinned XDP program", e))?;
            let map =
                MapData::from_pin(&map_pin).map_err(|e| aya_err("open the pinned devmap", e))?;
            (prog, map)
        } else {
            let _ = fs::remove_dir_all(&shared);
            fs::create_dir_all(&shared).at(&shared)?;
            let mut bpf = aya::Ebpf::load(XDP_OBJECT).map_err(|e| aya_err("load XDP object", e))?;
            let map = bpf
                .take_map("REDIRECT")
                .ok_or_else(|| XdpError::Bpf("no REDIRECT map in the XDP object".into()))?;
            map.pin(&map_pin).map_err(|e| aya_err("pin map", e))?;
            let prog: &mut Xdp = bpf
                .program_mut("mx_redirect")
                .ok_or_else(|| XdpError::Bpf("no mx_redirect program in the XDP object".into()))?
                .try_into()
                .map_err(|e| aya_err("", e))?;
            prog.load().map_err(|e| aya_err("load XDP program", e))?;
            prog.pin(&prog_pin)
                .map_err(|e| aya_err("pin XDP program", e))?;
            drop(map);
            let prog = Xdp::from_pin(&prog_pin, aya_obj::programs::XdpAttachType::Interface)
                .map_err(|e| aya_err("open the pinned XDP program", e))?;
            let map =
                MapData::from_pin(&map_pin).map_err(|e| aya_err("open the pinned devmap", e))?;
            (prog, map)
        };
        {
            let map = Map::from_map_data(map).map_err(|e| aya_err("", e))?;
            let mut dm: DevMapHash<_> = DevMapHash::try_from(map).map_err(|e| aya_err("", e))?;
            dm.insert(ia, ib, None, 0)
                .map_err(|e| aya_err("devmap entry", e))?;
            dm.insert(ib, ia, None, 0)
                .map_err(|e| aya_err("devmap entry", e))?;
        }
        for (name, file) in [(a, "link-a"), (b, "link-b")] {
            let id = prog
                .attach(name, XdpMode::Skb)
                .map_err(|e| aya_err(&format!("attach XDP to {name}"), e))?;
            let link = prog.take_link(id).map_err(|e| aya_err("", e))?;
            let fd: FdLink = link
                .try_into()
                .map_err(|e| aya_err(&format!("XDP link on {name} is not a bpf_link"), e))?;
            fd.pin(pin.join(file))
                .map_err(|e| aya_err(&format!("pin XDP link of {name}"), e))?;
        }
        Ok(())
    });
    if res.is_err() {
        let _ = fs::remove_dir_all(pin);
    }
    res
}

pub(crate) fn mount_bpffs() -> R<()> {
    let mounted = fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "))
        })
        .unwrap_or(false);
    if !mounted {
        nix::mount::mount(
            Some("bpf"),
            "/sys/fs/bpf",
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(XdpError::Mount)?;
    }
    Ok(())
}
