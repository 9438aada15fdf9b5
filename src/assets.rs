//! Static files served by the binary: our own `static/` and the npm-fetched vendor files.
//!
//! Pages link to `/static/<name>?v=<content hash>`, so a file can be cached for a year:
//! a new build with new content gets a new URL. Every response carries an ETag too.

use std::{collections::HashMap, sync::LazyLock};

use axum::{
    extract::{Path, Query},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

#[derive(RustEmbed)]
#[folder = "static/"]
struct OwnAssets;

#[derive(RustEmbed)]
#[folder = "$OUT_DIR/vendor/"]
struct VendorAssets;

struct Asset {
    bytes: std::borrow::Cow<'static, [u8]>,
    hash: String,
    mime: &'static str,
}

static ASSETS: LazyLock<HashMap<String, Asset>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    let own = OwnAssets::iter().map(|n| (n.to_string(), OwnAssets::get(&n)));
    let vendor = VendorAssets::iter().map(|n| (n.to_string(), VendorAssets::get(&n)));
    for (name, file) in own.chain(vendor) {
        let Some(file) = file else { continue };
        let hash = hex::encode(&Sha256::digest(&file.data)[..8]);
        let mime = match name.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("ico") => "image/x-icon",
            _ => "application/octet-stream",
        };
        map.insert(
            name,
            Asset {
                bytes: file.data,
                hash,
                mime,
            },
        );
    }
    map
});

/// The URL of an asset with its content hash, for templates.
pub fn url(name: &str) -> String {
    match ASSETS.get(name) {
        Some(a) => format!("/static/{name}?v={}", a.hash),
        None => format!("/static/{name}"),
    }
}

pub async fn serve(
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = ASSETS.get(&name) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!("\"{}\"", asset.hash);
    let cache = if query.get("v") == Some(&asset.hash) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=0, must-revalidate"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.mime)], asset.bytes.clone()).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex etag"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
