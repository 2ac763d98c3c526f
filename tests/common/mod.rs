//! Shared helpers for the end-to-end tests: running the binary with a deadline, the Python
//! references, PNG reading and fixtures.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with onnxruntime, torch and PyAV that scripts/setup installs.
pub fn python() -> PathBuf {
    let path = std::env::var_os("SEGSTREAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/segstream/venv/bin/python")
        });
    assert!(
        path.exists(),
        "{} missing: run scripts/setup (or scripts/test) first",
        path.display()
    );
    path
}

/// The exported model files (scripts/setup links them at `models/`).
pub fn model(name: &str) -> PathBuf {
    let p = root().join("models").join(name);
    assert!(
        p.exists(),
        "{} missing: run scripts/setup (or scripts/test) first",
        p.display()
    );
    p
}

/// Runs a command to completion, killing it (and failing the test) if it outlives `limit`.
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Drain the pipes on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} hung: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// `segstream ARGS` from the repository root.
pub fn segstream(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_segstream"));
    cmd.args(args).current_dir(root());
    cmd
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a Python reference script from tests/reference and returns its stdout.
pub fn reference(script: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/reference").join(script))
        .args(args)
        .current_dir(root());
    let o = run_with_deadline(cmd, Duration::from_secs(300));
    assert!(
        o.status.success(),
        "reference {script} {args:?} failed: {}",
        stderr(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A decoded PNG: width, height, channels, bytes.
pub struct Png {
    pub width: u32,
    pub height: u32,
    pub channels: usize,
    pub data: Vec<u8>,
}

pub fn read_png(path: &Path) -> Png {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut data = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut data).unwrap();
    data.truncate(info.buffer_size());
    Png {
        width: info.width,
        height: info.height,
        channels: info.color_type.samples(),
        data,
    }
}

/// Share of equal pixels between two label maps of the same size.
pub fn agreement(a: &Png, b: &Png) -> f64 {
    assert_eq!(
        (a.width, a.height),
        (b.width, b.height),
        "label maps differ in size"
    );
    let same = a.data.iter().zip(&b.data).filter(|(x, y)| x == y).count();
    same as f64 / a.data.len() as f64
}

/// Writes an image-like PNG (smooth fields, sharp shapes) of the given size.
pub fn make_image(dir: &Path, width: u32, height: u32, seed: u32) -> PathBuf {
    let out = dir.join(format!("image_{width}x{height}_{seed}.png"));
    reference(
        "make_image.py",
        &[
            "--width",
            &width.to_string(),
            "--height",
            &height.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    out
}

/// Encodes a `videotestsrc` clip with gst-launch (independent of segstream's own code).
pub fn make_video(path: &Path, frames: u32, width: u32, height: u32, extra: &str) {
    let pipeline = format!(
        "videotestsrc num-buffers={frames} {extra} ! video/x-raw,width={width},height={height},framerate=30/1 \
         ! videoconvert ! x264enc speed-preset=ultrafast key-int-max=30 ! mp4mux ! filesink location={}",
        path.display()
    );
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q").args(pipeline.split_whitespace());
    let o = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(o.status.success(), "gst-launch failed: {}", stderr(&o));
}

/// Each track's span and start as PyAV decodes them (`video_s`, `audio_s`, `audio_codec`,
/// `video_start`, `audio_start`).
#[allow(dead_code)]
pub fn tracks(path: &Path) -> serde_json::Value {
    serde_json::from_str(&reference("video.py", &["tracks", path.to_str().unwrap()])).unwrap()
}

/// Asserts that `out` holds `seconds` of video (within `slack`) and, with `audio`, an AAC
/// track that starts and ends with the video within `frame` seconds; without, no audio.
#[allow(dead_code)]
pub fn assert_video_and_aac(out: &Path, seconds: f64, slack: f64, audio: bool, frame: f64) {
    let t = tracks(out);
    let video = t["video_s"].as_f64().unwrap();
    assert!((video - seconds).abs() < slack, "{}: {t}", out.display());
    if !audio {
        assert!(
            t["audio_s"].is_null(),
            "{}: no audio expected: {t}",
            out.display()
        );
        return;
    }
    assert_eq!(t["audio_codec"], "aac", "{}: {t}", out.display());
    let span = t["audio_s"].as_f64().unwrap();
    let start = t["audio_start"].as_f64().unwrap() - t["video_start"].as_f64().unwrap();
    assert!(
        (span - video).abs() < frame && start.abs() < frame,
        "{}: audio must match the video within one frame: {t}",
        out.display()
    );
}

/// Video facts as PyAV (FFmpeg) decodes them: (frames, width, height).
pub fn video_info(path: &Path) -> (u64, u64, u64) {
    let out = reference("video.py", &["info", path.to_str().unwrap()]);
    let field = |k: &str| -> u64 {
        let at = out
            .find(&format!("\"{k}\": "))
            .unwrap_or_else(|| panic!("no {k} in {out}"));
        out[at + k.len() + 4..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("frames"), field("width"), field("height"))
}

/// Writes `text` as a pipeline file in `dir`.
pub fn pipeline_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A model config copied from configs/ with `edit` applied to its text, pointing at the
/// real ONNX file.
pub fn edited_config(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text =
        std::fs::read_to_string(root().join("configs").join(format!("{name}.toml"))).unwrap();
    // `../models/NAME.onnx` or `../models/trained/NAME.onnx`, made absolute.
    let models = root().join("models");
    let text = text.replace("\"../models/", &format!("\"{}/", models.display()));
    let p = dir.join(format!("{name}_{:x}.toml", fxhash(&edit(text.clone()))));
    std::fs::write(&p, edit(text)).unwrap();
    p
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Runs `source -> infer (model, extra infer options) -> png label maps` and returns the
/// label maps of the first `frames` frames.
pub fn label_maps(dir: &Path, source: &Path, model: &Path, infer: &str, frames: usize) -> Vec<Png> {
    label_maps_with(dir, source, "", model, infer, frames, &[]).0
}

/// `label_maps` with more settings of the file source (`settings`: TOML lines) and more
/// arguments to `segstream run`, reading at most `frames` frames; also returns what the
/// run logged.
pub fn label_maps_with(
    dir: &Path,
    source: &Path,
    settings: &str,
    model: &Path,
    infer: &str,
    frames: usize,
    args: &[&str],
) -> (Vec<Png>, String) {
    let tag = format!(
        "{:x}",
        fxhash(&format!("{source:?}{settings}{model:?}{infer}"))
    );
    let out = dir.join(format!("labels_{tag}"));
    let pipeline = pipeline_file(
        dir,
        &format!("pipeline_{tag}.toml"),
        &format!(
            "[source]\ntype = \"file\"\npath = {source:?}\n{settings}\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = {model:?}\n{infer}\n\n\
             [[sinks]]\ntype = \"png\"\ndir = {out:?}\n"
        ),
    );
    let count = frames.to_string();
    let mut all = vec!["run", pipeline.to_str().unwrap(), "--frames", &count];
    all.extend_from_slice(args);
    let o = run_with_deadline(segstream(&all), Duration::from_secs(300));
    assert!(o.status.success(), "segstream failed: {}", stderr(&o));
    let maps = (0..frames)
        .map(|i| read_png(&out.join(format!("{i:06}.png"))))
        .collect();
    (maps, stderr(&o))
}

/// A reference script's arguments for one model config and one image: `--config CONFIG
/// --image IMAGE --out OUT`, then `extra`.
pub fn config_image_out<'a>(
    config: &'a Path,
    image: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs a reference script that writes a label PNG given `--out`, and reads it back.
pub fn reference_labels(dir: &Path, script: &str, args: &[&str]) -> Png {
    let out = dir.join(format!(
        "ref_{:x}.png",
        fxhash(&format!("{script}{args:?}"))
    ));
    let mut all = args.to_vec();
    all.extend(["--out", out.to_str().unwrap()]);
    reference(script, &all);
    read_png(&out)
}

/// The JSON a successful command printed on stdout (the test fails with its stderr else).
pub fn json_output(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `segstream eval --instances PRED --coco-truth TRUTH --json [extra]`, which must succeed;
/// its JSON figures.
pub fn eval_instances(pred: &Path, truth: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "eval",
        "--instances",
        pred.to_str().unwrap(),
        "--coco-truth",
        truth.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    json_output(&run_with_deadline(
        segstream(&args),
        Duration::from_secs(60),
    ))
}

/// `segstream eval --pred PRED --truth TRUTH [extra]`, run to completion.
pub fn eval_command(pred: &Path, truth: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "eval",
        "--pred",
        pred.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_with_deadline(segstream(&args), Duration::from_secs(60))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pipeline file in `dir` that segments the files of `dir/in` into an MP4 (the overlay)
/// and a JSONL per file: `dir/out/{name}.mp4`, `dir/out/{name}.jsonl`.
pub fn segmenting_pipeline(dir: &Path, name: &str) -> PathBuf {
    let model = root().join("configs/deeplabv3plus_mobilenet_v2.toml");
    pipeline_file(
        dir,
        name,
        &format!(
            "[source]\ntype = \"file\"\npath = \"in\"\n\n\
             [[transforms]]\ntype = \"infer\"\nmodel = {model:?}\n\n\
             [[transforms]]\ntype = \"composite\"\n\n\
             [[sinks]]\ntype = \"mp4\"\npath = \"out/{{name}}.mp4\"\n\n\
             [[sinks]]\ntype = \"jsonl\"\npath = \"out/{{name}}.jsonl\"\n"
        ),
    )
}

/// Frame 0 of segstream's synthetic world for `seed`, as a PNG (`dir/frame_SEED/000000.png`):
/// the world the trained default knows.
pub fn synthetic_frame(dir: &Path, width: u32, height: u32, seed: u64) -> PathBuf {
    let out = dir.join(format!("frame_{seed}"));
    let p = pipeline_file(
        dir,
        &format!("frame_{seed}.toml"),
        &format!(
            "[source]\ntype = \"synthetic\"\nwidth = {width}\nheight = {height}\nframes = 1\n\
             seed = {seed}\n\n[[sinks]]\ntype = \"png\"\ndir = {out:?}\nwhat = \"frame\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    out.join("000000.png")
}

/// The OpenVINO plugin library scripts/setup installs.
pub fn openvino_library() -> PathBuf {
    let path = std::env::var_os("SEGSTREAM_OPENVINO_EP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home)
                .join(".cache/segstream/openvino/libonnxruntime_providers_openvino_plugin.so")
        });
    assert!(
        path.exists(),
        "{} missing: run scripts/setup (or scripts/test) first",
        path.display()
    );
    path
}

/// Whether ONNX Runtime's Python API, with the OpenVINO plugin registered, is offered an
/// OpenVINO CPU device here (on an AMD EPYC it was offered none); where it is not, tests
/// hold segstream to refusing `kind = "openvino"` by name instead.
pub fn openvino_sees_cpu() -> bool {
    static SEES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SEES.get_or_init(|| {
        let library = openvino_library();
        let seen = reference("openvino_devices.py", &[library.to_str().unwrap()]);
        let cpu = seen.lines().any(|l| l.trim() == "CPU");
        if !cpu {
            eprintln!(
                "ONNX Runtime's OpenVINO plugin offers no CPU device on this machine \
                 (it offers: {:?}); OpenVINO must be refused by name",
                seen.lines().collect::<Vec<_>>()
            );
        }
        cpu
    })
}

/// The reason segstream gives where OpenVINO has no CPU device ([`openvino_sees_cpu`]).
pub const NO_OPENVINO_CPU: &str = "no OpenVINO CPU device on this machine";

/// Runs `segstream run PIPELINE [extra]` and checks for one clear error line containing
/// every fragment in `expect`.
pub fn assert_fails(pipeline: &Path, extra: &[&str], expect: &[&str]) {
    assert_refused("run", pipeline, extra, expect);
}

/// Runs `segstream COMMAND PIPELINE [extra]` and checks for exit 1, no panic, and one error
/// line containing every fragment in `expect`.
pub fn assert_refused(command: &str, pipeline: &Path, extra: &[&str], expect: &[&str]) {
    let mut args = vec![command, pipeline.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run_with_deadline(segstream(&args), Duration::from_secs(60));
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{command}: expected exit 1, got {:?}; stderr: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{command} panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        lines.len(),
        1,
        "{command}: expected one error line, got: {err}"
    );
    for e in expect {
        assert!(
            lines[0].contains(e),
            "{command}: error line {:?} does not mention {e:?}",
            lines[0]
        );
    }
}
