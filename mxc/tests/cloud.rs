//! Cloud images: `mxc image import` refuses what could make QEMU open
//! other files as root, and an imported image (built here the way
//! distributions build theirs: GRUB, its own kernel and initramfs,
//! cloud-init, no mx script) comes up as an experiment node that is
//! configured from the NoCloud seed mx writes, reachable by name, and
//! usable through exec, cp and ssh; its base is never written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

mod common;
use common::{Env, can_run, ok, private_dir, probe, root, text};

static SERIAL: Mutex<()> = Mutex::new(());

/// mxc with a state root, an allocation table and an image directory of
/// the test's own.
fn mxc(env: &Env, images: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mxc"))
        .args(args)
        .current_dir(root())
        .env("MX_STATE_DIR", env.dir.join("run"))
        .env("MX_DB", env.dir.join("alloc.db"))
        .env("MX_IMAGE_DIR", images)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mxc")
}

fn qemu_img(args: &[&str], dir: &Path) {
    let o = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run qemu-img");
    ok(&o);
}

fn has_qemu_img() -> bool {
    let there = Command::new("qemu-img").arg("--version").output().is_ok();
    assert!(
        there || std::env::var_os("MX_REQUIRE_E2E").is_none(),
        "MX_REQUIRE_E2E is set but qemu-img is not installed"
    );
    there
}

fn fails_with(o: &Output, words: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(words), "{}", text(&o.stderr));
}

#[test]
fn import_takes_standalone_qcow2_images_only() {
    // Its `up` is refused before anything is touched, but it shares the
    // machine's namespaces with the test that runs one.
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !has_qemu_img() {
        return;
    }
    let env = Env::new("import");
    let images = env.dir.join("images");
    let d = &env.dir;
    qemu_img(&["create", "-q", "-f", "qcow2", "base.qcow2", "16M"], d);
    qemu_img(
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "child.qcow2",
        ],
        d,
    );
    qemu_img(
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "data_file=data.raw",
            "external.qcow2",
            "16M",
        ],
        d,
    );
    std::fs::write(d.join("disk.raw"), vec![0u8; 1 << 20]).unwrap();
    let f = |name: &str| d.join(name).display().to_string();

    // A backing file or an external data file would be opened by QEMU as
    // root: refused before qemu-img reads the image.
    let o = mxc(&env, &images, &["image", "import", "x", &f("child.qcow2")]);
    fails_with(&o, "has a backing file");
    let o = mxc(
        &env,
        &images,
        &["image", "import", "x", &f("external.qcow2")],
    );
    fails_with(&o, "external data file");
    let o = mxc(&env, &images, &["image", "import", "x", &f("disk.raw")]);
    fails_with(&o, "is not a qcow2 image");
    assert!(text(&o.stderr).contains("qemu-img convert -O qcow2"));
    let o = mxc(&env, &images, &["image", "import", "x", &f("nope.qcow2")]);
    fails_with(&o, "nope.qcow2");
    let o = mxc(&env, &images, &["image", "import", "x", "/dev/null"]);
    fails_with(&o, "not a regular file");
    // Names: not an image mx builds, not a path.
    let o = mxc(
        &env,
        &images,
        &["image", "import", "bookworm", &f("base.qcow2")],
    );
    fails_with(&o, "import under another name");
    let o = mxc(
        &env,
        &images,
        &["image", "import", "../up", &f("base.qcow2")],
    );
    fails_with(&o, "cannot name an image");
    // Nothing was left behind by the refusals.
    let left: Vec<_> = std::fs::read_dir(&images)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // A standalone image is copied in; the listing shows it; a node on it
    // cannot have what needs mx's kernel command line; it can be removed.
    ok(&mxc(
        &env,
        &images,
        &[
            "image",
            "import",
            "tiny",
            &f("base.qcow2"),
            "--os",
            "Tiny 1",
        ],
    ));
    let listed = ok(&mxc(&env, &images, &["image", "list"]));
    assert!(
        listed.contains("tiny") && listed.contains("Tiny 1"),
        "{listed}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(images.join("tiny/image.json")).unwrap())
            .unwrap();
    assert_eq!(info["kind"], "cloud");
    let model = d.join("tdf.mx");
    std::fs::write(
        &model,
        "net = topology('tdfc')\nnet.device('v', image == 'tiny', tdf == 4)\nexperiment(net)\n",
    )
    .unwrap();
    let o = mxc(&env, &images, &["up", model.to_str().unwrap(), "--dry-run"]);
    assert!(
        text(&o.stderr).contains("boots its own kernel") && text(&o.stderr).contains("tdf"),
        "{}",
        text(&o.stderr)
    );
    // For real: refused before the machine is touched, so the allocation
    // the realizer made goes back.
    let o = mxc(&env, &images, &["up", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("boots its own kernel"),
        "{}",
        text(&o.stderr)
    );
    assert!(!env.dir.join("run/tdfc").exists());
    let alloc = ok(&mxc(&env, &images, &["alloc", "show"]));
    assert!(!alloc.contains("tdfc"), "{alloc}");
    ok(&mxc(&env, &images, &["image", "remove", "tiny"]));
    assert!(!images.join("tiny").exists());
    let o = mxc(&env, &images, &["image", "remove", "tiny"]);
    fails_with(&o, "is not installed");
    let _ = std::fs::remove_dir_all(&env.dir);
}

/// The test cloud image (images/build-cloud-test.sh), built once into the
/// target directory.
fn cloud_image() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mx-test-cloud.qcow2");
    if path.exists() {
        return path;
    }
    eprintln!("building the test cloud image (once, a few minutes)");
    let o = Command::new("bash")
        .arg(root().join("images/build-cloud-test.sh"))
        .arg(&path)
        .output()
        .expect("run build-cloud-test.sh");
    ok(&o);
    path
}

fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    ok(&o).split_whitespace().next().unwrap_or_default().into()
}

#[test]
fn an_imported_cloud_image_is_an_experiment_node() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_run() {
        return;
    }
    let file = cloud_image();
    let env = Env::new("cloud");
    // A private image directory holding the busybox guest of the
    // machine's and the imported image.
    let images = private_dir("mx-e2e-cloud-images-");
    // Removed however the test ends (a failed assertion left the imported
    // image's copy in /tmp).
    let _images_gone = RemoveOnDrop(images.clone());
    let system = std::env::var_os("MX_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/lib/mx/images".into());
    let busybox = system.join("mx-busybox");
    if !busybox.join("vmlinuz").exists() {
        ok(&Command::new(env!("CARGO_BIN_EXE_mxc"))
            .args(["image", "--build"])
            .env("MX_IMAGE_DIR", &system)
            .output()
            .unwrap());
    }
    std::os::unix::fs::symlink(&busybox, images.join("mx-busybox")).unwrap();
    ok(&mxc(
        &env,
        &images,
        &[
            "image",
            "import",
            "testcloud",
            file.to_str().unwrap(),
            "--os",
            "Debian 12 (cloud-init)",
        ],
    ));
    let base = images.join("testcloud/base.qcow2");
    let before = sha256(&base);

    let model = env.dir.join("cloudy.py");
    std::fs::write(
        &model,
        "from mergexp import *\n\
         net = Network('cloudy', addressing == ipv4, routing == static)\n\
         c = net.node('c1', image == 'testcloud', memory.capacity >= mb(768))\n\
         a = net.node('a1', memory.capacity >= mb(256))\n\
         r = net.node('r', memory.capacity >= mb(256))\n\
         net.connect([c, r])\n\
         net.connect([r, a])\n\
         experiment(net)\n",
    )
    .unwrap();
    ok(&mxc(&env, &images, &["up", model.to_str().unwrap()]));
    let vm = env.dir.join("run/cloudy/vm/c1");
    assert!(vm.join("disk.qcow2").exists() && vm.join("seed.img").exists());

    // cloud-init found mx's seed, and is done.
    let status = mxc(
        &env,
        &images,
        &[
            "exec",
            "cloudy",
            "c1",
            "--",
            "cloud-init",
            "status",
            "--wait",
        ],
    );
    assert!(ok(&status).contains("done"), "{}", text(&status.stdout));
    let result = ok(&mxc(
        &env,
        &images,
        &[
            "exec",
            "cloudy",
            "c1",
            "--",
            "cat",
            "/run/cloud-init/result.json",
        ],
    ));
    assert!(result.contains("NoCloud"), "{result}");

    // The experiment's network, by name and through the router, both ways.
    let ping = mxc(
        &env,
        &images,
        &["exec", "cloudy", "c1", "--", "sh", "-c", &probe("a1")],
    );
    assert!(ok(&ping).contains("1 received"), "{}", text(&ping.stdout));
    let ping = mxc(
        &env,
        &images,
        &["exec", "cloudy", "a1", "--", "sh", "-c", &probe("c1")],
    );
    assert!(
        ok(&ping).contains("1 packets received"),
        "{}",
        text(&ping.stdout)
    );
    assert_eq!(
        ok(&mxc(
            &env,
            &images,
            &["exec", "cloudy", "c1", "--", "hostname"]
        ))
        .trim(),
        "c1"
    );

    // exec: status and streams; words as they are; root's home.
    let st = mxc(
        &env,
        &images,
        &[
            "exec",
            "cloudy",
            "c1",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    );
    assert_eq!(st.status.code(), Some(7));
    assert_eq!(text(&st.stdout), "out\n");
    assert_eq!(text(&st.stderr), "err\n");
    let words = mxc(
        &env,
        &images,
        &[
            "exec", "cloudy", "c1", "--", "printf", "%s|", "a b", "it's", "\"q\"",
        ],
    );
    assert_eq!(ok(&words), "a b|it's|\"q\"|");
    assert_eq!(
        ok(&mxc(&env, &images, &["exec", "cloudy", "c1", "--", "pwd"])).trim(),
        "/root"
    );

    // cp, out and back.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 256) as u8).collect();
    let local = env.dir.join("data.bin");
    std::fs::write(&local, &data).unwrap();
    ok(&mxc(
        &env,
        &images,
        &["cp", "cloudy", local.to_str().unwrap(), "c1:/root/"],
    ));
    let back = env.dir.join("back.bin");
    ok(&mxc(
        &env,
        &images,
        &["cp", "cloudy", "c1:/root/data.bin", back.to_str().unwrap()],
    ));
    assert!(std::fs::read(&back).unwrap() == data, "the copy differs");

    // ssh with the experiment's key, over the management path.
    let ssh = mxc(&env, &images, &["ssh", "cloudy", "c1", "--", "id", "-un"]);
    assert_eq!(ok(&ssh).trim(), "root");

    ok(&mxc(&env, &images, &["down", "cloudy"]));
    env.assert_clean("cloudy");
    assert!(!vm.exists(), "the overlay and seed are left");
    assert_eq!(sha256(&base), before, "the base image was written");
    let _ = std::fs::remove_dir_all(&images);
}

/// Removes a directory when dropped, so a failed test leaves nothing.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
