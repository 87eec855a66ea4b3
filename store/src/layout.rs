//! Where distributed automation keeps things in the store. One module, so
//! the coordinator, the agents and the access rules (each agent reads only
//! its host's desired state and writes only its host's status) agree.
//!
//! ```text
//! /mx/agents/<host>                        the host's agent, bound to its lease
//! /mx/want/<host>/<experiment>             desired state: a `Want` (generation, up or down)
//! /mx/bundle/<host>/<experiment>/<gen>/<i> the host's bundle for a generation, in chunks
//! /mx/commit/<experiment>                  the generation agents act on: flipped last
//! /mx/status/<host>/<experiment>/<task>    each task's status, written by the host's agent
//! ```
//!
//! Names in keys are `mx_xir::Name`s (no `/`), checked before they are
//! used, so one host's keys are never a prefix of another's.

pub const AGENTS: &str = "/mx/agents/";
pub const WANT: &str = "/mx/want/";
pub const BUNDLE: &str = "/mx/bundle/";
pub const COMMIT: &str = "/mx/commit/";
pub const STATUS: &str = "/mx/status/";

pub fn agent(host: &str) -> String {
    format!("{AGENTS}{host}")
}

/// Everything desired of `host`.
pub fn want_prefix(host: &str) -> String {
    format!("{WANT}{host}/")
}

pub fn want(host: &str, experiment: &str) -> String {
    format!("{WANT}{host}/{experiment}")
}

pub fn bundle_prefix(host: &str, experiment: &str, generation: &str) -> String {
    format!("{BUNDLE}{host}/{experiment}/{generation}/")
}

pub fn commit(experiment: &str) -> String {
    format!("{COMMIT}{experiment}")
}

pub fn status_prefix(host: &str, experiment: &str) -> String {
    format!("{STATUS}{host}/{experiment}/")
}

pub fn status(host: &str, experiment: &str, task: &str) -> String {
    format!("{STATUS}{host}/{experiment}/{task}")
}

/// The last segment of `key` under `prefix`, if it is one segment.
pub fn leaf<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix)
        .filter(|r| !r.is_empty() && !r.contains('/'))
}
