//! The piano roll: the window's bars and beats, the heard melody and the
//! composed voices, the playhead, the masked region and the annealing under
//! way. Dragging across bars masks them and asks for exactly those cells to
//! be regenerated. Plain egui, no plugin types, so it runs in egui's test
//! harness as it runs in the plugin window.

use cantor_engine::grid::{Score, Voice};
use egui::{
    Align2, Color32, CornerRadius, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Ui, Vec2,
};

use crate::composer::Mode;
use crate::shared::{Command, Status};
use crate::take::{bar_at, extent, generated, take_bars, Region, TakeBar};

/// Colours of the voices Cantor composes: soprano, alto, tenor, bass.
pub const VOICE_COLORS: [Color32; 4] = [
    Color32::from_rgb(242, 193, 78),
    Color32::from_rgb(95, 211, 154),
    Color32::from_rgb(74, 163, 240),
    Color32::from_rgb(212, 107, 214),
];
/// The melody the host played in.
pub const INPUT_COLOR: Color32 = Color32::from_rgb(236, 236, 236);
pub const BACKGROUND: Color32 = Color32::from_rgb(27, 29, 35);
const BLACK_KEY_ROW: Color32 = Color32::from_rgb(22, 24, 29);
const BAR_LINE: Color32 = Color32::from_rgb(96, 100, 112);
const BEAT_LINE: Color32 = Color32::from_rgb(48, 51, 60);
const PLAYHEAD: Color32 = Color32::from_rgb(255, 80, 80);
const MASK_FILL: Color32 = Color32::from_rgba_premultiplied(40, 34, 10, 40);
const MASK_EDGE: Color32 = Color32::from_rgb(255, 200, 60);
const KEPT_FILL: Color32 = Color32::from_rgba_premultiplied(10, 30, 45, 50);

const GUTTER: f32 = 34.0;
const HEADER: f32 = 18.0;
/// Bars shown while the window is empty.
const EMPTY_STEPS: i64 = 64;

/// Where things are on screen, from the last frame drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    /// The grid (without the pitch gutter and bar header).
    pub grid: Rect,
    pub first_step: i64,
    pub steps: i64,
    pub lowest: u8,
    pub highest: u8,
}

impl Geometry {
    pub fn x_of(&self, step: f64) -> f32 {
        self.grid.left()
            + ((step - self.first_step as f64) / self.steps as f64) as f32 * self.grid.width()
    }

    pub fn step_at(&self, x: f32) -> i64 {
        let f = ((x - self.grid.left()) / self.grid.width()).clamp(0.0, 0.9999);
        self.first_step + (f as f64 * self.steps as f64).floor() as i64
    }

    fn row_height(&self) -> f32 {
        self.grid.height() / (self.highest - self.lowest + 1) as f32
    }

    fn y_of(&self, pitch: u8) -> f32 {
        self.grid.bottom() - (pitch.saturating_sub(self.lowest) as f32 + 1.0) * self.row_height()
    }

    fn cell(&self, start: f64, end: f64, pitch: u8) -> Rect {
        let y = self.y_of(pitch);
        Rect::from_min_max(
            Pos2::new(self.x_of(start), y),
            Pos2::new(self.x_of(end), y + self.row_height()),
        )
    }
}

/// The roll's own state between frames.
#[derive(Clone, Debug)]
pub struct RollState {
    /// Which voices a drag masks.
    pub mask_voices: [bool; 4],
    /// Pointer x where a drag began and where it is now.
    drag: Option<(f32, f32)>,
    pub geometry: Option<Geometry>,
}

impl Default for RollState {
    fn default() -> Self {
        RollState {
            mask_voices: [false, true, true, true],
            drag: None,
            geometry: None,
        }
    }
}

impl RollState {
    /// The voices a mask covers in `mode`: the soprano is composed only in
    /// an answer.
    pub fn voices_for(&self, mode: Mode) -> [bool; 4] {
        let mut v = self.mask_voices;
        if mode == Mode::Harmonize {
            v[Voice::Soprano.index()] = false;
        }
        v
    }
}

/// The region a drag from `a` to `b` (song steps) covers: the whole bars it
/// touches.
pub fn region_between(bars: &[TakeBar], a: i64, b: i64, voices: [bool; 4]) -> Option<Region> {
    let (lo, hi) = (a.min(b), a.max(b));
    let first = bar_at(bars, lo).or_else(|| bars.iter().find(|bar| bar.end() > lo))?;
    let last = bar_at(bars, hi).or_else(|| bars.iter().rev().find(|bar| bar.start <= hi))?;
    (first.start < last.end()).then_some(Region {
        start: first.start,
        end: last.end(),
        voices,
    })
}

/// Draws the roll in the space left in `ui`; a drag that ends over bars
/// pushes a [`Command::Regenerate`] for them, a click masks one bar.
pub fn piano_roll(
    ui: &mut Ui,
    status: &Status,
    playhead: Option<(f64, bool)>,
    state: &mut RollState,
    commands: &mut Vec<Command>,
) {
    let size = ui.available_size().max(Vec2::new(200.0, 120.0));
    let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
    response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::Role::Canvas,
            true,
            "Piano roll: drag across bars to regenerate them",
        )
    });
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, CornerRadius::same(4), BACKGROUND);

    let mode = status.mode;
    let bars = take_bars(&status.window, &status.composition, mode);
    let span = extent(&bars).unwrap_or(0..EMPTY_STEPS);
    let generated_notes = composed_notes(status, mode, span.clone());
    let heard: Vec<_> = status
        .window
        .bars
        .values()
        .flat_map(|b| b.melody.iter().copied())
        .collect();

    // Pitch range: what is there, at least C2 to C6, a little room.
    let mut lowest = 36u8;
    let mut highest = 84u8;
    for p in heard
        .iter()
        .map(|n| n.pitch)
        .chain(generated_notes.iter().map(|n| n.1))
        .chain(
            status
                .annealing
                .iter()
                .flat_map(|a| a.beliefs.iter().map(|b| b.2)),
        )
    {
        lowest = lowest.min(p.saturating_sub(2));
        highest = highest.max(p.saturating_add(2).min(127));
    }
    let grid = Rect::from_min_max(
        rect.min + Vec2::new(GUTTER, HEADER),
        rect.max - Vec2::new(4.0, 4.0),
    );
    let geo = Geometry {
        grid,
        first_step: span.start,
        steps: (span.end - span.start).max(1),
        lowest,
        highest,
    };
    state.geometry = Some(geo);

    // Rows: black keys darker, C labelled.
    let row = geo.row_height();
    for pitch in lowest..=highest {
        let y = geo.y_of(pitch);
        let r = Rect::from_min_max(Pos2::new(grid.left(), y), Pos2::new(grid.right(), y + row));
        if matches!(pitch % 12, 1 | 3 | 6 | 8 | 10) {
            painter.rect_filled(r, CornerRadius::ZERO, BLACK_KEY_ROW);
        }
        if pitch % 12 == 0 && row >= 4.0 {
            painter.text(
                Pos2::new(rect.left() + 3.0, y + row / 2.0),
                Align2::LEFT_CENTER,
                cantor_engine::grid::pitch_name(pitch),
                FontId::proportional(10.0_f32.min(row * 2.0)),
                Color32::GRAY,
            );
        }
    }

    // Bars: kept ones tinted, lines, numbers; beats.
    let shown_bars: Vec<TakeBar> = if bars.is_empty() {
        (0..EMPTY_STEPS / 16)
            .map(|i| TakeBar {
                start: i * 16,
                length: 16,
                heard: false,
                answer: false,
            })
            .collect()
    } else {
        bars.clone()
    };
    for (i, bar) in shown_bars.iter().enumerate() {
        let x0 = geo.x_of(bar.start as f64);
        let x1 = geo.x_of(bar.end() as f64);
        if status.kept.contains(&bar.start) {
            painter.rect_filled(
                Rect::from_min_max(Pos2::new(x0, grid.top()), Pos2::new(x1, grid.bottom())),
                CornerRadius::ZERO,
                KEPT_FILL,
            );
        }
        let mut beat = bar.start + 4;
        while beat < bar.end() {
            let x = geo.x_of(beat as f64);
            painter.line_segment(
                [Pos2::new(x, grid.top()), Pos2::new(x, grid.bottom())],
                Stroke::new(1.0, BEAT_LINE),
            );
            beat += 4;
        }
        painter.line_segment(
            [
                Pos2::new(x0, rect.top() + 2.0),
                Pos2::new(x0, grid.bottom()),
            ],
            Stroke::new(1.0, BAR_LINE),
        );
        let mut label = format!("{}", i + 1);
        if bar.answer && !bar.heard {
            label.push_str(" answer");
        }
        if status.kept.contains(&bar.start) {
            label.push_str(" kept");
        }
        painter.text(
            Pos2::new(x0 + 3.0, rect.top() + HEADER / 2.0),
            Align2::LEFT_CENTER,
            label,
            FontId::proportional(11.0),
            Color32::LIGHT_GRAY,
        );
        // The character the bar is composed with, where it leaves the
        // centre: a small pad at the header's right, its dot where the
        // big one was.
        let character = status.window.characters.get(&bar.start);
        if let Some(&c) = character.filter(|c| !c.is_neutral() && x1 - x0 > 3.0 * HEADER) {
            let side = HEADER - 6.0;
            let mark = Rect::from_min_size(
                Pos2::new(x1 - side - 4.0, rect.top() + 3.0),
                Vec2::splat(side),
            );
            painter.rect_stroke(
                mark,
                CornerRadius::same(2),
                Stroke::new(1.0, Color32::GRAY),
                StrokeKind::Inside,
            );
            painter.circle_filled(
                crate::pad::point_of(mark.shrink(2.0), c),
                2.5,
                crate::pad::DOT,
            );
        }
    }

    // The mask, or the drag that is making one.
    let mask_rect = |region: &Region| {
        Rect::from_min_max(
            Pos2::new(geo.x_of(region.start as f64), grid.top()),
            Pos2::new(geo.x_of(region.end as f64), grid.bottom()),
        )
    };
    let dragging = state.drag.and_then(|(a, b)| {
        region_between(
            &bars,
            geo.step_at(a),
            geo.step_at(b),
            state.voices_for(mode),
        )
    });
    if let Some(region) = dragging.or(status.mask) {
        let r = mask_rect(&region);
        painter.rect_filled(r, CornerRadius::ZERO, MASK_FILL);
        painter.rect_stroke(
            r,
            CornerRadius::ZERO,
            Stroke::new(1.5, MASK_EDGE),
            StrokeKind::Inside,
        );
        let names: Vec<&str> = Voice::ALL
            .iter()
            .filter(|v| region.voices[v.index()])
            .map(|v| v.name())
            .collect();
        painter.text(
            r.left_bottom() + Vec2::new(4.0, -4.0),
            Align2::LEFT_BOTTOM,
            format!("masked: {}", names.join(" ")),
            FontId::proportional(11.0),
            MASK_EDGE,
        );
    }

    // Notes: the melody heard, then the composed voices.
    let note_rect = |start: i64, end: i64, pitch: u8| {
        geo.cell(start as f64, end as f64, pitch)
            .shrink2(Vec2::new(0.5, 0.5))
    };
    let annealing_cells: std::collections::HashSet<(i64, usize)> = status
        .annealing
        .iter()
        .flat_map(|a| a.beliefs.iter().map(|b| (b.0, b.1.index())))
        .collect();
    for n in &heard {
        painter.rect_filled(
            note_rect(n.start, n.end, n.pitch),
            CornerRadius::same(2),
            INPUT_COLOR,
        );
    }
    for &(start, pitch, end, voice) in &generated_notes {
        // Cells being recomposed show the annealing instead.
        let color = if annealing_cells.contains(&(start, voice.index())) {
            VOICE_COLORS[voice.index()].gamma_multiply(0.25)
        } else {
            VOICE_COLORS[voice.index()]
        };
        painter.rect_filled(note_rect(start, end, pitch), CornerRadius::same(2), color);
    }

    // The annealing: each pitch's belief as the cell's opacity.
    if let Some(a) = &status.annealing {
        for &(step, voice, pitch, p) in &a.beliefs {
            let r = geo.cell(step as f64, step as f64 + 1.0, pitch);
            painter.rect_filled(
                r,
                CornerRadius::ZERO,
                VOICE_COLORS[voice.index()].gamma_multiply(p.sqrt()),
            );
        }
        let frac = a.level as f32 / a.levels.max(1) as f32;
        let bar = Rect::from_min_size(
            Pos2::new(grid.left(), rect.top() + HEADER - 3.0),
            Vec2::new(grid.width() * frac, 3.0),
        );
        painter.rect_filled(bar, CornerRadius::ZERO, MASK_EDGE);
    }

    // The host's playhead.
    if let Some((beat, _playing)) = playhead {
        let step = beat * 4.0;
        if step >= span.start as f64 && step <= span.end as f64 && !bars.is_empty() {
            let x = geo.x_of(step);
            painter.line_segment(
                [Pos2::new(x, rect.top()), Pos2::new(x, grid.bottom())],
                Stroke::new(2.0, PLAYHEAD),
            );
        }
    }

    if bars.is_empty() {
        painter.text(
            grid.center(),
            Align2::CENTER_CENTER,
            "Play or loop a melody into Cantor: what it composes appears here.",
            FontId::proportional(14.0),
            Color32::GRAY,
        );
    }

    // Masking by dragging across bars; a click masks one bar.
    if response.drag_started() {
        if let Some(p) = response.interact_pointer_pos() {
            state.drag = Some((p.x, p.x));
        }
    }
    if response.dragged() {
        if let (Some((a, _)), Some(p)) = (state.drag, response.interact_pointer_pos()) {
            state.drag = Some((a, p.x));
        }
    }
    if response.drag_stopped() {
        if let Some((a, b)) = state.drag.take() {
            if let Some(region) = region_between(
                &bars,
                geo.step_at(a),
                geo.step_at(b),
                state.voices_for(mode),
            ) {
                commands.push(Command::Regenerate(region));
            }
        }
    } else if response.clicked() {
        if let Some(p) = response.interact_pointer_pos() {
            let step = geo.step_at(p.x);
            if let Some(region) = region_between(&bars, step, step, state.voices_for(mode)) {
                commands.push(Command::SetMask(region));
            }
        }
    }
}

/// The composed notes over `span` as (start, pitch, end, voice), joined
/// across bar lines as they play.
fn composed_notes(
    status: &Status,
    mode: Mode,
    span: std::ops::Range<i64>,
) -> Vec<(i64, u8, i64, Voice)> {
    let len = (span.end - span.start).max(0) as usize;
    let mut score = Score::new(len);
    for (at, step) in span.clone().enumerate() {
        for voice in Voice::ALL {
            if let Some(token) = generated(&status.composition, mode, step, voice) {
                score.set(at, voice, token.into());
            }
        }
    }
    score.normalize();
    score
        .notes()
        .into_iter()
        .map(|n| {
            (
                span.start + n.start as i64,
                n.pitch,
                span.start + n.end() as i64,
                n.voice,
            )
        })
        .collect()
}
