//! What is saved with the project besides the parameters: the take (the
//! window of heard bars, what was composed for it, the mask and the kept
//! bars), versioned and checked before the worker adopts it.

use serde::{Deserialize, Serialize};

use crate::composer::Composition;
use crate::window::limits::*;
use crate::window::Window;

/// Version of the saved session's format. A project saved by a later
/// Cantor (a higher version) is not misread: the plugin starts fresh and
/// says so. Sessions saved before versions existed read as 0 and are
/// checked like version 1.
pub const SESSION_VERSION: u32 = 1;

/// What is saved with the project besides the parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Format version ([`SESSION_VERSION`]).
    #[serde(default)]
    pub version: u32,
    pub window: Window,
    pub composition: Composition,
    /// Who wrote this and when: (instance stamp, counter). The worker adopts
    /// a session it did not write (a project being loaded).
    #[serde(default)]
    pub stamp: (u64, u64),
    /// The editor's masked region.
    #[serde(default)]
    pub mask: Option<crate::take::Region>,
    /// Bars whose composed notes the musician kept.
    #[serde(default)]
    pub kept: std::collections::BTreeSet<i64>,
}

impl Session {
    /// Checks a loaded session before anything is adopted from it: its
    /// version, and that every position, length and count is one a host
    /// could have produced and agrees with the rest (harmony per heard bar
    /// and as long as it, notes inside their bar, pitches MIDI pitches). The
    /// reason, for the status line, when it is not.
    pub fn validate(&self) -> Result<(), String> {
        use crate::composer::CellToken;
        if self.version > SESSION_VERSION {
            return Err(format!(
                "it was saved by a later Cantor (session format {}, this one reads {SESSION_VERSION})",
                self.version
            ));
        }
        let bars = &self.window.bars;
        if bars.len() > MAX_BARS {
            return Err(format!(
                "{} bars in the window (at most {MAX_BARS})",
                bars.len()
            ));
        }
        let valid_cells = |cells: &[[CellToken; 4]]| {
            cells.iter().flatten().all(|c| match c {
                CellToken::Pitch(p) => *p < 128,
                _ => true,
            })
        };
        let mut previous_end = 0i64;
        for (key, bar) in bars {
            if *key != bar.start
                || !(0..=MAX_POSITION).contains(&bar.start)
                || !(1..=MAX_BAR_STEPS).contains(&bar.length)
            {
                return Err(format!(
                    "a bar at step {key} of {} steps (bars start at 0 … {MAX_POSITION}, 1 … {MAX_BAR_STEPS} steps long)",
                    bar.length
                ));
            }
            if bar.start < previous_end {
                return Err(format!(
                    "the bar at step {} overlaps the one before it",
                    bar.start
                ));
            }
            previous_end = bar.end();
            if bar.melody.len() > MAX_NOTES_PER_BAR
                || bar.melody.iter().any(|n| {
                    n.pitch > 127
                        || n.velocity > 127
                        || !(bar.start..bar.end()).contains(&n.start)
                        || n.end <= n.start
                        || n.end - n.start > MAX_SPAN
                })
            {
                return Err(format!(
                    "the bar at step {} holds an impossible note",
                    bar.start
                ));
            }
        }
        let characters = &self.window.characters;
        if characters.len() > MAX_CHARACTERS
            || characters
                .iter()
                .any(|(start, c)| !(0..=MAX_POSITION).contains(start) || c.check().is_err())
        {
            return Err(format!(
                "{} bars' characters, or one out of range (at most {MAX_CHARACTERS}, each axis -1 … 1)",
                characters.len()
            ));
        }
        for (start, cells) in &self.composition.harmony {
            match bars.get(start) {
                Some(bar) if cells.len() as i64 == bar.length && valid_cells(cells) => {}
                _ => {
                    return Err(format!(
                        "the harmony at step {start} belongs to no heard bar of its length"
                    ))
                }
            }
        }
        let first = bars.keys().next().copied();
        let mut last = bars.values().map(|b| b.end()).max();
        if let Some((start, cells)) = &self.composition.answer {
            if !(0..=MAX_POSITION).contains(start)
                || cells.is_empty()
                || cells.len() > MAX_ANSWER_STEPS
                || !valid_cells(cells)
            {
                return Err(format!(
                    "an answer of {} steps at step {start} (at most {MAX_ANSWER_STEPS} steps, from step 0)",
                    cells.len()
                ));
            }
            last = last.max(Some(start + cells.len() as i64));
        }
        let first = match (first, self.composition.answer.as_ref().map(|(s, _)| *s)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(first), Some(last)) = (first, last) {
            if last - first > MAX_SPAN {
                return Err(format!(
                    "its bars span {} steps (at most {MAX_SPAN})",
                    last - first
                ));
            }
        }
        if let Some(mask) = &self.mask {
            if mask.start >= mask.end || mask.start < 0 || mask.end - mask.start > MAX_SPAN {
                return Err(format!("a masked region {}..{}", mask.start, mask.end));
            }
        }
        if self.kept.len() > MAX_BARS
            || self
                .kept
                .iter()
                .any(|k| !bars.contains_key(k) && !(0..=MAX_POSITION).contains(k))
        {
            return Err("kept bars outside the take".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::composer::Mode;

    /// Issue #15: thousands of generated sessions, from plausible to
    /// hostile (positions and lengths near 0, negative, huge; harmony of
    /// any length; answers anywhere). Each is validated; what passes is
    /// used as the worker and the editor use it (bars of the take, its
    /// score, adopting the answer) and must not panic.
    #[test]
    fn generated_sessions_are_refused_or_used_without_a_panic() {
        use crate::composer::{character_lane, CellToken, Composition};
        use crate::take::{adopt_answer, extent, take_bars, take_score};
        use crate::window::{Bar, HeardNote};
        // xorshift64*: a fixed, dependency-free sequence.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let pick = |choices: &[i64], next: &mut dyn FnMut() -> u64| {
            choices[(next() % choices.len() as u64) as usize]
        };
        let positions = [
            0,
            16,
            32,
            48,
            -16,
            1 << 20,
            1 << 40,
            (1 << 40) + 16,
            i64::MAX / 2,
            -(1 << 40),
        ];
        let lengths = [16, 12, 1, 0, -16, 256, 257, 1 << 30, 8];
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let mut session = Session::default();
            for _ in 0..(next() % 5) {
                let start = pick(&positions, &mut next);
                let length = pick(&lengths, &mut next);
                let note_start = start + (next() % 20) as i64 - 2;
                let melody = (0..next() % 3)
                    .map(|_| HeardNote {
                        start: note_start,
                        end: note_start + pick(&lengths, &mut next),
                        pitch: (next() % 140) as u8,
                        velocity: (next() % 140) as u8,
                    })
                    .collect();
                session.window.bars.insert(
                    start,
                    Bar {
                        start: if next() % 10 == 0 { start + 1 } else { start },
                        length,
                        melody,
                        dirty: next() % 2 == 0,
                        heard: next() % 10,
                        adopted: next() % 2 == 0,
                    },
                );
            }
            let starts: Vec<(i64, i64)> = session
                .window
                .bars
                .values()
                .map(|b| (b.start, b.length))
                .collect();
            for (start, length) in starts {
                if next() % 3 > 0 {
                    let cells = if next() % 4 == 0 {
                        (next() % 40) as usize
                    } else {
                        length.clamp(0, 300) as usize
                    };
                    session
                        .composition
                        .harmony
                        .insert(start, vec![[CellToken::Hold; 4]; cells]);
                }
            }
            // Characters the playhead read, some of them impossible.
            let axis = [-1.0, 0.5, 1.0, 2.0, f32::NAN];
            for _ in 0..(next() % 3) {
                let character = cantor_engine::Character {
                    activity: axis[(next() % 5) as usize],
                    tension: axis[(next() % 4) as usize],
                };
                let start = pick(&positions, &mut next);
                session.window.characters.insert(start, character);
            }
            if next() % 2 == 0 {
                let start = pick(&positions, &mut next);
                let cells = (next() % 80) as usize;
                let mut answer = vec![[CellToken::Hold; 4]; cells];
                if let Some(first) = answer.first_mut() {
                    *first = [CellToken::Pitch((next() % 130) as u8); 4];
                }
                session.composition = Composition {
                    answer: Some((start, answer)),
                    ..session.composition
                };
            }
            match session.validate() {
                Err(_) => refused += 1,
                Ok(()) => {
                    accepted += 1;
                    let mut window = session.window.clone();
                    let mut composition = session.composition.clone();
                    for mode in [Mode::Harmonize, Mode::Continue] {
                        let bars = take_bars(&window, &composition, mode);
                        if let Some(span) = extent(&bars) {
                            let range = cantor_engine::Vocabulary::chorales()
                                .range(cantor_engine::Voice::Soprano);
                            let starts = bars.iter().map(|b| b.start);
                            let neutral = cantor_engine::Character::NEUTRAL;
                            character_lane(&window, starts, span.start, neutral)
                                .expect("an accepted session's characters are in range");
                            take_score(&window, &composition, mode, range, span);
                        }
                    }
                    adopt_answer(&mut window, &mut composition, 8);
                }
            }
        }
        assert!(
            accepted > 100 && refused > 100,
            "{accepted} accepted, {refused} refused"
        );
    }
}
