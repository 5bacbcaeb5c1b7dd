//! The one place where errors become gRPC status codes, beside
//! `http/error.rs` and from the same [`ApiError`]: a request fails for the
//! same reasons over both protocols, and each protocol names them in its
//! own terms. [`code_name`] is what the `code` metric label holds.

use tonic::{Code, Status};

use crate::http::error::ApiError;

/// The gRPC status of an error: INVALID_ARGUMENT (the message names the
/// field), NOT_FOUND (model or version), RESOURCE_EXHAUSTED (queue full,
/// message too large), UNAVAILABLE (loading, draining), DEADLINE_EXCEEDED
/// (too slow), UNAUTHENTICATED (no valid API key), INTERNAL only when the model failed to run.
pub fn status(e: &ApiError) -> Status {
    let code = match e {
        ApiError::BadRequest(_) => Code::InvalidArgument,
        ApiError::Unauthorized(_) => Code::Unauthenticated,
        ApiError::NotFound(_) => Code::NotFound,
        ApiError::MethodNotAllowed(_) => Code::Unimplemented,
        ApiError::PayloadTooLarge(_) | ApiError::TooManyRequests(_) => Code::ResourceExhausted,
        ApiError::RequestTimeout(_) => Code::DeadlineExceeded,
        ApiError::Unavailable(_) => Code::Unavailable,
        ApiError::Internal(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::warn!(code = code_name(code), error = %e, "request failed");
    } else {
        tracing::debug!(code = code_name(code), error = %e, "request rejected");
    }
    Status::new(code, e.to_string())
}

/// The status code's name as the gRPC specification spells it (`OK`,
/// `INVALID_ARGUMENT`): the `code` label of gRPC requests.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

    #[test]
    fn each_error_has_its_grpc_code() {
        let cases = [
            (ApiError::BadRequest("input 'x'".into()), "INVALID_ARGUMENT"),
            (ApiError::NotFound("m".into()), "NOT_FOUND"),
            (ApiError::Unauthorized("key".into()), "UNAUTHENTICATED"),
            (
                ApiError::PayloadTooLarge("big".into()),
                "RESOURCE_EXHAUSTED",
            ),
            (
                ApiError::from(EngineError::QueueFull("m".into())),
                "RESOURCE_EXHAUSTED",
            ),
            (
                ApiError::from(EngineError::ShuttingDown("m".into())),
                "UNAVAILABLE",
            ),
            (ApiError::Unavailable("loading".into()), "UNAVAILABLE"),
            (ApiError::Internal("boom".into()), "INTERNAL"),
        ];
        for (e, want) in cases {
            let s = status(&e);
            assert_eq!(code_name(s.code()), want, "{e}");
            assert_eq!(s.message(), e.to_string());
        }
    }
}
