//! The rolling window of what the host played into Cantor, on the worker
//! thread.
//!
//! Notes arrive as [`Capture`] messages stamped with the song position. They
//! are kept by absolute bar (the bar's first grid step), so a looped clip
//! fills the same bars on every pass: each pass over a bar collects that
//! bar's notes afresh, and when the playhead leaves the bar the pass replaces
//! what the bar held. A bar whose melody changed is marked dirty, which is
//! what the worker regenerates. The window keeps the N bars heard most
//! recently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use cantor_engine::Character;

use crate::grid_time::nearest_step;
use crate::link::Capture;

/// Bounds on what the window and the take hold (a saved session must keep
/// them before the worker adopts it): positions and lengths a host could
/// produce, far from what makes a grid allocation abort the host.
pub mod limits {
    /// Latest step a bar, note or answer may start at (2^40 16ths: ~500,000
    /// years at 120 BPM).
    pub const MAX_POSITION: i64 = 1 << 40;
    /// Longest bar, in steps (16/1).
    pub const MAX_BAR_STEPS: i64 = 256;
    /// Most bars in the window (the window parameter's maximum, plus an
    /// adopted answer).
    pub const MAX_BARS: usize = 64;
    /// Widest stretch from the first bar to the end of the last (or of the
    /// answer), in steps: the take's grid spans it.
    pub const MAX_SPAN: i64 = 1 << 16;
    /// Longest answer, in steps.
    pub const MAX_ANSWER_STEPS: usize = 64 * MAX_BAR_STEPS as usize;
    /// Most notes heard in one bar.
    pub const MAX_NOTES_PER_BAR: usize = 4096;
    /// Most bars whose character the window remembers (the window's bars
    /// and an answer's).
    pub const MAX_CHARACTERS: usize = 2 * MAX_BARS;
}

/// A melody note at absolute grid steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeardNote {
    pub start: i64,
    pub end: i64,
    pub pitch: u8,
    pub velocity: u8,
}

/// One bar of the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub start: i64,
    pub length: i64,
    pub melody: Vec<HeardNote>,
    /// Changed since the worker last generated for it.
    pub dirty: bool,
    /// When it was last heard (a counter), for choosing which bars to keep.
    pub heard: u64,
    /// Copied in from a take rather than played: a pass with no notes
    /// leaves it be (a pass with notes replaces it).
    #[serde(default)]
    pub adopted: bool,
}

impl Bar {
    pub fn end(&self) -> i64 {
        self.start + self.length
    }
}

/// The bars heard, keyed by their first step. The worker thread's (the
/// editor reads a copy in the status; the audio thread never sees it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The bars heard whole, by their first step (saved with the session).
    pub bars: BTreeMap<i64, Bar>,
    /// Notes of the pass under way, by their bar's first step, until the
    /// bar is heard to its end.
    #[serde(skip)]
    pass: BTreeMap<i64, Vec<HeardNote>>,
    /// Keys down: (pitch, onset step, velocity).
    #[serde(skip)]
    held: Vec<(u8, i64, u8)>,
    /// The character pad's parameters when the playhead last entered each
    /// bar (an automation lane read at bar starts), by the bar's first
    /// step: what the bar is composed with. The bars near the playhead,
    /// at most [`limits::MAX_CHARACTERS`].
    #[serde(default)]
    pub characters: BTreeMap<i64, Character>,
    /// The bar the playhead is in: (start step, length) and the last step seen.
    #[serde(skip)]
    current: Option<(i64, i64, i64)>,
    /// Counts the bars heard, to stamp each bar with when it was heard
    /// ([`Bar::heard`]).
    #[serde(skip)]
    clock: u64,
    /// Where an answer may start: the bar line where a phrase ended (see
    /// [`Window::take_phrase_end`]).
    #[serde(skip)]
    phrase_ended_at: Option<i64>,
    /// Where the last note heard ended (grid step).
    #[serde(skip)]
    last_end: Option<i64>,
    /// The last note end a phrase end was announced after (once per phrase).
    #[serde(skip)]
    announced_end: Option<i64>,
}

/// The silence before a bar line that ends a phrase, in grid steps (a
/// beat): a shorter rest is a breath inside the phrase.
pub const PHRASE_REST: i64 = 4;

/// Most notes held at once that the window tracks (a flood beyond this is
/// ignored rather than allowed to grow memory without bound).
const MAX_HELD: usize = 128;

impl Window {
    /// Hears one message; returns whether any bar became dirty.
    pub fn hear(&mut self, capture: Capture, max_bars: usize) -> bool {
        match capture {
            Capture::NoteOn {
                beat,
                pitch,
                velocity,
            } => {
                let step = nearest_step(beat);
                self.held.retain(|(p, _, _)| *p != pitch);
                if self.held.len() < MAX_HELD {
                    self.held.push((pitch, step, velocity));
                }
                false
            }
            Capture::NoteOff { beat, pitch } => {
                let Some(i) = self.held.iter().position(|(p, _, _)| *p == pitch) else {
                    return false;
                };
                let (_, start, velocity) = self.held.swap_remove(i);
                let bar = self.bar_of(start);
                let off = nearest_step(beat);
                // A note-off before its note-on: the loop wrapped while it was
                // held, so it sounded to the end of its bar.
                let end = if off < start {
                    self.current
                        .filter(|c| c.0 == bar)
                        .map(|c| bar + c.1)
                        .or_else(|| self.bars.get(&bar).map(|b| b.end()))
                        .unwrap_or(bar + 16)
                } else {
                    off
                }
                .max(start + 1);
                let note = HeardNote {
                    start,
                    end,
                    pitch,
                    velocity,
                };
                self.last_end = Some(end);
                self.pass.entry(bar).or_default().push(note);
                // A note ending after its bar was committed updates that bar.
                let late = self
                    .bars
                    .get(&bar)
                    .is_some_and(|_| self.current.is_some_and(|(cur, _, _)| cur != bar));
                if late {
                    return self.commit(bar, max_bars, false);
                }
                false
            }
            Capture::Playhead {
                beat,
                playing,
                bar_start_beat,
                bar_beats,
                character,
            } => {
                if !playing {
                    // Stopped: the bar heard to its end is a take, a bar
                    // heard in part is not (the next full pass replaces it
                    // with what it hears alone).
                    let mut dirty = false;
                    if let Some((cur, cur_len, last_seen)) = self.current {
                        if last_seen >= cur + cur_len - 2 {
                            dirty = self.commit(cur, max_bars, true);
                        }
                    }
                    self.current = None;
                    self.pass.clear();
                    return dirty;
                }
                if bar_beats <= 0.0 {
                    return false;
                }
                let step = nearest_step(beat);
                let start = nearest_step(bar_start_beat);
                let length = nearest_step(bar_beats).max(1);
                let mut dirty = false;
                if let Some((cur, cur_len, last_seen)) = self.current {
                    if cur != start {
                        // The playhead left a bar: commit it if it was heard
                        // to its end; a jump away mid-bar forgets the part.
                        let heard_to_end = last_seen >= cur + cur_len - 2 || start == cur + cur_len;
                        if heard_to_end {
                            dirty |= self.commit(cur, max_bars, true);
                        } else {
                            self.pass.remove(&cur);
                        }
                    }
                }
                if self.current.is_none_or(|(cur, _, _)| cur != start) {
                    self.set_character(start, character);
                }
                self.current = Some((start, length, step));
                self.bars.entry(start).and_modify(|b| b.length = length);
                dirty
            }
        }
    }

    /// Bar `start` is composed with `character` (the playhead entered it,
    /// or the editor's pad gave it to the masked bars). The bars far from
    /// it are forgotten, and the farthest beyond
    /// [`limits::MAX_CHARACTERS`].
    pub fn set_character(&mut self, start: i64, character: Character) {
        use limits::{MAX_CHARACTERS, MAX_SPAN};
        if start < 0 {
            return;
        }
        self.characters.insert(start, character);
        self.characters
            .retain(|bar, _| (bar - start).abs() <= MAX_SPAN / 2);
        while self.characters.len() > MAX_CHARACTERS {
            let first = *self.characters.keys().next().expect("non-empty");
            let last = *self.characters.keys().next_back().expect("non-empty");
            let farthest = match start - first >= last - start {
                true => first,
                false => last,
            };
            self.characters.remove(&farthest);
        }
    }

    /// The character bar `start` is composed with: the one it was given,
    /// else `otherwise` (the parameters' now).
    pub fn character_at(&self, start: i64, otherwise: Character) -> Character {
        self.characters.get(&start).copied().unwrap_or(otherwise)
    }

    fn bar_of(&self, step: i64) -> i64 {
        match self.current {
            Some((start, length, _)) => start + (step - start).div_euclid(length) * length,
            None => step.div_euclid(16) * 16,
        }
    }

    /// Replaces bar `start`'s melody with what this pass heard.
    fn commit(&mut self, start: i64, max_bars: usize, whole_pass: bool) -> bool {
        // Before the song's start (a host's pre-roll or count-in) is not a
        // bar of the song: what was heard there is not kept.
        if start < 0 {
            self.pass.remove(&start);
            return false;
        }
        let length = self
            .current
            .filter(|c| c.0 == start)
            .map(|c| c.1)
            .or_else(|| self.bars.get(&start).map(|b| b.length))
            .unwrap_or(16);
        let mut notes = self.pass.remove(&start).unwrap_or_default();
        // Notes still held are cut at the bar end for now.
        for (pitch, held_start, velocity) in &self.held {
            if self.bar_of(*held_start) == start {
                notes.push(HeardNote {
                    start: *held_start,
                    end: start + length,
                    pitch: *pitch,
                    velocity: *velocity,
                });
            }
        }
        notes.sort_by_key(|n| (n.start, n.pitch));
        self.clock += 1;
        if whole_pass {
            // A phrase ends at a bar line with nothing held and at least
            // PHRASE_REST of silence before it, after a note that ended in
            // this bar or the one before; announced once per phrase.
            let bar_end = start + length;
            let ended = self.last_end.filter(|end| {
                self.held.is_empty()
                    && *end <= bar_end - PHRASE_REST
                    && *end >= start - length
                    && self.announced_end != Some(*end)
            });
            if ended.is_some() {
                self.announced_end = ended;
            }
            self.phrase_ended_at = ended.map(|_| bar_end);
        }
        let clock = self.clock;
        let bar = self.bars.entry(start).or_insert_with(|| Bar {
            start,
            length,
            melody: Vec::new(),
            dirty: false,
            heard: clock,
            adopted: false,
        });
        bar.heard = clock;
        if bar.adopted && notes.is_empty() {
            self.trim(max_bars);
            return false;
        }
        bar.adopted = false;
        let changed =
            bar.melody != notes || (bar.melody.is_empty() && !notes.is_empty() && !bar.dirty);
        if changed {
            bar.melody = notes;
            bar.dirty = true;
        }
        self.trim(max_bars);
        changed
    }

    /// Takes `bars` in as if heard now (a take copied into the window as
    /// new input), replacing bars at the same places. Not dirty: the caller
    /// has their harmony.
    pub fn adopt(&mut self, bars: Vec<Bar>, max_bars: usize) {
        for mut bar in bars {
            self.clock += 1;
            bar.heard = self.clock;
            bar.adopted = true;
            bar.dirty = false;
            self.bars.insert(bar.start, bar);
        }
        self.trim(max_bars);
    }

    /// Keeps the `max_bars` most recently heard bars, and of those only the
    /// ones near the newest: after a jump far along the song the take's
    /// grid (which spans the window) stays small.
    fn trim(&mut self, max_bars: usize) {
        use limits::{MAX_BAR_STEPS, MAX_SPAN};
        if let Some(newest) = self.bars.values().max_by_key(|b| b.heard).map(|b| b.start) {
            let reach = MAX_SPAN / 2 - MAX_BAR_STEPS;
            self.bars.retain(|start, _| (start - newest).abs() <= reach);
        }
        while self.bars.len() > max_bars.max(1) {
            let oldest = self
                .bars
                .values()
                .min_by_key(|b| b.heard)
                .map(|b| b.start)
                .expect("non-empty");
            self.bars.remove(&oldest);
        }
    }

    /// The bar line where a phrase ended, once, if the last commit ended
    /// one: nothing held at it, and at least [`PHRASE_REST`] of silence
    /// before it since a note that ended in that bar or the one before (so
    /// a phrase held to the bar line is answered a bar later, and a breath
    /// before a bar line inside a phrase asks for no answer).
    pub fn take_phrase_end(&mut self) -> Option<i64> {
        self.phrase_ended_at.take()
    }

    pub fn any_dirty(&self) -> bool {
        self.bars.values().any(|b| b.dirty)
    }

    pub fn mark_clean(&mut self, starts: &[i64]) {
        for s in starts {
            if let Some(b) = self.bars.get_mut(s) {
                b.dirty = false;
            }
        }
    }

    pub fn mark_all_dirty(&mut self) {
        for b in self.bars.values_mut() {
            b.dirty = true;
        }
    }

    /// Runs of adjacent bars (no gap between them), in order.
    pub fn segments(&self) -> Vec<Vec<&Bar>> {
        let mut out: Vec<Vec<&Bar>> = Vec::new();
        for bar in self.bars.values() {
            match out.last_mut() {
                Some(run) if run.last().is_some_and(|b| b.end() == bar.start) => run.push(bar),
                _ => out.push(vec![bar]),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playhead(beat: f64) -> Capture {
        Capture::Playhead {
            beat,
            playing: true,
            bar_start_beat: (beat / 4.0).floor() * 4.0,
            bar_beats: 4.0,
            character: cantor_engine::Character::NEUTRAL,
        }
    }

    fn play(window: &mut Window, notes: &[(f64, f64, u8)], from: f64, to: f64) -> bool {
        let mut dirty = false;
        let mut beat = from;
        while beat < to {
            for (on, off, pitch) in notes {
                if *on >= beat && *on < beat + 0.25 {
                    dirty |= window.hear(
                        Capture::NoteOn {
                            beat: *on,
                            pitch: *pitch,
                            velocity: 90,
                        },
                        8,
                    );
                }
                if *off >= beat && *off < beat + 0.25 {
                    dirty |= window.hear(
                        Capture::NoteOff {
                            beat: *off,
                            pitch: *pitch,
                        },
                        8,
                    );
                }
            }
            dirty |= window.hear(playhead(beat), 8);
            beat += 0.25;
        }
        dirty
    }

    #[test]
    fn a_bar_is_committed_when_the_playhead_leaves_it() {
        let mut w = Window::default();
        let melody = [(0.0, 1.0, 72), (1.0, 2.0, 74), (2.0, 4.0, 76)];
        assert!(!play(&mut w, &melody, 0.0, 4.0));
        assert!(play(&mut w, &[], 4.0, 4.25));
        let bar = &w.bars[&0];
        assert_eq!(bar.melody.len(), 3);
        assert_eq!(
            bar.melody[2],
            HeardNote {
                start: 8,
                end: 16,
                pitch: 76,
                velocity: 90
            }
        );
        assert!(bar.dirty);
    }

    /// Issue #13: each bar is composed with the character pad's parameters
    /// as the playhead entered it (an automation lane read at bar starts):
    /// a change inside the bar waits for the next, a later pass replaces
    /// the value, and a stopped transport reads nothing.
    #[test]
    fn each_bar_keeps_the_character_the_playhead_entered_it_with() {
        let at = |activity: f32| Character {
            activity,
            tension: -activity / 2.0,
        };
        let mut w = Window::default();
        let pass = |w: &mut Window, lane: &dyn Fn(f64) -> f32, playing: bool| {
            for i in 0..32 {
                let beat = i as f64 * 0.25;
                let capture = Capture::Playhead {
                    beat,
                    playing,
                    bar_start_beat: (beat / 4.0).floor() * 4.0,
                    bar_beats: 4.0,
                    character: at(lane(beat)),
                };
                w.hear(capture, 8);
            }
        };
        // Calm in bar 1, turning busy half way through it, busy in bar 2.
        pass(&mut w, &|beat| if beat < 2.0 { -1.0 } else { 1.0 }, true);
        assert_eq!(w.character_at(0, Character::NEUTRAL), at(-1.0));
        assert_eq!(w.character_at(16, Character::NEUTRAL), at(1.0));
        assert_eq!(w.character_at(32, at(0.5)), at(0.5), "not reached");
        // The next pass reads the lane again.
        pass(&mut w, &|_| 0.25, true);
        assert_eq!(w.character_at(0, Character::NEUTRAL), at(0.25));
        // Stopped, the transport reads nothing.
        pass(&mut w, &|_| -0.75, false);
        assert_eq!(w.character_at(16, Character::NEUTRAL), at(0.25));
        // A long song keeps the bars near the playhead, a bounded number.
        for bar in 0..1000 {
            w.set_character(bar * 16, at(0.0));
        }
        assert_eq!(w.characters.len(), limits::MAX_CHARACTERS);
        assert!(w.characters.contains_key(&(999 * 16)));
        assert!(!w.characters.contains_key(&0));
    }

    #[test]
    fn a_loop_with_the_same_melody_changes_nothing_and_an_edit_is_followed() {
        let mut w = Window::default();
        // The note-off on the bar line arrives in the block that crosses it.
        let melody = [(0.0, 2.0, 72), (2.0, 4.0, 74)];
        assert!(play(&mut w, &melody, 0.0, 4.25));
        w.mark_clean(&[0]);
        // Loop back: same notes, bar stays clean.
        assert!(!play(&mut w, &melody, 0.0, 4.25));
        assert!(!w.any_dirty());
        // Edited melody: dirty again.
        assert!(play(&mut w, &[(0.0, 2.0, 72), (2.0, 4.0, 77)], 0.0, 4.25));
        assert_eq!(w.bars[&0].melody[1].pitch, 77);
    }

    #[test]
    fn the_window_keeps_the_most_recent_bars_and_survives_a_flood() {
        let mut w = Window::default();
        let mut beat = 0.0;
        for bar in 0..12 {
            play(
                &mut w,
                &[(beat, beat + 1.0, 60 + bar as u8)],
                beat,
                beat + 4.0,
            );
            beat += 4.0;
        }
        play(&mut w, &[], beat, beat + 0.25);
        assert_eq!(w.bars.len(), 8);
        assert_eq!(*w.bars.keys().next().unwrap(), 4 * 16);
        for i in 0..10_000u32 {
            w.hear(
                Capture::NoteOn {
                    beat,
                    pitch: (i % 128) as u8,
                    velocity: 1,
                },
                8,
            );
        }
        assert!(w.held.len() <= MAX_HELD);
        assert_eq!(w.bars.len(), 8);
    }

    #[test]
    fn a_phrase_ends_at_a_bar_line_after_a_beat_of_silence() {
        let mut w = Window::default();
        // An eighth rest before the bar line: a breath, not a phrase end.
        play(&mut w, &[(0.0, 3.5, 72)], 0.0, 4.0);
        play(&mut w, &[], 4.0, 4.25);
        assert_eq!(w.take_phrase_end(), None);
        // A beat of silence before the bar line ends the phrase, once.
        play(&mut w, &[(4.5, 7.0, 74)], 4.25, 8.0);
        play(&mut w, &[], 8.0, 8.25);
        assert_eq!(w.take_phrase_end(), Some(32));
        assert_eq!(w.take_phrase_end(), None);
        play(&mut w, &[], 8.25, 12.25);
        assert_eq!(w.take_phrase_end(), None, "the same phrase again");
        // A note held over the bar line: the phrase goes on.
        let held = (12.5, 18.0, 72);
        play(&mut w, &[held], 12.25, 16.25);
        assert_eq!(w.take_phrase_end(), None);
        // Held to the bar line: the phrase end is heard a bar later.
        play(&mut w, &[held, (16.5, 20.0, 71)], 16.25, 20.25);
        assert_eq!(w.take_phrase_end(), None);
        play(&mut w, &[], 20.25, 24.25);
        assert_eq!(w.take_phrase_end(), Some(96));
    }

    #[test]
    fn bars_follow_a_change_of_time_signature() {
        let mut w = Window::default();
        // A bar of 4/4 (beats 0–4), then bars of 3/4 from beat 4.
        let mut beat: f64 = 0.0;
        while beat < 10.25 {
            let (bar_start, bar_beats) = if beat < 4.0 {
                (0.0, 4.0)
            } else {
                (4.0 + ((beat - 4.0) / 3.0).floor() * 3.0, 3.0)
            };
            if (beat - 5.0_f64).abs() < 1e-9 {
                w.hear(
                    Capture::NoteOn {
                        beat,
                        pitch: 70,
                        velocity: 90,
                    },
                    8,
                );
            }
            if (beat - 6.0_f64).abs() < 1e-9 {
                w.hear(Capture::NoteOff { beat, pitch: 70 }, 8);
            }
            w.hear(
                Capture::Playhead {
                    beat,
                    playing: true,
                    bar_start_beat: bar_start,
                    bar_beats,
                    character: cantor_engine::Character::NEUTRAL,
                },
                8,
            );
            beat += 0.25;
        }
        let bars: Vec<(i64, i64)> = w.bars.values().map(|b| (b.start, b.length)).collect();
        assert_eq!(bars, vec![(0, 16), (16, 12), (28, 12)]);
        assert_eq!(
            w.bars[&16].melody,
            vec![HeardNote {
                start: 20,
                end: 24,
                pitch: 70,
                velocity: 90
            }]
        );
    }

    #[test]
    fn an_adopted_bar_survives_a_silent_pass_but_not_a_played_one() {
        let mut w = Window::default();
        let note = HeardNote {
            start: 0,
            end: 16,
            pitch: 72,
            velocity: 90,
        };
        w.adopt(
            vec![Bar {
                start: 0,
                length: 16,
                melody: vec![note],
                dirty: false,
                heard: 0,
                adopted: true,
            }],
            8,
        );
        assert!(!play(&mut w, &[], 0.0, 4.25));
        assert_eq!(w.bars[&0].melody, vec![note]);
        let played = [(0.0, 2.0, 74), (2.0, 4.0, 76)];
        // The loop comes back to bar 0 with notes in it.
        assert!(play(&mut w, &played, 0.0, 4.25));
        let bar = &w.bars[&0];
        assert_eq!(bar.melody.len(), 2);
        assert!(bar.dirty && !bar.adopted);
    }

    #[test]
    fn a_bar_heard_in_part_is_forgotten_not_mixed_into_the_next_pass() {
        let mut w = Window::default();
        let take = [(0.0, 2.0, 72), (2.0, 4.0, 74)];
        assert!(play(&mut w, &take, 0.0, 4.25));
        w.mark_clean(&[0]);
        // Half a bar of something else, then the transport stops.
        play(&mut w, &[(0.0, 1.0, 60), (1.0, 1.5, 62)], 0.0, 2.0);
        let stopped = Capture::Playhead {
            beat: 2.0,
            playing: false,
            bar_start_beat: 0.0,
            bar_beats: 4.0,
            character: cantor_engine::Character::NEUTRAL,
        };
        assert!(!w.hear(stopped, 8));
        // The same bar again, played through: its melody is this pass alone.
        let again = [(0.0, 2.0, 72), (2.0, 4.0, 76)];
        assert!(play(&mut w, &again, 0.0, 4.25));
        let pitches: Vec<u8> = w.bars[&0].melody.iter().map(|n| n.pitch).collect();
        assert_eq!(pitches, [72, 76]);
        // A jump away mid-bar forgets that part too.
        w.mark_clean(&[0]);
        play(&mut w, &[(0.0, 1.0, 65)], 0.0, 1.5);
        play(&mut w, &[], 32.0, 32.5);
        assert!(!play(&mut w, &again, 0.0, 4.25), "the bar did not change");
        // Stopping right at the end of a bar keeps that bar.
        let last = [(4.0, 6.0, 67), (6.0, 7.75, 69)];
        play(&mut w, &last, 4.0, 8.0);
        let at_end = Capture::Playhead {
            beat: 7.9,
            playing: false,
            bar_start_beat: 4.0,
            bar_beats: 4.0,
            character: cantor_engine::Character::NEUTRAL,
        };
        assert!(w.hear(at_end, 8));
        assert_eq!(w.bars[&16].melody.len(), 2);
    }

    /// Issue #15: after a jump far along the song the window keeps only
    /// bars near the playhead, so the take's grid (which spans the window)
    /// stays small.
    #[test]
    fn a_jump_far_along_the_song_leaves_the_old_bars_behind() {
        let mut w = Window::default();
        play(&mut w, &[(0.0, 1.0, 72)], 0.0, 4.25);
        assert_eq!(w.bars.keys().copied().collect::<Vec<_>>(), [0]);
        let far = 1e10;
        play(&mut w, &[(far, far + 1.0, 74)], far, far + 4.25);
        let starts: Vec<i64> = w.bars.keys().copied().collect();
        assert_eq!(starts, [(far * 4.0) as i64]);
    }

    /// Issue #12: a host's pre-roll or count-in (negative song positions)
    /// does not enter the window.
    #[test]
    fn bars_before_the_songs_start_are_not_kept() {
        let mut w = Window::default();
        play(&mut w, &[(-4.0, -3.0, 60), (0.0, 1.0, 72)], -4.0, 4.25);
        let starts: Vec<i64> = w.bars.keys().copied().collect();
        assert_eq!(starts, [0]);
        assert_eq!(w.bars[&0].melody.len(), 1);
    }
}
