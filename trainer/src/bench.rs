//! `trainer bench`: sampler speed against quality, so defaults are chosen
//! from a measured curve. Each configuration harmonizes the same 4-bar
//! windows (bars 2–5 of each piece, soprano given); the table gives the
//! median time per harmonization and the metrics against Bach on the same
//! windows.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use cantor_engine::metrics::{Summary, Tally};
use cantor_engine::{
    harmonize_problem, KeyChoice, SamplerKind, SamplerSettings, Score, ScoreModel, Target, Voice,
};
use serde::Serialize;

use crate::data::Corpus;
use crate::eval::{solve, tally, write_report, System};

pub struct BenchOptions {
    pub model: PathBuf,
    pub data: PathBuf,
    pub split: String,
    pub pieces: usize,
    pub seed: u64,
    pub report: Option<PathBuf>,
    pub device: String,
    pub split_seed: u64,
    pub temperature: f32,
    pub rules: f32,
}

#[derive(Serialize)]
pub struct BenchRow {
    pub sampler: String,
    pub levels: usize,
    pub steps_per_level: usize,
    pub step_size: f32,
    pub network_evals: usize,
    pub median_ms: f64,
    pub evals_per_second: f64,
    pub summary: Summary,
}

/// The configurations measured: consistent annealed Langevin at growing
/// numbers of levels, classic annealed Langevin, and Gibbs at matching cost.
fn configurations(temperature: f32, rules: f32, target: Target) -> Vec<SamplerSettings> {
    let s = |kind, levels, steps_per_level, step_size| SamplerSettings {
        kind,
        levels,
        steps_per_level,
        step_size,
        temperature,
        target,
        rules,
        line_weight: 0.0,
        key_weight: 0.0,
        degree_weight: 0.0,
        chord_weight: 0.0,
        settle_temperature: None,
        character: cantor_engine::Character::NEUTRAL,
        seed: 0,
    };
    let mut out = Vec::new();
    for levels in [5, 10, 20, 40, 80] {
        out.push(s(SamplerKind::Langevin, levels, 1, 0.5));
    }
    for eta in [0.2, 0.8] {
        out.push(s(SamplerKind::Langevin, 20, 1, eta));
    }
    out.push(s(SamplerKind::Langevin, 10, 3, 0.5));
    out.push(s(SamplerKind::Langevin, 20, 3, 0.5));
    for levels in [10, 20, 40, 80] {
        out.push(s(SamplerKind::Gibbs, levels, 1, 0.5));
    }
    out
}

fn windows(pieces: &[Score], count: usize) -> Vec<Score> {
    pieces
        .iter()
        .filter(|p| p.len() >= 80)
        .take(count)
        .map(|p| p.slice(16..80))
        .collect()
}

pub fn run(options: BenchOptions) -> Result<Vec<BenchRow>> {
    let device = cantor_engine::model::select_device(&options.device)?;
    let model = ScoreModel::load(&options.model, &device)?;
    let corpus = Corpus::load(&options.data, options.split_seed)?;
    corpus.announce();
    let windows = windows(corpus.split(&options.split)?, options.pieces);
    anyhow::ensure!(
        !windows.is_empty(),
        "no piece of the {} split has 5 bars",
        options.split
    );
    let problems = windows
        .iter()
        .map(|w| harmonize_problem(w, Voice::Soprano, KeyChoice::Free))
        .collect::<Result<Vec<_>, _>>()?;

    let mut bach = Tally::default();
    for (p, w) in problems.iter().zip(&windows) {
        bach.add(&tally(w, p, None));
    }
    let mut rows = vec![BenchRow {
        sampler: "bach".into(),
        levels: 0,
        steps_per_level: 0,
        step_size: 0.0,
        network_evals: 0,
        median_ms: 0.0,
        evals_per_second: 0.0,
        summary: bach.summary(Some(&bach)),
    }];
    for mut settings in configurations(
        options.temperature,
        options.rules,
        model.card.sampling.target,
    ) {
        settings.seed = options.seed;
        let system = if settings.kind == SamplerKind::Gibbs {
            System::Gibbs
        } else {
            System::Langevin
        };
        let mut times = Vec::new();
        let mut total = Tally::default();
        for (problem, window) in problems.iter().zip(&windows) {
            let started = Instant::now();
            let out = solve(system, &model, None, problem, window, &settings)?;
            times.push(started.elapsed().as_secs_f64());
            total.add(&tally(&out, problem, Some(window)));
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let row = BenchRow {
            sampler: format!("{:?}", settings.kind).to_lowercase(),
            levels: settings.levels,
            steps_per_level: settings.steps_per_level,
            step_size: settings.step_size,
            network_evals: settings.network_evals(),
            median_ms: median * 1e3,
            evals_per_second: settings.network_evals() as f64 / median,
            summary: total.summary(Some(&bach)),
        };
        eprintln!(
            "{} L={} K={} η={}: {:.1} ms, parallels {:.2}, chords {:.3}, match {:.3}",
            row.sampler,
            row.levels,
            row.steps_per_level,
            row.step_size,
            row.median_ms,
            row.summary.parallels_per_100_beats,
            row.summary.chord_beat_fraction,
            row.summary.exact_match.unwrap_or(0.0)
        );
        rows.push(row);
    }
    let md = markdown(&rows, &options, windows.len());
    println!("{md}");
    if let Some(prefix) = &options.report {
        write_report(prefix, &serde_json::to_string_pretty(&rows)?, &md)?;
    }
    Ok(rows)
}

fn markdown(rows: &[BenchRow], options: &BenchOptions, windows: usize) -> String {
    let mut md = format!(
        "# Sampler speed and quality\n\nModel `{}`, {} split of `{}`: harmonizing bars 2–5 (64 steps, soprano given) of {windows} pieces, temperature {}, rules weight {}, on this machine's {}.\n\n| sampler | levels × steps | step size | network evals | median ms | evals/s | parallels /100 beats | crossings /100 beats | out-of-range /100 beats | triad/7th beats | pc overlap | exact match |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        options.model.display(),
        options.split,
        options.data.display(),
        options.temperature,
        options.rules,
        options.device,
    );
    for r in rows {
        let s = &r.summary;
        md +=
            &format!(
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {} |\n",
            r.sampler,
            if r.levels > 0 { format!("{} × {}", r.levels, r.steps_per_level) } else { "—".into() },
            if r.levels > 0 { format!("{}", r.step_size) } else { "—".into() },
            r.network_evals,
            r.median_ms,
            r.evals_per_second,
            s.parallels_per_100_beats,
            s.voice_crossings_per_100_beats,
            s.out_of_range_per_100_beats,
            s.chord_beat_fraction,
            s.pitch_class_overlap.unwrap_or(0.0),
            s.exact_match.map(|m| format!("{m:.3}")).unwrap_or_else(|| "—".into()),
        );
    }
    md
}
