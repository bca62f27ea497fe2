//! DeepBach's voice network (Hadjeres, Pachet & Nielsen 2017, Fig. 4; the
//! layers of the authors' PyTorch `VoiceModel`): the note of one voice at
//! step t predicted from the past (an LSTM over the steps before t, all
//! voices and the metadata, read forwards), the future (a second LSTM over
//! the steps after t, read backwards from the far end towards t), and the
//! other voices at t (a feed-forward network), merged by a feed-forward
//! layer into the voice's token distribution.

use candle_core::{DType, Device, Module, Result, Tensor, D};

use candle_nn::{embedding, linear, Embedding, Linear, VarBuilder};
use cantor_engine::grid::{Voice, VOICES};
use cantor_engine::vocab::Vocabulary;
use serde::{Deserialize, Serialize};

/// Sizes of a DeepBach model; the card records them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Steps each LSTM reads on its side of t (the reference: 16, one 4/4
    /// bar of 16ths).
    pub context: usize,
    pub note_embedding: usize,
    pub meta_embedding: usize,
    pub lstm_layers: usize,
    pub lstm_hidden: usize,
    pub linear_hidden: usize,
    /// Dropout between stacked LSTM layers in training (the reference: 0.5).
    pub dropout: f32,
}

/// Metadata per step: the 16th within its beat (DeepBach's tick) and the
/// key signature (the tonic of the relative major, 0–11); the fermatas of
/// the paper are not in the JSB data.
pub const TICKS: usize = 4;
pub const KEYS: usize = 12;
/// The tick's and the key's value outside the piece (START/END padding).
pub const META_OUTSIDE_TICK: u32 = TICKS as u32;
/// "Key unknown" (no notes to estimate it from), and outside the piece.
pub const KEY_UNKNOWN: u32 = KEYS as u32;
pub const METAS: usize = 2;

/// A voice's token indices: the vocabulary's block (rest, hold, pitches),
/// then START (before the piece) and END (after it), as DeepBach pads.
pub fn start_symbol(vocab: &Vocabulary, voice: Voice) -> u32 {
    vocab.voice_size(voice) as u32
}
pub fn end_symbol(vocab: &Vocabulary, voice: Voice) -> u32 {
    vocab.voice_size(voice) as u32 + 1
}

/// An LSTM layer (PyTorch's gate order i, f, g, o; one bias).
struct Lstm {
    w_ih: Linear,
    w_hh: Tensor,
    hidden: usize,
}

impl Lstm {
    fn new(input: usize, hidden: usize, vb: VarBuilder) -> Result<Lstm> {
        Ok(Lstm {
            w_ih: linear(input, 4 * hidden, vb.pp("ih"))?,
            w_hh: vb.get_with_hints(
                (4 * hidden, hidden),
                "hh.weight",
                candle_nn::init::DEFAULT_KAIMING_NORMAL,
            )?,
            hidden,
        })
    }

    /// Every step's output for inputs of (B, in) each: (B, H) each. The
    /// sequence is a list of tensors, not one (B, T, ·) tensor: the
    /// gradient of a slice of a tensor is the whole tensor, zero-padded, so
    /// slicing one step at a time would cost O(T²) in the backward pass.
    fn forward(&self, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        let b = xs.first().map_or(Ok(0), |x| x.dim(0))?;
        let device = xs.first().map_or(Device::Cpu, |x| x.device().clone());
        let w_hh = self.w_hh.t()?;
        let h_size = self.hidden;
        let mut h = Tensor::zeros((b, h_size), DType::F32, &device)?;
        let mut c = h.clone();
        let mut outputs = Vec::with_capacity(xs.len());
        for x in xs {
            let gates = (self.w_ih.forward(x)? + h.matmul(&w_hh)?)?;
            let i = candle_nn::ops::sigmoid(&gates.narrow(1, 0, h_size)?)?;
            let f = candle_nn::ops::sigmoid(&gates.narrow(1, h_size, h_size)?)?;
            let g = gates.narrow(1, 2 * h_size, h_size)?.tanh()?;
            let o = candle_nn::ops::sigmoid(&gates.narrow(1, 3 * h_size, h_size)?)?;
            c = ((f * &c)? + (i * g)?)?;
            h = (o * c.tanh()?)?;
            outputs.push(h.clone());
        }
        Ok(outputs)
    }
}

/// Stacked LSTM layers; the last step's output of the top layer.
struct StackedLstm {
    layers: Vec<Lstm>,
    dropout: f32,
}

impl StackedLstm {
    fn new(arch: &Architecture, input: usize, vb: VarBuilder) -> Result<StackedLstm> {
        let layers = (0..arch.lstm_layers)
            .map(|l| {
                let width = if l == 0 { input } else { arch.lstm_hidden };
                Lstm::new(width, arch.lstm_hidden, vb.pp(l.to_string()))
            })
            .collect::<Result<_>>()?;
        Ok(StackedLstm {
            layers,
            dropout: arch.dropout,
        })
    }

    fn last(&self, xs: Vec<Tensor>, train: bool) -> Result<Tensor> {
        let mut xs = xs;
        for (l, layer) in self.layers.iter().enumerate() {
            if l > 0 && train && self.dropout > 0.0 {
                xs = xs
                    .iter()
                    .map(|x| candle_nn::ops::dropout(x, self.dropout))
                    .collect::<Result<_>>()?;
            }
            xs = layer.forward(&xs)?;
        }
        xs.pop()
            .ok_or_else(|| candle_core::Error::Msg("an LSTM over no steps".into()))
    }
}

/// One voice's network.
pub struct VoiceNet {
    voice: Voice,
    notes: Vec<Embedding>,
    ticks: Embedding,
    keys: Embedding,
    left: StackedLstm,
    right: StackedLstm,
    center: (Linear, Linear),
    out: (Linear, Linear),
}

/// Inputs of a batch of B positions, token indices as u32 tensors.
pub struct Inputs {
    /// (B, 4) per step: the steps before t, oldest first.
    pub left: Vec<Tensor>,
    /// (B, 4) per step: the steps after t, farthest first (read backwards).
    pub right: Vec<Tensor>,
    /// (B, 4): the voices at t (the predicted voice's entry is ignored).
    pub center: Tensor,
    /// (B, 2) per step, and at t: tick and key.
    pub left_meta: Vec<Tensor>,
    pub right_meta: Vec<Tensor>,
    pub center_meta: Tensor,
}

impl VoiceNet {
    pub fn new(
        voice: Voice,
        arch: &Architecture,
        vocab: &Vocabulary,
        vb: VarBuilder,
    ) -> Result<VoiceNet> {
        let notes = Voice::ALL
            .iter()
            .map(|u| {
                embedding(
                    vocab.voice_size(*u) + 2,
                    arch.note_embedding,
                    vb.pp(format!("note{}", u.index())),
                )
            })
            .collect::<Result<_>>()?;
        let step_width = arch.note_embedding * VOICES + arch.meta_embedding * METAS;
        let center_width = arch.note_embedding * (VOICES - 1) + arch.meta_embedding * METAS;
        Ok(VoiceNet {
            voice,
            notes,
            ticks: embedding(TICKS + 1, arch.meta_embedding, vb.pp("tick"))?,
            keys: embedding(KEYS + 1, arch.meta_embedding, vb.pp("key"))?,
            left: StackedLstm::new(arch, step_width, vb.pp("left"))?,
            right: StackedLstm::new(arch, step_width, vb.pp("right"))?,
            center: (
                linear(center_width, arch.linear_hidden, vb.pp("center0"))?,
                linear(arch.linear_hidden, arch.lstm_hidden, vb.pp("center1"))?,
            ),
            out: (
                linear(3 * arch.lstm_hidden, arch.linear_hidden, vb.pp("out0"))?,
                linear(arch.linear_hidden, vocab.voice_size(voice), vb.pp("out1"))?,
            ),
        })
    }

    /// Embeds each step's (B, 4) notes and (B, 2) metadata as (B, width).
    fn embed_steps(&self, notes: &[Tensor], meta: &[Tensor]) -> Result<Vec<Tensor>> {
        notes
            .iter()
            .zip(meta)
            .map(|(n, m)| {
                let mut parts = Vec::with_capacity(VOICES + 1);
                for (u, emb) in self.notes.iter().enumerate() {
                    parts.push(emb.forward(&n.narrow(1, u, 1)?.squeeze(1)?)?);
                }
                parts.push(self.embed_meta(m)?);
                Tensor::cat(&parts, 1)
            })
            .collect()
    }

    fn embed_meta(&self, meta: &Tensor) -> Result<Tensor> {
        let tick = self
            .ticks
            .forward(&meta.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?)?;
        let key = self
            .keys
            .forward(&meta.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?)?;
        Tensor::cat(&[tick, key], D::Minus1)
    }

    /// Logits (B, voice size) of the voice's token at t.
    pub fn forward(&self, x: &Inputs, train: bool) -> Result<Tensor> {
        let left = self
            .left
            .last(self.embed_steps(&x.left, &x.left_meta)?, train)?;
        let right = self
            .right
            .last(self.embed_steps(&x.right, &x.right_meta)?, train)?;
        let mut parts = Vec::with_capacity(VOICES);
        for (u, emb) in self.notes.iter().enumerate() {
            if u != self.voice.index() {
                parts.push(emb.forward(&x.center.narrow(1, u, 1)?.squeeze(1)?)?);
            }
        }
        parts.push(self.embed_meta(&x.center_meta)?);
        let center = Tensor::cat(&parts, 1)?;
        let center = self
            .center
            .1
            .forward(&self.center.0.forward(&center)?.relu()?)?;
        let merged = Tensor::cat(&[left, center, right], 1)?;
        self.out.1.forward(&self.out.0.forward(&merged)?.relu()?)
    }
}

/// Host-side inputs for B positions before they become tensors.
#[derive(Default)]
pub struct HostInputs {
    /// Step-major: one list per step of the context, B × 4 indices each.
    pub left: Vec<Vec<u32>>,
    pub right: Vec<Vec<u32>>,
    pub center: Vec<u32>,
    pub left_meta: Vec<Vec<u32>>,
    pub right_meta: Vec<Vec<u32>>,
    pub center_meta: Vec<u32>,
    pub size: usize,
}

impl HostInputs {
    /// Adds the position `t` of a padded grid: `cells(s)` is the 4 voices'
    /// indices at step s of the piece (any integer: outside the piece it
    /// must answer START/END), `meta(s)` its tick and key.
    pub fn push(
        &mut self,
        context: usize,
        t: i64,
        cells: impl Fn(i64) -> [u32; VOICES],
        meta: impl Fn(i64) -> [u32; METAS],
    ) {
        let c = context as i64;
        if self.left.is_empty() {
            self.left = vec![Vec::new(); context];
            self.right = vec![Vec::new(); context];
            self.left_meta = vec![Vec::new(); context];
            self.right_meta = vec![Vec::new(); context];
        }
        for (k, s) in (t - c..t).enumerate() {
            self.left[k].extend(cells(s));
            self.left_meta[k].extend(meta(s));
        }
        for (k, s) in (t + 1..=t + c).rev().enumerate() {
            self.right[k].extend(cells(s));
            self.right_meta[k].extend(meta(s));
        }
        self.center.extend(cells(t));
        self.center_meta.extend(meta(t));
        self.size += 1;
    }

    pub fn tensors(&self, device: &Device) -> Result<Inputs> {
        let b = self.size;
        let t = |v: &Vec<u32>, width: usize| Tensor::from_slice(v, (b, width), device);
        let steps = |vs: &Vec<Vec<u32>>, width: usize| -> Result<Vec<Tensor>> {
            vs.iter().map(|v| t(v, width)).collect()
        };
        Ok(Inputs {
            left: steps(&self.left, VOICES)?,
            right: steps(&self.right, VOICES)?,
            center: t(&self.center, VOICES)?,
            left_meta: steps(&self.left_meta, METAS)?,
            right_meta: steps(&self.right_meta, METAS)?,
            center_meta: t(&self.center_meta, METAS)?,
        })
    }
}
