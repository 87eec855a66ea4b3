//! The JSON Schemas in `xir/schema/` are part of the XIR contract: other
//! tools validate against the files, so they must match the types exactly.
//! Regenerate with `MX_UPDATE_SCHEMA=1 cargo test -p mx-xir --test schema`.

use std::path::Path;

/// Compares `generated` with `xir/schema/<file>`, rewriting it when asked.
fn check_current(file: &str, generated: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(file);
    if std::env::var_os("MX_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, generated).expect("write schema");
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == generated,
        "{} is stale; regenerate it with `MX_UPDATE_SCHEMA=1 cargo test -p mx-xir --test schema`",
        path.display()
    );
}

#[test]
fn experiment_schema_is_current() {
    check_current("experiment.schema.json", &mx_xir::experiment_schema());
}

#[test]
fn facility_schema_is_current() {
    check_current("facility.schema.json", &mx_xir::facility_schema());
}

#[test]
fn realization_schema_is_current() {
    check_current("realization.schema.json", &mx_xir::realization_schema());
}

#[test]
fn schema_version_is_in_the_schema_doc() {
    let schema: serde_json::Value =
        serde_json::from_str(&mx_xir::experiment_schema()).expect("valid JSON");
    assert_eq!(schema["title"], "Experiment");
    assert!(schema["properties"]["xir"].is_object());
}

#[test]
fn fragment_schema_is_current() {
    check_current("fragment.schema.json", &mx_xir::fragment_schema());
}
