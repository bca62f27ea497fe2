//! The audio thread's links to the other threads: the lock-free queues
//! between it and the worker and the messages they carry, and the playhead
//! it shows the editor. Captures (what the host played, stamped in song
//! position) go to the worker; schedules (what to play) come back, and
//! spent schedules return so the audio thread never frees memory.
//!
//! Where a host reports no loop, part of a block's input waits for the
//! next block: only the next block's position says whether the host
//! wrapped inside this one (see [`crate::grid_time::LoopTracker`]), and a
//! note played after such a wrap belongs to the loop's start, not past its
//! end. What waits is what comes from half a 16th before the first 16th
//! the block crosses (a loop ends on one); the worker hears it a block
//! later, which nothing downstream notices.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cantor_engine::grid::STEPS_PER_QUARTER;
use cantor_engine::Character;

use crate::grid_time::{step_at_or_after, BlockClock, BlockSpan};
use crate::playback::Schedule;

/// Where the host's playhead is, for the editor: stored by the audio
/// thread each block, read by the GUI thread, in atomics (no lock).
#[derive(Debug, Default)]
pub struct Playhead {
    /// Song position in beats (f64 bits).
    beat: AtomicU64,
    /// Whether the transport plays.
    playing: AtomicBool,
    /// Tempo in BPM (f64 bits); 0 until a block has been processed.
    tempo: AtomicU64,
}

impl Playhead {
    /// Audio thread: where the playhead is (song position in beats) and
    /// the tempo (BPM).
    pub fn set(&self, beat: f64, playing: bool, tempo: f64) {
        self.beat.store(beat.to_bits(), Ordering::Relaxed);
        self.playing.store(playing, Ordering::Relaxed);
        self.tempo.store(tempo.to_bits(), Ordering::Relaxed);
    }

    /// The song position in beats, and whether the transport plays.
    pub fn get(&self) -> (f64, bool) {
        (
            f64::from_bits(self.beat.load(Ordering::Relaxed)),
            self.playing.load(Ordering::Relaxed),
        )
    }

    /// The host's last tempo, once a block has been processed.
    pub fn tempo(&self) -> Option<f64> {
        Some(f64::from_bits(self.tempo.load(Ordering::Relaxed))).filter(|t| *t > 0.0)
    }
}

/// A message from the audio thread, stamped in song position (beats).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Capture {
    NoteOn {
        beat: f64,
        pitch: u8,
        velocity: u8,
    },
    NoteOff {
        beat: f64,
        pitch: u8,
    },
    /// Once per block: where the playhead is and the bar grid around it.
    Playhead {
        beat: f64,
        playing: bool,
        /// Song position of the current bar's first beat.
        bar_start_beat: f64,
        /// Bar length in quarter-note beats (4/4 → 4, 6/8 → 3).
        bar_beats: f64,
        /// The character pad's parameters at the block's start (host
        /// automation): the window gives each bar the value it had when the
        /// playhead entered it.
        character: Character,
    },
}

/// Capture messages the queue holds; a flood beyond this is dropped by the
/// audio thread (the window keeps what it had).
pub const CAPTURE_CAPACITY: usize = 8192;
/// Queue slots kept for the note-offs of notes whose note-on went through
/// (one per key at most): a flood can drop notes, never just their ends.
const OFF_RESERVE: usize = 128;
/// Schedules in flight each way.
const SCHEDULE_CAPACITY: usize = 4;

/// The audio thread's ends of the queues (every field the audio thread's).
pub struct AudioLink {
    /// What the host played, to the worker.
    pub captures: rtrb::Producer<Capture>,
    /// What to play, from the worker.
    pub schedules: rtrb::Consumer<Box<Schedule>>,
    /// Schedules replaced on the audio thread, back to the worker to drop
    /// (the audio thread never frees).
    pub retired: rtrb::Producer<Box<Schedule>>,
    /// Keys whose note-on reached the window and whose note-off has not:
    /// their note-offs always go through (see [`AudioLink::capture`]).
    sounding: u128,
    /// Input of the current (then the last) block whose place waits for
    /// the next block: (sample offset, what), sent by
    /// [`AudioLink::send_held`]. Capacity reserved in [`link`].
    held: Vec<(u32, Input)>,
    /// The current (then the last) block.
    block: Option<CurrentBlock>,
}

/// The block being heard, with what is known of it when it starts.
#[derive(Clone, Copy, Debug)]
struct CurrentBlock {
    held: HeldBlock,
    /// The loop its host reported.
    reported: Option<(f64, f64)>,
    /// The block in song position as far as it is known now.
    span: BlockSpan,
    /// Input before this sample offset is placed at once (all of it when
    /// the host reported the loop).
    certain_before: u32,
}

/// An input note event of a block, at a sample offset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Input {
    On {
        pitch: u8,
        velocity: u8,
    },
    Off {
        pitch: u8,
    },
    /// An every-key note-off.
    AllOff,
}

/// Where a block played, for its held input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeldBlock {
    /// The block as the host reported it (not split at a loop end).
    pub clock: BlockClock,
    /// Song position of the bar the block starts in, and its length.
    pub bar_start: f64,
    pub bar_beats: f64,
    /// Whether the window should take the block as played (a host with no
    /// position at all counts as playing).
    pub playing: bool,
    /// The character pad's parameters when the block started.
    pub character: Character,
}

/// The first sample of a block whose input's song position depends on
/// whether the host wrapped an unreported loop in it: half a step before
/// the first 16th after the block's first sample.
fn first_uncertain_sample(clock: &BlockClock) -> u32 {
    let steps = STEPS_PER_QUARTER as f64;
    let boundary = step_at_or_after(clock.start_beat + clock.beats_per_sample) as f64 / steps;
    let from = (boundary - 0.5 / steps - clock.start_beat) / clock.beats_per_sample;
    from.floor().clamp(0.0, u32::MAX as f64) as u32
}

/// Input events one block can hold (nice-plug's input queue holds as many).
pub const HELD_CAPACITY: usize = 32_768;

impl AudioLink {
    /// Sends a capture to the worker without blocking. When the queue is
    /// nearly full (a flood the worker has not caught up with) note-ons and
    /// playheads are dropped first, keeping room for the note-off of every
    /// note the window was told of, so no key is left held in the window;
    /// the note-off of a dropped note-on is dropped with it. Returns
    /// whether the capture was sent.
    pub fn capture(&mut self, capture: Capture) -> bool {
        let room = self.captures.slots();
        let send = match capture {
            Capture::NoteOff { pitch, .. } => self.sounding & key_bit(pitch) != 0,
            Capture::NoteOn { .. } | Capture::Playhead { .. } => room > OFF_RESERVE,
        };
        if !send || self.captures.push(capture).is_err() {
            return false;
        }
        match capture {
            Capture::NoteOn { pitch, .. } => self.sounding |= key_bit(pitch),
            Capture::NoteOff { pitch, .. } => self.sounding &= !key_bit(pitch),
            Capture::Playhead { .. } => {}
        }
        true
    }

    /// Begins a block's input: where the block plays, and the loop the
    /// host reports for it (`None`: unknown until the next block).
    pub fn start_block(&mut self, block: HeldBlock, reported: Option<(f64, f64)>) {
        self.block = Some(CurrentBlock {
            held: block,
            reported,
            span: BlockSpan::new(block.clock, reported),
            certain_before: match reported {
                Some(_) => u32::MAX,
                None => first_uncertain_sample(&block.clock),
            },
        });
    }

    /// Hears one of the block's input events. It goes to the worker now
    /// when its place is certain: the host reported the loop, or it comes
    /// before the first 16th the block crosses (an unreported loop can end
    /// only on one; from half a step before it a note may be the loop
    /// start's). Otherwise it waits for [`AudioLink::send_held`]. Beyond
    /// [`HELD_CAPACITY`] waiting events the rest are dropped (never an
    /// every-key note-off).
    pub fn hear(&mut self, offset: u32, input: Input) {
        let Some(block) = self.block else {
            return;
        };
        if offset < block.certain_before {
            self.send_input(&block.span, offset, input);
            return;
        }
        if self.held.len() < self.held.capacity() || matches!(input, Input::AllOff) {
            if self.held.len() == self.held.capacity() {
                self.held.pop();
            }
            self.held.push((offset, input));
        }
    }

    /// Ends the block: where the playhead went, as far as it is known (the
    /// stretch after an unreported wrap follows with the held input).
    pub fn end_block(&mut self) {
        let Some(block) = self.block else {
            return;
        };
        for (_, stretch) in block.span.stretches() {
            self.send_playhead(&block.held, &stretch);
        }
    }

    /// Sends the last block's held input to the worker, placed by the loop
    /// it turned out to be played in (`looping`: the host's, or the one the
    /// next block's position revealed), and where the playhead went after
    /// a wrap the host did not report.
    pub fn send_held(&mut self, looping: Option<(f64, f64)>) {
        let Some(CurrentBlock {
            held: block,
            reported,
            ..
        }) = self.block.take()
        else {
            self.held.clear();
            return;
        };
        let span = BlockSpan::new(block.clock, looping);
        for i in 0..self.held.len() {
            let (offset, input) = self.held[i];
            self.send_input(&span, offset, input);
        }
        self.held.clear();
        if let (None, Some((_, after))) = (reported, span.wrap) {
            self.send_playhead(&block, &after);
        }
    }

    fn send_input(&mut self, span: &BlockSpan, offset: u32, input: Input) {
        let beat = span.input_beat(offset, matches!(input, Input::On { .. }));
        match input {
            Input::On { pitch, velocity } => {
                self.capture(Capture::NoteOn {
                    beat,
                    pitch,
                    velocity,
                });
            }
            Input::Off { pitch } => {
                self.capture(Capture::NoteOff { beat, pitch });
            }
            Input::AllOff => self.release_all(beat),
        }
    }

    fn send_playhead(&mut self, block: &HeldBlock, stretch: &BlockClock) {
        // The bar grid of the host's bar, carried over a wrap.
        let bar = block.bar_start
            + ((stretch.start_beat - block.bar_start) / block.bar_beats).floor() * block.bar_beats;
        self.capture(Capture::Playhead {
            beat: stretch.start_beat,
            playing: block.playing,
            bar_start_beat: bar,
            bar_beats: block.bar_beats,
            character: block.character,
        });
    }

    /// An every-key note-off: ends each note the window was told of.
    pub fn release_all(&mut self, beat: f64) {
        for pitch in 0..128u8 {
            if self.sounding & key_bit(pitch) != 0 {
                self.capture(Capture::NoteOff { beat, pitch });
            }
        }
    }
}

fn key_bit(pitch: u8) -> u128 {
    1u128 << (pitch & 0x7f)
}

/// The worker's ends of the queues (every field the worker thread's).
pub struct WorkerLink {
    /// What the host played, from the audio thread.
    pub(crate) captures: rtrb::Consumer<Capture>,
    /// What to play, to the audio thread.
    pub(crate) schedules: rtrb::Producer<Box<Schedule>>,
    /// Schedules the audio thread replaced, for the worker to drop.
    pub(crate) retired: rtrb::Consumer<Box<Schedule>>,
}

pub fn link() -> (AudioLink, WorkerLink) {
    let (cp, cc) = rtrb::RingBuffer::new(CAPTURE_CAPACITY);
    let (sp, sc) = rtrb::RingBuffer::new(SCHEDULE_CAPACITY);
    // Room for every schedule that can be in flight plus the one playing.
    let (rp, rc) = rtrb::RingBuffer::new(SCHEDULE_CAPACITY + 2);
    (
        AudioLink {
            captures: cp,
            schedules: sc,
            retired: rp,
            sounding: 0,
            held: Vec::with_capacity(HELD_CAPACITY),
            block: None,
        },
        WorkerLink {
            captures: cc,
            schedules: sp,
            retired: rc,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_drops_whole_notes_never_their_ends() {
        let (mut audio, mut worker) = link();
        // 10,000 notes in one block, keys cycling, each ended a little later,
        // with nothing drained: far more than the queue holds.
        let mut sent_ons = 0;
        for i in 0..10_000u32 {
            let pitch = (i % 97) as u8 + 20;
            let beat = i as f64 * 1e-4;
            sent_ons += usize::from(audio.capture(Capture::NoteOn {
                beat,
                pitch,
                velocity: 80,
            }));
            if i >= 8 {
                let pitch = ((i - 8) % 97) as u8 + 20;
                audio.capture(Capture::NoteOff { beat, pitch });
            }
        }
        for i in 9_992..10_000u32 {
            let pitch = (i % 97) as u8 + 20;
            audio.capture(Capture::NoteOff { beat: 1.0, pitch });
        }
        assert!(
            sent_ons > 1000 && sent_ons < 10_000,
            "{sent_ons} note-ons sent"
        );
        // What the worker receives: every note-on it saw is ended.
        let mut held = [false; 128];
        let (mut ons, mut offs) = (0, 0);
        while let Ok(c) = worker.captures.pop() {
            match c {
                Capture::NoteOn { pitch, .. } => {
                    held[pitch as usize] = true;
                    ons += 1;
                }
                Capture::NoteOff { pitch, .. } => {
                    assert!(held[pitch as usize], "a note-off without its note-on");
                    held[pitch as usize] = false;
                    offs += 1;
                }
                Capture::Playhead { .. } => {}
            }
        }
        assert_eq!(ons, sent_ons);
        assert_eq!(offs, ons);
        assert!(held.iter().all(|h| !h), "keys left held");
        // And the queue works again once drained.
        assert!(audio.capture(Capture::NoteOn {
            beat: 2.0,
            pitch: 60,
            velocity: 80
        }));
    }

    #[test]
    fn an_every_key_note_off_ends_what_the_window_holds() {
        let (mut audio, mut worker) = link();
        for pitch in [60, 64, 67] {
            audio.capture(Capture::NoteOn {
                beat: 0.0,
                pitch,
                velocity: 80,
            });
        }
        audio.release_all(1.0);
        let offs: Vec<u8> = std::iter::from_fn(|| worker.captures.pop().ok())
            .filter_map(|c| match c {
                Capture::NoteOff { pitch, .. } => Some(pitch),
                _ => None,
            })
            .collect();
        assert_eq!(offs, [60, 64, 67]);
    }

    /// Where the host reports no loop, a block's input from just before the
    /// first 16th it crosses waits for the next block, which says whether
    /// the loop wrapped there: a note after the wrap is the loop start's.
    #[test]
    fn input_waits_for_the_block_that_says_whether_the_loop_wrapped() {
        let bps = 1.0 / 24_000.0; // 120 BPM at 48 kHz
        let clock = BlockClock {
            playing: true,
            start_beat: 8.0 - 100.0 * bps,
            samples: 512,
            beats_per_sample: bps,
        };
        let block = HeldBlock {
            clock,
            bar_start: 4.0,
            bar_beats: 4.0,
            playing: true,
            character: Character::NEUTRAL,
        };
        let playhead = |c: &Capture| match *c {
            Capture::Playhead {
                beat,
                bar_start_beat,
                ..
            } => Some((beat, bar_start_beat)),
            _ => None,
        };
        let note_on = |c: &Capture| match *c {
            Capture::NoteOn { beat, pitch, .. } => Some((beat, pitch)),
            _ => None,
        };
        let on = Input::On {
            pitch: 67,
            velocity: 100,
        };
        // Revealed by the next block: a wrap at beat 8 back to 0, or none.
        for (looping, beat, wrapped) in [
            (Some((0.0, 8.0)), 200.0 * bps, Some((0.0, 0.0))),
            (None, 8.0 + 200.0 * bps, None),
        ] {
            let (mut audio, mut worker) = link();
            audio.start_block(block, None);
            audio.hear(300, on);
            audio.end_block();
            let now: Vec<Capture> = std::iter::from_fn(|| worker.captures.pop().ok()).collect();
            assert_eq!(
                now.len(),
                1,
                "only the playhead before the next block: {now:?}"
            );
            assert_eq!(playhead(&now[0]), Some((clock.start_beat, 4.0)));
            audio.send_held(looping);
            let got: Vec<Capture> = std::iter::from_fn(|| worker.captures.pop().ok()).collect();
            let (at, pitch) = note_on(&got[0]).expect("the note");
            assert_eq!(pitch, 67);
            assert!((at - beat).abs() < 1e-9, "{at} vs {beat}");
            assert_eq!(got.get(1).and_then(playhead), wrapped);
            assert_eq!(got.len(), 1 + usize::from(wrapped.is_some()));
            // Sent once.
            audio.send_held(looping);
            assert!(worker.captures.pop().is_err());
        }
        // Before the first 16th the block crosses (less half a step), or
        // with a loop the host reported, nothing waits.
        let early = BlockClock {
            start_beat: 7.0,
            ..clock
        };
        for (clock, reported) in [(early, None), (clock, Some((0.0, 8.0)))] {
            let (mut audio, mut worker) = link();
            audio.start_block(HeldBlock { clock, ..block }, reported);
            audio.hear(300, on);
            let (at, _) = note_on(&worker.captures.pop().expect("sent at once")).unwrap();
            let expected = if reported.is_some() {
                200.0 * bps
            } else {
                7.0 + 300.0 * bps
            };
            assert!((at - expected).abs() < 1e-9, "{at} vs {expected}");
        }
    }
}
