//! # cantor-engine
//!
//! Cantor's musical brain: the 16th-note score grid, MIDI / MusicXML / JSB
//! input and output, the noise-conditional score network, the annealed
//! Langevin and Gibbs samplers with inpainting and constraints, and the
//! metrics that judge what they write. It knows nothing of plugins, threads
//! or GUIs, so the CLI, the trainer, the plugin and the tests all drive the
//! same code.

pub mod baseline;
pub mod card;
pub mod character;
pub mod constraints;
pub mod error;
pub mod grid;
pub mod harmony;
pub mod io;
pub mod lines;
pub mod mask;
pub mod metrics;
pub mod model;
pub mod network;
pub mod phrases;
pub mod rules;
pub mod sampler;
pub mod task;
pub mod vocab;

pub use candle_core::Device;
pub use card::{ModelCard, NetworkConfig, NoiseSchedule, SamplingDefaults};
pub use character::{Character, Lane};
pub use constraints::{Constraints, Key, Scale};
pub use error::{CantorError, Result};
pub use grid::{Note, Score, TimeSignature, Token, Voice};
pub use lines::LineModel;
pub use mask::{Mask, MaskRegion};
pub use model::ScoreModel;
pub use sampler::{
    generate, AnnealingFrame, Belief, Generation, Observer, Problem, Relaxation, SamplerKind,
    SamplerSettings, SettingsOverrides, Target, Unobserved,
};
pub use task::{compose, continuation_problem, harmonize_problem, infill_problem, KeyChoice};
pub use vocab::{Vocabulary, VoiceRange};
