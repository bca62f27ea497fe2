//! `cantor`: harmonize, continue and regenerate chorales from the command
//! line with Cantor's score model. A thin shell over `cantor-engine`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use cantor_engine::io::{read_music, write_midi, Limits, VoiceLayout};
use cantor_engine::model::{device_name, select_device, shipped};
use cantor_engine::phrases::{end_on_cadence, Phrasing};
use cantor_engine::{
    compose, continuation_problem, harmonize_problem, infill_problem, CantorError, KeyChoice,
    MaskRegion, Problem, SamplerKind, SamplerSettings, ScoreModel, SettingsOverrides, Target,
    Unobserved, Voice,
};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cantor",
    version,
    about = "Compose four-part chorales with a score-based model (annealed Langevin dynamics)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write alto, tenor and bass (or the voices around --voice) under a melody.
    Harmonize {
        /// A one-voice melody: MIDI (.mid) or MusicXML (.mxl, .musicxml).
        input: PathBuf,
        /// Which voice the melody is.
        #[arg(long, default_value = "soprano", value_parser = parse_voice)]
        voice: Voice,
        #[command(flatten)]
        common: Common,
    },
    /// Continue a four-voice (or melody-only) phrase by some bars.
    Continue {
        input: PathBuf,
        /// Bars to add.
        #[arg(long, default_value_t = 4)]
        bars: usize,
        /// End the new bars on a cadence: a phrase end (fermata) over their
        /// last two beats.
        #[arg(long)]
        cadence: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Regenerate the masked bars/voices; every other note stays as it was.
    Infill {
        input: PathBuf,
        /// Region to regenerate: `bars=5-6`, `voice=alto`, `voice=alto,bars=1-8`
        /// (repeatable).
        #[arg(long = "mask", required = true)]
        masks: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// Output MIDI file (one track per voice, S A T B on channels 1–4).
    #[arg(short, long)]
    output: PathBuf,
    /// Model weights (.safetensors, with its .json card beside it); default:
    /// the model built into cantor.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Same seed, same output.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noise levels (more: slower, better); default from the model card.
    #[arg(long)]
    levels: Option<usize>,
    /// Langevin steps per level (1 = consistent annealed sampling); default
    /// from the model card.
    #[arg(long)]
    steps: Option<usize>,
    /// Step size as a fraction of σ² (Langevin), in (0, 1].
    #[arg(long)]
    step_size: Option<f32>,
    /// 1 = the model's own distribution; lower is more conservative.
    #[arg(long)]
    temperature: Option<f32>,
    /// Weight of the voice-leading rules (parallels, crossings, range,
    /// chords) in nats per fault; 0 = the network alone. Default from the
    /// model card.
    #[arg(long)]
    rules: Option<f32>,
    /// What each Langevin step moves towards: `draw` (a draw from the
    /// denoiser: voices move as the model has them) or `mean` (its average:
    /// steadier, more static). Default from the model card.
    #[arg(long)]
    target: Option<String>,
    /// Weight of the line model (a small network per voice that reads the
    /// voice's own line) on where each new note goes; 0 = the score network
    /// alone. Default from the model card.
    #[arg(long)]
    line_weight: Option<f32>,
    /// Pull towards the key of the given notes on the bars after the last
    /// given note (a continuation's new bars, a masked end), in nats per
    /// sixteenth sounding outside it: a soft pull, chromatic notes stay
    /// possible; 0 = off. For a hard key, use --key. Default from the model
    /// card.
    #[arg(long)]
    key_weight: Option<f32>,
    /// Weight of the given notes' key on which degree a voice moves to on
    /// the same bars as --key-weight: the tonic and dominant before the
    /// other degrees; it never decides whether a voice moves; 0 = off.
    /// Default from the model card.
    #[arg(long)]
    degree_weight: Option<f32>,
    /// Weight of the chord prior on each beat: the chords Bach writes
    /// (root-position and first-inversion triads, sevenths where they
    /// belong, triads at the phrase ends) before those he seldom writes;
    /// 0 = off. Default from the model card.
    #[arg(long)]
    chord_weight: Option<f32>,
    /// Temperature of the Langevin draws at the low noise levels, where
    /// the chords settle (default: the card's; else --temperature).
    #[arg(long)]
    settle_temperature: Option<f32>,
    /// Character pad, calm (-1: about half a chorale's notes per beat) to
    /// busy (1: about one and a half times); 0 = the model's own style.
    #[arg(long, allow_hyphen_values = true)]
    activity: Option<f32>,
    /// Character pad, plain (-1: triads) to tense (1: sevenths,
    /// suspensions); 0 = the model's own style.
    #[arg(long, allow_hyphen_values = true)]
    tension: Option<f32>,
    /// Constrain to a key: `none`, `auto` (from the given notes), or e.g.
    /// `G major`, `f# minor`.
    #[arg(long, default_value = "none")]
    key: String,
    /// langevin or gibbs.
    #[arg(long, default_value = "langevin")]
    sampler: String,
    /// cpu, cuda, metal or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Where the phrases end (the model cadences there): `auto` (the
    /// file's fermatas — MusicXML `<fermata>` marks — else inferred from
    /// the melody: long notes on strong beats, about every two bars, and
    /// the last note), `none`, or the bars whose last melody note carries
    /// a fermata, e.g. `2,4,6,8`.
    #[arg(long, default_value = "auto")]
    fermatas: String,
    /// Longest piece read or written, in bars of 4/4: a file past it is
    /// refused before anything is composed.
    #[arg(long, default_value_t = Limits::default().max_bars)]
    max_bars: usize,
}

impl Common {
    fn limits(&self) -> Limits {
        Limits {
            max_bars: self.max_bars,
            ..Limits::default()
        }
    }
}

fn parse_voice(text: &str) -> Result<Voice, String> {
    Voice::parse(text)
        .ok_or_else(|| format!("unknown voice '{text}': soprano, alto, tenor or bass"))
}

/// A file-size limit (`ulimit -f`) would kill the process mid-write with
/// SIGXFSZ; ignored, the write fails with an error instead, the partial
/// temporary file is removed and the user is told.
#[cfg(unix)]
#[allow(unsafe_code)]
fn ignore_file_size_signal() {
    // SAFETY: setting one signal's disposition to SIG_IGN at start-up,
    // before any other thread exists, touches no Rust state.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

#[cfg(not(unix))]
fn ignore_file_size_signal() {}

/// A progress line on the terminal while a piece is composed (long pieces
/// take seconds): the level reached of the levels the run takes.
struct Progress {
    bars: usize,
}

impl cantor_engine::sampler::Observer for Progress {
    fn on_level(
        &mut self,
        frame: &cantor_engine::sampler::AnnealingFrame,
    ) -> std::ops::ControlFlow<()> {
        let width = 30;
        let done = width * frame.level / frame.levels.max(1);
        eprint!(
            "\rcomposing {} bars [{}{}] {}/{}",
            self.bars,
            "#".repeat(done),
            " ".repeat(width - done),
            frame.level,
            frame.levels
        );
        std::ops::ControlFlow::Continue(())
    }
}

fn main() -> ExitCode {
    ignore_file_size_signal();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), CantorError> {
    let (problem, common, verb) = match cli.command {
        Command::Harmonize {
            input,
            voice,
            common,
        } => {
            let mut melody = read_music(&input, VoiceLayout::Melody(voice), &common.limits())?;
            Phrasing::parse(&common.fermatas)?.apply(&mut melody, voice)?;
            let key = KeyChoice::parse(&common.key)?;
            (
                harmonize_problem(&melody, voice, key)?,
                common,
                "harmonized",
            )
        }
        Command::Continue {
            input,
            bars,
            cadence,
            common,
        } => {
            let limits = common.limits();
            let mut phrase = read_music(&input, VoiceLayout::Auto, &limits)?;
            Phrasing::parse(&common.fermatas)?.apply(&mut phrase, Voice::Soprano)?;
            limits.check_end(
                &input,
                phrase.len().saturating_add(bars.saturating_mul(16)),
                &format!("the phrase continued by {bars} bars"),
            )?;
            let key = KeyChoice::parse(&common.key)?;
            let mut problem = continuation_problem(&phrase, bars, key)?;
            if cadence {
                end_on_cadence(&mut problem.score, phrase.len());
            }
            (problem, common, "continued")
        }
        Command::Infill {
            input,
            masks,
            common,
        } => {
            let mut piece = read_music(&input, VoiceLayout::Auto, &common.limits())?;
            Phrasing::parse(&common.fermatas)?.apply(&mut piece, Voice::Soprano)?;
            let regions = masks
                .iter()
                .map(|m| MaskRegion::parse(m))
                .collect::<Result<Vec<_>, _>>()?;
            let key = KeyChoice::parse(&common.key)?;
            (
                infill_problem(&piece, &regions, key)?,
                common,
                "regenerated",
            )
        }
    };
    let device = select_device(&common.device)?;
    let model = load_model(common.model.as_deref(), &device)?;
    let settings = settings(&common, &model)?;
    let started = Instant::now();
    let generation = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let mut progress = Progress {
            bars: problem.score.bars().len(),
        };
        let generation = compose(&model, &problem, &settings, &mut progress);
        eprint!("\r\x1b[K");
        generation?
    } else {
        compose(&model, &problem, &settings, &mut Unobserved)?
    };
    let seconds = started.elapsed().as_secs_f64();
    write_midi(&generation.score, &common.output)?;
    report(
        verb,
        &problem,
        &generation.score,
        &model,
        &settings,
        generation.network_evals,
        seconds,
        &common.output,
    );
    Ok(())
}

fn load_model(
    path: Option<&Path>,
    device: &cantor_engine::Device,
) -> Result<ScoreModel, CantorError> {
    match path {
        Some(p) => ScoreModel::load(p, device),
        None => shipped::load(device),
    }
}

fn settings(common: &Common, model: &ScoreModel) -> Result<SamplerSettings, CantorError> {
    let mut s =
        SamplerSettings::from_defaults(&model.card.sampling).overridden(SettingsOverrides {
            levels: common.levels,
            steps_per_level: common.steps,
            step_size: common.step_size,
            temperature: common.temperature,
            rules: common.rules,
            target: common.target.as_deref().map(Target::parse).transpose()?,
            line_weight: common.line_weight,
            key_weight: common.key_weight,
            degree_weight: common.degree_weight,
            chord_weight: common.chord_weight,
            settle_temperature: common.settle_temperature,
            activity: common.activity,
            tension: common.tension,
        });
    s.kind = SamplerKind::parse(&common.sampler)?;
    s.seed = common.seed;
    Ok(s)
}

#[allow(clippy::too_many_arguments)]
fn report(
    verb: &str,
    problem: &Problem,
    score: &cantor_engine::Score,
    model: &ScoreModel,
    settings: &SamplerSettings,
    evals: usize,
    seconds: f64,
    output: &Path,
) {
    let written = score
        .notes()
        .iter()
        .filter(|n| problem.mask.is_free(n.start, n.voice))
        .count();
    let key = problem
        .constraints
        .key
        .map(|k| format!(", key {k}"))
        .unwrap_or_default();
    eprintln!(
        "{verb} {} bars: {written} notes written in {:.2} s ({evals} network evaluations, {:?} sampler, {} on {}{key}) → {}",
        score.bars().len(),
        seconds,
        settings.kind,
        model.card.name,
        device_name(model.device()),
        output.display()
    );
}
