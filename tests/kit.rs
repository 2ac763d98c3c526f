//! The device kit (scripts/device-kit) runs on a machine with nothing but the C library:
//! every other shared library is inside it, and its FPS table runs in a clean environment.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// glibc's own parts, which the kit leaves to the machine.
fn is_glibc(path: &str) -> bool {
    let name = Path::new(path).file_name().unwrap().to_string_lossy();
    [
        "linux-vdso.so",
        "ld-linux",
        "libc.so",
        "libm.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

#[test]
fn device_kit_runs_with_only_its_own_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let kit = dir.path().join("device-kit");
    let mut build = Command::new(root().join("scripts/device-kit"));
    build.arg(&kit);
    let o = run_with_deadline(build, Duration::from_secs(300));
    assert!(o.status.success(), "{}", stderr(&o));
    let tarball = dir.path().join("device-kit.tar.gz");
    let size = std::fs::metadata(&tarball).unwrap().len();
    assert!(size < 64 << 20, "the kit is {} MiB compressed", size >> 20);

    // ldd, with the kit's lib/ alone on the path, resolves everything inside the kit or to
    // the C library.
    let lib = kit.join("lib");
    let mut ldd = Command::new("ldd");
    ldd.arg(kit.join("bin/segstream"))
        .env_clear()
        .env("LD_LIBRARY_PATH", &lib);
    let o = run_with_deadline(ldd, Duration::from_secs(30));
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{listing}{}", stderr(&o));
    assert!(!listing.contains("not found"), "{listing}");
    let mut inside = 0;
    for line in listing.lines() {
        let Some(path) = line.split("=> ").nth(1).and_then(|r| r.split(' ').next()) else {
            continue;
        };
        if path.starts_with(lib.to_str().unwrap()) {
            inside += 1;
        } else {
            assert!(is_glibc(path), "{path} is outside the kit:\n{listing}");
        }
    }
    assert!(inside >= 10, "{listing}");

    // The table, from a clean environment: no PATH, no HOME cache, the CPU provider (the
    // CPU ONNX Runtime library stands in for onnxruntime-gpu's; CUDA rows are unavailable).
    let ort = std::env::var_os("ORT_DYLIB_PATH").unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap();
        Path::new(&home)
            .join(".cache/segstream/onnxruntime/libonnxruntime.so")
            .into_os_string()
    });
    let results = dir.path().join("results");
    let mut run = Command::new("/bin/sh");
    run.arg(kit.join("run"))
        .args(["--frames", "2", "--warmup", "1", "--model-runs", "1"])
        .current_dir(dir.path())
        .env_clear()
        .env("LD_LIBRARY_PATH", &lib)
        .env("ORT_DYLIB_PATH", ort)
        .env("HOME", dir.path())
        .env("KIT_SIZES", "320x192")
        .env("KIT_BATCHES", "1 2")
        .env("KIT_WORKERS", "1 2")
        .env("PROVIDERS", "cpu,cuda")
        .env("KIT_OUT", &results);
    let o = run_with_deadline(run, Duration::from_secs(300));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{table}{}", stderr(&o));
    for tag in ["b1", "b2", "b1_w2", "b2_w2"] {
        let json = results.join(format!("320x192_{tag}.json"));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let rows = r["rows"].as_array().unwrap();
        // cpu and cuda, fp32 and fp16, pre/post on the host (overlapped and serial) and
        // in graphs, from RGB and from NV12.
        assert_eq!(rows.len(), 16, "{table}");
        for setup in ["pre/post graph", "pre/post graph, NV12"] {
            let graph = rows.iter().filter(|r| r["setup"] == setup).count();
            assert_eq!(graph, 4, "{setup}: {table}");
        }
        for row in rows {
            let cpu = row["provider"] == "CPU";
            assert_eq!(row["available"].as_bool(), Some(cpu), "{row}");
            if cpu {
                assert!(row["fps"].as_f64().unwrap() > 0.0);
                assert!(row["mean_iou"].as_f64().unwrap() > 0.5, "{row}");
            }
        }
    }
}

#[test]
fn split_wheel_pieces_join_back_checked() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir
        .path()
        .join("onnxruntime_gpu-1.31.1-cp311-cp311-linux_x86_64.whl");
    // A wheel-shaped zip: 3 MiB of incompressible bytes as the library.
    let mut make = Command::new(python());
    make.arg("-c")
        .arg(
            "import os, sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w') as z:\n\
             \x20   z.writestr('onnxruntime/capi/libonnxruntime.so.1.31.1', os.urandom(3 << 20))\n\
             \x20   z.writestr('onnxruntime/__init__.py', '')\n",
        )
        .arg(&wheel);
    let o = run_with_deadline(make, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    let pieces = dir.path().join("pieces");
    let script = root().join("scripts/split-wheel");
    let mut split = Command::new(&script);
    split
        .args(["split", wheel.to_str().unwrap(), pieces.to_str().unwrap()])
        .env("PIECE_MIB", "1");
    let o = run_with_deadline(split, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    let n = std::fs::read_dir(&pieces)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".part")
        })
        .count();
    assert!(n >= 3, "{n} pieces");
    for e in std::fs::read_dir(&pieces).unwrap() {
        let p = e.unwrap().path();
        assert!(
            std::fs::metadata(&p).unwrap().len() <= 1 << 20,
            "{}",
            p.display()
        );
    }

    let joined = dir.path().join("joined");
    let mut join = Command::new(&script);
    join.args(["join", pieces.to_str().unwrap(), joined.to_str().unwrap()]);
    let o = run_with_deadline(join, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    let name = wheel.file_name().unwrap();
    assert_eq!(
        std::fs::read(joined.join(name)).unwrap(),
        std::fs::read(&wheel).unwrap()
    );
    let lib = std::fs::read(joined.join("onnxruntime/libonnxruntime.so")).unwrap();
    assert_eq!(lib.len(), 3 << 20);

    // A damaged piece is caught by the checksum.
    let part = pieces.join(format!("{}.part01", name.to_string_lossy()));
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&part, bytes).unwrap();
    let mut join = Command::new(&script);
    join.args([
        "join",
        pieces.to_str().unwrap(),
        dir.path().join("bad").to_str().unwrap(),
    ]);
    let o = run_with_deadline(join, Duration::from_secs(60));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("checksum mismatch"), "{}", stderr(&o));
}
