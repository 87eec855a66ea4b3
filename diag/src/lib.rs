//! Diagnostics as data, shared by every mx phase.
//!
//! A phase never prints: it returns [`Diagnostic`] values (a stable code, a
//! severity, a lowercase message, labelled spans and help). The `mxc` binary
//! renders them in one of three formats: miette's graphical report for people,
//! JSON for scripts and SARIF 2.1.0 for code-scanning tools. Keeping one data
//! model means the three formats can never disagree.
//!
//! Every code is registered in [`codes::CODES`] with an explanation that
//! `mxc explain CODE` prints; a test checks codes are unique and documented.

pub mod codes;
pub use codes::{Code, code};
mod render;

use std::sync::Arc;

pub use render::{HumanStyle, render_human, render_json, render_sarif, render_unsourced};

/// How bad a finding is. Errors stop compilation; warnings do not (unless
/// `--deny-warnings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Compilation cannot produce output.
    Error,
    /// Output is produced but the model is probably not what was meant.
    Warning,
}

/// A labelled byte range in the source.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Label {
    /// Byte range `[start, end)`.
    pub start: usize,
    /// End of the range (exclusive).
    pub end: usize,
    /// What this range has to do with the finding.
    pub text: String,
    /// The main location; exactly one label of a diagnostic is primary.
    pub primary: bool,
    /// The file the range indexes, when it is not the diagnostic's own
    /// (a realize error pointing into the facility as well as the model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// One finding: code, severity, message, spans, help.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Stable code such as `E0201`; see [`codes`].
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// One lowercase sentence without a full stop.
    pub message: String,
    /// Labelled spans; the first primary label is the finding's location.
    pub labels: Vec<Label>,
    /// How to fix it, if we know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error with `code` and `message`, with no spans yet.
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code: code.as_str(),
            severity: Severity::Error,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    /// A warning with `code` and `message`.
    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// Adds the primary label.
    pub fn primary(mut self, range: std::ops::Range<usize>, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            start: range.start,
            end: range.end,
            text: text.into(),
            primary: true,
            file: None,
        });
        self
    }

    /// Adds a secondary label.
    pub fn secondary(mut self, range: std::ops::Range<usize>, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            start: range.start,
            end: range.end,
            text: text.into(),
            primary: false,
            file: None,
        });
        self
    }

    /// A secondary label in another file, named by its path as the caller
    /// will report it ([`FileReport::others`] holds its text).
    pub fn secondary_in(
        mut self,
        file: &str,
        range: std::ops::Range<usize>,
        text: impl Into<String>,
    ) -> Self {
        self.labels.push(Label {
            start: range.start,
            end: range.end,
            text: text.into(),
            primary: false,
            file: Some(file.into()),
        });
        self
    }

    /// Sets the help text.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The primary location, if any.
    pub fn location(&self) -> Option<&Label> {
        self.labels
            .iter()
            .find(|l| l.primary)
            .or(self.labels.first())
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A source file that diagnostics point into.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path as the user gave it.
    pub path: String,
    /// Full text. An `Arc<String>`, not an `Arc<str>`: a model's text is
    /// read into a `String`, and making an `Arc<str>` of it would copy it
    /// (42 MB, 20-30 ms, for the 100,000-node flat model).
    pub text: Arc<String>,
}

impl SourceFile {
    /// A file named `path` with contents `text` (taken, not copied).
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: Arc::new(text.into()),
        }
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A file with the diagnostics found in it: the unit every renderer takes.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// The file.
    pub file: SourceFile,
    /// Its findings, in the order they were found.
    pub diagnostics: Vec<Diagnostic>,
    /// Other files the findings' labels point into.
    pub others: Vec<SourceFile>,
}

impl FileReport {
    /// The findings of `file`, all pointing into it.
    pub fn new(file: SourceFile, diagnostics: Vec<Diagnostic>) -> Self {
        FileReport {
            file,
            diagnostics,
            others: Vec::new(),
        }
    }

    /// The file a label points into: the report's own, or one of
    /// [`FileReport::others`]; `None` if its text is not at hand.
    pub fn file_of(&self, label: &Label) -> Option<&SourceFile> {
        match &label.file {
            None => Some(&self.file),
            Some(p) if *p == self.file.path => Some(&self.file),
            Some(p) => self.others.iter().find(|f| f.path == *p),
        }
    }

    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}
