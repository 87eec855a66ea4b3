//! Reading a model file, a large one in two halves at once.
//!
//! Nothing else can start before the model is read, and one core reading
//! a 42 MB model took 31 ms, most of it the kernel faulting in the pages
//! of the buffer, while the other core waited. Two threads each fill half
//! of the buffer with positioned reads, so each faults in its own half.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Files from this size are read in two halves.
const PARALLEL_FROM: u64 = 4 << 20;

/// A model file's bytes, as [`std::fs::read`] gives them; or, for a model
/// larger than mx compiles ([`mx_compiler::MAX_SOURCE`], E0109), its size:
/// a regular file's from its metadata, before anything is read into
/// memory; a pipe's or a device's as one byte past the limit, where
/// reading stopped (so `mxc check /dev/zero` ends).
pub fn read_model(path: &Path) -> io::Result<Result<Vec<u8>, usize>> {
    read_under(path, mx_compiler::MAX_SOURCE)
}

/// [`read_model`] with `max` bytes for the largest model.
fn read_under(path: &Path, max: usize) -> io::Result<Result<Vec<u8>, usize>> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    if meta.is_file() && len > max {
        return Ok(Err(len));
    }
    // Pipes and devices have no size to split by or to size the buffer.
    let parallel = meta.is_file() && meta.len() >= PARALLEL_FROM;
    let mut buf = match (parallel, meta.is_file()) {
        // Zeroed by the allocator, not written: each reading thread
        // faults in the pages of its own half.
        (true, _) => vec![0u8; len],
        (false, true) => Vec::with_capacity(len),
        (false, false) => Vec::new(),
    };
    if parallel {
        match halves(&file, &mut buf) {
            // Then whatever was appended after its size was read.
            Ok(()) => {
                file.seek(SeekFrom::Start(meta.len()))?;
            }
            // It shrank: read it as it is now.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                buf.clear();
                file.seek(SeekFrom::Start(0))?;
            }
            Err(e) => return Err(e),
        }
    }
    // The rest, to one byte past the limit and no further.
    read_to(&mut file, &mut buf, max.saturating_add(1))?;
    if buf.len() > max {
        return Ok(Err(buf.len()));
    }
    Ok(Ok(buf))
}

/// Appends what `from` gives to `buf` until it ends or `buf` holds `end`
/// bytes, growing `buf` by doubling but never past `end` (a plain
/// `read_to_end` would double a 4 GiB buffer to 8 GiB for its last byte).
fn read_to(from: &mut impl Read, buf: &mut Vec<u8>, end: usize) -> io::Result<()> {
    let mut chunk = vec![0u8; 1 << 16];
    while buf.len() < end {
        let want = (end - buf.len()).min(chunk.len());
        let n = match from.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.capacity() - buf.len() < n {
            buf.reserve_exact(buf.capacity().clamp(n, end - buf.len()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// Fills `buf` from the start of `file`, the second half on another thread
/// (or on this one, if none can be started).
fn halves(file: &File, buf: &mut [u8]) -> io::Result<()> {
    let half = buf.len() / 2;
    let (first, second) = buf.split_at_mut(half);
    let (read, helped) = std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("mx-read".into())
            .spawn_scoped(s, move || file.read_exact_at(second, half as u64));
        let read = file.read_exact_at(first, 0);
        match helper {
            Ok(h) => {
                let other = h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the reading thread panicked")));
                (read.and(other), true)
            }
            Err(_) => (read, false),
        }
    });
    read?;
    if !helped {
        file.read_exact_at(&mut buf[half..], half as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn a_large_file_reads_as_std_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            0,
            1,
            4095,
            PARALLEL_FROM as usize - 1,
            PARALLEL_FROM as usize,
            9_000_001,
        ] {
            let path = dir.path().join(format!("m{n}.mx"));
            std::fs::write(&path, bytes(n)).unwrap();
            let got = read_model(&path).unwrap().unwrap();
            assert_eq!(got, std::fs::read(&path).unwrap(), "{n} bytes");
        }
    }

    #[test]
    fn a_pipe_is_read_to_its_end() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "head -c 5000000 /dev/zero"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&out));
        let got = read_model(Path::new(&path)).unwrap().unwrap();
        child.wait().unwrap();
        assert_eq!(got.len(), 5_000_000);
    }

    #[test]
    fn a_stream_is_read_to_one_byte_past_the_limit_and_no_further() {
        // Without the bound this reads until memory runs out.
        assert_eq!(
            read_under(Path::new("/dev/zero"), 1 << 20).unwrap(),
            Err((1 << 20) + 1)
        );
        // A stream within the limit is read whole, one at the limit too.
        let got = read_under(Path::new("/dev/null"), 1 << 20).unwrap();
        assert_eq!(got, Ok(Vec::new()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.mx");
        std::fs::write(&path, bytes(1000)).unwrap();
        assert_eq!(read_under(&path, 1000).unwrap(), Ok(bytes(1000)));
        assert_eq!(read_under(&path, 999).unwrap(), Err(1000));
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_panic() {
        let err = read_model(Path::new("/nonexistent/model.mx")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_file_too_large_to_compile_is_not_read() {
        // Sparse: 5 GiB long, nothing on disk, and it would take seconds
        // and 5 GiB of memory to read.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.mx");
        let file = File::create(&path).unwrap();
        file.set_len(5 << 30).unwrap();
        assert_eq!(read_model(&path).unwrap(), Err(5 << 30));
        file.set_len(mx_compiler::MAX_SOURCE as u64 + 1).unwrap();
        assert_eq!(read_model(&path).unwrap(), Err(mx_compiler::MAX_SOURCE + 1));
    }
}
