//! Admission of requests that are still arriving: a server-wide bound on streams whose request
//! body has not arrived whole. Such a stream costs memory (HTTP/2 stream state, the task serving
//! it, tonic's decode buffer) while it waits, and a client that sends the headers and part of a
//! message, then stops, can hold that memory on every stream of every connection it opens.
//!
//! Each stream takes one of `server.max_unfinished_requests` places when it arrives and gives it
//! back as soon as its body ends (or the stream is dropped). A stream whose body has already
//! arrived whole waits for nothing, so it needs no place: when none is free, what has already
//! arrived is read without waiting, and only a stream still missing part of its body is refused,
//! at once, with `RESOURCE_EXHAUSTED` (`TOO_MANY_UNFINISHED_REQUESTS`, `RetryInfo`). So under a
//! flood of half-sent streams, health checks and ordinary calls (whose clients send the headers
//! and the message together) still get through, and the flood's extra streams are answered from
//! a prepared header block without reaching any service.
//!
//! This layer must not wait for a body itself or read one that has not arrived: it only counts.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::Either;
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status, body::Body};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::{error::ERROR_DOMAIN, telemetry::Metrics};

/// The `ErrorInfo` reason of a refused stream.
pub const REFUSED_REASON: &str = "TOO_MANY_UNFINISHED_REQUESTS";
/// How soon a refused caller may try again (`RetryInfo`).
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// At most one log line per this long while streams are being refused.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The bound on unfinished requests, shared by every connection. Cloning is shallow.
#[derive(Debug, Clone)]
pub(super) struct UnfinishedRequestsLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    places: Arc<Semaphore>,
    /// The refusal's headers (a trailers-only gRPC answer), encoded once.
    refusal: http::HeaderMap,
    metrics: Arc<Metrics>,
    /// When the last "refusing" line was logged, and how many refusals since.
    log: Mutex<(Option<tokio::time::Instant>, u64)>,
}

impl UnfinishedRequestsLayer {
    pub(super) fn new(max_unfinished_requests: usize, metrics: Arc<Metrics>) -> Self {
        let mut details = ErrorDetails::new();
        details.set_error_info(
            REFUSED_REASON,
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        details.set_retry_info(Some(RETRY_AFTER));
        let refusal = Status::with_error_details(
            Code::ResourceExhausted,
            "the gateway holds too many requests that are still arriving; send the request whole, or retry shortly",
            details,
        )
        .into_http::<Body>()
        .into_parts()
        .0
        .headers;
        Self {
            shared: Arc::new(Shared {
                places: Arc::new(Semaphore::new(max_unfinished_requests)),
                refusal,
                metrics,
                log: Mutex::new((None, 0)),
            }),
        }
    }
}

impl<S> tower::Layer<S> for UnfinishedRequestsLayer {
    type Service = UnfinishedRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UnfinishedRequests {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`UnfinishedRequestsLayer`].
#[derive(Debug, Clone)]
pub(super) struct UnfinishedRequests<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> tower::Service<http::Request<Body>> for UnfinishedRequests<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, std::future::Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if request.body().is_end_stream() {
            return Either::Left(self.inner.call(request));
        }
        if let Ok(place) = self.shared.places.clone().try_acquire_owned() {
            let request = request.map(|body| {
                Body::new(Arriving {
                    body,
                    place: Some(place),
                })
            });
            return Either::Left(self.inner.call(request));
        }
        match arrived_whole(request.body_mut()) {
            Some(frames) => {
                let request = request.map(|_| Body::new(Arrived(frames)));
                Either::Left(self.inner.call(request))
            }
            None => {
                self.shared.refused();
                let mut response = http::Response::new(Body::empty());
                *response.headers_mut() = self.shared.refusal.clone();
                Either::Right(std::future::ready(Ok(response)))
            }
        }
    }
}

impl Shared {
    fn refused(&self) {
        self.metrics.unfinished_request_refused();
        // Never wait for the log's lock on this path: a refusal that finds it taken is counted
        // by the metric alone.
        let Ok(mut log) = self.log.try_lock() else {
            return;
        };
        log.1 += 1;
        let now = tokio::time::Instant::now();
        if log
            .0
            .is_none_or(|last| now.duration_since(last) >= LOG_EVERY)
        {
            tracing::warn!(
                refused = log.1,
                "refusing new streams: server.max_unfinished_requests requests are still arriving"
            );
            *log = (Some(now), 0);
        }
    }
}

/// The frames of a body that has already arrived whole, read without waiting; `None` when part
/// of it is still to come (or it failed). What is read is at most what the client's flow-control
/// window let it send.
fn arrived_whole(body: &mut Body) -> Option<VecDeque<Frame<Bytes>>> {
    // A waker that does nothing: this only asks what is already here, and a body that is not
    // whole is dropped, never polled again.
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = VecDeque::new();
    loop {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(None) => return Some(frames),
            Poll::Ready(Some(Ok(frame))) => frames.push_back(frame),
            Poll::Ready(Some(Err(_))) | Poll::Pending => return None,
        }
    }
}

/// A request body that holds a place until it ends.
struct Arriving {
    body: Body,
    place: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for Arriving {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            this.place = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that had arrived whole: its frames, replayed.
struct Arrived(VecDeque<Frame<Bytes>>);

impl http_body::Body for Arrived {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::StreamExt as _;
    use tower::{Layer as _, Service as _, ServiceExt as _};

    use super::*;

    /// A body made of a stream of frames.
    struct StreamBody(
        Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Status>> + Send>>,
    );

    impl http_body::Body for StreamBody {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            self.0.as_mut().poll_next(cx)
        }
    }

    fn chunk(bytes: &'static [u8]) -> Result<Frame<Bytes>, Status> {
        Ok(Frame::data(Bytes::from_static(bytes)))
    }

    /// Three of the five bytes of a gRPC message prefix, then nothing ever again.
    fn half_sent() -> Body {
        let chunks =
            futures_util::stream::iter([chunk(&[0, 0, 0])]).chain(futures_util::stream::pending());
        Body::new(StreamBody(Box::pin(chunks)))
    }

    fn whole(bytes: &'static [u8]) -> Body {
        Body::new(StreamBody(Box::pin(futures_util::stream::iter([chunk(
            bytes,
        )]))))
    }

    /// A handler that reads the whole body, then answers with its length and with how many
    /// places were free once it had read it.
    fn reader(
        places: Arc<Semaphore>,
    ) -> impl tower::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future = impl Future<Output = Result<http::Response<Body>, Infallible>> + Send,
    > + Clone {
        tower::service_fn(move |request: http::Request<Body>| {
            let places = places.clone();
            async move {
                let mut body = request.into_body();
                let mut length = 0;
                while let Some(frame) =
                    std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
                {
                    if let Ok(data) = frame.expect("frame").into_data() {
                        length += data.len();
                    }
                }
                let mut response = http::Response::new(Body::empty());
                response.headers_mut().insert("length", length.into());
                response
                    .headers_mut()
                    .insert("free", places.available_permits().into());
                Ok(response)
            }
        })
    }

    fn grpc_status(response: &http::Response<Body>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_half_sent_request_past_the_bound_is_refused_and_a_whole_one_is_served() {
        let layer = UnfinishedRequestsLayer::new(1, Arc::new(Metrics::new()));
        let places = layer.shared.places.clone();
        let mut service = layer.layer(reader(places.clone()));
        // The one place goes to a request that never finishes; its handler waits for ever.
        let holding = service
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(half_sent()));
        let holding = tokio::spawn(holding);
        assert_eq!(places.available_permits(), 0);

        let refused = service
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(half_sent()))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&refused), Some("8"));
        let status = Status::from_header_map(refused.headers()).expect("status");
        assert_eq!(
            status.get_details_error_info().expect("ErrorInfo").reason,
            REFUSED_REASON
        );
        assert!(status.get_details_retry_info().is_some());

        let served = service
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(whole(b"hello")))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&served), None);
        assert_eq!(served.headers()["length"], "5");

        // The place comes back when the unfinished request goes away.
        holding.abort();
        let _ = holding.await;
        assert_eq!(places.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_place_is_given_back_as_soon_as_the_body_ends() {
        let layer = UnfinishedRequestsLayer::new(1, Arc::new(Metrics::new()));
        let places = layer.shared.places.clone();
        let mut service = layer.layer(reader(places.clone()));
        for _ in 0..3 {
            let served = service
                .ready()
                .await
                .expect("ready")
                .call(http::Request::new(whole(b"abc")))
                .await
                .expect("answer");
            assert_eq!(served.headers()["length"], "3");
            // Free while the handler still ran: the body had ended.
            assert_eq!(served.headers()["free"], "1");
        }
    }
}
