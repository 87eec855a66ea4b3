//! SR-IOV VFs, mediated devices and binding PCI functions to vfio-pci (and back), recorded so teardown restores them.

#[allow(unused_imports)]
use super::*;

/// What preparing a device for a VM failed at.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// The device is not in the state the plan needs (no SR-IOV, too few
    /// VFs, an unknown mdev type, not bound to vfio-pci ...): what was found.
    #[error("{0}")]
    Device(String),
    /// A sysfs control file refused a value.
    #[error(transparent)]
    Sysfs(#[from] CgroupError),
    #[error(transparent)]
    Path(#[from] PathError),
}

impl From<String> for VfioError {
    fn from(s: String) -> Self {
        VfioError::Device(s)
    }
}

impl From<&str> for VfioError {
    fn from(s: &str) -> Self {
        VfioError::Device(s.to_string())
    }
}

type R<T> = Result<T, VfioError>;

/// Where an experiment records the PCI functions it bound to vfio-pci.
pub(crate) fn vfio_dir(ctx: &Context) -> PathBuf {
    ctx.root.join(&ctx.experiment).join("vfio")
}

/// Replaces `@pci(KEY)` in QEMU's arguments with the PCI address recorded
/// when KEY was bound to vfio-pci.
pub(crate) fn fill_pci(argv: &[String], dir: &Path) -> R<Vec<String>> {
    argv.iter()
        .map(|a| {
            let Some(start) = a.find("@pci(") else {
                return Ok(a.clone());
            };
            let end = a[start..]
                .find(')')
                .map(|e| start + e)
                .ok_or("unterminated @pci(")?;
            let key = &a[start + 5..end];
            let record = fs::read_to_string(dir.join(key))
                .map_err(|_| format!("{key} was not bound to vfio-pci"))?;
            let addr = record.split_whitespace().next().unwrap_or_default();
            Ok(format!("{}{addr}{}", &a[..start], &a[end + 1..]))
        })
        .collect()
}

/// At least `count` VFs on `pf` (a network interface or a PCI address).
/// A PF serving none gets all it offers, so later experiments find their
/// VFs without changing the count under earlier ones.
pub(crate) fn sriov_vfs(pf: &str, count: u32) -> R<Option<String>> {
    // Tasks run in parallel, and two of them may enable the same PF: the
    // kernel refuses a second write of a nonzero count.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dev = crate::plan::pf_sysfs(pf);
    let read = |f: &str| -> R<u32> {
        fs::read_to_string(dev.join(f))
            .map_err(|e| format!("{pf} has no SR-IOV ({}: {e})", dev.join(f).display()))?
            .trim()
            .parse()
            .map_err(|_| VfioError::Device(format!("{pf}: unreadable {f}")))
    };
    let (now, total) = (read("sriov_numvfs")?, read("sriov_totalvfs")?);
    if count > total {
        return Err(VfioError::Device(format!(
            "{pf} offers {total} VFs, VF {} does not exist",
            count - 1
        )));
    }
    if now >= count {
        return Ok(None);
    }
    if now > 0 {
        return Err(VfioError::Device(format!(
            "{pf} serves {now} VFs and needs {count}; changing the count would remove VFs in use"
        )));
    }
    write(&dev.join("sriov_numvfs"), &total.to_string())?;
    Ok(None)
}

/// Creates the mediated device `uuid` of `mdev_type` on `parent`, unless
/// it exists (a resumed run).
pub(crate) fn mdev_create(parent: &str, mdev_type: &str, uuid: &str) -> R<Option<String>> {
    if Path::new("/sys/bus/mdev/devices").join(uuid).exists() {
        return Ok(None);
    }
    let types = Path::new("/sys/bus/pci/devices")
        .join(parent)
        .join("mdev_supported_types");
    let ty = types.join(mdev_type);
    if !ty.exists() {
        return Err(VfioError::Device(format!(
            "{parent} offers no mediated devices of type {mdev_type} ({} is missing; is the vendor's mdev driver loaded?)",
            ty.display()
        )));
    }
    if let Ok(n) = fs::read_to_string(ty.join("available_instances"))
        && n.trim() == "0"
    {
        return Err(VfioError::Device(format!(
            "{parent} has no {mdev_type} instances left (available_instances is 0)"
        )));
    }
    write(&ty.join("create"), uuid)?;
    Ok(None)
}

/// Removes the mediated device `uuid` if present.
pub(crate) fn mdev_remove(uuid: &str) -> R<Option<String>> {
    let dev = Path::new("/sys/bus/mdev/devices").join(uuid);
    if dev.exists() {
        write(&dev.join("remove"), "1")?;
    }
    Ok(None)
}

/// Binds the PCI function at `sysfs` to vfio-pci, with the other endpoints
/// of its IOMMU group (a GPU's audio function, say: VFIO hands a VM whole
/// groups), recording each address and former driver in `record`, the
/// function asked for first.
pub(crate) fn vfio_bind(sysfs: &Path, record: &Path) -> R<Option<String>> {
    if record.exists() {
        return Ok(None);
    }
    let dev = fs::canonicalize(sysfs).at(sysfs)?;
    let mut funcs = vec![dev.clone()];
    if let Ok(group) = fs::read_dir(dev.join("iommu_group/devices")) {
        let mut others: Vec<PathBuf> = group
            .filter_map(|e| e.ok())
            .filter_map(|e| fs::canonicalize(e.path()).ok())
            .filter(|p| *p != dev && !is_bridge(p))
            .collect();
        others.sort();
        funcs.extend(others);
    }
    let mut lines = String::new();
    for f in &funcs {
        let addr = pci_addr(f)?;
        let driver = fs::read_link(f.join("driver"))
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
        lines.push_str(&format!("{addr} {}\n", driver.as_deref().unwrap_or("-")));
    }
    if let Some(parent) = record.parent() {
        fs::create_dir_all(parent).at(parent)?;
    }
    // Written first: a bind that fails halfway is still undone by teardown.
    write(record, &lines)?;
    for f in &funcs {
        bind_one(f)?;
    }
    Ok(None)
}

/// A PCI bridge (class 0x0604) stays with its driver when its group is
/// handed to a VM.
pub(crate) fn is_bridge(dev: &Path) -> bool {
    fs::read_to_string(dev.join("class")).is_ok_and(|c| c.trim().starts_with("0x0604"))
}

pub(crate) fn pci_addr(dev: &Path) -> R<String> {
    dev.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| VfioError::Device(format!("{} is not a PCI function", dev.display())))
}

pub(crate) fn bind_one(dev: &Path) -> R<()> {
    let addr = pci_addr(dev)?;
    let driver = fs::read_link(dev.join("driver")).ok();
    if driver.as_ref().is_some_and(|d| d.ends_with("vfio-pci")) {
        return Ok(());
    }
    write(&dev.join("driver_override"), "vfio-pci")?;
    if driver.is_some() {
        write(&dev.join("driver/unbind"), &addr)?;
    }
    write(Path::new("/sys/bus/pci/drivers_probe"), &addr)?;
    let now = fs::read_link(dev.join("driver")).ok();
    if !now.is_some_and(|d| d.ends_with("vfio-pci")) {
        return Err(VfioError::Device(format!(
            "{addr} did not bind to vfio-pci (is the vfio-pci driver available?)"
        )));
    }
    Ok(())
}

/// Gives the functions bound by [`vfio_bind`] back to their former drivers.
pub(crate) fn vfio_release(record: &Path) -> R<Option<String>> {
    let Ok(text) = fs::read_to_string(record) else {
        return Ok(None);
    };
    for line in text.lines() {
        let Some(addr) = line.split_whitespace().next() else {
            continue;
        };
        let dev = Path::new("/sys/bus/pci/devices").join(addr);
        if dev.exists() {
            if fs::read_link(dev.join("driver")).is_ok_and(|d| d.ends_with("vfio-pci")) {
                write(&dev.join("driver/unbind"), addr)?;
            }
            write(&dev.join("driver_override"), "\n")?;
            write(Path::new("/sys/bus/pci/drivers_probe"), addr)?;
        }
    }
    let _ = fs::remove_file(record);
    Ok(None)
}
