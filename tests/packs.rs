//! Packs: the seed's `packs/core` (written here in the seed's layout) validates, installs from a
//! directory and from a git URL, lists, updates and uninstalls; a broken pack installs nothing;
//! a downgrade and an edited file need --force; kill -9 in the middle of an install leaves the
//! previous state.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;

const SKILLS: &[&str] = &[
    "heartbeat",
    "docker-monitor",
    "backup-status",
    "ssl-cert-check",
    "network-scan",
];

/// The seed's `packs/core` at `version`, in its layout (its skills have no run.sh, as in the seed).
fn core_pack(dir: &Path, version: &str) -> PathBuf {
    let p = dir.to_path_buf();
    std::fs::create_dir_all(p.join("workflows")).unwrap();
    std::fs::write(
        p.join("pack.yaml"),
        format!(
            "name: core\nversion: \"{version}\"\ndescription: \"Core automation pack\"\nauthor: SmartMur\nskills:\n{}workflows:\n  - deploy\n  - health-check\n",
            SKILLS.iter().map(|s| format!("  - {s}\n")).collect::<String>()
        ),
    )
    .unwrap();
    for s in SKILLS {
        let d = p.join("skills").join(s);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("skill.yaml"),
            format!("name: {s}\nversion: \"{version}\"\ndescription: \"{s} skill\"\nauthor: DreDay\nslash_command: true\nscript: run.sh\ntriggers: []\ndependencies: []\npermissions: [ssh]\n"),
        )
        .unwrap();
    }
    std::fs::write(
        p.join("workflows/deploy.yaml"),
        "name: deploy\ndescription: \"Pull, test, deploy\"\nnotify_profile: \"\"\nsteps:\n  - name: git-pull\n    type: shell\n    command: \"git pull origin main\"\n    on_failure: abort\n  - name: docker-deploy\n    type: shell\n    command: \"docker compose up -d --build\"\n    on_failure: rollback\nrollback:\n  - name: rollback-deploy\n    type: shell\n    command: \"docker compose down\"\n",
    )
    .unwrap();
    std::fs::write(
        p.join("workflows/health-check.yaml"),
        "name: health-check\ndescription: checks\nsteps:\n  - name: ping\n    type: shell\n    command: \"echo ok\"\n",
    )
    .unwrap();
    p
}

fn installed_version(env: &Env) -> Option<String> {
    let list = env.claw(&["pack", "list", "--json"]);
    list.expect_code(0);
    list.json()
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pack"]["name"] == "core")
        .map(|p| p["pack"]["version"].as_str().unwrap().to_owned())
}

#[test]
fn the_seeds_core_pack_validates_installs_updates_and_uninstalls() {
    let env = Env::new();
    let src = core_pack(&env.path("src/core"), "1.0.0");
    let v = env.claw(&["pack", "validate", src.to_str().unwrap()]);
    v.expect_code(0);
    assert!(
        v.stdout
            .contains("pack `core` 1.0.0 is valid: 5 skills, 2 workflows"),
        "{}",
        v.stdout
    );
    assert!(
        v.stderr.contains("warning: skill `heartbeat`"),
        "{}",
        v.stderr
    );

    env.claw(&["pack", "install", src.to_str().unwrap()])
        .expect_code(0);
    assert!(env.root.join("skills/heartbeat/skill.yaml").is_file());
    assert!(env.root.join("workflows/deploy.yaml").is_file());
    assert_eq!(installed_version(&env).as_deref(), Some("1.0.0"));
    env.claw(&["workflow", "validate", "deploy"]).expect_code(0);
    let listed = env.claw(&["pack", "list"]);
    assert!(
        listed.stdout.contains("core") && listed.stdout.contains("1.0.0"),
        "{}",
        listed.stdout
    );

    // A downgrade needs --force; an upgrade through update does not.
    let old = core_pack(&env.path("src/old"), "0.9.0");
    let down = env.claw(&["pack", "install", old.to_str().unwrap()]);
    down.expect_code(1);
    assert!(
        down.stderr.contains("a downgrade needs --force"),
        "{}",
        down.stderr
    );
    assert_eq!(installed_version(&env).as_deref(), Some("1.0.0"));
    let new = core_pack(&env.path("src/new"), "1.1.0");
    env.claw(&["pack", "update", new.to_str().unwrap()])
        .expect_code(0);
    assert_eq!(installed_version(&env).as_deref(), Some("1.1.0"));

    // An edited file is not removed without --force.
    std::fs::write(
        env.root.join("workflows/deploy.yaml"),
        "name: deploy\nsteps:\n  - name: mine\n    command: echo mine\n",
    )
    .unwrap();
    let un = env.claw(&["pack", "uninstall", "core"]);
    un.expect_code(1);
    assert!(un.stderr.contains("workflows/deploy.yaml"), "{}", un.stderr);
    assert!(
        env.root.join("skills/heartbeat/skill.yaml").is_file(),
        "nothing removed"
    );
    env.claw(&["pack", "uninstall", "core", "--force"])
        .expect_code(0);
    assert!(!env.root.join("skills/heartbeat").exists());
    assert!(!env.root.join("workflows/deploy.yaml").exists());
    assert_eq!(installed_version(&env), None);
    let audit = read(&env.home.join("audit.log"));
    assert!(
        audit.contains("pack.install") && audit.contains("pack.uninstall"),
        "{audit}"
    );
}

#[test]
fn a_broken_pack_or_a_file_it_does_not_own_installs_nothing() {
    let env = Env::new();
    let src = core_pack(&env.path("src/core"), "1.0.0");
    std::fs::write(
        src.join("workflows/health-check.yaml"),
        "name: health-check\nsteps:\n  - name: x\n    tpye: shell\n    command: echo\n",
    )
    .unwrap();
    let r = env.claw(&["pack", "install", src.to_str().unwrap()]);
    r.expect_code(2);
    assert!(r.stderr.contains("health-check.yaml:4:5"), "{}", r.stderr);
    assert!(!env.root.join("skills").exists() && !env.root.join("workflows/deploy.yaml").exists());

    let src = core_pack(&env.path("src/core2"), "1.0.0");
    std::fs::write(
        env.root.join("workflows/deploy.yaml"),
        "name: deploy\nsteps:\n  - name: mine\n    command: echo mine\n",
    )
    .unwrap();
    let r = env.claw(&["pack", "install", src.to_str().unwrap()]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("not installed by this pack"),
        "{}",
        r.stderr
    );
    assert!(!env.root.join("skills/heartbeat").exists());
    assert!(read(&env.root.join("workflows/deploy.yaml")).contains("mine"));
}

#[test]
fn a_pack_installs_from_a_git_url() {
    let env = Env::new();
    let src = core_pack(&env.path("repo"), "1.0.0");
    for args in [
        &["init", "-q"][..],
        &["add", "."],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "pack",
        ],
    ] {
        assert!(
            std::process::Command::new("git")
                .args(args)
                .current_dir(&src)
                .status()
                .unwrap()
                .success()
        );
    }
    let url = format!("file://{}", src.display());
    env.claw(&["pack", "install", &url]).expect_code(0);
    assert!(env.root.join("skills/network-scan/skill.yaml").is_file());
}

#[test]
fn kill_9_in_the_middle_of_an_install_leaves_the_previous_state() {
    let env = Env::new();
    let v1 = core_pack(&env.path("src/v1"), "1.0.0");
    env.claw(&["pack", "install", v1.to_str().unwrap()])
        .expect_code(0);
    let before = read(&env.root.join("skills/heartbeat/skill.yaml"));
    let v2 = core_pack(&env.path("src/v2"), "2.0.0");
    let mut child = env
        .command(&["pack", "update", v2.to_str().unwrap()])
        .env("CLAW_PACK_TEST_PAUSE_MS", "30000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let half = wait_for(Duration::from_secs(60), || {
        let now = std::fs::read_to_string(env.root.join("skills/heartbeat/skill.yaml")).ok()?;
        (now.contains("2.0.0") && env.home.join("packs/core.journal").exists()).then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(half.is_some(), "the install never got half way");
    // The next pack command puts the previous state back first.
    assert_eq!(installed_version(&env).as_deref(), Some("1.0.0"));
    assert_eq!(read(&env.root.join("skills/heartbeat/skill.yaml")), before);
    assert!(read(&env.root.join("skills/network-scan/skill.yaml")).contains("1.0.0"));
    assert!(!env.home.join("packs/core.journal").exists());
    assert!(!env.root.join(".claw-pack-core").exists());
}
