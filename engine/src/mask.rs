//! Which cells the sampler writes.
//!
//! A [`Mask`] marks cells *free* (to be generated) or *known* (kept exactly
//! as given). Harmonize, continue and infill are all just masks over a score.

use std::ops::Range;

use rand::Rng;

use crate::error::CantorError;
use crate::grid::{Score, Token, Voice, VOICES};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    free: Vec<[bool; VOICES]>,
}

impl Mask {
    /// Every cell known.
    pub fn none(steps: usize) -> Mask {
        Mask {
            free: vec![[false; VOICES]; steps],
        }
    }

    /// Every cell free.
    pub fn all(steps: usize) -> Mask {
        Mask {
            free: vec![[true; VOICES]; steps],
        }
    }

    pub fn len(&self) -> usize {
        self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }

    pub fn is_free(&self, step: usize, voice: Voice) -> bool {
        self.free[step][voice.index()]
    }

    pub fn set_free(&mut self, step: usize, voice: Voice, free: bool) {
        self.free[step][voice.index()] = free;
    }

    /// Frees `steps` of the given voices.
    pub fn free_region(&mut self, steps: Range<usize>, voices: &[Voice]) {
        for step in steps {
            for voice in voices {
                self.free[step][voice.index()] = true;
            }
        }
    }

    pub fn free_count(&self) -> usize {
        self.free.iter().flatten().filter(|f| **f).count()
    }

    pub fn rows(&self) -> &[[bool; VOICES]] {
        &self.free
    }

    /// Steps `range` as a mask of their own.
    pub fn slice(&self, range: Range<usize>) -> Mask {
        Mask {
            free: self.free[range].to_vec(),
        }
    }

    /// Maximal runs of steps where some voice is free.
    pub fn free_spans(&self) -> Vec<Range<usize>> {
        let mut spans: Vec<Range<usize>> = Vec::new();
        for (t, row) in self.free.iter().enumerate() {
            if row.iter().any(|f| *f) {
                match spans.last_mut() {
                    Some(last) if last.end == t => last.end = t + 1,
                    _ => spans.push(t..t + 1),
                }
            }
        }
        spans
    }

    /// A random block of this mask's free cells, each taken with
    /// probability `share` (step by step, a step's voices in order), and at
    /// least one when any cell is free: the cells one Gibbs step redraws
    /// (the sampler, and the training windows that ask its question).
    pub fn random_block<R: Rng>(&self, share: f64, rng: &mut R) -> Mask {
        let mut block = Mask::none(self.len());
        let mut free = Vec::new();
        for step in 0..self.len() {
            for voice in Voice::ALL {
                if self.is_free(step, voice) {
                    free.push((step, voice));
                    if rng.random_bool(share) {
                        block.set_free(step, voice, true);
                    }
                }
            }
        }
        if block.free_count() == 0 && !free.is_empty() {
            let (step, voice) = free[rng.random_range(0..free.len())];
            block.set_free(step, voice, true);
        }
        block
    }

    /// Extends the mask over the tails of notes whose onset is free: a note
    /// that starts inside the region is regenerated whole, so its holds past
    /// the region must not be kept dangling.
    pub fn cover_note_tails(&mut self, score: &Score) {
        for voice in Voice::ALL {
            let v = voice.index();
            for step in 1..self.len().min(score.len()) {
                if !self.free[step][v]
                    && self.free[step - 1][v]
                    && score.get(step, voice) == Token::Hold
                {
                    self.free[step][v] = true;
                }
            }
        }
    }
}

/// A user's region to regenerate: some bars (all when `None`) of some voices
/// (all when empty), as in `--mask voice=alto,bars=1-8`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MaskRegion {
    /// Bars, counted from 1, inclusive.
    pub bars: Option<(usize, usize)>,
    pub voices: Vec<Voice>,
}

impl MaskRegion {
    /// Parses `bars=5-6`, `voice=alto`, `voice=alto+tenor,bars=1-8`, `bars=3`.
    pub fn parse(text: &str) -> Result<MaskRegion, CantorError> {
        let mut region = MaskRegion::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                CantorError::input(format!(
                    "mask '{text}': '{part}' should be key=value (bars=5-6 or voice=alto)"
                ))
            })?;
            match key.trim() {
                "bar" | "bars" => {
                    let value = value.trim();
                    let (a, b) = value.split_once('-').unwrap_or((value, value));
                    let parse = |s: &str| {
                        s.trim().parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                            CantorError::input(format!(
                                "mask '{text}': '{value}' is not a bar range like 5-6 (bars count from 1)"
                            ))
                        })
                    };
                    let (first, last) = (parse(a)?, parse(b)?);
                    if last < first {
                        return Err(CantorError::input(format!(
                            "mask '{text}': bar range {first}-{last} runs backwards"
                        )));
                    }
                    region.bars = Some((first, last));
                }
                "voice" | "voices" => {
                    for name in value.split(['+', '/', ' ']).filter(|n| !n.is_empty()) {
                        let voice = Voice::parse(name).ok_or_else(|| {
                            CantorError::input(format!(
                                "mask '{text}': unknown voice '{name}' (soprano, alto, tenor or bass)"
                            ))
                        })?;
                        region.voices.push(voice);
                    }
                }
                other => {
                    return Err(CantorError::input(format!(
                        "mask '{text}': unknown key '{other}' (use bars= and voice=)"
                    )))
                }
            }
        }
        if region.bars.is_none() && region.voices.is_empty() {
            return Err(CantorError::input(format!(
                "mask '{text}' selects nothing: give bars=… and/or voice=…"
            )));
        }
        Ok(region)
    }

    /// Frees this region of `mask`; a bar past the end of the score is an
    /// error naming how many bars there are.
    pub fn apply(&self, score: &Score, mask: &mut Mask) -> Result<(), CantorError> {
        let voices: &[Voice] = if self.voices.is_empty() {
            &Voice::ALL
        } else {
            &self.voices
        };
        let steps = match self.bars {
            None => 0..score.len(),
            Some((first, last)) => {
                let bars = score.bars();
                if last > bars.len() {
                    return Err(CantorError::input(format!(
                        "mask bars={first}-{last} is outside the piece, which has {} bars",
                        bars.len()
                    )));
                }
                bars[first - 1].start..bars[last - 1].end
            }
        };
        mask.free_region(steps, voices);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_regions() {
        assert_eq!(
            MaskRegion::parse("bars=5-6").unwrap(),
            MaskRegion {
                bars: Some((5, 6)),
                voices: vec![]
            }
        );
        assert_eq!(
            MaskRegion::parse("voice=alto,bars=1-8").unwrap(),
            MaskRegion {
                bars: Some((1, 8)),
                voices: vec![Voice::Alto]
            }
        );
        assert_eq!(
            MaskRegion::parse("voice=alto+tenor").unwrap().voices,
            vec![Voice::Alto, Voice::Tenor]
        );
        assert!(MaskRegion::parse("bars=6-5").is_err());
        assert!(MaskRegion::parse("voice=piccolo").is_err());
        assert!(MaskRegion::parse("bars=0-2").is_err());
    }

    #[test]
    fn a_region_past_the_end_is_an_error() {
        let score = Score::new(32);
        let mut mask = Mask::none(32);
        let err = MaskRegion::parse("bars=2-3")
            .unwrap()
            .apply(&score, &mut mask)
            .unwrap_err();
        assert!(err.to_string().contains("2 bars"), "{err}");
        MaskRegion::parse("bars=2")
            .unwrap()
            .apply(&score, &mut mask)
            .unwrap();
        assert_eq!(mask.free_count(), 16 * 4);
    }
}
