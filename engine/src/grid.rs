//! The score grid: 16th-note steps × four voices, each cell one [`Token`].
//!
//! Everything Cantor composes lives on this grid. Timed notes (from MIDI,
//! MusicXML or the host) are quantized onto it, the network sees a relaxation
//! of it, and notes are read back off it for output.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Grid resolution: 16th notes, four to a quarter-note beat.
pub const STEPS_PER_QUARTER: usize = 4;
/// Number of voices (soprano, alto, tenor, bass).
pub const VOICES: usize = 4;
/// Velocity given to notes the model writes and to notes read from formats
/// that carry none (JSB, MusicXML).
pub const DEFAULT_VELOCITY: u8 = 80;

/// One of the four chorale voices, highest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Voice {
    Soprano,
    Alto,
    Tenor,
    Bass,
}

impl Voice {
    pub const ALL: [Voice; VOICES] = [Voice::Soprano, Voice::Alto, Voice::Tenor, Voice::Bass];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(index: usize) -> Voice {
        Voice::ALL[index]
    }

    pub fn name(self) -> &'static str {
        match self {
            Voice::Soprano => "soprano",
            Voice::Alto => "alto",
            Voice::Tenor => "tenor",
            Voice::Bass => "bass",
        }
    }

    /// Parses `soprano`, `s`, `sop`, `Alto`, … (case-insensitive).
    pub fn parse(text: &str) -> Option<Voice> {
        match text.trim().to_ascii_lowercase().as_str() {
            "s" | "sop" | "soprano" | "cantus" => Some(Voice::Soprano),
            "a" | "alt" | "alto" => Some(Voice::Alto),
            "t" | "ten" | "tenor" => Some(Voice::Tenor),
            "b" | "bas" | "bass" | "basso" => Some(Voice::Bass),
            _ => None,
        }
    }
}

impl fmt::Display for Voice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one voice does during one 16th-note step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Token {
    /// Silence.
    #[default]
    Rest,
    /// The note sounding in the previous step goes on.
    Hold,
    /// A new note (MIDI pitch) starts at this step.
    Pitch(u8),
}

/// A time signature; the grid only needs bar lengths from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSignature {
    pub numerator: u8,
    pub denominator: u8,
}

impl TimeSignature {
    pub const COMMON: TimeSignature = TimeSignature {
        numerator: 4,
        denominator: 4,
    };

    /// Bar length in 16th-note steps (at least one step).
    pub fn steps_per_bar(self) -> usize {
        let sixteenths = self.numerator as usize * 16 / self.denominator.max(1) as usize;
        sixteenths.max(1)
    }
}

impl fmt::Display for TimeSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

/// A note read off (or to be written onto) the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Note {
    pub voice: Voice,
    pub pitch: u8,
    /// First step of the note.
    pub start: usize,
    /// Length in steps (at least 1).
    pub length: usize,
    pub velocity: u8,
}

impl Note {
    pub fn end(&self) -> usize {
        self.start + self.length
    }
}

/// A four-voice piece on the 16th-note grid, with the meter and tempo it was
/// read with so that it can be written back the same way.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    cells: Vec<[Token; VOICES]>,
    /// Velocity of the note starting in each cell (meaningful on `Token::Pitch`).
    velocities: Vec<[u8; VOICES]>,
    /// Time-signature changes as (step, signature), sorted, the first at step 0.
    time_signatures: Vec<(usize, TimeSignature)>,
    /// Tempo changes as (step, microseconds per quarter note), sorted, first at 0.
    tempos: Vec<(usize, u32)>,
    /// Where it is known whether a phrase ends (spans, sorted, disjoint):
    /// nowhere in a plain MIDI file nobody marked, everywhere in a MusicXML
    /// file with its fermatas, up to the prompt's end in a continuation.
    phrasing_known: Vec<Range<usize>>,
    /// The steps under each fermata, the phrase ends (spans, sorted,
    /// disjoint, inside `phrasing_known`).
    fermatas: Vec<Range<usize>>,
}

/// 120 beats per minute, the MIDI default.
pub const DEFAULT_TEMPO_US_PER_QUARTER: u32 = 500_000;

impl Score {
    /// A silent score of `steps` steps in 4/4 at 120 bpm.
    pub fn new(steps: usize) -> Score {
        Score {
            cells: vec![[Token::Rest; VOICES]; steps],
            velocities: vec![[DEFAULT_VELOCITY; VOICES]; steps],
            time_signatures: vec![(0, TimeSignature::COMMON)],
            tempos: vec![(0, DEFAULT_TEMPO_US_PER_QUARTER)],
            phrasing_known: Vec::new(),
            fermatas: Vec::new(),
        }
    }

    /// Builds a score from notes; a later note in the same voice cuts an
    /// earlier one short. Notes past `steps` are clipped.
    pub fn from_notes(steps: usize, notes: &[Note]) -> Score {
        let mut score = Score::new(steps);
        let mut sorted = notes.to_vec();
        sorted.sort_by_key(|n| (n.start, n.voice));
        for note in sorted {
            score.write_note(note);
        }
        score
    }

    /// Four-voice chords (soprano first), each held `steps_each` steps, one
    /// after another, at the default velocity.
    pub fn from_chords(rows: &[[u8; VOICES]], steps_each: usize) -> Score {
        let notes: Vec<Note> = rows
            .iter()
            .enumerate()
            .flat_map(|(i, row)| {
                Voice::ALL.map(|voice| Note {
                    voice,
                    pitch: row[voice.index()],
                    start: i * steps_each,
                    length: steps_each,
                    velocity: DEFAULT_VELOCITY,
                })
            })
            .collect();
        Score::from_notes(rows.len() * steps_each, &notes)
    }

    /// A one-voice line: `pitches` as notes of `steps_each` steps, one after
    /// another, at the default velocity.
    pub fn from_pitches(voice: Voice, pitches: &[u8], steps_each: usize) -> Score {
        let notes: Vec<Note> = pitches
            .iter()
            .enumerate()
            .map(|(i, pitch)| Note {
                voice,
                pitch: *pitch,
                start: i * steps_each,
                length: steps_each,
                velocity: DEFAULT_VELOCITY,
            })
            .collect();
        Score::from_notes(pitches.len() * steps_each, &notes)
    }

    /// Writes a note over whatever the cells held.
    pub fn write_note(&mut self, note: Note) {
        let v = note.voice.index();
        if note.start >= self.len() || note.length == 0 {
            return;
        }
        self.cells[note.start][v] = Token::Pitch(note.pitch);
        self.velocities[note.start][v] = note.velocity;
        let end = note.end().min(self.len());
        for step in note.start + 1..end {
            self.cells[step][v] = Token::Hold;
        }
        // A note that used to continue past our end must not be continued by
        // the holds that follow: they now belong to nothing.
        let mut step = end;
        while step < self.len() && self.cells[step][v] == Token::Hold {
            self.cells[step][v] = Token::Rest;
            step += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn get(&self, step: usize, voice: Voice) -> Token {
        self.cells[step][voice.index()]
    }

    pub fn set(&mut self, step: usize, voice: Voice, token: Token) {
        self.cells[step][voice.index()] = token;
    }

    pub fn velocity(&self, step: usize, voice: Voice) -> u8 {
        self.velocities[step][voice.index()]
    }

    pub fn set_velocity(&mut self, step: usize, voice: Voice, velocity: u8) {
        self.velocities[step][voice.index()] = velocity;
    }

    pub fn cells(&self) -> &[[Token; VOICES]] {
        &self.cells
    }

    pub fn time_signatures(&self) -> &[(usize, TimeSignature)] {
        &self.time_signatures
    }

    pub fn tempos(&self) -> &[(usize, u32)] {
        &self.tempos
    }

    /// Replaces the meter; `changes` must start at step 0.
    pub fn set_time_signatures(&mut self, mut changes: Vec<(usize, TimeSignature)>) {
        changes.sort_by_key(|c| c.0);
        changes.dedup_by_key(|c| c.0);
        if changes.first().map(|c| c.0) != Some(0) {
            changes.insert(0, (0, TimeSignature::COMMON));
        }
        self.time_signatures = changes;
    }

    /// Replaces the tempo map; `changes` must start at step 0.
    pub fn set_tempos(&mut self, mut changes: Vec<(usize, u32)>) {
        changes.sort_by_key(|c| c.0);
        changes.dedup_by_key(|c| c.0);
        if changes.first().map(|c| c.0) != Some(0) {
            changes.insert(0, (0, DEFAULT_TEMPO_US_PER_QUARTER));
        }
        self.tempos = changes;
    }

    /// The steps under each fermata (the phrase ends), sorted.
    pub fn fermatas(&self) -> &[Range<usize>] {
        &self.fermatas
    }

    /// Where it is known whether a phrase ends, sorted.
    pub fn phrasing_known(&self) -> &[Range<usize>] {
        &self.phrasing_known
    }

    /// Whether it is known at `step` if a phrase ends there.
    pub fn knows_phrasing_at(&self, step: usize) -> bool {
        self.phrasing_known.iter().any(|s| s.contains(&step))
    }

    /// Whether `step` lies under a fermata.
    pub fn is_fermata(&self, step: usize) -> bool {
        self.fermatas.iter().any(|s| s.contains(&step))
    }

    /// The phrase ends of the whole score: the steps under each fermata,
    /// every other step known to end no phrase. Spans are clipped to the
    /// score, sorted and merged where they touch.
    pub fn set_fermatas(&mut self, spans: Vec<Range<usize>>) {
        let whole = std::iter::once(0..self.len()).collect();
        self.set_phrasing(whole, spans);
    }

    /// Phrase ends known only over `known`; fermatas outside it are dropped.
    pub fn set_phrasing(&mut self, known: Vec<Range<usize>>, fermatas: Vec<Range<usize>>) {
        self.phrasing_known = merge_spans(known, self.len());
        let inside: Vec<Range<usize>> = fermatas
            .into_iter()
            .flat_map(|f| {
                self.phrasing_known
                    .iter()
                    .filter(move |k| k.start < f.end && f.start < k.end)
                    .map(move |k| f.start.max(k.start)..f.end.min(k.end))
            })
            .collect();
        self.fermatas = merge_spans(inside, self.len());
    }

    /// Forgets where the phrases end.
    pub fn clear_phrasing(&mut self) {
        self.phrasing_known.clear();
        self.fermatas.clear();
    }

    /// The time signature in force at `step`.
    pub fn time_signature_at(&self, step: usize) -> TimeSignature {
        self.time_signatures
            .iter()
            .take_while(|(s, _)| *s <= step)
            .last()
            .map(|(_, ts)| *ts)
            .unwrap_or(TimeSignature::COMMON)
    }

    /// Steps of each bar, in order, covering the whole score (the last bar may
    /// be cut short by the end of the score).
    pub fn bars(&self) -> Vec<Range<usize>> {
        let mut bars = Vec::new();
        let mut start = 0;
        while start < self.len() {
            let length = self.time_signature_at(start).steps_per_bar();
            // A time-signature change in the middle of a bar starts a new bar.
            let next_change = self
                .time_signatures
                .iter()
                .map(|(s, _)| *s)
                .find(|s| *s > start && *s < start + length);
            let end = next_change.unwrap_or(start + length).min(self.len());
            bars.push(start..end);
            start = end;
        }
        bars
    }

    /// Steps of bar `number`, counted from 1.
    pub fn bar(&self, number: usize) -> Option<Range<usize>> {
        if number == 0 {
            return None;
        }
        self.bars().into_iter().nth(number - 1)
    }

    /// Human position of a step, e.g. "bar 3, beat 2".
    pub fn describe_step(&self, step: usize) -> String {
        let bars = self.bars();
        match bars.iter().position(|b| b.contains(&step)) {
            Some(index) => {
                let bar = &bars[index];
                let ts = self.time_signature_at(bar.start);
                let beat_steps = (16 / ts.denominator.max(1) as usize).max(1);
                let offset = step - bar.start;
                let beat = offset / beat_steps + 1;
                let sub = offset % beat_steps;
                if sub == 0 {
                    format!("bar {}, beat {}", index + 1, beat)
                } else {
                    format!("bar {}, beat {} + {}/16", index + 1, beat, sub)
                }
            }
            None => format!("step {step} (past the end)"),
        }
    }

    /// The pitch sounding in `voice` at `step`, following holds back to their
    /// onset. A hold with no note before it is silence.
    pub fn sounding(&self, step: usize, voice: Voice) -> Option<u8> {
        self.onset(step, voice)
            .map(|s| match self.cells[s][voice.index()] {
                Token::Pitch(p) => p,
                _ => unreachable!("onset() returns pitch cells"),
            })
    }

    /// The step where the note sounding in `voice` at `step` began.
    pub fn onset(&self, step: usize, voice: Voice) -> Option<usize> {
        let v = voice.index();
        let mut s = step;
        loop {
            match self.cells[s][v] {
                Token::Rest => return None,
                Token::Pitch(_) => return Some(s),
                Token::Hold if s == 0 => return None,
                Token::Hold => s -= 1,
            }
        }
    }

    /// Sounding pitch of every voice at every step (computed in one pass).
    pub fn sounding_pitches(&self) -> Vec<[Option<u8>; VOICES]> {
        let mut out = Vec::with_capacity(self.len());
        let mut current = [None; VOICES];
        for cell in &self.cells {
            for v in 0..VOICES {
                current[v] = match cell[v] {
                    Token::Rest => None,
                    Token::Hold => current[v],
                    Token::Pitch(p) => Some(p),
                };
            }
            out.push(current);
        }
        out
    }

    /// All notes, ordered by start step then voice.
    pub fn notes(&self) -> Vec<Note> {
        let mut notes = Vec::new();
        for voice in Voice::ALL {
            notes.extend(self.voice_notes(voice));
        }
        notes.sort_by_key(|n| (n.start, n.voice));
        notes
    }

    /// Notes of one voice, in order.
    pub fn voice_notes(&self, voice: Voice) -> Vec<Note> {
        let v = voice.index();
        let mut notes: Vec<Note> = Vec::new();
        let mut open: Option<Note> = None;
        for (step, cell) in self.cells.iter().enumerate() {
            match cell[v] {
                Token::Hold => {
                    if let Some(note) = open.as_mut() {
                        note.length += 1;
                    }
                }
                Token::Rest => notes.extend(open.take()),
                Token::Pitch(pitch) => {
                    notes.extend(open.take());
                    open = Some(Note {
                        voice,
                        pitch,
                        start: step,
                        length: 1,
                        velocity: self.velocities[step][v],
                    });
                }
            }
        }
        notes.extend(open);
        notes
    }

    /// Whether a voice has any note at all.
    pub fn voice_is_silent(&self, voice: Voice) -> bool {
        self.cells
            .iter()
            .all(|c| !matches!(c[voice.index()], Token::Pitch(_)))
    }

    /// Turns holds that follow silence into rests, so every hold belongs to a
    /// note.
    pub fn normalize(&mut self) {
        for v in 0..VOICES {
            let mut sounding = false;
            for cell in &mut self.cells {
                match cell[v] {
                    Token::Rest => sounding = false,
                    Token::Pitch(_) => sounding = true,
                    Token::Hold if !sounding => cell[v] = Token::Rest,
                    Token::Hold => {}
                }
            }
        }
    }

    /// The score moved by `semitones`, or `None` when a pitch would leave
    /// the MIDI range.
    pub fn transposed(&self, semitones: i32) -> Option<Score> {
        let mut out = self.clone();
        for cell in &mut out.cells {
            for token in cell.iter_mut() {
                if let Token::Pitch(p) = token {
                    let moved = *p as i32 + semitones;
                    if !(0..=127).contains(&moved) {
                        return None;
                    }
                    *p = moved as u8;
                }
            }
        }
        Some(out)
    }

    /// Lowest and highest pitch of a voice, if it sings at all.
    pub fn voice_span(&self, voice: Voice) -> Option<(u8, u8)> {
        let v = voice.index();
        let pitches = self.cells.iter().filter_map(|c| match c[v] {
            Token::Pitch(p) => Some(p),
            _ => None,
        });
        pitches.fold(None, |acc, p| match acc {
            None => Some((p, p)),
            Some((lo, hi)) => Some((lo.min(p), hi.max(p))),
        })
    }

    /// Steps `range` as a score of their own (meter and tempo carried over).
    pub fn slice(&self, range: Range<usize>) -> Score {
        let range = range.start.min(self.len())..range.end.min(self.len());
        let mut cells = self.cells[range.clone()].to_vec();
        let mut velocities = self.velocities[range.clone()].to_vec();
        // A hold at the start of the slice continues a note that began before
        // it: make the slice start that note instead of dropping it.
        if range.start > 0 {
            for v in 0..VOICES {
                if cells.first().map(|c| c[v]) == Some(Token::Hold) {
                    if let Some(onset) = self.onset(range.start, Voice::from_index(v)) {
                        cells[0][v] = self.cells[onset][v];
                        velocities[0][v] = self.velocities[onset][v];
                    }
                }
            }
        }
        let ts = changes_within(&self.time_signatures, &range);
        let tempos = changes_within(&self.tempos, &range);
        let within = |spans: &[Range<usize>]| -> Vec<Range<usize>> {
            spans
                .iter()
                .filter(|s| s.start < range.end && s.end > range.start)
                .map(|s| s.start.max(range.start) - range.start..s.end.min(range.end) - range.start)
                .collect()
        };
        let (phrasing_known, fermatas) = (within(&self.phrasing_known), within(&self.fermatas));
        let mut out = Score {
            cells,
            velocities,
            time_signatures: Vec::new(),
            tempos: Vec::new(),
            phrasing_known,
            fermatas,
        };
        let mut ts_all = vec![(0, self.time_signature_at(range.start))];
        ts_all.extend(ts);
        out.set_time_signatures(ts_all);
        let first_tempo = self
            .tempos
            .iter()
            .take_while(|(s, _)| *s <= range.start)
            .last()
            .map(|(_, t)| *t)
            .unwrap_or(DEFAULT_TEMPO_US_PER_QUARTER);
        let mut tempo_all = vec![(0, first_tempo)];
        tempo_all.extend(tempos);
        out.set_tempos(tempo_all);
        out
    }

    /// Appends `other`'s cells and its fermatas (its meter and tempo are
    /// not carried over).
    pub fn append(&mut self, other: &Score) {
        let offset = self.len();
        self.cells.extend_from_slice(&other.cells);
        self.velocities.extend_from_slice(&other.velocities);
        let joined = |mine: &[Range<usize>], theirs: &[Range<usize>]| -> Vec<Range<usize>> {
            let theirs = theirs.iter().map(|s| s.start + offset..s.end + offset);
            mine.iter().cloned().chain(theirs).collect()
        };
        let known = joined(&self.phrasing_known, &other.phrasing_known);
        let fermatas = joined(&self.fermatas, &other.fermatas);
        self.set_phrasing(known, fermatas);
    }

    /// The score lengthened with rests to `steps` steps (never shortened).
    pub fn extended(&self, steps: usize) -> Score {
        let mut out = self.clone();
        if steps > out.len() {
            out.cells.resize(steps, [Token::Rest; VOICES]);
            out.velocities.resize(steps, [DEFAULT_VELOCITY; VOICES]);
        }
        out
    }
}

/// `spans` clipped to `0..steps`, empty ones dropped, sorted, and merged
/// where they overlap or touch.
fn merge_spans(mut spans: Vec<Range<usize>>, steps: usize) -> Vec<Range<usize>> {
    spans.retain_mut(|s| {
        s.end = s.end.min(steps);
        s.start < s.end
    });
    spans.sort_by_key(|s| s.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// Changes strictly inside `range`, moved to be relative to its start.
fn changes_within<T: Copy>(changes: &[(usize, T)], range: &Range<usize>) -> Vec<(usize, T)> {
    changes
        .iter()
        .filter(|(s, _)| *s > range.start && *s < range.end)
        .map(|(s, t)| (*s - range.start, *t))
        .collect()
}

/// Human name of a MIDI pitch, e.g. 60 → "C4".
pub fn pitch_name(pitch: u8) -> String {
    const NAMES: [&str; 12] = [
        "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
    ];
    format!("{}{}", NAMES[pitch as usize % 12], pitch as i32 / 12 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(voice: Voice, pitch: u8, start: usize, length: usize) -> Note {
        Note {
            voice,
            pitch,
            start,
            length,
            velocity: 90,
        }
    }

    #[test]
    fn notes_round_trip_through_the_grid() {
        let notes = vec![
            note(Voice::Soprano, 72, 0, 4),
            note(Voice::Soprano, 72, 4, 2),
            note(Voice::Soprano, 74, 8, 8),
            note(Voice::Bass, 48, 0, 16),
        ];
        let score = Score::from_notes(16, &notes);
        let mut back = score.notes();
        back.sort_by_key(|n| (n.voice, n.start));
        let mut expected = notes.clone();
        expected.sort_by_key(|n| (n.voice, n.start));
        assert_eq!(back, expected);
        assert_eq!(score.get(4, Voice::Soprano), Token::Pitch(72));
        assert_eq!(score.get(6, Voice::Soprano), Token::Rest);
        assert_eq!(score.sounding(15, Voice::Bass), Some(48));
    }

    #[test]
    fn bars_follow_time_signature_changes() {
        let mut score = Score::new(16 + 12 + 12 + 5);
        score.set_time_signatures(vec![
            (0, TimeSignature::COMMON),
            (
                16,
                TimeSignature {
                    numerator: 3,
                    denominator: 4,
                },
            ),
        ]);
        let bars = score.bars();
        assert_eq!(bars, vec![0..16, 16..28, 28..40, 40..45]);
        assert_eq!(score.bar(2), Some(16..28));
        assert_eq!(score.describe_step(21), "bar 2, beat 2 + 1/16");
    }

    #[test]
    fn writing_a_note_cuts_off_the_tail_of_the_one_it_replaces() {
        let mut score = Score::from_notes(8, &[note(Voice::Alto, 60, 0, 8)]);
        score.write_note(note(Voice::Alto, 62, 2, 2));
        let notes = score.voice_notes(Voice::Alto);
        assert_eq!(
            notes,
            vec![note(Voice::Alto, 60, 0, 2), note(Voice::Alto, 62, 2, 2)]
        );
    }

    #[test]
    fn slicing_restarts_notes_that_began_before_the_slice() {
        let score = Score::from_notes(8, &[note(Voice::Tenor, 55, 0, 8)]);
        let slice = score.slice(4..8);
        assert_eq!(
            slice.voice_notes(Voice::Tenor),
            vec![note(Voice::Tenor, 55, 0, 4)]
        );
    }

    #[test]
    fn pitch_names() {
        assert_eq!(pitch_name(60), "C4");
        assert_eq!(pitch_name(81), "A5");
    }
}
