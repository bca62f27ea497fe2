//! Criterion benchmarks: one network evaluation, a full 4-bar harmonization
//! at the shipped model's default settings, long pieces (100 and 800 bars,
//! with and without the rules), and candle's own matmul rate on
//! this machine as the yardstick for the network's achieved GFLOP/s.
//!
//! Throughput is given in elements: for the network and the matmul an
//! element is one floating-point operation (so "Gelem/s" reads GFLOP/s); for
//! the harmonization it is one network evaluation.
//!
//! `CANTOR_DEVICE=cuda` (in a `--features cuda` build) runs them on the GPU;
//! GPU timings synchronize the device, so they count the work, not only
//! its launch.

use candle_core::{DType, Tensor};
use cantor_engine::model::{device_from_env, shipped};
use cantor_engine::network::{conditioning, EXTRA_CONDITIONING};
use cantor_engine::{
    compose, harmonize_problem, KeyChoice, Mask, SamplerSettings, Score, Unobserved, Voice,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Four bars of a chorale melody in quarter notes.
fn melody_pitches() -> [u8; 16] {
    [
        67, 67, 66, 64, 62, 67, 69, 71, 71, 71, 71, 69, 67, 72, 71, 69,
    ]
}

/// Four bars of a chorale melody (64 steps).
fn melody() -> Score {
    Score::from_pitches(Voice::Soprano, &melody_pitches(), 4)
}

fn benches(c: &mut Criterion) {
    let device = device_from_env("CANTOR_DEVICE").expect("CANTOR_DEVICE names a device");
    let model = shipped::load(&device).expect("the shipped model loads");
    let vocab = &model.card.vocabulary;
    let net = model.network();
    let steps = 64;
    let channels = vocab.total_size();

    let mut group = c.benchmark_group("network");
    let x = Tensor::randn(0f32, 1.0, (1, steps, channels), &device).unwrap();
    let tune = melody();
    let mut mask = Mask::all(steps);
    for t in 0..steps {
        mask.set_free(t, Voice::Soprano, false);
    }
    let cond = conditioning(&tune, &mask, vocab);
    let cond = Tensor::from_vec(cond, (1, steps, channels + EXTRA_CONDITIONING), &device).unwrap();
    group.throughput(Throughput::Elements(net.flops_per_eval(steps) as u64));
    group.bench_function("evaluation_64_steps", |b| {
        b.iter(|| {
            let d = net.denoise(&x, &cond, &[1.0], None).unwrap();
            device.synchronize().unwrap();
            d
        })
    });
    group.finish();

    let mut group = c.benchmark_group("harmonize");
    group.sample_size(20);
    let problem = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    let settings = SamplerSettings::from_defaults(&model.card.sampling);
    group.throughput(Throughput::Elements(settings.network_evals() as u64));
    group.bench_function("4_bars_default_settings", |b| {
        b.iter(|| compose(&model, &problem, &settings, &mut Unobserved).unwrap())
    });
    // The same without the voice-leading rules: what the rules cost.
    let alone = SamplerSettings {
        rules: 0.0,
        ..settings.clone()
    };
    group.bench_function("4_bars_network_alone", |b| {
        b.iter(|| compose(&model, &problem, &alone, &mut Unobserved).unwrap())
    });
    // The character pad's corners (#13): what its energies cost beside the
    // rules (busy also weighs the rules more).
    for (name, activity, tension) in [
        ("4_bars_calm_plain", -1.0, -1.0),
        ("4_bars_busy_tense", 1.0, 1.0),
    ] {
        let cornered = SamplerSettings {
            character: cantor_engine::Character { activity, tension },
            ..settings.clone()
        };
        group.bench_function(name, |b| {
            b.iter(|| compose(&model, &problem, &cornered, &mut Unobserved).unwrap())
        });
    }
    group.finish();

    // Long pieces (issue #15): one noise level over 100 and 800 bars, with
    // and without the rules. Throughput is in bars, so time linear in the
    // piece's length reads as the same bars/s at both lengths, and the gap
    // between the two rows is what the rules cost.
    let mut group = c.benchmark_group("long_pieces");
    group.sample_size(10);
    for bars in [100usize, 800] {
        let pitches: Vec<u8> = melody_pitches()
            .iter()
            .copied()
            .cycle()
            .take(bars * 4)
            .collect();
        let long = Score::from_pitches(Voice::Soprano, &pitches, 4);
        let problem = harmonize_problem(&long, Voice::Soprano, KeyChoice::Free).unwrap();
        group.throughput(Throughput::Elements(bars as u64));
        for (name, rules) in [("rules", settings.rules), ("network_alone", 0.0)] {
            let one_level = SamplerSettings {
                levels: 1,
                rules,
                ..settings.clone()
            };
            group.bench_function(format!("{bars}_bars_one_level_{name}"), |b| {
                b.iter(|| compose(&model, &problem, &one_level, &mut Unobserved).unwrap())
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("reference");
    let n = 512;
    let a = Tensor::randn(0f32, 1.0, (n, n), &device).unwrap();
    let m = Tensor::randn(0f32, 1.0, (n, n), &device)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
    group.bench_function("candle_matmul_512", |b| {
        b.iter(|| {
            let p = a.matmul(&m).unwrap();
            device.synchronize().unwrap();
            p
        })
    });
    group.finish();
}

criterion_group!(sampling, benches);
criterion_main!(sampling);
