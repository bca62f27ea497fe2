//! `trainer lines`: trains the line model (`cantor_engine::lines`) — one
//! small network per voice reading that voice's own line around a cell —
//! by cross-entropy on every cell of the training split given its exact
//! neighbours (relative pitches: no transposition needed). The whole
//! validation split is scored every `--eval-every` steps; the best weights
//! go to `--out` with their card, a checkpoint beside it (`NAME.ckpt/`)
//! lets `--resume` continue, and the run stops at `--steps` or after
//! `--patience` evaluations without a better validation loss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var, D};
use cantor_engine::grid::{Score, Voice, VOICES};
use cantor_engine::lines::{LineCard, LineConfig, LineInput, LineModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::Corpus;
use crate::train::checkpoint::{self, named, save_tensors};
use crate::train::optim::Adam;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinesConfig {
    pub data: PathBuf,
    pub out: PathBuf,
    pub name: String,
    pub split_seed: u64,
    pub architecture: LineConfig,
    /// Cells per batch, for each voice's network.
    pub batch: usize,
    pub lr: f64,
    pub steps: usize,
    pub eval_every: usize,
    pub patience: usize,
    pub seed: u64,
    #[serde(skip)]
    pub resume: bool,
}

/// One evaluation of the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurvePoint {
    pub step: usize,
    pub seconds: f64,
    /// Mean training loss (nats per cell, voices averaged) since the last
    /// evaluation.
    pub train: f64,
    pub valid: f64,
    /// S A T B.
    pub valid_voices: [f64; VOICES],
    /// Cross-entropy of the new pitch given that a new note starts, the
    /// part the samplers use (nats per onset), S A T B.
    pub valid_pitch: [f64; VOICES],
}

#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    seconds: f64,
    best: Option<f64>,
    since_best: usize,
    curve: Vec<CurvePoint>,
    config: LinesConfig,
}

/// Every readable cell of a split, one voice: inputs and true class.
#[derive(Default)]
struct Cells {
    kinds: Vec<u32>,
    pitches: Vec<u32>,
    ticks: Vec<u32>,
    classes: Vec<u32>,
}

impl Cells {
    fn of(pieces: &[Score], config: &LineConfig, voice: Voice) -> Cells {
        let mut out = Cells::default();
        for piece in pieces {
            for t in 0..piece.len() {
                let Some(input) = config.encode(piece, t, voice) else {
                    continue;
                };
                let Some(class) = config.class(piece.get(t, voice), input.reference) else {
                    continue;
                };
                out.push(&input, class as u32);
            }
        }
        out
    }

    fn push(&mut self, input: &LineInput, class: u32) {
        self.kinds.extend(&input.kinds);
        self.pitches.extend(&input.pitches);
        self.ticks.push(input.tick);
        self.classes.push(class);
    }

    fn len(&self) -> usize {
        self.classes.len()
    }

    /// The cells at `rows` as tensors (kinds, pitches, ticks, classes).
    fn batch(&self, rows: &[usize], width: usize, device: &Device) -> Result<[Tensor; 4]> {
        let pick = |v: &[u32], w: usize| -> Vec<u32> {
            rows.iter()
                .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                .collect()
        };
        let n = rows.len();
        Ok([
            Tensor::from_vec(pick(&self.kinds, width), (n, width), device)?,
            Tensor::from_vec(pick(&self.pitches, width), (n, width), device)?,
            Tensor::from_vec(pick(&self.ticks, 1), n, device)?,
            Tensor::from_vec(pick(&self.classes, 1), n, device)?,
        ])
    }
}

/// One voice's trainable weights, in [`LineConfig::tensors`] order.
struct VoiceVars {
    vars: Vec<(String, Var)>,
}

impl VoiceVars {
    fn new(
        config: &LineConfig,
        voice: Voice,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let mut vars = Vec::new();
        for (name, shape) in config.tensors(voice) {
            let count: usize = shape.iter().product();
            let bound = match name.rsplit('.').next() {
                // Summed over every position: small rows.
                Some("kind") | Some("pitch") | Some("tick") => {
                    1.0 / ((2 * config.positions() + 1) as f32).sqrt()
                }
                Some(b) if b.starts_with('b') => 0.0,
                _ => 1.0 / (*shape.last().unwrap_or(&1) as f32).sqrt(),
            };
            let values: Vec<f32> = (0..count)
                .map(|_| match bound > 0.0 {
                    true => rng.random_range(-bound..bound),
                    false => 0.0,
                })
                .collect();
            vars.push((
                name,
                Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?,
            ));
        }
        Ok(VoiceVars { vars })
    }

    fn get(&self, part: &str) -> &Tensor {
        self.vars
            .iter()
            .find(|(n, _)| n.rsplit('.').next() == Some(part))
            .map(|(_, v)| v.as_tensor())
            .expect("every part is made")
    }

    /// Logits (batch, classes) for encoded cells.
    fn forward(&self, kinds: &Tensor, pitches: &Tensor, ticks: &Tensor) -> Result<Tensor> {
        let (n, width) = kinds.dims2()?;
        let gather = |table: &Tensor, idx: &Tensor| -> Result<Tensor> {
            let h = table.dim(1)?;
            Ok(table
                .index_select(&idx.flatten_all()?, 0)?
                .reshape((n, width, h))?
                .sum(1)?)
        };
        let a = (gather(self.get("kind"), kinds)? + gather(self.get("pitch"), pitches)?)?;
        let a = (a + self.get("tick").index_select(ticks, 0)?)?;
        let a = a.broadcast_add(self.get("b1"))?.relu()?;
        let b = a
            .matmul(&self.get("w2").t()?)?
            .broadcast_add(self.get("b2"))?
            .relu()?;
        Ok(b.matmul(&self.get("w3").t()?)?
            .broadcast_add(self.get("b3"))?)
    }
}

pub fn train(config: LinesConfig) -> Result<()> {
    let device = Device::Cpu;
    let corpus = Corpus::load(&config.data, config.split_seed)?;
    corpus.announce();
    let ckpt = checkpoint::checkpoint_dir(&config.out);
    let resumed: Option<State> = checkpoint::read_state(&ckpt, config.resume)?;
    let arch = match &resumed {
        Some(s) => s.config.architecture,
        None => config.architecture,
    };
    arch.check().map_err(anyhow::Error::msg)?;
    let width = arch.positions();
    let train: Vec<Cells> = Voice::ALL
        .iter()
        .map(|&v| Cells::of(&corpus.train, &arch, v))
        .collect();
    let valid: Vec<Cells> = Voice::ALL
        .iter()
        .map(|&v| Cells::of(&corpus.valid, &arch, v))
        .collect();
    if train.iter().any(|c| c.len() == 0) {
        bail!("a voice has no readable cell in the train split (no notes)");
    }
    eprintln!(
        "line model: {} train cells, {} valid cells (S A T B together)",
        train.iter().map(Cells::len).sum::<usize>(),
        valid.iter().map(Cells::len).sum::<usize>()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let nets: Vec<VoiceVars> = Voice::ALL
        .iter()
        .map(|&v| VoiceVars::new(&arch, v, &mut rng, &device))
        .collect::<Result<_>>()?;
    let vars: Vec<(String, Var)> = nets.iter().flat_map(|n| n.vars.iter().cloned()).collect();
    let params: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    eprintln!(
        "line model: 4 voice networks, {params} parameters ({:.1} MB)",
        params as f64 * 4.0 / 1e6
    );
    let mut adam = Adam::new(&vars)?;
    let (mut step, mut seconds, mut best, mut since_best, mut curve) =
        (0usize, 0.0f64, None::<f64>, 0usize, Vec::new());
    if let Some(state) = resumed {
        let load = |file: &str| {
            candle_core::safetensors::load(ckpt.join(file), &device)
                .with_context(|| format!("{}", ckpt.join(file).display()))
        };
        let (w, m, v) = (
            load("weights.safetensors")?,
            load("adam_m.safetensors")?,
            load("adam_v.safetensors")?,
        );
        for (i, (name, var)) in vars.iter().enumerate() {
            let get = |map: &HashMap<String, Tensor>| {
                map.get(name)
                    .cloned()
                    .with_context(|| format!("the checkpoint lacks '{name}'"))
            };
            var.set(&get(&w)?)?;
            adam.m[i] = get(&m)?;
            adam.v[i] = get(&v)?;
        }
        adam.t = state.step;
        (step, seconds, best, since_best, curve) = (
            state.step,
            state.seconds,
            state.best,
            state.since_best,
            state.curve,
        );
        eprintln!("resumed at step {step}");
        if since_best >= config.patience {
            eprintln!("already converged (best {:.4})", best.unwrap_or(f64::NAN));
            return Ok(());
        }
        rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(step as u64));
    }
    let (earlier, started) = (seconds, Instant::now());
    let (mut train_sum, mut train_n) = (0.0f64, 0usize);
    while step < config.steps {
        let mut total: Option<Tensor> = None;
        for (net, cells) in nets.iter().zip(&train) {
            let rows: Vec<usize> = (0..config.batch)
                .map(|_| rng.random_range(0..cells.len()))
                .collect();
            let [k, p, t, y] = cells.batch(&rows, width, &device)?;
            let loss = candle_nn::loss::cross_entropy(&net.forward(&k, &p, &t)?, &y)?;
            total = Some(match total {
                None => loss,
                Some(s) => (s + loss)?,
            });
        }
        let total = total.context("no voices")?;
        train_sum += total.to_scalar::<f32>()? as f64 / VOICES as f64;
        train_n += 1;
        let grads = total.backward()?;
        // Cosine decay to a tenth over the run.
        let progress = step as f64 / config.steps.max(1) as f64;
        let lr = config.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
        adam.step(&vars, &grads, lr)?;
        step += 1;
        if step % config.eval_every == 0 || step == config.steps {
            let (valid_voices, valid_pitch) = validate(&nets, &valid, &arch)?;
            let valid_loss = valid_voices.iter().sum::<f64>() / VOICES as f64;
            seconds = earlier + started.elapsed().as_secs_f64();
            let point = CurvePoint {
                step,
                seconds,
                train: train_sum / train_n.max(1) as f64,
                valid: valid_loss,
                valid_voices,
                valid_pitch,
            };
            (train_sum, train_n) = (0.0, 0);
            eprintln!(
                "step {step}: train {:.4}, valid {valid_loss:.4} (S {:.3} A {:.3} T {:.3} B {:.3}; new pitch {:.3} {:.3} {:.3} {:.3}), {seconds:.0} s",
                point.train,
                valid_voices[0], valid_voices[1], valid_voices[2], valid_voices[3],
                valid_pitch[0], valid_pitch[1], valid_pitch[2], valid_pitch[3],
            );
            curve.push(point);
            let improved = best.is_none_or(|b| valid_loss < b);
            if improved {
                best = Some(valid_loss);
                since_best = 0;
            } else {
                since_best += 1;
            }
            let mut card = LineCard::new(&config.name, arch);
            card.training = serde_json::json!({
                "data": config.data.display().to_string(),
                "split": corpus.split,
                "config": config,
                "parameters": params,
                "steps": step,
                "seconds": seconds,
                "best_valid": best,
                "curve": curve,
            });
            std::fs::create_dir_all(&ckpt)?;
            save_tensors(
                &named(&vars, |_, v| v.as_tensor().clone()),
                &ckpt.join("weights.safetensors"),
            )?;
            save_tensors(
                &named(&vars, |i, _| adam.m[i].clone()),
                &ckpt.join("adam_m.safetensors"),
            )?;
            save_tensors(
                &named(&vars, |i, _| adam.v[i].clone()),
                &ckpt.join("adam_v.safetensors"),
            )?;
            if improved {
                save_model(&config.out, &vars, &card)?;
            } else {
                write_card(&config.out, &card)?;
            }
            checkpoint::write_state(
                &ckpt,
                &State {
                    step,
                    seconds,
                    best,
                    since_best,
                    curve: curve.clone(),
                    config: config.clone(),
                },
            )?;
            if since_best >= config.patience {
                eprintln!(
                    "converged: no better validation loss in {} evaluations (best {:.4})",
                    config.patience,
                    best.unwrap_or(f64::NAN)
                );
                break;
            }
        }
    }
    // The saved model must load as the engine reads it.
    LineModel::load(&config.out).context("the saved line model does not load back")?;
    Ok(())
}

/// Cross-entropy per voice on every cell of `cells` (nats per cell), and of
/// the new pitch given an onset (nats per onset).
fn validate(
    nets: &[VoiceVars],
    cells: &[Cells],
    arch: &LineConfig,
) -> Result<([f64; VOICES], [f64; VOICES])> {
    let device = Device::Cpu;
    let mut all = [0.0; VOICES];
    let mut pitch = [0.0; VOICES];
    for (v, (net, c)) in nets.iter().zip(cells).enumerate() {
        let (mut sum, mut psum, mut onsets) = (0.0f64, 0.0f64, 0usize);
        let rows: Vec<usize> = (0..c.len()).collect();
        for chunk in rows.chunks(4096) {
            let [k, p, t, y] = c.batch(chunk, arch.positions(), &device)?;
            let logits = net.forward(&k, &p, &t)?.detach();
            let logs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let logs = logs.to_vec2::<f32>()?;
            for (row, class) in logs.iter().zip(y.to_vec1::<u32>()?) {
                sum -= row[class as usize] as f64;
                if class >= 2 {
                    let onset: f64 = row[2..].iter().map(|l| (*l as f64).exp()).sum();
                    psum -= row[class as usize] as f64 - onset.ln();
                    onsets += 1;
                }
            }
        }
        all[v] = sum / c.len().max(1) as f64;
        pitch[v] = psum / onsets.max(1) as f64;
    }
    Ok((all, pitch))
}

fn write_card(out: &Path, card: &LineCard) -> Result<()> {
    let path = out.with_extension("json");
    std::fs::write(&path, serde_json::to_string_pretty(card)? + "\n")
        .with_context(|| format!("{}", path.display()))
}

fn save_model(out: &Path, vars: &[(String, Var)], card: &LineCard) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    save_tensors(&named(vars, |_, v| v.as_tensor().clone()), out)?;
    write_card(out, card)
}
