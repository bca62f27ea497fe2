//! The JSB chorales benchmark JSON (`Jsb16thSeparated.json`): `train`,
//! `valid` and `test` lists of pieces, each a list of 16th-note steps
//! `[S, A, T, B]` of MIDI pitches, −1 for silence.
//!
//! The format does not tell a held note from a repeated one; a pitch equal
//! to the previous step's is read as a hold, which is what the chorales
//! mostly mean. Pieces are taken to be in 4/4, as almost all of them are.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{CantorError, Result};
use crate::grid::{Score, Token, Voice, VOICES};

#[derive(Clone, Debug, Default)]
pub struct JsbSplits {
    pub train: Vec<Score>,
    pub valid: Vec<Score>,
    pub test: Vec<Score>,
}

impl JsbSplits {
    pub fn split(&self, name: &str) -> Option<&[Score]> {
        match name {
            "train" => Some(&self.train),
            "valid" | "validation" => Some(&self.valid),
            "test" => Some(&self.test),
            _ => None,
        }
    }
}

pub fn read_jsb(path: &Path) -> Result<JsbSplits> {
    let bytes = std::fs::read(path).map_err(|e| CantorError::io(path, e))?;
    parse_jsb(&bytes, path)
}

pub fn parse_jsb(bytes: &[u8], path: &Path) -> Result<JsbSplits> {
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
