//! Voice-leading and harmony metrics, for judging generated chorales against
//! Bach's on the same pieces.
//!
//! Counts are per 100 quarter-note beats. Motion is judged between
//! consecutive *sonorities* (the vertical slices where any voice changes).
//! - parallel fifths / octaves: two voices a perfect fifth (or octave /
//!   unison, modulo octaves) apart move in the same direction to the same
//!   interval;
//! - voice crossings: a voice goes below the next lower voice (adjacent
//!   pairs), counted when the crossing starts;
//! - wide spacing: soprano–alto or alto–tenor more than an octave apart,
//!   counted when it starts;
//! - out of range: notes outside the textbook SATB ranges;
//! - chord beats: beats where all four voices sound and their pitch classes
//!   form a complete triad or a seventh chord (fifth optional);
//! - pitch-class histogram overlap: Σ min(pᵢ, qᵢ) of two duration-weighted
//!   pitch-class distributions (1 = identical);
//! - exact match: fraction of compared cells whose sounding pitch equals the
//!   reference's.

use serde::{Deserialize, Serialize};

use crate::grid::{Score, Voice, STEPS_PER_QUARTER, VOICES};
use crate::mask::Mask;
use crate::vocab::VoiceRange;

/// Textbook SATB ranges (C4–G5, G3–D5, C3–G4, E2–C4) used by the
/// out-of-range metric. Bach himself strays outside them now and then.
pub const TEXTBOOK_RANGES: [VoiceRange; VOICES] = [
    VoiceRange {
        lowest: 60,
        highest: 79,
    },
    VoiceRange {
        lowest: 55,
        highest: 74,
    },
    VoiceRange {
        lowest: 48,
        highest: 67,
    },
    VoiceRange {
        lowest: 40,
        highest: 60,
    },
];

/// Raw counts for one or more pieces; add them up, then [`Tally::summary`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub beats: f64,
    pub parallel_fifths: usize,
    pub parallel_octaves: usize,
    pub voice_crossings: usize,
    pub wide_spacings: usize,
    pub out_of_range_notes: usize,
    pub notes: usize,
    pub full_beats: usize,
    pub chord_beats: usize,
    pub pitch_classes: [f64; 12],
    pub compared_cells: usize,
    pub matching_cells: usize,
}

/// Rates derived from a [`Tally`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub beats: f64,
    pub parallel_fifths_per_100_beats: f64,
    pub parallel_octaves_per_100_beats: f64,
    pub parallels_per_100_beats: f64,
    pub voice_crossings_per_100_beats: f64,
    pub wide_spacings_per_100_beats: f64,
    pub out_of_range_per_100_beats: f64,
    pub chord_beat_fraction: f64,
    /// Overlap with the reference histogram (None when there is none).
    pub pitch_class_overlap: Option<f64>,
    /// Exact-match rate against a reference (None when not compared).
    pub exact_match: Option<f64>,
}

impl Tally {
    /// Measures `score`. `region` selects the cells whose pitch classes and
    /// matches count (all cells when `None`); `reference` enables exact match.
    pub fn of(score: &Score, region: Option<&Mask>, reference: Option<&Score>) -> Tally {
        let mut t = Tally {
            beats: score.len() as f64 / STEPS_PER_QUARTER as f64,
            ..Tally::default()
        };
        let sounding = score.sounding_pitches();
        t.count_motion(&sounding);
        for voice in Voice::ALL {
            for note in score.voice_notes(voice) {
                t.notes += 1;
                if !TEXTBOOK_RANGES[voice.index()].contains(note.pitch) {
                    t.out_of_range_notes += 1;
                }
            }
        }
        for step in (0..score.len()).step_by(STEPS_PER_QUARTER) {
            if let Some(chord) = full_chord(&sounding[step]) {
                t.full_beats += 1;
                if chord {
                    t.chord_beats += 1;
                }
            }
        }
        let reference_sounding = reference.map(Score::sounding_pitches);
        for (step, row) in sounding.iter().enumerate() {
            for voice in Voice::ALL {
                if region.is_some_and(|m| !m.is_free(step, voice)) {
                    continue;
                }
                if let Some(p) = row[voice.index()] {
                    t.pitch_classes[(p % 12) as usize] += 1.0;
                }
                if let Some(r) = reference_sounding.as_ref().and_then(|r| r.get(step)) {
                    t.compared_cells += 1;
                    if r[voice.index()] == row[voice.index()] {
                        t.matching_cells += 1;
                    }
                }
            }
        }
        t
    }

    fn count_motion(&mut self, sounding: &[[Option<u8>; VOICES]]) {
        // Sonorities: the rows where something changes.
        let mut sonorities: Vec<[Option<u8>; VOICES]> = Vec::new();
        for row in sounding {
            if sonorities.last() != Some(row) {
                sonorities.push(*row);
            }
        }
        for pair in sonorities.windows(2) {
            let m = Motion::between(&pair[0], &pair[1]);
            self.parallel_fifths += m.parallel_fifths;
            self.parallel_octaves += m.parallel_octaves;
            self.voice_crossings += m.crossings;
            self.wide_spacings += m.wide_spacings;
        }
        if let Some(first) = sonorities.first() {
            // A piece may begin crossed or widely spaced.
            for i in 0..VOICES - 1 {
                if matches!((first[i], first[i + 1]), (Some(a), Some(b)) if a < b) {
                    self.voice_crossings += 1;
                }
            }
            for i in 0..2 {
                if matches!((first[i], first[i + 1]), (Some(a), Some(b)) if a as i32 - b as i32 > 12)
                {
                    self.wide_spacings += 1;
                }
            }
        }
    }

    pub fn add(&mut self, other: &Tally) {
        self.beats += other.beats;
        self.parallel_fifths += other.parallel_fifths;
        self.parallel_octaves += other.parallel_octaves;
        self.voice_crossings += other.voice_crossings;
        self.wide_spacings += other.wide_spacings;
        self.out_of_range_notes += other.out_of_range_notes;
        self.notes += other.notes;
        self.full_beats += other.full_beats;
        self.chord_beats += other.chord_beats;
        for i in 0..12 {
            self.pitch_classes[i] += other.pitch_classes[i];
        }
        self.compared_cells += other.compared_cells;
        self.matching_cells += other.matching_cells;
    }

    /// Rates, with the pitch-class overlap taken against `reference`.
    pub fn summary(&self, reference: Option<&Tally>) -> Summary {
        let per100 = |n: usize| {
            if self.beats > 0.0 {
                n as f64 * 100.0 / self.beats
            } else {
                0.0
            }
        };
        Summary {
            beats: self.beats,
            parallel_fifths_per_100_beats: per100(self.parallel_fifths),
            parallel_octaves_per_100_beats: per100(self.parallel_octaves),
            parallels_per_100_beats: per100(self.parallel_fifths + self.parallel_octaves),
            voice_crossings_per_100_beats: per100(self.voice_crossings),
            wide_spacings_per_100_beats: per100(self.wide_spacings),
            out_of_range_per_100_beats: per100(self.out_of_range_notes),
            chord_beat_fraction: if self.full_beats > 0 {
                self.chord_beats as f64 / self.full_beats as f64
            } else {
                0.0
            },
            pitch_class_overlap: reference
                .map(|r| histogram_overlap(&self.pitch_classes, &r.pitch_classes)),
            exact_match: (self.compared_cells > 0)
                .then(|| self.matching_cells as f64 / self.compared_cells as f64),
        }
    }
}

/// What happens between two consecutive sonorities (rows of sounding
/// pitches, soprano first): the counts [`Tally`] adds up, and the energy the
/// voice-leading rules of [`crate::rules`] charge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Motion {
    pub parallel_fifths: usize,
    pub parallel_octaves: usize,
    /// Adjacent voices that cross here (and did not before).
    pub crossings: usize,
    /// Soprano–alto or alto–tenor gaps that open past an octave here.
    pub wide_spacings: usize,
}

impl Motion {
    pub fn between(before: &[Option<u8>; VOICES], after: &[Option<u8>; VOICES]) -> Motion {
        let mut m = Motion::default();
        for i in 0..VOICES {
            for j in i + 1..VOICES {
                let (Some(a0), Some(b0), Some(a1), Some(b1)) =
                    (before[i], before[j], after[i], after[j])
                else {
                    continue;
                };
                let (da, db) = (a1 as i32 - a0 as i32, b1 as i32 - b0 as i32);
                if da == 0 || db == 0 || da.signum() != db.signum() {
                    continue;
                }
                let (i0, i1) = (
                    (a0 as i32 - b0 as i32).rem_euclid(12),
                    (a1 as i32 - b1 as i32).rem_euclid(12),
                );
                if i0 == 7 && i1 == 7 {
                    m.parallel_fifths += 1;
                } else if i0 == 0 && i1 == 0 {
                    m.parallel_octaves += 1;
                }
            }
        }
        for i in 0..VOICES - 1 {
            let crossed = |row: &[Option<u8>; VOICES]| matches!((row[i], row[i + 1]), (Some(a), Some(b)) if a < b);
            if crossed(after) && !crossed(before) {
                m.crossings += 1;
            }
        }
        for i in 0..2 {
            let wide = |row: &[Option<u8>; VOICES]| matches!((row[i], row[i + 1]), (Some(a), Some(b)) if a as i32 - b as i32 > 12);
            if wide(after) && !wide(before) {
                m.wide_spacings += 1;
            }
        }
        m
    }
}

/// Whether all four voices sound in `row` and form a triad or seventh chord
/// ([`is_triad_or_seventh`]); `None` when some voice is silent.
pub fn full_chord(row: &[Option<u8>; VOICES]) -> Option<bool> {
    let mut pcs = [false; 12];
    for p in row {
        pcs[(((*p)?) % 12) as usize] = true;
    }
    Some(is_triad_or_seventh(&pcs))
}

/// Σ min(pᵢ, qᵢ) of the two histograms after normalising each to sum 1.
pub fn histogram_overlap(a: &[f64; 12], b: &[f64; 12]) -> f64 {
    let (sa, sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    if sa == 0.0 || sb == 0.0 {
        return 0.0;
    }
    (0..12).map(|i| (a[i] / sa).min(b[i] / sb)).sum()
}

/// Complete triads (major, minor, diminished, augmented) and seventh chords
/// (dominant, major, minor, half-diminished, diminished), the latter also
/// without their fifth.
pub fn is_triad_or_seventh(pcs: &[bool; 12]) -> bool {
    const SHAPES: [&[u8]; 13] = [
        &[0, 4, 7],
        &[0, 3, 7],
        &[0, 3, 6],
        &[0, 4, 8],
        &[0, 4, 7, 10],
        &[0, 4, 7, 11],
        &[0, 3, 7, 10],
        &[0, 3, 6, 10],
        &[0, 3, 6, 9],
        &[0, 4, 10],
        &[0, 4, 11],
        &[0, 3, 10],
        &[0, 3, 9],
    ];
    let count = pcs.iter().filter(|p| **p).count();
    (0..12).filter(|r| pcs[*r]).any(|root| {
        SHAPES.iter().any(|shape| {
            shape.len() == count && shape.iter().all(|i| pcs[(root + *i as usize) % 12])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Note;

    fn chords(rows: &[[u8; 4]]) -> Score {
        let mut notes = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            for (v, p) in row.iter().enumerate() {
                notes.push(Note {
                    voice: Voice::from_index(v),
                    pitch: *p,
                    start: i * 4,
                    length: 4,
                    velocity: 80,
                });
            }
        }
        Score::from_notes(rows.len() * 4, &notes)
    }

    #[test]
    fn finds_parallel_fifths_and_octaves() {
        // C major to D minor with soprano/bass in octaves and alto/bass in fifths, all rising.
        let s = chords(&[[72, 67, 64, 48], [74, 69, 65, 50]]);
        let t = Tally::of(&s, None, None);
        assert_eq!(t.parallel_octaves, 1); // S–B
        assert_eq!(t.parallel_fifths, 1); // A–B
        assert_eq!(t.chord_beats, 2);
        // Contrary motion: no parallels.
        let s = chords(&[[72, 67, 64, 48], [71, 67, 62, 43]]);
        let t = Tally::of(&s, None, None);
        assert_eq!((t.parallel_fifths, t.parallel_octaves), (0, 0));
    }

    #[test]
    fn counts_crossings_spacing_and_range() {
        let s = chords(&[[72, 67, 64, 48], [65, 67, 50, 48], [84, 67, 52, 48]]);
        let t = Tally::of(&s, None, None);
        assert_eq!(t.voice_crossings, 1); // soprano under alto in the second chord
        assert_eq!(t.wide_spacings, 2); // alto–tenor in the second, soprano–alto in the third
        assert_eq!(t.out_of_range_notes, 1); // C6 in the soprano
    }

    #[test]
    fn chord_recognition() {
        let set = |ps: &[u8]| {
            let mut pcs = [false; 12];
            for p in ps {
                pcs[*p as usize % 12] = true;
            }
            pcs
        };
        assert!(is_triad_or_seventh(&set(&[60, 64, 67])));
        assert!(is_triad_or_seventh(&set(&[67, 71, 62, 65])));
        assert!(is_triad_or_seventh(&set(&[67, 71, 65])));
        assert!(!is_triad_or_seventh(&set(&[60, 62, 64])));
        assert!(!is_triad_or_seventh(&set(&[60, 67])));
    }

    #[test]
    fn overlap_and_exact_match() {
        let a = chords(&[[72, 67, 64, 48]]);
        let b = chords(&[[72, 67, 64, 55]]);
        let ta = Tally::of(&a, None, Some(&b));
        assert_eq!(ta.summary(None).exact_match, Some(0.75));
        let tb = Tally::of(&b, None, None);
        let overlap = ta.summary(Some(&tb)).pitch_class_overlap.unwrap();
        assert!((overlap - 0.75).abs() < 1e-9, "{overlap}");
    }
}
