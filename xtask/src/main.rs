//! Project chores:
//! - `cargo xtask bundle cantor [--release]`: the CLAP and VST3 bundles in
//!   `target/bundled/` (names from `bundler.toml`), via nice-plug-xtask;
//! - `cargo xtask chorales [DIR]`: the Bach chorales as MusicXML for the
//!   trainer (default `data/chorales/`), from the music21 package on PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;

use nice_plug_xtask::Result;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("chorales") {
        nice_plug_xtask::chdir_workspace_root()?;
        let dir = args
            .get(1)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("data/chorales"));
        return chorales(&dir);
    }
    nice_plug_xtask::main()
}

/// Downloads music21's wheel with pip (no install: a wheel is a zip) and
/// copies `music21/corpus/bach/*.mxl` into `dir`.
fn chorales(dir: &Path) -> Result<()> {
    // A fresh folder each time, so the wheel read is the one just fetched.
    let download = std::env::temp_dir().join("cantor-music21-wheel");
    if download.exists() {
        std::fs::remove_dir_all(&download)?;
    }
    std::fs::create_dir_all(&download)?;
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
        ])
        .arg(&download)
        .arg("music21")
        .status()
        .map_err(|e| {
            anyhow_error(format!(
                "cannot run python3 -m pip ({e}); python3 with pip is needed"
            ))
        })?;
    if !status.success() {
        return Err(anyhow_error(
            "pip could not download the music21 wheel".into(),
        ));
    }
    let wheel = std::fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| anyhow_error(format!("no .whl file in {}", download.display())))?;
    let file = std::fs::File::open(&wheel)?;
    let mut archive = zip::ZipArchive::new(file)?;
    std::fs::create_dir_all(dir)?;
    let mut count = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_string();
        if name.starts_with("music21/corpus/bach/") && name.ends_with(".mxl") {
            let file_name = Path::new(&name).file_name().expect("a file name");
            let mut out = std::fs::File::create(dir.join(file_name))?;
            std::io::copy(&mut entry, &mut out)?;
            count += 1;
        }
    }
    println!(
        "{count} Bach chorales (MusicXML) from {} → {}",
        wheel.display(),
        dir.display()
    );
    if count == 0 {
        return Err(anyhow_error(
            "the wheel holds no music21/corpus/bach/*.mxl".into(),
        ));
    }
    Ok(())
}

fn anyhow_error(message: String) -> anyhow::Error {
    anyhow::Error::msg(message)
}
