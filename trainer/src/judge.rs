//! The learned judge: a classifier two-sample test between 2-bar segments of
//! generated chorales and of Bach's.
//!
//! Each segment becomes a fixed vector of harmony and motion features
//! ([`segment_features`]); an L2-regularised logistic regression learns to
//! tell the two sides apart, and its cross-validated ROC AUC is the verdict:
//! 0.5 when nothing in the features separates them, 1.0 when they are always
//! told apart. The engine's metrics compare one statistic at a time; the
//! judge weighs them jointly, and since neither training nor sampling
//! optimises it, a low AUC is evidence of style rather than a target met.
//!
//! Folds are grouped by piece: every segment of a piece (on either side)
//! sits in one fold, so the classifier cannot score well by recognising a
//! piece it saw in training instead of recognising a style. [`control`]
//! runs the same test Bach against Bach; its AUC is what "indistinguishable"
//! looks like at this sample size and should be read beside the verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use cantor_engine::grid::{Score, STEPS_PER_QUARTER, VOICES};
use cantor_engine::{Key, Scale};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Steps in one segment: two bars of 4/4.
pub const SEGMENT_STEPS: usize = 8 * STEPS_PER_QUARTER;
/// Shortest stretch that still makes a (short) segment.
pub const MIN_SEGMENT_STEPS: usize = 4 * STEPS_PER_QUARTER;
/// Cross-validation folds.
pub const FOLDS: usize = 5;
/// Fewest segments a side needs for a verdict.
pub const MIN_SEGMENTS: usize = 10;

/// Sonority classes of a four-voice beat, the pitch-class set read up from
/// the bass (indices into the first block of the features).
pub const SONORITIES: [&str; 24] = [
    "major 5/3",
    "major 6/3",
    "major 6/4",
    "minor 5/3",
    "minor 6/3",
    "minor 6/4",
    "diminished 5/3",
    "diminished 6/3",
    "diminished 6/4",
    "augmented",
    "dominant 7th root",
    "dominant 7th 6/5",
    "dominant 7th 4/3",
    "dominant 7th 4/2",
    "minor 7th",
    "half-diminished 7th",
    "diminished 7th",
    "major 7th",
    "bare fifth",
    "unison/octaves",
    "other dyad",
    "suspended (sus4/sus2)",
    "other three-note",
    "other four-note",
];

// Feature layout: harmony on the beats (steps where `step % 4 == 0`), then
// how the voices move, then the pitch classes.

/// `SONORITY..+24`: share of fully voiced beats in each [`SONORITIES`] class.
pub const SONORITY: usize = 0;
/// Share of beats on which all four voices sound.
pub const FULL_BEATS: usize = SONORITY + SONORITIES.len();
/// `BASS_DEGREE..+12`: the bass's pitch class above the tonic, as shares of
/// the beats on which the bass sounds.
pub const BASS_DEGREE: usize = FULL_BEATS + 1;
/// `ROOT_MOTION..+12`: root interval (up, mod 12; 0 = same root) between
/// consecutive beats whose chords both have a root, as shares.
pub const ROOT_MOTION: usize = BASS_DEGREE + 12;
/// `NOTES_PER_BEAT..+4`, soprano first: notes (the sounding pitch changes to
/// a pitch) per beat.
pub const NOTES_PER_BEAT: usize = ROOT_MOTION + 12;
/// `STEP_SHARE..+4`: share of each voice's melodic intervals of 1–2
/// semitones.
pub const STEP_SHARE: usize = NOTES_PER_BEAT + VOICES;
/// `LEAP_SHARE..+4`: share of each voice's melodic intervals of 3 semitones
/// or more.
pub const LEAP_SHARE: usize = STEP_SHARE + VOICES;
/// `MEAN_INTERVAL..+4`: each voice's mean absolute melodic interval in
/// semitones.
pub const MEAN_INTERVAL: usize = LEAP_SHARE + VOICES;
/// `PITCH_CLASS..+12`: pitch classes above the tonic, all voices, weighted
/// by duration, as shares.
pub const PITCH_CLASS: usize = MEAN_INTERVAL + VOICES;
/// Length of every feature vector.
pub const FEATURES: usize = PITCH_CLASS + 12;

/// One 2-bar stretch of music to judge, with the piece it came from (segments
/// of one piece never sit on both sides of a fold).
#[derive(Clone, Debug)]
pub struct Segment {
    pub piece: usize,
    pub features: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// ROC AUC of the pooled out-of-fold scores (0.5: indistinguishable).
    pub auc: f64,
    /// Standard deviation of the AUC over folds (those whose test part holds
    /// both sides).
    pub auc_spread: f64,
    /// Segments on each side.
    pub segments: [usize; 2],
    pub folds: usize,
}

/// Chord shapes as pitch classes above the bass, with their sonority class
/// and the root's distance above the bass. Incomplete sevenths (no fifth)
/// count with their chord, as Bach writes them often.
const SHAPES: &[(&[u8], usize, Option<u8>)] = &[
    (&[0, 4, 7], 0, Some(0)),
    (&[0, 3, 8], 1, Some(8)),
    (&[0, 5, 9], 2, Some(5)),
    (&[0, 3, 7], 3, Some(0)),
    (&[0, 4, 9], 4, Some(9)),
    (&[0, 5, 8], 5, Some(5)),
    (&[0, 3, 6], 6, Some(0)),
    (&[0, 3, 9], 7, Some(9)),
    (&[0, 6, 9], 8, Some(6)),
    // Symmetric: the bass stands for the root.
    (&[0, 4, 8], 9, Some(0)),
    (&[0, 4, 7, 10], 10, Some(0)),
    (&[0, 4, 10], 10, Some(0)),
    (&[0, 3, 6, 8], 11, Some(8)),
    (&[0, 6, 8], 11, Some(8)),
    (&[0, 3, 5, 9], 12, Some(5)),
    (&[0, 2, 6, 9], 13, Some(2)),
    (&[0, 2, 6], 13, Some(2)),
    (&[0, 3, 7, 10], 14, Some(0)),
    (&[0, 3, 10], 14, Some(0)),
    (&[0, 4, 7, 9], 14, Some(9)),
    (&[0, 3, 5, 8], 14, Some(5)),
    (&[0, 2, 5, 9], 14, Some(2)),
    (&[0, 3, 6, 10], 15, Some(0)),
    (&[0, 3, 7, 9], 15, Some(9)),
    (&[0, 4, 6, 9], 15, Some(6)),
    (&[0, 2, 5, 8], 15, Some(2)),
    // Symmetric: the bass stands for the root.
    (&[0, 3, 6, 9], 16, Some(0)),
    (&[0, 4, 7, 11], 17, Some(0)),
    (&[0, 4, 11], 17, Some(0)),
    (&[0, 3, 7, 8], 17, Some(8)),
    (&[0, 4, 5, 9], 17, Some(5)),
    (&[0, 1, 5, 8], 17, Some(1)),
    (&[0, 7], 18, Some(0)),
    (&[0, 5], 18, Some(5)),
    (&[0], 19, Some(0)),
    // Thirds and sixths: a triad missing its fifth, root as the third implies.
    (&[0, 4], 20, Some(0)),
    (&[0, 3], 20, Some(0)),
    (&[0, 8], 20, Some(8)),
    (&[0, 9], 20, Some(9)),
    (&[0, 5, 7], 21, Some(0)),
    (&[0, 2, 7], 21, Some(0)),
];
const OTHER_DYAD: usize = 20;
const OTHER_THREE: usize = 22;
const OTHER_FOUR: usize = 23;

/// Sonority class and root (above the bass) of a set of pitch classes above
/// the bass, as a 12-bit mask (bit 0, the bass, always set).
fn classify(mask: u16) -> (usize, Option<u8>) {
    for (shape, class, root) in SHAPES {
        let shape_mask = shape.iter().fold(0u16, |m, pc| m | 1 << pc);
        if shape_mask == mask {
            return (*class, *root);
        }
    }
    match mask.count_ones() {
        0..=2 => (OTHER_DYAD, None),
        3 => (OTHER_THREE, None),
        _ => (OTHER_FOUR, None),
    }
}

/// Features of the music in `score` over `range` (steps), in `key` (`None`:
/// estimated from the segment, C major when it has no notes). Always
/// [`FEATURES`] long; see the layout constants above. An empty range gives
/// zeros.
pub fn segment_features(score: &Score, range: Range<usize>, key: Option<Key>) -> Vec<f64> {
    let mut f = vec![0.0; FEATURES];
    let end = range.end.min(score.len());
    let start = range.start.min(end);
    if start == end {
        return f;
    }
    let key = key
        .or_else(|| Key::estimate(&score.slice(start..end)))
        .unwrap_or(Key {
            tonic: 0,
            scale: Scale::Major,
        });
    let tonic = key.tonic % 12;
    let above_tonic = |p: u8| ((p % 12 + 12 - tonic) % 12) as usize;

    // One step of context before the segment tells whether its first note is
    // new or held over.
    let lo = start.saturating_sub(1);
    let rows = score.slice(lo..end).sounding_pitches();
    let first = start - lo;
    let body = &rows[first..];

    // Harmony on the beats.
    let (mut beats, mut full, mut bass_beats, mut motions) = (0usize, 0usize, 0usize, 0usize);
    let mut previous_root: Option<u8> = None;
    for (i, row) in body.iter().enumerate() {
        if !(start + i).is_multiple_of(STEPS_PER_QUARTER) {
            continue;
        }
        beats += 1;
        let Some(bass) = row[VOICES - 1] else {
            previous_root = None;
            continue;
        };
        f[BASS_DEGREE + above_tonic(bass)] += 1.0;
        bass_beats += 1;
        let pitches: Option<Vec<u8>> = row.iter().copied().collect();
        let Some(pitches) = pitches else {
            previous_root = None;
            continue;
        };
        full += 1;
        let mask = pitches
            .iter()
            .fold(0u16, |m, p| m | 1 << ((p % 12 + 12 - bass % 12) % 12));
        let (class, root) = classify(mask);
        f[SONORITY + class] += 1.0;
        let root = root.map(|r| (bass % 12 + r) % 12);
        if let (Some(before), Some(now)) = (previous_root, root) {
            f[ROOT_MOTION + ((now + 12 - before) % 12) as usize] += 1.0;
            motions += 1;
        }
        previous_root = root;
    }
    normalise(&mut f[SONORITY..SONORITY + SONORITIES.len()], full);
    f[FULL_BEATS] = ratio(full, beats);
    normalise(&mut f[BASS_DEGREE..BASS_DEGREE + 12], bass_beats);
    normalise(&mut f[ROOT_MOTION..ROOT_MOTION + 12], motions);

    // Motion of each voice. A note is a change of sounding pitch rather than
    // a struck token, so that a repeated note reads the same whether the
    // source tied it or struck it again (sources differ in this, and the
    // judge should not learn the encoding).
    let beats_long = (end - start) as f64 / STEPS_PER_QUARTER as f64;
    for v in 0..VOICES {
        let (mut notes, mut steps, mut leaps, mut intervals) = (0usize, 0usize, 0usize, 0usize);
        let mut total_interval = 0.0;
        let mut last: Option<u8> = None;
        for i in first..rows.len() {
            let now = rows[i][v];
            let Some(pitch) = now else { continue };
            let onset = i == 0 || rows[i - 1][v] != now;
            if onset {
                notes += 1;
                if let Some(before) = last {
                    let interval = pitch.abs_diff(before);
                    match interval {
                        0 => {}
                        1 | 2 => steps += 1,
                        _ => leaps += 1,
                    }
                    intervals += 1;
                    total_interval += interval as f64;
                }
            }
            last = Some(pitch);
        }
        f[NOTES_PER_BEAT + v] = notes as f64 / beats_long;
        f[STEP_SHARE + v] = ratio(steps, intervals);
        f[LEAP_SHARE + v] = ratio(leaps, intervals);
        f[MEAN_INTERVAL + v] = if intervals == 0 {
            0.0
        } else {
            total_interval / intervals as f64
        };
    }

    let mut sounding = 0usize;
    for pitch in body.iter().flatten().flatten() {
        f[PITCH_CLASS + above_tonic(*pitch)] += 1.0;
        sounding += 1;
    }
    normalise(&mut f[PITCH_CLASS..PITCH_CLASS + 12], sounding);
    f
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn normalise(counts: &mut [f64], total: usize) {
    if total > 0 {
        for c in counts {
            *c /= total as f64;
        }
    }
}

/// Cuts `score` into consecutive 2-bar ([`SEGMENT_STEPS`]) windows inside
/// `regions` (the step ranges where the music was generated; a window lies
/// wholly inside one range, what is left over at a range's end is dropped)
/// and returns their features tagged with `piece`. A range shorter than two
/// bars gives one window over all of it if it is at least one bar long.
pub fn segments(
    score: &Score,
    regions: &[Range<usize>],
    piece: usize,
    key: Option<Key>,
) -> Vec<Segment> {
    let mut out = Vec::new();
    for region in regions {
        let end = region.end.min(score.len());
        let start = region.start.min(end);
        let length = end - start;
        let windows = if length >= SEGMENT_STEPS {
            length / SEGMENT_STEPS
        } else {
            usize::from(length >= MIN_SEGMENT_STEPS)
        };
        // Whole windows, or the one short window over all of a short range.
        let window_steps = length.min(SEGMENT_STEPS);
        out.extend((0..windows).map(|w| {
            let from = start + w * window_steps;
            Segment {
                piece,
                features: segment_features(score, from..from + window_steps, key),
            }
        }));
    }
    out
}

/// Classifier two-sample test of `a` (label 0) against `b` (label 1):
/// logistic regression on standardised features, [`FOLDS`]-fold
/// cross-validated with folds grouped by piece, scored by the ROC AUC of the
/// pooled out-of-fold scores. Piece numbers are shared by the two sides: the
/// same number on both (Bach's chorale and the model's version of it) is one
/// piece and lands in one fold. `None` when a side has fewer than
/// [`MIN_SEGMENTS`] segments or fewer than [`FOLDS`] pieces.
pub fn judge(a: &[Segment], b: &[Segment], seed: u64) -> Option<Verdict> {
    let pieces = |side: &[Segment]| side.iter().map(|s| s.piece).collect::<BTreeSet<usize>>();
    let (pieces_a, pieces_b) = (pieces(a), pieces(b));
    if a.len() < MIN_SEGMENTS
        || b.len() < MIN_SEGMENTS
        || pieces_a.len() < FOLDS
        || pieces_b.len() < FOLDS
    {
        return None;
    }

    // Pieces dealt to folds round-robin after a seeded shuffle, those on both
    // sides first, then each side's own, so that both sides spread over the
    // folds.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order = Vec::new();
    for mut group in [
        pieces_a
            .intersection(&pieces_b)
            .copied()
            .collect::<Vec<_>>(),
        pieces_a.difference(&pieces_b).copied().collect(),
        pieces_b.difference(&pieces_a).copied().collect(),
    ] {
        group.shuffle(&mut rng);
        order.extend(group);
    }
    let fold_of_piece: BTreeMap<usize, usize> = order
        .iter()
        .enumerate()
        .map(|(i, piece)| (*piece, i % FOLDS))
        .collect();

    let width = a
        .iter()
        .chain(b)
        .map(|s| s.features.len())
        .max()
        .unwrap_or(0);
    let rows: Vec<(&Segment, f64)> = a
        .iter()
        .map(|s| (s, 0.0))
        .chain(b.iter().map(|s| (s, 1.0)))
        .collect();
    let folds: Vec<usize> = rows
        .iter()
        .map(|(s, _)| fold_of_piece.get(&s.piece).copied().unwrap_or(0))
        .collect();
    let labels: Vec<f64> = rows.iter().map(|(_, y)| *y).collect();
    // Ragged or non-finite features read as 0 rather than failing the test.
    let x: Vec<f64> = rows
        .iter()
        .flat_map(|(s, _)| {
            (0..width).map(|j| {
                s.features
                    .get(j)
                    .copied()
                    .filter(|v| v.is_finite())
                    .unwrap_or(0.0)
            })
        })
        .collect();

    let mut scores = vec![0.0; rows.len()];
    let mut fold_aucs = Vec::new();
    for fold in 0..FOLDS {
        let train: Vec<usize> = (0..rows.len()).filter(|i| folds[*i] != fold).collect();
        let test: Vec<usize> = (0..rows.len()).filter(|i| folds[*i] == fold).collect();
        if test.is_empty() {
            continue;
        }
        let model = Logistic::fit(&x, &labels, width, &train);
        for i in &test {
            scores[*i] = model.score(&x[i * width..(i + 1) * width]);
        }
        let fold_scores: Vec<f64> = test.iter().map(|i| scores[*i]).collect();
        let fold_labels: Vec<f64> = test.iter().map(|i| labels[*i]).collect();
        fold_aucs.extend(auc(&fold_scores, &fold_labels));
    }
    let pooled = auc(&scores, &labels)?;
    Some(Verdict {
        auc: pooled,
        auc_spread: spread(&fold_aucs),
        segments: [a.len(), b.len()],
        folds: FOLDS,
    })
}

/// The control: Bach against Bach. The pieces of `bach` are split at random
/// (seeded) into two halves, labelled 0 and 1, and judged; a well-behaved
/// judge scores about 0.5 here, and how far it strays shows the noise of the
/// verdict at this sample size.
pub fn control(bach: &[Segment], seed: u64) -> Option<Verdict> {
    let mut pieces: Vec<usize> = bach
        .iter()
        .map(|s| s.piece)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // A seed of its own, so that the split does not mirror the fold deal.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    pieces.shuffle(&mut rng);
    let first: BTreeSet<usize> = pieces[..pieces.len() / 2].iter().copied().collect();
    let (a, b): (Vec<Segment>, Vec<Segment>) =
        bach.iter().cloned().partition(|s| first.contains(&s.piece));
    judge(&a, &b, seed)
}

/// L2 penalty on the (standardised) weights, in units of one sample's loss.
const L2: f64 = 1.0;
const NEWTON_ITERATIONS: usize = 50;

/// A logistic regression fitted on standardised features.
struct Logistic {
    mean: Vec<f64>,
    /// 1/σ of each feature on the training rows, 0 for constant features.
    inverse_scale: Vec<f64>,
    /// Weights, the intercept last.
    weights: Vec<f64>,
}

impl Logistic {
    /// Fits rows `train` of the row-major `x` (`width` columns) to `labels`
    /// by Newton's method on the penalised log-loss, each side weighted to
    /// half the total so that unequal sides do not tilt the fit.
    fn fit(x: &[f64], labels: &[f64], width: usize, train: &[usize]) -> Logistic {
        let n = train.len().max(1) as f64;
        let mut mean = vec![0.0; width];
        for i in train {
            for (m, v) in mean.iter_mut().zip(&x[i * width..(i + 1) * width]) {
                *m += v / n;
            }
        }
        let mut variance = vec![0.0; width];
        for i in train {
            for ((s, v), m) in variance
                .iter_mut()
                .zip(&x[i * width..(i + 1) * width])
                .zip(&mean)
            {
                *s += (v - m).powi(2) / n;
            }
        }
        let inverse_scale: Vec<f64> = variance
            .iter()
            .map(|v| if *v > 1e-12 { 1.0 / v.sqrt() } else { 0.0 })
            .collect();

        // Design matrix: standardised features and a constant 1.
        let d = width + 1;
        let design: Vec<f64> = train
            .iter()
            .flat_map(|i| {
                x[i * width..(i + 1) * width]
                    .iter()
                    .zip(&mean)
                    .zip(&inverse_scale)
                    .map(|((v, m), s)| (v - m) * s)
                    .chain(std::iter::once(1.0))
                    .collect::<Vec<f64>>()
            })
            .collect();
        let y: Vec<f64> = train.iter().map(|i| labels[*i]).collect();
        let positives = y.iter().filter(|v| **v > 0.5).count();
        let negatives = y.len() - positives;
        let sample_weight: Vec<f64> = y
            .iter()
            .map(|v| {
                let side = if *v > 0.5 { positives } else { negatives };
                n / (2.0 * side.max(1) as f64)
            })
            .collect();

        let objective = |w: &[f64]| -> f64 {
            let loss: f64 = design
                .chunks_exact(d)
                .zip(&y)
                .zip(&sample_weight)
                .map(|((row, t), sw)| {
                    let z = dot(row, w);
                    sw * (softplus(z) - t * z)
                })
                .sum();
            loss + 0.5 * L2 * w[..width].iter().map(|v| v * v).sum::<f64>()
        };

        let mut weights = vec![0.0; d];
        let mut current = objective(&weights);
        for _ in 0..NEWTON_ITERATIONS {
            let mut gradient = vec![0.0; d];
            let mut hessian = vec![0.0; d * d];
            for ((row, t), sw) in design.chunks_exact(d).zip(&y).zip(&sample_weight) {
                let p = sigmoid(dot(row, &weights));
                let g = sw * (p - t);
                let h = sw * p * (1.0 - p);
                for (j, rj) in row.iter().enumerate() {
                    gradient[j] += g * rj;
                    let hrj = h * rj;
                    // Upper triangle only; mirrored below.
                    for (k, rk) in row.iter().enumerate().skip(j) {
                        hessian[j * d + k] += hrj * rk;
                    }
                }
            }
            for j in 0..d {
                for k in 0..j {
                    hessian[j * d + k] = hessian[k * d + j];
                }
                // The intercept goes unpenalised; a whisker keeps the system
                // definite when every prediction has saturated.
                hessian[j * d + j] += if j < width { L2 } else { 1e-9 };
                if j < width {
                    gradient[j] += L2 * weights[j];
                }
            }
            let Some(step) = cholesky_solve(&mut hessian, &gradient, d) else {
                break;
            };
            // Halve the step until the objective does not rise: plain Newton
            // can overshoot from far away on nearly separable data.
            let mut scale = 1.0;
            let mut accepted = None;
            while scale > 1e-6 {
                let trial: Vec<f64> = weights
                    .iter()
                    .zip(&step)
                    .map(|(w, s)| w - scale * s)
                    .collect();
                let value = objective(&trial);
                if value.is_finite() && value <= current {
                    accepted = Some((trial, value));
                    break;
                }
                scale *= 0.5;
            }
            let Some((trial, value)) = accepted else {
                break;
            };
            let moved = step.iter().map(|s| (scale * s).abs()).fold(0.0, f64::max);
            weights = trial;
            let improvement = current - value;
            current = value;
            if moved < 1e-8 || improvement < 1e-12 * current.abs().max(1.0) {
                break;
            }
        }
        Logistic {
            mean,
            inverse_scale,
            weights,
        }
    }

    /// The log-odds that `features` come from side 1.
    fn score(&self, features: &[f64]) -> f64 {
        let width = self.mean.len();
        let linear: f64 = features
            .iter()
            .zip(&self.mean)
            .zip(&self.inverse_scale)
            .zip(&self.weights[..width])
            .map(|(((v, m), s), w)| (v - m) * s * w)
            .sum();
        linear + self.weights[width]
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// ln(1 + eᶻ) without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// Solves `matrix · x = rhs` for a symmetric positive definite `matrix`
/// (`d`×`d`, row-major, overwritten by its Cholesky factor); `None` when it
/// is not positive definite.
fn cholesky_solve(matrix: &mut [f64], rhs: &[f64], d: usize) -> Option<Vec<f64>> {
    for j in 0..d {
        let mut diagonal = matrix[j * d + j];
        for k in 0..j {
            diagonal -= matrix[j * d + k].powi(2);
        }
        if diagonal.is_nan() || diagonal <= 0.0 {
            return None;
        }
        let diagonal = diagonal.sqrt();
        matrix[j * d + j] = diagonal;
        for i in j + 1..d {
            let mut value = matrix[i * d + j];
            for k in 0..j {
                value -= matrix[i * d + k] * matrix[j * d + k];
            }
            matrix[i * d + j] = value / diagonal;
        }
    }
    // L z = rhs, then Lᵀ x = z.
    let mut z = rhs.to_vec();
    for i in 0..d {
        for k in 0..i {
            z[i] -= matrix[i * d + k] * z[k];
        }
        z[i] /= matrix[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            z[i] -= matrix[k * d + i] * z[k];
        }
        z[i] /= matrix[i * d + i];
    }
    Some(z)
}

/// ROC AUC of `scores` for telling label 1 from label 0 (the Mann–Whitney
/// statistic, ties counted half); `None` unless both labels occur.
fn auc(scores: &[f64], labels: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|i, j| scores[*i].total_cmp(&scores[*j]));
    // Average ranks (from 1) over runs of tied scores.
    let mut rank = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            rank[order[k]] = average;
        }
        i = j + 1;
    }
    let positives = labels.iter().filter(|y| **y > 0.5).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let rank_sum: f64 = rank
        .iter()
        .zip(labels)
        .filter(|(_, y)| **y > 0.5)
        .map(|(r, _)| r)
        .sum();
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Sample standard deviation (0 for fewer than two values).
fn spread(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use rand_distr::StandardNormal;

    /// `pieces` pieces of `per_piece` segments, features Gaussian around
    /// `shift` (in the first `shifted` dimensions, 0 elsewhere), with a
    /// per-piece offset so that pieces differ as real ones do.
    fn synthetic(
        rng: &mut ChaCha8Rng,
        first_piece: usize,
        pieces: usize,
        per_piece: usize,
        shift: f64,
        shifted: usize,
    ) -> Vec<Segment> {
        let dims = 30;
        let mut out = Vec::new();
        for piece in first_piece..first_piece + pieces {
            let offset: Vec<f64> = (0..dims)
                .map(|_| 0.3 * rng.sample::<f64, _>(StandardNormal))
                .collect();
            for _ in 0..per_piece {
                let features = (0..dims)
                    .map(|j| {
                        let centre = if j < shifted { shift } else { 0.0 };
                        centre + offset[j] + rng.sample::<f64, _>(StandardNormal)
                    })
                    .collect();
                out.push(Segment { piece, features });
            }
        }
        out
    }

    #[test]
    fn judge_same_distribution_is_near_chance() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = synthetic(&mut rng, 0, 40, 12, 0.0, 0);
        let b = synthetic(&mut rng, 40, 40, 12, 0.0, 0);
        let verdict = judge(&a, &b, 7).expect("enough segments");
        assert!((verdict.auc - 0.5).abs() < 0.15, "{verdict:?}");
        assert_eq!(verdict.segments, [480, 480]);
        assert_eq!(verdict.folds, FOLDS);
        assert!(verdict.auc_spread.is_finite());
    }

    #[test]
    fn judge_tells_different_distributions_apart() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let a = synthetic(&mut rng, 0, 30, 10, 0.0, 0);
        let b = synthetic(&mut rng, 30, 30, 10, 2.0, 5);
        let verdict = judge(&a, &b, 7).expect("enough segments");
        assert!(verdict.auc > 0.9, "{verdict:?}");
    }

    #[test]
    fn judge_is_deterministic_from_its_seed() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let a = synthetic(&mut rng, 0, 12, 5, 0.0, 0);
        let b = synthetic(&mut rng, 0, 12, 5, 0.3, 3);
        let first = judge(&a, &b, 11).expect("enough segments");
        let second = judge(&a, &b, 11).expect("enough segments");
        assert_eq!(first.auc, second.auc);
        assert_eq!(first.auc_spread, second.auc_spread);
    }

    #[test]
    fn control_on_one_distribution_is_near_chance() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let bach = synthetic(&mut rng, 0, 80, 12, 0.0, 0);
        let verdict = control(&bach, 5).expect("enough pieces");
        assert!((verdict.auc - 0.5).abs() < 0.15, "{verdict:?}");
        assert_eq!(verdict.segments[0] + verdict.segments[1], bach.len());
    }

    #[test]
    fn judge_declines_too_little_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let many = synthetic(&mut rng, 0, 10, 5, 0.0, 0);
        let few = synthetic(&mut rng, 10, 5, 1, 0.0, 0);
        assert!(judge(&many, &few, 1).is_none(), "too few segments");
        let few_pieces = synthetic(&mut rng, 20, 2, 20, 0.0, 0);
        assert!(judge(&many, &few_pieces, 1).is_none(), "too few pieces");
        assert!(judge(&[], &[], 1).is_none());
        assert!(control(&[], 1).is_none());
        assert!(control(&few, 1).is_none());
    }

    #[test]
    fn judge_survives_ragged_and_constant_features() {
        let mut a: Vec<Segment> = (0..20)
            .map(|i| Segment {
                piece: i % 6,
                features: vec![1.0; 3],
            })
            .collect();
        a[0].features = vec![f64::NAN];
        let b: Vec<Segment> = (0..20)
            .map(|i| Segment {
                piece: 10 + i % 6,
                features: vec![1.0, 2.0, 3.0, 4.0],
            })
            .collect();
        let verdict = judge(&a, &b, 3).expect("enough data");
        assert!(verdict.auc.is_finite());
    }

    fn chords(rows: &[[u8; 4]], steps_each: usize) -> Score {
        Score::from_chords(rows, steps_each)
    }

    #[test]
    fn judge_features_read_root_position_triads() {
        // C major root-position triads in changing voicings, one per beat.
        let voicings = [
            [72, 64, 55, 48],
            [67, 64, 60, 48],
            [76, 67, 60, 36],
            [72, 67, 64, 48],
        ];
        let rows: Vec<[u8; 4]> = (0..8).map(|i| voicings[i % 4]).collect();
        let score = chords(&rows, STEPS_PER_QUARTER);
        let c_major = Key {
            tonic: 0,
            scale: Scale::Major,
        };
        for key in [Some(c_major), None] {
            let f = segment_features(&score, 0..score.len(), key);
            assert_eq!(f.len(), FEATURES);
            assert!((f[SONORITY] - 1.0).abs() < 1e-12, "{:?}", &f[..24]);
            assert!((f[FULL_BEATS] - 1.0).abs() < 1e-12);
            assert!((f[BASS_DEGREE] - 1.0).abs() < 1e-12);
            assert!((f[ROOT_MOTION] - 1.0).abs() < 1e-12);
            let pitch_classes = &f[PITCH_CLASS..PITCH_CLASS + 12];
            assert!((pitch_classes.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(pitch_classes[1] == 0.0 && pitch_classes[0] > pitch_classes[4]);
        }
    }

    #[test]
    fn judge_features_read_inversions_root_motion_and_motion() {
        // C: I – V6 – vi – IV6/4 – V7, in C major.
        let rows = [
            [72, 67, 64, 48],
            [74, 67, 67, 59],
            [72, 64, 60, 45],
            [72, 69, 65, 48],
            [71, 65, 62, 43],
        ];
        let score = chords(&rows, STEPS_PER_QUARTER);
        let key = Some(Key {
            tonic: 0,
            scale: Scale::Major,
        });
        let f = segment_features(&score, 0..score.len(), key);
        let share = 1.0 / 5.0;
        for class in [0, 1, 3, 2, 10] {
            assert!((f[SONORITY + class] - share).abs() < 1e-12, "class {class}");
        }
        // Roots C G A F G: up 7, 2, 8, 2.
        assert!((f[ROOT_MOTION + 7] - 0.25).abs() < 1e-12);
        assert!((f[ROOT_MOTION + 2] - 0.5).abs() < 1e-12);
        assert!((f[ROOT_MOTION + 8] - 0.25).abs() < 1e-12);
        // Soprano 72 74 72 72 71: three notes after the first (72→72 is
        // held), all steps; bass 48 59 45 48 43: leaps of 11, 14, 3, 5.
        assert!((f[NOTES_PER_BEAT] - 4.0 / 5.0).abs() < 1e-12);
        assert!((f[STEP_SHARE] - 1.0).abs() < 1e-12);
        assert!((f[MEAN_INTERVAL] - 5.0 / 3.0).abs() < 1e-12);
        assert!((f[LEAP_SHARE + 3] - 1.0).abs() < 1e-12);
        assert!((f[MEAN_INTERVAL + 3] - 33.0 / 4.0).abs() < 1e-12);
    }

    #[test]
    fn judge_segments_cut_two_bar_windows_inside_regions() {
        let rows: Vec<[u8; 4]> = (0..25).map(|_| [72, 64, 55, 48]).collect();
        let score = chords(&rows, STEPS_PER_QUARTER);
        assert_eq!(score.len(), 100);
        // 0..80: two windows, 16 steps left over; 80..100: one short window;
        // 100..140 lies past the end; 5..10 is too short.
        let cut = segments(&score, &[0..80, 80..100, 100..140, 5..10], 3, None);
        assert_eq!(cut.len(), 3);
        assert!(cut
            .iter()
            .all(|s| s.piece == 3 && s.features.len() == FEATURES));
        let four_bars = 0..64;
        assert!(segments(&Score::new(0), std::slice::from_ref(&four_bars), 0, None).is_empty());
        assert_eq!(
            segment_features(&Score::new(0), 0..32, None),
            vec![0.0; FEATURES]
        );
        // Silence: no notes, no key, all zeros but no panic.
        let silent = segments(&Score::new(64), &[four_bars], 0, None);
        assert_eq!(silent.len(), 2);
    }
}
