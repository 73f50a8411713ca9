use std::fmt;

/// Errors from encoding, decoding and storing segment objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a valid batch, chunk or segment. `what` names the
    /// structure, `at` the byte position where decoding gave up.
    #[error("corrupt {what} at byte {at}: {reason}")]
    Corrupt {
        what: &'static str,
        at: usize,
        reason: Reason,
    },
    /// A value does not fit the format (e.g. a key longer than i32::MAX).
    #[error("cannot encode: {0}")]
    Encode(&'static str),
    /// Decompression produced more bytes than the configured bound.
    #[error("decompressed batch exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// The object store URL could not be understood.
    #[error("invalid object store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// An object-store call did not finish within its bound.
    #[error("object store: {op} timed out after {after:?}")]
    Timeout {
        op: &'static str,
        after: std::time::Duration,
    },
    /// A local filesystem operation (fsync) failed.
    #[error("local storage: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a decoder rejected its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Truncated,
    BadMagic,
    CrcMismatch {
        stored: u32,
        computed: u32,
    },
    BadLength(i64),
    BadVarint,
    BadUtf8,
    UnknownCompression(u8),
    Decompress(String),
    Other(&'static str),
    /// Well formed, but something Silt does not accept.
    Unsupported(&'static str),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Truncated => f.write_str("truncated"),
            Reason::BadMagic => f.write_str("bad magic"),
            Reason::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            Reason::BadLength(n) => write!(f, "invalid length {n}"),
            Reason::BadVarint => f.write_str("invalid varint"),
            Reason::BadUtf8 => f.write_str("header key is not UTF-8"),
            Reason::UnknownCompression(c) => write!(f, "unknown compression codec {c}"),
            Reason::Decompress(e) => write!(f, "decompression failed: {e}"),
            Reason::Other(s) | Reason::Unsupported(s) => f.write_str(s),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: &'static str, at: usize, reason: Reason) -> Error {
    Error::Corrupt { what, at, reason }
}
