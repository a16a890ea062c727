//! The dependency rules of CONVENTIONS.md §1, checked against `cargo metadata`, so a forbidden
//! edge fails the test suite (and CI).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// For each crate of ours: the crates of ours it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("oidc-core", &[]),
    // XML from outside, parsed within bounds: a leaf the XML readers share.
    ("bounded-xml", &[]),
    ("eid-bridge", &["bounded-xml"]),
    // Our test eID-Server implements eid-bridge's port (its public types only).
    ("eid-test-server", &["eid-bridge", "bounded-xml"]),
    // SAML's protocol rules, I/O-free like oidc-core (whose trust levels it answers in); the
    // server orchestrates.
    ("saml-core", &["oidc-core", "bounded-xml"]),
    ("tenant-registry", &["oidc-core"]),
    ("account-service", &["oidc-core"]),
    ("migrations", &[]),
    ("storage", &["oidc-core", "tenant-registry", "account-service", "migrations", "storage"]),
    (
        "server",
        &[
            "oidc-core",
            "saml-core",
            "tenant-registry",
            "account-service",
            "eid-bridge",
            "eid-test-server",
            "storage",
            "migrations",
        ],
    ),
    ("bench", &["oidc-core", "tenant-registry", "account-service", "eid-bridge", "storage", "server", "migrations"]),
    (
        "integration-tests",
        &[
            "oidc-core",
            "tenant-registry",
            "account-service",
            "eid-bridge",
            "eid-test-server",
            "storage",
            "server",
            "migrations",
        ],
    ),
];

/// Infrastructure that domain crates must not know.
const INFRASTRUCTURE: &[&str] = &["sea-orm", "sea-orm-migration", "sqlx", "redis", "poem", "poem-openapi", "reqwest"];
const DOMAIN: &[&str] = &["oidc-core", "saml-core", "tenant-registry", "account-service", "eid-bridge"];
/// The one exception: eid-bridge holds the eID-Server port's TR-03130 adapter, a SOAP client,
/// by design of the eID issue ("eid-bridge: the AusweisApp2 SDK and the eID-Server side").
const ADAPTER_EDGES: &[(&str, &str)] = &[("eid-bridge", "reqwest")];

fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let dependencies = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                // What only tests use (a local SOAP endpoint) does not ship.
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (package["name"].as_str().unwrap().to_owned(), dependencies)
        })
        .collect()
}

#[test]
fn crates_depend_only_along_the_allowed_edges() {
    let packages = workspace_dependencies();
    let ours: BTreeSet<&str> = ALLOWED.iter().map(|(name, _)| *name).collect();
    assert_eq!(packages.keys().map(String::as_str).collect::<BTreeSet<_>>(), ours, "every workspace crate has a rule");

    let mut violations = Vec::new();
    for (package, allowed) in ALLOWED {
        for dependency in &packages[*package] {
            if ours.contains(dependency.as_str()) && !allowed.contains(&dependency.as_str()) {
                violations.push(format!("{package} → {dependency}"));
            }
            if DOMAIN.contains(package)
                && INFRASTRUCTURE.contains(&dependency.as_str())
                && !ADAPTER_EDGES.contains(&(*package, dependency.as_str()))
            {
                violations.push(format!("{package} (a domain crate) → {dependency}"));
            }
        }
    }
    assert!(violations.is_empty(), "forbidden dependency edges: {violations:?}");
}
