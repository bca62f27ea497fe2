//! `trainer deepbach`: trains the four voice networks by cross-entropy on
//! random positions of the training split, each piece transposed at random
//! within the voices' ranges (the paper's augmentation), evaluating a
//! fixed set of validation positions every `--eval-every` steps. The best
//! weights by validation loss are written to `--out` with their card; a
//! checkpoint beside it (`NAME.ckpt/`) lets `--resume` continue, and the
//! run stops at `--steps` or when `--patience` evaluations in a row did
//! not improve the validation loss (converged).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cantor_engine::constraints::Key;
use cantor_engine::grid::{Score, Voice};
use cantor_engine::vocab::Vocabulary;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::net::{Architecture, HostInputs, KEY_UNKNOWN};
use super::{DeepBach, DeepBachCard, Encoded, GibbsSchedule, DEEPBACH_FORMAT};
use crate::data::{vocabulary_of, Corpus};
use crate::train::checkpoint::{self, named, save_tensors, sorted_vars};
use crate::train::optim::Adam;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeepBachTrainConfig {
    pub data: PathBuf,
    pub out: PathBuf,
    pub name: String,
    pub split_seed: u64,
    pub architecture: Architecture,
    /// Positions per batch (each of the four networks gets the batch).
    pub batch: usize,
    pub lr: f64,
    /// Most optimizer steps.
    pub steps: usize,
    pub eval_every: usize,
    /// Evaluations without a better validation loss before stopping.
    pub patience: usize,
    /// Validation positions (fixed, seeded).
    pub valid_positions: usize,
    pub seed: u64,
    pub device: String,
    #[serde(skip)]
    pub resume: bool,
}

/// One evaluation of the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurvePoint {
    pub step: usize,
    pub seconds: f64,
    /// Mean training loss (nats per cell, four voices averaged) since the
    /// last evaluation.
    pub train: f64,
    pub valid: f64,
    /// Validation loss of each voice's network, S A T B.
    pub valid_voices: [f64; 4],
    pub valid_accuracy: f64,
}

#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    seconds: f64,
    best: Option<f64>,
    since_best: usize,
    curve: Vec<CurvePoint>,
    card: DeepBachCard,
    config: DeepBachTrainConfig,
}

/// A split's pieces, encoded, with their keys and transposition room.
struct Positions {
    pieces: Vec<(Encoded, (i32, i32))>,
    /// Cumulative lengths, to draw a position uniformly over the split.
    ends: Vec<usize>,
}

impl Positions {
    fn new(pieces: &[Score], vocab: &Vocabulary) -> Result<Positions> {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let mut total = 0;
        for (i, piece) in pieces.iter().enumerate() {
            let room = vocab
                .transposition_room(piece)
                .with_context(|| format!("piece {i} does not fit the vocabulary"))?;
            let encoded = Encoded::new(piece, vocab, Key::estimate(piece))
                .with_context(|| format!("piece {i} does not fit the vocabulary"))?;
            total += encoded.len();
            ends.push(total);
            out.push((encoded, room));
        }
        if total == 0 {
            bail!("no steps to read (no piece, or none the vocabulary can spell)");
        }
        Ok(Positions { pieces: out, ends })
    }

    fn total(&self) -> usize {
        *self.ends.last().unwrap_or(&0)
    }

    /// Position `n` of the split as (piece, step).
    fn locate(&self, n: usize) -> (usize, usize) {
        let piece = self.ends.partition_point(|&e| e <= n);
        let start = if piece == 0 { 0 } else { self.ends[piece - 1] };
        (piece, n - start)
    }

    /// Adds position `n`, transposed by `shift`, to `inputs`; returns the
    /// four voices' true tokens there.
    fn push(
        &self,
        n: usize,
        shift: i32,
        context: usize,
        vocab: &Vocabulary,
        inputs: &mut HostInputs,
    ) -> [u32; 4] {
        let (piece, t) = self.locate(n);
        let (encoded, _) = &self.pieces[piece];
        let sizes = Voice::ALL.map(|v| vocab.voice_size(v) as u32);
        let moved = |s: i64| {
            let mut row = encoded.cell(s);
            for (v, x) in row.iter_mut().enumerate() {
                // Pitches move; rest, hold, START, END do not.
                if *x >= FIRST_PITCH && *x < sizes[v] {
                    *x = (*x as i32 + shift) as u32;
                }
            }
            row
        };
        let meta = |s: i64| {
            let mut m = encoded.meta_at(s);
            if m[1] != KEY_UNKNOWN {
                m[1] = (m[1] as i32 + shift).rem_euclid(12) as u32;
            }
            m
        };
        inputs.push(context, t as i64, moved, meta);
        moved(t as i64)
    }
}

/// The index of a voice's lowest pitch: rest and hold come before it.
const FIRST_PITCH: u32 = 2;

pub fn train(config: DeepBachTrainConfig) -> Result<()> {
    for (name, value) in [
        ("--eval-every", config.eval_every),
        ("--batch", config.batch),
        ("--valid-positions", config.valid_positions),
        ("--patience", config.patience),
    ] {
        if value == 0 {
            bail!("{name} must be at least 1");
        }
    }
    let device = cantor_engine::model::select_device(&config.device)?;
    let corpus = Corpus::load(&config.data, config.split_seed)?;
    corpus.announce();
    let ckpt = checkpoint::checkpoint_dir(&config.out);
    let resumed: Option<State> = checkpoint::read_state(&ckpt, config.resume)?;
    let card = match &resumed {
        Some(state) => {
            if state.config.data != config.data || state.config.split_seed != config.split_seed {
                bail!(
                    "{}: the checkpoint was trained on {} (split seed {}): resume with the same data",
                    ckpt.display(),
                    state.config.data.display(),
                    state.config.split_seed
                );
            }
            if state.card.architecture != config.architecture {
                eprintln!(
                    "note: resuming with the checkpoint's architecture {:?}; the sizes given are ignored",
                    state.card.architecture
                );
            }
            state.card.clone()
        }
        None => {
            let all: Vec<&Score> = corpus
                .train
                .iter()
                .chain(&corpus.valid)
                .chain(&corpus.test)
                .collect();
            DeepBachCard {
                format: DEEPBACH_FORMAT.into(),
                name: config.name.clone(),
                architecture: config.architecture.clone(),
                vocabulary: vocabulary_of(&all)
                    .context("the corpus has a voice with no notes at all")?,
                sampling: GibbsSchedule::default(),
                training: serde_json::Value::Null,
                metrics: serde_json::Value::Null,
            }
        }
    };
    let vocab = card.vocabulary.clone();
    let context = card.architecture.context;
    let train_set = Positions::new(&corpus.train, &vocab).context("the train split")?;
    let valid_set = Positions::new(&corpus.valid, &vocab).context("the valid split")?;

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = DeepBach::build(card.clone(), vb, &device)?;
    let vars = sorted_vars(&varmap);
    let params: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    eprintln!(
        "DeepBach: 4 voice networks, {params} parameters ({:.1} MB)",
        params as f64 * 4.0 / 1e6
    );
    let mut adam = Adam::new(&vars)?;
    let (mut step, mut seconds, mut best, mut since_best, mut curve) =
        (0usize, 0.0f64, None::<f64>, 0usize, Vec::new());
    if let Some(state) = resumed {
        load_into(&vars, &ckpt.join("weights.safetensors"), &device)?;
        let m = candle_core::safetensors::load(ckpt.join("adam_m.safetensors"), &device)?;
        let v = candle_core::safetensors::load(ckpt.join("adam_v.safetensors"), &device)?;
        for (i, (name, _)) in vars.iter().enumerate() {
            adam.m[i] = m.get(name).cloned().context("checkpoint lacks a moment")?;
            adam.v[i] = v.get(name).cloned().context("checkpoint lacks a moment")?;
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
            eprintln!(
                "already converged: no better validation loss in the last {since_best} evaluations (best {:.4}); raise --patience to train on",
                best.unwrap_or(f64::NAN)
            );
            return Ok(());
        }
    }
    let valid_batches = fixed_batches(&valid_set, config.valid_positions, context, &vocab);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(step as u64));
    // Seconds of earlier runs, plus this run's (an Instant cannot be moved
    // back by them: a fresh machine's clock may not reach that far).
    let (earlier, started) = (seconds, Instant::now());
    let (mut train_sum, mut train_n) = (0.0f64, 0usize);
    while step < config.steps {
        let mut inputs = HostInputs::default();
        let mut labels = Vec::with_capacity(config.batch * 4);
        for _ in 0..config.batch {
            let n = rng.random_range(0..train_set.total());
            let (piece, _) = train_set.locate(n);
            let (down, up) = train_set.pieces[piece].1;
            let shift = rng.random_range(-down..=up);
            labels.push(train_set.push(n, shift, context, &vocab, &mut inputs));
        }
        let x = inputs.tensors(&device)?;
        let mut total: Option<Tensor> = None;
        for (v, net) in model.voices.iter().enumerate() {
            let y: Vec<u32> = labels.iter().map(|l| l[v]).collect();
            let y = Tensor::from_vec(y, config.batch, &device)?;
            let loss = candle_nn::loss::cross_entropy(&net.forward(&x, true)?, &y)?;
            total = Some(match total {
                None => loss,
                Some(t) => (t + loss)?,
            });
        }
        let total = total.context("no voices")?;
        train_sum += total.to_scalar::<f32>()? as f64 / 4.0;
        train_n += 1;
        let grads = total.backward()?;
        adam.step(&vars, &grads, config.lr)?;
        step += 1;
        if step % config.eval_every == 0 || step == config.steps {
            let (valid, valid_voices, valid_accuracy) = validate(&model, &valid_batches, &device)?;
            seconds = earlier + started.elapsed().as_secs_f64();
            let point = CurvePoint {
                step,
                seconds,
                train: train_sum / train_n.max(1) as f64,
                valid,
                valid_voices,
                valid_accuracy,
            };
            (train_sum, train_n) = (0.0, 0);
            eprintln!(
                "step {step}: train {:.4}, valid {valid:.4} (S {:.3} A {:.3} T {:.3} B {:.3}), accuracy {valid_accuracy:.3}, {seconds:.0} s",
                point.train, valid_voices[0], valid_voices[1], valid_voices[2], valid_voices[3]
            );
            curve.push(point);
            let improved = best.is_none_or(|b| valid < b);
            if improved {
                best = Some(valid);
                since_best = 0;
            } else {
                since_best += 1;
            }
            let mut card = card.clone();
            card.training = serde_json::json!({
                "data": config.data.display().to_string(),
                "split": corpus.split,
                "config": config,
                "parameters": params,
                "steps": step,
                "seconds": seconds,
                "best_valid": best,
                "stopped": if since_best >= config.patience { "converged: no better validation loss in the last evaluations" } else { "" },
                "curve": curve,
            });
            save_checkpoint(&ckpt, &vars, &adam, &card)?;
            if improved {
                save_model(&config.out, &vars, &card)?;
            } else {
                // The card's record grows even when the weights stay.
                write_card(&config.out, &card)?;
            }
            let state = State {
                step,
                seconds,
                best,
                since_best,
                curve: curve.clone(),
                card: card.clone(),
                config: config.clone(),
            };
            checkpoint::write_state(&ckpt, &state)?;
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
    Ok(())
}

fn load_into(vars: &[(String, Var)], path: &Path, device: &Device) -> Result<()> {
    let tensors = candle_core::safetensors::load(path, device)
        .with_context(|| format!("{}", path.display()))?;
    for (name, var) in vars {
        let t = tensors
            .get(name)
            .with_context(|| format!("{}: no tensor {name}", path.display()))?;
        var.set(t)?;
    }
    Ok(())
}

fn write_card(out: &Path, card: &DeepBachCard) -> Result<()> {
    let path = out.with_extension("json");
    std::fs::write(&path, serde_json::to_string_pretty(card)? + "\n")
        .with_context(|| format!("{}", path.display()))
}

fn save_model(out: &Path, vars: &[(String, Var)], card: &DeepBachCard) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    save_tensors(&named(vars, |_, v| v.as_tensor().clone()), out)?;
    write_card(out, card)
}

fn save_checkpoint(
    dir: &Path,
    vars: &[(String, Var)],
    adam: &Adam,
    card: &DeepBachCard,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    save_tensors(
        &named(vars, |_, v| v.as_tensor().clone()),
        &dir.join("weights.safetensors"),
    )?;
    save_tensors(
        &named(vars, |i, _| adam.m[i].clone()),
        &dir.join("adam_m.safetensors"),
    )?;
    save_tensors(
        &named(vars, |i, _| adam.v[i].clone()),
        &dir.join("adam_v.safetensors"),
    )?;
    write_card(&dir.join("card.json"), card)
}

/// Fixed batches: `count` seeded positions of a split (drawn with
/// replacement), not transposed, with their true tokens.
fn fixed_batches(
    set: &Positions,
    count: usize,
    context: usize,
    vocab: &Vocabulary,
) -> Vec<(HostInputs, Vec<[u32; 4]>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(12345);
    let mut out = Vec::new();
    let mut left = count;
    while left > 0 {
        let size = left.min(512);
        let mut inputs = HostInputs::default();
        let labels = (0..size)
            .map(|_| {
                let n = rng.random_range(0..set.total());
                set.push(n, 0, context, vocab, &mut inputs)
            })
            .collect();
        out.push((inputs, labels));
        left -= size;
    }
    out
}

/// DeepBach's pseudo-likelihood of `pieces`: the cross-entropy of each
/// cell's true token given every other cell (what its networks model),
/// nats per cell, on up to `positions` seeded positions; per voice; and the
/// accuracy of the most probable token. Not a likelihood: DeepBach's
/// conditionals define no joint distribution.
pub fn pseudo_likelihood(
    model: &DeepBach,
    pieces: &[Score],
    positions: usize,
) -> Result<(f64, [f64; 4], f64)> {
    // Pieces the vocabulary cannot spell are left out (the samplers only
    // need their known cells to fit).
    let fitting: Vec<Score> = pieces
        .iter()
        .filter(|p| model.card.vocabulary.transposition_room(p).is_some())
        .cloned()
        .collect();
    let set = Positions::new(&fitting, &model.card.vocabulary)?;
    let batches = fixed_batches(
        &set,
        positions.min(set.total()),
        model.context(),
        &model.card.vocabulary,
    );
    validate(model, &batches, &model.device)
}

/// Mean cross-entropy (the four voices averaged), per voice, and the
/// accuracy of the most probable token.
fn validate(
    model: &DeepBach,
    batches: &[(HostInputs, Vec<[u32; 4]>)],
    device: &Device,
) -> Result<(f64, [f64; 4], f64)> {
    let mut sums = [0.0f64; 4];
    let (mut correct, mut count) = (0usize, 0usize);
    let mut positions = 0usize;
    for (inputs, labels) in batches {
        let x = inputs.tensors(device)?;
        for (v, net) in model.voices.iter().enumerate() {
            let y: Vec<u32> = labels.iter().map(|l| l[v]).collect();
            let logits = net.forward(&x, false)?.detach();
            let yt = Tensor::from_vec(y.clone(), y.len(), device)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &yt)?.to_scalar::<f32>()? as f64;
            sums[v] += loss * y.len() as f64;
            let best = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += best.iter().zip(&y).filter(|(a, b)| a == b).count();
            count += y.len();
        }
        positions += labels.len();
    }
    let voices = sums.map(|s| s / positions.max(1) as f64);
    Ok((
        voices.iter().sum::<f64>() / 4.0,
        voices,
        correct as f64 / count.max(1) as f64,
    ))
}
