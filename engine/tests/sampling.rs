//! Behaviour of the samplers a user relies on, with a tiny random model:
//! given notes are never changed, constraints hold, seeds reproduce, runs
//! can be cancelled.

use std::ops::ControlFlow;

use cantor_engine::card::{ModelCard, NetworkConfig, NoiseSchedule, SamplingDefaults};
use cantor_engine::rules;
use cantor_engine::sampler::{AnnealingFrame, Observer};
use cantor_engine::{
    compose, continuation_problem, harmonize_problem, infill_problem, CantorError, Character,
    Device, Key, KeyChoice, MaskRegion, Note, Problem, SamplerKind, SamplerSettings, Score,
    ScoreModel, Target, Token, Unobserved, Vocabulary, Voice,
};

fn tiny_model() -> ScoreModel {
    let mut card = ModelCard::new(
        "tiny",
        NetworkConfig::tiny(),
        Vocabulary::chorales(),
        NoiseSchedule {
            sigma_max: 10.0,
            sigma_min: 0.1,
        },
    );
    card.sampling = SamplingDefaults {
        levels: 6,
        ..SamplingDefaults::default()
    };
    ScoreModel::random(card, 3, &Device::Cpu).unwrap()
}

fn settings(kind: SamplerKind, steps_per_level: usize, seed: u64) -> SamplerSettings {
    SamplerSettings {
        kind,
        levels: 5,
        steps_per_level,
        step_size: 0.5,
        temperature: 1.0,
        target: Target::Draw,
        rules: 0.0,
        line_weight: 0.0,
        key_weight: 0.0,
        degree_weight: 0.0,
        chord_weight: 0.0,
        settle_temperature: None,
        character: Character::NEUTRAL,
        seed,
    }
}

fn all_settings() -> Vec<SamplerSettings> {
    vec![
        settings(SamplerKind::Langevin, 1, 1),
        settings(SamplerKind::Langevin, 2, 2),
        SamplerSettings {
            target: Target::Mean,
            ..settings(SamplerKind::Langevin, 1, 6)
        },
        settings(SamplerKind::Gibbs, 1, 3),
        // With the voice-leading rules the same invariants hold.
        SamplerSettings {
            rules: 2.0,
            ..settings(SamplerKind::Langevin, 1, 4)
        },
        SamplerSettings {
            rules: 2.0,
            ..settings(SamplerKind::Gibbs, 1, 5)
        },
    ]
}

/// A four-bar melody with a held note, a repeated note and a rest.
fn melody() -> Score {
    let notes = [
        (72, 0, 4),
        (72, 4, 4),
        (74, 8, 8),
        (76, 20, 4),
        (77, 24, 8),
        (76, 32, 16),
        (74, 48, 16),
    ];
    let notes: Vec<Note> = notes
        .iter()
        .map(|&(pitch, start, length)| Note {
            voice: Voice::Soprano,
            pitch,
            start,
            length,
            velocity: 99,
        })
        .collect();
    Score::from_notes(64, &notes)
}

fn chorale() -> Score {
    let mut notes = melody().notes();
    for (voice, base) in [(Voice::Alto, 67u8), (Voice::Tenor, 60), (Voice::Bass, 48)] {
        for bar in 0..4 {
            notes.push(Note {
                voice,
                pitch: base + bar as u8,
                start: bar * 16,
                length: if voice == Voice::Bass { 8 } else { 16 },
                velocity: 70,
            });
        }
    }
    Score::from_notes(64, &notes)
}

#[test]
fn harmonizing_never_changes_the_melody() {
    let model = tiny_model();
    let tune = melody();
    let problem = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    for s in all_settings() {
        let out = compose(&model, &problem, &s, &mut Unobserved)
            .unwrap()
            .score;
        assert_eq!(
            out.voice_notes(Voice::Soprano),
            tune.voice_notes(Voice::Soprano),
            "{:?}",
            s.kind
        );
        assert_eq!(out.len(), tune.len());
    }
}

/// The chorale with an alto note that starts in bar 2 and is held into bar 3
/// (steps 28–36), as the case: masking bar 2 must leave bar 3
/// sounding as it did.
fn chorale_with_a_tie_over_the_bar() -> Score {
    let mut piece = chorale();
    piece.write_note(Note {
        voice: Voice::Alto,
        pitch: 69,
        start: 28,
        length: 8,
        velocity: 61,
    });
    piece
}

#[test]
fn infill_changes_only_masked_cells() {
    let model = tiny_model();
    let piece = chorale_with_a_tie_over_the_bar();
    let regions = [
        MaskRegion::parse("bars=2").unwrap(),
        MaskRegion::parse("voice=tenor,bars=4").unwrap(),
    ];
    let problem = infill_problem(&piece, &regions, KeyChoice::Free).unwrap();
    // The mask is exactly what was asked: bar 2 of every voice, bar 4 of the tenor.
    for step in 0..piece.len() {
        for voice in Voice::ALL {
            let asked = (16..32).contains(&step) || (voice == Voice::Tenor && step >= 48);
            assert_eq!(problem.mask.is_free(step, voice), asked, "{step} {voice}");
        }
    }
    assert_eq!(problem.splits, vec![(32, Voice::Alto)]);
    let before = piece.sounding_pitches();
    let mut restruck = 0;
    for seed in 0..4 {
        for mut s in all_settings() {
            s.seed = seed;
            let out = compose(&model, &problem, &s, &mut Unobserved)
                .unwrap()
                .score;
            let after = out.sounding_pitches();
            for step in 0..piece.len() {
                for voice in Voice::ALL {
                    if problem.mask.is_free(step, voice) {
                        continue;
                    }
                    // Every cell outside the mask sounds as it did ...
                    assert_eq!(
                        after[step][voice.index()],
                        before[step][voice.index()],
                        "step {step} {voice}"
                    );
                    // ... with the same tokens, except that the note held
                    // over the mask's edge is re-struck there when the new
                    // note before it has another pitch.
                    if (step, voice) == (32, Voice::Alto) {
                        let tied = after[31][1] == Some(69);
                        let expected = if tied { Token::Hold } else { Token::Pitch(69) };
                        assert_eq!(out.get(step, voice), expected, "seed {seed}");
                        if !tied {
                            assert_eq!(out.velocity(step, voice), 61);
                            restruck += 1;
                        }
                    } else {
                        assert_eq!(out.get(step, voice), piece.get(step, voice));
                        assert_eq!(out.velocity(step, voice), piece.velocity(step, voice));
                    }
                }
            }
            // Notes entirely outside the masked cells come out identical.
            let untouched =
                |n: &Note| (n.start..n.end()).all(|t| !problem.mask.is_free(t, n.voice));
            let kept: Vec<Note> = piece.notes().into_iter().filter(untouched).collect();
            let now: Vec<Note> = out.notes().into_iter().filter(untouched).collect();
            assert!(kept.iter().all(|n| now.contains(n)), "seed {seed}");
        }
    }
    assert!(restruck > 0, "no run wrote another pitch before the edge");
}

#[test]
fn the_same_seed_gives_the_same_music() {
    let model = tiny_model();
    let problem = harmonize_problem(&melody(), Voice::Soprano, KeyChoice::Free).unwrap();
    for s in all_settings() {
        let a = compose(&model, &problem, &s, &mut Unobserved).unwrap();
        let b = compose(&model, &problem, &s, &mut Unobserved).unwrap();
        assert_eq!(a.score, b.score);
        assert_eq!(a.network_evals, s.network_evals());
    }
}

#[test]
fn key_and_range_constraints_hold_for_every_written_note() {
    let model = tiny_model();
    let c_minor = Key::parse("c minor").unwrap();
    let tune = melody();
    let mut problem = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Fixed(c_minor)).unwrap();
    let tenor = cantor_engine::VoiceRange {
        lowest: 55,
        highest: 62,
    };
    problem.constraints.ranges[Voice::Tenor.index()] = Some(tenor);
    for s in all_settings() {
        let out = compose(&model, &problem, &s, &mut Unobserved)
            .unwrap()
            .score;
        for note in out.notes().iter().filter(|n| n.voice != Voice::Soprano) {
            assert!(c_minor.contains(note.pitch), "{note:?} is not in C minor");
            if note.voice == Voice::Tenor {
                assert!(
                    tenor.contains(note.pitch),
                    "{note:?} outside the tenor range"
                );
            }
        }
    }
}

#[test]
fn melodies_outside_the_model_range_are_harmonized_in_place() {
    let model = tiny_model();
    let high = melody().transposed(12).unwrap(); // soprano up to F6
    let problem = harmonize_problem(&high, Voice::Soprano, KeyChoice::Free).unwrap();
    let out = compose(
        &model,
        &problem,
        &settings(SamplerKind::Langevin, 1, 0),
        &mut Unobserved,
    )
    .unwrap()
    .score;
    assert_eq!(
        out.voice_notes(Voice::Soprano),
        high.voice_notes(Voice::Soprano)
    );
}

#[test]
fn continuation_keeps_the_phrase_and_adds_bars() {
    let model = tiny_model();
    let phrase = chorale();
    let problem = continuation_problem(&phrase, 2, KeyChoice::Free).unwrap();
    let out = compose(
        &model,
        &problem,
        &settings(SamplerKind::Langevin, 1, 0),
        &mut Unobserved,
    )
    .unwrap()
    .score;
    assert_eq!(out.len(), 64 + 32);
    assert_eq!(out.slice(0..64).notes(), phrase.notes());
}

struct CancelAfter(usize, usize);

impl Observer for CancelAfter {
    fn wants_preview(&self) -> bool {
        true
    }

    fn on_level(&mut self, frame: &AnnealingFrame) -> ControlFlow<()> {
        assert!(frame.preview.is_some());
        self.1 += 1;
        if frame.level >= self.0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

#[test]
fn a_run_can_be_cancelled_between_levels() {
    let model = tiny_model();
    let problem = harmonize_problem(&melody(), Voice::Soprano, KeyChoice::Free).unwrap();
    for s in all_settings() {
        let mut observer = CancelAfter(2, 0);
        let err = compose(&model, &problem, &s, &mut observer).unwrap_err();
        assert!(matches!(err, CantorError::Cancelled));
        assert_eq!(observer.1, 2);
    }
}

#[test]
fn decoded_holds_always_follow_a_note() {
    let model = tiny_model();
    let problem = harmonize_problem(&melody(), Voice::Soprano, KeyChoice::Free).unwrap();
    for s in all_settings() {
        let out = compose(&model, &problem, &s, &mut Unobserved)
            .unwrap()
            .score;
        let mut normalized = out.clone();
        normalized.normalize();
        assert_eq!(out, normalized);
        assert!(Voice::ALL.iter().all(|v| out.get(0, *v) != Token::Hold));
    }
}

#[test]
fn bad_requests_are_refused_with_reasons() {
    let model = tiny_model();
    let empty = Score::new(16);
    let err = harmonize_problem(&empty, Voice::Soprano, KeyChoice::Free).unwrap_err();
    assert!(err.to_string().contains("no notes"), "{err}");
    let err = infill_problem(
        &chorale(),
        &[MaskRegion::parse("bars=4-9").unwrap()],
        KeyChoice::Free,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("outside the piece, which has 4 bars"),
        "{err}"
    );
    let problem = harmonize_problem(&melody(), Voice::Soprano, KeyChoice::Free).unwrap();
    let mut s = settings(SamplerKind::Langevin, 1, 0);
    s.levels = 0;
    assert!(compose(&model, &problem, &s, &mut Unobserved).is_err());
}

#[test]
fn a_note_ending_where_the_mask_begins_is_not_lengthened() {
    let model = tiny_model();
    let piece = chorale();
    let problem = infill_problem(
        &piece,
        &[MaskRegion::parse("bars=2").unwrap()],
        KeyChoice::Free,
    )
    .unwrap();
    for seed in 0..6 {
        for mut s in all_settings() {
            s.seed = seed;
            let out = compose(&model, &problem, &s, &mut Unobserved)
                .unwrap()
                .score;
            let bar_one: Vec<Note> = piece
                .notes()
                .into_iter()
                .filter(|n| n.end() <= 16)
                .collect();
            let now: Vec<Note> = out.notes().into_iter().filter(|n| n.start < 16).collect();
            assert_eq!(bar_one, now, "seed {seed} {:?}", s.kind);
        }
    }
}

/// Records how sure the denoiser is of each free cell, level by level.
#[derive(Default)]
struct Sharpness {
    /// Per level: mean over free cells of the most likely pitch's belief.
    levels: Vec<f32>,
    previews: Vec<Score>,
    cells_outside_mask: usize,
    free: Vec<(usize, Voice)>,
}

impl Observer for Sharpness {
    fn wants_preview(&self) -> bool {
        true
    }

    fn on_level(&mut self, frame: &AnnealingFrame) -> ControlFlow<()> {
        let relaxation = frame.relaxation.expect("a relaxation with every preview");
        let mut best = std::collections::HashMap::new();
        for b in &relaxation.beliefs {
            if !self.free.contains(&(b.step, b.voice)) {
                self.cells_outside_mask += 1;
            }
            let e = best.entry((b.step, b.voice)).or_insert(0.0f32);
            *e = e.max(b.probability);
        }
        let mean = self
            .free
            .iter()
            .map(|c| best.get(c).copied().unwrap_or(0.0))
            .sum::<f32>()
            / self.free.len() as f32;
        self.levels.push(mean);
        self.previews.push(frame.preview.expect("preview").clone());
        ControlFlow::Continue(())
    }
}

#[test]
fn the_relaxation_sharpens_into_notes_in_the_problems_own_key() {
    // The shipped model: a random one has nothing to sharpen into.
    let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
    // An octave above the model's soprano range: the run is transposed, and
    // what the observer sees must be moved back.
    let high = melody().transposed(12).unwrap();
    let problem = harmonize_problem(&high, Voice::Soprano, KeyChoice::Free).unwrap();
    let free: Vec<(usize, Voice)> = (0..high.len())
        .flat_map(|t| Voice::ALL.map(|v| (t, v)))
        .filter(|(t, v)| problem.mask.is_free(*t, *v))
        .collect();
    let mut observer = Sharpness {
        free,
        ..Sharpness::default()
    };
    // The view shows the guided beliefs the sampler draws from. With the
    // network and the rules alone (draws, λ = 5) they sharpen late, from
    // about 0.5 to 0.9 (from 0.2 to 0.6 before the rules charged a voice
    // that drops out: a rest took the mass the rules drove off the notes). The line expert at the shipped weight 2 keeps them
    // at 0.3-0.45 to the end: it spreads each cell's moving mass over the
    // pitches the voice's line could step to, so the view is honest that the
    // last levels still choose between passing notes (measured on this
    // melody; models/README.md, "The line expert"). The chord prior, an
    // expert too, sharpens the first levels already (their mean belief
    // 0.71): off here, so what is seen is the network and the rules.
    let settings = SamplerSettings {
        line_weight: 0.0,
        chord_weight: 0.0,
        ..SamplerSettings::from_defaults(&model.card.sampling)
    };
    compose(&model, &problem, &settings, &mut observer).unwrap();
    assert_eq!(observer.cells_outside_mask, 0);
    let (first, last) = (observer.levels[0], *observer.levels.last().unwrap());
    assert!(
        first < 0.6 && last > 0.75 && last > first + 0.3,
        "mean belief per level: {:?}",
        observer.levels
    );
    for preview in &observer.previews {
        assert_eq!(
            preview.voice_notes(Voice::Soprano),
            high.voice_notes(Voice::Soprano)
        );
    }
}

#[test]
fn the_voice_leading_rules_remove_the_faults_they_charge() {
    // A random network writes parallels, crossings and clusters freely; with
    // the rules on, both samplers write far fewer faults on the same seeds.
    let model = tiny_model();
    let problem = harmonize_problem(&melody(), Voice::Soprano, KeyChoice::Free).unwrap();
    for kind in [SamplerKind::Langevin, SamplerKind::Gibbs] {
        let (mut free, mut ruled) = (0.0, 0.0);
        for seed in 0..4 {
            let s = settings(kind, 1, seed);
            let strict = SamplerSettings {
                rules: 6.0,
                ..s.clone()
            };
            let a = compose(&model, &problem, &s, &mut Unobserved).unwrap();
            let b = compose(&model, &problem, &strict, &mut Unobserved).unwrap();
            free += rules::energy(&a.score);
            ruled += rules::energy(&b.score);
            // The rules cost no network evaluation.
            assert_eq!(a.network_evals, b.network_evals);
        }
        assert!(
            free > 8.0,
            "{kind:?}: the random network alone scored only {free}"
        );
        assert!(
            ruled < 0.25 * free,
            "{kind:?}: {ruled} with the rules, {free} without"
        );
    }
}

#[test]
fn a_negative_rules_weight_is_refused() {
    let model = tiny_model();
    let problem = harmonize_problem(&melody(), Voice::Soprano, KeyChoice::Free).unwrap();
    let s = SamplerSettings {
        rules: -1.0,
        ..settings(SamplerKind::Langevin, 1, 0)
    };
    let err = compose(&model, &problem, &s, &mut Unobserved).unwrap_err();
    assert!(err.to_string().contains("rules"), "{err}");
    for key_weight in [-0.5, f32::NAN, 100.0] {
        let s = SamplerSettings {
            key_weight,
            ..settings(SamplerKind::Langevin, 1, 0)
        };
        let err = compose(&model, &problem, &s, &mut Unobserved).unwrap_err();
        assert!(err.to_string().contains("key weight"), "{err}");
    }
}

/// Notes per beat of `voice` over `steps`, a note counted where the sounding
/// pitch changes (as the evaluation counts them).
fn notes_per_beat(score: &Score, voice: Voice) -> f64 {
    let sounding = score.sounding_pitches();
    let changes = (0..score.len())
        .filter(|&t| {
            let now = sounding[t][voice.index()];
            now.is_some() && (t == 0 || sounding[t - 1][voice.index()] != now)
        })
        .count();
    changes as f64 * 4.0 / score.len() as f64
}

/// The melody of Old Hundredth (assets/), four phrases.
fn old_hundredth() -> Score {
    cantor_engine::io::read_music(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/old-hundredth.mid"),
        cantor_engine::io::VoiceLayout::Melody(Voice::Soprano),
        &cantor_engine::io::Limits::default(),
    )
    .unwrap()
}

#[test]
fn the_shipped_defaults_write_inner_voices_that_move() {
    // Issue #11: moving towards the denoiser's mean at a low temperature
    // held notes where Bach moves (half his notes per beat in the inner
    // voices); the shipped defaults draw, and the voices move.
    let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
    let tune = old_hundredth();
    let problem = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    let defaults = SamplerSettings::from_defaults(&model.card.sampling);
    assert_eq!(defaults.target, Target::Draw);
    let before = SamplerSettings {
        target: Target::Mean,
        temperature: 0.5,
        step_size: 0.8,
        rules: 2.0,
        line_weight: 0.0,
        key_weight: 0.0,
        ..defaults.clone()
    };
    let motion = |s: &SamplerSettings| -> Vec<f64> {
        let mut per_voice = vec![0.0; 3];
        for seed in 0..3 {
            let s = SamplerSettings { seed, ..s.clone() };
            let out = compose(&model, &problem, &s, &mut Unobserved)
                .unwrap()
                .score;
            for (i, v) in [Voice::Alto, Voice::Tenor, Voice::Bass].iter().enumerate() {
                per_voice[i] += notes_per_beat(&out, *v) / 3.0;
            }
        }
        per_voice
    };
    let (now, then) = (motion(&defaults), motion(&before));
    eprintln!("notes per beat A T B: defaults {now:?}, mean at T 0.5 {then:?}");
    // (Seeds 0-2 on this tune: 0.78 / 0.70 / 0.92 against 0.35 / 0.38 /
    // 0.67; Bach's inner voices in the chorales move 0.8-1.1 notes a beat.)
    for i in 0..3 {
        assert!(
            now[i] >= 0.5 && now[i] >= 1.4 * then[i],
            "{now:?} vs {then:?}"
        );
    }
}

/// Steps (1-2 semitones) among the pitch changes of `voice`.
fn steps_among_moves(score: &Score, voice: Voice) -> (usize, usize) {
    let sounding = score.sounding_pitches();
    let mut last = None;
    let (mut steps, mut moves) = (0, 0);
    for frame in &sounding {
        if let Some(p) = frame[voice.index()] {
            if let Some(q) = last {
                if p != q {
                    moves += 1;
                    steps += usize::from((p as i32 - q as i32).abs() <= 2);
                }
            }
            last = Some(p);
        }
    }
    (steps, moves)
}

#[test]
fn the_line_expert_turns_the_lower_voices_leaps_into_steps() {
    // Issue #11: the network alone wrote lines with too few steps (tenor
    // 0.58 of its moves against Bach's 0.76); the shipped line expert reads
    // each voice's own line and says which pitch it moves to, not whether
    // it moves.
    let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
    assert!(
        model.lines().is_some(),
        "the shipped card names its line model"
    );
    let tune = old_hundredth();
    let problem = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    let defaults = SamplerSettings::from_defaults(&model.card.sampling);
    assert!(defaults.line_weight > 0.0);
    let alone = SamplerSettings {
        line_weight: 0.0,
        ..defaults.clone()
    };
    let lines = |s: &SamplerSettings| -> (f64, f64) {
        let (mut steps, mut moves, mut notes) = (0, 0, 0.0);
        for seed in 0..3 {
            let s = SamplerSettings { seed, ..s.clone() };
            let out = compose(&model, &problem, &s, &mut Unobserved)
                .unwrap()
                .score;
            for v in [Voice::Alto, Voice::Tenor, Voice::Bass] {
                let (a, b) = steps_among_moves(&out, v);
                steps += a;
                moves += b;
                notes += notes_per_beat(&out, v) / 9.0;
            }
        }
        (steps as f64 / moves.max(1) as f64, notes)
    };
    let (with, without) = (lines(&defaults), lines(&alone));
    eprintln!("steps among moves, notes per beat (A, T, B pooled): with the expert {with:?}, without {without:?}");
    assert!(with.0 >= without.0 + 0.05, "{with:?} vs {without:?}");
    // It does not buy its steps by holding still: beside the chord prior
    // and the cooler settling draws the voices keep 86% of their motion
    // with it on this tune (0.69 against 0.80 notes per beat, three seeds;
    // 90% and more before the prior), and the eval's motion bars hold on
    // the whole validation split (models/README.md).
    assert!(with.1 >= 0.8 * without.1, "{with:?} vs {without:?}");
}

#[test]
fn composed_voices_neither_stutter_nor_drop_out() {
    // Issue #11, session 14: the samplers struck a voice's sounding pitch
    // again where the data only ever holds it (one onset in eight of the
    // composed alto), and the rules, which could charge no rest, made the
    // inner voices fall silent between the melody's notes (4.5% of the
    // tenor's sixteenths). Neither is counted as a note by the motion
    // metrics; both are heard.
    use cantor_engine::metrics::Tally;
    let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
    let tune = old_hundredth();
    let problem = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    let defaults = SamplerSettings::from_defaults(&model.card.sampling);
    for kind in [SamplerKind::Langevin, SamplerKind::Gibbs] {
        let mut dropped = Vec::new();
        for seed in 0..3 {
            let s = SamplerSettings {
                kind,
                seed,
                ..defaults.clone()
            };
            let out = compose(&model, &problem, &s, &mut Unobserved)
                .unwrap()
                .score;
            let sounding = out.sounding_pitches();
            for step in 1..out.len() {
                for voice in [Voice::Alto, Voice::Tenor, Voice::Bass] {
                    let before = sounding[step - 1][voice.index()];
                    assert!(
                        !matches!(out.get(step, voice), Token::Pitch(p) if Some(p) == before),
                        "{kind:?} seed {seed}: {voice} strikes its sounding pitch again at {step}"
                    );
                }
            }
            let t = Tally::over_free_spans(&out, &problem.mask, None);
            dropped.push(t.summary(None).dropped_voice_beats_per_100_beats);
        }
        eprintln!("{kind:?}: beats a voice drops out per 100 beats, seeds 0-2: {dropped:?}");
        // Bach's harmonies on the validation split: 0.55; without the rule
        // the Langevin sampler's seed 0 dropped 2.1 here.
        for d in dropped {
            assert!(d <= 1.0, "{kind:?}: {d} beats dropped per 100 beats");
        }
    }
}

/// Issue #13: the character pad steers what it names on the shipped model,
/// with both samplers: activity the composed voices' notes per beat,
/// tension the share of beats that are not a plain triad; each moves its
/// own statistic in order, and the melody is never touched.
#[test]
fn the_character_pad_steers_activity_and_tension() {
    use cantor_engine::metrics::Tally;
    let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
    let tune = old_hundredth();
    let problem = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    let defaults = SamplerSettings::from_defaults(&model.card.sampling);
    // Mean (notes per beat of A T B, tense-beat share) over seeds 0-2.
    let measure = |kind: SamplerKind, character: Character| -> (f64, f64) {
        let (mut notes, mut tense) = (0.0, 0.0);
        for seed in 0..3 {
            let s = SamplerSettings {
                kind,
                seed,
                character,
                ..defaults.clone()
            };
            let out = compose(&model, &problem, &s, &mut Unobserved)
                .unwrap()
                .score;
            assert_eq!(
                out.voice_notes(Voice::Soprano),
                tune.voice_notes(Voice::Soprano)
            );
            for v in [Voice::Alto, Voice::Tenor, Voice::Bass] {
                notes += notes_per_beat(&out, v) / 9.0;
            }
            let summary = Tally::over_free_spans(&out, &problem.mask, None).summary(None);
            tense += summary.tense_beat_fraction / 3.0;
        }
        (notes, tense)
    };
    let at = |activity, tension| Character { activity, tension };
    for kind in [SamplerKind::Langevin, SamplerKind::Gibbs] {
        let calm = measure(kind, at(-1.0, 0.0));
        let centre = measure(kind, Character::NEUTRAL);
        let busy = measure(kind, at(1.0, 0.0));
        let plain = measure(kind, at(0.0, -1.0));
        let tense = measure(kind, at(0.0, 1.0));
        eprintln!(
            "{kind:?} (notes/beat, tense share): calm {calm:?} centre {centre:?} busy {busy:?}; plain {plain:?} tense {tense:?}"
        );
        assert!(calm.0 < 0.85 * centre.0 && busy.0 > 1.15 * centre.0);
        assert!(plain.1 < centre.1 - 0.05 && tense.1 > centre.1 + 0.05);
    }
    // Out of range is refused, not clamped.
    let wild = SamplerSettings {
        character: at(1.5, 0.0),
        ..defaults
    };
    let err = compose(&model, &problem, &wild, &mut Unobserved).unwrap_err();
    assert!(err.to_string().contains("activity"), "{err}");
}

/// Issue #13: an automation lane moves the pad over the piece; each part
/// is composed with the character the lane gives it there. Calm for the
/// first half and busy for the second, the halves move like the pad's calm
/// and busy positions, not like its centre.
#[test]
fn a_lane_gives_each_part_of_the_piece_its_own_character() {
    let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
    let tune = old_hundredth();
    let half = tune.len() / 2 / 16 * 16;
    let harmonize = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    let defaults = SamplerSettings::from_defaults(&model.card.sampling);
    let at = |activity| Character {
        activity,
        tension: 0.0,
    };
    // Notes per beat of A T B in each half, over seeds 0-2.
    let measure = |problem: &Problem| -> [f64; 2] {
        let mut halves = [0.0; 2];
        for seed in 0..3 {
            let s = SamplerSettings {
                seed,
                ..defaults.clone()
            };
            let out = compose(&model, problem, &s, &mut Unobserved).unwrap().score;
            for (i, range) in [0..half, half..out.len()].into_iter().enumerate() {
                let part = out.slice(range);
                for v in [Voice::Alto, Voice::Tenor, Voice::Bass] {
                    halves[i] += notes_per_beat(&part, v) / 9.0;
                }
            }
        }
        halves
    };
    let with = |lane: Vec<(usize, Character)>| {
        harmonize
            .clone()
            .with_lane(cantor_engine::Lane::new(lane).unwrap())
    };
    let centre = measure(&harmonize);
    let lane = measure(&with(vec![(0, at(-1.0)), (half, at(1.0))]));
    let reverse = measure(&with(vec![(0, at(1.0)), (half, at(-1.0))]));
    eprintln!("notes/beat by half: centre {centre:?}, calm→busy {lane:?}, busy→calm {reverse:?}");
    // Each half follows its own value: busy there writes far more than
    // calm there, calm less than the centre and busy more.
    let halves = [(reverse[0], lane[0]), (lane[1], reverse[1])];
    for (half, ((busy, calm), centre)) in halves.into_iter().zip(centre).enumerate() {
        assert!(busy > 1.5 * calm, "half {half}: busy {busy} calm {calm}");
        assert!(calm < 0.85 * centre && busy > centre);
    }
    // A lane at the centre everywhere is the pad's centre, note for note.
    let flat = with(vec![(0, Character::NEUTRAL), (half, Character::NEUTRAL)]);
    assert_eq!(
        compose(&model, &flat, &defaults, &mut Unobserved)
            .unwrap()
            .score,
        compose(&model, &harmonize, &defaults, &mut Unobserved)
            .unwrap()
            .score
    );
}

/// Issue #15: a piece longer than one section is composed section by
/// section: the melody stays, every section is harmonized, the observer
/// sees one run over all sections, the seed reproduces it, and an infill leaves every
/// cell outside its mask alone.
#[test]
fn a_long_piece_is_composed_section_by_section() {
    use cantor_engine::task::{SECTION_CONTEXT, SECTION_STEPS};
    let model = tiny_model();
    // 90 bars of quarter notes: two sections (1024 + 416 steps).
    let pitches: Vec<u8> = [67u8, 69, 71, 72, 74, 72, 71, 69]
        .iter()
        .copied()
        .cycle()
        .take(90 * 4)
        .collect();
    let long = Score::from_pitches(Voice::Soprano, &pitches, 4);
    assert!(long.len() > SECTION_STEPS + 2 * SECTION_CONTEXT);
    let problem = harmonize_problem(&long, Voice::Soprano, KeyChoice::Free).unwrap();
    struct Levels(Vec<(usize, usize)>);
    impl Observer for Levels {
        fn on_level(&mut self, frame: &AnnealingFrame) -> ControlFlow<()> {
            self.0.push((frame.level, frame.levels));
            ControlFlow::Continue(())
        }
    }
    let settings = SamplerSettings {
        levels: 2,
        ..settings(SamplerKind::Langevin, 1, 7)
    };
    let mut levels = Levels(Vec::new());
    let out = compose(&model, &problem, &settings, &mut levels).unwrap();
    assert_eq!(out.score.len(), long.len());
    assert_eq!(out.network_evals, 4, "two sections of two levels");
    let seen: Vec<usize> = levels.0.iter().map(|(l, _)| *l).collect();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(levels.0.iter().all(|(_, n)| *n == 4), "{:?}", levels.0);
    for step in 0..long.len() {
        assert_eq!(
            out.score.get(step, Voice::Soprano),
            long.get(step, Voice::Soprano)
        );
    }
    for voice in [Voice::Alto, Voice::Tenor, Voice::Bass] {
        for range in [0..SECTION_STEPS, SECTION_STEPS..long.len()] {
            let onsets = range
                .clone()
                .filter(|s| matches!(out.score.get(*s, voice), Token::Pitch(_)))
                .count();
            assert!(onsets > 0, "{voice} has no notes in {range:?}");
        }
    }
    let again = compose(&model, &problem, &settings, &mut Unobserved).unwrap();
    assert_eq!(
        again.score.cells(),
        out.score.cells(),
        "the seed reproduces it"
    );
    // Bars 70-71 masked in the harmonized piece: nothing else changes.
    let regions = [MaskRegion::parse("bars=70-71").unwrap()];
    let infill = infill_problem(&out.score, &regions, KeyChoice::Free).unwrap();
    let redone = compose(&model, &infill, &settings, &mut Unobserved).unwrap();
    let masked = 69 * 16..71 * 16;
    for step in (0..long.len()).filter(|s| !masked.contains(s)) {
        for voice in Voice::ALL {
            if !infill.mask.is_free(step, voice) {
                assert_eq!(redone.score.get(step, voice), infill.score.get(step, voice));
            }
        }
    }
}

/// Share of the sounding cells of `score` from `from` on whose pitch class
/// is outside `key`.
fn outside_key(score: &Score, from: usize, key: Key) -> f64 {
    let sounding = score.sounding_pitches();
    let cells: Vec<u8> = sounding[from..]
        .iter()
        .flatten()
        .flatten()
        .copied()
        .collect();
    cells.iter().filter(|p| !key.contains(**p)).count() as f64 / cells.len() as f64
}

/// A continuation of four bars after a four-part prompt (Old Hundredth's
/// first four bars, harmonized at `settings`), and the prompt's key.
fn old_hundredth_continuation(model: &ScoreModel, settings: &SamplerSettings) -> (Problem, Key) {
    let tune = old_hundredth().slice(0..64);
    let harmony = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    let prompt = compose(model, &harmony, settings, &mut Unobserved)
        .unwrap()
        .score;
    let problem = continuation_problem(&prompt, 4, KeyChoice::Free).unwrap();
    let key = problem.home_key().expect("the prompt has a key");
    (problem, key)
}

/// Notes per beat per voice (the four voices' mean) from step `from` on.
fn new_bars_motion(score: &Score, from: usize) -> f64 {
    let new = score.slice(from..score.len());
    Voice::ALL
        .iter()
        .map(|v| notes_per_beat(&new, *v))
        .sum::<f64>()
        / Voice::ALL.len() as f64
}

#[test]
fn the_home_key_keeps_a_continuation_in_the_prompts_key() {
    // Issue #11: a continuation drifted off the prompt's key (17% of its
    // sounding sixteenths outside it on the validation split, Bach's own
    // bars 5-8 7%). The home key, a soft pull per sixteenth, brings it back
    // without freezing the voices or forbidding chromatic notes.
    let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
    let defaults = SamplerSettings::from_defaults(&model.card.sampling);
    let (problem, key) = old_hundredth_continuation(&model, &defaults);
    assert!(defaults.key_weight > 0.0);
    let off = SamplerSettings {
        key_weight: 0.0,
        ..defaults.clone()
    };
    let measure = |s: &SamplerSettings| -> (f64, f64) {
        let (mut outside, mut motion) = (0.0, 0.0);
        for seed in 0..4 {
            let s = SamplerSettings { seed, ..s.clone() };
            let out = compose(&model, &problem, &s, &mut Unobserved)
                .unwrap()
                .score;
            outside += outside_key(&out, 64, key) / 4.0;
            motion += new_bars_motion(&out, 64) / 4.0;
        }
        (outside, motion)
    };
    let ((pulled, moving), (free, moving_free)) = (measure(&defaults), measure(&off));
    eprintln!(
        "outside {key}: {pulled:.3} with the home key, {free:.3} without; \
         notes per beat per voice {moving:.2} and {moving_free:.2}"
    );
    assert!(pulled < 0.6 * free, "{pulled} vs {free}");
    assert!(moving >= 0.8 * moving_free, "{moving} vs {moving_free}");
}

/// Of the sixteenths sounding in `score` from step `from` on (all voices),
/// the share on the tonic or the dominant of `key`.
fn on_tonic_or_dominant(score: &Score, from: usize, key: Key) -> f64 {
    let sounding = score.sounding_pitches();
    let (mut home, mut all) = (0usize, 0usize);
    for row in &sounding[from..] {
        for p in row.iter().flatten() {
            all += 1;
            let degree = (p + 12 - key.tonic) % 12;
            home += (degree == 0 || degree == 7) as usize;
        }
    }
    home as f64 / all.max(1) as f64
}

#[test]
fn the_home_keys_degrees_do_not_still_a_continuation() {
    // Issue #11, session 14: a continuation's new bars weighed the key's
    // degrees unlike the prompt — too few tonics and dominants, too many
    // subdominant and submediant notes (validation, major: the tonic's
    // share 0.16 against Bach's 0.20, the sixth's 0.15 against 0.11). The
    // degrees' weight says where a moving voice lands (the sampler's unit
    // test; on the validation split the new bars' pitch classes overlap the
    // prompt's 90.2% -> 91.9% as much as Bach's, models/README.md); on one
    // tune that shift is within the seeds' spread, so here it is shown, and
    // what is asserted is that the voices move as much with it as without.
    let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
    let defaults = SamplerSettings::from_defaults(&model.card.sampling);
    assert!(defaults.degree_weight > 0.0);
    let (problem, key) = old_hundredth_continuation(&model, &defaults);
    let off = SamplerSettings {
        degree_weight: 0.0,
        ..defaults.clone()
    };
    let measure = |s: &SamplerSettings| -> (f64, f64, f64) {
        let (mut home, mut motion, mut outside) = (0.0, 0.0, 0.0);
        let seeds = 8;
        for seed in 0..seeds {
            let s = SamplerSettings { seed, ..s.clone() };
            let out = compose(&model, &problem, &s, &mut Unobserved)
                .unwrap()
                .score;
            home += on_tonic_or_dominant(&out, 64, key) / seeds as f64;
            outside += outside_key(&out, 64, key) / seeds as f64;
            motion += new_bars_motion(&out, 64) / seeds as f64;
        }
        (home, motion, outside)
    };
    let (with, without) = (measure(&defaults), measure(&off));
    eprintln!(
        "sixteenths on {key}'s tonic or dominant, notes per beat per voice, share outside the key: \
         {with:.3?} with the degrees, {without:.3?} without"
    );
    assert!(with.1 >= 0.9 * without.1, "{with:?} vs {without:?}");
}

#[test]
fn the_chord_prior_and_the_phrase_ends_bring_bachs_chords_and_a_cadence() {
    // Issue #31: the voices moved, but their chords were not Bach's —
    // sevenths and six-fours on half the beats, and a piece that ended
    // anywhere. Old Hundredth with its phrase ends inferred, at the shipped
    // defaults and with the chord prior off, four seeds each.
    let model = cantor_engine::model::shipped::load(&Device::Cpu).unwrap();
    assert!(
        model.card.chords.is_some(),
        "the shipped card has a chord prior"
    );
    let mut tune = old_hundredth();
    cantor_engine::phrases::Phrasing::Auto
        .apply(&mut tune, Voice::Soprano)
        .unwrap();
    assert!(tune.fermatas().len() >= 2, "{:?}", tune.fermatas());
    let problem = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    let defaults = SamplerSettings::from_defaults(&model.card.sampling);
    assert!(defaults.chord_weight > 0.0);
    let off = SamplerSettings {
        chord_weight: 0.0,
        settle_temperature: None,
        ..defaults.clone()
    };
    let last_melody = tune.voice_notes(Voice::Soprano).last().unwrap().pitch % 12;
    let measure = |s: &SamplerSettings| -> (f64, usize) {
        let (mut plain, mut beats, mut tonic_endings) = (0usize, 0usize, 0usize);
        for seed in 0..4 {
            let s = SamplerSettings { seed, ..s.clone() };
            let out = compose(&model, &problem, &s, &mut Unobserved)
                .unwrap()
                .score;
            let rows = out.sounding_pitches();
            for row in rows.iter().step_by(4) {
                if let Some(is_plain) = cantor_engine::metrics::plain_triad(row) {
                    beats += 1;
                    plain += is_plain as usize;
                }
            }
            let last = cantor_engine::harmony::last_full_row(&rows).unwrap();
            let chord = cantor_engine::harmony::Chord::of(&rows[last]);
            tonic_endings +=
                chord.is_some_and(|c| c.is_root_position_triad() && c.root == last_melody) as usize;
        }
        (plain as f64 / beats as f64, tonic_endings)
    };
    let (plain_on, endings_on) = measure(&defaults);
    let (plain_off, _) = measure(&off);
    assert!(
        plain_on > plain_off + 0.05 && plain_on > 0.55,
        "plain triads {plain_on:.2} with the prior, {plain_off:.2} without"
    );
    assert!(endings_on >= 3, "{endings_on} of 4 end on the tonic");
}
