//! The API's one error shape, and the extractors that answer in it.
//!
//! Every failure a client sees is `{"error": CODE, "message": SENTENCE}` with a fitting status:
//! a stable machine code and a sentence for people. Store errors are logged in full and answered
//! with what the client may know (not found, taken, invalid): never SQL, a URL or a hash.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dexlab_store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// The API's one error shape: a stable machine code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// A stable code: `unauthenticated`, `token_expired`, `token_invalid`, `token_revoked`,
    /// `forbidden`, `not_found`, `invalid_request`, `conflict`, `rate_limited`, …
    #[schema(example = "not_found")]
    pub error: &'static str,
    /// What was wrong, for people.
    pub message: String,
    /// Seconds to wait before trying again (429 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthenticated(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, error, message)
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; try again in {} s", retry_after.max(1)),
            )
        }
    }

    /// A failure of ours: the detail goes to the log, the client learns only that it happened.
    pub fn internal(context: &str, detail: &dyn std::fmt::Display) -> Self {
        tracing::error!("{context}: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request; the failure is in its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.retry_after;
        let unauthenticated = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, Json(self)).into_response();
        if let Some(s) = retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dexlab\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound { target, .. } => {
                ApiError::not_found(format!("{target} not found"))
            }
            StoreError::AccountTaken { what, value, .. } => {
                ApiError::conflict(format!("{what} {value:?} is taken"))
            }
            StoreError::InvalidName {
                what, name, reason, ..
            } => ApiError::bad_request(format!("{what} name {name:?} is not valid: {reason}")),
            StoreError::InvalidEmail { email, reason, .. } => {
                ApiError::bad_request(format!("e-mail address {email:?} is not valid: {reason}"))
            }
            StoreError::ModelRetired { .. }
            | StoreError::NothingToRollBack { .. }
            | StoreError::VersionContention { .. } => ApiError::conflict(e.to_string()),
            _ => ApiError::internal("store", &e),
        }
    }
}

impl From<dexlab_lab::LabError> for ApiError {
    fn from(e: dexlab_lab::LabError) -> Self {
        match e {
            dexlab_lab::LabError::Store(s) => (*s).into(),
            dexlab_lab::LabError::NoExperiment(name) => {
                ApiError::not_found(format!("no experiment {name:?}"))
            }
            dexlab_lab::LabError::NoModel { name_or_id, .. } => {
                ApiError::not_found(format!("no model {name_or_id:?}"))
            }
            dexlab_lab::LabError::Refused(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", m)
            }
            other => ApiError::internal("lab", &other),
        }
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s naming what was wrong.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        _ => "invalid_request",
    };
    // axum's text names the field and the line/column, never server internals.
    ApiError::new(status, code, r.body_text())
}

/// `Query<T>` whose rejections are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r: QueryRejection| ApiError::bad_request(r.body_text()))
    }
}

/// `Path<T>` whose rejections are [`ApiError`]s.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r: PathRejection| ApiError::bad_request(r.body_text()))
    }
}
