//! The take: what the window shows — the heard melody and what Cantor
//! composed for it — as grid cells by absolute step, the editor's masked
//! regions over it, regeneration of exactly a region's cells, and the
//! history that undoes and redoes regenerations.
//!
//! What is composed depends on the mode: in Harmonize the alto, tenor and
//! bass under heard bars; in Continue the answer in all four voices. Only
//! those cells are generated, so only those can be masked: the heard melody
//! is the musician's and is never rewritten.

use std::collections::BTreeSet;
use std::ops::Range;

use cantor_engine::grid::{Score, TimeSignature, Voice};
use cantor_engine::{CantorError, Mask, Problem, ScoreModel};
use serde::{Deserialize, Serialize};

use crate::composer::Mode;
use crate::composer::{
    character_lane, compose_in_range, melody_score, CellToken, ComposeSettings, Composition,
    Watcher, CONTEXT_BARS,
};
use crate::window::{Bar, HeardNote, Window};

/// Cells the musician masked: steps `start..end` of the chosen voices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub start: i64,
    pub end: i64,
    pub voices: [bool; 4],
}

impl Region {
    pub fn contains(&self, step: i64, voice: Voice) -> bool {
        (self.start..self.end).contains(&step) && self.voices[voice.index()]
    }
}

/// One bar of the take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TakeBar {
    pub start: i64,
    pub length: i64,
    /// A bar of the window (heard, or adopted from an answer).
    pub heard: bool,
    /// A bar of the answer (Continue mode).
    pub answer: bool,
}

impl TakeBar {
    pub fn end(&self) -> i64 {
        self.start + self.length
    }
}

/// The bars of the take in order: the window's, then the answer's (Continue
/// mode), cut at the answer's bar lines.
pub fn take_bars(window: &Window, composition: &Composition, mode: Mode) -> Vec<TakeBar> {
    let mut bars: Vec<TakeBar> = window
        .bars
        .values()
        .map(|b| TakeBar {
            start: b.start,
            length: b.length,
            heard: true,
            answer: false,
        })
        .collect();
    if let (Mode::Continue, Some((start, cells))) = (mode, &composition.answer) {
        let end = start + cells.len() as i64;
        // The answer's bars are as long as the bar it follows.
        let length = window
            .bars
            .range(..start)
            .next_back()
            .map(|(_, b)| b.length)
            .unwrap_or(16)
            .max(1);
        let mut at = *start;
        while at < end {
            match bars.iter_mut().find(|b| b.start == at) {
                Some(b) => b.answer = true,
                None => bars.push(TakeBar {
                    start: at,
                    length: length.min(end - at),
                    heard: false,
                    answer: true,
                }),
            }
            at += length;
        }
        bars.sort_by_key(|b| b.start);
    }
    bars
}

/// The bar holding `step`, if any.
pub fn bar_at(bars: &[TakeBar], step: i64) -> Option<&TakeBar> {
    bars.iter().find(|b| (b.start..b.end()).contains(&step))
}

/// The composed token at a cell, where the mode composes one.
pub fn generated(
    composition: &Composition,
    mode: Mode,
    step: i64,
    voice: Voice,
) -> Option<CellToken> {
    match mode {
        Mode::Harmonize => {
            if voice == Voice::Soprano {
                return None;
            }
            let (start, cells) = composition.harmony.range(..=step).next_back()?;
            cells
                .get(usize::try_from(step - start).ok()?)
                .map(|c| c[voice.index()])
        }
        Mode::Continue => {
            let (start, cells) = composition.answer.as_ref()?;
            cells
                .get(usize::try_from(step - start).ok()?)
                .map(|c| c[voice.index()])
        }
    }
}

pub(crate) fn set_generated(
    composition: &mut Composition,
    mode: Mode,
    step: i64,
    voice: Voice,
    token: CellToken,
) {
    let cell = match mode {
        Mode::Harmonize => composition
            .harmony
            .range_mut(..=step)
            .next_back()
            .and_then(|(start, cells)| cells.get_mut(usize::try_from(step - start).ok()?)),
        Mode::Continue => composition
            .answer
            .as_mut()
            .and_then(|(start, cells)| cells.get_mut(usize::try_from(step - *start).ok()?)),
    };
    if let Some(cell) = cell {
        cell[voice.index()] = token;
    }
}

/// The take over `span` as a score: the heard melody (its top line, in the
/// register it was played in) and the composed voices; rests where nothing
/// is.
pub fn take_score(
    window: &Window,
    composition: &Composition,
    mode: Mode,
    soprano: cantor_engine::VoiceRange,
    span: Range<i64>,
) -> Score {
    let len = (span.end - span.start).max(0) as usize;
    let mut score = Score::new(len);
    for run in window.segments() {
        let melody = melody_score(&run, soprano);
        let origin = run[0].start;
        for t in 0..melody.len() {
            let step = origin + t as i64;
            if span.contains(&step) {
                let at = (step - span.start) as usize;
                score.set(at, Voice::Soprano, melody.get(t, Voice::Soprano));
                score.set_velocity(at, Voice::Soprano, melody.velocity(t, Voice::Soprano));
            }
        }
    }
    for (at, step) in span.clone().enumerate() {
        for voice in Voice::ALL {
            if let Some(token) = generated(composition, mode, step, voice) {
                score.set(at, voice, token.into());
            }
        }
    }
    // Bar lengths as time signatures (for a MIDI file and bar numbers).
    let mut meters = Vec::new();
    for bar in take_bars(window, composition, mode) {
        if span.contains(&bar.start) {
            let meter = if bar.length % 4 == 0 {
                TimeSignature {
                    numerator: (bar.length / 4).clamp(1, 32) as u8,
                    denominator: 4,
                }
            } else {
                TimeSignature {
                    numerator: (bar.length / 2).clamp(1, 32) as u8,
                    denominator: 8,
                }
            };
            if meters.last().map(|(_, m)| *m) != Some(meter) {
                meters.push(((bar.start - span.start) as usize, meter));
            }
        }
    }
    if !meters.is_empty() {
        meters[0].0 = 0;
        score.set_time_signatures(meters);
    }
    score.normalize();
    score
}

/// The steps the take covers, first bar to last.
pub fn extent(bars: &[TakeBar]) -> Option<Range<i64>> {
    Some(bars.first()?.start..bars.last()?.end())
}

/// Whether the editor may regenerate a cell: the mode composes it and it is
/// not in a kept bar.
pub fn editable(
    composition: &Composition,
    mode: Mode,
    bars: &[TakeBar],
    kept: &BTreeSet<i64>,
    step: i64,
    voice: Voice,
) -> bool {
    generated(composition, mode, step, voice).is_some()
        && bar_at(bars, step).is_some_and(|b| !kept.contains(&b.start))
}

/// One cell a regeneration changed: its step, voice, and the token before
/// and after.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellChange {
    pub step: i64,
    pub voice: Voice,
    pub before: CellToken,
    pub after: CellToken,
}

/// A regeneration, as the cells it changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Edit {
    pub mode: Mode,
    pub region: Region,
    pub changes: Vec<CellChange>,
}

impl Edit {
    /// Writes the edit's cells (`forward`) or puts the old ones back, except
    /// where a cell was recomposed since.
    pub(crate) fn apply(&self, composition: &mut Composition, forward: bool) {
        for c in &self.changes {
            let (from, to) = if forward {
                (c.before, c.after)
            } else {
                (c.after, c.before)
            };
            // A cell recomposed since (new input under it) is left alone.
            if generated(composition, self.mode, c.step, c.voice) == Some(from) {
                set_generated(composition, self.mode, c.step, c.voice, to);
            }
        }
    }
}

/// Regenerates exactly the editable cells of `region`, with the take around
/// it as known context; a note held out of the region keeps sounding after
/// it (re-struck at the edge when needed); bars in `settings.kept` are left
/// alone.
/// Returns the edit, already applied to `composition`.
pub fn regenerate(
    model: &ScoreModel,
    window: &Window,
    composition: &mut Composition,
    mode: Mode,
    region: Region,
    settings: &ComposeSettings,
    observer: &mut dyn Watcher,
) -> cantor_engine::Result<Edit> {
    let kept = &settings.kept;
    let bars = take_bars(window, composition, mode);
    let whole = extent(&bars).ok_or_else(|| CantorError::input("the window is empty"))?;
    let first = bars.iter().position(|b| b.end() > region.start);
    let last = bars.iter().rposition(|b| b.start < region.end);
    let (Some(first), Some(last)) = (first, last) else {
        return Err(CantorError::input("the masked bars are outside the window"));
    };
    let span_start = bars[first.saturating_sub(CONTEXT_BARS)]
        .start
        .max(whole.start);
    let span_end = bars[(last + CONTEXT_BARS).min(bars.len() - 1)]
        .end()
        .min(whole.end);
    let span = span_start..span_end;
    let soprano = model.card.vocabulary.range(Voice::Soprano);
    let score = take_score(window, composition, mode, soprano, span.clone());
    let mut mask = Mask::none(score.len());
    for (at, step) in span.clone().enumerate() {
        for voice in Voice::ALL {
            if region.contains(step, voice) && editable(composition, mode, &bars, kept, step, voice)
            {
                mask.set_free(at, voice, true);
            }
        }
    }
    if mask.free_count() == 0 {
        return Err(CantorError::input(match mode {
            Mode::Harmonize => "nothing to regenerate there: mask alto, tenor or bass of harmonized bars that are not kept",
            Mode::Continue => "nothing to regenerate there: mask bars of the answer that are not kept",
        }));
    }
    let constraints = cantor_engine::task::constraints_for(settings.key, &score, &mask);
    let lane = character_lane(
        window,
        bars.iter().map(|b| b.start).filter(|s| span.contains(s)),
        span.start,
        settings.sampler.character,
    )?;
    let problem = Problem::new(score, mask, constraints)?.with_lane(lane);
    observer.origin(span.start);
    let out = compose_in_range(model, &problem, &settings.sampler, observer)?;
    let mut changes = Vec::new();
    for (at, step) in span.enumerate() {
        for voice in Voice::ALL {
            // The masked cells, and a note held over the mask's edge, which
            // is re-struck there when the new note before it has another
            // pitch (so it sounds on as before).
            let split = problem.splits.contains(&(at, voice));
            if !(problem.mask.is_free(at, voice) || split)
                || !editable(composition, mode, &bars, kept, step, voice)
            {
                continue;
            }
            let before = generated(composition, mode, step, voice).expect("editable");
            let after = CellToken::from(out.get(at, voice));
            if before != after {
                changes.push(CellChange {
                    step,
                    voice,
                    before,
                    after,
                });
            }
        }
    }
    let edit = Edit {
        mode,
        region,
        changes,
    };
    edit.apply(composition, true);
    Ok(edit)
}

/// Copies the answer into the window as new input: its soprano notes
/// become heard bars (marked adopted, so a silent pass leaves them) and its
/// alto, tenor and bass their harmony; the answer is gone. Returns the bars
/// adopted, or `None` when there is no answer. The window keeps at least
/// those bars.
pub fn adopt_answer(
    window: &mut Window,
    composition: &mut Composition,
    max_bars: usize,
) -> Option<usize> {
    let (start, cells) = composition.answer.clone()?;
    let bars = take_bars(window, composition, Mode::Continue);
    let mut score = Score::new(cells.len());
    for (t, cell) in cells.iter().enumerate() {
        for v in Voice::ALL {
            score.set(t, v, cell[v.index()].into());
        }
    }
    score.normalize();
    let soprano = score.voice_notes(Voice::Soprano);
    let mut adopted = Vec::new();
    for bar in bars.iter().filter(|b| b.answer) {
        // The answer's part of the bar: a heard bar it lands in may be
        // longer than what is left of the answer.
        let from = usize::try_from(bar.start - start)
            .unwrap_or(0)
            .min(cells.len());
        let to = usize::try_from(bar.end() - start)
            .unwrap_or(0)
            .min(cells.len());
        if from >= to {
            continue;
        }
        let melody = soprano
            .iter()
            .filter(|n| (from..to).contains(&n.start))
            .map(|n| HeardNote {
                start: start + n.start as i64,
                end: start + n.end() as i64,
                pitch: n.pitch,
                velocity: n.velocity,
            })
            .collect();
        adopted.push(Bar {
            start: bar.start,
            length: bar.length,
            melody,
            dirty: false,
            heard: 0,
            adopted: true,
        });
        // The bar's harmony, as long as the bar: the answer's cells where
        // it covers the bar, what was there (or rests) elsewhere.
        let length = bar.length.max(0) as usize;
        let mut harmony = composition
            .harmony
            .get(&bar.start)
            .filter(|c| c.len() == length)
            .cloned()
            .unwrap_or_else(|| vec![[CellToken::Rest; 4]; length]);
        for (i, cell) in harmony.iter_mut().enumerate() {
            if let Ok(t) = usize::try_from(bar.start - start + i as i64) {
                if let Some(answer) = cells.get(t) {
                    *cell = *answer;
                }
            }
        }
        composition.harmony.insert(bar.start, harmony);
    }
    let count = adopted.len();
    window.adopt(adopted, max_bars.max(count));
    composition.answer = None;
    Some(count)
}

/// Regenerations that can be undone and redone.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Regenerations done, the last on top (the worker thread's).
    undo: Vec<Edit>,
    /// Regenerations undone, the last undone on top.
    redo: Vec<Edit>,
}

impl History {
    /// Edits kept; older ones are forgotten.
    pub const LIMIT: usize = 64;

    pub fn push(&mut self, edit: Edit) {
        self.undo.push(edit);
        if self.undo.len() > Self::LIMIT {
            self.undo.remove(0);
        }
        self.redo.clear();
    }

    /// Puts back the cells of the last regeneration; its region, if any.
    pub fn undo(&mut self, composition: &mut Composition) -> Option<Region> {
        let edit = self.undo.pop()?;
        edit.apply(composition, false);
        let region = edit.region;
        self.redo.push(edit);
        Some(region)
    }

    pub fn redo(&mut self, composition: &mut Composition) -> Option<Region> {
        let edit = self.redo.pop()?;
        edit.apply(composition, true);
        let region = edit.region;
        self.undo.push(edit);
        Some(region)
    }

    pub fn depths(&self) -> (usize, usize) {
        (self.undo.len(), self.redo.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::composer::harmonize;
    use cantor_engine::{Device, KeyChoice, SamplerSettings, Unobserved};

    fn model() -> ScoreModel {
        cantor_engine::model::shipped::load(&Device::Cpu).unwrap()
    }

    /// Four bars of a hymn tune, heard and harmonized.
    fn harmonized(model: &ScoreModel) -> (Window, Composition, ComposeSettings) {
        let tune: [&[(u8, i64)]; 4] = [
            &[(67, 4), (67, 4), (66, 4), (64, 4)],
            &[(62, 4), (67, 4), (69, 4), (71, 4)],
            &[(71, 4), (71, 4), (69, 4), (67, 4)],
            &[(72, 4), (71, 4), (69, 8)],
        ];
        let mut window = Window::default();
        for (i, notes) in tune.iter().enumerate() {
            let start = 64 + 16 * i as i64;
            let mut at = start;
            let melody = notes
                .iter()
                .map(|&(pitch, len)| {
                    let n = HeardNote {
                        start: at,
                        end: at + len,
                        pitch,
                        velocity: 90,
                    };
                    at += len;
                    n
                })
                .collect();
            window.bars.insert(
                start,
                Bar {
                    start,
                    length: 16,
                    melody,
                    dirty: true,
                    heard: i as u64,
                    adopted: false,
                },
            );
        }
        let settings = ComposeSettings {
            sampler: SamplerSettings::from_defaults(&model.card.sampling),
            key: KeyChoice::Free,
            continue_bars: 2,
            kept: BTreeSet::new(),
        };
        let mut composition = Composition::default();
        harmonize(model, &window, &mut composition, &settings, &mut Unobserved).unwrap();
        window.mark_all_dirty();
        window.mark_clean(&[64, 80, 96, 112]);
        (window, composition, settings)
    }

    fn cells(c: &Composition) -> Vec<(i64, Voice, CellToken)> {
        (64..128)
            .flat_map(|s| Voice::ALL.map(|v| (s, v)))
            .filter_map(|(s, v)| generated(c, Mode::Harmonize, s, v).map(|t| (s, v, t)))
            .collect()
    }

    #[test]
    fn a_region_is_regenerated_alone_and_undo_redo_walk_the_takes() {
        let model = model();
        let (window, mut composition, mut settings) = harmonized(&model);
        let original = composition.clone();
        // Bars 2-3 of the tune, alto and tenor only.
        let region = Region {
            start: 80,
            end: 112,
            voices: [false, true, true, false],
        };
        let mut history = History::default();
        let mut changed_any = false;
        for seed in 1..4 {
            settings.sampler.seed = seed;
            let edit = regenerate(
                &model,
                &window,
                &mut composition,
                Mode::Harmonize,
                region,
                &settings,
                &mut Unobserved,
            )
            .unwrap();
            // Every change is inside the region, or re-strikes a note held
            // out of it on the next bar line (with the pitch it had).
            for c in &edit.changes {
                let restruck = c.step == 112 && matches!(c.after, CellToken::Pitch(_));
                assert!(
                    region.contains(c.step, c.voice) || restruck,
                    "{c:?} is outside the mask"
                );
            }
            changed_any |= !edit.changes.is_empty();
            history.push(edit);
        }
        assert!(changed_any, "three new variations changed nothing");
        // Outside the region every cell sounds as it did: the same token, or
        // a hold re-struck with the pitch that was sounding.
        let sounding = |step: i64, voice: Voice| {
            (64..=step)
                .rev()
                .map(|s| generated(&original, Mode::Harmonize, s, voice))
                .find(|t| *t != Some(CellToken::Hold))
                .flatten()
        };
        for (step, voice, token) in cells(&original) {
            if region.contains(step, voice) {
                continue;
            }
            let now = generated(&composition, Mode::Harmonize, step, voice);
            let restruck = token == CellToken::Hold && now == sounding(step, voice);
            assert!(now == Some(token) || restruck, "{step} {voice}: {now:?}");
        }
        let last = composition.clone();
        while history.undo(&mut composition).is_some() {}
        assert_eq!(composition, original);
        assert_eq!(history.depths(), (0, 3));
        while history.redo(&mut composition).is_some() {}
        assert_eq!(composition, last);
    }

    #[test]
    fn kept_bars_are_left_alone() {
        let model = model();
        let (mut window, mut composition, mut settings) = harmonized(&model);
        let original = composition.clone();
        settings.kept = [80, 96].into();
        let region = Region {
            start: 80,
            end: 112,
            voices: [false, true, true, true],
        };
        let err = regenerate(
            &model,
            &window,
            &mut composition,
            Mode::Harmonize,
            region,
            &settings,
            &mut Unobserved,
        )
        .unwrap_err();
        assert!(err.to_string().contains("nothing to regenerate"), "{err}");
        // A new variation of everything (the seed changed) spares them too.
        window.mark_all_dirty();
        settings.sampler.seed = 99;
        harmonize(
            &model,
            &window,
            &mut composition,
            &settings,
            &mut Unobserved,
        )
        .unwrap();
        assert_eq!(composition.harmony[&80], original.harmony[&80]);
        assert_eq!(composition.harmony[&96], original.harmony[&96]);
        assert_ne!(composition.harmony[&64], original.harmony[&64]);
    }

    #[test]
    fn an_adopted_answer_becomes_heard_bars_with_their_harmony() {
        let mut window = Window::default();
        let mut composition = Composition::default();
        assert_eq!(adopt_answer(&mut window, &mut composition, 8), None);
        // Two bars after a heard bar at 0: a whole note, then two halves.
        window.bars.insert(
            0,
            Bar {
                start: 0,
                length: 16,
                melody: vec![],
                dirty: false,
                heard: 1,
                adopted: false,
            },
        );
        let mut cells = vec![[CellToken::Hold; 4]; 32];
        cells[0] = [
            CellToken::Pitch(72),
            CellToken::Pitch(67),
            CellToken::Pitch(64),
            CellToken::Pitch(48),
        ];
        cells[16] = [
            CellToken::Pitch(71),
            CellToken::Pitch(67),
            CellToken::Pitch(62),
            CellToken::Pitch(55),
        ];
        cells[24][0] = CellToken::Pitch(72);
        composition.answer = Some((16, cells.clone()));
        assert_eq!(adopt_answer(&mut window, &mut composition, 8), Some(2));
        assert_eq!(composition.answer, None);
        assert_eq!(
            window.bars.keys().copied().collect::<Vec<_>>(),
            vec![0, 16, 32]
        );
        let bar = &window.bars[&32];
        assert!(bar.adopted && !bar.dirty);
        let pitches: Vec<(i64, i64, u8)> = bar
            .melody
            .iter()
            .map(|n| (n.start, n.end, n.pitch))
            .collect();
        assert_eq!(pitches, vec![(32, 40, 71), (40, 48, 72)]);
        assert_eq!(window.bars[&16].melody[0].pitch, 72);
        assert_eq!(composition.harmony[&32], cells[16..32].to_vec());
        assert_eq!(
            generated(&composition, Mode::Harmonize, 16, Voice::Bass),
            Some(CellToken::Pitch(48))
        );
    }

    /// Issue #15: an answer that lands in a heard bar longer than what is
    /// left of it (a long bar in a saved session) used to panic on a slice.
    #[test]
    fn an_answer_shorter_than_the_bar_it_lands_in_is_adopted_whole() {
        let mut window = Window::default();
        window.bars.insert(
            0,
            Bar {
                start: 0,
                length: 32,
                melody: Vec::new(),
                dirty: false,
                heard: 1,
                adopted: false,
            },
        );
        let mut cells = vec![[CellToken::Hold; 4]; 8];
        cells[0] = [
            CellToken::Pitch(72),
            CellToken::Pitch(67),
            CellToken::Pitch(64),
            CellToken::Pitch(48),
        ];
        let mut composition = Composition {
            answer: Some((0, cells)),
            ..Composition::default()
        };
        assert_eq!(adopt_answer(&mut window, &mut composition, 8), Some(1));
        let harmony = &composition.harmony[&0];
        assert_eq!(harmony.len(), 32, "the bar's harmony is as long as the bar");
        assert_eq!(harmony[0][1], CellToken::Pitch(67));
        assert_eq!(harmony[8], [CellToken::Rest; 4], "past the answer: rests");
        assert_eq!(window.bars[&0].melody.len(), 1);
    }
}
