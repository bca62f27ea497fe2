//! A simple rule-based harmonizer, the floor any model must clear.
//!
//! Each free voice copies the melody's rhythm; at every melody onset it
//! takes the tone nearest its previous pitch from a diatonic triad of the
//! (estimated) key that contains the melody note — I, V, IV first, then vi,
//! ii, iii — kept inside the voice's textbook range and below the voice
//! above. Where no melody is known (free soprano), the baseline repeats the
//! last known bar before the free region.

use crate::constraints::{Key, Scale};
use crate::grid::{Note, Score, Token, Voice, DEFAULT_VELOCITY, VOICES};
use crate::mask::Mask;
use crate::metrics::TEXTBOOK_RANGES;
use crate::sampler::Problem;

/// Scale degrees (0-based) of triad roots in order of preference.
const ROOT_PREFERENCE: [usize; 6] = [0, 4, 3, 5, 1, 2];

/// Fills the free cells of `problem` by rule.
pub fn baseline(problem: &Problem) -> Score {
    let mut score = problem.score.clone();
    let melody = Voice::Soprano;
    let melody_known = (0..score.len()).any(|t| !problem.mask.is_free(t, melody));
    if melody_known {
        harmonize_by_rule(&mut score, &problem.mask, problem.constraints.key);
    }
    repeat_previous_bars(&mut score, &problem.mask);
    score.normalize();
    score
}

fn scale(key: Key) -> [u8; 7] {
    let degrees: [u8; 7] = match key.scale {
        Scale::Major => [0, 2, 4, 5, 7, 9, 11],
        // Harmonic minor, so that V is major as in the chorales.
        Scale::Minor => [0, 2, 3, 5, 7, 8, 11],
    };
    degrees.map(|d| (key.tonic + d) % 12)
}

fn harmonize_by_rule(score: &mut Score, mask: &Mask, key: Option<Key>) {
    let key = key
        .or_else(|| Key::estimate(&only(score, mask, Voice::Soprano)))
        .unwrap_or(Key {
            tonic: 0,
            scale: Scale::Major,
        });
    let scale = scale(key);
    let melody: Vec<Note> = score.voice_notes(Voice::Soprano);
    let mut last: [i32; VOICES] = [72, 64, 57, 48];
    for note in melody {
        let pc = note.pitch % 12;
        let chord: Vec<u8> = ROOT_PREFERENCE
            .iter()
            .map(|r| [scale[*r], scale[(*r + 2) % 7], scale[(*r + 4) % 7]])
            .find(|triad| triad.contains(&pc))
            .map(|t| t.to_vec())
            .unwrap_or_else(|| vec![pc, (pc + 4) % 12, (pc + 7) % 12]);
        let mut above = note.pitch as i32;
        for voice in [Voice::Alto, Voice::Tenor, Voice::Bass] {
            let range = TEXTBOOK_RANGES[voice.index()];
            let target = last[voice.index()];
            let pitch = (range.lowest as i32..=range.highest as i32)
                .filter(|p| chord.contains(&((*p % 12) as u8)) && *p < above)
                .min_by_key(|p| (p - target).abs())
                .unwrap_or(target.min(above - 1));
            above = pitch;
            last[voice.index()] = pitch;
            let free = (note.start..note.end()).all(|t| mask.is_free(t, voice));
            if free {
                score.write_note(Note {
                    voice,
                    pitch: pitch.clamp(0, 127) as u8,
                    start: note.start,
                    length: note.length,
                    velocity: DEFAULT_VELOCITY,
                });
            }
        }
    }
    // Free cells the melody's rhythm did not reach are rests.
    for t in 0..score.len() {
        for voice in [Voice::Alto, Voice::Tenor, Voice::Bass] {
            if mask.is_free(t, voice) && score.sounding(t, Voice::Soprano).is_none() {
                score.set(t, voice, Token::Rest);
            }
        }
    }
}

/// The notes of one voice's known cells only.
fn only(score: &Score, mask: &Mask, voice: Voice) -> Score {
    let mut out = Score::new(score.len());
    for t in 0..score.len() {
        if !mask.is_free(t, voice) {
            out.set(t, voice, score.get(t, voice));
        }
    }
    out.normalize();
    out
}

/// Free cells of voices with no known melody above them copy the cell one
/// bar earlier (rests where there is no earlier bar).
fn repeat_previous_bars(score: &mut Score, mask: &Mask) {
    let bars = score.bars();
    for voice in Voice::ALL {
        let soprano_free = |t: usize| mask.is_free(t, Voice::Soprano);
        for bar in &bars {
            for t in bar.clone() {
                if !mask.is_free(t, voice) || !soprano_free(t) {
                    continue;
                }
                let len = bar.len();
                let token = if t >= len {
                    score.get(t - len, voice)
                } else {
                    Token::Rest
                };
                score.set(t, voice, token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constraints::Constraints;
    use crate::task::{harmonize_problem, KeyChoice};

    #[test]
    fn harmonizes_in_the_melody_rhythm_with_chord_tones() {
        let melody = Score::from_pitches(Voice::Soprano, &[72, 74, 76, 72], 4);
        let mut problem = harmonize_problem(&melody, Voice::Soprano, KeyChoice::Free).unwrap();
        problem.constraints = Constraints {
            key: Some(Key::parse("C").unwrap()),
            ..Constraints::default()
        };
        let out = baseline(&problem);
        assert_eq!(
            out.voice_notes(Voice::Soprano),
            melody.voice_notes(Voice::Soprano)
        );
        for voice in [Voice::Alto, Voice::Tenor, Voice::Bass] {
            let notes = out.voice_notes(voice);
            assert_eq!(notes.len(), 4, "{voice}: {notes:?}");
            assert!(notes.iter().all(|n| n.length == 4));
        }
        // First chord: C major (melody C5).
        let first: Vec<u8> = Voice::ALL
            .iter()
            .map(|v| out.sounding(0, *v).unwrap() % 12)
            .collect();
        assert!(first.iter().all(|pc| [0, 4, 7].contains(pc)), "{first:?}");
    }
}
