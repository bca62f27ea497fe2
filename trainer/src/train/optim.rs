//! The optimizer: Adam with decoupled weight decay and gradient clipping,
//! its moments kept for checkpoints.

use anyhow::{bail, Result};
use candle_core::{backprop::GradStore, Tensor, Var};

/// Adam with decoupled weight decay, with moments we can checkpoint.
pub(crate) struct Adam {
    pub(crate) m: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    pub(crate) t: usize,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;
const WEIGHT_DECAY: f64 = 1e-5;
/// Gradients are scaled down to this global norm when larger.
const MAX_GRAD_NORM: f64 = 1.0;

impl Adam {
    pub(crate) fn new(vars: &[(String, Var)]) -> Result<Adam> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Adam {
            m: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            v: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            t: 0,
        })
    }

    pub(crate) fn step(
        &mut self,
        vars: &[(String, Var)],
        grads: &GradStore,
        lr: f64,
    ) -> Result<f64> {
        self.t += 1;
        let gs = vars
            .iter()
            .map(|(_, var)| match grads.get(var) {
                Some(g) => Ok(g.clone()),
                None => var.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<Vec<Tensor>>>()?;
        // One reduction on the device and one read per step: on a GPU each
        // read is a synchronisation, so the norm is not summed on the host.
        let squares = gs
            .iter()
            .map(|g| g.sqr()?.sum_all())
            .collect::<candle_core::Result<Vec<Tensor>>>()?;
        let norm2 = Tensor::stack(&squares, 0)?.sum_all()?.to_scalar::<f32>()? as f64;
        if !norm2.is_finite() {
            let name = vars
                .iter()
                .zip(&squares)
                .find(|(_, n)| n.to_scalar::<f32>().is_ok_and(|n| !n.is_finite()))
                .map_or("?", |((name, _), _)| name.as_str());
            bail!("gradient of '{name}' is not finite; lower the learning rate");
        }
        let norm = norm2.sqrt();
        let scale = if norm > MAX_GRAD_NORM {
            MAX_GRAD_NORM / norm
        } else {
            1.0
        };
        let (bc1, bc2) = (
            1.0 - BETA1.powi(self.t as i32),
            1.0 - BETA2.powi(self.t as i32),
        );
        for (i, ((_, var), g)) in vars.iter().zip(gs).enumerate() {
            let g = (g * scale)?;
            self.m[i] = ((&self.m[i] * BETA1)? + (&g * (1.0 - BETA1))?)?;
            self.v[i] = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let update = ((&self.m[i] / bc1)? / ((&self.v[i] / bc2)?.sqrt()? + ADAM_EPS)?)?;
            // Detached: a value computed from the tracked variable would keep
            // every earlier step's graph alive.
            let decayed = (var.as_tensor().detach() * (1.0 - lr * WEIGHT_DECAY))?;
            var.set(&(decayed - (update * lr)?)?.detach())?;
        }
        Ok(norm)
    }
}
