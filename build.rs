//! Fetches the pinned browser libraries (htmx and its SSE extension for the pages, Swagger
//! UI for the API reference at `/api/docs`) from the npm registry and copies them where
//! `src/assets.rs` embeds them. `cargo run` on a fresh machine therefore needs npm on the
//! PATH, and only for the first build or after `package-lock.json` changes.
//!
//! `npm ci` runs whenever what `node_modules` holds differs from what the lock file pins
//! (versions and integrity hashes, compared with the copy npm keeps in
//! `node_modules/.package-lock.json`), so bumping htmx in the lock file is enough.

use std::{collections::BTreeMap, env, fs, path::Path, process::Command};

const VENDOR_FILES: &[(&str, &str)] = &[
    ("node_modules/htmx.org/dist/htmx.min.js", "htmx.min.js"),
    (
        "node_modules/htmx-ext-sse/dist/sse.min.js",
        "htmx-sse.min.js",
    ),
    (
        "node_modules/swagger-ui-dist/swagger-ui-bundle.js",
        "swagger-ui-bundle.js",
    ),
    (
        "node_modules/swagger-ui-dist/swagger-ui.css",
        "swagger-ui.css",
    ),
];

const LOCK: &str = "package-lock.json";
const INSTALLED: &str = "node_modules/.package-lock.json";

const NO_NPM: &str = "\n\nThe build fetches htmx from the npm registry (pinned in package-lock.json) and needs npm for that.\nInstall Node.js with npm, then build again:\n  Debian/Ubuntu: sudo apt-get install npm\n  Fedora:        sudo dnf install npm\n  macOS:         brew install node\n  elsewhere:     https://nodejs.org/en/download\n";

fn main() {
    println!("cargo:rerun-if-changed={LOCK}");
    // `sqlx::migrate!` embeds the migrations: a new file there must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed={INSTALLED}");
    for (source, _) in VENDOR_FILES {
        println!("cargo:rerun-if-changed={source}");
    }
    if let Some(reason) = why_fetch() {
        fetch(&reason);
    }
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("vendor");
    fs::create_dir_all(&out).expect("create OUT_DIR/vendor");
    for (source, name) in VENDOR_FILES {
        fs::copy(source, out.join(name)).unwrap_or_else(|e| panic!("copy {source}: {e}"));
    }
}

/// Why `npm ci` must run, or `None` when `node_modules` already holds what is pinned.
fn why_fetch() -> Option<String> {
    if let Some((missing, _)) = VENDOR_FILES.iter().find(|(f, _)| !Path::new(f).exists()) {
        return Some(format!("{missing} is missing"));
    }
    let pinned = locked_packages(LOCK).unwrap_or_else(|e| panic!("{LOCK}: {e}"));
    let installed = locked_packages(INSTALLED).unwrap_or_default();
    (pinned != installed).then(|| format!("node_modules differs from {LOCK}"))
}

/// `"node_modules/<name>"` → (version, integrity) for every package a lock file lists.
fn locked_packages(path: &str) -> Result<BTreeMap<String, (String, String)>, String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let lock: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let packages = lock["packages"]
        .as_object()
        .ok_or("no \"packages\" object")?;
    Ok(packages
        .iter()
        .filter(|(name, _)| name.starts_with("node_modules/"))
        .map(|(name, p)| {
            let field = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (name.clone(), (field("version"), field("integrity")))
        })
        .collect())
}

fn fetch(reason: &str) {
    println!("cargo:warning=running npm ci: {reason}");
    let status = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run npm ({e}).{NO_NPM}"));
    assert!(
        status.success(),
        "npm ci failed ({status}): the registry may be unreachable.{NO_NPM}"
    );
}
