//! What the runtime's test files share: the one-machine example's bundles.

use std::path::Path;

pub fn compile(path: &str) -> mx_compiler::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(path)).expect("read model");
    mx_compiler::compile(path, &text, &mx_compiler::Options::default())
}

/// examples/local.mx realized on examples/facilities/local.mx and
/// materialized.
pub fn bundles() -> Vec<mx_materializer::Bundle> {
    bundles_of("examples/local.mx")
}

/// A model realized on the one-machine facility and materialized.
pub fn bundles_of(model: &str) -> Vec<mx_materializer::Bundle> {
    let exp = compile(model).xir.expect("experiment");
    let fac = compile("examples/facilities/local.mx")
        .facility
        .expect("facility");
    let real = mx_realizer::realize(&exp, &fac, &Default::default(), &Default::default())
        .expect("realizes")
        .realization;
    mx_materializer::materialize(&real).expect("materializes")
}
