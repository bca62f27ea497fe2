//! Training batches: random windows of the corpus, task masks and noise.

use anyhow::{bail, Result};
use cantor_engine::card::NoiseSchedule;
use cantor_engine::grid::{Score, Voice, STEPS_PER_QUARTER};
use cantor_engine::mask::Mask;
use cantor_engine::network::{conditioning, known_channels, one_hot};
use cantor_engine::vocab::Vocabulary;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// A training batch, host-side.
pub struct Batch {
    pub window: usize,
    pub size: usize,
    pub clean: Vec<f32>,
    pub noisy: Vec<f32>,
    pub conditioning: Vec<f32>,
    pub free: Vec<f32>,
    pub sigmas: Vec<f32>,
    pub free_cells: Vec<f32>,
}

/// Draws windows, masks and noise.
pub struct BatchMaker<'a> {
    pieces: Vec<&'a Score>,
    vocab: &'a Vocabulary,
    noise: NoiseSchedule,
    /// Share of windows drawn as Gibbs blocks ([`gibbs_block_mask`] at σ_max).
    gibbs_share: f64,
    /// Share of windows whose phrase ends are hidden, as where nobody
    /// marked them.
    phrase_dropout: f64,
}

impl<'a> BatchMaker<'a> {
    /// Pieces at least `min_window` long; an error if none is.
    pub fn new(
        pieces: &'a [Score],
        vocab: &'a Vocabulary,
        noise: NoiseSchedule,
        min_window: usize,
    ) -> Result<Self> {
        let usable: Vec<&Score> = pieces.iter().filter(|p| p.len() >= min_window).collect();
        if usable.is_empty() {
            let longest = pieces.iter().map(Score::len).max().unwrap_or(0);
            bail!("the window of {min_window} steps is longer than every piece (the longest has {longest} steps)");
        }
        Ok(BatchMaker {
            pieces: usable,
            vocab,
            noise,
            gibbs_share: 0.0,
            phrase_dropout: 0.0,
        })
    }

    /// Draw this share of the windows as the question the Gibbs sampler
    /// asks ([`gibbs_block_mask`], at σ_max: a few notes unknown, every
    /// other cell exact), DeepBach's objective; the rest as before.
    pub fn with_gibbs_masks(mut self, share: f64) -> Self {
        self.gibbs_share = share.clamp(0.0, 1.0);
        self
    }

    /// Hide the phrase ends of this share of the windows.
    pub fn with_phrase_dropout(mut self, share: f64) -> Self {
        self.phrase_dropout = share.clamp(0.0, 1.0);
        self
    }

    pub fn batch(&self, window: usize, size: usize, rng: &mut ChaCha8Rng) -> Batch {
        self.batch_at(window, size, None, rng)
    }

    /// A batch whose windows all have noise level `sigma` (random when None).
    pub fn batch_at(
        &self,
        window: usize,
        size: usize,
        sigma: Option<f32>,
        rng: &mut ChaCha8Rng,
    ) -> Batch {
        let c = self.vocab.total_size();
        let mut b = Batch {
            window,
            size,
            clean: Vec::with_capacity(size * window * c),
            noisy: Vec::with_capacity(size * window * c),
            conditioning: Vec::new(),
            free: Vec::with_capacity(size * window * c),
            sigmas: Vec::with_capacity(size),
            free_cells: Vec::with_capacity(size),
        };
        let (lo, hi) = (self.noise.sigma_min.ln(), self.noise.sigma_max.ln());
        for _ in 0..size {
            let mut score = self.window(window, rng);
            // No draw when there is nothing to hide, so such runs keep their
            // streams.
            if !score.phrasing_known().is_empty()
                && self.phrase_dropout > 0.0
                && rng.random_bool(self.phrase_dropout)
            {
                score.clear_phrasing();
            }
            // No draw when the share is 0, so such runs keep their streams.
            let gibbs = self.gibbs_share > 0.0 && rng.random_bool(self.gibbs_share);
            let mut mask = if gibbs {
                gibbs_block_mask(window, rng)
            } else {
                random_mask(window, rng)
            };
            mask.cover_note_tails(&score);
            let drawn = if gibbs {
                self.noise.sigma_max
            } else {
                (lo + (hi - lo) * rng.random::<f32>()).exp()
            };
            let sigma = sigma.unwrap_or(drawn);
            let x0 = one_hot(&score, self.vocab);
            b.noisy.extend(
                x0.iter()
                    .map(|v| v + sigma * rng.sample::<f32, _>(StandardNormal)),
            );
            b.clean.extend(&x0);
            b.conditioning
                .extend(conditioning(&score, &mask, self.vocab));
            b.free
                .extend(known_channels(&mask, self.vocab).iter().map(|k| 1.0 - k));
            b.sigmas.push(sigma);
            b.free_cells.push(mask.free_count() as f32);
        }
        b
    }

    /// The longest piece's length in steps: the longest window it can draw.
    pub fn longest_piece(&self) -> usize {
        self.pieces.iter().map(|p| p.len()).max().unwrap_or(0)
    }

    /// A random beat-aligned crop of a random piece (longer pieces more
    /// often), randomly transposed within the vocabulary.
    fn window(&self, window: usize, rng: &mut ChaCha8Rng) -> Score {
        assert!(window <= self.longest_piece(), "no piece holds the window");
        loop {
            let piece = self.pieces[rng.random_range(0..self.pieces.len())];
            if piece.len() < window || rng.random::<f64>() > piece.len() as f64 / 640.0 + 0.25 {
                continue;
            }
            let beats = (piece.len() - window) / STEPS_PER_QUARTER;
            let start = rng.random_range(0..=beats) * STEPS_PER_QUARTER;
            let crop = piece.slice(start..start + window);
            let Some((down, up)) = self.vocab.transposition_room(&crop) else {
                continue;
            };
            let shift = rng.random_range(-down..=up);
            if let Some(moved) = crop.transposed(shift) {
                return moved;
            }
        }
    }
}

/// A task mask like the ones users make, drawn at random.
pub fn random_mask(steps: usize, rng: &mut ChaCha8Rng) -> Mask {
    let beats = (steps / STEPS_PER_QUARTER).max(1);
    let mut mask = Mask::none(steps);
    let r: f64 = rng.random();
    if r < 0.35 {
        // Harmonize: one voice given (mostly the soprano).
        let given = if rng.random_bool(0.7) {
            Voice::Soprano
        } else {
            Voice::ALL[rng.random_range(1..4)]
        };
        let others: Vec<Voice> = Voice::ALL.into_iter().filter(|v| *v != given).collect();
        mask.free_region(0..steps, &others);
    } else if r < 0.5 {
        // Continue: the past given (all voices, or the melody only).
        let cut = rng.random_range(1..beats) * STEPS_PER_QUARTER;
        mask.free_region(cut..steps, &Voice::ALL);
        if rng.random_bool(0.2) {
            mask.free_region(0..cut, &[Voice::Alto, Voice::Tenor, Voice::Bass]);
        }
    } else if r < 0.7 {
        // Infill: a span of beats in all or some voices.
        let len = rng.random_range(1..=beats.div_ceil(2)) * STEPS_PER_QUARTER;
        let start = rng.random_range(0..=(steps - len) / STEPS_PER_QUARTER) * STEPS_PER_QUARTER;
        let voices: Vec<Voice> = if rng.random_bool(0.5) {
            Voice::ALL.to_vec()
        } else {
            Voice::ALL
                .into_iter()
                .filter(|_| rng.random_bool(0.5))
                .collect()
        };
        mask.free_region(start..start + len, &voices);
    } else if r < 0.92 {
        // Random cells, as in Coconet's training.
        let p = rng.random_range(0.1..0.95);
        for step in 0..steps {
            for voice in Voice::ALL {
                if rng.random_bool(p) {
                    mask.set_free(step, voice, true);
                }
            }
        }
    } else {
        mask = Mask::all(steps);
    }
    if mask.free_count() == 0 {
        mask = Mask::all(steps);
    }
    mask
}

/// One step of the Gibbs sampler's question: a task's free region (as
/// [`random_mask`] draws it) of which only a random block, 2–30% of its
/// cells (the sampler's last blocks are 5%), is unknown; the rest of the
/// region is known like the cells outside it. The caller frees the tails of
/// the block's notes, as the sampler does.
pub fn gibbs_block_mask(steps: usize, rng: &mut ChaCha8Rng) -> Mask {
    let region = random_mask(steps, rng);
    let share = rng.random_range(0.02..0.3);
    region.random_block(share, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_masks_always_free_something() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..500 {
            let m = random_mask(32, &mut rng);
            assert!(m.free_count() > 0);
        }
    }

    #[test]
    fn gibbs_blocks_free_a_few_cells_of_a_region() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (mut free, mut cells) = (0, 0);
        for _ in 0..500 {
            let m = gibbs_block_mask(32, &mut rng);
            assert!(m.free_count() > 0);
            free += m.free_count();
            cells += 32 * 4;
        }
        let share = free as f64 / cells as f64;
        assert!(share > 0.02 && share < 0.2, "share of free cells {share}");
    }
}
