//! The accept loop's guards: a cap on concurrent connections (each holds a place until it
//! closes, and past the cap the server stops accepting, so a flood of idle connections cannot
//! take every file descriptor), and a pause after an accept failed for lack of resources.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long accepting pauses after the process ran out of file descriptors (or memory for a
/// socket): tonic retries a failed accept at once, which would spin a core while nothing can be
/// accepted anyway.
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Accepted connections, with a pause after an accept failed for lack of resources.
pub(super) struct PausingOnExhaustion<S> {
    inner: S,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Whether the last accept failed for lack of resources (so it is logged once, not per try).
    exhausted: bool,
}

impl<S> PausingOnExhaustion<S> {
    pub(super) fn new(inner: S) -> Self {
        Self {
            inner,
            pause: None,
            exhausted: false,
        }
    }
}

/// Whether an accept failed because the process or the system is out of descriptors or memory.
fn out_of_resources(error: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
}

impl<S, T> tokio_stream::Stream for PausingOnExhaustion<S>
where
    S: tokio_stream::Stream<Item = Result<T, std::io::Error>> + Unpin,
{
    type Item = Result<T, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if let Some(pause) = self.pause.as_mut() {
            std::task::ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        let next = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_next(cx));
        match &next {
            Some(Err(error)) if out_of_resources(error) => {
                if !self.exhausted {
                    tracing::warn!(error = %error, pause = ?ACCEPT_PAUSE, "cannot accept connections: out of resources; pausing between tries");
                }
                self.exhausted = true;
                self.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
            }
            Some(Ok(_)) if self.exhausted => {
                tracing::info!("accepting connections again");
                self.exhausted = false;
            }
            _ => {}
        }
        std::task::Poll::Ready(next)
    }
}

/// Accepted connections, each holding one of `max_connections` places until it closes. With no
/// place free the stream waits (the kernel's backlog holds further clients) instead of
/// accepting.
pub(super) struct ConnectionCap<S> {
    inner: S,
    places: Arc<Semaphore>,
    /// Waiting for a place to free up.
    acquiring: Option<Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>>,
    held: Option<OwnedSemaphorePermit>,
    /// Whether the cap was reached (so it is logged once, not per connection).
    full: bool,
}

impl<S> ConnectionCap<S> {
    pub(super) fn new(inner: S, max_connections: usize) -> Self {
        Self {
            inner,
            places: Arc::new(Semaphore::new(max_connections)),
            acquiring: None,
            held: None,
            full: false,
        }
    }
}

impl<S> tokio_stream::Stream for ConnectionCap<S>
where
    S: tokio_stream::Stream<Item = Result<TcpStream, std::io::Error>> + Unpin,
{
    type Item = Result<Held, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.held.is_none() {
            let acquiring = match self.acquiring.take() {
                Some(acquiring) => acquiring,
                None => {
                    let places = self.places.clone();
                    Box::pin(async move { places.acquire_owned().await.ok() })
                }
            };
            let mut acquiring = acquiring;
            match acquiring.as_mut().poll(cx) {
                Poll::Ready(permit) => {
                    if self.full {
                        tracing::info!("below the connection cap again: accepting");
                        self.full = false;
                    }
                    self.held = permit;
                }
                Poll::Pending => {
                    if !self.full && self.places.available_permits() == 0 {
                        tracing::warn!(
                            "at the connection cap (server.max_connections): not accepting until one closes"
                        );
                        self.full = true;
                    }
                    self.acquiring = Some(acquiring);
                    return Poll::Pending;
                }
            }
        }
        match std::task::ready!(Pin::new(&mut self.inner).poll_next(cx)) {
            Some(Ok(stream)) => {
                let place = self.held.take();
                Poll::Ready(Some(Ok(Held {
                    stream,
                    _place: place,
                })))
            }
            Some(Err(error)) => Poll::Ready(Some(Err(error))),
            None => Poll::Ready(None),
        }
    }
}

/// A connection and its place under the cap, freed when the connection is dropped.
pub(super) struct Held {
    stream: TcpStream,
    _place: Option<OwnedSemaphorePermit>,
}

impl Connected for Held {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
