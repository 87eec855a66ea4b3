//! Values with shared structure: `l = [l, l]` sixty times is a few
//! kilobytes in memory but has 2^60 nodes to walk. Every builtin that walks
//! a value (equality, ordering, hashing, membership, str/repr/format, JSON,
//! sorting) charges the step and memory budgets as it goes, so each of
//! these models ends with E0212 or E0213 instead of hanging or taking the
//! machine's memory.

use std::sync::mpsc;
use std::time::Duration;

use mx_compiler::{Options, compile};

const PRELUDE: &str = "l = []\nm = []\nfor i in range(60):\n    l = [l, l]\n    m = [m, m]\n\
                       t = ()\nfor i in range(60):\n    t = (t, t)\n";
const TOPO: &str = "a = topo.device('a')\nb = topo.device('b')\ntopo.connect([a, b])\n";

/// Budgets small enough for a debug build: an uncharged walk of 2^60 nodes
/// hangs whatever the budgets, a charged one ends at them.
fn options() -> Options {
    Options {
        step_limit: 5_000_000,
        memory_limit: 64 << 20,
        ..Options::default()
    }
}

/// Compiles `body` after the prelude on its own thread; a model that does
/// not end within minutes is a hang.
fn codes(body: &str) -> Vec<&'static str> {
    let src = format!("{PRELUDE}{body}\n{TOPO}");
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let out = compile("shared.mx", &src, &options());
            let errors = out.diagnostics.iter().filter(|d| d.code.starts_with('E'));
            let _ = tx.send(errors.map(|d| d.code).collect::<Vec<_>>());
        })
        .expect("spawn");
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("`{body}` did not end: a walk is not charged to the budgets"))
}

fn assert_budget(body: &str) {
    let c = codes(body);
    assert!(
        !c.is_empty() && c.iter().all(|c| matches!(*c, "E0212" | "E0213")),
        "`{body}`: {c:?}"
    );
}

#[test]
fn equality_is_charged() {
    assert_budget("x = l == m");
    assert_budget("x = l != m");
}

#[test]
fn ordering_and_sorting_are_charged() {
    assert_budget("x = l < m");
    assert_budget("x = sorted([l, m, l])");
    assert_budget("x = max([l, m])");
}

#[test]
fn text_is_charged() {
    assert_budget("x = str(l)");
    assert_budget("x = repr(l)");
    assert_budget("x = f'{l}' in ['a']");
    assert_budget("x = '%s' % (l,)");
    assert_budget("x = '{}'.format(l)");
    assert_budget("print(l)");
}

#[test]
fn membership_and_search_are_charged() {
    assert_budget("x = l in [m]");
    assert_budget("x = [m].index(l)");
    assert_budget("x = [m, m].count(l)");
    assert_budget("x = set([l, m])");
}

#[test]
fn hashing_is_charged() {
    assert_budget("d = {t: 1}");
    assert_budget("x = t in {(): 1}");
}

#[test]
fn properties_written_as_json_are_charged() {
    assert_budget("a0 = topo.device('a0')\na0.properties['big'] = l");
}

#[test]
fn messages_about_huge_values_stay_short() {
    // The failed lookup is reported; its message shows a bounded prefix.
    let src = format!("{PRELUDE}x = [1].index(l)\n{TOPO}");
    let out = compile("shared.mx", &src, &options());
    let d = &out.diagnostics[0];
    assert_eq!(d.code, "E0216", "{:?}", out.diagnostics);
    assert!(d.message.len() < 300, "{}", d.message);
}
