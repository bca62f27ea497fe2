//! Sample-accurate playback of generated notes on the audio thread.
//!
//! Generated notes live in a [`Schedule`] addressed by absolute grid step
//! (16th notes from the host's song position zero), so a looped clip replays
//! them on every pass. Each block, the [`Player`] turns the host's song
//! position at the block start and its tempo into the steps the block
//! covers, and sends note-ons and note-offs at the sample where each step
//! falls. Positions are recomputed from the host every block, so there is no
//! drift across block sizes, tempo or time-signature changes.
//!
//! Note-offs are driven by the notes actually sounding (a fixed-size table),
//! never by the schedule: swapping in a new schedule, a transport jump or
//! loop, stopping, or deactivating can therefore never leave a note hanging.
//! Nothing here allocates.

use crate::grid_time::{step_at_or_after, BlockClock};

/// How late (in 16th-note steps) a note of a freshly arrived schedule may
/// still be started: an answer composed right at a bar line arrives a few
/// hundred milliseconds after its downbeat, and should still sound.
pub const CATCH_UP_STEPS: i64 = 2;

/// Most generated notes that can sound at once (four voices with overlaps
/// and a margin); a note-on that finds the table full is skipped rather
/// than left untracked.
pub const MAX_SOUNDING: usize = 64;

/// A generated note at absolute grid steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduledNote {
    pub start: i64,
    pub end: i64,
    pub pitch: u8,
    /// MIDI channel, 0-based.
    pub channel: u8,
    pub velocity: u8,
}

/// Everything the worker wants played, sorted by start step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    notes: Vec<ScheduledNote>,
}

impl Schedule {
    pub fn new(mut notes: Vec<ScheduledNote>) -> Schedule {
        notes.retain(|n| n.end > n.start);
        notes.sort_by_key(|n| (n.start, n.channel, n.pitch));
        Schedule { notes }
    }

    pub fn notes(&self) -> &[ScheduledNote] {
        &self.notes
    }

    /// Notes starting at exactly `step`.
    fn starting_at(&self, step: i64) -> &[ScheduledNote] {
        let from = self.notes.partition_point(|n| n.start < step);
        let to = from + self.notes[from..].partition_point(|n| n.start == step);
        &self.notes[from..to]
    }

    /// Notes that began before `step` and still sound at it.
    fn sounding_across(&self, step: i64) -> impl Iterator<Item = &ScheduledNote> {
        let before = self.notes.partition_point(|n| n.start < step);
        self.notes[..before].iter().filter(move |n| n.end > step)
    }

    /// First start step at or after `step`.
    fn next_start(&self, step: i64) -> Option<i64> {
        let i = self.notes.partition_point(|n| n.start < step);
        self.notes.get(i).map(|n| n.start)
    }
}

/// What the player asks the host to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayEvent {
    On {
        channel: u8,
        pitch: u8,
        velocity: u8,
    },
    Off {
        channel: u8,
        pitch: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sounding {
    channel: u8,
    pitch: u8,
    start: i64,
    end: i64,
}

/// Audio-thread state of playback.
#[derive(Debug)]
pub struct Player {
    sounding: [Option<Sounding>; MAX_SOUNDING],
    /// Where the previous block ended, in beats, to detect jumps and loops.
    expected_beat: Option<f64>,
    /// The first step the previous block did not play: the next block goes
    /// on from it unless the transport jumped, whatever the host's rounding
    /// of its start, so no step is played twice (a double strike) or lost.
    next_step: Option<i64>,
}

impl Default for Player {
    fn default() -> Self {
        Player {
            sounding: [None; MAX_SOUNDING],
            expected_beat: None,
            next_step: None,
        }
    }
}

/// Beats by which a block may start away from where the last one ended
/// before it counts as a jump (hosts round positions; a 16th is 0.25).
const JUMP_TOLERANCE_BEATS: f64 = 1.0 / 64.0;

impl Player {
    /// Plays one block. `send(sample_offset, event)` receives events in time
    /// order, offsets inside `0..clock.samples`. `fresh` says the schedule
    /// just arrived: its notes that began up to [`CATCH_UP_STEPS`] ago start
    /// now, unless they are already sounding.
    pub fn process(
        &mut self,
        schedule: &Schedule,
        clock: &BlockClock,
        fresh: bool,
        send: &mut impl FnMut(u32, PlayEvent),
    ) {
        if !clock.playing || clock.samples == 0 {
            self.all_off(0, send);
            self.expected_beat = None;
            self.next_step = None;
            return;
        }
        let mut jumped = false;
        if let Some(expected) = self.expected_beat {
            if (clock.start_beat - expected).abs() > JUMP_TOLERANCE_BEATS {
                self.all_off(0, send);
                self.next_step = None;
                jumped = true;
            }
        }
        // A step belongs to the block holding the sample nearest to it, so
        // a step half a sample or less before the block's end is played at
        // the next block's first sample, not early at this block's last.
        let half_sample = 0.5 * clock.beats_per_sample;
        let first = self
            .next_step
            .unwrap_or_else(|| step_at_or_after(clock.start_beat - half_sample));
        // Notes whose end went by unnoticed (tempo jump, host rounding).
        for slot in self.sounding.iter_mut() {
            if let Some(s) = *slot {
                if s.end < first {
                    send(
                        0,
                        PlayEvent::Off {
                            channel: s.channel,
                            pitch: s.pitch,
                        },
                    );
                    *slot = None;
                }
            }
        }
        if jumped {
            // After a jump (a loop wrap the host did not report, a locate)
            // the notes that sound where the playhead landed sound from
            // here: a loop wrapping a little past its start would otherwise
            // lose the chord held over its first beats.
            for note in schedule.sounding_across(first) {
                self.start(*note, 0, send);
            }
        }
        if fresh {
            for late in first - CATCH_UP_STEPS..first {
                for note in schedule.starting_at(late) {
                    let playing = self.sounding.iter().flatten().any(|s| {
                        s.channel == note.channel && s.pitch == note.pitch && s.start == note.start
                    });
                    if note.end > first && !playing {
                        self.start(*note, 0, send);
                    }
                }
            }
        }
        let end_beat = clock.end_beat();
        let last = step_at_or_after(end_beat - half_sample).max(first); // exclusive
        let mut step = first;
        while step < last {
            let offset = clock.offset_of_step(step);
            for slot in self.sounding.iter_mut() {
                if let Some(s) = *slot {
                    if s.end == step {
                        send(
                            offset,
                            PlayEvent::Off {
                                channel: s.channel,
                                pitch: s.pitch,
                            },
                        );
                        *slot = None;
                    }
                }
            }
            for note in schedule.starting_at(step) {
                self.start(*note, offset, send);
            }
            // Jump to the next step where anything happens.
            let next_end = self
                .sounding
                .iter()
                .flatten()
                .map(|s| s.end)
                .filter(|e| *e > step)
                .min();
            let next_start = schedule.next_start(step + 1);
            step = match (next_end, next_start) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => last,
            };
        }
        self.expected_beat = Some(end_beat);
        self.next_step = Some(last);
    }

    fn start(&mut self, note: ScheduledNote, offset: u32, send: &mut impl FnMut(u32, PlayEvent)) {
        // The same key on the same channel still sounding: end it first.
        for slot in self.sounding.iter_mut() {
            if let Some(s) = *slot {
                if s.channel == note.channel && s.pitch == note.pitch {
                    send(
                        offset,
                        PlayEvent::Off {
                            channel: s.channel,
                            pitch: s.pitch,
                        },
                    );
                    *slot = None;
                }
            }
        }
        if let Some(slot) = self.sounding.iter_mut().find(|s| s.is_none()) {
            *slot = Some(Sounding {
                channel: note.channel,
                pitch: note.pitch,
                start: note.start,
                end: note.end,
            });
            send(
                offset,
                PlayEvent::On {
                    channel: note.channel,
                    pitch: note.pitch,
                    velocity: note.velocity,
                },
            );
        }
    }

    /// Ends every sounding note at `offset` (transport stop, jump,
    /// deactivation, a change of output channels).
    pub fn all_off(&mut self, offset: u32, send: &mut impl FnMut(u32, PlayEvent)) {
        for slot in self.sounding.iter_mut() {
            if let Some(s) = slot.take() {
                send(
                    offset,
                    PlayEvent::Off {
                        channel: s.channel,
                        pitch: s.pitch,
                    },
                );
            }
        }
    }

    /// Forgets where the transport was (after a reset).
    pub fn reset(&mut self) {
        self.expected_beat = None;
        self.next_step = None;
    }

    pub fn sounding_count(&self) -> usize {
        self.sounding.iter().flatten().count()
    }
}

/// Input notes passed through to the output and not yet released, per
/// channel and key, so that a note-off is passed for every note-on that
/// was, even when pass-through is switched off while the key is down (the
/// instrument after Cantor would otherwise hold that note for good).
#[derive(Clone, Copy, Debug, Default)]
pub struct PassedNotes {
    held: [u128; 16],
}

impl PassedNotes {
    /// Whether an incoming note-on is passed on, given the pass-through
    /// setting; remembers it if so.
    pub fn note_on(&mut self, channel: u8, pitch: u8, pass_through: bool) -> bool {
        if pass_through {
            self.held[usize::from(channel & 0xf)] |= 1u128 << (pitch & 0x7f);
        }
        pass_through
    }

    /// Whether an incoming note-off is passed on: with pass-through on, or
    /// when its note-on was.
    pub fn note_off(&mut self, channel: u8, pitch: u8, pass_through: bool) -> bool {
        let held = &mut self.held[usize::from(channel & 0xf)];
        let bit = 1u128 << (pitch & 0x7f);
        let was_passed = *held & bit != 0;
        *held &= !bit;
        pass_through || was_passed
    }

    /// An every-key note-off on `channel` (every channel when `None`):
    /// whether it is passed on (pass-through on, or a passed note held).
    pub fn all_off(&mut self, channel: Option<u8>, pass_through: bool) -> bool {
        let mut any = false;
        for (c, held) in self.held.iter_mut().enumerate() {
            if channel.is_none_or(|ch| usize::from(ch & 0xf) == c) {
                any |= *held != 0;
                *held = 0;
            }
        }
        pass_through || any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(start: i64, end: i64, pitch: u8) -> ScheduledNote {
        ScheduledNote {
            start,
            end,
            pitch,
            channel: 1,
            velocity: 80,
        }
    }

    fn clock(start_beat: f64, samples: u32, tempo: f64, rate: f64) -> BlockClock {
        BlockClock {
            playing: true,
            start_beat,
            samples,
            beats_per_sample: tempo / 60.0 / rate,
        }
    }

    /// Runs consecutive blocks of `block` samples from beat 0 and returns
    /// events at absolute sample positions.
    fn run(
        schedule: &Schedule,
        block: u32,
        blocks: usize,
        tempo: f64,
        rate: f64,
    ) -> Vec<(u64, PlayEvent)> {
        let mut player = Player::default();
        let mut out = Vec::new();
        let bps = tempo / 60.0 / rate;
        for b in 0..blocks {
            let start_sample = b as u64 * block as u64;
            let c = clock(start_sample as f64 * bps, block, tempo, rate);
            player.process(schedule, &c, false, &mut |o, e| {
                out.push((start_sample + o as u64, e))
            });
        }
        out
    }

    #[test]
    fn notes_land_on_their_samples_whatever_the_block_size() {
        let schedule = Schedule::new(vec![note(0, 4, 60), note(4, 6, 62), note(7, 8, 64)]);
        // 120 bpm at 48 kHz: a 16th is 6000 samples.
        let expected = vec![
            (
                0,
                PlayEvent::On {
                    channel: 1,
                    pitch: 60,
                    velocity: 80,
                },
            ),
            (
                24000,
                PlayEvent::Off {
                    channel: 1,
                    pitch: 60,
                },
            ),
            (
                24000,
                PlayEvent::On {
                    channel: 1,
                    pitch: 62,
                    velocity: 80,
                },
            ),
            (
                36000,
                PlayEvent::Off {
                    channel: 1,
                    pitch: 62,
                },
            ),
            (
                42000,
                PlayEvent::On {
                    channel: 1,
                    pitch: 64,
                    velocity: 80,
                },
            ),
            (
                48000,
                PlayEvent::Off {
                    channel: 1,
                    pitch: 64,
                },
            ),
        ];
        for block in [1u32, 7, 64, 512, 4096, 8192] {
            let blocks = (50_000 / block as usize) + 1;
            assert_eq!(
                run(&schedule, block, blocks, 120.0, 48_000.0),
                expected,
                "block {block}"
            );
        }
    }

    #[test]
    fn stopping_and_jumping_release_every_note() {
        let schedule = Schedule::new(vec![note(0, 16, 60), note(0, 16, 48)]);
        let mut player = Player::default();
        let mut out = Vec::new();
        player.process(
            &schedule,
            &clock(0.0, 512, 120.0, 48_000.0),
            false,
            &mut |o, e| out.push((o, e)),
        );
        assert_eq!(player.sounding_count(), 2);
        // Jump to beat 10: both notes end at offset 0.
        out.clear();
        player.process(
            &schedule,
            &clock(10.0, 512, 120.0, 48_000.0),
            false,
            &mut |o, e| out.push((o, e)),
        );
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|(o, e)| *o == 0 && matches!(e, PlayEvent::Off { .. })));
        // Loop back to 0: they start again; then the transport stops.
        player.process(
            &schedule,
            &clock(0.0, 512, 120.0, 48_000.0),
            false,
            &mut |_, _| {},
        );
        assert_eq!(player.sounding_count(), 2);
        let mut stopped = clock(0.0, 512, 120.0, 48_000.0);
        stopped.playing = false;
        out.clear();
        player.process(&schedule, &stopped, false, &mut |o, e| out.push((o, e)));
        assert_eq!(out.len(), 2);
        assert_eq!(player.sounding_count(), 0);
    }

    #[test]
    fn a_tempo_change_moves_the_next_notes_with_it() {
        let schedule = Schedule::new(vec![note(8, 9, 60)]);
        let mut player = Player::default();
        let mut out = Vec::new();
        // Beat 0 at 120 bpm, one block of 1 s = 2 beats; then 60 bpm.
        player.process(
            &schedule,
            &clock(0.0, 48_000, 120.0, 48_000.0),
            false,
            &mut |o, e| out.push((o, e)),
        );
        assert!(out.is_empty());
        player.process(
            &schedule,
            &clock(2.0, 48_000, 60.0, 48_000.0),
            false,
            &mut |o, e| out.push((o, e)),
        );
        // Step 8 = beat 2: offset 0 of the second block; it ends a 16th
        // later, which at 60 bpm is 12 000 samples.
        assert_eq!(
            out,
            vec![
                (
                    0,
                    PlayEvent::On {
                        channel: 1,
                        pitch: 60,
                        velocity: 80
                    }
                ),
                (
                    12_000,
                    PlayEvent::Off {
                        channel: 1,
                        pitch: 60
                    }
                )
            ]
        );
    }

    #[test]
    fn a_new_schedule_never_strands_a_sounding_note() {
        let old = Schedule::new(vec![note(0, 8, 60)]);
        let new = Schedule::new(vec![note(4, 8, 62)]);
        let mut player = Player::default();
        let mut events = Vec::new();
        let bps = 120.0 / 60.0 / 48_000.0;
        player.process(
            &old,
            &clock(0.0, 6000, 120.0, 48_000.0),
            false,
            &mut |o, e| events.push((o, e)),
        );
        for b in 1..10u32 {
            let c = clock(b as f64 * 6000.0 * bps, 6000, 120.0, 48_000.0);
            player.process(&new, &c, false, &mut |o, e| events.push((o, e)));
        }
        let ons = events
            .iter()
            .filter(|(_, e)| matches!(e, PlayEvent::On { .. }))
            .count();
        let offs = events
            .iter()
            .filter(|(_, e)| matches!(e, PlayEvent::Off { .. }))
            .count();
        assert_eq!((ons, offs), (2, 2));
        assert_eq!(player.sounding_count(), 0);
    }

    #[test]
    fn a_fresh_schedule_starts_notes_that_just_began() {
        let schedule = Schedule::new(vec![note(16, 32, 60), note(8, 20, 64)]);
        let mut player = Player::default();
        let mut out = Vec::new();
        // The schedule arrives at step 17.5: the note from step 16 starts now,
        // the one from step 8 (too long ago) does not.
        let c = clock(17.5 / 4.0, 512, 120.0, 48_000.0);
        player.process(&schedule, &c, true, &mut |o, e| out.push((o, e)));
        assert_eq!(
            out,
            vec![(
                0,
                PlayEvent::On {
                    channel: 1,
                    pitch: 60,
                    velocity: 80
                }
            )]
        );
        // Not again on the next block, and not when it is already sounding.
        out.clear();
        let c = clock(17.5 / 4.0 + 512.0 * 2.0 / 48_000.0, 512, 120.0, 48_000.0);
        player.process(&schedule, &c, true, &mut |o, e| out.push((o, e)));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_passed_note_is_released_after_pass_through_is_switched_off() {
        let mut passed = PassedNotes::default();
        assert!(passed.note_on(0, 60, true));
        assert!(passed.note_on(1, 60, true));
        // Pass-through off while both keys are down: no new note gets out,
        // both held ones are released, each once.
        assert!(!passed.note_on(0, 64, false));
        assert!(passed.note_off(0, 60, false));
        assert!(!passed.note_off(0, 60, false));
        assert!(!passed.note_off(0, 64, false));
        assert!(passed.note_off(1, 60, false));
        // With pass-through on every note-off passes (the host's own
        // notes, whatever Cantor saw of their starts).
        assert!(passed.note_off(2, 70, true));
        // An every-key note-off releases what was passed on its channel.
        assert!(passed.note_on(3, 50, true));
        assert!(!passed.all_off(Some(4), false));
        assert!(passed.all_off(Some(3), false));
        assert!(!passed.all_off(None, false));
    }

    /// Issue #12: a downbeat a fraction of a sample before a block boundary,
    /// and a host that rounds the next block's start a little earlier, used
    /// to strike the chord at the block's last sample and again (note-off,
    /// note-on) at the next block's first: a flam. It is struck once.
    #[test]
    fn a_step_at_a_block_boundary_is_struck_once() {
        let (tempo, rate) = (84.0, 48_000.0);
        let bps = tempo / 60.0 / rate;
        let schedule = Schedule::new(vec![note(16, 32, 60), note(16, 32, 64)]);
        let step_beat = 4.0;
        for before in [0.1, 0.4, 0.6, 0.9, 1.0] {
            for early in [0.0, 1e-7, 1e-5] {
                let mut player = Player::default();
                let mut ons = Vec::new();
                // Block N ends `before` samples after the downbeat's time;
                // block N+1 is reported starting `early` beats before that.
                let end = step_beat + before * bps;
                let first = clock(end - 512.0 * bps, 512, tempo, rate);
                player.process(&schedule, &first, false, &mut |o, e| {
                    if matches!(e, PlayEvent::On { .. }) {
                        ons.push((0, o));
                    }
                });
                let second = clock(end - early, 512, tempo, rate);
                player.process(&schedule, &second, false, &mut |o, e| {
                    if matches!(e, PlayEvent::On { .. }) {
                        ons.push((1, o));
                    }
                });
                assert_eq!(ons.len(), 2, "before {before}, early {early}: {ons:?}");
                assert_eq!(ons[0], ons[1], "one chord, one place");
                // Within a sample of the downbeat's time.
                let (block, offset) = ons[0];
                let at = if block == 0 {
                    end - 512.0 * bps + offset as f64 * bps
                } else {
                    end - early + offset as f64 * bps
                };
                assert!((at - step_beat).abs() <= bps, "{before} {early}: {at}");
            }
        }
    }

    /// Issue #12: a host that neither splits the block at the loop end nor
    /// reports the loop (84 BPM, 48 kHz, 512-sample blocks): the block after
    /// the wrap starts a little past the loop start. The chord held over the
    /// loop's first beats sounds from there, on every pass, instead of the
    /// harmony starting at beat 3.
    #[test]
    fn after_an_unreported_loop_wrap_the_held_chord_sounds() {
        let (tempo, rate): (f64, f64) = (84.0, 48_000.0);
        let bps = tempo / 60.0 / rate;
        // A chord held for the loop's first two beats, then one on beat 3.
        let schedule = Schedule::new(vec![note(0, 8, 60), note(0, 8, 64), note(8, 16, 62)]);
        let loop_beats = 4.0;
        let loop_samples = loop_beats / bps;
        let mut player = Player::default();
        let mut sample = 0.0f64;
        let mut first_on_per_pass: Vec<Option<f64>> = vec![None; 3];
        for _ in 0..3 * (loop_samples / 512.0).ceil() as usize + 3 {
            // The host's position: the loop wrapped inside the last block.
            let pass = (sample / loop_samples).floor() as usize;
            let beat = (sample % loop_samples) * bps;
            let c = clock(beat, 512, tempo, rate);
            player.process(&schedule, &c, false, &mut |o, e| {
                if let PlayEvent::On { .. } = e {
                    if let Some(slot) = first_on_per_pass.get_mut(pass) {
                        slot.get_or_insert(beat + o as f64 * bps);
                    }
                }
            });
            sample += 512.0;
        }
        for (pass, on) in first_on_per_pass.iter().enumerate() {
            let on = on.unwrap_or_else(|| panic!("pass {pass}: nothing sounded"));
            // Within the block after the wrap, not on beat 3.
            assert!(
                on < 512.0 * bps,
                "pass {pass}: the first note-on at beat {on}"
            );
        }
    }
}
