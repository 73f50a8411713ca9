//! Kafka frames: a 4-byte big-endian size, then that many bytes. A size is
//! checked against the frame limit; the body is then read in pieces, each
//! reserved from a byte budget shared by every connection just before it
//! is read (a connection waits — TCP pushes back on its client — while the
//! budget is spent). A hostile or stalled client holds no more budget or
//! memory than it really sent, all of them together no more than the
//! budget, and callers bound how long a body may take to arrive.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// Bytes of a body read (and reserved) at a time.
const PIECE: usize = 64 << 10;

/// A frame and its share of the budget, released when dropped.
#[derive(Debug)]
pub struct Frame {
    pub body: Bytes,
    _reserved: OwnedSemaphorePermit,
}

/// Reads one frame; `None` at a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
    budget: &Arc<Semaphore>,
) -> Result<Option<Frame>, FrameError> {
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
    let mut reserved: Option<OwnedSemaphorePermit> = None;
    let mut buf = BytesMut::with_capacity(size.min(PIECE));
    let mut body = r.take(size as u64);
    while buf.len() < size {
        let piece = (size - buf.len()).min(PIECE);
        let permit = budget
            .clone()
            .acquire_many_owned(piece as u32)
            .await
            .map_err(std::io::Error::other)?;
        match &mut reserved {
            Some(r) => r.merge(permit),
            None => reserved = Some(permit),
        }
        buf.reserve(piece);
        let want = buf.len() + piece;
        while buf.len() < want {
            if (&mut body)
                .take((want - buf.len()) as u64)
                .read_buf(&mut buf)
                .await?
                == 0
            {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }
    let reserved = match reserved {
        Some(r) => r,
        // An empty body holds nothing.
        None => budget
            .clone()
            .acquire_many_owned(0)
            .await
            .map_err(std::io::Error::other)?,
    };
    Ok(Some(Frame {
        body: buf.freeze(),
        _reserved: reserved,
    }))
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
        let budget = Arc::new(Semaphore::new(1 << 20));
        let mut out = Vec::new();
        write_frame(&mut out, b"hello").await.unwrap();
        let mut r = &out[..];
        let frame = read_frame(&mut r, 16, &budget).await.unwrap().unwrap();
        assert_eq!(frame.body, &b"hello"[..]);
        assert_eq!(
            budget.available_permits(),
            (1 << 20) - 5,
            "held while in use"
        );
        drop(frame);
        assert_eq!(budget.available_permits(), 1 << 20);
        assert!(
            read_frame(&mut r, 16, &budget).await.unwrap().is_none(),
            "clean end"
        );

        let huge = [0x7f, 0xff, 0xff, 0xff];
        let err = read_frame(&mut &huge[..], 1 << 20, &budget)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
        let negative = [0xff, 0xff, 0xff, 0xfe];
        let err = read_frame(&mut &negative[..], 1 << 20, &budget)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Negative(-2)), "{err}");
        let cut = [0, 0, 0, 9, 1, 2];
        assert!(
            read_frame(&mut &cut[..], 16, &budget).await.is_err(),
            "truncated body"
        );
        assert_eq!(budget.available_permits(), 1 << 20, "nothing leaked");
    }
}
