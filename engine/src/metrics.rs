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
//!
//! How the voices move, from each voice's sounding-pitch line on the 16th
//! grid (a hold continues the pitch, a rest is silence), over the cells that
//! are free for that voice:
//! - a *note* is counted where the sounding pitch changes to a pitch (rest →
//!   pitch, or pitch → another pitch); a re-struck same pitch is the same
//!   note. Notes per beat = notes / (free cells / 4), per voice;
//! - melodic intervals: signed semitones between successive notes of a line
//!   inside the free stretch (a rest or a known cell ends the line), binned
//!   −12…+12 plus one bin for larger leaps each way;
//! - note durations: run length in steps of the same sounding pitch from a
//!   note's onset, cut at the end of the free stretch, binned
//!   1, 2, 3, 4, 5–6, 7–8, 9–12, 13–16, > 16;
//! - leaps past an octave (|interval| > 12), all voices together, per 100
//!   beats;
//! - repeated notes: a note struck again on the pitch sounding just before
//!   (heard as a new note, not counted as one above), per 100 beats; the
//!   JSB grid has none (a repeated pitch there is one held note);
//! - dropped voices: sixteenths where a voice is silent while another
//!   sounds ([`silent_voices`]), in beats per 100 beats — a part falling
//!   out of the texture, where Bach's voices breathe together;
//! - the histograms are compared with a reference's (Bach's on the same
//!   bars) by [`histogram_overlap`]'s intersection.
//!
//! For continuations ([`Tally::of_continuation`]): pitch-class-profile
//! overlap of the new bars with the prompt, and whether the last chord is
//! the tonic or dominant of the prompt's key ([`ends_on_tonic_or_dominant`]).

use serde::{Deserialize, Serialize};

use crate::constraints::{Key, Scale};
use crate::grid::{Score, Token, Voice, STEPS_PER_QUARTER, VOICES};
use crate::harmony::{HarmonySummary, HarmonyTally};
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
    /// Beats whose four voices sound a plain major or minor triad
    /// ([`plain_triad`]), of the `full_beats`. Older reports lack it.
    #[serde(default)]
    pub plain_triad_beats: usize,
    pub pitch_classes: [f64; 12],
    pub compared_cells: usize,
    pub matching_cells: usize,
    /// Per voice: cells free for that voice (where its line was measured).
    pub voice_free_steps: [usize; VOICES],
    /// Per voice: notes as changes of the sounding pitch (see the module
    /// docs); a re-struck same pitch is not counted.
    pub pitch_changes: [usize; VOICES],
    /// Per voice: melodic intervals between successive notes, binned by
    /// [`interval_bin`].
    pub interval_counts: [[usize; INTERVAL_BINS]; VOICES],
    /// Per voice: note durations in steps, binned by [`duration_bin`].
    pub duration_counts: [[usize; DURATION_BINS]; VOICES],
    /// Melodic leaps larger than an octave, all voices.
    pub wide_leaps: usize,
    /// Notes struck on the pitch sounding just before, all voices, over
    /// the free cells. Older reports lack it.
    #[serde(default)]
    pub repeated_notes: usize,
    /// Free cells (step × voice) silent while another voice sounds. Older
    /// reports lack it.
    #[serde(default)]
    pub dropped_voice_cells: usize,
    /// Continuations measured by [`Tally::of_continuation`].
    pub prompts: usize,
    /// Σ over continuations of the new bars' pitch-class overlap with the
    /// prompt.
    pub prompt_overlap_sum: f64,
    /// Per bar of the continuation (the first [`PROMPT_OVERLAP_BARS`]):
    /// Σ of that bar's pitch-class overlap with the prompt, and how many
    /// continuations had the bar — does the key hold as the music moves
    /// away from the prompt? Older reports lack it.
    #[serde(default)]
    pub prompt_overlap_by_bar: [f64; PROMPT_OVERLAP_BARS],
    #[serde(default)]
    pub prompt_bars: [usize; PROMPT_OVERLAP_BARS],
    /// Continuations whose last chord is the prompt key's tonic or dominant.
    pub tonic_dominant_endings: usize,
    /// Continuations: sounding cells (step × voice) of the new bars, and
    /// how many of them sound a pitch class outside the prompt's key (its
    /// scale by [`Key::pitch_classes`], key by [`Key::estimate`]): the
    /// chromatic share, to read beside the pitch-class overlap (a
    /// continuation can lose the overlap by wandering off the key, or by
    /// weighting the key's degrees differently). Older reports lack it.
    #[serde(default)]
    pub key_cells: usize,
    #[serde(default)]
    pub outside_key_cells: usize,
    /// The chords on the beats, the endings and the phrase ends
    /// ([`HarmonyTally::measure`]; filled by the caller, who knows the key
    /// and the fermatas). Older reports lack it.
    #[serde(default)]
    pub harmony: HarmonyTally,
}

/// Bars of a continuation whose pitch-class overlap with the prompt is
/// also reported bar by bar.
pub const PROMPT_OVERLAP_BARS: usize = 4;

/// Bins of the melodic-interval histogram: a leap down by more than an
/// octave, −12 … +12 semitones, a leap up by more than an octave.
pub const INTERVAL_BINS: usize = 27;

/// Upper bounds (steps) of the note-duration bins; one more bin takes the
/// longer notes.
pub const DURATION_BOUNDS: [usize; 8] = [1, 2, 3, 4, 6, 8, 12, 16];
/// Bins of the note-duration histogram.
pub const DURATION_BINS: usize = DURATION_BOUNDS.len() + 1;

/// Histogram bin of a melodic interval in semitones (clipped to ±13, the
/// "more than an octave" bins).
pub fn interval_bin(semitones: i32) -> usize {
    (semitones.clamp(-13, 13) + 13) as usize
}

/// Histogram bin of a note duration in steps.
pub fn duration_bin(steps: usize) -> usize {
    DURATION_BOUNDS
        .iter()
        .position(|b| steps <= *b)
        .unwrap_or(DURATION_BOUNDS.len())
}

/// One value per voice, named (soprano first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerVoice<T> {
    pub soprano: T,
    pub alto: T,
    pub tenor: T,
    pub bass: T,
}

impl<T> PerVoice<T> {
    pub fn from_fn(mut f: impl FnMut(Voice) -> T) -> PerVoice<T> {
        PerVoice {
            soprano: f(Voice::Soprano),
            alto: f(Voice::Alto),
            tenor: f(Voice::Tenor),
            bass: f(Voice::Bass),
        }
    }

    pub fn get(&self, voice: Voice) -> &T {
        match voice {
            Voice::Soprano => &self.soprano,
            Voice::Alto => &self.alto,
            Voice::Tenor => &self.tenor,
            Voice::Bass => &self.bass,
        }
    }
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
    /// Share of the beats where all four voices sound whose sonority is not
    /// a plain major or minor triad ([`plain_triad`]): the character pad's
    /// tension. Older reports lack it.
    #[serde(default)]
    pub tense_beat_fraction: f64,
    /// Overlap with the reference histogram (None when there is none).
    pub pitch_class_overlap: Option<f64>,
    /// Exact-match rate against a reference (None when not compared).
    pub exact_match: Option<f64>,
    /// Notes (pitch changes) per beat of each voice over its free cells;
    /// None where the voice had no free cell.
    pub notes_per_beat: PerVoice<Option<f64>>,
    /// Per voice, overlap of the melodic-interval histogram with the
    /// reference's; None without a reference or where either has no
    /// interval in that voice.
    pub interval_overlap: PerVoice<Option<f64>>,
    /// Per voice, overlap of the note-duration histogram with the
    /// reference's; None as for `interval_overlap`.
    pub duration_overlap: PerVoice<Option<f64>>,
    /// Per voice, the share of melodic intervals that are steps (one or two
    /// semitones either way): how much of a line passes rather than skips.
    /// None where the voice has no interval. Older reports lack it.
    #[serde(default)]
    pub step_share: PerVoice<Option<f64>>,
    /// Melodic leaps past an octave, all voices, per 100 beats.
    pub wide_leaps_per_100_beats: f64,
    /// Notes struck again on the pitch sounding before, all voices, per
    /// 100 beats. Older reports lack it.
    #[serde(default)]
    pub repeated_notes_per_100_beats: f64,
    /// Beats (four sixteenths) a voice is silent while another sounds, all
    /// voices, per 100 beats. Older reports lack it.
    #[serde(default)]
    pub dropped_voice_beats_per_100_beats: f64,
    /// Continuations: mean pitch-class overlap of the new bars with the
    /// prompt (None when no continuation was measured).
    pub prompt_pitch_class_overlap: Option<f64>,
    /// Continuations: the same overlap bar by bar (new bar 1, 2, …; None
    /// where no continuation had that bar). Older reports lack it.
    #[serde(default)]
    pub prompt_overlap_by_bar: [Option<f64>; PROMPT_OVERLAP_BARS],
    /// Continuations: fraction whose last chord is the tonic or dominant of
    /// the prompt's key.
    pub tonic_dominant_ending_fraction: Option<f64>,
    /// Continuations: share of the new bars' sounding cells outside the
    /// prompt's key. Older reports lack it.
    #[serde(default)]
    pub outside_prompt_key: Option<f64>,
    /// The chord vocabulary, endings and phrase ends, beside the
    /// reference's. Older reports lack it.
    #[serde(default)]
    pub harmony: HarmonySummary,
}

impl Tally {
    /// Measures `score`. `region` selects the cells whose pitch classes,
    /// matches and melodic lines count (all cells when `None`); `reference`
    /// enables exact match. Step 0 counts as following silence.
    pub fn of(score: &Score, region: Option<&Mask>, reference: Option<&Score>) -> Tally {
        let mut t = Tally::vertical(score, region, reference);
        t.count_lines(&score.sounding_pitches(), region);
        t.count_texture(score, region);
        t
    }

    /// Measures the stretches of `score` where `mask` has free cells (each
    /// maximal run of steps with some voice free, as [`Tally::of`] with the
    /// mask as region), the way an evaluation judges generated music. The
    /// melodic lines are read on the whole score, so a note held into a free
    /// stretch from the cell before it is not a new note there.
    pub fn over_free_spans(score: &Score, mask: &Mask, reference: Option<&Score>) -> Tally {
        let mut total = Tally::default();
        for span in mask.free_spans() {
            let region = mask.slice(span.clone());
            let r = reference.map(|r| r.slice(span.clone()));
            total.add(&Tally::vertical(
                &score.slice(span),
                Some(&region),
                r.as_ref(),
            ));
        }
        total.count_lines(&score.sounding_pitches(), Some(mask));
        total.count_texture(score, Some(mask));
        total
    }

    /// Repeated notes and dropped voices over the cells `region` frees
    /// (all cells when `None`).
    fn count_texture(&mut self, score: &Score, region: Option<&Mask>) {
        let sounding = score.sounding_pitches();
        for (step, row) in sounding.iter().enumerate() {
            let dropped = silent_voices(row);
            for voice in Voice::ALL {
                if region.is_some_and(|m| step >= m.len() || !m.is_free(step, voice)) {
                    continue;
                }
                let v = voice.index();
                self.dropped_voice_cells += dropped[v] as usize;
                let before = step.checked_sub(1).and_then(|s| sounding[s][v]);
                if matches!(score.get(step, voice), Token::Pitch(p) if Some(p) == before) {
                    self.repeated_notes += 1;
                }
            }
        }
    }

    /// A continuation's measures of how it follows its prompt: the new
    /// bars' pitch-class overlap with the prompt, and whether they end on
    /// the prompt key's tonic or dominant ([`ends_on_tonic_or_dominant`],
    /// key by [`Key::estimate`]). Only the continuation fields are filled.
    pub fn of_continuation(prompt: &Score, continuation: &Score) -> Tally {
        let key = Key::estimate(prompt);
        let ending = key.is_some_and(|key| ends_on_tonic_or_dominant(continuation, key));
        let profile = pitch_class_profile(prompt);
        let mut t = Tally {
            prompts: 1,
            prompt_overlap_sum: histogram_overlap(&pitch_class_profile(continuation), &profile),
            tonic_dominant_endings: ending as usize,
            ..Tally::default()
        };
        if let Some(key) = key {
            for pitch in continuation.sounding_pitches().iter().flatten().flatten() {
                t.key_cells += 1;
                t.outside_key_cells += !key.contains(*pitch) as usize;
            }
        }
        for (i, bar) in continuation
            .bars()
            .into_iter()
            .take(PROMPT_OVERLAP_BARS)
            .enumerate()
        {
            t.prompt_overlap_by_bar[i] =
                histogram_overlap(&pitch_class_profile(&continuation.slice(bar)), &profile);
            t.prompt_bars[i] = 1;
        }
        t
    }

    /// Everything but the melodic lines.
    fn vertical(score: &Score, region: Option<&Mask>, reference: Option<&Score>) -> Tally {
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
                if plain_triad(&sounding[step]) == Some(true) {
                    t.plain_triad_beats += 1;
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

    /// Notes, intervals, durations and wide leaps of each voice's line over
    /// the cells `region` frees for it (all cells when `None`).
    fn count_lines(&mut self, sounding: &[[Option<u8>; VOICES]], region: Option<&Mask>) {
        for voice in Voice::ALL {
            let v = voice.index();
            // Length of the note being measured, and the pitch of the line's
            // previous note (None after a rest or outside the free cells).
            let mut open: Option<usize> = None;
            let mut last: Option<u8> = None;
            for (step, row) in sounding.iter().enumerate() {
                let free = region.is_none_or(|m| step < m.len() && m.is_free(step, voice));
                let now = row[v];
                let before = step.checked_sub(1).and_then(|s| sounding[s][v]);
                if !free {
                    if let Some(length) = open.take() {
                        self.duration_counts[v][duration_bin(length)] += 1;
                    }
                    last = None;
                    continue;
                }
                self.voice_free_steps[v] += 1;
                if now == before {
                    if let Some(length) = open.as_mut() {
                        *length += 1;
                    }
                    continue;
                }
                if let Some(length) = open.take() {
                    self.duration_counts[v][duration_bin(length)] += 1;
                }
                let Some(pitch) = now else {
                    last = None;
                    continue;
                };
                self.pitch_changes[v] += 1;
                open = Some(1);
                if let Some(previous) = last {
                    let interval = pitch as i32 - previous as i32;
                    self.interval_counts[v][interval_bin(interval)] += 1;
                    if interval.abs() > 12 {
                        self.wide_leaps += 1;
                    }
                }
                last = Some(pitch);
            }
            if let Some(length) = open {
                self.duration_counts[v][duration_bin(length)] += 1;
            }
        }
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
        self.plain_triad_beats += other.plain_triad_beats;
        for i in 0..12 {
            self.pitch_classes[i] += other.pitch_classes[i];
        }
        self.compared_cells += other.compared_cells;
        self.matching_cells += other.matching_cells;
        for v in 0..VOICES {
            self.voice_free_steps[v] += other.voice_free_steps[v];
            self.pitch_changes[v] += other.pitch_changes[v];
            for (a, b) in self.interval_counts[v]
                .iter_mut()
                .zip(&other.interval_counts[v])
            {
                *a += b;
            }
            for (a, b) in self.duration_counts[v]
                .iter_mut()
                .zip(&other.duration_counts[v])
            {
                *a += b;
            }
        }
        self.wide_leaps += other.wide_leaps;
        self.repeated_notes += other.repeated_notes;
        self.dropped_voice_cells += other.dropped_voice_cells;
        self.prompts += other.prompts;
        self.prompt_overlap_sum += other.prompt_overlap_sum;
        for i in 0..PROMPT_OVERLAP_BARS {
            self.prompt_overlap_by_bar[i] += other.prompt_overlap_by_bar[i];
            self.prompt_bars[i] += other.prompt_bars[i];
        }
        self.tonic_dominant_endings += other.tonic_dominant_endings;
        self.key_cells += other.key_cells;
        self.outside_key_cells += other.outside_key_cells;
        self.harmony.add(&other.harmony);
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
            tense_beat_fraction: if self.full_beats > 0 {
                1.0 - self.plain_triad_beats as f64 / self.full_beats as f64
            } else {
                0.0
            },
            pitch_class_overlap: reference
                .map(|r| histogram_overlap(&self.pitch_classes, &r.pitch_classes)),
            exact_match: (self.compared_cells > 0)
                .then(|| self.matching_cells as f64 / self.compared_cells as f64),
            notes_per_beat: PerVoice::from_fn(|voice| {
                let cells = self.voice_free_steps[voice.index()];
                (cells > 0).then(|| {
                    self.pitch_changes[voice.index()] as f64 * STEPS_PER_QUARTER as f64
                        / cells as f64
                })
            }),
            interval_overlap: PerVoice::from_fn(|voice| {
                let r = reference?;
                counts_overlap(
                    &self.interval_counts[voice.index()],
                    &r.interval_counts[voice.index()],
                )
            }),
            duration_overlap: PerVoice::from_fn(|voice| {
                let r = reference?;
                counts_overlap(
                    &self.duration_counts[voice.index()],
                    &r.duration_counts[voice.index()],
                )
            }),
            step_share: PerVoice::from_fn(|voice| {
                let counts = &self.interval_counts[voice.index()];
                let total: usize = counts.iter().sum();
                let steps: usize = [-2, -1, 1, 2]
                    .iter()
                    .map(|i| counts[interval_bin(*i)])
                    .sum();
                (total > 0).then(|| steps as f64 / total as f64)
            }),
            wide_leaps_per_100_beats: per100(self.wide_leaps),
            repeated_notes_per_100_beats: per100(self.repeated_notes),
            dropped_voice_beats_per_100_beats: per100(self.dropped_voice_cells)
                / STEPS_PER_QUARTER as f64,
            prompt_pitch_class_overlap: (self.prompts > 0)
                .then(|| self.prompt_overlap_sum / self.prompts as f64),
            prompt_overlap_by_bar: std::array::from_fn(|i| {
                (self.prompt_bars[i] > 0)
                    .then(|| self.prompt_overlap_by_bar[i] / self.prompt_bars[i] as f64)
            }),
            tonic_dominant_ending_fraction: (self.prompts > 0)
                .then(|| self.tonic_dominant_endings as f64 / self.prompts as f64),
            outside_prompt_key: (self.key_cells > 0)
                .then(|| self.outside_key_cells as f64 / self.key_cells as f64),
            harmony: self.harmony.summary(reference.map(|r| &r.harmony)),
        }
    }
}

/// Histogram intersection of two count histograms, None when either is
/// empty.
fn counts_overlap(a: &[usize], b: &[usize]) -> Option<f64> {
    let (sa, sb): (usize, usize) = (a.iter().sum(), b.iter().sum());
    if sa == 0 || sb == 0 {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 / sa as f64).min(*y as f64 / sb as f64))
            .sum(),
    )
}

/// Duration-weighted pitch-class histogram of every sounding cell.
pub fn pitch_class_profile(score: &Score) -> [f64; 12] {
    let mut pcs = [0.0; 12];
    for row in score.sounding_pitches() {
        for p in row.iter().flatten() {
            pcs[(p % 12) as usize] += 1.0;
        }
    }
    pcs
}

/// Whether the chord sounding at the last step of `score` is the tonic or
/// the dominant chord of `key`. It checks only this: the sounding pitch
/// classes are a non-empty subset of one of the key's chords — I (in a
/// minor key the minor tonic triad, or the major one with a Picardy third)
/// or V (the major triad on the fifth degree, with or without its minor
/// seventh; in minor that is the raised leading tone) — and the lowest
/// sounding voice (the bass when it sounds) has that chord's root, third or
/// fifth (so a root-position or inverted chord, never the seventh in the
/// bass). Doublings, omitted fifths and open octaves pass; silence fails.
pub fn ends_on_tonic_or_dominant(score: &Score, key: Key) -> bool {
    let Some(row) = score.sounding_pitches().last().copied() else {
        return false;
    };
    let Some(bass) = row.iter().rev().flatten().next().map(|p| p % 12) else {
        return false;
    };
    let t = key.tonic % 12;
    let d = (t + 7) % 12;
    let pc = |root: u8, i: u8| (root + i) % 12;
    // (root, intervals); the first three are root, third, fifth.
    let mut chords: Vec<(u8, &[u8])> = vec![(d, &[0, 4, 7, 10])];
    match key.scale {
        Scale::Major => chords.push((t, &[0, 4, 7])),
        Scale::Minor => {
            chords.push((t, &[0, 3, 7]));
            chords.push((t, &[0, 4, 7]));
        }
    }
    chords.iter().any(|(root, intervals)| {
        let members: Vec<u8> = intervals.iter().map(|i| pc(*root, *i)).collect();
        row.iter().flatten().all(|p| members.contains(&(p % 12))) && members[..3].contains(&bass)
    })
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
/// Whether a sonority is a plain major or minor triad (any inversion, one
/// tone doubled), when all four voices sound (`None` otherwise). The
/// character pad's tension reads the other beats as tense: sevenths,
/// diminished and augmented triads, suspensions, accented non-chord tones.
pub fn plain_triad(row: &[Option<u8>; VOICES]) -> Option<bool> {
    let mut pcs = [false; 12];
    for p in row {
        pcs[(((*p)?) % 12) as usize] = true;
    }
    let count = pcs.iter().filter(|p| **p).count();
    Some(
        count == 3
            && (0..12)
                .filter(|r| pcs[*r])
                .any(|root| pcs[(root + 7) % 12] && (pcs[(root + 4) % 12] || pcs[(root + 3) % 12])),
    )
}

pub fn full_chord(row: &[Option<u8>; VOICES]) -> Option<bool> {
    let mut pcs = [false; 12];
    for p in row {
        pcs[(((*p)?) % 12) as usize] = true;
    }
    Some(is_triad_or_seventh(&pcs))
}

/// Per voice, whether it is silent in `row` while another voice sounds (a
/// part dropped out of the texture; none when all are silent, as at a
/// breath).
pub fn silent_voices(row: &[Option<u8>; VOICES]) -> [bool; VOICES] {
    let any = row.iter().any(Option::is_some);
    row.map(|p| any && p.is_none())
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

    fn line(voice: Voice, notes: &[(u8, usize, usize)]) -> Vec<Note> {
        notes
            .iter()
            .map(|&(pitch, start, length)| Note {
                voice,
                pitch,
                start,
                length,
                velocity: 80,
            })
            .collect()
    }

    /// Alto: C4 (4 steps), D4 (2) re-struck as D4 (2), E5 (2), rest (2),
    /// E4 (4); bass: C3 for all 16 steps; soprano and tenor silent.
    fn moving_score() -> Score {
        let mut notes = line(
            Voice::Alto,
            &[(60, 0, 4), (62, 4, 2), (62, 6, 2), (76, 8, 2), (64, 12, 4)],
        );
        notes.extend(line(Voice::Bass, &[(48, 0, 16)]));
        Score::from_notes(16, &notes)
    }

    #[test]
    fn lines_count_notes_intervals_durations_and_leaps() {
        let s = moving_score();
        let mut region = Mask::all(16);
        for step in 0..16 {
            region.set_free(step, Voice::Soprano, false);
        }
        let t = Tally::of(&s, Some(&region), None);
        // The re-struck D4 is one note: C4, D4, E5, E4.
        assert_eq!(t.pitch_changes, [0, 4, 0, 1]);
        assert_eq!(t.voice_free_steps, [0, 16, 16, 16]);
        let mut intervals = [0; INTERVAL_BINS];
        intervals[interval_bin(2)] = 1; // C4 → D4
        intervals[interval_bin(14)] = 1; // D4 → E5; the rest breaks E5 → E4
        assert_eq!(t.interval_counts[1], intervals);
        assert_eq!(interval_bin(14), INTERVAL_BINS - 1);
        assert_eq!(interval_bin(-12), 1);
        assert_eq!(t.interval_counts[3], [0; INTERVAL_BINS]);
        assert_eq!(t.wide_leaps, 1);
        // Durations: C4 4, D4 4 (2 + 2 re-struck), E5 2, E4 4; bass 16.
        assert_eq!(t.duration_counts[1], [0, 1, 0, 3, 0, 0, 0, 0, 0]);
        assert_eq!(t.duration_counts[3][duration_bin(16)], 1);
        assert_eq!(duration_bin(17), DURATION_BINS - 1);
        assert_eq!(duration_bin(5), 4);

        let summary = t.summary(Some(&t));
        assert_eq!(summary.notes_per_beat.soprano, None);
        assert_eq!(summary.notes_per_beat.alto, Some(1.0));
        assert_eq!(summary.notes_per_beat.tenor, Some(0.0));
        assert_eq!(summary.notes_per_beat.bass, Some(0.25));
        assert_eq!(summary.interval_overlap.alto, Some(1.0));
        assert_eq!(summary.interval_overlap.bass, None); // one note, no interval
        assert_eq!(summary.step_share.alto, Some(0.5)); // C4 → D4 of two
        assert_eq!(summary.step_share.bass, None);
        assert_eq!(summary.duration_overlap.bass, Some(1.0));
        assert_eq!(summary.wide_leaps_per_100_beats, 25.0); // 1 in 4 beats
                                                            // The re-struck D4 is heard: one repeated note in 4 beats.
        assert_eq!(t.repeated_notes, 1);
        assert_eq!(summary.repeated_notes_per_100_beats, 25.0);
        // The tenor is silent throughout and the alto for its rest while
        // the bass sounds (the soprano is not in the region): 16 + 2
        // sixteenths, 4.5 beats in 4.
        assert_eq!(t.dropped_voice_cells, 18);
        assert_eq!(summary.dropped_voice_beats_per_100_beats, 112.5);

        // Against a reference whose alto moves only in quarter notes by step.
        let mut reference = line(Voice::Alto, &[(60, 0, 4), (62, 4, 4), (64, 8, 4)]);
        reference.extend(line(Voice::Bass, &[(48, 0, 16)]));
        let r = Tally::of(&Score::from_notes(16, &reference), Some(&region), None);
        let summary = t.summary(Some(&r));
        // Intervals: ours {+2, +14}, theirs {+2, +2} → ½.
        assert_eq!(summary.interval_overlap.alto, Some(0.5));
        // Durations: ours ¾ quarters + ¼ eighths, theirs all quarters → ¾.
        assert_eq!(summary.duration_overlap.alto, Some(0.75));
    }

    #[test]
    fn free_spans_read_lines_in_context() {
        // The tenor holds G3 from step 0 into the free steps 4..8, then
        // moves to A3 at step 8, also free.
        let mut notes = line(Voice::Tenor, &[(55, 0, 8), (57, 8, 4)]);
        notes.extend(line(Voice::Bass, &[(48, 0, 12)]));
        let s = Score::from_notes(12, &notes);
        let mut mask = Mask::none(12);
        mask.free_region(4..12, &[Voice::Tenor]);
        let t = Tally::over_free_spans(&s, &mask, None);
        // Only A3 is a note of the free stretch; the held G3 is not, and
        // the interval G3 → A3 reaches back outside it.
        assert_eq!(t.pitch_changes, [0, 0, 1, 0]);
        assert_eq!(t.voice_free_steps, [0, 0, 8, 0]);
        assert_eq!(t.interval_counts[2], [0; INTERVAL_BINS]);
        assert_eq!(t.duration_counts[2][duration_bin(4)], 1);
        assert_eq!(t.beats, 2.0);
        // Measured on the slice alone, the held note starts the stretch.
        let slice = Tally::of(&s.slice(4..12), Some(&mask.slice(4..12)), None);
        assert_eq!(slice.pitch_changes[2], 2);
    }

    #[test]
    fn endings_on_tonic_or_dominant() {
        let c_major = Key::parse("C").unwrap();
        let ends = |rows: &[[u8; 4]], key| ends_on_tonic_or_dominant(&chords(rows), key);
        assert!(ends(&[[72, 67, 64, 48]], c_major)); // C major, root position
        assert!(ends(&[[72, 67, 60, 52]], c_major)); // C major, E in the bass
        assert!(ends(&[[71, 67, 62, 55]], c_major)); // G major
        assert!(ends(&[[71, 65, 62, 55]], c_major)); // G7
        assert!(!ends(&[[71, 67, 62, 53]], c_major)); // G7 over its seventh
        assert!(!ends(&[[72, 69, 65, 53]], c_major)); // F major
        assert!(!ends(&[[69, 64, 60, 57]], c_major)); // A minor
        let a_minor = Key::parse("a").unwrap();
        assert!(ends(&[[69, 64, 60, 45]], a_minor)); // A minor
        assert!(ends(&[[73, 64, 57, 45]], a_minor)); // A major, Picardy third
        assert!(ends(&[[68, 64, 59, 52]], a_minor)); // E major with G#
        assert!(!ends(&[[67, 64, 59, 52]], a_minor)); // E minor: no leading tone
        assert!(!ends_on_tonic_or_dominant(&Score::new(4), c_major));

        let prompt = chords(&[[72, 67, 64, 48], [71, 67, 62, 55], [72, 67, 64, 48]]);
        let t = Tally::of_continuation(&prompt, &chords(&[[71, 67, 62, 55]]));
        assert_eq!((t.prompts, t.tonic_dominant_endings), (1, 1));
        let s = t.summary(None);
        assert_eq!(s.tonic_dominant_ending_fraction, Some(1.0));
        // Prompt: C ⅓, G ⅓, E ⅙, B 1/12, D 1/12; continuation G ½, B ¼,
        // D ¼ → ⅓ + 1/12 + 1/12.
        let overlap = s.prompt_pitch_class_overlap.unwrap();
        assert!((overlap - 0.5).abs() < 1e-9, "{overlap}");
        // The continuation is one step: it has a first bar and no others.
        assert_eq!(s.prompt_overlap_by_bar[0], Some(overlap));
        assert_eq!(s.prompt_overlap_by_bar[1], None);
        // Two bars of 4/4: the first keeps the prompt's C major, the second
        // wanders to F♯ major (no pitch class in common).
        let c = [72, 67, 64, 48];
        let f_sharp = [70, 66, 61, 54];
        let t = Tally::of_continuation(
            &chords(&[c; 4]),
            &chords(&[c, c, c, c, f_sharp, f_sharp, f_sharp, f_sharp]),
        );
        let s = t.summary(None);
        assert_eq!(s.prompt_overlap_by_bar[..3], [Some(1.0), Some(0.0), None]);
        assert!((s.prompt_pitch_class_overlap.unwrap() - 0.5).abs() < 1e-9);
        // F♯ major's A♯, F♯ and C♯ are all outside C major: half the
        // sounding cells.
        assert_eq!(s.outside_prompt_key, Some(0.5));
    }

    #[test]
    fn a_plain_triad_is_major_or_minor_with_one_tone_doubled() {
        let plain = |row: [u8; 4]| plain_triad(&row.map(Some));
        assert_eq!(plain([72, 64, 55, 48]), Some(true)); // C major, root doubled
        assert_eq!(plain([69, 64, 60, 45]), Some(true)); // A minor
        assert_eq!(plain([67, 64, 60, 52]), Some(true)); // C major, first inversion
        assert_eq!(plain([70, 64, 60, 48]), Some(false)); // C7
        assert_eq!(plain([71, 65, 62, 59]), Some(false)); // B diminished
        assert_eq!(plain([72, 65, 55, 48]), Some(false)); // a suspended fourth
        assert_eq!(plain_triad(&[Some(72), None, Some(55), Some(48)]), None);
    }
}
