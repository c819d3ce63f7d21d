//! The two files a page loads besides itself, served from the binary: the pinned htmx and the
//! style sheet. No CDN, no build step; the pages work offline.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// htmx, pinned (the file as published in the `htmx.org` npm package, version 2.0.4, 0BSD).
pub(crate) const HTMX: &str = include_str!("../assets/htmx-2.0.4.min.js");
/// Where the pages load htmx from: the version in the path, so a new one is never cached stale.
pub(crate) const HTMX_PATH: &str = "/assets/htmx-2.0.4.min.js";
/// htmx's integrity hash (Subresource Integrity, SHA-384), as htmx publishes it for 2.0.4;
/// a test recomputes it from the vendored file.
pub(crate) const HTMX_INTEGRITY: &str = "sha384-HGfztofotfshcF7+8n44JQL2oJmowVChPTg48S+jvZoztPfvwD79OC/LTtG6dMp+";
/// The style sheet.
pub(crate) const STYLE: &str = include_str!("../assets/style.css");
/// Where the pages load the style sheet from.
pub(crate) const STYLE_PATH: &str = "/assets/style.css";
/// The tab's icon.
pub(crate) const ICON: &str = include_str!("../assets/icon.svg");
/// Where the pages load the icon from (browsers also ask `/favicon.ico`).
pub(crate) const ICON_PATH: &str = "/assets/icon.svg";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}

pub(crate) async fn htmx() -> Response {
    asset(HTMX, "text/javascript; charset=utf-8")
}

pub(crate) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

pub(crate) async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use sha2::Digest as _;

    #[test]
    fn the_vendored_htmx_matches_its_pinned_integrity_hash() {
        let digest = sha2::Sha384::digest(HTMX.as_bytes());
        let computed = format!("sha384-{}", base64::engine::general_purpose::STANDARD.encode(digest));
        assert_eq!(computed, HTMX_INTEGRITY);
    }
}
