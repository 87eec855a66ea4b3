//! End to end: an experiment people can use. `examples/lans.py` (MergeTB's
//! spelling, two LANs joined by a router, no addresses written,
//! `addressing == ipv4`, `routing == static`, one Debian 12 node) comes up;
//! a node pings a node on the other LAN by name through the router; `exec`
//! returns the command's status; `cp` copies a file out and back;
//! `console` and `ssh` reach the guests over the management path; the
//! Debian node says it is Debian 12; `down` leaves nothing.
//!
//! Needs root and QEMU (see `common::can_run`) and the `bookworm` image,
//! which it builds from the Debian mirror when it is not installed (a
//! minute or two, once).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

mod common;
use common::{Env, can_run, ok, probe, root, text};

static SERIAL: Mutex<()> = Mutex::new(());

fn bookworm() {
    let out = Command::new(env!("CARGO_BIN_EXE_mxc"))
        .args(["image", "list"])
        .output()
        .unwrap();
    if text(&out.stdout).contains("\n  bookworm ") {
        return;
    }
    eprintln!("building the bookworm image (once)");
    let build = Command::new(env!("CARGO_BIN_EXE_mxc"))
        .args(["image", "--build", "bookworm"])
        .current_dir(root())
        .output()
        .unwrap();
    ok(&build);
}

#[test]
fn a_routed_experiment_is_usable_from_up_to_down() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_run() {
        return;
    }
    bookworm();
    let env = Env::new("lans");
    let up = env.mxc(&["up", "examples/lans.py"]);
    ok(&up);
    let vm_dir = env.dir.join("run/lans/vm/b1");
    assert!(
        vm_dir.join("disk.qcow2").exists(),
        "b1 boots from an overlay"
    );

    // By name, through the router, both ways, busybox and Debian guests.
    let ping = env.mxc(&["exec", "lans", "a1", "--", "sh", "-c", &probe("b1")]);
    assert!(
        ok(&ping).contains("1 packets received"),
        "{}",
        text(&ping.stdout)
    );
    let ping = env.mxc(&["exec", "lans", "b1", "--", "sh", "-c", &probe("a2")]);
    assert!(ok(&ping).contains("1 received"), "{}", text(&ping.stdout));
    let route = env.mxc(&["exec", "lans", "a1", "--", "ip", "route"]);
    assert!(ok(&route).contains(" via "), "{}", text(&route.stdout));

    // exec: the command's status, stdout and stderr as they are; stdin
    // from a pipe.
    let st = env.mxc(&[
        "exec",
        "lans",
        "b1",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(st.status.code(), Some(7));
    assert_eq!(text(&st.stdout), "out\n");
    assert_eq!(text(&st.stderr), "err\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mxc"))
        .args(["exec", "lans", "a2", "--", "wc", "-c"])
        .env("MX_STATE_DIR", env.dir.join("run"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&[b'x'; 5000])
        .unwrap();
    let wc = child.wait_with_output().unwrap();
    assert_eq!(ok(&wc).trim(), "5000");

    // Words reach the program as they are (quotes, backslashes, spaces),
    // in root's home, on both kinds of guest; a missing program is 127.
    for node in ["a1", "b1"] {
        let words = env.mxc(&[
            "exec",
            "lans",
            node,
            "--",
            "printf",
            "%s|",
            "a b",
            "it's",
            "\"q\"",
            "back\\slash",
        ]);
        assert_eq!(ok(&words), "a b|it's|\"q\"|back\\slash|", "{node}");
        assert_eq!(
            ok(&env.mxc(&["exec", "lans", node, "--", "pwd"])).trim(),
            "/root"
        );
        let missing = env.mxc(&["exec", "lans", node, "--", "no-such-program"]);
        assert_eq!(missing.status.code(), Some(127), "{node}");
    }

    // The Debian node's root filesystem grows to its overlay's size (the
    // realizer's default 10 GiB slice; the base is 2 GiB), in the
    // background after boot.
    let mut size_kib = 0u64;
    for _ in 0..60 {
        let df = env.mxc(&["exec", "lans", "b1", "--", "df", "-k", "--output=size", "/"]);
        size_kib = ok(&df)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        if size_kib > 8 << 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert!(size_kib > 8 << 20, "b1's root is {size_kib} KiB");

    // The Debian node is Debian 12.
    let os = env.mxc(&["exec", "lans", "b1", "--", "cat", "/etc/os-release"]);
    assert!(
        ok(&os).contains("VERSION_ID=\"12\""),
        "{}",
        text(&os.stdout)
    );

    // cp: out and back, through both kinds of guest, byte for byte (more
    // than one chunk, every byte value).
    let data: Vec<u8> = (0..(2 << 20) + 12345)
        .map(|i: u32| (i * 7 % 256) as u8)
        .collect();
    let local = env.dir.join("data.bin");
    std::fs::write(&local, &data).unwrap();
    for node in ["b1", "a1"] {
        let to = format!("{node}:/root/");
        ok(&env.mxc(&["cp", "lans", local.to_str().unwrap(), &to]));
        let back = env.dir.join(format!("back-{node}.bin"));
        let from = format!("{node}:/root/data.bin");
        ok(&env.mxc(&["cp", "lans", &from, back.to_str().unwrap()]));
        assert!(
            std::fs::read(&back).unwrap() == data,
            "{node}: the copy differs"
        );
    }
    let missing = env.mxc(&["cp", "lans", "b1:/nonexistent", env.dir.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("no such file"),
        "{}",
        text(&missing.stderr)
    );

    // The console, from a pipe: a command and its answer; the VM stays up.
    let mut console = Command::new(env!("CARGO_BIN_EXE_mxc"))
        .args(["console", "lans", "a2"])
        .env("MX_STATE_DIR", env.dir.join("run"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    console
        .stdin
        .take()
        .unwrap()
        .write_all(b"\necho console-$((6 * 7))\n")
        .unwrap();
    let out = console.wait_with_output().unwrap();
    assert!(ok(&out).contains("console-42"), "{}", text(&out.stdout));
    ok(&env.mxc(&["exec", "lans", "a2", "--", "true"]));

    // ssh over the management path, with the experiment's key.
    let ssh = env.mxc(&["ssh", "lans", "b1", "--", "cat", "/etc/hostname"]);
    assert_eq!(ok(&ssh).trim(), "b1");
    let no_sshd = env.mxc(&["ssh", "lans", "a1"]);
    assert_eq!(no_sshd.status.code(), Some(1));
    assert!(
        text(&no_sshd.stderr).contains("runs no sshd"),
        "{}",
        text(&no_sshd.stderr)
    );

    // Bad input: an unknown node, an experiment that is not up.
    let unknown = env.mxc(&["exec", "lans", "zz", "--", "true"]);
    assert_eq!(unknown.status.code(), Some(255));
    assert!(
        text(&unknown.stderr).contains("has no node `zz`")
            && text(&unknown.stderr).contains("a1, a2, b1, b2, r"),
        "{}",
        text(&unknown.stderr)
    );
    let not_up = env.mxc(&["cp", "nope", "x", "a1:/tmp/"]);
    assert!(
        text(&not_up.stderr).contains("not up"),
        "{}",
        text(&not_up.stderr)
    );

    ok(&env.mxc(&["down", "lans"]));
    env.assert_clean("lans");
    assert!(!vm_dir.exists(), "the overlay is left");
}
