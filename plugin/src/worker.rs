//! The worker thread: owns the model and its device, the window and the
//! composition, runs the sampler, and hands schedules to the audio thread.
//!
//! It talks to the audio thread only through the lock-free queues of
//! [`crate::link`]: captures in, schedules out, and spent
//! schedules back so the audio thread never frees memory. A composition in
//! progress is cancelled between noise levels when fresher input changes the
//! window, so the freshest input wins.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cantor_engine::grid::Voice;
use cantor_engine::model::{device_name, select_device, shipped};
use cantor_engine::sampler::{AnnealingFrame, Observer};
use cantor_engine::{CantorError, KeyChoice, SamplerSettings, ScoreModel};

use crate::composer::Mode;
use crate::composer::{answer, harmonize, schedule, ComposeSettings, Composition, Watcher};
use crate::link::{Capture, WorkerLink};
use crate::params::CantorParams;
use crate::session::Session;
pub use crate::shared::{Annealing, Command, Shared, Status};
use crate::take::{regenerate, take_bars, History, Region};
use crate::window::Window;

/// A running worker; dropping it stops and joins the thread.
pub struct Worker {
    /// Set by the plugin's thread on drop; read by the worker thread
    /// between turns and by its compositions between noise levels.
    stop: Arc<AtomicBool>,
    /// The worker thread, joined on drop (the plugin's thread).
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long the worker waits for a command when idle before it looks at
/// the captures again.
const IDLE: Duration = Duration::from_millis(3);

static INSTANCE: AtomicU64 = AtomicU64::new(1);

/// The pool the worker runs in: one thread. candle runs its CPU ops on the
/// current rayon pool, and at batch 1 the network's ops are too small for a
/// second thread to pay for its synchronisation (README benchmarks), while
/// the host keeps its other cores for audio. `None` if the OS refuses a
/// thread; the worker then uses rayon's global pool.
pub fn inference_pool() -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .thread_name(|_| "cantor-inference".into())
        .build()
        .ok()
}

/// Where the worker runs the model: the GPU when this build has a GPU
/// backend (`--features cuda` or `metal`) and the machine has the device,
/// else the CPU — with, in a GPU build, why the GPU is not used (shown in
/// the editor's status line).
pub fn inference_device() -> (cantor_engine::Device, Option<String>) {
    if !cfg!(any(feature = "cuda", feature = "metal")) {
        return (cantor_engine::Device::Cpu, None);
    }
    let backend = if cfg!(feature = "cuda") {
        "cuda"
    } else {
        "metal"
    };
    match select_device(backend) {
        Ok(device) => (device, None),
        Err(e) => (
            cantor_engine::Device::Cpu,
            Some(format!("running on the CPU: {e}")),
        ),
    }
}

impl Worker {
    pub fn spawn(link: WorkerLink, params: Arc<CantorParams>, shared: Arc<Shared>) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("cantor-worker".into())
                .spawn(move || {
                    let mut state = WorkerState::new(link, params, shared, stop);
                    match inference_pool() {
                        Some(pool) => pool.install(|| state.run()),
                        None => state.run(),
                    }
                })
                .expect("spawning the worker thread")
        };
        Worker {
            stop,
            thread: Some(thread),
        }
    }
}

/// Parameters that change what is composed (a change regenerates all);
/// read from the parameters and compared by the worker thread alone.
/// Floats are kept in fixed point so that equal settings compare equal.
#[derive(Clone, Debug, PartialEq)]
struct ComposeKey {
    /// Harmonize or continue.
    mode: Mode,
    /// The seed parameter (a new value asks for a new variation).
    seed: i32,
    /// Noise levels.
    levels: i32,
    /// Temperature × 100.
    temperature_centis: i32,
    /// Rules' weight λ × 10.
    rules_tenths: i32,
    /// The key lock.
    key: cantor_engine::task::KeyChoice,
}

/// The worker's state. Every field is owned by the worker thread, except
/// where a field says it is shared (and with which thread).
struct WorkerState {
    /// Set by [`Worker`]'s drop (main thread): the loop ends, and a
    /// composition under way is cancelled at its next noise level.
    stop: Arc<AtomicBool>,
    /// The worker's ends of the audio thread's queues ([`crate::link`]).
    link: WorkerLink,
    /// The plugin's parameters, shared with the host, the editor and the
    /// audio thread (lock-free reads; the saved session behind a lock).
    params: Arc<CantorParams>,
    /// Shared with the editor (status snapshot, commands, cancel) and the
    /// audio thread (playhead atomics only).
    shared: Arc<Shared>,
    /// The score model; `None` until one loads.
    model: Option<Arc<ScoreModel>>,
    /// The bars heard, from the captures.
    window: Window,
    /// What was composed for the window, and the answer in Continue.
    composition: Composition,
    /// Who wrote the saved session: (this instance, a counter).
    stamp: (u64, u64),
    /// The parameters the composition was made with; a change recomposes.
    compose_key: Option<ComposeKey>,
    /// The parameters the last schedule was built with (voices on, channel
    /// layout, mode); a change reschedules without recomposing.
    outputs: Option<([bool; 4], crate::composer::ChannelLayout, Mode)>,
    /// In Continue: the step an answer is due at, until it is composed.
    pending_answer: Option<i64>,
    /// A region the editor asked to regenerate.
    pending_region: Option<Region>,
    /// The editor's masked region.
    mask: Option<Region>,
    /// Bars whose composed notes the musician kept.
    kept: BTreeSet<i64>,
    /// Regenerations to undo and redo.
    history: History,
    /// Regenerations asked for; each is a new variation.
    variation: u64,
    /// The character pad's position for bars the window has given none
    /// ([`Window::character_at`]; the others take the value the playhead
    /// read at their start): the parameters' values when they change (host
    /// automation, a saved project), or the editor's pad when it is
    /// released ([`Command::SetCharacter`]), whichever came last.
    character: cantor_engine::Character,
    /// The parameters' character as last seen, to notice their changes.
    character_params: Option<cantor_engine::Character>,
}

/// Locks the status (the editor holds it only to copy it).
macro_rules! status {
    ($state:expr) => {
        $state.shared.status.lock().expect("status")
    };
}

impl WorkerState {
    fn new(
        link: WorkerLink,
        params: Arc<CantorParams>,
        shared: Arc<Shared>,
        stop: Arc<AtomicBool>,
    ) -> WorkerState {
        WorkerState {
            stop,
            link,
            params,
            shared,
            model: None,
            window: Window::default(),
            composition: Composition::default(),
            stamp: (INSTANCE.fetch_add(1, Ordering::Relaxed) << 20, 0),
            compose_key: None,
            outputs: None,
            pending_answer: None,
            pending_region: None,
            mask: None,
            kept: BTreeSet::new(),
            history: History::default(),
            variation: 0,
            character: cantor_engine::Character::NEUTRAL,
            character_params: None,
        }
    }

    /// Until the plugin is dropped: one turn of the loop at a time, each
    /// guarded, so a panic in a composition (a bug, or input nothing
    /// checked) is reported in the status line and the worker goes on with
    /// its model and a fresh take instead of dying silently.
    fn run(&mut self) {
        self.load_default_model();
        while !self.stop.load(Ordering::SeqCst) {
            let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.turn()));
            if let Err(panic) = turn {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into());
                self.recover(&what);
            }
        }
    }

    /// After a panic: the take is dropped (it may be what caused it), the
    /// model and the parameters are kept, and the status line says so.
    fn recover(&mut self, what: &str) {
        // A panic while a lock was held poisons it; what it guards is
        // replaced below, so the poison is cleared rather than re-panicked on.
        self.shared.status.clear_poison();
        self.params.session.clear_poison();
        self.forget_take();
        if let Ok(mut status) = self.shared.status.lock() {
            status.progress = None;
            status.annealing = None;
            status.error = Some(format!(
                "Cantor hit an internal error ({what}) and started a fresh take; the model is kept"
            ));
        }
        // A panic inside publish must not loop forever: the next turn
        // publishes again anyway.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.publish()));
    }

    /// Drops the take (window, composition, mask, kept bars, history and
    /// what was pending); the model and the parameters stay, and the next
    /// turn takes the parameters as a new baseline.
    fn forget_take(&mut self) {
        self.window = Window::default();
        self.composition = Composition::default();
        self.mask = None;
        self.pending_region = None;
        self.pending_answer = None;
        self.kept.clear();
        self.history = History::default();
        self.compose_key = None;
        self.outputs = None;
    }

    /// One turn of the worker's loop.
    fn turn(&mut self) {
        while let Ok(spent) = self.link.retired.pop() {
            drop(spent);
        }
        self.adopt_loaded_session();
        for command in self.shared.take_commands() {
            self.command(command);
        }
        let mut changed = self.drain_captures();
        changed |= self.check_params();
        let busy = changed || self.window.any_dirty() || self.pending_answer.is_some();
        if self.model.is_none() {
            self.idle();
        } else if let Some(region) = self.pending_region.take() {
            self.regenerate(region);
        } else if busy {
            self.compose();
        } else {
            self.shared.cancel.store(false, Ordering::SeqCst);
            self.idle();
        }
    }

    /// Nothing to do: waits a moment for a command (taken at once).
    fn idle(&mut self) {
        if let Some(command) = self.shared.wait_for_command(IDLE) {
            self.command(command);
        }
    }

    fn load_default_model(&mut self) {
        let (device, no_gpu) = inference_device();
        match shipped::load(&device) {
            Ok(model) => {
                self.set_model(model);
                status!(self).message = no_gpu;
            }
            Err(e) => status!(self).error = Some(e.to_string()),
        }
    }

    fn set_model(&mut self, model: ScoreModel) {
        let mut status = status!(self);
        status.device = device_name(model.device()).to_string();
        status.model = model.card.name.clone();
        status.error = None;
        self.model = Some(Arc::new(model));
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
                        status!(self).message = Some(format!("loaded {}", path.display()));
                        self.regenerate_all();
                    }
                    // The current model keeps working.
                    Err(e) => status!(self).error = Some(e.to_string()),
                }
            }
            Command::RegenerateAll => self.regenerate_all(),
            #[cfg(test)]
            Command::Panic => panic!("injected by a test"),
            Command::Regenerate(region) => {
                self.mask = Some(region);
                self.pending_region = Some(region);
                self.publish_view();
            }
            Command::SetCharacter(character, region) => self.set_character(character, region),
            Command::SetMask(region) => {
                self.mask = Some(region);
                self.publish_view();
            }
            Command::ClearMask => {
                self.mask = None;
                self.publish_view();
            }
            Command::Undo => {
                if let Some(region) = self.history.undo(&mut self.composition) {
                    self.mask = Some(region);
                    self.publish();
                }
            }
            Command::Redo => {
                if let Some(region) = self.history.redo(&mut self.composition) {
                    self.mask = Some(region);
                    self.publish();
                }
            }
            Command::Keep(region, keep) => {
                let mode = self.params.mode.value();
                for bar in take_bars(&self.window, &self.composition, mode) {
                    if bar.start < region.end && bar.end() > region.start {
                        if keep {
                            self.kept.insert(bar.start);
                        } else {
                            self.kept.remove(&bar.start);
                        }
                    }
                }
                self.publish_view();
            }
            Command::AdoptAnswer => self.adopt_answer(),
        }
    }

    /// The editor's pad was released at `character`: compositions take it
    /// from now on, and so do the bars of `region` (theirs until the
    /// playhead next enters them and reads the parameters there).
    fn set_character(&mut self, character: cantor_engine::Character, region: Option<Region>) {
        self.character = character;
        let Some(mask) = region else {
            return;
        };
        let mode = self.params.mode.value();
        for bar in take_bars(&self.window, &self.composition, mode) {
            if bar.start < mask.end && bar.end() > mask.start {
                self.window.set_character(bar.start, character);
            }
        }
    }

    /// Ends a composition's report (no progress, no annealing) and says how
    /// long it took, in milliseconds.
    fn finished(&self, started: Instant) -> (std::sync::MutexGuard<'_, Status>, f64) {
        let mut status = status!(self);
        status.progress = None;
        status.annealing = None;
        (status, started.elapsed().as_secs_f64() * 1e3)
    }

    /// Everything not kept is composed again.
    fn regenerate_all(&mut self) {
        self.window.mark_all_dirty();
        if self.params.mode.value() == Mode::Continue {
            if let Some((start, _)) = self.composition.answer {
                if !self.answer_kept() {
                    self.pending_answer = Some(start);
                }
            }
        }
    }

    /// Whether a bar of the answer is kept (then no new answer replaces it).
    fn answer_kept(&self) -> bool {
        take_bars(&self.window, &self.composition, Mode::Continue)
            .iter()
            .any(|b| b.answer && self.kept.contains(&b.start))
    }

    /// The answer becomes input: its soprano notes become heard bars and its
    /// alto, tenor and bass their harmony, so the next phrase goes on from it.
    fn adopt_answer(&mut self) {
        let max_bars = self.params.window_bars.value().max(1) as usize;
        match crate::take::adopt_answer(&mut self.window, &mut self.composition, max_bars) {
            Some(bars) => {
                status!(self).message = Some(format!(
                    "the answer's {bars} bars are now part of the window"
                ));
                self.publish();
            }
            None => status!(self).error = Some("there is no answer to copy into the window".into()),
        }
    }

    /// Regenerates exactly the masked cells; the edit can be undone.
    fn regenerate(&mut self, region: Region) {
        let mut settings = self.settings();
        self.variation += 1;
        settings.sampler.seed = settings
            .sampler
            .seed
            .wrapping_add(self.variation.wrapping_mul(0x9E37_79B9));
        let model = self.model.clone().expect("model loaded");
        let mode = self.params.mode.value();
        let started = Instant::now();
        let snapshot = self.window.clone();
        let mut composition = self.composition.clone();
        let mut observer = self.watch();
        let result = regenerate(
            &model,
            &snapshot,
            &mut composition,
            mode,
            region,
            &settings,
            &mut observer,
        );
        let (user_cancel, arrived) = (observer.user_cancel, observer.arrived);
        self.hear_arrived(arrived);
        let (mut status, ms) = self.finished(started);
        match result {
            Ok(edit) => {
                status.generations += 1;
                status.last_ms = ms;
                status.error = None;
                status.message = Some(format!(
                    "regenerated {} cells in {ms:.0} ms",
                    edit.changes.len()
                ));
                drop(status);
                // Keep what arrived meanwhile: only the edit's cells change.
                edit.apply(&mut self.composition, true);
                self.history.push(edit);
                self.publish();
            }
            Err(CantorError::Cancelled) => {
                status.cancelled += 1;
                if user_cancel {
                    status.message = Some("cancelled".into());
                } else {
                    // Fresher input came first; the mask is asked for again
                    // once that is composed.
                    drop(status);
                    self.pending_region = Some(region);
                }
            }
            Err(e) => status.error = Some(e.to_string()),
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
        if let Err(reason) = session.validate() {
            // The project keeps loading; Cantor starts fresh and says why.
            self.stamp = session.stamp;
            drop(session);
            self.forget_take();
            self.publish();
            status!(self).error = Some(format!(
                "the project's saved Cantor session was not loaded ({reason}); starting fresh"
            ));
            return;
        }
        self.window = session.window.clone();
        self.composition = session.composition.clone();
        self.stamp = session.stamp;
        self.mask = session.mask;
        self.kept = session.kept.clone();
        drop(session);
        self.history = History::default();
        // The project's parameters came with it: take them as the new
        // baseline instead of as a change that calls for recomposing.
        self.compose_key = None;
        self.outputs = None;
        self.publish();
    }

    /// Moves captures into the window; true if a bar changed.
    fn drain_captures(&mut self) -> bool {
        let mut changed = false;
        while let Ok(capture) = self.link.captures.pop() {
            changed |= self.hear(capture);
        }
        changed
    }

    /// What a capture meets now besides the window.
    fn listening(&self) -> Listening {
        Listening {
            answer_start: self.composition.answer.as_ref().map(|(start, _)| *start),
            answer_kept: self.answer_kept(),
            continue_mode: self.params.mode.value() == Mode::Continue,
            max_bars: self.params.window_bars.value().max(1) as usize,
        }
    }

    /// Hears one capture into the window; true when it changed what is
    /// (being) composed.
    fn hear(&mut self, capture: Capture) -> bool {
        let taken = self
            .listening()
            .hear(&mut self.window, &mut self.pending_answer, capture);
        if taken.withdraws_answer {
            self.composition.answer = None;
            self.publish();
        }
        taken.changed
    }

    /// The observer of a composition under way: it watches the captures
    /// arriving (on a copy of the window) and cancels when they change what
    /// is being composed; the worker takes them in once the run returns.
    fn watch(&mut self) -> Watch<'_> {
        self.shared.cancel.store(false, Ordering::SeqCst);
        let listening = self.listening();
        Watch {
            shared: &self.shared,
            stop: &self.stop,
            captures: &mut self.link.captures,
            arrived: Vec::new(),
            window: self.window.clone(),
            pending_answer: self.pending_answer,
            listening,
            cancel: false,
            user_cancel: false,
            origin: 0,
        }
    }

    /// Hears what arrived while a composition ran.
    fn hear_arrived(&mut self, arrived: Vec<Capture>) {
        for capture in arrived {
            self.hear(capture);
        }
    }

    /// Notices parameter changes: composing ones regenerate, output ones
    /// only rebuild the schedule.
    fn check_params(&mut self) -> bool {
        let p = &self.params;
        let key = ComposeKey {
            mode: p.mode.value(),
            seed: p.seed.value(),
            levels: p.levels.value(),
            temperature_centis: (p.temperature.value() * 100.0).round() as i32,
            rules_tenths: (p.rules.value() * 10.0).round() as i32,
            key: p.key(),
        };
        let character = p.character();
        if self.character_params != Some(character) {
            self.character_params = Some(character);
            self.character = character;
        }
        let outputs = (p.voices(), p.layout(), p.mode.value());
        let mut changed = false;
        if self.compose_key.as_ref().is_some_and(|k| *k != key) {
            self.regenerate_all();
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
        sampler.levels = p.levels.value().max(2) as usize;
        sampler.temperature = p.temperature.value();
        sampler.rules = p.rules.value();
        sampler.character = self.character;
        sampler.seed = p.seed.value() as u64;
        ComposeSettings {
            sampler,
            key: p.key(),
            continue_bars: p.continue_bars.value().max(1) as usize,
            kept: self.kept.clone(),
        }
    }

    fn compose(&mut self) {
        let settings = self.settings();
        let model = self.model.clone().expect("model loaded");
        let started = Instant::now();
        let mode = self.params.mode.value();
        let answer_kept = self.answer_kept();
        let asked = self.pending_answer;
        // Compose from a snapshot; the observer watches the captures that
        // arrive meanwhile and cancels when a bar changes; they are taken
        // into the live window once the run returns.
        let snapshot = self.window.clone();
        let dirty_bars: Vec<i64> = snapshot
            .bars
            .values()
            .filter(|b| b.dirty)
            .map(|b| b.start)
            .collect();
        let mut composition = self.composition.clone();
        let pending_answer = self.pending_answer;
        let mut observer = self.watch();
        let result = match mode {
            Mode::Harmonize => harmonize(
                &model,
                &snapshot,
                &mut composition,
                &settings,
                &mut observer,
            )
            .map(|_| ()),
            Mode::Continue => match pending_answer.filter(|_| !answer_kept) {
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
        let (user_cancel, arrived) = (observer.user_cancel, observer.arrived);
        self.hear_arrived(arrived);
        let (mut status, ms) = self.finished(started);
        // Playing resumed (or a new phrase ended) after the last noise level:
        // this answer is not wanted any more.
        let stale = mode == Mode::Continue && asked.is_some() && self.pending_answer != asked;
        match result {
            Ok(()) if stale => {
                status.cancelled += 1;
            }
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
            Err(CantorError::Cancelled) => {
                status.cancelled += 1;
                if user_cancel {
                    // The musician stopped it: keep what was there, and do
                    // not start the same work again.
                    status.message = Some("cancelled".into());
                    drop(status);
                    self.window.mark_clean(&dirty_bars);
                    self.pending_answer = None;
                }
            }
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
        self.publish_view();
    }

    /// Shows the take to the editor and saves the session.
    fn publish_view(&mut self) {
        self.stamp.1 += 1;
        if let Ok(mut session) = self.params.session.write() {
            *session = Session {
                version: crate::session::SESSION_VERSION,
                window: self.window.clone(),
                composition: self.composition.clone(),
                stamp: self.stamp,
                mask: self.mask,
                kept: self.kept.clone(),
            };
        }
        let mode = self.params.mode.value();
        let key = self.key_name(mode);
        let (undo, redo) = self.history.depths();
        let mut status = status!(self);
        status.window = self.window.clone();
        status.composition = self.composition.clone();
        status.mode = mode;
        status.mask = self.mask;
        status.kept = self.kept.clone();
        status.key = key;
        status.undo = undo;
        status.redo = redo;
    }

    /// The key the constraints use: the fixed one, or the one estimated from
    /// the take.
    fn key_name(&self, mode: Mode) -> Option<String> {
        match self.params.key() {
            KeyChoice::Free => None,
            KeyChoice::Fixed(k) => Some(k.to_string()),
            KeyChoice::Auto => {
                let bars = take_bars(&self.window, &self.composition, mode);
                let span = crate::take::extent(&bars)?;
                let soprano = self
                    .model
                    .as_ref()
                    .map(|m| m.card.vocabulary.range(Voice::Soprano))?;
                let score =
                    crate::take::take_score(&self.window, &self.composition, mode, soprano, span);
                cantor_engine::Key::estimate(&score).map(|k| format!("{k} (estimated)"))
            }
        }
    }
}

/// What a capture meets besides the window: the answer's place and mode
/// (the worker thread's, copied into a composition's observer).
#[derive(Clone, Copy, Debug)]
struct Listening {
    /// Where the answer that plays starts, if there is one.
    answer_start: Option<i64>,
    /// The answer's bars are kept: new input leaves it be.
    answer_kept: bool,
    /// Continue mode: a phrase end asks for an answer.
    continue_mode: bool,
    /// The window parameter: the most bars the window keeps.
    max_bars: usize,
}

/// What one capture did.
#[derive(Clone, Copy, Debug, Default)]
struct Taken {
    /// It changed what is (being) composed: a bar, or the answer asked for.
    changed: bool,
    /// It came where the answer plays: the answer is withdrawn.
    withdraws_answer: bool,
}

impl Listening {
    /// Hears one capture into `window` and the answer asked for: the one
    /// place that decides what fresh input does, used by the worker on its
    /// take and by a composition's observer on a copy.
    fn hear(
        &self,
        window: &mut Window,
        pending_answer: &mut Option<i64>,
        capture: Capture,
    ) -> Taken {
        let mut taken = Taken::default();
        // New input where an answer plays, or is being composed: the
        // player goes on, the answer stops (freshest input wins).
        if let Capture::NoteOn { beat, .. } = capture {
            let step = crate::grid_time::nearest_step(beat);
            if !self.answer_kept {
                taken.withdraws_answer = self.answer_start.is_some_and(|start| step >= start);
                if pending_answer.is_some_and(|at| step >= at) {
                    *pending_answer = None;
                    taken.changed = true;
                }
            }
        }
        taken.changed |= window.hear(capture, self.max_bars);
        if let Some(at) = window.take_phrase_end() {
            if self.continue_mode && !self.answer_kept {
                taken.changed |= pending_answer.is_some_and(|p| p != at);
                *pending_answer = Some(at);
            }
        }
        taken
    }
}

/// A composition's observer: reports progress and the annealing, and
/// cancels — on the editor's Cancel, the plugin's removal, or input that
/// changes what is being composed. It only watches: what arrives is kept
/// for the worker to take in after the run.
///
/// It runs on the worker thread, inside the sampler's call; every field is
/// that thread's but for what it borrows from the others.
struct Watch<'a> {
    /// The editor's side: the status it reports into, the Cancel flag it
    /// reads (set by the GUI thread).
    shared: &'a Shared,
    /// The plugin's removal (set by the plugin's thread on drop).
    stop: &'a AtomicBool,
    /// The worker's end of the audio thread's capture queue, drained level
    /// by level so that fresh input can cancel the run.
    captures: &'a mut rtrb::Consumer<Capture>,
    /// Captures that arrived during the run, in order.
    arrived: Vec<Capture>,
    /// A copy of the window and the answer asked for, fed what arrives.
    window: Window,
    pending_answer: Option<i64>,
    /// What the captures meet besides the window.
    listening: Listening,
    /// The run is to stop at the next level (any reason).
    cancel: bool,
    /// It stops because the musician pressed Cancel or the plugin is being
    /// removed (what was there is kept, and no fresh take starts).
    user_cancel: bool,
    /// The first step of the problem in the window's steps, to report the
    /// annealing's cells where the editor draws them.
    origin: i64,
}

impl Observer for Watch<'_> {
    fn wants_preview(&self) -> bool {
        self.shared.editor_open.load(Ordering::Relaxed)
    }

    fn on_level(&mut self, frame: &AnnealingFrame) -> ControlFlow<()> {
        let annealing = frame.relaxation.map(|r| Annealing {
            level: frame.level,
            levels: frame.levels,
            sigma: frame.sigma,
            beliefs: r
                .beliefs
                .iter()
                .map(|b| (self.origin + b.step as i64, b.voice, b.pitch, b.probability))
                .collect(),
        });
        if let Ok(mut s) = self.shared.status.lock() {
            s.progress = Some((frame.level, frame.levels));
            s.annealing = annealing;
        }
        self.user_cancel |= self.shared.cancel.swap(false, Ordering::SeqCst);
        // The plugin is being removed: end within this level.
        self.user_cancel |= self.stop.load(Ordering::SeqCst);
        self.cancel |= self.user_cancel;
        while let Ok(capture) = self.captures.pop() {
            self.arrived.push(capture);
            let taken = self
                .listening
                .hear(&mut self.window, &mut self.pending_answer, capture);
            if taken.withdraws_answer {
                self.listening.answer_start = None;
            }
            self.cancel |= taken.changed;
        }
        if self.cancel {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Watcher for Watch<'_> {
    fn origin(&mut self, origin: i64) {
        self.origin = origin;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::link;

    /// Issue #15: a panic inside a composition turn (a bug, or input nothing
    /// checked) is caught: the status line says so, the model is kept, the
    /// take starts afresh and the next input is composed.
    #[test]
    fn the_worker_survives_a_panic_and_composes_the_next_input() {
        let params = Arc::new(CantorParams::default());
        let shared = Arc::new(Shared::default());
        let (mut audio, worker_end) = link();
        let _worker = Worker::spawn(worker_end, params, shared.clone());
        // A bar of quarter notes from `bar`, heard to its end.
        let feed = |audio: &mut crate::link::AudioLink, bar: f64| {
            for (i, pitch) in [67u8, 71, 74, 72].into_iter().enumerate() {
                let beat = bar * 4.0 + i as f64;
                audio.capture(Capture::NoteOn {
                    beat,
                    pitch,
                    velocity: 90,
                });
                audio.capture(Capture::NoteOff {
                    beat: beat + 1.0,
                    pitch,
                });
                audio.capture(Capture::Playhead {
                    beat: beat + 1.0,
                    playing: true,
                    bar_start_beat: ((beat + 1.0) / 4.0).floor() * 4.0,
                    bar_beats: 4.0,
                    character: cantor_engine::Character::NEUTRAL,
                });
            }
        };
        let wait = |what: &str, done: &dyn Fn(&Status) -> bool| {
            let started = Instant::now();
            loop {
                let s = shared.status();
                if done(&s) {
                    return s;
                }
                assert!(started.elapsed() < Duration::from_secs(60), "{what}: {s:?}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        feed(&mut audio, 0.0);
        let first = wait("the first bar composed", &|s| {
            s.composition.harmony.contains_key(&0)
        });
        shared.send(Command::Panic);
        let hurt = wait("the panic reported", &|s| s.error.is_some());
        let error = hurt.error.clone().unwrap_or_default();
        assert!(error.contains("internal error"), "{error}");
        assert!(error.contains("injected by a test"), "{error}");
        assert!(hurt.composition.harmony.is_empty(), "a fresh take");
        assert_eq!(hurt.model, first.model, "the model is kept");
        feed(&mut audio, 1.0);
        wait("the next bar composed after the panic", &|s| {
            s.composition.harmony.contains_key(&16)
        });
    }
}
