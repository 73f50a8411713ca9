//! Segment encode/decode throughput, with `memcpy` of the same bytes as the
//! yardstick measured in the same run.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use silt_segment::segment::SegmentWriter;
use silt_segment::{Compression, Record, batch};
use std::hint::black_box;

fn records(n: usize, size: usize) -> Vec<Record> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            let value: Vec<u8> = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Half-random bytes: roughly what JSON payloads compress to.
                    if x % 2 == 0 { b'a' } else { x as u8 }
                })
                .collect();
            Record {
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(value)),
                headers: vec![],
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let recs = records(1000, 1024);
    let raw_bytes: usize = recs.iter().map(Record::weight).sum();
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Bytes(raw_bytes as u64));
    let flat: Vec<u8> = recs
        .iter()
        .flat_map(|r| r.value.clone().unwrap_or_default())
        .collect();
    g.bench_function("memcpy (yardstick)", |b| b.iter(|| black_box(flat.clone())));
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        g.bench_function(format!("encode/{codec:?}"), |b| {
            b.iter(|| {
                let mut w = SegmentWriter::with_capacity(raw_bytes);
                for p in 0..10 {
                    w.begin_chunk(1, p).unwrap();
                    w.append_batch(&recs[p as usize * 100..(p as usize + 1) * 100], codec)
                        .unwrap();
                }
                black_box(w.finish())
            })
        });
        let mut chunk = Vec::new();
        batch::encode(&mut chunk, 0, &recs, codec).unwrap();
        let chunk = bytes::Bytes::from(chunk);
        g.bench_function(format!("decode/{codec:?}"), |b| {
            b.iter(|| {
                let mut n = 0;
                batch::decode_chunk(&chunk, 0, 0, batch::DEFAULT_MAX_DECOMPRESSED, |_, r| {
                    n += r.value.map_or(0, |v| v.len());
                    true
                })
                .unwrap();
                black_box(n)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
