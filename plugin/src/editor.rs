//! Cantor's window (nice-plug-egui): the piano roll, the mask and
//! regeneration controls, every parameter, model loading and MIDI export.
//!
//! The editor draws a copy of the worker's status each frame and talks to
//! the worker only through [`Shared`]'s command queue (and the Cancel flag);
//! it never touches the audio thread. Parameters go through the host's
//! `ParamSetter`, so host automation shows here live and edits here are
//! automation gestures the host records.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cantor_engine::grid::Voice;
use egui::{Color32, RichText, Ui};
use nice_plug::context::gui::{GuiContext, ParamSetter};
use nice_plug::editor::dpi::LogicalSize;
use nice_plug::editor::ResizeHint;
use nice_plug::prelude::{BoolParam, Enum, EnumParam, Param};
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{
    create_egui_editor, EguiEditor, EguiEditorState, EguiNiceSettings, Frame, NiceEguiApp,
    RepaintNotifier,
};

use crate::composer::Mode;
use crate::pad::{character_pad, PadState};
use crate::params::{CantorParams, KeyLock};
use crate::roll::{piano_roll, RollState, INPUT_COLOR, VOICE_COLORS};
use crate::shared::{Command, Shared, Status};
use crate::take::{extent, take_bars, take_score};

/// The window's size when first opened, in logical points.
pub const DEFAULT_SIZE: (f32, f32) = (980.0, 620.0);
const MIN_SIZE: (f32, f32) = (640.0, 420.0);
/// How often the window redraws while open (the playhead moves).
const FRAME: Duration = Duration::from_millis(33);

pub fn editor_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(LogicalSize::new(DEFAULT_SIZE.0, DEFAULT_SIZE.1), 1.0)
}

pub fn create(
    state: Arc<EguiEditorState>,
    params: Arc<CantorParams>,
    shared: Arc<Shared>,
) -> Option<EguiEditor<CantorEditor>> {
    let settings = EguiNiceSettings::default()
        .with_tile("Cantor")
        .with_resize_hint(
            ResizeHint::resizable().with_min_logical_size(LogicalSize::new(MIN_SIZE.0, MIN_SIZE.1)),
        );
    create_egui_editor(
        state,
        RepaintNotifier::new(),
        settings,
        CantorEditor {
            params,
            shared,
            gui: None,
            panel: Panel::default(),
        },
    )
}

/// The editor as nice-plug-egui runs it.
pub struct CantorEditor {
    params: Arc<CantorParams>,
    shared: Arc<Shared>,
    gui: Option<GuiContext>,
    panel: Panel,
}

impl NiceEguiApp for CantorEditor {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        nice_gui_ctx: GuiContext,
        _frame: &mut Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        egui_ctx.set_visuals(egui::Visuals::dark());
        self.gui = Some(nice_gui_ctx);
        self.shared.editor_open.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut Frame) {
        let Some(gui) = &self.gui else {
            return;
        };
        let setter = gui.param_setter();
        let status = self.shared.status();
        draw(
            ui,
            &mut self.panel,
            &self.params,
            &setter,
            &status,
            &self.shared,
        );
        ui.ctx().request_repaint_after(FRAME);
    }

    fn editor_closed(&mut self) {
        self.shared.editor_open.store(false, Ordering::Relaxed);
    }
}

/// The editor's own state (what is typed, what the roll remembers).
#[derive(Clone, Debug)]
pub struct Panel {
    pub roll: RollState,
    pub pad: PadState,
    pub model_path: String,
    pub export_path: String,
    /// The outcome of the last thing done here (an export).
    pub note: Option<Result<String, String>>,
    pub zoom: f32,
}

impl Default for Panel {
    fn default() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        Panel {
            roll: RollState::default(),
            pad: PadState::default(),
            model_path: String::new(),
            export_path: home.join("cantor-take.mid").display().to_string(),
            note: None,
            zoom: 1.0,
        }
    }
}

/// The whole window.
pub fn draw(
    ui: &mut Ui,
    panel: &mut Panel,
    params: &CantorParams,
    setter: &ParamSetter,
    status: &Status,
    shared: &Shared,
) {
    if (ui.ctx().zoom_factor() - panel.zoom).abs() > 1e-3 {
        ui.ctx().set_zoom_factor(panel.zoom);
    }
    let mut commands = Vec::new();
    egui::Panel::top("parameters").show(ui, |ui| {
        parameters(ui, params, setter, panel);
    });
    egui::Panel::bottom("status").show(ui, |ui| {
        files(ui, panel, status, shared);
        status_line(ui, status, panel);
    });
    egui::Panel::right("character").show(ui, |ui| {
        let current = params.character();
        if let Some(chosen) = character_pad(ui, &mut panel.pad, current) {
            for (param, value) in [
                (&params.activity, chosen.activity),
                (&params.tension, chosen.tension),
            ] {
                setter.begin_set_parameter(param);
                setter.set_parameter(param, value);
                setter.end_set_parameter(param);
            }
            // Regenerate the masked bars with it now (without a mask, it
            // colours what is composed next).
            let region = status.mask.map(|mut region| {
                region.voices = panel.roll.voices_for(status.mode);
                region
            });
            commands.push(Command::SetCharacter(chosen, region));
            if let Some(region) = region {
                commands.push(Command::Regenerate(region));
            }
        }
    });
    egui::CentralPanel::default().show(ui, |ui| {
        mask_bar(ui, panel, status, shared, &mut commands);
        legend(ui, status.mode);
        piano_roll(
            ui,
            status,
            Some(shared.playhead.get()),
            &mut panel.roll,
            &mut commands,
        );
    });
    for c in commands {
        shared.send(c);
    }
}

fn parameters(ui: &mut Ui, params: &CantorParams, setter: &ParamSetter, panel: &mut Panel) {
    ui.horizontal_wrapped(|ui| {
        ui.heading(RichText::new("Cantor").strong());
        ui.separator();
        enum_combo(ui, &params.mode, setter);
        ui.separator();
        ui.label("Play");
        for (param, voice) in [
            (&params.soprano, Voice::Soprano),
            (&params.alto, Voice::Alto),
            (&params.tenor, Voice::Tenor),
            (&params.bass, Voice::Bass),
        ] {
            toggle(ui, param, setter, Some(VOICE_COLORS[voice.index()]));
        }
        ui.separator();
        enum_combo(ui, &params.layout, setter);
        toggle(ui, &params.pass_through, setter, None);
    });
    ui.horizontal_wrapped(|ui| {
        labeled_slider(ui, "Temperature", &params.temperature, setter);
        ui.label("Rules").on_hover_text(
            "Voice-leading rules: 0 lets the network write alone; higher forbids \
             parallel fifths/octaves, crossings and out-of-range notes more strictly \
             and asks for full chords on the beat",
        );
        ui.add(ParamSlider::for_param(&params.rules, setter).with_width(90.0));
        labeled_slider(ui, "Levels", &params.levels, setter);
        ui.separator();
        labeled_slider(ui, "Seed", &params.seed, setter);
        if ui
            .button("New variation")
            .on_hover_text("Change the seed: everything not kept is composed again")
            .clicked()
        {
            let next = (params.seed.value() + 1) % 10_000;
            setter.begin_set_parameter(&params.seed);
            setter.set_parameter(&params.seed, next);
            setter.end_set_parameter(&params.seed);
        }
    });
    ui.horizontal_wrapped(|ui| {
        enum_combo(ui, &params.key_lock, setter);
        if params.key_lock.value() == KeyLock::Fixed {
            enum_combo(ui, &params.tonic, setter);
            enum_combo(ui, &params.scale, setter);
        }
        ui.separator();
        labeled_slider(ui, "Window", &params.window_bars, setter);
        labeled_slider(ui, "Answer", &params.continue_bars, setter);
        ui.separator();
        ui.label("Zoom");
        egui::ComboBox::from_id_salt("zoom")
            .selected_text(format!("{:.0}%", panel.zoom * 100.0))
            .show_ui(ui, |ui| {
                for z in [1.0, 1.25, 1.5, 1.75, 2.0] {
                    ui.selectable_value(&mut panel.zoom, z, format!("{:.0}%", z * 100.0));
                }
            })
            .response
            .on_hover_text("Size of everything in this window");
    });
}

fn labeled_slider<P: Param>(ui: &mut Ui, name: &str, param: &P, setter: &ParamSetter) {
    ui.label(name);
    ui.add(ParamSlider::for_param(param, setter).with_width(90.0));
}

fn toggle(ui: &mut Ui, param: &BoolParam, setter: &ParamSetter, color: Option<Color32>) {
    let on = param.value();
    let mut text = RichText::new(param.name());
    if let (Some(c), true) = (color, on) {
        text = text.color(c);
    }
    if ui.selectable_label(on, text).clicked() {
        setter.begin_set_parameter(param);
        setter.set_parameter(param, !on);
        setter.end_set_parameter(param);
    }
}

fn enum_combo<T: Enum + PartialEq + 'static>(
    ui: &mut Ui,
    param: &EnumParam<T>,
    setter: &ParamSetter,
) {
    let current = param.value().to_index();
    let names = T::variants();
    let mut chosen = current;
    egui::ComboBox::from_label(param.name())
        .selected_text(names[current])
        .show_ui(ui, |ui| {
            for (i, name) in names.iter().enumerate() {
                ui.selectable_value(&mut chosen, i, *name);
            }
        });
    if chosen != current {
        setter.begin_set_parameter(param);
        setter.set_parameter(param, T::from_index(chosen));
        setter.end_set_parameter(param);
    }
}

fn mask_bar(
    ui: &mut Ui,
    panel: &mut Panel,
    status: &Status,
    shared: &Shared,
    commands: &mut Vec<Command>,
) {
    ui.horizontal_wrapped(|ui| {
        ui.label("Mask voices");
        for voice in Voice::ALL {
            let composed = status.mode == Mode::Continue || voice != Voice::Soprano;
            let on = &mut panel.roll.mask_voices[voice.index()];
            let text = RichText::new(title(voice)).color(VOICE_COLORS[voice.index()]);
            let response =
                ui.add_enabled(composed, egui::Button::selectable(*on && composed, text));
            if response.clicked() {
                *on = !*on;
            }
        }
        ui.separator();
        let mask = status.mask;
        let busy = status.progress.is_some();
        if ui
            .add_enabled(mask.is_some(), egui::Button::new("Regenerate"))
            .on_hover_text("Compose the masked cells again (a new variation each time)")
            .clicked()
        {
            if let Some(mut region) = mask {
                region.voices = panel.roll.voices_for(status.mode);
                commands.push(Command::Regenerate(region));
            }
        }
        if ui.add_enabled(busy, egui::Button::new("Cancel")).clicked() {
            shared.cancel.store(true, Ordering::SeqCst);
        }
        if ui
            .add_enabled(status.undo > 0, egui::Button::new("Undo"))
            .clicked()
        {
            commands.push(Command::Undo);
        }
        if ui
            .add_enabled(status.redo > 0, egui::Button::new("Redo"))
            .clicked()
        {
            commands.push(Command::Redo);
        }
        if let Some(region) = mask {
            if ui
                .button("Keep")
                .on_hover_text("Lock the masked bars: nothing recomposes them")
                .clicked()
            {
                commands.push(Command::Keep(region, true));
            }
            if ui
                .button("Release")
                .on_hover_text("Unlock the masked bars")
                .clicked()
            {
                commands.push(Command::Keep(region, false));
            }
            if ui.button("Clear mask").clicked() {
                commands.push(Command::ClearMask);
            }
        }
        ui.separator();
        if ui
            .button("Regenerate all")
            .on_hover_text("Compose everything that is not kept again")
            .clicked()
        {
            commands.push(Command::RegenerateAll);
        }
        let has_answer = status.composition.answer.is_some() && status.mode == Mode::Continue;
        if ui
            .add_enabled(has_answer, egui::Button::new("Answer to input"))
            .on_hover_text("Copy the answer into the window as new input, to continue from it")
            .clicked()
        {
            commands.push(Command::AdoptAnswer);
        }
    });
}

fn title(voice: Voice) -> &'static str {
    match voice {
        Voice::Soprano => "Soprano",
        Voice::Alto => "Alto",
        Voice::Tenor => "Tenor",
        Voice::Bass => "Bass",
    }
}

fn legend(ui: &mut Ui, mode: Mode) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("heard").color(INPUT_COLOR).strong());
        for voice in Voice::ALL {
            if mode == Mode::Harmonize && voice == Voice::Soprano {
                continue;
            }
            ui.label(
                RichText::new(title(voice))
                    .color(VOICE_COLORS[voice.index()])
                    .strong(),
            );
        }
        ui.label(
            RichText::new("drag across bars to regenerate them; click a bar to mask it").weak(),
        );
    });
}

fn files(ui: &mut Ui, panel: &mut Panel, status: &Status, shared: &Shared) {
    ui.horizontal(|ui| {
        ui.label("Model file");
        ui.add(
            egui::TextEdit::singleline(&mut panel.model_path)
                .hint_text("path to a .safetensors with its .json card")
                .desired_width(260.0),
        );
        if ui
            .add_enabled(
                !panel.model_path.trim().is_empty(),
                egui::Button::new("Load model"),
            )
            .clicked()
        {
            shared.send(Command::LoadModel(PathBuf::from(panel.model_path.trim())));
        }
        ui.separator();
        ui.label("MIDI file");
        ui.add(egui::TextEdit::singleline(&mut panel.export_path).desired_width(220.0));
        if ui.button("Export take").clicked() {
            panel.note = Some(export(
                status,
                std::path::Path::new(panel.export_path.trim()),
                shared.playhead.tempo(),
            ));
        }
    });
}

/// Writes the take (the heard melody and what plays with it) as a MIDI file.
pub fn export(
    status: &Status,
    path: &std::path::Path,
    tempo_bpm: Option<f64>,
) -> Result<String, String> {
    let bars = take_bars(&status.window, &status.composition, status.mode);
    let Some(span) = extent(&bars) else {
        return Err("nothing to export yet: the window is empty".into());
    };
    // The soprano range only folds the melody as the model heard it.
    let soprano = cantor_engine::Vocabulary::chorales().range(Voice::Soprano);
    let mut score = take_score(
        &status.window,
        &status.composition,
        status.mode,
        soprano,
        span,
    );
    if let Some(bpm) = tempo_bpm.filter(|t| *t > 0.0) {
        score.set_tempos(vec![(0, (60_000_000.0 / bpm).round() as u32)]);
    }
    cantor_engine::io::midi::write_midi(&score, path).map_err(|e| e.to_string())?;
    Ok(format!(
        "exported {} bars to {}",
        bars.len(),
        path.display()
    ))
}

fn status_line(ui: &mut Ui, status: &Status, panel: &Panel) {
    ui.horizontal(|ui| {
        let device = if status.device.is_empty() {
            "starting"
        } else {
            &status.device
        };
        let model = if status.model.is_empty() {
            "loading model"
        } else {
            &status.model
        };
        ui.label(format!("{model} on {device}"));
        ui.separator();
        ui.label(format!("Key: {}", status.key.as_deref().unwrap_or("free")));
        ui.separator();
        match status.progress {
            Some((level, levels)) => {
                ui.add(
                    egui::ProgressBar::new(level as f32 / levels.max(1) as f32)
                        .desired_width(140.0)
                        .text(format!("annealing {level}/{levels}")),
                );
            }
            None if status.generations > 0 => {
                ui.label(format!("last took {:.0} ms", status.last_ms));
            }
            None => {
                ui.label("idle");
            }
        }
        ui.separator();
        if let Some(e) = &status.error {
            ui.label(RichText::new(e).color(Color32::from_rgb(255, 110, 110)));
        } else if let Some(Err(e)) = &panel.note {
            ui.label(RichText::new(e).color(Color32::from_rgb(255, 110, 110)));
        } else if let Some(Ok(m)) = &panel.note {
            ui.label(m);
        } else if let Some(m) = &status.message {
            ui.label(m);
        }
    });
}
