//! The JSON Schema in `xir/schema/` is part of the XIR contract: other tools
//! validate against the file, so it must match the types exactly. Regenerate
//! with `MX_UPDATE_SCHEMA=1 cargo test -p mx-xir --test schema`.

use std::path::Path;

#[test]
fn experiment_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/experiment.schema.json");
    let generated = mx_xir::experiment_schema();
    if std::env::var_os("MX_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == generated,
        "{} is stale; regenerate it with `MX_UPDATE_SCHEMA=1 cargo test -p mx-xir --test schema`",
        path.display()
    );
}

#[test]
fn schema_version_is_in_the_schema_doc() {
    let schema: serde_json::Value =
        serde_json::from_str(&mx_xir::experiment_schema()).expect("valid JSON");
    assert_eq!(schema["title"], "Experiment");
    assert!(schema["properties"]["xir"].is_object());
}

#[test]
fn facility_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/facility.schema.json");
    let generated = mx_xir::facility_schema();
    if std::env::var_os("MX_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == generated,
        "{} is stale; regenerate it with `MX_UPDATE_SCHEMA=1 cargo test -p mx-xir --test schema`",
        path.display()
    );
}

#[test]
fn realization_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/realization.schema.json");
    let generated = mx_xir::realization_schema();
    if std::env::var_os("MX_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == generated,
        "{} is stale; regenerate it with `MX_UPDATE_SCHEMA=1 cargo test -p mx-xir --test schema`",
        path.display()
    );
}
