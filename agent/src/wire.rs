//! What travels through the store: a host's bundle, its wants and its
//! tasks' status. The agent checks a bundle as it checks one from disk
//! (the runtime's `plan` validates names, paths and scopes) before
//! anything on the host is touched.

use mx_materializer::Bundle;

/// Chunk size for bundles: under etcd's 1.5 MiB request limit.
pub const CHUNK: usize = 512 << 10;

/// A bundle as bytes.
pub fn encode(b: &Bundle) -> Vec<u8> {
    serde_json::to_vec(b).unwrap_or_default()
}

/// Bytes as a bundle, which must be `host`'s part of `experiment`.
pub fn decode(bytes: &[u8], experiment: &str, host: &str) -> Result<Bundle, String> {
    let b: Bundle = serde_json::from_slice(bytes)
        .map_err(|e| format!("the stored bundle does not parse: {e}"))?;
    if b.experiment.as_str() != experiment || b.host.as_str() != host {
        return Err(format!(
            "the stored bundle is `{}` on `{}`, not `{experiment}` on `{host}`",
            b.experiment, b.host
        ));
    }
    if let Some(f) = b
        .fragments
        .iter()
        .find(|f| f.host != b.host || f.experiment != b.experiment)
    {
        return Err(format!(
            "fragment {} is for `{}` on `{}`, not this bundle's host",
            f.id, f.experiment, f.host
        ));
    }
    Ok(b)
}

/// A task's status as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskStatus {
    /// The generation it ran for.
    pub generation: String,
    /// `running`, `done`, `failed` or `down`.
    pub status: String,
    pub ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use mx_xir::Name;

    fn bundle(host: &str) -> Bundle {
        Bundle {
            experiment: Name::new("exp").unwrap(),
            host: Name::new(host).unwrap(),
            fragments: Vec::new(),
        }
    }

    #[test]
    fn a_stored_bundle_must_be_this_hosts_part_of_this_experiment() {
        let bytes = encode(&bundle("hv0"));
        assert_eq!(decode(&bytes, "exp", "hv0").unwrap(), bundle("hv0"));
        assert!(
            decode(&bytes, "exp", "hv1")
                .unwrap_err()
                .contains("not `exp` on `hv1`")
        );
        assert!(decode(&bytes, "other", "hv0").is_err());
        assert!(
            decode(b"{", "exp", "hv0")
                .unwrap_err()
                .contains("does not parse")
        );
    }
}
