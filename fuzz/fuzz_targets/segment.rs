//! Feeds arbitrary bytes to every decoder of the segment crate: batches,
//! chunks, segment footers. Any panic, overflow or unbounded allocation is a
//! bug; errors are the expected outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silt_segment::{batch, segment};

fuzz_target!(|data: &[u8]| {
    let chunk = bytes::Bytes::copy_from_slice(data);
    let _ = batch::decode_chunk(&chunk, 0, 0, 1 << 20, |_, _| true);
    let _ = batch::decode_chunk(&chunk, u64::MAX >> 2, 5, 1 << 20, |_, _| true);
    let _ = segment::read_footer(data, data.len() as u64);
    let _ = segment::read_footer(data, u64::MAX);
    let _ = segment::check_magic(data);
});
