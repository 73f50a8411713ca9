//! Kafka frames: a 4-byte big-endian size, then that many bytes. Sizes are
//! checked before anything is allocated, so a hostile size costs nothing.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a connection's frames stop.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame; `None` at a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut size = [0u8; 4];
    match r.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size).map_err(|_| FrameError::Negative(size))?;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    let mut buf = BytesMut::zeroed(size);
    r.read_exact(&mut buf).await?;
    Ok(Some(buf.freeze()))
}

/// Writes one frame around `body`.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    let size = u32::try_from(body.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    w.write_all(&size.to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_sizes_are_bounded() {
        let mut out = Vec::new();
        write_frame(&mut out, b"hello").await.unwrap();
        let mut r = &out[..];
        assert_eq!(
            read_frame(&mut r, 16).await.unwrap().unwrap(),
            &b"hello"[..]
        );
        assert!(read_frame(&mut r, 16).await.unwrap().is_none(), "clean end");

        let huge = [0x7f, 0xff, 0xff, 0xff];
        let err = read_frame(&mut &huge[..], 1 << 20).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
        let negative = [0xff, 0xff, 0xff, 0xfe];
        let err = read_frame(&mut &negative[..], 1 << 20).await.unwrap_err();
        assert!(matches!(err, FrameError::Negative(-2)), "{err}");
        let cut = [0, 0, 0, 9, 1, 2];
        assert!(
            read_frame(&mut &cut[..], 16).await.is_err(),
            "truncated body"
        );
    }
}
