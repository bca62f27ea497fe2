//! Cantor.clap in a real CLAP host: a melody looped through `process()` comes
//! back harmonized, on the grid, under the melody, with the melody
//! untouched; saved state plays again at other sample rates and block sizes;
//! the harmony plays exactly the saved composition's notes on their grid
//! steps through tempo changes and in 3/4; floods, missing transports,
//! jumps and stops leave no stuck notes. The
//! bundle is the debug build with `assert_process_allocs`: an allocation or
//! free on the audio thread aborts this test binary.

use std::collections::BTreeMap;
use std::time::Duration;

use cantor_host_tests::{
    composed_harmony, pass_start, Cantor, ComposedNote, InNote, LoopedNote, LoopingHost, OutNote,
    Transport,
};

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
        looping: None,
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
    c.loop_until_harmonized(&MELODY, LOOP_BEATS, TEMPO, block)
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
    // Issue #15: hostile transports in the debug (overflow-checked,
    // allocation-checked) bundle — the farthest positions CLAP can carry
    // either way, tempos of zero, below zero, not a number, infinite and
    // absurd — with notes held across them: nothing panics, hangs or sticks.
    let far = i64::MAX as f64 / (1u64 << 31) as f64;
    for (beat, tempo) in [
        (-far, TEMPO),
        (far, TEMPO),
        (0.5, 0.0),
        (1.0, -120.0),
        (1.5, f64::NAN),
        (2.0, f64::INFINITY),
        (2.5, 1e9),
        (-far, f64::NAN),
        (3.0, TEMPO),
    ] {
        let notes = [
            InNote {
                offset: 10,
                on: true,
                key: 62,
            },
            InNote {
                offset: 500,
                on: false,
                key: 62,
            },
        ];
        let transport = Transport {
            tempo,
            ..playing(beat)
        };
        all.extend(c.process(512, &notes, Some(transport)));
    }
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
fn continue_mode_answers_a_phrase_that_ends_before_a_bar_line() {
    let mut c = Cantor::new(48_000.0, 512);
    let mut json = Cantor::state_json(&c.save_state());
    json["params"]["mode"] = serde_json::json!({ "string": "continue" });
    c.load_state(&Cantor::frame_state(&json));

    // One bar of melody that stops a beat before the bar line (a phrase
    // end), then the playhead crosses into bar 2.
    let beats_per_sample = TEMPO / 60.0 / c.sample_rate;
    let phrase = [(0.0, 1.0, 67u16), (1.0, 2.0, 71), (2.0, 3.0, 74)];
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

/// The harmony of one pass as (grid step, on, channel, key), each event
/// checked to fall on its 16th within one sample at the tempo there.
fn harmony_steps(
    c: &Cantor,
    played: &[(f64, OutNote)],
    tempo_at: impl Fn(f64) -> f64,
) -> Vec<(i64, bool, u16, u16)> {
    let mut events: Vec<(i64, bool, u16, u16)> = played
        .iter()
        .filter(|(_, n)| n.channel != 0)
        .map(|(beat, n)| {
            let samples_per_step = c.sample_rate * 60.0 / tempo_at(*beat) / 4.0;
            let step = beat * 4.0;
            assert!(
                (step - step.round()).abs() * samples_per_step <= 1.0,
                "{n:?} at beat {beat} is off the grid"
            );
            (step.round() as i64, n.on, n.channel, n.key)
        })
        .collect();
    events.sort();
    events
}

/// What a pass over steps `0..steps` must play: every composed note's start,
/// and its end when the pass reaches it (ends at step 0 are the previous
/// pass's, released by the jump back to the loop start).
fn expected_steps(composed: &[ComposedNote], steps: i64) -> Vec<(i64, bool, u16, u16)> {
    let mut events = Vec::new();
    for n in composed.iter().filter(|n| n.start < steps) {
        events.push((n.start, true, n.channel, n.key));
        if n.end < steps {
            events.push((n.end, false, n.channel, n.key));
        }
    }
    events.sort();
    events
}

#[test]
fn harmony_plays_the_saved_composition_note_for_note_through_tempo_changes() {
    let mut c = Cantor::new(48_000.0, 512);
    let mut everything = loop_until_harmonized(&mut c, 512);
    let composed = composed_harmony(&Cantor::state_json(&c.save_state()));
    assert!(composed.len() >= 6, "{composed:?}");
    let want = expected_steps(&composed, 32);
    // A tempo change at the second bar (120 → 84 BPM), and a ramp that
    // changes the tempo every block, in odd-sized blocks.
    let step_change = |beat: f64| if beat < 4.0 { 120.0 } else { 84.0 };
    let ramp = |beat: f64| 90.0 + 7.5 * beat;
    for (name, block, tempo) in [
        ("step change", 333u32, &step_change as &dyn Fn(f64) -> f64),
        ("ramp", 97, &ramp),
    ] {
        let played = c.play_pass_with(&MELODY, LOOP_BEATS, block, (4, 4), tempo);
        // Note-offs on the loop's ends belong to the jump back (the last
        // block may end a fraction of a sample past beat 8).
        let got: Vec<_> = harmony_steps(&c, &played, tempo)
            .into_iter()
            .filter(|(step, on, _, _)| *on || (*step > 0 && *step < 32))
            .collect();
        assert_eq!(
            got, want,
            "{name}: the harmony played is not the composition"
        );
        everything.extend(played.into_iter().map(|(_, n)| n));
    }
    stop_and_check_released(&mut c, &everything);
}

#[test]
fn a_melody_in_three_four_is_harmonized_bar_by_bar() {
    // Two bars of 3/4 at 100 BPM.
    let waltz = [
        (0.0, 1.0, 67u16),
        (1.0, 2.0, 71),
        (2.0, 3.0, 74),
        (3.0, 4.0, 72),
        (4.0, 5.0, 71),
        (5.0, 6.0, 67),
    ];
    let tempo = |_: f64| 100.0;
    let mut c = Cantor::new(44_100.0, 256);
    let mut composed = Vec::new();
    let mut everything: Vec<OutNote> = Vec::new();
    for _ in 0..60 {
        let played = c.play_pass_with(&waltz, 6.0, 256, (3, 4), tempo);
        everything.extend(played.into_iter().map(|(_, n)| n));
        composed = composed_harmony(&Cantor::state_json(&c.save_state()));
        let bars: std::collections::BTreeSet<i64> =
            composed.iter().map(|n| n.start.div_euclid(12)).collect();
        if bars.contains(&0) && bars.contains(&1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Bars of 12 sixteenths: the saved harmony is keyed by 3/4 bars.
    let state = Cantor::state_json(&c.save_state());
    let session: serde_json::Value =
        serde_json::from_str(state["fields"]["session"].as_str().unwrap()).unwrap();
    let starts: Vec<&String> = session["composition"]["harmony"]
        .as_object()
        .expect("harmony")
        .keys()
        .collect();
    assert_eq!(starts, ["0", "12"], "{session}");
    let played = c.play_pass_with(&waltz, 6.0, 256, (3, 4), tempo);
    let got: Vec<_> = harmony_steps(&c, &played, tempo)
        .into_iter()
        .filter(|(step, on, _, _)| *on || (*step > 0 && *step < 24))
        .collect();
    assert_eq!(got, expected_steps(&composed, 24));
    everything.extend(played.into_iter().map(|(_, n)| n));
    stop_and_check_released(&mut c, &everything);
}

/// Plays from `from` to `to` (beats, 4/4 at [`TEMPO`]) in blocks of up to
/// 512 samples on the song's own sample grid (so consecutive spans meet
/// exactly), sending the note-ons and note-offs of `notes` ((on, off, key)
/// in beats) that fall in each block.
fn play_span(c: &mut Cantor, from: f64, to: f64, notes: &[(f64, f64, u16)]) -> Vec<OutNote> {
    let beats_per_sample = TEMPO / 60.0 / c.sample_rate;
    let sample_of = |beat: f64| (beat / beats_per_sample).round() as u64;
    let mut out = Vec::new();
    let (mut at, end) = (sample_of(from), sample_of(to));
    while at < end {
        let frames = 512.min(end - at) as u32;
        let mut events = Vec::new();
        for &(on, off, key) in notes {
            for (beat, is_on) in [(on, true), (off, false)] {
                let sample = sample_of(beat);
                if (at..at + frames as u64).contains(&sample) {
                    events.push(InNote {
                        offset: (sample - at) as u32,
                        on: is_on,
                        key,
                    });
                }
            }
        }
        let beat = at as f64 * beats_per_sample;
        out.extend(c.process(frames, &events, Some(playing(beat))));
        at += frames as u64;
    }
    out
}

fn answer_start(c: &mut Cantor) -> Option<i64> {
    let state = Cantor::state_json(&c.save_state());
    let session: serde_json::Value =
        serde_json::from_str(state["fields"]["session"].as_str().unwrap()).unwrap();
    session["composition"]["answer"][0].as_i64()
}

#[test]
fn playing_on_after_a_phrase_withdraws_its_answer() {
    let mut c = Cantor::new(48_000.0, 512);
    let mut json = Cantor::state_json(&c.save_state());
    json["params"]["mode"] = serde_json::json!({ "string": "continue" });
    c.load_state(&Cantor::frame_state(&json));
    // A bar of melody that stops a beat before the bar line (an answer is
    // asked for at step 16), and an eighth later the musician plays on
    // through bar 2, holding its last note over the next bar line, and
    // stops a beat before the end of bar 3.
    let phrase = [(0.0, 1.0, 67u16), (1.0, 2.0, 71), (2.0, 3.0, 74)];
    let more = [
        (4.5, 5.0, 74u16),
        (5.0, 6.0, 72),
        (6.0, 7.0, 71),
        (7.0, 8.5, 69),
        (8.5, 9.0, 67),
        (9.0, 11.0, 67),
    ];
    let mut all = play_span(&mut c, 0.0, 4.1, &phrase);
    // The worker starts composing the answer; the next note comes while it
    // does (bar 2 is not over, so bar 1 is still the phrase to answer).
    std::thread::sleep(Duration::from_millis(20));
    all.extend(play_span(&mut c, 4.1, 6.0, &more));
    // Long enough for the withdrawn answer to have been composed and sent.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(answer_start(&mut c), None, "the answer to bar 1 was kept");
    // When the musician stops at a bar line, the answer comes after it.
    all.extend(play_span(&mut c, 6.0, 12.5, &more));
    let answered = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        answer_start(&mut c)
    });
    assert_eq!(answered, Some(48), "no answer after the longer phrase");
    stop_and_check_released(&mut c, &all);
}

/// Issue #12: in Continue an answer comes where a phrase ends, not at
/// every bar line crossed with nothing held: an eighth rest before the bar
/// line is a breath inside the phrase.
#[test]
fn continue_mode_does_not_answer_a_breath_inside_a_phrase() {
    let mut c = Cantor::new(48_000.0, 512);
    let mut json = Cantor::state_json(&c.save_state());
    json["params"]["mode"] = serde_json::json!({ "string": "continue" });
    c.load_state(&Cantor::frame_state(&json));
    let melody = [
        (0.0, 1.0, 67u16),
        (1.0, 2.0, 71),
        (2.0, 3.0, 74),
        (3.0, 3.5, 72),
        (4.0, 6.0, 74),
    ];
    let mut all = play_span(&mut c, 0.0, 4.1, &melody);
    // Well past the time an answer takes to compose.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(answer_start(&mut c), None, "an answer to a breath");
    all.extend(play_span(&mut c, 4.1, 6.5, &melody));
    stop_and_check_released(&mut c, &all);
}

#[test]
fn notes_sounding_at_deactivation_are_released_when_processing_resumes() {
    let mut c = Cantor::new(48_000.0, 512);
    let mut all = loop_until_harmonized(&mut c, 512);
    // Into the first bar, where the harmony sounds.
    all.extend(pass_fragment(&mut c, 2.1, 512));
    let mut balance: BTreeMap<(u16, u16), i32> = BTreeMap::new();
    for n in all.iter().filter(|n| n.channel != 0) {
        *balance.entry((n.channel, n.key)).or_default() += if n.on { 1 } else { -1 };
    }
    let sounding: Vec<(u16, u16)> = balance
        .into_iter()
        .filter(|(_, b)| *b > 0)
        .map(|(k, _)| k)
        .collect();
    assert!(!sounding.is_empty(), "no harmony sounding at beat 2.1");
    // CLAP gives deactivate() no way to send events: the note-offs go out
    // at the very start of the first block after reactivation.
    c.restart();
    let first = c.process(512, &[], Some(playing(40.0)));
    let released: Vec<(u16, u16)> = first
        .iter()
        .filter(|n| !n.on && n.sample == c.position - 512)
        .map(|n| (n.channel, n.key))
        .collect();
    for note in &sounding {
        assert!(released.contains(note), "{note:?} not released: {first:?}");
    }
    all.extend(first);
    stop_and_check_released(&mut c, &all);
}

#[test]
fn a_loop_that_wraps_inside_a_block_replays_the_harmony_from_its_start() {
    let mut c = Cantor::new(48_000.0, 1024);
    let mut everything = loop_until_harmonized(&mut c, 1024);
    let composed = composed_harmony(&Cantor::state_json(&c.save_state()));
    // Two cycles of the host's loop (beats 0–8) in blocks of 997 samples
    // that run straight over the loop end: each block reports its start
    // wrapped into the loop, and the loop range, and no block is split.
    let beats_per_sample = TEMPO / 60.0 / c.sample_rate;
    let cycle = (LOOP_BEATS / beats_per_sample).round() as u64;
    let total = 2 * cycle + 4_000;
    let first = c.position;
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < total {
        let frames = 997u32.min((total - done) as u32);
        let mut notes = Vec::new();
        // The melody in both cycles (the last few samples, past the second
        // wrap, get none).
        for k in 0..2u64 {
            for (on, off, key) in MELODY {
                for (at, is_on) in [(on, true), (off, false)] {
                    let sample = if at >= LOOP_BEATS {
                        (k + 1) * cycle - 1
                    } else {
                        k * cycle + (at / beats_per_sample).round() as u64
                    };
                    if (done..done + frames as u64).contains(&sample) {
                        notes.push(InNote {
                            offset: (sample - done) as u32,
                            on: is_on,
                            key,
                        });
                    }
                }
            }
        }
        let transport = Transport {
            beat: (done % cycle) as f64 * beats_per_sample,
            looping: Some((0.0, LOOP_BEATS)),
            ..playing(0.0)
        };
        out.extend(c.process(frames, &notes, Some(transport)));
        done += frames as u64;
    }
    // Unwrapped, the output is two plain passes: the composed notes on
    // their steps in each, released at the loop end.
    let mut got = Vec::new();
    for n in out.iter().filter(|n| n.channel != 0) {
        let step = (n.sample - first) as f64 * beats_per_sample * 4.0;
        assert!(
            (step - step.round()).abs() * 6_000.0 <= 1.0,
            "{n:?} is off the grid"
        );
        let step = step.round() as i64;
        if step < 64 && (n.on || step % 32 != 0) {
            got.push((step, n.on, n.channel, n.key));
        }
    }
    got.sort();
    let mut want: Vec<_> = expected_steps(&composed, 32);
    want.extend(
        expected_steps(&composed, 32)
            .into_iter()
            .map(|(step, on, ch, key)| (step + 32, on, ch, key)),
    );
    want.retain(|(step, on, _, _)| *on || step % 32 != 0);
    want.sort();
    assert_eq!(got, want);
    // Whatever sounded at each wrap was released there.
    for wrap in [cycle, 2 * cycle] {
        let at = first + wrap;
        let offs = out
            .iter()
            .filter(|n| !n.on && n.channel != 0 && n.sample == at)
            .count();
        let ending = composed.iter().filter(|n| n.end == 32).count();
        assert!(
            offs >= ending,
            "{offs} note-offs at the wrap, {ending} notes end there"
        );
    }
    everything.extend(out);
    stop_and_check_released(&mut c, &everything);
}

/// Issue #12: the host's bypass (both validators asked for one). Bypassed,
/// Cantor plays nothing and passes every input note through, even with its
/// own pass-through off; switched back on, the harmony plays again.
#[test]
fn bypass_passes_the_melody_through_and_plays_no_harmony() {
    let mut c = Cantor::new(48_000.0, 512);
    let harmonized = loop_until_harmonized(&mut c, 512);
    assert!(!harmony(&harmonized).is_empty());

    let set = |c: &mut Cantor, bypass: bool| {
        let mut json = Cantor::state_json(&c.save_state());
        json["params"]["bypass"] = serde_json::json!({ "bool": bypass });
        json["params"]["pass-through"] = serde_json::json!({ "bool": false });
        c.load_state(&Cantor::frame_state(&json));
    };
    set(&mut c, true);
    let bypassed = pass(&mut c, 512);
    assert!(
        bypassed.iter().all(|n| n.channel == 0 || !n.on),
        "a note struck while bypassed: {bypassed:?}"
    );
    let melody_ons = bypassed.iter().filter(|n| n.channel == 0 && n.on).count();
    assert_eq!(melody_ons, MELODY.len(), "the melody passes through");
    stop_and_check_released(&mut c, &[harmonized, bypassed].concat());

    set(&mut c, false);
    let back = loop_until_harmonized(&mut c, 512);
    assert!(!harmony(&back).is_empty(), "the harmony plays again");
}

/// The session saved in a state.
fn session(c: &mut Cantor) -> serde_json::Value {
    let state = Cantor::state_json(&c.save_state());
    serde_json::from_str(state["fields"]["session"].as_str().expect("a session")).expect("JSON")
}

/// Issue #12: a looped melody in a host that loops its own way (84 BPM,
/// 48 kHz, 512-sample blocks, the loop end inside a block) plays the same
/// harmony on every pass once it is composed: every composed note on its
/// 16th within a sample, from the loop's first step; the loop's first note
/// in the window; nothing recomposed with no edit; no chord struck twice,
/// even where a downbeat falls one sample before a block boundary; nothing
/// left sounding.
fn a_loop_plays_the_same_harmony_every_pass(host: LoopingHost) {
    const BPM: f64 = 84.0;
    let mut c = Cantor::new(48_000.0, 512);
    let bps = BPM / 60.0 / c.sample_rate;
    let cycle = LOOP_BEATS / bps;
    let spb = c.sample_rate * 60.0 / BPM / 4.0;
    let mut all: Vec<LoopedNote> = Vec::new();
    // Plays 512-sample blocks until pass `k` has begun.
    let play_to = |c: &mut Cantor, k: u64, all: &mut Vec<LoopedNote>| {
        let left = pass_start(k, cycle).saturating_sub(c.looped);
        let blocks = vec![512; left.div_ceil(512) as usize];
        all.extend(c.play_looped(host, &MELODY, LOOP_BEATS, BPM, &blocks));
    };
    // Loop until a pass has harmony in both bars.
    let mut pass = 1;
    loop {
        play_to(&mut c, pass, &mut all);
        let bars: Vec<bool> = (0..2)
            .map(|bar| {
                all.iter().any(|n| {
                    n.pass == pass - 1
                        && n.note.on
                        && n.note.channel != 0
                        && (n.at as f64 / spb / 16.0) as u64 == bar
                })
            })
            .collect();
        if bars == [true, true] {
            break;
        }
        assert!(pass < 60, "no harmony after 60 passes");
        std::thread::sleep(Duration::from_millis(250));
        pass += 1;
    }
    // One pass more, so that what was composed while the first harmonized
    // pass played is in; then the take as it stands.
    play_to(&mut c, pass + 1, &mut all);
    let first = pass + 1;
    let before = session(&mut c);
    let composed = composed_harmony(&Cantor::state_json(&c.save_state()));
    // Bar 2's downbeat in the first measured pass one sample before a block
    // boundary: one shorter block first.
    let downbeat = pass_start(first, cycle) + (16.0 * spb).round() as u64;
    let short = ((downbeat + 1 - c.looped) % 512) as u32;
    if short > 0 {
        all.extend(c.play_looped(host, &MELODY, LOOP_BEATS, BPM, &[short]));
    }
    play_to(&mut c, first + 3, &mut all);

    let mut want = expected_steps(&composed, 32);
    want.retain(|(step, on, _, _)| *on || *step != 0);
    assert!(
        (1..4).all(|ch| want.contains(&(
            0,
            true,
            ch,
            composed
                .iter()
                .find(|n| n.start == 0 && n.channel == ch)
                .map_or(0, |n| n.key)
        ))),
        "every voice starts on the downbeat: {composed:?}"
    );
    for p in first..first + 3 {
        let mut got = Vec::new();
        for n in all.iter().filter(|n| n.pass == p && n.note.channel != 0) {
            let step = n.at as f64 / spb;
            assert!(
                (step - step.round()).abs() * spb <= 1.0,
                "pass {p}: {n:?} is {:.2} samples off the grid",
                (step - step.round()).abs() * spb
            );
            let step = step.round() as i64;
            if n.note.on || step != 0 {
                got.push((step, n.note.on, n.note.channel, n.note.key));
            }
        }
        got.sort();
        assert_eq!(got, want, "pass {p} plays the composition");
        // The melody passes through.
        for (on, _, key) in MELODY {
            let at = (on / bps).round() as u64;
            assert!(
                all.iter().any(|n| n.note.channel == 0
                    && n.note.on
                    && n.note.key == key
                    && ((n.pass == p && n.at.abs_diff(at) <= 1)
                        || (at == 0 && n.pass + 1 == p && n.at + 1 >= cycle.round() as u64))),
                "pass {p}: the melody's {key} at beat {on} passes through"
            );
        }
    }
    // No key struck twice within a few samples (a flam).
    let mut ons: BTreeMap<(u16, u16), Vec<u64>> = BTreeMap::new();
    for n in all.iter().filter(|n| n.note.on && n.note.channel != 0) {
        ons.entry((n.note.channel, n.note.key))
            .or_default()
            .push(n.note.sample);
    }
    for (key, samples) in &ons {
        for w in samples.windows(2) {
            assert!(w[1] - w[0] > 64, "{key:?} struck twice: {w:?}");
        }
    }
    // Nothing recomposed, and the window holds the melody as played, from
    // the loop's first note, in its two bars only.
    let after = session(&mut c);
    assert_eq!(
        before["composition"], after["composition"],
        "recomposed with no edit"
    );
    let bars = after["window"]["bars"].as_object().expect("bars");
    let heard: Vec<(i64, i64, u64)> = bars
        .values()
        .flat_map(|b| b["melody"].as_array().expect("melody").clone())
        .map(|n| {
            (
                n["start"].as_i64().unwrap(),
                n["end"].as_i64().unwrap(),
                n["pitch"].as_u64().unwrap(),
            )
        })
        .collect();
    let played: Vec<(i64, i64, u64)> = MELODY
        .iter()
        .map(|&(on, off, key)| ((on * 4.0) as i64, (off * 4.0) as i64, key as u64))
        .collect();
    assert_eq!(heard, played, "the window: {bars:?}");
    // Cantor's own notes (the melody's last note-on was the host's to end).
    let notes: Vec<OutNote> = all.iter().map(|n| n.note).collect();
    stop_and_check_released(&mut c, &harmony(&notes));
}

#[test]
fn a_host_that_splits_cycles_at_the_loop_end_plays_every_pass_alike() {
    a_loop_plays_the_same_harmony_every_pass(LoopingHost::SplitsCycles);
}

#[test]
fn a_host_that_does_not_report_its_loop_plays_every_pass_alike() {
    a_loop_plays_the_same_harmony_every_pass(LoopingHost::Unreported);
}

/// Issue #12: automation inside a block — many changes, each at its own
/// sample — in the allocation-checked build. Bypass switched on mid-block
/// releases the harmony at that sample and plays none until switched off;
/// pass-through decides note by note, at each note's sample.
#[test]
fn automation_inside_a_block_takes_effect_at_its_sample() {
    let mut c = Cantor::new(48_000.0, 512);
    let mut everything = loop_until_harmonized(&mut c, 512);
    let pass_through = c.param_id("Pass through");
    let bypass = c.param_id("Bypass");
    let beats_per_sample = TEMPO / 60.0 / c.sample_rate;
    // From the loop start into the first beat, its melody note held: the
    // first chord sounds.
    let (first_key, lead) = (MELODY[0].2, 23u32);
    for b in 0..lead {
        let notes = [InNote {
            offset: 0,
            on: true,
            key: first_key,
        }];
        let beat = (b * 512) as f64 * beats_per_sample;
        everything.extend(c.process(512, if b == 0 { &notes } else { &[] }, Some(playing(beat))));
    }
    let mut sounding: BTreeMap<(u16, u16), i32> = BTreeMap::new();
    for n in harmony(&everything) {
        *sounding.entry((n.channel, n.key)).or_default() += if n.on { 1 } else { -1 };
    }
    let sounding = sounding.values().filter(|b| **b > 0).count();
    assert!(sounding >= 3, "the first chord sounds");

    let automation = [
        (100, pass_through, 0.0),
        (200, pass_through, 1.0),
        (230, pass_through, 0.0),
        (250, bypass, 1.0),
        (300, pass_through, 1.0),
        (320, pass_through, 0.0),
        (360, pass_through, 1.0),
        (380, pass_through, 0.0),
        (480, bypass, 0.0),
    ];
    // Short notes of key 84: (offset, passed?).
    let probes = [
        (40, true),
        (140, false),
        (210, true),
        (240, false),
        (340, true),
        (490, false),
    ];
    let mut notes = Vec::new();
    for (offset, _) in probes {
        notes.push(InNote {
            offset,
            on: true,
            key: 84,
        });
        notes.push(InNote {
            offset: offset + 5,
            on: false,
            key: 84,
        });
    }
    let start = c.position;
    let beat = (lead * 512) as f64 * beats_per_sample;
    let out = c.process_automated(512, &notes, &automation, Some(playing(beat)));
    let passed: Vec<u64> = out
        .iter()
        .filter(|n| n.channel == 0 && n.key == 84 && n.on)
        .map(|n| n.sample - start)
        .collect();
    let expected: Vec<u64> = probes.iter().filter(|p| p.1).map(|p| p.0 as u64).collect();
    assert_eq!(passed, expected, "pass-through at each note's sample");
    let harmony_out = harmony(&out);
    let released = harmony_out
        .iter()
        .filter(|n| !n.on && n.sample - start == 250)
        .count();
    assert_eq!(
        released, sounding,
        "bypass releases the chord at its sample: {out:?}"
    );
    assert!(
        harmony_out
            .iter()
            .all(|n| !n.on || !(250..480).contains(&(n.sample - start))),
        "a harmony note struck while bypassed: {out:?}"
    );
    everything.extend(out);
    // Switched back on, the harmony plays on.
    let mut after = Vec::new();
    for b in lead + 1..lead + 60 {
        let beat = (b * 512) as f64 * beats_per_sample;
        after.extend(c.process(512, &[], Some(playing(beat))));
    }
    assert!(harmony(&after).iter().any(|n| n.on), "the harmony is back");
    everything.extend(after);
    everything.push(OutNote {
        sample: 0,
        on: false,
        key: first_key,
        channel: 0,
    });
    stop_and_check_released(&mut c, &everything);
}

/// Issue #13: an automation lane that moves the Activity parameter over the
/// song gives each bar the value it has at the bar's start. The same two
/// bars played twice, Activity calm (-1) from bar 1 and busy (+1) from bar
/// 3, written at each bar line as a host plays its lane: the calm bars'
/// harmony moves less than the busy bars' over the same melody, and the
/// saved session says which bar took which value.
#[test]
fn an_activity_lane_gives_each_bar_the_value_at_its_start() {
    let mut c = Cantor::new(48_000.0, 512);
    let activity = c.param_id("Activity");
    let melody: Vec<(f64, f64, u16)> = MELODY
        .iter()
        .chain(&MELODY)
        .enumerate()
        .map(|(i, &(on, off, key))| match i < MELODY.len() {
            true => (on, off, key),
            false => (on + LOOP_BEATS, off + LOOP_BEATS, key),
        })
        .collect();
    let loop_beats = 2.0 * LOOP_BEATS;
    // CLAP carries a continuous parameter normalized: 0 is -1, 1 is +1.
    let lane = |bar: usize| if bar < 2 { 0.0 } else { 1.0 };
    let block = 512u32;
    let beats_per_sample = TEMPO / 60.0 / c.sample_rate;
    let one_pass = |c: &mut Cantor| -> Vec<OutNote> {
        let start = c.position;
        let mut out = Vec::new();
        let mut beat = 0.0;
        while beat < loop_beats - beats_per_sample / 2.0 {
            let frames = block.min(((loop_beats - beat) / beats_per_sample).round() as u32);
            let end = beat + frames as f64 * beats_per_sample;
            let at = |b: f64| (((b - beat) / beats_per_sample).round() as u32).min(frames - 1);
            let mut notes = Vec::new();
            for &(on, off, key) in &melody {
                let off = off.min(loop_beats - beats_per_sample);
                for (b, is_on) in [(on, true), (off, false)] {
                    if b >= beat && b < end {
                        notes.push(InNote {
                            offset: at(b),
                            on: is_on,
                            key,
                        });
                    }
                }
            }
            let automation: Vec<_> = (0..4)
                .map(|bar| bar as f64 * 4.0)
                .filter(|b| *b >= beat && *b < end)
                .map(|b| (at(b), activity, lane((b / 4.0) as usize)))
                .collect();
            out.extend(c.process_automated(frames, &notes, &automation, Some(playing(beat))));
            beat = end;
        }
        for n in &mut out {
            n.sample -= start;
        }
        out
    };
    let bar_samples = out_samples(&c, 4.0);
    let mut last = Vec::new();
    for _ in 0..60 {
        last = one_pass(&mut c);
        let mut heard = [false; 4];
        for n in harmony(&last).iter().filter(|n| n.on) {
            heard[((n.sample / bar_samples) as usize).min(3)] = true;
        }
        if heard.iter().all(|h| *h) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let onsets = |bars: std::ops::Range<u64>| {
        harmony(&last)
            .iter()
            .filter(|n| n.on && bars.contains(&(n.sample / bar_samples)))
            .count()
    };
    let (calm, busy) = (onsets(0..2), onsets(2..4));
    eprintln!("harmony notes struck: calm bars {calm}, busy bars {busy}");
    assert!(calm > 0, "the calm bars are harmonized: {last:?}");
    assert!(
        (calm as f64) < 0.75 * busy as f64,
        "calm bars {calm} harmony notes, busy bars {busy}"
    );
    let characters = &session(&mut c)["window"]["characters"];
    for (bar, expected) in [(0, -1.0), (16, -1.0), (32, 1.0), (48, 1.0)] {
        let got = characters[bar.to_string()]["activity"].as_f64();
        assert_eq!(got, Some(expected), "bar at step {bar}: {characters}");
    }
    stop_and_check_released(&mut c, &last);
}
