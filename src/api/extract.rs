//! The API's input extractors: malformed input answers 422 with FastAPI-style details,
//! through the one `AppError`.

use axum::extract::{
    rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection},
    FromRequest, FromRequestParts,
};

use crate::error::AppError;

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters: an id that is not a number, or out of range, answers 422 like any
/// other malformed input (axum's own rejection is a bare 400).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(pub T);

#[derive(FromRequest)]
#[from_request(via(axum::Form), rejection(AppError))]
pub struct ApiForm<T>(pub T);

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::unprocessable(&["query"], r.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        AppError::unprocessable(&["path"], r.body_text())
    }
}

impl From<FormRejection> for AppError {
    fn from(r: FormRejection) -> Self {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            return AppError::PayloadTooLarge("request body too large".into());
        }
        AppError::unprocessable(&["body"], r.body_text())
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            return AppError::PayloadTooLarge("request body too large".into());
        }
        AppError::unprocessable(&["body"], r.body_text())
    }
}

/// `limit` and `cursor` of every list: `limit` is required and must be above 0.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many to answer: required, above 0; more than 100 answers 100.
    #[param(required = true, minimum = 1, value_type = i64)]
    pub limit: Option<i64>,
    /// A `next_page` or `prev_page` of an earlier answer; none for the first page.
    #[param(example = "next___42")]
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn parse(&self) -> Result<(u32, Option<crate::domain::cursor::Cursor>), AppError> {
        let limit = match self.limit {
            Some(l) if l > 0 => l.min(100) as u32,
            Some(_) => {
                return Err(AppError::unprocessable(
                    &["query", "limit"],
                    "Input should be greater than 0",
                ))
            }
            None => {
                return Err(AppError::unprocessable(
                    &["query", "limit"],
                    "Field required",
                ))
            }
        };
        let cursor = match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(raw) => {
                Some(crate::domain::cursor::Cursor::parse(raw).map_err(AppError::bad_request)?)
            }
            None => None,
        };
        Ok((limit, cursor))
    }
}
