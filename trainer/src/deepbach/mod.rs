//! The DeepBach peer (issue #14): Hadjeres, Pachet & Nielsen's model of the
//! chorales, trained on the same JSB split and sampled by its own
//! pseudo-Gibbs procedure, so that `trainer eval` can set it beside
//! Cantor's samplers.
//!
//! - [`net`]: one network per voice (past LSTM, future LSTM, centre MLP).
//! - [`train`]: cross-entropy training on random positions of the
//!   transposed corpus, with checkpoints and resume (`trainer deepbach`).
//! - [`sample`]: parallel pseudo-Gibbs over a [`Problem`]'s free cells with
//!   the reference code's temperature schedule.
//!
//! Encoding: Cantor's grid (16ths; per voice rest, hold, pitch onsets),
//! which is DeepBach's own — its "__" symbol continues the note before, as
//! Cantor's hold does — plus DeepBach's START/END padding symbols outside
//! the piece. The same tokens on both sides mean the comparison measures
//! the models and the samplers, not two encodings.
//!
//! Where this differs from the authors' PyTorch code, and why:
//! - Sizes: one LSTM layer of 96 units and MLPs of 128 (the reference: two
//!   layers of 256, dropout 0.5 between them), so that the four networks
//!   train to a flat validation loss on a 2-core CPU; 0.94 M parameters,
//!   about Cantor's 0.87 M (1.04 M since the global context). Both are
//!   options of `trainer deepbach`.
//! - Context: 16 steps on each side of t, always (the reference trains with
//!   16–20 before and 11–15 after, and samples with 16 / 15).
//! - Metadata: the tick within the beat and the key signature (the
//!   relative major's tonic, estimated from the music: in training from
//!   all four voices, when sampling from the known cells — the melody in
//!   harmonize — as Cantor's `--key auto` does); JSB has no fermatas; the
//!   reference's voice-index metadata is dropped (each network has one
//!   voice); steps outside the piece have their own tick and key values
//!   ("key unknown" is only ever seen there in training, so a problem with
//!   no known note at all gives the networks an input they never saw).
//! - Training: the four networks share one optimizer (Adam with decoupled
//!   weight decay 1e-5 and the gradient clipped to norm 1 over all four,
//!   Cantor's trainer's) on the same batch of positions; the reference
//!   trains each voice's network in turn with plain Adam. A resumed run
//!   draws new positions (seeded by the step), so it is not bit-identical
//!   to an uninterrupted one.
//! - Sampling: Cantor's constraints hold (the melody and every known cell
//!   kept, key and range limits, a hold only after a sounding note and
//!   never lengthening a known note); the random start draws no holds; the
//!   reference allows its "__" anywhere.

pub mod net;
pub mod sample;
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use cantor_engine::constraints::{Key, Scale};
use cantor_engine::grid::{Score, Token, Voice, VOICES};
use cantor_engine::vocab::Vocabulary;
use serde::{Deserialize, Serialize};

use net::{Architecture, VoiceNet, KEY_UNKNOWN, METAS, META_OUTSIDE_TICK};

pub const DEEPBACH_FORMAT: &str = "cantor-deepbach/1";

/// DeepBach's sampler settings (the authors' `parallel_gibbs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GibbsSchedule {
    /// Updates per free cell, on average: the budget. The reference runs
    /// 500 iterations of 8 updates per voice on a 64-step sequence, 62.5
    /// per cell.
    pub updates_per_cell: f32,
    /// Cells of a voice redrawn at once from the same state (the
    /// reference's `batch_size_per_voice`).
    pub parallel: usize,
    /// Temperature at the first iteration, multiplied by `decay` at each
    /// until it reaches `final_temperature` (the reference: 1.1, 0.9993,
    /// 1.0).
    pub start_temperature: f32,
    pub decay: f32,
    #[serde(alias = "temperature")]
    pub final_temperature: f32,
}

impl Default for GibbsSchedule {
    fn default() -> Self {
        GibbsSchedule {
            updates_per_cell: 62.5,
            parallel: 8,
            start_temperature: 1.1,
            decay: 0.9993,
            final_temperature: 1.0,
        }
    }
}

/// A DeepBach model's card, beside its weights as `NAME.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeepBachCard {
    /// Always [`DEEPBACH_FORMAT`].
    pub format: String,
    pub name: String,
    pub architecture: Architecture,
    pub vocabulary: Vocabulary,
    #[serde(default)]
    pub sampling: GibbsSchedule,
    /// Training record (free-form: data, split, steps, the validation curve).
    #[serde(default)]
    pub training: serde_json::Value,
    #[serde(default)]
    pub metrics: serde_json::Value,
}

impl DeepBachCard {
    pub fn validate(&self) -> Result<()> {
        if self.format != DEEPBACH_FORMAT {
            bail!(
                "format is '{}', not '{DEEPBACH_FORMAT}' (a Cantor score-network card is loaded with --model, a DeepBach card with --deepbach)",
                self.format
            );
        }
        let a = &self.architecture;
        if a.context == 0 || a.lstm_layers == 0 || a.lstm_hidden == 0 || a.linear_hidden == 0 {
            bail!("the architecture has a zero size: {a:?}");
        }
        if a.note_embedding == 0 || a.meta_embedding == 0 {
            bail!("the architecture has a zero embedding: {a:?}");
        }
        if !(0.0..1.0).contains(&a.dropout) {
            bail!("dropout {} is not in [0, 1)", a.dropout);
        }
        let s = &self.sampling;
        if !(s.updates_per_cell > 0.0 && s.final_temperature > 0.0 && s.start_temperature > 0.0) {
            bail!("the sampling schedule needs positive updates and temperatures: {s:?}");
        }
        if s.parallel == 0 || !(s.decay > 0.0 && s.decay <= 1.0) {
            bail!("the sampling schedule needs parallel ≥ 1 and decay in (0, 1]: {s:?}");
        }
        Ok(())
    }
}

/// The four voice networks and their card.
pub struct DeepBach {
    pub card: DeepBachCard,
    pub voices: Vec<VoiceNet>,
    pub device: Device,
    pub origin: PathBuf,
}

impl DeepBach {
    /// Networks over `vb` (fresh variables in training, loaded tensors
    /// otherwise).
    pub fn build(card: DeepBachCard, vb: VarBuilder, device: &Device) -> Result<DeepBach> {
        card.validate()?;
        let voices = Voice::ALL
            .iter()
            .map(|v| {
                VoiceNet::new(
                    *v,
                    &card.architecture,
                    &card.vocabulary,
                    vb.pp(format!("voice{}", v.index())),
                )
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(DeepBach {
            card,
            voices,
            device: device.clone(),
            origin: PathBuf::new(),
        })
    }

    /// Loads `weights` (safetensors) and the card beside it (`.json`).
    pub fn load(weights: &Path, device: &Device) -> Result<DeepBach> {
        let card_file = weights.with_extension("json");
        let bytes = std::fs::read(&card_file).with_context(|| {
            format!(
                "{}: cannot read the DeepBach card that must sit beside the weights",
                card_file.display()
            )
        })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a JSON card", card_file.display()))?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != DEEPBACH_FORMAT {
            bail!(
                "{}: format is '{format}', not '{DEEPBACH_FORMAT}' (a Cantor score-network card is loaded with --model, a DeepBach card with --deepbach)",
                card_file.display()
            );
        }
        let card: DeepBachCard = serde_json::from_value(value)
            .with_context(|| format!("{}: not a DeepBach card", card_file.display()))?;
        card.validate()
            .with_context(|| format!("{}", card_file.display()))?;
        let data = std::fs::read(weights).with_context(|| format!("{}", weights.display()))?;
        let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, device)
            .with_context(|| format!("{}: cannot read tensors", weights.display()))?;
        let mut model = DeepBach::build(card, vb, device)
            .with_context(|| format!("{}: weights do not fit the card", weights.display()))?;
        model.origin = weights.to_path_buf();
        Ok(model)
    }

    pub fn context(&self) -> usize {
        self.card.architecture.context
    }

    /// Parameters of the four networks (from the card's sizes).
    pub fn parameters(&self) -> usize {
        let a = &self.card.architecture;
        let vocab = &self.card.vocabulary;
        let notes: usize = Voice::ALL
            .iter()
            .map(|v| (vocab.voice_size(*v) + 2) * a.note_embedding)
            .sum();
        let metas = (net::TICKS + 1 + net::KEYS + 1) * a.meta_embedding;
        let step = a.note_embedding * VOICES + a.meta_embedding * METAS;
        let lstm = |input: usize| 4 * a.lstm_hidden * (input + a.lstm_hidden + 1);
        let stack = lstm(step) + (a.lstm_layers - 1) * lstm(a.lstm_hidden);
        let center_in = a.note_embedding * (VOICES - 1) + a.meta_embedding * METAS;
        let center = (center_in + 1) * a.linear_hidden + (a.linear_hidden + 1) * a.lstm_hidden;
        Voice::ALL
            .iter()
            .map(|v| {
                let out = (3 * a.lstm_hidden + 1) * a.linear_hidden
                    + (a.linear_hidden + 1) * vocab.voice_size(*v);
                notes + metas + 2 * stack + center + out
            })
            .sum()
    }
}

/// A piece as DeepBach's networks read it: each voice's token index per
/// step and the metadata per step.
pub struct Encoded {
    pub cells: Vec<[u32; VOICES]>,
    pub meta: Vec<[u32; METAS]>,
    start: [u32; VOICES],
    end: [u32; VOICES],
}

impl Encoded {
    /// `None` when a note lies outside the vocabulary.
    pub fn new(score: &Score, vocab: &Vocabulary, key: Option<Key>) -> Option<Encoded> {
        let cells = score
            .cells()
            .iter()
            .map(|row| {
                let mut out = [0u32; VOICES];
                for v in Voice::ALL {
                    out[v.index()] = vocab.index(v, row[v.index()])? as u32;
                }
                Some(out)
            })
            .collect::<Option<Vec<_>>>()?;
        let signature = key.map_or(KEY_UNKNOWN, key_signature);
        let meta = (0..score.len())
            .map(|t| [(t % net::TICKS) as u32, signature])
            .collect();
        Some(Encoded {
            cells,
            meta,
            start: Voice::ALL.map(|v| net::start_symbol(vocab, v)),
            end: Voice::ALL.map(|v| net::end_symbol(vocab, v)),
        })
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// The voices at step `s`, START/END outside the piece.
    pub fn cell(&self, s: i64) -> [u32; VOICES] {
        if s < 0 {
            self.start
        } else if s as usize >= self.cells.len() {
            self.end
        } else {
            self.cells[s as usize]
        }
    }

    pub fn meta_at(&self, s: i64) -> [u32; METAS] {
        if s < 0 || s as usize >= self.meta.len() {
            [META_OUTSIDE_TICK, KEY_UNKNOWN]
        } else {
            self.meta[s as usize]
        }
    }

    /// The score these indices spell (velocities from `like`).
    pub fn to_score(&self, like: &Score, vocab: &Vocabulary) -> Score {
        let mut out = like.clone();
        for (t, row) in self.cells.iter().enumerate() {
            for v in Voice::ALL {
                let token: Token = vocab.token(v, row[v.index()] as usize);
                out.set(t, v, token);
            }
        }
        out
    }
}

/// The key signature as the pitch class of the relative major's tonic.
pub fn key_signature(key: Key) -> u32 {
    match key.scale {
        Scale::Major => key.tonic as u32 % 12,
        Scale::Minor => (key.tonic as u32 + 3) % 12,
    }
}
