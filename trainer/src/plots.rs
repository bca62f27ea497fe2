//! Piano rolls for `trainer eval --plots`: several versions of the same bars
//! (Bach's, each sampler's) stacked one above the other, each voice in its
//! own colour, as a PNG. No text: a coloured strip at the left of each panel
//! says whose music it is.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};
use cantor_engine::grid::VOICES;
use cantor_engine::{Mask, Score, Voice};

pub type Rgb = [u8; 3];

/// Voice colours, soprano first (as in the plugin's editor).
pub const VOICE_COLOURS: [Rgb; VOICES] = [
    [230, 190, 60],
    [90, 200, 110],
    [80, 140, 230],
    [210, 80, 200],
];
/// Label strips: whose music a panel shows.
pub const BACH: Rgb = [255, 255, 255];
pub const LANGEVIN: Rgb = [255, 150, 40];
pub const GIBBS: Rgb = [40, 220, 230];
pub const DEEPBACH: Rgb = [200, 90, 255];

const BACKGROUND: Rgb = [22, 22, 26];
/// Background of steps where the system wrote something.
const FREE_BACKGROUND: Rgb = [38, 38, 50];
const BAR_LINE: Rgb = [95, 95, 110];
const BEAT_LINE: Rgb = [30, 30, 36];
const GAP: Rgb = [0, 0, 0];

/// Pixels per 16th step, per semitone, of the label strip, between panels.
pub const STEP_WIDTH: usize = 3;
pub const ROW_HEIGHT: usize = 4;
pub const STRIP_WIDTH: usize = 10;
pub const PANEL_GAP: usize = 6;
/// Semitones of room above and below the notes.
const MARGIN_ROWS: u8 = 2;

/// One version of the music.
pub struct Panel<'a> {
    pub score: &'a Score,
    /// Colour of the label strip.
    pub label: Rgb,
    /// Cells the system wrote (their steps get a lighter background).
    pub free: Option<&'a Mask>,
}

/// An RGB image, row-major.
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<Rgb>,
}

impl Image {
    fn new(width: usize, height: usize, colour: Rgb) -> Image {
        Image {
            width,
            height,
            pixels: vec![colour; width * height],
        }
    }

    /// The image `kx` times as wide and `ky` times as high (each pixel a
    /// kx × ky block).
    pub fn scaled(&self, kx: usize, ky: usize) -> Image {
        let (kx, ky) = (kx.max(1), ky.max(1));
        let (width, height) = (self.width * kx, self.height * ky);
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x / kx, y / ky)))
            .map(|(x, y)| self.pixels[y * self.width + x])
            .collect();
        Image {
            width,
            height,
            pixels,
        }
    }

    #[cfg(test)]
    fn get(&self, x: usize, y: usize) -> Rgb {
        self.pixels[y * self.width + x]
    }

    fn fill(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, colour: Rgb) {
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                self.pixels[y * self.width + x] = colour;
            }
        }
    }
}

/// A darker shade of `c`, for note onsets.
pub fn darker(c: Rgb) -> Rgb {
    c.map(|v| (v as u16 * 5 / 10) as u8)
}

/// Geometry shared by every panel: the pitch span of all of them.
struct Layout {
    steps: usize,
    highest: u8,
    rows: usize,
}

impl Layout {
    fn panel_height(&self) -> usize {
        self.rows * ROW_HEIGHT
    }

    fn x(&self, step: usize) -> usize {
        STRIP_WIDTH + step * STEP_WIDTH
    }

    fn y(&self, top: usize, pitch: u8) -> usize {
        top + (self.highest - pitch) as usize * ROW_HEIGHT
    }
}

/// The panels stacked, the first on top, all on one time and pitch scale.
pub fn piano_roll(panels: &[Panel]) -> Image {
    let steps = panels.iter().map(|p| p.score.len()).max().unwrap_or(0);
    let spans = panels
        .iter()
        .flat_map(|p| Voice::ALL.map(|v| p.score.voice_span(v)))
        .flatten();
    let (low, high) = spans.fold((u8::MAX, 0u8), |(l, h), (lo, hi)| (l.min(lo), h.max(hi)));
    let (low, high) = if low > high { (60, 60) } else { (low, high) };
    let low = low.saturating_sub(MARGIN_ROWS);
    let high = high.saturating_add(MARGIN_ROWS).min(127);
    let layout = Layout {
        steps,
        highest: high,
        rows: (high - low) as usize + 1,
    };
    let width = layout.x(steps) + 1;
    let count = panels.len();
    let height = count * layout.panel_height() + count.saturating_sub(1) * PANEL_GAP;
    let mut image = Image::new(width, height.max(1), GAP);
    for (i, panel) in panels.iter().enumerate() {
        let top = i * (layout.panel_height() + PANEL_GAP);
        draw_panel(&mut image, &layout, panel, top);
    }
    image
}

fn draw_panel(image: &mut Image, layout: &Layout, panel: &Panel, top: usize) {
    let bottom = top + layout.panel_height();
    image.fill(0, top, STRIP_WIDTH - 2, bottom, panel.label);
    image.fill(STRIP_WIDTH - 2, top, STRIP_WIDTH, bottom, GAP);
    for step in 0..layout.steps {
        let free = panel
            .free
            .is_some_and(|m| step < m.len() && Voice::ALL.iter().any(|v| m.is_free(step, *v)));
        let colour = if free { FREE_BACKGROUND } else { BACKGROUND };
        let x = layout.x(step);
        image.fill(x, top, x + STEP_WIDTH, bottom, colour);
    }
    for step in (0..layout.steps).step_by(4) {
        let x = layout.x(step);
        image.fill(x, top, x + 1, bottom, BEAT_LINE);
    }
    for bar in panel.score.bars() {
        let x = layout.x(bar.start);
        image.fill(x, top, x + 1, bottom, BAR_LINE);
    }
    let x = layout.x(layout.steps);
    image.fill(x, top, x + 1, bottom, BAR_LINE);
    // Bass first, so the upper voices stay on top where they meet.
    for voice in Voice::ALL.into_iter().rev() {
        let colour = VOICE_COLOURS[voice.index()];
        for note in panel.score.voice_notes(voice) {
            let (x0, x1) = (layout.x(note.start), layout.x(note.end()));
            let y = layout.y(top, note.pitch);
            image.fill(x0, y, x1, y + ROW_HEIGHT, colour);
            image.fill(x0, y, x0 + 1, y + ROW_HEIGHT, darker(colour));
        }
    }
}

/// Writes `image` as an 8-bit RGB PNG.
pub fn write_png(image: &Image, path: &Path) -> Result<()> {
    let file = File::create(path).with_context(|| path.display().to_string())?;
    let mut encoder = png::Encoder::new(
        BufWriter::new(file),
        image.width as u32,
        image.height as u32,
    );
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .with_context(|| path.display().to_string())?;
    let data: Vec<u8> = image.pixels.iter().flatten().copied().collect();
    writer
        .write_image_data(&data)
        .with_context(|| path.display().to_string())?;
    writer
        .finish()
        .with_context(|| path.display().to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cantor_engine::Note;

    #[test]
    fn notes_are_drawn_where_they_sound() {
        // Alto E4 for a beat, re-struck; bass C3 for two beats.
        let note = |voice, pitch, start, length| Note {
            voice,
            pitch,
            start,
            length,
            velocity: 80,
        };
        let score = Score::from_notes(
            8,
            &[
                note(Voice::Alto, 64, 0, 4),
                note(Voice::Alto, 64, 4, 4),
                note(Voice::Bass, 48, 0, 8),
            ],
        );
        let image = piano_roll(&[
            Panel {
                score: &score,
                label: BACH,
                free: None,
            },
            Panel {
                score: &score,
                label: GIBBS,
                free: None,
            },
        ]);
        // Pitches 46..=66: 21 rows per panel.
        let panel = 21 * ROW_HEIGHT;
        assert_eq!(image.height, 2 * panel + PANEL_GAP);
        assert_eq!(image.width, STRIP_WIDTH + 8 * STEP_WIDTH + 1);
        let green = VOICE_COLOURS[Voice::Alto.index()];
        let magenta = VOICE_COLOURS[Voice::Bass.index()];
        let row = |pitch: u8| (66 - pitch) as usize * ROW_HEIGHT + 1;
        let x = |step: usize| STRIP_WIDTH + step * STEP_WIDTH;
        // Inside each note its voice's colour; the onset column darker.
        assert_eq!(image.get(x(1) + 1, row(64)), green);
        assert_eq!(image.get(x(4), row(64)), darker(green)); // the re-strike
        assert_eq!(image.get(x(4) + 1, row(64)), green);
        assert_eq!(image.get(x(6), row(48)), magenta);
        assert_eq!(image.get(x(6), row(48) + panel + PANEL_GAP), magenta);
        // Nowhere else.
        assert_ne!(image.get(x(2), row(62)), green);
        assert_ne!(image.get(x(2), row(50)), magenta);
        let greens = image.pixels.iter().filter(|p| **p == green).count();
        assert_eq!(greens, 2 * 2 * (4 * STEP_WIDTH - 1) * ROW_HEIGHT);
        // Label strips.
        assert_eq!(image.get(0, 0), BACH);
        assert_eq!(image.get(0, panel + PANEL_GAP), GIBBS);
        // Three times as wide, twice as high: every pixel a 3 × 2 block.
        let big = image.scaled(3, 2);
        assert_eq!((big.width, big.height), (3 * image.width, 2 * image.height));
        for (x, y) in [(x(1) + 1, row(64)), (x(4), row(64)), (0, 0)] {
            for (dx, dy) in [(0, 0), (2, 0), (0, 1), (2, 1)] {
                assert_eq!(big.get(3 * x + dx, 2 * y + dy), image.get(x, y));
            }
        }
    }

    #[test]
    fn writes_a_png() {
        let score = Score::from_pitches(Voice::Soprano, &[72, 74], 4);
        let image = piano_roll(&[Panel {
            score: &score,
            label: LANGEVIN,
            free: None,
        }]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roll.png");
        write_png(&image, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
