//! What the end-to-end tests (up.rs, fidelity.rs) share.

use std::path::PathBuf;
use std::process::Command;

/// A fresh directory with a random name, private to root (0700): tests run
/// as root, so a predictable path in /tmp would let another user plant a
/// symlink or files there first. The caller removes it.
pub fn private_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a private directory")
        .keep()
}

/// Whether this machine can run VMs (root and QEMU). When it cannot, the
/// caller skips, unless `MX_REQUIRE_E2E` (set by `.ci/run`) makes that a
/// failure.
pub fn can_run() -> bool {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if is_root && qemu {
        return true;
    }
    let why = if is_root {
        "qemu-system-x86_64 is not installed"
    } else {
        "not root"
    };
    assert!(
        std::env::var_os("MX_REQUIRE_E2E").is_none(),
        "MX_REQUIRE_E2E is set but {why}"
    );
    eprintln!("skipped: {why}");
    false
}
