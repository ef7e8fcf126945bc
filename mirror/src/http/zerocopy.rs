//! Large cached files sent by the kernel (`sendfile`) on plain HTTP/1 connections: the bytes go
//! from the page cache to the socket without being copied into the node and out again.
//!
//! hyper knows nothing of it. On a stream that takes vectored writes (`accept.rs` asks for
//! them), hyper writes each body frame as the `Bytes` it was given, one slice of the write
//! vector each, never copied. So a body sent this way is made of frames that point into the
//! *marker*, a region of memory reserved for the purpose and never read, and each frame stands
//! for a range of a file. As the body hands hyper a frame it queues the frame's range on the
//! connection ([`ZeroCopy`]); the connection's stream, asked to write a slice of the marker,
//! sends the range at the head of that queue with `sendfile` instead. Frames are written in
//! the order they were made, so the queue and the writes keep step; each frame's place in the
//! marker (a tag counted per connection) and its length must match the range it is taken for,
//! and any mismatch closes the connection: never a wrong byte.
//!
//! What goes this way is checked no further, so only files checked moments ago
//! (`cairn_store::checked`) are sent like this. Their stamp is looked at again after the last
//! byte of the response has been read from the file and before that byte is sent (it is read
//! and written apart): a file written at any moment of the response fails that look, and the
//! response stops one byte short, which no client takes for a whole body.

use std::collections::VecDeque;
use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use bytes::Bytes;
use cairn_store::checked::Stamp;
use http_body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;

use crate::cid::FlatCid;
use crate::unixfs::CHUNK_SIZE;

/// The longest range one frame stands for.
const FRAME: usize = CHUNK_SIZE as usize;
/// Distinct tags, i.e. places in the marker a frame may start at.
const TAGS: usize = 4096;

/// The marker: frames of file-backed bodies are slices of it. Never written and never read
/// (its pages are never touched, so it takes no memory).
fn marker() -> &'static [u8] {
    static MARKER: OnceLock<&'static [u8]> = OnceLock::new();
    MARKER.get_or_init(|| Box::leak(vec![0u8; FRAME + TAGS].into_boxed_slice()))
}

/// Where `slice` starts in the marker, if it lies in it.
fn place_in_marker(slice: &[u8]) -> Option<usize> {
    let marker = marker();
    let at = (slice.as_ptr() as usize).checked_sub(marker.as_ptr() as usize)?;
    (at < marker.len()).then_some(at)
}

/// A range of a file that a frame stands for.
struct Range {
    tag: usize,
    file: Arc<File>,
    offset: u64,
    len: usize,
    sent: usize,
    /// For the last range of a response: the file's stamp when it was opened, and what it is.
    last: Option<(Stamp, FlatCid)>,
    counter: Counter,
}

#[derive(Default)]
struct Queue {
    ranges: VecDeque<Range>,
    next_tag: usize,
}

/// A plain connection's queue of file ranges to send: given to the connection's stream and, as
/// a request extension, to the responses of its HTTP/1 requests.
#[derive(Clone, Default)]
pub struct ZeroCopy(Arc<Mutex<Queue>>);

impl ZeroCopy {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding it leaves whole ranges: the queue stays usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The body of bytes `start..start + len` of `file` (stored artifact `flat`, checked whole
    /// moments ago and looking as `stamp` says), sent from the file by the kernel. Bytes sent
    /// are counted in `counter`.
    pub(crate) fn body(
        &self,
        file: File,
        stamp: Stamp,
        flat: FlatCid,
        (start, len): (u64, u64),
        counter: Counter,
    ) -> Body {
        Body::new(FileBody {
            zero_copy: self.clone(),
            file: Arc::new(file),
            stamp,
            flat,
            next: start,
            end: start + len,
            counter,
        })
    }
}

/// A response body whose frames stand for ranges of a file.
struct FileBody {
    zero_copy: ZeroCopy,
    file: Arc<File>,
    stamp: Stamp,
    flat: FlatCid,
    next: u64,
    end: u64,
    counter: Counter,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let left = this.end.saturating_sub(this.next);
        if left == 0 {
            return Poll::Ready(None);
        }
        let len = left.min(FRAME as u64) as usize;
        let last = left == len as u64;
        let tag = {
            let mut queue = this.zero_copy.lock();
            let tag = queue.next_tag;
            queue.next_tag = (tag + 1) % TAGS;
            queue.ranges.push_back(Range {
                tag,
                file: this.file.clone(),
                offset: this.next,
                len,
                sent: 0,
                last: last.then_some((this.stamp, this.flat)),
                counter: this.counter.clone(),
            });
            tag
        };
        this.next += len as u64;
        let frame = Bytes::from_static(&marker()[tag..tag + len]);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end.saturating_sub(self.next))
    }
}

/// A write of `bufs` to a plain connection's `stream`: the slices before the first one in the
/// marker as they are, a slice of the marker from its file.
pub(super) fn poll_write_vectored(
    stream: &mut TcpStream,
    zero_copy: &ZeroCopy,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<std::io::Result<usize>> {
    match bufs.iter().position(|b| place_in_marker(b).is_some()) {
        None => Pin::new(stream).poll_write_vectored(cx, bufs),
        Some(0) => poll_send_range(stream, zero_copy, cx, &bufs[0]),
        Some(first) => Pin::new(stream).poll_write_vectored(cx, &bufs[..first]),
    }
}

fn out_of_step(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a file sent from the cache is out of step with its response: {what}"),
    )
}

/// Send (part of) the range that `slice`, a slice of the marker, stands for.
fn poll_send_range(
    stream: &mut TcpStream,
    zero_copy: &ZeroCopy,
    cx: &mut Context<'_>,
    slice: &[u8],
) -> Poll<std::io::Result<usize>> {
    let mut queue = zero_copy.lock();
    let Some(range) = queue.ranges.front_mut() else {
        return Poll::Ready(Err(out_of_step("no range is queued")));
    };
    let left = range.len - range.sent;
    if place_in_marker(slice) != Some(range.tag + range.sent) || slice.len() != left {
        return Poll::Ready(Err(out_of_step("the frame is not the queued range's")));
    }
    let at = range.offset + range.sent as u64;
    let sent = match &range.last {
        // The response's last byte: read, then the file looked at, then the byte sent.
        Some((stamp, flat)) if left == 1 => {
            let mut byte = [0u8];
            range.file.read_exact_at(&mut byte, at)?;
            if !stamp.describes(&range.file) {
                tracing::warn!(
                    "stored artifact {flat} was written while it was sent; the response is cut"
                );
                return Poll::Ready(Err(std::io::Error::other(format!(
                    "stored artifact {flat} was written while it was sent"
                ))));
            }
            ready!(Pin::new(&mut *stream).poll_write(cx, &byte))?
        }
        last => {
            let want = left - usize::from(last.is_some());
            ready!(poll_sendfile(stream, &range.file, at, want, cx))?
        }
    };
    if sent == 0 {
        return Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "a stored file ended before the range being sent from it",
        )));
    }
    range.sent += sent;
    if range.sent == range.len {
        range.counter.inc_by(range.len as u64);
        queue.ranges.pop_front();
    }
    Poll::Ready(Ok(sent))
}

/// `sendfile` of up to `len` bytes of `file` from `offset` to the non-blocking `stream`.
fn poll_sendfile(
    stream: &TcpStream,
    file: &File,
    offset: u64,
    len: usize,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    loop {
        ready!(stream.poll_write_ready(cx))?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let mut offset = offset;
            rustix::fs::sendfile(stream, file, Some(&mut offset), len).map_err(Into::into)
        });
        match sent {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            done => return Poll::Ready(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A connected pair: the node's end (non-blocking, tokio's) and the client's.
    async fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let (node, _) = listener.accept().await.expect("accept");
        (node, client)
    }

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, Stamp) {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        f.flush().expect("flush");
        let stamp = Stamp::of_file(f.as_file()).expect("stamp");
        (f, stamp)
    }

    /// Every frame of `body`, as hyper would hand them to the stream (header slice first).
    async fn frames(body: Body) -> Vec<Bytes> {
        use http_body_util::BodyExt;
        let mut body = body;
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(frame.expect("frame").into_data().expect("data"));
        }
        out
    }

    /// Write `slices` whole through the zero-copy stream, as hyper does (advancing on partial
    /// writes); the error if one comes.
    async fn write_all(
        node: &mut TcpStream,
        zero_copy: &ZeroCopy,
        mut slices: Vec<Bytes>,
    ) -> std::io::Result<()> {
        use bytes::Buf;
        while !slices.is_empty() {
            let n = std::future::poll_fn(|cx| {
                let io: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
                poll_write_vectored(node, zero_copy, cx, &io)
            })
            .await?;
            let mut n = n;
            while n > 0 {
                let first = &mut slices[0];
                let step = n.min(first.len());
                first.advance(step);
                n -= step;
                if first.is_empty() {
                    slices.remove(0);
                }
            }
        }
        Ok(())
    }

    fn noise(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[tokio::test]
    async fn ranges_of_a_file_go_out_in_order_between_ordinary_bytes() {
        let (mut node, mut client) = pair().await;
        let bytes = noise(2 * FRAME + 12_345);
        let (file, stamp) = file_of(&bytes);
        let zero_copy = ZeroCopy::default();
        let counter = Counter::default();
        let flat = FlatCid(crate::cid::raw_block_cid(b"an artifact"));
        let open = || file.reopen().expect("reopen");
        // Two responses on one connection: the whole file, then a range across a frame's end.
        let whole = zero_copy.body(
            open(),
            stamp,
            flat,
            (0, bytes.len() as u64),
            counter.clone(),
        );
        let part = zero_copy.body(
            open(),
            stamp,
            flat,
            (FRAME as u64 - 10, 30),
            counter.clone(),
        );
        let mut slices = vec![Bytes::from_static(b"HEAD-1|")];
        slices.extend(frames(whole).await);
        slices.push(Bytes::from_static(b"|HEAD-2|"));
        slices.extend(frames(part).await);
        let expected = [
            &b"HEAD-1|"[..],
            &bytes,
            b"|HEAD-2|",
            &bytes[FRAME - 10..FRAME + 20],
        ]
        .concat();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; expected.len()];
            client.read_exact(&mut got).expect("read");
            got == expected
        });
        write_all(&mut node, &zero_copy, slices)
            .await
            .expect("written");
        assert!(reader.join().expect("reader"), "the bytes differ");
        assert_eq!(counter.get(), bytes.len() as u64 + 30);
        assert!(zero_copy.lock().ranges.is_empty());
    }

    #[tokio::test]
    async fn a_file_written_while_it_is_sent_is_cut_one_byte_short() {
        let (mut node, mut client) = pair().await;
        let bytes = noise(FRAME + 100);
        let (file, stamp) = file_of(&bytes);
        let zero_copy = ZeroCopy::default();
        let flat = FlatCid(crate::cid::raw_block_cid(b"an artifact"));
        let body = zero_copy.body(
            file.reopen().expect("reopen"),
            stamp,
            flat,
            (0, bytes.len() as u64),
            Counter::default(),
        );
        let slices = frames(body).await;
        // Overwritten in place, same length, after the response began (and a clock tick
        // later, for kernels whose file times are no finer than that).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut changed = bytes.clone();
        changed[5] ^= 1;
        std::fs::write(file.path(), &changed).expect("overwrite");
        let error = write_all(&mut node, &zero_copy, slices)
            .await
            .expect_err("a changed file must not go out whole");
        assert!(
            error.to_string().contains("written while it was sent"),
            "{error}"
        );
        drop(node);
        let mut got = Vec::new();
        client.read_to_end(&mut got).expect("read");
        assert_eq!(got.len(), bytes.len() - 1, "all but the last byte");
    }

    #[tokio::test]
    async fn a_frame_that_is_not_the_queued_range_closes_the_connection() {
        let (mut node, _client) = pair().await;
        let bytes = noise(FRAME + 100);
        let (file, stamp) = file_of(&bytes);
        let zero_copy = ZeroCopy::default();
        let flat = FlatCid(crate::cid::raw_block_cid(b"an artifact"));
        let body = |zc: &ZeroCopy| {
            zc.body(
                file.reopen().expect("reopen"),
                stamp,
                flat,
                (0, bytes.len() as u64),
                Counter::default(),
            )
        };
        // Frames written out of order: the second frame first.
        let mut slices = frames(body(&zero_copy)).await;
        slices.swap(0, 1);
        let error = write_all(&mut node, &zero_copy, slices).await;
        assert_eq!(
            error.expect_err("out of step").kind(),
            std::io::ErrorKind::InvalidData
        );
        // A frame whose range was never queued (made for another connection).
        let other = ZeroCopy::default();
        let stray = frames(body(&other)).await;
        let fresh = ZeroCopy::default();
        let error = write_all(&mut node, &fresh, stray).await;
        assert_eq!(
            error.expect_err("nothing queued").kind(),
            std::io::ErrorKind::InvalidData
        );
    }
}
