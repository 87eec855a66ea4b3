//! Deeply nested *values* (as opposed to deeply nested syntax, which the
//! parser bounds) must not overflow the stack when they are printed,
//! compared or dropped.
//!
//! With the default step budget a model can nest a list hundreds of
//! thousands of levels deep in a second. A naive recursive `Drop`, `str()`
//! or `==` then overflows the stack of `mxc`'s main thread (8 MiB on
//! Linux). These tests run on a thread with an 8 MiB stack to match.
//!
//! They live in their own test binary: a stack overflow aborts the process,
//! and should not take other tests down with it.

use mx_compiler::{Options, compile};

/// Runs `src` with default budgets on an 8 MiB stack and returns the codes.
fn run_on_main_sized_stack(name: &'static str, src: String) -> Vec<&'static str> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(8 << 20)
        .spawn(move || {
            let out = compile("deep.mx", &src, &Options::default());
            out.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>()
        })
        .expect("spawn")
        .join()
        .unwrap_or_else(|_| panic!("{name}: compile panicked"))
}

const PRELUDE_END: &str = "a = topo.device('a')\nb = topo.device('b')\ntopo.connect([a, b])\n";

#[test]
fn deep_list_is_dropped() {
    let src = format!("x = []\nfor i in range(300000):\n    x = [x]\n{PRELUDE_END}");
    // Either it compiles, or a budget stops it; it must not crash.
    let codes = run_on_main_sized_stack("deep-list-drop", src);
    assert!(
        codes
            .iter()
            .all(|c| matches!(*c, "E0212" | "E0213" | "E0219")),
        "{codes:?}"
    );
}

#[test]
fn deep_list_is_printed_and_compared() {
    let src = format!(
        "x = []\ny = []\nfor i in range(300000):\n    x = [x]\n    y = [y]\n\
         same = x == y\ntext = str(x)\n{PRELUDE_END}"
    );
    let codes = run_on_main_sized_stack("deep-list-str", src);
    assert!(
        codes
            .iter()
            .all(|c| matches!(*c, "E0212" | "E0213" | "E0216" | "E0219")),
        "{codes:?}"
    );
}

#[test]
fn deep_dict_is_dropped() {
    let src = format!("d = {{}}\nfor i in range(300000):\n    d = {{'k': d}}\n{PRELUDE_END}");
    let codes = run_on_main_sized_stack("deep-dict-drop", src);
    assert!(
        codes
            .iter()
            .all(|c| matches!(*c, "E0212" | "E0213" | "E0219")),
        "{codes:?}"
    );
}
