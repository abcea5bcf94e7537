//! A tower layer around the whole gRPC server: a request whose bytes tonic cannot decode is
//! answered INVALID_ARGUMENT, not tonic's INTERNAL. The rule itself (which status, which message)
//! is `error::decode_failures_are_invalid_argument`; this layer only applies it to every response.
//!
//! It must sit inside any layer that reports statuses (`rpc_duration`), so those see
//! the status the caller gets.

use std::task::{Context, Poll};

use futures::{TryFutureExt as _, future::MapOk};

use crate::error::decode_failures_are_invalid_argument;

/// Wraps a service in [`DecodeStatus`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeStatusLayer;

impl<S> tower::Layer<S> for DecodeStatusLayer {
    type Service = DecodeStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DecodeStatus { inner }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct DecodeStatus<S> {
    inner: S,
}

type Rewrite<B> = fn(http::Response<B>) -> http::Response<B>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for DecodeStatus<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MapOk<S::Future, Rewrite<ResBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        self.inner.call(req).map_ok(rewrite as Rewrite<ResBody>)
    }
}

fn rewrite<B>(mut res: http::Response<B>) -> http::Response<B> {
    decode_failures_are_invalid_argument(res.headers_mut());
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tower::{Layer as _, ServiceExt as _};

    use super::*;

    /// A server answering every request with these gRPC status headers (trailers-only).
    async fn through_layer(status: &'static str, message: &'static str) -> http::HeaderMap {
        let inner = tower::service_fn(move |_req: http::Request<()>| async move {
            let res = http::Response::builder()
                .header("grpc-status", status)
                .header("grpc-message", message)
                .body(())
                .unwrap();
            Ok::<_, std::convert::Infallible>(res)
        });
        let res = DecodeStatusLayer
            .layer(inner)
            .oneshot(http::Request::new(()))
            .await
            .unwrap();
        res.headers().clone()
    }

    #[tokio::test]
    async fn undecodable_requests_leave_as_invalid_argument() {
        let h = through_layer("13", "failed%20to%20decode%20Protobuf%20message:%20x").await;
        assert_eq!(h["grpc-status"], "3");
        assert_eq!(
            h["grpc-message"],
            "failed%20to%20decode%20Protobuf%20message:%20x"
        );
    }

    #[tokio::test]
    async fn other_statuses_pass_unchanged() {
        let h = through_layer("13", "internal%20error").await;
        assert_eq!(h["grpc-status"], "13");
        let h = through_layer("5", "failed%20to%20decode%20Protobuf%20message").await;
        assert_eq!(h["grpc-status"], "5");
    }
}
