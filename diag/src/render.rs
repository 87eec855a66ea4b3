//! The three renderers: miette's graphical report for people, JSON for
//! scripts and SARIF 2.1.0 for code-scanning tools.
//!
//! All three read the same [`FileReport`]s and return a `String`, so the
//! caller decides where output goes and tests can compare it byte for byte.
//! Nothing here depends on the environment (terminal, `NO_COLOR`, width):
//! the caller passes those in [`HumanStyle`], which keeps output
//! deterministic.

use std::fmt;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use serde_json::{Value, json};

use crate::codes::CODES;
use crate::{Diagnostic, FileReport, Label, Severity, SourceFile};

/// How to draw the human report; the caller works this out from the terminal.
#[derive(Clone, Copy, Debug)]
pub struct HumanStyle {
    /// ANSI colours on or off.
    pub color: bool,
    /// Wrap width in columns.
    pub width: usize,
}

/// Renders every diagnostic of `report` with miette's graphical handler,
/// followed by a one-line count. Returns an empty string when there is
/// nothing to report, so a clean file prints nothing.
pub fn render_human(report: &FileReport, style: HumanStyle) -> String {
    if report.diagnostics.is_empty() {
        return String::new();
    }
    let mut out = render_reports(report, style);
    out.push_str(&summary_line(report, style.color));
    out.push('\n');
    out
}

/// Renders findings about no file (the runtime's, about hosts, devices and
/// guests) with the same handler as [`render_human`], without a count line.
pub fn render_unsourced(diags: &[Diagnostic], style: HumanStyle) -> String {
    let report = FileReport::new(SourceFile::new("", ""), diags.to_vec());
    render_reports(&report, style)
}

fn render_reports(report: &FileReport, style: HumanStyle) -> String {
    let theme = if style.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    // Links off: hyperlink escapes depend on the terminal, and our codes have
    // no URL anyway (`mxc explain` is the documentation).
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(style.width)
        .with_links(false);
    let source = NamedSource::new(&report.file.path, Arc::clone(&report.file.text));
    let others: Vec<NamedSource<Arc<String>>> = report
        .others
        .iter()
        .map(|f| NamedSource::new(&f.path, Arc::clone(&f.text)))
        .collect();
    let mut out = String::new();
    for diag in &report.diagnostics {
        let mut wrapped = MietteDiagnostic::new(diag, &source);
        // Labels in other files follow as one related snippet per file.
        for (file, src) in report.others.iter().zip(&others) {
            let labels: Vec<&Label> = diag
                .labels
                .iter()
                .filter(|l| {
                    l.file.as_deref() == Some(&*file.path) && *file.path != *report.file.path
                })
                .collect();
            if !labels.is_empty() {
                wrapped.related.push(Elsewhere {
                    message: format!("in {}", file.path),
                    labels,
                    source: src,
                });
            }
        }
        handler
            .render_report(&mut out, &wrapped)
            .expect("writing to a String cannot fail");
        out.push('\n');
    }
    out
}

/// `error: 2 errors, 1 warning in examples/x.mx`, led by the worst severity.
fn summary_line(report: &FileReport, color: bool) -> String {
    let (errors, warnings) = (report.errors(), report.warnings());
    let mut counts = Vec::new();
    if errors > 0 {
        counts.push(plural(errors, "error"));
    }
    if warnings > 0 {
        counts.push(plural(warnings, "warning"));
    }
    let (lead, ansi) = if errors > 0 {
        ("error", "\x1b[1;31m")
    } else {
        ("warning", "\x1b[1;33m")
    };
    let lead = if color {
        format!("{ansi}{lead}\x1b[0m")
    } else {
        lead.to_owned()
    };
    format!("{lead}: {} in {}", counts.join(", "), report.file.path)
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A [`Diagnostic`] seen through miette's trait, borrowing the file it
/// points into. Private: miette is a rendering detail, not our data model.
struct MietteDiagnostic<'a> {
    diag: &'a Diagnostic,
    code: String,
    source: &'a NamedSource<Arc<String>>,
    /// Labels that point into other files, one snippet per file.
    related: Vec<Elsewhere<'a>>,
}

impl<'a> MietteDiagnostic<'a> {
    fn new(diag: &'a Diagnostic, source: &'a NamedSource<Arc<String>>) -> Self {
        MietteDiagnostic {
            diag,
            code: format!("mx::{}", diag.code),
            source,
            related: Vec::new(),
        }
    }
}

/// A diagnostic's labels in another file, drawn as a related snippet.
struct Elsewhere<'a> {
    message: String,
    labels: Vec<&'a Label>,
    source: &'a NamedSource<Arc<String>>,
}

impl fmt::Debug for Elsewhere<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Elsewhere<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Elsewhere<'_> {}

impl miette::Diagnostic for Elsewhere<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Advice)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let text: &str = self.source.inner();
        Some(Box::new(
            self.labels.iter().map(move |label| labeled(text, label)),
        ))
    }
}

impl fmt::Debug for MietteDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diag, f)
    }
}

impl fmt::Display for MietteDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for MietteDiagnostic<'_> {}

impl miette::Diagnostic for MietteDiagnostic<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(&self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'b>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source)
    }

    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(
            self.related.iter().map(|r| r as &dyn miette::Diagnostic),
        ))
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let own = |l: &&Label| l.file.as_deref().is_none_or(|f| f == self.source.name());
        if !self.diag.labels.iter().any(|l| own(&l)) {
            return None;
        }
        let text: &str = self.source.inner();
        Some(Box::new(
            self.diag
                .labels
                .iter()
                .filter(own)
                .map(move |label| labeled(text, label)),
        ))
    }
}

/// `label` as miette draws it in `text`. A span past the end (or inside a
/// UTF-8 sequence) would make miette drop the whole snippet: it is clamped.
fn labeled(text: &str, label: &Label) -> LabeledSpan {
    let (start, end) = clamp(text, label);
    let note = (!label.text.is_empty()).then(|| label.text.clone());
    if label.primary {
        LabeledSpan::new_primary_with_span(note, start..end)
    } else {
        LabeledSpan::new_with_span(note, start..end)
    }
}

/// The label's byte range, kept inside `text` and on character boundaries.
fn clamp(text: &str, label: &Label) -> (usize, usize) {
    let floor = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = floor(label.start);
    (start, floor(label.end).max(start))
}

/// Version of the JSON output's shape; bump it when a field changes meaning.
const JSON_VERSION: u32 = 1;

/// Renders all reports as one pretty JSON document ending in a newline.
///
/// Shape: `{"version": 1, "diagnostics": [...]}`. Each label carries its
/// byte range (`start`, `end`, end exclusive) and the same range as 1-based
/// lines and character columns (`end_column` is the column just after the
/// range, as in SARIF), so consumers need not re-read the file.
pub fn render_json(reports: &[FileReport]) -> String {
    let diagnostics: Vec<Value> = reports
        .iter()
        .flat_map(|report| {
            report
                .diagnostics
                .iter()
                .map(move |diag| json_diagnostic(report, diag))
        })
        .collect();
    let doc = json!({ "version": JSON_VERSION, "diagnostics": diagnostics });
    to_pretty(&doc)
}

fn json_diagnostic(report: &FileReport, diag: &Diagnostic) -> Value {
    let file = &report.file;
    let labels: Vec<Value> = diag
        .labels
        .iter()
        .map(|label| {
            // A label in a file whose text is not at hand keeps its bytes.
            let Some(in_file) = report.file_of(label) else {
                return json!({
                    "file": label.file,
                    "start": label.start,
                    "end": label.end,
                    "text": label.text,
                    "primary": label.primary,
                });
            };
            let (start, end) = clamp(&in_file.text, label);
            let (start_line, start_column) = in_file.line_col(start);
            let (end_line, end_column) = in_file.line_col(end);
            let mut v = json!({
                "start": start,
                "end": end,
                "start_line": start_line,
                "start_column": start_column,
                "end_line": end_line,
                "end_column": end_column,
                "text": label.text,
                "primary": label.primary,
            });
            if !std::ptr::eq(in_file, file) {
                v["file"] = json!(in_file.path);
            }
            v
        })
        .collect();
    json!({
        "file": file.path,
        "code": diag.code,
        "name": CODES.iter().find(|c| c.code == diag.code).map(|c| c.name),
        "severity": diag.severity,
        "message": diag.message,
        "help": diag.help,
        "labels": labels,
    })
}

fn to_pretty(doc: &Value) -> String {
    let mut out = serde_json::to_string_pretty(doc).expect("a JSON value always serializes");
    out.push('\n');
    out
}

/// Where SARIF consumers validate the log; the schemastore copy is the
/// address tools such as GitHub code scanning recognise.
const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Renders all reports as one SARIF 2.1.0 log with a single run of `mxc`
/// version `tool_version`.
///
/// Every registered code is listed as a rule, so a consumer can show the
/// documentation of any result. Columns count Unicode code points
/// (`columnKind: unicodeCodePoints`), matching [`SourceFile::line_col`];
/// byte offsets are given as well.
pub fn render_sarif<'a>(reports: &'a [FileReport], tool_version: &str) -> String {
    let rules: Vec<Value> = CODES
        .iter()
        .map(|info| {
            json!({
                "id": info.code,
                "name": info.name,
                "shortDescription": { "text": info.summary },
                "fullDescription": { "text": first_paragraph(info.explanation) },
                "help": {
                    "text": format!("{}\n\nRun `mxc explain {}` for this text in a terminal.",
                        info.explanation, info.code),
                },
                "defaultConfiguration": { "level": code_level(info.code) },
            })
        })
        .collect();

    // One artifact per distinct path: SARIF requires `artifacts` items to be
    // unique, and `mxc check a.mx a.mx` must still give a valid log.
    let mut artifact_paths: Vec<&str> = Vec::new();
    let mut artifacts = Vec::new();
    let mut results = Vec::new();
    for report in reports {
        // Every file a finding or one of its labels points into is an
        // artifact, listed once.
        let mut artifact =
            |file: &'a SourceFile| match artifact_paths.iter().position(|p| *p == file.path) {
                Some(i) => i,
                None => {
                    artifact_paths.push(&file.path);
                    artifacts.push(json!({
                        "location": { "uri": uri_reference(&file.path) },
                        "length": file.text.len(),
                        "sourceLanguage": "mx",
                        "encoding": "utf-8",
                    }));
                    artifact_paths.len() - 1
                }
            };
        let index = artifact(&report.file);
        for other in &report.others {
            artifact(other);
        }
        for diag in &report.diagnostics {
            results.push(sarif_result(report, index, &artifact_paths, diag));
        }
    }

    let doc = json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "mxc",
                    "version": tool_version,
                    "informationUri": env!("CARGO_PKG_REPOSITORY"),
                    "rules": rules,
                },
            },
            "columnKind": "unicodeCodePoints",
            "artifacts": artifacts,
            "results": results,
        }],
    });
    to_pretty(&doc)
}

fn sarif_result(
    report: &FileReport,
    artifact: usize,
    artifact_paths: &[&str],
    diag: &Diagnostic,
) -> Value {
    let file = &report.file;
    let mut text = diag.message.clone();
    if let Some(help) = &diag.help {
        text.push_str("\nhelp: ");
        text.push_str(help);
    }
    let artifact_location = json!({ "uri": uri_reference(&file.path), "index": artifact });
    let primary = diag.location();
    let location = match primary {
        Some(label) => sarif_location(file, &artifact_location, label, None),
        // A finding about the whole file still names the file.
        None => json!({ "physicalLocation": { "artifactLocation": artifact_location } }),
    };
    let related: Vec<Value> = diag
        .labels
        .iter()
        .filter(|l| !primary.is_some_and(|p| std::ptr::eq(p, *l)))
        .enumerate()
        .filter_map(|(id, label)| {
            let in_file = report.file_of(label)?;
            let index = artifact_paths.iter().position(|p| *p == &*in_file.path)?;
            let at = json!({ "uri": uri_reference(&in_file.path), "index": index });
            Some(sarif_location(in_file, &at, label, Some(id)))
        })
        .collect();

    let mut result = json!({
        "ruleId": diag.code,
        "level": severity_level(diag.severity),
        "message": { "text": text },
        "locations": [location],
    });
    if let Some(index) = CODES.iter().position(|c| c.code == diag.code) {
        result["ruleIndex"] = json!(index);
    }
    if !related.is_empty() {
        result["relatedLocations"] = json!(related);
    }
    result
}

/// A SARIF `location` for `label`. Related locations get an `id` because the
/// schema wants them unique, and two secondary labels may be identical.
fn sarif_location(
    file: &SourceFile,
    artifact_location: &Value,
    label: &Label,
    id: Option<usize>,
) -> Value {
    let text: &str = &file.text;
    let (start, end) = clamp(text, label);
    let (start_line, start_column) = file.line_col(start);
    let (end_line, end_column) = file.line_col(end);
    let mut location = json!({
        "physicalLocation": {
            "artifactLocation": artifact_location,
            "region": {
                "startLine": start_line,
                "startColumn": start_column,
                "endLine": end_line,
                "endColumn": end_column,
                "charOffset": text[..start].chars().count(),
                "charLength": text[start..end].chars().count(),
                "byteOffset": start,
                "byteLength": end - start,
            },
        },
    });
    if let Some(id) = id {
        location["id"] = json!(id);
    }
    if !label.text.is_empty() {
        location["message"] = json!({ "text": label.text });
    }
    location
}

fn severity_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Codes are `E…` for errors and `W…` for warnings; the registry relies on it.
fn code_level(code: &str) -> &'static str {
    if code.starts_with('W') {
        "warning"
    } else {
        "error"
    }
}

fn first_paragraph(text: &str) -> String {
    let para = text.split("\n\n").next().unwrap_or(text);
    para.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `path` as a relative URI reference: SARIF consumers resolve it against
/// the checkout, so it stays relative, but spaces and other characters that
/// cannot appear in a URI are percent-encoded (RFC 3986 unreserved
/// characters and `/` pass through).
fn uri_reference(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(char::from(byte));
            }
            // Windows separators; elsewhere a backslash is an ordinary byte.
            b'\\' if cfg!(windows) => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
