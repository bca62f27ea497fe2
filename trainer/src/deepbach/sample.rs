//! DeepBach's sampler: parallel pseudo-Gibbs over a problem's free cells,
//! as the authors' `parallel_gibbs` does it. The free cells start at random
//! tokens; each iteration, for each voice with free cells, `parallel` of
//! its free cells (drawn at random, with replacement) are redrawn at once
//! from that voice's network given the current state of every other cell;
//! the temperature starts at `start_temperature` and is multiplied by
//! `decay` at each iteration down to `final_temperature`.
//!
//! The budget, `updates_per_cell`, holds for the voice with the most free
//! cells: the run has `updates_per_cell × that count / parallel`
//! iterations, and a voice with fewer free cells (an infill over some
//! voices only) is redrawn as often, so more often per cell.
//!
//! The constraints Cantor's samplers honour hold here too: known cells are
//! never redrawn (the melody is kept), a free cell's pitch must be allowed
//! by the key and range constraints, and a hold only continues a sounding
//! note and never lengthens a known note past the mask's edge.

use anyhow::Result;
use candle_core::Tensor;
use cantor_engine::constraints::Key;
use cantor_engine::grid::{Score, Token, Voice, DEFAULT_VELOCITY, VOICES};
use cantor_engine::vocab::HOLD_INDEX;
use cantor_engine::Problem;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::net::HostInputs;
use super::{DeepBach, Encoded, GibbsSchedule};

/// What a run wrote, and how much work it took.
pub struct Sampled {
    pub score: Score,
    /// Network calls (one per voice per iteration) and cells redrawn.
    pub network_calls: usize,
    pub updates: usize,
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} network calls, {} updates",
            self.network_calls, self.updates
        )
    }
}

/// Solves `problem` with DeepBach's pseudo-Gibbs sampler.
pub fn compose(
    model: &DeepBach,
    problem: &Problem,
    schedule: &GibbsSchedule,
    rng: &mut ChaCha8Rng,
) -> Result<Sampled> {
    problem.check_vocabulary(&model.card.vocabulary)?;
    let vocab = &model.card.vocabulary;
    let steps = problem.score.len();
    let allowed = problem.constraints.allowed_indices(vocab);
    // The key signature comes from the known music (the free cells cleared).
    let mut known = problem.score.clone();
    for t in 0..steps {
        for v in Voice::ALL {
            if problem.mask.is_free(t, v) {
                known.set(t, v, Token::Rest);
            }
        }
    }
    known.normalize();
    let key = problem.constraints.key.or_else(|| Key::estimate(&known));
    let mut state = Encoded::new(&known, vocab, key)
        .ok_or_else(|| anyhow::anyhow!("a known note lies outside DeepBach's vocabulary"))?;
    let free: [Vec<usize>; VOICES] =
        Voice::ALL.map(|v| (0..steps).filter(|t| problem.mask.is_free(*t, v)).collect());
    // DeepBach's random start: each free cell an allowed token at random.
    for v in Voice::ALL {
        let ok: Vec<usize> = (0..vocab.voice_size(v))
            .filter(|i| allowed[v.index()][*i] && *i != HOLD_INDEX)
            .collect();
        if !free[v.index()].is_empty() && ok.len() < 2 {
            anyhow::bail!(
                "the {v} may not sound any pitch: the key and range constraints leave it none"
            );
        }
        for &t in &free[v.index()] {
            state.cells[t][v.index()] = ok[rng.random_range(0..ok.len())] as u32;
        }
    }
    let longest = free.iter().map(Vec::len).max().unwrap_or(0);
    let iterations = (schedule.updates_per_cell as f64 * longest as f64 / schedule.parallel as f64)
        .ceil() as usize;
    let context = model.context();
    let mut temperature = schedule.start_temperature;
    let (mut network_calls, mut updates) = (0usize, 0usize);
    for _ in 0..iterations {
        temperature = (temperature * schedule.decay).max(schedule.final_temperature);
        // Each voice's cells to redraw, then the voices' networks at once
        // (one thread each: they read the same state and share nothing).
        let picks: Vec<(Voice, Vec<usize>)> = Voice::ALL
            .into_iter()
            .filter(|v| !free[v.index()].is_empty())
            .map(|v| {
                let cells = &free[v.index()];
                let picked = (0..schedule.parallel)
                    .map(|_| cells[rng.random_range(0..cells.len())])
                    .collect();
                (v, picked)
            })
            .collect();
        let state_ref = &state;
        let probs: Vec<Result<Vec<f32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = picks
                .iter()
                .map(|(v, picked)| {
                    scope.spawn(move || -> Result<Vec<f32>> {
                        let mut inputs = HostInputs::default();
                        for &t in picked {
                            inputs.push(
                                context,
                                t as i64,
                                |s| state_ref.cell(s),
                                |s| state_ref.meta_at(s),
                            );
                        }
                        let x = inputs.tensors(&model.device)?;
                        let logits = model.voices[v.index()].forward(&x, false)?;
                        flat(&candle_nn::ops::softmax_last_dim(&logits)?)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a voice network panicked")))
                })
                .collect()
        });
        network_calls += picks.len();
        let mut redraws = Vec::with_capacity(picks.len());
        for ((v, picked), p) in picks.into_iter().zip(probs) {
            redraws.push((v, picked, p?));
        }
        // All of an iteration's draws come from the same state.
        for (v, picked, probs) in redraws {
            let n = vocab.voice_size(v);
            for (k, &t) in picked.iter().enumerate() {
                let may_hold =
                    t > 0 && sounding_before(&state, t, v.index()) && !problem.hold_forbidden(t, v);
                let row = &probs[k * n..(k + 1) * n];
                let weights: Vec<f64> = row
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let ok = allowed[v.index()][i] && (i != HOLD_INDEX || may_hold);
                        match ok {
                            true => (p.max(1e-30) as f64).powf(1.0 / temperature as f64),
                            false => 0.0,
                        }
                    })
                    .collect();
                let total: f64 = weights.iter().sum();
                if total <= 0.0 {
                    continue;
                }
                let mut u = rng.random::<f64>() * total;
                // Rounding may carry u past the last weight: then the last
                // token that may be drawn.
                let mut chosen = weights.iter().rposition(|w| *w > 0.0).unwrap_or(0);
                for (i, w) in weights.iter().enumerate() {
                    if u < *w {
                        chosen = i;
                        break;
                    }
                    u -= w;
                }
                state.cells[t][v.index()] = chosen as u32;
                updates += 1;
            }
        }
    }
    let mut score = state.to_score(&problem.score, vocab);
    // Known cells are exactly as given; a hold orphaned by a later redraw
    // of the note before it becomes a rest.
    for t in 0..steps {
        for v in Voice::ALL {
            if !problem.mask.is_free(t, v) {
                score.set(t, v, problem.score.get(t, v));
            }
        }
    }
    score.normalize();
    for t in 0..steps {
        for v in Voice::ALL {
            if problem.mask.is_free(t, v) && matches!(score.get(t, v), Token::Pitch(_)) {
                score.set_velocity(t, v, DEFAULT_VELOCITY);
            }
        }
    }
    problem.finish(&mut score);
    Ok(Sampled {
        score,
        network_calls,
        updates,
    })
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Whether a note sounds in voice `v` just before step `t` in `state`.
fn sounding_before(state: &Encoded, t: usize, v: usize) -> bool {
    for s in (0..t).rev() {
        match state.cells[s][v] as usize {
            0 => return false,
            HOLD_INDEX => continue,
            _ => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deepbach::net::Architecture;
    use crate::deepbach::{DeepBachCard, DEEPBACH_FORMAT};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use cantor_engine::{harmonize_problem, infill_problem, KeyChoice, MaskRegion, Vocabulary};
    use rand::SeedableRng;

    /// A tiny DeepBach with random weights: what it writes is noise, which
    /// is what these tests want (the constraints must hold whatever the
    /// networks say).
    fn tiny() -> (DeepBach, VarMap) {
        let card = DeepBachCard {
            format: DEEPBACH_FORMAT.into(),
            name: "tiny".into(),
            architecture: Architecture {
                context: 4,
                note_embedding: 3,
                meta_embedding: 2,
                lstm_layers: 2,
                lstm_hidden: 5,
                linear_hidden: 6,
                dropout: 0.0,
            },
            vocabulary: Vocabulary::chorales(),
            sampling: GibbsSchedule {
                updates_per_cell: 6.0,
                ..GibbsSchedule::default()
            },
            training: serde_json::Value::Null,
            metrics: serde_json::Value::Null,
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        (DeepBach::build(card, vb, &Device::Cpu).unwrap(), varmap)
    }

    fn chorale(bars: usize) -> Score {
        let soprano = [72u8, 74, 76, 74, 72, 71, 72, 67];
        let pitches: Vec<u8> = (0..bars * 4).map(|i| soprano[i % 8]).collect();
        let mut score = Score::from_pitches(Voice::Soprano, &pitches, 4);
        let chords = [[67u8, 64, 48], [67, 62, 55], [67, 60, 48], [65, 59, 55]];
        for t in 0..score.len() {
            let chord = chords[(t / 4) % 4];
            for (k, v) in [Voice::Alto, Voice::Tenor, Voice::Bass].iter().enumerate() {
                let token = match t % 4 {
                    0 => Token::Pitch(chord[k]),
                    _ => Token::Hold,
                };
                score.set(t, *v, token);
            }
        }
        score
    }

    #[test]
    fn the_parameter_count_matches_the_networks() {
        let (model, varmap) = tiny();
        let counted: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(model.parameters(), counted);
    }

    #[test]
    fn harmonizing_keeps_the_melody_and_the_key() {
        let (model, _) = tiny();
        let piece = chorale(2);
        let key = cantor_engine::Key::parse("C").unwrap();
        let problem = harmonize_problem(&piece, Voice::Soprano, KeyChoice::Fixed(key)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let out = compose(&model, &problem, &model.card.sampling, &mut rng).unwrap();
        assert!(out.network_calls > 0 && out.updates > 0, "{out:?}");
        for t in 0..piece.len() {
            assert_eq!(
                out.score.get(t, Voice::Soprano),
                piece.get(t, Voice::Soprano)
            );
            for v in [Voice::Alto, Voice::Tenor, Voice::Bass] {
                if let Token::Pitch(p) = out.score.get(t, v) {
                    assert!(key.contains(p), "{v} at {t}: {p} is not in C major");
                    assert!(model.card.vocabulary.range(v).contains(p));
                }
            }
        }
        // A hold always continues a note.
        let mut normal = out.score.clone();
        normal.normalize();
        assert_eq!(normal.cells(), out.score.cells());
        // The same seed writes the same music.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let again = compose(&model, &problem, &model.card.sampling, &mut rng).unwrap();
        assert_eq!(again.score.cells(), out.score.cells());
    }

    #[test]
    fn infilling_changes_nothing_outside_the_mask() {
        let (model, _) = tiny();
        let piece = chorale(4);
        let region = MaskRegion::parse("bars=2").unwrap();
        let problem = infill_problem(&piece, &[region], KeyChoice::Free).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let out = compose(&model, &problem, &model.card.sampling, &mut rng).unwrap();
        let before = piece.sounding_pitches();
        let after = out.score.sounding_pitches();
        let mut changed_inside = 0;
        for t in 0..piece.len() {
            for v in Voice::ALL {
                if problem.mask.is_free(t, v) {
                    changed_inside += (out.score.get(t, v) != piece.get(t, v)) as usize;
                } else {
                    assert_eq!(
                        after[t][v.index()],
                        before[t][v.index()],
                        "{v} at step {t} sounds a different pitch outside the mask"
                    );
                }
            }
        }
        assert!(changed_inside > 0, "the masked bar was not rewritten");
    }

    #[test]
    fn a_voice_left_no_pitch_is_a_clear_error() {
        let (model, _) = tiny();
        let piece = chorale(1);
        let key = cantor_engine::Key::parse("C").unwrap();
        let mut problem = harmonize_problem(&piece, Voice::Soprano, KeyChoice::Fixed(key)).unwrap();
        problem.constraints.ranges[Voice::Alto.index()] = Some(cantor_engine::VoiceRange {
            lowest: 61,
            highest: 61,
        });
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let err = compose(&model, &problem, &model.card.sampling, &mut rng).unwrap_err();
        assert!(
            err.to_string().contains("alto may not sound any pitch"),
            "{err}"
        );
    }
}
