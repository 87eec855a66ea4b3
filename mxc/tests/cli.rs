//! Tests of the real `mxc` binary: exit code, stdout and stderr, exactly as a
//! user or CI script sees them.
//!
//! Each test writes its models into its own temporary folder and runs `mxc`
//! there with relative paths, `--color never` and `COLUMNS=80`, so output
//! does not depend on the machine. Accept changed snapshots with
//! `cargo insta review`.

use std::path::{Path, PathBuf};
use std::process::Command;

const VALID: &str =
    "x = topo.device('x', cores == 4)\ny = topo.device('y')\ntopo.connect([x, y])\n";
/// E0201: `b` is not defined.
const UNDEFINED: &str = "net = Network('n')\na = net.node(b)\n";
/// W0203 and no error: `c` has no links.
const UNCONNECTED: &str = "net = Network('n')\na = net.node('a')\nb = net.node('b')\nc = net.node('c')\nnet.connect([a, b])\n";

/// A fresh folder under the system temp dir, removed again on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        // Random and private (0700), never a predictable path in /tmp.
        let dir = tempfile::Builder::new()
            .prefix(&format!("mxc-cli-{test}-"))
            .tempdir()
            .expect("create temp dir")
            .keep();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.0.join(name), text).expect("write model");
        self
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one `mxc` run did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Exit code and both streams, with the temp dir and version masked.
    fn snapshot(&self, dir: &TempDir) -> String {
        let mask = |s: &str| {
            s.replace(&dir.path().display().to_string(), "[TMP]")
                .replace(env!("CARGO_PKG_VERSION"), "[VERSION]")
        };
        format!(
            "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code,
            mask(&self.stdout),
            mask(&self.stderr)
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).expect("stdout is JSON")
    }
}

fn mxc(dir: &TempDir, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_mxc"))
        .args(["--color", "never"])
        .args(args)
        .current_dir(dir.path())
        .env("COLUMNS", "80")
        .env_remove("NO_COLOR")
        .output()
        .expect("run mxc");
    Run {
        code: out.status.code().expect("mxc exited normally"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn sarif_validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../diag/tests/data/sarif-schema-2.1.0.json"
    );
    let text = std::fs::read_to_string(path).expect("vendored SARIF schema");
    let schema = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the SARIF schema compiles")
}

#[test]
fn compile_writes_xir_to_stdout() {
    let dir = TempDir::new("compile_stdout");
    dir.write("ok.mx", VALID);
    let run = mxc(&dir, &["compile", "ok.mx"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    let xir = run.json();
    assert_eq!(xir["nodes"].as_array().map(Vec::len), Some(2), "{xir}");
    assert!(run.stdout.ends_with("}\n"));
}

#[test]
fn compile_to_file_is_deterministic() {
    let dir = TempDir::new("compile_file");
    dir.write("ok.mx", VALID);
    for out in ["a.json", "b.json"] {
        let run = mxc(&dir, &["compile", "ok.mx", "-o", out]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    }
    let a = std::fs::read(dir.path().join("a.json")).unwrap();
    let b = std::fs::read(dir.path().join("b.json")).unwrap();
    assert_eq!(a, b, "two compilations differ");
    // The file holds exactly what stdout would have shown.
    assert_eq!(a, mxc(&dir, &["compile", "ok.mx"]).stdout.into_bytes());
}

#[test]
fn compile_error_writes_no_xir() {
    let dir = TempDir::new("compile_error");
    dir.write("err.mx", UNDEFINED);
    let run = mxc(&dir, &["compile", "err.mx", "-o", "out.json"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("mx::E0201"), "{}", run.stderr);
    assert!(!dir.path().join("out.json").exists());
}

#[test]
fn check_reports_error() {
    let dir = TempDir::new("check_error");
    dir.write("err.mx", UNDEFINED);
    insta::assert_snapshot!(mxc(&dir, &["check", "err.mx"]).snapshot(&dir));
}

#[test]
fn check_clean_models() {
    let dir = TempDir::new("check_clean");
    dir.write("a.mx", VALID).write("b.mx", VALID);
    insta::assert_snapshot!(mxc(&dir, &["check", "a.mx", "b.mx"]).snapshot(&dir));
}

#[test]
fn check_many_models_one_failing() {
    let dir = TempDir::new("check_many");
    dir.write("ok.mx", VALID).write("err.mx", UNDEFINED);
    let run = mxc(&dir, &["check", "ok.mx", "err.mx"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .ends_with("error: 1 of 2 models failed the check\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn check_format_json() {
    let dir = TempDir::new("check_json");
    dir.write("ok.mx", VALID).write("err.mx", UNDEFINED);
    let run = mxc(&dir, &["check", "--format", "json", "ok.mx", "err.mx"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, "");
    let doc = run.json();
    assert_eq!(doc["version"], 1);
    let diags = doc["diagnostics"].as_array().unwrap();
    assert!(!diags.is_empty());
    for diag in diags {
        assert_eq!(diag["file"], "err.mx");
    }
    let first = &diags[0];
    assert_eq!(first["code"], "E0201");
    assert_eq!(first["name"], "undefined-name");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["labels"][0]["start_line"], 2);
}

#[test]
fn check_format_sarif() {
    let dir = TempDir::new("check_sarif");
    dir.write("ok.mx", VALID)
        .write("err.mx", UNDEFINED)
        .write("warn.mx", UNCONNECTED);
    let run = mxc(
        &dir,
        &["check", "--format", "sarif", "ok.mx", "err.mx", "warn.mx"],
    );
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, "");
    let log = run.json();
    let errors: Vec<String> = sarif_validator()
        .iter_errors(&log)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "invalid SARIF:\n{}", errors.join("\n"));

    let run0 = &log["runs"][0];
    assert_eq!(run0["tool"]["driver"]["version"], env!("CARGO_PKG_VERSION"));
    let uris: Vec<&str> = run0["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["location"]["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["ok.mx", "err.mx", "warn.mx"]);
    let results = run0["results"].as_array().unwrap();
    let rule_ids: Vec<&str> = results
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert!(rule_ids.contains(&"E0201"), "{rule_ids:?}");
    assert!(rule_ids.contains(&"W0203"), "{rule_ids:?}");
}

#[test]
fn warnings_pass_unless_denied() {
    let dir = TempDir::new("deny_warnings");
    dir.write("warn.mx", UNCONNECTED);
    let allowed = mxc(&dir, &["check", "warn.mx"]);
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    insta::assert_snapshot!("warnings_allowed", allowed.snapshot(&dir));
    let denied = mxc(&dir, &["check", "--deny-warnings", "warn.mx"]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    insta::assert_snapshot!("warnings_denied", denied.snapshot(&dir));
}

#[test]
fn compile_with_denied_warnings_writes_nothing() {
    let dir = TempDir::new("compile_deny");
    dir.write("warn.mx", UNCONNECTED);
    let run = mxc(&dir, &["compile", "--deny-warnings", "warn.mx"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .ends_with("error: warnings are denied; no XIR written\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn explain_known_code() {
    let dir = TempDir::new("explain_known");
    insta::assert_snapshot!(mxc(&dir, &["explain", "E0201"]).snapshot(&dir));
    // Case, a `mx::` prefix and the name all find the same page.
    let page = mxc(&dir, &["explain", "E0201"]).stdout;
    assert_eq!(mxc(&dir, &["explain", "mx::e0201"]).stdout, page);
    assert_eq!(mxc(&dir, &["explain", "undefined-name"]).stdout, page);
}

#[test]
fn explain_unknown_code() {
    let dir = TempDir::new("explain_unknown");
    insta::assert_snapshot!(mxc(&dir, &["explain", "E9999"]).snapshot(&dir));
}

#[test]
fn explain_list() {
    let dir = TempDir::new("explain_list");
    let run = mxc(&dir, &["explain", "--list"]);
    assert_eq!(run.code, 0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), mx_diag::codes::CODES.len());
    for (line, info) in lines.iter().zip(mx_diag::codes::CODES) {
        assert!(line.starts_with(info.code), "{line}");
        assert!(line.ends_with(info.summary), "{line}");
    }
}

#[test]
fn missing_model_is_a_tool_error() {
    let dir = TempDir::new("missing");
    insta::assert_snapshot!(mxc(&dir, &["check", "nope.mx"]).snapshot(&dir));
    let run = mxc(&dir, &["compile", "nope.mx"]);
    assert_eq!(run.code, 2);
}

#[test]
fn set_without_equals_is_a_usage_error() {
    let dir = TempDir::new("bad_set");
    dir.write("ok.mx", VALID);
    insta::assert_snapshot!(mxc(&dir, &["compile", "ok.mx", "--set", "nodes"]).snapshot(&dir));
}

#[test]
fn color_always_colors_and_never_does_not() {
    let dir = TempDir::new("color");
    dir.write("err.mx", UNDEFINED);
    // `--color` is global; the later one wins over the helper's `never`.
    let colored = mxc(&dir, &["check", "err.mx", "--color", "always"]);
    assert!(colored.stderr.contains('\x1b'), "{}", colored.stderr);
    let plain = mxc(&dir, &["check", "err.mx"]);
    assert!(!plain.stderr.contains('\x1b'), "{}", plain.stderr);
}

#[test]
fn output_files_take_the_document_and_leave_stdout_quiet() {
    let dir = TempDir::new("output_quiet");
    dir.write("ok.mx", VALID);
    for format in ["json", "text"] {
        let run = mxc(
            &dir,
            &[
                "realize",
                "ok.mx",
                "--dry-run",
                "--format",
                format,
                "-o",
                "r.json",
            ],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            run.stdout, "",
            "realize -o --format {format} wrote to stdout"
        );
        assert!(
            run.stderr.contains("wrote realization `ok`"),
            "{}",
            run.stderr
        );
        let real: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
        assert_eq!(real["kind"], "realization");
    }
    let run = mxc(&dir, &["materialize", "r.json", "-o", "bundles"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let run = mxc(&dir, &["compile", "ok.mx", "-o", "x.json"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
}

/// `-o` replaces a file whole: an old one keeps its mode, a link is
/// followed and stays, nothing is left beside it, and a write that cannot
/// finish (here to a full device) is an error.
#[test]
fn output_files_are_replaced_whole() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("output_whole");
    dir.write("ok.mx", VALID);
    let x = dir.path().join("x.json");
    std::fs::write(&x, "old, and longer than nothing").unwrap();
    std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("x.json", dir.path().join("link.json")).unwrap();
    for args in [
        &["compile", "ok.mx", "-o", "x.json"][..],
        &["realize", "ok.mx", "--dry-run", "-o", "link.json"][..],
    ] {
        let run = mxc(&dir, args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&x).unwrap()).expect("a whole document");
        assert!(doc["kind"].is_string());
        let mode = std::fs::metadata(&x).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
    let link = std::fs::symlink_metadata(dir.path().join("link.json")).unwrap();
    assert!(link.file_type().is_symlink());
    let parts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".mx-part"))
        .collect();
    assert!(parts.is_empty(), "{parts:?}");
    if std::path::Path::new("/dev/full").exists() {
        let run = mxc(&dir, &["compile", "ok.mx", "-o", "/dev/full"]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("cannot write /dev/full"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn undecodable_source_is_a_model_error_at_the_byte() {
    let dir = TempDir::new("not_utf8");
    std::fs::write(
        dir.path().join("latin1.mx"),
        b"net = Network('caf\xe9')\na = net.node('a')\n",
    )
    .unwrap();
    insta::assert_snapshot!(mxc(&dir, &["check", "latin1.mx"]).snapshot(&dir));
    refused_as_model_and_facility(&dir, "latin1.mx", "E0108");
}

/// `file` fails to compile with `code` (exit 1, no XIR written), and as
/// the facility of a realize: a facility is read the same way.
fn refused_as_model_and_facility(dir: &TempDir, file: &str, code: &str) {
    let run = mxc(dir, &["compile", file]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    dir.write("ok.mx", VALID);
    let run = mxc(dir, &["realize", "ok.mx", "--dry-run", "--facility", file]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(code), "{}", run.stderr);
}

/// A model of 4 GiB or more is refused from its size (E0109), before it
/// is read: the file here is sparse, and reading it would take 5 GiB.
#[test]
fn a_model_too_large_to_compile_is_refused_unread() {
    let dir = TempDir::new("too_large");
    let file = std::fs::File::create(dir.path().join("huge.mx")).unwrap();
    file.set_len(5 << 30).unwrap();
    insta::assert_snapshot!(mxc(&dir, &["check", "huge.mx"]).snapshot(&dir));
    refused_as_model_and_facility(&dir, "huge.mx", "E0109");
}

#[test]
fn experiment_names_are_never_paths() {
    let dir = TempDir::new("names_not_paths");
    for args in [
        &["down", "../x"][..],
        &["down", "/etc"],
        &["status", ".."],
        &["up", "ok.mx", "--name", "../../tmp/x", "--dry-run"],
        &["realize", "ok.mx", "--name", "a/b", "--dry-run"],
    ] {
        let run = mxc(&dir, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("is not a valid name"), "{}", run.stderr);
    }
}

#[test]
fn materialize_refuses_a_realization_naming_a_path_as_host() {
    let dir = TempDir::new("materialize_path_host");
    dir.write("ok.mx", VALID);
    let run = mxc(&dir, &["realize", "ok.mx", "--dry-run", "-o", "r.json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(dir.path().join("r.json")).unwrap();
    let first_host = serde_json::from_str::<serde_json::Value>(&text).unwrap()["hosts"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        dir.path().join("bad.json"),
        text.replace(&format!("\"{first_host}\""), "\"..\""),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let run = mxc(&dir, &["materialize", "bad.json", "-o", "out/bundles"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("not a realization"), "{}", run.stderr);
    assert!(dir.path().join("ok.mx").exists());
    assert!(!dir.path().join("out/bundles").exists());
}

/// The seed's central example (a virtio NIC and a ConnectX-4-or-newer on
/// one link) plans through to the runtime on the lab and the spine-leaf
/// facility: a hypervisor VTEP for the tap, the leaf's VLAN mapped to the
/// same VNI for the VF.
#[test]
fn the_seed_nic_example_plans_on_real_facilities() {
    let dir = TempDir::new("seed_nics");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for fac in ["lab", "spine-leaf"] {
        let run = mxc(
            &dir,
            &[
                "up",
                root.join("examples/seed/nics.mx").to_str().unwrap(),
                "--facility",
                root.join(format!("examples/facilities/{fac}.mx"))
                    .to_str()
                    .unwrap(),
                "--dry-run",
            ],
        );
        assert_eq!(run.code, 0, "{fac}: {}", run.stderr);
        assert!(run.stdout.contains("type vxlan id 10000"), "{}", run.stdout);
        // The leaf's driver: the VF's port a tagged member of the VLAN,
        // the VNI's VXLAN device its untagged PVID.
        assert!(
            run.stdout
                .contains("bridge vlan add dev vx10000 vid 100 pvid untagged"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("bridge vlan add dev swp"),
            "{}",
            run.stdout
        );
    }
}
