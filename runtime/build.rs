//! Builds the XDP redirect program with clang. Without clang the runtime
//! still builds (compile, realize, materialize and dry runs need no BPF);
//! an XDP task then fails with a message saying how to get it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let obj = out.join("xdp_redirect.o");
    println!("cargo:rerun-if-changed=bpf/xdp_redirect.c");
    println!("cargo:rustc-check-cfg=cfg(mx_no_xdp)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(std::env::var("CLANG").unwrap_or_else(|_| "clang".into()))
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
        Ok(s) if s.success() => {}
        _ => {
            println!(
                "cargo:warning=clang could not build bpf/xdp_redirect.c; XDP links will fail at run time (apt-get install clang)"
            );
            std::fs::write(&obj, b"").expect("write placeholder");
            println!("cargo:rustc-cfg=mx_no_xdp");
        }
    }
}
