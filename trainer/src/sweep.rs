//! `trainer eval --character`: the character pad swept over its axes.
//!
//! Each axis is set to five positions (−1, −½, 0, ½, 1) with the other at
//! the user's value (0 unless `--activity`/`--tension` say otherwise); at
//! each position every task of the evaluation is solved as `trainer eval`
//! solves it ([`Evaluation::run`]). Reported per task, sampler and
//! axis, beside Bach on the same bars: the statistic the axis steers
//! (activity: notes per beat, the composed voices' mean; tension: the share
//! of four-voice beats that are not a plain triad), the other axis's
//! statistic, and the voice-leading columns; then whether the axis moves
//! its statistic monotonically (Spearman over the five positions' split
//! means), how far either side of the centre (as a share of Bach's value)
//! and how much it moves the other statistic.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use cantor_engine::metrics::Summary;
use cantor_engine::{Character, SamplerSettings, Score, ScoreModel};
use serde::Serialize;

use crate::eval::{solve, task_problem, Evaluation, System, Task, TaskReport};
use crate::plots::{self, Rgb};

/// The five positions each axis is set to.
pub const POSITIONS: [f32; 5] = [-1.0, -0.5, 0.0, 0.5, 1.0];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    Activity,
    Tension,
}

impl Axis {
    fn set(self, mut c: Character, value: f32) -> Character {
        match self {
            Axis::Activity => c.activity = value,
            Axis::Tension => c.tension = value,
        }
        c
    }

    /// The statistic this axis steers.
    pub fn statistic(self, s: &Summary) -> f64 {
        match self {
            Axis::Activity => composed_notes_per_beat(s),
            Axis::Tension => s.tense_beat_fraction,
        }
    }

    fn other(self) -> Axis {
        match self {
            Axis::Activity => Axis::Tension,
            Axis::Tension => Axis::Activity,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Axis::Activity => "notes per beat (composed voices' mean)",
            Axis::Tension => "share of beats not a plain triad",
        }
    }
}

/// Mean notes per beat over the voices that had free cells.
pub fn composed_notes_per_beat(s: &Summary) -> f64 {
    let n = &s.notes_per_beat;
    let values: Vec<f64> = [n.soprano, n.alto, n.tenor, n.bass]
        .into_iter()
        .flatten()
        .collect();
    match values.is_empty() {
        true => 0.0,
        false => values.iter().sum::<f64>() / values.len() as f64,
    }
}

/// One axis of one task and sampler, over the five positions.
#[derive(Serialize)]
pub struct AxisSweep {
    pub task: Task,
    pub system: System,
    pub axis: Axis,
    pub positions: Vec<f32>,
    /// The statistic the axis steers, per position; and Bach's.
    pub steered: Vec<f64>,
    pub bach_steered: f64,
    /// The other axis's statistic, per position; and Bach's.
    pub other: Vec<f64>,
    pub bach_other: f64,
    pub parallels_per_100_beats: Vec<f64>,
    pub voice_crossings_per_100_beats: Vec<f64>,
    pub out_of_range_per_100_beats: Vec<f64>,
    pub bach_voice_leading: [f64; 3],
    /// Spearman's rank correlation of position and steered statistic.
    pub spearman: f64,
    /// How far the steered statistic goes below and above the centre's, as
    /// shares of Bach's value (None where Bach's is 0).
    pub span_below: Option<f64>,
    pub span_above: Option<f64>,
    /// (max − min) / centre of the other axis's statistic (None where the
    /// centre's is 0).
    pub other_move: Option<f64>,
}

#[derive(Serialize)]
pub struct CharacterSweep {
    /// The pad's position the sweep starts from (each axis swept with the
    /// other held here).
    pub base: Character,
    pub network_evals: usize,
    pub seed: u64,
    /// Sampler runs per piece, pooled (seeds `seed`, `seed + 1`, …).
    pub seeds: u64,
    /// Every position's full task reports.
    pub points: Vec<(Character, BTreeMap<Task, TaskReport>)>,
    pub axes: Vec<AxisSweep>,
}

pub fn run(evaluation: &Evaluation, settings: &SamplerSettings) -> Result<CharacterSweep> {
    let (tasks, systems) = (evaluation.tasks, evaluation.systems);
    let base = settings.character;
    let mut points: Vec<(Character, BTreeMap<Task, TaskReport>)> = Vec::new();
    for axis in [Axis::Activity, Axis::Tension] {
        for value in POSITIONS {
            let character = axis.set(base, value);
            if points.iter().any(|(c, _)| *c == character) {
                continue;
            }
            eprintln!(
                "character: activity {} tension {}",
                character.activity, character.tension
            );
            let s = SamplerSettings {
                character,
                ..settings.clone()
            };
            points.push((character, evaluation.run(&s)?));
        }
    }
    let mut axes = Vec::new();
    for axis in [Axis::Activity, Axis::Tension] {
        let at: Vec<&BTreeMap<Task, TaskReport>> = POSITIONS
            .iter()
            .map(|v| {
                let c = axis.set(base, *v);
                &points.iter().find(|(p, _)| *p == c).expect("swept").1
            })
            .collect();
        for task in tasks {
            let Some(bach) = at[0].get(task).and_then(|t| t.systems.get(&System::Bach)) else {
                continue;
            };
            for system in systems.iter().filter(|s| **s != System::Bach) {
                let rows: Option<Vec<&Summary>> = at
                    .iter()
                    .map(|r| r.get(task).and_then(|t| t.systems.get(system)))
                    .collect();
                let Some(rows) = rows else { continue };
                axes.push(axis_sweep(*task, *system, axis, &rows, bach));
            }
        }
    }
    Ok(CharacterSweep {
        base,
        network_evals: settings.network_evals(),
        seed: settings.seed,
        seeds: evaluation.seeds,
        points,
        axes,
    })
}

/// Bars of the pad's piano rolls ([`write_corners`]).
pub const CORNER_BARS: usize = 4;

/// The pad's piano rolls' positions, top to bottom under Bach's, and
/// their label strips: calm-plain blue, the centre Langevin's orange,
/// busy-tense red.
pub const CORNERS: [(Character, Rgb); 3] = [
    (
        Character {
            activity: -1.0,
            tension: -1.0,
        },
        [70, 120, 255],
    ),
    (Character::NEUTRAL, plots::LANGEVIN),
    (
        Character {
            activity: 1.0,
            tension: 1.0,
        },
        [235, 60, 60],
    ),
];

/// `trainer eval --character --plots DIR`: the first [`CORNER_BARS`] bars
/// of the first two pieces harmonized by the Langevin sampler at the pad's
/// opposite corners and its centre ([`CORNERS`]), under Bach's, as
/// `DIR/character-piece-N.png` (three times as wide as the other rolls:
/// they are short).
pub fn write_corners(
    model: &ScoreModel,
    pieces: &[Score],
    settings: &SamplerSettings,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    for (index, piece) in pieces.iter().enumerate().take(2) {
        let Some((problem, reference)) = task_problem(Task::Harmonize, piece, index)? else {
            continue;
        };
        let bars = reference.bars();
        let end = bars
            .get(CORNER_BARS - 1)
            .or(bars.last())
            .map_or(reference.len(), |b| b.end);
        let mask = problem.mask.slice(0..end);
        let mut scores = vec![(reference.slice(0..end), plots::BACH)];
        for (character, label) in CORNERS {
            let s = SamplerSettings {
                character,
                ..settings.clone()
            };
            let score = solve(System::Langevin, model, None, &problem, &reference, &s)?;
            scores.push((score.slice(0..end), label));
        }
        let panels: Vec<plots::Panel> = scores
            .iter()
            .map(|(score, label)| plots::Panel {
                score,
                label: *label,
                free: Some(&mask),
            })
            .collect();
        let path = dir.join(format!("character-piece-{index}.png"));
        plots::write_png(&plots::piano_roll(&panels).scaled(3, 1), &path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn axis_sweep(
    task: Task,
    system: System,
    axis: Axis,
    rows: &[&Summary],
    bach: &Summary,
) -> AxisSweep {
    let steered: Vec<f64> = rows.iter().map(|s| axis.statistic(s)).collect();
    let other: Vec<f64> = rows.iter().map(|s| axis.other().statistic(s)).collect();
    let centre = steered[POSITIONS.len() / 2];
    let bach_steered = axis.statistic(bach);
    let low = steered.iter().copied().fold(f64::INFINITY, f64::min);
    let high = steered.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let other_centre = other[POSITIONS.len() / 2];
    let other_low = other.iter().copied().fold(f64::INFINITY, f64::min);
    let other_high = other.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let positions: Vec<f64> = POSITIONS.iter().map(|p| *p as f64).collect();
    AxisSweep {
        task,
        system,
        axis,
        positions: POSITIONS.to_vec(),
        spearman: spearman(&positions, &steered),
        span_below: (bach_steered > 0.0).then(|| (centre - low) / bach_steered),
        span_above: (bach_steered > 0.0).then(|| (high - centre) / bach_steered),
        other_move: (other_centre > 0.0).then(|| (other_high - other_low) / other_centre),
        steered,
        bach_steered,
        other,
        bach_other: axis.other().statistic(bach),
        parallels_per_100_beats: rows.iter().map(|s| s.parallels_per_100_beats).collect(),
        voice_crossings_per_100_beats: rows
            .iter()
            .map(|s| s.voice_crossings_per_100_beats)
            .collect(),
        out_of_range_per_100_beats: rows.iter().map(|s| s.out_of_range_per_100_beats).collect(),
        bach_voice_leading: [
            bach.parallels_per_100_beats,
            bach.voice_crossings_per_100_beats,
            bach.out_of_range_per_100_beats,
        ],
    }
}

/// Ranks (1-based, ties averaged).
fn ranks(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|v| {
            let below = values.iter().filter(|w| *w < v).count() as f64;
            let equal = values.iter().filter(|w| *w == v).count() as f64;
            below + (equal + 1.0) / 2.0
        })
        .collect()
}

/// Spearman's rank correlation (0 when either side is constant).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    match va > 0.0 && vb > 0.0 {
        true => cov / (va * vb).sqrt(),
        false => 0.0,
    }
}

/// The sweep as Markdown: one table per task, sampler and axis.
pub fn markdown(sweep: &CharacterSweep, model: &std::path::Path, split: &str) -> String {
    let mut md = format!(
        "# Character sweep of `{}`\n\nSplit **{split}**, {} network evaluations per piece, {}; each axis at {:?} with the other at {} (activity) / {} (tension).\n",
        model.display(),
        sweep.network_evals,
        crate::eval::seeds_text(sweep.seed, sweep.seeds),
        POSITIONS,
        sweep.base.activity,
        sweep.base.tension,
    );
    for a in &sweep.axes {
        md += &format!(
            "\n## {:?}, {}: {:?}\n\n| position | {} | {} | parallels | crossings | out of range (per 100 beats) |\n|---|---|---|---|---|---|\n",
            a.task,
            a.system,
            a.axis,
            a.axis.describe(),
            a.axis.other().describe(),
        );
        for i in 0..a.positions.len() {
            md += &format!(
                "| {} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} |\n",
                a.positions[i],
                a.steered[i],
                a.other[i],
                a.parallels_per_100_beats[i],
                a.voice_crossings_per_100_beats[i],
                a.out_of_range_per_100_beats[i],
            );
        }
        md += &format!(
            "| Bach | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} |\n\n",
            a.bach_steered,
            a.bach_other,
            a.bach_voice_leading[0],
            a.bach_voice_leading[1],
            a.bach_voice_leading[2],
        );
        let within = |values: &[f64], bach: f64| values.iter().all(|v| *v <= 2.0 * bach);
        md += &format!(
            "Spearman {:.2}; below / above the centre by {} / {} of Bach's value; the other statistic moves {}; voice leading within 2 × Bach at every position: parallels {}, crossings {}, out of range {}.\n",
            a.spearman,
            percent(a.span_below),
            percent(a.span_above),
            percent(a.other_move),
            yes(within(&a.parallels_per_100_beats, a.bach_voice_leading[0])),
            yes(within(&a.voice_crossings_per_100_beats, a.bach_voice_leading[1])),
            yes(within(&a.out_of_range_per_100_beats, a.bach_voice_leading[2])),
        );
    }
    md
}

fn percent(share: Option<f64>) -> String {
    share.map_or("—".into(), |s| format!("{:.0}%", 100.0 * s))
}

fn yes(ok: bool) -> &'static str {
    match ok {
        true => "yes",
        false => "no",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_reads_order_not_size() {
        let x = [-1.0, -0.5, 0.0, 0.5, 1.0];
        assert!((spearman(&x, &[0.1, 0.2, 0.3, 0.9, 5.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&x, &[5.0, 0.9, 0.3, 0.2, 0.1]) + 1.0).abs() < 1e-12);
        // One swap of neighbours: 1 − 6·2/(5·24) = 0.9.
        assert!((spearman(&x, &[0.1, 0.3, 0.2, 0.4, 0.5]) - 0.9).abs() < 1e-12);
        assert_eq!(spearman(&x, &[1.0; 5]), 0.0);
    }
}
