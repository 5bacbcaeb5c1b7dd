//! The one place where errors become HTTP status codes and JSON bodies:
//! [`ApiError::status`] decides the code of every error response, and the
//! OpenAPI document's error responses ([`error_responses!`]) are built from
//! it too, so the two cannot disagree.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

use crate::auth::Refusal;
use crate::engine::EngineError;
use crate::protocol::BadRequest;

/// The body of every error response: `{"error": "..."}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the offending field or input.
    pub error: String,
}

/// An error a handler returns; its variant decides the status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<BadRequest> for ApiError {
    fn from(e: BadRequest) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::Unauthorized(r.message().to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::BadRequest(b) => ApiError::BadRequest(b.0),
            EngineError::QueueFull(_) => ApiError::TooManyRequests(e.to_string()),
            EngineError::ShuttingDown(_) => ApiError::Unavailable(e.to_string()),
            EngineError::Inference(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request rejected");
        }
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Bearer realm="modelship""#),
            );
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

/// One documented error response: `description`, with an [`ErrorBody`].
pub fn error_response(description: &str) -> RefOr<ApiResponse> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
        .into()
}

/// The OpenAPI responses of the given errors, keyed by [`ApiError::status`].
pub fn documented(errors: &[(ApiError, &str)]) -> BTreeMap<String, RefOr<ApiResponse>> {
    errors
        .iter()
        .map(|(e, description)| (e.status().as_u16().to_string(), error_response(description)))
        .collect()
}

/// Declares a set of error responses of a route for the OpenAPI document
/// (`responses(InferErrors)` in `#[utoipa::path]`): each is an [`ApiError`]
/// variant and why it happens there; its status code is the variant's.
macro_rules! error_responses {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $description:literal),* $(,)? }) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::http::error::documented(&[
                    $(($crate::http::error::ApiError::$variant(String::new()), $description)),*
                ])
            }
        }
    };
}

error_responses!(
    /// What an inference route can answer besides its outputs.
    InferErrors {
        Unauthorized => "No valid API key (only when the server has --api-keys-dir)",
        BadRequest => "Invalid input: malformed JSON, unknown input or output, wrong datatype or shape",
        NotFound => "No such model or version",
        RequestTimeout => "The client sent the body too slowly",
        PayloadTooLarge => "The body is larger than the limit",
        TooManyRequests => "The model's queue is full; retry later",
        Internal => "The model failed to run",
        Unavailable => "The model is not ready, or the server is shutting down",
    }
);

error_responses!(
    /// A route about one model, by name.
    ModelErrors {
        Unauthorized => "No valid API key (only when the server has --api-keys-dir)",
        NotFound => "No such model",
        Unavailable => "The model is still loading, failed to load, or the server is shutting down",
    }
);

error_responses!(
    /// A route about one version of a model.
    VersionErrors {
        Unauthorized => "No valid API key (only when the server has --api-keys-dir)",
        NotFound => "No such model or version",
        Unavailable => "The model is still loading, failed to load, or the server is shutting down",
    }
);

error_responses!(
    /// A readiness route: only an unknown model is an error (not ready is a 503 with the readiness body).
    UnknownModel { NotFound => "No such model" }
);

error_responses!(
    /// A readiness route of one version.
    UnknownVersion { NotFound => "No such model or version" }
);

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::IntoResponses;

    #[test]
    fn documented_codes_are_the_codes_sent() {
        let codes: Vec<String> = InferErrors::responses().into_keys().collect();
        assert_eq!(
            codes,
            ["400", "401", "404", "408", "413", "429", "500", "503"]
        );
        let sent = ApiError::TooManyRequests("full".into()).into_response();
        assert_eq!(sent.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(sent.headers()["retry-after"], "1");
        let refused = ApiError::from(Refusal::Wrong).into_response();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.headers()["www-authenticate"],
            r#"Bearer realm="modelship""#
        );
    }
}
