//! The editor's commands, through the real worker thread: a melody is fed
//! in as the audio thread would, then masked bars are regenerated, undone,
//! redone and kept, and a bad model file leaves the current model working.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cantor::link::{link, AudioLink, Capture};
use cantor::params::CantorParams;
use cantor::shared::{Command, Shared, Status};
use cantor::take::Region;
use cantor::worker::Worker;

/// Four bars of quarter notes.
const PITCHES: [u8; 16] = [
    67, 67, 66, 64, 62, 67, 69, 71, 71, 71, 69, 67, 72, 71, 69, 67,
];

fn feed(audio: &mut AudioLink) {
    let mut push = |c: Capture| {
        while audio.captures.push(c).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    for (i, p) in PITCHES.iter().enumerate() {
        let beat = i as f64;
        push(Capture::NoteOn {
            beat,
            pitch: *p,
            velocity: 90,
        });
        for q in 1..=4 {
            let b = beat + q as f64 * 0.25;
            if q == 4 {
                push(Capture::NoteOff { beat: b, pitch: *p });
            }
            push(Capture::Playhead {
                beat: b,
                playing: true,
                bar_start_beat: (b / 4.0).floor() * 4.0,
                bar_beats: 4.0,
                character: cantor_engine::Character::NEUTRAL,
            });
        }
    }
}

fn wait_for(shared: &Shared, what: &str, done: impl Fn(&Status) -> bool) -> Status {
    let started = Instant::now();
    loop {
        let s = shared.status();
        if done(&s) {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn masked_bars_are_regenerated_undone_redone_and_kept() {
    let params = Arc::new(CantorParams::default());
    let shared = Arc::new(Shared::default());
    let (mut audio, worker_end) = link();
    let _worker = Worker::spawn(worker_end, params, shared.clone());
    feed(&mut audio);
    let first = wait_for(&shared, "the harmony of four bars", |s| {
        s.composition.harmony.len() == 4 && s.progress.is_none() && !s.window.any_dirty()
    });
    let bars: Vec<i64> = first.composition.harmony.keys().copied().collect();
    assert_eq!(bars, vec![0, 16, 32, 48]);

    // Bars 2-3, alto and tenor.
    let region = Region {
        start: 16,
        end: 48,
        voices: [false, true, true, false],
    };
    shared.send(Command::Regenerate(region));
    let regenerated = wait_for(&shared, "the regeneration", |s| s.undo == 1);
    assert_eq!(regenerated.mask, Some(region));
    let (before, after) = (&first.composition.harmony, &regenerated.composition.harmony);
    assert_eq!(before[&0], after[&0], "bar 1 is outside the mask");
    for step in 16..48usize {
        let (b, a) = (
            before[&((step / 16 * 16) as i64)][step % 16],
            after[&((step / 16 * 16) as i64)][step % 16],
        );
        assert_eq!(b[3], a[3], "the bass was not masked (step {step})");
    }

    shared.send(Command::Undo);
    let undone = wait_for(&shared, "undo", |s| s.undo == 0 && s.redo == 1);
    assert_eq!(undone.composition, first.composition);
    shared.send(Command::Redo);
    let redone = wait_for(&shared, "redo", |s| s.undo == 1 && s.redo == 0);
    assert_eq!(redone.composition, regenerated.composition);

    // A bad model file: a message, and the shipped model goes on working.
    shared.send(Command::LoadModel("/nonexistent/cantor.safetensors".into()));
    let failed = wait_for(&shared, "the load error", |s| s.error.is_some());
    let error = failed.error.unwrap();
    assert!(error.contains("/nonexistent/cantor"), "{error}");
    assert_eq!(failed.model, first.model);

    // Kept bars survive regenerating everything; the others are recomposed.
    shared.send(Command::Keep(region, true));
    wait_for(&shared, "the keep", |s| s.kept.len() == 2);
    let generations = shared.status().generations;
    shared.send(Command::RegenerateAll);
    let all = wait_for(&shared, "regenerate all", |s| {
        s.generations > generations && s.progress.is_none() && !s.window.any_dirty()
    });
    assert_eq!(
        all.composition.harmony[&16],
        redone.composition.harmony[&16]
    );
    assert_eq!(
        all.composition.harmony[&32],
        redone.composition.harmony[&32]
    );
    // Masking kept bars regenerates nothing and says why.
    shared.send(Command::Regenerate(region));
    let refused = wait_for(&shared, "the refusal", |s| {
        s.error
            .as_deref()
            .is_some_and(|e| e.contains("nothing to regenerate"))
    });
    assert_eq!(refused.undo, 1);

    // Cancel stops a regeneration under way and keeps what was there.
    shared.send(Command::Keep(region, false));
    wait_for(&shared, "the release", |s| s.kept.is_empty());
    let mut cancelled = false;
    for _ in 0..5 {
        let before = shared.status();
        shared.send(Command::Regenerate(region));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            let s = shared.status();
            if s.progress.is_some() {
                shared
                    .cancel
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                break;
            }
            if s.undo > before.undo {
                break; // finished before we saw it running
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let after = wait_for(&shared, "the regeneration to stop", |s| {
            s.progress.is_none() && (s.cancelled > before.cancelled || s.undo > before.undo)
        });
        if after.cancelled > before.cancelled {
            assert_eq!(after.message.as_deref(), Some("cancelled"));
            assert_eq!(after.undo, before.undo);
            assert_eq!(after.composition, before.composition);
            cancelled = true;
            break;
        }
    }
    assert!(cancelled, "no regeneration could be cancelled");
}

/// A saved session as a damaged or hostile project file could hold it.
fn session_with(bars: &[(i64, i64)], stamp: u64) -> cantor::session::Session {
    use cantor::window::{Bar, HeardNote};
    let mut session = cantor::session::Session {
        stamp: (999, stamp),
        ..Default::default()
    };
    for &(start, length) in bars {
        session.window.bars.insert(
            start,
            Bar {
                start,
                length,
                melody: vec![HeardNote {
                    start,
                    end: start + 4,
                    pitch: 67,
                    velocity: 90,
                }],
                dirty: false,
                heard: 1,
                adopted: false,
            },
        );
    }
    session
}

/// Issue #15: a project whose saved session is damaged (a bar of 10¹² steps,
/// a negative length, bars at ±10¹², harmony that belongs to no bar, a later
/// format) no longer takes the host down or kills the worker: the plugin
/// starts fresh, says so, and goes on composing.
#[test]
fn a_damaged_saved_session_starts_fresh_and_the_worker_keeps_composing() {
    use cantor::composer::CellToken;
    let params = Arc::new(CantorParams::default());
    let shared = Arc::new(Shared::default());
    let (mut audio, worker_end) = link();
    let _worker = Worker::spawn(worker_end, params.clone(), shared.clone());
    wait_for(&shared, "the model", |s| !s.model.is_empty());

    let mut inconsistent = session_with(&[(0, 16)], 0);
    inconsistent
        .composition
        .harmony
        .insert(16, vec![[CellToken::Rest; 4]; 16]);
    let mut later = session_with(&[(0, 16)], 0);
    later.version = cantor::session::SESSION_VERSION + 1;
    let damaged = [
        (
            "a bar of 10^12 steps",
            session_with(&[(0, 1_000_000_000_000)], 0),
        ),
        ("a negative length", session_with(&[(0, -16)], 0)),
        (
            "bars at ±10^12",
            session_with(&[(-1_000_000_000_000, 16), (1_000_000_000_000, 16)], 0),
        ),
        ("bars far apart", session_with(&[(0, 16), (1 << 30, 16)], 0)),
        ("harmony without its bar", inconsistent),
        ("a later format", later),
    ];
    let mut stamp = 0;
    for (what, session) in damaged {
        shared.status.lock().unwrap().error = None;
        let started = Instant::now();
        // The worker's own saves (after it started fresh) may overwrite a
        // session written meanwhile: write it again until it is read.
        let status = loop {
            stamp += 1;
            *params.session.write().unwrap() = cantor::session::Session {
                stamp: (999, stamp),
                ..session.clone()
            };
            std::thread::sleep(Duration::from_millis(20));
            let s = shared.status();
            if s.error
                .as_deref()
                .is_some_and(|e| e.contains("session was not loaded"))
            {
                break s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what}: not refused: {s:?}"
            );
        };
        assert!(status.window.bars.is_empty(), "{what}");
        assert!(status.composition.harmony.is_empty(), "{what}");
    }

    // The worker lives, with its model: new input is harmonized.
    feed(&mut audio);
    let status = wait_for(&shared, "the harmony after the bad sessions", |s| {
        s.composition.harmony.len() == 4 && s.progress.is_none() && !s.window.any_dirty()
    });
    assert!(status.error.is_none(), "{:?}", status.error);
}

/// Issue #15: removing the plugin during a composition stops the worker
/// at its next noise level (the stop flag is checked where cancellation
/// is), instead of blocking the host's main thread until it finishes.
#[test]
fn removing_the_plugin_cancels_a_composition_under_way() {
    let mut cancelled = false;
    for _ in 0..5 {
        let params = Arc::new(CantorParams::default());
        let shared = Arc::new(Shared::default());
        let (mut audio, worker_end) = link();
        let worker = Worker::spawn(worker_end, params, shared.clone());
        wait_for(&shared, "the model", |s| !s.model.is_empty());
        feed(&mut audio);
        let started = Instant::now();
        let mut running = false;
        while started.elapsed() < Duration::from_secs(30) {
            let s = shared.status();
            if s.progress.is_some_and(|(level, levels)| level < levels) {
                running = true;
                break;
            }
            if s.generations > 0 {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let before = shared.status();
        drop(worker);
        let after = shared.status();
        if running && before.generations == 0 {
            // The composition under way ended as cancelled, not finished.
            assert_eq!(after.generations, before.generations);
            assert!(after.cancelled > before.cancelled, "{after:?}");
            cancelled = true;
            break;
        }
    }
    assert!(cancelled, "no composition was seen under way to cancel");
}

/// The character pad's release (#13): the worker composes the masked bars
/// with the pad's position at once — calm writes fewer notes there than
/// busy — while the parameters have yet to catch up.
#[test]
fn the_character_pad_regenerates_the_masked_bars_with_its_character() {
    use cantor::composer::CellToken;
    let params = Arc::new(CantorParams::default());
    let shared = Arc::new(Shared::default());
    let (mut audio, worker_end) = link();
    let _worker = Worker::spawn(worker_end, params, shared.clone());
    feed(&mut audio);
    wait_for(&shared, "the harmony of four bars", |s| {
        s.composition.harmony.len() == 4 && s.progress.is_none() && !s.window.any_dirty()
    });
    // Bars 1-4, alto, tenor and bass.
    let region = Region {
        start: 0,
        end: 64,
        voices: [false, true, true, true],
    };
    // Onsets of the lower voices over the four bars.
    let onsets = |s: &Status| -> usize {
        s.composition
            .harmony
            .values()
            .flatten()
            .map(|row| {
                row[1..]
                    .iter()
                    .filter(|c| matches!(c, CellToken::Pitch(_)))
                    .count()
            })
            .sum()
    };
    let mut counts = Vec::new();
    for (i, activity) in [-1.0, 1.0].into_iter().enumerate() {
        let character = cantor_engine::Character {
            activity,
            tension: 0.0,
        };
        shared.send(Command::SetCharacter(character, Some(region)));
        shared.send(Command::Regenerate(region));
        let done = wait_for(&shared, "the regeneration", |s| {
            s.undo == i + 1 && s.progress.is_none()
        });
        counts.push(onsets(&done));
        // The masked bars are now the pad's (until the playhead reads the
        // parameters there again).
        for bar in [0, 16, 32, 48] {
            assert_eq!(done.window.characters.get(&bar), Some(&character));
        }
    }
    assert!(
        counts[0] < counts[1],
        "calm {} vs busy {}",
        counts[0],
        counts[1]
    );
}
