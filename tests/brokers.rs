//! Broker sinks against real brokers on loopback: `mosquitto` started by the test on a free
//! port, read by its own client `mosquitto_sub`. No mock brokers.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A mosquitto broker on 127.0.0.1:`port`, stopped when dropped.
struct Mosquitto(Child);

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
    // Subscribed before the run starts; exits after 60 messages.
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "seg/#",
            "-q",
            "1",
        ])
        .args(["-C", "60", "-W", "60", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
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
    let got = sub.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&got.stdout);
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
