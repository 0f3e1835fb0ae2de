//! The dashboard's static files, embedded at build time (see `build.rs`), served with their
//! content type, a strong ETag (a hash of the bytes) for revalidation, and gzip when the
//! browser accepts it (compressed once, on first request, and kept).
//!
//! Paths that are not files fall back to `index.html`, so the dashboard's client-side routes
//! (`/orders/<id>`, `/kafka`, ...) load on a reload or a shared link.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, HeaderValue,
    IF_NONE_MATCH, VARY,
};

use super::{Request, Response};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// One embedded file, ready to serve.
struct Asset {
    content_type: &'static str,
    etag: HeaderValue,
    plain: Bytes,
    /// `None` when compressing does not pay (images, tiny files).
    gzip: Option<Bytes>,
}

fn table() -> &'static HashMap<&'static str, Asset> {
    static TABLE: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    TABLE.get_or_init(|| {
        generated::FILES
            .iter()
            .map(|(path, bytes)| (*path, Asset::new(path, bytes)))
            .collect()
    })
}

impl Asset {
    fn new(path: &str, bytes: &'static [u8]) -> Self {
        let content_type = content_type(path);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{}\"", hasher.finish(), bytes.len()))
            .expect("hex is a valid header value");
        let compressible = content_type.starts_with("text/")
            || content_type.contains("javascript")
            || content_type.contains("json")
            || content_type.contains("svg");
        let gzip = (compressible && bytes.len() > 512)
            .then(|| {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
                encoder.write_all(bytes).ok()?;
                encoder.finish().ok()
            })
            .flatten()
            .filter(|z| z.len() < bytes.len())
            .map(Bytes::from);
        Self {
            content_type,
            etag,
            plain: Bytes::from_static(bytes),
            gzip,
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Serves `path` (or `index.html` for an unknown path without an extension); `None` when
/// nothing fits, so the caller answers 404.
pub fn serve(request: &Request, path: &str) -> Option<Response> {
    let table = table();
    let asset = match table.get(path) {
        Some(asset) => asset,
        None if path == "/" || !path.rsplit('/').next().unwrap_or("").contains('.') => {
            table.get("/index.html")?
        }
        None => return None,
    };
    let headers = request.headers();
    let mut builder = hyper::Response::builder()
        .header(ETAG, asset.etag.clone())
        .header(VARY, "accept-encoding")
        // Revalidate every time: the ETag makes that a cheap 304, and a new binary's assets
        // are never mixed with an old page's.
        .header(CACHE_CONTROL, "no-cache")
        .header(CONTENT_TYPE, asset.content_type);
    if headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == asset.etag.to_str().unwrap_or(""))
        })
    {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Full::new(Bytes::new()))
            .ok();
    }
    let accepts_gzip = headers
        .get(ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let body = match (&asset.gzip, accepts_gzip) {
        (Some(gzip), true) => {
            builder = builder.header(CONTENT_ENCODING, "gzip");
            gzip.clone()
        }
        _ => asset.plain.clone(),
    };
    builder.body(Full::new(body)).ok()
}
