//! The token vocabulary: which one-hot channel stands for which token of
//! which voice.
//!
//! Each voice has its own pitch range (from the training data), so its
//! one-hot block is `2 + range` wide: channel 0 is a rest, 1 a hold, then one
//! channel per pitch from the lowest up. The blocks of the four voices are
//! laid side by side; that concatenation is the network's per-step feature.

use serde::{Deserialize, Serialize};

use crate::grid::{pitch_name, Token, Voice, VOICES};

/// Inclusive MIDI pitch range of a voice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceRange {
    pub lowest: u8,
    pub highest: u8,
}

impl VoiceRange {
    pub fn contains(&self, pitch: u8) -> bool {
        (self.lowest..=self.highest).contains(&pitch)
    }

    pub fn width(&self) -> usize {
        (self.highest - self.lowest) as usize + 1
    }
}

impl std::fmt::Display for VoiceRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}–{}",
            pitch_name(self.lowest),
            pitch_name(self.highest)
        )
    }
}

/// Index of the rest channel within a voice block.
pub const REST_INDEX: usize = 0;
/// Index of the hold channel within a voice block.
pub const HOLD_INDEX: usize = 1;
/// Channels before the first pitch channel in a voice block.
pub const SPECIAL_TOKENS: usize = 2;

/// Per-voice token ranges and the channel layout derived from them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocabulary {
    /// Soprano, alto, tenor, bass.
    pub ranges: [VoiceRange; VOICES],
}

impl Vocabulary {
    pub fn new(ranges: [VoiceRange; VOICES]) -> Vocabulary {
        Vocabulary { ranges }
    }

    /// Ranges of the JSB chorales (all splits), the vocabulary of the shipped
    /// model.
    pub fn chorales() -> Vocabulary {
        Vocabulary::new([
            VoiceRange {
                lowest: 60,
                highest: 81,
            },
            VoiceRange {
                lowest: 52,
                highest: 74,
            },
            VoiceRange {
                lowest: 46,
                highest: 69,
            },
            VoiceRange {
                lowest: 36,
                highest: 66,
            },
        ])
    }

    pub fn range(&self, voice: Voice) -> VoiceRange {
        self.ranges[voice.index()]
    }

    /// Width of one voice's one-hot block.
    pub fn voice_size(&self, voice: Voice) -> usize {
        SPECIAL_TOKENS + self.range(voice).width()
    }

    /// First channel of a voice's block.
    pub fn offset(&self, voice: Voice) -> usize {
        Voice::ALL[..voice.index()]
            .iter()
            .map(|v| self.voice_size(*v))
            .sum()
    }

    /// Channels of all four blocks together.
    pub fn total_size(&self) -> usize {
        Voice::ALL.iter().map(|v| self.voice_size(*v)).sum()
    }

    /// Index of `token` inside the voice's block, or `None` for a pitch the
    /// voice cannot sing.
    pub fn index(&self, voice: Voice, token: Token) -> Option<usize> {
        match token {
            Token::Rest => Some(REST_INDEX),
            Token::Hold => Some(HOLD_INDEX),
            Token::Pitch(p) => {
                let range = self.range(voice);
                range
                    .contains(p)
                    .then(|| SPECIAL_TOKENS + (p - range.lowest) as usize)
            }
        }
    }

    /// The token for an index inside the voice's block.
    pub fn token(&self, voice: Voice, index: usize) -> Token {
        match index {
            REST_INDEX => Token::Rest,
            HOLD_INDEX => Token::Hold,
            i => Token::Pitch(self.range(voice).lowest + (i - SPECIAL_TOKENS) as u8),
        }
    }

    /// Longest transposition down and up that keeps every note of `score`
    /// inside this vocabulary, or `None` if some note is already outside.
    pub fn transposition_room(&self, score: &crate::grid::Score) -> Option<(i32, i32)> {
        let mut down = i32::MAX;
        let mut up = i32::MAX;
        for voice in Voice::ALL {
            if let Some((lo, hi)) = score.voice_span(voice) {
                let range = self.range(voice);
                if !range.contains(lo) || !range.contains(hi) {
                    return None;
                }
                down = down.min(lo as i32 - range.lowest as i32);
                up = up.min(range.highest as i32 - hi as i32);
            }
        }
        Some((down.min(12), up.min(12)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_channels_and_back() {
        let vocab = Vocabulary::chorales();
        for voice in Voice::ALL {
            for index in 0..vocab.voice_size(voice) {
                let token = vocab.token(voice, index);
                assert_eq!(vocab.index(voice, token), Some(index));
            }
        }
        assert_eq!(vocab.index(Voice::Soprano, Token::Pitch(40)), None);
        assert_eq!(vocab.offset(Voice::Alto), vocab.voice_size(Voice::Soprano));
        assert_eq!(
            vocab.total_size(),
            Voice::ALL
                .iter()
                .map(|v| vocab.voice_size(*v))
                .sum::<usize>()
        );
    }
}
