//! The Kubernetes manifests in deploy/kubernetes: valid against the Kubernetes schemas
//! (kubernetes-validate, offline), and the pipelines their ConfigMap carries pass
//! `segstream validate` with the paths the pods would see.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn manifests() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_pass_schema_validation() {
    let files = manifests();
    assert!(files.len() >= 4, "{files:?}");
    let tool = python().with_file_name("kubernetes-validate");
    let mut cmd = Command::new(&tool);
    cmd.arg("--strict").args(&files);
    let o = run_with_deadline(cmd, Duration::from_secs(120));
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(o.status.success(), "{out}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(out.contains(&format!("{name} passed")), "{name}: {out}");
    }
}

#[test]
fn the_configmap_pipelines_are_valid_where_the_pods_mount_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("in/day1")).unwrap();
    make_video(&data.join("in/day1/cam0.mp4"), 3, 64, 64, "");
    // The pipelines as files, the pod's paths replaced by this checkout's and the test's.
    let script = "import sys, yaml\n\
                  doc = yaml.safe_load(open(sys.argv[1]))\n\
                  for name, text in doc['data'].items():\n\
                  \x20   open(sys.argv[2] + '/' + name, 'w').write(text)\n";
    let mut cmd = Command::new(python());
    cmd.args(["-c", script])
        .arg(root().join("deploy/kubernetes/configmap.yaml"))
        .arg(dir.path());
    let o = run_with_deadline(cmd, Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["batch.toml", "camera.toml"] {
        let path = dir.path().join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/opt/segstream", root().to_str().unwrap())
            .replace("/data", data.to_str().unwrap());
        std::fs::write(&path, text).unwrap();
        let o = run_with_deadline(
            segstream(&["validate", path.to_str().unwrap()]),
            Duration::from_secs(120),
        );
        assert!(o.status.success(), "{name}: {}", stderr(&o));
    }
}
