//! MusicXML in: `.musicxml`/`.xml` text or compressed `.mxl` (a zip whose
//! `META-INF/container.xml` names the score), partwise scores.
//!
//! Each part's first voice is read (chords keep their top note), ties are
//! merged, grace notes skipped. A pickup bar is padded with rests in front so
//! that bar lines fall where the meter puts them. Parts named Soprano, Alto,
//! Tenor and Bass sing those voices; instrument parts doubling them (as in
//! many Bach chorale editions) are then ignored.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use roxmltree::{Document, Node};

use super::{assemble, Limits, Part, PartNote, Timeline, VoiceLayout};
use crate::error::{CantorError, Result};
use crate::grid::{Score, TimeSignature, DEFAULT_VELOCITY, STEPS_PER_QUARTER};

pub fn read_musicxml(path: &Path, layout: VoiceLayout, limits: &Limits) -> Result<Score> {
    let bytes = limits.read_file(path)?;
    let is_mxl = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("mxl"));
    let text = if is_mxl || bytes.starts_with(b"PK") {
        unzip_score(&bytes, path, limits)?
    } else {
        String::from_utf8(bytes)
            .map_err(|_| CantorError::music(path, "not UTF-8 text, so not MusicXML"))?
    };
    parse_musicxml(&text, path, layout, limits)
}

/// The score document inside an `.mxl` archive.
fn unzip_score(bytes: &[u8], path: &Path, limits: &Limits) -> Result<String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| CantorError::music(path, format!("not a readable .mxl archive ({e})")))?;
    let mut read = |name: &str| -> Option<String> {
        let file = archive.by_name(name).ok()?;
        inflate_capped(file, name, path, limits).ok()
    };
    let rootfile = read("META-INF/container.xml").and_then(|container| {
        let doc = Document::parse(&container).ok()?;
        let found = doc
            .descendants()
            .find(|n| n.has_tag_name("rootfile"))
            .and_then(|n| n.attribute("full-path"))
            .map(str::to_string);
        found
    });
    let name = match rootfile {
        Some(name) => name,
        None => archive
            .file_names()
            .find(|n| {
                !n.starts_with("META-INF") && (n.ends_with(".xml") || n.ends_with(".musicxml"))
            })
            .map(str::to_string)
            .ok_or_else(|| CantorError::music(path, "the .mxl archive holds no MusicXML score"))?,
    };
    let file = archive.by_name(&name).map_err(|_| {
        CantorError::music(
            path,
            format!("the .mxl archive names '{name}' but lacks it"),
        )
    })?;
    inflate_capped(file, &name, path, limits)
}

/// Inflates one archive entry as text, streaming, and stops as soon as it
/// passes `limits.max_bytes`: a small archive that inflates to gigabytes is
/// refused after reading the limit, not after inflating it all.
fn inflate_capped(file: impl Read, name: &str, path: &Path, limits: &Limits) -> Result<String> {
    let bytes = limits
        .read_capped(file)
        .map_err(|e| {
            CantorError::music(path, format!("cannot read '{name}' from the archive: {e}"))
        })?
        .ok_or_else(|| {
            CantorError::music(
                path,
                format!(
                    "'{name}' in the archive inflates past {} MB, the limit for a score",
                    limits.max_bytes >> 20
                ),
            )
        })?;
    String::from_utf8(bytes)
        .map_err(|_| CantorError::music(path, format!("'{name}' in the archive is not UTF-8 text")))
}

/// Parses MusicXML text; `path` is only used in messages.
pub fn parse_musicxml(
    text: &str,
    path: &Path,
    layout: VoiceLayout,
    limits: &Limits,
) -> Result<Score> {
    // MusicXML files start with a DOCTYPE; roxmltree refuses DTDs unless asked.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: limits.max_xml_nodes,
    };
    let doc = Document::parse_with_options(text, options)
        .map_err(|e| CantorError::music(path, format!("not valid XML ({e})")))?;
    let root = doc.root_element();
    match root.tag_name().name() {
        "score-partwise" => {}
        "score-timewise" => {
            return Err(CantorError::music(
                path,
                "timewise MusicXML is not supported: export a partwise score",
            ))
        }
        other => {
            return Err(CantorError::music(
                path,
                format!("not a MusicXML score (root element <{other}>)"),
            ))
        }
    }
    let names: HashMap<&str, String> = root
        .descendants()
        .filter(|n| n.has_tag_name("score-part"))
        .filter_map(|n| {
            let id = n.attribute("id")?;
            let name = child_text(n, "part-name").unwrap_or_default();
            Some((id, name))
        })
        .collect();

    let mut parts = Vec::new();
    let mut fermatas = Vec::new();
    let mut timeline = Timeline::default();
    let mut pickup_padding: Option<usize> = None;
    for (index, part_node) in root
        .children()
        .filter(|n| n.has_tag_name("part"))
        .enumerate()
    {
        let id = part_node.attribute("id").unwrap_or("");
        let name = names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("P{}", index + 1));
        let read = read_part(part_node, path, &name)?;
        fermatas.extend(read.fermatas);
        if index == 0 {
            timeline = read.timeline;
            pickup_padding = Some(read.pickup_padding);
        }
        parts.push(Part {
            name: format!("part '{name}'"),
            notes: read.notes,
            voice_hint: super::voice_from_name(&name),
        });
    }
    if parts.is_empty() {
        return Err(CantorError::music(path, "the score has no parts"));
    }

    // Pad a pickup bar so the first full bar starts on a bar line.
    let pad = pickup_padding.unwrap_or(0);
    fermatas.iter_mut().for_each(|step| *step += pad);
    if pad > 0 {
        for part in &mut parts {
            for n in &mut part.notes {
                n.start += pad;
                n.end += pad;
            }
        }
        for (step, _) in timeline.time_signatures.iter_mut().skip(1) {
            *step += pad;
        }
        for (step, _) in timeline.tempos.iter_mut().skip(1) {
            *step += pad;
        }
    }

    let mut score = assemble(path, parts, timeline, layout, limits)?;
    // The phrase ends the score marks: each fermata on the melody note
    // sounding where one is written (in any part). A score with none
    // leaves them unknown, to be inferred.
    if !fermatas.is_empty() {
        let spans = fermatas
            .iter()
            .filter(|s| **s < score.len())
            .map(|s| super::jsb::soprano_note(&score, *s).unwrap_or(*s..*s + 1))
            .collect();
        score.set_fermatas(spans);
    }
    Ok(score)
}

struct ReadPart {
    notes: Vec<PartNote>,
    /// Steps where a note of the part's voice carries a `<fermata>`.
    fermatas: Vec<usize>,
    timeline: Timeline,
    /// Rests to put in front when the first bar is a pickup.
    pickup_padding: usize,
}

fn child_text(node: Node, tag: &str) -> Option<String> {
    node.children()
        .find(|n| n.has_tag_name(tag))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
}

/// Largest magnitude of a number read from MusicXML (durations, divisions):
/// far past any real score, small enough that positions computed from it
/// stay exact and finite. Pieces past the length limit are refused later.
const MAX_NUMBER: f64 = 1e12;

/// Tempos read (quarter notes per minute): MIDI stores at most 2²⁴ µs per
/// quarter (3.6 BPM).
const MIN_BPM: f64 = 4.0;
const MAX_BPM: f64 = 1000.0;

fn number(node: Node, tag: &str, path: &Path, part: &str) -> Result<Option<f64>> {
    match child_text(node, tag) {
        None => Ok(None),
        Some(t) => match t.parse::<f64>() {
            Ok(v) if v.is_finite() && v.abs() <= MAX_NUMBER => Ok(Some(v)),
            Ok(_) => Err(CantorError::music(
                path,
                format!(
                    "part '{part}', line {}: <{tag}> is '{t}', past the largest value read ({MAX_NUMBER:e})",
                    line_of(node)
                ),
            )),
            Err(_) => Err(CantorError::music(
                path,
                format!(
                    "part '{part}', line {}: <{tag}> is '{t}', not a number",
                    line_of(node)
                ),
            )),
        },
    }
}

fn line_of(node: Node) -> u32 {
    node.document().text_pos_at(node.range().start).row
}

fn read_part(part: Node, path: &Path, name: &str) -> Result<ReadPart> {
    // Positions past 2^40 steps are far past any limit; clamping keeps the
    // arithmetic on them from overflowing before the limit refuses them.
    let to_step = |quarters: f64| {
        (quarters * STEPS_PER_QUARTER as f64)
            .round()
            .clamp(0.0, (1u64 << 40) as f64) as usize
    };
    let mut divisions = 1.0f64;
    let mut measure_start = 0.0f64; // in quarters
    let mut notes: Vec<PartNote> = Vec::new();
    let mut fermatas = Vec::new();
    let mut timeline = Timeline::default();
    let mut chosen_voice: Option<String> = None;
    // Index of the note a tie from each pitch continues into.
    let mut open_ties: HashMap<u8, usize> = HashMap::new();
    let mut pickup_padding = 0;
    let mut current_ts = TimeSignature::COMMON;

    for (measure_index, measure) in part
        .children()
        .filter(|n| n.has_tag_name("measure"))
        .enumerate()
    {
        let mut pos = measure_start;
        let mut furthest = measure_start;
        let mut last_start = measure_start;
        for child in measure.children().filter(|n| n.is_element()) {
            match child.tag_name().name() {
                "attributes" => {
                    if let Some(d) = number(child, "divisions", path, name)? {
                        if d <= 0.0 {
                            return Err(CantorError::music(
                                path,
                                format!("part '{name}': <divisions> must be positive"),
                            ));
                        }
                        divisions = d;
                    }
                    if let Some(time) = child.children().find(|n| n.has_tag_name("time")) {
                        let beats = child_text(time, "beats").and_then(|b| {
                            // Compound signatures like "3+2" add up.
                            b.split('+').try_fold(0u8, |sum, x| {
                                sum.checked_add(x.trim().parse::<u8>().ok()?)
                            })
                        });
                        let beat_type =
                            child_text(time, "beat-type").and_then(|b| b.parse::<u8>().ok());
                        if let (Some(numerator), Some(denominator)) = (beats, beat_type) {
                            if numerator == 0 || !denominator.is_power_of_two() || denominator > 64
                            {
                                return Err(CantorError::music(
                                    path,
                                    format!(
                                        "part '{name}', line {}: {numerator}/{denominator} is not a meter (beats > 0, a beat type of 1, 2, 4 … 64)",
                                        line_of(time)
                                    ),
                                ));
                            }
                            current_ts = TimeSignature {
                                numerator,
                                denominator,
                            };
                            timeline.time_signatures.push((to_step(pos), current_ts));
                        }
                    }
                }
                "direction" | "sound" => {
                    let sound = if child.has_tag_name("sound") {
                        Some(child)
                    } else {
                        child.children().find(|n| n.has_tag_name("sound"))
                    };
                    if let Some(tempo) = sound
                        .and_then(|s| s.attribute("tempo"))
                        .and_then(|t| t.parse::<f64>().ok())
                    {
                        if !(MIN_BPM..=MAX_BPM).contains(&tempo) {
                            return Err(CantorError::music(
                                path,
                                format!(
                                    "part '{name}', line {}: a tempo of {tempo} BPM is outside {MIN_BPM}–{MAX_BPM}",
                                    line_of(child)
                                ),
                            ));
                        }
                        {
                            timeline
                                .tempos
                                .push((to_step(pos), (60_000_000.0 / tempo).round() as u32));
                        }
                    }
                }
                "backup" => {
                    pos -= number(child, "duration", path, name)?.unwrap_or(0.0) / divisions
                }
                "forward" => {
                    pos += number(child, "duration", path, name)?.unwrap_or(0.0) / divisions
                }
                "note" => {
                    if child.children().any(|n| n.has_tag_name("grace")) {
                        continue;
                    }
                    let duration =
                        number(child, "duration", path, name)?.unwrap_or(0.0) / divisions;
                    let is_chord = child.children().any(|n| n.has_tag_name("chord"));
                    let start = if is_chord { last_start } else { pos };
                    if !is_chord {
                        last_start = pos;
                        pos += duration;
                    }
                    furthest = furthest.max(pos);
                    let voice = child_text(child, "voice").unwrap_or_else(|| "1".into());
                    let chosen = chosen_voice.get_or_insert_with(|| voice.clone());
                    if *chosen != voice || child.children().any(|n| n.has_tag_name("cue")) {
                        continue;
                    }
                    let Some(pitch_node) = child.children().find(|n| n.has_tag_name("pitch"))
                    else {
                        continue; // a rest (or unpitched)
                    };
                    let pitch = read_pitch(pitch_node, path, name)?;
                    let (start_step, end_step) = (to_step(start), to_step(start + duration));
                    if child.descendants().any(|n| n.has_tag_name("fermata")) {
                        fermatas.push(start_step);
                    }
                    let ties: Vec<&str> = child
                        .descendants()
                        .filter(|n| n.has_tag_name("tie") || n.has_tag_name("tied"))
                        .filter_map(|n| n.attribute("type"))
                        .collect();
                    let continues = ties.contains(&"stop");
                    let index = match open_ties.remove(&pitch) {
                        Some(i) if continues && notes[i].end == start_step => {
                            notes[i].end = notes[i].end.max(end_step);
                            i
                        }
                        _ => {
                            if is_chord {
                                // Keep the top note of a chord.
                                if let Some(n) = notes.last_mut().filter(|n| n.start == start_step)
                                {
                                    if pitch > n.pitch {
                                        *n = PartNote {
                                            pitch,
                                            start: start_step,
                                            end: end_step.max(start_step + 1),
                                            velocity: DEFAULT_VELOCITY,
                                        };
                                    }
                                    continue;
                                }
                            }
                            notes.push(PartNote {
                                pitch,
                                start: start_step,
                                end: end_step.max(start_step + 1),
                                velocity: DEFAULT_VELOCITY,
                            });
                            notes.len() - 1
                        }
                    };
                    if ties.contains(&"start") {
                        open_ties.insert(pitch, index);
                    }
                }
                _ => {}
            }
        }
        let length = furthest - measure_start;
        if measure_index == 0 {
            let bar = current_ts.steps_per_bar();
            let written = to_step(length);
            if written > 0 && written < bar {
                pickup_padding = bar - written;
            }
        }
        measure_start += length;
    }
    Ok(ReadPart {
        notes,
        fermatas,
        timeline,
        pickup_padding,
    })
}

fn read_pitch(node: Node, path: &Path, part: &str) -> Result<u8> {
    let step = child_text(node, "step").unwrap_or_default();
    let pc: i32 = match step.as_str() {
        "C" => 0,
        "D" => 2,
        "E" => 4,
        "F" => 5,
        "G" => 7,
        "A" => 9,
        "B" => 11,
        other => {
            return Err(CantorError::music(
                path,
                format!(
                    "part '{part}', line {}: '{other}' is not a pitch step (A–G)",
                    line_of(node)
                ),
            ))
        }
    };
    let alter = number(node, "alter", path, part)?.unwrap_or(0.0).round() as i32;
    let octave = number(node, "octave", path, part)?.ok_or_else(|| {
        CantorError::music(
            path,
            format!(
                "part '{part}', line {}: a pitch without <octave>",
                line_of(node)
            ),
        )
    })? as i32;
    let midi = (octave + 1) * 12 + pc + alter;
    u8::try_from(midi)
        .ok()
        .filter(|m| *m <= 127)
        .ok_or_else(|| {
            CantorError::music(
                path,
                format!(
                    "part '{part}', line {}: pitch {midi} is outside MIDI",
                    line_of(node)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Token, Voice};

    fn part(id: &str, notes: &str) -> String {
        format!(
            r#"<part id="{id}"><measure number="0"><attributes><divisions>2</divisions><time><beats>4</beats><beat-type>4</beat-type></time></attributes>{notes}</measure>
            <measure number="1"><note><pitch><step>G</step><octave>4</octave></pitch><duration>8</duration><voice>1</voice></note></measure></part>"#
        )
    }

    const PICKUP_C5: &str = r#"<note><pitch><step>C</step><octave>5</octave></pitch><duration>2</duration><voice>1</voice><tie type="start"/></note>"#;

    fn document(parts: &[(&str, &str, String)]) -> String {
        let list: String = parts
            .iter()
            .map(|(id, name, _)| {
                format!(r#"<score-part id="{id}"><part-name>{name}</part-name></score-part>"#)
            })
            .collect();
        let body: String = parts.iter().map(|(_, _, p)| p.clone()).collect();
        format!(
            r#"<?xml version="1.0"?><!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 3.1 Partwise//EN" "http://www.musicxml.org/dtds/partwise.dtd"><score-partwise version="3.1"><part-list>{list}</part-list>{body}</score-partwise>"#
        )
    }

    #[test]
    fn fermatas_mark_the_phrase_ends() {
        let note = |step: &str, octave: u8, duration: u8, fermata: bool| {
            let mark = if fermata {
                "<notations><fermata/></notations>"
            } else {
                ""
            };
            format!(
                r#"<note><pitch><step>{step}</step><octave>{octave}</octave></pitch><duration>{duration}</duration><voice>1</voice>{mark}</note>"#
            )
        };
        let soprano = |fermata: bool| {
            format!(
                r#"<part id="P1"><measure number="1"><attributes><divisions>1</divisions><time><beats>4</beats><beat-type>4</beat-type></time></attributes>{}{}{}</measure><measure number="2">{}</measure></part>"#,
                note("C", 5, 1, false),
                note("D", 5, 1, false),
                note("E", 5, 2, fermata),
                note("G", 4, 4, false),
            )
        };
        let read = |fermata: bool| {
            let xml = document(&[("P1", "Soprano", soprano(fermata))]);
            parse_musicxml(
                &xml,
                Path::new("f.musicxml"),
                VoiceLayout::Auto,
                &Limits::default(),
            )
            .unwrap()
        };
        let marked = read(true);
        assert_eq!(marked.fermatas(), &[8..16]);
        assert_eq!(marked.phrasing_known(), &[0..marked.len()]);
        // No mark anywhere: the phrase ends are unknown (to be inferred).
        let plain = read(false);
        assert!(plain.fermatas().is_empty() && plain.phrasing_known().is_empty());
    }

    #[test]
    fn reads_named_voices_and_pads_the_pickup() {
        let xml = document(&[
            ("P1", "Soprano", part("P1", PICKUP_C5)),
            ("P2", "Alto", part("P2", PICKUP_C5)),
            ("P3", "Tenor", part("P3", PICKUP_C5)),
            ("P4", "Bass", part("P4", PICKUP_C5)),
            ("P5", "Horn", part("P5", PICKUP_C5)),
        ]);
        let score = parse_musicxml(
            &xml,
            Path::new("c.musicxml"),
            VoiceLayout::Auto,
            &Limits::default(),
        )
        .unwrap();
        // Pickup of one quarter: three beats of rest first.
        assert_eq!(score.get(11, Voice::Alto), Token::Rest);
        assert_eq!(score.get(12, Voice::Alto), Token::Pitch(72));
        assert_eq!(score.get(16, Voice::Bass), Token::Pitch(67));
        assert_eq!(score.len(), 32);
    }

    #[test]
    fn ties_merge_and_chords_keep_the_top_note() {
        let notes = r#"<note><pitch><step>E</step><octave>5</octave></pitch><duration>2</duration><voice>1</voice><tie type="start"/></note>
            <note><chord/><pitch><step>C</step><octave>5</octave></pitch><duration>2</duration><voice>1</voice></note>"#;
        let xml = document(&[(
            "P1",
            "Melody",
            format!(
                r#"<part id="P1"><measure number="1"><attributes><divisions>2</divisions></attributes>{notes}
            <note><pitch><step>E</step><octave>5</octave></pitch><duration>6</duration><voice>1</voice><tie type="stop"/></note></measure></part>"#
            ),
        )]);
        let score = parse_musicxml(
            &xml,
            Path::new("m.musicxml"),
            VoiceLayout::Melody(Voice::Soprano),
            &Limits::default(),
        )
        .unwrap();
        let notes = score.voice_notes(Voice::Soprano);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(
            (notes[0].pitch, notes[0].start, notes[0].length),
            (76, 0, 16)
        );
    }

    #[test]
    fn bad_documents_are_named() {
        let err = parse_musicxml(
            "<score-partwise><part",
            Path::new("bad.musicxml"),
            VoiceLayout::Auto,
            &Limits::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("bad.musicxml: not valid XML"), "{err}");
        let xml = document(&[("P1", "S", r#"<part id="P1"><measure><note><pitch><step>H</step><octave>4</octave></pitch><duration>1</duration></note></measure></part>"#.to_string())]);
        let err = parse_musicxml(
            &xml,
            Path::new("h.musicxml"),
            VoiceLayout::Auto,
            &Limits::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'H' is not a pitch step"), "{err}");
    }
}
