//! The plugin's automatable parameters and its saved session.
//!
//! Parameters are atomics the host, the GUI and the worker read without
//! locking. The session (window, composition) is saved with the project so
//! reopening it plays the same notes without recomputing.

use std::sync::{Arc, RwLock};

use cantor_engine::constraints::{Key, Scale as KeyScale};
use cantor_engine::task::KeyChoice;
use nice_plug::prelude::*;
use serde::{Deserialize, Serialize};

use crate::composer::{ChannelLayout, Composition};
use crate::window::Window;

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

#[derive(Enum, Debug, PartialEq, Eq, Clone, Copy)]
pub enum KeyLock {
    #[id = "off"]
    Off,
    /// Estimated from the notes heard.
    #[id = "auto"]
    Auto,
    /// The key set by Tonic and Scale.
    #[id = "fixed"]
    Fixed,
}

#[derive(Enum, Debug, PartialEq, Eq, Clone, Copy)]
pub enum Tonic {
    C,
    #[name = "C#/Db"]
    CSharp,
    D,
    #[name = "D#/Eb"]
    DSharp,
    E,
    F,
    #[name = "F#/Gb"]
    FSharp,
    G,
    #[name = "G#/Ab"]
    GSharp,
    A,
    #[name = "A#/Bb"]
    ASharp,
    B,
}

#[derive(Enum, Debug, PartialEq, Eq, Clone, Copy)]
pub enum Scale {
    Major,
    Minor,
}

#[derive(Enum, Debug, PartialEq, Eq, Clone, Copy)]
pub enum Layout {
    /// Soprano, alto, tenor, bass on channels 1–4.
    #[id = "per-voice"]
    #[name = "S A T B on 1-4"]
    PerVoice,
    #[id = "single"]
    #[name = "All on channel 1"]
    Single,
}

/// Version of the saved session's format. A project saved by a later
/// Cantor (a higher version) is not misread: the plugin starts fresh and
/// says so. Sessions saved before versions existed read as 0 and are
/// checked like version 1.
pub const SESSION_VERSION: u32 = 1;

/// Bounds a saved session must keep before the worker adopts it: positions
/// and lengths a host could produce, far from what makes a grid allocation
/// abort the host.
pub mod session_limits {
    /// Latest step a bar, note or answer may start at (2^40 16ths: ~500,000
    /// years at 120 BPM).
    pub const MAX_POSITION: i64 = 1 << 40;
    /// Longest bar, in steps (16/1).
    pub const MAX_BAR_STEPS: i64 = 256;
    /// Most bars in the window (the window parameter's maximum, plus an
    /// adopted answer).
    pub const MAX_BARS: usize = 64;
    /// Widest stretch from the first bar to the end of the last (or of the
    /// answer), in steps: the take's grid spans it.
    pub const MAX_SPAN: i64 = 1 << 16;
    /// Longest answer, in steps.
    pub const MAX_ANSWER_STEPS: usize = 64 * MAX_BAR_STEPS as usize;
    /// Most notes heard in one bar.
    pub const MAX_NOTES_PER_BAR: usize = 4096;
}

/// What is saved with the project besides the parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Format version ([`SESSION_VERSION`]).
    #[serde(default)]
    pub version: u32,
    pub window: Window,
    pub composition: Composition,
    /// Who wrote this and when: (instance stamp, counter). The worker adopts
    /// a session it did not write (a project being loaded).
    #[serde(default)]
    pub stamp: (u64, u64),
    /// The editor's masked region.
    #[serde(default)]
    pub mask: Option<crate::take::Region>,
    /// Bars whose composed notes the musician kept.
    #[serde(default)]
    pub kept: std::collections::BTreeSet<i64>,
}

impl Session {
    /// Checks a loaded session before anything is adopted from it: its
    /// version, and that every position, length and count is one a host
    /// could have produced and agrees with the rest (harmony per heard bar
    /// and as long as it, notes inside their bar, pitches MIDI pitches). The
    /// reason, for the status line, when it is not.
    pub fn validate(&self) -> Result<(), String> {
        use crate::composer::CellToken;
        use session_limits::*;
        if self.version > SESSION_VERSION {
            return Err(format!(
                "it was saved by a later Cantor (session format {}, this one reads {SESSION_VERSION})",
                self.version
            ));
        }
        let bars = &self.window.bars;
        if bars.len() > MAX_BARS {
            return Err(format!(
                "{} bars in the window (at most {MAX_BARS})",
                bars.len()
            ));
        }
        let valid_cells = |cells: &[[CellToken; 4]]| {
            cells.iter().flatten().all(|c| match c {
                CellToken::Pitch(p) => *p < 128,
                _ => true,
            })
        };
        let mut previous_end = 0i64;
        for (key, bar) in bars {
            if *key != bar.start
                || !(0..=MAX_POSITION).contains(&bar.start)
                || !(1..=MAX_BAR_STEPS).contains(&bar.length)
            {
                return Err(format!(
                    "a bar at step {key} of {} steps (bars start at 0 … {MAX_POSITION}, 1 … {MAX_BAR_STEPS} steps long)",
                    bar.length
                ));
            }
            if bar.start < previous_end {
                return Err(format!(
                    "the bar at step {} overlaps the one before it",
                    bar.start
                ));
            }
            previous_end = bar.end();
            if bar.melody.len() > MAX_NOTES_PER_BAR
                || bar.melody.iter().any(|n| {
                    n.pitch > 127
                        || n.velocity > 127
                        || !(bar.start..bar.end()).contains(&n.start)
                        || n.end <= n.start
                        || n.end - n.start > MAX_SPAN
                })
            {
                return Err(format!(
                    "the bar at step {} holds an impossible note",
                    bar.start
                ));
            }
        }
        for (start, cells) in &self.composition.harmony {
            match bars.get(start) {
                Some(bar) if cells.len() as i64 == bar.length && valid_cells(cells) => {}
                _ => {
                    return Err(format!(
                        "the harmony at step {start} belongs to no heard bar of its length"
                    ))
                }
            }
        }
        let first = bars.keys().next().copied();
        let mut last = bars.values().map(|b| b.end()).max();
        if let Some((start, cells)) = &self.composition.answer {
            if !(0..=MAX_POSITION).contains(start)
                || cells.is_empty()
                || cells.len() > MAX_ANSWER_STEPS
                || !valid_cells(cells)
            {
                return Err(format!(
                    "an answer of {} steps at step {start} (at most {MAX_ANSWER_STEPS} steps, from step 0)",
                    cells.len()
                ));
            }
            last = last.max(Some(start + cells.len() as i64));
        }
        let first = match (first, self.composition.answer.as_ref().map(|(s, _)| *s)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(first), Some(last)) = (first, last) {
            if last - first > MAX_SPAN {
                return Err(format!(
                    "its bars span {} steps (at most {MAX_SPAN})",
                    last - first
                ));
            }
        }
        if let Some(mask) = &self.mask {
            if mask.start >= mask.end || mask.start < 0 || mask.end - mask.start > MAX_SPAN {
                return Err(format!("a masked region {}..{}", mask.start, mask.end));
            }
        }
        if self.kept.len() > MAX_BARS
            || self
                .kept
                .iter()
                .any(|k| !bars.contains_key(k) && !(0..=MAX_POSITION).contains(k))
        {
            return Err("kept bars outside the take".into());
        }
        Ok(())
    }
}

#[derive(Params)]
pub struct CantorParams {
    #[id = "mode"]
    pub mode: EnumParam<Mode>,
    #[id = "soprano"]
    pub soprano: BoolParam,
    #[id = "alto"]
    pub alto: BoolParam,
    #[id = "tenor"]
    pub tenor: BoolParam,
    #[id = "bass"]
    pub bass: BoolParam,
    #[id = "temperature"]
    pub temperature: FloatParam,
    /// Weight of the voice-leading rules (no parallel fifths/octaves or
    /// crossings, textbook ranges, full chords on the beat): 0 is the
    /// network alone, higher is stricter.
    #[id = "rules"]
    pub rules: FloatParam,
    /// Noise levels of the sampler: fewer is faster, more is better.
    /// Noise levels of the annealing (the CLI's `--levels`). Its id stays
    /// "steps", as saved projects and automation lanes know it.
    #[id = "steps"]
    pub levels: IntParam,
    #[id = "key-lock"]
    pub key_lock: EnumParam<KeyLock>,
    #[id = "tonic"]
    pub tonic: EnumParam<Tonic>,
    #[id = "scale"]
    pub scale: EnumParam<Scale>,
    #[id = "window-bars"]
    pub window_bars: IntParam,
    #[id = "continue-bars"]
    pub continue_bars: IntParam,
    #[id = "layout"]
    pub layout: EnumParam<Layout>,
    /// Changing it asks for a new variation of everything.
    #[id = "seed"]
    pub seed: IntParam,
    #[id = "pass-through"]
    pub pass_through: BoolParam,
    /// The host's bypass: Cantor plays nothing and passes every input note
    /// through, as if it were not there (it keeps listening, so the harmony
    /// is ready when it is switched back on).
    #[id = "bypass"]
    pub bypass: BoolParam,

    #[persist = "session"]
    pub session: Arc<RwLock<Session>>,
}

/// Default noise levels and temperature: the shipped model card's choice,
/// from `trainer bench` on the validation split (models/README.md).
pub const DEFAULT_LEVELS: i32 = 20;
pub const DEFAULT_TEMPERATURE: f32 = 1.2;
/// Default weight of the voice-leading rules, the card's (models/README.md).
pub const DEFAULT_RULES: f32 = 3.0;

impl Default for CantorParams {
    fn default() -> Self {
        CantorParams {
            mode: EnumParam::new("Mode", Mode::Harmonize),
            soprano: BoolParam::new("Soprano", true),
            alto: BoolParam::new("Alto", true),
            tenor: BoolParam::new("Tenor", true),
            bass: BoolParam::new("Bass", true),
            temperature: FloatParam::new(
                "Temperature",
                DEFAULT_TEMPERATURE,
                FloatRange::Linear { min: 0.1, max: 2.0 },
            )
            .with_step_size(0.01),
            rules: FloatParam::new(
                "Rules",
                DEFAULT_RULES,
                FloatRange::Linear { min: 0.0, max: 8.0 },
            )
            .with_step_size(0.1),
            levels: IntParam::new(
                "Levels",
                DEFAULT_LEVELS,
                IntRange::Linear { min: 4, max: 100 },
            ),
            key_lock: EnumParam::new("Key lock", KeyLock::Off),
            tonic: EnumParam::new("Tonic", Tonic::C),
            scale: EnumParam::new("Scale", Scale::Major),
            window_bars: IntParam::new("Window", 8, IntRange::Linear { min: 1, max: 32 })
                .with_unit(" bars"),
            continue_bars: IntParam::new("Answer length", 4, IntRange::Linear { min: 1, max: 16 })
                .with_unit(" bars"),
            layout: EnumParam::new("Channels", Layout::PerVoice),
            seed: IntParam::new("Seed", 0, IntRange::Linear { min: 0, max: 9999 }),
            pass_through: BoolParam::new("Pass through", true),
            bypass: BoolParam::new("Bypass", false).make_bypass(),
            session: Arc::new(RwLock::new(Session::default())),
        }
    }
}

impl CantorParams {
    pub fn voices(&self) -> [bool; 4] {
        [
            self.soprano.value(),
            self.alto.value(),
            self.tenor.value(),
            self.bass.value(),
        ]
    }

    pub fn layout(&self) -> ChannelLayout {
        match self.layout.value() {
            Layout::PerVoice => ChannelLayout::PerVoice,
            Layout::Single => ChannelLayout::Single,
        }
    }

    pub fn key(&self) -> KeyChoice {
        match self.key_lock.value() {
            KeyLock::Off => KeyChoice::Free,
            KeyLock::Auto => KeyChoice::Auto,
            KeyLock::Fixed => KeyChoice::Fixed(Key {
                tonic: self.tonic.value() as u8,
                scale: match self.scale.value() {
                    Scale::Major => KeyScale::Major,
                    Scale::Minor => KeyScale::Minor,
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_shipped_models_evaluated_settings() {
        let card = cantor_engine::model::shipped::load(&cantor_engine::Device::Cpu)
            .expect("shipped model")
            .card;
        assert_eq!(card.sampling.levels, DEFAULT_LEVELS as usize);
        assert_eq!(card.sampling.temperature, DEFAULT_TEMPERATURE);
        assert_eq!(card.sampling.rules, DEFAULT_RULES);
        let params = CantorParams::default();
        assert_eq!(params.levels.value(), DEFAULT_LEVELS);
        assert_eq!(params.temperature.value(), DEFAULT_TEMPERATURE);
        assert_eq!(params.rules.value(), DEFAULT_RULES);
    }

    /// Issue #15: thousands of generated sessions, from plausible to
    /// hostile (positions and lengths near 0, negative, huge; harmony of
    /// any length; answers anywhere). Each is validated; what passes is
    /// used as the worker and the editor use it (bars of the take, its
    /// score, adopting the answer) and must not panic.
    #[test]
    fn generated_sessions_are_refused_or_used_without_a_panic() {
        use crate::composer::{CellToken, Composition};
        use crate::take::{adopt_answer, extent, take_bars, take_score};
        use crate::window::{Bar, HeardNote};
        // xorshift64*: a fixed, dependency-free sequence.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let pick = |choices: &[i64], next: &mut dyn FnMut() -> u64| {
            choices[(next() % choices.len() as u64) as usize]
        };
        let positions = [
            0,
            16,
            32,
            48,
            -16,
            1 << 20,
            1 << 40,
            (1 << 40) + 16,
            i64::MAX / 2,
            -(1 << 40),
        ];
        let lengths = [16, 12, 1, 0, -16, 256, 257, 1 << 30, 8];
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let mut session = Session::default();
            for _ in 0..(next() % 5) {
                let start = pick(&positions, &mut next);
                let length = pick(&lengths, &mut next);
                let note_start = start + (next() % 20) as i64 - 2;
                let melody = (0..next() % 3)
                    .map(|_| HeardNote {
                        start: note_start,
                        end: note_start + pick(&lengths, &mut next),
                        pitch: (next() % 140) as u8,
                        velocity: (next() % 140) as u8,
                    })
                    .collect();
                session.window.bars.insert(
                    start,
                    Bar {
                        start: if next() % 10 == 0 { start + 1 } else { start },
                        length,
                        melody,
                        dirty: next() % 2 == 0,
                        heard: next() % 10,
                        adopted: next() % 2 == 0,
                    },
                );
            }
            let starts: Vec<(i64, i64)> = session
                .window
                .bars
                .values()
                .map(|b| (b.start, b.length))
                .collect();
            for (start, length) in starts {
                if next() % 3 > 0 {
                    let cells = if next() % 4 == 0 {
                        (next() % 40) as usize
                    } else {
                        length.clamp(0, 300) as usize
                    };
                    session
                        .composition
                        .harmony
                        .insert(start, vec![[CellToken::Hold; 4]; cells]);
                }
            }
            if next() % 2 == 0 {
                let start = pick(&positions, &mut next);
                let cells = (next() % 80) as usize;
                let mut answer = vec![[CellToken::Hold; 4]; cells];
                if let Some(first) = answer.first_mut() {
                    *first = [CellToken::Pitch((next() % 130) as u8); 4];
                }
                session.composition = Composition {
                    answer: Some((start, answer)),
                    ..session.composition
                };
            }
            match session.validate() {
                Err(_) => refused += 1,
                Ok(()) => {
                    accepted += 1;
                    let mut window = session.window.clone();
                    let mut composition = session.composition.clone();
                    for mode in [Mode::Harmonize, Mode::Continue] {
                        let bars = take_bars(&window, &composition, mode);
                        if let Some(span) = extent(&bars) {
                            let range = cantor_engine::Vocabulary::chorales()
                                .range(cantor_engine::Voice::Soprano);
                            take_score(&window, &composition, mode, range, span);
                        }
                    }
                    adopt_answer(&mut window, &mut composition, 8);
                }
            }
        }
        assert!(
            accepted > 100 && refused > 100,
            "{accepted} accepted, {refused} refused"
        );
    }
}
