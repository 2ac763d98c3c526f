//! Broker sinks and the work queue against real brokers on loopback: `mosquitto` and
//! `nats-server -js` started by the tests on free ports, read by their own clients
//! (`mosquitto_sub`, nats-py). No mock brokers. Brokers are killed and restarted mid-run.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A mosquitto broker on 127.0.0.1:`port`, stopped when dropped.
struct Mosquitto(Child);

/// `mosquitto_sub` on seg/# at QoS 1, printing "TOPIC PAYLOAD" lines, with `extra` options.
fn mosquitto_sub(port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "seg/#",
        "-q",
        "1",
        "-v",
    ])
    .args(extra);
    cmd
}

/// A `mosquitto_sub` known to be subscribed: `start` returns once a probe published on
/// seg/probe has come back through it, and `finish` once a marker published after the run
/// has (by then the broker holds every line it confirmed, queued ahead of the marker), so
/// neither a slow start nor a slow delivery loses lines, and nothing waits on a fixed sleep.
struct Subscriber {
    child: Child,
    port: u16,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
    /// What the clients wrote to stderr, for the message when a marker never arrives.
    errors: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Subscriber {
    /// Starts `mosquitto_sub` and waits for the probe. A client that has not seen it within
    /// 15 s (one that exited, or never subscribed, on a loaded machine) is replaced by a
    /// new one with the same options, for up to a minute in all.
    fn start(port: u16, extra: &[&str]) -> Subscriber {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let errors = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let started = Instant::now();
        loop {
            let (child, reader) = Self::spawn(port, extra, &lines, &errors);
            let mut sub = Subscriber {
                child,
                port,
                lines: lines.clone(),
                reader,
                errors: errors.clone(),
            };
            let left = Duration::from_secs(60).saturating_sub(started.elapsed());
            if sub.seen_within("probe", left.min(Duration::from_secs(15))) {
                return sub;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "mosquitto_sub never received \"seg/probe probe\" in a minute; its stderr: {}",
                errors.lock().unwrap()
            );
            let _ = sub.child.kill();
            let _ = sub.child.wait();
        }
    }

    fn spawn(
        port: u16,
        extra: &[&str],
        lines: &std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        errors: &std::sync::Arc<std::sync::Mutex<String>>,
    ) -> (Child, std::thread::JoinHandle<()>) {
        let mut child = mosquitto_sub(port, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let errors = errors.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut e = errors.lock().unwrap();
                e.push_str(&line);
                e.push_str("; ");
            }
        });
        (child, reader)
    }

    /// Publishes `marker` on seg/`marker` (again every half second) until it is received or
    /// `limit` has passed; whether it was.
    fn seen_within(&self, marker: &str, limit: Duration) -> bool {
        let started = Instant::now();
        let want = format!("seg/{marker} {marker}");
        while !self.lines.lock().unwrap().contains(&want) {
            if started.elapsed() >= limit {
                return false;
            }
            let _ = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
                .args(["-t", &format!("seg/{marker}"), "-m", marker])
                .status();
            std::thread::sleep(Duration::from_millis(500));
        }
        true
    }

    /// Publishes `marker` on seg/`marker` (again every half second) until it is received.
    fn until_seen(&self, marker: &str) {
        assert!(
            self.seen_within(marker, Duration::from_secs(60)),
            "mosquitto_sub never received \"seg/{marker} {marker}\"; its stderr: {}",
            self.errors.lock().unwrap()
        );
    }

    /// Every line received (the markers left out), once everything published before has
    /// arrived.
    fn finish(mut self) -> Vec<u8> {
        self.until_seen("end");
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader.join().unwrap();
        let lines = self.lines.lock().unwrap();
        let mut out = Vec::new();
        for l in lines.iter() {
            if !l.starts_with("seg/probe ") && !l.starts_with("seg/end ") {
                out.extend_from_slice(l.as_bytes());
                out.push(b'\n');
            }
        }
        out
    }
}

/// Waits until something listens on 127.0.0.1:`port`.
fn wait_listening(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Mosquitto {
    fn start(port: u16) -> Mosquitto {
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package mosquitto; scripts/setup installs it)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mosquitto(child)
    }
}

impl Mosquitto {
    /// A broker that keeps sessions (and their queued messages) in `dir` across a restart.
    fn start_persistent(port: u16, dir: &Path) -> Mosquitto {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\n\
                 persistence_location {}/\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package mosquitto; scripts/setup installs it)");
        wait_listening(port, "mosquitto");
        Mosquitto(child)
    }

    /// Stops the broker as a service manager does (SIGTERM: it saves its sessions).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mqtt_sink_delivers_every_frame_line_to_a_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Mosquitto::start(port);
    // Subscribed before the run starts.
    let sub = Subscriber::start(port, &[]);
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\nwidth = 64\nheight = 48\nframes = 60\n\n\
             [[sinks]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\ntopic = \"seg/{{stream}}\"\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("60 line(s) published, 60 confirmed"), "{err}");
    let got = sub.finish();
    let text = String::from_utf8_lossy(&got);
    let mut seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            let (topic, payload) = l.split_once(' ').unwrap();
            assert_eq!(topic, "seg/0");
            let v: serde_json::Value = serde_json::from_str(payload).unwrap();
            assert_eq!(
                (v["width"].as_u64(), v["height"].as_u64()),
                (Some(64), Some(48))
            );
            v["seq"].as_u64().unwrap()
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..60).collect::<Vec<_>>(), "{text}");
}

#[test]
fn mqtt_sink_without_a_broker_drops_and_counts_and_never_stalls() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\nwidth = 64\nheight = 48\nframes = 100\n\n\
             [[sinks]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\nbuffer = 10\n\
             drain_s = 1\n"
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("Broker unreachable"), "{err}");
    // Ten lines fit the buffer; the other ninety are counted as drops.
    let line = err
        .lines()
        .find(|l| l.contains("line(s) published"))
        .unwrap_or_else(|| panic!("no mqtt summary: {err}"));
    assert!(line.contains(", 0 confirmed"), "{line}");
    let dropped: u64 = line
        .split(" confirmed by the broker, ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((80..=90).contains(&dropped), "{line}");
}

/// A nats-server with JetStream on 127.0.0.1:`port`, its store in `store`; stopped when
/// dropped.
struct Nats {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl Nats {
    fn start(port: u16, store: &Path) -> Nats {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server; scripts/setup installs it)");
        wait_listening(port, "nats-server");
        Nats {
            child,
            port,
            store: store.to_owned(),
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server as a service manager does (SIGTERM) and starts it again after
    /// `away`, on the same port and store. (A SIGKILLed server can lose messages it had
    /// already acknowledged and not yet written to its store, which no client can see.)
    fn stop_and_restart(&mut self, away: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::thread::sleep(away);
        *self = Nats::start(self.port, &self.store.clone());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nats-py subscribed to `subject` for `seconds`, started and ready.
fn nats_subscriber(nats: &Nats, subject: &str, seconds: u32) -> Child {
    let mut child = Command::new(python())
        .arg(root().join("tests/reference/nats_client.py"))
        .args(["sub", &nats.address(), subject, &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the subscriber did not start: {line}");
    child
}

/// The (stream, seq) of every line a subscriber printed, with its subject.
fn received(out: &[u8]) -> Vec<(String, u64)> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            let (subject, payload) = l.split_once(' ').unwrap();
            let v: serde_json::Value = serde_json::from_str(payload).unwrap();
            (subject.to_owned(), v["seq"].as_u64().unwrap())
        })
        .collect()
}

/// The figures of a broker sink's summary line: (published, confirmed, dropped).
fn broker_figures(err: &str, sink: &str) -> (u64, u64, u64) {
    let line = err
        .lines()
        .find(|l| l.starts_with(sink) && l.contains("line(s) published"))
        .unwrap_or_else(|| panic!("no {sink} summary: {err}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // The URL's address and port come first.
    let n = numbers.len();
    (numbers[n - 3], numbers[n - 2], numbers[n - 1])
}

#[test]
fn nats_sink_delivers_every_frame_line_to_a_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(free_port(), &dir.path().join("js"));
    let sub = nats_subscriber(&nats, "seg.>", 6);
    let p = pipeline_file(
        dir.path(),
        "p.toml",
        &format!(
            "[source]\ntype = \"test\"\nwidth = 64\nheight = 48\nframes = 60\n\n\
             [[sinks]]\ntype = \"nats\"\nurl = \"nats://{}\"\nsubject = \"seg.{{stream}}\"\n",
            nats.address()
        ),
    );
    let o = run_with_deadline(
        segstream(&["run", p.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(broker_figures(&err, "nats"), (60, 60, 0), "{err}");
    let got = received(&sub.wait_with_output().unwrap().stdout);
    assert!(got.iter().all(|(s, _)| s == "seg.0"), "{got:?}");
    let mut seqs: Vec<u64> = got.iter().map(|g| g.1).collect();
    seqs.sort();
    assert_eq!(seqs, (0..60).collect::<Vec<_>>());
}

/// A live test source of `frames` frames at 30 fps into `sink`, run in the background.
fn live_run(dir: &Path, frames: u32, sink: &str) -> Child {
    let p = pipeline_file(
        dir,
        "live.toml",
        &format!(
            "[source]\ntype = \"test\"\nwidth = 64\nheight = 48\nframes = {frames}\n\
             live = true\n\n[[sinks]]\n{sink}\n"
        ),
    );
    segstream(&["run", p.to_str().unwrap(), "--status-interval", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What a broker restart cost: every frame not received is reported as dropped (the buffer
/// was full) or unconfirmed (sent on a connection that was lost), and the buffer carried the
/// lines of the outage it could hold.
fn check_restart(err: &str, sink: &str, frames: u64, got: &[(String, u64)], buffer: u64) {
    let (published, confirmed, dropped) = broker_figures(err, sink);
    let mut seqs: Vec<u64> = got.iter().map(|g| g.1).collect();
    seqs.sort();
    seqs.dedup();
    let received = seqs.len() as u64;
    let missing: Vec<u64> = (0..frames)
        .filter(|f| seqs.binary_search(f).is_err())
        .collect();
    eprintln!("{sink} restart: frames not received: {missing:?}");
    eprintln!(
        "{sink} restart: {frames} frames, {published} published, {confirmed} confirmed, \
         {dropped} dropped, {received} received"
    );
    assert_eq!(published + dropped, frames, "{err}");
    assert!(
        dropped > 0,
        "a 2 s outage at 30 fps overflows {buffer} lines: {err}"
    );
    let reported_lost = dropped + (published - confirmed);
    assert!(
        frames - received <= reported_lost,
        "{} lines were lost but only {reported_lost} reported: {err}",
        frames - received
    );
    assert!(
        received >= confirmed,
        "{confirmed} confirmed but {received} received"
    );
    // Lines from before the outage, from the buffer, and after it all arrived.
    assert!(
        seqs.first() == Some(&0) && seqs.last() == Some(&(frames - 1)),
        "{seqs:?}"
    );
    assert!(received + dropped + 10 >= frames, "{seqs:?}");
}

#[test]
fn nats_sink_survives_a_broker_restart_and_reports_what_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(free_port(), &dir.path().join("js"));
    // The broker's own record of every line it took, kept across its restart: a core
    // subscriber would miss what arrives while it reconnects itself.
    reference(
        "nats_client.py",
        &["capture", &nats.address(), "CAPTURE", "seg.>"],
    );
    let buffer = 20;
    let mut run = live_run(
        dir.path(),
        300,
        &format!(
            "type = \"nats\"\nurl = \"nats://{}\"\nsubject = \"seg.{{stream}}\"\n\
             buffer = {buffer}\ndrain_s = 5",
            nats.address()
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    nats.stop_and_restart(Duration::from_secs(2));
    let o = run.wait_with_output_deadline();
    let got =
        received(reference("nats_client.py", &["dump", &nats.address(), "CAPTURE"]).as_bytes());
    check_restart(&o, "nats", 300, &got, buffer);
}

#[test]
fn mqtt_sink_survives_a_broker_restart_and_reports_what_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Mosquitto::start_persistent(port, dir.path());
    // A subscriber with a kept session: what arrives while it reconnects waits for it.
    let sub = Subscriber::start(port, &["-c", "-i", "segstream-test-sub"]);
    let buffer = 20;
    let mut run = live_run(
        dir.path(),
        300,
        &format!(
            "type = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\ntopic = \"seg/{{stream}}\"\n\
             buffer = {buffer}\ndrain_s = 5"
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    let _broker = Mosquitto::start_persistent(port, dir.path());
    let o = run.wait_with_output_deadline();
    let got = received(&sub.finish());
    check_restart(&o, "mqtt", 300, &got, buffer);
}

/// Waits (at most two minutes) for a background run and returns its stderr.
trait WaitDeadline {
    fn wait_with_output_deadline(&mut self) -> String;
}

impl WaitDeadline for Child {
    fn wait_with_output_deadline(&mut self) -> String {
        let started = Instant::now();
        while self.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(120) {
                let _ = self.kill();
                panic!("the run hung");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut err = String::new();
        std::io::Read::read_to_string(self.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(self.wait().unwrap().success(), "{err}");
        err
    }
}

#[test]
fn two_workers_share_a_queue_and_a_killed_workers_file_is_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(free_port(), &dir.path().join("js"));
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut frames = std::collections::BTreeMap::new();
    for k in 0..8u32 {
        let path = input.join(format!("q{k}.mp4"));
        make_video(&path, 40 + k, 320, 240, "pattern=ball");
        frames.insert(format!("q{k}"), video_info(&path).0);
    }
    let p = segmenting_pipeline(dir.path(), "worker.toml");
    let queue = format!("nats://{}/seg.files", nats.address());
    let o = run_with_deadline(
        segstream(&["enqueue", "--queue", &queue, input.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("enqueued 8 file(s) on seg.files"),
        "{}",
        stderr(&o)
    );
    let worker = || {
        segstream(&[
            "worker",
            p.to_str().unwrap(),
            "--queue",
            &queue,
            "--ack-wait-s",
            "3",
            "--idle-exit-s",
            "8",
            "--status-interval",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let mut doomed = worker();
    let survivor = worker();
    // The doomed worker's first file: killed once its output is being written.
    let lines = std::io::BufReader::new(doomed.stderr.take().unwrap()).lines();
    let mut killed_file = None;
    for line in lines {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("worker: ") {
            if let Some(file) = rest.strip_suffix(" (delivery 1)") {
                killed_file = Some(file.to_owned());
                break;
            }
        }
    }
    let killed_file = killed_file.expect("the first worker took a file");
    let name = Path::new(&killed_file)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let partial = dir.path().join(format!("out/{name}.mp4.partial"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !partial.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            partial.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    assert!(
        !dir.path().join(format!("out/{name}.mp4")).exists(),
        "killed mid-file: no output under the finished name yet"
    );

    let o = run_with_deadline_child(survivor, Duration::from_secs(400));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("worker: {killed_file} (delivery 2)")),
        "the killed worker's file came back to the other worker: {err}"
    );
    for (name, n) in &frames {
        let mp4 = dir.path().join(format!("out/{name}.mp4"));
        assert_eq!(video_info(&mp4).0, *n, "{name}.mp4");
        let jsonl = std::fs::read_to_string(dir.path().join(format!("out/{name}.jsonl"))).unwrap();
        assert_eq!(jsonl.lines().count() as u64, *n, "{name}.jsonl");
        assert!(!dir.path().join(format!("out/{name}.mp4.partial")).exists());
    }
    let info: serde_json::Value = serde_json::from_str(&reference(
        "nats_client.py",
        &[
            "consumer",
            &nats.address(),
            "SEGSTREAM",
            "segstream-workers",
        ],
    ))
    .unwrap();
    // Eight files, and the killed worker's delivered twice (JetStream's own count).
    assert!(info["delivered"].as_u64().unwrap() >= 9, "{info}");
    assert_eq!(info["num_ack_pending"].as_u64(), Some(0), "{info}");
    assert_eq!(
        info["stream_messages"].as_u64(),
        Some(0),
        "every file acknowledged: {info}"
    );
}

/// `run_with_deadline` for a child already started (stderr piped).
fn run_with_deadline_child(mut child: Child, limit: Duration) -> std::process::Output {
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: reader.join().unwrap(),
    }
}
