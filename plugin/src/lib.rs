//! Cantor, the plugin: a MIDI effect that listens, composes on a worker
//! thread with the score model, and plays what it composed in time with the
//! host's transport.
//!
//! This file holds the plugin struct and the `Plugin` impl; each concern has
//! its own module: `params` (parameters and saved session), `grid_time`
//! (host time → grid steps), `window` (what was heard), `composer` (what to
//! compose), `worker` (the thread that composes), `playback` (the audio
//! thread's scheduler).

use std::sync::Arc;

use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;

pub mod composer;
pub mod editor;
pub mod grid_time;
pub mod link;
pub mod pad;
pub mod params;
pub mod playback;
pub mod roll;
pub mod session;
pub mod shared;
pub mod take;
pub mod window;
pub mod worker;

use grid_time::BlockSpan;
use link::{AudioLink, HeldBlock, Input};
use params::CantorParams;
use playback::{PassedNotes, PlayEvent, Player, Schedule};
use shared::Shared;
use worker::Worker;

/// Generated events one block can hold before they are sent (every step of
/// an 8192-sample block at the fastest tempo, four voices on and off, with
/// room to spare).
const BLOCK_EVENTS: usize = 1024;

pub struct Cantor {
    /// Shared with the host, the GUI and the worker (lock-free reads).
    params: Arc<CantorParams>,
    /// The audio thread's ends of the worker queues; `None` while inactive.
    link: Option<AudioLink>,
    /// The worker thread; dropping it stops it. Created in `activate`.
    worker: Option<Worker>,
    /// What the worker reports and the editor's commands (GUI and worker
    /// threads; the audio thread only stores the playhead there).
    shared: Arc<Shared>,
    /// The editor window's size and zoom.
    editor_state: Arc<nice_plug_egui::EguiEditorState>,
    /// The schedule playing now. Replaced from the queue on the audio thread;
    /// the old box goes back to the worker to be freed.
    schedule: Box<Schedule>,
    /// Audio-thread playback state (notes sounding, last position).
    player: Player,
    /// Generated events of the current block, merged with pass-through
    /// events in time order. Capacity reserved in `activate`.
    block_events: Vec<(u32, PlayEvent)>,
    sample_rate: f64,
    /// The host's transport read block by block (audio thread).
    transport: grid_time::TransportReader,
    /// The host's loop, reported or learned from its wraps (audio thread).
    loops: grid_time::LoopTracker,
    /// Set by `reset`/`activate`: release notes still sounding from before.
    release_pending: bool,
    /// Input notes passed through and still held (audio thread).
    passed: PassedNotes,
}

impl Default for Cantor {
    fn default() -> Self {
        Cantor {
            params: Arc::new(CantorParams::default()),
            link: None,
            worker: None,
            shared: Arc::new(Shared::default()),
            editor_state: editor::editor_state(),
            schedule: Box::default(),
            player: Player::default(),
            block_events: Vec::new(),
            sample_rate: 48_000.0,
            transport: grid_time::TransportReader::default(),
            loops: grid_time::LoopTracker::default(),
            release_pending: false,
            passed: PassedNotes::default(),
        }
    }
}

impl Cantor {
    /// What the worker reports, and where the editor's commands go.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Takes every schedule the worker sent, returning the replaced ones to
    /// the worker to free. True if a new one arrived.
    fn take_schedules(&mut self) -> bool {
        let Some(link) = self.link.as_mut() else {
            return false;
        };
        let mut fresh = false;
        while link.retired.slots() > 0 {
            let Ok(next) = link.schedules.pop() else {
                break;
            };
            let spent = std::mem::replace(&mut self.schedule, next);
            let _ = link.retired.push(spent);
            fresh = true;
        }
        fresh
    }

    /// What Cantor plays in this block, into `block_events`: releases
    /// owed from a reset, nothing but note-offs when bypassed, else the
    /// schedule over each stretch of the block.
    fn play(&mut self, span: &BlockSpan, fresh: bool, bypass: bool) {
        self.block_events.clear();
        let events = &mut self.block_events;
        let mut send = |o: u32, e: PlayEvent| {
            if events.len() < events.capacity() {
                events.push((o, e))
            }
        };
        if std::mem::take(&mut self.release_pending) {
            self.player.all_off(0, &mut send);
        }
        if bypass {
            self.player.all_off(0, &mut send);
            self.player.reset();
            return;
        }
        for (from, stretch) in span.stretches() {
            // After a wrap the player sees the jump back and releases first.
            let fresh = fresh && from == 0;
            self.player
                .process(&self.schedule, &stretch, fresh, &mut |o, e| {
                    send(from + o, e)
                });
        }
    }

    /// Hears one input event: held for the worker (a note, or an every-key
    /// note-off) and tracked for pass-through. Returns whether to pass it on.
    fn hear_input(&mut self, event: &PluginNoteEvent<Self>, pass_through: bool) -> bool {
        let timing = event.timing();
        let (input, pass) = match *event {
            NoteEvent::NoteOn {
                channel,
                key: Key::Number(pitch),
                velocity,
                ..
            } => (
                Some(Input::On {
                    pitch,
                    velocity: (velocity * 127.0).round().clamp(1.0, 127.0) as u8,
                }),
                self.passed
                    .note_on(channel.number().unwrap_or(0), pitch, pass_through),
            ),
            NoteEvent::NoteOff {
                channel,
                key: Key::Number(pitch),
                ..
            } => (
                Some(Input::Off { pitch }),
                self.passed
                    .note_off(channel.number().unwrap_or(0), pitch, pass_through),
            ),
            // CLAP's "every key" note-off.
            NoteEvent::NoteOff {
                channel,
                key: Key::Wildcard,
                ..
            } => (
                Some(Input::AllOff),
                self.passed.all_off(channel.number(), pass_through),
            ),
            _ => (None, pass_through),
        };
        if let (Some(input), Some(link)) = (input, self.link.as_mut()) {
            link.hear(timing, input);
        }
        pass
    }
}

fn to_note_event(timing: u32, event: PlayEvent) -> PluginNoteEvent<Cantor> {
    match event {
        PlayEvent::On {
            channel,
            pitch,
            velocity,
        } => NoteEvent::NoteOn {
            timing,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Number(channel),
            key: Key::Number(pitch),
            velocity: velocity as f32 / 127.0,
        },
        PlayEvent::Off { channel, pitch } => NoteEvent::NoteOff {
            timing,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Number(channel),
            key: Key::Number(pitch),
            velocity: 0.0,
        },
    }
}

impl Plugin for Cantor {
    const NAME: &'static str = "Cantor";
    const VENDOR: &'static str = "Cantor";
    const URL: &'static str = "https://example.invalid/cantor";
    const EMAIL: &'static str = "cantor@example.invalid";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[];
    const MIDI_INPUT: MidiConfig = MidiConfig::Basic;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::Basic;
    /// Automation inside a block takes effect at its sample (the wrapper
    /// splits the block there): bypass and pass-through switch exactly
    /// where the host's lane says; parameters that change what is composed
    /// take effect when the worker next composes.
    const SAMPLE_ACCURATE_AUTOMATION: bool = true;
    /// A flood of 10,000 notes (on and off) in one block fits without the
    /// wrapper growing its queue on the audio thread.
    const INPUT_EVENT_CAPACITY: usize = 32_768;

    type Editor = nice_plug_egui::EguiEditor<editor::CantorEditor>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(
            self.editor_state.clone(),
            self.params.clone(),
            self.shared.clone(),
        )
    }

    fn activate(
        &mut self,
        _layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        self.sample_rate = buffer_config.sample_rate as f64;
        self.block_events.reserve(BLOCK_EVENTS);
        if self.worker.is_none() {
            let (audio, worker) = link::link();
            self.link = Some(audio);
            self.worker = Some(Worker::spawn(
                worker,
                self.params.clone(),
                self.shared.clone(),
            ));
        }
        self.release_pending = true;
        true
    }

    fn reset(&mut self) {
        self.player.reset();
        self.release_pending = true;
    }

    fn deactivate(&mut self) {
        // The worker and its composition stay: reactivation goes on where
        // it was. Notes still sounding are released by the next process.
        self.release_pending = true;
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let samples = buffer.samples() as u32;
        let fresh = self.take_schedules();
        let (clock, bar_start, bar_beats) =
            self.transport
                .block(context.transport(), samples, self.sample_rate);
        let reported = context.transport().loop_range_beats();
        let loops = self.loops.next(clock, reported);
        let playing = clock.playing || context.transport().pos_beats().is_none();
        if let Some(link) = self.link.as_mut() {
            // This block's position says where the last block's input was.
            link.send_held(loops.previous);
            let block = HeldBlock {
                clock,
                bar_start,
                bar_beats,
                playing,
                character: self.params.character(),
            };
            link.start_block(block, reported.filter(|_| clock.playing));
        }
        let span = BlockSpan::new(clock, loops.this);
        let bypass = self.params.bypass.value();
        self.play(&span, fresh, bypass);

        // Input: held for the worker, passed through if asked (always when
        // bypassed), merged in time order with what Cantor plays.
        let pass_through = self.params.pass_through.value() || bypass;
        let mut next = 0;
        while let Some(event) = context.next_event() {
            let timing = event.timing();
            while next < self.block_events.len() && self.block_events[next].0 <= timing {
                let (o, e) = self.block_events[next];
                let _ = context.try_send_event(to_note_event(o, e));
                next += 1;
            }
            if self.hear_input(&event, pass_through) {
                let _ = context.try_send_event(event);
            }
        }
        for &(o, e) in &self.block_events[next..] {
            let _ = context.try_send_event(to_note_event(o, e));
        }
        if let Some(link) = self.link.as_mut() {
            link.end_block();
        }
        for (_, stretch) in span.stretches() {
            self.shared.playhead.set(
                stretch.start_beat,
                stretch.playing,
                stretch.beats_per_sample * 60.0 * self.sample_rate,
            );
        }
        ProcessStatus::KeepAlive
    }
}

impl ClapPlugin for Cantor {
    const CLAP_ID: &'static str = "org.cantor.cantor";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Harmonizes and continues what you play with a score-based generative model");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::NoteEffect, ClapFeature::Utility];
}

impl Vst3Plugin for Cantor {
    const VST3_CLASS_ID: [u8; 16] = *b"CantorScoreModel";
    /// VST3 has no MIDI-effect category. "Instrument" made Ardour list
    /// Cantor with the synths and offer it as a new track's instrument,
    /// where its MIDI output has nothing to play it; as "Fx" it is offered
    /// as a plugin to insert on a MIDI track before the instrument, which
    /// is where a note effect goes (the choice JUCE makes for MIDI effects).
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}

nice_export_clap!(Cantor);
nice_export_vst3!(Cantor);
