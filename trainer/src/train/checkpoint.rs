//! Checkpoints: what a run saves, and what it may resume from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use cantor_engine::card::ModelCard;
use cantor_engine::network::{EXTRA_CONDITIONING, PHRASE_CONDITIONING};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::TrainConfig;

/// What a checkpoint remembers besides tensors.
#[derive(Serialize, Deserialize)]
pub(super) struct CheckpointState {
    pub(super) step: usize,
    pub(super) elapsed_s: f64,
    pub(super) best_valid: Option<f64>,
    pub(super) card: ModelCard,
    pub(super) config: TrainConfig,
}

/// The state saved in the checkpoint folder `ckpt` (its `state.json`), for
/// both trainers: `None` for a fresh run. A run resumes only when asked
/// (`resume`), and refuses to start afresh over a checkpoint it was not
/// asked to continue, so no run is lost by a forgotten flag.
pub(crate) fn read_state<T: DeserializeOwned>(ckpt: &Path, resume: bool) -> Result<Option<T>> {
    let state_file = ckpt.join("state.json");
    match (std::fs::read(&state_file), resume) {
        (Ok(bytes), true) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{}: unreadable checkpoint state", state_file.display())
        })?)),
        (Ok(_), false) => bail!(
            "{} holds a checkpoint: pass --resume to continue it, or delete it to start afresh",
            ckpt.display()
        ),
        (Err(_), true) => bail!("--resume: no checkpoint in {}", ckpt.display()),
        (Err(_), false) => Ok(None),
    }
}

/// Writes `state` as the checkpoint folder's `state.json`, atomically (a
/// crash mid-write leaves the previous state whole), for both trainers.
pub(crate) fn write_state<T: Serialize>(ckpt: &Path, state: &T) -> Result<()> {
    let tmp = ckpt.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(&tmp, ckpt.join("state.json"))?;
    Ok(())
}

/// A checkpoint continues only on the data it was trained on, split the
/// same way: anything else would silently mix two corpora or move pieces
/// between train and test.
pub(super) fn check_same_data(
    state: &CheckpointState,
    config: &TrainConfig,
    ckpt: &Path,
) -> Result<()> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if !same(&state.config.data, &config.data) {
        bail!(
            "{}: the checkpoint was trained on {}, not {}: resume with the same --data, or delete the checkpoint to start afresh",
            ckpt.display(),
            state.config.data.display(),
            config.data.display()
        );
    }
    if state.config.split_seed != config.split_seed {
        bail!(
            "{}: the checkpoint split its corpus with --split-seed {}, not {}",
            ckpt.display(),
            state.config.split_seed,
            config.split_seed
        );
    }
    Ok(())
}

/// The card and weights of a trained model to fine-tune, widened to the
/// line features or the global context when they are asked for and the
/// model lacks them: the new input columns and the blocks' new global
/// layers start at zero (the latter are created so by the network), so the
/// network computes exactly what the model did until training teaches it
/// to use them.
pub(super) fn start_from(
    path: &Path,
    line_features: bool,
    global_context: bool,
    phrase_features: bool,
    device: &Device,
) -> Result<(ModelCard, HashMap<String, Tensor>)> {
    let card_file = cantor_engine::model::card_path(path);
    let mut card: ModelCard = serde_json::from_slice(
        &std::fs::read(&card_file).with_context(|| format!("{}", card_file.display()))?,
    )
    .with_context(|| format!("{}: not a model card", card_file.display()))?;
    card.validate().map_err(anyhow::Error::msg)?;
    let mut weights = candle_core::safetensors::load(path, device)
        .with_context(|| format!("{}: unreadable weights", path.display()))?;
    if global_context {
        card.architecture.global_context = true;
    }
    // The input layer reads [x, conditioning (phrase ends last), lines]:
    // new channels get zero columns where the network will read them.
    let data = card.vocabulary.total_size();
    let base = 2 * data + EXTRA_CONDITIONING - PHRASE_CONDITIONING;
    if phrase_features && !card.architecture.phrase_features {
        card.architecture.phrase_features = true;
        widen_input(&mut weights, base, PHRASE_CONDITIONING, path, device)?;
    }
    if line_features && !card.architecture.line_features {
        card.architecture.line_features = true;
        let at = base
            + match card.architecture.phrase_features {
                true => PHRASE_CONDITIONING,
                false => 0,
            };
        let all = cantor_engine::network::input_channels(&card.architecture, &card.vocabulary);
        widen_input(&mut weights, at, all - at, path, device)?;
    }
    let wanted = cantor_engine::network::input_channels(&card.architecture, &card.vocabulary);
    let have = weights
        .get("input.weight")
        .with_context(|| format!("{}: no input.weight", path.display()))?
        .dim(1)?;
    anyhow::ensure!(
        have == wanted,
        "{}: input.weight has {have} columns, the network reads {wanted}",
        path.display()
    );
    Ok((card, weights))
}

/// Inserts `count` zero columns into `input.weight` before column `at`.
fn widen_input(
    weights: &mut HashMap<String, Tensor>,
    at: usize,
    count: usize,
    path: &Path,
    device: &Device,
) -> Result<()> {
    let input = weights
        .get("input.weight")
        .with_context(|| format!("{}: no input.weight", path.display()))?;
    let (hidden, have) = input.dims2()?;
    anyhow::ensure!(
        at <= have,
        "{}: input.weight has {have} columns, too few to widen at column {at}",
        path.display()
    );
    let zeros = Tensor::zeros((hidden, count), DType::F32, device)?;
    let widened = Tensor::cat(
        &[
            &input.narrow(1, 0, at)?,
            &zeros,
            &input.narrow(1, at, have - at)?,
        ],
        1,
    )?;
    weights.insert("input.weight".into(), widened);
    Ok(())
}

pub(crate) fn checkpoint_dir(out: &Path) -> PathBuf {
    out.with_extension("ckpt")
}

pub(crate) fn save_tensors(map: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("tmp");
    candle_core::safetensors::save(map, &tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A var map's variables sorted by name: the fixed order in which the
/// optimizer's moments and the checkpoint files are indexed.
pub(crate) fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut vars: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

pub(crate) fn named(
    vars: &[(String, Var)],
    tensors: impl Fn(usize, &Var) -> Tensor,
) -> HashMap<String, Tensor> {
    vars.iter()
        .enumerate()
        .map(|(i, (n, v))| (n.clone(), tensors(i, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::read_state;

    #[test]
    fn a_checkpoint_is_resumed_only_when_asked_and_never_started_over() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("m.ckpt");
        // Nothing there: a fresh run starts, a resume is refused.
        assert!(read_state::<serde_json::Value>(&ckpt, false)
            .unwrap()
            .is_none());
        let err = read_state::<serde_json::Value>(&ckpt, true).unwrap_err();
        assert!(err.to_string().contains("no checkpoint"), "{err}");

        std::fs::create_dir_all(&ckpt).unwrap();
        std::fs::write(ckpt.join("state.json"), r#"{"step": 7}"#).unwrap();
        // A checkpoint there: resumed with --resume, and a fresh run refuses
        // to overwrite it.
        let state: serde_json::Value = read_state(&ckpt, true).unwrap().unwrap();
        assert_eq!(state["step"], 7);
        let err = read_state::<serde_json::Value>(&ckpt, false).unwrap_err();
        assert!(err.to_string().contains("pass --resume"), "{err}");

        // A damaged state is an error that names the file, not a fresh start.
        std::fs::write(ckpt.join("state.json"), "{ not json").unwrap();
        let err = read_state::<serde_json::Value>(&ckpt, true).unwrap_err();
        assert!(
            err.to_string().contains("unreadable checkpoint state"),
            "{err}"
        );
        assert!(err.to_string().contains("state.json"), "{err}");
    }
}
