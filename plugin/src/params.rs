//! The plugin's automatable parameters and its saved session.
//!
//! Parameters are atomics the host, the GUI and the worker read without
//! locking. The session (window, composition) is saved with the project so
//! reopening it plays the same notes without recomputing.

use std::sync::{Arc, RwLock};

use cantor_engine::constraints::{Key, Scale as KeyScale};
use cantor_engine::task::KeyChoice;
use nice_plug::prelude::*;

use crate::composer::{ChannelLayout, Mode};
use crate::session::Session;

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
    /// Noise levels of the annealing (the CLI's `--levels`): fewer is
    /// faster, more is better. Its id stays
    /// "steps", as saved projects and automation lanes know it.
    #[id = "steps"]
    pub levels: IntParam,
    /// The character pad's across axis, calm (−1) to busy (1); 0 is the
    /// model's own style (`cantor_engine::character`). Read when a
    /// composition starts: it colours what is composed next, and the pad's
    /// release regenerates the masked bars.
    #[id = "activity"]
    pub activity: FloatParam,
    /// The character pad's upward axis, plain (−1) to tense (1).
    #[id = "tension"]
    pub tension: FloatParam,
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
pub const DEFAULT_TEMPERATURE: f32 = 1.3;
/// Default weight of the voice-leading rules, the card's (models/README.md).
pub const DEFAULT_RULES: f32 = 5.0;

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
            activity: FloatParam::new(
                "Activity",
                0.0,
                FloatRange::Linear {
                    min: -1.0,
                    max: 1.0,
                },
            )
            .with_step_size(0.01),
            tension: FloatParam::new(
                "Tension",
                0.0,
                FloatRange::Linear {
                    min: -1.0,
                    max: 1.0,
                },
            )
            .with_step_size(0.01),
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

    /// The character pad's position.
    pub fn character(&self) -> cantor_engine::Character {
        cantor_engine::Character {
            activity: self.activity.value(),
            tension: self.tension.value(),
        }
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
        // The character pad starts at the model's own style.
        assert!(params.character().is_neutral());
    }
}
