//! Fetching ahead for pipelined requests. An HTTP/1.1 client may send several requests on one
//! connection before the first answer (apt sends up to ten); they are answered one at a time,
//! in order, so a node that fetches each file only when its request's turn comes pays one
//! upstream round trip and one whole transfer per file, where the client going direct had them
//! all in flight at once. So the connection's reader looks at each request head as it comes in
//! (only the bytes hyper reads anyway), and for a `GET` behind the one being answered it hands
//! the router a copy marked [`LookAhead`]: that copy passes the same authentication, and for a
//! file the node neither holds nor is downloading it starts the download
//! ([`crate::engine::Mirror::look_ahead`]); the request itself joins it when its turn comes.
//!
//! Bounded: at most [`MAX_AHEAD`] copies in flight per connection, and a head is looked at only
//! while it is under [`MAX_HEAD`] bytes. A connection that sends anything but bodiless requests,
//! or speaks HTTP/2, is not looked at any further: its requests are served as they come.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt;

use super::accept::OverTls;

/// The mark of a request copied from a pipelined one to fetch its file ahead: the router starts
/// the download, if any, and answers nothing.
#[derive(Clone, Copy, Debug)]
pub struct LookAhead;

/// Copies in flight at once for one connection.
pub const MAX_AHEAD: usize = 16;
/// A request head longer than this is not looked at (nor is anything after it).
pub const MAX_HEAD: usize = 16 << 10;
/// Header fields in a head looked at.
const MAX_FIELDS: usize = 64;

/// Finds whole request heads in the bytes read from a connection, in order.
#[derive(Debug, Default)]
pub struct Scanner {
    /// The bytes of the head being read.
    partial: Vec<u8>,
    /// Heads found so far.
    heads: u64,
    /// Looking no further.
    off: bool,
}

impl Scanner {
    /// Read `bytes`, the next ones from the connection; `each(n, request)` for the `n`th
    /// request (from 0) of those whose heads they complete, if it is a `GET` and `wanted(n)`
    /// (a request is built only then: the heads of a client that does not pipeline are counted
    /// and nothing more).
    pub fn feed(
        &mut self,
        bytes: &[u8],
        wanted: impl Fn(u64) -> bool,
        mut each: impl FnMut(u64, http::Request<Body>),
    ) {
        if self.off {
            return;
        }
        let mut searched = self.partial.len().saturating_sub(3);
        self.partial.extend_from_slice(bytes);
        loop {
            // Empty lines before a request line are allowed, and skipped.
            let blank = self
                .partial
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            if blank > 0 {
                self.partial.drain(..blank);
                searched = 0;
            }
            let Some(end) = find_end(&self.partial[searched.min(self.partial.len())..])
                .map(|at| searched + at + 4)
            else {
                if self.partial.len() > MAX_HEAD {
                    self.stop();
                }
                return;
            };
            match parse(&self.partial[..end], wanted(self.heads)) {
                Head::Get(Some(request)) => each(self.heads, *request),
                Head::Get(None) | Head::Other => {}
                Head::Stop => return self.stop(),
            }
            self.heads += 1;
            self.partial.drain(..end);
            searched = 0;
        }
    }

    fn stop(&mut self) {
        self.off = true;
        self.partial = Vec::new();
    }

    /// True once nothing more will be looked at on this connection.
    pub fn is_off(&self) -> bool {
        self.off
    }
}

fn find_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

enum Head {
    /// A bodiless `GET`, as a request to copy when one was asked for.
    Get(Option<Box<http::Request<Body>>>),
    /// Another bodiless request: counted, not copied.
    Other,
    /// A body follows, or what came is not an HTTP/1 request head: look no further.
    Stop,
}

/// A request head, as a request to copy when `build`.
fn parse(head: &[u8], build: bool) -> Head {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut parsed = httparse::Request::new(&mut fields);
    let (Ok(httparse::Status::Complete(_)), Some(method), Some(path), Some(1)) = (
        parsed.parse(head),
        parsed.method,
        parsed.path,
        parsed.version,
    ) else {
        // HTTP/2's preface (`PRI * HTTP/2.0`), HTTP/1.0, or not a request head at all.
        return Head::Stop;
    };
    let has_body = parsed.headers.iter().any(|field| {
        let name = field.name;
        (name.eq_ignore_ascii_case("content-length") && field.value.iter().any(|b| *b != b'0'))
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
    });
    if has_body {
        return Head::Stop;
    }
    if method != "GET" {
        return Head::Other;
    }
    if !build {
        return Head::Get(None);
    }
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .version(http::Version::HTTP_11);
    for field in parsed.headers.iter() {
        request = request.header(field.name, field.value);
    }
    match request.body(Body::empty()) {
        Ok(request) => Head::Get(Some(Box::new(request))),
        // A header hyper would refuse too: the request fails on its own turn.
        Err(_) => Head::Other,
    }
}

/// What copying a request ahead needs of its connection.
pub struct Ahead {
    pub router: Router,
    pub remote: std::net::SocketAddr,
    pub over_tls: bool,
    /// Requests of the connection handed to the router so far.
    pub dispatched: Arc<AtomicU64>,
    /// Copies in flight.
    pub in_flight: Arc<AtomicUsize>,
}

impl Ahead {
    /// True for the `n`th request of the connection when it is behind the one being answered:
    /// the request the router gets next is not.
    fn behind(&self, n: u64) -> bool {
        n > self.dispatched.load(Ordering::Acquire)
    }

    /// Copy a request of the connection to the router if there is room.
    fn offer(&self, mut request: http::Request<Body>) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_AHEAD {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let extensions = request.extensions_mut();
        extensions.insert(axum::extract::ConnectInfo(self.remote));
        extensions.insert(LookAhead);
        if self.over_tls {
            extensions.insert(OverTls);
        }
        let (router, in_flight) = (self.router.clone(), self.in_flight.clone());
        tokio::spawn(async move {
            let _ = router.oneshot(request).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// A connection's stream whose reads are looked at for pipelined requests.
pub struct Pipelined<I> {
    inner: I,
    scanner: Scanner,
    ahead: Ahead,
}

impl<I> Pipelined<I> {
    pub fn new(inner: I, ahead: Ahead) -> Self {
        Pipelined {
            inner,
            scanner: Scanner::default(),
            ahead,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Pipelined<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.scanner.is_off() {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                let ahead = &this.ahead;
                this.scanner
                    .feed(read, |n| ahead.behind(n), |_, request| ahead.offer(request));
            }
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Pipelined<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(chunks: &[&[u8]]) -> (Vec<(u64, String)>, bool) {
        let mut scanner = Scanner::default();
        let mut found = Vec::new();
        for chunk in chunks {
            scanner.feed(
                chunk,
                |_| true,
                |n, request| {
                    found.push((n, request.uri().to_string()));
                },
            );
        }
        (found, scanner.is_off())
    }

    const A: &[u8] = b"GET /apt/debian/pool/a.deb HTTP/1.1\r\nHost: node\r\nUser-Agent: Debian APT-HTTP/1.3\r\n\r\n";
    const B: &[u8] = b"GET /apt/debian/pool/b.deb HTTP/1.1\r\nHost: node\r\n\r\n";

    #[test]
    fn pipelined_heads_are_found_in_order_however_the_bytes_are_cut() {
        let all = [A, B, A].concat();
        let expected = vec![
            (0, "/apt/debian/pool/a.deb".to_owned()),
            (1, "/apt/debian/pool/b.deb".to_owned()),
            (2, "/apt/debian/pool/a.deb".to_owned()),
        ];
        assert_eq!(heads(&[&all]), (expected.clone(), false));
        for cut in 1..all.len() {
            assert_eq!(
                heads(&[&all[..cut], &all[cut..]]),
                (expected.clone(), false),
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(heads(&bytes), (expected, false));
    }

    #[test]
    fn a_head_keeps_its_fields_and_blank_lines_between_requests_are_skipped() {
        let mut scanner = Scanner::default();
        let mut found = Vec::new();
        let bytes = [A, b"\r\n", B].concat();
        scanner.feed(&bytes, |_| true, |n, request| found.push((n, request)));
        assert_eq!(found.len(), 2);
        let (n, request) = &found[1];
        assert_eq!(*n, 1);
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(
            request.headers().get("host").map(|v| v.as_bytes()),
            Some(&b"node"[..])
        );
    }

    #[test]
    fn heads_not_wanted_are_counted_not_built() {
        let mut scanner = Scanner::default();
        let mut found = Vec::new();
        scanner.feed(&[A, B, A].concat(), |n| n >= 1, |n, _| found.push(n));
        assert_eq!(found, vec![1, 2]);
    }

    #[test]
    fn other_bodiless_methods_are_counted_not_copied() {
        let head = b"HEAD /x HTTP/1.1\r\nHost: node\r\n\r\n";
        let (found, off) = heads(&[&[&head[..], B].concat()]);
        assert_eq!(found, vec![(1, "/apt/debian/pool/b.deb".to_owned())]);
        assert!(!off);
    }

    #[test]
    fn a_body_http2_http10_an_oversized_head_or_garbage_stops_the_looking() {
        let with_body =
            b"POST /npm/-/npm/v1/security/audits HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let chunked = b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let http2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let http10 = b"GET /x HTTP/1.0\r\n\r\n";
        for first in [
            &with_body[..],
            chunked,
            http2,
            http10,
            b"\x16\x03\x01junk\r\n\r\n",
        ] {
            let (found, off) = heads(&[&[first, A].concat()]);
            assert!(found.is_empty(), "{:?}", String::from_utf8_lossy(first));
            assert!(off);
        }
        let long = format!("GET /x HTTP/1.1\r\nX-Filler: {}\r\n", "a".repeat(MAX_HEAD));
        let (found, off) = heads(&[long.as_bytes(), b"\r\n", A]);
        assert!(found.is_empty());
        assert!(off, "an oversized head was buffered on");
        // A zero Content-Length is no body.
        let empty = b"GET /y HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(heads(&[&empty[..]]).0, vec![(0, "/y".to_owned())]);
    }
}
