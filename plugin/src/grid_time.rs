//! Host time to grid time: which 16th-note steps a block covers and at
//! which sample each one falls. Steps are counted from the host's song
//! position zero (step = beat × 4), so they are absolute: a loop replays the
//! same steps, and bars are found by position rather than by arrival order.

use cantor_engine::grid::STEPS_PER_QUARTER;

/// Slack when turning beats into steps, so a position a rounding error
/// before a step still counts as on it.
const STEP_EPSILON: f64 = 1e-6;

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
}
