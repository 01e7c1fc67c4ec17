//! Micro-benchmarks: fingerprinting, PHF build (and its size), PHV
//! operations, container encode/decode. `cargo bench --bench micro`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tierseed::bench_api::{PhvHandle, build_phf, encode_container};
use tierseed::synth::{Rng, SynthSource};
use tierseed::{ContainerId, Fingerprint, decode_container};

fn fingerprinting(c: &mut Criterion) {
    let mut g = c.benchmark_group("fingerprint");
    for size in [4 << 10, 16 << 10, 64 << 10] {
        let mut data = vec![0u8; size];
        Rng::new(1).fill(&mut data);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| b.iter(|| Fingerprint::of(d)));
    }
    g.finish();
}

fn phf(c: &mut Criterion) {
    let mut g = c.benchmark_group("phf_build");
    g.sample_size(10);
    for leaves in [1_000_000u64, 10_000_000] {
        let source = SynthSource::new(leaves, 256, 4096, 1024);
        let keys = source.keys();
        g.throughput(Throughput::Elements(keys));
        let built = build_phf(&source, 1.7, 2).expect("build");
        eprintln!("phf @ {keys} keys: {:.3} bits/key in memory", built.memory_bytes() as f64 * 8.0 / keys as f64);
        g.bench_function(BenchmarkId::from_parameter(keys), |b| b.iter(|| build_phf(&source, 1.7, 2).expect("build")));
    }
    g.finish();
}

fn phv(c: &mut Criterion) {
    const SLOTS: u64 = 10_000_000;
    let mut rng = Rng::new(7);
    let slots: Vec<u64> = (0..100_000).map(|_| rng.below(SLOTS)).collect();
    let mut g = c.benchmark_group("phv");
    g.throughput(Throughput::Elements(slots.len() as u64));
    let mut v = PhvHandle::new(SLOTS);
    g.bench_function("set", |b| b.iter(|| slots.iter().for_each(|s| v.set(*s))));
    g.bench_function("test", |b| b.iter(|| slots.iter().filter(|s| v.get(**s)).count()));
    g.bench_function("clear", |b| b.iter(|| slots.iter().for_each(|s| v.clear(*s))));
    g.bench_function("encode_dirty_chunks", |b| {
        b.iter(|| {
            slots[..256].iter().for_each(|s| v.set(*s));
            v.take_dirty()
        });
    });
    g.finish();
}

fn containers(c: &mut Criterion) {
    let mut rng = Rng::new(3);
    let segs: Vec<(Fingerprint, Vec<u8>)> = (0..256)
        .map(|_| {
            let mut d = vec![0u8; 16 << 10];
            rng.fill(&mut d);
            (Fingerprint::of(&d), d)
        })
        .collect();
    let refs: Vec<(Fingerprint, &[u8])> = segs.iter().map(|(f, d)| (*f, d.as_slice())).collect();
    let encoded = encode_container(9, &refs);
    let mut g = c.benchmark_group("container_4MiB");
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    g.bench_function("encode", |b| b.iter(|| encode_container(9, &refs)));
    g.bench_function("decode", |b| b.iter(|| decode_container(&encoded, ContainerId(9)).expect("decode")));
    g.finish();
}

criterion_group!(benches, fingerprinting, phf, phv, containers);
criterion_main!(benches);
