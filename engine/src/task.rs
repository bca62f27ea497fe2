//! What a musician asks for — harmonize, continue, regenerate — as sampling
//! problems, and [`compose`], the one entry point that solves them.
//!
//! `compose` also moves a problem into the model's range when the given
//! notes sit outside it (a melody in a high key, say), samples there, and
//! moves the result back, so known notes always come out exactly as given.

use std::ops::ControlFlow;

use crate::constraints::{Constraints, Key};
use crate::error::{CantorError, Result};
use crate::grid::{Score, Token, Voice};
use crate::mask::{Mask, MaskRegion};
use crate::model::ScoreModel;
use crate::sampler::{generate, AnnealingFrame, Generation, Observer, Problem, SamplerSettings};
use crate::vocab::{Vocabulary, VoiceRange};

/// Key constraint as the user states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyChoice {
    /// No key constraint.
    #[default]
    Free,
    /// Estimate the key from the known notes.
    Auto,
    Fixed(Key),
}

impl KeyChoice {
    /// `none`, `auto`, or a key such as `G major`.
    pub fn parse(text: &str) -> Result<KeyChoice> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "none" | "free" | "off" => Ok(KeyChoice::Free),
            "auto" => Ok(KeyChoice::Auto),
            _ => Key::parse(text).map(KeyChoice::Fixed),
        }
    }

    fn resolve(self, known: &Score, mask: &Mask) -> Option<Key> {
        match self {
            KeyChoice::Free => None,
            KeyChoice::Fixed(k) => Some(k),
            KeyChoice::Auto => Key::of_known(known, mask),
        }
    }
}

/// The constraints a key choice means for the known cells of `score`.
pub fn constraints_for(key: KeyChoice, score: &Score, mask: &Mask) -> Constraints {
    Constraints {
        key: key.resolve(score, mask),
        ranges: [None; 4],
    }
}

/// Harmonize: `voice` of `melody` is given, the other three are written.
pub fn harmonize_problem(melody: &Score, voice: Voice, key: KeyChoice) -> Result<Problem> {
    if melody.voice_is_silent(voice) {
        return Err(CantorError::input(format!(
            "nothing to harmonize: the {voice} has no notes"
        )));
    }
    let mut score = melody.clone();
    let mut mask = Mask::none(score.len());
    for other in Voice::ALL.into_iter().filter(|v| *v != voice) {
        mask.free_region(0..score.len(), &[other]);
        for step in 0..score.len() {
            score.set(step, other, Token::Rest);
        }
    }
    let constraints = constraints_for(key, &score, &mask);
    Problem::new(score, mask, constraints)
}

/// Continue: `bars` more bars after `phrase` (in its last time signature).
/// Voices that are silent throughout the phrase are written for the phrase
/// too, so a melody alone is harmonized and continued.
/// Longest piece a continuation may make, in grid steps (a bound against
/// overflow and runaway allocation; callers apply their own, smaller limits).
pub const MAX_CONTINUATION_STEPS: usize = 1 << 24;

pub fn continuation_problem(phrase: &Score, bars: usize, key: KeyChoice) -> Result<Problem> {
    if bars == 0 {
        return Err(CantorError::input("continue needs at least one bar"));
    }
    if phrase.notes().is_empty() {
        return Err(CantorError::input(
            "nothing to continue: the phrase has no notes",
        ));
    }
    let known_len = phrase.len();
    let bar = phrase
        .time_signature_at(known_len.saturating_sub(1))
        .steps_per_bar();
    let total = bars
        .checked_mul(bar)
        .and_then(|new| new.checked_add(known_len))
        .filter(|total| *total <= MAX_CONTINUATION_STEPS)
        .ok_or_else(|| {
            CantorError::input(format!(
                "continuing by {bars} bars would make a piece longer than {} bars of 4/4",
                MAX_CONTINUATION_STEPS / 16
            ))
        })?;
    let score = phrase.extended(total);
    let mut mask = Mask::none(score.len());
    let silent: Vec<Voice> = Voice::ALL
        .into_iter()
        .filter(|v| phrase.voice_is_silent(*v))
        .collect();
    mask.free_region(0..known_len, &silent);
    mask.free_region(known_len..score.len(), &Voice::ALL);
    let constraints = constraints_for(key, &score, &mask);
    Problem::new(score, mask, constraints)
}

/// Infill: regenerate exactly the cells of `regions`; every other note stays.
pub fn infill_problem(piece: &Score, regions: &[MaskRegion], key: KeyChoice) -> Result<Problem> {
    if regions.is_empty() {
        return Err(CantorError::input(
            "infill needs at least one --mask region",
        ));
    }
    let mut mask = Mask::none(piece.len());
    for region in regions {
        region.apply(piece, &mut mask)?;
    }
    let constraints = constraints_for(key, piece, &mask);
    Problem::new(piece.clone(), mask, constraints)
}

/// The smallest transposition (preferring none, then octaves, then the
/// nearest semitones; up to four octaves either way) that brings every known
/// note into the model's ranges.
pub fn fitting_transposition(problem: &Problem, vocab: &Vocabulary) -> Option<i32> {
    let mut spans: [Option<(u8, u8)>; 4] = [None; 4];
    for (step, cell) in problem.score.cells().iter().enumerate() {
        for voice in Voice::ALL {
            if problem.mask.is_free(step, voice) {
                continue;
            }
            if let Token::Pitch(p) = cell[voice.index()] {
                let span = &mut spans[voice.index()];
                *span = Some(span.map_or((p, p), |(lo, hi)| (lo.min(p), hi.max(p))));
            }
        }
    }
    let fits = |shift: i32| {
        Voice::ALL.iter().all(|v| match spans[v.index()] {
            None => true,
            Some((lo, hi)) => {
                let r = vocab.range(*v);
                lo as i32 + shift >= r.lowest as i32 && hi as i32 + shift <= r.highest as i32
            }
        })
    };
    const MOST: i32 = 48;
    let octaves = (1..=MOST / 12).flat_map(|k| [-12 * k, 12 * k]);
    let others = (1..=MOST).filter(|d| d % 12 != 0).flat_map(|d| [-d, d]);
    std::iter::once(0)
        .chain(octaves)
        .chain(others)
        .find(|s| fits(*s))
}

fn transpose_problem(problem: &Problem, shift: i32) -> Result<Problem> {
    let score = problem
        .score
        .transposed(shift)
        .ok_or_else(|| CantorError::input("cannot transpose the piece into the model's range"))?;
    let mut constraints = problem.constraints.clone();
    if let Some(key) = constraints.key.as_mut() {
        key.tonic = ((key.tonic as i32 + shift).rem_euclid(12)) as u8;
    }
    for range in constraints.ranges.iter_mut().flatten() {
        *range = VoiceRange {
            lowest: (range.lowest as i32 + shift).clamp(0, 127) as u8,
            highest: (range.highest as i32 + shift).clamp(0, 127) as u8,
        };
    }
    Ok(Problem {
        score,
        mask: problem.mask.clone(),
        constraints,
        splits: problem.splits.clone(),
        lane: problem.lane.clone(),
    })
}

/// The longest stretch composed in one run, in grid steps (64 bars of 4/4).
/// A longer piece is composed section by section ([`compose`]), so the
/// sampler's memory stays that of one section however long the piece.
pub const SECTION_STEPS: usize = 1024;
/// What each section sees around it, in steps: before it, the end of the
/// previous section as composed (known); after it, the next steps' given
/// notes with their free cells composed and thrown away. Four bars, past
/// the network's reach of 62 steps each side, so a section's notes are
/// composed knowing everything the whole piece would have shown them.
pub const SECTION_CONTEXT: usize = 64;

/// Solves `problem` with `model`: fits it into the model's range, samples,
/// and moves the result back. Known cells come out exactly as given. A
/// piece longer than [`SECTION_STEPS`] (plus its context) is composed
/// section by section, in order, each going on from the one before: time
/// linear in the length and the sampler's memory bounded; the observer
/// sees the levels of all sections as one run (without previews).
pub fn compose(
    model: &ScoreModel,
    problem: &Problem,
    settings: &SamplerSettings,
    observer: &mut dyn Observer,
) -> Result<Generation> {
    if problem.score.len() <= SECTION_STEPS + 2 * SECTION_CONTEXT {
        return compose_whole(model, problem, settings, observer);
    }
    let total = problem.score.len();
    let sections = total.div_ceil(SECTION_STEPS);
    let mut score = problem.score.clone();
    let mut evals = 0;
    for (i, start) in (0..total).step_by(SECTION_STEPS).enumerate() {
        let end = (start + SECTION_STEPS).min(total);
        let free_here =
            (start..end).any(|s| Voice::ALL.iter().any(|v| problem.mask.is_free(s, *v)));
        if !free_here {
            continue;
        }
        let from = start.saturating_sub(SECTION_CONTEXT);
        let to = (end + SECTION_CONTEXT).min(total);
        let mut section = score.slice(from..to);
        let mut mask = problem.mask.slice(from..to);
        for step in 0..start - from {
            for voice in Voice::ALL {
                mask.set_free(step, voice, false);
            }
        }
        // A note composed at the end of the section before may go on into
        // this one, as it could in one run over the whole piece.
        if start > from {
            let first = start - from;
            for voice in Voice::ALL {
                if mask.is_free(first, voice) && section.sounding(first - 1, voice).is_some() {
                    section.set(first, voice, Token::Hold);
                }
            }
        }
        let part = Problem {
            score: section,
            mask,
            constraints: problem.constraints.clone(),
            splits: problem
                .splits
                .iter()
                .filter(|(step, _)| (from..to).contains(step))
                .map(|(step, voice)| (step - from, *voice))
                .collect(),
            lane: problem.lane.slice(from..to),
        };
        let part_settings = SamplerSettings {
            seed: settings.seed.wrapping_add(i as u64),
            ..settings.clone()
        };
        let mut watcher = Sectioned {
            inner: &mut *observer,
            section: i,
            sections,
        };
        let generation = compose_whole(model, &part, &part_settings, &mut watcher)?;
        evals += generation.network_evals;
        for step in start..end {
            for voice in Voice::ALL {
                if problem.mask.is_free(step, voice) {
                    let at = step - from;
                    score.set(step, voice, generation.score.get(at, voice));
                    score.set_velocity(step, voice, generation.score.velocity(at, voice));
                }
            }
        }
    }
    problem.finish(&mut score);
    Ok(Generation {
        score,
        network_evals: evals,
    })
}

/// Passes the levels of one section of a long piece on as part of one run
/// over all its sections (previews are of the section alone: left out).
struct Sectioned<'a> {
    inner: &'a mut dyn Observer,
    section: usize,
    sections: usize,
}

impl Observer for Sectioned<'_> {
    fn on_level(&mut self, frame: &AnnealingFrame) -> ControlFlow<()> {
        self.inner.on_level(&AnnealingFrame {
            level: self.section * frame.levels + frame.level,
            levels: self.sections * frame.levels,
            preview: None,
            relaxation: None,
            ..*frame
        })
    }
}

/// [`compose`] in one run over the whole problem.
fn compose_whole(
    model: &ScoreModel,
    problem: &Problem,
    settings: &SamplerSettings,
    observer: &mut dyn Observer,
) -> Result<Generation> {
    if problem.mask.free_count() == 0 {
        return Ok(Generation {
            score: problem.score.clone(),
            network_evals: 0,
        });
    }
    let vocab = &model.card.vocabulary;
    let shift = fitting_transposition(problem, vocab).ok_or_else(|| {
        // Name the first note that cannot fit to make the message concrete.
        match problem.check_vocabulary(vocab) {
            Err(e) => CantorError::input(format!("{e}, and no transposition fits every voice")),
            Ok(()) => CantorError::input("the given notes do not fit the model's voice ranges"),
        }
    })?;
    if shift == 0 {
        return generate(model, problem, settings, observer);
    }
    let moved = transpose_problem(problem, shift)?;
    let mut shifted = Untransposed {
        inner: observer,
        shift: -shift,
    };
    let generation = generate(model, &moved, settings, &mut shifted)?;
    let mut score = generation
        .score
        .transposed(-shift)
        .ok_or_else(|| CantorError::input("cannot transpose the result back"))?;
    // Known cells are restored from the original, bit for bit, then split
    // notes tied back as the run did.
    for step in 0..score.len() {
        for voice in Voice::ALL {
            if !problem.mask.is_free(step, voice) {
                score.set(step, voice, problem.score.get(step, voice));
                score.set_velocity(step, voice, problem.score.velocity(step, voice));
            }
        }
    }
    problem.finish(&mut score);
    Ok(Generation {
        score,
        network_evals: generation.network_evals,
    })
}

/// Passes frames of a transposed run on in the problem's own key.
struct Untransposed<'a> {
    inner: &'a mut dyn Observer,
    shift: i32,
}

impl Observer for Untransposed<'_> {
    fn wants_preview(&self) -> bool {
        self.inner.wants_preview()
    }

    fn on_level(&mut self, frame: &AnnealingFrame) -> ControlFlow<()> {
        let preview = frame.preview.and_then(|s| s.transposed(self.shift));
        let relaxation = frame.relaxation.map(|r| r.transposed(self.shift));
        self.inner.on_level(&AnnealingFrame {
            preview: preview.as_ref(),
            relaxation: relaxation.as_ref(),
            ..*frame
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn melody(pitches: &[u8]) -> Score {
        Score::from_pitches(Voice::Soprano, pitches, 4)
    }

    #[test]
    fn harmonize_frees_the_other_voices_only() {
        let p =
            harmonize_problem(&melody(&[72, 74, 76, 77]), Voice::Soprano, KeyChoice::Free).unwrap();
        assert_eq!(p.mask.free_count(), 16 * 3);
        assert!(!p.mask.is_free(3, Voice::Soprano));
    }

    #[test]
    fn continuation_adds_bars_and_harmonizes_a_lone_melody() {
        let p = continuation_problem(&melody(&[72, 74, 76, 77]), 2, KeyChoice::Free).unwrap();
        assert_eq!(p.score.len(), 16 + 32);
        assert!(p.mask.is_free(0, Voice::Alto));
        assert!(!p.mask.is_free(0, Voice::Soprano));
        assert!(p.mask.is_free(20, Voice::Soprano));
    }

    #[test]
    fn high_melodies_are_moved_into_range() {
        let vocab = Vocabulary::chorales();
        let p = harmonize_problem(&melody(&[86, 88, 84]), Voice::Soprano, KeyChoice::Free).unwrap();
        assert_eq!(fitting_transposition(&p, &vocab), Some(-12));
        let p = harmonize_problem(&melody(&[72, 74]), Voice::Soprano, KeyChoice::Free).unwrap();
        assert_eq!(fitting_transposition(&p, &vocab), Some(0));
        let p = harmonize_problem(&melody(&[40, 90]), Voice::Soprano, KeyChoice::Free).unwrap();
        assert_eq!(fitting_transposition(&p, &vocab), None);
        // A tune played in the bass register is moved up, by octaves first.
        let p = harmonize_problem(&melody(&[43, 47, 50]), Voice::Soprano, KeyChoice::Free).unwrap();
        assert_eq!(fitting_transposition(&p, &vocab), Some(24));
        let p = harmonize_problem(&melody(&[40, 61]), Voice::Soprano, KeyChoice::Free).unwrap();
        assert_eq!(fitting_transposition(&p, &vocab), Some(20));
    }

    #[test]
    fn auto_key_reads_the_known_notes() {
        let p = harmonize_problem(
            &melody(&[67, 71, 74, 79, 78, 79]),
            Voice::Soprano,
            KeyChoice::Auto,
        )
        .unwrap();
        assert_eq!(p.constraints.key, Some(Key::parse("G").unwrap()));
    }
}
