//! Cantor's editor in a real window: the built bundle's GUI is opened
//! through the CLAP GUI extension inside an X11 window on a private Xvfb
//! server, after a melody has been played in and harmonized. The screenshot
//! is written to `target/artifacts/cantor-editor.png` and checked: not
//! blank, the piano roll's background fills much of it, and the heard
//! melody and the composed alto, tenor and bass are drawn in their colours.
//!
//! Needs Xvfb (`apt-get install xvfb`) and Mesa's software OpenGL
//! (`libgl1-mesa-dri`); `.ci/run` installs both.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cantor_host_tests::Cantor;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt, CreateWindowAux, EventMask, ImageFormat, WindowClass,
};

/// A private X server. It exits by itself when its last client (this test
/// process) disconnects: killing it earlier would make Xlib end the process
/// for connections the plugin library keeps until exit.
struct Xvfb {
    display: String,
    /// Not waited on: it outlives the test process by design.
    _server: std::process::Child,
}

impl Xvfb {
    fn start() -> Xvfb {
        let n = (90..190)
            .find(|n| {
                !PathBuf::from(format!("/tmp/.X11-unix/X{n}")).exists()
                    && !PathBuf::from(format!("/tmp/.X{n}-lock")).exists()
            })
            .expect("a free X display number");
        let display = format!(":{n}");
        let mut child = Command::new("Xvfb")
            .args([
                &display,
                "-screen",
                "0",
                "1600x1200x24",
                "-nolisten",
                "tcp",
                "-terminate",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb runs (install it: apt-get install xvfb)");
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        let started = Instant::now();
        while !socket.exists() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("Xvfb did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Xvfb {
            display,
            _server: child,
        }
    }
}

/// A hymn-like phrase in G (beat on, beat off, key), two bars.
const MELODY: [(f64, f64, u16); 7] = [
    (0.0, 1.0, 67),
    (1.0, 2.0, 71),
    (2.0, 3.0, 74),
    (3.0, 4.0, 72),
    (4.0, 5.0, 71),
    (5.0, 6.0, 69),
    (6.0, 8.0, 67),
];
const TEMPO: f64 = 120.0;

fn rgb_close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 6)
}

#[test]
fn the_editor_opens_in_a_real_window_and_shows_the_roll() {
    let xvfb = Xvfb::start();
    // Baseview opens its own connection from DISPLAY.
    std::env::set_var("DISPLAY", &xvfb.display);
    let (conn, screen_num) = x11rb::connect(Some(&xvfb.display)).expect("connects to Xvfb");
    let screen = &conn.setup().roots[screen_num];

    let mut cantor = Cantor::new(48_000.0, 512);
    // Loop the phrase until its harmony has come back.
    let mut harmonized = false;
    for _ in 0..40 {
        let out = cantor.play_pass(&MELODY, 8.0, TEMPO, 512);
        if out.iter().any(|n| n.on && n.channel > 0) {
            harmonized = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(harmonized, "the phrase was never harmonized");

    let parent = conn.generate_id().expect("an X id");
    conn.create_window(
        screen.root_depth,
        parent,
        screen.root,
        0,
        0,
        1200,
        900,
        0,
        WindowClass::INPUT_OUTPUT,
        screen.root_visual,
        &CreateWindowAux::new()
            .background_pixel(screen.black_pixel)
            .event_mask(EventMask::EXPOSURE),
    )
    .expect("creates the host window");
    conn.map_window(parent).expect("maps it");
    conn.flush().expect("flush");

    let (width, height) = cantor.open_editor(parent as u64, 1.0);
    assert!(
        width >= 640 && height >= 420,
        "editor size {width}x{height}"
    );
    // Keep the transport running while the editor draws a few frames.
    for _ in 0..6 {
        cantor.play_pass(&MELODY, 8.0, TEMPO, 512);
        std::thread::sleep(Duration::from_millis(250));
    }
    let image = conn
        .get_image(
            ImageFormat::Z_PIXMAP,
            parent,
            0,
            0,
            width as u16,
            height as u16,
            !0,
        )
        .expect("asks for the image")
        .reply()
        .expect("gets the image");
    cantor.close_editor();

    // 24-bit depth arrives as 32-bit BGRX pixels.
    assert_eq!(image.data.len(), (width * height * 4) as usize);
    let pixels: Vec<[u8; 3]> = image
        .data
        .chunks_exact(4)
        .map(|p| [p[2], p[1], p[0]])
        .collect();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let artifacts = target.join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts folder");
    let path = artifacts.join("cantor-editor.png");
    let file = std::fs::File::create(&path).expect("screenshot file");
    let mut png = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    png.set_color(png::ColorType::Rgb);
    png.set_depth(png::BitDepth::Eight);
    png.write_header()
        .expect("PNG header")
        .write_image_data(&pixels.concat())
        .expect("PNG data");
    eprintln!("screenshot: {}", path.display());

    let count = |rgb: [u8; 3]| pixels.iter().filter(|p| rgb_close(**p, rgb)).count();
    let total = pixels.len();
    let distinct: std::collections::HashSet<_> = pixels.iter().collect();
    assert!(
        distinct.len() > 50,
        "a blank window: {} colours",
        distinct.len()
    );
    let background = count([27, 29, 35]) + count([22, 24, 29]);
    assert!(
        background * 5 > total,
        "the roll covers only {background} of {total} pixels"
    );
    let heard = count([236, 236, 236]);
    let alto = count([95, 211, 154]);
    let tenor = count([74, 163, 240]);
    let bass = count([212, 107, 214]);
    for (name, n) in [
        ("melody", heard),
        ("alto", alto),
        ("tenor", tenor),
        ("bass", bass),
    ] {
        assert!(
            n > 40,
            "{name} notes are not drawn ({n} pixels; see {})",
            path.display()
        );
    }
}
