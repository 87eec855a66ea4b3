//! Guest images: the catalog of what can be built here, what is installed,
//! and how each boots.
//!
//! An installed image is a directory `<images>/<key>/` (the key is the name,
//! plus `-<arch>` for other architectures than x86_64) holding its files
//! and an `image.json` that says what they are ([`ImageInfo`]). A VM names
//! an image; an image that is not installed is an error before anything is
//! touched, never a substitution: the message names the installed images
//! and the command that builds or imports the missing one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How an image boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// A kernel and an initramfs that is the whole system (the busybox
    /// guest); no disk.
    Initramfs,
    /// A kernel, an initrd and a root disk (qcow2) that each VM boots from
    /// through a copy-on-write overlay (the Debian images mx builds).
    Disk,
    /// A bootable qcow2 disk from elsewhere (a cloud image), booted by the
    /// firmware and configured by cloud-init from a NoCloud seed mx writes.
    Cloud,
}

/// The bus the base disk is attached to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskBus {
    /// virtio-blk: the usual, but a module in Debian's kernels, so it
    /// needs an initramfs.
    #[default]
    Virtio,
    /// NVMe: built into Debian's cloud kernel, so the kernel mounts the
    /// root itself and the initramfs (1.5 to 2 s of boot under TCG) goes.
    Nvme,
}

/// The guest agent an image runs, which `mxc exec` and `mxc cp` speak to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// The QEMU guest agent, on the virtio-serial port
    /// `org.qemu.guest_agent.0`.
    Qga,
    /// The busybox guest's shell version of the part of QGA mx uses
    /// (`images/guest/mx-agent`), on the same port; it reads requests
    /// without a JSON parser, so what it runs carries no quote or
    /// backslash.
    MxAgent,
    /// None known: exec and cp are refused.
    None,
}

/// What `image.json` says about an installed image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The image's name (`bookworm`).
    pub name: String,
    /// Its architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// How it boots.
    pub kind: ImageKind,
    /// One line for `mxc image list`.
    pub description: String,
    /// Kernel file in the image directory (not for cloud images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Initrd or initramfs file in the image directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// The base disk (qcow2), never written: VMs boot from overlays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// The bus the disk is attached to.
    #[serde(default, skip_serializing_if = "is_virtio")]
    pub disk_bus: DiskBus,
    /// Kernel command line words the image needs (`root=/dev/vda`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub append: Vec<String>,
    /// The guest agent.
    pub agent: AgentKind,
    /// sshd runs and takes the key mx injects.
    #[serde(default)]
    pub ssh: bool,
    /// The OS, for `mxc image list` (`Debian 12`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    /// How long `up` waits for a VM of this image to report ready, in
    /// seconds (120 when absent): a cloud image boots through firmware,
    /// a boot loader, an initramfs and cloud-init, minutes under TCG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout_s: Option<u64>,
}

impl ImageInfo {
    /// How long `up` waits for a VM of this image to report ready.
    pub fn ready_timeout(&self) -> u64 {
        self.ready_timeout_s.unwrap_or(DEFAULT_READY_TIMEOUT_S)
    }
}

/// How long `up` waits for a guest that says nothing else.
pub const DEFAULT_READY_TIMEOUT_S: u64 = 120;
/// How long it waits for an imported cloud image.
pub const CLOUD_READY_TIMEOUT_S: u64 = 600;

/// An image mx can build from Debian packages.
#[derive(Clone, Copy, Debug)]
pub struct Buildable {
    /// Its name.
    pub name: &'static str,
    /// Architectures it builds for.
    pub arches: &'static [&'static str],
    /// What it is.
    pub description: &'static str,
}

/// The images `mxc image --build NAME` makes.
pub const BUILDABLE: &[Buildable] = &[
    Buildable {
        name: mx_materializer::DEFAULT_IMAGE,
        arches: &["x86_64", "aarch64"],
        description: "busybox in an initramfs with the Debian kernel: boots in about 2 s, \
                      no disk, no sshd (the default)",
    },
    Buildable {
        name: "bookworm",
        arches: &["x86_64"],
        description: "Debian 12 on a disk: systemd, iproute2, iputils-ping, openssh-server, \
                      qemu-guest-agent, iperf3",
    },
    Buildable {
        name: "bullseye",
        arches: &["x86_64"],
        description: "Debian 11 on a disk, built like bookworm",
    },
];

/// Other names for images, where the mapping is honest (the same system,
/// another spelling). MergeTB's Ubuntu names (`2004`, `2204`) have no
/// Debian equivalent: import such an image with `mxc image import`.
pub const ALIASES: &[(&str, &str)] = &[
    ("busybox", mx_materializer::DEFAULT_IMAGE),
    ("debian", "bookworm"),
    ("debian12", "bookworm"),
    ("debian-12", "bookworm"),
    ("debian11", "bullseye"),
    ("debian-11", "bullseye"),
];

/// The canonical name of `name` (aliases resolved).
pub fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, to)| to)
}

/// Where an image for an architecture lives under the image directory:
/// `<image>` for x86_64, `<image>-<arch>` for the others.
pub fn key(image: &str, arch: &str) -> String {
    let image = canonical(image);
    if arch == "x86_64" {
        image.to_string()
    } else {
        format!("{image}-{arch}")
    }
}

/// The installed images under `root`, by key. A directory from before
/// `image.json` (the busybox guest's kernel and initramfs) counts as the
/// busybox image.
pub fn installed(root: &Path) -> BTreeMap<String, ImageInfo> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(root) else {
        return out;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let Ok(key) = e.file_name().into_string() else {
            continue;
        };
        if let Some(info) = read(&e.path(), &key) {
            out.insert(key, info);
        }
    }
    out
}

/// The image installed as `key`, if it is.
pub fn read(dir: &Path, key: &str) -> Option<ImageInfo> {
    if let Ok(text) = std::fs::read_to_string(dir.join("image.json")) {
        let info: ImageInfo = serde_json::from_str(&text).ok()?;
        // Every file it names is there, and inside the directory.
        let files = [&info.kernel, &info.initrd, &info.disk];
        let ok = files.iter().all(|f| {
            f.as_ref()
                .is_none_or(|f| mx_xir::domain::is_name(f) && dir.join(f).is_file())
        });
        return ok.then_some(info);
    }
    // A busybox guest built before image.json existed.
    let arch = key
        .strip_prefix(mx_materializer::DEFAULT_IMAGE)
        .map(|r| r.trim_start_matches('-'))
        .map(|a| if a.is_empty() { "x86_64" } else { a })?;
    (dir.join("vmlinuz").is_file() && dir.join("initramfs.cpio.gz").is_file())
        .then(|| busybox_info(arch, dir))
}

/// The busybox guest's description (written by `mxc image --build`).
pub fn busybox_info(arch: &str, dir: &Path) -> ImageInfo {
    ImageInfo {
        name: mx_materializer::DEFAULT_IMAGE.to_string(),
        arch: arch.to_string(),
        kind: ImageKind::Initramfs,
        description: BUILDABLE[0].description.to_string(),
        kernel: Some(if dir.join("vmlinux").is_file() {
            "vmlinux".into()
        } else {
            "vmlinuz".into()
        }),
        initrd: Some("initramfs.cpio.gz".into()),
        disk: None,
        disk_bus: DiskBus::Virtio,
        append: Vec::new(),
        agent: AgentKind::MxAgent,
        ssh: false,
        os: "busybox".into(),
        ready_timeout_s: None,
    }
}

/// Why an image cannot be used here, as (message, help).
pub fn missing(root: &Path, image: &str, arch: &str) -> (String, String) {
    let have: Vec<String> = installed(root).keys().cloned().collect();
    let name = canonical(image);
    let recipe = BUILDABLE.iter().find(|b| b.name == name);
    let buildable = recipe.is_some_and(|b| b.arches.contains(&arch));
    let arch_flag = if arch == "x86_64" {
        String::new()
    } else {
        format!(" --arch {arch}")
    };
    let how = if buildable {
        format!("build it with `mxc image --build {name}{arch_flag}`")
    } else if let Some(b) = recipe {
        format!(
            "mx builds `{name}` for {} only; for {arch}, install a kernel and an initramfs with an image.json in {} (images/README.md)",
            b.arches.join(" and "),
            root.join(key(name, arch)).display()
        )
    } else {
        format!(
            "mx cannot build `{name}` from Debian packages; import a qcow2 cloud image of it with `mxc image import {name} FILE{arch_flag}`"
        )
    };
    (
        format!(
            "image `{image}`{} is not installed here ({})",
            if arch == "x86_64" {
                String::new()
            } else {
                format!(" for {arch}")
            },
            if have.is_empty() {
                "no image is installed".to_string()
            } else {
                format!("installed: {}", have.join(", "))
            }
        ),
        format!("{how}; `mxc image list` shows what is installed and what can be built"),
    )
}

/// The directory of an image key under `root`.
pub fn dir(root: &Path, key: &str) -> PathBuf {
    root.join(key)
}

/// The files a build carries into the image directory, and the script
/// that runs: the scripts are in the binary, so a machine with only `mxc`
/// builds images, and an image built by another mxc's scripts is rebuilt.
fn carried(name: &str) -> Option<(&'static str, Vec<(String, &'static str)>)> {
    let mut files: Vec<(String, &'static str)> = crate::GUEST_FILES
        .iter()
        .map(|(f, text)| (format!("guest/{f}"), *text))
        .collect();
    let script = match name {
        n if n == mx_materializer::DEFAULT_IMAGE => "build-guest.sh",
        "bookworm" | "bullseye" => "build-debian.sh",
        _ => return None,
    };
    files.push(("build-guest.sh".into(), crate::GUEST_SCRIPT));
    files.push(("build-debian.sh".into(), crate::DEBIAN_SCRIPT));
    Some((script, files))
}

/// Builds image `name` for `arch` under `root` (aliases resolved), unless
/// it is installed and was built by the scripts this mxc carries (or
/// `force`). `log` gets the build's progress lines.
pub fn build(
    root: &Path,
    name: &str,
    arch: &str,
    force: bool,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, String> {
    let name = canonical(name);
    let Some(b) = BUILDABLE.iter().find(|b| b.name == name) else {
        let (m, h) = missing(root, name, arch);
        return Err(format!("{m}\n  help: {h}"));
    };
    if !b.arches.contains(&arch) {
        return Err(format!(
            "mx builds `{name}` for {} only, not {arch}",
            b.arches.join(" and ")
        ));
    }
    let Some((script, files)) = carried(name) else {
        return Err(format!("no build recipe for `{name}`"));
    };
    let key = key(name, arch);
    let dir = root.join(&key);
    let build = dir.join(".build");
    let current = files
        .iter()
        .all(|(f, text)| std::fs::read_to_string(build.join(f)).is_ok_and(|t| t == *text));
    if !force && current && read(&dir, &key).is_some() {
        return Ok(dir);
    }
    for (f, text) in &files {
        let p = build.join(f);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let _ = std::fs::remove_file(dir.join("image.json"));
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(build.join(script))
        .arg(&dir)
        .env("MX_GUEST_ARCH", arch)
        .env("MX_GUEST_SCRIPTS", build.join("guest"))
        .env("MX_IMAGE_NAME", name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if name == mx_materializer::DEFAULT_IMAGE {
        cmd.env("MX_GUEST_VMLINUX", if arch == "x86_64" { "1" } else { "0" });
    }
    if force {
        cmd.env("MX_GUEST_FORCE", "1");
    }
    let mut child = cmd.spawn().map_err(|e| format!("run bash: {e}"))?;
    // Progress goes to `log` as it comes; the last lines explain a failure.
    let stderr = child.stderr.take();
    let mut tail: Vec<String> = Vec::new();
    if let Some(err) = stderr {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            log(&line);
            tail.push(line);
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("run bash: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building image `{name}` ({arch}) failed:\n{}",
            tail.join("\n")
        ));
    }
    if name == mx_materializer::DEFAULT_IMAGE {
        let info = busybox_info(arch, &dir);
        let text = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("image.json"), text + "\n")
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    read(&dir, &key).map(|_| dir.clone()).ok_or_else(|| {
        format!(
            "the build of `{name}` left no usable image in {}",
            dir.display()
        )
    })
}

fn is_virtio(b: &DiskBus) -> bool {
    *b == DiskBus::Virtio
}

/// What the header of a qcow2 file says, read before anything else opens
/// it: a qcow2 can name other files (a backing file, an external data
/// file) that QEMU would open as root, so an imported image that names any
/// is refused before `qemu-img` sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Qcow2Header {
    /// 2 or 3.
    pub version: u32,
    /// The disk's virtual size in bytes.
    pub size: u64,
}

/// Reads and checks the header of an image to import (see [`Qcow2Header`]).
pub fn qcow2_header(path: &Path) -> Result<Qcow2Header, String> {
    use std::io::Read;
    let shown = path.display();
    let mut h = [0u8; 104];
    let mut f = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    let n = f.read(&mut h).map_err(|e| format!("{shown}: {e}"))?;
    let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let be64 = |o: usize| (u64::from(be32(o)) << 32) | u64::from(be32(o + 4));
    if n < 72 || h[..4] != *b"QFI\xfb" {
        let what = match &h[..n.min(6)] {
            [0xfd, b'7', b'z', b'X', b'Z', 0] => "an xz archive (unpack it with `xz -d`)",
            [0x1f, 0x8b, ..] => "a gzip archive (unpack it with `gunzip`)",
            _ => {
                "a raw disk or another format (make a qcow2 of it with `qemu-img convert -O qcow2 FILE OUT.qcow2`)"
            }
        };
        return Err(format!(
            "{shown} is not a qcow2 image: it looks like {what}"
        ));
    }
    let version = be32(4);
    if !(2..=3).contains(&version) || (version == 3 && n < 104) {
        return Err(format!(
            "{shown}: qcow2 version {version} is not one QEMU reads (2 or 3)"
        ));
    }
    if be64(8) != 0 {
        return Err(format!(
            "{shown} has a backing file: an image to import must stand alone \
             (flatten it with `qemu-img convert -O qcow2 FILE OUT.qcow2`)"
        ));
    }
    if be32(32) != 0 {
        return Err(format!(
            "{shown} is encrypted: mx boots unattended, so it takes unencrypted images"
        ));
    }
    if version == 3 {
        let incompatible = be64(72);
        if incompatible & 0b10 != 0 {
            return Err(format!(
                "{shown} is marked corrupt: repair it with `qemu-img check -r all FILE`"
            ));
        }
        if incompatible & 0b100 != 0 {
            return Err(format!(
                "{shown} keeps its data in an external data file: an image to import must \
                 stand alone (flatten it with `qemu-img convert -O qcow2 FILE OUT.qcow2`)"
            ));
        }
        if incompatible & !0b11111 != 0 {
            return Err(format!(
                "{shown} uses qcow2 features this QEMU does not know ({incompatible:#x})"
            ));
        }
    }
    Ok(Qcow2Header {
        version,
        size: be64(24),
    })
}

/// Imports `file`, a bootable qcow2 cloud image, as image `name` under
/// `root`: checked ([`qcow2_header`]), copied whole (`qemu-img convert`,
/// which also unpacks a compressed image so guests do not pay for it on
/// every read), and described as [`ImageKind::Cloud`]. Each VM boots it
/// through its own overlay and is configured by cloud-init from a NoCloud
/// seed mx writes ([`crate::plan::cloud_seed`]). Importing a name again
/// replaces the image; VMs running on the old one keep it until they stop.
pub fn import(
    root: &Path,
    name: &str,
    file: &Path,
    arch: &str,
    os: &str,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, String> {
    if !mx_xir::domain::is_name(name) {
        return Err(format!(
            "`{name}` cannot name an image: use letters, digits, `-`, `_` and `.`"
        ));
    }
    if BUILDABLE.iter().any(|b| b.name == canonical(name)) {
        return Err(format!(
            "`{name}` is an image mx builds (`mxc image --build {}`): import under another name",
            canonical(name)
        ));
    }
    if arch != "x86_64" {
        return Err(format!(
            "cloud images boot through firmware, and mx has firmware for x86_64 only (asked: {arch})"
        ));
    }
    if os.chars().any(|c| c.is_control()) || os.len() > 64 {
        return Err("--os: one short line, please".into());
    }
    let meta = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", file.display()));
    }
    // An absolute path: QEMU reads `name:rest` as a protocol (`nbd:`,
    // `json:`), never a path that starts with `/`.
    let file = std::fs::canonicalize(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let header = qcow2_header(&file)?;
    let key = key(name, arch);
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let tmp = root.join(format!(".import-{key}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let result = (|| {
        log(&format!(
            "copying {} ({:.1} GiB virtual) into {}",
            file.display(),
            header.size as f64 / f64::from(1u32 << 30),
            root.join(&key).display()
        ));
        let base = tmp.join("base.qcow2");
        let out = std::process::Command::new("qemu-img")
            .args(["convert", "-q", "-f", "qcow2", "-O", "qcow2"])
            .arg(&file)
            .arg(&base)
            .output()
            .map_err(|e| format!("qemu-img: {e} (apt-get install qemu-utils)"))?;
        if !out.status.success() {
            return Err(format!(
                "{} could not be read as a qcow2 image: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        // What was written is checked like what was read.
        qcow2_header(&base)?;
        let info = ImageInfo {
            name: name.to_string(),
            arch: arch.to_string(),
            kind: ImageKind::Cloud,
            description: format!(
                "imported from {} (cloud-init, NoCloud)",
                file.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            kernel: None,
            initrd: None,
            disk: Some("base.qcow2".into()),
            disk_bus: DiskBus::Virtio,
            append: Vec::new(),
            agent: AgentKind::MxAgent,
            ssh: true,
            os: os.to_string(),
            ready_timeout_s: Some(CLOUD_READY_TIMEOUT_S),
        };
        let text = serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?;
        std::fs::write(tmp.join("image.json"), text + "\n")
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        read(&tmp, &key).ok_or_else(|| format!("{}: the import is incomplete", tmp.display()))?;
        // Swap the directory in whole: a half-copied image is never seen.
        let dir = root.join(&key);
        let old = root.join(format!(".old-{key}-{}", std::process::id()));
        if dir.exists() {
            std::fs::rename(&dir, &old).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Removes an installed image. VMs running on it keep their base until
/// they stop.
pub fn remove(root: &Path, name: &str, arch: &str) -> Result<PathBuf, String> {
    let key = key(name, arch);
    let dir = root.join(&key);
    if !mx_xir::domain::is_name(&key) || read(&dir, &key).is_none() {
        let (m, _) = missing(root, name, arch);
        return Err(m);
    }
    std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
