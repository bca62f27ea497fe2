//! The audio thread's cost through the real CLAP wrapper (release bundle):
//! `process()` of a 512-sample block with no input while harmony plays, and
//! with 64 incoming notes; and instantiating + activating the plugin.
//! Run: cargo bench -p cantor-host-tests

use cantor_host_tests::{release_bundle, Cantor, InNote, Transport};
use criterion::{criterion_group, criterion_main, Criterion};

/// The harmonized loop, in beats.
const LOOP_BEATS: f64 = 8.0;

fn transport(beat: f64) -> Transport {
    Transport {
        playing: true,
        beat,
        tempo: 120.0,
        numerator: 4,
        denominator: 4,
        looping: None,
    }
}

fn benches(c: &mut Criterion) {
    let path = release_bundle();
    c.bench_function("instantiate_and_activate", |b| {
        b.iter(|| Cantor::from_bundle(path, 48_000.0, 512))
    });

    // Two bars heard and harmonized: the blocks below play that harmony.
    let mut plugin = Cantor::from_bundle(path, 48_000.0, 512);
    let melody: Vec<(f64, f64, u16)> = [67, 69, 71, 72, 74, 71, 69, 67]
        .iter()
        .enumerate()
        .map(|(i, &key)| (i as f64, i as f64 + 1.0, key))
        .collect();
    plugin.loop_until_harmonized(&melody, LOOP_BEATS, 120.0, 512);
    let beats_per_block = 512.0 * 2.0 / 48_000.0;
    let mut beat = 0.0;
    c.bench_function("process_512_no_input", |b| {
        b.iter(|| {
            plugin.process(512, &[], Some(transport(beat)));
            beat = (beat + beats_per_block) % LOOP_BEATS;
        })
    });
    let notes: Vec<InNote> = (0..64u32)
        .map(|i| InNote {
            offset: i * 8,
            on: i % 2 == 0,
            key: 60 + (i / 2 % 12) as u16,
        })
        .collect();
    c.bench_function("process_512_64_notes", |b| {
        b.iter(|| {
            plugin.process(512, &notes, Some(transport(beat)));
            beat = (beat + beats_per_block) % LOOP_BEATS;
        })
    });
}

criterion_group!(process, benches);
criterion_main!(process);
