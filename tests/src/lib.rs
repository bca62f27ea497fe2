//! A small CLAP host for Cantor's end-to-end tests: builds the debug bundle
//! (with nice-plug's `assert_process_allocs`, so any allocation on the audio
//! thread aborts the test), loads it with clack-host, and plays blocks of
//! notes with a transport through `process()`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use clack_extensions::gui::{
    GuiApiType, GuiConfiguration, GuiSize, HostGui, HostGuiImpl, PluginGui, Window,
};
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{
    NoteOffEvent, NoteOnEvent, ParamValueEvent, TransportEvent, TransportFlags,
};
use clack_host::events::{EventFlags, EventHeader, Match};
use clack_host::extensions::prelude::*;
use clack_host::prelude::*;
use clack_host::utils::{BeatTime, SecondsTime};

/// Builds `target/bundled/Cantor.clap` (debug, allocation-checked) once per
/// test binary.
pub fn bundle() -> &'static Path {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| build_bundle(&["--features", "assert_process_allocs"]))
}

/// Builds the release bundle (for benchmarks) once per binary.
pub fn release_bundle() -> &'static Path {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| build_bundle(&["--release"]))
}

fn build_bundle(args: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["xtask", "bundle", "cantor"])
        .args(args)
        .current_dir(&root)
        .status()
        .expect("cargo xtask runs");
    assert!(status.success(), "building the Cantor bundle failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root.join("target"));
    target.join("bundled").join("Cantor.clap")
}

struct TestHost;

#[derive(Default)]
pub struct TestShared {
    callback_requested: AtomicBool,
}

impl<'a> SharedHandler<'a> for TestShared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::SeqCst);
    }
}

/// The host side of the GUI extension: nice-plug's editor needs it. The
/// test's window has a fixed size, so resize requests are declined.
impl HostGuiImpl for TestShared {
    fn resize_hints_changed(&self) {}
    fn request_resize(&self, _new_size: GuiSize) -> Result<(), HostError> {
        Err(HostError::Message("the test window has a fixed size"))
    }
    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn closed(&self, _was_destroyed: bool) {}
}

impl HostHandlers for TestHost {
    type Shared<'a> = TestShared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<HostGui>();
    }
}

/// A note the plugin sent, at an absolute sample position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutNote {
    pub sample: u64,
    pub on: bool,
    pub key: u16,
    pub channel: u16,
}

/// A note to send, at a sample offset within its block.
#[derive(Clone, Copy, Debug)]
pub struct InNote {
    pub offset: u32,
    pub on: bool,
    pub key: u16,
}

/// The transport of one block.
#[derive(Clone, Copy, Debug)]
pub struct Transport {
    pub playing: bool,
    pub beat: f64,
    pub tempo: f64,
    pub numerator: u16,
    pub denominator: u16,
    /// The host's loop (start, end in beats) when looping is on.
    pub looping: Option<(f64, f64)>,
}

/// A loaded, active, processing Cantor instance.
pub struct Cantor {
    instance: PluginInstance<TestHost>,
    processor: Option<StartedPluginAudioProcessor<TestHost>>,
    pub sample_rate: f64,
    pub max_block: u32,
    /// Samples processed so far (absolute output positions).
    pub position: u64,
    /// Samples played by [`Cantor::play_looped`] so far: where its loop
    /// goes on from.
    pub looped: u64,
}

impl Cantor {
    /// The test bundle (debug, allocation-checked).
    pub fn new(sample_rate: f64, max_block: u32) -> Cantor {
        Self::from_bundle(bundle(), sample_rate, max_block)
    }

    pub fn from_bundle(path: &Path, sample_rate: f64, max_block: u32) -> Cantor {
        // SAFETY: loading a CLAP bundle runs its entry code; it is our own.
        let entry = unsafe { PluginEntry::load(path) }.expect("the bundle loads");
        let factory = entry.get_plugin_factory().expect("a plugin factory");
        let descriptor = factory.plugin_descriptors().next().expect("one plugin");
        let id = descriptor.id().expect("an id").to_owned();
        assert_eq!(id.to_bytes(), b"org.cantor.cantor");
        let info = HostInfo::new("cantor-tests", "cantor", "https://example.invalid", "0.1.0")
            .expect("host info");
        let mut instance =
            PluginInstance::<TestHost>::new(|_| TestShared::default(), |_| (), &entry, &id, &info)
                .expect("instantiates");
        let config = PluginAudioConfiguration {
            sample_rate,
            min_frames_count: 1,
            max_frames_count: max_block,
        };
        let stopped = instance.activate(|_, _| (), config).expect("activates");
        let processor = stopped.start_processing().expect("starts processing");
        Cantor {
            instance,
            processor: Some(processor),
            sample_rate,
            max_block,
            position: 0,
            looped: 0,
        }
    }

    /// Deactivates and reactivates the plugin with the same configuration,
    /// as a host does when it restarts its audio engine.
    pub fn restart(&mut self) {
        let stopped = self.processor.take().expect("processing").stop_processing();
        self.instance.deactivate(stopped);
        let config = PluginAudioConfiguration {
            sample_rate: self.sample_rate,
            min_frames_count: 1,
            max_frames_count: self.max_block,
        };
        let stopped = self
            .instance
            .activate(|_, _| (), config)
            .expect("reactivates");
        self.processor = Some(stopped.start_processing().expect("starts processing"));
    }

    /// Processes one block of `frames` samples; returns what the plugin sent.
    pub fn process(
        &mut self,
        frames: u32,
        notes: &[InNote],
        transport: Option<Transport>,
    ) -> Vec<OutNote> {
        self.process_automated(frames, notes, &[], transport)
    }

    /// The CLAP id of the parameter named `name`.
    pub fn param_id(&mut self, name: &str) -> ClapId {
        let params: PluginParams = self
            .instance
            .plugin_shared_handle()
            .get_extension()
            .expect("the plugin has parameters");
        let handle = self.instance.plugin_handle();
        let mut buffer = ParamInfoBuffer::new();
        (0..params.count(&handle))
            .find_map(|i| {
                let info = params.get_info(&handle, i, &mut buffer)?;
                (info.name == name.as_bytes()).then_some(info.id)
            })
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }

    /// Processes one block with parameter changes inside it (sample offset,
    /// parameter id, plain value), as a host plays automation.
    pub fn process_automated(
        &mut self,
        frames: u32,
        notes: &[InNote],
        automation: &[(u32, ClapId, f64)],
        transport: Option<Transport>,
    ) -> Vec<OutNote> {
        assert!(frames <= self.max_block);
        let mut input = EventBuffer::with_capacity(notes.len() + automation.len());
        for &(offset, id, value) in automation {
            input.push(&ParamValueEvent::new(offset, id, Pckn::match_all(), value));
        }
        for n in notes {
            let pckn = Pckn::new(0u16, 0u16, n.key, Match::All);
            if n.on {
                input.push(&NoteOnEvent::new(n.offset, pckn, 0.8));
            } else {
                input.push(&NoteOffEvent::new(n.offset, pckn, 0.0));
            }
        }
        input.sort();
        let mut output = EventBuffer::with_capacity(notes.len() * 2 + 64);
        let event = transport.map(transport_event);
        // SAFETY: zero audio ports, `frames` frames.
        let audio_in = unsafe { InputAudioBuffers::from_raw_buffers(&[], frames) };
        // SAFETY: as above.
        let mut audio_out = unsafe { OutputAudioBuffers::from_raw_buffers(&mut [], frames) };
        self.processor
            .as_mut()
            .expect("processing")
            .process(
                &audio_in,
                &mut audio_out,
                &input.as_input(),
                &mut output.as_output(),
                Some(self.position),
                event.as_ref(),
            )
            .expect("process succeeds");
        let start = self.position;
        self.position += frames as u64;
        output
            .iter()
            .filter_map(|e| {
                if let Some(on) = e.as_event::<NoteOnEvent>() {
                    Some(OutNote {
                        sample: start + on.time() as u64,
                        on: true,
                        key: on.key().into_specific().unwrap_or(0),
                        channel: on.channel().into_specific().unwrap_or(0),
                    })
                } else {
                    e.as_event::<NoteOffEvent>().map(|off| OutNote {
                        sample: start + off.time() as u64,
                        on: false,
                        key: off.key().into_specific().unwrap_or(0),
                        channel: off.channel().into_specific().unwrap_or(0),
                    })
                }
            })
            .collect()
    }

    fn main_thread_callbacks(&mut self) {
        if self
            .instance
            .access_shared_handler(|s| s.callback_requested.swap(false, Ordering::SeqCst))
        {
            self.instance.call_on_main_thread_callback();
        }
    }

    /// Opens the editor embedded in the X11 window `parent` at `scale`;
    /// returns the size the editor asked for, in pixels.
    pub fn open_editor(&mut self, parent: u64, scale: f64) -> (u32, u32) {
        let gui: PluginGui = self
            .instance
            .plugin_shared_handle()
            .get_extension()
            .expect("the plugin has a GUI");
        let handle = self.instance.plugin_handle();
        let embedded = GuiConfiguration {
            api_type: GuiApiType::X11,
            is_floating: false,
        };
        assert!(gui.is_api_supported(&handle, embedded));
        gui.create(&handle, embedded).expect("gui.create");
        // Hosts may call set_scale; an X11 plugin may decline it.
        let _ = gui.set_scale(&handle, scale);
        let size = gui.get_size(&handle).expect("gui.get_size");
        // SAFETY: the window stays open until the editor is destroyed.
        unsafe { gui.set_parent(&handle, Window::from_x11_handle(parent as _)) }
            .expect("gui.set_parent");
        gui.show(&handle).expect("gui.show");
        (size.width, size.height)
    }

    /// Closes the editor opened by [`Cantor::open_editor`].
    pub fn close_editor(&mut self) {
        let gui: PluginGui = self
            .instance
            .plugin_shared_handle()
            .get_extension()
            .expect("the plugin has a GUI");
        let handle = self.instance.plugin_handle();
        gui.hide(&handle).expect("gui.hide");
        gui.destroy(&handle);
    }

    /// Plays `melody` ((beat on, beat off, key)) once from beat 0 over
    /// `loop_beats` at `tempo` in 4/4, in blocks of `block` samples; returns
    /// the plugin's output with sample positions relative to the pass start.
    pub fn play_pass(
        &mut self,
        melody: &[(f64, f64, u16)],
        loop_beats: f64,
        tempo: f64,
        block: u32,
    ) -> Vec<OutNote> {
        let start = self.position;
        self.play_pass_with(melody, loop_beats, block, (4, 4), |_| tempo)
            .into_iter()
            .map(|(_, mut n)| {
                n.sample -= start;
                n
            })
            .collect()
    }

    /// Loops `melody` (4/4 at `tempo`) until the harmony sounds in every
    /// bar of it (the worker needs a pass to hear the bars and a moment to
    /// compose); returns the last pass's output, as [`Cantor::play_pass`].
    pub fn loop_until_harmonized(
        &mut self,
        melody: &[(f64, f64, u16)],
        loop_beats: f64,
        tempo: f64,
        block: u32,
    ) -> Vec<OutNote> {
        let bar_samples = 4.0 * 60.0 / tempo * self.sample_rate;
        let bars = (loop_beats / 4.0).ceil() as usize;
        for _ in 0..60 {
            let out = self.play_pass(melody, loop_beats, tempo, block);
            let mut heard = vec![false; bars];
            for n in out.iter().filter(|n| n.on && n.channel != 0) {
                heard[((n.sample as f64 / bar_samples) as usize).min(bars - 1)] = true;
            }
            if heard.iter().all(|h| *h) {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!("no harmony after 60 passes");
    }

    /// Plays `melody` once from beat 0 over `loop_beats` in `meter`, in
    /// blocks of `block` samples, each block at the tempo `tempo_at` gives
    /// for its first beat (a host's tempo changes land on block starts).
    /// Returns the output, each note with its song position in beats: its
    /// block's start beat plus its offset at that block's tempo, which is
    /// how a host maps the plugin's events to the timeline.
    pub fn play_pass_with(
        &mut self,
        melody: &[(f64, f64, u16)],
        loop_beats: f64,
        block: u32,
        meter: (u16, u16),
        tempo_at: impl Fn(f64) -> f64,
    ) -> Vec<(f64, OutNote)> {
        let mut out = Vec::new();
        let mut beat = 0.0;
        loop {
            let tempo = tempo_at(beat);
            let beats_per_sample = tempo / 60.0 / self.sample_rate;
            let left = ((loop_beats - beat) / beats_per_sample).round();
            if left < 1.0 {
                break;
            }
            let frames = block.min(left as u32);
            let end = beat + frames as f64 * beats_per_sample;
            let mut notes = Vec::new();
            for &(on, off, key) in melody {
                for (at, is_on) in [(on, true), (off, false)] {
                    // A note-off at the loop end is sent at its last sample.
                    let at = if at >= loop_beats {
                        loop_beats - beats_per_sample
                    } else {
                        at
                    };
                    if at >= beat && at < end {
                        let offset = ((at - beat) / beats_per_sample)
                            .round()
                            .min(frames as f64 - 1.0) as u32;
                        notes.push(InNote {
                            offset,
                            on: is_on,
                            key,
                        });
                    }
                }
            }
            let transport = Transport {
                playing: true,
                beat,
                tempo,
                numerator: meter.0,
                denominator: meter.1,
                looping: None,
            };
            let block_start = self.position;
            for n in self.process(frames, &notes, Some(transport)) {
                let at = beat + (n.sample - block_start) as f64 * beats_per_sample;
                out.push((at, n));
            }
            beat = end;
        }
        out
    }

    /// The plugin's saved state.
    pub fn save_state(&mut self) -> Vec<u8> {
        self.main_thread_callbacks();
        let state: PluginState = self
            .instance
            .plugin_shared_handle()
            .get_extension()
            .expect("state extension");
        let mut bytes = Vec::new();
        state
            .save(&self.instance.plugin_handle(), &mut bytes)
            .expect("state save");
        bytes
    }

    pub fn load_state(&mut self, bytes: &[u8]) {
        let state: PluginState = self
            .instance
            .plugin_shared_handle()
            .get_extension()
            .expect("state extension");
        let mut reader = bytes;
        state
            .load(&self.instance.plugin_handle(), &mut reader)
            .expect("state load");
        self.main_thread_callbacks();
    }

    /// State bytes for `json`, framed as nice-plug frames them.
    pub fn frame_state(json: &serde_json::Value) -> Vec<u8> {
        let body = serde_json::to_vec(json).expect("JSON");
        let mut bytes = (body.len() as u64).to_le_bytes().to_vec();
        bytes.extend(body);
        bytes
    }

    /// The saved state's JSON (nice-plug frames it with a u64 length).
    pub fn state_json(bytes: &[u8]) -> serde_json::Value {
        let len = u64::from_le_bytes(bytes[..8].try_into().expect("length")) as usize;
        serde_json::from_slice(&bytes[8..8 + len]).expect("state JSON")
    }
}

impl Drop for Cantor {
    fn drop(&mut self) {
        if let Some(p) = self.processor.take() {
            let stopped = p.stop_processing();
            self.instance.deactivate(stopped);
        }
    }
}

fn transport_event(t: Transport) -> TransportEvent {
    let bar_beats = t.numerator as f64 * 4.0 / t.denominator as f64;
    let bar_start = (t.beat / bar_beats).floor() * bar_beats;
    let mut flags = TransportFlags::HAS_TEMPO
        | TransportFlags::HAS_BEATS_TIMELINE
        | TransportFlags::HAS_TIME_SIGNATURE;
    if t.playing {
        flags |= TransportFlags::IS_PLAYING;
    }
    if t.looping.is_some() {
        flags |= TransportFlags::IS_LOOP_ACTIVE;
    }
    let (loop_start, loop_end) = t.looping.unwrap_or((0.0, 0.0));
    TransportEvent {
        header: EventHeader::new_core(0, EventFlags::empty()),
        flags,
        song_pos_beats: BeatTime::from_float(t.beat),
        song_pos_seconds: SecondsTime::from_float(t.beat * 60.0 / t.tempo),
        tempo: t.tempo,
        tempo_inc: 0.0,
        loop_start_beats: BeatTime::from_float(loop_start),
        loop_end_beats: BeatTime::from_float(loop_end),
        loop_start_seconds: SecondsTime::from_float(loop_start * 60.0 / t.tempo),
        loop_end_seconds: SecondsTime::from_float(loop_end * 60.0 / t.tempo),
        bar_start: BeatTime::from_float(bar_start),
        bar_number: (t.beat / bar_beats).floor() as i32,
        time_signature_numerator: t.numerator,
        time_signature_denominator: t.denominator,
    }
}

/// How a host plays a loop (issue #12: real DAWs differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopingHost {
    /// Reports the loop and splits the cycle that crosses its end there,
    /// handing the half before the wrap every event of the whole cycle
    /// (those past the wrap at its last sample) and the half after it its
    /// own events again: the loop's first note arrives before the loop end
    /// and once more at the loop start (what Ardour 7 does to the note on
    /// the loop's first sample).
    SplitsCycles,
    /// Neither reports the loop nor splits the block at its end: the block
    /// crossing it runs on in the host's position, the next one starts
    /// near the loop start.
    Unreported,
}

/// A note the plugin sent during [`Cantor::play_looped`]: the pass it fell
/// in (counted from the first call) and its sample from that pass's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopedNote {
    pub pass: u64,
    pub at: u64,
    pub note: OutNote,
}

/// Where pass `k` of a loop of `cycle` samples (fractional) starts: at the
/// sample its start rounds to, where a host that counts samples wraps.
pub fn pass_start(k: u64, cycle: f64) -> u64 {
    (k as f64 * cycle).round() as u64
}

impl Cantor {
    /// Plays blocks of the given lengths through `host` looping `melody`
    /// ((beat on, beat off, key), 4/4 at `tempo`) over beats
    /// `0..loop_beats`, going on from where the last call stopped
    /// ([`Cantor::looped`]). A note-off at the loop end is sent at the
    /// pass's last sample.
    pub fn play_looped(
        &mut self,
        host: LoopingHost,
        melody: &[(f64, f64, u16)],
        loop_beats: f64,
        tempo: f64,
        blocks: &[u32],
    ) -> Vec<LoopedNote> {
        let bps = tempo / 60.0 / self.sample_rate;
        let cycle = loop_beats / bps;
        let pass_of = |t: u64| {
            let mut k = (t as f64 / cycle).floor() as u64;
            while pass_start(k + 1, cycle) <= t {
                k += 1;
            }
            while k > 0 && pass_start(k, cycle) > t {
                k -= 1;
            }
            k
        };
        let mut out = Vec::new();
        for &frames in blocks {
            let t0 = self.looped;
            let t1 = t0 + frames as u64;
            // The melody's events in this block, in song samples.
            let mut events = Vec::new();
            for k in pass_of(t0)..=pass_of(t1 - 1) {
                let (start, next) = (pass_start(k, cycle), pass_start(k + 1, cycle));
                for &(on, off, key) in melody {
                    for (beat, is_on) in [(on, true), (off, false)] {
                        let t = if beat >= loop_beats {
                            next - 1
                        } else {
                            start + (beat / bps).round() as u64
                        };
                        if (t0..t1).contains(&t) {
                            events.push((t, is_on, key));
                        }
                    }
                }
            }
            let wrap = pass_start(pass_of(t0) + 1, cycle);
            let halves: Vec<(u64, u64)> = match host {
                LoopingHost::SplitsCycles if wrap > t0 && wrap < t1 => {
                    vec![(t0, wrap), (wrap, t1)]
                }
                _ => vec![(t0, t1)],
            };
            for (h0, h1) in halves {
                let len = (h1 - h0) as u32;
                let notes: Vec<InNote> = events
                    .iter()
                    .filter(|&&(t, _, _)| t >= h0)
                    .map(|&(t, on, key)| InNote {
                        offset: ((t - h0) as u32).min(len - 1),
                        on,
                        key,
                    })
                    .collect();
                let beat = (h0 - pass_start(pass_of(h0), cycle)) as f64 * bps;
                let transport = Transport {
                    playing: true,
                    beat,
                    tempo,
                    numerator: 4,
                    denominator: 4,
                    looping: (host == LoopingHost::SplitsCycles).then_some((0.0, loop_beats)),
                };
                let first = self.position;
                for note in self.process(len, &notes, Some(transport)) {
                    let t = h0 + (note.sample - first);
                    let pass = pass_of(t);
                    out.push(LoopedNote {
                        pass,
                        at: t - pass_start(pass, cycle),
                        note,
                    });
                }
            }
            self.looped = t1;
        }
        out
    }
}

/// A note of the composition saved in a state: grid steps (16ths from song
/// position zero), key, and the output channel of its voice (S A T B on
/// channels 0–3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ComposedNote {
    pub start: i64,
    pub end: i64,
    pub key: u16,
    pub channel: u16,
}

/// The alto, tenor and bass notes of the harmony in a saved state, read
/// from its cells (pitch onsets, holds and rests per voice), with adjacent
/// bars joined so a note held over a bar line is one note: what the plugin
/// should play.
pub fn composed_harmony(state: &serde_json::Value) -> Vec<ComposedNote> {
    let session: serde_json::Value = serde_json::from_str(
        state["fields"]["session"]
            .as_str()
            .expect("a saved session"),
    )
    .expect("session JSON");
    let harmony = session["composition"]["harmony"]
        .as_object()
        .expect("a harmony map");
    let mut bars: Vec<(i64, &Vec<serde_json::Value>)> = harmony
        .iter()
        .map(|(start, cells)| {
            (
                start.parse().expect("a bar start"),
                cells.as_array().expect("cells"),
            )
        })
        .collect();
    bars.sort_by_key(|(start, _)| *start);
    let mut notes = Vec::new();
    for voice in 1..4usize {
        // (start, key) of the note sounding, and the step after the last cell.
        let mut sounding: Option<(i64, u16)> = None;
        let mut next_step: Option<i64> = None;
        for (start, cells) in &bars {
            if next_step != Some(*start) {
                if let (Some((on, key)), Some(end)) = (sounding.take(), next_step) {
                    notes.push(ComposedNote {
                        start: on,
                        end,
                        key,
                        channel: voice as u16,
                    });
                }
            }
            for (i, cell) in cells.iter().enumerate() {
                let step = start + i as i64;
                let token = &cell[voice];
                let pitch = token.get("Pitch").and_then(|p| p.as_u64());
                if pitch.is_some() || token == "Rest" {
                    if let Some((on, key)) = sounding.take() {
                        notes.push(ComposedNote {
                            start: on,
                            end: step,
                            key,
                            channel: voice as u16,
                        });
                    }
                }
                if let Some(p) = pitch {
                    sounding = Some((step, p as u16));
                }
            }
            next_step = Some(start + cells.len() as i64);
        }
        if let (Some((on, key)), Some(end)) = (sounding, next_step) {
            notes.push(ComposedNote {
                start: on,
                end,
                key,
                channel: voice as u16,
            });
        }
    }
    notes.sort();
    notes
}
