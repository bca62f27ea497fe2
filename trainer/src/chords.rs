//! `trainer chords`: learns the chord prior ([`ChordPrior`]) from a
//! corpus's training pieces and writes it into a model's card, where the
//! samplers find it (weighted by the card's `chord_weight`).

use std::path::Path;

use anyhow::{Context, Result};
use cantor_engine::card::ModelCard;
use cantor_engine::harmony::ChordPrior;

use crate::data::Corpus;

/// Counts the chords of `data`'s training split and stores the prior in
/// the card beside `model` (the weights are left alone).
pub fn run(data: &Path, model: &Path, split_seed: u64) -> Result<ChordPrior> {
    let corpus = Corpus::load(data, split_seed)?;
    corpus.announce();
    let prior = ChordPrior::learn(&corpus.train);
    let card_file = cantor_engine::model::card_path(model);
    let mut card: ModelCard = serde_json::from_slice(
        &std::fs::read(&card_file).with_context(|| format!("{}", card_file.display()))?,
    )
    .with_context(|| format!("{}: not a model card", card_file.display()))?;
    card.chords = Some(prior.clone());
    card.validate().map_err(anyhow::Error::msg)?;
    let tmp = card_file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&card)? + "\n")
        .with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, &card_file).with_context(|| format!("{}", card_file.display()))?;
    eprintln!(
        "chord prior from {} ({} beats, {} under fermatas) written into {}",
        corpus.source,
        prior.beats,
        prior.fermata_beats,
        card_file.display()
    );
    Ok(prior)
}
