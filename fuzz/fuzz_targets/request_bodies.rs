//! Feeds arbitrary bytes to the API's request-body parsers, with the list
//! limits in force, and turns what parses into records and commits as the
//! handlers do. Errors (problems) are the expected outcome; a panic,
//! overflow or unbounded allocation is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silt_api::bounded::ListLimits;
use silt_api::extract::JsonBody;
use silt_api::types::{
    CreateTopic, Encoding, OffsetsIn, ProduceBody, ProduceLimits, TransactionBody,
};

fuzz_target!(|data: &[u8]| {
    let body = JsonBody(bytes::Bytes::copy_from_slice(data));
    let lists = ListLimits {
        records: 64,
        headers: 8,
    };
    let limits = ProduceLimits {
        max_record_bytes: 1 << 16,
        max_headers: 8,
    };
    for enc in [Encoding::Utf8, Encoding::Base64] {
        if let Ok(p) = body.parse_bounded::<ProduceBody<'_>>(lists) {
            for (i, r) in p.records.into_vec().into_iter().enumerate() {
                let _ = r.into_record(enc, &body.0, i, &limits);
            }
        }
    }
    if let Ok(t) = body.parse_bounded::<TransactionBody<'_>>(lists) {
        let _ = t.commit.into_commit();
    }
    if let Ok(o) = body.parse::<OffsetsIn>() {
        let _ = o.into_commit("group".into());
    }
    let _ = body.parse::<CreateTopic>();
});
