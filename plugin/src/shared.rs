//! State shared by the worker, the editor and the audio thread, and the
//! editor's commands.
//!
//! The worker publishes its [`Status`] as a snapshot the editor copies (the
//! editor and the worker may lock it); the editor's [`Command`]s go to the
//! worker on a crossbeam channel; the audio thread only stores the
//! [`Playhead`] (in atomics). The editor can exist before the plugin is activated (and the
//! worker spawned): commands wait in the channel until a worker takes them.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender};

use cantor_engine::Voice;

use crate::composer::Composition;
use crate::composer::Mode;
use crate::link::Playhead;
use crate::take::Region;
use crate::window::Window;

/// The annealing under way, as the editor draws it: per cell of the
/// region being composed, the probability of each pitch sounding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annealing {
    /// The level just done, from 1.
    pub level: usize,
    /// Levels in the run.
    pub levels: usize,
    /// Its noise level σ.
    pub sigma: f32,
    /// (song step, voice, pitch, probability).
    pub beliefs: Vec<(i64, Voice, u8, f32)>,
}

/// What the worker reports: the editor's picture of the take, and the
/// tests'. Copied out under the lock; the audio thread never touches it.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// "CPU", "CUDA GPU", … once the model is loaded.
    pub device: String,
    /// The model's name (its card's).
    pub model: String,
    /// The last error (a model that failed to load, a regeneration that
    /// could not run), for the editor to show.
    pub error: Option<String>,
    /// The last thing done that the musician should hear about.
    pub message: Option<String>,
    /// Compositions finished.
    pub generations: u64,
    /// Compositions cancelled by fresher input or the Cancel button.
    pub cancelled: u64,
    /// Milliseconds the last composition took.
    pub last_ms: f64,
    /// Progress of the composition under way: (level, levels).
    pub progress: Option<(usize, usize)>,
    /// The composition under way, level by level, while the editor is open.
    pub annealing: Option<Annealing>,
    /// The take: the window, what was composed for it, and the mode that
    /// says which part plays.
    pub window: Window,
    /// What was composed for the window.
    pub composition: Composition,
    /// Harmonize or continue.
    pub mode: Mode,
    /// The masked region, shaded in the editor.
    pub mask: Option<Region>,
    /// Bars whose composed notes are locked.
    pub kept: BTreeSet<i64>,
    /// The key the constraints use, when one is set or estimated.
    pub key: Option<String>,
    /// Regenerations that can be undone, and redone.
    pub undo: usize,
    pub redo: usize,
}

/// Requests from the editor (or a test) to the worker.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Load another model; on failure the current one stays.
    LoadModel(std::path::PathBuf),
    /// Regenerate everything in the window that is not kept.
    RegenerateAll,
    /// Mask a region and regenerate exactly its cells.
    Regenerate(Region),
    /// The character pad was released here: compose with it from now on,
    /// and give it to the bars of the region (the mask it regenerates).
    /// Sent with its parameter gestures, which reach the parameters only
    /// when the host next runs the plugin: a regeneration asked for in the
    /// same frame must not compose with the old values.
    SetCharacter(cantor_engine::Character, Option<Region>),
    /// Mask a region without regenerating it yet.
    SetMask(Region),
    /// Forget the mask (nothing is regenerated).
    ClearMask,
    Undo,
    Redo,
    /// Lock (true) or release (false) the bars the region covers.
    Keep(Region, bool),
    /// Copy the answer into the window as new input: its melody becomes
    /// heard bars and its other voices their harmony.
    AdoptAnswer,
    /// Tests only: a panic inside the worker's turn, as a bug would cause.
    #[cfg(test)]
    Panic,
}

/// State the threads share: the worker's status for the editor, the
/// editor's commands for the worker, and the playhead for the editor.
pub struct Shared {
    /// Written by the worker thread, read by the GUI thread (locked; never
    /// by the audio thread).
    pub status: Mutex<Status>,
    /// The editor's (or a test's) end of the command channel.
    commands: Sender<Command>,
    /// The worker's end.
    requests: Receiver<Command>,
    /// Set by the editor's Cancel: the composition under way stops at the
    /// next noise level.
    pub cancel: AtomicBool,
    /// The editor is open: the worker reports the annealing level by level.
    pub editor_open: AtomicBool,
    /// Where the host's playhead is: stored by the audio thread each
    /// block, read by the GUI thread.
    pub playhead: Playhead,
}

impl Default for Shared {
    fn default() -> Self {
        let (commands, requests) = crossbeam_channel::unbounded();
        Shared {
            status: Mutex::default(),
            commands,
            requests,
            cancel: AtomicBool::default(),
            editor_open: AtomicBool::default(),
            playhead: Playhead::default(),
        }
    }
}

impl Shared {
    /// Editor: asks the worker for something. Never blocks.
    pub fn send(&self, command: Command) {
        // Both ends live in `self`, so the channel is never disconnected.
        let _ = self.commands.send(command);
    }

    /// Worker: the commands sent since it last looked.
    pub fn take_commands(&self) -> Vec<Command> {
        self.requests.try_iter().collect()
    }

    /// Worker, when idle: waits up to `timeout` for a command, so one sent
    /// is taken at once rather than after a nap.
    pub fn wait_for_command(&self, timeout: std::time::Duration) -> Option<Command> {
        self.requests.recv_timeout(timeout).ok()
    }

    /// A copy of the status (the lock is held only to clone).
    pub fn status(&self) -> Status {
        self.status.lock().expect("status").clone()
    }
}
