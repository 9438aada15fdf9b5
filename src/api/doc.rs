//! The API's OpenAPI 3.1 document and its reference page.
//!
//! The document is not written by hand: each handler carries `#[utoipa::path]` next to
//! its code, the schemas are derived from the types it reads and answers, and
//! `utoipa-axum` adds a route to the router and to the document in the same call (see
//! `api::routes`). What every route shares (who may call it, the errors any input or
//! the database can cause) is added here once, by [`SharedResponses`].

use std::sync::LazyLock;

use axum::{
    http::{header, HeaderValue},
    response::{Html, IntoResponse, Response},
};
use utoipa::{
    openapi::{
        path::{Operation, PathItem},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder,
    },
    Modify, OpenApi,
};

use crate::error::{ErrorBody, ValidationErrorBody};

/// The document's fixed parts; the paths and their schemas come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "messenger",
        description = include_str!("doc_intro.md"),
        license(name = "MIT"),
    ),
    servers((url = "/api", description = "this server")),
    components(schemas(ErrorBody, ValidationErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-up, sign-in and tickets: the original's OAuth2 password form (`application/x-www-form-urlencoded`, `username` is the email)"),
        (name = "account", description = "Personal API tokens, \"download my data\", deleting the account"),
        (name = "users", description = "Who I am; finding others"),
        (name = "friends", description = "Friend requests and lists (paths as the original spelt them)"),
        (name = "messages", description = "Direct and group messages, read marks, typing"),
        (name = "group chats", description = "Groups and their members"),
        (name = "attachments", description = "Files sent with messages"),
        (name = "events", description = "The live event stream (server-sent events)"),
        (name = "documentation", description = "This document and its reference page"),
    )
)]
pub struct BaseDocument;

/// The name of the security scheme every authenticated route names.
pub const BEARER: &str = "bearer";

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT or mpat_…")
            .description(Some(
                "An access token from `POST /auth/sign-in` (a JWT, 30 minutes), or a personal \
                 API token (`mpat_…`, made on /profile or with `POST /tokens`). The pages' \
                 session cookie is accepted too (with its CSRF token on writes).",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// Completes the document once every route is in it.
pub fn finish(mut doc: Document) -> Document {
    SharedResponses.modify(&mut doc);
    doc
}

/// Errors any route may answer for reasons of its own kind rather than its logic, added
/// to every operation that can meet them so each handler lists only its own:
/// 401 and 403 where a token is needed, 422 and 413 where there is input, 503 while the
/// database is unreachable.
struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, doc: &mut Document) {
        for (path, item) in doc.paths.paths.iter_mut() {
            if path.starts_with("/openapi.json") || path.starts_with("/docs") {
                continue;
            }
            for (method, operation) in operations(item) {
                add_shared(method, operation);
            }
        }
    }
}

pub fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("post", item.post.as_mut()),
        ("put", item.put.as_mut()),
        ("patch", item.patch.as_mut()),
        ("delete", item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
}

fn add_shared(method: &str, operation: &mut Operation) {
    let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_input = operation.request_body.is_some()
        || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let mut add = |status: &str, description: &str, validation: bool| {
        let schema = if validation {
            "ValidationErrorBody"
        } else {
            "ErrorBody"
        };
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description, schema));
    };
    if authenticated {
        add(
            "401",
            "`Could not validate credentials`: no token, or one malformed, expired, revoked \
             or of a deleted account (with `WWW-Authenticate: Bearer`)",
            false,
        );
        if method != "get" {
            add("403", "a read-only personal token may only read", false);
        }
    }
    if has_input {
        add(
            "422",
            "input that never reached the logic: a missing or mistyped parameter, a body \
             that is not what the route reads",
            true,
        );
    }
    if operation.request_body.is_some() {
        add("413", "`request body too large`", false);
    }
    add(
        "503",
        "the database cannot be reached right now: nothing was changed; retry after \
         `Retry-After` seconds",
        false,
    );
}

fn error_response(description: &str, schema: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build(),
        )
        .build()
        .into()
}

/// A success that is only news: `{"detail": "<what happened>"}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Notice {
    #[schema(example = "password changed")]
    pub detail: &'static str,
}

impl Notice {
    pub fn json(detail: &'static str) -> axum::Json<Self> {
        axum::Json(Self { detail })
    }
}

/// JSON `null`: the original's answer to an action that has no result.
pub struct Null;

impl utoipa::PartialSchema for Null {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Null)
            .description(Some("null"))
            .into()
    }
}

impl utoipa::ToSchema for Null {}

static DOCUMENT_JSON: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(&super::openapi()).expect("the OpenAPI document serializes")
});

/// This document, as JSON.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "documentation",
    responses((status = 200, description = "the OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT_JSON.as_str(),
    )
        .into_response()
}

/// Swagger UI runs from our own copies of its files (`build.rs` fetches them from npm)
/// and needs inline styles; scripts stay our own.
const DOCS_PAGE_CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A readable reference of this document (Swagger UI).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "documentation",
    responses((status = 200, description = "an HTML page showing this document", content_type = "text/html")),
)]
pub async fn docs_page() -> Response {
    let page = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>messenger API reference</title>
<link rel="stylesheet" href="{css}">
</head>
<body>
<div id="swagger-ui" data-spec-url="/api/openapi.json"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"#,
        css = crate::assets::url("swagger-ui.css"),
        bundle = crate::assets::url("swagger-ui-bundle.js"),
        init = crate::assets::url("api-docs.js"),
    );
    let mut response = Html(page).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_PAGE_CSP),
    );
    response
}
