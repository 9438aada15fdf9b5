//! The OpenAPI document at `/api/openapi.json` and the reference page at `/api/docs`.
//!
//! The coverage check takes the routes from the real API router (axum lists the paths a
//! router holds in its `Debug` output, the only view of them it gives) and their methods
//! from the running server (a method a path does not take is answered 405 with `Allow`
//! listing those it does), then requires each path and method in the document. A route
//! added beside `utoipa-axum` (a plain `.route(…)`, a merged axum router) fails it.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{both_backends, helpers::*, integration_test};

/// The paths the API router holds, relative to `/api`, as axum prints them.
fn router_paths() -> BTreeSet<String> {
    let printed = format!("{:?}", messenger::api::router());
    // Only the routes, not the fallback's own router printed after them.
    let routes = printed
        .split("fallback_router")
        .next()
        .expect("the router prints its routes first");
    let pattern = regex::Regex::new(r#"RouteId\(\d+\): "([^"]*)""#).unwrap();
    let paths: BTreeSet<String> = pattern
        .captures_iter(routes)
        .map(|c| c[1].to_string())
        .collect();
    assert!(
        paths.len() >= 30 && paths.contains("/users/") && paths.contains("/events"),
        "could not read the API router's paths from its Debug output (did axum change its \
         format?); found {paths:?}"
    );
    paths
}

/// A concrete URL for a path template: `{id}` → `1`, `{username}` → `nobody`.
fn concrete(path: &str) -> String {
    let parameter = regex::Regex::new(r"\{([a-z_]+)\}").unwrap();
    parameter
        .replace_all(path, |c: &regex::Captures| match &c[1] {
            "id" => "1".to_string(),
            _ => "nobody".to_string(),
        })
        .into_owned()
}

/// The methods the server takes at `path` (relative to `/api`), from the `Allow` header
/// of a 405 to a method nobody serves. HEAD is left out: axum serves it wherever GET is.
async fn served_methods(app: &TestApp, path: &str) -> BTreeSet<String> {
    let r = app
        .api
        .request(
            Method::from_bytes(b"PROPFIND").unwrap(),
            app.url(&format!("/api{}", concrete(path))),
        )
        // A bearer header passes the CSRF check, which runs before routing.
        .header("Authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "PROPFIND /api{path}"
    );
    let allow = r.headers()["allow"].to_str().unwrap().to_string();
    allow
        .split(',')
        .map(|m| m.trim().to_ascii_lowercase())
        .filter(|m| !m.is_empty() && m != "head")
        .collect()
}

async fn document(app: &TestApp) -> Value {
    let r = app
        .api
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    r.json().await.unwrap()
}

/// path → methods, as the document lists them.
fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = ["get", "post", "put", "patch", "delete"]
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .map(String::from)
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

integration_test! {
    fn the_api_router_paths_can_be_read() {
        let paths = router_paths();
        assert!(paths.contains("/friends/requests/recievers"), "{paths:?}");
    }
}

both_backends! {
    async fn every_route_the_api_serves_is_in_the_document(app) {
        let doc = document(&app).await;
        assert_eq!(doc["openapi"], "3.1.0");
        let documented = documented(&doc);
        let mut missing = Vec::new();
        for path in router_paths() {
            let served = served_methods(&app, &path).await;
            let listed = documented.get(&path).cloned().unwrap_or_default();
            for method in served.difference(&listed) {
                missing.push(format!("{} /api{path}", method.to_uppercase()));
            }
        }
        assert!(missing.is_empty(), "served but not in the document: {missing:?}");
        // And nothing documented that is not served.
        for (path, methods) in &documented {
            assert_eq!(&served_methods(&app, path).await, methods, "/api{path}");
        }
    }

    async fn the_document_keeps_the_originals_quirks_and_the_event_payloads(app) {
        let doc = document(&app).await;
        let paths = &doc["paths"];
        assert!(paths["/friends/requests/recievers"]["get"].is_object());
        let sign_in = &paths["/auth/sign-in"]["post"]["requestBody"]["content"];
        assert!(sign_in["application/x-www-form-urlencoded"].is_object(), "{sign_in}");
        // (Message may be an `allOf` of its own fields and the flattened extras.)
        let message = doc["components"]["schemas"]["Message"].to_string();
        assert!(message.contains(r#""reciever_id":{"#), "{message}");
        let stream = &paths["/events"]["get"]["responses"]["200"]["content"];
        assert!(stream["text/event-stream"].is_object(), "{stream}");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for payload in [
            "MessageEventData",
            "MessageDeletedEventData",
            "SeenEventData",
            "TypingEventData",
            "PresenceEventData",
            "FriendRequestEventData",
            "FriendshipEventData",
            "GroupChatEventData",
            "ReactionEventData",
        ] {
            assert!(schemas.contains_key(payload), "{payload} is missing");
        }
        // Every authenticated route says so, and documents its 401.
        let me = &paths["/users/"]["get"];
        assert_eq!(me["security"][0]["bearer"], serde_json::json!([]));
        assert!(me["responses"]["401"].is_object());
    }

    async fn the_reference_page_shows_the_document_with_swagger_ui_from_this_server(app) {
        let r = app.api.get(app.url("/api/docs")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let page = r.text().await.unwrap();
        assert!(page.contains(r#"data-spec-url="/api/openapi.json""#), "{page}");
        for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "api-docs.js"] {
            let at = page.find(&format!("/static/{asset}?v=")).unwrap_or_else(|| panic!("{asset} in {page}"));
            let url = &page[at..at + page[at..].find('"').unwrap()];
            let r = app.api.get(app.url(url)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{url}");
            assert!(r.bytes().await.unwrap().len() > 100, "{url} is empty");
        }
    }
}
