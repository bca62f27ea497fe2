//! Host time to grid time: which 16th-note steps a block covers and at
//! which sample each one falls. Steps are counted from the host's song
//! position zero (step = beat × 4), so they are absolute: a loop replays the
//! same steps, and bars are found by position rather than by arrival order.

use cantor_engine::grid::STEPS_PER_QUARTER;
use nice_plug::prelude::Transport;

/// Slack when turning beats into steps, so a position a rounding error
/// before a step still counts as on it.
const STEP_EPSILON: f64 = 1e-6;

/// Farthest song position taken from a host, in beats either way (about
/// 19,000 years at 120 BPM): past it, or not finite, the position is
/// ignored and Cantor keeps its own clock, so the step arithmetic downstream
/// never overflows.
pub const MAX_HOST_BEAT: f64 = 1e12;
/// Fastest tempo taken from a host, in BPM; faster or not finite falls back.
pub const MAX_HOST_TEMPO: f64 = 10_000.0;

/// A host's song position, when it is one Cantor can count steps from.
pub fn host_beat(beat: f64) -> Option<f64> {
    (beat.is_finite() && beat.abs() <= MAX_HOST_BEAT).then_some(beat)
}

/// A host's tempo, when it is one.
pub fn host_tempo(tempo: f64) -> Option<f64> {
    (tempo.is_finite() && tempo > 0.0 && tempo <= MAX_HOST_TEMPO).then_some(tempo)
}

/// How far a host's beat position may be from the one Cantor counts before
/// Cantor takes the host's (a jump, a tempo change): twice the coarsest
/// musical position a host is known to send (Ardour's VST3 position, in
/// ticks of 1/1920 beat).
pub const HOST_BEAT_RESOLUTION: f64 = 1.0 / 960.0;

/// The block's song position to the sample. Some hosts report the musical
/// position coarser than a sample (Ardour: ticks of 1/1920 beat, up to 7
/// samples at 110 BPM, 48 kHz), and notes placed from it land off the grid.
/// Their sample position is exact, so the beat is counted from it and the
/// tempo: from the song's start when the tempo has held since (the host's
/// beat agrees within its resolution), else from an anchor taken at the
/// host's beat where it jumped or the tempo changed, renewed whenever the
/// host's beat disagrees. (A host whose beats are exact is unaffected: it
/// agrees with either count.)
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostClock {
    /// (sample, beat, beats per sample) the count runs from.
    anchor: Option<(i64, f64, f64)>,
}

impl HostClock {
    /// The beat at the block's first sample, given the host's beat and
    /// (when it has one) its sample position.
    pub fn start_beat(
        &mut self,
        host_beat: f64,
        host_sample: Option<i64>,
        beats_per_sample: f64,
    ) -> f64 {
        // A sample position past 2⁵² (a host's garbage: 3,000 years at
        // 48 kHz) cannot be counted from exactly; the beat is taken as is.
        let Some(sample) = host_sample.filter(|s| s.unsigned_abs() < 1 << 52) else {
            self.anchor = None;
            return host_beat;
        };
        let agrees = |beat: f64| (beat - host_beat).abs() <= HOST_BEAT_RESOLUTION;
        let from_start = sample as f64 * beats_per_sample;
        if agrees(from_start) {
            return from_start;
        }
        if let Some((at, beat, bps)) = self.anchor {
            let counted = beat + (sample - at) as f64 * bps;
            if bps == beats_per_sample && agrees(counted) {
                return counted;
            }
        }
        self.anchor = Some((sample, host_beat, beats_per_sample));
        host_beat
    }
}

/// Tempo assumed when the host reports none, in BPM.
const FALLBACK_TEMPO: f64 = 120.0;

/// The host's transport read block by block (audio thread): where each
/// block starts in beats, its tempo and its bar.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TransportReader {
    /// The host's position counted to the sample.
    host_clock: HostClock,
    /// Song position kept by Cantor when the host reports none.
    free_beat: f64,
}

impl TransportReader {
    /// The block of `samples` samples in musical time, from the host's
    /// `transport` (or Cantor's own clock when the host gives no position),
    /// with the bar it is in: (clock, bar start in beats, bar length in
    /// beats).
    pub fn block(
        &mut self,
        transport: &Transport,
        samples: u32,
        sample_rate: f64,
    ) -> (BlockClock, f64, f64) {
        let tempo = transport
            .tempo
            .and_then(host_tempo)
            .unwrap_or(FALLBACK_TEMPO);
        let beats_per_sample = tempo / 60.0 / sample_rate;
        let (start_beat, playing) = match transport.pos_beats().and_then(host_beat) {
            Some(beat) => (
                self.host_clock
                    .start_beat(beat, transport.pos_samples(), beats_per_sample),
                transport.playing,
            ),
            None => (self.free_beat, false),
        };
        self.free_beat = host_beat(start_beat + samples as f64 * beats_per_sample).unwrap_or(0.0);
        let numerator = transport.time_sig_numerator.filter(|n| *n > 0).unwrap_or(4) as f64;
        let denominator = transport
            .time_sig_denominator
            .filter(|d| *d > 0)
            .unwrap_or(4) as f64;
        let bar_beats = numerator * 4.0 / denominator;
        let bar_start = transport
            .bar_start_pos_beats()
            .filter(|b| *b <= start_beat + 1e-9 && start_beat - *b < bar_beats + 1e-9)
            .unwrap_or((start_beat / bar_beats).floor() * bar_beats);
        let clock = BlockClock {
            playing,
            start_beat,
            samples,
            beats_per_sample,
        };
        (clock, bar_start, bar_beats)
    }
}

/// One audio block in musical time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockClock {
    /// Whether the transport is rolling (generated notes only play then).
    pub playing: bool,
    /// Song position at the first sample, in quarter-note beats.
    pub start_beat: f64,
    pub samples: u32,
    /// Quarter-note beats per sample at this block's tempo.
    pub beats_per_sample: f64,
}

impl BlockClock {
    pub fn end_beat(&self) -> f64 {
        self.start_beat + self.samples as f64 * self.beats_per_sample
    }

    /// Song position of a sample offset in the block.
    pub fn beat_at(&self, offset: u32) -> f64 {
        self.start_beat + offset as f64 * self.beats_per_sample
    }

    /// The sample offset where grid step `step` falls (clamped to the block).
    pub fn offset_of_step(&self, step: i64) -> u32 {
        let beat = step as f64 / STEPS_PER_QUARTER as f64;
        let offset = ((beat - self.start_beat) / self.beats_per_sample).round();
        offset.clamp(0.0, self.samples.saturating_sub(1) as f64) as u32
    }
}

/// A block in song position: one stretch, or two when the host's loop ends
/// inside it and the host did not split the block there (VST3 hosts, CLAP
/// hosts that send no transport event at the loop point): the samples from
/// `wrap.0` on play from the loop start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockSpan {
    pub first: BlockClock,
    pub wrap: Option<(u32, BlockClock)>,
    /// The host's loop (start, end in beats) while playing, if it reports one.
    pub looping: Option<(f64, f64)>,
}

impl BlockSpan {
    /// Splits `clock` at the end of `loop_range` (start, end in beats) when
    /// that falls inside the block while playing.
    pub fn new(clock: BlockClock, loop_range: Option<(f64, f64)>) -> BlockSpan {
        let looping = loop_range.filter(|(s, e)| clock.playing && e > s);
        let whole = BlockSpan {
            first: clock,
            wrap: None,
            looping,
        };
        let Some((start, end)) = looping else {
            return whole;
        };
        // The sample nearest the loop end: a loop end between samples (a
        // 4-bar loop at 110 BPM, 48 kHz ends at sample 418,909.09) wraps in
        // the host at the sample it rounds to, 418,909 in Ardour; the first
        // sample past it would play the loop's first step a sample late.
        let split = ((end - clock.start_beat) / clock.beats_per_sample).round();
        if split < 1.0 || split >= clock.samples as f64 {
            return whole;
        }
        let split = split as u32;
        // The part after the wrap starts exactly at the loop start (the split
        // sample lies up to one sample past the loop end; keeping that
        // fraction would put the loop's first step before the stretch).
        let after = BlockClock {
            start_beat: start,
            samples: clock.samples - split,
            ..clock
        };
        BlockSpan {
            first: BlockClock {
                samples: split,
                ..clock
            },
            wrap: Some((split, after)),
            looping,
        }
    }

    /// Song position of an input note event at `offset`, as the loop plays
    /// it. A host that splits its cycle at the loop end may hand the loop's
    /// first note to the half before the wrap, at (or a sample before) the
    /// loop end (Ardour does): a note-on there, which would round onto the
    /// step after the loop and be lost, is the loop start's; a note-off
    /// there ends its note at the loop end.
    pub fn input_beat(&self, offset: u32, note_on: bool) -> f64 {
        let beat = self.beat_at(offset);
        let half_step = 0.5 / STEPS_PER_QUARTER as f64;
        match self.looping {
            Some((start, end)) if self.first.start_beat < end && beat >= end - half_step => {
                if note_on {
                    start + (beat - end).max(0.0)
                } else {
                    end
                }
            }
            _ => beat,
        }
    }

    /// Song position of a sample offset in the block.
    pub fn beat_at(&self, offset: u32) -> f64 {
        match self.wrap {
            Some((split, after)) if offset >= split => after.beat_at(offset - split),
            _ => self.first.beat_at(offset),
        }
    }

    /// The stretches of the block with the sample offset each begins at.
    pub fn stretches(&self) -> impl Iterator<Item = (u32, BlockClock)> + '_ {
        std::iter::once((0, self.first)).chain(self.wrap)
    }
}

/// The loops of the last block and this one, as [`LoopTracker`] resolves them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Loops {
    /// The loop to play this block with: the host's, else the one learned
    /// from its last unreported wrap.
    pub this: Option<(f64, f64)>,
    /// The loop the last block was played in, now that this block's
    /// position tells: the host's, or a wrap inside it that the host did
    /// not report. Its input is placed by it.
    pub previous: Option<(f64, f64)>,
}

/// Loops a host plays without reporting them. Some CLAP hosts neither send
/// the loop range nor split the block at the loop end: the block that
/// crosses it runs on past the end in their position, and the next one
/// starts back near the loop start. From that jump Cantor infers where the
/// loop ended (a 16th the last block crossed) and where it began (the next
/// block's start less what the last block played past that end, which must
/// also fall on a 16th). The wrap is then known one block late: the input
/// the last block held is placed at the loop start, and from the next pass
/// on the loop is played as if the host had reported it, its first step on
/// its sample. The first wrap's harmony is struck where the next block
/// begins (see the player's note chasing), up to a block late. A block that
/// crosses the learned end without the host wrapping there (looping turned
/// off) forgets it, as does any reported loop.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoopTracker {
    /// The last block, and the loop the host reported for it.
    previous: Option<(BlockClock, Option<(f64, f64)>)>,
    /// The loop learned from the last unreported wrap: (start, end) beats.
    learned: Option<(f64, f64)>,
}

impl LoopTracker {
    /// Takes the next block's clock and the loop the host reports for it.
    pub fn next(&mut self, clock: BlockClock, reported: Option<(f64, f64)>) -> Loops {
        let previous = self.previous.take().and_then(|(prev, reported_then)| {
            if reported_then.is_some() {
                return reported_then;
            }
            let wrap = clock
                .playing
                .then(|| unreported_wrap(&prev, clock.start_beat))
                .flatten();
            match (wrap, self.learned) {
                (Some(found), _) => self.learned = Some(found),
                // Played with the learned loop, crossing its end, and the
                // host went on instead of wrapping.
                (None, Some(learned)) if BlockSpan::new(prev, Some(learned)).wrap.is_some() => {
                    self.learned = None
                }
                _ => {}
            }
            wrap
        });
        if reported.is_some()
            || self
                .learned
                .is_some_and(|(_, end)| clock.start_beat >= end - 1e-9)
        {
            self.learned = None;
        }
        self.previous = Some((clock, reported));
        let this = reported.or(self.learned);
        Loops { this, previous }
    }
}

/// The loop a host wrapped in without reporting it, judged from the block
/// `prev` and where the next block starts: (start, end) in beats, each on a
/// 16th, or `None` when the next block goes on from `prev` (or jumped in a
/// way no wrap at a 16th explains).
fn unreported_wrap(prev: &BlockClock, next_start: f64) -> Option<(f64, f64)> {
    let end = prev.end_beat();
    // A host wraps at a whole sample; its positions may be coarser still.
    let slack = (2.0 * prev.beats_per_sample).max(HOST_BEAT_RESOLUTION);
    if next_start > end - slack {
        return None;
    }
    let steps = STEPS_PER_QUARTER as f64;
    let first = step_at_or_after(prev.start_beat + prev.beats_per_sample);
    let last = (end * steps + STEP_EPSILON).floor() as i64;
    (first..=last).rev().find_map(|end_step| {
        let loop_end = end_step as f64 / steps;
        let loop_start = next_start - (end - loop_end);
        let start_step = (loop_start * steps).round();
        let on_step = (loop_start * steps - start_step).abs() <= slack * steps;
        (on_step && (start_step as i64) < end_step).then_some((start_step / steps, loop_end))
    })
}

/// The first grid step at or after `beat`.
pub fn step_at_or_after(beat: f64) -> i64 {
    (beat * STEPS_PER_QUARTER as f64 - STEP_EPSILON).ceil() as i64
}

/// The grid step `beat` falls in, rounding to the nearest step (input notes
/// are quantized to the nearest 16th).
pub fn nearest_step(beat: f64) -> i64 {
    (beat * STEPS_PER_QUARTER as f64).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #12: a host whose beat position is in ticks of 1/1920 beat
    /// (Ardour) gets notes placed within a sample of the grid: at 110 BPM,
    /// 48 kHz, blocks of 512 samples, through a loop back to bar 2 and a
    /// tempo change.
    #[test]
    fn a_coarse_host_position_is_counted_to_the_sample() {
        let rate: f64 = 48_000.0;
        let ticks = |beat: f64| (beat * 1920.0).floor() / 1920.0;
        let mut clock = HostClock::default();
        let mut worst: f64 = 0.0;
        let bps = 110.0 / 60.0 / rate;
        // Four passes of a loop over bars 2-5 (beats 4..20).
        let loop_start = (4.0 / bps).round() as i64;
        let mut sample = 0i64;
        for _ in 0..2000 {
            let true_beat = sample as f64 * bps;
            let beat = clock.start_beat(ticks(true_beat), Some(sample), bps);
            worst = worst.max((beat - true_beat).abs() / bps);
            sample += 512;
            if sample as f64 * bps >= 20.0 {
                sample = loop_start + (sample - (20.0 / bps).round() as i64);
            }
        }
        assert!(worst < 0.01, "{worst} samples off");
        // From bar 9 on the tempo is 90 BPM: the song's start no longer
        // counts; the first block after the change is on a beat.
        let slow = 90.0 / 60.0 / rate;
        let change = (32.0 / bps).round() as i64;
        let mut worst: f64 = 0.0;
        for block in 0..500i64 {
            let sample = change + block * 512;
            let true_beat = 32.0 + (block * 512) as f64 * slow;
            let beat = clock.start_beat(ticks(true_beat), Some(sample), slow);
            worst = worst.max((beat - true_beat).abs() / slow);
        }
        assert!(worst < 0.01, "{worst} samples off after the tempo change");
        // Without a sample position the host's beat is taken as it is.
        assert_eq!(clock.start_beat(3.25, None, slow), 3.25);
        // Nor with a sample position no count can use (a host's garbage,
        // either side of zero: the difference would overflow).
        for sample in [i64::MAX, i64::MIN, -(1 << 60)] {
            assert_eq!(clock.start_beat(3.5, Some(sample), slow), 3.5);
        }
    }

    /// Issue #12: Ardour splits its cycle at the loop end and hands the
    /// half before the wrap the loop's first note, at the last sample: it
    /// belongs to the loop start, and a note-off there to the loop's end.
    #[test]
    fn a_note_at_the_loop_end_of_a_split_cycle_is_the_loop_starts() {
        let bps = 110.0 / 60.0 / 48_000.0;
        let end = 16.0;
        // The half before the wrap: 845 samples ending at the loop end.
        let half = BlockClock {
            playing: true,
            start_beat: end - 845.0 * bps,
            samples: 845,
            beats_per_sample: bps,
        };
        let span = BlockSpan::new(half, Some((0.0, end)));
        assert_eq!(span.wrap, None);
        assert_eq!(nearest_step(span.input_beat(844, true)), 0);
        assert_eq!(span.input_beat(844, false), end);
        // Mid-loop nothing changes.
        let mid = BlockSpan::new(
            BlockClock {
                start_beat: 8.0,
                ..half
            },
            Some((0.0, end)),
        );
        assert_eq!(mid.input_beat(10, true), mid.beat_at(10));
        // Without a loop a note there is where it is.
        let plain = BlockSpan::new(half, None);
        assert_eq!(nearest_step(plain.input_beat(844, true)), 64);
    }

    #[test]
    fn positions_and_tempos_no_step_can_be_counted_from_are_ignored() {
        assert_eq!(host_beat(-4.0), Some(-4.0));
        for beat in [f64::NEG_INFINITY, f64::INFINITY, f64::NAN, 1e13, -1e13] {
            assert_eq!(host_beat(beat), None, "{beat}");
        }
        assert_eq!(host_tempo(120.0), Some(120.0));
        for tempo in [0.0, -1.0, f64::INFINITY, f64::NAN, 1e6] {
            assert_eq!(host_tempo(tempo), None, "{tempo}");
        }
    }

    #[test]
    fn steps_and_offsets() {
        assert_eq!(step_at_or_after(0.0), 0);
        assert_eq!(step_at_or_after(0.9999999999), 4);
        assert_eq!(step_at_or_after(1.01), 5);
        assert_eq!(step_at_or_after(-0.5), -2);
        assert_eq!(nearest_step(1.12), 4);
        let c = BlockClock {
            playing: true,
            start_beat: 1.0,
            samples: 48_000,
            beats_per_sample: 2.0 / 48_000.0,
        };
        assert_eq!(c.offset_of_step(4), 0);
        assert_eq!(c.offset_of_step(6), 12_000);
        assert_eq!(c.offset_of_step(100), 47_999);
        assert!((c.end_beat() - 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_loop_ending_inside_a_block_wraps_at_its_sample() {
        // 120 BPM at 48 kHz: 1/24000 beat per sample; the loop is beats 0–8.
        let c = BlockClock {
            playing: true,
            start_beat: 8.0 - 100.0 / 24_000.0,
            samples: 512,
            beats_per_sample: 1.0 / 24_000.0,
        };
        let span = BlockSpan::new(c, Some((0.0, 8.0)));
        let (split, after) = span.wrap.expect("the block crosses the loop end");
        assert_eq!(split, 100);
        assert_eq!(span.first.samples, 100);
        assert!(after.start_beat.abs() < 1e-9 && after.samples == 412);
        assert!((span.beat_at(99) - (8.0 - 1.0 / 24_000.0)).abs() < 1e-9);
        assert!((span.beat_at(112) - 12.0 / 24_000.0).abs() < 1e-9);
        // A loop end between two samples: the loop start plays at the sample
        // nearest to it, where a host that counts in samples wraps (Ardour).
        for (before_end, expected) in [(100.3, 100), (100.7, 101)] {
            let odd = BlockClock {
                start_beat: 8.0 - before_end / 24_000.0,
                ..c
            };
            let (split, after) = BlockSpan::new(odd, Some((0.0, 8.0))).wrap.unwrap();
            assert_eq!(split, expected, "{before_end}");
            assert_eq!(after.start_beat, 0.0);
        }
        assert_eq!(span.stretches().count(), 2);
        // No loop, a loop ending elsewhere, or a stopped transport: one stretch.
        for (clock, range) in [
            (c, None),
            (c, Some((0.0, 16.0))),
            (
                BlockClock {
                    playing: false,
                    ..c
                },
                Some((0.0, 8.0)),
            ),
        ] {
            assert_eq!(BlockSpan::new(clock, range).wrap, None);
        }
    }

    /// Issue #12: a host that neither reports its loop nor splits the
    /// block at the loop end (84 BPM, 48 kHz, 512-sample blocks, a 2-bar
    /// loop): the first wrap is found from the jump, one block late; from
    /// then on the block crossing the end is split there, and a host that
    /// stops looping makes Cantor forget the loop.
    #[test]
    fn a_loop_the_host_does_not_report_is_learned_from_its_first_wrap() {
        let bps = 84.0 / 60.0 / 48_000.0;
        let loop_end = 8.0;
        let cycle = loop_end / bps; // 274,285.7 samples
        let block = |start_beat: f64| BlockClock {
            playing: true,
            start_beat,
            samples: 512,
            beats_per_sample: bps,
        };
        let mut tracker = LoopTracker::default();
        let mut sample = 0u64; // samples played since the song start
        let mut wraps = Vec::new();
        for i in 0..2000 {
            // The host's position: wrapped at the sample the loop end rounds to.
            let wrapped = sample % cycle.round() as u64;
            let clock = block(wrapped as f64 * bps);
            let loops = tracker.next(clock, None);
            if let Some(found) = loops.previous {
                wraps.push((i, found));
            }
            if i > 600 {
                // After the first wrap (block 535) the loop is known.
                assert_eq!(loops.this, Some((0.0, loop_end)), "block {i}");
            }
            sample += 512;
        }
        // The wraps in blocks 535, 1071, 1607 are each found at the next block.
        let at: Vec<usize> = wraps.iter().map(|w| w.0).collect();
        assert_eq!(at, [536, 1072, 1608]);
        assert!(wraps.iter().all(|w| w.1 == (0.0, loop_end)));
        // The host stops looping: the block after the learned end starts
        // past it, and the loop is forgotten.
        let crossing = block(loop_end - 100.0 * bps);
        assert_eq!(tracker.next(crossing, None).this, Some((0.0, loop_end)));
        let on = tracker.next(block(loop_end + 412.0 * bps), None);
        assert_eq!((on.previous, on.this), (None, None));
        // A plain jump back (to a position no wrap at a 16th explains) is
        // not a loop.
        let mut tracker = LoopTracker::default();
        tracker.next(block(5.0 + 1000.0 * bps), None);
        assert_eq!(
            tracker.next(block(1.0 + 37.0 * bps), None),
            Loops::default()
        );
        // A reported loop is the host's, never replaced.
        let mut tracker = LoopTracker::default();
        let reported = Some((0.0, 16.0));
        tracker.next(block(1.0), reported);
        let loops = tracker.next(block(1.0 + 512.0 * bps), reported);
        assert_eq!(
            loops,
            Loops {
                this: reported,
                previous: reported
            }
        );
    }
}
