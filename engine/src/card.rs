//! The model card: the JSON file beside a model's safetensors weights that
//! says what the weights are (architecture, vocabulary, noise schedule), how
//! they were trained and how well they do.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::harmony::ChordPrior;
use crate::vocab::Vocabulary;

/// Format tag written into every card; a card with another tag is refused.
pub const CARD_FORMAT: &str = "cantor-score-network/1";

/// Largest residual width a card may state.
pub const MAX_HIDDEN: usize = 2048;
/// Largest convolution kernel a card may state.
pub const MAX_KERNEL: usize = 15;
/// Most residual blocks a card may state.
pub const MAX_BLOCKS: usize = 64;
/// Largest dilation a card may state, in grid steps.
pub const MAX_DILATION: usize = 4096;
/// Most Fourier features of log σ a card may state.
pub const MAX_SIGMA_FEATURES: usize = 256;
/// Most weights a card may imply (128 MB of f32; a shipped model has
/// about a million).
pub const MAX_PARAMETERS: u64 = 32 << 20;
/// Most noise levels a run may take (cards, CLI, plugin).
pub const MAX_LEVELS: usize = 1000;
/// Most Langevin steps per level a run may take.
pub const MAX_STEPS_PER_LEVEL: usize = 100;

/// Shape of the score network (see `network.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Channels of the residual stream.
    pub hidden: usize,
    /// Taps of each temporal convolution (odd).
    pub kernel: usize,
    /// Dilation of each residual block, in 16th-note steps.
    pub dilations: Vec<usize>,
    /// Fourier features of log σ fed to the noise embedding (even).
    pub sigma_features: usize,
    /// Feed the network each voice's *lines*: at every step, the pitch that
    /// sounds there and the pitch of the next onset, computed from the cells'
    /// current beliefs (see `network::line_features`). With a hold token the
    /// pitch a note moves from sits behind any number of holds; these
    /// channels put it beside the cell. Cards written before they existed
    /// read as `false`.
    #[serde(default)]
    pub line_features: bool,
    /// Give every residual block the whole window's summary (its input
    /// averaged over time) beside its dilated convolution. The convolutions
    /// see `receptive_field` steps each side — four bars of 4/4 — so without
    /// it the last bars of a continuation cannot see the prompt at all, and
    /// its key reaches them only through the cells composed in between.
    /// Cards written before it existed read as `false`.
    #[serde(default)]
    pub global_context: bool,
    /// Read the phrase ends (fermatas) among the conditioning, so that the
    /// network knows where a cadence belongs (`network::PHRASE_CONDITIONING`).
    /// Cards written before it existed read as `false`.
    #[serde(default)]
    pub phrase_features: bool,
}

impl NetworkConfig {
    /// Steps each side of a cell that the network can see.
    pub fn receptive_field(&self) -> usize {
        self.dilations.iter().map(|d| d * (self.kernel / 2)).sum()
    }

    /// A network small enough for tests.
    pub fn tiny() -> NetworkConfig {
        NetworkConfig {
            hidden: 16,
            kernel: 3,
            dilations: vec![1, 2],
            sigma_features: 4,
            line_features: true,
            global_context: true,
            phrase_features: true,
        }
    }
}

/// Geometric noise levels between `sigma_max` and `sigma_min`: the network is
/// trained on σ drawn log-uniformly from that interval, so any number of
/// levels can be used when sampling.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseSchedule {
    pub sigma_max: f32,
    pub sigma_min: f32,
}

impl NoiseSchedule {
    /// `n` levels from σ_max down to σ_min, geometrically spaced.
    pub fn levels(&self, n: usize) -> Vec<f32> {
        match n {
            0 => Vec::new(),
            1 => vec![self.sigma_min],
            _ => {
                let ratio = (self.sigma_min / self.sigma_max).ln() / (n - 1) as f32;
                (0..n)
                    .map(|i| self.sigma_max * (ratio * i as f32).exp())
                    .collect()
            }
        }
    }
}

/// Default sampler settings the card recommends (chosen by `trainer bench`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingDefaults {
    pub levels: usize,
    pub steps_per_level: usize,
    pub step_size: f32,
    pub temperature: f32,
    /// Weight of the voice-leading rules (see [`crate::rules`]); cards
    /// written before they existed have none.
    #[serde(default)]
    pub rules: f32,
    /// What each Langevin step moves towards; cards written before the
    /// choice existed moved towards the mean.
    #[serde(default)]
    pub target: Target,
    /// Weight of the line model ([`crate::lines`]) on each new pitch, when
    /// one is attached; cards written before it existed have none.
    #[serde(default)]
    pub line_weight: f32,
    /// Weight of the home key ([`crate::constraints::Key::estimate`] of the
    /// known notes) in nats per free cell sounding outside it; cards written
    /// before it existed have none.
    #[serde(default)]
    pub key_weight: f32,
    /// Weight of the home key's degrees on where a voice goes
    /// ([`crate::SamplerSettings::degree_weight`]); cards written before it
    /// existed have none.
    #[serde(default)]
    pub degree_weight: f32,
    /// Weight of the chord prior ([`crate::SamplerSettings::chord_weight`]);
    /// cards written before it existed have none.
    #[serde(default)]
    pub chord_weight: f32,
    /// Langevin's temperature where the chords settle
    /// ([`crate::SamplerSettings::settle_temperature`]); cards written
    /// before it existed draw at `temperature` throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_temperature: Option<f32>,
}

impl Default for SamplingDefaults {
    fn default() -> Self {
        SamplingDefaults {
            levels: 40,
            steps_per_level: 1,
            step_size: 0.5,
            temperature: 1.0,
            rules: 0.0,
            target: Target::Draw,
            line_weight: 0.0,
            key_weight: 0.0,
            degree_weight: 0.0,
            chord_weight: 0.0,
            settle_temperature: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Always [`CARD_FORMAT`].
    pub format: String,
    pub name: String,
    pub architecture: NetworkConfig,
    pub vocabulary: Vocabulary,
    pub noise: NoiseSchedule,
    #[serde(default)]
    pub sampling: SamplingDefaults,
    /// The line model's weights file beside this card's ([`crate::lines`]),
    /// loaded with it; cards without one sample with the network alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<String>,
    /// The chord prior the samplers weigh each beat with
    /// ([`crate::harmony::ChordPrior`], `trainer chords`); cards without one
    /// leave the chords to the network and the rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chords: Option<ChordPrior>,
    /// Training record: data, split, steps, losses (free-form).
    #[serde(default)]
    pub training: serde_json::Value,
    /// Evaluation results (free-form, written by `trainer eval`).
    #[serde(default)]
    pub metrics: serde_json::Value,
}

impl ModelCard {
    pub fn new(
        name: &str,
        architecture: NetworkConfig,
        vocabulary: Vocabulary,
        noise: NoiseSchedule,
    ) -> ModelCard {
        ModelCard {
            format: CARD_FORMAT.to_string(),
            name: name.to_string(),
            architecture,
            vocabulary,
            noise,
            sampling: SamplingDefaults::default(),
            lines: None,
            chords: None,
            training: serde_json::Value::Null,
            metrics: serde_json::Value::Null,
        }
    }

    /// Checks the card's own numbers make sense, before any tensor is read.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != CARD_FORMAT {
            return Err(format!(
                "card format is '{}', expected '{CARD_FORMAT}'",
                self.format
            ));
        }
        let a = &self.architecture;
        if a.hidden == 0
            || a.kernel.is_multiple_of(2)
            || a.dilations.is_empty()
            || !a.sigma_features.is_multiple_of(2)
        {
            return Err(format!(
                "architecture {a:?} is invalid: hidden > 0, odd kernel, at least one block and an even number of sigma features are needed"
            ));
        }
        if a.dilations.contains(&0) {
            return Err("architecture has a block with dilation 0".into());
        }
        // Bounds far past any network that fits in a plugin, checked before
        // anything is allocated from these numbers.
        if a.hidden > MAX_HIDDEN
            || a.kernel > MAX_KERNEL
            || a.dilations.len() > MAX_BLOCKS
            || a.dilations.iter().any(|d| *d > MAX_DILATION)
            || a.sigma_features > MAX_SIGMA_FEATURES
        {
            return Err(format!(
                "architecture {a:?} is past the limits a card may state (hidden ≤ {MAX_HIDDEN}, kernel ≤ {MAX_KERNEL}, ≤ {MAX_BLOCKS} blocks of dilation ≤ {MAX_DILATION}, ≤ {MAX_SIGMA_FEATURES} sigma features)"
            ));
        }
        // The weights a card implies, counted before any is allocated (a
        // shipped model has about a million).
        let h = a.hidden as u64;
        let channels = self
            .vocabulary
            .ranges
            .iter()
            .map(|r| u64::from(r.highest.saturating_sub(r.lowest)) + 3)
            .sum::<u64>();
        let global = if a.global_context { h * h + h } else { 0 };
        let parameters = a.dilations.len() as u64
            * (a.kernel as u64 * h * h + h * h + 8 * h + global)
            + (5 * channels + 16) * h
            + a.sigma_features as u64 * h;
        if parameters > MAX_PARAMETERS {
            return Err(format!(
                "architecture {a:?} implies about {parameters} weights, more than the {MAX_PARAMETERS} a card may state"
            ));
        }
        if let Some(chords) = &self.chords {
            chords.check()?;
        }
        if let Some(name) = &self.lines {
            let plain = Path::new(name)
                .file_name()
                .is_some_and(|f| f == name.as_str());
            if !plain || !name.ends_with(".safetensors") {
                return Err(format!(
                    "the card's line model '{name}' must be a .safetensors file name beside the card, not a path"
                ));
            }
        }
        let d = &self.sampling;
        if d.levels == 0
            || d.levels > MAX_LEVELS
            || d.steps_per_level == 0
            || d.steps_per_level > MAX_STEPS_PER_LEVEL
        {
            return Err(format!(
                "sampling defaults of {} levels × {} steps per level are outside 1–{MAX_LEVELS} levels and 1–{MAX_STEPS_PER_LEVEL} steps per level",
                d.levels, d.steps_per_level
            ));
        }
        if !(self.noise.sigma_max.is_finite() && self.noise.sigma_max < 1e6) {
            return Err(format!(
                "noise schedule σ_max={} is not a finite noise level",
                self.noise.sigma_max
            ));
        }
        if !(self.noise.sigma_max > self.noise.sigma_min && self.noise.sigma_min > 0.0) {
            return Err(format!(
                "noise schedule σ_max={} σ_min={} must satisfy σ_max > σ_min > 0",
                self.noise.sigma_max, self.noise.sigma_min
            ));
        }
        for (voice, range) in crate::grid::Voice::ALL.iter().zip(&self.vocabulary.ranges) {
            if range.lowest > range.highest || range.highest > 127 {
                return Err(format!(
                    "vocabulary range of the {voice} ({range:?}) is invalid"
                ));
            }
        }
        Ok(())
    }
}

/// What each Langevin step moves the relaxation towards.
///
/// The denoiser's output is a *mixture*: per cell, the probability of each
/// token. Moving towards its mean (`Mean`, the textbook update) is mode
/// seeking on a discrete grid: where the network hesitates between holding
/// a note (one token) and any of several new pitches (probability spread
/// over many tokens), the relaxation drifts to the single concentrated
/// token level after level, and voices stop moving — half of Bach's notes
/// per beat in the inner voices, a continuation that holds one chord for
/// four bars. `Draw` moves towards a one-hot draw of every free cell from
/// the (rule-guided) denoiser instead, so each level commits to notes in the
/// proportions the network gives them and the next level denoises a
/// plausible piece rather than an average of pieces (models/README.md
/// measures both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The denoiser's mean D(x, σ) (cards written before `Draw` existed).
    #[default]
    Mean,
    /// A one-hot draw from D(x, σ) at the run's temperature.
    Draw,
}

impl Target {
    pub fn parse(text: &str) -> crate::error::Result<Target> {
        match text {
            "mean" => Ok(Target::Mean),
            "draw" => Ok(Target::Draw),
            other => Err(crate::error::CantorError::input(format!(
                "unknown Langevin target '{other}': use mean or draw"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_geometric_and_end_at_the_bounds() {
        let s = NoiseSchedule {
            sigma_max: 10.0,
            sigma_min: 0.1,
        };
        let levels = s.levels(3);
        assert!((levels[0] - 10.0).abs() < 1e-5);
        assert!((levels[1] - 1.0).abs() < 1e-5);
        assert!((levels[2] - 0.1).abs() < 1e-6);
    }

    #[test]
    fn cards_from_before_the_rules_sample_with_the_network_alone() {
        let old = r#"{"levels": 20, "steps_per_level": 1, "step_size": 0.8, "temperature": 0.5}"#;
        let defaults: SamplingDefaults = serde_json::from_str(old).unwrap();
        assert_eq!(defaults.rules, 0.0);
        assert_eq!(defaults.levels, 20);
        // ... and move towards the denoiser's mean, as they were tuned to.
        assert_eq!(defaults.target, Target::Mean);
    }
}
