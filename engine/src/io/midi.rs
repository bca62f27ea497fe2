//! Standard MIDI files in and out (type 0 and 1), through `midly`.
//!
//! Reading: notes are paired per track, channel and key, quantized to the
//! nearest 16th, and grouped into parts by track (or by channel, for a
//! single-track file). Writing: type 1, a conductor track with tempo and
//! meter, then one track per voice, soprano to bass on channels 1–4.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use midly::num::{u15, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use super::{assemble, write_atomically, Limits, Part, PartNote, Timeline, VoiceLayout};
use crate::error::{CantorError, Result};
use crate::grid::{Score, TimeSignature, Voice, STEPS_PER_QUARTER};

/// Ticks per quarter note in files Cantor writes.
pub const WRITE_PPQ: u16 = 480;

/// General MIDI's percussion channel (10, counted from 0).
const DRUM_CHANNEL: u8 = 9;

/// Reads a MIDI file into a score.
pub fn read_midi(path: &Path, layout: VoiceLayout, limits: &Limits) -> Result<Score> {
    let bytes = limits.read_file(path)?;
    parse_midi(&bytes, path, layout, limits)
}

/// Parses MIDI bytes; `path` is only used in messages.
pub fn parse_midi(
    bytes: &[u8],
    path: &Path,
    layout: VoiceLayout,
    limits: &Limits,
) -> Result<Score> {
    // SMPTE timing is refused before the parser sees it: midly negates the
    // frame-rate byte, which overflows (a panic in debug builds) for 0x80.
    if bytes.len() >= 14 && bytes.starts_with(b"MThd") && bytes[12] & 0x80 != 0 {
        return Err(CantorError::music(
            path,
            "SMPTE-timed MIDI files are not supported: export with beats (PPQ) timing",
        ));
    }
    let smf = Smf::parse(bytes)
        .map_err(|e| CantorError::music(path, format!("not a readable MIDI file ({e})")))?;
    let ppq = match smf.header.timing {
        Timing::Metrical(t) => t.as_int() as u64,
        Timing::Timecode(..) => {
            return Err(CantorError::music(
                path,
                "SMPTE-timed MIDI files are not supported: export with beats (PPQ) timing",
            ))
        }
    };
    if ppq == 0 {
        return Err(CantorError::music(
            path,
            "the file's ticks per quarter note is 0",
        ));
    }
    let to_step = |tick: u64| ((tick * STEPS_PER_QUARTER as u64 + ppq / 2) / ppq) as usize;

    let mut parts: BTreeMap<(usize, u8), Part> = BTreeMap::new();
    let mut time_signatures = Vec::new();
    let mut tempos = Vec::new();
    let mut track_names: HashMap<usize, String> = HashMap::new();
    let mut drum_notes = 0usize;
    for (track_index, track) in smf.tracks.iter().enumerate() {
        let mut tick = 0u64;
        let mut open: HashMap<(u8, u8), VecDeque<(u64, u8)>> = HashMap::new();
        let close = |parts: &mut BTreeMap<(usize, u8), Part>,
                     channel: u8,
                     key: u8,
                     start: u64,
                     end: u64,
                     velocity: u8| {
            let part = parts.entry((track_index, channel)).or_default();
            let start_step = to_step(start);
            part.notes.push(PartNote {
                pitch: key,
                start: start_step,
                end: to_step(end).max(start_step + 1),
                velocity,
            });
        };
        for event in track {
            tick += event.delta.as_int() as u64;
            match event.kind {
                // Channel 10 is General MIDI's drum kit: not a voice.
                TrackEventKind::Midi { channel, .. } if channel.as_int() == DRUM_CHANNEL => {
                    drum_notes += 1;
                }
                TrackEventKind::Midi { channel, message } => {
                    let channel = channel.as_int();
                    match message {
                        MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                            open.entry((channel, key.as_int()))
                                .or_default()
                                .push_back((tick, vel.as_int()));
                        }
                        MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                            if let Some((start, vel)) = open
                                .get_mut(&(channel, key.as_int()))
                                .and_then(|q| q.pop_front())
                            {
                                close(&mut parts, channel, key.as_int(), start, tick, vel);
                            }
                        }
                        _ => {}
                    }
                }
                TrackEventKind::Meta(MetaMessage::TrackName(name)) => {
                    track_names.insert(
                        track_index,
                        String::from_utf8_lossy(name).trim().to_string(),
                    );
                }
                TrackEventKind::Meta(MetaMessage::Tempo(us)) => {
                    if us.as_int() == 0 {
                        return Err(CantorError::music(
                            path,
                            format!(
                                "track {}: a tempo of 0 µs per quarter note at quarter note {} is not a tempo",
                                track_index + 1,
                                tick / ppq
                            ),
                        ));
                    }
                    tempos.push((to_step(tick), us.as_int()))
                }
                TrackEventKind::Meta(MetaMessage::TimeSignature(num, den_pow, _, _))
                    if num > 0 && den_pow <= 6 =>
                {
                    time_signatures.push((
                        to_step(tick),
                        TimeSignature {
                            numerator: num,
                            denominator: 1 << den_pow,
                        },
                    ));
                }
                _ => {}
            }
        }
        // Notes never switched off end with their track.
        for ((channel, key), queue) in open {
            for (start, vel) in queue {
                close(&mut parts, channel, key, start, tick.max(start + 1), vel);
            }
        }
    }
    let single_track = smf.header.format == Format::SingleTrack
        || parts
            .keys()
            .map(|(t, _)| *t)
            .collect::<std::collections::HashSet<_>>()
            .len()
            == 1;
    let parts: Vec<Part> = if single_track {
        parts
            .into_iter()
            .map(|((_, channel), mut p)| {
                p.name = format!("channel {}", channel + 1);
                p
            })
            .collect()
    } else {
        // Multi-track files: one part per track, whatever its channels.
        let mut by_track: BTreeMap<usize, Part> = BTreeMap::new();
        for ((track, _), p) in parts {
            let part = by_track.entry(track).or_default();
            part.name = match track_names.get(&track) {
                Some(name) if !name.is_empty() => format!("track {} '{name}'", track + 1),
                _ => format!("track {}", track + 1),
            };
            part.voice_hint = track_names
                .get(&track)
                .and_then(|n| super::voice_from_name(n));
            part.notes.extend(p.notes);
        }
        by_track.into_values().collect()
    };
    if parts.is_empty() && drum_notes > 0 {
        return Err(CantorError::music(
            path,
            "the file holds only drums (MIDI channel 10), no melody or voices",
        ));
    }
    assemble(
        path,
        parts,
        Timeline {
            time_signatures,
            tempos,
        },
        layout,
        limits,
    )
}

/// Writes `score` as a type-1 MIDI file (atomically).
pub fn write_midi(score: &Score, path: &Path) -> Result<()> {
    write_atomically(path, &midi_bytes(score))
}

/// The bytes of a type-1 MIDI file for `score`.
pub fn midi_bytes(score: &Score) -> Vec<u8> {
    let ticks_per_step = (WRITE_PPQ as usize / STEPS_PER_QUARTER) as u64;
    let names: Vec<String> = Voice::ALL.iter().map(|v| capitalised(v.name())).collect();

    let mut conductor: Vec<(u64, TrackEventKind)> =
        vec![(0, TrackEventKind::Meta(MetaMessage::TrackName(b"Cantor")))];
    for (step, ts) in score.time_signatures() {
        let den_pow = ts.denominator.max(1).trailing_zeros() as u8;
        conductor.push((
            *step as u64 * ticks_per_step,
            TrackEventKind::Meta(MetaMessage::TimeSignature(ts.numerator, den_pow, 24, 8)),
        ));
    }
    for (step, us) in score.tempos() {
        conductor.push((
            *step as u64 * ticks_per_step,
            TrackEventKind::Meta(MetaMessage::Tempo((*us).min(0xFF_FFFF).into())),
        ));
    }
    conductor.sort_by_key(|e| e.0);
    let end_tick = score.len() as u64 * ticks_per_step;
    let mut tracks = vec![to_track(conductor, end_tick)];

    for voice in Voice::ALL {
        let channel = u4::new(voice.index() as u8);
        let mut events: Vec<(u64, u8, TrackEventKind)> = vec![(
            0,
            0,
            TrackEventKind::Meta(MetaMessage::TrackName(names[voice.index()].as_bytes())),
        )];
        for note in score.voice_notes(voice) {
            let key = u7::new(note.pitch.min(127));
            events.push((
                note.start as u64 * ticks_per_step,
                2,
                TrackEventKind::Midi {
                    channel,
                    message: MidiMessage::NoteOn {
                        key,
                        vel: u7::new(note.velocity.clamp(1, 127)),
                    },
                },
            ));
            events.push((
                note.end() as u64 * ticks_per_step,
                1, // note-offs before note-ons at the same tick
                TrackEventKind::Midi {
                    channel,
                    message: MidiMessage::NoteOff {
                        key,
                        vel: u7::new(0),
                    },
                },
            ));
        }
        events.sort_by_key(|e| (e.0, e.1));
        tracks.push(to_track(
            events.into_iter().map(|(t, _, k)| (t, k)).collect(),
            end_tick,
        ));
    }
    let smf = Smf {
        header: Header::new(Format::Parallel, Timing::Metrical(u15::new(WRITE_PPQ))),
        tracks,
    };
    let mut out = Vec::new();
    smf.write_std(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

fn to_track(events: Vec<(u64, TrackEventKind)>, end_tick: u64) -> Vec<TrackEvent> {
    let mut track = Vec::with_capacity(events.len() + 1);
    let mut last = 0u64;
    for (tick, kind) in events {
        track.push(TrackEvent {
            delta: u28::new((tick - last) as u32),
            kind,
        });
        last = tick;
    }
    track.push(TrackEvent {
        delta: u28::new(end_tick.saturating_sub(last) as u32),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    });
    track
}

fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Note;

    fn four_voice_score() -> Score {
        let mut notes = Vec::new();
        let chords = [[72u8, 67, 64, 48], [74, 67, 62, 55], [76, 67, 60, 48]];
        for (i, chord) in chords.iter().enumerate() {
            for (v, p) in chord.iter().enumerate() {
                notes.push(Note {
                    voice: Voice::from_index(v),
                    pitch: *p,
                    start: i * 8,
                    length: if v == 0 { 4 } else { 8 },
                    velocity: 70 + v as u8,
                });
            }
        }
        let mut score = Score::from_notes(32, &notes);
        score.set_tempos(vec![(0, 600_000), (16, 500_000)]);
        score.set_time_signatures(vec![(0, TimeSignature::COMMON)]);
        score
    }

    #[test]
    fn a_written_file_reads_back_to_the_same_score() {
        let score = four_voice_score();
        let bytes = midi_bytes(&score);
        let back = parse_midi(
            &bytes,
            Path::new("x.mid"),
            VoiceLayout::Auto,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(back.notes(), score.notes());
        assert_eq!(back.tempos(), score.tempos());
        assert_eq!(back.len(), score.len());
    }

    #[test]
    fn a_broken_file_says_so() {
        let err = parse_midi(
            b"MThd\x00\x00",
            Path::new("broken.mid"),
            VoiceLayout::Auto,
            &Limits::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("broken.mid: not a readable MIDI file"),
            "{err}"
        );
        let mut bytes = midi_bytes(&four_voice_score());
        bytes.truncate(bytes.len() / 2);
        let err = parse_midi(
            &bytes,
            Path::new("cut.mid"),
            VoiceLayout::Auto,
            &Limits::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("cut.mid: "), "{err}");
    }

    /// Found by the fuzz test: a header whose division has its top bit set
    /// (SMPTE) with frame-rate byte 0x80 made the MIDI parser negate -128
    /// (a panic in debug builds); it is refused first.
    #[test]
    fn smpte_with_frame_byte_0x80_is_refused_not_a_panic() {
        let mut bytes = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x80\xe0".to_vec();
        bytes.extend(b"MTrk\x00\x00\x00\x04\x00\xff\x2f\x00");
        let err = parse_midi(
            &bytes,
            Path::new("smpte.mid"),
            VoiceLayout::Auto,
            &Limits::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("SMPTE"), "{err}");
    }
}
