//! Corpora: the JSB benchmark JSON (its own split), or a folder of MIDI or
//! MusicXML files split by a seeded hash of each file name. Files that do
//! not parse are skipped with their reason and counted.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cantor_engine::constraints::Key;
use cantor_engine::grid::{Score, Voice};
use cantor_engine::io::{read_jsb, read_music, Limits, VoiceLayout};
use cantor_engine::vocab::{Vocabulary, VoiceRange};
use serde::Serialize;

/// Percentages of a folder corpus that go to train and valid; the rest is test.
const TRAIN_PERCENT: u64 = 80;
const VALID_PERCENT: u64 = 10;

#[derive(Clone, Debug, Serialize)]
pub struct SplitRecord {
    /// How the split was made.
    pub method: String,
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    pub skipped: usize,
}

pub struct Corpus {
    /// What was read (a path), for the model card.
    pub source: String,
    pub train: Vec<Score>,
    pub valid: Vec<Score>,
    pub test: Vec<Score>,
    /// Files that did not parse, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    pub split: SplitRecord,
    /// Each piece's key where the data says it (train, valid, test).
    keys: [Vec<Option<Key>>; 3],
}

impl Corpus {
    /// Tells the user what was read: each file skipped with its reason, then
    /// the count of pieces per split and of files skipped.
    pub fn announce(&self) {
        for (file, reason) in &self.skipped {
            eprintln!("skipped {}: {reason}", file.display());
        }
        eprintln!(
            "corpus {}: {} train, {} valid, {} test pieces, {} files skipped",
            self.source,
            self.train.len(),
            self.valid.len(),
            self.test.len(),
            self.skipped.len()
        );
    }

    /// Reads `source`: a `.json` JSB file, or a folder of music files.
    pub fn load(source: &Path, split_seed: u64) -> Result<Corpus> {
        let corpus = if source.is_dir() {
            Self::from_folder(source, split_seed)?
        } else {
            Self::from_jsb(source)?
        };
        if corpus.train.is_empty() {
            let reasons: Vec<String> = corpus
                .skipped
                .iter()
                .take(3)
                .map(|(_, r)| r.clone())
                .collect();
            bail!(
                "{}: the corpus has no training pieces ({} files skipped{}{})",
                source.display(),
                corpus.skipped.len(),
                if reasons.is_empty() { "" } else { ", e.g. " },
                reasons.join("; ")
            );
        }
        Ok(corpus)
    }

    fn from_jsb(path: &Path) -> Result<Corpus> {
        let splits = read_jsb(path)?;
        let method = match splits.extra.len() {
            0 => "JSB benchmark split (Boulanger-Lewandowski 2012)".to_string(),
            n => format!("JSB benchmark split (Boulanger-Lewandowski 2012); train also holds the file's {n} extra chorales"),
        };
        let keys_of = |name: &str, n: usize| (0..n).map(|i| splits.key(name, i)).collect();
        let mut train_keys: Vec<Option<Key>> = keys_of("train", splits.train.len());
        train_keys.extend(keys_of("extra", splits.extra.len()).iter().copied());
        let keys = [
            train_keys,
            keys_of("valid", splits.valid.len()),
            keys_of("test", splits.test.len()),
        ];
        let mut train = splits.train;
        train.extend(splits.extra);
        let split = SplitRecord {
            method,
            train: train.len(),
            valid: splits.valid.len(),
            test: splits.test.len(),
            skipped: 0,
        };
        Ok(Corpus {
            source: path.display().to_string(),
            train,
            valid: splits.valid,
            test: splits.test,
            skipped: Vec::new(),
            split,
            keys,
        })
    }

    fn from_folder(dir: &Path, seed: u64) -> Result<Corpus> {
        let mut files = Vec::new();
        collect_music_files(dir, &mut files)
            .with_context(|| format!("{}: cannot list the folder", dir.display()))?;
        files.sort();
        if files.is_empty() {
            bail!(
                "{}: no .mid, .midi, .mxl, .musicxml or .xml files in the folder",
                dir.display()
            );
        }
        let (mut train, mut valid, mut test, mut skipped) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            match read_music(&file, VoiceLayout::Auto, &Limits::default()) {
                Ok(score) => match split_of(&name, seed) {
                    0 => train.push(score),
                    1 => valid.push(score),
                    _ => test.push(score),
                },
                Err(e) => skipped.push((file.clone(), e.to_string())),
            }
        }
        let split = SplitRecord {
            method: format!(
                "FNV-1a hash of the file name with seed {seed}: {TRAIN_PERCENT}% train, {VALID_PERCENT}% valid, rest test"
            ),
            train: train.len(),
            valid: valid.len(),
            test: test.len(),
            skipped: skipped.len(),
        };
        Ok(Corpus {
            source: dir.display().to_string(),
            train,
            valid,
            test,
            skipped,
            split,
            keys: Default::default(),
        })
    }

    /// The keys of a split's pieces, in order (`None` where the data does
    /// not say).
    pub fn keys(&self, name: &str) -> Result<Vec<Option<Key>>> {
        let pieces = self.split(name)?.len();
        let index = match name {
            "train" => 0,
            "valid" | "validation" => 1,
            _ => 2,
        };
        let mut keys = self.keys[index].clone();
        keys.resize(pieces, None);
        Ok(keys)
    }

    pub fn split(&self, name: &str) -> Result<&[Score]> {
        match name {
            "train" => Ok(&self.train),
            "valid" | "validation" => Ok(&self.valid),
            "test" => Ok(&self.test),
            other => bail!("unknown split '{other}': use train, valid or test"),
        }
    }
}

fn collect_music_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_music_files(&path, out)?;
        } else if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            if ["mid", "midi", "mxl", "musicxml", "xml"]
                .contains(&ext.to_ascii_lowercase().as_str())
            {
                out.push(path);
            }
        }
    }
    Ok(())
}

/// 0 = train, 1 = valid, 2 = test, from a seeded FNV-1a hash of the name.
pub fn split_of(name: &str, seed: u64) -> u8 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in name.as_bytes() {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    match hash % 100 {
        h if h < TRAIN_PERCENT => 0,
        h if h < TRAIN_PERCENT + VALID_PERCENT => 1,
        _ => 2,
    }
}

/// Per-voice ranges spanned by `pieces` (every split, so the model can
/// represent the test pieces too).
pub fn vocabulary_of(pieces: &[&Score]) -> Option<Vocabulary> {
    let mut ranges: [Option<VoiceRange>; 4] = [None; 4];
    for piece in pieces {
        for voice in Voice::ALL {
            if let Some((lo, hi)) = piece.voice_span(voice) {
                let r = &mut ranges[voice.index()];
                *r = Some(match r {
                    None => VoiceRange {
                        lowest: lo,
                        highest: hi,
                    },
                    Some(r) => VoiceRange {
                        lowest: r.lowest.min(lo),
                        highest: r.highest.max(hi),
                    },
                });
            }
        }
    }
    Some(Vocabulary::new([
        ranges[0]?, ranges[1]?, ranges[2]?, ranges[3]?,
    ]))
}

/// The first note of `pieces` that `vocab` cannot represent, as a message.
pub fn check_fits(pieces: &[Score], vocab: &Vocabulary, what: &str) -> Result<()> {
    for (i, piece) in pieces.iter().enumerate() {
        if vocab.transposition_room(piece).is_none() {
            let voice = Voice::ALL
                .iter()
                .find(|v| {
                    piece.voice_span(**v).is_some_and(|(lo, hi)| {
                        !vocab.range(**v).contains(lo) || !vocab.range(**v).contains(hi)
                    })
                })
                .copied()
                .unwrap_or(Voice::Soprano);
            bail!(
                "{what} piece {i}: its {voice} ({:?}) is outside the model card's {voice} range {}; the card disagrees with the data",
                piece.voice_span(voice),
                vocab.range(voice)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_stable_and_roughly_proportional() {
        let names: Vec<String> = (0..1000).map(|i| format!("bwv{i}.mxl")).collect();
        let counts = names.iter().fold([0; 3], |mut c, n| {
            c[split_of(n, 0) as usize] += 1;
            c
        });
        assert!((700..900).contains(&counts[0]), "{counts:?}");
        assert_eq!(split_of("bwv1.mxl", 0), split_of("bwv1.mxl", 0));
    }
}
