//! `trainer` as a user runs it, on corpora the test writes itself and a tiny
//! network (a few optimiser steps; no real model is trained here).

use std::path::Path;
use std::process::{Command, Output};

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .expect("trainer runs")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// A JSB-format corpus: `pieces` pieces per split of `steps` steps, a
/// cadence-like progression so windows differ.
fn write_jsb(path: &Path, pieces: usize, steps: usize) {
    let chords = [
        [72, 67, 64, 48],
        [74, 67, 62, 55],
        [76, 67, 60, 48],
        [74, 65, 59, 55],
    ];
    let piece = |shift: i32| -> Vec<[i32; 4]> {
        (0..steps)
            .map(|t| chords[(t / 4) % 4].map(|p| p + shift))
            .collect()
    };
    let split =
        |n: usize| -> Vec<Vec<[i32; 4]>> { (0..n).map(|i| piece(i as i32 % 3 - 1)).collect() };
    let json = serde_json::json!({ "train": split(pieces), "valid": split(2), "test": split(2) });
    std::fs::write(path, json.to_string()).unwrap();
}

const TINY: [&str; 12] = [
    "--hidden",
    "8",
    "--dilations",
    "1,2",
    "--windows",
    "16",
    "--batch-tokens",
    "64",
    "--valid-every",
    "2",
    "--warmup",
    "1",
];

#[test]
fn trains_checkpoints_resumes_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("jsb.json");
    write_jsb(&data, 4, 32);
    let out = dir.path().join("m.safetensors");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec!["train", "--data", d, "--out", o, "--steps", "3"];
    args.extend(TINY);
    let run = trainer(&args);
    assert!(run.status.success(), "{}", text(&run));
    assert!(out.exists() && dir.path().join("m.json").exists());
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(card["training"]["split"]["train"], 4);
    assert!(card["training"]["valid_loss"].as_f64().is_some());
    let log = std::fs::read_to_string(dir.path().join("m.ckpt/log.csv")).unwrap();
    assert!(log.starts_with("step,elapsed_s"), "{log}");

    // A second run without --resume refuses to overwrite the checkpoint.
    let again = trainer(&args);
    assert!(!again.status.success());
    assert!(text(&again).contains("--resume"), "{}", text(&again));

    // Resuming on other data is refused before any step (the checkpoint's
    // card and split belong to its own corpus).
    let other = dir.path().join("other.json");
    write_jsb(&other, 4, 32);
    let mut elsewhere = vec!["train", "--data", other.to_str().unwrap(), "--out", o];
    elsewhere.extend(["--steps", "5", "--resume"]);
    elsewhere.extend(TINY);
    let run = trainer(&elsewhere);
    assert!(!run.status.success());
    assert!(
        text(&run).contains("the checkpoint was trained on") && text(&run).contains("other.json"),
        "{}",
        text(&run)
    );

    // Resuming goes on from step 3 to step 5.
    let mut resume = vec!["train", "--data", d, "--out", o, "--steps", "5", "--resume"];
    resume.extend(TINY);
    let run = trainer(&resume);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        text(&run).contains("resumed from") && text(&run).contains("at step 3"),
        "{}",
        text(&run)
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("m.ckpt/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], 5);

    // Evaluation writes JSON and Markdown with every system side by side.
    // On the 2-bar pieces of the training corpus there is nothing to
    // continue: the task says so.
    let report = dir.path().join("eval");
    let run = trainer(&[
        "eval",
        "--model",
        o,
        "--data",
        d,
        "--split",
        "test",
        "--levels",
        "3",
        "--nll",
        "off",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let md = std::fs::read_to_string(dir.path().join("eval.md")).unwrap();
    for heading in [
        "Harmonize",
        "Continue (0 pieces; 2 with fewer than 8 bars skipped)",
        "Infill",
        "| metric | Bach | Langevin | Gibbs | Baseline |",
        "Denoising loss",
    ] {
        assert!(md.contains(heading), "{heading} missing from:\n{md}");
    }
    assert!(!md.contains("Likelihood"), "{md}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("eval.json")).unwrap()).unwrap();
    assert!(json["tasks"]["harmonize"]["systems"]["langevin"]["chord_beat_fraction"].is_number());
    assert!(json["likelihood"].is_null());

    // On 8-bar pieces: the continue task, how the voices move, the
    // likelihood and the piano rolls.
    let long = dir.path().join("long.json");
    write_jsb(&long, 1, 128);
    let plots = dir.path().join("plots");
    let run = trainer(&[
        "eval",
        "--model",
        o,
        "--data",
        long.to_str().unwrap(),
        "--split",
        "test",
        "--levels",
        "3",
        "--nll-orderings",
        "2",
        "--nll-crops",
        "1",
        "--plots",
        plots.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let md = std::fs::read_to_string(dir.path().join("eval.md")).unwrap();
    for row in [
        "## Continue (2 pieces)",
        "| notes / beat A |",
        "| interval-histogram overlap with Bach T |",
        "| duration-histogram overlap with Bach B |",
        "| leaps > octave / 100 beats |",
        "| repeated notes (same pitch struck again) / 100 beats |",
        "| beats a voice drops out while others sound / 100 beats |",
        "| pitch-class overlap of the new bars with the prompt |",
        "| ends on tonic / dominant of the prompt's key |",
        "Targets (Langevin vs Bach): parallels",
        "Targets (Gibbs vs Bach): notes / beat of every voice",
        "Likelihood",
        "Coconet (Huang et al. 2017) reports 0.569 note-wise",
    ] {
        assert!(md.contains(row), "{row} missing from:\n{md}");
    }
    // The soprano is given in harmonize: no row for it there.
    let harmonize = &md[md.find("## Harmonize").unwrap()..md.find("## Continue").unwrap()];
    assert!(!harmonize.contains("notes / beat S"), "{harmonize}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("eval.json")).unwrap()).unwrap();
    let bach = &json["tasks"]["continue"]["systems"]["bach"];
    // The test corpus changes chord every beat in every voice but the alto.
    assert_eq!(bach["notes_per_beat"]["soprano"], 1.0);
    assert_eq!(bach["interval_overlap"]["bass"], 1.0);
    assert!(bach["prompt_pitch_class_overlap"].is_number());
    assert!(bach["tonic_dominant_ending_fraction"].is_number());
    let outside = bach["outside_prompt_key"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&outside), "{outside}");
    // The JSB grid has no repeated pitch, and its four voices sound
    // together.
    assert_eq!(bach["repeated_notes_per_100_beats"], 0.0);
    assert_eq!(bach["dropped_voice_beats_per_100_beats"], 0.0);
    assert!(json["tasks"]["harmonize"]["systems"]["gibbs"]["notes_per_beat"]["soprano"].is_null());
    let nll = &json["likelihood"];
    assert_eq!(nll["crops"], 2);
    assert!(nll["nats_per_cell"].as_f64().unwrap() > 0.0);
    let (cell, step) = (
        nll["nats_per_cell"].as_f64().unwrap(),
        nll["nats_per_step"].as_f64().unwrap(),
    );
    assert!((step - 4.0 * cell).abs() < 1e-9);
    for name in [
        "harmonize-piece-0.png",
        "harmonize-piece-1.png",
        "continue-piece-0.png",
    ] {
        let bytes = std::fs::read(plots.join(name)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{name}");
    }

    // Several runs per piece, pooled: the same music as the runs one by
    // one, counted together.
    let alto = |args: &[&str]| -> f64 {
        let pooled = dir.path().join("pooled");
        let mut all = vec![
            "eval",
            "--model",
            o,
            "--data",
            long.to_str().unwrap(),
            "--split",
            "test",
            "--levels",
            "3",
            "--tasks",
            "harmonize",
            "--systems",
            "langevin",
            "--nll",
            "off",
            "--report",
            pooled.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let run = trainer(&all);
        assert!(run.status.success(), "{}", text(&run));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("pooled.json")).unwrap())
                .unwrap();
        json["tasks"]["harmonize"]["systems"]["langevin"]["notes_per_beat"]["alto"]
            .as_f64()
            .unwrap()
    };
    let (zero, one, both) = (
        alto(&["--seed", "0"]),
        alto(&["--seed", "1"]),
        alto(&["--seeds", "2"]),
    );
    assert!(
        (both - (zero + one) / 2.0).abs() < 1e-9,
        "{zero} {one} {both}"
    );
    let md = std::fs::read_to_string(dir.path().join("pooled.md")).unwrap();
    assert!(md.contains("seeds 0–1 pooled"), "{md}");

    // The character pad's sweep (#13): each axis at five positions, a
    // table per task, sampler and axis beside Bach, and its verdicts.
    let sweep = dir.path().join("sweep");
    let run = trainer(&[
        "eval",
        "--model",
        o,
        "--data",
        long.to_str().unwrap(),
        "--split",
        "test",
        "--levels",
        "3",
        "--tasks",
        "harmonize,infill",
        "--systems",
        "langevin,gibbs",
        "--character",
        "--report",
        sweep.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    // Short piano rolls of the pad's corners, under Bach's.
    let corners = std::fs::read(plots.join("character-piece-0.png")).unwrap();
    assert_eq!(&corners[1..4], b"PNG");
    let md = std::fs::read_to_string(dir.path().join("sweep.md")).unwrap();
    for row in [
        "## Harmonize, Langevin: Activity",
        "## Infill, Gibbs: Tension",
        "| position | notes per beat (composed voices' mean) | share of beats not a plain triad |",
        "| -0.5 |",
        "| Bach |",
        "Spearman",
    ] {
        assert!(md.contains(row), "{row} missing from:\n{md}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sweep.json")).unwrap()).unwrap();
    // The centre is shared: 9 positions, 2 tasks × 2 samplers × 2 axes.
    assert_eq!(json["points"].as_array().unwrap().len(), 9);
    let axes = json["axes"].as_array().unwrap();
    assert_eq!(axes.len(), 8);
    for a in axes {
        assert_eq!(a["steered"].as_array().unwrap().len(), 5);
        assert!(a["spearman"].is_number(), "{a}");
    }
}

#[test]
fn bad_corpora_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let o = out.to_str().unwrap();

    // `train` on `data` with the tiny network and these window lengths.
    let train_with_windows = |data: &Path, windows: &str| {
        let mut args = vec!["train", "--data", data.to_str().unwrap(), "--out", o];
        args.extend(["--steps", "1"]);
        args.extend(TINY);
        let at = args.iter().position(|a| *a == "--windows").unwrap() + 1;
        args[at] = windows;
        trainer(&args)
    };

    // A window longer than every piece.
    let data = dir.path().join("short.json");
    write_jsb(&data, 2, 8);
    let run = train_with_windows(&data, "16");
    assert!(!run.status.success());
    assert!(
        text(&run).contains("longer than every piece"),
        "{}",
        text(&run)
    );

    // Only the longest of several windows is too long (this once trained
    // forever, drawing windows no piece could hold).
    write_jsb(&data, 2, 24);
    let run = train_with_windows(&data, "16,32");
    assert!(!run.status.success());
    assert!(
        text(&run).contains("window of 32 steps is longer than every piece (the longest has 24"),
        "{}",
        text(&run)
    );

    // A folder whose files do not parse: each skipped with its reason, then an empty corpus.
    let folder = dir.path().join("midi");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("broken.mid"), b"MThd garbage").unwrap();
    std::fs::write(folder.join("broken.musicxml"), b"<score-partwise><part").unwrap();
    let run = trainer(&[
        "train",
        "--data",
        folder.to_str().unwrap(),
        "--out",
        o,
        "--steps",
        "1",
    ]);
    assert!(!run.status.success());
    let t = text(&run);
    assert!(
        t.contains("no training pieces (2 files skipped") && t.contains("broken"),
        "{t}"
    );

    // Not a corpus at all.
    let run = trainer(&[
        "train",
        "--data",
        dir.path().join("nothing.json").to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(!run.status.success());
    assert!(text(&run).contains("nothing.json"), "{}", text(&run));
}

/// The DeepBach peer as a user runs it: a tiny model trained a few steps
/// (checkpoint, refusal to overwrite, resume), then evaluated beside a tiny
/// Cantor model at two budgets.
#[test]
fn deepbach_trains_resumes_and_runs_beside_cantor() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("jsb.json");
    write_jsb(&data, 4, 32);
    let cantor = dir.path().join("m.safetensors");
    let peer = dir.path().join("db.safetensors");
    let (d, c, p) = (
        data.to_str().unwrap(),
        cantor.to_str().unwrap(),
        peer.to_str().unwrap(),
    );
    let mut args = vec!["train", "--data", d, "--out", c, "--steps", "2"];
    args.extend(TINY);
    let run = trainer(&args);
    assert!(run.status.success(), "{}", text(&run));

    // Cantor's network fine-tuned from it on the question DeepBach trains
    // for (the Gibbs sampler's: a few notes unknown, the rest exact), with
    // the global context added: the card records the share, the new
    // architecture and where it started.
    let tuned = dir.path().join("tuned.safetensors");
    let mut args = vec!["train", "--data", d, "--out", tuned.to_str().unwrap()];
    args.extend(["--steps", "2", "--init-from", c, "--line-features", "off"]);
    args.extend(["--gibbs-masks", "0.5", "--global-context", "on"]);
    args.extend(TINY);
    let run = trainer(&args);
    assert!(run.status.success(), "{}", text(&run));
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tuned.json")).unwrap()).unwrap();
    assert_eq!(card["training"]["config"]["gibbs_masks"], 0.5);
    assert_eq!(card["architecture"]["global_context"], true);
    assert!(
        card["training"]["config"]["init_from"].is_string(),
        "{card}"
    );
    assert!(card["training"]["valid_loss"].as_f64().is_some());

    const SMALL: [&str; 18] = [
        "--context",
        "4",
        "--note-embedding",
        "3",
        "--meta-embedding",
        "2",
        "--lstm-hidden",
        "6",
        "--linear-hidden",
        "6",
        "--batch",
        "8",
        "--eval-every",
        "1",
        "--valid-positions",
        "16",
        "--patience",
        "100",
    ];
    let mut args = vec!["deepbach", "--data", d, "--out", p, "--steps", "2"];
    args.extend(SMALL);
    let run = trainer(&args);
    assert!(run.status.success(), "{}", text(&run));
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("db.json")).unwrap()).unwrap();
    assert_eq!(card["format"], "cantor-deepbach/1");
    assert_eq!(card["training"]["curve"].as_array().unwrap().len(), 2);
    assert!(card["training"]["curve"][1]["valid"].as_f64().unwrap() > 0.0);

    let again = trainer(&args);
    assert!(!again.status.success());
    assert!(text(&again).contains("--resume"), "{}", text(&again));
    let mut resume = vec![
        "deepbach", "--data", d, "--out", p, "--steps", "3", "--resume",
    ];
    resume.extend(SMALL);
    let run = trainer(&resume);
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("resumed at step 2"), "{}", text(&run));
    assert!(text(&run).contains("step 3:"), "{}", text(&run));

    // A Cantor card is not a DeepBach card: a clear error, no panic.
    let wrong = trainer(&[
        "eval",
        "--model",
        c,
        "--data",
        d,
        "--split",
        "test",
        "--nll",
        "off",
        "--deepbach",
        c,
    ]);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("not 'cantor-deepbach/1'"),
        "{}",
        text(&wrong)
    );

    let report = dir.path().join("eval");
    let run = trainer(&[
        "eval",
        "--model",
        c,
        "--data",
        d,
        "--split",
        "test",
        "--levels",
        "3",
        "--nll",
        "off",
        "--systems",
        "langevin",
        "--deepbach",
        p,
        "--deepbach-budgets",
        "2,4",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let md = std::fs::read_to_string(dir.path().join("eval.md")).unwrap();
    for heading in [
        "| metric | Bach | Langevin | DeepBach (2 upd./cell) | DeepBach (4 upd./cell) |",
        "Targets (DeepBach (2 upd./cell) vs Bach)",
        "## The DeepBach peer",
    ] {
        assert!(md.contains(heading), "{heading} missing from:\n{md}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("eval.json")).unwrap()).unwrap();
    let harmonize = &json["tasks"]["harmonize"];
    assert!(harmonize["systems"]["deepbach@4"]["chord_beat_fraction"].is_number());
    assert!(harmonize["seconds_per_piece"]["deepbach@2"].is_number());
    assert!(harmonize["systems"]["gibbs"].is_null());
    assert!(json["deepbach"]["pseudo_nll_per_cell"].as_f64().unwrap() > 0.0);
}
