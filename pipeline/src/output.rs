//! Output files are replaced whole. A document is written to a new file
//! beside the target and moved into place only once it is complete, so a
//! failed write (a full disk, a writer's error) leaves the old file as it
//! was and no half-written XIR for a CI job to pick up.
//!
//! The old file is removed just before the new one is renamed into place,
//! rather than replaced by the rename: ext4 starts writing back a file at
//! once when it is renamed over another, or when a truncated file is
//! rewritten (`auto_da_alloc`). For the 226 MB XIR of a 100,000-node model
//! that was 0.1-0.15 s of a 1 s compile on our VMs (BENCHMARKS.md). The
//! cost is a window of microseconds in which the path does not exist.
//!
//! What is not a regular file (`/dev/null`, `/dev/stdout`, a pipe) is
//! written in place, as before; so is a dangling symbolic link, and a
//! target whose directory we may not create files in.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `path` whole with `write`. An existing regular file keeps its
/// permissions and (where we may set it) its owner; `mode` sets the
/// permissions of the result instead. A symbolic link is followed: its
/// target is replaced and the link stays.
pub fn replace_file(
    path: &Path,
    mode: Option<u32>,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let old = match fs::metadata(path) {
        Ok(m) if m.is_file() => Some(m),
        Ok(_) => return in_place(path, mode, write),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(path).is_ok() {
                return in_place(path, mode, write); // a dangling link
            }
            None
        }
        Err(e) => return Err(e),
    };
    let target = match &old {
        Some(_) if fs::symlink_metadata(path)?.file_type().is_symlink() => fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let Some((mut file, part)) = part_file(&target)? else {
        return in_place(path, mode, write);
    };
    let done = (|| {
        if let Some(mode) = mode {
            file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        } else if let Some(m) = &old {
            file.set_permissions(m.permissions())?;
            // Only root may give a file away; for anyone else the new file
            // is theirs, as a file they created would be.
            let _ = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()));
        }
        write(&mut file)?;
        drop(file);
        if old.is_some() {
            match fs::remove_file(&target) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(&part, &target)
    })();
    if done.is_err() {
        let _ = fs::remove_file(&part);
    }
    done
}

/// A new file beside `target`, named after it and this process, or `None`
/// when its directory does not let us create one.
fn part_file(target: &Path) -> io::Result<Option<(File, PathBuf)>> {
    let Some(name) = target.file_name() else {
        return Ok(None);
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    for attempt in 0..16u32 {
        let mut part = std::ffi::OsString::from(".");
        part.push(name);
        part.push(format!(".{}-{attempt}.mx-part", std::process::id()));
        let part = dir.join(part);
        // `create_new` never follows or reuses what is there already.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&part)
        {
            Ok(f) => return Ok(Some((f, part))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn in_place(
    path: &Path,
    mode: Option<u32>,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = File::create(path)?;
    if let Some(mode) = mode
        && file.metadata()?.is_file()
    {
        file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    }
    write(&mut file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".mx-part"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        replace_file(&path, None, |f| f.write_all(b"{}\n")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn an_old_file_is_replaced_and_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        fs::write(&path, b"old, and longer than the new text").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        replace_file(&path, None, |f| f.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        fs::write(&path, b"old").unwrap();
        let err = replace_file(&path, None, |f| {
            f.write_all(b"half of a docu")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(leftovers(dir.path()).is_empty());
        // Nor is a file created when there was none.
        let fresh = dir.path().join("fresh.json");
        replace_file(&fresh, None, |_| Err(io::Error::other("no"))).unwrap_err();
        assert!(!fresh.exists());
    }

    #[test]
    fn a_link_is_followed_and_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        replace_file(&link, None, |f| f.write_all(b"new")).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"new");
        // A dangling link is written through, creating its target.
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink("made.json", &dangling).unwrap();
        replace_file(&dangling, None, |f| f.write_all(b"made")).unwrap();
        assert_eq!(fs::read(dir.path().join("made.json")).unwrap(), b"made");
    }

    #[test]
    fn devices_are_written_in_place() {
        replace_file(Path::new("/dev/null"), None, |f| f.write_all(b"gone")).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(
            fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn a_mode_is_set_on_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.sh");
        replace_file(&path, Some(0o755), |f| f.write_all(b"#!/bin/sh\n")).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
    }
}
