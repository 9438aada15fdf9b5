//! `/api/attachments`: uploads for a later send, the files themselves (for members of the
//! conversation only, checked on every request), and cancelling an unsent upload. The
//! pages use the same routes with their session cookie.

use axum::{
    body::Body,
    extract::{DefaultBodyLimit, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use utoipa::ToSchema;
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouterExt},
    routes,
};

use super::extract::ApiPath;
use crate::{
    attachments::{kind::content_disposition, Download, Variant},
    auth::ApiCaller,
    error::{AppResult, ErrorBody},
    state::AppState,
    store::attachments::Attachment,
};

/// Files are never run as pages: no scripts, no plugins, no requests; a sandboxed
/// document even if a browser were to render one.
const FILE_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // The body limit of uploads is the application's (`startup::body_budget`), not
        // axum's default of 2 MB.
        .routes(routes!(upload).layer(DefaultBodyLimit::disable()))
        .routes(routes!(inline, cancel))
        .routes(routes!(thumbnail))
        .routes(routes!(download))
}

/// The upload form: one or more file parts, under any field name.
#[allow(dead_code)] // describes the multipart body `read_form` reads
#[derive(ToSchema)]
struct UploadForm {
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
}

const ID: &str = "the attachment's `id`";

/// Uploads files for a later send: 201 with the attachments, to be sent by their ids
/// (`attachment_ids` of `POST /messages/`) within 50 minutes; one never sent is deleted
/// after an hour. *Additive.*
#[utoipa::path(
    post,
    path = "/attachments",
    tag = "attachments",
    security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "the stored files", body = Vec<Attachment>),
        (status = 400, description = "a malformed multipart body", body = ErrorBody),
        (status = 413, description = "a file over `MAX_UPLOAD_MB`, or too many", body = ErrorBody),
        (status = 415, description = "not `multipart/form-data`", body = ErrorBody),
    ),
)]
async fn upload(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    request: Request,
) -> AppResult<(StatusCode, Json<Vec<Attachment>>)> {
    let form = state.attachments.read_form(request, &state).await?;
    if form.files.is_empty() {
        return Err(crate::error::AppError::unprocessable(
            &["body", "files"],
            "no file in the upload",
        ));
    }
    let rows = state
        .attachments
        .store_all(&state.db, me.user_id, form.files)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(rows.iter().map(|r| r.info()).collect()),
    ))
}

/// Cancels an upload not yet sent. *Additive.*
#[utoipa::path(
    delete,
    path = "/attachments/{id}",
    tag = "attachments",
    security(("bearer" = [])),
    params(("id" = String, Path, description = ID)),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "`attachment not found` (not mine, or already sent)", body = ErrorBody),
    ),
)]
async fn cancel(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiPath(id): ApiPath<String>,
) -> AppResult<StatusCode> {
    state.attachments.cancel(&state.db, me.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The file: an image inline, anything else as a download. Only the conversation's current members may (and the uploader of an
/// unsent file). *Additive.*
#[utoipa::path(
    get,
    path = "/attachments/{id}",
    tag = "attachments",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = ID),
        ("If-None-Match" = Option<String>, Header, description = "an `ETag` received before"),
    ),
    responses(
        (status = 200, description = "the bytes, with `Content-Type`, `Content-Disposition` and `ETag`", content_type = "*/*"),
        (status = 304, description = "unchanged since the `ETag` sent"),
        (status = 404, description = "`attachment not found` (or not mine to see; no thumbnail for a file)", body = ErrorBody),
    ),
)]
async fn inline(
    state: State<AppState>,
    me: ApiCaller,
    id: ApiPath<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    serve(state, me, id, headers, Variant::Inline).await
}

/// An image's thumbnail. Only the conversation's current members may (and the uploader of an
/// unsent file). *Additive.*
#[utoipa::path(
    get,
    path = "/attachments/{id}/thumbnail",
    tag = "attachments",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = ID),
        ("If-None-Match" = Option<String>, Header, description = "an `ETag` received before"),
    ),
    responses(
        (status = 200, description = "the bytes, with `Content-Type`, `Content-Disposition` and `ETag`", content_type = "*/*"),
        (status = 304, description = "unchanged since the `ETag` sent"),
        (status = 404, description = "`attachment not found` (or not mine to see; no thumbnail for a file)", body = ErrorBody),
    ),
)]
async fn thumbnail(
    state: State<AppState>,
    me: ApiCaller,
    id: ApiPath<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    serve(state, me, id, headers, Variant::Thumbnail).await
}

/// The file as a download, whatever its kind. Only the conversation's current members may (and the uploader of an
/// unsent file). *Additive.*
#[utoipa::path(
    get,
    path = "/attachments/{id}/download",
    tag = "attachments",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = ID),
        ("If-None-Match" = Option<String>, Header, description = "an `ETag` received before"),
    ),
    responses(
        (status = 200, description = "the bytes, with `Content-Type`, `Content-Disposition` and `ETag`", content_type = "*/*"),
        (status = 304, description = "unchanged since the `ETag` sent"),
        (status = 404, description = "`attachment not found` (or not mine to see; no thumbnail for a file)", body = ErrorBody),
    ),
)]
async fn download(
    state: State<AppState>,
    me: ApiCaller,
    id: ApiPath<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    serve(state, me, id, headers, Variant::Download).await
}

async fn serve(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    variant: Variant,
) -> AppResult<Response> {
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let download = state
        .attachments
        .open(&state.db, me.user_id, &id, variant, if_none_match)
        .await?;
    Ok(file_response(download))
}

fn file_response(d: Download) -> Response {
    let mut response = match d.blob {
        None => StatusCode::NOT_MODIFIED.into_response(),
        Some(blob) => {
            let mut r = Body::from_stream(blob.body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(blob.len));
            r
        }
    };
    let h = response.headers_mut();
    let value = |v: &str| {
        HeaderValue::from_str(v)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
    };
    h.insert(header::CONTENT_TYPE, value(&d.content_type));
    if let Ok(v) = HeaderValue::from_str(&content_disposition(d.disposition, &d.row.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // The content never changes, but access may: the browser keeps a copy and asks again
    // every time (a cheap 304 when still allowed).
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    h.insert(header::ETAG, value(&d.etag));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}
