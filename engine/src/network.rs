//! The noise-conditional score network.
//!
//! Input, per 16th-note step: the noisy one-hot relaxation of the four voices
//! (`x`, scaled by 1/√(σ² + σ_data²) so every noise level reaches the network
//! at unit scale), the clean known cells (`y`, zero where free), one
//! known/free flag per voice, and the step's position inside its beat.
//!
//! With `line_features` on (see the card), the input also carries each
//! voice's lines, derived from the same cells (`line_features`).
//!
//! The network is parametrised as a Tweedie denoiser: it outputs, per cell
//! and voice, a probability distribution `D(x, σ)` over that voice's tokens,
//! its estimate of E[x₀ | x]. The score follows as
//! s(x, σ) = (D − x)/σ² — the raw output (D − x)/σ divided by σ, as in
//! NCSNv2 — so the part of the score that only rescales x is exact and the
//! network spends its capacity on music. Because x₀ is one-hot, the posterior
//! mean *is* the per-cell token distribution the Gibbs sampler and the final
//! decode need.
//!
//! The body is a stack of non-causal residual blocks whose temporal
//! convolutions are dilated (1, 2, 4, … steps), so a cell sees bars on both
//! sides of it. With `global_context` on (see the card), each block also
//! adds its input averaged over the whole window, so a cell past the
//! convolutions' reach still hears the key of the bars it cannot see.
//! Activations are laid out (batch, time, channels) and each
//! convolution is written as shifted copies concatenated into one matrix
//! product: that keeps the forward and backward passes on plain GEMMs, which
//! are the fast path of every candle backend.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::card::NetworkConfig;
use crate::grid::{Score, Voice, STEPS_PER_QUARTER, VOICES};
use crate::mask::Mask;
use crate::vocab::{Vocabulary, HOLD_INDEX};

/// Typical scale of the clean relaxation's coordinates (one-hot 0/1); sets
/// the input scaling 1/√(σ² + σ_data²).
pub const SIGMA_DATA: f32 = 0.5;

/// Channels that say where the phrases end: 1 where the phrase ends are
/// known (given, or inferred from the melody), and 1 on each step under a
/// fermata. A network whose card has no `phrase_features` does not read them.
pub const PHRASE_CONDITIONING: usize = 2;

/// Channels of conditioning beyond the known one-hot values: one known/free
/// flag per voice, a one-hot of the position inside the beat, and the
/// phrase ends ([`PHRASE_CONDITIONING`], last).
pub const EXTRA_CONDITIONING: usize = VOICES + STEPS_PER_QUARTER + PHRASE_CONDITIONING;

/// A dense layer applied at every step: `(B, T, in) → (B, T, out)`.
#[derive(Clone, Debug)]
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn new(input: usize, output: usize, vb: VarBuilder) -> Result<Dense> {
        let bound = 1.0 / (input as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Dense {
            weight: vb.get_with_hints((output, input), "weight", init)?,
            bias: vb.get_with_hints(output, "bias", init)?,
        })
    }

    /// A dense layer that starts at zero, so a residual block starts as the
    /// identity and deep stacks train from the first step.
    fn zeroed(input: usize, output: usize, vb: VarBuilder) -> Result<Dense> {
        Ok(Dense {
            weight: vb.get_with_hints((output, input), "weight", Init::Const(0.0))?,
            bias: vb.get_with_hints(output, "bias", Init::Const(0.0))?,
        })
    }
}

impl Module for Dense {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims();
        let input = dims[dims.len() - 1];
        let rows = xs.elem_count() / input;
        let flat = xs.reshape((rows, input))?;
        let out = flat.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?;
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-empty shape") = self.weight.dim(0)?;
        out.reshape(shape)
    }
}

/// Layer normalisation over channels. Inference uses candle's fused kernel;
/// training needs the composite version, which has a backward pass.
#[derive(Clone, Debug)]
struct ChannelNorm {
    weight: Tensor,
    bias: Tensor,
}

impl ChannelNorm {
    fn new(channels: usize, vb: VarBuilder) -> Result<ChannelNorm> {
        Ok(ChannelNorm {
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
        })
    }

    fn forward(&self, xs: &Tensor, differentiable: bool) -> Result<Tensor> {
        const EPS: f32 = 1e-5;
        if differentiable || !xs.is_contiguous() {
            candle_nn::ops::layer_norm_slow(xs, &self.weight, &self.bias, EPS)
        } else {
            candle_nn::ops::layer_norm(xs, &self.weight, &self.bias, EPS)
        }
    }
}

/// norm → SiLU → dilated temporal conv (+ noise embedding) → norm → SiLU →
/// pointwise mix, added back to the residual stream.
#[derive(Clone, Debug)]
struct ResidualBlock {
    norm1: ChannelNorm,
    taps: Dense,
    sigma: Dense,
    norm2: ChannelNorm,
    mix: Dense,
    /// With `global_context`: the block's input averaged over the window,
    /// added at every step beside the convolution (starts at zero).
    global: Option<Dense>,
    dilation: usize,
    kernel: usize,
}

impl ResidualBlock {
    fn new(cfg: &NetworkConfig, dilation: usize, vb: VarBuilder) -> Result<ResidualBlock> {
        let h = cfg.hidden;
        Ok(ResidualBlock {
            norm1: ChannelNorm::new(h, vb.pp("norm1"))?,
            taps: Dense::new(cfg.kernel * h, h, vb.pp("taps"))?,
            sigma: Dense::new(h, h, vb.pp("sigma"))?,
            norm2: ChannelNorm::new(h, vb.pp("norm2"))?,
            mix: Dense::zeroed(h, h, vb.pp("mix"))?,
            global: if cfg.global_context {
                Some(Dense::zeroed(h, h, vb.pp("global"))?)
            } else {
                None
            },
            dilation,
            kernel: cfg.kernel,
        })
    }

    /// `xs`: (B, T, H); `noise`: (B, 1, H).
    fn forward(&self, xs: &Tensor, noise: &Tensor, differentiable: bool) -> Result<Tensor> {
        let h = candle_nn::ops::silu(&self.norm1.forward(xs, differentiable)?)?;
        let mut context = self.sigma.forward(noise)?;
        if let Some(global) = &self.global {
            context = (context + global.forward(&h.mean_keepdim(1)?)?)?;
        }
        let h = self
            .taps
            .forward(&shifted_taps(&h, self.kernel, self.dilation)?)?;
        let h = h.broadcast_add(&context)?;
        let h = candle_nn::ops::silu(&self.norm2.forward(&h, differentiable)?)?;
        xs + self.mix.forward(&h)?
    }
}

/// `(B, T, C) → (B, T, kernel·C)`: for each step, the channels at offsets
/// −k/2·d … +k/2·d, zero past the ends. Channel order is tap-major.
fn shifted_taps(xs: &Tensor, kernel: usize, dilation: usize) -> Result<Tensor> {
    let steps = xs.dim(1)?;
    let reach = (kernel / 2) * dilation;
    let padded = xs.pad_with_zeros(1, reach, reach)?;
    let taps = (0..kernel)
        .map(|j| padded.narrow(1, j * dilation, steps))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&taps, 2)
}

/// The score network. Weight names follow the struct tree
/// (`blocks.3.taps.weight`), so a safetensors file reads like this code.
#[derive(Clone, Debug)]
pub struct ScoreNetwork {
    config: NetworkConfig,
    data_channels: usize,
    /// Width of each voice's one-hot block.
    voice_sizes: [usize; VOICES],
    input: Dense,
    sigma: Dense,
    blocks: Vec<ResidualBlock>,
    out_norm: ChannelNorm,
    output: Dense,
    /// Use ops with backward passes (training) instead of fused kernels.
    differentiable: bool,
}

impl ScoreNetwork {
    pub fn new(config: &NetworkConfig, vocab: &Vocabulary, vb: VarBuilder) -> Result<ScoreNetwork> {
        let data_channels = vocab.total_size();
        let input_channels = input_channels(config, vocab);
        let h = config.hidden;
        let blocks = config
            .dilations
            .iter()
            .enumerate()
            .map(|(i, d)| ResidualBlock::new(config, *d, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScoreNetwork {
            config: config.clone(),
            data_channels,
            voice_sizes: Voice::ALL.map(|v| vocab.voice_size(v)),
            input: Dense::new(input_channels, h, vb.pp("input"))?,
            sigma: Dense::new(config.sigma_features, h, vb.pp("sigma"))?,
            blocks,
            out_norm: ChannelNorm::new(h, vb.pp("out_norm"))?,
            output: Dense::new(h, data_channels, vb.pp("output"))?,
            differentiable: false,
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Switches between fused inference kernels and differentiable ops.
    pub fn set_differentiable(&mut self, differentiable: bool) {
        self.differentiable = differentiable;
    }

    /// Unnormalised log-probabilities of each voice's tokens, (B, T, C).
    /// `x`: noisy relaxation (B, T, C); `conditioning`: (B, T, C + extra);
    /// `sigmas`: one σ per batch item.
    pub fn logits(&self, x: &Tensor, conditioning: &Tensor, sigmas: &[f32]) -> Result<Tensor> {
        let device = x.device();
        let features = sigma_features(sigmas, self.config.sigma_features, device)?;
        let noise = candle_nn::ops::silu(&self.sigma.forward(&features)?)?.unsqueeze(1)?;
        let scale: Vec<f32> = sigmas
            .iter()
            .map(|s| 1.0 / (s * s + SIGMA_DATA * SIGMA_DATA).sqrt())
            .collect();
        let scale = Tensor::from_vec(scale, (sigmas.len(), 1, 1), device)?;
        let x_in = x.broadcast_mul(&scale)?;
        let read = match self.config.phrase_features {
            true => conditioning.clone(),
            false => {
                let width = conditioning.dim(D::Minus1)?;
                conditioning.narrow(D::Minus1, 0, width - PHRASE_CONDITIONING)?
            }
        };
        let input = if self.config.line_features {
            let lines = line_features(x, conditioning, sigmas, &self.voice_sizes)?;
            Tensor::cat(&[&x_in, &read, &lines], D::Minus1)?
        } else {
            Tensor::cat(&[&x_in, &read], D::Minus1)?
        };
        let mut h = self.input.forward(&input)?;
        for block in &self.blocks {
            h = block.forward(&h, &noise, self.differentiable)?;
        }
        let h = candle_nn::ops::silu(&self.out_norm.forward(&h, self.differentiable)?)?;
        self.output.forward(&h)
    }

    /// The denoiser D(x, σ): per cell and voice, a distribution over tokens.
    /// `logit_bias` (B or 1, T, C) adds −∞-like values to forbid tokens.
    pub fn denoise(
        &self,
        x: &Tensor,
        conditioning: &Tensor,
        sigmas: &[f32],
        logit_bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut logits = self.logits(x, conditioning, sigmas)?;
        if let Some(bias) = logit_bias {
            logits = logits.broadcast_add(bias)?;
        }
        self.per_voice(&logits, candle_nn::ops::softmax_last_dim)
    }

    /// Per-voice log-softmax of logits (for the training loss).
    pub fn log_probabilities(&self, logits: &Tensor) -> Result<Tensor> {
        self.per_voice(logits, |t| candle_nn::ops::log_softmax(t, D::Minus1))
    }

    /// The score s(x, σ) = (D(x, σ) − x)/σ².
    pub fn score(&self, x: &Tensor, conditioning: &Tensor, sigmas: &[f32]) -> Result<Tensor> {
        let denoised = self.denoise(x, conditioning, sigmas, None)?;
        let inv: Vec<f32> = sigmas.iter().map(|s| 1.0 / (s * s)).collect();
        let inv = Tensor::from_vec(inv, (sigmas.len(), 1, 1), x.device())?;
        (denoised - x)?.broadcast_mul(&inv)
    }

    /// Applies `f` to each voice's block of channels and joins the results.
    fn per_voice(&self, xs: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let mut start = 0;
        let mut parts = Vec::with_capacity(VOICES);
        for size in self.voice_sizes {
            parts.push(f(&xs.narrow(D::Minus1, start, size)?.contiguous()?)?);
            start += size;
        }
        Tensor::cat(&parts, D::Minus1)
    }

    /// Every weight by its safetensors name.
    pub fn named_tensors(&self) -> HashMap<String, &Tensor> {
        fn put<'a>(
            out: &mut HashMap<String, &'a Tensor>,
            prefix: &str,
            weight: &'a Tensor,
            bias: &'a Tensor,
        ) {
            out.insert(format!("{prefix}.weight"), weight);
            out.insert(format!("{prefix}.bias"), bias);
        }
        let mut out = HashMap::new();
        put(&mut out, "input", &self.input.weight, &self.input.bias);
        put(&mut out, "sigma", &self.sigma.weight, &self.sigma.bias);
        put(&mut out, "output", &self.output.weight, &self.output.bias);
        put(
            &mut out,
            "out_norm",
            &self.out_norm.weight,
            &self.out_norm.bias,
        );
        for (i, b) in self.blocks.iter().enumerate() {
            put(
                &mut out,
                &format!("blocks.{i}.taps"),
                &b.taps.weight,
                &b.taps.bias,
            );
            put(
                &mut out,
                &format!("blocks.{i}.sigma"),
                &b.sigma.weight,
                &b.sigma.bias,
            );
            put(
                &mut out,
                &format!("blocks.{i}.mix"),
                &b.mix.weight,
                &b.mix.bias,
            );
            if let Some(global) = &b.global {
                put(
                    &mut out,
                    &format!("blocks.{i}.global"),
                    &global.weight,
                    &global.bias,
                );
            }
            put(
                &mut out,
                &format!("blocks.{i}.norm1"),
                &b.norm1.weight,
                &b.norm1.bias,
            );
            put(
                &mut out,
                &format!("blocks.{i}.norm2"),
                &b.norm2.weight,
                &b.norm2.bias,
            );
        }
        out
    }

    /// Channels of the one-hot relaxation.
    pub fn data_channels(&self) -> usize {
        self.data_channels
    }

    /// Multiply-adds of one evaluation on `steps` steps, for GFLOP/s reports.
    pub fn flops_per_eval(&self, steps: usize) -> f64 {
        let h = self.config.hidden as f64;
        let c = self.data_channels as f64;
        let k = self.config.kernel as f64;
        let inputs = self.input.weight.dim(1).unwrap_or(0) as f64;
        let per_step = inputs * h + self.blocks.len() as f64 * (k * h * h + h * h) + h * c;
        let per_window = if self.config.global_context {
            self.blocks.len() as f64 * h * h
        } else {
            0.0
        };
        2.0 * (per_step * steps as f64 + per_window)
    }
}

/// Width of the input layer: the scaled `x`, the conditioning and, when the
/// card asks for them, the lines.
pub fn input_channels(config: &NetworkConfig, vocab: &Vocabulary) -> usize {
    let sizes = Voice::ALL.map(|v| vocab.voice_size(v));
    2 * vocab.total_size() + EXTRA_CONDITIONING
        - if config.phrase_features {
            0
        } else {
            PHRASE_CONDITIONING
        }
        + if config.line_features {
            2 * pitch_channels(&sizes)
        } else {
            0
        }
}

/// Pitch tokens over all voices (each voice's block less rest and hold).
fn pitch_channels(voice_sizes: &[usize; VOICES]) -> usize {
    voice_sizes.iter().map(|n| n - 2).sum()
}

/// Each voice's lines, (B, T, 2·P) with P the pitch tokens of all voices:
/// first, per voice, the pitch that sounds at each step; then, per voice,
/// the pitch of the next onset after the step.
///
/// They are computed from the cells' current beliefs `q`: a known cell's
/// token (from `conditioning`); a free cell's posterior given only its own
/// noisy value, softmax(x/σ²) — exact as σ → 0, uniform at σ_max, so the
/// lines are as sharp as the cells they come from. Then, with o the onset
/// and h the hold probabilities,
/// sounding: sₜ = oₜ + hₜ·sₜ₋₁ (a rest ends the line),
/// next onset: nₜ = oₜ₊₁ + hₜ₊₁·nₜ₊₁.
/// At a note's first step the pitch it moves from is sₜ₋₁ and the one it
/// moves to is nₜ: both beside the cell, whatever the note lengths. The
/// lines are inputs, not parameters, so they are computed on the host and
/// need no backward pass; O(T·C).
pub fn line_features(
    x: &Tensor,
    conditioning: &Tensor,
    sigmas: &[f32],
    voice_sizes: &[usize; VOICES],
) -> Result<Tensor> {
    let (batch, steps, channels) = x.dims3()?;
    let width = conditioning.dim(D::Minus1)?;
    let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let cond = conditioning
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let pitches = pitch_channels(voice_sizes);
    let out_width = 2 * pitches;
    let mut out = vec![0.0f32; batch * steps * out_width];
    let widest = voice_sizes.iter().copied().max().unwrap_or(0);
    let mut q = vec![0.0f32; steps * widest];
    let mut line = vec![0.0f32; widest];
    for b in 0..batch {
        let sigma = sigmas[if sigmas.len() == 1 { 0 } else { b }];
        let inv = 1.0 / (sigma * sigma).max(1e-12);
        let (mut offset, mut pitch_offset) = (0, 0);
        for (voice, &n) in voice_sizes.iter().enumerate() {
            // Beliefs, one row of n per step.
            for t in 0..steps {
                let row = b * steps + t;
                let belief = &mut q[t * n..(t + 1) * n];
                if cond[row * width + channels + voice] > 0.5 {
                    belief.copy_from_slice(&cond[row * width + offset..row * width + offset + n]);
                } else {
                    let cell = &xs[row * channels + offset..row * channels + offset + n];
                    let top = cell.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
                    let mut total = 0.0;
                    for (p, v) in belief.iter_mut().zip(cell) {
                        *p = ((v - top) * inv).exp();
                        total += *p;
                    }
                    belief.iter_mut().for_each(|p| *p /= total);
                }
            }
            let p = n - 2;
            // The sounding pitch, forwards.
            line[..p].fill(0.0);
            for t in 0..steps {
                let belief = &q[t * n..(t + 1) * n];
                let hold = belief[HOLD_INDEX];
                let at = (b * steps + t) * out_width + pitch_offset;
                for k in 0..p {
                    line[k] = belief[2 + k] + hold * line[k];
                }
                out[at..at + p].copy_from_slice(&line[..p]);
            }
            // The next onset, backwards.
            line[..p].fill(0.0);
            for t in (0..steps).rev() {
                let at = (b * steps + t) * out_width + pitches + pitch_offset;
                out[at..at + p].copy_from_slice(&line[..p]);
                let belief = &q[t * n..(t + 1) * n];
                let hold = belief[HOLD_INDEX];
                for k in 0..p {
                    line[k] = belief[2 + k] + hold * line[k];
                }
            }
            offset += n;
            pitch_offset += p;
        }
    }
    Tensor::from_vec(out, (batch, steps, out_width), x.device())?.to_dtype(x.dtype())
}

/// Fourier features of log σ: sin and cos of ωₖ·log σ, ωₖ = 0.5·(k+1).
fn sigma_features(sigmas: &[f32], features: usize, device: &Device) -> Result<Tensor> {
    let half = features / 2;
    let mut data = Vec::with_capacity(sigmas.len() * features);
    for s in sigmas {
        let l = s.ln();
        for k in 0..half {
            data.push((0.5 * (k + 1) as f32 * l).sin());
        }
        for k in 0..half {
            data.push((0.5 * (k + 1) as f32 * l).cos());
        }
    }
    Tensor::from_vec(data, (sigmas.len(), features), device)
}

/// One-hot relaxation of `score` as a row-major (T, C) buffer. Pitches outside
/// the vocabulary are left all-zero (callers check ranges first).
pub fn one_hot(score: &Score, vocab: &Vocabulary) -> Vec<f32> {
    let channels = vocab.total_size();
    let mut data = vec![0.0f32; score.len() * channels];
    for (step, cell) in score.cells().iter().enumerate() {
        for voice in Voice::ALL {
            if let Some(i) = vocab.index(voice, cell[voice.index()]) {
                data[step * channels + vocab.offset(voice) + i] = 1.0;
            }
        }
    }
    data
}

/// Conditioning features as a row-major (T, C + extra) buffer: the known
/// cells' one-hot values (zero where free), one known flag per voice, the
/// step's position inside its quarter-note beat, and the phrase ends
/// (whether the score knows them, and the steps under a fermata).
pub fn conditioning(score: &Score, mask: &Mask, vocab: &Vocabulary) -> Vec<f32> {
    let channels = vocab.total_size();
    let width = channels + EXTRA_CONDITIONING;
    let values = one_hot(score, vocab);
    let mut data = vec![0.0f32; score.len() * width];
    let phrases = width - PHRASE_CONDITIONING;
    for span in score.phrasing_known() {
        for step in span.clone() {
            data[step * width + phrases] = 1.0;
        }
    }
    for span in score.fermatas() {
        for step in span.clone() {
            data[step * width + phrases + 1] = 1.0;
        }
    }
    for step in 0..score.len() {
        let row = &mut data[step * width..(step + 1) * width];
        for voice in Voice::ALL {
            if mask.is_free(step, voice) {
                continue;
            }
            let (o, n) = (vocab.offset(voice), vocab.voice_size(voice));
            row[o..o + n].copy_from_slice(&values[step * channels + o..step * channels + o + n]);
            row[channels + voice.index()] = 1.0;
        }
        row[channels + VOICES + step % STEPS_PER_QUARTER] = 1.0;
    }
    data
}

/// Per channel, 1.0 where the cell is known: the known mask expanded from
/// cells to the one-hot channels, as a row-major (T, C) buffer.
pub fn known_channels(mask: &Mask, vocab: &Vocabulary) -> Vec<f32> {
    let channels = vocab.total_size();
    let mut data = vec![0.0f32; mask.len() * channels];
    for step in 0..mask.len() {
        for voice in Voice::ALL {
            if !mask.is_free(step, voice) {
                let o = step * channels + vocab.offset(voice);
                data[o..o + vocab.voice_size(voice)].fill(1.0);
            }
        }
    }
    data
}

/// Builds a network with freshly initialised weights in `varmap`.
pub fn init_network(
    config: &NetworkConfig,
    vocab: &Vocabulary,
    varmap: &candle_nn::VarMap,
    device: &Device,
) -> Result<ScoreNetwork> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
    ScoreNetwork::new(config, vocab, vb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denoiser_outputs_a_distribution_per_voice() -> Result<()> {
        let vocab = Vocabulary::chorales();
        let varmap = candle_nn::VarMap::new();
        let net = init_network(&NetworkConfig::tiny(), &vocab, &varmap, &Device::Cpu)?;
        let c = vocab.total_size();
        let x = Tensor::randn(0f32, 1.0, (2, 8, c), &Device::Cpu)?;
        let cond = Tensor::zeros((2, 8, c + EXTRA_CONDITIONING), DType::F32, &Device::Cpu)?;
        let d = net.denoise(&x, &cond, &[1.0, 2.0], None)?;
        assert_eq!(d.dims(), &[2, 8, c]);
        // Each voice block sums to one at every step: four per step.
        let sums: Vec<Vec<f32>> = d.sum(D::Minus1)?.to_vec2()?;
        for row in sums {
            for s in row {
                assert!((s - 4.0).abs() < 1e-4, "{s}");
            }
        }
        Ok(())
    }

    #[test]
    fn global_context_reaches_past_the_convolutions() -> Result<()> {
        let vocab = Vocabulary::chorales();
        let c = vocab.total_size();
        let steps = 16;
        let device = Device::Cpu;
        // Two inputs that differ only at the last step, far beyond the tiny
        // network's reach (3 steps) from the first.
        let x = Tensor::randn(0f32, 1.0, (1, steps, c), &device)?;
        let changed = x.slice_assign(
            &[0..1, steps - 1..steps, 0..c],
            &Tensor::randn(0f32, 1.0, (1, 1, c), &device)?,
        )?;
        let cond = Tensor::zeros((1, steps, c + EXTRA_CONDITIONING), DType::F32, &device)?;
        let first_step = |net: &ScoreNetwork, x: &Tensor| -> Result<Vec<f32>> {
            net.logits(x, &cond, &[1.0])?.get(0)?.get(0)?.to_vec1()
        };
        for global_context in [false, true] {
            let config = NetworkConfig {
                global_context,
                ..NetworkConfig::tiny()
            };
            assert!(config.receptive_field() < steps - 1);
            let varmap = candle_nn::VarMap::new();
            let net = init_network(&config, &vocab, &varmap, &device)?;
            // The global layers start at zero (a fine-tune starts from the
            // old function), and so does each block's output mix; give them
            // weights as training would.
            for (name, var) in varmap.data().lock().expect("varmap").iter() {
                if name.contains("global") || name.contains("mix") {
                    var.set(&Tensor::randn(0f32, 0.5, var.shape(), &device)?)?;
                }
            }
            let (a, b) = (first_step(&net, &x)?, first_step(&net, &changed)?);
            let moved = a.iter().zip(&b).any(|(p, q)| (p - q).abs() > 1e-5);
            assert_eq!(moved, global_context, "global context {global_context}");
        }
        Ok(())
    }

    #[test]
    fn shifted_taps_look_both_ways() -> Result<()> {
        let xs = Tensor::arange(1f32, 5.0, &Device::Cpu)?.reshape((1, 4, 1))?;
        let taps = shifted_taps(&xs, 3, 2)?;
        let rows: Vec<Vec<f32>> = taps.squeeze(0)?.to_vec2()?;
        assert_eq!(rows[0], vec![0.0, 1.0, 3.0]);
        assert_eq!(rows[3], vec![2.0, 4.0, 0.0]);
        Ok(())
    }

    #[test]
    fn lines_put_the_neighbouring_notes_beside_each_cell() -> Result<()> {
        let vocab = Vocabulary::chorales();
        let score = Score::from_pitches(Voice::Soprano, &[60, 62, 64], 4);
        let c = vocab.total_size();
        let sizes = Voice::ALL.map(|v| vocab.voice_size(v));
        let pitches = pitch_channels(&sizes);
        let clean = Tensor::from_vec(one_hot(&score, &vocab), (1, 12, c), &Device::Cpu)?;
        let width = c + EXTRA_CONDITIONING;
        // Known: the lines come from the cells themselves.
        let known = Tensor::from_vec(
            conditioning(&score, &Mask::none(12), &vocab),
            (1, 12, width),
            &Device::Cpu,
        )?;
        // Free, at a small σ: the same lines from the noisy values alone.
        let free = Tensor::from_vec(
            conditioning(&score, &Mask::all(12), &vocab),
            (1, 12, width),
            &Device::Cpu,
        )?;
        let noisy = (&clean + (Tensor::randn(0f32, 1.0, (1, 12, c), &Device::Cpu)? * 0.05)?)?;
        let lowest = vocab.range(Voice::Soprano).lowest;
        let pitch_at = |row: &[f32], base: usize| -> Option<u8> {
            let (i, v) = row[base..base + vocab.voice_size(Voice::Soprano) - 2]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))?;
            (*v > 0.9).then_some(lowest + i as u8)
        };
        for (x, cond, sigma) in [(&clean, &known, 1.0f32), (&noisy, &free, 0.1)] {
            let lines: Vec<Vec<f32>> = line_features(x, cond, &[sigma], &sizes)?
                .squeeze(0)?
                .to_vec2()?;
            assert_eq!(lines[0].len(), 2 * pitches);
            let sounding: Vec<Option<u8>> = lines.iter().map(|r| pitch_at(r, 0)).collect();
            let next: Vec<Option<u8>> = lines.iter().map(|r| pitch_at(r, pitches)).collect();
            assert_eq!(sounding[3], Some(60));
            assert_eq!(sounding[5], Some(62), "a hold sounds its onset's pitch");
            assert_eq!(sounding[11], Some(64));
            assert_eq!(next[0], Some(62), "the next onset, past the holds");
            assert_eq!(next[4], Some(64));
            assert_eq!(next[11], None, "nothing follows the last note");
            // The silent voices have no line.
            let alto = vocab.voice_size(Voice::Soprano) - 2;
            assert!(lines[5][alto..pitches].iter().all(|v| v.abs() < 1e-3));
        }
        Ok(())
    }
}
