//! Reading and writing music: MIDI files, MusicXML, the JSB benchmark JSON.
//!
//! Every reader turns its format into *parts* (a track, a channel, a
//! MusicXML part) of notes already quantized to the grid, then
//! [`assign_voices`] decides which part sings which voice and checks that
//! each voice is one line. Errors name the file and the bar and beat.

pub mod jsb;
pub mod midi;
pub mod musicxml;

use std::path::Path;

use crate::error::{CantorError, Result};
use crate::grid::{pitch_name, Note, Score, TimeSignature, Voice, VOICES};

pub use jsb::{read_jsb, JsbSplits};
pub use midi::{read_midi, write_midi};
pub use musicxml::read_musicxml;

/// What a music file may hold, checked before anything the size of the
/// piece is allocated. A file past a limit is refused with one line saying
/// which limit and where; `cantor --max-bars` raises the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest piece, in bars of 4/4 (16 grid steps each).
    pub max_bars: usize,
    /// Largest file read, and largest score inflated from an `.mxl` archive.
    pub max_bytes: u64,
    /// Most XML nodes in a MusicXML document.
    pub max_xml_nodes: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // A chorale is 10–30 bars; a long movement a few hundred.
            max_bars: 1_000,
            max_bytes: 64 << 20,
            max_xml_nodes: 4_000_000,
        }
    }
}

impl Limits {
    /// The longest piece in grid steps.
    pub fn max_steps(&self) -> usize {
        self.max_bars
            .saturating_mul(4)
            .saturating_mul(crate::grid::STEPS_PER_QUARTER)
    }

    /// Refuses a piece that would end past `max_bars`; `what` says where.
    pub fn check_end(&self, path: &Path, end: usize, what: &str) -> Result<()> {
        if end > self.max_steps() {
            let quarters = end / crate::grid::STEPS_PER_QUARTER;
            return Err(CantorError::music(
                path,
                format!(
                    "{what} ends {quarters} quarter notes in (about {} bars of 4/4), past the limit of {} bars; --max-bars raises it",
                    quarters / 4 + 1,
                    self.max_bars
                ),
            ));
        }
        Ok(())
    }

    /// Reads a whole file, refusing one larger than `max_bytes` before reading it.
    pub fn read_file(&self, path: &Path) -> Result<Vec<u8>> {
        let file = std::fs::File::open(path).map_err(|e| CantorError::io(path, e))?;
        match self
            .read_capped(file)
            .map_err(|e| CantorError::io(path, e))?
        {
            Some(bytes) => Ok(bytes),
            None => Err(CantorError::music(
                path,
                format!(
                    "the file is larger than {} MB, the limit for a music file",
                    self.max_bytes >> 20
                ),
            )),
        }
    }

    /// Reads `reader` to its end, streaming, or `None` as soon as it passes
    /// `max_bytes` (never holding more than the limit and one byte).
    pub fn read_capped(&self, reader: impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let mut bytes = Vec::new();
        reader.take(self.max_bytes + 1).read_to_end(&mut bytes)?;
        Ok((bytes.len() as u64 <= self.max_bytes).then_some(bytes))
    }
}

/// How a file's parts become voices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoiceLayout {
    /// The file is a one-voice melody that sings this voice; anything
    /// polyphonic is an error.
    Melody(Voice),
    /// Up to four parts, highest to lowest, or one part of chords split into
    /// voices by pitch order.
    Auto,
}

/// A note on the grid before it has a voice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartNote {
    pub pitch: u8,
    pub start: usize,
    pub end: usize,
    pub velocity: u8,
}

/// A track, channel or MusicXML part.
#[derive(Clone, Debug, Default)]
pub struct Part {
    /// What to call it in messages ("track 2", "part 'Alto'").
    pub name: String,
    pub notes: Vec<PartNote>,
    /// The voice the file names this part for (a track or part called
    /// "Alto", say), if any.
    pub voice_hint: Option<Voice>,
}

/// Meter and tempo read alongside the notes, in grid steps.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub time_signatures: Vec<(usize, TimeSignature)>,
    pub tempos: Vec<(usize, u32)>,
}

/// Reads a MIDI or MusicXML file, choosing the reader by extension.
pub fn read_music(path: &Path, layout: VoiceLayout, limits: &Limits) -> Result<Score> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mid" | "midi" | "smf" => read_midi(path, layout, limits),
        "mxl" | "musicxml" | "xml" => read_musicxml(path, layout, limits),
        _ => Err(CantorError::music(
            path,
            "unknown file type: expected .mid/.midi, .mxl, .musicxml or .xml",
        )),
    }
}

/// Builds the score: assigns parts to voices, then lays the notes on a grid
/// that ends on a bar line. Refuses a piece past `limits` before allocating
/// its grid.
pub fn assemble(
    path: &Path,
    parts: Vec<Part>,
    timeline: Timeline,
    layout: VoiceLayout,
    limits: &Limits,
) -> Result<Score> {
    let parts: Vec<Part> = parts.into_iter().filter(|p| !p.notes.is_empty()).collect();
    for part in &parts {
        if let Some(note) = part.notes.iter().max_by_key(|n| n.end) {
            let start = note.start / crate::grid::STEPS_PER_QUARTER;
            limits.check_end(
                path,
                note.end,
                &format!(
                    "{}: the note {} at quarter note {start}",
                    part.name,
                    pitch_name(note.pitch)
                ),
            )?;
        }
    }
    build(path, parts, timeline, |score, parts| {
        assign_voices(path, score, parts, layout)
    })
}

fn build(
    path: &Path,
    parts: Vec<Part>,
    timeline: Timeline,
    assign: impl FnOnce(&Score, Vec<Part>) -> Result<Vec<Note>>,
) -> Result<Score> {
    let end = parts
        .iter()
        .flat_map(|p| p.notes.iter().map(|n| n.end))
        .max()
        .ok_or_else(|| CantorError::music(path, "the file holds no notes"))?;
    let mut score = Score::new(end.max(1));
    score.set_time_signatures(timeline.time_signatures);
    score.set_tempos(timeline.tempos);
    // Round the length up to a whole bar so continuations start on a bar line.
    let last_bar = score.bars().last().cloned().unwrap_or(0..end);
    let bar_end = last_bar.start + score.time_signature_at(last_bar.start).steps_per_bar();
    let mut score = score.extended(bar_end.max(end));
    let notes = assign(&score, parts)?;
    for note in notes {
        score.write_note(note);
    }
    Ok(score)
}

/// Decides which part sings which voice and makes each voice one line.
pub fn assign_voices(
    path: &Path,
    score: &Score,
    parts: Vec<Part>,
    layout: VoiceLayout,
) -> Result<Vec<Note>> {
    if layout == VoiceLayout::Auto {
        if let Some(named) = named_voices(&parts) {
            let mut notes = Vec::new();
            for (part, voice) in named {
                notes.extend(monophonic_line(path, score, part, voice, false)?);
            }
            return Ok(notes);
        }
    }
    match layout {
        VoiceLayout::Melody(voice) => {
            if parts.len() > 1 {
                let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
                return Err(CantorError::music(
                    path,
                    format!(
                        "a one-voice melody is needed, but {} parts have notes ({})",
                        parts.len(),
                        names.join(", ")
                    ),
                ));
            }
            let part = parts.into_iter().next().expect("one part");
            monophonic_line(path, score, &part, voice, true)
        }
        VoiceLayout::Auto if parts.len() == 1 && is_one_line(&parts[0]) => {
            monophonic_line(path, score, &parts[0], Voice::Soprano, true)
        }
        VoiceLayout::Auto if parts.len() == 1 => split_chords(path, score, &parts[0]),
        VoiceLayout::Auto => {
            if parts.len() > VOICES {
                let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
                return Err(CantorError::music(
                    path,
                    format!(
                        "{} parts have notes ({}); Cantor reads at most four voices",
                        parts.len(),
                        names.join(", ")
                    ),
                ));
            }
            let mut parts = parts;
            parts.sort_by(|a, b| mean_pitch(b).total_cmp(&mean_pitch(a)));
            let voices = voices_for_parts(&parts);
            let mut notes = Vec::new();
            for (part, voice) in parts.iter().zip(voices) {
                notes.extend(monophonic_line(path, score, part, voice, false)?);
            }
            Ok(notes)
        }
    }
}

/// Parts whose names say which voice they sing, when those names can be
/// trusted: every named voice named once, and either every part named or all
/// four voices named (other parts, such as instruments doubling the voices in
/// many chorale editions, are then left out).
fn named_voices(parts: &[Part]) -> Option<Vec<(&Part, Voice)>> {
    let named: Vec<(&Part, Voice)> = parts
        .iter()
        .filter_map(|p| p.voice_hint.map(|v| (p, v)))
        .collect();
    if named.is_empty() {
        return None;
    }
    let distinct = Voice::ALL
        .iter()
        .all(|v| named.iter().filter(|(_, n)| n == v).count() <= 1);
    (distinct && (named.len() == parts.len() || named.len() == VOICES)).then_some(named)
}

/// The voice a track or part name stands for ("Soprano", "S.", "Basso", …).
pub fn voice_from_name(name: &str) -> Option<Voice> {
    let lower = name.trim().trim_end_matches('.').to_ascii_lowercase();
    match lower.as_str() {
        "sopran" | "soprano 1" | "cantus" | "discantus" => Some(Voice::Soprano),
        "altus" => Some(Voice::Alto),
        "tenore" => Some(Voice::Tenor),
        "bassus" => Some(Voice::Bass),
        other => Voice::parse(other),
    }
}

/// No two notes of the part start together (overlaps are legato, not chords).
fn is_one_line(part: &Part) -> bool {
    let mut starts: Vec<usize> = part.notes.iter().map(|n| n.start).collect();
    starts.sort_unstable();
    starts.windows(2).all(|w| w[0] != w[1])
}

fn mean_pitch(part: &Part) -> f64 {
    part.notes.iter().map(|n| n.pitch as f64).sum::<f64>() / part.notes.len().max(1) as f64
}

/// Typical middle pitch of each voice (C5, F4, B3, D3), for matching parts.
const VOICE_CENTRES: [f64; VOICES] = [72.0, 65.0, 59.0, 50.0];

/// Voices for parts sorted high to low: the order-preserving choice whose
/// voices' typical pitches are nearest the parts' mean pitches.
fn voices_for_parts(parts: &[Part]) -> Vec<Voice> {
    let k = parts.len();
    let mut best: (f64, Vec<Voice>) = (f64::INFINITY, Voice::ALL[..k].to_vec());
    for combo in 0u32..16 {
        if combo.count_ones() as usize != k {
            continue;
        }
        let voices: Vec<Voice> = Voice::ALL
            .iter()
            .filter(|v| combo & (1 << v.index()) != 0)
            .copied()
            .collect();
        let cost: f64 = parts
            .iter()
            .zip(&voices)
            .map(|(p, v)| (mean_pitch(p) - VOICE_CENTRES[v.index()]).abs())
            .sum();
        if cost < best.0 {
            best = (cost, voices);
        }
    }
    best.1
}

/// One part as one voice. Two notes starting together are an error; a note
/// still sounding when the next begins is cut there (legato playing).
fn monophonic_line(
    path: &Path,
    score: &Score,
    part: &Part,
    voice: Voice,
    melody: bool,
) -> Result<Vec<Note>> {
    let mut notes = part.notes.clone();
    notes.sort_by_key(|n| (n.start, std::cmp::Reverse(n.pitch)));
    for pair in notes.windows(2) {
        if pair[0].start == pair[1].start {
            let what = if melody {
                "but a melody must be one voice".to_string()
            } else {
                format!("but {} must be one voice", part.name)
            };
            return Err(CantorError::music(
                path,
                format!(
                    "{}: {} notes start at once ({}, {}) {what}",
                    score.describe_step(pair[0].start),
                    2,
                    pitch_name(pair[0].pitch),
                    pitch_name(pair[1].pitch)
                ),
            ));
        }
    }
    let mut out = Vec::with_capacity(notes.len());
    for (i, n) in notes.iter().enumerate() {
        let end = notes.get(i + 1).map_or(n.end, |next| n.end.min(next.start));
        out.push(Note {
            voice,
            pitch: n.pitch,
            start: n.start,
            length: (end.max(n.start + 1)) - n.start,
            velocity: n.velocity,
        });
    }
    Ok(out)
}

/// Splits one part of chords into voices: notes starting together go to the
/// free voices in pitch order, each voice taking the note nearest its last.
fn split_chords(path: &Path, score: &Score, part: &Part) -> Result<Vec<Note>> {
    let mut notes = part.notes.clone();
    notes.sort_by_key(|n| (n.start, std::cmp::Reverse(n.pitch)));
    let mut busy_until = [0usize; VOICES];
    let mut last_pitch: [f64; VOICES] = VOICE_CENTRES;
    let mut out: Vec<Note> = Vec::with_capacity(notes.len());
    let mut i = 0;
    while i < notes.len() {
        let start = notes[i].start;
        let group: Vec<PartNote> = notes[i..]
            .iter()
            .take_while(|n| n.start == start)
            .copied()
            .collect();
        i += group.len();
        let free: Vec<usize> = (0..VOICES).filter(|v| busy_until[*v] <= start).collect();
        // A voice still sounding is cut if there are more new notes than free
        // voices (a new chord over a held one).
        let free = if group.len() > free.len() {
            (0..VOICES).collect()
        } else {
            free
        };
        if group.len() > free.len() {
            return Err(CantorError::music(
                path,
                format!(
                    "{}: {} notes start at once; Cantor reads at most four voices",
                    score.describe_step(start),
                    group.len()
                ),
            ));
        }
        let chosen = best_order_preserving(&group, &free, &last_pitch);
        for (note, v) in group.iter().zip(chosen) {
            // Cut whatever that voice was still holding.
            if let Some(prev) = out.iter_mut().rev().find(|n| n.voice.index() == v) {
                if prev.end() > start {
                    prev.length = (start - prev.start).max(1);
                }
            }
            busy_until[v] = note.end;
            last_pitch[v] = note.pitch as f64;
            out.push(Note {
                voice: Voice::from_index(v),
                pitch: note.pitch,
                start,
                length: (note.end - start).max(1),
                velocity: note.velocity,
            });
        }
    }
    Ok(out)
}

/// Assigns a chord (sorted high to low) to a subset of `free` voices in
/// order, minimising the distance to each voice's last pitch.
fn best_order_preserving(group: &[PartNote], free: &[usize], last: &[f64; VOICES]) -> Vec<usize> {
    let k = group.len();
    let mut best = (f64::INFINITY, free[..k].to_vec());
    for combo in 0u32..(1 << free.len()) {
        if combo.count_ones() as usize != k {
            continue;
        }
        let voices: Vec<usize> = free
            .iter()
            .enumerate()
            .filter(|(i, _)| combo & (1 << i) != 0)
            .map(|(_, v)| *v)
            .collect();
        let cost: f64 = group
            .iter()
            .zip(&voices)
            .map(|(n, v)| (n.pitch as f64 - last[*v]).abs())
            .sum();
        if cost < best.0 {
            best = (cost, voices);
        }
    }
    best.1
}

/// Writes `bytes` to `path` via a fresh temporary file beside it (created
/// exclusively, so a file or symlink already there is never followed) and a
/// rename, so a failed write never leaves half a file behind or touches the
/// target. A read-only target is refused rather than replaced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.is_dir() {
            return Err(CantorError::music(path, "is a folder, not a file"));
        }
        if meta.permissions().readonly() {
            return Err(CantorError::music(
                path,
                "the file is read-only: not replaced (choose another -o, or make it writable)",
            ));
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let (mut tmp, mut file) = (std::path::PathBuf::new(), None);
    for _ in 0..16 {
        let candidate_name = format!(
            ".{name}.{}-{}.tmp-cantor",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        tmp = match dir {
            Some(d) => d.join(candidate_name),
            None => std::path::PathBuf::from(candidate_name),
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => {
                file = Some(f);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(CantorError::io(path, e)),
        }
    }
    let Some(mut file) = file else {
        return Err(CantorError::music(
            path,
            "could not create a temporary file beside it",
        ));
    };
    let written = file
        .write_all(bytes)
        .and_then(|_| file.sync_all())
        .and_then(|_| {
            drop(file);
            std::fs::rename(&tmp, path)
        });
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CantorError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pn(pitch: u8, start: usize, end: usize) -> PartNote {
        PartNote {
            pitch,
            start,
            end,
            velocity: 64,
        }
    }

    #[test]
    fn chords_split_into_voices_by_pitch() {
        let part = Part {
            name: "track 1".into(),
            voice_hint: None,
            notes: vec![
                pn(72, 0, 4),
                pn(64, 0, 4),
                pn(55, 0, 4),
                pn(48, 0, 4),
                pn(74, 4, 8),
                pn(47, 4, 8),
            ],
        };
        let score = Score::new(8);
        let notes =
            assign_voices(Path::new("x.mid"), &score, vec![part], VoiceLayout::Auto).unwrap();
        let voice_of = |pitch: u8| notes.iter().find(|n| n.pitch == pitch).unwrap().voice;
        assert_eq!(voice_of(72), Voice::Soprano);
        assert_eq!(voice_of(64), Voice::Alto);
        assert_eq!(voice_of(55), Voice::Tenor);
        assert_eq!(voice_of(48), Voice::Bass);
        assert_eq!(voice_of(74), Voice::Soprano);
        assert_eq!(voice_of(47), Voice::Bass);
    }

    #[test]
    fn a_chord_in_a_melody_is_an_error_with_its_position() {
        let part = Part {
            name: "track 1".into(),
            voice_hint: None,
            notes: vec![pn(72, 0, 4), pn(72, 20, 24), pn(76, 20, 24)],
        };
        let score = Score::new(32);
        let err = assign_voices(
            Path::new("tune.mid"),
            &score,
            vec![part],
            VoiceLayout::Melody(Voice::Soprano),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("tune.mid: bar 2, beat 2"), "{err}");
        assert!(
            err.contains("E5") && err.contains("C5") && err.contains("one voice"),
            "{err}"
        );
    }

    #[test]
    fn two_parts_become_soprano_and_bass() {
        let high = Part {
            name: "a".into(),
            voice_hint: None,
            notes: vec![pn(72, 0, 4)],
        };
        let low = Part {
            name: "b".into(),
            voice_hint: None,
            notes: vec![pn(48, 0, 4)],
        };
        let score = Score::new(4);
        let notes = assign_voices(
            Path::new("x.mid"),
            &score,
            vec![low, high],
            VoiceLayout::Auto,
        )
        .unwrap();
        assert_eq!(
            notes.iter().find(|n| n.pitch == 72).unwrap().voice,
            Voice::Soprano
        );
        assert_eq!(
            notes.iter().find(|n| n.pitch == 48).unwrap().voice,
            Voice::Bass
        );
    }
}
