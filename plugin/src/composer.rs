//! What the worker composes from the window, and how it becomes a playback
//! schedule. No threads here: the worker calls these functions.
//!
//! Harmonize: each run of adjacent bars is one problem; the heard melody is
//! the soprano, the alto, tenor and bass of bars already harmonized and
//! unchanged are kept as known context, and only dirty bars are generated,
//! so an edit to one bar of a loop changes that bar's harmony alone.
//! Continue: the bars up to where the input stopped are the given phrase,
//! and N new bars in all four voices are the answer.

use std::collections::BTreeMap;

use cantor_engine::grid::{Note, Score, Token, Voice, DEFAULT_VELOCITY};
use cantor_engine::{
    compose, Character, KeyChoice, Lane, Mask, Observer, Problem, SamplerSettings, ScoreModel,
};
use nice_plug::prelude::Enum;
use serde::{Deserialize, Serialize};

use crate::playback::{Schedule, ScheduledNote};
use crate::window::{Bar, HeardNote, Window};

/// What Cantor writes: harmony under what it hears, or an answer after it.
#[derive(Enum, Debug, Default, PartialEq, Eq, Clone, Copy)]
pub enum Mode {
    /// Write alto, tenor and bass under every bar heard.
    #[id = "harmonize"]
    #[default]
    Harmonize,
    /// Answer a phrase with N new bars when the input stops at a bar line.
    #[id = "continue"]
    Continue,
}

/// How generated voices go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelLayout {
    /// Soprano, alto, tenor, bass on MIDI channels 1–4.
    PerVoice,
    /// Everything on one channel (channel 1).
    Single,
}

/// The parts of the plugin's parameters that shape what is composed.
#[derive(Clone, Debug, PartialEq)]
pub struct ComposeSettings {
    pub sampler: SamplerSettings,
    pub key: KeyChoice,
    pub continue_bars: usize,
    /// Bars the musician kept: their composed cells stay as they are.
    pub kept: std::collections::BTreeSet<i64>,
}

/// What the worker has composed, by absolute bar. Saved in the plugin state
/// so a reopened project plays the same notes without recomputing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Composition {
    /// Alto, tenor and bass (the soprano is the heard melody) per bar start.
    pub harmony: BTreeMap<i64, Vec<[CellToken; 4]>>,
    /// An answer in all four voices: its first step and its cells.
    pub answer: Option<(i64, Vec<[CellToken; 4]>)>,
}

/// A serialisable grid token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CellToken {
    Rest,
    Hold,
    Pitch(u8),
}

impl From<Token> for CellToken {
    fn from(t: Token) -> Self {
        match t {
            Token::Rest => CellToken::Rest,
            Token::Hold => CellToken::Hold,
            Token::Pitch(p) => CellToken::Pitch(p),
        }
    }
}

impl From<CellToken> for Token {
    fn from(t: CellToken) -> Self {
        match t {
            CellToken::Rest => Token::Rest,
            CellToken::Hold => Token::Hold,
            CellToken::Pitch(p) => Token::Pitch(p),
        }
    }
}

/// The heard melody of consecutive bars as a soprano line (its top line),
/// in the register it was played in: [`compose_in_range`] moves the whole
/// problem into the model's ranges and the harmony back down (or up) with
/// it, so a tune played low gets its harmony below it. Only a melody wider
/// than the soprano's range is folded, by octaves, into the stretch of that
/// width holding most of its notes (nearest the soprano's own register), so
/// one stray note does not put the whole line out of reach.
pub(crate) fn melody_score(bars: &[&Bar], soprano: cantor_engine::VoiceRange) -> Score {
    let origin = bars[0].start;
    let steps = (bars.last().expect("bars").end() - origin) as usize;
    let mut notes: Vec<&HeardNote> = bars.iter().flat_map(|b| b.melody.iter()).collect();
    // Top line: among notes starting together keep the highest.
    notes.sort_by_key(|n| (n.start, std::cmp::Reverse(n.pitch)));
    notes.dedup_by_key(|n| n.start);
    let width = i32::from(soprano.highest) - i32::from(soprano.lowest);
    let lowest = notes.iter().map(|n| i32::from(n.pitch)).min().unwrap_or(0);
    let highest = notes.iter().map(|n| i32::from(n.pitch)).max().unwrap_or(0);
    let floor = (lowest.min(highest - width)..=lowest.max(highest - width))
        .max_by_key(|lo| {
            let inside = notes
                .iter()
                .filter(|n| (*lo..=lo + width).contains(&i32::from(n.pitch)))
                .count();
            (
                inside,
                std::cmp::Reverse((lo - i32::from(soprano.lowest)).abs()),
            )
        })
        .unwrap_or(lowest);
    let mut score = Score::new(steps);
    for n in notes {
        score.write_note(Note {
            voice: Voice::Soprano,
            pitch: folded(n.pitch, floor, floor + width),
            start: (n.start - origin) as usize,
            length: (n.end - n.start).max(1) as usize,
            velocity: n.velocity,
        });
    }
    score
}

/// `pitch` moved by octaves into `lowest..=highest` (at least an octave
/// wide), within MIDI's range.
fn folded(pitch: u8, lowest: i32, highest: i32) -> u8 {
    let mut pitch = i32::from(pitch);
    while pitch > highest {
        pitch -= 12;
    }
    while pitch < lowest {
        pitch += 12;
    }
    pitch.clamp(0, 127) as u8
}

/// [`compose`] for the plugin's problems, whose known notes come from
/// different passes: when no one transposition brings them all into the
/// model's ranges (the melody moved by octaves since its neighbours were
/// harmonized), the model hears every known note folded by octaves into its
/// voice's range, and the known cells come back exactly as they were.
pub(crate) fn compose_in_range(
    model: &ScoreModel,
    problem: &Problem,
    settings: &SamplerSettings,
    observer: &mut dyn Observer,
) -> cantor_engine::Result<Score> {
    let vocab = &model.card.vocabulary;
    if cantor_engine::task::fitting_transposition(problem, vocab).is_some() {
        return Ok(compose(model, problem, settings, observer)?.score);
    }
    let mut heard = problem.score.clone();
    for step in 0..heard.len() {
        for voice in Voice::ALL {
            if let (false, Token::Pitch(p)) =
                (problem.mask.is_free(step, voice), heard.get(step, voice))
            {
                let range = vocab.range(voice);
                let pitch = folded(p, range.lowest.into(), range.highest.into());
                heard.set(step, voice, Token::Pitch(pitch));
            }
        }
    }
    let folded = Problem::new(heard, problem.mask.clone(), problem.constraints.clone())?
        .with_lane(problem.lane.clone());
    let mut score = compose(model, &folded, settings, observer)?.score;
    for step in 0..score.len() {
        for voice in Voice::ALL {
            if !problem.mask.is_free(step, voice) {
                score.set(step, voice, problem.score.get(step, voice));
            }
        }
    }
    Ok(score)
}

/// The character lane of a problem whose step 0 is song step `origin`:
/// each of the bars starting at `bar_starts` (song steps) takes the
/// character the window gave it ([`Window::character_at`]: the value when
/// the playhead last entered it), else `otherwise` (the parameters' now).
pub(crate) fn character_lane(
    window: &Window,
    bar_starts: impl IntoIterator<Item = i64>,
    origin: i64,
    otherwise: Character,
) -> cantor_engine::Result<Lane> {
    Lane::new(
        bar_starts
            .into_iter()
            .filter(|s| *s >= origin)
            .map(|start| {
                let at = (start - origin) as usize;
                (at, window.character_at(start, otherwise))
            }),
    )
}

/// Watches compositions; told where on the grid each problem starts, so
/// what it is shown can be placed on the song's grid.
pub trait Watcher: Observer {
    /// The next frames belong to a problem whose step 0 is song step `origin`.
    fn origin(&mut self, _origin: i64) {}
}

impl Watcher for cantor_engine::Unobserved {}

/// Bars of known context kept on each side of the bars being composed.
pub const CONTEXT_BARS: usize = 2;

/// Harmonizes every run of bars with a dirty bar. Returns the bars done. A
/// cancelled run returns the error and changes nothing.
pub fn harmonize(
    model: &ScoreModel,
    window: &Window,
    composition: &mut Composition,
    settings: &ComposeSettings,
    observer: &mut dyn Watcher,
) -> cantor_engine::Result<Vec<i64>> {
    let soprano = model.card.vocabulary.range(Voice::Soprano);
    let mut done = Vec::new();
    let mut updates = Vec::new();
    for run in window.segments() {
        // A kept bar with harmony stays as it is, changed melody or not.
        let kept = |bar: &Bar| {
            settings.kept.contains(&bar.start)
                && composition
                    .harmony
                    .get(&bar.start)
                    .is_some_and(|h| h.len() == bar.length as usize)
        };
        let to_compose = |bar: &Bar| bar.dirty && !kept(bar);
        let Some(first_dirty) = run.iter().position(|b| to_compose(b)) else {
            continue;
        };
        // Only the dirty bars and some context either side: the rest of the
        // run is known and too far away to matter.
        let last_dirty = run
            .iter()
            .rposition(|b| to_compose(b))
            .expect("a dirty bar");
        let run = &run[first_dirty.saturating_sub(CONTEXT_BARS)
            ..(last_dirty + 1 + CONTEXT_BARS).min(run.len())];
        let origin = run[0].start;
        let mut score = melody_score(run, soprano);
        let mut mask = Mask::none(score.len());
        for bar in run {
            let range = (bar.start - origin) as usize..(bar.end() - origin) as usize;
            match composition
                .harmony
                .get(&bar.start)
                .filter(|h| !to_compose(bar) && h.len() == range.len())
            {
                Some(cells) => {
                    for (t, cell) in range.clone().zip(cells) {
                        for v in [Voice::Alto, Voice::Tenor, Voice::Bass] {
                            score.set(t, v, cell[v.index()].into());
                        }
                    }
                }
                None => mask.free_region(range, &[Voice::Alto, Voice::Tenor, Voice::Bass]),
            }
        }
        score.normalize();
        if score.voice_is_silent(Voice::Soprano) {
            // A run of silent bars: nothing to harmonize, and no harmony.
            for bar in run {
                updates.push((bar.start, None));
                done.push(bar.start);
            }
            continue;
        }
        let constraints = cantor_engine::task::constraints_for(settings.key, &score, &mask);
        let lane = character_lane(
            window,
            run.iter().map(|b| b.start),
            origin,
            settings.sampler.character,
        )?;
        let problem = Problem::new(score, mask, constraints)?.with_lane(lane);
        observer.origin(origin);
        let generated = compose_in_range(model, &problem, &settings.sampler, observer)?;
        for bar in run {
            let range = (bar.start - origin) as usize..(bar.end() - origin) as usize;
            let cells: Vec<[CellToken; 4]> = generated
                .slice(range)
                .cells()
                .iter()
                .map(|c| c.map(CellToken::from))
                .collect();
            updates.push((bar.start, Some(cells)));
            done.push(bar.start);
        }
    }
    for (start, cells) in updates {
        match cells {
            Some(c) => composition.harmony.insert(start, c),
            None => composition.harmony.remove(&start),
        };
    }
    composition
        .harmony
        .retain(|start, _| window.bars.contains_key(start));
    Ok(done)
}

/// Composes `bars` bars after the run of bars ending at `from` (where the
/// input stopped).
pub fn answer(
    model: &ScoreModel,
    window: &Window,
    composition: &mut Composition,
    from: i64,
    settings: &ComposeSettings,
    observer: &mut dyn Watcher,
) -> cantor_engine::Result<()> {
    let Some(run) = window
        .segments()
        .into_iter()
        .find(|r| r.last().is_some_and(|b| b.end() == from))
    else {
        return Ok(());
    };
    let soprano = model.card.vocabulary.range(Voice::Soprano);
    let origin = run[0].start;
    let phrase = melody_score(&run, soprano);
    let bar_len = run.last().expect("run").length as usize;
    let mut score = phrase.extended(phrase.len() + settings.continue_bars * bar_len);
    let mut mask = Mask::none(score.len());
    for bar in &run {
        let range = (bar.start - origin) as usize..(bar.end() - origin) as usize;
        match composition
            .harmony
            .get(&bar.start)
            .filter(|h| h.len() == range.len())
        {
            Some(cells) => {
                for (t, cell) in range.clone().zip(cells) {
                    for v in [Voice::Alto, Voice::Tenor, Voice::Bass] {
                        score.set(t, v, cell[v.index()].into());
                    }
                }
            }
            None => mask.free_region(range, &[Voice::Alto, Voice::Tenor, Voice::Bass]),
        }
    }
    mask.free_region(phrase.len()..score.len(), &Voice::ALL);
    score.normalize();
    let constraints = cantor_engine::task::constraints_for(settings.key, &score, &mask);
    // The answer's bars are ahead of the playhead: each takes what the
    // playhead read there on an earlier pass, else the parameters' now.
    let answer_bars = (0..settings.continue_bars as i64).map(|i| from + i * bar_len as i64);
    let lane = character_lane(
        window,
        run.iter().map(|b| b.start).chain(answer_bars),
        origin,
        settings.sampler.character,
    )?;
    let problem = Problem::new(score, mask, constraints)?.with_lane(lane);
    observer.origin(origin);
    let generated = compose_in_range(model, &problem, &settings.sampler, observer)?;
    let cells = generated
        .slice(phrase.len()..generated.len())
        .cells()
        .iter()
        .map(|c| c.map(CellToken::from))
        .collect();
    composition.answer = Some((from, cells));
    Ok(())
}

/// The notes to play: the chosen voices of the harmony (alto, tenor, bass)
/// and of the answer (all four), on channels by `layout`.
pub fn schedule(composition: &Composition, voices: [bool; 4], layout: ChannelLayout) -> Schedule {
    let mut notes = Vec::new();
    let mut push = |origin: i64, cells: &[[CellToken; 4]], which: &[Voice]| {
        let mut score = Score::new(cells.len());
        for (t, cell) in cells.iter().enumerate() {
            for v in Voice::ALL {
                score.set(t, v, cell[v.index()].into());
            }
        }
        score.normalize();
        for note in score.notes() {
            if !which.contains(&note.voice) || !voices[note.voice.index()] {
                continue;
            }
            notes.push(ScheduledNote {
                start: origin + note.start as i64,
                end: origin + note.end() as i64,
                pitch: note.pitch,
                channel: match layout {
                    ChannelLayout::PerVoice => note.voice.index() as u8,
                    ChannelLayout::Single => 0,
                },
                velocity: DEFAULT_VELOCITY,
            });
        }
    };
    // Join adjacent bars so notes held across a bar line stay one note.
    let mut run_start: Option<i64> = None;
    let mut run: Vec<[CellToken; 4]> = Vec::new();
    for (start, cells) in &composition.harmony {
        if run_start.is_some_and(|s| s + run.len() as i64 != *start) {
            push(
                run_start.expect("run"),
                &run,
                &[Voice::Alto, Voice::Tenor, Voice::Bass],
            );
            run.clear();
            run_start = None;
        }
        run_start.get_or_insert(*start);
        run.extend_from_slice(cells);
    }
    if let Some(s) = run_start {
        push(s, &run, &[Voice::Alto, Voice::Tenor, Voice::Bass]);
    }
    if let Some((start, cells)) = &composition.answer {
        push(*start, cells, &Voice::ALL);
    }
    Schedule::new(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cantor_engine::{Device, Unobserved};

    /// Four bars of a hymn tune in quarter notes, `shift` semitones from
    /// where the chorales sing it, heard and not yet harmonized.
    fn heard(shift: i32) -> Window {
        let tune = [
            67, 67, 66, 64, 62, 67, 69, 71, 71, 71, 69, 67, 72, 71, 69, 67,
        ];
        let mut window = Window::default();
        for bar in 0..4 {
            let start = 64 + 16 * bar as i64;
            let melody = (0..4)
                .map(|beat| HeardNote {
                    start: start + 4 * beat,
                    end: start + 4 * beat + 4,
                    pitch: (tune[4 * bar + beat as usize] + shift) as u8,
                    velocity: 90,
                })
                .collect();
            window.bars.insert(
                start,
                Bar {
                    start,
                    length: 16,
                    melody,
                    dirty: true,
                    heard: bar as u64,
                    adopted: false,
                },
            );
        }
        window
    }

    fn harmonized(model: &ScoreModel, window: &Window) -> Composition {
        let settings = ComposeSettings {
            sampler: SamplerSettings::from_defaults(&model.card.sampling),
            key: KeyChoice::Free,
            continue_bars: 2,
            kept: Default::default(),
        };
        let mut composition = Composition::default();
        harmonize(model, window, &mut composition, &settings, &mut Unobserved).unwrap();
        composition
    }

    #[test]
    fn a_tune_played_low_gets_the_same_harmony_below_it() {
        let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
        let high = harmonized(&model, &heard(0));
        let low = harmonized(&model, &heard(-24));
        assert_eq!(high.harmony.len(), 4);
        let moved_down: BTreeMap<i64, Vec<[CellToken; 4]>> = high
            .harmony
            .iter()
            .map(|(start, cells)| {
                let cells = cells
                    .iter()
                    .map(|cell| {
                        cell.map(|t| match t {
                            CellToken::Pitch(p) => CellToken::Pitch(p - 24),
                            other => other,
                        })
                    })
                    .collect();
                (*start, cells)
            })
            .collect();
        assert_eq!(low.harmony, moved_down);
        // Per-voice layout: alto, tenor, bass on channels 2–4; single: all on 1.
        let voices = [false, true, true, true];
        let per_voice = schedule(&low, voices, ChannelLayout::PerVoice);
        let channels: std::collections::BTreeSet<u8> =
            per_voice.notes().iter().map(|n| n.channel).collect();
        assert_eq!(channels, [1, 2, 3].into());
        let single = schedule(&low, voices, ChannelLayout::Single);
        assert!(single.notes().iter().all(|n| n.channel == 0));
        assert_eq!(single.notes().len(), per_voice.notes().len());
        // And so every composed note sounds at or below the tune.
        let schedule = schedule(&low, [false, true, true, true], ChannelLayout::PerVoice);
        let window = heard(-24);
        for note in schedule.notes() {
            let tune = window.bars.values().flat_map(|b| &b.melody);
            for m in tune.filter(|m| m.start < note.end && note.start < m.end) {
                assert!(note.pitch <= m.pitch, "{note:?} above the tune's {m:?}");
            }
        }
    }

    #[test]
    fn only_a_melody_wider_than_the_soprano_is_folded() {
        let soprano = cantor_engine::VoiceRange {
            lowest: 60,
            highest: 81,
        };
        let bar = |pitches: &[u8]| Bar {
            start: 0,
            length: 4 * pitches.len() as i64,
            melody: pitches
                .iter()
                .enumerate()
                .map(|(i, &pitch)| HeardNote {
                    start: 4 * i as i64,
                    end: 4 * i as i64 + 4,
                    pitch,
                    velocity: 90,
                })
                .collect(),
            dirty: true,
            heard: 0,
            adopted: false,
        };
        let pitches = |bar: &Bar| -> Vec<u8> {
            melody_score(&[bar], soprano)
                .voice_notes(Voice::Soprano)
                .iter()
                .map(|n| n.pitch)
                .collect()
        };
        // Low, high or in range: as played.
        for tune in [[40, 45, 52, 47], [84, 88, 91, 86], [60, 67, 72, 81]] {
            assert_eq!(pitches(&bar(&tune)), tune);
        }
        // Two octaves and a bit: the stray low note comes up an octave.
        assert_eq!(pitches(&bar(&[72, 76, 79, 84, 55])), [72, 76, 79, 84, 67]);
    }

    #[test]
    fn each_bar_of_a_problem_takes_its_own_character_or_the_current_one() {
        let at = |activity| Character {
            activity,
            tension: 0.0,
        };
        let mut window = Window::default();
        window.set_character(32, at(1.0));
        window.set_character(64, at(-0.5));
        // A problem starting at song step 16: bars at 16, 32, 48, 64.
        let lane = character_lane(&window, [16, 32, 48, 64], 16, at(0.25)).unwrap();
        assert_eq!(
            lane.changes(),
            &[(0, at(0.25)), (16, at(1.0)), (32, at(0.25)), (48, at(-0.5))]
        );
    }
}
