//! The character pad (issue #13): an XY pad beside the roll, calm ↔ busy
//! across, plain ↔ tense upwards. Dragging moves the dot only; releasing it
//! is the choice, so one gesture is one regeneration, not one per frame.
//! What the axes do is the engine's ([`cantor_engine::character`]).

use cantor_engine::Character;
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, Ui, Vec2};

/// Side of the pad's square, in points.
pub const SIDE: f32 = 132.0;
/// The dot's colour (also the roll's per-bar marks).
pub const DOT: Color32 = Color32::from_rgb(240, 160, 60);

/// What the pad remembers between frames.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PadState {
    /// Where the dot is while a drag is under way.
    pub dragging: Option<Character>,
    /// The square as last drawn (tests find the pad by it).
    pub rect: Option<Rect>,
    /// The "Own style" button as last drawn.
    pub reset: Option<Rect>,
}

/// The pad's position of a point in `rect` (x: activity, y: tension, up is
/// tense), clamped to the square.
pub fn character_at(rect: Rect, pos: Pos2) -> Character {
    let x = ((pos.x - rect.left()) / rect.width()).clamp(0.0, 1.0);
    let y = ((rect.bottom() - pos.y) / rect.height()).clamp(0.0, 1.0);
    // Two decimals, as a host's automation shows them.
    let round = |v: f32| ((v * 2.0 - 1.0) * 100.0).round() / 100.0;
    Character {
        activity: round(x),
        tension: round(y),
    }
}

/// Where `c` sits in `rect`.
pub fn point_of(rect: Rect, c: Character) -> Pos2 {
    Pos2::new(
        rect.left() + (c.activity + 1.0) / 2.0 * rect.width(),
        rect.bottom() - (c.tension + 1.0) / 2.0 * rect.height(),
    )
}

/// Draws the pad with its dot at `current` (the parameters' values) or
/// where a drag has it; returns the new character when a drag is released
/// or "Own style" is clicked (back to the centre, the model's own style).
pub fn character_pad(ui: &mut Ui, state: &mut PadState, current: Character) -> Option<Character> {
    ui.label("Character").on_hover_text(
        "Drag the dot and let go: across, calm to busy (how much the voices move); \
         up, plain to tense (triads to sevenths and suspensions). Releasing regenerates \
         the masked bars, or colours the next composition.",
    );
    let (rect, response) = ui.allocate_exact_size(Vec2::splat(SIDE), Sense::click_and_drag());
    state.rect = Some(rect);
    let mut chosen = None;
    if let Some(pos) = response.interact_pointer_pos() {
        if response.dragged() || response.drag_started() {
            state.dragging = Some(character_at(rect, pos));
        }
    }
    if response.drag_stopped() {
        chosen = state.dragging.take();
    }
    let painter = ui.painter_at(rect);
    let visuals = ui.visuals();
    painter.rect_filled(rect, 4.0, visuals.extreme_bg_color);
    let faint = Stroke::new(1.0, visuals.weak_text_color().gamma_multiply(0.4));
    painter.line_segment([rect.center_top(), rect.center_bottom()], faint);
    painter.line_segment([rect.left_center(), rect.right_center()], faint);
    let font = FontId::proportional(10.0);
    let text = visuals.weak_text_color();
    let inset = 3.0;
    for (pos, align, label) in [
        (
            rect.left_bottom() + Vec2::new(inset, -inset),
            Align2::LEFT_BOTTOM,
            "calm",
        ),
        (
            rect.right_bottom() + Vec2::new(-inset, -inset),
            Align2::RIGHT_BOTTOM,
            "busy",
        ),
        (
            rect.center_top() + Vec2::new(0.0, inset),
            Align2::CENTER_TOP,
            "tense",
        ),
        (
            rect.center_bottom() + Vec2::new(0.0, -inset),
            Align2::CENTER_BOTTOM,
            "plain",
        ),
    ] {
        painter.text(pos, align, label, font.clone(), text);
    }
    let dot = state.dragging.unwrap_or(current);
    let color = match state.dragging {
        Some(_) => Color32::from_rgb(255, 200, 90),
        None => DOT,
    };
    painter.circle_filled(point_of(rect, dot), 6.0, color);
    response.on_hover_text(format!(
        "activity {:+.2}, tension {:+.2}",
        dot.activity, dot.tension
    ));
    let reset = ui
        .add_enabled(!current.is_neutral(), egui::Button::new("Own style"))
        .on_hover_text("Back to the centre: the model's own style");
    state.reset = Some(reset.rect);
    if reset.clicked() {
        state.dragging = None;
        chosen = Some(Character::NEUTRAL);
    }
    chosen
}
