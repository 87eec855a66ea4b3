//! Pipeline fixture tests: every model under `fixtures/` is compiled and its
//! result checked and snapshotted.
//!
//! - `fixtures/ok/*.mx` must compile with no diagnostics at all; the XIR is
//!   snapshotted, must survive a JSON round trip and must be byte-identical
//!   when compiled twice.
//! - `fixtures/err/*.mx` start with a header:
//!
//!   ```text
//!   # expect: W0201, E0214
//!   # set: N=abc
//!   ```
//!
//!   `expect` lists every diagnostic code the model must produce, one entry
//!   per occurrence (compared as a multiset); `set` lines are `--set`
//!   overrides. The rendered human report is snapshotted. Err fixtures run
//!   with a small step budget (100,000) and memory budget (64 MiB) so
//!   runaway-loop fixtures finish fast.
//!
//! Paths handed to the compiler are relative to this crate
//! (`fixtures/err/E0201_x.mx`), so snapshots hold no machine-specific paths.
//! Accept changed snapshots with `cargo insta review`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mx_compiler::{Options, Output, compile};
use mx_diag::{Diagnostic, FileReport, HumanStyle, SourceFile, render_human};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Budgets for err fixtures: small, so E0212/E0213 fixtures fail fast.
const ERR_STEP_LIMIT: u64 = 100_000;
const ERR_MEMORY_LIMIT: u64 = 64 << 20;

/// The leading `# expect:` / `# set:` comment lines of a fixture.
#[derive(Debug, Default)]
struct Header {
    expect: Vec<String>,
    params: BTreeMap<String, String>,
}

/// Reads the header from the comment lines at the top of `text`.
fn header(text: &str) -> Header {
    let mut h = Header::default();
    for line in text.lines() {
        let line = line.trim();
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let comment = comment.trim();
        if let Some(codes) = comment.strip_prefix("expect:") {
            h.expect.extend(
                codes
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
        } else if let Some(set) = comment.strip_prefix("set:") {
            let (k, v) = set
                .trim()
                .split_once('=')
                .unwrap_or_else(|| panic!("`# set:` needs K=V, got {set:?}"));
            h.params.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    h
}

/// `path` relative to this crate, with `/` separators.
fn rel(path: &Path) -> String {
    let manifest = Path::new(MANIFEST_DIR);
    let canonical = manifest
        .canonicalize()
        .unwrap_or_else(|_| manifest.to_path_buf());
    let rel = path
        .strip_prefix(&canonical)
        .or_else(|_| path.strip_prefix(manifest))
        .unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The fixture's text, and the diagnostic for bytes that are not UTF-8.
fn read_model(path: &Path) -> (String, Option<Diagnostic>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    match mx_compiler::decode(bytes) {
        Ok(text) => (text, None),
        Err((text, d)) => (text, Some(d)),
    }
}

/// The human report, as `mxc check --color never` prints it at 80 columns.
fn render(path: &str, text: &str, diagnostics: &[Diagnostic]) -> String {
    let report = FileReport::new(SourceFile::new(path, text), diagnostics.to_vec());
    render_human(
        &report,
        HumanStyle {
            color: false,
            width: 80,
        },
    )
}

fn codes(out: &Output) -> Vec<&'static str> {
    out.diagnostics.iter().map(|d| d.code).collect()
}

/// Every label lies inside the file and on character boundaries, so every
/// renderer can slice the source with it.
fn labels_in_bounds(text: &str, out: &Output) -> Result<(), String> {
    for d in &out.diagnostics {
        for l in &d.labels {
            if l.start > l.end
                || l.end > text.len()
                || !text.is_char_boundary(l.start)
                || !text.is_char_boundary(l.end)
            {
                return Err(format!(
                    "{} label {}..{} is out of bounds (file is {} bytes)",
                    d.code,
                    l.start,
                    l.end,
                    text.len()
                ));
            }
        }
    }
    Ok(())
}

fn report_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} {what} failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn ok_fixtures() {
    let mut failures = Vec::new();
    insta::glob!("../fixtures/ok", "*.mx", |path| {
        let name = rel(path);
        let (text, _) = read_model(path);
        let h = header(&text);
        if !h.expect.is_empty() {
            failures.push(format!("{name}: ok fixtures must not have `# expect:`"));
        }
        let opts = Options {
            params: h.params,
            ..Options::default()
        };
        let out = compile(&name, &text, &opts);
        if !out.diagnostics.is_empty() {
            let msg = format!(
                "{name}: expected no diagnostics, got {:?}\n{}",
                codes(&out),
                render(&name, &text, &out.diagnostics)
            );
            eprintln!("{msg}");
            failures.push(msg);
            return;
        }
        if let Some(fac) = &out.facility {
            // A facility model: its XIR is the snapshot.
            let json = mx_xir::to_json_pretty(fac);
            match serde_json::from_str::<mx_xir::Facility>(&json) {
                Ok(back) if &back == fac => {}
                Ok(_) => {
                    failures.push(format!("{name}: facility XIR changes in a JSON round trip"))
                }
                Err(e) => failures.push(format!("{name}: facility XIR does not read back: {e}")),
            }
            insta::assert_snapshot!(json);
            return;
        }
        let Some(xir) = &out.xir else {
            failures.push(format!("{name}: no diagnostics but no XIR either"));
            return;
        };
        if xir.nodes.is_empty() || xir.links.is_empty() {
            failures.push(format!(
                "{name}: a fixture must build nodes and links ({} nodes, {} links)",
                xir.nodes.len(),
                xir.links.len()
            ));
        }
        let json = mx_xir::to_json_pretty(xir);
        match serde_json::from_str::<mx_xir::Experiment>(&json) {
            Ok(back) if &back == xir => {}
            Ok(_) => failures.push(format!("{name}: XIR changes in a JSON round trip")),
            Err(e) => failures.push(format!("{name}: XIR JSON does not read back: {e}")),
        }
        let again = compile(&name, &text, &opts);
        let again = again.xir.as_ref().map(mx_xir::to_json_pretty);
        if again.as_deref() != Some(json.as_str()) {
            failures.push(format!("{name}: compiling twice gives different XIR"));
        }
        insta::assert_snapshot!(json);
    });
    report_failures("ok fixtures", &failures);
}

#[test]
fn err_fixtures() {
    let mut failures = Vec::new();
    insta::glob!("../fixtures/err", "*.mx", |path| {
        let name = rel(path);
        let (text, undecodable) = read_model(path);
        let h = header(&text);
        if h.expect.is_empty() {
            failures.push(format!("{name}: missing `# expect: CODE, ...` header"));
            return;
        }
        for code in &h.expect {
            if mx_diag::codes::lookup(code).is_none_or(|c| c.code != code.as_str()) {
                failures.push(format!("{name}: `# expect:` names unknown code {code}"));
            }
        }
        let file_code = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.get(..5))
            .unwrap_or_default();
        if !h.expect.iter().any(|c| c == file_code) {
            failures.push(format!(
                "{name}: the file is named for {file_code} but does not expect it"
            ));
        }
        let opts = Options {
            params: h.params,
            step_limit: ERR_STEP_LIMIT,
            memory_limit: ERR_MEMORY_LIMIT,
        };
        let out = match undecodable {
            None => compile(&name, &text, &opts),
            Some(d) => mx_compiler::Output {
                xir: None,
                facility: None,
                diagnostics: vec![d],
                printed: Vec::new(),
                timings: Default::default(),
            },
        };
        let rendered = render(&name, &text, &out.diagnostics);

        let mut got = codes(&out);
        got.sort_unstable();
        let mut want: Vec<&str> = h.expect.iter().map(String::as_str).collect();
        want.sort_unstable();
        if got != want {
            let msg = format!("{name}: expected {want:?}, got {got:?}\n{rendered}");
            eprintln!("{msg}");
            failures.push(msg);
        }
        let has_error = out.diagnostics.iter().any(Diagnostic::is_error);
        if has_error && (out.xir.is_some() || out.facility.is_some()) {
            failures.push(format!("{name}: errors were reported but XIR was produced"));
        }
        if !has_error && out.xir.is_none() && out.facility.is_none() {
            failures.push(format!("{name}: only warnings, yet no XIR was produced"));
        }
        if let Err(e) = labels_in_bounds(&text, &out) {
            failures.push(format!("{name}: {e}"));
        }
        insta::assert_snapshot!(rendered);
    });
    report_failures("err fixtures", &failures);
}

/// Every registered code has at least one err fixture named after it.
#[test]
fn every_code_has_a_fixture() {
    let dir = Path::new(MANIFEST_DIR).join("fixtures/err");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures/err exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let missing: Vec<&str> = mx_diag::codes::CODES
        .iter()
        .map(|c| c.code)
        // Compile-phase codes; realize codes (E03xx) are tested in realize.rs.
        .filter(|code| {
            code.starts_with("E01") || code.starts_with("E02") || code.starts_with("W02")
        })
        // A model of 4 GiB cannot be a fixture; `mx_compiler`'s unit test
        // `a_source_over_the_limit_is_refused_before_it_is_lexed` covers it.
        .filter(|code| *code != "E0109")
        // Retired codes are never reported.
        .filter(|code| {
            mx_diag::codes::lookup(code).is_some_and(|c| !c.summary.starts_with("(retired)"))
        })
        .filter(|code| !names.iter().any(|n| n.starts_with(code)))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without an err fixture: {missing:?}"
    );
}

/// The real MergeTB models in `examples/mergexp` (copied unchanged).
#[test]
fn mergexp_models() {
    // (file, topology name, nodes, links)
    let good = [
        ("01_hello_world.py", "hello-world", 2, 1),
        ("04_concepts_dumbbell_constraints.py", "dumbbell", 6, 2),
        ("14_fledger_dht4x25x2_lans.py", "exp11", 104, 5),
        (
            "26_ctng_bipartite_clique_functions.py",
            "modified_topology",
            16,
            62,
        ),
    ];
    for (file, topo, nodes, links) in good {
        let name = format!("../examples/mergexp/{file}");
        let text = read(&Path::new(MANIFEST_DIR).join(&name));
        let out = compile(&name, &text, &Options::default());
        let rendered = render(&name, &text, &out.diagnostics);
        assert!(
            !out.diagnostics.iter().any(Diagnostic::is_error),
            "{name} must compile:\n{rendered}"
        );
        if file.starts_with("26_") {
            // The model gives an interface 10.0.0.0/16 (a network address)
            // and reuses addresses across links: warnings, not errors.
            assert!(
                out.diagnostics
                    .iter()
                    .all(|d| matches!(d.code, "W0204" | "W0206")),
                "{name}: unexpected diagnostics:\n{rendered}"
            );
        } else {
            assert!(
                out.diagnostics.is_empty(),
                "{name}: unexpected diagnostics:\n{rendered}"
            );
        }
        let xir = out.xir.as_ref().expect("XIR when there are no errors");
        assert_eq!(xir.name, topo, "{name}");
        assert_eq!(xir.nodes.len(), nodes, "{name}: node count");
        assert_eq!(xir.links.len(), links, "{name}: link count");
    }

    // The UMD model names `teshwan` before defining it: exactly one E0201,
    // pointing at line 4.
    let name = "../examples/mergexp/21_umd_xss_undefined_name.py";
    let text = read(&Path::new(MANIFEST_DIR).join(name));
    let out = compile(name, &text, &Options::default());
    let rendered = render(name, &text, &out.diagnostics);
    assert_eq!(codes(&out), ["E0201"], "{rendered}");
    assert!(out.xir.is_none());
    let diag = &out.diagnostics[0];
    let primary = diag.location().expect("E0201 has a location");
    let mentions = diag.message.contains("teshwan")
        || diag.labels.iter().any(|l| l.text.contains("teshwan"))
        || text.get(primary.start..primary.end) == Some("teshwan");
    assert!(
        mentions,
        "the diagnostic should name `teshwan`:\n{rendered}"
    );
    let (line, _) = SourceFile::new(name, text.as_str()).line_col(primary.start);
    assert_eq!(line, 4, "{rendered}");
    insta::assert_snapshot!("mergexp_21_undefined_name", rendered);
}

/// Every `.mx` file under `dir`, recursively, sorted.
fn mx_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "mx") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn compile_clean(name: &str, text: &str, params: &[(&str, &str)]) -> mx_xir::Experiment {
    let opts = Options {
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Options::default()
    };
    let out = compile(name, text, &opts);
    assert!(
        out.diagnostics.is_empty(),
        "{name} {params:?}: expected no diagnostics:\n{}",
        render(name, text, &out.diagnostics)
    );
    out.xir.expect("XIR without diagnostics")
}

/// Every example model compiles with no errors and no warnings.
#[test]
fn examples_compile() {
    let root = Path::new(MANIFEST_DIR).join("../examples");
    let files = mx_files(&root);
    assert!(files.len() >= 8, "examples missing: {files:?}");
    for path in &files {
        if path.starts_with(root.join("facilities")) {
            continue; // facility_examples_compile
        }
        let name = format!("../examples/{}", rel(path.strip_prefix(&root).unwrap()));
        let text = read(path);
        let xir = compile_clean(&name, &text, &[]);
        // Fidelity fixtures may be a lone VM (examples/fidelity/cpu.mx).
        let lone = path.starts_with(root.join("fidelity"));
        assert!(
            !xir.nodes.is_empty() && (lone || !xir.links.is_empty()),
            "{name}"
        );
    }

    let scale = read(&root.join("scale.mx"));
    let xir = compile_clean("../examples/scale.mx", &scale, &[]);
    assert_eq!((xir.nodes.len(), xir.links.len()), (100, 99));
    let xir = compile_clean("../examples/scale.mx", &scale, &[("N", "1000")]);
    assert_eq!((xir.nodes.len(), xir.links.len()), (1000, 999));

    let lan = read(&root.join("lan.mx"));
    let xir = compile_clean("../examples/lan.mx", &lan, &[("clients", "40")]);
    assert_eq!((xir.nodes.len(), xir.links.len()), (44, 1));
}

/// The example facilities compile cleanly and have the shape their comments promise.
#[test]
fn facility_examples_compile() {
    let root = Path::new(MANIFEST_DIR).join("../examples/facilities");
    let mut seen = 0;
    for (file, hosts, hypervisors, switches) in [
        ("lab.mx", 5, 3, 1),
        ("spine-leaf.mx", 96, 64, 10),
        ("local.mx", 2, 2, 1),
    ] {
        let text = read(&root.join(file));
        let name = format!("../examples/facilities/{file}");
        let out = compile(&name, &text, &Options::default());
        assert!(
            out.diagnostics.is_empty(),
            "{name}:\n{}",
            render(&name, &text, &out.diagnostics)
        );
        let fac = out.facility.expect("facility XIR");
        assert_eq!(fac.hosts.len(), hosts, "{name}");
        assert_eq!(
            fac.hosts
                .iter()
                .filter(|h| h.has_role(mx_xir::Role::Hypervisor))
                .count(),
            hypervisors,
            "{name}"
        );
        assert_eq!(fac.switches.len(), switches, "{name}");
        seen += 1;
    }
    assert_eq!(seen, 3);
}

/// The large end of `scale.mx`. Slow in debug builds, so opt in with
/// `cargo test -p mx-tests --release -- --ignored`.
#[test]
#[ignore = "slow in debug builds; run with --release -- --ignored"]
fn scale_100k() {
    let root = Path::new(MANIFEST_DIR).join("../examples");
    let scale = read(&root.join("scale.mx"));
    let xir = compile_clean("../examples/scale.mx", &scale, &[("N", "100000")]);
    assert_eq!((xir.nodes.len(), xir.links.len()), (100_000, 99_999));
}

#[test]
fn header_parsing() {
    let h = header("# expect: W0201, E0214\n# set: N=abc\n#set: M = 2\nx = 1\n# expect: E0101\n");
    assert_eq!(h.expect, ["W0201", "E0214"]);
    assert_eq!(h.params.get("N").map(String::as_str), Some("abc"));
    assert_eq!(h.params.get("M").map(String::as_str), Some("2"));
}
