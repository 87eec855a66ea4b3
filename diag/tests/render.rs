//! Renderer tests on hand-made diagnostics, so they pin the output formats
//! without depending on what the compiler reports.

use mx_diag::code;
use mx_diag::codes::CODES;
use mx_diag::{
    Diagnostic, FileReport, HumanStyle, SourceFile, render_human, render_json, render_sarif,
};
use serde_json::Value;

/// Line 4 has a two-byte character, so character columns and byte offsets
/// differ there.
const MODEL: &str = "net = Network('lab')\na = net.node(b)\nc = net.node('c')\nd = net.node('é')\n";

const PLAIN: HumanStyle = HumanStyle {
    color: false,
    width: 80,
};

fn at(needle: &str) -> std::ops::Range<usize> {
    let start = MODEL.find(needle).expect("needle is in MODEL");
    start..start + needle.len()
}

/// An error with help and a warning with a secondary label, in one file.
fn report_at(path: &str) -> FileReport {
    let b = at("(b)");
    FileReport::new(
        SourceFile::new(path, MODEL),
        vec![
            Diagnostic::error(code::E0201, "undefined name `b`")
                .primary(b.start + 1..b.end - 1, "not defined")
                .help("quote it to make a name: `net.node('b')`"),
            Diagnostic::warning(code::W0203, "node `é` has no links")
                .primary(at("'é'"), "this node")
                .secondary(at("Network('lab')"), "in this network"),
        ],
    )
}

fn report() -> FileReport {
    report_at("examples/lab.mx")
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("renderer output is JSON")
}

fn sarif_validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sarif-schema-2.1.0.json"
    );
    let schema = parse(&std::fs::read_to_string(path).expect("vendored SARIF schema"));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the SARIF schema compiles")
}

#[track_caller]
fn assert_valid_sarif(log: &str) {
    let validator = sarif_validator();
    let instance = parse(log);
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "invalid SARIF:\n{}\n{log}",
        errors.join("\n")
    );
}

#[test]
fn human_report() {
    insta::assert_snapshot!(render_human(&report(), PLAIN));
}

#[test]
fn human_report_of_clean_file_is_empty() {
    let clean = FileReport::new(SourceFile::new("ok.mx", "x = 1\n"), Vec::new());
    assert_eq!(render_human(&clean, PLAIN), "");
}

#[test]
fn human_summary_counts_and_leads_with_worst_severity() {
    let mut report = report();
    let last_line = |r: &FileReport| {
        render_human(r, PLAIN)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        last_line(&report),
        "error: 1 error, 1 warning in examples/lab.mx"
    );
    report.diagnostics.remove(0);
    assert_eq!(last_line(&report), "warning: 1 warning in examples/lab.mx");
    let error = Diagnostic::error(code::E0201, "undefined name `b`");
    report.diagnostics = vec![error.clone(), error];
    assert_eq!(last_line(&report), "error: 2 errors in examples/lab.mx");
}

#[test]
fn human_color_is_only_used_when_asked() {
    let colored = render_human(
        &report(),
        HumanStyle {
            color: true,
            ..PLAIN
        },
    );
    assert!(colored.contains("\x1b["));
    assert!(!render_human(&report(), PLAIN).contains('\x1b'));
}

#[test]
fn human_report_survives_spans_past_the_end() {
    let report = FileReport::new(
        SourceFile::new("short.mx", "é\n"),
        vec![Diagnostic::error(code::E0101, "unexpected end of file").primary(1..99, "here")],
    );
    let out = render_human(&report, PLAIN);
    assert!(out.contains("unexpected end of file"), "{out}");
    assert!(out.contains("here"), "{out}");
}

#[test]
fn json_shape() {
    let out = render_json(&[report()]);
    assert!(out.ends_with("}\n"));
    insta::assert_snapshot!(out);

    let doc = parse(&out);
    assert_eq!(doc["version"], 1);
    let diags = doc["diagnostics"].as_array().expect("array");
    assert_eq!(diags.len(), 2);

    let error = &diags[0];
    assert_eq!(error["file"], "examples/lab.mx");
    assert_eq!(error["code"], "E0201");
    assert_eq!(error["name"], "undefined-name");
    assert_eq!(error["severity"], "error");
    assert_eq!(error["message"], "undefined name `b`");
    assert_eq!(error["help"], "quote it to make a name: `net.node('b')`");
    let label = &error["labels"][0];
    assert_eq!(label["start"], 34);
    assert_eq!(label["end"], 35);
    assert_eq!(
        [
            &label["start_line"],
            &label["start_column"],
            &label["end_line"],
            &label["end_column"]
        ],
        [2, 14, 2, 15]
    );
    assert_eq!(label["primary"], true);
    assert_eq!(label["text"], "not defined");

    let warning = &diags[1];
    assert_eq!(warning["severity"], "warning");
    assert_eq!(warning["name"], "unconnected-node");
    assert_eq!(warning["help"], Value::Null);
    // `'é'` is three characters but four bytes.
    let label = &warning["labels"][0];
    assert_eq!(
        label["end"].as_u64().unwrap() - label["start"].as_u64().unwrap(),
        4
    );
    assert_eq!([&label["start_column"], &label["end_column"]], [14, 17]);
    assert_eq!(warning["labels"][1]["primary"], false);
}

#[test]
fn json_of_no_reports_is_an_empty_list() {
    assert_eq!(
        render_json(&[]),
        "{\n  \"version\": 1,\n  \"diagnostics\": []\n}\n"
    );
}

#[test]
fn sarif_is_valid_against_the_official_schema() {
    assert_valid_sarif(&render_sarif(&[report()], "0.1.0"));
    assert_valid_sarif(&render_sarif(&[], "0.1.0"));
    // The same file twice, a path that needs escaping, a file-level finding.
    let file_level = FileReport::new(
        SourceFile::new("my models/empty.mx", ""),
        vec![Diagnostic::error(
            code::E0217,
            "the model defines no topology",
        )],
    );
    assert_valid_sarif(&render_sarif(&[report(), report(), file_level], "0.1.0"));
}

#[test]
fn sarif_schema_check_is_not_vacuous() {
    let mut log = parse(&render_sarif(&[report()], "0.1.0"));
    log["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!sarif_validator().is_valid(&log));
}

#[test]
fn vendored_schema_is_the_draft_07_sarif_schema() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sarif-schema-2.1.0.json"
    );
    let schema = parse(&std::fs::read_to_string(path).unwrap());
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(
        schema["title"],
        "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    );
    assert!(jsonschema::meta::is_valid(&schema));
}

#[test]
fn sarif_content() {
    let log = parse(&render_sarif(
        &[report(), report_at("my models/lab.mx")],
        "1.2.3",
    ));
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(
        log["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    let run = &log["runs"][0];
    assert_eq!(run["columnKind"], "unicodeCodePoints");

    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "mxc");
    assert_eq!(driver["version"], "1.2.3");
    let rules = driver["rules"].as_array().unwrap();
    assert_eq!(rules.len(), CODES.len());
    let w0203 = rules.iter().find(|r| r["id"] == "W0203").unwrap();
    assert_eq!(w0203["name"], "unconnected-node");
    assert_eq!(w0203["defaultConfiguration"]["level"], "warning");
    assert_eq!(w0203["shortDescription"]["text"], "a node has no links");

    let artifacts = run["artifacts"].as_array().unwrap();
    let uris: Vec<&str> = artifacts
        .iter()
        .map(|a| a["location"]["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["examples/lab.mx", "my%20models/lab.mx"]);

    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
    }

    let error = &results[0];
    assert_eq!(error["level"], "error");
    assert_eq!(
        error["message"]["text"],
        "undefined name `b`\nhelp: quote it to make a name: `net.node('b')`"
    );
    assert!(error.get("relatedLocations").is_none());

    let warning = &results[3];
    assert_eq!(warning["level"], "warning");
    let location = &warning["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "my%20models/lab.mx");
    assert_eq!(location["artifactLocation"]["index"], 1);
    let region = &location["region"];
    assert_eq!(region["startLine"], 4);
    assert_eq!(region["startColumn"], 14);
    assert_eq!(region["endColumn"], 17);
    assert_eq!(region["charLength"], 3);
    assert_eq!(region["byteLength"], 4);
    assert_eq!(region["charOffset"], 68);
    assert_eq!(region["byteOffset"], 68);
    let related = &warning["relatedLocations"][0];
    assert_eq!(related["message"]["text"], "in this network");
    assert_eq!(related["physicalLocation"]["region"]["startLine"], 1);
}

#[test]
fn output_is_deterministic() {
    let reports = [report(), report_at("b.mx")];
    assert_eq!(render_json(&reports), render_json(&reports));
    assert_eq!(
        render_sarif(&reports, "0.1.0"),
        render_sarif(&reports, "0.1.0")
    );
    assert_eq!(
        render_human(&reports[0], PLAIN),
        render_human(&reports[0], PLAIN)
    );
}

/// A realize error points into the model and into the facility: each
/// label is drawn, located and linked in its own file.
fn two_files() -> FileReport {
    let fac_text = "fac = facility('lab')\nhv = fac.host('hv0', cores=4)\n";
    let host = fac_text.find("fac.host").expect("host");
    let mut report = FileReport::new(
        SourceFile::new("lab.mx", MODEL),
        vec![
            Diagnostic::error(code::E0306, "2 nodes cannot be placed together")
                .primary(at("net.node('c')"), "`c` needs 4 cores")
                .secondary_in("fac.mx", host..host + 29, "`hv0`: 2 cores free"),
        ],
    );
    report.others.push(SourceFile::new("fac.mx", fac_text));
    report
}

#[test]
fn labels_point_into_other_files() {
    let report = two_files();
    let human = render_human(&report, PLAIN);
    insta::assert_snapshot!(human);
    assert!(human.contains("fac.mx:2:6"), "{human}");
    let json = parse(&render_json(std::slice::from_ref(&report)));
    let labels = &json["diagnostics"][0]["labels"];
    assert_eq!(labels[0].get("file"), None, "{json}");
    assert_eq!(labels[1]["file"], "fac.mx", "{json}");
    assert_eq!(labels[1]["start_line"], 2, "{json}");
    let sarif = render_sarif(std::slice::from_ref(&report), "0.0.0");
    assert_valid_sarif(&sarif);
    let log = parse(&sarif);
    let related = &log["runs"][0]["results"][0]["relatedLocations"][0];
    assert_eq!(
        related["physicalLocation"]["artifactLocation"]["uri"], "fac.mx",
        "{sarif}"
    );
    assert_eq!(
        related["physicalLocation"]["region"]["startLine"], 2,
        "{sarif}"
    );
    // Without the facility's text at hand, the label keeps its bytes.
    let mut bare = report.clone();
    bare.others.clear();
    let json = parse(&render_json(std::slice::from_ref(&bare)));
    assert_eq!(json["diagnostics"][0]["labels"][1]["file"], "fac.mx");
    assert!(!render_human(&bare, PLAIN).contains("fac.mx"));
}

/// A model's text is kept as it was read, not copied (42 MB for the
/// 100,000-node flat model).
#[test]
fn a_source_file_takes_its_text_without_copying() {
    let text = String::from("x = 1\n");
    let at = text.as_ptr();
    let file = SourceFile::new("m.mx", text);
    assert_eq!(file.text.as_ptr(), at);
    assert_eq!(file.text.as_str(), "x = 1\n");
}
