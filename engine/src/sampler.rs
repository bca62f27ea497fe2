//! Samplers: annealed Langevin dynamics with inpainting, and a Gibbs-style
//! sampler driven by the same network's Tweedie denoiser.
//!
//! Both fill the free cells of a [`Problem`] and never touch a known cell.
//! Constraints act at every step: forbidden tokens get a −∞ logit bias, so
//! the denoiser — and with it the score — is the constrained posterior.
//!
//! Langevin (Song & Ermon 2019, Alg. 1), per noise level σᵢ and step:
//!   x ← x + α/2·s(x, σᵢ) + √(α·τ)·z,   α = step_size·σᵢ²
//! With one step per level it uses consistent annealed sampling
//! (Jolicoeur-Martineau et al. 2021), which keeps x at exactly noise level
//! σᵢ₊₁ after each step:
//!   x ← (1−η)·x + η·D(x, σᵢ) + √(τ(σᵢ₊₁² − (1−η)²σᵢ²))·z
//! Known cells are clamped to their noised values y + σz at every step, a
//! final denoising step gives D(x, σ_min), and each free cell decodes to its
//! most probable allowed token.
//!
//! Gibbs (as Coconet's blocked Gibbs): at σ_max the noisy input carries no
//! information, so D gives p(token | all other known cells); each step
//! resamples an annealed random block of free cells from it.

use std::ops::ControlFlow;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::card::SamplingDefaults;
pub use crate::card::Target;
use crate::character::{Character, Lane};
use crate::constraints::{Constraints, Key};
use crate::error::{CantorError, Result};
use crate::grid::{Score, Token, Voice, VOICES};
use crate::harmony::ChordCosts;
use crate::lines::LineModel;
use crate::mask::Mask;
use crate::model::ScoreModel;
use crate::network::{conditioning, known_channels, one_hot};
use crate::rules::Voicing;
use crate::vocab::{Vocabulary, HOLD_INDEX, SPECIAL_TOKENS};

/// Logit added to forbidden tokens: far below any real logit, finite so that
/// a fully forbidden block still normalises.
const FORBIDDEN_LOGIT: f32 = -1.0e4;

/// What to generate: a score whose free cells the sampler writes.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Known cells hold their values; free cells' contents are ignored.
    pub score: Score,
    pub mask: Mask,
    pub constraints: Constraints,
    /// Known cells where a note that began inside the mask was split at the
    /// mask's edge (its hold turned into a re-strike of the same pitch);
    /// [`Problem::finish`] ties them back when the composed note before the
    /// edge ends on that pitch.
    pub splits: Vec<(usize, Voice)>,
    /// Where the character pad's position changes over the piece (an
    /// automation lane, read at each bar's start); elsewhere, and when
    /// empty, the settings' character.
    pub lane: Lane,
}

impl Problem {
    /// A problem over `score`. A note that starts inside the mask and is
    /// held past its edge is split there: the part outside keeps sounding
    /// exactly as before (re-struck at the edge, or tied to the new note
    /// when that ends on the same pitch), so nothing outside the mask
    /// changes its sound.
    pub fn new(mut score: Score, mask: Mask, constraints: Constraints) -> Result<Problem> {
        if score.is_empty() {
            return Err(CantorError::input("nothing to work on: the piece is empty"));
        }
        if mask.len() != score.len() {
            return Err(CantorError::input(format!(
                "mask covers {} steps but the piece has {}",
                mask.len(),
                score.len()
            )));
        }
        let splits = split_at_mask_edges(&mut score, &mask);
        Ok(Problem {
            score,
            mask,
            constraints,
            splits,
            lane: Lane::default(),
        })
    }

    /// The key of the known notes ([`Key::of_known`]): the prompt's, the
    /// melody's, the music's around a mask; `None` when nothing is known.
    pub fn home_key(&self) -> Option<Key> {
        Key::of_known(&self.score, &self.mask)
    }

    /// This problem with the character pad moving over it as `lane` says.
    pub fn with_lane(self, lane: Lane) -> Problem {
        Problem { lane, ..self }
    }

    /// Whether anything reweights the network's distributions in solving
    /// this problem with `settings`: the rules, the line model, the pad, or
    /// a lane that leaves the pad's centre somewhere.
    pub fn guided(&self, settings: &SamplerSettings, model: &ScoreModel) -> bool {
        settings.guided()
            || (settings.line_weight > 0.0 && model.lines().is_some())
            || (settings.chord_weight > 0.0 && model.card.chords.is_some())
            || self.lane.changes().iter().any(|(_, c)| !c.is_neutral())
    }

    /// Ties each note struck on the pitch already sounding before it to
    /// that note: in the free cells where a hold may be, and at each split
    /// when the composed note before the edge ends on the split note's
    /// pitch (so the note outside is not struck again). The data's grid
    /// has no repeated pitch — one there is one held note — and the
    /// network's belief that a pitch goes on sounding is spread over the
    /// hold and the re-strike, so the samplers' per-cell choices struck
    /// one voice in eight again where it meant to hold (validation,
    /// harmonize: one onset in eight of the composed alto). Nothing
    /// sounds different but the repeated attack.
    pub fn finish(&self, score: &mut Score) {
        let sounding = score.sounding_pitches();
        let composed = (1..score.len())
            .flat_map(|t| Voice::ALL.map(|v| (t, v)))
            .filter(|&(t, v)| self.mask.is_free(t, v) && !self.hold_forbidden(t, v));
        for (step, voice) in composed.chain(self.splits.iter().copied()) {
            let before = sounding[step - 1][voice.index()];
            if matches!(score.get(step, voice), Token::Pitch(p) if Some(p) == before) {
                score.set(step, voice, Token::Hold);
            }
        }
    }

    /// Whether a free cell may not hold: it follows a known cell and the
    /// given score did not continue a note into it, so a hold would lengthen
    /// a note outside the free region.
    pub fn hold_forbidden(&self, step: usize, voice: Voice) -> bool {
        step > 0
            && self.mask.is_free(step, voice)
            && !self.mask.is_free(step - 1, voice)
            && self.score.get(step, voice) != Token::Hold
    }

    /// Checks every known note fits the model's vocabulary.
    pub fn check_vocabulary(&self, vocab: &Vocabulary) -> Result<()> {
        for (step, cell) in self.score.cells().iter().enumerate() {
            for voice in Voice::ALL {
                if self.mask.is_free(step, voice) {
                    continue;
                }
                if let Token::Pitch(p) = cell[voice.index()] {
                    if !vocab.range(voice).contains(p) {
                        return Err(CantorError::input(format!(
                            "{}: the {voice} has {}, outside the model's {voice} range {}",
                            self.score.describe_step(step),
                            crate::grid::pitch_name(p),
                            vocab.range(voice)
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Turns every known hold that follows a free cell into a re-strike of the
/// pitch it sounded, with the velocity of the note it belonged to; returns
/// the cells changed.
fn split_at_mask_edges(score: &mut Score, mask: &Mask) -> Vec<(usize, Voice)> {
    let mut splits = Vec::new();
    for voice in Voice::ALL {
        let mut onset: Option<(u8, u8)> = None;
        for step in 0..score.len().min(mask.len()) {
            match score.get(step, voice) {
                Token::Pitch(p) => onset = Some((p, score.velocity(step, voice))),
                Token::Rest => onset = None,
                Token::Hold => {
                    let edge =
                        step > 0 && !mask.is_free(step, voice) && mask.is_free(step - 1, voice);
                    if let (true, Some((pitch, velocity))) = (edge, onset) {
                        score.set(step, voice, Token::Pitch(pitch));
                        score.set_velocity(step, voice, velocity);
                        splits.push((step, voice));
                    }
                }
            }
        }
    }
    splits
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    Langevin,
    Gibbs,
}

impl SamplerKind {
    pub fn parse(text: &str) -> Result<SamplerKind> {
        match text {
            "langevin" => Ok(SamplerKind::Langevin),
            "gibbs" => Ok(SamplerKind::Gibbs),
            other => Err(CantorError::input(format!(
                "unknown sampler '{other}': use langevin or gibbs"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerSettings {
    pub kind: SamplerKind,
    /// Noise levels from σ_max to σ_min.
    pub levels: usize,
    /// Langevin steps per level; 1 selects consistent annealed sampling.
    pub steps_per_level: usize,
    /// Langevin: α = step_size·σ² (classic) or η = step_size (consistent).
    pub step_size: f32,
    /// Scales the injected noise's variance (Langevin) and sharpens or
    /// flattens the distributions tokens are drawn from as p^(1/τ) (Gibbs,
    /// and Langevin with [`Target::Draw`]). 1 is the model's own
    /// distribution.
    pub temperature: f32,
    /// What each Langevin step moves towards.
    pub target: Target,
    /// Weight λ of the voice-leading rules ([`crate::rules`]) in nats per
    /// fault; 0 leaves the network's choices alone.
    pub rules: f32,
    /// Weight of the line model on each new pitch ([`crate::lines`]); 0, or
    /// a model without one, leaves the network's choice of pitch alone.
    pub line_weight: f32,
    /// Weight of the home key, in nats per free cell that sounds a pitch
    /// class outside it: the key [`Key::estimate`] reads off the problem's
    /// known notes (a continuation's prompt, the music before a masked
    /// end). It pulls only on the free tail, the steps after the last given
    /// note (a continuation's new bars): where a voice is given, that voice
    /// carries the key, chromatic notes and all, and where given music
    /// lies ahead (an infill) the network hears the key on both sides. A
    /// soft pull, not the key lock: chromatic notes stay possible, each
    /// sixteenth of one costs `key_weight`. 0 leaves the key to the network.
    pub key_weight: f32,
    /// Weight of the home key's degrees on where a voice goes, at the same
    /// steps: each pitch a voice may move to inside the key is weighed by
    /// e^(−w·d), d its distance from the tonic in the key's tonal hierarchy
    /// ([`Key::tonal_distance`]: 0 for the tonic, 0.2 the dominant, 0.4 the
    /// mediant … 0.8 the leading tone), the moves inside the key keeping the
    /// network's total probability: it says which degree a new note lands
    /// on, never whether a voice moves, nor how chromatic it is (that is
    /// `key_weight`'s). 0 leaves the degrees to the network.
    pub degree_weight: f32,
    /// Weight of the chord prior ([`crate::harmony::ChordPrior`], the
    /// card's): each beat where all four voices sound costs this times its
    /// chord class's nats (−ln of how much rarer Bach writes it than his
    /// commonest chord; on a beat under a fermata, how rarely his phrases
    /// end on it). It says which chords the style uses — root-position
    /// and first-inversion triads, sevenths where they belong, few
    /// six-fours — never how the voices get there. 0, or a card without a
    /// prior, leaves the chords to the network and the rules.
    pub chord_weight: f32,
    /// Langevin's temperature at the levels below [`SETTLE_SIGMA`], where
    /// the chords settle (`None`: `temperature` throughout). The motion is
    /// drawn at the high levels; drawn as hot at the low ones, each cell's
    /// independent draw picks notes the others do not agree with —
    /// chromatic neighbours, unprepared sevenths.
    pub settle_temperature: Option<f32>,
    /// The character pad's position ([`crate::character`]): guidance
    /// energies beside the rules; neutral leaves the music as it was.
    pub character: Character,
    pub seed: u64,
}

impl SamplerSettings {
    pub fn from_defaults(defaults: &SamplingDefaults) -> SamplerSettings {
        SamplerSettings {
            kind: SamplerKind::Langevin,
            levels: defaults.levels,
            steps_per_level: defaults.steps_per_level,
            step_size: defaults.step_size,
            temperature: defaults.temperature,
            target: defaults.target,
            rules: defaults.rules,
            line_weight: defaults.line_weight,
            key_weight: defaults.key_weight,
            degree_weight: defaults.degree_weight,
            chord_weight: defaults.chord_weight,
            settle_temperature: defaults.settle_temperature,
            character: Character::NEUTRAL,
            seed: 0,
        }
    }

    /// These settings with whatever the user gave instead (command-line
    /// flags, say); `None` keeps the current value.
    pub fn overridden(mut self, overrides: SettingsOverrides) -> SamplerSettings {
        if let Some(v) = overrides.levels {
            self.levels = v;
        }
        if let Some(v) = overrides.steps_per_level {
            self.steps_per_level = v.max(1);
        }
        if let Some(v) = overrides.step_size {
            self.step_size = v;
        }
        if let Some(v) = overrides.temperature {
            self.temperature = v;
        }
        if let Some(v) = overrides.rules {
            self.rules = v;
        }
        if let Some(v) = overrides.target {
            self.target = v;
        }
        if let Some(v) = overrides.line_weight {
            self.line_weight = v;
        }
        if let Some(v) = overrides.key_weight {
            self.key_weight = v;
        }
        if let Some(v) = overrides.degree_weight {
            self.degree_weight = v;
        }
        if let Some(v) = overrides.chord_weight {
            self.chord_weight = v;
        }
        if let Some(v) = overrides.settle_temperature {
            self.settle_temperature = Some(v);
        }
        if let Some(v) = overrides.activity {
            self.character.activity = v;
        }
        if let Some(v) = overrides.tension {
            self.character.tension = v;
        }
        self
    }

    /// Whether the rules, the home key or the character pad reweight the
    /// network's distributions (the line model does too, where the model
    /// has one: [`Problem::guided`]).
    pub fn guided(&self) -> bool {
        self.rules > 0.0
            || self.key_weight > 0.0
            || self.degree_weight > 0.0
            || !self.character.is_neutral()
    }

    /// Network evaluations one run costs; the Gibbs sampler is given the same
    /// number, so the two compare at equal cost.
    pub fn network_evals(&self) -> usize {
        if self.steps_per_level <= 1 {
            self.levels.max(1)
        } else {
            self.levels * self.steps_per_level + 1
        }
    }

    fn check(&self) -> Result<()> {
        use crate::card::{MAX_LEVELS, MAX_STEPS_PER_LEVEL};
        if self.levels == 0 || self.levels > MAX_LEVELS {
            return Err(CantorError::input(format!(
                "{} noise levels: 1 to {MAX_LEVELS} are allowed",
                self.levels
            )));
        }
        if self.steps_per_level > MAX_STEPS_PER_LEVEL {
            return Err(CantorError::input(format!(
                "{} steps per level: at most {MAX_STEPS_PER_LEVEL} are allowed",
                self.steps_per_level
            )));
        }
        if !(self.step_size > 0.0 && self.step_size <= 1.0) {
            return Err(CantorError::input(format!(
                "step size {} must be in (0, 1]",
                self.step_size
            )));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(CantorError::input(format!(
                "temperature {} must be positive",
                self.temperature
            )));
        }
        if let Some(t) = self
            .settle_temperature
            .filter(|t| !(*t > 0.0 && t.is_finite()))
        {
            return Err(CantorError::input(format!(
                "settle temperature {t} must be positive"
            )));
        }
        if !(self.rules >= 0.0 && self.rules.is_finite()) {
            return Err(CantorError::input(format!(
                "rules weight {} must be zero or positive",
                self.rules
            )));
        }
        if !(self.line_weight >= 0.0 && self.line_weight <= MAX_LINE_WEIGHT) {
            return Err(CantorError::input(format!(
                "line weight {} must be in 0–{MAX_LINE_WEIGHT}",
                self.line_weight
            )));
        }
        if !(self.key_weight >= 0.0 && self.key_weight <= MAX_KEY_WEIGHT) {
            return Err(CantorError::input(format!(
                "key weight {} must be in 0–{MAX_KEY_WEIGHT}",
                self.key_weight
            )));
        }
        if !(self.degree_weight >= 0.0 && self.degree_weight <= MAX_DEGREE_WEIGHT) {
            return Err(CantorError::input(format!(
                "degree weight {} must be in 0–{MAX_DEGREE_WEIGHT}",
                self.degree_weight
            )));
        }
        if !(self.chord_weight >= 0.0 && self.chord_weight <= MAX_CHORD_WEIGHT) {
            return Err(CantorError::input(format!(
                "chord weight {} must be in 0–{MAX_CHORD_WEIGHT}",
                self.chord_weight
            )));
        }
        self.character.check()
    }
}

/// User-given replacements for some [`SamplerSettings`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SettingsOverrides {
    pub levels: Option<usize>,
    pub steps_per_level: Option<usize>,
    pub step_size: Option<f32>,
    pub temperature: Option<f32>,
    pub rules: Option<f32>,
    pub target: Option<Target>,
    pub line_weight: Option<f32>,
    pub key_weight: Option<f32>,
    pub degree_weight: Option<f32>,
    pub chord_weight: Option<f32>,
    pub settle_temperature: Option<f32>,
    /// The character pad's axes, −1…1.
    pub activity: Option<f32>,
    pub tension: Option<f32>,
}

/// Progress report after each noise level (Langevin) or Gibbs step.
pub struct AnnealingFrame<'a> {
    pub level: usize,
    pub levels: usize,
    pub sigma: f32,
    /// The piece as it would decode now, when the observer asked for it.
    pub preview: Option<&'a Score>,
    /// What the denoiser believes each free cell sounds at this level, when
    /// the observer asked for a preview.
    pub relaxation: Option<&'a Relaxation>,
}

/// The continuous state of a run seen through the denoiser: for each free
/// cell, the probability of each pitch sounding there (a held note counts
/// for the pitch it holds). Early levels spread it over many pitches; it
/// sharpens into notes as the noise anneals. Beliefs below
/// [`Relaxation::FLOOR`] are left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Relaxation {
    pub beliefs: Vec<Belief>,
}

/// One pitch's probability of sounding in one cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Belief {
    pub step: usize,
    pub voice: Voice,
    pub pitch: u8,
    pub probability: f32,
}

impl Relaxation {
    pub const FLOOR: f32 = 0.04;

    /// From the denoiser's per-cell token probabilities (`probs`, laid out
    /// steps × channels as the network gives them) over `score`'s known
    /// cells.
    fn from_probabilities(probs: &[f32], score: &Score, mask: &Mask, vocab: &Vocabulary) -> Self {
        let channels = vocab.total_size();
        let steps = score.len();
        let mut beliefs = Vec::new();
        for voice in Voice::ALL {
            let range = vocab.range(voice);
            let width = range.width();
            let o = vocab.offset(voice);
            // Probability of each pitch of the range sounding at t - 1.
            let mut before = vec![0.0f32; width];
            for t in 0..steps {
                let mut now = vec![0.0f32; width];
                if mask.is_free(t, voice) {
                    let row = &probs[t * channels + o..t * channels + o + vocab.voice_size(voice)];
                    let hold = row[HOLD_INDEX];
                    for (i, p) in now.iter_mut().enumerate() {
                        *p = row[SPECIAL_TOKENS + i] + hold * before[i];
                    }
                    for (i, &p) in now.iter().enumerate() {
                        if p >= Self::FLOOR {
                            beliefs.push(Belief {
                                step: t,
                                voice,
                                pitch: range.lowest + i as u8,
                                probability: p.min(1.0),
                            });
                        }
                    }
                } else if let Some(p) = score.sounding(t, voice) {
                    if range.contains(p) {
                        now[(p - range.lowest) as usize] = 1.0;
                    }
                }
                before = now;
            }
        }
        Relaxation { beliefs }
    }

    /// The same beliefs `semitones` higher (pitches that leave MIDI's range
    /// are dropped).
    pub fn transposed(&self, semitones: i32) -> Relaxation {
        Relaxation {
            beliefs: self
                .beliefs
                .iter()
                .filter_map(|b| {
                    let pitch = u8::try_from(b.pitch as i32 + semitones).ok()?;
                    (pitch < 128).then_some(Belief { pitch, ..*b })
                })
                .collect(),
        }
    }
}

/// Watches a run level by level; can cancel it between levels.
pub trait Observer {
    /// Whether frames should carry a decoded preview (costs a decode, not a
    /// network evaluation).
    fn wants_preview(&self) -> bool {
        false
    }

    /// Called after each level; `Break` cancels the run.
    fn on_level(&mut self, frame: &AnnealingFrame) -> ControlFlow<()>;
}

/// Observes nothing and never cancels.
pub struct Unobserved;

impl Observer for Unobserved {
    fn on_level(&mut self, _frame: &AnnealingFrame) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct Generation {
    pub score: Score,
    pub network_evals: usize,
}

/// Fills the free cells of `problem`. A cancelled run (the observer returned
/// `Break`) ends with [`CantorError::Cancelled`].
pub fn generate(
    model: &ScoreModel,
    problem: &Problem,
    settings: &SamplerSettings,
    observer: &mut dyn Observer,
) -> Result<Generation> {
    settings.check()?;
    problem.check_vocabulary(&model.card.vocabulary)?;
    let mut run = Run::new(model, problem, settings)?;
    let mut score = match settings.kind {
        SamplerKind::Langevin => run.langevin(observer)?,
        SamplerKind::Gibbs => run.gibbs(observer)?,
    };
    problem.finish(&mut score);
    Ok(Generation {
        score,
        network_evals: run.evals,
    })
}

/// Tensors and state shared by the steps of one run.
struct Run<'a> {
    model: &'a ScoreModel,
    problem: &'a Problem,
    settings: &'a SamplerSettings,
    device: Device,
    steps: usize,
    channels: usize,
    /// Known cells' clean one-hot values, zero where free.
    values: Tensor,
    /// 1 on the channels of known cells.
    known: Tensor,
    /// 1 on the channels of free cells.
    free: Tensor,
    conditioning: Tensor,
    logit_bias: Tensor,
    /// Per voice, which tokens free cells may take.
    allowed: [Vec<bool>; VOICES],
    /// The home key's pull, read once from the problem's known notes.
    home: Option<HomeKey>,
    /// The chord prior's costs and the steps under a fermata, when its
    /// weight is on and the card has one.
    chords: Option<ChordGuide>,
    rng: ChaCha8Rng,
    evals: usize,
    tau: f32,
}

impl<'a> Run<'a> {
    fn new(
        model: &'a ScoreModel,
        problem: &'a Problem,
        settings: &'a SamplerSettings,
    ) -> Result<Run<'a>> {
        let vocab = &model.card.vocabulary;
        let device = model.device().clone();
        let steps = problem.score.len();
        let channels = vocab.total_size();
        let known_host = known_channels(&problem.mask, vocab);
        let values_host: Vec<f32> = one_hot(&problem.score, vocab)
            .iter()
            .zip(&known_host)
            .map(|(v, k)| v * k)
            .collect();
        let free_host: Vec<f32> = known_host.iter().map(|k| 1.0 - k).collect();
        let allowed = problem.constraints.allowed_indices(vocab);
        let bias_host = logit_bias(&problem.mask, problem, &allowed, vocab);
        let shape = (1, steps, channels);
        let cond = conditioning(&problem.score, &problem.mask, vocab);
        let cond_width = cond.len() / steps;
        Ok(Run {
            model,
            problem,
            settings,
            steps,
            channels,
            values: Tensor::from_vec(values_host, shape, &device)?,
            known: Tensor::from_vec(known_host, shape, &device)?,
            free: Tensor::from_vec(free_host, shape, &device)?,
            conditioning: Tensor::from_vec(cond, (1, steps, cond_width), &device)?,
            logit_bias: Tensor::from_vec(bias_host, shape, &device)?,
            allowed,
            home: HomeKey::of(problem, settings),
            chords: ChordGuide::of(model, problem, settings),
            rng: ChaCha8Rng::seed_from_u64(settings.seed),
            device,
            evals: 0,
            tau: settings.temperature,
        })
    }

    fn gaussian(&mut self) -> Result<Tensor> {
        let n = self.steps * self.channels;
        let data: Vec<f32> = (0..n).map(|_| self.rng.sample(StandardNormal)).collect();
        Ok(Tensor::from_vec(
            data,
            (1, self.steps, self.channels),
            &self.device,
        )?)
    }

    fn denoise(&mut self, x: &Tensor, sigma: f32) -> Result<Tensor> {
        self.evals += 1;
        Ok(self
            .model
            .network()
            .denoise(x, &self.conditioning, &[sigma], Some(&self.logit_bias))?)
    }

    /// Free cells keep `x`; known cells become y + σz.
    fn clamp_known(&mut self, x: &Tensor, sigma: f32) -> Result<Tensor> {
        let noise = (self.gaussian()? * sigma as f64)?;
        let noised = (&self.values + noise)?;
        Ok(((x * &self.free)? + (noised * &self.known)?)?)
    }

    fn langevin(&mut self, observer: &mut dyn Observer) -> Result<Score> {
        let s = self.settings;
        let sigmas = self.model.card.noise.levels(s.levels);
        let tau = s.temperature as f64;
        let start = (self.gaussian()? * sigmas[0] as f64)?;
        let mut x = self.clamp_known(&start, sigmas[0])?;
        let consistent = s.steps_per_level <= 1;
        let stages = if consistent {
            sigmas.len() - 1
        } else {
            sigmas.len()
        };
        for level in 0..stages {
            let sigma = sigmas[level];
            self.tau = match s.settle_temperature {
                Some(t) if sigma < SETTLE_SIGMA => t,
                _ => s.temperature,
            };
            let denoised = if consistent {
                let next = sigmas[level + 1];
                // η must be large enough to shed the excess noise in one step.
                let eta = s.step_size.max(1.0 - next / sigma) as f64;
                let d = self.denoise(&x, sigma)?;
                let d = self.guide(d)?;
                let keep = (1.0 - eta) * sigma as f64;
                let noise = (tau * (next as f64 * next as f64 - keep * keep).max(0.0)).sqrt();
                let target = self.target(&d)?;
                x = ((&x * (1.0 - eta))? + (&target * eta)? + (self.gaussian()? * noise)?)?;
                x = self.clamp_known(&x, next)?;
                d
            } else {
                let alpha = s.step_size as f64 * (sigma as f64).powi(2);
                let mut last = None;
                for _ in 0..s.steps_per_level {
                    let d = self.denoise(&x, sigma)?;
                    let d = self.guide(d)?;
                    let score = ((&self.target(&d)? - &x)? / (sigma as f64).powi(2))?;
                    x = ((&x + (score * (alpha / 2.0))?)?
                        + (self.gaussian()? * (alpha * tau).sqrt())?)?;
                    x = self.clamp_known(&x, sigma)?;
                    last = Some(d);
                }
                last.expect("at least one step per level")
            };
            let (preview, relaxation) = match observer.wants_preview() {
                true => (
                    Some(self.decode(&denoised)?),
                    Some(self.relaxation(&denoised)?),
                ),
                false => (None, None),
            };
            let frame = AnnealingFrame {
                level: level + 1,
                levels: stages + 1,
                sigma,
                preview: preview.as_ref(),
                relaxation: relaxation.as_ref(),
            };
            if observer.on_level(&frame).is_break() {
                return Err(CantorError::Cancelled);
            }
        }
        let sigma_min = *sigmas.last().expect("at least one level");
        let d = self.denoise(&x, sigma_min)?;
        self.decode(&d)
    }

    fn gibbs(&mut self, observer: &mut dyn Observer) -> Result<Score> {
        const BLOCK_MAX: f64 = 1.0;
        const BLOCK_MIN: f64 = 0.05;
        const ANNEAL_FRACTION: f64 = 0.75;
        let vocab = self.model.card.vocabulary.clone();
        let sigma = self.model.card.noise.sigma_max;
        let total = self.settings.network_evals();
        let tau = self.settings.temperature;
        let free_cells: Vec<(usize, Voice)> = (0..self.steps)
            .flat_map(|t| Voice::ALL.map(move |v| (t, v)))
            .filter(|(t, v)| self.problem.mask.is_free(*t, *v))
            .collect();
        let mut start = self.problem.score.clone();
        for &(t, v) in &free_cells {
            start.set(t, v, Token::Rest);
        }
        let mut current = Voicing::new(start);
        if free_cells.is_empty() {
            return Ok(current.into_score());
        }
        let mut penalties = Vec::new();
        for n in 0..total {
            // Coconet's annealed block size: everything at first, then a
            // shrinking fraction, never less than BLOCK_MIN.
            let fraction = if n == 0 {
                1.0
            } else {
                (BLOCK_MAX - n as f64 / (ANNEAL_FRACTION * total as f64) * (BLOCK_MAX - BLOCK_MIN))
                    .max(BLOCK_MIN)
            };
            let mut block = self.problem.mask.random_block(fraction, &mut self.rng);
            // A note whose onset is redrawn is redrawn whole, as in training:
            // the network never saw a known hold after a free cell, and
            // given one it predicts too few new notes (voices freeze).
            block.cover_note_tails(current.score());
            let cond = conditioning(current.score(), &block, &vocab);
            let width = cond.len() / self.steps;
            let cond = Tensor::from_vec(cond, (1, self.steps, width), &self.device)?;
            let known = Tensor::from_vec(
                known_channels(&block, &vocab),
                (1, self.steps, self.channels),
                &self.device,
            )?;
            let values = (Tensor::from_vec(
                one_hot(current.score(), &vocab),
                (1, self.steps, self.channels),
                &self.device,
            )? * &known)?;
            let x = (values + (self.gaussian()? * sigma as f64)?)?;
            let bias = Tensor::from_vec(
                logit_bias(&block, self.problem, &self.allowed, &vocab),
                (1, self.steps, self.channels),
                &self.device,
            )?;
            self.evals += 1;
            let d = self
                .model
                .network()
                .denoise(&x, &cond, &[sigma], Some(&bias))?;
            let mut probs = d.flatten_all()?.to_vec1::<f32>()?;
            let rng = &mut self.rng;
            Sweep::of(
                self.model,
                self.problem,
                &self.allowed,
                (self.home.as_ref(), self.chords.as_ref()),
                self.settings,
            )
            .run(&block, &mut probs, &mut current, &mut penalties, |cell| {
                let sample = Some((tau, &mut *rng));
                let index = choose(cell.row, cell.allowed, cell.may_hold, cell.penalty, sample);
                Some(vocab.token(cell.voice, index))
            });
            // A cell drawn silent may leave a hold after it that no longer
            // belongs to a note; the next step's network input must not see it.
            current.normalize();
            let relaxation = observer.wants_preview().then(|| {
                Relaxation::from_probabilities(&probs, current.score(), &self.problem.mask, &vocab)
            });
            let frame = AnnealingFrame {
                level: n + 1,
                levels: total,
                sigma,
                preview: observer.wants_preview().then_some(current.score()),
                relaxation: relaxation.as_ref(),
            };
            if observer.on_level(&frame).is_break() {
                return Err(CantorError::Cancelled);
            }
        }
        let mut score = current.into_score();
        score.normalize();
        Ok(score)
    }

    fn relaxation(&self, denoised: &Tensor) -> Result<Relaxation> {
        let probs = denoised.flatten_all()?.to_vec1::<f32>()?;
        Ok(Relaxation::from_probabilities(
            &probs,
            &self.problem.score,
            &self.problem.mask,
            &self.model.card.vocabulary,
        ))
    }

    /// The score `denoised` decodes to: each free cell's most probable
    /// allowed token, then polished by the rules when they are on.
    fn decode(&self, denoised: &Tensor) -> Result<Score> {
        let probs = denoised.flatten_all()?.to_vec1::<f32>()?;
        let out = self.argmax(&probs);
        Ok(match self.problem.guided(self.settings, self.model) {
            true => self.polish(out, &probs),
            false => out,
        })
    }

    /// Rule guidance of the denoiser: each free cell's distribution is
    /// reweighted by exp(−λ·E) given the cells around it, read from the
    /// decode of `denoised` and updated cell by cell as the sweep goes (one
    /// sweep of [`Run::polish`] whose distributions, not just choices, are
    /// kept). The Langevin update then moves towards the guided denoiser:
    /// the score of p(x)·exp(−λ·E) with E read off x's nearest score.
    fn guide(&self, denoised: Tensor) -> Result<Tensor> {
        if !self.problem.guided(self.settings, self.model) {
            return Ok(denoised);
        }
        let vocab = &self.model.card.vocabulary;
        let mut probs = denoised.flatten_all()?.to_vec1::<f32>()?;
        let mut voicing = Voicing::new(self.argmax(&probs));
        let mut penalties = Vec::new();
        let sweep = Sweep::of(
            self.model,
            self.problem,
            &self.allowed,
            (self.home.as_ref(), self.chords.as_ref()),
            self.settings,
        );
        sweep.run(
            &self.problem.mask,
            &mut probs,
            &mut voicing,
            &mut penalties,
            |cell| {
                let penalty = cell.penalty?;
                let low = penalty.iter().copied().fold(f32::INFINITY, f32::min);
                for (p, e) in cell.row.iter_mut().zip(penalty) {
                    *p *= (low - e).exp();
                }
                let total: f32 = cell.row.iter().sum();
                if total > 0.0 {
                    cell.row.iter_mut().for_each(|p| *p /= total);
                }
                let index = choose(cell.row, cell.allowed, cell.may_hold, None, None);
                Some(vocab.token(cell.voice, index))
            },
        );
        Ok(Tensor::from_vec(probs, denoised.shape(), &self.device)?)
    }

    /// What a Langevin step moves `x` towards: the denoiser's mean, or a
    /// one-hot draw from it at the run's temperature ([`Target`]).
    fn target(&mut self, denoised: &Tensor) -> Result<Tensor> {
        match self.settings.target {
            Target::Mean => Ok(denoised.clone()),
            Target::Draw => self.draw(denoised, self.tau),
        }
    }

    /// A one-hot draw from `denoised` (each free cell's token drawn from its
    /// distribution as p^(1/τ), holds only after a sounding note).
    fn draw(&mut self, denoised: &Tensor, tau: f32) -> Result<Tensor> {
        let probs = denoised.flatten_all()?.to_vec1::<f32>()?;
        let mut rng = self.rng.clone();
        let drawn = self.pick_tokens(&probs, |p, allowed, may_hold| {
            choose(p, allowed, may_hold, None, Some((tau, &mut rng)))
        });
        self.rng = rng;
        let one_hot = one_hot(&drawn, &self.model.card.vocabulary);
        Ok(Tensor::from_vec(one_hot, denoised.shape(), &self.device)?)
    }

    /// Free cells take their most probable allowed token under `probs` (the
    /// denoiser's output, steps × channels); known cells keep theirs.
    fn argmax(&self, probs: &[f32]) -> Score {
        self.pick_tokens(probs, |p, allowed, may_hold| {
            choose(p, allowed, may_hold, None, None)
        })
    }

    /// Reads a token off each free cell's own row, with no rule or expert
    /// and so without [`Sweep`]'s neighbours (the draws towards which
    /// Langevin moves, and the argmax the decode and the guide start
    /// from); each cell needs only whether its voice sounds before it. Voice
    /// by voice, step by step, `pick(row, allowed, may_hold)` chooses the index
    /// of each free cell from its row of `probs`, where a hold is allowed
    /// only after a sounding note (and never where it would lengthen a
    /// known note). Known cells keep their tokens; new notes get the
    /// default velocity.
    fn pick_tokens(
        &self,
        probs: &[f32],
        mut pick: impl FnMut(&[f32], &[bool], bool) -> usize,
    ) -> Score {
        let vocab = &self.model.card.vocabulary;
        let mut out = self.problem.score.clone();
        for voice in Voice::ALL {
            let o = vocab.offset(voice);
            let n = vocab.voice_size(voice);
            let mut sounding = false;
            for t in 0..self.steps {
                let token = if self.problem.mask.is_free(t, voice) {
                    let p = &probs[t * self.channels + o..t * self.channels + o + n];
                    let may_hold = sounding && !self.problem.hold_forbidden(t, voice);
                    let token = vocab.token(voice, pick(p, &self.allowed[voice.index()], may_hold));
                    if matches!(token, Token::Pitch(_)) {
                        out.set_velocity(t, voice, crate::grid::DEFAULT_VELOCITY);
                    }
                    token
                } else {
                    out.get(t, voice)
                };
                out.set(t, voice, token);
                sounding = match token {
                    Token::Rest => false,
                    Token::Pitch(_) => true,
                    Token::Hold => sounding,
                };
            }
        }
        out
    }

    /// Iterated conditional modes on log p(cell) − λ·E: each free cell in
    /// turn takes the token that maximises it given all the others, until a
    /// sweep changes nothing (or [`POLISH_SWEEPS`] have run).
    fn polish(&self, decoded: Score, probs: &[f32]) -> Score {
        let vocab = &self.model.card.vocabulary;
        let mut voicing = Voicing::new(decoded);
        let mut penalties = Vec::new();
        // The sweep hands out rows to change; polishing only reads them.
        let mut rows = probs.to_vec();
        let sweep = Sweep::of(
            self.model,
            self.problem,
            &self.allowed,
            (self.home.as_ref(), self.chords.as_ref()),
            self.settings,
        );
        for _ in 0..POLISH_SWEEPS {
            let changed = sweep.run(
                &self.problem.mask,
                &mut rows,
                &mut voicing,
                &mut penalties,
                |cell| {
                    let index = choose(cell.row, cell.allowed, cell.may_hold, cell.penalty, None);
                    let token = vocab.token(cell.voice, index);
                    // Move only on a strict gain, so that ties cannot cycle.
                    let value = |i: usize| {
                        (cell.row[i].max(f32::MIN_POSITIVE)).ln()
                            - cell.penalty.map_or(0.0, |q| q[i])
                    };
                    let was = vocab
                        .index(cell.voice, cell.current)
                        .filter(|&i| cell.allowed[i] && (i != HOLD_INDEX || cell.may_hold));
                    if token == cell.current || was.is_some_and(|w| value(index) <= value(w) + 1e-6)
                    {
                        return None;
                    }
                    Some(token)
                },
            );
            if !changed {
                break;
            }
        }
        let mut out = voicing.into_score();
        out.normalize();
        for t in 0..self.steps {
            for voice in Voice::ALL {
                if self.problem.mask.is_free(t, voice)
                    && matches!(out.get(t, voice), Token::Pitch(_))
                {
                    out.set_velocity(t, voice, crate::grid::DEFAULT_VELOCITY);
                }
            }
        }
        out
    }
}

/// A free cell as a [`Sweep`] meets it.
struct Cell<'c> {
    voice: Voice,
    /// The cell's row of the probabilities being swept (the sweep's caller
    /// may reweight it).
    row: &'c mut [f32],
    /// Tokens the cell may take (key and range constraints).
    allowed: &'c [bool],
    /// A note sounds before it, and holding it would lengthen no known note.
    may_hold: bool,
    /// The rules' λ·E for each token given the cells around it (`None`:
    /// the rules are off).
    penalty: Option<&'c [f32]>,
    /// The token the cell holds now.
    current: Token,
}

/// The home key's pull over one problem ([`SamplerSettings::key_weight`],
/// [`SamplerSettings::degree_weight`]), on its free tail.
struct HomeKey {
    /// Nats per sixteenth sounding each pitch class: `key_weight` outside
    /// the key, 0 inside.
    chromatic: [f32; 12],
    /// Nats per new note landing on each pitch class of the key
    /// (`degree_weight` × its tonal distance); `None` outside the key,
    /// where `chromatic` has the say.
    degrees: [Option<f32>; 12],
    /// The first step of the problem's free tail (every voice free from
    /// there to the end), where the key starts to pull.
    tail: usize,
}

impl HomeKey {
    /// `None` when both weights are off or the known notes have no key.
    fn of(problem: &Problem, settings: &SamplerSettings) -> Option<HomeKey> {
        if settings.key_weight <= 0.0 && settings.degree_weight <= 0.0 {
            return None;
        }
        let key = problem.home_key()?;
        let mask = &problem.mask;
        // Where given music lies ahead — a gap masked in all voices between
        // given bars — the network hears the key on both sides: there the
        // pull bought nothing (an infill's pitch classes overlapped Bach's
        // by 0.954 with it and without) and cost motion (the masked bar's
        // voices 82-93% of Bach's notes per beat, 87-98% without;
        // validation, seeds 0-2). It pulls where the music runs on alone.
        let tail = (0..mask.len())
            .rev()
            .find(|&t| Voice::ALL.iter().any(|v| !mask.is_free(t, *v)))
            .map_or(0, |t| t + 1);
        let inside = key.pitch_classes();
        let distance = key.tonal_distance();
        Some(HomeKey {
            chromatic: std::array::from_fn(|pc| match inside[pc] {
                true => 0.0,
                false => settings.key_weight,
            }),
            degrees: std::array::from_fn(|pc| {
                inside[pc].then(|| settings.degree_weight * distance[pc])
            }),
            tail,
        })
    }

    /// Adds into `energy` (a cell of `voice` after `before`, the pitch
    /// sounding before it, with the network's `row`) the degrees' say on
    /// where the voice moves: each pitch inside the key that changes what
    /// sounds costs its degree's nats, shifted so that those moves keep the
    /// network's total probability under p·e^−E. Holds, rests, re-strikes
    /// and chromatic pitches are left alone.
    fn add_degree_energy(
        &self,
        voice: Voice,
        before: Option<u8>,
        vocab: &Vocabulary,
        row: &[f32],
        energy: &mut [f32],
    ) {
        let cost = |i: usize| match vocab.token(voice, i) {
            Token::Pitch(p) if Some(p) != before => self.degrees[(p % 12) as usize],
            _ => None,
        };
        crate::lines::add_keeping_mass(row, cost, energy);
    }
}

/// The chord prior over one problem ([`SamplerSettings::chord_weight`]).
struct ChordGuide {
    weight: f32,
    costs: ChordCosts,
    /// Per step, whether it lies under a fermata (the problem's phrase
    /// ends), where the prior's fermata costs apply.
    fermatas: Vec<bool>,
    /// The piece's last chord — the steps of its closing fermata, when the
    /// problem's last phrase end closes it — and the tonic (pitch class of
    /// the known notes' key) it should stand on.
    ending: Option<(std::ops::Range<usize>, u8)>,
}

impl ChordGuide {
    fn of(model: &ScoreModel, problem: &Problem, settings: &SamplerSettings) -> Option<ChordGuide> {
        if settings.chord_weight <= 0.0 {
            return None;
        }
        let prior = model.card.chords.as_ref()?;
        let score = &problem.score;
        // The closing fermata: the last, with no given note after it.
        let last_known = (0..score.len())
            .rev()
            .find(|t| Voice::ALL.iter().any(|v| !problem.mask.is_free(*t, *v)));
        let closing = score
            .fermatas()
            .last()
            .filter(|f| last_known.is_none_or(|t| t < f.end));
        // Its tonic: where the melody is given there, its last note (Bach's
        // chorale melodies end on the tonic, 198 of the 228 training
        // pieces with a key, or on the fifth over a bass that ends on it
        // too, 20 more); else the known notes' key.
        let tonic = |f: &std::ops::Range<usize>| match problem.mask.is_free(f.start, Voice::Soprano)
        {
            false => score
                .voice_notes(Voice::Soprano)
                .iter()
                .rev()
                .find(|n| n.start < f.end)
                .map(|n| n.pitch % 12),
            true => problem.home_key().map(|k| k.tonic),
        };
        let ending = closing.and_then(|f| Some((f.clone(), tonic(f)?)));
        Some(ChordGuide {
            weight: settings.chord_weight,
            costs: prior.table(),
            fermatas: (0..score.len()).map(|s| score.is_fermata(s)).collect(),
            ending,
        })
    }
}

/// The free-cell sweep the samplers share (Gibbs's redraws, the rules'
/// guidance of the denoiser, the final polish): every cell of a mask in
/// turn, step by step (a step's voices before the next step), seen with its
/// row, what it may take and what the rules charge given the cells around
/// it; the caller chooses its token, which the cells after it then see.
struct Sweep<'a> {
    problem: &'a Problem,
    vocab: &'a Vocabulary,
    allowed: &'a [Vec<bool>; VOICES],
    /// The rules' weight λ before the pad scales it.
    rules: f32,
    /// The line model and its weight, when both are there.
    lines: Option<(&'a LineModel, f32)>,
    /// The home key's pull, when its weight is on and the known notes have
    /// a key.
    home: Option<&'a HomeKey>,
    /// The chord prior, when its weight is on and the card has one.
    chords: Option<&'a ChordGuide>,
    /// The pad's position at each step (the settings' or the lane's).
    characters: Vec<Character>,
    /// The pad at its centre at every step: the character energies are off.
    neutral: bool,
}

impl<'a> Sweep<'a> {
    fn of(
        model: &'a ScoreModel,
        problem: &'a Problem,
        allowed: &'a [Vec<bool>; VOICES],
        (home, chords): (Option<&'a HomeKey>, Option<&'a ChordGuide>),
        settings: &SamplerSettings,
    ) -> Sweep<'a> {
        let characters = problem
            .lane
            .per_step(problem.score.len(), settings.character);
        Sweep {
            problem,
            vocab: &model.card.vocabulary,
            allowed,
            rules: settings.rules,
            lines: model
                .lines()
                .filter(|_| settings.line_weight > 0.0)
                .map(|l| (l, settings.line_weight)),
            home,
            chords,
            neutral: characters.iter().all(Character::is_neutral),
            characters,
        }
    }

    /// Visits each cell `free` frees in `voicing` (rows of `probs`, T × C
    /// row-major); `choose` returns the token a cell takes, or `None` to
    /// leave it. Returns whether any cell changed.
    fn run(
        &self,
        free: &Mask,
        probs: &mut [f32],
        voicing: &mut Voicing,
        penalties: &mut Vec<f32>,
        mut choose: impl FnMut(Cell<'_>) -> Option<Token>,
    ) -> bool {
        let channels = self.vocab.total_size();
        let mut changed = false;
        for t in 0..free.len() {
            for voice in Voice::ALL {
                if !free.is_free(t, voice) {
                    continue;
                }
                let may_hold =
                    voicing.sounding_before(t, voice) && !self.problem.hold_forbidden(t, voice);
                let o = t * channels + self.vocab.offset(voice);
                let row = &probs[o..o + self.vocab.voice_size(voice)];
                let penalty = self.penalties(voicing, t, voice, may_hold, row, penalties);
                let current = voicing.score().get(t, voice);
                let cell = Cell {
                    voice,
                    row: &mut probs[o..o + self.vocab.voice_size(voice)],
                    allowed: &self.allowed[voice.index()],
                    may_hold,
                    penalty,
                    current,
                };
                if let Some(token) = choose(cell) {
                    changed |= token != current;
                    voicing.set(t, voice, token);
                }
            }
        }
        changed
    }

    /// λ·E for each token of (`step`, `voice`) given the cells around it,
    /// plus the character pad's energy and the line model's (given the
    /// network's `row` for the cell), in `buffer`; `None` when the rules are
    /// off, the pad is neutral and there is no line model.
    fn penalties<'b>(
        &self,
        voicing: &mut Voicing,
        step: usize,
        voice: Voice,
        may_hold: bool,
        row: &[f32],
        buffer: &'b mut Vec<f32>,
    ) -> Option<&'b [f32]> {
        let lambda = self.rules;
        let scale = self.characters[step].rules_scale();
        // Where a voice is given (a melody to harmonize) it carries the key,
        // chromatic notes and all; the home key pulls only on the free tail.
        let key = self.home.filter(|h| step >= h.tail);
        if lambda <= 0.0
            && self.neutral
            && self.lines.is_none()
            && key.is_none()
            && self.chords.is_none()
        {
            return None;
        }
        let allowed = &self.allowed[voice.index()];
        buffer.clear();
        for (i, ok) in allowed.iter().enumerate() {
            let usable = *ok && (i != HOLD_INDEX || may_hold);
            let token = self.vocab.token(voice, i);
            let mut energy = 0.0;
            if usable && lambda > 0.0 {
                let faults = voicing.local_faults(step, voice, token);
                energy += lambda * (scale * faults.lines + faults.chords);
            }
            // At the pad's centre (the default) the cell's span is not walked
            // again for an energy that is zero.
            if usable && !self.neutral {
                energy += voicing.character_energy(step, voice, token, &self.characters);
            }
            if let (true, Some(home)) = (usable, key) {
                energy += voicing.key_cost(step, voice, token, &home.chromatic);
            }
            if let (true, Some(chords)) = (usable, self.chords) {
                energy += chords.weight
                    * self.characters[step].chord_prior_scale()
                    * voicing.chord_cost(
                        (step, voice, token),
                        &chords.costs,
                        &chords.fermatas,
                        chords.ending.as_ref(),
                    );
            }
            buffer.push(energy);
        }
        if let Some(home) = key {
            let before = voicing.pitch_before(step, voice);
            home.add_degree_energy(voice, before, self.vocab, row, buffer);
        }
        if let Some((lines, weight)) = self.lines {
            lines.add_energy(
                voicing.score(),
                (step, voice),
                self.vocab,
                row,
                weight,
                buffer,
            );
        }
        Some(buffer)
    }
}

/// Most sweeps of [`Run::polish`]; it usually settles in two or three.
const POLISH_SWEEPS: usize = 8;

/// Largest line-model weight a run may take.
pub const MAX_LINE_WEIGHT: f32 = 4.0;
/// Largest home-key weight a run may take, in nats per sixteenth.
pub const MAX_KEY_WEIGHT: f32 = 8.0;
/// Largest weight of the home key's degrees a run may take.
pub const MAX_DEGREE_WEIGHT: f32 = 8.0;
/// The noise level below which Langevin draws at
/// [`SamplerSettings::settle_temperature`]: where the denoiser's
/// uncertainty collapses (its cross-entropy on validation windows falls
/// from 0.54 nats per cell at σ ≈ 1 to 0.02 at σ ≈ 0.2), so the notes
/// drawn there stay.
pub const SETTLE_SIGMA: f32 = 1.0;

/// Largest weight of the chord prior a run may take.
pub const MAX_CHORD_WEIGHT: f32 = 4.0;

/// Picks a token index from a voice's distribution `p` less `penalty` (in
/// nats, the rules' λ·E): the allowed one maximising ln p − penalty, or a
/// draw from (p·e^−penalty)^(1/τ) when `sample` is given. A hold is only
/// allowed after a sounding note.
fn choose(
    p: &[f32],
    allowed: &[bool],
    sounding_before: bool,
    penalty: Option<&[f32]>,
    sample: Option<(f32, &mut ChaCha8Rng)>,
) -> usize {
    let ok = |i: usize| allowed[i] && (i != HOLD_INDEX || sounding_before);
    let value = |i: usize| (p[i].max(0.0) as f64).ln() - penalty.map_or(0.0, |q| q[i] as f64);
    match sample {
        None => (0..p.len())
            .filter(|i| ok(*i))
            .max_by(|a, b| value(*a).total_cmp(&value(*b)))
            .unwrap_or(0),
        Some((tau, rng)) => {
            let logs: Vec<f64> = (0..p.len())
                .map(|i| match ok(i) {
                    true => value(i) / tau as f64,
                    false => f64::NEG_INFINITY,
                })
                .collect();
            let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if !top.is_finite() {
                return (0..p.len()).find(|i| ok(*i)).unwrap_or(0);
            }
            let weights: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
            let total: f64 = weights.iter().sum();
            let mut u = rng.random::<f64>() * total;
            for (i, w) in weights.iter().enumerate() {
                if u < *w {
                    return i;
                }
                u -= w;
            }
            (0..p.len()).rev().find(|i| weights[*i] > 0.0).unwrap_or(0)
        }
    }
}

/// Row-major (T, C) logit bias: forbidden tokens of free cells get
/// [`FORBIDDEN_LOGIT`].
fn logit_bias(
    mask: &Mask,
    problem: &Problem,
    allowed: &[Vec<bool>; VOICES],
    vocab: &Vocabulary,
) -> Vec<f32> {
    let channels = vocab.total_size();
    let mut bias = vec![0.0f32; mask.len() * channels];
    for t in 0..mask.len() {
        for voice in Voice::ALL {
            if !mask.is_free(t, voice) {
                continue;
            }
            let o = t * channels + vocab.offset(voice);
            if problem.hold_forbidden(t, voice) {
                bias[o + HOLD_INDEX] = FORBIDDEN_LOGIT;
            }
            for (i, ok) in allowed[voice.index()].iter().enumerate() {
                if !ok {
                    bias[o + i] = FORBIDDEN_LOGIT;
                }
            }
        }
    }
    bias
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constraints::Scale;

    #[test]
    fn the_home_keys_degrees_say_where_a_voice_goes_not_whether() {
        let vocab = Vocabulary::chorales();
        let voice = Voice::Alto;
        let key = Key {
            tonic: 0,
            scale: Scale::Major,
        };
        let inside = key.pitch_classes();
        let distance = key.tonal_distance();
        let home = HomeKey {
            chromatic: [0.0; 12],
            degrees: std::array::from_fn(|pc| inside[pc].then(|| 2.0 * distance[pc])),
            tail: 0,
        };
        let n = vocab.voice_size(voice);
        let row = vec![1.0 / n as f32; n];
        let before = Some(64); // E4 sounds before the cell.
        let mut energy = vec![0.0f32; n];
        home.add_degree_energy(voice, before, &vocab, &row, &mut energy);
        let index = |token| vocab.index(voice, token).unwrap();
        let moves_inside: Vec<usize> = (0..n)
            .filter(
                |&i| matches!(vocab.token(voice, i), Token::Pitch(p) if p != 64 && key.contains(p)),
            )
            .collect();
        // The moves inside the key keep the network's probability in all.
        let network: f32 = moves_inside.iter().map(|&i| row[i]).sum();
        let weighed: f32 = moves_inside
            .iter()
            .map(|&i| row[i] * (-energy[i]).exp())
            .sum();
        assert!((network - weighed).abs() < 1e-5, "{network} vs {weighed}");
        // Holding, resting, striking E4 again and chromatic notes: no say.
        for token in [Token::Hold, Token::Rest, Token::Pitch(64), Token::Pitch(61)] {
            assert_eq!(energy[index(token)], 0.0, "{token:?}");
        }
        // Where it moves: the tonic first, then the dominant, the mediant
        // before the leading tone.
        let e = |p: u8| energy[index(Token::Pitch(p))];
        assert!(
            e(60) < e(67) && e(67) < e(52) && e(52) < e(71),
            "{energy:?}"
        );
        assert!(e(60) < 0.0 && e(71) > 0.0);
    }
}
