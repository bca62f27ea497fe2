//! The `cantor` command as a user runs it: files in, files out, one-line
//! errors. A tiny random model stands in for the trained one so the tests
//! check plumbing and guarantees, not musical quality.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cantor_engine::card::{ModelCard, NetworkConfig, NoiseSchedule};
use cantor_engine::io::midi::midi_bytes;
use cantor_engine::io::{read_midi, Limits, VoiceLayout};
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
    read_midi(path, VoiceLayout::Auto, &Limits::default()).unwrap()
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

/// A variable-length quantity, as MIDI files write delta times.
fn vlq(mut n: u32) -> Vec<u8> {
    let mut out = vec![(n & 0x7f) as u8];
    n >>= 7;
    while n > 0 {
        out.insert(0, 0x80 | (n & 0x7f) as u8);
        n >>= 7;
    }
    out
}

/// A one-track MIDI file of `events` (each with its delta time).
fn smf(ppq: u16, events: &[u8]) -> Vec<u8> {
    let mut track = events.to_vec();
    track.extend([0x00, 0xff, 0x2f, 0x00]);
    let mut out = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01".to_vec();
    out.extend(ppq.to_be_bytes());
    out.extend(b"MTrk");
    out.extend((track.len() as u32).to_be_bytes());
    out.extend(track);
    out
}

fn one_note_musicxml(duration: &str, attributes: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><score-partwise><part-list><score-part id="P1"><part-name>S</part-name></score-part></part-list><part id="P1"><measure number="1"><attributes><divisions>1</divisions>{attributes}</attributes><note><pitch><step>C</step><octave>5</octave></pitch><duration>{duration}</duration><voice>1</voice></note></measure></part></score-partwise>"#
    )
}

/// Issue #15: files a few bytes long that used to abort, panic or run for
/// minutes are refused at once with one line naming the limit.
#[test]
fn hostile_files_are_refused_before_anything_large_is_allocated() {
    let f = Fixture::new();
    let out = f.arg("out.mid");
    let model = f.model();
    let harmonize = |name: &str| {
        fails(
            &f,
            &["harmonize", &f.arg(name), "-o", &out, "--model", &model],
        )
    };

    // Ticks per quarter 1, one note held 2^28 - 1 ticks (37 bytes).
    let mut held = vec![0x00, 0x90, 60, 64];
    held.extend(vlq((1 << 28) - 1));
    held.extend([0x80, 60, 0]);
    std::fs::write(f.path("held.mid"), smf(1, &held)).unwrap();
    let e = harmonize("held.mid");
    assert!(
        e.contains("past the limit of 1000 bars") && e.contains("--max-bars"),
        "{e}"
    );

    // A note that starts 2^28 - 1 ticks in.
    let mut late = vlq((1 << 28) - 1);
    late.extend([0x90, 60, 64, 0x01, 0x80, 60, 0]);
    std::fs::write(f.path("late.mid"), smf(1, &late)).unwrap();
    assert!(harmonize("late.mid").contains("past the limit of 1000 bars"));

    // A melody with ticks per quarter changed from 480 to 1 (a 2-byte
    // edit): 480 times as long, 1,920 bars.
    let mut tune = std::fs::read(f.path("melody.mid")).unwrap();
    tune[12..14].copy_from_slice(&1u16.to_be_bytes());
    std::fs::write(f.path("ppq1.mid"), &tune).unwrap();
    assert!(harmonize("ppq1.mid").contains("past the limit"));

    // Tempo 0; only drums.
    let tempo0 = [
        0x00, 0xff, 0x51, 0x03, 0, 0, 0, 0x00, 0x90, 60, 64, 0x60, 0x80, 60, 0,
    ];
    std::fs::write(f.path("tempo0.mid"), smf(96, &tempo0)).unwrap();
    assert!(harmonize("tempo0.mid").contains("is not a tempo"));
    std::fs::write(
        f.path("drums.mid"),
        smf(96, &[0x00, 0x99, 36, 64, 0x60, 0x89, 36, 0]),
    )
    .unwrap();
    assert!(harmonize("drums.mid").contains("only drums"));

    // MusicXML durations past any piece, or not finite; a 0/0 meter.
    for (name, duration, attributes, expected) in [
        ("long.musicxml", "99999999999", "", "past the limit"),
        ("e308.musicxml", "1e308", "", "past the largest value read"),
        ("inf.musicxml", "inf", "", "past the largest value read"),
        (
            "meter.musicxml",
            "4",
            "<time><beats>0</beats><beat-type>0</beat-type></time>",
            "0/0 is not a meter",
        ),
    ] {
        std::fs::write(f.path(name), one_note_musicxml(duration, attributes)).unwrap();
        let e = harmonize(name);
        assert!(e.contains(expected), "{name}: {e}");
    }

    // An .mxl whose score inflates past the limit is refused after reading
    // the limit, not after inflating it all.
    {
        use std::io::Write;
        let file = std::fs::File::create(f.path("bomb.mxl")).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        zip.start_file("score.xml", options).unwrap();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..80 {
            zip.write_all(&chunk).unwrap();
        }
        zip.finish().unwrap();
    }
    assert!(harmonize("bomb.mxl").contains("inflates past 64 MB"));

    // Settings past their bounds, and continuations past the length limit.
    let melody = f.arg("melody.mid");
    let e = fails(
        &f,
        &[
            "harmonize",
            &melody,
            "-o",
            &out,
            "--model",
            &model,
            "--levels",
            "10000000000",
        ],
    );
    assert!(e.contains("noise levels: 1 to 1000"), "{e}");
    for bars in ["10000000", "18446744073709551615"] {
        let e = fails(
            &f,
            &[
                "continue", &melody, "--bars", bars, "-o", &out, "--model", &model,
            ],
        );
        assert!(e.contains("past the limit of 1000 bars"), "{e}");
    }

    // Model cards that would allocate terabytes.
    let card = std::fs::read_to_string(f.path("tiny.json")).unwrap();
    for (name, from, to) in [
        ("hidden", "\"hidden\": 16", "\"hidden\": 1000000"),
        (
            "dilation",
            "\"dilations\": [",
            "\"dilations\": [1099511627776, ",
        ),
        ("levels", "\"levels\": 40", "\"levels\": 1000000000000"),
    ] {
        assert!(card.contains(from), "{name}: the card has no {from}");
        std::fs::write(f.path(&format!("{name}.json")), card.replace(from, to)).unwrap();
        std::fs::copy(
            f.path("tiny.safetensors"),
            f.path(&format!("{name}.safetensors")),
        )
        .unwrap();
        let e = fails(
            &f,
            &[
                "harmonize",
                &melody,
                "-o",
                &out,
                "--model",
                &f.arg(&format!("{name}.safetensors")),
            ],
        );
        assert!(e.contains("limits") || e.contains("outside"), "{name}: {e}");
    }
}

/// Output goes through a fresh temporary file created exclusively beside the
/// target: a read-only target is refused and kept, a symlink where an old
/// version put its temporary file is never followed.
#[test]
fn output_is_written_safely() {
    let f = Fixture::new();
    let melody = f.arg("melody.mid");
    let model = f.model();
    let target = f.path("readonly.mid");
    std::fs::write(&target, b"keep").unwrap();
    let mut permissions = std::fs::metadata(&target).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&target, permissions).unwrap();
    let run = cantor(&[
        "harmonize",
        &melody,
        "-o",
        &f.arg("readonly.mid"),
        "--model",
        &model,
        "--levels",
        "2",
    ]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("read-only"), "{}", stderr(&run));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");

    #[cfg(unix)]
    {
        std::fs::write(f.path("victim"), b"keep").unwrap();
        std::os::unix::fs::symlink(f.path("victim"), f.path("out.tmp-cantor")).unwrap();
        let run = cantor(&[
            "harmonize",
            &melody,
            "-o",
            &f.arg("out.mid"),
            "--model",
            &model,
            "--levels",
            "2",
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        assert_eq!(std::fs::read(f.path("victim")).unwrap(), b"keep");
        assert!(read(&f.path("out.mid")).notes().len() > 16);
    }
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().ends_with(".tmp-cantor") && !e.path().is_symlink()
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
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
    let tune = read_midi(
        &asset,
        VoiceLayout::Melody(Voice::Soprano),
        &Limits::default(),
    )
    .unwrap();
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

#[test]
fn every_command_takes_the_character_pad() {
    // #13: --activity and --tension on harmonize, continue and infill, with
    // the built-in model: calm writes fewer notes than busy in what is
    // composed, and nothing outside it changes.
    let f = Fixture::new();
    let tune = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/old-hundredth.mid");
    let tune = tune.display().to_string();
    let composed = |command: &[&str], name: &str, activity: &str| -> Score {
        let mut args: Vec<&str> = command.to_vec();
        let out = f.arg(name);
        args.extend(["-o", &out, "--activity", activity, "--tension", "0.5"]);
        let run = cantor(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        read(&f.path(name))
    };
    let count =
        |s: &Score, keep: &dyn Fn(&Note) -> bool| s.notes().into_iter().filter(keep).count();
    let lower = |n: &Note| n.voice != Voice::Soprano;
    let calm = composed(&["harmonize", &tune], "h-calm.mid", "-1");
    let busy = composed(&["harmonize", &tune], "h-busy.mid", "1");
    assert!(count(&calm, &lower) < count(&busy, &lower));
    let melody = |s: &Score| s.voice_notes(Voice::Soprano);
    assert_eq!(melody(&calm), melody(&busy));

    let prompt = f.arg("h-calm.mid");
    let before = read(&f.path("h-calm.mid"));
    let prompt_steps = before.len();
    let after_prompt = |n: &Note| n.start >= prompt_steps;
    let calm = composed(&["continue", &prompt, "--bars", "2"], "c-calm.mid", "-1");
    let busy = composed(&["continue", &prompt, "--bars", "2"], "c-busy.mid", "1");
    assert!(count(&calm, &after_prompt) < count(&busy, &after_prompt));

    let bars_2_3 = |n: &Note| n.start >= 16 && n.start < 48;
    let infill = ["infill", &prompt, "--mask", "bars=2-3"];
    let calm = composed(&infill, "i-calm.mid", "-1");
    let busy = composed(&infill, "i-busy.mid", "1");
    assert!(count(&calm, &bars_2_3) < count(&busy, &bars_2_3));
    // Outside the mask every step sounds as before.
    let (was, now) = (before.sounding_pitches(), calm.sounding_pitches());
    for step in (0..16).chain(48..before.len()) {
        assert_eq!(was[step], now[step], "step {step}");
    }

    let e = fails(
        &f,
        &[
            "harmonize",
            &tune,
            "-o",
            &f.arg("out.mid"),
            "--tension",
            "2",
        ],
    );
    assert!(e.contains("tension 2 must be between -1 and 1"), "{e}");
}

#[test]
fn phrase_ends_are_given_inferred_or_refused_clearly() {
    let f = Fixture::new();
    let model = f.model();
    let tune = f.arg("melody.mid");
    let out = f.arg("out.mid");
    for fermatas in ["auto", "none", "2,4"] {
        let run = cantor(&[
            "harmonize",
            &tune,
            "-o",
            &out,
            "--model",
            &model,
            "--levels",
            "4",
            "--fermatas",
            fermatas,
        ]);
        assert!(
            run.status.success(),
            "--fermatas {fermatas}: {}",
            stderr(&run)
        );
        assert_eq!(
            read(&f.path("out.mid")).voice_notes(Voice::Soprano),
            melody().voice_notes(Voice::Soprano)
        );
        std::fs::remove_file(f.path("out.mid")).unwrap();
    }
    let cadence = cantor(&[
        "continue",
        &f.arg("chorale.mid"),
        "--bars",
        "2",
        "--cadence",
        "-o",
        &out,
        "--model",
        &model,
        "--levels",
        "4",
    ]);
    assert!(cadence.status.success(), "{}", stderr(&cadence));
    std::fs::remove_file(f.path("out.mid")).unwrap();
    let e = fails(
        &f,
        &[
            "harmonize",
            &tune,
            "-o",
            &out,
            "--model",
            &model,
            "--fermatas",
            "9",
        ],
    );
    assert!(e.contains("bar 9") && e.contains("4 bars"), "{e}");
    let e = fails(
        &f,
        &[
            "harmonize",
            &tune,
            "-o",
            &out,
            "--model",
            &model,
            "--fermatas",
            "two",
        ],
    );
    assert!(e.contains("auto, none, or bar numbers"), "{e}");
}
