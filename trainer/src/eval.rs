//! `trainer eval`: the model against Bach on held-out pieces.
//!
//! For each task — harmonize (soprano given), continue (bars 1–4 given in
//! four parts, bars 5–8 written; pieces under 8 bars are skipped), infill
//! (one random inner bar of all voices masked) — every piece of the split
//! is solved by the Langevin sampler, by the Gibbs sampler at the same
//! number of network evaluations, and by the rule-based baseline; the
//! engine's metrics (voice leading, and how the voices move: notes per
//! beat, interval and duration histograms, wide leaps) are taken over the
//! generated stretches and over Bach's own music in the same places. Also
//! reported: the denoising loss per σ, and a Coconet-style likelihood of
//! the split ([`likelihood`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use cantor_engine::baseline::baseline;
use cantor_engine::constraints::Key;
use cantor_engine::grid::VOICES;
use cantor_engine::harmony::HarmonyTally;
use cantor_engine::metrics::{Summary, Tally};
use cantor_engine::network::{conditioning, known_channels, one_hot};
use cantor_engine::{
    compose, continuation_problem, harmonize_problem, infill_problem, KeyChoice, Mask, MaskRegion,
    Problem, SamplerKind, SamplerSettings, Score, ScoreModel, Token, Unobserved, Voice,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use crate::data::Corpus;
use crate::deepbach::sample::compose as deepbach_compose;
use crate::deepbach::DeepBach;
use crate::judge;
use crate::plots;
use crate::train::BatchMaker;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Harmonize,
    Continue,
    Infill,
}

/// Who writes the music: Bach (the reference), Cantor's two samplers, the
/// rule baseline, and the DeepBach peer at a budget (`trainer eval
/// --deepbach`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    Bach,
    Langevin,
    Gibbs,
    Baseline,
    /// DeepBach's pseudo-Gibbs at this many updates per free cell, in
    /// hundredths (6250: the reference's 62.5).
    DeepBach {
        centi_updates: u32,
    },
}

impl System {
    /// The report's key: `bach`, `langevin`, …, `deepbach@62.5`.
    pub fn key(&self) -> String {
        match self {
            System::Bach => "bach".into(),
            System::Langevin => "langevin".into(),
            System::Gibbs => "gibbs".into(),
            System::Baseline => "baseline".into(),
            System::DeepBach { centi_updates } => {
                format!("deepbach@{}", *centi_updates as f64 / 100.0)
            }
        }
    }

    pub fn deepbach(updates_per_cell: f32) -> System {
        System::DeepBach {
            centi_updates: (updates_per_cell * 100.0).round().max(1.0) as u32,
        }
    }
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            System::DeepBach { centi_updates } => {
                write!(f, "DeepBach ({} upd./cell)", *centi_updates as f64 / 100.0)
            }
            other => write!(f, "{other:?}"),
        }
    }
}

impl Serialize for System {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.key())
    }
}

/// Bars of the continue task's prompt, and of its answer.
pub const PROMPT_BARS: usize = 4;
pub const CONTINUATION_BARS: usize = 4;

/// The problem a task poses on a piece and Bach's music for the same cells,
/// or `None` when the piece is too short for the task (continue needs
/// [`PROMPT_BARS`] + [`CONTINUATION_BARS`] whole bars). `index` seeds the infill
/// bar.
pub fn task_problem(task: Task, piece: &Score, index: usize) -> Result<Option<(Problem, Score)>> {
    Ok(Some(match task {
        Task::Harmonize => (
            harmonize_problem(piece, Voice::Soprano, KeyChoice::Free)?,
            piece.clone(),
        ),
        Task::Continue => {
            let bars = piece.bars();
            if bars.len() < PROMPT_BARS + CONTINUATION_BARS {
                return Ok(None);
            }
            let phrase = piece.slice(0..bars[PROMPT_BARS - 1].end);
            let problem = continuation_problem(&phrase, CONTINUATION_BARS, KeyChoice::Free)?;
            // Bach's bars 5–8 (in the prompt's meter, as the answer is),
            // whole: a piece that ends inside bar 8 is skipped too.
            if piece.len() < problem.score.len() {
                return Ok(None);
            }
            let reference = piece.slice(0..problem.score.len());
            (problem, reference)
        }
        Task::Infill => {
            let bars = piece.bars().len();
            let mut rng = ChaCha8Rng::seed_from_u64(index as u64);
            // An inner bar when there is one.
            let bar = if bars >= 3 {
                rng.random_range(2..bars)
            } else {
                rng.random_range(1..=bars)
            };
            let region = MaskRegion {
                bars: Some((bar, bar)),
                voices: Vec::new(),
            };
            (
                infill_problem(piece, &[region], KeyChoice::Free)?,
                piece.clone(),
            )
        }
    }))
}

/// Metrics of `output` over the stretches where `problem` had free cells.
pub fn tally(output: &Score, problem: &Problem, reference: Option<&Score>) -> Tally {
    Tally::over_free_spans(output, &problem.mask, reference)
}

/// The chords `output` sounds where `problem` had free cells, in `key`:
/// its beats, its phrase ends (the `fermatas` — Bach's — inside the free
/// stretches) and, with `ending`, its last chord.
pub fn harmony_tally(
    output: &Score,
    problem: &Problem,
    key: Option<Key>,
    fermatas: &[std::ops::Range<usize>],
    ending: bool,
) -> HarmonyTally {
    HarmonyTally::measure(
        output,
        &problem.mask.free_spans(),
        Some(&problem.mask),
        key,
        fermatas,
        ending,
    )
}

/// A continuation's prompt measures: the new bars (from the first free
/// step) against the prompt before them.
pub fn continuation_tally(output: &Score, problem: &Problem) -> Tally {
    let start = problem
        .mask
        .free_spans()
        .first()
        .map_or(output.len(), |s| s.start);
    Tally::of_continuation(&output.slice(0..start), &output.slice(start..output.len()))
}

/// Output of one system on one problem (`deepbach`: the peer, needed for
/// its systems).
pub fn solve(
    system: System,
    model: &ScoreModel,
    deepbach: Option<&DeepBach>,
    problem: &Problem,
    reference: &Score,
    settings: &SamplerSettings,
) -> Result<Score> {
    Ok(match system {
        System::Bach => reference.clone(),
        System::Baseline => baseline(problem),
        System::DeepBach { centi_updates } => {
            let peer = deepbach.context("a DeepBach system needs --deepbach MODEL")?;
            let mut schedule = peer.card.sampling.clone();
            schedule.updates_per_cell = centi_updates as f32 / 100.0;
            let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
            deepbach_compose(peer, problem, &schedule, &mut rng)?.score
        }
        System::Langevin | System::Gibbs => {
            let mut s = settings.clone();
            s.kind = if system == System::Gibbs {
                SamplerKind::Gibbs
            } else {
                SamplerKind::Langevin
            };
            compose(model, problem, &s, &mut Unobserved)?.score
        }
    })
}

#[derive(Serialize)]
pub struct TaskReport {
    pub pieces: usize,
    /// Pieces too short for the task (continue: under 8 bars), left out.
    pub skipped: usize,
    pub systems: BTreeMap<System, Summary>,
    /// The learned judge ([`judge`]) telling each system's segments from
    /// Bach's on the same bars: cross-validated AUC (0.5 = it cannot).
    pub judge: BTreeMap<System, judge::Verdict>,
    /// The same judge on Bach against Bach (two halves of the pieces).
    pub judge_control: Option<judge::Verdict>,
    /// Seconds spent per piece by each sampler.
    pub seconds_per_piece: BTreeMap<System, f64>,
}

#[derive(Serialize)]
pub struct DenoisingLevel {
    /// Window length in steps.
    pub window: usize,
    pub sigma: f32,
    /// σ²-weighted denoising score matching loss, σ²‖s(x, σ) − (x₀ − x)/σ²‖²
    /// = ‖D − x₀‖²/σ², per free cell.
    pub dsm: f64,
    /// Cross-entropy of the clean tokens under D, per free cell (nats).
    pub cross_entropy: f64,
    /// Fraction of free cells whose most probable token under D is right.
    pub accuracy: f64,
}

#[derive(Serialize)]
pub struct EvalReport {
    pub model: String,
    pub data: String,
    pub split: String,
    pub settings: SettingsRecord,
    pub tasks: BTreeMap<Task, TaskReport>,
    pub denoising: Vec<DenoisingLevel>,
    /// Coconet-style likelihood of the split (None when not measured).
    pub likelihood: Option<Likelihood>,
    /// The DeepBach peer's pseudo-likelihood of the split (with --deepbach).
    pub deepbach: Option<DeepBachRecord>,
}

/// What the report says of the DeepBach peer besides its music.
#[derive(Serialize)]
pub struct DeepBachRecord {
    pub model: String,
    pub parameters: usize,
    /// Its sampler's schedule, the budget aside (the columns name it).
    pub schedule: crate::deepbach::GibbsSchedule,
    /// Cross-entropy of each cell's true token given every other cell,
    /// nats per cell (four voices averaged; then S A T B), on up to
    /// [`PSEUDO_NLL_POSITIONS`] positions of the split, and the accuracy of
    /// the most probable token. A pseudo-likelihood: DeepBach's
    /// conditionals define no joint distribution, so the orderless-NADE
    /// likelihood above has no DeepBach counterpart.
    pub pseudo_nll_per_cell: f64,
    pub pseudo_nll_voices: [f64; 4],
    pub accuracy: f64,
}

/// Positions of the split DeepBach's pseudo-likelihood is measured on.
pub const PSEUDO_NLL_POSITIONS: usize = 8192;

#[derive(Serialize)]
pub struct SettingsRecord {
    pub levels: usize,
    pub steps_per_level: usize,
    pub step_size: f32,
    pub temperature: f32,
    /// What each Langevin step moves towards (draw or mean).
    pub target: cantor_engine::Target,
    /// Weight of the voice-leading rules (0: the network alone).
    pub rules: f32,
    /// Weight of the line model (0: none, or the model has none).
    pub line_weight: f32,
    /// Weight of the home key (0: off).
    pub key_weight: f32,
    /// Weight of the home key's degrees (0: off).
    pub degree_weight: f32,
    /// Weight of the chord prior (0: off, or the card has none).
    pub chord_weight: f32,
    /// Langevin's temperature where the chords settle (none: `temperature`).
    pub settle_temperature: Option<f32>,
    /// What the systems were told of the phrase ends.
    pub phrases: PhraseSource,
    /// Continuations were asked to end on a cadence.
    pub cadence: bool,
    /// The character pad's position (neutral: the model's own style).
    pub character: cantor_engine::Character,
    pub network_evals: usize,
    pub seed: u64,
    /// Sampler runs per piece, pooled (seeds `seed`, `seed + 1`, …).
    pub seeds: u64,
}

pub struct EvalOptions {
    pub model: PathBuf,
    /// A line model to use instead of the one the card names.
    pub lines: Option<PathBuf>,
    pub data: PathBuf,
    pub split: String,
    pub tasks: Vec<Task>,
    pub limit: Option<usize>,
    pub settings: SamplerSettings,
    pub report: Option<PathBuf>,
    pub device: String,
    pub split_seed: u64,
    /// Measure the likelihood ([`likelihood`]).
    pub nll: bool,
    /// Random orderings per crop for the likelihood.
    pub nll_orderings: usize,
    /// Most crops per piece for the likelihood.
    pub nll_crops: usize,
    /// Write piano-roll PNGs here ([`write_plots`]).
    pub plots: Option<PathBuf>,
    /// Write every output as MIDI here (DIR/TASK/SYSTEM/NNN.mid).
    pub write_midi: Option<PathBuf>,
    /// What the systems are told of the phrase ends.
    pub phrases: PhraseSource,
    /// Continuations asked to end on a cadence.
    pub cadence: bool,
    /// Which of Cantor's systems run beside Bach (Langevin, Gibbs, Baseline).
    pub systems: Vec<System>,
    /// The DeepBach peer, and the budgets (updates per free cell) it runs at.
    pub deepbach: Option<PathBuf>,
    pub deepbach_budgets: Vec<f32>,
    /// Sweep the character pad instead ([`crate::sweep`]).
    pub character: bool,
    /// Sampler runs per piece, pooled ([`Evaluation::seeds`]).
    pub seeds: u64,
}

/// The sampler's seed for piece `index` of a run at `seed`. Each piece
/// draws its own noise: with one seed for all, every continuation (the
/// same 64 + 64 steps) started from the same noise and the split's means
/// moved together with the seed (continue, test: the alto's notes per beat
/// 62–110% of Bach's over seeds 0–2).
pub fn piece_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// "seed 0", or "seeds 0–2 pooled" for several runs per piece.
pub fn seeds_text(seed: u64, seeds: u64) -> String {
    match seeds {
        0 | 1 => format!("seed {seed}"),
        n => format!("seeds {seed}–{} pooled", seed + n - 1),
    }
}

/// Runs the evaluation; `None` for a character sweep (`--character`), whose
/// report is its own.
pub fn run(options: EvalOptions) -> Result<Option<EvalReport>> {
    let device = cantor_engine::model::select_device(&options.device)?;
    let model = ScoreModel::load(&options.model, &device)?;
    let model = match &options.lines {
        Some(path) => model.with_lines(cantor_engine::LineModel::load(path)?),
        None => model,
    };
    if let Some(lines) = model.lines() {
        eprintln!(
            "line model {} at weight {}",
            lines.card.name, options.settings.line_weight
        );
    }
    let corpus = Corpus::load(&options.data, options.split_seed)?;
    corpus.announce();
    let pieces = corpus.split(&options.split)?;
    let pieces = &pieces[..options.limit.unwrap_or(pieces.len()).min(pieces.len())];
    let keys = corpus.keys(&options.split)?;
    let keys: Vec<Option<Key>> = pieces
        .iter()
        .zip(keys)
        .map(|(piece, key)| key.or_else(|| Key::estimate(piece)))
        .collect();
    anyhow::ensure!(
        !pieces.is_empty(),
        "the {} split has no pieces",
        options.split
    );
    let s = &options.settings;
    let deepbach = match &options.deepbach {
        Some(path) => Some(DeepBach::load(path, &device)?),
        None => None,
    };
    anyhow::ensure!(
        options.deepbach.is_some() || options.deepbach_budgets.is_empty(),
        "--deepbach-budgets needs --deepbach MODEL"
    );
    anyhow::ensure!(
        options
            .deepbach_budgets
            .iter()
            .all(|b| b.is_finite() && *b > 0.0),
        "--deepbach-budgets must be positive numbers of updates per cell"
    );
    let mut systems = vec![System::Bach];
    for s in &options.systems {
        if !systems.contains(s) {
            systems.push(*s);
        }
    }
    if deepbach.is_some() {
        let budgets = match options.deepbach_budgets.is_empty() {
            true => vec![deepbach
                .as_ref()
                .map_or(62.5, |d| d.card.sampling.updates_per_cell)],
            false => options.deepbach_budgets.clone(),
        };
        for b in budgets {
            if !systems.contains(&System::deepbach(b)) {
                systems.push(System::deepbach(b));
            }
        }
    }

    let evaluation = Evaluation {
        model: &model,
        deepbach: deepbach.as_ref(),
        pieces,
        keys: &keys,
        tasks: &options.tasks,
        systems: &systems,
        seeds: options.seeds,
        midi: options.write_midi.as_deref(),
        phrases: options.phrases,
        cadence: options.cadence,
    };
    if options.character {
        let sweep = crate::sweep::run(&evaluation, s)?;
        let markdown = crate::sweep::markdown(&sweep, &options.model, &options.split);
        println!("{markdown}");
        if let Some(prefix) = &options.report {
            write_report(prefix, &serde_json::to_string_pretty(&sweep)?, &markdown)?;
        }
        if let Some(dir) = &options.plots {
            crate::sweep::write_corners(&model, pieces, s, dir)?;
        }
        return Ok(None);
    }
    let tasks = evaluation.run(s)?;
    if let Some(dir) = &options.plots {
        // DeepBach at its first budget, beneath Cantor's samplers.
        let peer = deepbach.as_ref().zip(
            systems
                .iter()
                .copied()
                .find(|s| matches!(s, System::DeepBach { .. })),
        );
        write_plots(&model, peer, pieces, s, dir)?;
    }
    let denoising = denoising_levels(&model, pieces, &device)?;
    let likelihood = match options.nll {
        true => Some(likelihood(
            &model,
            pieces,
            options.nll_orderings,
            options.nll_crops,
            s.seed,
        )?),
        false => None,
    };
    let deepbach = match &deepbach {
        Some(peer) => {
            let (nll, voices, accuracy) =
                crate::deepbach::train::pseudo_likelihood(peer, pieces, PSEUDO_NLL_POSITIONS)?;
            Some(DeepBachRecord {
                model: peer.origin.display().to_string(),
                parameters: peer.parameters(),
                schedule: peer.card.sampling.clone(),
                pseudo_nll_per_cell: nll,
                pseudo_nll_voices: voices,
                accuracy,
            })
        }
        None => None,
    };
    let report = EvalReport {
        model: options.model.display().to_string(),
        data: corpus.source.clone(),
        split: options.split.clone(),
        settings: SettingsRecord {
            levels: s.levels,
            steps_per_level: s.steps_per_level,
            step_size: s.step_size,
            temperature: s.temperature,
            target: s.target,
            rules: s.rules,
            line_weight: if model.lines().is_some() {
                s.line_weight
            } else {
                0.0
            },
            key_weight: s.key_weight,
            degree_weight: s.degree_weight,
            chord_weight: if model.card.chords.is_some() {
                s.chord_weight
            } else {
                0.0
            },
            settle_temperature: s.settle_temperature,
            phrases: options.phrases,
            cadence: options.cadence,
            character: s.character,
            network_evals: s.network_evals(),
            seed: s.seed,
            seeds: options.seeds,
        },
        tasks,
        denoising,
        likelihood,
        deepbach,
    };
    let markdown = markdown(&report);
    println!("{markdown}");
    if let Some(prefix) = &options.report {
        write_report(prefix, &serde_json::to_string_pretty(&report)?, &markdown)?;
    }
    Ok(Some(report))
}

/// What an evaluation runs: these pieces posed as these tasks, solved by
/// these systems (`deepbach`: the peer, needed for its systems).
pub struct Evaluation<'a> {
    pub model: &'a ScoreModel,
    pub deepbach: Option<&'a DeepBach>,
    pub pieces: &'a [Score],
    /// Each piece's key (the data's, else estimated from Bach's notes), for
    /// the notes outside it and the degrees of the phrase ends.
    pub keys: &'a [Option<Key>],
    pub tasks: &'a [Task],
    pub systems: &'a [System],
    /// Runs of each sampler per piece, seeds `settings.seed`,
    /// `settings.seed + 1`, …, their music pooled (Bach's counted once).
    pub seeds: u64,
    /// Where to write every output as MIDI (the first seed's).
    pub midi: Option<&'a Path>,
    /// What the systems are told of the phrase ends.
    pub phrases: PhraseSource,
    /// Ask each continuation to end on a cadence (`cantor continue
    /// --cadence`).
    pub cadence: bool,
}

/// What an evaluation tells the systems of each piece's phrase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PhraseSource {
    /// Bach's fermatas, as a MusicXML file marks them.
    Given,
    /// Inferred from the melody, as for a plain MIDI file.
    Inferred,
    /// None: the phrase ends unknown.
    Unknown,
}

impl PhraseSource {
    fn apply(self, piece: &mut Score) -> Result<()> {
        match self {
            PhraseSource::Given => {}
            PhraseSource::Inferred => {
                piece.clear_phrasing();
                cantor_engine::phrases::Phrasing::Auto.apply(piece, Voice::Soprano)?;
            }
            PhraseSource::Unknown => piece.clear_phrasing(),
        }
        Ok(())
    }
}

impl Evaluation<'_> {
    /// Every piece posed as each task and solved by each system at
    /// `settings`, measured against Bach's music in the same cells.
    pub fn run(&self, settings: &SamplerSettings) -> Result<BTreeMap<Task, TaskReport>> {
        let Evaluation {
            model,
            deepbach,
            pieces,
            keys,
            tasks,
            systems,
            seeds,
            midi,
            phrases,
            cadence,
        } = *self;
        let mut reports = BTreeMap::new();
        for task in tasks {
            let mut tallies: BTreeMap<System, Tally> = BTreeMap::new();
            let mut seconds: BTreeMap<System, f64> = BTreeMap::new();
            let mut segments: BTreeMap<System, Vec<judge::Segment>> = BTreeMap::new();
            let (mut solved, mut skipped) = (0usize, 0usize);
            for (index, marked) in pieces.iter().enumerate() {
                // What the systems are told of the phrase ends; the chords
                // at Bach's fermatas are judged whatever they were told.
                let mut piece = marked.clone();
                phrases.apply(&mut piece)?;
                let Some((mut problem, reference)) = task_problem(*task, &piece, index)? else {
                    skipped += 1;
                    continue;
                };
                if *task == Task::Continue && cadence {
                    let from = problem.mask.free_spans().first().map_or(0, |s| s.start);
                    cantor_engine::phrases::end_on_cadence(&mut problem.score, from);
                }
                // A continuation's new bars were told of no phrase end
                // (unless it is asked to cadence): their chords at Bach's
                // fermatas are not a fair question.
                let fermatas = match task {
                    Task::Continue => &[][..],
                    _ => marked.fermatas(),
                };
                solved += 1;
                for &system in systems {
                    // Bach's music is the same at every seed.
                    let runs = if system == System::Bach { 1 } else { seeds };
                    for run in 0..runs {
                        let s = SamplerSettings {
                            seed: piece_seed(settings.seed + run, index),
                            ..settings.clone()
                        };
                        let started = Instant::now();
                        let out = solve(system, model, deepbach, &problem, &reference, &s)
                            .with_context(|| format!("{task:?} piece {index} with {system:?}"))?;
                        *seconds.entry(system).or_default() +=
                            started.elapsed().as_secs_f64() / runs as f64;
                        let compare = (system != System::Bach).then_some(&reference);
                        let entry = tallies.entry(system).or_default();
                        entry.add(&tally(&out, &problem, compare));
                        let key = keys.get(index).copied().flatten();
                        entry.harmony.add(&harmony_tally(
                            &out,
                            &problem,
                            key,
                            fermatas,
                            *task != Task::Infill,
                        ));
                        segments.entry(system).or_default().extend(judge::segments(
                            &out,
                            &problem.mask.free_spans(),
                            index,
                            key,
                        ));
                        if let (Some(dir), 0) = (midi, run) {
                            let dir = dir
                                .join(format!("{task:?}").to_lowercase())
                                .join(system.key());
                            std::fs::create_dir_all(&dir)
                                .with_context(|| format!("{}", dir.display()))?;
                            cantor_engine::io::write_midi(
                                &out,
                                &dir.join(format!("{index:03}.mid")),
                            )?;
                        }
                        if *task == Task::Continue {
                            entry.add(&continuation_tally(&out, &problem));
                        }
                    }
                }
                eprint!("\r{task:?}: {}/{} pieces", index + 1, pieces.len());
            }
            eprintln!();
            let bach = tallies.get(&System::Bach).cloned().unwrap_or_default();
            let bach_segments = segments.get(&System::Bach).cloned().unwrap_or_default();
            let judged = segments
                .iter()
                .filter(|(s, _)| **s != System::Bach)
                .filter_map(|(s, seg)| {
                    Some((*s, judge::judge(&bach_segments, seg, settings.seed)?))
                })
                .collect();
            let judge_control = judge::control(&bach_segments, settings.seed);
            let systems = tallies
                .iter()
                .map(|(k, t)| (*k, t.summary(Some(&bach))))
                .collect();
            let seconds_per_piece = seconds
                .into_iter()
                .filter(|(k, _)| !matches!(k, System::Bach | System::Baseline))
                .map(|(k, v)| (k, v / solved.max(1) as f64))
                .collect();
            reports.insert(
                *task,
                TaskReport {
                    pieces: solved,
                    skipped,
                    systems,
                    judge: judged,
                    judge_control,
                    seconds_per_piece,
                },
            );
        }
        Ok(reports)
    }
}

pub fn write_report(prefix: &Path, json: &str, markdown: &str) -> Result<()> {
    if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let json_path = prefix.with_extension("json");
    let md_path = prefix.with_extension("md");
    std::fs::write(&json_path, json.to_string() + "\n")
        .with_context(|| json_path.display().to_string())?;
    std::fs::write(&md_path, markdown).with_context(|| md_path.display().to_string())?;
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

/// Denoising quality per σ on 64-step windows of the split with random task
/// masks (fixed seed, so runs compare).
fn denoising_levels(
    model: &ScoreModel,
    pieces: &[Score],
    device: &Device,
) -> Result<Vec<DenoisingLevel>> {
    const WINDOWS: usize = 64;
    // 64-step windows, or shorter when every piece is shorter.
    let longest = pieces.iter().map(Score::len).max().unwrap_or(0);
    let window = longest.min(64) / 4 * 4;
    if window == 0 {
        return Ok(Vec::new());
    }
    let vocab = &model.card.vocabulary;
    let Ok(maker) = BatchMaker::new(pieces, vocab, model.card.noise, window) else {
        return Ok(Vec::new());
    };
    let net = model.network();
    let c = vocab.total_size();
    let mut out = Vec::new();
    for sigma in model.card.noise.levels(8) {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let b = maker.batch_at(window, WINDOWS, Some(sigma), &mut rng);
        let shape = (b.size, b.window, c);
        let noisy = Tensor::from_vec(b.noisy.clone(), shape, device)?;
        let clean = Tensor::from_vec(b.clean.clone(), shape, device)?;
        let free = Tensor::from_vec(b.free.clone(), shape, device)?;
        let width = b.conditioning.len() / (b.size * b.window);
        let cond = Tensor::from_vec(b.conditioning.clone(), (b.size, b.window, width), device)?;
        let d = net.denoise(&noisy, &cond, &b.sigmas, None)?;
        let cells: f64 = b.free_cells.iter().map(|x| *x as f64).sum();
        let sq = ((&d - &clean)?.sqr()? * &free)?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
        let ce = (clean.clone() * &free)?
            .mul(&d.clamp(1e-12, 1.0)?.log()?)?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
        // Accuracy: the true token's probability is the largest in its block.
        let probs = d.flatten_all()?.to_vec1::<f32>()?;
        let truth = b.clean.clone();
        let (mut right, mut total) = (0usize, 0usize);
        for cell in 0..b.size * b.window {
            for voice in Voice::ALL {
                let o = cell * c + vocab.offset(voice);
                let n = vocab.voice_size(voice);
                if b.free[o] == 0.0 {
                    continue;
                }
                let best = (0..n)
                    .max_by(|x, y| probs[o + x].total_cmp(&probs[o + y]))
                    .unwrap_or(0);
                total += 1;
                right += (truth[o + best] == 1.0) as usize;
            }
        }
        out.push(DenoisingLevel {
            window,
            sigma,
            dsm: sq / (sigma as f64 * sigma as f64) / cells,
            cross_entropy: -ce / cells,
            accuracy: right as f64 / total.max(1) as f64,
        });
    }
    Ok(out)
}

/// Steps of a likelihood crop.
pub const NLL_CROP_STEPS: usize = 32;

/// The sentence every likelihood report carries.
pub const COCONET_NOTE: &str = "Coconet (Huang et al. 2017) reports 0.569 note-wise on its own 16th-note split — a guide, not a tie-breaker";

#[derive(Serialize)]
pub struct Likelihood {
    /// What is measured, in words.
    pub method: String,
    /// Steps per crop (cells = steps × 4 voices).
    pub crop_steps: usize,
    /// Crops measured.
    pub crops: usize,
    /// Most crops taken per piece (non-overlapping, spread over it).
    pub crops_per_piece: usize,
    /// Crops passed over for a note outside the model's vocabulary.
    pub crops_out_of_vocabulary: usize,
    pub orderings: usize,
    /// Note-wise NLL: nats per cell (crop NLL / (steps × 4)).
    pub nats_per_cell: f64,
    /// Frame-wise NLL: nats per 16th step, the four voices together
    /// (crop NLL / steps).
    pub nats_per_step: f64,
    /// Ordering-averaged nats per cell on cells whose true token is a hold,
    /// and on the others (rests and onsets).
    pub nats_per_hold_cell: f64,
    pub nats_per_other_cell: f64,
    /// Fraction of cells that are holds.
    pub hold_fraction: f64,
    pub seconds: f64,
    /// Coconet's figure, for orientation.
    pub coconet: String,
}

/// Coconet-style likelihood of `pieces` under the model: the orderless-NADE
/// estimate (Uria et al. 2014, as in Coconet, Huang et al. 2017).
///
/// Each piece gives up to `crops_per_piece` non-overlapping
/// [`NLL_CROP_STEPS`]-step crops spread over it ([`crop_starts`]; a crop
/// with a note outside the model's vocabulary is passed over); a crop has
/// 32 × 4 cells. For each of `orderings` seeded random orderings o of the
/// cells, cell o_d is predicted from the cells o_<d: those are given clean
/// through the same `conditioning` / `known_channels` inputs the samplers
/// use and clamped in x as value + σ_max·z exactly as the Gibbs sampler
/// does, the rest are free (pure noise), σ = σ_max, no constraints; the
/// cost is −log D(x)[true token]. The 128 prefixes of one ordering are one
/// batch (128 × 32 steps), evaluated in one network call on a GPU and in
/// calls of 8 on the CPU. A crop's NLL is −log of the mean over orderings
/// of exp(−Σ_d cost_d) (averaged in probability space, by log-sum-exp);
/// note-wise = crop NLL / 128, frame-wise = crop NLL / 32, both averaged
/// over crops.
///
/// This is Cantor's token NLL — each cell a rest, a hold or a pitch onset,
/// a held note's continuation predicted as a hold token — not Coconet's
/// NLL of the pitch sounding in each frame (its piano roll has no onsets),
/// so the two figures do not measure quite the same thing. The prefixes
/// also show the network known holds whose onset is still hidden, a
/// pattern its training masks (which free a free onset's holds with it)
/// never contain.
pub fn likelihood(
    model: &ScoreModel,
    pieces: &[Score],
    orderings: usize,
    crops_per_piece: usize,
    seed: u64,
) -> Result<Likelihood> {
    const STEPS: usize = NLL_CROP_STEPS;
    const CELLS: usize = NLL_CROP_STEPS * VOICES;
    anyhow::ensure!(orderings > 0, "--nll-orderings must be at least 1");
    let started = Instant::now();
    let vocab = &model.card.vocabulary;
    let sigma = model.card.noise.sigma_max;
    let device = model.device();
    let c = vocab.total_size();
    let net = model.network();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut crops, mut out_of_vocabulary) = (0usize, 0usize);
    let mut crop_nll_sum = 0.0f64;
    // Ordering-averaged sums and counts, hold cells and the others.
    let (mut hold_nats, mut other_nats) = (0.0f64, 0.0f64);
    let (mut hold_cells, mut other_cells) = (0usize, 0usize);
    // Prefixes per network call: one call of all 128 on a GPU; on the CPU
    // calls of 8 (256 grid steps) run about twice as fast as one of 128
    // (measured on the 2-core machine) and give the same numbers.
    let chunk = if device.is_cpu() { 8 } else { CELLS };
    let total_crops: usize = pieces
        .iter()
        .map(|p| (p.len() / STEPS).min(crops_per_piece))
        .sum();
    for piece in pieces {
        for start in crop_starts(piece.len(), crops_per_piece) {
            let crop = piece.slice(start..start + STEPS);
            // The true token's index in each cell (t · 4 + voice).
            let truth: Option<Vec<usize>> = (0..CELLS)
                .map(|cell| {
                    let voice = Voice::from_index(cell % VOICES);
                    vocab.index(voice, crop.get(cell / VOICES, voice))
                })
                .collect();
            let Some(truth) = truth else {
                out_of_vocabulary += 1;
                continue;
            };
            let clean = one_hot(&crop, vocab);
            let mut totals = Vec::with_capacity(orderings);
            for _ in 0..orderings {
                let mut order: Vec<usize> = (0..CELLS).collect();
                order.shuffle(&mut rng);
                let mut x = Vec::with_capacity(CELLS * STEPS * c);
                let mut cond = Vec::new();
                let mut mask = Mask::all(STEPS);
                for d in 0..CELLS {
                    if d > 0 {
                        let known = order[d - 1];
                        mask.set_free(known / VOICES, Voice::from_index(known % VOICES), false);
                    }
                    cond.extend(conditioning(&crop, &mask, vocab));
                    let known = known_channels(&mask, vocab);
                    x.extend(
                        clean
                            .iter()
                            .zip(&known)
                            .map(|(v, k)| v * k + sigma * rng.sample::<f32, _>(StandardNormal)),
                    );
                }
                let width = cond.len() / (CELLS * STEPS);
                let x = Tensor::from_vec(x, (CELLS, STEPS, c), device)?;
                let cond = Tensor::from_vec(cond, (CELLS, STEPS, width), device)?;
                let mut probs = Vec::with_capacity(CELLS * STEPS * c);
                for first in (0..CELLS).step_by(chunk) {
                    let n = chunk.min(CELLS - first);
                    let d = net.denoise(
                        &x.narrow(0, first, n)?,
                        &cond.narrow(0, first, n)?,
                        &vec![sigma; n],
                        None,
                    )?;
                    probs.extend(d.flatten_all()?.to_vec1::<f32>()?);
                }
                let mut total = 0.0f64;
                for (d, &cell) in order.iter().enumerate() {
                    let (t, voice) = (cell / VOICES, Voice::from_index(cell % VOICES));
                    let p = probs[(d * STEPS + t) * c + vocab.offset(voice) + truth[cell]];
                    let nats = -(p.max(1e-30) as f64).ln();
                    total += nats;
                    if crop.get(t, voice) == Token::Hold {
                        hold_nats += nats;
                        hold_cells += 1;
                    } else {
                        other_nats += nats;
                        other_cells += 1;
                    }
                }
                totals.push(total);
            }
            // −log mean_k exp(−total_k), by log-sum-exp.
            let top = totals.iter().map(|t| -t).fold(f64::NEG_INFINITY, f64::max);
            let lse = top + totals.iter().map(|t| (-t - top).exp()).sum::<f64>().ln();
            crop_nll_sum += (orderings as f64).ln() - lse;
            crops += 1;
            eprint!("\rlikelihood: {crops}/{total_crops} crops");
        }
    }
    eprintln!();
    anyhow::ensure!(
        crops > 0,
        "no {STEPS}-step crop of the split fits the model's vocabulary"
    );
    let mean = crop_nll_sum / crops as f64;
    Ok(Likelihood {
        method: format!(
            "orderless-NADE estimate on {STEPS}-step crops at σ_max, {orderings} orderings, averaged in probability; Cantor's token NLL (rest / hold / pitch onset), not Coconet's pitch-per-frame NLL"
        ),
        crop_steps: STEPS,
        crops,
        crops_per_piece,
        crops_out_of_vocabulary: out_of_vocabulary,
        orderings,
        nats_per_cell: mean / CELLS as f64,
        nats_per_step: mean / STEPS as f64,
        nats_per_hold_cell: hold_nats / hold_cells.max(1) as f64,
        nats_per_other_cell: other_nats / other_cells.max(1) as f64,
        hold_fraction: hold_cells as f64 / (hold_cells + other_cells).max(1) as f64,
        seconds: started.elapsed().as_secs_f64(),
        coconet: COCONET_NOTE.to_string(),
    })
}

/// First steps of up to `count` non-overlapping [`NLL_CROP_STEPS`]-step
/// crops of a piece of `steps` steps, spread evenly over it (one crop: the
/// middle one).
pub fn crop_starts(steps: usize, count: usize) -> Vec<usize> {
    let available = steps / NLL_CROP_STEPS;
    let count = count.min(available);
    (0..count)
        .map(|j| (2 * j + 1) * available / (2 * count) * NLL_CROP_STEPS)
        .collect()
}

/// Piano rolls of the first three pieces of the split (harmonize) and of
/// the first piece long enough to continue: Bach's and each sampler's
/// music, stacked, as `DIR/harmonize-piece-N.png` and
/// `DIR/continue-piece-N.png`.
pub fn write_plots(
    model: &ScoreModel,
    deepbach: Option<(&DeepBach, System)>,
    pieces: &[Score],
    settings: &SamplerSettings,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let harmonize = (0..pieces.len().min(3)).map(|i| (Task::Harmonize, i));
    let continued = (0..pieces.len())
        .find(|i| pieces[*i].bars().len() >= PROMPT_BARS + CONTINUATION_BARS)
        .map(|i| (Task::Continue, i));
    for (task, index) in harmonize.chain(continued) {
        let Some((problem, reference)) = task_problem(task, &pieces[index], index)? else {
            continue;
        };
        let mut outputs = Vec::new();
        let mut systems = vec![System::Bach, System::Langevin, System::Gibbs];
        systems.extend(deepbach.map(|(_, system)| system));
        for system in systems {
            let peer = deepbach.map(|(peer, _)| peer);
            outputs.push((
                system,
                solve(system, model, peer, &problem, &reference, settings)?,
            ));
        }
        let panels: Vec<plots::Panel> = outputs
            .iter()
            .map(|(system, score)| plots::Panel {
                score,
                label: match system {
                    System::Bach => plots::BACH,
                    System::Langevin => plots::LANGEVIN,
                    System::DeepBach { .. } => plots::DEEPBACH,
                    _ => plots::GIBBS,
                },
                free: Some(&problem.mask),
            })
            .collect();
        let name = format!("{task:?}").to_lowercase();
        let path = dir.join(format!("{name}-piece-{index}.png"));
        plots::write_png(&plots::piano_roll(&panels), &path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn fmt(v: f64) -> String {
    format!("{v:.3}")
}

/// The report as Markdown tables.
pub fn markdown(report: &EvalReport) -> String {
    let mut md = format!(
        "# Evaluation of `{}`\n\nData: `{}`, split **{}**. Samplers: {} levels × {} step(s) (step size {}, temperature {}, Langevin towards the denoiser's {:?}, voice-leading rules weight {}, line model weight {}, home key weight {}, its degrees' weight {}, chord prior weight {}, settle temperature {}), {} network evaluations per piece for both Langevin and Gibbs; the phrase ends {}; {}.\n",
        report.model,
        report.data,
        report.split,
        report.settings.levels,
        report.settings.steps_per_level,
        report.settings.step_size,
        report.settings.temperature,
        report.settings.target,
        report.settings.rules,
        report.settings.line_weight,
        report.settings.key_weight,
        report.settings.degree_weight,
        report.settings.chord_weight,
        report.settings
            .settle_temperature
            .map_or("as the temperature".to_string(), |t| t.to_string()),
        report.settings.network_evals,
        match report.settings.phrases {
            PhraseSource::Given => "given (the data's fermatas)",
            PhraseSource::Inferred => "inferred from the melody",
            PhraseSource::Unknown => "unknown",
        },
        seeds_text(report.settings.seed, report.settings.seeds)
    );
    for (task, t) in &report.tasks {
        let skipped = match (task, t.skipped) {
            (_, 0) => String::new(),
            (Task::Continue, n) => format!("; {n} with fewer than 8 bars skipped"),
            (_, n) => format!("; {n} skipped"),
        };
        md += &format!("\n## {task:?} ({} pieces{skipped})\n\n", t.pieces);
        if t.systems.is_empty() {
            md += "No piece of the split is long enough for this task.\n";
            continue;
        }
        let columns: Vec<System> = t.systems.keys().copied().collect();
        let names: Vec<String> = columns.iter().map(System::to_string).collect();
        md += &format!(
            "| metric | {} |\n|---|{}\n",
            names.join(" | "),
            "---|".repeat(columns.len())
        );
        type Pick = Box<dyn Fn(&Summary) -> Option<f64>>;
        let mut rows: Vec<(String, Pick)> = vec![
            (
                "parallel fifths + octaves / 100 beats".into(),
                Box::new(|s| Some(s.parallels_per_100_beats)),
            ),
            (
                "voice crossings / 100 beats".into(),
                Box::new(|s| Some(s.voice_crossings_per_100_beats)),
            ),
            (
                "spacing > octave / 100 beats".into(),
                Box::new(|s| Some(s.wide_spacings_per_100_beats)),
            ),
            (
                "out-of-range notes / 100 beats".into(),
                Box::new(|s| Some(s.out_of_range_per_100_beats)),
            ),
            (
                "triad / seventh beats".into(),
                Box::new(|s| Some(s.chord_beat_fraction)),
            ),
            (
                "… a plain major or minor triad".into(),
                Box::new(|s| Some(1.0 - s.tense_beat_fraction)),
            ),
            (
                "… a seventh chord or a diminished / augmented triad".into(),
                Box::new(|s| Some(s.chord_beat_fraction - (1.0 - s.tense_beat_fraction))),
            ),
            (
                "chords on the beat: sonorities' overlap with Bach's".into(),
                Box::new(|s| s.harmony.sonority_overlap),
            ),
            (
                "… root-position major / minor triads".into(),
                Box::new(|s| s.harmony.root_position_triads),
            ),
            (
                "… first-inversion major / minor triads".into(),
                Box::new(|s| s.harmony.first_inversion_triads),
            ),
            (
                "… six-four chords".into(),
                Box::new(|s| s.harmony.six_fours),
            ),
            (
                "… seventh chords (all kinds)".into(),
                Box::new(|s| s.harmony.sevenths),
            ),
            (
                "… dominant sevenths".into(),
                Box::new(|s| s.harmony.dominant_sevenths),
            ),
            (
                "… diminished / augmented triads".into(),
                Box::new(|s| s.harmony.diminished_augmented),
            ),
            (
                "… no chord (suspension, passing note, open fifth)".into(),
                Box::new(|s| s.harmony.no_chord),
            ),
            (
                "notes outside the key / 100 beats".into(),
                Box::new(|s| s.harmony.outside_key_per_100_beats),
            ),
            (
                "last chord a root-position tonic triad".into(),
                Box::new(|s| s.harmony.tonic_endings),
            ),
            (
                "phrase ends (fermatas) on a root-position triad".into(),
                Box::new(|s| s.harmony.fermata_root_triads),
            ),
            (
                "pitch-class overlap with Bach".into(),
                Box::new(|s| s.pitch_class_overlap),
            ),
            ("exact match with Bach".into(), Box::new(|s| s.exact_match)),
            ("beats generated".into(), Box::new(|s| Some(s.beats))),
            (
                "parallel fifths / 100 beats".into(),
                Box::new(|s| Some(s.parallel_fifths_per_100_beats)),
            ),
        ];
        for voice in Voice::ALL {
            rows.push((
                format!("notes / beat {}", initial(voice)),
                Box::new(move |s| *s.notes_per_beat.get(voice)),
            ));
        }
        for voice in Voice::ALL {
            rows.push((
                format!("interval-histogram overlap with Bach {}", initial(voice)),
                Box::new(move |s| *s.interval_overlap.get(voice)),
            ));
        }
        for voice in Voice::ALL {
            rows.push((
                format!("steps (±1–2 semitones) among intervals {}", initial(voice)),
                Box::new(move |s| *s.step_share.get(voice)),
            ));
        }
        for voice in Voice::ALL {
            rows.push((
                format!("duration-histogram overlap with Bach {}", initial(voice)),
                Box::new(move |s| *s.duration_overlap.get(voice)),
            ));
        }
        rows.push((
            "leaps > octave / 100 beats".into(),
            Box::new(|s| Some(s.wide_leaps_per_100_beats)),
        ));
        rows.push((
            "repeated notes (same pitch struck again) / 100 beats".into(),
            Box::new(|s| Some(s.repeated_notes_per_100_beats)),
        ));
        rows.push((
            "beats a voice drops out while others sound / 100 beats".into(),
            Box::new(|s| Some(s.dropped_voice_beats_per_100_beats)),
        ));
        rows.push((
            "pitch-class overlap of the new bars with the prompt".into(),
            Box::new(|s| s.prompt_pitch_class_overlap),
        ));
        for bar in 0..cantor_engine::metrics::PROMPT_OVERLAP_BARS {
            rows.push((
                format!("… of new bar {} alone", bar + 1),
                Box::new(move |s| s.prompt_overlap_by_bar[bar]),
            ));
        }
        rows.push((
            "ends on tonic / dominant of the prompt's key".into(),
            Box::new(|s| s.tonic_dominant_ending_fraction),
        ));
        rows.push((
            "sounding cells outside the prompt's key (share)".into(),
            Box::new(|s| s.outside_prompt_key),
        ));
        for (name, pick) in rows {
            let values: Vec<Option<f64>> = columns
                .iter()
                .map(|sys| t.systems.get(sys).and_then(&pick))
                .collect();
            // Rows that do not apply to the task (a voice never free, the
            // prompt measures outside continue) are left out.
            if values.iter().all(Option::is_none) {
                continue;
            }
            let cells: Vec<String> = columns
                .iter()
                .zip(&values)
                .map(|(sys, v)| match (sys, v) {
                    (System::Bach, _) if name.starts_with("exact") => "—".into(),
                    (_, Some(v)) => fmt(*v),
                    (_, None) => "—".into(),
                })
                .collect();
            md += &format!("| {name} | {} |\n", cells.join(" | "));
        }
        md += &chord_tables(t, &columns);
        md += &judge_line(t);
        let secs: Vec<String> = t
            .seconds_per_piece
            .iter()
            .map(|(k, v)| format!("{k} {v:.2} s"))
            .collect();
        md += &format!("\nSampling time per piece: {}.\n", secs.join(", "));
        md += &targets(*task, t);
    }
    if !report.denoising.is_empty() {
        md += &format!(
            "\n## Denoising loss per noise level ({}-step windows, random task masks)\n\n",
            report.denoising[0].window
        );
        md += "| σ | DSM loss σ²‖s − ∇log p‖² per free cell | cross-entropy (nats/cell) | top-1 accuracy |\n|---|---|---|---|\n";
        for l in &report.denoising {
            md += &format!(
                "| {:.3} | {:.4} | {:.4} | {:.3} |\n",
                l.sigma, l.dsm, l.cross_entropy, l.accuracy
            );
        }
    }
    if let Some(l) = &report.likelihood {
        md += &format!(
            "\n## Likelihood (orderless NADE, Coconet-style)\n\n{} {}-step crops (up to {} per piece, spread over it; {} passed over for notes outside the vocabulary), {} random orderings of the {} cells each, σ = σ_max; {:.0} s.\n\n",
            l.crops,
            l.crop_steps,
            l.crops_per_piece,
            l.crops_out_of_vocabulary,
            l.orderings,
            l.crop_steps * VOICES,
            l.seconds
        );
        md += "| NLL | nats |\n|---|---|\n";
        md += &format!("| note-wise (per cell) | {:.3} |\n", l.nats_per_cell);
        md += &format!(
            "| frame-wise (per 16th step, 4 voices) | {:.3} |\n",
            l.nats_per_step
        );
        md += &format!(
            "| per hold cell ({:.0}% of cells), ordering-averaged | {:.3} |\n",
            100.0 * l.hold_fraction,
            l.nats_per_hold_cell
        );
        md += &format!(
            "| per rest / onset cell, ordering-averaged | {:.3} |\n",
            l.nats_per_other_cell
        );
        md += &format!(
            "\nThis is Cantor's token NLL (each cell a rest, a hold or a pitch onset; a held note's continuation is predicted as a hold), not Coconet's NLL of the pitch sounding in each frame. {}.\n",
            l.coconet
        );
    }
    if let Some(d) = &report.deepbach {
        let s = &d.schedule;
        md += &format!(
            "\n## The DeepBach peer\n\n`{}` ({} parameters): parallel pseudo-Gibbs, {} cells of a voice redrawn at once, temperature {} × {} per iteration down to {}; the columns name the budget in updates per free cell (the reference: 62.5). Pseudo-likelihood of the split (each cell given every other cell; not a likelihood, so not comparable with the figure above): **{:.3} nats per cell** (S {:.3}, A {:.3}, T {:.3}, B {:.3}), top-1 accuracy {:.3}.\n",
            d.model,
            d.parameters,
            s.parallel,
            s.start_temperature,
            s.decay,
            s.final_temperature,
            d.pseudo_nll_per_cell,
            d.pseudo_nll_voices[0],
            d.pseudo_nll_voices[1],
            d.pseudo_nll_voices[2],
            d.pseudo_nll_voices[3],
            d.accuracy
        );
    }
    md
}

/// The chord classes on the beat (the commonest in Bach's music first, then
/// the others any system writes often) and the degrees of the phrase ends,
/// each system beside Bach.
fn chord_tables(t: &TaskReport, columns: &[System]) -> String {
    const ROWS: usize = 16;
    let names: Vec<String> = columns.iter().map(System::to_string).collect();
    let header = format!(
        "| {{}} | {} |\n|---|{}\n",
        names.join(" | "),
        "---|".repeat(columns.len())
    );
    let table = |title: &str, pick: &dyn Fn(&Summary) -> &BTreeMap<String, f64>| -> String {
        let mut order: Vec<(String, f64)> = Vec::new();
        for sys in columns {
            for (k, v) in t.systems.get(sys).map(pick).into_iter().flatten() {
                match order.iter_mut().find(|(n, _)| n == k) {
                    // Bach's share decides the order; others add a little.
                    Some(entry) => entry.1 += if *sys == System::Bach { *v } else { v * 1e-3 },
                    None => {
                        order.push((k.clone(), if *sys == System::Bach { *v } else { v * 1e-3 }))
                    }
                }
            }
        }
        if order.is_empty() {
            return String::new();
        }
        order.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut md = format!("\n{}", header.replacen("{}", title, 1));
        for (name, _) in order.iter().take(ROWS) {
            let cells: Vec<String> = columns
                .iter()
                .map(|sys| {
                    let v = t.systems.get(sys).map(pick).and_then(|m| m.get(name));
                    fmt(v.copied().unwrap_or(0.0))
                })
                .collect();
            md += &format!("| {name} | {} |\n", cells.join(" | "));
        }
        md
    };
    table("chord on the beat (share of full beats)", &|s| {
        &s.harmony.classes
    }) + &table("chord at a phrase end (share of fermatas)", &|s| {
        &s.harmony.fermata_degrees
    })
}

/// The learned judge's verdicts, each system's beside Bach against Bach.
fn judge_line(t: &TaskReport) -> String {
    if t.judge.is_empty() {
        return String::new();
    }
    let verdict = |v: &judge::Verdict| {
        format!(
            "AUC {:.3} ± {:.3} ({} / {} two-bar segments)",
            v.auc, v.auc_spread, v.segments[0], v.segments[1]
        )
    };
    let systems: Vec<String> = t
        .judge
        .iter()
        .map(|(s, v)| format!("{s} {}", verdict(v)))
        .collect();
    let control = t
        .judge_control
        .as_ref()
        .map_or("too few segments".to_string(), verdict);
    format!(
        "\nLearned judge (logistic regression on each two-bar segment's chords, bass degrees, root motion and voice motion, {}-fold cross-validated by piece; 0.5 = it cannot tell the system from Bach): {}; Bach against Bach {}.\n",
        judge::FOLDS,
        systems.join("; "),
        control
    )
}

fn initial(voice: Voice) -> &'static str {
    match voice {
        Voice::Soprano => "S",
        Voice::Alto => "A",
        Voice::Tenor => "T",
        Voice::Bass => "B",
    }
}

/// The bars for each task, checked for both samplers against
/// Bach's own rates on the same bars.
fn targets(task: Task, t: &TaskReport) -> String {
    let Some(bach) = t.systems.get(&System::Bach) else {
        return String::new();
    };
    let mut out = String::new();
    for (&system, s) in &t.systems {
        if matches!(system, System::Bach | System::Baseline) {
            continue;
        }
        let checks = task_targets(task, s, bach);
        let line: Vec<String> = checks
            .iter()
            .map(|(name, ok)| format!("{name}: {}", if *ok { "yes" } else { "**no**" }))
            .collect();
        out += &format!("\nTargets ({system} vs Bach): {}.\n", line.join("; "));
    }
    out
}

/// The checks of one task, by name.
pub fn task_targets(task: Task, s: &Summary, bach: &Summary) -> Vec<(String, bool)> {
    // At most `factor` × Bach's rate (with a floor, as Bach's may be 0).
    let at_most = |m: f64, b: f64, factor: f64| m <= factor * b.max(0.05);
    // Each voice Bach moves in (and the system writes), judged by `ok`.
    let voices = |ok: &dyn Fn(f64, f64) -> bool, pick: &dyn Fn(&Summary, Voice) -> Option<f64>| {
        Voice::ALL
            .iter()
            .all(|v| match (pick(s, *v), pick(bach, *v)) {
                (Some(m), Some(b)) => ok(m, b),
                (None, None) => true,
                _ => false,
            })
    };
    let npb = |x: &Summary, v: Voice| *x.notes_per_beat.get(v);
    let notes_at_least_80 = voices(&|m, b| m >= 0.8 * b, &npb);
    // The voice-leading bars harmonize and continue share.
    let parallels = (
        "parallels ≤ 2× Bach".to_string(),
        at_most(s.parallels_per_100_beats, bach.parallels_per_100_beats, 2.0),
    );
    let crossings = (
        "crossings ≤ 2×".to_string(),
        at_most(
            s.voice_crossings_per_100_beats,
            bach.voice_crossings_per_100_beats,
            2.0,
        ),
    );
    let mut checks: Vec<(String, bool)> = Vec::new();
    match task {
        Task::Harmonize => {
            let overlap = s.pitch_class_overlap.unwrap_or(0.0);
            checks.extend([
                parallels.clone(),
                crossings.clone(),
                (
                    "out-of-range ≤ 2×".into(),
                    at_most(
                        s.out_of_range_per_100_beats,
                        bach.out_of_range_per_100_beats,
                        2.0,
                    ),
                ),
                (
                    "chord beats ≥ 90% of Bach's".into(),
                    s.chord_beat_fraction >= 0.9 * bach.chord_beat_fraction,
                ),
                ("pitch-class overlap ≥ 0.90".into(), overlap >= 0.9),
                (
                    "notes / beat of A, T, B within ±15% of Bach's".into(),
                    voices(&|m, b| (m - b).abs() <= 0.15 * b, &npb),
                ),
                (
                    "interval overlap ≥ 0.85 each".into(),
                    voices(&|m, _| m >= 0.85, &|x, v| *x.interval_overlap.get(v)),
                ),
                (
                    "leaps > octave ≤ 1.5× Bach's".into(),
                    at_most(
                        s.wide_leaps_per_100_beats,
                        bach.wide_leaps_per_100_beats,
                        1.5,
                    ),
                ),
            ]);
        }
        Task::Continue => {
            let prompt = |x: &Summary| x.prompt_pitch_class_overlap.unwrap_or(0.0);
            checks.extend([
                (
                    "notes / beat of every voice ≥ 80% of Bach's".into(),
                    notes_at_least_80,
                ),
                (
                    "pitch-class overlap with the prompt ≥ 90% of Bach's".into(),
                    prompt(s) >= 0.9 * prompt(bach),
                ),
                parallels.clone(),
                crossings.clone(),
            ]);
        }
        Task::Infill => checks.push((
            "notes / beat of every voice ≥ 80% of Bach's".into(),
            notes_at_least_80,
        )),
    }
    checks
}
