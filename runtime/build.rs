//! Builds the XDP redirect program with clang. Without clang the runtime
//! still builds (compile, realize, materialize and dry runs need no BPF);
//! an XDP task then fails with a message saying how to get it, and this
//! script runs again on every build until clang is there, so installing it
//! is enough (no `cargo clean`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let obj = out.join("xdp_redirect.o");
    println!("cargo:rerun-if-changed=bpf/xdp_redirect.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rustc-check-cfg=cfg(mx_no_xdp)");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-I",
            &multiarch,
            "-c",
            "bpf/xdp_redirect.c",
            "-o",
        ])
        .arg(&obj)
        .status();
    match status {
        Ok(s) if s.success() => {
            // Again when clang changes (an upgrade may fix or change codegen).
            if let Some(path) = which(&clang) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        _ => {
            // A path that does not exist is always stale to cargo: this
            // script runs again on the next build, which finds clang once
            // it is installed instead of keeping a binary without XDP.
            println!(
                "cargo:rerun-if-changed={}",
                out.join("clang-was-missing").display()
            );
            println!(
                "cargo:warning=clang could not build bpf/xdp_redirect.c; XDP links will fail at run time (apt-get install clang)"
            );
            std::fs::write(&obj, b"").expect("write placeholder");
            println!("cargo:rustc-cfg=mx_no_xdp");
        }
    }
}

/// Where `bin` is found on PATH (or `bin` itself if it is a path).
fn which(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        return Some(PathBuf::from(bin));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}
