//! The `cantor` command as a user runs it: files in, files out, one-line
//! errors. A tiny random model stands in for the trained one so the tests
//! check plumbing and guarantees, not musical quality.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cantor_engine::card::{ModelCard, NetworkConfig, NoiseSchedule};
use cantor_engine::io::midi::midi_bytes;
use cantor_engine::io::{read_midi, VoiceLayout};
use cantor_engine::metrics::Tally;
use cantor_engine::model::initial_weights;
use cantor_engine::rules;
use cantor_engine::{Device, Key, Note, Score, ScoreModel, Vocabulary, Voice};

fn cantor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cantor"))
        .args(args)
        .output()
        .expect("cantor runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let card = ModelCard::new(
            "tiny-test",
            NetworkConfig::tiny(),
            Vocabulary::chorales(),
            NoiseSchedule {
                sigma_max: 10.0,
                sigma_min: 0.1,
            },
        );
        let weights = initial_weights(&card, 11, &Device::Cpu).unwrap();
        ScoreModel::save(&card, &weights, &dir.path().join("tiny.safetensors")).unwrap();
        let fixture = Fixture { dir };
        std::fs::write(fixture.path("melody.mid"), midi_bytes(&melody())).unwrap();
        std::fs::write(fixture.path("chorale.mid"), midi_bytes(&chorale())).unwrap();
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn model(&self) -> String {
        self.arg("tiny.safetensors")
    }
}

fn melody() -> Score {
    let pitches = [
        67, 69, 71, 72, 74, 72, 71, 69, 67, 71, 74, 79, 78, 76, 74, 72,
    ];
    Score::from_pitches(Voice::Soprano, &pitches, 4)
}

fn chorale() -> Score {
    let mut notes = melody().notes();
    for (voice, pitches) in [
        (Voice::Alto, [62u8, 64, 62, 64]),
        (Voice::Tenor, [59, 60, 59, 57]),
        (Voice::Bass, [43, 48, 43, 50]),
    ] {
        for (bar, p) in pitches.iter().enumerate() {
            notes.push(Note {
                voice,
                pitch: *p,
                start: bar * 16,
                length: 16,
                velocity: 64,
            });
        }
    }
    Score::from_notes(64, &notes)
}

fn read(path: &Path) -> Score {
    read_midi(path, VoiceLayout::Auto).unwrap()
}

#[test]
fn harmonize_writes_four_voices_and_keeps_the_melody() {
    let f = Fixture::new();
    let out = cantor(&[
        "harmonize",
        &f.arg("melody.mid"),
        "-o",
        &f.arg("out.mid"),
        "--model",
        &f.model(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("harmonized 4 bars"),
        "{}",
        stderr(&out)
    );
    let bytes = std::fs::read(f.path("out.mid")).unwrap();
    let smf = midly::Smf::parse(&bytes).unwrap();
    assert_eq!(smf.tracks.len(), 5, "conductor + S A T B");
    let score = read(&f.path("out.mid"));
    assert_eq!(
        score.voice_notes(Voice::Soprano),
        melody().voice_notes(Voice::Soprano)
    );
}

#[test]
fn the_same_seed_writes_the_same_file() {
    let f = Fixture::new();
    for name in ["a.mid", "b.mid"] {
        let out = cantor(&[
            "harmonize",
            &f.arg("melody.mid"),
            "-o",
            &f.arg(name),
            "--model",
            &f.model(),
            "--seed",
            "5",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(
        std::fs::read(f.path("a.mid")).unwrap(),
        std::fs::read(f.path("b.mid")).unwrap()
    );
}

#[test]
fn infill_keeps_every_unmasked_note() {
    let f = Fixture::new();
    let out = cantor(&[
        "infill",
        &f.arg("chorale.mid"),
        "--mask",
        "bars=2-3",
        "--mask",
        "voice=alto,bars=1",
        "-o",
        &f.arg("out.mid"),
        "--model",
        &f.model(),
        "--sampler",
        "gibbs",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = chorale();
    let after = read(&f.path("out.mid"));
    let bars_2_3 = 16..48;
    let outside = |n: &Note| {
        let masked_alto = n.voice == Voice::Alto && n.start < 16;
        let overlaps = n.start < bars_2_3.end && n.end() > bars_2_3.start;
        !masked_alto && !overlaps
    };
    let kept: Vec<Note> = before.notes().into_iter().filter(outside).collect();
    let now: Vec<Note> = after.notes().into_iter().filter(outside).collect();
    assert_eq!(kept, now);
    assert!(!kept.is_empty());
}

#[test]
fn continue_adds_the_bars_asked_for() {
    let f = Fixture::new();
    let out = cantor(&[
        "continue",
        &f.arg("chorale.mid"),
        "--bars",
        "2",
        "-o",
        &f.arg("out.mid"),
        "--model",
        &f.model(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = read(&f.path("out.mid"));
    assert_eq!(after.bars().len(), 6);
    let first_four: Vec<Note> = after.notes().into_iter().filter(|n| n.start < 64).collect();
    assert_eq!(first_four, chorale().notes());
}

#[test]
fn a_key_constraint_holds_for_written_notes() {
    let f = Fixture::new();
    let out = cantor(&[
        "harmonize",
        &f.arg("melody.mid"),
        "-o",
        &f.arg("out.mid"),
        "--model",
        &f.model(),
        "--key",
        "G major",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let g = Key::parse("G major").unwrap();
    let after = read(&f.path("out.mid"));
    assert!(
        after.notes().iter().all(|n| g.contains(n.pitch)),
        "{:?}",
        after.notes()
    );
    assert!(stderr(&out).contains("key G major"));
}

/// Runs a failing command: exit status 1, one line on stderr, no output file.
fn fails(f: &Fixture, args: &[&str]) -> String {
    let out = cantor(args);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "one line expected: {text}");
    assert!(text.starts_with("error: "), "{text}");
    assert!(
        !f.path("out.mid").exists(),
        "nothing may be written on error"
    );
    text
}

#[test]
fn errors_are_one_clear_line_and_write_nothing() {
    let f = Fixture::new();
    let out = f.arg("out.mid");
    let model = f.model();

    let e = fails(
        &f,
        &[
            "harmonize",
            &f.arg("missing.mid"),
            "-o",
            &out,
            "--model",
            &model,
        ],
    );
    assert!(e.contains("missing.mid"), "{e}");

    std::fs::write(f.path("corrupt.mid"), b"MThd\x00\x00\x00\x06garbage").unwrap();
    let e = fails(
        &f,
        &[
            "harmonize",
            &f.arg("corrupt.mid"),
            "-o",
            &out,
            "--model",
            &model,
        ],
    );
    assert!(e.contains("corrupt.mid: not a readable MIDI file"), "{e}");

    let e = fails(
        &f,
        &[
            "harmonize",
            &f.arg("chorale.mid"),
            "-o",
            &out,
            "--model",
            &model,
        ],
    );
    assert!(e.contains("chorale.mid") && e.contains("melody"), "{e}");

    let e = fails(
        &f,
        &[
            "infill",
            &f.arg("chorale.mid"),
            "--mask",
            "bars=3-7",
            "-o",
            &out,
            "--model",
            &model,
        ],
    );
    assert!(
        e.contains("bars=3-7 is outside the piece, which has 4 bars"),
        "{e}"
    );

    std::fs::write(f.path("broken.musicxml"), "<score-partwise><part id=").unwrap();
    let e = fails(
        &f,
        &[
            "harmonize",
            &f.arg("broken.musicxml"),
            "-o",
            &out,
            "--model",
            &model,
        ],
    );
    assert!(e.contains("broken.musicxml: not valid XML"), "{e}");

    // A model whose tensors do not match its card.
    let card = std::fs::read_to_string(f.path("tiny.json")).unwrap();
    std::fs::write(
        f.path("wrong.json"),
        card.replace("\"hidden\": 16", "\"hidden\": 24"),
    )
    .unwrap();
    std::fs::copy(f.path("tiny.safetensors"), f.path("wrong.safetensors")).unwrap();
    let e = fails(
        &f,
        &[
            "harmonize",
            &f.arg("melody.mid"),
            "-o",
            &out,
            "--model",
            &f.arg("wrong.safetensors"),
        ],
    );
    assert!(
        e.contains("wrong.safetensors: tensor") && e.contains("but the card says"),
        "{e}"
    );

    let e = fails(
        &f,
        &[
            "harmonize",
            &f.arg("melody.mid"),
            "-o",
            &out,
            "--model",
            &model,
            "--key",
            "H dorian",
        ],
    );
    assert!(e.contains("key 'H dorian' not understood"), "{e}");

    let e = fails(
        &f,
        &[
            "harmonize",
            &f.arg("melody.mid"),
            "-o",
            &out,
            "--model",
            &model,
            "--device",
            "cuda",
        ],
    );
    assert!(e.contains("CUDA"), "{e}");
}

#[test]
fn the_built_in_model_harmonizes_the_example_melody() {
    let f = Fixture::new();
    let asset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/old-hundredth-phrase1.mid");
    let out = cantor(&[
        "harmonize",
        &asset.display().to_string(),
        "-o",
        &f.arg("out.mid"),
        "--levels",
        "8",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let score = read(&f.path("out.mid"));
    let tune = read_midi(&asset, VoiceLayout::Melody(Voice::Soprano)).unwrap();
    assert_eq!(
        score.voice_notes(Voice::Soprano),
        tune.voice_notes(Voice::Soprano)
    );
}

#[test]
fn the_voice_leading_rules_are_on_by_default_and_can_be_turned_off() {
    let f = Fixture::new();
    let asset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/old-hundredth.mid");
    let harmonize = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "harmonize".to_string(),
            asset.display().to_string(),
            "-o".to_string(),
            f.arg(name),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cantor(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let score = read(&f.path(name));
        (Tally::of(&score, None, None), rules::energy(&score))
    };
    let (ruled, ruled_energy) = harmonize("default.mid", &[]);
    let (alone, alone_energy) = harmonize("alone.mid", &["--rules", "0"]);
    assert!(
        alone_energy > ruled_energy,
        "network alone: energy {alone_energy}, with the rules {ruled_energy}"
    );
    // Old Hundredth: the network alone writes 7 parallels and 31 full chords
    // on 48 beats; with the rules, none and 48.
    assert!(
        ruled.parallel_fifths + ruled.parallel_octaves
            < alone.parallel_fifths + alone.parallel_octaves
    );
    assert!(ruled.chord_beats > alone.chord_beats);
    let e = fails(
        &f,
        &[
            "harmonize",
            &asset.display().to_string(),
            "-o",
            &f.arg("out.mid"),
            "--rules=-1",
        ],
    );
    assert!(e.contains("rules"), "{e}");
}
