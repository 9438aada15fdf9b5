//! Fetches the pinned browser libraries (htmx and its SSE extension) from the npm
//! registry when they are not installed yet, and copies them where `src/assets.rs`
//! embeds them. `cargo run` on a fresh machine therefore needs only npm on the PATH.

use std::{env, fs, path::Path, process::Command};

const VENDOR_FILES: &[(&str, &str)] = &[
    ("node_modules/htmx.org/dist/htmx.min.js", "htmx.min.js"),
    (
        "node_modules/htmx-ext-sse/dist/sse.min.js",
        "htmx-sse.min.js",
    ),
];

fn main() {
    println!("cargo:rerun-if-changed=package.json");
    println!("cargo:rerun-if-changed=package-lock.json");
    for (source, _) in VENDOR_FILES {
        println!("cargo:rerun-if-changed={source}");
    }
    if VENDOR_FILES
        .iter()
        .any(|(source, _)| !Path::new(source).exists())
    {
        let status = Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .status()
            .unwrap_or_else(|e| panic!("npm is needed to fetch htmx (npm ci): {e}"));
        assert!(status.success(), "npm ci failed: {status}");
    }
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("vendor");
    fs::create_dir_all(&out).expect("create OUT_DIR/vendor");
    for (source, name) in VENDOR_FILES {
        fs::copy(source, out.join(name)).unwrap_or_else(|e| panic!("copy {source}: {e}"));
    }
}
