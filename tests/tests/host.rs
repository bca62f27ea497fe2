//! Cantor.clap in a real CLAP host: a melody looped through `process()` comes
//! back harmonized, on the grid, under the melody, with the melody
//! untouched; saved state plays again at other sample rates and block sizes;
//! floods, missing transports, jumps and stops leave no stuck notes. The
//! bundle is the debug build with `assert_process_allocs`: an allocation or
//! free on the audio thread aborts this test binary.

use std::collections::BTreeMap;
use std::time::Duration;

use cantor_host_tests::{Cantor, InNote, OutNote, Transport};

const TEMPO: f64 = 120.0;

/// Two bars in G major (beat on, beat off, MIDI key).
const MELODY: [(f64, f64, u16); 8] = [
    (0.0, 1.0, 67),
    (1.0, 2.0, 69),
    (2.0, 3.0, 71),
    (3.0, 4.0, 72),
    (4.0, 5.0, 74),
    (5.0, 6.0, 71),
    (6.0, 7.0, 69),
    (7.0, 8.0, 67),
];
const LOOP_BEATS: f64 = 8.0;

fn playing(beat: f64) -> Transport {
    Transport {
        playing: true,
        beat,
        tempo: TEMPO,
        numerator: 4,
        denominator: 4,
    }
}

/// Plays the melody once from beat 0 in blocks of `block` samples; returns
/// the plugin's output with sample positions relative to the pass start.
fn pass(c: &mut Cantor, block: u32) -> Vec<OutNote> {
    c.play_pass(&MELODY, LOOP_BEATS, TEMPO, block)
}

fn harmony(out: &[OutNote]) -> Vec<OutNote> {
    out.iter().filter(|n| n.channel != 0).copied().collect()
}

/// Loops the melody until the harmony of both bars plays (the worker needs
/// a pass to hear the bars and a moment to compose).
fn loop_until_harmonized(c: &mut Cantor, block: u32) -> Vec<OutNote> {
    for _ in 0..60 {
        let out = pass(c, block);
        let ons: Vec<&OutNote> = out.iter().filter(|n| n.on && n.channel != 0).collect();
        let first_bar = ons.iter().any(|n| n.sample < out_samples(c, 4.0));
        let second_bar = ons.iter().any(|n| n.sample >= out_samples(c, 4.0));
        if first_bar && second_bar {
            return out;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no harmony after 60 passes");
}

fn out_samples(c: &Cantor, beats: f64) -> u64 {
    (beats * 60.0 / TEMPO * c.sample_rate).round() as u64
}

fn samples_per_step(c: &Cantor) -> f64 {
    c.sample_rate * 60.0 / TEMPO / 4.0
}

/// Stops the transport and checks every note that went on went off.
fn stop_and_check_released(c: &mut Cantor, earlier: &[OutNote]) {
    let stopped = Transport {
        playing: false,
        ..playing(0.0)
    };
    let tail = c.process(64, &[], Some(stopped));
    let mut balance: BTreeMap<(u16, u16), i32> = BTreeMap::new();
    for n in earlier.iter().chain(&tail) {
        *balance.entry((n.channel, n.key)).or_default() += if n.on { 1 } else { -1 };
    }
    assert!(
        balance.values().all(|b| *b == 0),
        "stuck notes: {balance:?}"
    );
}

#[test]
fn a_looped_melody_is_harmonized_on_the_grid_and_saved_state_plays_at_any_rate() {
    let mut c = Cantor::new(48_000.0, 512);
    let mut everything = Vec::new();
    let out = loop_until_harmonized(&mut c, 512);
    everything.extend(out.iter().copied());

    // The melody passes through untouched: same keys at the same samples.
    let melody_out: Vec<(u64, bool, u16)> = out
        .iter()
        .filter(|n| n.channel == 0)
        .map(|n| (n.sample, n.on, n.key))
        .collect();
    let mut melody_in: Vec<(u64, bool, u16)> = Vec::new();
    for (on, off, key) in MELODY {
        melody_in.push((out_samples(&c, on), true, key));
        let off_sample = if off >= LOOP_BEATS {
            out_samples(&c, LOOP_BEATS) - 1
        } else {
            out_samples(&c, off)
        };
        melody_in.push((off_sample, false, key));
    }
    melody_in.sort();
    let mut sorted_out = melody_out.clone();
    sorted_out.sort();
    assert_eq!(sorted_out, melody_in);

    // Harmony: alto, tenor, bass on channels 2–4, every onset on a 16th,
    // inside the voice's range, and mostly under the melody.
    let h = harmony(&out);
    let ons: Vec<&OutNote> = h.iter().filter(|n| n.on).collect();
    assert!(ons.len() >= 6, "too little harmony: {h:?}");
    let step = samples_per_step(&c);
    let ranges = [(0u16, 0u16), (52, 74), (46, 69), (36, 66)];
    let mut under = 0;
    for n in &ons {
        assert!((1..=3).contains(&n.channel), "{n:?}");
        let steps = n.sample as f64 / step;
        assert!(
            (steps - steps.round()).abs() * step <= 1.0,
            "{n:?} is off the grid"
        );
        let (lo, hi) = ranges[n.channel as usize];
        assert!(
            (lo..=hi).contains(&n.key),
            "{n:?} outside the voice's range"
        );
        let beat = n.sample as f64 / c.sample_rate * TEMPO / 60.0;
        let melody_key = MELODY
            .iter()
            .find(|(on, off, _)| *on <= beat + 1e-9 && beat < *off)
            .map(|m| m.2)
            .unwrap_or(127);
        if n.key < melody_key {
            under += 1;
        }
    }
    assert!(
        under * 10 >= ons.len() * 9,
        "only {under} of {} harmony notes are under the melody",
        ons.len()
    );
    stop_and_check_released(&mut c, &everything);

    // The saved state plays the same harmony elsewhere, on that grid.
    let state = c.save_state();
    let json = Cantor::state_json(&state);
    assert!(
        json["fields"]["session"]
            .as_str()
            .is_some_and(|s| s.contains("harmony")),
        "{json}"
    );
    let reference: Vec<(u64, u16, u16)> = ons
        .iter()
        .map(|n| ((n.sample as f64 / step).round() as u64, n.channel, n.key))
        .collect();
    for (rate, block) in [(44_100.0, 1u32), (96_000.0, 8192), (192_000.0, 64)] {
        let mut other = Cantor::new(rate, block.max(64));
        // A project whose seed differs from the running instance's: its
        // saved notes must play as they are, not be recomposed.
        std::thread::sleep(Duration::from_millis(500)); // the instance has been running
        let mut project = Cantor::state_json(&state);
        project["params"]["seed"] = serde_json::json!({ "i32": 7 });
        other.load_state(&Cantor::frame_state(&project));
        // Long enough for a (wrong) recomposition to have landed.
        std::thread::sleep(Duration::from_millis(1500));
        let out = pass(&mut other, block);
        let step = samples_per_step(&other);
        let mut got: Vec<(u64, u16, u16)> = Vec::new();
        for n in harmony(&out).iter().filter(|n| n.on) {
            let exact = (n.sample as f64 / step).round() * step;
            assert!(
                (n.sample as f64 - exact).abs() <= 1.0,
                "{n:?} off the grid at {rate} Hz, block {block}"
            );
            got.push(((n.sample as f64 / step).round() as u64, n.channel, n.key));
        }
        got.sort();
        let mut want = reference.clone();
        want.sort();
        assert_eq!(got, want, "at {rate} Hz with blocks of {block}");
        stop_and_check_released(&mut other, &out);
    }
}

#[test]
fn floods_missing_transports_jumps_and_stops_leave_nothing_hanging() {
    let mut c = Cantor::new(48_000.0, 1024);
    let mut all = Vec::new();
    // 10 000 notes in one block: all pass through, nothing breaks.
    let flood: Vec<InNote> = (0..5000u32)
        .flat_map(|i| {
            let key = (36 + i % 48) as u16;
            [
                InNote {
                    offset: i % 1000,
                    on: true,
                    key,
                },
                InNote {
                    offset: i % 1000 + 1,
                    on: false,
                    key,
                },
            ]
        })
        .collect();
    let out = c.process(1024, &flood, Some(playing(0.0)));
    assert_eq!(out.iter().filter(|n| n.channel == 0).count(), 10_000);
    all.extend(out);
    // A host that reports no transport: notes still pass through.
    let out = c.process(
        512,
        &[
            InNote {
                offset: 3,
                on: true,
                key: 60,
            },
            InNote {
                offset: 9,
                on: false,
                key: 60,
            },
        ],
        None,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].sample, c.position - 512 + 3);
    all.extend(out);
    // Then the melody, a jump, a loop and a stop.
    all.extend(loop_until_harmonized(&mut c, 1024));
    let half = pass_fragment(&mut c, 2.0, 1024);
    all.extend(half);
    let jumped = c.process(256, &[], Some(playing(64.0)));
    all.extend(jumped);
    all.extend(pass(&mut c, 1024));
    stop_and_check_released(&mut c, &all);
}

/// Plays from beat 0 to `beats` (no input), as if the host jumped away after.
fn pass_fragment(c: &mut Cantor, beats: f64, block: u32) -> Vec<OutNote> {
    let beats_per_sample = TEMPO / 60.0 / c.sample_rate;
    let mut out = Vec::new();
    let mut beat = 0.0;
    while beat < beats {
        out.extend(c.process(block, &[], Some(playing(beat))));
        beat += block as f64 * beats_per_sample;
    }
    out
}

#[test]
fn continue_mode_answers_a_phrase_that_stops_at_a_bar_line() {
    let mut c = Cantor::new(48_000.0, 512);
    let mut json = Cantor::state_json(&c.save_state());
    json["params"]["mode"] = serde_json::json!({ "string": "continue" });
    c.load_state(&Cantor::frame_state(&json));

    // One bar of melody, then the playhead crosses into bar 2.
    let beats_per_sample = TEMPO / 60.0 / c.sample_rate;
    let phrase = [
        (0.0, 1.0, 67u16),
        (1.0, 2.0, 71),
        (2.0, 3.0, 74),
        (3.0, 3.9, 72),
    ];
    let mut all = Vec::new();
    let mut done = 0u64;
    let bar = (4.0 / beats_per_sample) as u64;
    while done < bar + 512 {
        let beat = done as f64 * beats_per_sample;
        let end = beat + 512.0 * beats_per_sample;
        let mut notes = Vec::new();
        for (on, off, key) in phrase {
            for (at, is_on) in [(on, true), (off, false)] {
                if at >= beat && at < end {
                    notes.push(InNote {
                        offset: ((at - beat) / beats_per_sample) as u32,
                        on: is_on,
                        key,
                    });
                }
            }
        }
        all.extend(c.process(512, &notes, Some(playing(beat))));
        done += 512;
    }
    // Wait (as a host's main thread would) until the answer is composed.
    let composed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let state = Cantor::state_json(&c.save_state());
        state["fields"]["session"]
            .as_str()
            .is_some_and(|s| !s.contains("\"answer\":null"))
    });
    assert!(composed, "no answer was composed");
    // Play on for four bars: the answer sounds, in all four voices, on the grid.
    let start = c.position;
    let mut answer = Vec::new();
    while c.position < start + 4 * bar {
        let beat = c.position as f64 * beats_per_sample;
        answer.extend(c.process(512, &[], Some(playing(beat))));
    }
    let ons: Vec<&OutNote> = answer.iter().filter(|n| n.on).collect();
    assert!(ons.len() >= 4, "the answer is too thin: {answer:?}");
    let channels: std::collections::BTreeSet<u16> = ons.iter().map(|n| n.channel).collect();
    assert!(channels.len() >= 3, "{channels:?}");
    let step = samples_per_step(&c);
    for n in &ons {
        let steps = n.sample as f64 / step;
        // Started on its step, or (for a downbeat composed late) at the block
        // where the answer arrived.
        assert!(
            (steps - steps.round()).abs() * step <= 1.0 || n.sample < start + 2 * step as u64,
            "{n:?}"
        );
    }
    all.extend(answer);
    stop_and_check_released(&mut c, &all);
}
