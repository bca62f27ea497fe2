//! Constraints on what the sampler may write: a key/scale, narrower voice
//! ranges. They act as masks on the token set of every free cell, at every
//! sampling step (the Langevin sampler clamps disallowed coordinates like
//! known ones; the Gibbs sampler never draws them) and at the final decode.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CantorError;
use crate::grid::{Score, Token, Voice, VOICES};
use crate::mask::Mask;
use crate::vocab::{Vocabulary, VoiceRange};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    Major,
    Minor,
}

/// A key: tonic pitch class (0 = C) and scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub tonic: u8,
    /// (Written `mode` before session 6; still read as such.)
    #[serde(alias = "mode")]
    pub scale: Scale,
}

const PITCH_CLASSES: [(&str, u8); 17] = [
    ("c", 0),
    ("c#", 1),
    ("db", 1),
    ("d", 2),
    ("d#", 3),
    ("eb", 3),
    ("e", 4),
    ("f", 5),
    ("f#", 6),
    ("gb", 6),
    ("g", 7),
    ("g#", 8),
    ("ab", 8),
    ("a", 9),
    ("a#", 10),
    ("bb", 10),
    ("b", 11),
];

/// Krumhansl–Kessler key profiles (probe-tone ratings), C major and C minor.
const MAJOR_PROFILE: [f64; 12] = [
    6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
];
const MINOR_PROFILE: [f64; 12] = [
    6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
];

impl Key {
    /// Parses `C`, `c minor`, `F# major`, `Bbm`, `eb`, `A minor`. A lone
    /// lower-case letter means minor, as in common shorthand.
    pub fn parse(text: &str) -> Result<Key, CantorError> {
        let trimmed = text.trim();
        let bad = || {
            CantorError::input(format!(
                "key '{text}' not understood: try 'C', 'G major', 'a minor', 'F#m' or 'Bb'"
            ))
        };
        let lower = trimmed.to_ascii_lowercase();
        let (name, rest) = match lower.split_once(' ') {
            Some((n, r)) => (n.to_string(), r.trim().to_string()),
            None => (lower.clone(), String::new()),
        };
        let (name, suffix_minor) = match name.strip_suffix('m') {
            Some(n) if !n.is_empty() => (n.to_string(), true),
            _ => (name, false),
        };
        let tonic = PITCH_CLASSES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, pc)| *pc)
            .ok_or_else(bad)?;
        let scale = match rest.as_str() {
            "" if suffix_minor => Scale::Minor,
            "" if trimmed.starts_with(|c: char| c.is_ascii_lowercase()) => Scale::Minor,
            "" | "major" | "maj" => Scale::Major,
            "minor" | "min" => Scale::Minor,
            _ => return Err(bad()),
        };
        Ok(Key { tonic, scale })
    }

    /// Pitch classes the key allows. Minor allows both forms of the sixth
    /// and seventh degrees (natural, harmonic and melodic minor), as Bach uses
    /// them all.
    pub fn pitch_classes(&self) -> [bool; 12] {
        let degrees: &[u8] = match self.scale {
            Scale::Major => &[0, 2, 4, 5, 7, 9, 11],
            Scale::Minor => &[0, 2, 3, 5, 7, 8, 9, 10, 11],
        };
        let mut allowed = [false; 12];
        for d in degrees {
            allowed[((self.tonic + d) % 12) as usize] = true;
        }
        allowed
    }

    /// Each pitch class's distance from the tonic in the key's tonal
    /// hierarchy: −ln of its Krumhansl–Kessler rating over the tonic's (0
    /// for the tonic, 0.2 for the dominant, about 1 for a chromatic note).
    pub fn tonal_distance(&self) -> [f32; 12] {
        let profile = match self.scale {
            Scale::Major => MAJOR_PROFILE,
            Scale::Minor => MINOR_PROFILE,
        };
        std::array::from_fn(|pc| {
            let degree = (pc + 12 - self.tonic as usize) % 12;
            (profile[0] / profile[degree]).ln() as f32
        })
    }

    pub fn contains(&self, pitch: u8) -> bool {
        self.pitch_classes()[(pitch % 12) as usize]
    }

    /// The key of `score`'s known cells alone (those `mask` does not free),
    /// by [`Key::estimate`].
    pub fn of_known(score: &Score, mask: &Mask) -> Option<Key> {
        Key::estimate(&known_notes(score, mask))
    }

    /// Estimates the key of the notes in `score` (duration-weighted
    /// pitch-class profile correlated against Krumhansl–Kessler profiles), or
    /// `None` when the score has no notes.
    pub fn estimate(score: &Score) -> Option<Key> {
        let mut histogram = [0.0f64; 12];
        for row in score.sounding_pitches() {
            for p in row.iter().flatten() {
                histogram[(*p % 12) as usize] += 1.0;
            }
        }
        if histogram.iter().all(|h| *h == 0.0) {
            return None;
        }
        let mut best = (f64::NEG_INFINITY, Key::parse("C").ok()?);
        for tonic in 0..12u8 {
            for (scale, profile) in [(Scale::Major, MAJOR_PROFILE), (Scale::Minor, MINOR_PROFILE)] {
                let rotated: Vec<f64> = (0..12)
                    .map(|i| profile[(i + 12 - tonic as usize) % 12])
                    .collect();
                let r = correlation(&histogram, &rotated);
                if r > best.0 {
                    best = (r, Key { tonic, scale });
                }
            }
        }
        Some(best.1)
    }
}

/// `score` with the cells `mask` frees silenced: the given music alone.
pub fn known_notes(score: &Score, mask: &Mask) -> Score {
    let mut only_known = score.clone();
    for step in 0..score.len() {
        for voice in Voice::ALL {
            if mask.is_free(step, voice) {
                only_known.set(step, voice, Token::Rest);
            }
        }
    }
    only_known.normalize();
    only_known
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 12] = [
            "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
        ];
        let scale = match self.scale {
            Scale::Major => "major",
            Scale::Minor => "minor",
        };
        write!(f, "{} {}", NAMES[self.tonic as usize], scale)
    }
}

/// Everything that narrows the token set of free cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraints {
    /// Only pitches of this key.
    pub key: Option<Key>,
    /// Narrower ranges than the model's vocabulary, per voice.
    pub ranges: [Option<VoiceRange>; VOICES],
}

impl Constraints {
    /// Whether a free cell of `voice` may take `token`.
    pub fn allows(&self, voice: Voice, token: Token) -> bool {
        match token {
            Token::Rest | Token::Hold => true,
            Token::Pitch(p) => {
                self.key.is_none_or(|k| k.contains(p))
                    && self.ranges[voice.index()].is_none_or(|r| r.contains(p))
            }
        }
    }

    /// Per voice, which indices of the vocabulary block are allowed.
    pub fn allowed_indices(&self, vocab: &Vocabulary) -> [Vec<bool>; VOICES] {
        Voice::ALL.map(|voice| {
            (0..vocab.voice_size(voice))
                .map(|i| self.allows(voice, vocab.token(voice, i)))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys() {
        assert_eq!(
            Key::parse("C").unwrap(),
            Key {
                tonic: 0,
                scale: Scale::Major
            }
        );
        assert_eq!(
            Key::parse("a minor").unwrap(),
            Key {
                tonic: 9,
                scale: Scale::Minor
            }
        );
        assert_eq!(
            Key::parse("F#m").unwrap(),
            Key {
                tonic: 6,
                scale: Scale::Minor
            }
        );
        assert_eq!(
            Key::parse("Bb major").unwrap(),
            Key {
                tonic: 10,
                scale: Scale::Major
            }
        );
        assert_eq!(
            Key::parse("e").unwrap(),
            Key {
                tonic: 4,
                scale: Scale::Minor
            }
        );
        assert!(Key::parse("H dorian").is_err());
    }

    #[test]
    fn estimates_the_key_of_a_scale() {
        // G major scale, tonic and dominant weighted.
        let pitches = [67, 69, 71, 72, 74, 76, 78, 79, 74, 67, 71, 79];
        let score = Score::from_pitches(Voice::Soprano, &pitches, 4);
        assert_eq!(
            Key::estimate(&score),
            Some(Key {
                tonic: 7,
                scale: Scale::Major
            })
        );
    }

    #[test]
    fn constraints_filter_pitches() {
        let c = Constraints {
            key: Some(Key::parse("C").unwrap()),
            ranges: [
                None,
                Some(VoiceRange {
                    lowest: 55,
                    highest: 70,
                }),
                None,
                None,
            ],
        };
        assert!(c.allows(Voice::Soprano, Token::Pitch(72)));
        assert!(!c.allows(Voice::Soprano, Token::Pitch(73)));
        assert!(!c.allows(Voice::Alto, Token::Pitch(72)));
        assert!(c.allows(Voice::Alto, Token::Hold));
    }
}
