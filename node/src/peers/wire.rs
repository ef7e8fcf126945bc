//! Framing for Cairn's own peer protocols (resolve, metadata): each frame is a uvarint length
//! followed by that many bytes, either a JSON message or a raw body. Every read names the
//! largest frame it accepts, checked before a byte of the body is buffered.

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest JSON frame of the resolve and metadata protocols.
pub const MAX_JSON_FRAME: usize = 256 << 10;

/// A frame that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{protocol} stream: {source}")]
    Io {
        protocol: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{protocol} frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        protocol: &'static str,
        size: u64,
        limit: usize,
    },
    #[error("{protocol} frame length is not a valid uvarint")]
    BadLength { protocol: &'static str },
    #[error("{protocol} stream ended inside a frame")]
    Truncated { protocol: &'static str },
    #[error("malformed {protocol} message: {source}")]
    Json {
        protocol: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Write `body` as one frame and flush. Not cancel-safe: a cancelled write leaves a partial
/// frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    protocol: &'static str,
    body: &[u8],
) -> Result<(), WireError> {
    let io = |source| WireError::Io { protocol, source };
    let mut prefix = Vec::with_capacity(10);
    cairn_ipld::unixfs::put_varint(&mut prefix, body.len() as u64);
    writer.write_all(&prefix).await.map_err(io)?;
    writer.write_all(body).await.map_err(io)?;
    writer.flush().await.map_err(io)
}

/// Write `message` as one JSON frame. Not cancel-safe.
pub async fn write_json<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    protocol: &'static str,
    message: &T,
) -> Result<(), WireError> {
    let body =
        serde_json::to_vec(message).map_err(|source| WireError::Json { protocol, source })?;
    if body.len() > MAX_JSON_FRAME {
        return Err(WireError::TooLarge {
            protocol,
            size: body.len() as u64,
            limit: MAX_JSON_FRAME,
        });
    }
    write_frame(writer, protocol, &body).await
}

/// Read one frame of at most `limit` bytes, or `None` at a clean end of stream. Not
/// cancel-safe: a cancelled read loses the part of the frame already read.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    protocol: &'static str,
    limit: usize,
) -> Result<Option<Vec<u8>>, WireError> {
    let io = |source| WireError::Io { protocol, source };
    let mut len = 0u64;
    let mut shift = 0;
    loop {
        let mut byte = [0u8; 1];
        if reader.read(&mut byte).await.map_err(io)? == 0 {
            if shift == 0 {
                return Ok(None);
            }
            return Err(WireError::Truncated { protocol });
        }
        if shift > 63 {
            return Err(WireError::BadLength { protocol });
        }
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    if len > limit as u64 {
        return Err(WireError::TooLarge {
            protocol,
            size: len,
            limit,
        });
    }
    let mut body = cairn_ipld::buffer::zeroed(len as usize);
    reader.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            WireError::Truncated { protocol }
        } else {
            io(e)
        }
    })?;
    Ok(Some(body))
}

/// Read one JSON frame, or `None` at a clean end of stream. Not cancel-safe.
pub async fn read_json<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
    protocol: &'static str,
) -> Result<Option<T>, WireError> {
    match read_frame(reader, protocol, MAX_JSON_FRAME).await? {
        Some(body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|source| WireError::Json { protocol, source }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() {
        let mut out = Vec::new();
        write_json(&mut out, "test", &serde_json::json!({"a": 1}))
            .await
            .expect("write");
        write_frame(&mut out, "test", &[7u8; 300])
            .await
            .expect("write");
        let mut reader = futures::io::Cursor::new(out.clone());
        let value: Option<serde_json::Value> = read_json(&mut reader, "test").await.expect("json");
        assert_eq!(value, Some(serde_json::json!({"a": 1})));
        let body = read_frame(&mut reader, "test", 300).await.expect("body");
        assert_eq!(body, Some(vec![7u8; 300]));
        assert!(
            read_frame(&mut reader, "test", 10)
                .await
                .expect("end")
                .is_none()
        );

        let mut reader = futures::io::Cursor::new(out);
        let _: Option<serde_json::Value> = read_json(&mut reader, "test").await.expect("json");
        let err = read_frame(&mut reader, "test", 299)
            .await
            .expect_err("too large");
        assert!(err.to_string().contains("test frame of 300 bytes"), "{err}");
    }
}
