//! The CUDA backend writes the CPU's music: the shipped network gives the
//! same distributions on both devices, and a harmonization with the same
//! seed comes out (nearly) note for note the same, with the melody intact.
//!
//! Compiled only with `--features cuda`; run it on a machine with an NVIDIA
//! GPU (`cargo test -p cantor-engine --features cuda --test gpu`). Asking for
//! these tests is asking for the GPU, so without one they fail and say why.
#![cfg(feature = "cuda")]

use candle_core::Tensor;
use cantor_engine::model::{select_device, shipped};
use cantor_engine::network::{conditioning, EXTRA_CONDITIONING};
use cantor_engine::{
    compose, harmonize_problem, Device, KeyChoice, Mask, SamplerKind, SamplerSettings, Score,
    Unobserved, Voice,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gpu() -> Device {
    let device = select_device("cuda").unwrap_or_else(|e| panic!("{e}"));
    assert!(device.is_cuda());
    device
}

/// Eight bars of a chorale melody in quarter notes.
fn melody() -> Score {
    let pitches = [
        67, 67, 66, 64, 62, 67, 69, 71, 71, 71, 71, 69, 67, 72, 71, 69, 67, 69, 71, 69, 67, 64, 66,
        67, 74, 71, 67, 69, 72, 71, 69, 67,
    ];
    Score::from_pitches(Voice::Soprano, &pitches, 4)
}

#[test]
fn the_network_gives_the_same_distributions_on_the_gpu() {
    let gpu = gpu();
    let on_cpu = shipped::load(&Device::Cpu).unwrap();
    let on_gpu = shipped::load(&gpu).unwrap();
    let vocab = &on_cpu.card.vocabulary;
    let tune = melody();
    let steps = tune.len();
    let channels = vocab.total_size();
    let mut mask = Mask::all(steps);
    for t in 0..steps {
        mask.set_free(t, Voice::Soprano, false);
    }
    let cond = conditioning(&tune, &mask, vocab);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // A batch of three noise levels, from nearly clean to σ_max.
    let sigmas = [0.1f32, 1.0, on_cpu.card.noise.sigma_max];
    let mut x = Vec::new();
    let mut c = Vec::new();
    for sigma in sigmas {
        x.extend((0..steps * channels).map(|_| rng.random::<f32>() * sigma));
        c.extend_from_slice(&cond);
    }
    let shape_x = (sigmas.len(), steps, channels);
    let shape_c = (sigmas.len(), steps, channels + EXTRA_CONDITIONING);
    let run = |model: &cantor_engine::ScoreModel, device: &Device| -> Vec<f32> {
        let x = Tensor::from_vec(x.clone(), shape_x, device).unwrap();
        let c = Tensor::from_vec(c.clone(), shape_c, device).unwrap();
        model
            .network()
            .denoise(&x, &c, &sigmas, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let a = run(&on_cpu, &Device::Cpu);
    let b = run(&on_gpu, &gpu);
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    eprintln!("largest probability difference CPU vs GPU: {worst:.2e}");
    assert!(worst < 1e-3, "CPU and GPU denoisers differ by {worst}");
}

#[test]
fn harmonizing_on_the_gpu_writes_the_cpus_music() {
    let gpu = gpu();
    let on_cpu = shipped::load(&Device::Cpu).unwrap();
    let on_gpu = shipped::load(&gpu).unwrap();
    let tune = melody();
    let problem = harmonize_problem(&tune, Voice::Soprano, KeyChoice::Free).unwrap();
    for kind in [SamplerKind::Langevin, SamplerKind::Gibbs] {
        let settings = SamplerSettings {
            kind,
            seed: 11,
            ..SamplerSettings::from_defaults(&on_cpu.card.sampling)
        };
        let cpu = compose(&on_cpu, &problem, &settings, &mut Unobserved)
            .unwrap()
            .score;
        let out = compose(&on_gpu, &problem, &settings, &mut Unobserved)
            .unwrap()
            .score;
        assert_eq!(
            out.voice_notes(Voice::Soprano),
            tune.voice_notes(Voice::Soprano),
            "{kind:?} on the GPU changed the melody"
        );
        for voice in [Voice::Alto, Voice::Tenor, Voice::Bass] {
            assert!(!out.voice_is_silent(voice), "{kind:?}: {voice:?} is silent");
        }
        // The noise comes from the same seeded generator on the CPU, so only
        // floating-point rounding can tell the devices apart.
        let cells = cpu.cells().len() * 4;
        let same = cpu
            .cells()
            .iter()
            .zip(out.cells())
            .map(|(p, q)| p.iter().zip(q).filter(|(a, b)| a == b).count())
            .sum::<usize>();
        let agreement = same as f64 / cells as f64;
        eprintln!("{kind:?}: {same}/{cells} cells the same on GPU and CPU");
        assert!(agreement >= 0.9, "{kind:?}: only {agreement:.3} agree");
    }
}
