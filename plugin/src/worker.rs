//! The worker thread: owns the model and its device, the window and the
//! composition, runs the sampler, and hands schedules to the audio thread.
//!
//! It talks to the audio thread only through the lock-free queues of
//! [`AudioLink`] / [`WorkerLink`]: captures in, schedules out, and spent
//! schedules back so the audio thread never frees memory. A composition in
//! progress is cancelled between noise levels when fresher input changes the
//! window, so the freshest input wins.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cantor_engine::model::{device_name, select_device, shipped};
use cantor_engine::sampler::{AnnealingFrame, Observer};
use cantor_engine::{CantorError, SamplerSettings, ScoreModel};

use crate::composer::{answer, harmonize, schedule, ComposeSettings, Composition};
use crate::params::{CantorParams, Mode, Session};
use crate::playback::Schedule;
use crate::window::{Capture, Window};

/// Capture messages the queue holds; a flood beyond this is dropped by the
/// audio thread (the window keeps what it had).
pub const CAPTURE_CAPACITY: usize = 8192;
/// Schedules in flight each way.
const SCHEDULE_CAPACITY: usize = 4;
/// How long the worker sleeps when idle.
const IDLE: Duration = Duration::from_millis(3);

/// The audio thread's ends of the queues.
pub struct AudioLink {
    pub captures: rtrb::Producer<Capture>,
    pub schedules: rtrb::Consumer<Box<Schedule>>,
    pub retired: rtrb::Producer<Box<Schedule>>,
}

/// The worker's ends of the queues.
pub struct WorkerLink {
    captures: rtrb::Consumer<Capture>,
    schedules: rtrb::Producer<Box<Schedule>>,
    retired: rtrb::Consumer<Box<Schedule>>,
}

pub fn link() -> (AudioLink, WorkerLink) {
    let (cp, cc) = rtrb::RingBuffer::new(CAPTURE_CAPACITY);
    let (sp, sc) = rtrb::RingBuffer::new(SCHEDULE_CAPACITY);
    // Room for every schedule that can be in flight plus the one playing.
    let (rp, rc) = rtrb::RingBuffer::new(SCHEDULE_CAPACITY + 2);
    (
        AudioLink {
            captures: cp,
            schedules: sc,
            retired: rp,
        },
        WorkerLink {
            captures: cc,
            schedules: sp,
            retired: rc,
        },
    )
}

/// What the worker tells the GUI and the tests. The GUI may lock it; the
/// audio thread never touches it.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// "CPU", "CUDA GPU", … once the model is loaded.
    pub device: String,
    pub model: String,
    pub error: Option<String>,
    /// Compositions finished.
    pub generations: u64,
    /// Compositions cancelled by fresher input.
    pub cancelled: u64,
    /// Milliseconds the last composition took.
    pub last_ms: f64,
    /// Progress of the composition under way: (level, levels).
    pub progress: Option<(usize, usize)>,
}

/// Requests from the GUI.
#[derive(Debug)]
pub enum Command {
    /// Load another model; on failure the current one stays.
    LoadModel(std::path::PathBuf),
    /// Regenerate everything in the window.
    RegenerateAll,
}

/// A running worker; dropping it stops and joins the thread.
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub commands: std::sync::mpsc::Sender<Command>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

static INSTANCE: AtomicU64 = AtomicU64::new(1);

impl Worker {
    pub fn spawn(
        link: WorkerLink,
        params: Arc<CantorParams>,
        status: Arc<Mutex<Status>>,
    ) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("cantor-worker".into())
                .spawn(move || {
                    let mut state = WorkerState::new(link, params, status, rx);
                    state.run(&stop);
                })
                .expect("spawning the worker thread")
        };
        Worker {
            stop,
            thread: Some(thread),
            commands: tx,
        }
    }
}

/// Parameters that change what is composed (a change regenerates all).
#[derive(Clone, Debug, PartialEq)]
struct ComposeKey {
    mode: Mode,
    seed: i32,
    steps: i32,
    temperature_centis: i32,
    key: cantor_engine::task::KeyChoice,
}

struct WorkerState {
    link: WorkerLink,
    params: Arc<CantorParams>,
    status: Arc<Mutex<Status>>,
    commands: std::sync::mpsc::Receiver<Command>,
    model: Option<ScoreModel>,
    window: Window,
    composition: Composition,
    stamp: (u64, u64),
    compose_key: Option<ComposeKey>,
    outputs: Option<([bool; 4], crate::composer::ChannelLayout, Mode)>,
    pending_answer: Option<i64>,
}

impl WorkerState {
    fn new(
        link: WorkerLink,
        params: Arc<CantorParams>,
        status: Arc<Mutex<Status>>,
        commands: std::sync::mpsc::Receiver<Command>,
    ) -> WorkerState {
        WorkerState {
            link,
            params,
            status,
            commands,
            model: None,
            window: Window::default(),
            composition: Composition::default(),
            stamp: (INSTANCE.fetch_add(1, Ordering::Relaxed) << 20, 0),
            compose_key: None,
            outputs: None,
            pending_answer: None,
        }
    }

    fn run(&mut self, stop: &AtomicBool) {
        self.load_default_model();
        while !stop.load(Ordering::SeqCst) {
            while let Ok(spent) = self.link.retired.pop() {
                drop(spent);
            }
            self.adopt_loaded_session();
            while let Ok(command) = self.commands.try_recv() {
                self.command(command);
            }
            let mut changed = self.drain_captures();
            changed |= self.check_params();
            let busy = changed || self.window.any_dirty() || self.pending_answer.is_some();
            if busy && self.model.is_some() {
                self.compose();
            } else {
                std::thread::sleep(IDLE);
            }
        }
    }

    fn load_default_model(&mut self) {
        let device = if cfg!(any(feature = "cuda", feature = "metal")) {
            select_device("auto").unwrap_or(cantor_engine::Device::Cpu)
        } else {
            cantor_engine::Device::Cpu
        };
        match shipped::load(&device) {
            Ok(model) => self.set_model(model),
            Err(e) => self.status.lock().expect("status").error = Some(e.to_string()),
        }
    }

    fn set_model(&mut self, model: ScoreModel) {
        let mut status = self.status.lock().expect("status");
        status.device = device_name(model.device()).to_string();
        status.model = model.card.name.clone();
        status.error = None;
        self.model = Some(model);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::LoadModel(path) => {
                let device = self
                    .model
                    .as_ref()
                    .map(|m| m.device().clone())
                    .unwrap_or(cantor_engine::Device::Cpu);
                match ScoreModel::load(&path, &device) {
                    Ok(model) => {
                        self.set_model(model);
                        self.window.mark_all_dirty();
                    }
                    // The current model keeps working.
                    Err(e) => self.status.lock().expect("status").error = Some(e.to_string()),
                }
            }
            Command::RegenerateAll => self.window.mark_all_dirty(),
        }
    }

    /// Takes a session the host loaded (a project opened): its window and
    /// composition replace ours and play at once, without recomputing.
    fn adopt_loaded_session(&mut self) {
        let Ok(session) = self.params.session.try_read() else {
            return;
        };
        if session.stamp == self.stamp || *session == Session::default() {
            return;
        }
        self.window = session.window.clone();
        self.composition = session.composition.clone();
        self.stamp = session.stamp;
        drop(session);
        // The project's parameters came with it: take them as the new
        // baseline instead of as a change that calls for recomposing.
        self.compose_key = None;
        self.outputs = None;
        self.publish();
    }

    /// Moves captures into the window; true if a bar changed.
    fn drain_captures(&mut self) -> bool {
        let max_bars = self.params.window_bars.value().max(1) as usize;
        let mut changed = false;
        while let Ok(capture) = self.link.captures.pop() {
            changed |= self.take(capture, max_bars);
        }
        changed
    }

    fn take(&mut self, capture: Capture, max_bars: usize) -> bool {
        // New input where an answer is playing: the player goes on, the
        // answer stops (freshest input wins).
        if let (Capture::NoteOn { beat, .. }, Some((start, _))) =
            (capture, &self.composition.answer)
        {
            if crate::grid_time::nearest_step(beat) >= *start {
                self.composition.answer = None;
                self.publish();
            }
        }
        let dirty = self.window.take(capture, max_bars);
        if let Some(at) = self.window.take_phrase_end() {
            if self.params.mode.value() == Mode::Continue {
                self.pending_answer = Some(at);
            }
        }
        dirty
    }

    /// Notices parameter changes: composing ones regenerate, output ones
    /// only rebuild the schedule.
    fn check_params(&mut self) -> bool {
        let p = &self.params;
        let key = ComposeKey {
            mode: p.mode.value(),
            seed: p.seed.value(),
            steps: p.steps.value(),
            temperature_centis: (p.temperature.value() * 100.0).round() as i32,
            key: p.key(),
        };
        let outputs = (p.voices(), p.layout(), p.mode.value());
        let mut changed = false;
        if self.compose_key.as_ref().is_some_and(|k| *k != key) {
            self.window.mark_all_dirty();
            changed = true;
        }
        self.compose_key = Some(key);
        if self.outputs.is_some_and(|o| o != outputs) {
            self.publish();
        }
        self.outputs = Some(outputs);
        changed
    }

    fn settings(&self) -> ComposeSettings {
        let p = &self.params;
        let model = self.model.as_ref().expect("model loaded");
        let mut sampler = SamplerSettings::from_defaults(&model.card.sampling);
        sampler.levels = p.steps.value().max(2) as usize;
        sampler.temperature = p.temperature.value();
        sampler.seed = p.seed.value() as u64;
        ComposeSettings {
            sampler,
            key: p.key(),
            continue_bars: p.continue_bars.value().max(1) as usize,
        }
    }

    fn compose(&mut self) {
        let settings = self.settings();
        let model = self.model.take().expect("model loaded");
        let started = Instant::now();
        let mode = self.params.mode.value();
        // Compose from a snapshot; the observer keeps taking captures into
        // the live window and cancels when a bar changes.
        let snapshot = self.window.clone();
        let dirty_bars: Vec<i64> = snapshot
            .bars
            .values()
            .filter(|b| b.dirty)
            .map(|b| b.start)
            .collect();
        let mut composition = self.composition.clone();
        let mut observer = Watch {
            state: self,
            cancel: false,
        };
        let result = match mode {
            Mode::Harmonize => harmonize(
                &model,
                &snapshot,
                &mut composition,
                &settings,
                &mut observer,
            )
            .map(|_| ()),
            Mode::Continue => match observer.state.pending_answer {
                Some(at) => answer(
                    &model,
                    &snapshot,
                    &mut composition,
                    at,
                    &settings,
                    &mut observer,
                ),
                None => Ok(()),
            },
        };
        self.model = Some(model);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let mut status = self.status.lock().expect("status");
        status.progress = None;
        match result {
            Ok(()) => {
                status.generations += 1;
                status.last_ms = ms;
                status.error = None;
                drop(status);
                if mode == Mode::Continue {
                    self.pending_answer = None;
                }
                // Bars edited while we worked stay dirty for the next round.
                let still_same: Vec<i64> = dirty_bars
                    .into_iter()
                    .filter(|s| {
                        self.window.bars.get(s).map(|b| &b.melody)
                            == snapshot.bars.get(s).map(|b| &b.melody)
                    })
                    .collect();
                self.window.mark_clean(&still_same);
                if mode == Mode::Harmonize {
                    // Harmony of bars the window has since dropped goes too.
                    composition
                        .harmony
                        .retain(|s, _| self.window.bars.contains_key(s));
                }
                self.composition = composition;
                self.publish();
            }
            Err(CantorError::Cancelled) => status.cancelled += 1,
            Err(e) => {
                status.error = Some(e.to_string());
                drop(status);
                // Don't retry the same input forever.
                self.window.mark_clean(&dirty_bars);
                self.pending_answer = None;
            }
        }
    }

    /// Sends the schedule for the current composition and saves the session.
    fn publish(&mut self) {
        let p = &self.params;
        let mut composition = self.composition.clone();
        if p.mode.value() == Mode::Continue {
            composition.harmony.clear();
        } else {
            composition.answer = None;
        }
        let next = Box::new(schedule(&composition, p.voices(), p.layout()));
        if self.link.schedules.push(next).is_err() {
            // The audio thread has not taken the last ones yet: make room by
            // waiting briefly (it takes one per block).
            std::thread::sleep(Duration::from_millis(20));
            let again = Box::new(schedule(&composition, p.voices(), p.layout()));
            let _ = self.link.schedules.push(again);
        }
        self.stamp.1 += 1;
        if let Ok(mut session) = self.params.session.write() {
            *session = Session {
                window: self.window.clone(),
                composition: self.composition.clone(),
                stamp: self.stamp,
            };
        }
    }
}

/// Observes a composition: reports progress, keeps the window current and
/// cancels when the input changed.
struct Watch<'a> {
    state: &'a mut WorkerState,
    cancel: bool,
}

impl Observer for Watch<'_> {
    fn on_level(&mut self, frame: &AnnealingFrame) -> ControlFlow<()> {
        if let Ok(mut s) = self.state.status.lock() {
            s.progress = Some((frame.level, frame.levels));
        }
        self.cancel |= self.state.drain_captures();
        if self.cancel {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}
