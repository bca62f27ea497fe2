//! The character pad (#13) as a musician uses it, through egui's test
//! harness: the dot follows a drag, only the release chooses, and "Own
//! style" goes back to the centre.

use cantor::pad::{character_at, character_pad, point_of, PadState};
use cantor_engine::Character;
use egui_kittest::Harness;

struct Pad {
    state: PadState,
    current: Character,
    chosen: Vec<Character>,
}

fn harness(current: Character) -> Harness<'static, Pad> {
    Harness::builder()
        .with_size(egui::vec2(300.0, 300.0))
        .build_ui_state(
            |ui, s: &mut Pad| {
                if let Some(c) = character_pad(ui, &mut s.state, s.current) {
                    s.chosen.push(c);
                }
            },
            Pad {
                state: PadState::default(),
                current,
                chosen: Vec::new(),
            },
        )
}

#[test]
fn dragging_the_dot_chooses_on_release() {
    let start = Character {
        activity: -0.5,
        tension: 0.0,
    };
    let mut h = harness(start);
    h.run();
    let rect = h.state().state.rect.expect("the pad was drawn");
    // The dot sits where the parameters say, and the square maps back.
    let from = point_of(rect, start);
    assert_eq!(character_at(rect, from), start);
    // Busy and tense: three quarters across, a quarter from the top.
    let to = rect.left_top() + egui::vec2(0.75 * rect.width(), 0.25 * rect.height());
    h.hover_at(from);
    h.drag_at(from);
    h.run();
    for i in 1..=8 {
        h.hover_at(from + (to - from) * (i as f32 / 8.0));
        h.step();
    }
    // Mid-drag the dot moves but nothing is chosen yet.
    assert!(h.state().chosen.is_empty());
    let moving = h.state().state.dragging.expect("dragging");
    assert!(moving.activity > 0.4 && moving.tension > 0.4, "{moving:?}");
    h.drop_at(to);
    h.run();
    let chosen = h.state().chosen.clone();
    assert_eq!(chosen.len(), 1, "{chosen:?}");
    assert!((chosen[0].activity - 0.5).abs() < 0.03, "{chosen:?}");
    assert!((chosen[0].tension - 0.5).abs() < 0.03, "{chosen:?}");
    assert!(chosen[0].check().is_ok());
    assert!(h.state().state.dragging.is_none());
}

#[test]
fn the_pad_clamps_to_its_square_and_own_style_centres() {
    let mut h = harness(Character {
        activity: 1.0,
        tension: -1.0,
    });
    h.run();
    let rect = h.state().state.rect.expect("the pad was drawn");
    // Past the corners the axes stop at ±1.
    let far = character_at(rect, rect.right_top() + egui::vec2(50.0, -50.0));
    assert_eq!(
        far,
        Character {
            activity: 1.0,
            tension: 1.0
        }
    );
    let reset = h
        .state()
        .state
        .reset
        .expect("the button was drawn")
        .center();
    h.hover_at(reset);
    h.drag_at(reset);
    h.step();
    h.drop_at(reset);
    h.run();
    assert_eq!(h.state().chosen, vec![Character::NEUTRAL]);
}
