//! Harmony as a listener hears it: the chord each beat sounds, named by its
//! quality and its inversion (the intervals above the bass), where the
//! phrases end and what chord they end on, and the notes foreign to the key.
//!
//! A chord is read off the pitch classes of the four voices: a complete
//! triad (major, minor, diminished, augmented) or a seventh chord (dominant,
//! minor, major, half-diminished, diminished; its fifth may be left out).
//! The bass decides the inversion. Anything else — a suspension, a passing
//! note on the beat, an open fifth — is no chord. [`HarmonyTally`] counts
//! these over the beats an evaluation judges, beside the same counts of
//! Bach's music in the same places.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::constraints::Key;
use crate::grid::{Score, STEPS_PER_QUARTER, VOICES};
use crate::mask::Mask;

/// The quality of a chord.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Quality {
    Major,
    Minor,
    Diminished,
    Augmented,
    DominantSeventh,
    MinorSeventh,
    MajorSeventh,
    HalfDiminishedSeventh,
    DiminishedSeventh,
}

impl Quality {
    /// Intervals above the root: root, third, fifth (and seventh).
    fn shape(self) -> &'static [u8] {
        match self {
            Quality::Major => &[0, 4, 7],
            Quality::Minor => &[0, 3, 7],
            Quality::Diminished => &[0, 3, 6],
            Quality::Augmented => &[0, 4, 8],
            Quality::DominantSeventh => &[0, 4, 7, 10],
            Quality::MinorSeventh => &[0, 3, 7, 10],
            Quality::MajorSeventh => &[0, 4, 7, 11],
            Quality::HalfDiminishedSeventh => &[0, 3, 6, 10],
            Quality::DiminishedSeventh => &[0, 3, 6, 9],
        }
    }

    pub fn is_seventh(self) -> bool {
        self.shape().len() == 4
    }

    /// A plain major or minor triad.
    pub fn is_plain(self) -> bool {
        matches!(self, Quality::Major | Quality::Minor)
    }

    /// In declaration order, as `quality as u8` indexes them.
    const BY_INDEX: [Quality; 9] = [
        Quality::Major,
        Quality::Minor,
        Quality::Diminished,
        Quality::Augmented,
        Quality::DominantSeventh,
        Quality::MinorSeventh,
        Quality::MajorSeventh,
        Quality::HalfDiminishedSeventh,
        Quality::DiminishedSeventh,
    ];

    /// Tried in this order: a set that fits two shapes (the diminished
    /// seventh fits four roots) is named by the first root that fits.
    const ALL: [Quality; 9] = [
        Quality::Major,
        Quality::Minor,
        Quality::DominantSeventh,
        Quality::MinorSeventh,
        Quality::Diminished,
        Quality::HalfDiminishedSeventh,
        Quality::MajorSeventh,
        Quality::DiminishedSeventh,
        Quality::Augmented,
    ];
}

/// Which chord tone is in the bass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Inversion {
    Root,
    First,
    /// The fifth in the bass: a six-four chord (of a triad).
    Second,
    /// The seventh in the bass.
    Third,
}

/// A chord on the grid: its root's pitch class, quality and inversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chord {
    pub root: u8,
    pub quality: Quality,
    pub inversion: Inversion,
    /// The fifth sounds (a seventh chord may leave it out).
    pub complete: bool,
}

impl Chord {
    /// The chord the four voices of `row` sound (soprano first), or `None`
    /// when a voice is silent or the pitch classes form no triad or seventh
    /// chord.
    pub fn of(row: &[Option<u8>; VOICES]) -> Option<Chord> {
        let mut set = 0u16;
        for p in row {
            set |= 1 << ((*p)? % 12);
        }
        let bass = row[VOICES - 1]? % 12;
        Chord::of_set(set, bass)
    }

    /// The chord of a pitch-class set (bit k = pitch class k) over `bass`
    /// (looked up: the samplers ask at every candidate token).
    pub fn of_set(set: u16, bass: u8) -> Option<Chord> {
        chord_table()[set as usize & 0xfff][bass as usize % 12]
    }

    /// Names a set the slow way (for [`chord_table`]).
    fn analyse(set: u16, bass: u8) -> Option<Chord> {
        let has = |pc: u8| set & (1 << (pc % 12)) != 0;
        if !has(bass) {
            return None;
        }
        let count = set.count_ones() as usize;
        // Complete chords first, then sevenths without their fifth.
        for complete in [true, false] {
            for quality in Quality::ALL {
                let shape = quality.shape();
                if !complete && !quality.is_seventh() {
                    continue;
                }
                let size = shape.len() - (!complete) as usize;
                if size != count {
                    continue;
                }
                let tones = shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| complete || *i != 2);
                // The bass as root first, so an ambiguous set (a diminished
                // seventh, an augmented triad) is named from the bass.
                for root in (0..12u8).map(|k| (bass + k) % 12).filter(|r| has(*r)) {
                    if tones.clone().all(|(_, i)| has(root + i)) {
                        let above = (bass + 12 - root) % 12;
                        let position = shape.iter().position(|i| *i == above)?;
                        let inversion = match position {
                            0 => Inversion::Root,
                            1 => Inversion::First,
                            2 => Inversion::Second,
                            _ => Inversion::Third,
                        };
                        return Some(Chord {
                            root,
                            quality,
                            inversion,
                            complete,
                        });
                    }
                }
            }
        }
        None
    }

    /// The chord's class ([`ChordClass`]): quality and inversion.
    pub fn class(&self) -> ChordClass {
        ChordClass(self.quality as u8 * 4 + self.inversion as u8)
    }

    /// A plain major or minor triad with its root in the bass: the chord a
    /// chorale's phrases end on.
    pub fn is_root_position_triad(&self) -> bool {
        self.quality.is_plain() && self.inversion == Inversion::Root
    }

    /// The chord's class as a listener names it, e.g. "major, root",
    /// "minor 6", "major 6/4", "dominant 7 (4/2)".
    pub fn class_name(&self) -> String {
        let quality = match self.quality {
            Quality::Major => "major",
            Quality::Minor => "minor",
            Quality::Diminished => "diminished",
            Quality::Augmented => "augmented",
            Quality::DominantSeventh => "dominant 7",
            Quality::MinorSeventh => "minor 7",
            Quality::MajorSeventh => "major 7",
            Quality::HalfDiminishedSeventh => "half-diminished 7",
            Quality::DiminishedSeventh => "diminished 7",
        };
        let position = match (self.quality.is_seventh(), self.inversion) {
            (_, Inversion::Root) => "root",
            (false, Inversion::First) => "6",
            (false, Inversion::Second) => "6/4",
            (true, Inversion::First) => "6/5",
            (true, Inversion::Second) => "4/3",
            (true, Inversion::Third) => "4/2",
            (false, Inversion::Third) => "?",
        };
        match self.quality.is_seventh() {
            true => format!("{quality} ({position})"),
            false => format!("{quality}, {position}"),
        }
    }

    /// The root's degree in `key` as a Roman numeral (I … VII, lower-case
    /// for a minor or diminished chord; chromatic roots as ♭/♯ of the
    /// nearest degree), e.g. "V", "vi", "bVII".
    pub fn degree(&self, key: Key) -> String {
        const MAJOR: [&str; 12] = [
            "I", "bII", "II", "bIII", "III", "IV", "#IV", "V", "bVI", "VI", "bVII", "VII",
        ];
        const MINOR: [&str; 12] = [
            "I", "bII", "II", "III", "#III", "IV", "#IV", "V", "VI", "#VI", "VII", "#VII",
        ];
        let step = ((self.root + 12 - key.tonic % 12) % 12) as usize;
        let name = match key.scale {
            crate::constraints::Scale::Major => MAJOR[step],
            crate::constraints::Scale::Minor => MINOR[step],
        };
        match self.quality {
            Quality::Minor
            | Quality::Diminished
            | Quality::MinorSeventh
            | Quality::HalfDiminishedSeventh
            | Quality::DiminishedSeventh => name.to_lowercase(),
            _ => name.to_string(),
        }
    }
}

/// The sonority of a row as intervals above the bass, e.g. "0-4-7" (a major
/// triad in root position, however doubled or spaced), or `None` when a
/// voice is silent.
pub fn sonority(row: &[Option<u8>; VOICES]) -> Option<String> {
    let bass = row[VOICES - 1]?;
    let mut above = [false; 12];
    for p in row {
        above[((*p)? as i32 - bass as i32).rem_euclid(12) as usize] = true;
    }
    let parts: Vec<String> = (0..12)
        .filter(|i| above[*i])
        .map(|i| i.to_string())
        .collect();
    Some(parts.join("-"))
}

/// The chord class of a beat for the vocabulary counts:
/// [`Chord::class_name`], or "no chord".
pub fn beat_class(row: &[Option<u8>; VOICES]) -> String {
    Chord::of(row).map_or_else(|| NO_CHORD.to_string(), |c| c.class_name())
}

/// The class of a beat whose sonority is no triad or seventh chord.
pub const NO_CHORD: &str = "no chord";

/// A chord's quality and inversion as one small number (the chord prior's
/// index), or [`ChordClass::NONE`] for a full beat that is no chord.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChordClass(pub u8);

impl ChordClass {
    /// Qualities × inversions, and one for no chord.
    pub const COUNT: usize = 9 * 4 + 1;
    pub const NONE: ChordClass = ChordClass(36);

    /// The class the four voices of `row` sound, `None` when one is silent.
    pub fn of(row: &[Option<u8>; VOICES]) -> Option<ChordClass> {
        let mut set = 0u16;
        for p in row {
            set |= 1 << ((*p)? % 12);
        }
        let bass = row[VOICES - 1]? % 12;
        Some(Chord::of_set(set, bass).map_or(ChordClass::NONE, |c| c.class()))
    }

    /// Its name as [`beat_class`] gives it (`None` for an index no chord
    /// has, e.g. a triad in "third inversion").
    pub fn name(self) -> Option<String> {
        if self == ChordClass::NONE {
            return Some(NO_CHORD.to_string());
        }
        let quality = *Quality::BY_INDEX.get(self.0 as usize / 4)?;
        let inversion = [
            Inversion::Root,
            Inversion::First,
            Inversion::Second,
            Inversion::Third,
        ][self.0 as usize % 4];
        if inversion == Inversion::Third && !quality.is_seventh() {
            return None;
        }
        let chord = Chord {
            root: 0,
            quality,
            inversion,
            complete: true,
        };
        Some(chord.class_name())
    }

    /// Every class that names a chord, and no chord.
    pub fn all() -> impl Iterator<Item = ChordClass> {
        (0..ChordClass::COUNT as u8)
            .map(ChordClass)
            .filter(|c| c.name().is_some())
    }
}

/// Every pitch-class set over every bass, named once.
fn chord_table() -> &'static [[Option<Chord>; 12]] {
    static TABLE: std::sync::OnceLock<Vec<[Option<Chord>; 12]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..4096u16)
            .map(|set| std::array::from_fn(|bass| Chord::analyse(set, bass as u8)))
            .collect()
    })
}

/// Counts of what the beats sound, over the stretches an evaluation judges.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HarmonyTally {
    /// Beats (steps on the quarter) where all four voices sound.
    pub beats: usize,
    /// Those beats by sonority ([`sonority`]).
    pub sonorities: BTreeMap<String, usize>,
    /// Those beats by chord class ([`beat_class`]).
    pub classes: BTreeMap<String, usize>,
    /// Quarter-note beats whose notes were measured against the key.
    pub key_beats: f64,
    /// Notes (onsets) whose pitch class is outside the key's scale.
    pub outside_key_notes: usize,
    /// Pieces whose last chord was judged, and those ending on a
    /// root-position tonic triad (major or minor: a Picardy third counts).
    pub endings: usize,
    pub tonic_endings: usize,
    /// Phrase ends (fermatas) judged, those on a root-position major or
    /// minor triad, and the chords there by degree in the key.
    pub fermatas: usize,
    pub fermata_root_triads: usize,
    pub fermata_degrees: BTreeMap<String, usize>,
}

/// Rates derived from a [`HarmonyTally`], beside a reference's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HarmonySummary {
    /// Share of the full beats on each chord class.
    pub classes: BTreeMap<String, f64>,
    /// Shares of the full beats: root-position major/minor triads, any
    /// plain major/minor triad, six-four chords, sevenths, diminished or
    /// augmented triads, no chord.
    pub root_position_triads: Option<f64>,
    pub plain_triads: Option<f64>,
    pub first_inversion_triads: Option<f64>,
    pub six_fours: Option<f64>,
    pub sevenths: Option<f64>,
    pub dominant_sevenths: Option<f64>,
    pub diminished_augmented: Option<f64>,
    pub no_chord: Option<f64>,
    /// Σ min of the sonority distribution with the reference's (1 =
    /// Bach's vocabulary in Bach's proportions).
    pub sonority_overlap: Option<f64>,
    pub outside_key_per_100_beats: Option<f64>,
    /// Share of pieces ending on a root-position tonic triad.
    pub tonic_endings: Option<f64>,
    /// Share of phrase ends on a root-position major/minor triad.
    pub fermata_root_triads: Option<f64>,
    /// Share of the phrase ends on each degree.
    pub fermata_degrees: BTreeMap<String, f64>,
}

impl HarmonyTally {
    /// Counts the beats of `score` that lie in `spans` (for the chords)
    /// and the notes struck there by the voices `mask` frees (for the key;
    /// all voices when `None`); the ending when `judge_ending` (the last
    /// sonority of the score); and the chords at the `fermatas` that start
    /// inside `spans`.
    pub fn measure(
        score: &Score,
        spans: &[Range<usize>],
        mask: Option<&Mask>,
        key: Option<Key>,
        fermatas: &[Range<usize>],
        judge_ending: bool,
    ) -> HarmonyTally {
        let rows = score.sounding_pitches();
        let mut t = HarmonyTally::default();
        for span in spans {
            for step in span.clone().filter(|s| s % STEPS_PER_QUARTER == 0) {
                let row = &rows[step];
                if row.iter().any(Option::is_none) {
                    continue;
                }
                t.beats += 1;
                if let Some(s) = sonority(row) {
                    *t.sonorities.entry(s).or_default() += 1;
                }
                *t.classes.entry(beat_class(row)).or_default() += 1;
            }
            if let Some(key) = key {
                t.key_beats += span.len() as f64 / STEPS_PER_QUARTER as f64;
                for step in span.clone() {
                    for voice in crate::grid::Voice::ALL {
                        if mask.is_some_and(|m| !m.is_free(step, voice)) {
                            continue;
                        }
                        if let crate::grid::Token::Pitch(p) = score.get(step, voice) {
                            t.outside_key_notes += !key.contains(p) as usize;
                        }
                    }
                }
            }
        }
        if let (true, Some(key)) = (judge_ending, key) {
            if let Some(last) = last_full_row(&rows) {
                t.endings += 1;
                t.tonic_endings += is_tonic_ending(&rows[last], key) as usize;
            }
        }
        for fermata in fermatas {
            // The chord the fermata holds, once any suspension under it has
            // resolved: its last step.
            let at = fermata.end.saturating_sub(1);
            if !spans.iter().any(|s| s.contains(&at)) || at >= rows.len() {
                continue;
            }
            t.fermatas += 1;
            let chord = Chord::of(&rows[at]);
            t.fermata_root_triads += chord.is_some_and(|c| c.is_root_position_triad()) as usize;
            let degree = match (chord, key) {
                (Some(c), Some(k)) if c.is_root_position_triad() => c.degree(k),
                (Some(_), Some(_)) => "other chord".to_string(),
                (None, _) => NO_CHORD.to_string(),
                (Some(_), None) => "key unknown".to_string(),
            };
            *t.fermata_degrees.entry(degree).or_default() += 1;
        }
        t
    }

    pub fn add(&mut self, other: &HarmonyTally) {
        self.beats += other.beats;
        for (k, v) in &other.sonorities {
            *self.sonorities.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.classes {
            *self.classes.entry(k.clone()).or_default() += v;
        }
        self.key_beats += other.key_beats;
        self.outside_key_notes += other.outside_key_notes;
        self.endings += other.endings;
        self.tonic_endings += other.tonic_endings;
        self.fermatas += other.fermatas;
        self.fermata_root_triads += other.fermata_root_triads;
        for (k, v) in &other.fermata_degrees {
            *self.fermata_degrees.entry(k.clone()).or_default() += v;
        }
    }

    pub fn summary(&self, reference: Option<&HarmonyTally>) -> HarmonySummary {
        let beats = self.beats as f64;
        let share = |pred: &dyn Fn(&str) -> bool| -> Option<f64> {
            (self.beats > 0).then(|| {
                self.classes
                    .iter()
                    .filter(|(k, _)| pred(k))
                    .map(|(_, v)| *v as f64)
                    .sum::<f64>()
                    / beats
            })
        };
        let plain = |k: &str| k.starts_with("major, ") || k.starts_with("minor, ");
        HarmonySummary {
            classes: self
                .classes
                .iter()
                .map(|(k, v)| (k.clone(), *v as f64 / beats.max(1.0)))
                .collect(),
            root_position_triads: share(&|k| plain(k) && k.ends_with(", root")),
            plain_triads: share(&plain),
            first_inversion_triads: share(&|k| plain(k) && k.ends_with(" 6")),
            six_fours: share(&|k| k.ends_with("6/4")),
            sevenths: share(&|k| k.contains(" 7")),
            dominant_sevenths: share(&|k| k.starts_with("dominant 7")),
            diminished_augmented: share(&|k| {
                k.starts_with("diminished,") || k.starts_with("augmented,")
            }),
            no_chord: share(&|k| k == NO_CHORD),
            sonority_overlap: reference.and_then(|r| map_overlap(&self.sonorities, &r.sonorities)),
            outside_key_per_100_beats: (self.key_beats > 0.0)
                .then(|| 100.0 * self.outside_key_notes as f64 / self.key_beats),
            tonic_endings: (self.endings > 0)
                .then(|| self.tonic_endings as f64 / self.endings as f64),
            fermata_root_triads: (self.fermatas > 0)
                .then(|| self.fermata_root_triads as f64 / self.fermatas as f64),
            fermata_degrees: self
                .fermata_degrees
                .iter()
                .map(|(k, v)| (k.clone(), *v as f64 / self.fermatas.max(1) as f64))
                .collect(),
        }
    }
}

/// The chords a chorale sounds on its beats, learned from training pieces:
/// each chord class's cost in nats, −ln of its share over the commonest
/// class's, on an ordinary beat and on a beat under a fermata (where
/// Bach's phrases end on root-position triads). The samplers add
/// `chord_weight` × the cost of each beat where all four voices sound — an
/// expert beside the network, the rules and the line expert, which says
/// which chords the style uses, not how the voices get there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChordPrior {
    /// Full beats counted: ordinary, and under a fermata.
    pub beats: usize,
    pub fermata_beats: usize,
    /// Class name ([`beat_class`]) → nats on an ordinary beat.
    pub costs: BTreeMap<String, f32>,
    /// Class name → nats on a beat under a fermata.
    pub fermata_costs: BTreeMap<String, f32>,
    /// Root motion from one full beat's chord to the next's, in semitones
    /// up ("0"–"11"), or "no chord" where either beat is none → nats:
    /// where the chords go (a fifth down, V–I, is the commonest step after
    /// the repeated chord).
    #[serde(default)]
    pub root_motion: BTreeMap<String, f32>,
}

/// Nats (times the chord weight) a piece's last chord costs when its bass
/// is not the tonic, and half that for each voice outside the tonic triad
/// ([`ChordCosts::ending`]). The log-odds of the training pieces ending on
/// the tonic (1.9 nats) moved too few endings: where the network hears no
/// end it is sure of another chord (validation, harmonize: a tonic ending
/// in 70% of the pieces at 1.9, 76–80% at 4; Bach's 84%).
pub const FINAL_NOT_TONIC: f32 = 4.0;

/// Highest cost a chord class is given (a class Bach never writes).
pub const MAX_CHORD_COST: f32 = 8.0;

impl ChordPrior {
    /// Counts the chord classes on the full beats of `pieces` (add-½
    /// smoothing). A piece whose phrase ends are unknown counts all its
    /// beats as ordinary.
    pub fn learn(pieces: &[Score]) -> ChordPrior {
        let mut counts = [[0usize; ChordClass::COUNT]; 2];
        let mut motion = [0usize; MOTIONS];
        for piece in pieces {
            let rows = piece.sounding_pitches();
            for step in (0..rows.len()).step_by(STEPS_PER_QUARTER) {
                if let Some(class) = ChordClass::of(&rows[step]) {
                    counts[piece.is_fermata(step) as usize][class.0 as usize] += 1;
                }
                if let Some(m) = step
                    .checked_sub(STEPS_PER_QUARTER)
                    .and_then(|b| root_motion(&rows[b], &rows[step]))
                {
                    motion[m] += 1;
                }
            }
        }
        let costs = |counts: &[usize]| -> Vec<f32> {
            let top = *counts.iter().max().unwrap_or(&0) as f64 + 0.5;
            counts
                .iter()
                .map(|n| {
                    let cost = ((top / (*n as f64 + 0.5)).ln() as f32).min(MAX_CHORD_COST);
                    (cost * 1000.0).round() / 1000.0
                })
                .collect()
        };
        let by_class = |counts: &[usize; ChordClass::COUNT]| -> BTreeMap<String, f32> {
            let c = costs(counts);
            ChordClass::all()
                .filter_map(|k| Some((k.name()?, c[k.0 as usize])))
                .collect()
        };
        ChordPrior {
            beats: counts[0].iter().sum(),
            fermata_beats: counts[1].iter().sum(),
            costs: by_class(&counts[0]),
            fermata_costs: by_class(&counts[1]),
            root_motion: motion_costs(&motion)
                .into_iter()
                .enumerate()
                .map(|(i, c)| (motion_name(i), c))
                .collect(),
        }
    }

    /// The costs by class index, ready for the samplers.
    pub fn table(&self) -> ChordCosts {
        let lookup = |map: &BTreeMap<String, f32>| -> [f32; ChordClass::COUNT] {
            std::array::from_fn(|i| {
                ChordClass(i as u8)
                    .name()
                    .and_then(|n| map.get(&n).copied())
                    .unwrap_or(MAX_CHORD_COST)
                    .clamp(0.0, MAX_CHORD_COST)
            })
        };
        ChordCosts {
            beat: lookup(&self.costs),
            fermata: lookup(&self.fermata_costs),
            motion: std::array::from_fn(|i| {
                self.root_motion
                    .get(&motion_name(i))
                    .copied()
                    .unwrap_or(0.0)
                    .clamp(0.0, MAX_CHORD_COST)
            }),
        }
    }

    /// Why a card's prior cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let costs = self.costs.iter().chain(&self.fermata_costs);
        let motion = self.root_motion.iter();
        let all = costs
            .map(|(n, c)| (n.as_str(), c))
            .chain(motion.map(|(n, c)| (n.as_str(), c)));
        for (name, cost) in all {
            if !cost.is_finite() || *cost < 0.0 || *cost > MAX_CHORD_COST {
                return Err(format!(
                    "the chord prior's cost of '{name}' is {cost}, outside 0–{MAX_CHORD_COST}"
                ));
            }
        }
        Ok(())
    }
}

/// A [`ChordPrior`] indexed by [`ChordClass`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChordCosts {
    pub beat: [f32; ChordClass::COUNT],
    pub fermata: [f32; ChordClass::COUNT],
    /// By root motion ([`root_motion`]).
    pub motion: [f32; MOTIONS],
}

/// Root motions told apart: 0–11 semitones up, and a step into or out of
/// a beat that is no chord.
pub const MOTIONS: usize = 13;

/// The step between two consecutive beats: the root motion in semitones up
/// (0–11), or 12 where either is no chord (a voice silent counts as no
/// chord), so that such a beat pays for its neighbours as Bach's do, not
/// nothing. `None` where either is a breath (all four silent).
pub fn root_motion(before: &[Option<u8>; VOICES], after: &[Option<u8>; VOICES]) -> Option<usize> {
    let breath = |row: &[Option<u8>; VOICES]| row.iter().all(Option::is_none);
    if breath(before) || breath(after) {
        return None;
    }
    Some(match (Chord::of(before), Chord::of(after)) {
        (Some(a), Some(b)) => ((b.root + 12 - a.root) % 12) as usize,
        _ => 12,
    })
}

/// Costs of the root motions from their counts: −ln of each share over the
/// commonest's, between chords; a step into or out of no chord costs what
/// Bach's own steps between chords cost on average, so that a beat that is
/// no chord neither escapes the motion's price nor pays more than a chord
/// would. (Priced by its own share, common as such steps are, a beat that
/// is no chord paid almost nothing for its neighbours, and the samplers
/// reached for one where two chords would have made an unusual step: 20%
/// of the beats against Bach's 11%.)
fn motion_costs(counts: &[usize; MOTIONS]) -> [f32; MOTIONS] {
    let chords = &counts[..12];
    let top = *chords.iter().max().unwrap_or(&0) as f64 + 0.5;
    let mut costs = [0.0f32; MOTIONS];
    for (m, n) in chords.iter().enumerate() {
        let cost = ((top / (*n as f64 + 0.5)).ln() as f32).min(MAX_CHORD_COST);
        costs[m] = (cost * 1000.0).round() / 1000.0;
    }
    let total: usize = chords.iter().sum();
    let mean = chords
        .iter()
        .zip(&costs)
        .map(|(n, c)| *n as f64 * *c as f64)
        .sum::<f64>()
        / total.max(1) as f64;
    costs[12] = ((mean as f32) * 1000.0).round() / 1000.0;
    costs
}

/// The card's name of a root motion: "0" … "11" semitones up, "no chord".
fn motion_name(motion: usize) -> String {
    match motion {
        12 => NO_CHORD.to_string(),
        m => m.to_string(),
    }
}

/// The last step where all four voices sound.
pub fn last_full_row(rows: &[[Option<u8>; VOICES]]) -> Option<usize> {
    (0..rows.len())
        .rev()
        .find(|s| rows[*s].iter().all(Option::is_some))
}

/// A root-position major or minor triad on `key`'s tonic (a Picardy third
/// counts).
pub fn is_tonic_ending(row: &[Option<u8>; VOICES], key: Key) -> bool {
    Chord::of(row).is_some_and(|c| c.is_root_position_triad() && c.root == key.tonic % 12)
}

impl ChordCosts {
    /// The cost of the chord `row` sounds on a beat (under a fermata or
    /// not).
    pub fn of(&self, row: &[Option<u8>; VOICES], fermata: bool) -> f32 {
        // A voice silent while others sound is no chord either: priced as
        // one, it is no way out of the prior (the rules charge the silence
        // too). All four silent is a breath, and free.
        let class = match ChordClass::of(row) {
            Some(c) => c,
            None if row.iter().all(Option::is_none) => return 0.0,
            None => ChordClass::NONE,
        };
        match fermata {
            true => self.fermata[class.0 as usize],
            false => self.beat[class.0 as usize],
        }
    }

    /// The cost of `row` as a piece's last chord, which should be the
    /// tonic triad (`tonic` a pitch class) in root position: the full cost
    /// when the bass is not the tonic, half of it for each voice sounding
    /// a pitch class outside the tonic's major or minor triad. Counted
    /// voice by voice, so that the samplers, which change one cell at a
    /// time, feel each step towards the tonic chord, not only the last.
    pub fn ending(&self, row: &[Option<u8>; VOICES], tonic: u8) -> f32 {
        let t = tonic % 12;
        let inside = |p: u8| matches!((p + 12 - t) % 12, 0 | 3 | 4 | 7);
        let bass = match row[VOICES - 1] {
            Some(p) if p % 12 == t => 0.0,
            _ => FINAL_NOT_TONIC,
        };
        let foreign = row.iter().flatten().filter(|p| !inside(**p % 12)).count();
        bass + 0.5 * FINAL_NOT_TONIC * foreign as f32
    }

    /// The cost of going from the chord of `before` to the chord of
    /// `after` (consecutive beats); 0 unless both are chords.
    pub fn motion(&self, before: &[Option<u8>; VOICES], after: &[Option<u8>; VOICES]) -> f32 {
        root_motion(before, after).map_or(0.0, |m| self.motion[m])
    }

    /// The whole score's cost: every beat's, every step between
    /// consecutive beats (for tests and reports; the final chord's is the
    /// sampler's, which knows the key).
    pub fn energy(&self, score: &Score) -> f32 {
        let rows = score.sounding_pitches();
        let beats: Vec<usize> = (0..rows.len()).step_by(STEPS_PER_QUARTER).collect();
        let chords: f32 = beats
            .iter()
            .map(|s| self.of(&rows[*s], score.is_fermata(*s)))
            .sum();
        let phrase_ends: f32 = score
            .fermatas()
            .iter()
            .map(|f| f.end - 1)
            .filter(|s| s % STEPS_PER_QUARTER != 0 && *s < rows.len())
            .map(|s| self.of(&rows[s], true))
            .sum();
        let motion: f32 = beats
            .windows(2)
            .map(|w| self.motion(&rows[w[0]], &rows[w[1]]))
            .sum();
        chords + phrase_ends + motion
    }
}

/// Σ min(pᵢ, qᵢ) of two count maps normalised to sum 1; `None` when either
/// is empty.
fn map_overlap(a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>) -> Option<f64> {
    let (sa, sb): (usize, usize) = (a.values().sum(), b.values().sum());
    if sa == 0 || sb == 0 {
        return None;
    }
    Some(
        a.iter()
            .map(|(k, x)| {
                let y = b.get(k).copied().unwrap_or(0);
                (*x as f64 / sa as f64).min(y as f64 / sb as f64)
            })
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constraints::Scale;

    fn row(pitches: [u8; 4]) -> [Option<u8>; VOICES] {
        pitches.map(Some)
    }

    /// One four-voice chord (soprano first) per quarter note.
    fn quarter_chords(rows: &[[u8; 4]]) -> Score {
        Score::from_chords(rows, STEPS_PER_QUARTER)
    }

    #[test]
    fn chords_are_named_by_quality_and_bass() {
        // C major: root position, first inversion, six-four.
        let c = Chord::of(&row([72, 67, 64, 48])).unwrap();
        assert_eq!(
            (c.root, c.quality, c.inversion),
            (0, Quality::Major, Inversion::Root)
        );
        assert_eq!(c.class_name(), "major, root");
        assert_eq!(
            Chord::of(&row([72, 67, 60, 52])).unwrap().class_name(),
            "major, 6"
        );
        assert_eq!(
            Chord::of(&row([72, 64, 60, 55])).unwrap().class_name(),
            "major, 6/4"
        );
        // G7 over F: the seventh in the bass; without its fifth too.
        assert_eq!(
            Chord::of(&row([71, 67, 62, 53])).unwrap().class_name(),
            "dominant 7 (4/2)"
        );
        let g7 = Chord::of(&row([71, 65, 59, 43])).unwrap();
        assert_eq!((g7.quality, g7.complete), (Quality::DominantSeventh, false));
        // A suspension and an open fifth are no chord.
        assert_eq!(Chord::of(&row([72, 65, 60, 48])), None);
        assert_eq!(beat_class(&row([72, 67, 60, 48])), NO_CHORD);
        assert_eq!(sonority(&row([72, 67, 64, 48])).as_deref(), Some("0-4-7"));
        assert_eq!(sonority(&[Some(72), None, Some(64), Some(48)]), None);
    }

    #[test]
    fn the_chord_prior_prices_what_the_pieces_seldom_sound() {
        let chords = |rows: &[[u8; 4]], fermata_last: bool| {
            let mut score = quarter_chords(rows);
            if fermata_last {
                score.set_fermatas(vec![(rows.len() - 1) * 4..rows.len() * 4]);
            }
            score
        };
        let c = [72, 67, 64, 48];
        let g64 = [74, 71, 67, 50];
        let g7 = [74, 71, 65, 43];
        // Many root-position triads, a few six-fours and sevenths; phrases
        // end on the triad.
        let piece = chords(&[c, c, c, g64, c, g7, c, c], true);
        let prior = ChordPrior::learn(&[piece.clone(), piece]);
        assert_eq!((prior.beats, prior.fermata_beats), (14, 2));
        let table = prior.table();
        let cost = |row: [u8; 4], fermata| table.of(&row.map(Some), fermata);
        assert_eq!(cost(c, false), 0.0, "the commonest chord is free");
        assert!(cost(g64, false) > 1.0 && cost(g7, false) > 1.0);
        assert!(cost(g7, true) > cost(g7, false), "never at a phrase end");
        // A suspension the pieces never sound costs more than a six-four
        // they sound once.
        assert!(cost([72, 65, 60, 48], false) > cost(g64, false));
        let silent_alto = [Some(72), None, Some(64), Some(48)];
        assert_eq!(table.of(&silent_alto, false), cost([72, 65, 60, 48], false));
        assert_eq!(table.of(&[None; 4], false), 0.0, "a breath is free");
        prior.check().unwrap();
        // The card form survives a round trip.
        let json = serde_json::to_string(&prior).unwrap();
        assert_eq!(
            serde_json::from_str::<ChordPrior>(&json).unwrap().table(),
            table
        );
    }

    #[test]
    fn degrees_read_the_root_in_the_key() {
        let c_major = Key {
            tonic: 0,
            scale: Scale::Major,
        };
        let a_minor = Key {
            tonic: 9,
            scale: Scale::Minor,
        };
        let g = Chord::of(&row([71, 67, 62, 43])).unwrap();
        assert_eq!(g.degree(c_major), "V");
        let a = Chord::of(&row([72, 69, 64, 45])).unwrap();
        assert_eq!(a.degree(c_major), "vi");
        assert_eq!(a.degree(a_minor), "i");
        let e = Chord::of(&row([71, 68, 64, 40])).unwrap();
        assert_eq!(e.degree(a_minor), "V");
    }

    #[test]
    fn a_tally_reads_the_beats_the_ending_and_the_fermatas() {
        // I – I6/4 – V/V – I in C, a fermata on the last chord; the F# of
        // V/V lies outside C major.
        let chords = [
            [72, 67, 64, 48],
            [72, 67, 64, 55],
            [74, 69, 66, 50],
            [72, 67, 64, 48],
        ];
        let mut score = quarter_chords(&chords);
        score.set_fermatas(vec![12..16]);
        let key = Key {
            tonic: 0,
            scale: Scale::Major,
        };
        let t = HarmonyTally::measure(&score, &[0..16], None, Some(key), score.fermatas(), true);
        assert_eq!(t.beats, 4);
        assert_eq!(t.classes.get("major, root"), Some(&3));
        assert_eq!(t.classes.get("major, 6/4"), Some(&1));
        assert_eq!(t.outside_key_notes, 1);
        assert_eq!((t.endings, t.tonic_endings), (1, 1));
        assert_eq!((t.fermatas, t.fermata_root_triads), (1, 1));
        assert_eq!(t.fermata_degrees.get("I"), Some(&1));
        let s = t.summary(Some(&t));
        assert_eq!(s.root_position_triads, Some(0.75));
        assert_eq!(s.six_fours, Some(0.25));
        assert_eq!(s.sonority_overlap, Some(1.0));
        assert_eq!(s.outside_key_per_100_beats, Some(25.0));
    }
}
