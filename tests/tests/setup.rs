//! The README's set-up and CI install the same packages: both run
//! `scripts/setup`, which installs `scripts/packages.txt`. A package CI
//! installs and the README does not is one a fresh machine lacks (cmake and
//! clang for HiGHS once were).

use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn the_readme_and_ci_install_one_list() {
    let readme = read("README.md");
    let setup = readme
        .split("## Set-up")
        .nth(1)
        .and_then(|s| s.split("```sh").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("a ```sh block under ## Set-up");
    let commands: Vec<&str> = setup
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "two set-up commands: {commands:?}");
    assert!(
        commands[0].starts_with("scripts/setup && "),
        "the first command installs the packages: {}",
        commands[0]
    );
    assert_eq!(commands[1], "cargo test --workspace");
    let ci = read(".ci/run");
    assert!(
        ci.contains("\nscripts/setup\n"),
        ".ci/run runs scripts/setup"
    );
    assert!(
        !ci.contains("apt-get install"),
        ".ci/run installs packages only through scripts/setup"
    );
    assert!(ci.contains("cargo test --workspace"));
}

#[test]
fn the_list_has_what_the_build_needs() {
    let list = read("scripts/packages.txt");
    let packages: Vec<&str> = list
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    // HiGHS: cmake and a C++ compiler, and libclang for its bindings; the
    // XDP program: clang; guests: QEMU and the image's parts.
    for p in [
        "build-essential",
        "cmake",
        "clang",
        "qemu-system-x86",
        "qemu-utils",
        "busybox-static",
        "linux-image-amd64",
    ] {
        assert!(packages.contains(&p), "{p} is not in scripts/packages.txt");
    }
    let script = read("scripts/setup");
    assert!(script.contains("packages.txt") && script.contains("apt-get update"));
}
