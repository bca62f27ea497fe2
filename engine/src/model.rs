//! A loaded model: card + network on a device.
//!
//! Loading checks the card first, then every tensor of the safetensors file
//! against the architecture the card describes (names, shapes, dtypes, finite
//! values), so a bad file is refused with a message naming the tensor, before
//! anything is replaced.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::card::ModelCard;
use crate::error::{CantorError, Result};
use crate::lines::LineModel;
use crate::network::ScoreNetwork;

/// The card of a weights file: same path, `.json` extension.
pub fn card_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Chooses the compute device: `cpu`, `cuda`, `metal` or `auto` (a GPU when
/// this build supports one and it is present, else the CPU).
pub fn select_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if cfg!(feature = "cuda") {
                // The NVIDIA libraries are loaded at run time, and cudarc
                // panics when one is missing: that is "no device", not a crash.
                match std::panic::catch_unwind(|| Device::new_cuda(0)) {
                    Ok(Ok(device)) => Ok(device),
                    Ok(Err(e)) => Err(CantorError::input(format!("no CUDA device: {e}"))),
                    Err(panic) => Err(CantorError::input(format!(
                        "no CUDA device: {}",
                        panic_reason(panic.as_ref())
                    ))),
                }
            } else {
                Err(CantorError::input(
                    "this build has no CUDA support: rebuild with `--features cuda`",
                ))
            }
        }
        "metal" => {
            if cfg!(feature = "metal") {
                Device::new_metal(0)
                    .map_err(|e| CantorError::input(format!("no Metal device: {e}")))
            } else {
                Err(CantorError::input(
                    "this build has no Metal support: rebuild with `--features metal`",
                ))
            }
        }
        "auto" => Ok(select_device("cuda")
            .or_else(|_| select_device("metal"))
            .unwrap_or(Device::Cpu)),
        other => Err(CantorError::input(format!(
            "unknown device '{other}': use cpu, cuda, metal or auto"
        ))),
    }
}

/// The first clause of a panic's message ("Unable to dynamically load the
/// \"cuda\" shared library - searched for …" → its part before " - ").
fn panic_reason(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("the CUDA libraries could not be loaded");
    message.split(" - ").next().unwrap_or(message).to_string()
}

/// The device named by the environment variable `var` (`cpu` when unset),
/// for benchmarks and tools that take no arguments.
pub fn device_from_env(var: &str) -> Result<Device> {
    select_device(&std::env::var(var).unwrap_or_else(|_| "cpu".to_string()))
}

/// Human name of a device, for status lines.
pub fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "CPU",
        Device::Cuda(_) => "CUDA GPU",
        Device::Metal(_) => "Metal GPU",
    }
}

/// Names and shapes of every tensor the card's architecture needs, in name
/// order, as the network code declares them.
pub fn expected_tensors(card: &ModelCard) -> Result<Vec<(String, Vec<usize>)>> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    ScoreNetwork::new(&card.architecture, &card.vocabulary, vb)?;
    let data = varmap.data().lock().expect("varmap lock");
    let mut out: Vec<(String, Vec<usize>)> = data
        .iter()
        .map(|(name, var)| (name.clone(), var.dims().to_vec()))
        .collect();
    out.sort();
    Ok(out)
}

/// Freshly initialised weights for `card`, reproducible from `seed`: dense
/// layers uniform in ±1/√fan-in, norms at identity, the last layer of every
/// residual block at zero so each block starts as the identity.
pub fn initial_weights(
    card: &ModelCard,
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = HashMap::new();
    for (name, shape) in expected_tensors(card)? {
        let count: usize = shape.iter().product();
        let is_norm = name.contains("norm");
        let values: Vec<f32> = if is_norm {
            vec![if name.ends_with("weight") { 1.0 } else { 0.0 }; count]
        } else if name.contains(".mix.") || name.ends_with("bias") {
            vec![0.0; count]
        } else {
            let fan_in = *shape.last().unwrap_or(&1) as f32;
            let bound = 1.0 / fan_in.sqrt();
            (0..count)
                .map(|_| rng.random_range(-bound..bound))
                .collect()
        };
        out.insert(name, Tensor::from_vec(values, shape, device)?);
    }
    Ok(out)
}

/// A score network ready to sample with.
#[derive(Clone, Debug)]
pub struct ScoreModel {
    pub card: ModelCard,
    network: ScoreNetwork,
    device: Device,
    /// Where it came from, for messages ("embedded" for the shipped model).
    origin: PathBuf,
    /// The line model the samplers weigh each new pitch with
    /// ([`crate::lines`]), when one is attached.
    lines: Option<Arc<LineModel>>,
}

impl ScoreModel {
    /// Loads `weights` and the card beside it.
    pub fn load(weights: &Path, device: &Device) -> Result<ScoreModel> {
        let card_file = card_path(weights);
        let card_bytes = std::fs::read(&card_file).map_err(|e| {
            CantorError::model(
                &card_file,
                format!("cannot read the model card that must sit beside the weights: {e}"),
            )
        })?;
        let weight_bytes = std::fs::read(weights).map_err(|e| CantorError::io(weights, e))?;
        let model = Self::from_bytes(&card_bytes, &weight_bytes, weights, device)?;
        match model.card.lines.clone() {
            None => Ok(model),
            Some(name) => {
                let path = weights.with_file_name(&name);
                let lines = LineModel::load(&path).map_err(|e| {
                    CantorError::model(
                        &card_file,
                        format!("the card names the line model '{name}' beside it: {e}"),
                    )
                })?;
                Ok(model.with_lines(lines))
            }
        }
    }

    /// Builds a model from a card's JSON and safetensors bytes; `origin` names
    /// the weights in messages.
    pub fn from_bytes(
        card_json: &[u8],
        weights: &[u8],
        origin: &Path,
        device: &Device,
    ) -> Result<ScoreModel> {
        let card_file = card_path(origin);
        let card: ModelCard = serde_json::from_slice(card_json)
            .map_err(|e| CantorError::model(&card_file, format!("not a valid model card: {e}")))?;
        card.validate()
            .map_err(|m| CantorError::model(&card_file, m))?;
        check_weights(&card, weights, origin)?;
        let vb = VarBuilder::from_buffered_safetensors(weights.to_vec(), DType::F32, device)
            .map_err(|e| CantorError::model(origin, format!("cannot read tensors: {e}")))?;
        let network = ScoreNetwork::new(&card.architecture, &card.vocabulary, vb)
            .map_err(|e| CantorError::model(origin, format!("cannot build the network: {e}")))?;
        Ok(ScoreModel {
            card,
            network,
            device: device.clone(),
            origin: origin.to_path_buf(),
            lines: None,
        })
    }

    /// A model with the given weights (e.g. fresh from `initial_weights`).
    pub fn from_tensors(
        card: ModelCard,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<ScoreModel> {
        card.validate().map_err(CantorError::input)?;
        let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, device);
        let network = ScoreNetwork::new(&card.architecture, &card.vocabulary, vb)?;
        Ok(ScoreModel {
            card,
            network,
            device: device.clone(),
            origin: PathBuf::from("(in memory)"),
            lines: None,
        })
    }

    /// A randomly initialised model: what tests use instead of a trained one.
    pub fn random(card: ModelCard, seed: u64, device: &Device) -> Result<ScoreModel> {
        let tensors = initial_weights(&card, seed, device)?;
        Self::from_tensors(card, &tensors, device)
    }

    pub fn network(&self) -> &ScoreNetwork {
        &self.network
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// This model with `lines` as its line model (replacing any).
    pub fn with_lines(mut self, lines: LineModel) -> ScoreModel {
        self.lines = Some(Arc::new(lines));
        self
    }

    /// This model without a line model.
    pub fn without_lines(mut self) -> ScoreModel {
        self.lines = None;
        self
    }

    /// The attached line model, if any.
    pub fn lines(&self) -> Option<&LineModel> {
        self.lines.as_deref()
    }

    /// Copies this model's weights to `device`.
    pub fn to_device(&self, device: &Device) -> Result<ScoreModel> {
        let tensors = self.tensors();
        let mut moved = HashMap::new();
        for (name, t) in tensors {
            moved.insert(name, t.to_device(device)?);
        }
        let mut model = Self::from_tensors(self.card.clone(), &moved, device)?;
        model.origin = self.origin.clone();
        model.lines = self.lines.clone();
        Ok(model)
    }

    /// The weights by name, as they would be saved.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.network
            .named_tensors()
            .into_iter()
            .map(|(name, t)| (name, t.clone()))
            .collect()
    }

    /// Saves weights and card (atomically: temporary files, then rename).
    pub fn save(card: &ModelCard, tensors: &HashMap<String, Tensor>, weights: &Path) -> Result<()> {
        if let Some(dir) = weights.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| CantorError::io(dir, e))?;
            }
        }
        let tmp_weights = weights.with_extension("safetensors.tmp");
        candle_core::safetensors::save(tensors, &tmp_weights)
            .map_err(|e| CantorError::model(weights, format!("cannot write weights: {e}")))?;
        let card_file = card_path(weights);
        let tmp_card = card_file.with_extension("json.tmp");
        let json = serde_json::to_string_pretty(card).expect("cards serialise");
        std::fs::write(&tmp_card, json + "\n").map_err(|e| CantorError::io(&tmp_card, e))?;
        std::fs::rename(&tmp_weights, weights).map_err(|e| CantorError::io(weights, e))?;
        std::fs::rename(&tmp_card, &card_file).map_err(|e| CantorError::io(&card_file, e))?;
        Ok(())
    }
}

/// Checks every tensor of a safetensors file against the card.
fn check_weights(card: &ModelCard, bytes: &[u8], origin: &Path) -> Result<()> {
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        CantorError::model(origin, format!("not a readable safetensors file ({e})"))
    })?;
    let expected = expected_tensors(card)?;
    let present: HashMap<String, _> = file.tensors().into_iter().collect();
    for (name, shape) in &expected {
        let view = present.get(name).ok_or_else(|| {
            CantorError::model(
                origin,
                format!("tensor '{name}' is missing, but the card's architecture needs it"),
            )
        })?;
        if view.shape() != shape.as_slice() {
            return Err(CantorError::model(
                origin,
                format!(
                    "tensor '{name}' has shape {:?} but the card says {:?}",
                    view.shape(),
                    shape
                ),
            ));
        }
        let finite = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
            safetensors::Dtype::F16 | safetensors::Dtype::BF16 => true,
            other => {
                return Err(CantorError::model(
                    origin,
                    format!("tensor '{name}' has dtype {other:?}; f32, f16 or bf16 expected"),
                ))
            }
        };
        if !finite {
            return Err(CantorError::model(
                origin,
                format!("tensor '{name}' holds NaN or infinite values"),
            ));
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(extra) = present.keys().find(|n| !known.contains(n.as_str())) {
        return Err(CantorError::model(
            origin,
            format!("tensor '{extra}' is not part of the architecture the card describes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{NetworkConfig, NoiseSchedule};
    use crate::vocab::Vocabulary;

    fn tiny_card() -> ModelCard {
        ModelCard::new(
            "tiny",
            NetworkConfig::tiny(),
            Vocabulary::chorales(),
            NoiseSchedule {
                sigma_max: 10.0,
                sigma_min: 0.1,
            },
        )
    }

    #[test]
    fn saved_models_load_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.safetensors");
        let card = tiny_card();
        let weights = initial_weights(&card, 7, &Device::Cpu).unwrap();
        ScoreModel::save(&card, &weights, &path).unwrap();
        let model = ScoreModel::load(&path, &Device::Cpu).unwrap();
        let back = model.tensors();
        for (name, t) in &weights {
            let diff = (t - &back[name]).unwrap().abs().unwrap().sum_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name}");
        }
    }

    #[test]
    fn a_tensor_that_disagrees_with_the_card_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let card = tiny_card();
        let mut weights = initial_weights(&card, 7, &Device::Cpu).unwrap();
        weights.insert(
            "blocks.1.taps.weight".into(),
            Tensor::zeros((16, 3), DType::F32, &Device::Cpu).unwrap(),
        );
        ScoreModel::save(&card, &weights, &path).unwrap();
        let err = ScoreModel::load(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.safetensors"), "{err}");
        assert!(
            err.contains("'blocks.1.taps.weight' has shape [16, 3] but the card says [16, 48]"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_not_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.safetensors");
        std::fs::write(&path, b"this is not a tensor file").unwrap();
        std::fs::write(
            card_path(&path),
            serde_json::to_string(&tiny_card()).unwrap(),
        )
        .unwrap();
        let err = ScoreModel::load(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a readable safetensors file"), "{err}");
        std::fs::write(card_path(&path), b"{ nope").unwrap();
        let err = ScoreModel::load(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("junk.json") && err.contains("not a valid model card"),
            "{err}"
        );
    }
}

/// The model shipped with Cantor, compiled into the binary: trained on the
/// JSB chorales (see `models/README.md`).
pub mod shipped {
    use std::path::Path;

    use candle_core::Device;

    use super::ScoreModel;
    use crate::error::Result;
    use crate::lines::LineModel;

    pub const CARD: &[u8] = include_bytes!("../../models/chorales.json");
    pub const WEIGHTS: &[u8] = include_bytes!("../../models/chorales.safetensors");
    /// The line model the shipped card names (`"lines": "lines.safetensors"`).
    pub const LINES_CARD: &[u8] = include_bytes!("../../models/lines.json");
    pub const LINES: &[u8] = include_bytes!("../../models/lines.safetensors");

    /// Loads the shipped model onto `device`, with its line model.
    pub fn load(device: &Device) -> Result<ScoreModel> {
        let model = ScoreModel::from_bytes(
            CARD,
            WEIGHTS,
            Path::new("(built-in) models/chorales.safetensors"),
            device,
        )?;
        if model.card.lines.is_none() {
            return Ok(model);
        }
        let lines = LineModel::from_bytes(
            LINES_CARD,
            LINES,
            Path::new("(built-in) models/lines.safetensors"),
        )?;
        Ok(model.with_lines(lines))
    }
}
