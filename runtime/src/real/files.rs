//! Files the guests read: configuration, cloud-init seeds, copy-on-write disks.

#[allow(unused_imports)]
use super::*;

/// What writing a guest's files failed at.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A file or directory could not be written.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The base of a disk overlay is not a qcow2 image.
    #[error("{}: not a qcow2 image; rebuild the image", .0.display())]
    NotQcow2(PathBuf),
    /// `qemu-img` is not installed.
    #[error("qemu-img: {0} (install qemu-utils)")]
    NoQemuImg(#[source] io::Error),
    /// `qemu-img` refused.
    #[error(transparent)]
    QemuImg(CommandError),
}

type R<T> = Result<T, FilesError>;

/// Writes a file whole (a new file renamed over the old), its directory
/// made private to root where it is new.
pub(crate) fn write_file(path: &Path, content: &str) -> R<Option<String>> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content)
        .and_then(|()| fs::rename(&tmp, path))
        .at(path)?;
    Ok(None)
}

/// A cloud-init NoCloud seed ([`Op::WriteSeed`]): FAT, labelled
/// `CIDATA`, written whole to a temporary file and renamed into place.
pub(crate) fn write_seed(path: &Path, files: &[(String, String)]) -> R<Option<String>> {
    let image = seed_image(files).at(path)?;
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, image)
        .and_then(|()| fs::rename(&tmp, path))
        .at(path)?;
    Ok(None)
}

/// The bytes of a seed filesystem holding `files`: the same files give
/// the same bytes (a fixed volume id, no timestamps).
pub fn seed_image(files: &[(String, String)]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let size = 1024 * 1024
        + files
            .iter()
            .map(|(_, c)| c.len())
            .sum::<usize>()
            .next_multiple_of(4096);
    let mut disk = std::io::Cursor::new(vec![0u8; size]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .volume_label(*b"CIDATA     ")
            .volume_id(0x6d78_0001),
    )?;
    disk.set_position(0);
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
        {
            let root = fs.root_dir();
            for (name, content) in files {
                let mut f = root.create_file(name)?;
                f.truncate()?;
                f.write_all(content.as_bytes())?;
                f.flush()?;
            }
        }
        fs.unmount()?;
    }
    Ok(disk.into_inner())
}

pub(crate) fn private_dir(dir: &Path) -> R<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at(dir)
        .map_err(FilesError::from)
}

/// The virtual size of a qcow2 image, from its header (bytes 24..32, big
/// endian), or None if it is not one.
pub fn qcow2_size(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut h = [0u8; 32];
    fs::File::open(path).ok()?.read_exact(&mut h).ok()?;
    (h[..4] == *b"QFI\xfb").then(|| u64::from_be_bytes(h[24..32].try_into().unwrap_or_default()))
}

/// A VM's copy-on-write disk over its image's base: kept if it is there
/// (a VM started again keeps its disk until `down`).
pub(crate) fn disk_overlay(base: &Path, path: &Path, size: u64) -> R<Option<String>> {
    if qcow2_size(path).is_some() {
        return Ok(None);
    }
    let base_size = qcow2_size(base).ok_or_else(|| FilesError::NotQcow2(base.to_path_buf()))?;
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(path)
        .arg(size.max(base_size).to_string())
        .output()
        .map_err(FilesError::NoQemuImg)?;
    if !out.status.success() {
        let _ = fs::remove_file(path);
        return Err(FilesError::QemuImg(CommandError::Failed {
            command: format!("qemu-img create {}", path.display()),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }));
    }
    Ok(None)
}
