//! `trainer`: trains Cantor's score networks and measures them.
//!
//! - `trainer train --data <jsb.json | folder> --out models/NAME.safetensors`
//! - `trainer eval --model M --data <source> --split test`
//! - `trainer bench --model M --data <source>`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod chords;
mod data;
mod deepbach;
mod eval;
mod judge;
mod lines;
mod plots;
mod sweep;
mod train;

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Train and evaluate Cantor's chorale score networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a score network (checkpoints beside --out; --resume continues).
    Train(TrainArgs),
    /// Metrics of the model, the Gibbs sampler and a baseline against Bach.
    Eval(Box<EvalArgs>),
    /// Sampler speed against quality across settings.
    Bench(BenchArgs),
    /// Train the DeepBach peer (four voice networks; checkpoints beside
    /// --out; --resume continues; stops when the validation loss stops
    /// improving).
    Deepbach(DeepBachArgs),
    /// Train the line model: a small network per voice reading its own
    /// line around a cell (checkpoints beside --out; --resume continues).
    Lines(LinesArgs),
    /// Learn the chord prior (which chords the training pieces sound on
    /// their beats and at their phrase ends) into a model's card.
    Chords(ChordsArgs),
}

#[derive(clap::Args)]
struct ChordsArgs {
    /// JSB chorales JSON (with fermatas, to learn the phrase ends' chords),
    /// or a folder of MIDI / MusicXML files.
    #[arg(long)]
    data: PathBuf,
    /// The model whose card (beside it) receives the prior.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
}

#[derive(clap::Args)]
struct LinesArgs {
    /// JSB chorales JSON, or a folder of MIDI / MusicXML files.
    #[arg(long)]
    data: PathBuf,
    /// Where the best weights (by validation loss) go; the card beside them.
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value_t = 8000)]
    steps: usize,
    /// Cells per batch, for each voice.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 500)]
    eval_every: usize,
    #[arg(long, default_value_t = 4)]
    patience: usize,
    /// Steps read each side of a cell.
    #[arg(long, default_value_t = 16)]
    context: usize,
    /// Relative pitches told apart, in semitones each side.
    #[arg(long, default_value_t = 24)]
    span: usize,
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
}

#[derive(clap::Args)]
struct DeepBachArgs {
    /// JSB chorales JSON, or a folder of MIDI / MusicXML files.
    #[arg(long)]
    data: PathBuf,
    /// Where the best weights (by validation loss) go; the card beside them,
    /// checkpoints in OUT.ckpt/.
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    name: Option<String>,
    /// Most optimizer steps (each trains the four networks on a batch).
    #[arg(long, default_value_t = 20_000)]
    steps: usize,
    /// Positions per batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
    /// Evaluations without a better validation loss before stopping.
    #[arg(long, default_value_t = 4)]
    patience: usize,
    #[arg(long, default_value_t = 4096)]
    valid_positions: usize,
    /// Steps each LSTM reads on its side (the reference: 16).
    #[arg(long, default_value_t = 16)]
    context: usize,
    #[arg(long, default_value_t = 20)]
    note_embedding: usize,
    #[arg(long, default_value_t = 20)]
    meta_embedding: usize,
    #[arg(long, default_value_t = 2)]
    lstm_layers: usize,
    #[arg(long, default_value_t = 128)]
    lstm_hidden: usize,
    #[arg(long, default_value_t = 128)]
    linear_hidden: usize,
    #[arg(long, default_value_t = 0.5)]
    dropout: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
struct SamplingArgs {
    /// Noise levels (default: the model card's).
    #[arg(long)]
    levels: Option<usize>,
    /// Langevin steps per level, 1 = consistent annealed sampling (default: the card's).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    step_size: Option<f32>,
    #[arg(long)]
    temperature: Option<f32>,
    /// Weight of the voice-leading rules in nats per fault, 0 = the network
    /// alone (default: the card's).
    #[arg(long)]
    rules: Option<f32>,
    /// What each Langevin step moves towards: draw or mean (default: the card's).
    #[arg(long)]
    target: Option<String>,
    /// Weight of the line model on each new pitch, 0 = the score network
    /// alone (default: the card's).
    #[arg(long)]
    line_weight: Option<f32>,
    /// Weight of the home key (the known notes' key) in nats per sixteenth
    /// sounding outside it, 0 = off (default: the card's).
    #[arg(long)]
    key_weight: Option<f32>,
    /// Weight of the home key's degrees on which pitch a voice moves to
    /// after the last given note, 0 = off (default: the card's).
    #[arg(long)]
    degree_weight: Option<f32>,
    /// Weight of the card's chord prior on each beat, 0 = off (default:
    /// the card's).
    #[arg(long)]
    chord_weight: Option<f32>,
    /// Temperature of the Langevin draws at the low noise levels, where
    /// the chords settle (default: the card's; else --temperature).
    #[arg(long)]
    settle_temperature: Option<f32>,
    /// Character pad, calm (-1) to busy (1); 0 = the model's own style.
    #[arg(long, allow_hyphen_values = true)]
    activity: Option<f32>,
    /// Character pad, plain (-1) to tense (1); 0 = the model's own style.
    #[arg(long, allow_hyphen_values = true)]
    tension: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
struct EvalArgs {
    #[arg(long)]
    model: PathBuf,
    /// A line model (`trainer lines`) to use instead of the one the card
    /// names.
    #[arg(long)]
    lines: Option<PathBuf>,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "test")]
    split: String,
    /// Tasks to evaluate.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![eval::Task::Harmonize, eval::Task::Continue, eval::Task::Infill])]
    tasks: Vec<eval::Task>,
    /// Only the first N pieces of the split.
    #[arg(long)]
    limit: Option<usize>,
    /// Write REPORT.json and REPORT.md.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Coconet-style likelihood of the split (orderless NADE on 32-step
    /// crops): on or off (`--nll off` skips it).
    #[arg(long, default_value = "on", num_args = 0..=1, default_missing_value = "on",
          value_parser = clap::builder::BoolishValueParser::new())]
    nll: bool,
    /// Random cell orderings per crop for the likelihood.
    #[arg(long, default_value_t = 5)]
    nll_orderings: usize,
    /// Most 32-step crops per piece for the likelihood (non-overlapping,
    /// spread over the piece; 1 keeps the test split under 3 minutes on a
    /// 2-core CPU).
    #[arg(long, default_value_t = 1)]
    nll_crops: usize,
    /// Write piano rolls (Bach, Langevin, Gibbs, and DeepBach at its first
    /// budget with --deepbach) of the first pieces here.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Write every system's output for every piece and task as MIDI here
    /// (DIR/TASK/SYSTEM/NNN.mid; the first seed's), to listen to them and
    /// score them elsewhere.
    #[arg(long)]
    write_midi: Option<PathBuf>,
    /// What the systems are told of the phrase ends: `given` (the data's
    /// fermatas, as a MusicXML file marks them), `inferred` (from the
    /// melody, as for a plain MIDI file) or `unknown`. The chords at
    /// Bach's fermatas are judged either way.
    #[arg(long, value_enum, default_value_t = eval::PhraseSource::Given)]
    phrases: eval::PhraseSource,
    /// Ask each continuation to end on a cadence, as `cantor continue
    /// --cadence` does.
    #[arg(long)]
    cadence: bool,
    /// Cantor's systems to run beside Bach.
    #[arg(long, value_delimiter = ',', default_values = ["langevin", "gibbs", "baseline"], value_parser = parse_system)]
    systems: Vec<eval::System>,
    /// A DeepBach model (`trainer deepbach`) to run beside them.
    #[arg(long)]
    deepbach: Option<PathBuf>,
    /// DeepBach's budgets, in updates per free cell (default: its card's,
    /// the reference's 62.5).
    #[arg(long, value_delimiter = ',')]
    deepbach_budgets: Vec<f32>,
    /// Sweep the character pad instead: each axis at -1, -0.5, 0, 0.5, 1
    /// (the other at --activity / --tension, default 0), reporting the
    /// statistic it steers, the other's and the voice leading beside Bach's.
    #[arg(long)]
    character: bool,
    /// Sampler runs per piece, pooled: seeds --seed, --seed + 1, … (Bach's
    /// music counted once). One bar per piece (infill) is few beats; more
    /// seeds steady the estimate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    seeds: u64,
}

fn parse_system(s: &str) -> Result<eval::System, String> {
    match s {
        "langevin" => Ok(eval::System::Langevin),
        "gibbs" => Ok(eval::System::Gibbs),
        "baseline" => Ok(eval::System::Baseline),
        _ => Err(format!("expected langevin, gibbs or baseline, not {s}")),
    }
}

#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    /// Select defaults on the validation split, report on test.
    #[arg(long, default_value = "valid")]
    split: String,
    /// Number of 4-bar windows (one per piece).
    #[arg(long, default_value_t = 40)]
    pieces: usize,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Weight of the voice-leading rules for every configuration.
    #[arg(long, default_value_t = 0.0)]
    rules: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
}

fn sampler_settings(
    model: &std::path::Path,
    a: &SamplingArgs,
) -> anyhow::Result<cantor_engine::SamplerSettings> {
    let card = cantor_engine::ScoreModel::load(model, &cantor_engine::Device::Cpu)?.card;
    let mut s = cantor_engine::SamplerSettings::from_defaults(&card.sampling).overridden(
        cantor_engine::SettingsOverrides {
            levels: a.levels,
            steps_per_level: a.steps,
            step_size: a.step_size,
            temperature: a.temperature,
            rules: a.rules,
            target: a
                .target
                .as_deref()
                .map(cantor_engine::Target::parse)
                .transpose()?,
            line_weight: a.line_weight,
            key_weight: a.key_weight,
            degree_weight: a.degree_weight,
            chord_weight: a.chord_weight,
            settle_temperature: a.settle_temperature,
            activity: a.activity,
            tension: a.tension,
        },
    );
    s.seed = a.seed;
    Ok(s)
}

#[derive(clap::Args)]
struct TrainArgs {
    /// JSB chorales JSON, or a folder of MIDI / MusicXML files.
    #[arg(long)]
    data: PathBuf,
    /// Where the best (EMA, validation-selected) weights go; the card is
    /// written beside them and checkpoints in OUT.ckpt/.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the checkpoint in OUT.ckpt/: its card (architecture,
    /// vocabulary, noise) wins; --data and --split-seed must be the ones it
    /// was trained with; --steps may be raised to train longer.
    #[arg(long)]
    resume: bool,
    /// Model name for the card (default: the file stem of --out).
    #[arg(long)]
    name: Option<String>,
    /// Optimiser steps in total.
    #[arg(long, default_value_t = 20_000)]
    steps: usize,
    /// Window lengths in 16th-note steps, drawn per batch.
    #[arg(long, value_delimiter = ',', default_values_t = vec![32, 64, 128])]
    windows: Vec<usize>,
    /// Grid steps per batch (windows per batch = this / window length).
    #[arg(long, default_value_t = 2048)]
    batch_tokens: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 500)]
    warmup: usize,
    #[arg(long, default_value_t = 0.999)]
    ema: f64,
    /// Channels of the residual stream.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Dilation of each residual block.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 2, 4, 8, 16, 1, 2, 4, 8, 16])]
    dilations: Vec<usize>,
    #[arg(long, default_value_t = 0.1)]
    sigma_min: f32,
    /// 0 measures it from the data (largest distance between windows).
    #[arg(long, default_value_t = 0.0)]
    sigma_max: f32,
    #[arg(long, default_value_t = 5.0)]
    checkpoint_minutes: f64,
    #[arg(long, default_value_t = 500)]
    valid_every: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seed of the file-name hash that splits a folder corpus.
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// cpu, cuda, metal or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Feed the network each voice's lines (the sounding pitch and the next
    /// onset at every step): on or off.
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    line_features: bool,
    /// Give every residual block the window's average beside its dilated
    /// convolution, so cells past the convolutions' reach (62 steps) still
    /// hear the whole window — the prompt's key at a continuation's end: on
    /// or off. With --init-from, the new layers start at zero.
    #[arg(long, default_value = "off", value_parser = on_off, action = clap::ArgAction::Set)]
    global_context: bool,
    /// Let the network read the phrase ends (fermatas): on or off. They come
    /// from a data file that carries them (`../shared/data/jsb-fermatas`);
    /// a share of the windows (--phrase-dropout) hides them, so the network
    /// also composes where nobody said where the phrases end. With
    /// --init-from, the new input columns start at zero.
    #[arg(long, default_value = "off", value_parser = on_off, action = clap::ArgAction::Set)]
    phrase_features: bool,
    /// Share of training windows (0–1) whose phrase ends are hidden.
    #[arg(long, default_value_t = 0.25)]
    phrase_dropout: f64,
    /// Start from a trained model (its .safetensors, card beside it) instead
    /// of random weights: its architecture, vocabulary and noise schedule are
    /// kept (--hidden, --dilations, --sigma-* are ignored). Input channels the
    /// model lacks (turning --line-features on) start at zero weight, so
    /// training starts from exactly the model's function.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Share of windows (0–1) drawn as the question the Gibbs sampler asks:
    /// a block of 2–30% of a task's free cells unknown at σ_max, every other
    /// cell exact (DeepBach's objective). The validation loss keeps the
    /// ordinary masks.
    #[arg(long, default_value_t = 0.0)]
    gibbs_masks: f64,
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, not {s}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => {
            let name = a.name.clone().unwrap_or_else(|| {
                a.out
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("cantor")
                    .to_string()
            });
            train::train(train::TrainConfig {
                data: a.data,
                out: a.out,
                name,
                steps: a.steps,
                windows: a.windows,
                batch_tokens: a.batch_tokens,
                learning_rate: a.lr,
                warmup: a.warmup,
                ema_decay: a.ema,
                hidden: a.hidden,
                dilations: a.dilations,
                sigma_min: a.sigma_min,
                sigma_max: a.sigma_max,
                checkpoint_minutes: a.checkpoint_minutes,
                valid_every: a.valid_every,
                seed: a.seed,
                split_seed: a.split_seed,
                device: a.device,
                resume: a.resume,
                line_features: a.line_features,
                global_context: a.global_context,
                phrase_features: a.phrase_features,
                phrase_dropout: a.phrase_dropout,
                init_from: a.init_from,
                gibbs_masks: a.gibbs_masks,
            })
        }
        Command::Eval(a) => sampler_settings(&a.model, &a.sampling).and_then(|settings| {
            eval::run(eval::EvalOptions {
                model: a.model,
                lines: a.lines,
                data: a.data,
                split: a.split,
                tasks: a.tasks,
                limit: a.limit,
                settings,
                report: a.report,
                device: a.device,
                split_seed: a.split_seed,
                nll: a.nll,
                nll_orderings: a.nll_orderings,
                nll_crops: a.nll_crops,
                plots: a.plots,
                write_midi: a.write_midi,
                phrases: a.phrases,
                cadence: a.cadence,
                systems: a.systems,
                deepbach: a.deepbach,
                deepbach_budgets: a.deepbach_budgets,
                character: a.character,
                seeds: a.seeds,
            })
            .map(|_| ())
        }),
        Command::Deepbach(a) => {
            let name = a.name.clone().unwrap_or_else(|| {
                a.out
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("deepbach")
                    .to_string()
            });
            deepbach::train::train(deepbach::train::DeepBachTrainConfig {
                data: a.data,
                out: a.out,
                name,
                split_seed: a.split_seed,
                architecture: deepbach::net::Architecture {
                    context: a.context,
                    note_embedding: a.note_embedding,
                    meta_embedding: a.meta_embedding,
                    lstm_layers: a.lstm_layers,
                    lstm_hidden: a.lstm_hidden,
                    linear_hidden: a.linear_hidden,
                    dropout: a.dropout,
                },
                batch: a.batch,
                lr: a.lr,
                steps: a.steps,
                eval_every: a.eval_every,
                patience: a.patience,
                valid_positions: a.valid_positions,
                seed: a.seed,
                device: a.device,
                resume: a.resume,
            })
        }
        Command::Chords(a) => chords::run(&a.data, &a.model, a.split_seed).map(|_| ()),
        Command::Lines(a) => {
            let name = a.name.clone().unwrap_or_else(|| {
                a.out
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("lines")
                    .to_string()
            });
            lines::train(lines::LinesConfig {
                data: a.data,
                out: a.out,
                name,
                split_seed: a.split_seed,
                architecture: cantor_engine::lines::LineConfig {
                    context: a.context,
                    span: a.span,
                    hidden: a.hidden,
                },
                batch: a.batch,
                lr: a.lr,
                steps: a.steps,
                eval_every: a.eval_every,
                patience: a.patience,
                seed: a.seed,
                resume: a.resume,
            })
        }
        Command::Bench(a) => bench::run(bench::BenchOptions {
            model: a.model,
            data: a.data,
            split: a.split,
            pieces: a.pieces,
            seed: a.seed,
            report: a.report,
            device: a.device,
            split_seed: a.split_seed,
            temperature: a.temperature,
            rules: a.rules,
        })
        .map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
