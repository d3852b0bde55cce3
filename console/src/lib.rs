//! The web console: a single-page app of plain ES modules (`web/`), with its third-party
//! libraries in one committed bundle (`web/vendor/vendor.js`, built by `vendor/build.sh`), served
//! at `/` on the gateway's HTTP and HTTPS ports. Being on the same origin as `/api` and `/mqtt`
//! it needs no CORS, and being embedded in the binary it needs no front-end toolchain, no files
//! beside the gateway and nothing from the internet.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Assets;

/// What the browser may do with the console's pages: run only the console's own scripts, talk
/// only to this origin (HTTP and its WebSocket), never be framed. Styles may be inline because
/// the editor injects its theme as `<style>` elements; workers may come from `blob:` because the
/// MQTT client keeps its keep-alive timer in one (timers of background tabs are throttled).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
    connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `/` (the app's page) and `/console/...` (its modules, styles and vendored libraries), gzipped
/// for browsers that accept it.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                serve(&path, &headers)
            }),
        )
        .layer(tower_http::compression::CompressionLayer::new())
}

/// One embedded file, revalidated by its hash on every load (`no-cache` + `ETag`), so an upgraded
/// gateway never runs a stale mix of old and new modules, and an unchanged file costs a 304.
fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("the console has no file {path:?}"),
        )
            .into_response();
    };
    // Weak: the same tag names the plain and the gzipped bytes (RFC 9110, section 8.8.1).
    let etag = format!("W/\"{}\"", hex(&file.metadata.sha256_hash()));
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(file.data.into_owned()));
        if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
            response.headers_mut().insert(header::CONTENT_TYPE, mime);
        }
        response
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    for (name, value) in [
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_root_is_the_app_page_with_a_strict_policy() {
        let response = get("/", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("connect-src 'self'")
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let page = String::from_utf8(body.to_vec()).unwrap();
        assert!(page.contains("/console/app.js"), "{page}");
    }

    #[tokio::test]
    async fn modules_are_javascript_and_revalidate_by_hash() {
        let first = get("/console/vendor/vendor.js", None).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[header::CONTENT_TYPE], "text/javascript");
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_string();
        let again = get("/console/vendor/vendor.js", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = get("/console/app.js", Some(&etag)).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn the_bundle_is_gzipped_for_browsers_that_accept_it() {
        let request = Request::get("/console/vendor/vendor.js")
            .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
            .body(Body::empty())
            .unwrap();
        let response = router().oneshot(request).await.unwrap();
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        let size = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len();
        let plain = Assets::get("vendor/vendor.js").unwrap().data.len();
        assert!(size * 2 < plain, "gzipped {size} of {plain} bytes");
    }

    #[tokio::test]
    async fn an_unknown_file_is_a_plain_404() {
        let response = get("/console/nothing.js", None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = get("/console/../Cargo.toml", None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
