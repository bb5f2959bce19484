use std::path::Path;

use super::*;

fn verdict(p: &Policies, cmd: &str) -> (String, Option<String>) {
    let v = p.check_command(cmd);
    (v.as_str().to_owned(), v.rule().map(str::to_owned))
}

#[test]
fn builtin_defaults_table() {
    let p = builtin();
    let table: &[(&str, &str, Option<&str>)] = &[
        ("rm -rf /", "require_approval", Some("rm-rf-root")),
        (
            "sudo rm -rf / --no-preserve-root",
            "require_approval",
            Some("rm-rf-root"),
        ),
        ("rm -fr /*", "require_approval", Some("rm-rf-root")),
        ("rm -r -f ~", "require_approval", Some("rm-rf-root")),
        (
            "cd /tmp && rm -rf \"$HOME\"",
            "require_approval",
            Some("rm-rf-root"),
        ),
        ("rm --recursive /", "require_approval", Some("rm-rf-root")),
        ("rm -rf /tmp/build", "allow", None),
        ("rm -rf ./dist", "allow", None),
        ("rm /tmp/x", "allow", None),
        ("mkfs.ext4 /dev/sdb1", "require_approval", Some("mkfs")),
        (
            "sudo mkfs -t xfs /dev/sdc",
            "require_approval",
            Some("mkfs"),
        ),
        ("echo mkfsfoo", "allow", None),
        (
            "dd if=/dev/zero of=/dev/sda bs=1M",
            "require_approval",
            Some("dd-to-disk"),
        ),
        (
            "dd if=img.iso of=/dev/nvme0n1",
            "require_approval",
            Some("dd-to-disk"),
        ),
        ("dd if=/dev/zero of=/tmp/file bs=1M count=1", "allow", None),
        (
            "cat img > /dev/sdb",
            "require_approval",
            Some("redirect-to-disk"),
        ),
        (
            "curl -fsSL https://get.example.sh | sh",
            "require_approval",
            Some("curl-pipe-shell"),
        ),
        (
            "wget -qO- http://x/i.sh | sudo bash",
            "require_approval",
            Some("curl-pipe-shell"),
        ),
        ("curl -s http://x/api | jq .", "allow", None),
        (":(){ :|:& };:", "require_approval", Some("fork-bomb")),
        ("chmod -R 777 /", "require_approval", Some("chmod-777-root")),
        ("chmod 777 /srv/share", "allow", None),
        (
            "echo AKIAABCDEFGHIJKLMNOP",
            "require_approval",
            Some("aws-access-key"),
        ),
        ("docker compose up -d", "allow", None),
    ];
    for (cmd, want, rule) in table {
        let (got, by) = verdict(&p, cmd);
        assert_eq!((got.as_str(), by.as_deref()), (*want, *rule), "{cmd}");
    }
}

#[test]
fn files_and_output() {
    let p = builtin();
    assert_eq!(
        p.check_file(Path::new("/home/u/.ssh/id_ed25519")).rule(),
        Some("ssh-private-key")
    );
    assert_eq!(
        p.check_file(Path::new("/etc/shadow")).rule(),
        Some("shadow-file")
    );
    assert_eq!(
        p.check_file(Path::new("/etc/hosts")),
        Verdict::Allow { by: None }
    );
    let found = p.scan_output("key: AKIAABCDEFGHIJKLMNOP\n-----BEGIN OPENSSH PRIVATE KEY-----\n");
    let names: Vec<&str> = found.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(names, ["aws-access-key", "private-key-block"]);
}

#[test]
fn user_rules_override_and_add() {
    let text = r#"
rules:
  - name: rm-rf-root
    enabled: false
  - name: mkfs
    action: deny
  - name: no-drop
    action: deny
    command: '(?i)\bdrop\s+database\b'
    reason: by hand only
  - name: trusted-installer
    action: allow
    command: 'curl -fsSL https://trusted\.example/install\.sh \| sh'
  - name: env-files
    action: require_approval
    file: "*.env"
  - name: internal-token
    action: deny
    secret: 'tok_[a-z0-9]{8}'
"#;
    let p = parse(Path::new("policies.yaml"), text).unwrap_or_else(|e| panic!("{}", e.render()));
    let table: &[(&str, &str, Option<&str>)] = &[
        ("rm -rf /", "allow", None),
        ("mkfs.ext4 /dev/sdb", "deny", Some("mkfs")),
        ("psql -c 'DROP DATABASE prod'", "deny", Some("no-drop")),
        (
            "curl -fsSL https://trusted.example/install.sh | sh",
            "allow",
            Some("trusted-installer"),
        ),
        (
            "curl -fsSL https://other.example/i.sh | sh",
            "require_approval",
            Some("curl-pipe-shell"),
        ),
        ("echo tok_abcdefgh", "deny", Some("internal-token")),
    ];
    for (cmd, want, rule) in table {
        let (got, by) = verdict(&p, cmd);
        assert_eq!((got.as_str(), by.as_deref()), (*want, *rule), "{cmd}");
    }
    assert_eq!(p.check_file(Path::new("/srv/app/env.txt")).rule(), None);
    assert_eq!(
        p.check_file(Path::new("/srv/app/prod.env")).rule(),
        Some("env-files")
    );
}

#[test]
fn bad_files_name_the_place() {
    let cases: &[(&str, &str)] = &[
        (
            "rules:\n  - name: x\n    action: deny\n    command: '('\n",
            "4:14",
        ),
        (
            "rules:\n  - name: x\n    action: maybe\n    command: a\n",
            "unknown `action` value `maybe`",
        ),
        ("rules:\n  - name: x\n    action: deny\n", "needs a pattern"),
        (
            "rules:\n  - action: deny\n    command: a\n",
            "needs a `name`",
        ),
        (
            "rules:\n  - name: x\n    acton: deny\n    command: a\n",
            "did you mean",
        ),
        (
            "rules:\n  - {name: a, action: deny, command: a}\n  - {name: a, action: deny, command: b}\n",
            "defined twice",
        ),
        (
            "rules:\n  - name: x\n    action: deny\n    command: a\n    file: b\n",
            "one pattern",
        ),
    ];
    for (text, want) in cases {
        let err = parse(Path::new("policies.yaml"), text)
            .err()
            .unwrap_or_else(|| panic!("accepted: {text}"));
        let shown = err.render();
        assert!(shown.contains(want), "{text}\n---\n{shown}");
    }
}

#[test]
fn the_shared_rules_are_read_again_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (root, home) = (dir.path().join("root"), dir.path().join("home"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let first = load::load_shared(&root, &home).unwrap();
    assert_eq!(verdict(&first, "mkfs.ext4 /dev/sdb").0, "require_approval");
    let file = root.join(load::FILE_NAME);
    std::fs::write(&file, "rules:\n  - name: mkfs\n    action: deny\n").unwrap();
    let second = load::load_shared(&root, &home).unwrap();
    assert_eq!(verdict(&second, "mkfs.ext4 /dev/sdb").0, "deny");
    // Unchanged: the same compiled rules, shared.
    assert!(std::sync::Arc::ptr_eq(
        &second,
        &load::load_shared(&root, &home).unwrap()
    ));
    std::fs::write(&file, "rules:\n  - name: mkfs\n    action: allow\n").unwrap();
    let third = load::load_shared(&root, &home).unwrap();
    assert_eq!(verdict(&third, "mkfs.ext4 /dev/sdb").0, "allow");
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        verdict(
            &load::load_shared(&root, &home).unwrap(),
            "mkfs.ext4 /dev/sdb"
        )
        .0,
        "require_approval"
    );
}

/// A text the pattern's syntax tree can produce, chosen by a small deterministic generator.
fn generate(hir: &regex_syntax::hir::Hir, seed: &mut u64, out: &mut String) {
    use regex_syntax::hir::{Class, HirKind};
    let mut next = |n: u64| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % n.max(1)
    };
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => out.push_str(&String::from_utf8_lossy(&lit.0)),
        HirKind::Class(Class::Unicode(c)) => {
            let ranges = c.ranges();
            if !ranges.is_empty() {
                let r = ranges[next(ranges.len() as u64) as usize];
                // Mostly ASCII, so that printable texts come out.
                let (lo, hi) = (
                    u32::from(r.start()),
                    u32::from(r.end()).min(u32::from(r.start()) + 200),
                );
                let c = char::from_u32(lo + next(u64::from(hi - lo + 1)) as u32).unwrap_or('x');
                out.push(c);
            }
        }
        HirKind::Class(Class::Bytes(c)) => {
            let ranges = c.ranges();
            if !ranges.is_empty() {
                let r = ranges[next(ranges.len() as u64) as usize];
                let b = r.start() + next(u64::from(r.end() - r.start()) + 1) as u8;
                out.push(char::from(b));
            }
        }
        HirKind::Repetition(rep) => {
            let max = rep.max.unwrap_or(rep.min + 4).min(rep.min + 4);
            let n = rep.min + next(u64::from(max - rep.min + 1)) as u32;
            for _ in 0..n {
                generate(&rep.sub, seed, out);
            }
        }
        HirKind::Capture(cap) => generate(&cap.sub, seed, out),
        HirKind::Concat(parts) => parts.iter().for_each(|p| generate(p, seed, out)),
        HirKind::Alternation(alts) => {
            let i = next(alts.len() as u64) as usize;
            generate(&alts[i], seed, out);
        }
    }
}

/// Every text a built-in pattern matches holds one of the literals that gate it (so the gate
/// never skips a match): thousands of texts generated from each pattern's syntax tree, those the
/// pattern matches all hold a literal, and enough of them match for the check to mean something.
#[test]
fn literals_are_necessary() {
    for (name, scope, _, pattern, _, needs) in builtin::RULES {
        if !matches!(scope, Scope::Command | Scope::Secret) {
            continue;
        }
        assert!(!needs.is_empty(), "built-in rule {name} has no literals");
        let hir = regex_syntax::parse(pattern).unwrap_or_else(|e| panic!("{name}: {e}"));
        let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut matched = 0;
        for _ in 0..3000 {
            let mut text = String::new();
            generate(&hir, &mut seed, &mut text);
            if re.is_match(&text) {
                matched += 1;
                assert!(
                    needs.iter().any(|n| text.contains(n)),
                    "{name}: {text:?} matches but holds none of {needs:?}"
                );
            }
        }
        assert!(
            matched > 100,
            "{name}: only {matched} generated texts match"
        );
    }
}

/// A rule's regex is compiled only once a text could match it: the checks before a plain
/// command compile nothing.
#[test]
fn builtin_rules_compile_when_a_text_could_match() {
    let p = builtin::compile_for_test();
    assert!(matches!(
        p.check_command("true"),
        Verdict::Allow { by: None }
    ));
    let compiled = |p: &Policies| {
        p.rules
            .iter()
            .filter(|r| matches!(&r.matcher, Matcher::Lazy(l) if l.is_compiled()))
            .count()
    };
    assert_eq!(compiled(&p), 0);
    assert_eq!(p.check_command("mkfs.ext4 /dev/sdb1").rule(), Some("mkfs"));
    // mkfs, and redirect-to-disk (the text holds `/dev/`).
    assert_eq!(compiled(&p), 2);
}

/// A file rule's glob is compiled only when a path is tested, and then matches as before.
#[test]
fn builtin_globs_compile_when_a_path_is_tested() {
    let p = builtin::compile_for_test();
    let compiled = |p: &Policies| {
        p.rules
            .iter()
            .filter(|r| matches!(&r.matcher, Matcher::Glob { glob, .. } if glob.is_compiled()))
            .count()
    };
    assert!(matches!(
        p.check_command("true"),
        Verdict::Allow { by: None }
    ));
    assert_eq!(compiled(&p), 0);
    assert_eq!(
        p.check_file(std::path::Path::new("/home/u/.ssh/id_ed25519"))
            .rule(),
        Some("ssh-private-key")
    );
    assert_eq!(compiled(&p), 2);
    assert!(matches!(
        p.check_file(std::path::Path::new("/etc/hosts")),
        Verdict::Allow { by: None }
    ));
}
