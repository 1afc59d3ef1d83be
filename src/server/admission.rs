//! Admission of requests that are still arriving: a server-wide bound on streams whose request
//! body has not arrived whole. Such a stream costs memory (HTTP/2 stream state, the task serving
//! it, tonic's 8 KiB decode buffer) while it waits, and a client that sends the headers and part
//! of a message, then stops, can hold that memory on every stream of every connection it opens.
//!
//! Each stream takes one of `server.max_unfinished_requests` places when it arrives and gives it
//! back as soon as its body ends (or the stream is dropped). A stream whose body has arrived whole
//! waits for nothing, so it needs no place. When none is free, a new stream is served if its body
//! has already arrived whole, or arrives whole within [`ARRIVAL_GRACE`] (clients often write the
//! headers and the message separately, and a health check must not fail for that), or if a place
//! frees up meanwhile; otherwise it is refused with `RESOURCE_EXHAUSTED`
//! (`TOO_MANY_UNFINISHED_REQUESTS`, `RetryInfo`), answered from a prepared header block without
//! reaching any service. While it waits it holds no place and no decode buffer (only what the
//! client sent, at most [`ARRIVAL_GRACE_BYTES`]), and the grace bounds it in time.
//!
//! This layer only counts and waits briefly: it never reads a body that is still arriving once
//! it has let the stream through, and it never decodes anything.

use std::{
    collections::VecDeque,
    future::Future,
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
use tower::ServiceExt as _;

use crate::{error::ERROR_DOMAIN, telemetry::Metrics};

/// The `ErrorInfo` reason of a refused stream.
pub const REFUSED_REASON: &str = "TOO_MANY_UNFINISHED_REQUESTS";
/// How long a stream that found no place may take to arrive whole before it is refused.
const ARRIVAL_GRACE: Duration = Duration::from_millis(20);
/// The most a stream may send during the grace: requests to this gateway are small, and one that
/// big and still arriving while every place is taken is not a call that was merely split.
const ARRIVAL_GRACE_BYTES: usize = 64 * 1024;
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

type Waiting<E> = Pin<Box<dyn Future<Output = Result<http::Response<Body>, E>> + Send>>;

impl<S> tower::Service<http::Request<Body>> for UnfinishedRequests<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Waiting<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if request.body().is_end_stream() {
            return Either::Left(self.inner.call(request));
        }
        if let Ok(place) = self.shared.places.clone().try_acquire_owned() {
            let request = request.map(|body| Body::new(Admitted::holding(body, place)));
            return Either::Left(self.inner.call(request));
        }
        // No place: what has already arrived is read without waiting (the waker does nothing,
        // and the body is polled again with a real one below if it is not whole yet).
        let mut arrived = Arrived::default();
        let mut nothing_waits = Context::from_waker(Waker::noop());
        match arrived.read(request.body_mut(), &mut nothing_waits) {
            Poll::Ready(Ok(())) => {
                let request = request.map(|_| Body::new(Admitted::whole(arrived)));
                return Either::Left(self.inner.call(request));
            }
            Poll::Ready(Err(())) => {
                let refusal = self.shared.refuse();
                return Either::Right(Box::pin(std::future::ready(Ok(refusal))));
            }
            Poll::Pending => {}
        }
        // The one made ready goes with the request; a clone stays for the next call.
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let shared = self.shared.clone();
        Either::Right(Box::pin(async move {
            let (parts, mut body) = request.into_parts();
            let waited = tokio::time::timeout(ARRIVAL_GRACE, async {
                tokio::select! {
                    whole = std::future::poll_fn(|cx| arrived.read(&mut body, cx)) => {
                        whole.ok().map(|()| None)
                    }
                    place = shared.places.clone().acquire_owned() => place.ok().map(Some),
                }
            })
            .await;
            let admitted = match waited {
                Ok(Some(None)) => Admitted::whole(arrived),
                Ok(Some(Some(place))) => Admitted {
                    arrived,
                    rest: Some(body),
                    place: Some(place),
                },
                Ok(None) | Err(_) => return Ok(shared.refuse()),
            };
            inner
                .oneshot(http::Request::from_parts(parts, Body::new(admitted)))
                .await
        }))
    }
}

impl Shared {
    /// Counts a refusal, logs now and then, and answers it.
    fn refuse(&self) -> http::Response<Body> {
        self.metrics.unfinished_request_refused();
        // Never wait for the log's lock on this path: a refusal that finds it taken is counted
        // by the metric alone.
        if let Ok(mut log) = self.log.try_lock() {
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
        let mut response = http::Response::new(Body::empty());
        *response.headers_mut() = self.refusal.clone();
        response
    }
}

/// The frames of a body read so far, while it had no place.
#[derive(Default)]
struct Arrived {
    frames: VecDeque<Frame<Bytes>>,
    bytes: usize,
}

impl Arrived {
    /// Reads frames until the body ends (`Ready(Ok)`), fails or grows past
    /// [`ARRIVAL_GRACE_BYTES`] (`Ready(Err)`), or has nothing more yet (`Pending`).
    fn read(&mut self, body: &mut Body, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        loop {
            match std::task::ready!(Pin::new(&mut *body).poll_frame(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(frame)) => {
                    self.bytes += frame.data_ref().map_or(0, Bytes::len);
                    if self.bytes > ARRIVAL_GRACE_BYTES {
                        return Poll::Ready(Err(()));
                    }
                    self.frames.push_back(frame);
                }
                Some(Err(_)) => return Poll::Ready(Err(())),
            }
        }
    }
}

/// A request body let through: the frames read while it waited, then the rest of it, holding a
/// place until it ends.
struct Admitted {
    arrived: Arrived,
    rest: Option<Body>,
    place: Option<OwnedSemaphorePermit>,
}

impl Admitted {
    fn holding(body: Body, place: OwnedSemaphorePermit) -> Self {
        Self {
            arrived: Arrived::default(),
            rest: Some(body),
            place: Some(place),
        }
    }

    /// A body that arrived whole, replayed; it needs no place.
    fn whole(arrived: Arrived) -> Self {
        Self {
            arrived,
            rest: None,
            place: None,
        }
    }
}

impl http_body::Body for Admitted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if let Some(frame) = this.arrived.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *rest).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => rest.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            this.place = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.arrived.frames.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.rest, self.arrived.frames.is_empty()) {
            (Some(rest), true) => rest.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::StreamExt as _;
    use tower::{Layer as _, Service as _};

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

    /// Three bytes now and the other two after `after`, with the end of the body.
    fn split(after: Duration) -> Body {
        let rest = futures_util::stream::once(async move {
            tokio::time::sleep(after).await;
            chunk(&[0, 0])
        });
        Body::new(StreamBody(Box::pin(
            futures_util::stream::iter([chunk(&[0, 0, 0])]).chain(rest),
        )))
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
    > + Clone
    + Send
    + 'static {
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

    #[tokio::test(start_paused = true)]
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

        let began = tokio::time::Instant::now();
        let refused = service
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(half_sent()))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&refused), Some("8"));
        assert_eq!(
            began.elapsed(),
            ARRIVAL_GRACE,
            "refused once the grace is over"
        );
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

    #[tokio::test(start_paused = true)]
    async fn with_no_place_free_a_request_split_in_two_is_served_if_it_arrives_whole_in_time() {
        let layer = UnfinishedRequestsLayer::new(1, Arc::new(Metrics::new()));
        let places = layer.shared.places.clone();
        let mut service = layer.layer(reader(places.clone()));
        let holding = service
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(half_sent()));
        let _holding = tokio::spawn(holding);

        let in_time = service
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(split(ARRIVAL_GRACE / 2)))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&in_time), None);
        assert_eq!(in_time.headers()["length"], "5");
        assert_eq!(in_time.headers()["free"], "0", "it took no place");

        let late = service
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(split(ARRIVAL_GRACE * 2)))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&late), Some("8"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_place_freed_during_the_grace_goes_to_the_stream_waiting_for_one() {
        let layer = UnfinishedRequestsLayer::new(1, Arc::new(Metrics::new()));
        let places = layer.shared.places.clone();
        let mut service = layer.layer(reader(places.clone()));
        let holding = tokio::spawn(
            service
                .ready()
                .await
                .expect("ready")
                .call(http::Request::new(half_sent())),
        );
        let waiting = service
            .ready()
            .await
            .expect("ready")
            .call(http::Request::new(split(ARRIVAL_GRACE * 3)));
        let waiting = tokio::spawn(waiting);
        tokio::time::sleep(ARRIVAL_GRACE / 2).await;
        holding.abort();
        let served = waiting.await.expect("task").expect("answer");
        assert_eq!(grpc_status(&served), None, "served, not refused");
        assert_eq!(served.headers()["length"], "5");
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
