//! `trainer eval`: the model against Bach on held-out pieces.
//!
//! For each task — harmonize (soprano given), continue (first half given),
//! infill (two random bars of all voices masked) — every piece of the split
//! is solved by the Langevin sampler, by the Gibbs sampler at the same
//! number of network evaluations, and by the rule-based baseline; the
//! engine's metrics are taken over the generated stretches and over Bach's
//! own music in the same places. Also reported: the denoising loss per σ.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use cantor_engine::baseline::baseline;
use cantor_engine::metrics::{Summary, Tally};
use cantor_engine::{
    compose, continuation_problem, harmonize_problem, infill_problem, KeyChoice, MaskRegion,
    Problem, SamplerKind, SamplerSettings, Score, ScoreModel, Unobserved, Voice,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::Corpus;
use crate::train::BatchMaker;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Harmonize,
    Continue,
    Infill,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Bach,
    Langevin,
    Gibbs,
    Baseline,
}

pub const SYSTEMS: [System; 4] = [
    System::Bach,
    System::Langevin,
    System::Gibbs,
    System::Baseline,
];

/// The problem a task poses on a piece; `index` seeds the infill bars.
pub fn task_problem(task: Task, piece: &Score, index: usize) -> Result<(Problem, Score)> {
    Ok(match task {
        Task::Harmonize => (
            harmonize_problem(piece, Voice::Soprano, KeyChoice::Free)?,
            piece.clone(),
        ),
        Task::Continue => {
            let bar = piece.time_signature_at(0).steps_per_bar();
            let bars = piece.len().div_ceil(bar);
            let given = (bars / 2).max(1);
            let phrase = piece.slice(0..given * bar);
            let problem = continuation_problem(&phrase, bars - given, KeyChoice::Free)?;
            let reference = piece
                .extended(problem.score.len())
                .slice(0..problem.score.len());
            (problem, reference)
        }
        Task::Infill => {
            let bars = piece.bars().len();
            let mut rng = ChaCha8Rng::seed_from_u64(index as u64);
            let first = rng.random_range(1..=bars);
            let mut second = rng.random_range(1..=bars);
            if second == first {
                second = first % bars + 1;
            }
            let regions = [first, second].map(|b| MaskRegion {
                bars: Some((b, b)),
                voices: Vec::new(),
            });
            (
                infill_problem(piece, &regions, KeyChoice::Free)?,
                piece.clone(),
            )
        }
    })
}

/// Metrics of `output` over the stretches where `problem` had free cells.
pub fn tally(output: &Score, problem: &Problem, reference: Option<&Score>) -> Tally {
    let mut total = Tally::default();
    for span in problem.mask.free_spans() {
        let region = problem.mask.slice(span.clone());
        let r = reference.map(|r| r.slice(span.clone()));
        total.add(&Tally::of(&output.slice(span), Some(&region), r.as_ref()));
    }
    total
}

/// Output of one system on one problem.
pub fn solve(
    system: System,
    model: &ScoreModel,
    problem: &Problem,
    reference: &Score,
    settings: &SamplerSettings,
) -> Result<Score> {
    Ok(match system {
        System::Bach => reference.clone(),
        System::Baseline => baseline(problem),
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
    pub systems: BTreeMap<System, Summary>,
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
}

#[derive(Serialize)]
pub struct SettingsRecord {
    pub levels: usize,
    pub steps_per_level: usize,
    pub step_size: f32,
    pub temperature: f32,
    /// Weight of the voice-leading rules (0: the network alone).
    pub rules: f32,
    pub network_evals: usize,
    pub seed: u64,
}

pub struct EvalOptions {
    pub model: PathBuf,
    pub data: PathBuf,
    pub split: String,
    pub tasks: Vec<Task>,
    pub limit: Option<usize>,
    pub settings: SamplerSettings,
    pub report: Option<PathBuf>,
    pub device: String,
    pub split_seed: u64,
}

pub fn run(options: EvalOptions) -> Result<EvalReport> {
    let device = cantor_engine::model::select_device(&options.device)?;
    let model = ScoreModel::load(&options.model, &device)?;
    let corpus = Corpus::load(&options.data, options.split_seed)?;
    corpus.announce();
    let pieces = corpus.split(&options.split)?;
    let pieces = &pieces[..options.limit.unwrap_or(pieces.len()).min(pieces.len())];
    anyhow::ensure!(
        !pieces.is_empty(),
        "the {} split has no pieces",
        options.split
    );
    let s = &options.settings;

    let mut tasks = BTreeMap::new();
    for task in &options.tasks {
        let mut tallies: BTreeMap<System, Tally> = BTreeMap::new();
        let mut seconds: BTreeMap<System, f64> = BTreeMap::new();
        for (index, piece) in pieces.iter().enumerate() {
            let (problem, reference) = task_problem(*task, piece, index)?;
            for system in SYSTEMS {
                let started = Instant::now();
                let out = solve(system, &model, &problem, &reference, s)
                    .with_context(|| format!("{task:?} piece {index} with {system:?}"))?;
                *seconds.entry(system).or_default() += started.elapsed().as_secs_f64();
                let compare = (system != System::Bach).then_some(&reference);
                tallies
                    .entry(system)
                    .or_default()
                    .add(&tally(&out, &problem, compare));
            }
            eprint!("\r{task:?}: {}/{} pieces", index + 1, pieces.len());
        }
        eprintln!();
        let bach = tallies[&System::Bach].clone();
        let systems = tallies
            .iter()
            .map(|(k, t)| (*k, t.summary(Some(&bach))))
            .collect();
        let seconds_per_piece = seconds
            .into_iter()
            .filter(|(k, _)| matches!(k, System::Langevin | System::Gibbs))
            .map(|(k, v)| (k, v / pieces.len() as f64))
            .collect();
        tasks.insert(
            *task,
            TaskReport {
                pieces: pieces.len(),
                systems,
                seconds_per_piece,
            },
        );
    }
    let denoising = denoising_levels(&model, pieces, &device)?;
    let report = EvalReport {
        model: options.model.display().to_string(),
        data: corpus.source.clone(),
        split: options.split.clone(),
        settings: SettingsRecord {
            levels: s.levels,
            steps_per_level: s.steps_per_level,
            step_size: s.step_size,
            temperature: s.temperature,
            rules: s.rules,
            network_evals: s.network_evals(),
            seed: s.seed,
        },
        tasks,
        denoising,
    };
    let markdown = markdown(&report);
    println!("{markdown}");
    if let Some(prefix) = &options.report {
        write_report(prefix, &serde_json::to_string_pretty(&report)?, &markdown)?;
    }
    Ok(report)
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

fn fmt(v: f64) -> String {
    format!("{v:.3}")
}

/// The report as Markdown tables.
pub fn markdown(report: &EvalReport) -> String {
    let mut md = format!(
        "# Evaluation of `{}`\n\nData: `{}`, split **{}**. Samplers: {} levels × {} step(s) (step size {}, temperature {}, voice-leading rules weight {}), {} network evaluations per piece for both Langevin and Gibbs; seed {}.\n",
        report.model,
        report.data,
        report.split,
        report.settings.levels,
        report.settings.steps_per_level,
        report.settings.step_size,
        report.settings.temperature,
        report.settings.rules,
        report.settings.network_evals,
        report.settings.seed
    );
    for (task, t) in &report.tasks {
        md += &format!("\n## {task:?} ({} pieces)\n\n| metric | Bach | Langevin | Gibbs | Baseline |\n|---|---|---|---|---|\n", t.pieces);
        type Pick = fn(&Summary) -> Option<f64>;
        let rows: [(&str, Pick); 9] = [
            ("parallel fifths + octaves / 100 beats", |s| {
                Some(s.parallels_per_100_beats)
            }),
            ("voice crossings / 100 beats", |s| {
                Some(s.voice_crossings_per_100_beats)
            }),
            ("spacing > octave / 100 beats", |s| {
                Some(s.wide_spacings_per_100_beats)
            }),
            ("out-of-range notes / 100 beats", |s| {
                Some(s.out_of_range_per_100_beats)
            }),
            ("triad / seventh beats", |s| Some(s.chord_beat_fraction)),
            ("pitch-class overlap with Bach", |s| s.pitch_class_overlap),
            ("exact match with Bach", |s| s.exact_match),
            ("beats generated", |s| Some(s.beats)),
            ("parallel fifths / 100 beats", |s| {
                Some(s.parallel_fifths_per_100_beats)
            }),
        ];
        for (name, pick) in rows {
            let cells: Vec<String> = SYSTEMS
                .iter()
                .map(|sys| match (sys, t.systems.get(sys).and_then(pick)) {
                    (System::Bach, _) if name.starts_with("exact") => "—".into(),
                    (_, Some(v)) => fmt(v),
                    (_, None) => "—".into(),
                })
                .collect();
            md += &format!("| {name} | {} |\n", cells.join(" | "));
        }
        let secs: Vec<String> = t
            .seconds_per_piece
            .iter()
            .map(|(k, v)| format!("{k:?} {v:.2} s"))
            .collect();
        md += &format!("\nSampling time per piece: {}.\n", secs.join(", "));
        if *task == Task::Harmonize {
            md += &targets(t);
        }
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
    md
}

/// The bars for harmonization, checked against Bach's own rates.
fn targets(t: &TaskReport) -> String {
    let (Some(bach), Some(lang)) = (
        t.systems.get(&System::Bach),
        t.systems.get(&System::Langevin),
    ) else {
        return String::new();
    };
    let within = |m: f64, b: f64| m <= 2.0 * b.max(0.05);
    let check = |ok: bool| if ok { "yes" } else { "**no**" };
    let overlap = lang.pitch_class_overlap.unwrap_or(0.0);
    format!(
        "\nTargets (Langevin vs Bach): parallels ≤ 2× Bach: {}; crossings ≤ 2×: {}; out-of-range ≤ 2×: {}; chord beats ≥ 90% of Bach's: {}; pitch-class overlap ≥ 0.90: {}.\n",
        check(within(lang.parallels_per_100_beats, bach.parallels_per_100_beats)),
        check(within(lang.voice_crossings_per_100_beats, bach.voice_crossings_per_100_beats)),
        check(within(lang.out_of_range_per_100_beats, bach.out_of_range_per_100_beats)),
        check(lang.chord_beat_fraction >= 0.9 * bach.chord_beat_fraction),
        check(overlap >= 0.9),
    )
}
