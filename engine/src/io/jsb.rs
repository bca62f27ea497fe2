//! The JSB chorales benchmark JSON (`Jsb16thSeparated.json`): `train`,
//! `valid` and `test` lists of pieces, each a list of 16th-note steps
//! `[S, A, T, B]` of MIDI pitches, −1 for silence.
//!
//! The format does not tell a held note from a repeated one; a pitch equal
//! to the previous step's is read as a hold, which is what the chorales
//! mostly mean. Pieces are taken to be in 4/4, as almost all of them are.
//!
//! The same split *with its phrase ends* (`jsb-fermatas/chorales.json`) is
//! read too: each piece an object whose `steps` are the JSB grid, with
//! `fermata` (1 on every step under a fermata, any voice), whether they are
//! `fermatas_complete`, and the piece's `tonic` and `mode`; an `extra` list
//! holds chorales for training only. Each fermata becomes the span of the
//! soprano note it starts on — what a MusicXML `<fermata>` on the melody,
//! a click in the editor and the inference from a plain melody all give.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::constraints::{Key, Scale};
use crate::error::{CantorError, Result};
use crate::grid::{Score, Token, Voice, VOICES};

#[derive(Clone, Debug, Default)]
pub struct JsbSplits {
    pub train: Vec<Score>,
    pub valid: Vec<Score>,
    pub test: Vec<Score>,
    /// Chorales for training only (in no JSB piece; the phrased file's).
    pub extra: Vec<Score>,
    /// Each piece's key where the file says it, by split name.
    keys: HashMap<String, Vec<Option<Key>>>,
}

impl JsbSplits {
    pub fn split(&self, name: &str) -> Option<&[Score]> {
        match name {
            "train" => Some(&self.train),
            "valid" | "validation" => Some(&self.valid),
            "test" => Some(&self.test),
            "extra" => Some(&self.extra),
            _ => None,
        }
    }

    /// The key of piece `index` of split `name`, where the file says it.
    pub fn key(&self, name: &str, index: usize) -> Option<Key> {
        let name = if name == "validation" { "valid" } else { name };
        self.keys.get(name)?.get(index).copied().flatten()
    }

    fn target(&mut self, name: &str) -> Option<&mut Vec<Score>> {
        match name {
            "train" => Some(&mut self.train),
            "valid" => Some(&mut self.valid),
            "test" => Some(&mut self.test),
            "extra" => Some(&mut self.extra),
            _ => None,
        }
    }
}

/// One piece of the phrased file (fields the reader does not need are
/// skipped).
#[derive(Deserialize)]
struct PhrasedPiece {
    steps: Vec<Vec<f64>>,
    #[serde(default)]
    fermata: Vec<u8>,
    #[serde(default)]
    fermatas_complete: bool,
    tonic: Option<u8>,
    mode: Option<String>,
}

impl PhrasedPiece {
    fn score(&self) -> std::result::Result<Score, String> {
        let mut score = jsb_piece(&self.steps)?;
        if self.fermatas_complete && self.fermata.len() == self.steps.len() {
            let starts = (0..self.fermata.len())
                .filter(|&t| self.fermata[t] != 0 && (t == 0 || self.fermata[t - 1] == 0));
            let spans = starts
                .map(|start| {
                    let end = (start..self.fermata.len())
                        .find(|&t| self.fermata[t] == 0)
                        .unwrap_or(self.fermata.len());
                    soprano_note(&score, start).unwrap_or(start..end)
                })
                .collect();
            score.set_fermatas(spans);
        }
        Ok(score)
    }

    fn key(&self) -> Option<Key> {
        let scale = match self.mode.as_deref()? {
            "major" => Scale::Major,
            "minor" => Scale::Minor,
            _ => return None,
        };
        Some(Key {
            tonic: self.tonic.filter(|t| *t < 12)?,
            scale,
        })
    }
}

/// The steps of the soprano note sounding at `step`, if one does.
pub fn soprano_note(score: &Score, step: usize) -> Option<std::ops::Range<usize>> {
    let onset = score.onset(step, Voice::Soprano)?;
    let end = (onset + 1..score.len())
        .find(|&t| score.get(t, Voice::Soprano) != Token::Hold)
        .unwrap_or(score.len());
    Some(onset..end)
}

pub fn read_jsb(path: &Path) -> Result<JsbSplits> {
    let bytes = std::fs::read(path).map_err(|e| CantorError::io(path, e))?;
    parse_jsb(&bytes, path)
}

pub fn parse_jsb(bytes: &[u8], path: &Path) -> Result<JsbSplits> {
    let phrased = serde_json::from_slice::<HashMap<String, Vec<PhrasedPiece>>>(bytes);
    if let Ok(raw) = phrased {
        return phrased_splits(raw, path);
    }
    let raw: HashMap<String, Vec<Vec<Vec<f64>>>> = serde_json::from_slice(bytes).map_err(|e| {
        CantorError::music(
            path,
            format!(
                "not JSB chorale JSON (expected {{\"train\": [[[S, A, T, B], …], …], …}}): {e}"
            ),
        )
    })?;
    let mut splits = JsbSplits::default();
    for (name, pieces) in raw {
        let target = match name.as_str() {
            "train" => &mut splits.train,
            "valid" => &mut splits.valid,
            "test" => &mut splits.test,
            _ => continue,
        };
        for (index, piece) in pieces.iter().enumerate() {
            let score = jsb_piece(piece)
                .map_err(|m| CantorError::music(path, format!("{name} piece {index}: {m}")))?;
            target.push(score);
        }
    }
    if splits.train.is_empty() && splits.valid.is_empty() && splits.test.is_empty() {
        return Err(CantorError::music(
            path,
            "no train, valid or test pieces in the file",
        ));
    }
    Ok(splits)
}

fn phrased_splits(raw: HashMap<String, Vec<PhrasedPiece>>, path: &Path) -> Result<JsbSplits> {
    let mut splits = JsbSplits::default();
    for (name, pieces) in raw {
        let Some(target) = splits.target(&name) else {
            continue;
        };
        for (index, piece) in pieces.iter().enumerate() {
            let score = piece
                .score()
                .map_err(|m| CantorError::music(path, format!("{name} piece {index}: {m}")))?;
            target.push(score);
        }
        splits
            .keys
            .insert(name, pieces.iter().map(PhrasedPiece::key).collect());
    }
    if splits.train.is_empty() && splits.valid.is_empty() && splits.test.is_empty() {
        return Err(CantorError::music(
            path,
            "no train, valid or test pieces in the file",
        ));
    }
    Ok(splits)
}

/// One piece: steps of four pitches (−1 = silent) → a score with holds.
pub fn jsb_piece(steps: &[Vec<f64>]) -> Result<Score, String> {
    let mut score = Score::new(steps.len());
    let mut previous = [None::<u8>; VOICES];
    for (t, step) in steps.iter().enumerate() {
        if step.len() != VOICES {
            return Err(format!(
                "step {t} has {} values, expected 4 (S A T B)",
                step.len()
            ));
        }
        for voice in Voice::ALL {
            let value = step[voice.index()];
            let pitch = if value < 0.0 {
                None
            } else if value <= 127.0 && value.fract() == 0.0 {
                Some(value as u8)
            } else {
                return Err(format!("step {t}: {value} is not a MIDI pitch"));
            };
            let token = match (pitch, previous[voice.index()]) {
                (None, _) => Token::Rest,
                (Some(p), Some(q)) if p == q => Token::Hold,
                (Some(p), _) => Token::Pitch(p),
            };
            score.set(t, voice, token);
            previous[voice.index()] = pitch;
        }
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_pitches_become_holds() {
        let json = br#"{"train": [[[72, 67, 64, 48], [72, 67, 64, 48], [74, -1, 65, 50]]], "valid": [], "test": []}"#;
        let splits = parse_jsb(json, Path::new("j.json")).unwrap();
        let s = &splits.train[0];
        assert_eq!(s.get(1, Voice::Soprano), Token::Hold);
        assert_eq!(s.get(2, Voice::Soprano), Token::Pitch(74));
        assert_eq!(s.get(2, Voice::Alto), Token::Rest);
    }

    #[test]
    fn phrased_pieces_carry_their_fermatas_and_key() {
        let json = br#"{"train": [{"steps": [[72, 67, 64, 48], [72, 67, 64, 48], [74, 65, 62, 50], [74, 65, 62, 50], [72, 64, 60, 48]],
            "fermata": [0, 0, 0, 1, 0], "fermatas_complete": true, "tonic": 0, "mode": "major"}],
            "valid": [{"steps": [[72, 67, 64, 48]], "fermata": [], "fermatas_complete": false, "tonic": null, "mode": null}],
            "extra": [{"steps": [[72, 67, 64, 48]], "fermata": [1], "fermatas_complete": true, "tonic": 9, "mode": "minor"}]}"#;
        let splits = parse_jsb(json, Path::new("c.json")).unwrap();
        // The fermata starts inside the soprano's D: the whole note is under it.
        assert_eq!(splits.train[0].fermatas(), &[2..4]);
        assert_eq!(splits.train[0].phrasing_known(), &[0..5]);
        assert!(
            splits.valid[0].phrasing_known().is_empty(),
            "incomplete: unknown"
        );
        assert_eq!(splits.extra[0].fermatas(), &[0..1]);
        assert_eq!(
            splits.key("train", 0),
            Some(Key {
                tonic: 0,
                scale: Scale::Major
            })
        );
        assert_eq!(splits.key("valid", 0), None);
    }

    #[test]
    fn malformed_pieces_are_named() {
        let json = br#"{"train": [[[72, 67, 64]]]}"#;
        let err = parse_jsb(json, Path::new("j.json"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "j.json: train piece 0: step 0 has 3 values, expected 4 (S A T B)"
        );
    }
}
