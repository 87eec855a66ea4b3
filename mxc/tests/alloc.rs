//! The allocation table through the real binary: atomic commits, racing
//! processes, relinquish, dry runs, and foreign files left untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MXC: &str = env!("CARGO_BIN_EXE_mxc");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        // Random and private (0700), never a predictable path in /tmp.
        let d = tempfile::Builder::new()
            .prefix(&format!("mx-alloc-{name}-"))
            .tempdir()
            .expect("temp dir")
            .keep();
        Dir(d)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mxc(args: &[&str]) -> Output {
    Command::new(MXC)
        .args(args)
        .arg("--color=never")
        .output()
        .expect("run mxc")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn local() -> String {
    Path::new(ROOT)
        .join("examples/facilities/local.mx")
        .display()
        .to_string()
}

/// A 4-core and a 2-core node: the local facility (two 4-core hypervisors) fits one copy.
const TWO_CORES: &str = "n = topo.device('n', cores == 4, memory == gb(2))\nm = topo.device('m', cores == 2, memory == gb(1))\ntopo.connect([n, m])\n";

#[test]
fn racing_realizations_never_over_commit() {
    let dir = Dir::new("race");
    race(&dir, &dir.path("alloc.db").display().to_string());
}

/// The same race through a shared table on etcd: processes that each read
/// the usage, realize and commit with a compare-and-swap.
#[test]
fn racing_realizations_never_over_commit_on_etcd() {
    let dir = Dir::new("race-etcd");
    let etcd =
        mx_store::testkit::Etcd::start(&dir.0).expect("etcd starts (apt-get install etcd-server)");
    race(&dir, &etcd.url.to_string());
}

/// Six `mxc realize` processes race for room for two 4-core VMs on the
/// local facility (two 4-core hypervisors) in table `db`.
fn race(dir: &Dir, db: &str) {
    let model = dir.path("two.mx");
    std::fs::write(
        &model,
        "n = topo.device('n', cores == 4, memory == gb(2))\n",
    )
    .expect("write model");
    let (model, fac) = (model.display().to_string(), local());
    let children: Vec<_> = (0..6)
        .map(|i| {
            Command::new(MXC)
                .args([
                    "realize",
                    &model,
                    "--facility",
                    &fac,
                    "--db",
                    db,
                    "--name",
                    &format!("r{i}"),
                    "--color=never",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn mxc")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let ok = outs.iter().filter(|o| o.status.code() == Some(0)).count();
    let full = outs
        .iter()
        .filter(|o| o.status.code() == Some(1) && text(o).contains("E0301"))
        .count();
    assert_eq!(
        (ok, full),
        (2, 4),
        "{}",
        outs.iter().map(text).collect::<Vec<_>>().join("\n---\n")
    );
    let show = mxc(&["alloc", "show", "--db", db]);
    let listing = String::from_utf8_lossy(&show.stdout).to_string();
    // Each hypervisor holds exactly one 4-core VM.
    assert_eq!(listing.matches(" ns0 ").count(), 1, "{listing}");
    assert_eq!(listing.matches(" ns1 ").count(), 1, "{listing}");
    // Relinquishing one makes room for exactly one more.
    let winner = (0..6)
        .find(|i| listing.contains(&format!("r{i} ")))
        .expect("a winner is listed");
    let free = mxc(&["relinquish", &format!("r{winner}"), "--db", db]);
    assert!(free.status.success(), "{}", text(&free));
    let again = |name: &str| {
        mxc(&[
            "realize",
            &model,
            "--facility",
            &fac,
            "--db",
            db,
            "--name",
            name,
        ])
    };
    assert!(again("late").status.success());
    assert_eq!(again("later").status.code(), Some(1));
}

#[test]
fn relinquish_frees_and_dry_run_allocates_nothing() {
    let dir = Dir::new("relinquish");
    let model = dir.path("m.mx");
    std::fs::write(&model, TWO_CORES).expect("write model");
    let db = dir.path("alloc.db");
    let (model, db, fac) = (
        model.display().to_string(),
        db.display().to_string(),
        local(),
    );

    let dry = mxc(&[
        "realize",
        &model,
        "--facility",
        &fac,
        "--db",
        &db,
        "--dry-run",
    ]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        !Path::new(&db).exists(),
        "a dry run must not create the table"
    );

    let first = mxc(&[
        "realize",
        &model,
        "--facility",
        &fac,
        "--db",
        &db,
        "--name",
        "one",
    ]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let again = mxc(&[
        "realize",
        &model,
        "--facility",
        &fac,
        "--db",
        &db,
        "--name",
        "one",
    ]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already holds allocations"));

    // The facility is now 6 of 8 cores full: a second copy does not fit, and says so.
    let second = mxc(&[
        "realize",
        &model,
        "--facility",
        &fac,
        "--db",
        &db,
        "--name",
        "two",
    ]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(text(&second).contains("E0301"));

    let rel = mxc(&["relinquish", "one", "--db", &db]);
    assert_eq!(rel.status.code(), Some(0), "{}", text(&rel));
    let third = mxc(&[
        "realize",
        &model,
        "--facility",
        &fac,
        "--db",
        &db,
        "--name",
        "two",
    ]);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    let missing = mxc(&["relinquish", "one", "--db", &db]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
}

#[test]
fn foreign_files_are_reported_and_untouched() {
    let dir = Dir::new("foreign");
    let model = Path::new(ROOT)
        .join("examples/hello.mx")
        .display()
        .to_string();
    let junk = dir.path("junk.db");
    std::fs::write(&junk, "this is not a database\n").expect("write");
    let out = mxc(&["realize", &model, "--db", &junk.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is not an mx allocation table"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&junk).expect("read"),
        "this is not a database\n"
    );
}

/// Room taken by an earlier experiment: the binary names the nodes that
/// cannot fit together (E0306, exit 1), allocates nothing, and the same
/// model fits once the earlier experiment is relinquished.
#[test]
fn a_capacity_conflict_names_the_nodes_and_allocates_nothing() {
    let dir = Dir::new("conflict");
    let db = dir.path("alloc.db").display().to_string();
    let first = dir.path("first.mx");
    std::fs::write(&first, TWO_CORES).expect("write");
    let out = mxc(&[
        "realize",
        &first.display().to_string(),
        "--facility",
        &local(),
        "--db",
        &db,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let second = dir.path("second.mx");
    std::fs::write(
        &second,
        "a = topo.device('a', virt == true, cores == 2, memory == gb(1))\nb = topo.device('b', virt == true, cores == 2, memory == gb(1))\ntopo.connect([a, b])\n",
    )
    .expect("write");
    let args = [
        "realize",
        &second.display().to_string(),
        "--facility",
        &local(),
        "--db",
        &db,
    ];
    let out = mxc(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("E0306") && t.contains("2 nodes cannot be placed together: `a`, `b`"),
        "{t}"
    );
    assert!(t.contains("mxc alloc show"), "{t}");
    // The error points into the facility too: the host they could use,
    // with what it has free, drawn from the facility file.
    let fac = local();
    assert!(t.contains(&format!("in {fac}")), "{t}");
    assert!(
        t.contains("fac.host("),
        "the facility's source line is shown: {t}"
    );
    assert!(t.contains("cores and"), "{t}");
    let show = mxc(&["alloc", "show", "--db", &db]);
    assert!(!text(&show).contains("second"), "{}", text(&show));
    let out = mxc(&["relinquish", "first", "--db", &db]);
    assert!(out.status.success(), "{}", text(&out));
    let out = mxc(&args);
    assert!(out.status.success(), "{}", text(&out));
}
