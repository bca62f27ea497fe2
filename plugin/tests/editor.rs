//! The editor as a musician uses it, driven through egui's test harness:
//! dragging across bars masks them and asks for exactly their cells.

use cantor::composer::Mode;
use cantor::composer::{CellToken, Composition};
use cantor::roll::{piano_roll, RollState};
use cantor::shared::{Command, Status};
use cantor::take::Region;
use cantor::window::{Bar, HeardNote, Window};
use egui_kittest::Harness;

/// Six bars of 4/4 heard from bar 9 of the song on, each harmonized.
fn status(mode: Mode) -> Status {
    let mut window = Window::default();
    let mut composition = Composition::default();
    for i in 0..6i64 {
        let start = 128 + i * 16;
        window.bars.insert(
            start,
            Bar {
                start,
                length: 16,
                melody: vec![HeardNote {
                    start,
                    end: start + 16,
                    pitch: 72 + i as u8,
                    velocity: 90,
                }],
                dirty: false,
                heard: i as u64,
                adopted: false,
            },
        );
        let mut cells = vec![[CellToken::Hold; 4]; 16];
        cells[0] = [
            CellToken::Pitch(72),
            CellToken::Pitch(67),
            CellToken::Pitch(60),
            CellToken::Pitch(48),
        ];
        composition.harmony.insert(start, cells);
    }
    Status {
        window,
        composition,
        mode,
        ..Status::default()
    }
}

struct Roll {
    status: Status,
    roll: RollState,
    commands: Vec<Command>,
}

fn harness(mode: Mode) -> Harness<'static, Roll> {
    Harness::builder()
        .with_size(egui::vec2(900.0, 400.0))
        .build_ui_state(
            |ui, s: &mut Roll| {
                let status = s.status.clone();
                piano_roll(
                    ui,
                    &status,
                    Some((34.5, true)),
                    &mut s.roll,
                    &mut s.commands,
                );
            },
            Roll {
                status: status(mode),
                roll: RollState::default(),
                commands: Vec::new(),
            },
        )
}

fn drag(harness: &mut Harness<'static, Roll>, from_step: f64, to_step: f64) {
    harness.run();
    let geo = harness.state().roll.geometry.expect("the roll was drawn");
    let y = geo.grid.center().y;
    let a = egui::pos2(geo.x_of(from_step), y);
    let b = egui::pos2(geo.x_of(to_step), y);
    harness.hover_at(a);
    harness.drag_at(a);
    harness.run();
    for i in 1..=8 {
        let t = i as f32 / 8.0;
        harness.hover_at(a + (b - a) * t);
        harness.step();
    }
    harness.drop_at(b);
    harness.run();
}

#[test]
fn dragging_over_bars_three_and_four_regenerates_exactly_their_cells() {
    let mut h = harness(Mode::Harmonize);
    // From the middle of the window's third bar to the middle of its fourth.
    let bar3 = 128 + 2 * 16;
    drag(&mut h, bar3 as f64 + 6.0, bar3 as f64 + 16.0 + 9.0);
    assert_eq!(
        h.state().commands,
        vec![Command::Regenerate(Region {
            start: bar3,
            end: bar3 + 32,
            // Harmonize: the heard melody is never masked.
            voices: [false, true, true, true],
        })]
    );
}

#[test]
fn a_drag_backwards_and_in_continue_mode_masks_the_answer_in_all_voices() {
    let mut h = harness(Mode::Continue);
    {
        let s = h.state_mut();
        s.roll.mask_voices = [true; 4];
        s.status.composition.answer = Some((224, vec![[CellToken::Rest; 4]; 32]));
    }
    // Right to left from the answer's second bar into its first.
    drag(&mut h, 224.0 + 20.0, 224.0 + 3.0);
    assert_eq!(
        h.state().commands,
        vec![Command::Regenerate(Region {
            start: 224,
            end: 256,
            voices: [true; 4],
        })]
    );
}

#[test]
fn a_click_masks_one_bar_without_regenerating() {
    let mut h = harness(Mode::Harmonize);
    h.run();
    let geo = h.state().roll.geometry.unwrap();
    let p = egui::pos2(geo.x_of(128.0 + 16.0 * 5.0 + 4.0), geo.grid.center().y);
    h.hover_at(p);
    h.drag_at(p);
    h.step();
    h.drop_at(p);
    h.run();
    assert_eq!(
        h.state().commands,
        vec![Command::SetMask(Region {
            start: 208,
            end: 224,
            voices: [false, true, true, true],
        })]
    );
}

#[test]
fn export_writes_the_take_as_a_midi_file_with_the_hosts_tempo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("take.mid");
    let message = cantor::editor::export(&status(Mode::Harmonize), &path, Some(90.0)).unwrap();
    assert!(message.contains("6 bars"), "{message}");
    let score = cantor_engine::io::midi::read_midi(
        &path,
        cantor_engine::io::VoiceLayout::Auto,
        &cantor_engine::io::Limits::default(),
    )
    .unwrap();
    assert_eq!(score.len(), 96);
    assert_eq!(score.tempos()[0], (0, 666_667));
    // Each bar: the heard melody note and the three composed voices.
    assert_eq!(score.notes().len(), 6 * 4);
    let empty = cantor::editor::export(&Status::default(), &path, None).unwrap_err();
    assert!(empty.contains("empty"), "{empty}");
}
