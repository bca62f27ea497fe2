//! The line model: a small network per voice that reads only that voice's
//! own line — the 16 steps before a cell and the 16 after, each as rest,
//! hold or onset and its pitch *relative to the line's nearest sounding
//! pitch* — and gives the cell's token. It is the part of DeepBach that
//! Cantor's score network lacks (models/README.md, #14: DeepBach's voices
//! move by step as often as Bach's because each voice's network reads its
//! neighbours in order; Cantor's denoiser, even drawn one cell at a time,
//! skips between chord tones).
//!
//! The samplers use it as a second expert in the one free-cell sweep,
//! beside the rules: the score network decides *whether* a voice moves
//! (its hold, rest and onset mass is kept), the product of the two decides
//! *where* it goes — each new pitch's probability is the network's times
//! the line model's to the power `line_weight`, renormalised over the new
//! pitches. So it cannot make stasis cheaper or dearer, only the shape of
//! the lines; the harmony stays the score network's and the rules'.
//!
//! Relative pitches make it transposition-invariant (no augmentation, and
//! the same line in any key is one example); it is trained by
//! `trainer lines` on every cell of the training split given its exact
//! neighbours (DeepBach's pseudo-likelihood), which is what the sweep asks
//! of it: every neighbour is the current decode's.
//!
//! Its weights live in their own safetensors file with a card beside it
//! (`models/lines.safetensors`, `models/lines.json`), so a score network
//! can be used with or without one.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CantorError, Result};
use crate::grid::{Score, Token, Voice};
use crate::vocab::Vocabulary;

/// Format tag of a line model's card; a card with another tag is refused.
pub const LINE_FORMAT: &str = "cantor-line-model/1";

/// Largest width and context a card may state (checked before allocating).
pub const MAX_LINE_HIDDEN: usize = 1024;
pub const MAX_LINE_CONTEXT: usize = 256;
pub const MAX_LINE_SPAN: usize = 48;

/// Kinds of a context position.
pub const KIND_OUTSIDE: usize = 0;
pub const KIND_REST: usize = 1;
pub const KIND_HOLD: usize = 2;
pub const KIND_ONSET: usize = 3;
pub const KINDS: usize = 4;
/// Steps per quarter: the tick within the beat the model is told.
pub const TICKS: usize = crate::grid::STEPS_PER_QUARTER;

/// Shape of a line model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineConfig {
    /// Steps read each side of the cell.
    pub context: usize,
    /// Relative pitches from −span to +span are told apart; further ones
    /// are clamped (inputs) or not predicted (outputs).
    pub span: usize,
    /// Width of the two hidden layers.
    pub hidden: usize,
}

impl LineConfig {
    /// Relative-pitch slots of an input: −span…span and "no pitch".
    pub fn pitch_slots(&self) -> usize {
        2 * self.span + 2
    }

    /// Output classes: rest, hold, then relative pitches −span…span.
    pub fn classes(&self) -> usize {
        2 + 2 * self.span + 1
    }

    /// Context positions read (both sides).
    pub fn positions(&self) -> usize {
        2 * self.context
    }

    /// A line model small enough for tests.
    pub fn tiny() -> LineConfig {
        LineConfig {
            context: 4,
            span: 12,
            hidden: 8,
        }
    }

    /// Names and shapes of the tensors of one voice.
    pub fn tensors(&self, voice: Voice) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden;
        let n = |part: &str| format!("line.{}.{part}", voice.index());
        vec![
            (n("kind"), vec![self.positions() * KINDS, h]),
            (n("pitch"), vec![self.positions() * self.pitch_slots(), h]),
            (n("tick"), vec![TICKS, h]),
            (n("b1"), vec![h]),
            (n("w2"), vec![h, h]),
            (n("b2"), vec![h]),
            (n("w3"), vec![self.classes(), h]),
            (n("b3"), vec![self.classes()]),
        ]
    }

    /// Checks the shape is within what a card may state.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.context == 0
            || self.context > MAX_LINE_CONTEXT
            || self.hidden == 0
            || self.hidden > MAX_LINE_HIDDEN
            || self.span == 0
            || self.span > MAX_LINE_SPAN
        {
            return Err(format!(
                "line model shape {self:?} is outside 1–{MAX_LINE_CONTEXT} steps of context, 1–{MAX_LINE_HIDDEN} hidden, a span of 1–{MAX_LINE_SPAN} semitones"
            ));
        }
        Ok(())
    }
}

/// The JSON card beside a line model's weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineCard {
    /// Always [`LINE_FORMAT`].
    pub format: String,
    pub name: String,
    pub architecture: LineConfig,
    /// Training record (free-form).
    #[serde(default)]
    pub training: serde_json::Value,
    /// Evaluation results (free-form).
    #[serde(default)]
    pub metrics: serde_json::Value,
}

impl LineCard {
    pub fn new(name: &str, architecture: LineConfig) -> LineCard {
        LineCard {
            format: LINE_FORMAT.into(),
            name: name.into(),
            architecture,
            training: serde_json::Value::Null,
            metrics: serde_json::Value::Null,
        }
    }
}

/// One cell as the line model reads it: row indices into each context
/// position's kind and pitch tables, the tick, and the reference pitch the
/// relative pitches are measured from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInput {
    /// `positions` rows of the kind table (position·KINDS + kind).
    pub kinds: Vec<u32>,
    /// `positions` rows of the pitch table (position·slots + slot).
    pub pitches: Vec<u32>,
    pub tick: u32,
    /// The pitch relative pitches are measured from.
    pub reference: u8,
}

impl LineConfig {
    /// Reads (`step`, `voice`) of `score` as the model's input: every other
    /// cell of the voice within `context` steps is taken as known. `None`
    /// when nothing sounds in the voice within reach (no reference pitch):
    /// the model has no line to read there.
    pub fn encode(&self, score: &Score, step: usize, voice: Voice) -> Option<LineInput> {
        let reference = self.reference(score, step, voice)?;
        let slots = self.pitch_slots();
        let none = (slots - 1) as u32;
        let k = self.context as i64;
        let mut kinds = Vec::with_capacity(self.positions());
        let mut pitches = Vec::with_capacity(self.positions());
        let offsets = (-k..0).chain(1..=k);
        for (position, d) in offsets.enumerate() {
            let s = step as i64 + d;
            let (kind, slot) = if s < 0 || s >= score.len() as i64 {
                (KIND_OUTSIDE, none)
            } else {
                let s = s as usize;
                match score.get(s, voice) {
                    Token::Rest => (KIND_REST, none),
                    Token::Pitch(p) => (KIND_ONSET, self.slot(p, reference)),
                    // A hold whose onset is the cell being read carries no
                    // pitch (it would tell the model the answer).
                    Token::Hold => match self.sounding_without(score, s, voice, step) {
                        Some(p) => (KIND_HOLD, self.slot(p, reference)),
                        None => (KIND_HOLD, none),
                    },
                }
            };
            kinds.push((position * KINDS + kind) as u32);
            pitches.push((position * slots) as u32 + slot);
        }
        Some(LineInput {
            kinds,
            pitches,
            tick: (step % TICKS) as u32,
            reference,
        })
    }

    /// The class of `token` at a cell whose reference is `reference`, or
    /// `None` for a pitch further than `span` from it.
    pub fn class(&self, token: Token, reference: u8) -> Option<usize> {
        match token {
            Token::Rest => Some(0),
            Token::Hold => Some(1),
            Token::Pitch(p) => {
                let d = p as i64 - reference as i64;
                (d.unsigned_abs() as usize <= self.span)
                    .then(|| (2 + d + self.span as i64) as usize)
            }
        }
    }

    /// The sounding pitch nearest the cell in its voice: the one sounding
    /// just before it, else the first after it.
    fn reference(&self, score: &Score, step: usize, voice: Voice) -> Option<u8> {
        let k = self.context;
        (1..=k.min(step))
            .find_map(|d| self.sounding_without(score, step - d, voice, step))
            .or_else(|| {
                (step + 1..(step + 1 + k).min(score.len())).find_map(|s| {
                    match score.get(s, voice) {
                        Token::Pitch(p) => Some(p),
                        _ => None,
                    }
                })
            })
    }

    /// The pitch sounding at `s`, not counting a note that starts at
    /// `hidden` (the cell being read).
    fn sounding_without(&self, score: &Score, s: usize, voice: Voice, hidden: usize) -> Option<u8> {
        let mut at = s;
        loop {
            if at == hidden {
                return None;
            }
            match score.get(at, voice) {
                Token::Rest => return None,
                Token::Pitch(p) => return Some(p),
                Token::Hold if at == 0 => return None,
                Token::Hold => at -= 1,
            }
        }
    }

    fn slot(&self, pitch: u8, reference: u8) -> u32 {
        let d = (pitch as i64 - reference as i64).clamp(-(self.span as i64), self.span as i64);
        (d + self.span as i64) as u32
    }
}

/// One voice's weights, row-major as saved.
#[derive(Clone, Debug)]
struct VoiceNet {
    kind: Vec<f32>,
    pitch: Vec<f32>,
    tick: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    w3: Vec<f32>,
    b3: Vec<f32>,
}

/// A loaded line model (plain f32 on the host: one cell costs a few
/// thousand multiply-adds, evaluated inside the free-cell sweep).
#[derive(Clone, Debug)]
pub struct LineModel {
    pub card: LineCard,
    voices: Vec<VoiceNet>,
}

impl LineModel {
    /// Loads `weights` and the card beside it (`NAME.json`).
    pub fn load(weights: &Path) -> Result<LineModel> {
        let card_file = crate::model::card_path(weights);
        let card = std::fs::read(&card_file).map_err(|e| {
            CantorError::model(
                &card_file,
                format!("cannot read the line model's card that must sit beside its weights: {e}"),
            )
        })?;
        let bytes = std::fs::read(weights).map_err(|e| CantorError::io(weights, e))?;
        Self::from_bytes(&card, &bytes, weights)
    }

    /// Builds a line model from its card's JSON and safetensors bytes;
    /// `origin` names the weights in messages.
    pub fn from_bytes(card_json: &[u8], weights: &[u8], origin: &Path) -> Result<LineModel> {
        let card_file = crate::model::card_path(origin);
        let card: LineCard = serde_json::from_slice(card_json).map_err(|e| {
            CantorError::model(&card_file, format!("not a valid line model card: {e}"))
        })?;
        if card.format != LINE_FORMAT {
            return Err(CantorError::model(
                &card_file,
                format!("card format is '{}', expected '{LINE_FORMAT}'", card.format),
            ));
        }
        card.architecture
            .check()
            .map_err(|m| CantorError::model(&card_file, m))?;
        let file = safetensors::SafeTensors::deserialize(weights).map_err(|e| {
            CantorError::model(origin, format!("not a readable safetensors file ({e})"))
        })?;
        let mut tensors = HashMap::new();
        let mut expected = std::collections::HashSet::new();
        for voice in Voice::ALL {
            for (name, shape) in card.architecture.tensors(voice) {
                let view = file.tensor(&name).map_err(|_| {
                    CantorError::model(
                        origin,
                        format!("tensor '{name}' is missing, but the line model's card needs it"),
                    )
                })?;
                if view.shape() != shape.as_slice() {
                    return Err(CantorError::model(
                        origin,
                        format!(
                            "tensor '{name}' has shape {:?} but the card says {shape:?}",
                            view.shape()
                        ),
                    ));
                }
                if view.dtype() != safetensors::Dtype::F32 {
                    return Err(CantorError::model(
                        origin,
                        format!("tensor '{name}' has dtype {:?}; f32 expected", view.dtype()),
                    ));
                }
                let values: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(CantorError::model(
                        origin,
                        format!("tensor '{name}' holds NaN or infinite values"),
                    ));
                }
                expected.insert(name.clone());
                tensors.insert(name, values);
            }
        }
        if let Some(extra) = file.names().into_iter().find(|n| !expected.contains(*n)) {
            return Err(CantorError::model(
                origin,
                format!("tensor '{extra}' is not part of the line model the card describes"),
            ));
        }
        Ok(Self::from_named(card, tensors))
    }

    /// A line model from named row-major weights (as [`LineConfig::tensors`]
    /// names them); the caller has checked the shapes.
    pub fn from_named(card: LineCard, mut tensors: HashMap<String, Vec<f32>>) -> LineModel {
        let voices = Voice::ALL
            .iter()
            .map(|v| {
                let mut take = |part: &str| {
                    tensors
                        .remove(&format!("line.{}.{part}", v.index()))
                        .expect("checked tensor")
                };
                VoiceNet {
                    kind: take("kind"),
                    pitch: take("pitch"),
                    tick: take("tick"),
                    b1: take("b1"),
                    w2: take("w2"),
                    b2: take("b2"),
                    w3: take("w3"),
                    b3: take("b3"),
                }
            })
            .collect();
        LineModel { card, voices }
    }

    pub fn config(&self) -> &LineConfig {
        &self.card.architecture
    }

    /// Log-probabilities of the model's classes (rest, hold, relative
    /// pitches) for (`step`, `voice`) of `score`, with the reference pitch;
    /// `None` where nothing sounds within reach.
    pub fn log_probs(&self, score: &Score, step: usize, voice: Voice) -> Option<(Vec<f32>, u8)> {
        let c = self.config();
        let input = c.encode(score, step, voice)?;
        Some((self.forward(voice, &input), input.reference))
    }

    /// The classes' log-probabilities for one encoded cell.
    pub fn forward(&self, voice: Voice, input: &LineInput) -> Vec<f32> {
        let c = self.config();
        let h = c.hidden;
        let net = &self.voices[voice.index()];
        let mut a = net.b1.clone();
        let rows = input
            .kinds
            .iter()
            .map(|&r| &net.kind[r as usize * h..(r as usize + 1) * h])
            .chain(
                input
                    .pitches
                    .iter()
                    .map(|&r| &net.pitch[r as usize * h..(r as usize + 1) * h]),
            )
            .chain(std::iter::once(
                &net.tick[input.tick as usize * h..(input.tick as usize + 1) * h],
            ));
        for row in rows {
            for (x, w) in a.iter_mut().zip(row) {
                *x += w;
            }
        }
        a.iter_mut().for_each(|x| *x = x.max(0.0));
        let dense = |w: &[f32], b: &[f32], x: &[f32]| -> Vec<f32> {
            b.iter()
                .zip(w.chunks_exact(x.len()))
                .map(|(b, row)| b + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>())
                .collect()
        };
        let mut b = dense(&net.w2, &net.b2, &a);
        b.iter_mut().for_each(|x| *x = x.max(0.0));
        let logits = dense(&net.w3, &net.b3, &b);
        let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let norm = logits.iter().map(|l| (l - top).exp()).sum::<f32>().ln() + top;
        logits.into_iter().map(|l| l - norm).collect()
    }

    /// The line expert's energy (nats) for each token of `voice`'s
    /// vocabulary at the cell (`step`, `voice`), given the network's `row`
    /// for the cell. The expert says which pitch a voice moves to, not
    /// whether it moves: for each pitch that changes what sounds,
    /// −w·ln p_line(pitch | the voice moves) plus the one constant that keeps
    /// those pitches' total probability under p·e^−E what the network gave
    /// them; 0 for rest, hold and a re-strike of the pitch sounding just
    /// before (the corpus cannot tell a re-strike from a hold, so the expert
    /// has no say on it). Adds into `energy`; does nothing where the model
    /// has no line to read.
    pub fn add_energy(
        &self,
        score: &Score,
        (step, voice): (usize, Voice),
        vocab: &Vocabulary,
        row: &[f32],
        weight: f32,
        energy: &mut [f32],
    ) {
        let Some((logs, reference)) = self.log_probs(score, step, voice) else {
            return;
        };
        let c = self.config();
        let before = step
            .checked_sub(1)
            .and_then(|s| c.sounding_without(score, s, voice, step));
        let moves = |token: Token| matches!(token, Token::Pitch(p) if Some(p) != before);
        // The line model's distribution over the pitches that move.
        let stay = before.and_then(|p| c.class(Token::Pitch(p), reference));
        let moving = logs[2..]
            .iter()
            .enumerate()
            .filter(|(k, _)| Some(k + 2) != stay)
            .map(|(_, l)| l.exp())
            .sum::<f32>()
            .max(1e-30);
        let floor = (1e-6f32 / moving).ln();
        let line: Vec<Option<f32>> = (0..row.len())
            .map(|i| {
                let token = vocab.token(voice, i);
                moves(token).then(|| {
                    let lp = match c.class(token, reference) {
                        Some(k) => (logs[k] - moving.ln()).max(floor),
                        None => floor,
                    };
                    weight * lp
                })
            })
            .collect();
        add_keeping_mass(row, |i| line[i].map(|l| -l), energy);
    }
}

/// Adds `cost(i)` nats to each token `i` it prices, all shifted by one
/// amount so that those tokens keep, under p·e^−E, the total probability
/// the network's `row` gives them: the expert says how that mass is shared
/// among them, never how much of it there is. Tokens it does not price are
/// left alone, and so is everything where the priced ones have no mass.
/// The line expert and the home key's degrees both reshape a voice's moves
/// this way.
pub(crate) fn add_keeping_mass(
    row: &[f32],
    cost: impl Fn(usize) -> Option<f32>,
    energy: &mut [f32],
) {
    let (mut network, mut weighed) = (0.0f64, 0.0f64);
    for (i, p) in row.iter().enumerate() {
        if let Some(c) = cost(i) {
            let p = p.max(0.0) as f64;
            network += p;
            weighed += p * (-c as f64).exp();
        }
    }
    if network <= 0.0 || weighed <= 0.0 {
        return;
    }
    let shift = (weighed / network).ln() as f32;
    for (i, e) in energy.iter_mut().enumerate() {
        if let Some(c) = cost(i) {
            *e += c + shift;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{HOLD_INDEX, REST_INDEX};

    fn line(pitches: &[u8]) -> Score {
        Score::from_pitches(Voice::Alto, pitches, 4)
    }

    #[test]
    fn a_cell_is_read_relative_to_the_pitch_before_it() {
        let c = LineConfig::tiny();
        let score = line(&[60, 62, 64]);
        // Step 4 is the onset of 62; before it 60 sounds.
        let input = c.encode(&score, 4, Voice::Alto).unwrap();
        assert_eq!(input.reference, 60);
        assert_eq!(input.tick, 0);
        assert_eq!(c.class(score.get(4, Voice::Alto), 60), Some(2 + 2 + 12));
        // Position 3 (offset −1) holds 60 → slot 12 (0 semitones).
        let slots = c.pitch_slots() as u32;
        assert_eq!(input.kinds[3], (3 * KINDS + KIND_HOLD) as u32);
        assert_eq!(input.pitches[3], 3 * slots + 12);
        // Position 4 (offset +1) holds the hidden note: no pitch given.
        assert_eq!(input.kinds[4], (4 * KINDS + KIND_HOLD) as u32);
        assert_eq!(input.pitches[4], 4 * slots + slots - 1);
        // The first cell has nothing before it: it reads the next onset
        // within reach (62 at step 4), and nothing further.
        assert_eq!(c.encode(&score, 0, Voice::Alto).unwrap().reference, 62);
        assert!(c.encode(&line(&[60]), 0, Voice::Alto).is_none());
        // A silent voice has no line to read.
        assert!(c.encode(&score, 4, Voice::Bass).is_none());
    }

    #[test]
    fn the_energy_keeps_the_networks_onset_mass() {
        let c = LineConfig::tiny();
        let card = LineCard::new("tiny", c);
        let mut tensors = HashMap::new();
        let mut seed = 1u32;
        for voice in Voice::ALL {
            for (name, shape) in c.tensors(voice) {
                let n: usize = shape.iter().product();
                let values = (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                    })
                    .collect();
                tensors.insert(name, values);
            }
        }
        let model = LineModel::from_named(card, tensors);
        let vocab = Vocabulary::chorales();
        let score = line(&[60, 62, 64, 65]);
        let n = vocab.voice_size(Voice::Alto);
        let row: Vec<f32> = (0..n).map(|i| (i + 1) as f32).collect();
        let total: f32 = row.iter().sum();
        let row: Vec<f32> = row.iter().map(|p| p / total).collect();
        let mut energy = vec![0.0; n];
        model.add_energy(&score, (8, Voice::Alto), &vocab, &row, 1.0, &mut energy);
        assert_eq!(energy[REST_INDEX], 0.0);
        assert_eq!(energy[HOLD_INDEX], 0.0);
        // Step 8 follows 62: re-striking it is not a move, so the expert
        // leaves it alone, and the pitches that move keep their total mass.
        let restrike = vocab.index(Voice::Alto, Token::Pitch(62)).unwrap();
        assert_eq!(energy[restrike], 0.0);
        let moving = |e: &[f32]| -> f32 {
            (2..n)
                .filter(|&i| i != restrike)
                .map(|i| row[i] * (-e[i]).exp())
                .sum::<f32>()
        };
        let before = moving(&vec![0.0; n]);
        assert!(
            (moving(&energy) - before).abs() < 1e-4,
            "{} vs {before}",
            moving(&energy)
        );
        assert!(energy.iter().skip(2).any(|e| e.abs() > 1e-3));
        // The class distribution is normalised.
        let (logs, _) = model.log_probs(&score, 8, Voice::Alto).unwrap();
        let sum: f32 = logs.iter().map(|l| l.exp()).sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }
}
