//! One error type for the whole application.
//!
//! Handlers return `Result<_, AppError>`. The error renders as the API's JSON
//! (`{"detail": …}`), and the pages' router turns the same error into an HTML page or an
//! HTMX fragment (see `web::render_errors`). Causes of 5xx are logged, never shown.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400 with the original's `detail` text.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `Could not validate credentials`, with `WWW-Authenticate: Bearer`.
    #[error("Could not validate credentials")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422 for input that never reaches the logic (FastAPI's validation errors).
    #[error("{msg}")]
    Unprocessable { loc: Vec<String>, msg: String },
    #[error("too many requests, try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// 429 with its own explanation (a cap rather than a rate).
    #[error("{detail}")]
    TooManyRequestsBecause {
        retry_after_secs: u64,
        detail: String,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// The body of every API error but 422: `{"detail": "<text>"}` (the original's texts).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "no such user exists")]
    pub detail: String,
}

/// The body of a 422: input that never reached the logic, as FastAPI lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationErrorBody {
    pub detail: Vec<ValidationError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationError {
    /// Where: `["query"]`, `["query", "limit"]`, `["body"]`, `["body", "content"]`, …
    #[schema(example = json!(["query", "limit"]))]
    pub loc: Vec<String>,
    #[schema(example = "Field required")]
    pub msg: String,
    #[serde(rename = "type")]
    #[schema(example = "value_error")]
    pub kind: String,
}

/// What a rendered error said, attached to the response so that the pages' layer can
/// render the same error as HTML.
#[derive(Debug, Clone)]
pub struct RenderedError {
    pub message: String,
}

impl AppError {
    /// 429 for a rate: the client may retry after `wait` (rounded up to whole seconds,
    /// so that a client that waits that long is let in).
    pub fn too_many(wait: std::time::Duration) -> Self {
        AppError::TooManyRequests {
            retry_after_secs: wait.as_millis().div_ceil(1000).max(1) as u64,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(detail.into())
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(detail.into())
    }
    pub fn unprocessable(loc: &[&str], msg: impl Into<String>) -> Self {
        Self::Unprocessable {
            loc: loc.iter().map(|s| s.to_string()).collect(),
            msg: msg.into(),
        }
    }

    /// The `detail` a client is shown: the text, FastAPI's list for 422, and nothing of
    /// the cause of a 500.
    pub fn detail(&self) -> serde_json::Value {
        match self {
            AppError::Internal(_) => json!("Internal Server Error"),
            AppError::Unprocessable { loc, msg } => json!([ValidationError {
                loc: loc.clone(),
                msg: msg.clone(),
                kind: "value_error".into(),
            }]),
            other => json!(other.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooManyRequests { .. } | AppError::TooManyRequestsBecause { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => crate::db::unavailable(),
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        if let AppError::Internal(cause) = &self {
            tracing::error!(error = ?cause, "request failed");
        }
        let body = json!({ "detail": self.detail() });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            AppError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::TooManyRequests { retry_after_secs }
            | AppError::TooManyRequestsBecause {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            AppError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            _ => {}
        }
        // A page shows the outage as what it means for the user: nothing was saved.
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            crate::db::UNAVAILABLE.to_string()
        } else if status.is_server_error() {
            "Something went wrong on our side. Please try again.".to_string()
        } else {
            message
        };
        response.extensions_mut().insert(RenderedError { message });
        response
    }
}

pub type AppResult<T> = Result<T, AppError>;
