//! Worker-side costs: loading the embedded model, and composing the harmony
//! of a bar that was just committed in a full 8-bar window (the rest of the
//! window already harmonized) — the latency from a bar's last note to its
//! harmony being ready, less the worker's ≤ 3 ms idle poll — and the
//! editor's regeneration of two masked bars of that window, from release of
//! the mouse to the new notes (less the same poll). The worker's numbers are
//! taken in its one-thread inference pool, as the plugin runs; the first
//! latency bench uses rayon's global pool for comparison. The new bar's
//! harmony is also timed at the character pad's four corners (the window
//! heard with that character on every bar, as the host's automation gives
//! it): the pad's energies run in the rules' sweep, so it must stay inside
//! the bar at any position.
//!
//! The model runs where the plugin's worker runs it
//! (`cantor::worker::inference_device`): the CPU, or in a `--features cuda`
//! build the GPU when there is one.

use cantor::composer::Mode;
use cantor::composer::{harmonize, ComposeSettings, Composition};
use cantor::link::Capture;
use cantor::take::{regenerate, Region};
use cantor::window::Window;
use cantor_engine::model::{device_name, shipped};
use cantor_engine::{Character, KeyChoice, SamplerSettings, Unobserved};
use criterion::{criterion_group, criterion_main, Criterion};

const PITCHES: [u8; 32] = [
    67, 67, 66, 64, 62, 67, 69, 71, 71, 71, 71, 69, 67, 72, 71, 69, 67, 69, 71, 69, 67, 64, 66, 67,
    74, 71, 67, 69, 72, 71, 69, 67,
];

/// Eight bars of quarter notes heard by the window at the pad's
/// `character`, committed.
fn heard_window(character: Character) -> Window {
    let mut w = Window::default();
    for (i, p) in PITCHES.iter().enumerate() {
        let beat = i as f64;
        w.hear(
            Capture::NoteOn {
                beat,
                pitch: *p,
                velocity: 90,
            },
            8,
        );
        w.hear(
            Capture::NoteOff {
                beat: beat + 1.0,
                pitch: *p,
            },
            8,
        );
        w.hear(
            Capture::Playhead {
                beat: beat + 1.0,
                playing: true,
                bar_start_beat: ((beat + 1.0) / 4.0).floor() * 4.0,
                bar_beats: 4.0,
                character,
            },
            8,
        );
    }
    w
}

fn benches(c: &mut Criterion) {
    let (device, no_gpu) = cantor::worker::inference_device();
    eprintln!(
        "worker benches on the {}{}",
        device_name(&device),
        no_gpu.map(|why| format!(" ({why})")).unwrap_or_default()
    );
    c.bench_function("model_load_embedded", |b| {
        b.iter(|| shipped::load(&device).unwrap())
    });

    let model = shipped::load(&device).unwrap();
    let settings = ComposeSettings {
        sampler: SamplerSettings::from_defaults(&model.card.sampling),
        key: KeyChoice::Free,
        continue_bars: 4,
        kept: Default::default(),
    };
    // The window harmonized in full, then its last bar heard again with a
    // new melody: what the worker finds when a bar is committed.
    let prepared = |character| {
        let mut window = heard_window(character);
        let mut full = Composition::default();
        harmonize(&model, &window, &mut full, &settings, &mut Unobserved).unwrap();
        let starts: Vec<i64> = window.bars.keys().copied().collect();
        window.mark_clean(&starts);
        let last = *starts.last().unwrap();
        window.bars.get_mut(&last).unwrap().dirty = true;
        (window, full, starts)
    };
    let (mut window, full, starts) = prepared(Character::NEUTRAL);
    let mut group = c.benchmark_group("latency");
    group.sample_size(20);
    // The new bar's harmony: what each latency bench times.
    let new_bar = |window: &Window, full: &Composition| {
        let mut composition = full.clone();
        harmonize(&model, window, &mut composition, &settings, &mut Unobserved).unwrap()
    };
    group.bench_function("harmonize_new_bar_in_8_bar_window", |b| {
        b.iter(|| new_bar(&window, &full))
    });
    // The same in the worker's own one-thread pool, as the plugin runs it
    // (the bench above uses rayon's global pool, one thread per core).
    let pool = cantor::worker::inference_pool().expect("a thread");
    group.bench_function("harmonize_new_bar_in_8_bar_window_worker_pool", |b| {
        b.iter(|| pool.install(|| new_bar(&window, &full)))
    });
    for (name, activity, tension) in [
        ("calm_plain", -1.0, -1.0),
        ("calm_tense", -1.0, 1.0),
        ("busy_plain", 1.0, -1.0),
        ("busy_tense", 1.0, 1.0),
    ] {
        let (window, full, _) = prepared(Character { activity, tension });
        group.bench_function(
            format!("harmonize_new_bar_in_8_bar_window_worker_pool_{name}"),
            |b| b.iter(|| pool.install(|| new_bar(&window, &full))),
        );
    }
    let region = Region {
        start: starts[2],
        end: starts[4],
        voices: [false, true, true, true],
    };
    window.mark_clean(&starts);
    group.bench_function("regenerate_2_masked_bars_in_8_bar_window", |b| {
        b.iter(|| {
            let mut composition = full.clone();
            pool.install(|| {
                regenerate(
                    &model,
                    &window,
                    &mut composition,
                    Mode::Harmonize,
                    region,
                    &settings,
                    &mut Unobserved,
                )
            })
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(worker, benches);
criterion_main!(worker);
