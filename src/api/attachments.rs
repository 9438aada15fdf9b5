//! `/api/attachments`: uploads for a later send, the files themselves (for members of the
//! conversation only, checked on every request), and cancelling an unsent upload. The
//! pages use the same routes with their session cookie.

use axum::{
    body::Body,
    extract::{DefaultBodyLimit, Path, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};

use crate::{
    attachments::{kind::content_disposition, Download, Variant},
    auth::ApiCaller,
    error::AppResult,
    state::AppState,
    store::attachments::Attachment,
};

/// Files are never run as pages: no scripts, no plugins, no requests; a sandboxed
/// document even if a browser were to render one.
const FILE_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox";

pub fn router() -> Router<AppState> {
    Router::new()
        // The body limit of uploads is the application's (`startup::body_budget`), not
        // axum's default of 2 MB.
        .route(
            "/attachments",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/attachments/{id}", get(inline).delete(cancel))
        .route("/attachments/{id}/thumbnail", get(thumbnail))
        .route("/attachments/{id}/download", get(download))
}

/// `POST /api/attachments`: multipart, one or more file parts (any field name). Answers
/// 201 with the attachments, to be sent by their ids within 50 minutes.
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

async fn cancel(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    state.attachments.cancel(&state.db, me.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn inline(
    state: State<AppState>,
    me: ApiCaller,
    id: Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    serve(state, me, id, headers, Variant::Inline).await
}

async fn thumbnail(
    state: State<AppState>,
    me: ApiCaller,
    id: Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    serve(state, me, id, headers, Variant::Thumbnail).await
}

async fn download(
    state: State<AppState>,
    me: ApiCaller,
    id: Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    serve(state, me, id, headers, Variant::Download).await
}

async fn serve(
    State(state): State<AppState>,
    ApiCaller(me): ApiCaller,
    Path(id): Path<String>,
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
