//! Voice-leading rules as an energy the samplers add to the network's
//! log-probabilities: the product of experts p(x)·exp(−λ·E(x)).
//!
//! E(x) counts, in the same way as the [`crate::metrics`] that judge the
//! result (one shared [`Motion`]): parallel fifths and octaves between
//! consecutive sonorities, voice crossings and over-an-octave spacings as
//! they start, notes outside the textbook SATB ranges, beats where all
//! four voices sound but do not form a triad or seventh chord, melodic
//! leaps no chorale part makes (past the octave, sevenths, tritones), and
//! each sixteenth a voice is silent while another sounds (so that a rest,
//! which commits none of the other faults, is not the way out of them). No
//! rule charges a note for moving, or rewards one for holding. λ
//! ([`SamplerSettings::rules`](crate::SamplerSettings::rules)) is in nats per
//! fault: 0 leaves the network alone, 2 makes one parallel fifth cost as much
//! as choosing a note the network finds e² ≈ 7 times less likely.
//!
//! The Langevin sampler applies it at its final decode (iterated conditional
//! modes over the free cells, starting from the per-cell argmax, at no extra
//! network evaluation); the Gibbs sampler multiplies each conditional it
//! draws from by exp(−λ·ΔE) given the cells around it.

use crate::character::{is_change, Character};
use crate::grid::{Score, Token, Voice, STEPS_PER_QUARTER, VOICES};
use crate::harmony::ChordCosts;
use crate::metrics::{full_chord, plain_triad, silent_voices, Motion, TEXTBOOK_RANGES};

/// Relative cost of each kind of fault (times λ).
const PARALLEL: f32 = 1.0;
const CROSSING: f32 = 1.0;
const WIDE_SPACING: f32 = 0.5;
const OUT_OF_RANGE: f32 = 1.0;
const NOT_A_CHORD: f32 = 1.0;
const BAD_LEAP: f32 = 1.0;
/// Per sixteenth a voice is silent while another sounds: a beat of it
/// costs as much as one other fault. Without it a rest was the one token
/// no rule could charge, and the rules made the inner voices drop out
/// (4.5% of the composed tenor's sixteenths silent, Bach's 0.9%, nearly
/// all of them breaths the four voices take together).
const DROPPED_VOICE: f32 = 1.0 / STEPS_PER_QUARTER as f32;

/// The dropped-voice faults of one row of sounding pitches.
fn dropped_energy(row: &[Option<u8>; VOICES]) -> f32 {
    DROPPED_VOICE * silent_voices(row).iter().filter(|s| **s).count() as f32
}

/// A melodic interval (semitones, successive notes of one voice) that the
/// textbooks forbid in a chorale part: a leap past the octave, a seventh,
/// or a tritone. Bach's inner voices and bass make them well under once in
/// a hundred beats (the JSB validation split).
pub fn is_bad_leap(semitones: i32) -> bool {
    let size = semitones.abs();
    size > 12 || size == 10 || size == 11 || size == 6
}

/// The faults of the melodic step from `from` to `to` in one voice's line
/// (a rest breaks the line; a held or repeated pitch is no step).
fn leap_energy(from: Option<u8>, to: Option<u8>) -> f32 {
    match (from, to) {
        (Some(a), Some(b)) if a != b && is_bad_leap(b as i32 - a as i32) => BAD_LEAP,
        _ => 0.0,
    }
}

/// Energy of one sonority change.
fn motion_energy(before: &[Option<u8>; VOICES], after: &[Option<u8>; VOICES]) -> f32 {
    let m = Motion::between(before, after);
    PARALLEL * (m.parallel_fifths + m.parallel_octaves) as f32
        + CROSSING * m.crossings as f32
        + WIDE_SPACING * m.wide_spacings as f32
}

/// A cell's rule energy in two parts ([`Voicing::local_faults`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Faults {
    /// Parallels, crossings, wide spacing and bad leaps.
    pub lines: f32,
    /// Beats that are no chord, notes out of range.
    pub chords: f32,
}

/// A score being written cell by cell, with its sounding pitches kept up to
/// date so that the energy a candidate token would add is cheap to find.
pub(crate) struct Voicing {
    score: Score,
    sounding: Vec<[Option<u8>; VOICES]>,
    rows: Vec<[Option<u8>; VOICES]>,
}

impl Voicing {
    pub(crate) fn new(score: Score) -> Voicing {
        let sounding = score.sounding_pitches();
        Voicing {
            score,
            sounding,
            rows: Vec::new(),
        }
    }

    pub(crate) fn score(&self) -> &Score {
        &self.score
    }

    pub(crate) fn into_score(self) -> Score {
        self.score
    }

    /// The pitch `voice` sounds just before `step`, if any.
    pub(crate) fn pitch_before(&self, step: usize, voice: Voice) -> Option<u8> {
        step.checked_sub(1)
            .and_then(|s| self.sounding[s][voice.index()])
    }

    /// Whether `voice` sounds just before `step` (so a hold may follow).
    pub(crate) fn sounding_before(&self, step: usize, voice: Voice) -> bool {
        step > 0 && self.sounding[step - 1][voice.index()].is_some()
    }

    /// The steps whose sounding pitch in `voice` follows the token at `step`:
    /// `step` and the holds after it.
    fn span(&self, step: usize, voice: Voice) -> std::ops::Range<usize> {
        let cells = self.score.cells();
        let mut end = step + 1;
        while end < cells.len() && cells[end][voice.index()] == Token::Hold {
            end += 1;
        }
        step..end
    }

    /// What `token` at (`step`, `voice`) would sound like over `span`.
    fn sounds_as(&self, step: usize, voice: Voice, token: Token) -> Option<u8> {
        match token {
            Token::Rest => None,
            Token::Pitch(p) => Some(p),
            Token::Hold if step == 0 => None,
            Token::Hold => self.sounding[step - 1][voice.index()],
        }
    }

    /// The energy of the sonorities around (`step`, `voice`) if it held
    /// `token`. Only differences between tokens of the same cell mean
    /// anything: everything this cell cannot change is left out.
    #[cfg(test)]
    pub(crate) fn local_energy(&mut self, step: usize, voice: Voice, token: Token) -> f32 {
        let faults = self.local_faults(step, voice, token);
        faults.lines + faults.chords
    }

    /// [`Voicing::local_energy`] in its two parts: the lines' faults
    /// (parallels, crossings, spacing, leaps), which more notes give more
    /// chances to make, and the chords' and ranges' (beats that are no
    /// chord, notes out of range).
    pub(crate) fn local_faults(&mut self, step: usize, voice: Voice, token: Token) -> Faults {
        let span = self.span(step, voice);
        let pitch = self.sounds_as(step, voice, token);
        let v = voice.index();
        // The unchanged rows either side bound every sonority change the
        // cell can make.
        let lo = step.saturating_sub(1);
        let hi = span.end.min(self.sounding.len() - 1);
        self.rows.clear();
        for s in lo..=hi {
            let mut row = self.sounding[s];
            if span.contains(&s) {
                row[v] = pitch;
            }
            if self.rows.last() != Some(&row) {
                self.rows.push(row);
            }
        }
        let motion: f32 = self
            .rows
            .windows(2)
            .map(|pair| motion_energy(&pair[0], &pair[1]))
            .sum();
        let mut chords = 0.0;
        for s in span.clone() {
            let mut row = self.sounding[s];
            row[v] = pitch;
            chords += dropped_energy(&row);
            if s % STEPS_PER_QUARTER == 0 && full_chord(&row) == Some(false) {
                chords += NOT_A_CHORD;
            }
        }
        if let Token::Pitch(p) = token {
            if !TEXTBOOK_RANGES[v].contains(p) {
                chords += OUT_OF_RANGE;
            }
        }
        // The voice's own line: into the span and out of it.
        let before = step.checked_sub(1).and_then(|s| self.sounding[s][v]);
        let after = self.sounding.get(span.end).and_then(|row| row[v]);
        Faults {
            lines: motion + leap_energy(before, pitch) + leap_energy(pitch, after),
            chords,
        }
    }

    /// What `token` at (`step`, `voice`) would cost where each sixteenth
    /// sounding pitch class `pc` costs `costs[pc]`: over the cell and the
    /// holds after it, 0 when it sounds nothing.
    pub(crate) fn key_cost(
        &self,
        step: usize,
        voice: Voice,
        token: Token,
        costs: &[f32; 12],
    ) -> f32 {
        match self.sounds_as(step, voice, token) {
            Some(p) => costs[(p % 12) as usize] * self.span(step, voice).len() as f32,
            None => 0.0,
        }
    }

    /// The character pad's energy ([`crate::character`]) around (`step`,
    /// `voice`) if it held `token`, with `characters` the pad's position at
    /// each step: the pitch changes into its span and out of it, and the
    /// beats in its span that sound a plain triad, each priced at its own
    /// step. As for [`Voicing::local_energy`], only differences between
    /// tokens mean anything.
    pub(crate) fn character_energy(
        &self,
        step: usize,
        voice: Voice,
        token: Token,
        characters: &[Character],
    ) -> f32 {
        let span = self.span(step, voice);
        let pitch = self.sounds_as(step, voice, token);
        let v = voice.index();
        let mut energy = 0.0;
        let before = step.checked_sub(1).and_then(|s| self.sounding[s][v]);
        if is_change(before, pitch) {
            energy += characters[step].change_energy(step);
        }
        if let Some(row) = self.sounding.get(span.end) {
            if is_change(pitch, row[v]) {
                energy += characters[span.end].change_energy(span.end);
            }
        }
        for s in span.filter(|s| s % STEPS_PER_QUARTER == 0) {
            let plain = characters[s].plain_triad_energy();
            if plain == 0.0 {
                continue;
            }
            let mut row = self.sounding[s];
            row[v] = pitch;
            if plain_triad(&row) == Some(true) {
                energy += plain;
            }
        }
        energy
    }

    /// The chord prior's cost ([`ChordCosts`]) of the beats in the span of
    /// (`step`, `voice`) if it held `token`, and of the root motion into
    /// and out of them (`fermatas`: per step, whether it lies under one;
    /// `ending`: the steps of the piece's last chord and the tonic it
    /// should have). As for [`Voicing::local_energy`], only differences
    /// between tokens mean anything.
    pub(crate) fn chord_cost(
        &self,
        (step, voice, token): (usize, Voice, Token),
        costs: &ChordCosts,
        fermatas: &[bool],
        ending: Option<&(std::ops::Range<usize>, u8)>,
    ) -> f32 {
        let pitch = self.sounds_as(step, voice, token);
        let span = self.span(step, voice);
        let row_at = |s: usize| {
            let mut row = self.sounding[s];
            if span.contains(&s) {
                row[voice.index()] = pitch;
            }
            row
        };
        let mut cost = 0.0;
        let mut last_beat = None;
        let fermata = |s: usize| fermatas.get(s).copied().unwrap_or(false);
        for s in span.clone() {
            // A phrase's last chord is heard at the fermata's last step too,
            // where a voice moving after the beat would otherwise escape.
            if s % STEPS_PER_QUARTER != 0 {
                if fermata(s) && !fermata(s + 1) {
                    cost += costs.of(&row_at(s), true);
                }
                continue;
            }
            let row = row_at(s);
            cost += costs.of(&row, fermata(s));
            if s >= STEPS_PER_QUARTER {
                cost += costs.motion(&row_at(s - STEPS_PER_QUARTER), &row);
            }
            last_beat = Some(s);
        }
        // The piece's last chord: on its beats and on its very last step,
        // where a note moving after the last beat would otherwise escape.
        if let Some((steps, tonic)) = ending {
            let last = steps.end.saturating_sub(1);
            for s in span.clone().filter(|s| steps.contains(s)) {
                if s % STEPS_PER_QUARTER == 0 || s == last {
                    cost += costs.ending(&row_at(s), *tonic);
                }
            }
        }
        if let Some(b) = last_beat.filter(|b| b + STEPS_PER_QUARTER < self.sounding.len()) {
            cost += costs.motion(&row_at(b), &row_at(b + STEPS_PER_QUARTER));
        }
        cost
    }

    /// Turns holds that follow silence into rests ([`Score::normalize`]);
    /// they sound as silence already, so the sounding pitches stay.
    pub(crate) fn normalize(&mut self) {
        self.score.normalize();
    }

    /// Writes `token` at (`step`, `voice`).
    pub(crate) fn set(&mut self, step: usize, voice: Voice, token: Token) {
        let span = self.span(step, voice);
        let pitch = self.sounds_as(step, voice, token);
        self.score.set(step, voice, token);
        for s in span {
            self.sounding[s][voice.index()] = pitch;
        }
    }
}

/// The whole-score energy E(x) (for tests and reports): the same faults
/// [`Voicing::local_energy`] charges, summed over the piece.
pub fn energy(score: &Score) -> f32 {
    let sounding = score.sounding_pitches();
    let mut rows: Vec<[Option<u8>; VOICES]> = Vec::new();
    for row in &sounding {
        if rows.last() != Some(row) {
            rows.push(*row);
        }
    }
    let mut e: f32 = rows
        .windows(2)
        .map(|pair| motion_energy(&pair[0], &pair[1]))
        .sum();
    for (s, row) in sounding.iter().enumerate() {
        e += dropped_energy(row);
        if s % STEPS_PER_QUARTER == 0 && full_chord(row) == Some(false) {
            e += NOT_A_CHORD;
        }
    }
    for voice in Voice::ALL {
        for note in score.voice_notes(voice) {
            if !TEXTBOOK_RANGES[voice.index()].contains(note.pitch) {
                e += OUT_OF_RANGE;
            }
        }
        let v = voice.index();
        for pair in sounding.windows(2) {
            e += leap_energy(pair[0][v], pair[1][v]);
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chorale(rows: &[[u8; 4]]) -> Score {
        Score::from_chords(rows, STEPS_PER_QUARTER)
    }

    #[test]
    fn energy_counts_the_faults_the_metrics_count() {
        // C major to D minor with the outer voices in parallel octaves and
        // tenor and bass in parallel fifths: two parallels, both chords.
        let parallel = chorale(&[[72, 64, 55, 48], [74, 65, 57, 50]]);
        assert_eq!(energy(&parallel), 2.0);
        // C major (first inversion) to D minor with the bass against the
        // soprano: no faults.
        let contrary = chorale(&[[72, 64, 55, 52], [74, 65, 57, 50]]);
        assert_eq!(energy(&contrary), 0.0);
        // A non-chord beat and an out-of-range bass.
        let cluster = chorale(&[[72, 71, 62, 36]]);
        assert_eq!(energy(&cluster), NOT_A_CHORD + OUT_OF_RANGE);
        // A bass leaping up a tenth, then down a seventh, then a tritone;
        // steps, thirds, sixths and the octave are no faults.
        // (The bass alone: the three silent voices are dropped throughout.)
        let dropped_others = |s: &Score| 3.0 * DROPPED_VOICE * s.len() as f32;
        let leaps = Score::from_pitches(Voice::Bass, &[41, 56, 45, 51], 4);
        assert_eq!(energy(&leaps), 3.0 * BAD_LEAP + dropped_others(&leaps));
        let fine = Score::from_pitches(Voice::Bass, &[41, 43, 46, 55, 43, 43], 4);
        assert_eq!(energy(&fine), dropped_others(&fine));
        // The tenor drops out for a beat of three C major chords: a fault,
        // as its beat is no four-voice chord; all four resting is a breath.
        let mut dropped = chorale(&[[72, 64, 55, 48], [72, 64, 55, 48], [72, 64, 55, 48]]);
        for step in 4..8 {
            dropped.set(step, Voice::Tenor, Token::Rest);
        }
        dropped.set(8, Voice::Tenor, Token::Pitch(55));
        assert_eq!(energy(&dropped), 1.0);
        let mut breath = chorale(&[[72, 64, 55, 48], [72, 64, 55, 48]]);
        for voice in Voice::ALL {
            breath.set(4, voice, Token::Rest);
            breath.set(5, voice, Token::Hold);
        }
        assert_eq!(energy(&breath), 0.0);
    }

    #[test]
    fn local_energy_differences_match_whole_score_differences() {
        let score = chorale(&[
            [72, 67, 64, 48],
            [74, 69, 62, 50],
            [76, 67, 60, 48],
            [77, 69, 60, 53],
        ]);
        let mut voicing = Voicing::new(score.clone());
        for step in [4, 8, 9, 12] {
            for voice in [Voice::Alto, Voice::Tenor, Voice::Bass] {
                let tokens = [
                    score.get(step, voice),
                    Token::Pitch(57),
                    Token::Pitch(62),
                    // Leaps past the octave, a seventh, a tritone.
                    Token::Pitch(77),
                    Token::Pitch(38),
                    Token::Pitch(58),
                    Token::Hold,
                    Token::Rest,
                ];
                for a in tokens {
                    for b in tokens {
                        let local = voicing.local_energy(step, voice, b)
                            - voicing.local_energy(step, voice, a);
                        let mut sa = score.clone();
                        sa.set(step, voice, a);
                        let mut sb = score.clone();
                        sb.set(step, voice, b);
                        let whole = energy(&sb) - energy(&sa);
                        assert_eq!(local, whole, "step {step} {voice}: {a:?} → {b:?}");
                    }
                }
            }
        }
        // The character pad's energy too, at both signs of each axis, and
        // along a lane that changes at step 8 (a note held across the
        // change is priced into it at one step and out at the other).
        let busy_plain = Character {
            activity: 0.7,
            tension: -0.4,
        };
        let calm_tense = Character {
            activity: -1.0,
            tension: 1.0,
        };
        let len = score.len();
        let lane = crate::character::Lane::new([(8, calm_tense)]).unwrap();
        for characters in [
            vec![busy_plain; len],
            vec![calm_tense; len],
            lane.per_step(len, busy_plain),
        ] {
            for step in [4, 8, 9, 12, 13] {
                for voice in Voice::ALL {
                    let tokens = [
                        score.get(step, voice),
                        Token::Pitch(57),
                        Token::Pitch(64),
                        Token::Pitch(67),
                        Token::Hold,
                        Token::Rest,
                    ];
                    for a in tokens {
                        for b in tokens {
                            let local = voicing.character_energy(step, voice, b, &characters)
                                - voicing.character_energy(step, voice, a, &characters);
                            let mut sa = score.clone();
                            sa.set(step, voice, a);
                            let mut sb = score.clone();
                            sb.set(step, voice, b);
                            let whole = crate::character::energy_along(&sb, &characters)
                                - crate::character::energy_along(&sa, &characters);
                            assert!(
                                (local - whole).abs() < 1e-5,
                                "step {step} {voice}: {a:?} → {b:?}: {local} vs {whole}"
                            );
                        }
                    }
                }
            }
        }
        // The chord prior's too: the beats, the root motion between them,
        // and a fermata whose last step falls off the beat.
        let mut phrased = score.clone();
        phrased.set_fermatas(vec![8..14]);
        let prior = crate::harmony::ChordPrior::learn(&[chorale(&[
            [72, 67, 64, 48],
            [74, 67, 62, 43],
            [72, 64, 57, 45],
            [71, 67, 62, 43],
        ])]);
        let costs = prior.table();
        let fermatas: Vec<bool> = (0..len).map(|s| phrased.is_fermata(s)).collect();
        let chord_voicing = Voicing::new(phrased.clone());
        for step in [4, 8, 9, 12, 13] {
            for voice in Voice::ALL {
                let tokens = [
                    phrased.get(step, voice),
                    Token::Pitch(55),
                    Token::Pitch(64),
                    Token::Pitch(67),
                    Token::Hold,
                    Token::Rest,
                ];
                for a in tokens {
                    for b in tokens {
                        let local =
                            chord_voicing.chord_cost((step, voice, b), &costs, &fermatas, None)
                                - chord_voicing.chord_cost(
                                    (step, voice, a),
                                    &costs,
                                    &fermatas,
                                    None,
                                );
                        let mut sa = phrased.clone();
                        sa.set(step, voice, a);
                        let mut sb = phrased.clone();
                        sb.set(step, voice, b);
                        let whole = costs.energy(&sb) - costs.energy(&sa);
                        assert!(
                            (local - whole).abs() < 1e-4,
                            "chords, step {step} {voice}: {a:?} → {b:?}: {local} vs {whole}"
                        );
                    }
                }
            }
        }
        // Writing keeps the sounding pitches in step with the score.
        voicing.set(4, Voice::Tenor, Token::Hold);
        assert_eq!(voicing.score().sounding(5, Voice::Tenor), Some(64));
        assert_eq!(voicing.sounding[7], voicing.score().sounding_pitches()[7]);
    }
}
