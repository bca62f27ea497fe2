//! `trainer train`: denoising score matching for the chorale score network.
//!
//! Each training window is a random crop (aligned to the beat) of a random
//! piece, transposed by a random amount that keeps every voice in range,
//! with a random task mask (harmonize, continue, infill bars, random cells,
//! or nothing known) and a noise level σ drawn log-uniformly from the card's
//! schedule. All cells are noised (known ones too, as the sampler clamps
//! them to their noised values); the network also sees the clean known cells.
//!
//! The network is a Tweedie denoiser D(x, σ) (see `cantor_engine::network`),
//! and the score is (D − x)/σ². Denoising score matching's optimum is
//! D = E[x₀ | x]; since x₀ is one-hot we fit D by the cross-entropy of the
//! clean tokens of free cells, which has the same optimum and gives the
//! network a well-scaled signal at every σ. The σ²-weighted DSM loss itself
//! is reported by `trainer eval`.
//!
//! The parts: [`batches`] draws the windows, masks and noise; [`optim`] is
//! the optimizer; [`checkpoint`] saves and resumes a run; this file is the
//! objective and the training loop.

mod batches;
pub(crate) mod checkpoint;
pub(crate) mod optim;

pub use batches::{Batch, BatchMaker};

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cantor_engine::card::{ModelCard, NetworkConfig, NoiseSchedule};
use cantor_engine::grid::{Score, STEPS_PER_QUARTER};
use cantor_engine::model::{initial_weights, ScoreModel};
use cantor_engine::network::{one_hot, ScoreNetwork};
use cantor_engine::vocab::Vocabulary;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{check_fits, vocabulary_of, Corpus};
use checkpoint::{
    check_same_data, checkpoint_dir, named, save_tensors, sorted_vars, start_from, CheckpointState,
};
use optim::Adam;

/// Everything `trainer train` is told.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub data: PathBuf,
    pub out: PathBuf,
    pub name: String,
    pub steps: usize,
    /// Window lengths drawn per batch, in 16th-note steps.
    pub windows: Vec<usize>,
    /// Steps × windows per batch (the batch holds tokens / window windows).
    pub batch_tokens: usize,
    pub learning_rate: f64,
    pub warmup: usize,
    pub ema_decay: f64,
    pub hidden: usize,
    pub dilations: Vec<usize>,
    pub sigma_min: f32,
    /// σ_max; 0 = measure it from the data (largest distance between windows).
    pub sigma_max: f32,
    pub checkpoint_minutes: f64,
    pub valid_every: usize,
    pub seed: u64,
    pub split_seed: u64,
    pub device: String,
    /// Continue from the checkpoint beside `out` (required when one exists).
    #[serde(default)]
    pub resume: bool,
    /// Feed the network each voice's lines (`NetworkConfig::line_features`).
    #[serde(default)]
    pub line_features: bool,
    /// Give every block the window's summary (`NetworkConfig::global_context`).
    #[serde(default)]
    pub global_context: bool,
    /// Let the network read the phrase ends (`NetworkConfig::phrase_features`).
    #[serde(default)]
    pub phrase_features: bool,
    /// Share of training windows whose phrase ends are hidden.
    #[serde(default)]
    pub phrase_dropout: f64,
    /// Start from this trained model's weights and card (fine-tuning).
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// Share of training windows drawn as the Gibbs sampler's question
    /// (a few notes unknown at σ_max, every other cell exact).
    #[serde(default)]
    pub gibbs_masks: f64,
}

/// Cross-entropy of the clean tokens of free cells, per free cell; also the
/// per-window values for σ-binned logging.
pub fn loss(net: &ScoreNetwork, batch: &Batch, device: &Device) -> Result<(Tensor, Tensor)> {
    let c = net.data_channels();
    let shape = (batch.size, batch.window, c);
    let noisy = Tensor::from_vec(batch.noisy.clone(), shape, device)?;
    let clean = Tensor::from_vec(batch.clean.clone(), shape, device)?;
    let free = Tensor::from_vec(batch.free.clone(), shape, device)?;
    let width = batch.conditioning.len() / (batch.size * batch.window);
    let cond = Tensor::from_vec(
        batch.conditioning.clone(),
        (batch.size, batch.window, width),
        device,
    )?;
    let logits = net.logits(&noisy, &cond, &batch.sigmas)?;
    let logp = net.log_probabilities(&logits)?;
    let per_window = (clean * free)?.mul(&logp)?.sum((1, 2))?.neg()?;
    let cells = Tensor::from_vec(batch.free_cells.clone(), batch.size, device)?;
    let per_cell = per_window.div(&cells)?;
    let total = (per_window.sum_all()? / batch.free_cells.iter().sum::<f32>() as f64)?;
    Ok((total, per_cell))
}

pub fn train(config: TrainConfig) -> Result<()> {
    let device = cantor_engine::model::select_device(&config.device)?;
    let corpus = Corpus::load(&config.data, config.split_seed)?;
    corpus.announce();
    // Every window length must fit some training piece: drawing a window no
    // piece can hold would never end.
    let longest = corpus.train.iter().map(Score::len).max().unwrap_or(0);
    if let Some(w) = config.windows.iter().find(|w| **w > longest) {
        bail!("the training window of {w} steps is longer than every piece (the longest has {longest} steps): pass shorter --windows");
    }
    let ckpt = checkpoint_dir(&config.out);
    let resumed: Option<CheckpointState> = checkpoint::read_state(&ckpt, config.resume)?;
    if let Some(state) = &resumed {
        check_same_data(state, &config, &ckpt)?;
    }
    let start_model = match (&resumed, &config.init_from) {
        (None, Some(path)) => Some(start_from(
            path,
            config.line_features,
            config.global_context,
            config.phrase_features,
            &device,
        )?),
        _ => None,
    };
    let mut card = match (&resumed, &start_model) {
        (Some(state), _) => state.card.clone(),
        (None, Some((card, _))) => {
            let mut card = card.clone();
            card.name = config.name.clone();
            card
        }
        (None, None) => {
            let all: Vec<&Score> = corpus
                .train
                .iter()
                .chain(&corpus.valid)
                .chain(&corpus.test)
                .collect();
            let vocab =
                vocabulary_of(&all).context("the corpus has a voice with no notes at all")?;
            let sigma_max = if config.sigma_max > 0.0 {
                config.sigma_max
            } else {
                largest_window_distance(
                    &corpus.train,
                    &vocab,
                    *config.windows.iter().max().unwrap_or(&64),
                    config.seed,
                )
            };
            ModelCard::new(
                &config.name,
                NetworkConfig {
                    hidden: config.hidden,
                    kernel: 3,
                    dilations: config.dilations.clone(),
                    sigma_features: 16,
                    line_features: config.line_features,
                    global_context: config.global_context,
                    phrase_features: config.phrase_features,
                },
                vocab,
                NoiseSchedule {
                    sigma_max,
                    sigma_min: config.sigma_min,
                },
            )
        }
    };
    card.validate().map_err(anyhow::Error::msg)?;
    // The card must represent every piece before any step is taken.
    check_fits(&corpus.train, &card.vocabulary, "train")?;
    check_fits(&corpus.valid, &card.vocabulary, "valid")?;
    let min_window = *config
        .windows
        .iter()
        .min()
        .context("no window length given")?;
    let maker = BatchMaker::new(&corpus.train, &card.vocabulary, card.noise, min_window)?
        .with_gibbs_masks(config.gibbs_masks)
        .with_phrase_dropout(config.phrase_dropout);
    let valid_maker = if corpus.valid.is_empty() {
        None
    } else {
        Some(BatchMaker::new(
            &corpus.valid,
            &card.vocabulary,
            card.noise,
            min_window,
        )?)
    };

    // Parameters, optimiser, EMA: fresh or from the checkpoint.
    let varmap = VarMap::new();
    let (mut step, mut elapsed, mut best_valid) = (0usize, 0.0f64, None);
    let initial = match &resumed {
        Some(state) => {
            step = state.step;
            elapsed = state.elapsed_s;
            best_valid = state.best_valid;
            candle_core::safetensors::load(ckpt.join("params.safetensors"), &device)?
        }
        None => match start_model {
            Some((_, weights)) => weights,
            None => initial_weights(&card, config.seed, &device)?,
        },
    };
    {
        let mut data = varmap.data().lock().expect("varmap lock");
        for (name, t) in &initial {
            data.insert(name.clone(), Var::from_tensor(t)?);
        }
    }
    let mut net = ScoreNetwork::new(
        &card.architecture,
        &card.vocabulary,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    net.set_differentiable(true);
    let vars: Vec<(String, Var)> = sorted_vars(&varmap);
    let mut adam = Adam::new(&vars)?;
    let mut ema: HashMap<String, Tensor> =
        named(&vars, |_, v| v.as_tensor().detach().copy().expect("copy"));
    if resumed.is_some() {
        let m = candle_core::safetensors::load(ckpt.join("adam_m.safetensors"), &device)?;
        let v = candle_core::safetensors::load(ckpt.join("adam_v.safetensors"), &device)?;
        for (i, (name, _)) in vars.iter().enumerate() {
            adam.m[i] = m
                .get(name)
                .context("checkpoint lacks Adam moments")?
                .clone();
            adam.v[i] = v
                .get(name)
                .context("checkpoint lacks Adam moments")?
                .clone();
        }
        adam.t = step;
        ema = candle_core::safetensors::load(ckpt.join("ema.safetensors"), &device)?;
        eprintln!("resumed from {} at step {step}", ckpt.display());
    }
    std::fs::create_dir_all(&ckpt)?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C (or a handler already installed) falls back to the default.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let log_path = ckpt.join("log.csv");
    let new_log = !log_path.exists();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    if new_log {
        writeln!(log, "step,elapsed_s,lr,loss,loss_sigma_q1,loss_sigma_q2,loss_sigma_q3,loss_sigma_q4,grad_norm,windows_per_s,valid_loss")?;
    }

    let progress = ProgressBar::new(config.steps as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} eta {eta} {msg}")
            .expect("template"),
    );
    progress.set_position(step as u64);
    let mut rng =
        ChaCha8Rng::seed_from_u64(config.seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut windows_done = 0usize;
    let (mut loss_avg, mut bins) = (None::<f64>, [(0.0f64, 0usize); 4]);
    // Mean loss in each quarter of log σ over the last logged steps, shown
    // on the progress bar (also in the CSV).
    let mut by_sigma = String::from("–");
    let (log_lo, log_hi) = (card.noise.sigma_min.ln(), card.noise.sigma_max.ln());

    let save_all = |card: &ModelCard,
                    step: usize,
                    elapsed: f64,
                    best: Option<f64>,
                    ema: &HashMap<String, Tensor>,
                    adam: &Adam|
     -> Result<()> {
        save_tensors(
            &named(&vars, |_, v| v.as_tensor().clone()),
            &ckpt.join("params.safetensors"),
        )?;
        save_tensors(ema, &ckpt.join("ema.safetensors"))?;
        save_tensors(
            &named(&vars, |i, _| adam.m[i].clone()),
            &ckpt.join("adam_m.safetensors"),
        )?;
        save_tensors(
            &named(&vars, |i, _| adam.v[i].clone()),
            &ckpt.join("adam_v.safetensors"),
        )?;
        let state = CheckpointState {
            step,
            elapsed_s: elapsed,
            best_valid: best,
            card: card.clone(),
            config: config.clone(),
        };
        checkpoint::write_state(&ckpt, &state)
    };

    while step < config.steps && !stop.load(Ordering::SeqCst) {
        let window = config.windows[rng.random_range(0..config.windows.len())];
        let size = (config.batch_tokens / window).max(1);
        let batch = maker.batch(window, size, &mut rng);
        let (loss_t, per_window) = loss(&net, &batch, &device)?;
        let grads = loss_t.backward()?;
        let lr = learning_rate(&config, step);
        let grad_norm = adam.step(&vars, &grads, lr)?;
        let decay = config
            .ema_decay
            .min((1.0 + step as f64) / (10.0 + step as f64));
        for (name, var) in &vars {
            let e = ema.get_mut(name).expect("ema has every var");
            *e = ((&*e * decay)? + (var.as_tensor().detach() * (1.0 - decay))?)?.detach();
        }
        step += 1;
        windows_done += size;
        let value = loss_t.to_scalar::<f32>()? as f64;
        loss_avg = Some(loss_avg.map_or(value, |a| 0.98 * a + 0.02 * value));
        for (s, l) in batch.sigmas.iter().zip(per_window.to_vec1::<f32>()?) {
            let q = (((s.ln() - log_lo) / (log_hi - log_lo)) * 4.0).clamp(0.0, 3.999) as usize;
            bins[q].0 += l as f64;
            bins[q].1 += 1;
        }
        let now = elapsed + started.elapsed().as_secs_f64();
        let rate = windows_done as f64 / started.elapsed().as_secs_f64();
        progress.set_position(step as u64);
        progress.set_message(format!(
            "loss {:.3}  by σ (low→high) {}  {:.0} windows/s",
            loss_avg.unwrap_or(0.0),
            by_sigma,
            rate
        ));

        let validate =
            valid_maker.is_some() && (step % config.valid_every == 0 || step == config.steps);
        let mut valid_loss = None;
        if validate {
            let model = ScoreModel::from_tensors(card.clone(), &ema, &device)?;
            let vl = validation_loss(
                model.network(),
                valid_maker.as_ref().expect("checked"),
                &config,
                &device,
            )?;
            valid_loss = Some(vl);
            if best_valid.is_none_or(|b| vl < b) {
                best_valid = Some(vl);
                card.training = training_record(&config, &corpus, step, now, vl);
                ScoreModel::save(&card, &ema, &config.out)?;
                progress.println(format!(
                    "step {step}: valid loss {vl:.4} (best) → saved {}",
                    config.out.display()
                ));
            } else {
                progress.println(format!(
                    "step {step}: valid loss {vl:.4} (best {:.4})",
                    best_valid.unwrap_or(vl)
                ));
            }
        }
        if step % 50 == 0 || validate {
            let b: Vec<String> = bins
                .iter()
                .map(|(s, n)| {
                    if *n > 0 {
                        format!("{:.4}", s / *n as f64)
                    } else {
                        String::new()
                    }
                })
                .collect();
            writeln!(
                log,
                "{step},{now:.1},{lr:.6},{:.5},{},{grad_norm:.4},{rate:.2},{}",
                loss_avg.unwrap_or(0.0),
                b.join(","),
                valid_loss.map(|v| format!("{v:.5}")).unwrap_or_default()
            )?;
            by_sigma = b
                .iter()
                .map(|l| if l.is_empty() { "–" } else { l })
                .collect::<Vec<_>>()
                .join(" ");
            bins = [(0.0, 0); 4];
        }
        if last_checkpoint.elapsed().as_secs_f64() > config.checkpoint_minutes * 60.0 {
            save_all(&card, step, now, best_valid, &ema, &adam)?;
            last_checkpoint = Instant::now();
        }
    }
    let now = elapsed + started.elapsed().as_secs_f64();
    save_all(&card, step, now, best_valid, &ema, &adam)?;
    progress.finish_and_clear();
    if valid_maker.is_none() {
        card.training = training_record(&config, &corpus, step, now, f64::NAN);
        ScoreModel::save(&card, &ema, &config.out)?;
    }
    if stop.load(Ordering::SeqCst) {
        eprintln!(
            "interrupted at step {step}: checkpoint saved in {}; rerun with --resume",
            ckpt.display()
        );
    } else {
        eprintln!(
            "done: {step} steps in {:.0} s; best model in {}",
            now,
            config.out.display()
        );
    }
    Ok(())
}

fn learning_rate(config: &TrainConfig, step: usize) -> f64 {
    let warm = (step as f64 + 1.0) / config.warmup.max(1) as f64;
    let progress = step as f64 / config.steps.max(1) as f64;
    let cosine = 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    config.learning_rate * warm.min(1.0) * cosine
}

/// Mean loss over a fixed set of validation batches (same seed every time).
fn validation_loss(
    net: &ScoreNetwork,
    maker: &BatchMaker,
    config: &TrainConfig,
    device: &Device,
) -> Result<f64> {
    const BATCHES: usize = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    // The longest training window that the validation pieces hold.
    let window = config
        .windows
        .iter()
        .copied()
        .filter(|w| *w <= maker.longest_piece())
        .max()
        .expect("the validation maker holds the shortest window");
    let size = (config.batch_tokens / window).max(1);
    let mut total = 0.0;
    for _ in 0..BATCHES {
        let batch = maker.batch(window, size, &mut rng);
        total += loss(net, &batch, device)?.0.to_scalar::<f32>()? as f64;
    }
    Ok(total / BATCHES as f64)
}

fn training_record(
    config: &TrainConfig,
    corpus: &Corpus,
    step: usize,
    elapsed: f64,
    valid: f64,
) -> serde_json::Value {
    serde_json::json!({
        "data": corpus.source,
        "split": corpus.split,
        "steps": step,
        "elapsed_s": elapsed.round(),
        "valid_loss": if valid.is_finite() { Some(valid) } else { None },
        "objective": "cross-entropy of the Tweedie denoiser D(x, σ) on free cells (same optimum as denoising score matching); score = (D − x)/σ²",
        "sigma_sampling": "log-uniform in [sigma_min, sigma_max]",
        "config": config,
    })
}

/// NCSNv2's σ₁: the largest Euclidean distance between two training windows
/// (estimated from random pairs of beat-aligned windows).
pub fn largest_window_distance(
    pieces: &[Score],
    vocab: &Vocabulary,
    window: usize,
    seed: u64,
) -> f32 {
    const PAIRS: usize = 2000;
    let usable: Vec<&Score> = pieces.iter().filter(|p| p.len() >= window).collect();
    if usable.is_empty() {
        return 20.0;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let crop = |rng: &mut ChaCha8Rng| {
        let p = usable[rng.random_range(0..usable.len())];
        let start =
            rng.random_range(0..=(p.len() - window) / STEPS_PER_QUARTER) * STEPS_PER_QUARTER;
        one_hot(&p.slice(start..start + window), vocab)
    };
    let mut best = 0.0f32;
    for _ in 0..PAIRS {
        let (a, b) = (crop(&mut rng), crop(&mut rng));
        let d: f32 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt();
        best = best.max(d);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_warms_up_then_decays() {
        let config = TrainConfig {
            data: PathBuf::new(),
            out: PathBuf::new(),
            name: String::new(),
            steps: 1000,
            windows: vec![64],
            batch_tokens: 1024,
            learning_rate: 1e-3,
            warmup: 100,
            ema_decay: 0.999,
            hidden: 8,
            dilations: vec![1],
            sigma_min: 0.1,
            sigma_max: 10.0,
            checkpoint_minutes: 5.0,
            valid_every: 100,
            seed: 0,
            split_seed: 0,
            device: "cpu".into(),
            resume: false,
            line_features: true,
            global_context: false,
            phrase_features: false,
            phrase_dropout: 0.0,
            init_from: None,
            gibbs_masks: 0.0,
        };
        assert!(learning_rate(&config, 0) < 2e-5);
        let peak = learning_rate(&config, 100);
        assert!(peak > 0.95e-3 && peak <= 1e-3, "{peak}");
        assert!(learning_rate(&config, 999) < 1.2e-4);
    }
}
