//! What the end-to-end tests (up.rs, fidelity.rs) share.

use std::process::Command;

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
