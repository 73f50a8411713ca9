//! Feeds arbitrary bytes to every decoder of metadata keys and values, as
//! a damaged or hostile metadata store would. Errors are the expected
//! outcome; a panic, overflow or unbounded allocation is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silt_metadata::archive::ArchiveProgress;
use silt_metadata::values::{
    self, CommittedOffset, GroupRecord, IdempotencyRecord, IndexEntry, LeaseRecord, MemberRecord,
    PartitionState, ProducerRecord, SegmentRecord,
};

fuzz_target!(|data: &[u8]| {
    let _ = silt_metadata::keys::decode(data);
    let _ = values::decode_u64(data);
    let _ = PartitionState::decode(data);
    let _ = IndexEntry::decode(data);
    let _ = SegmentRecord::decode(data);
    let _ = LeaseRecord::decode(data);
    let _ = CommittedOffset::decode(data);
    let _ = ProducerRecord::decode(data);
    let _ = IdempotencyRecord::decode(data);
    let _ = ArchiveProgress::decode(data);
    let _ = values::decode_json::<GroupRecord>(data, "group");
    let _ = values::decode_json::<MemberRecord>(data, "member");
});
