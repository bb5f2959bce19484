//! The C2SP CCTV age test vectors (npm package `cctv-age@0.2.0`, fetched and unpacked by
//! `scripts/test.sh` into the folder named by `CLAW_CCTV_DIR`) run through claw's one decryption
//! path, `claw::vault::open_age`. The 19 post-quantum hybrid vectors are skipped: the age crate
//! does not implement ML-KEM. Every other vector must give its expected result.

use std::io::Read as _;
use std::path::PathBuf;
use std::str::FromStr as _;

use claw::vault::{AgeFailure, open_age};
use sha2::Digest as _;

struct Vector {
    name: String,
    expect: String,
    payload: Option<String>,
    identities: Vec<String>,
    passphrase: Option<String>,
    armored: bool,
    compressed: bool,
    body: Vec<u8>,
}

fn parse(name: &str, bytes: &[u8]) -> Vector {
    let split = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("header end");
    let header = std::str::from_utf8(&bytes[..split]).expect("utf-8 header");
    let mut v = Vector {
        name: name.to_owned(),
        expect: String::new(),
        payload: None,
        identities: Vec::new(),
        passphrase: None,
        armored: false,
        compressed: false,
        body: bytes[split + 2..].to_vec(),
    };
    for line in header.lines() {
        let (k, val) = line.split_once(": ").expect("key: value");
        match k {
            "expect" => v.expect = val.to_owned(),
            "payload" => v.payload = Some(val.to_owned()),
            "identity" => v.identities.push(val.to_owned()),
            "passphrase" => v.passphrase = Some(val.to_owned()),
            "armored" => v.armored = val == "yes",
            "compressed" => v.compressed = val == "zlib",
            _ => {}
        }
    }
    if v.compressed {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&v.body[..])
            .read_to_end(&mut out)
            .expect("zlib");
        v.body = out;
    }
    v
}

fn vectors_dir() -> Option<PathBuf> {
    match std::env::var_os("CLAW_CCTV_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None if std::env::var_os("CI").is_some() => {
            panic!("CLAW_CCTV_DIR is not set: scripts/test.sh fetches the vectors")
        }
        None => None,
    }
}

#[test]
fn every_cctv_vector_gives_its_expected_result() {
    let Some(dir) = vectors_dir() else {
        eprintln!("SKIPPED: the CCTV age vectors (run ./scripts/test.sh, which fetches them)");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("vectors dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 143, "cctv-age@0.2.0 has 143 vectors");
    let (mut checked, mut skipped) = (0, 0);
    let mut wrong = Vec::new();
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let v = parse(&name, &std::fs::read(f).expect("read"));
        if v.identities
            .iter()
            .any(|i| i.starts_with("AGE-SECRET-KEY-PQ-"))
        {
            skipped += 1;
            continue;
        }
        let x25519: Vec<age::x25519::Identity> = v
            .identities
            .iter()
            .map(|i| age::x25519::Identity::from_str(i).expect("identity"))
            .collect();
        // The bound claw opens passphrase files with (the age crate's own default depends on
        // how fast this machine is, which would make `scrypt_work_factor_23` pass or fail by host).
        let scrypt = v.passphrase.as_ref().map(|p| {
            let mut id = age::scrypt::Identity::new(age::secrecy::SecretString::from(p.clone()));
            id.set_max_work_factor(claw::vault::passphrase::SCRYPT_MAX_LOG_N);
            id
        });
        let mut ids: Vec<&dyn age::Identity> =
            x25519.iter().map(|i| i as &dyn age::Identity).collect();
        if let Some(s) = &scrypt {
            ids.push(s);
        }
        let got = open_age(&v.body, &ids);
        let ok = match (v.expect.as_str(), &got) {
            ("success", Ok(plain)) => {
                let sum = hex::encode(sha2::Sha256::digest(&plain[..]));
                v.payload.as_deref() == Some(sum.as_str())
            }
            ("no match", Err(AgeFailure::NoMatch)) => true,
            ("HMAC failure", Err(AgeFailure::Mac)) => true,
            ("header failure", Err(AgeFailure::Header(_))) => true,
            ("armor failure", Err(AgeFailure::Header(_))) => v.armored,
            ("payload failure", Err(AgeFailure::Payload(_))) => true,
            _ => false,
        };
        checked += 1;
        if !ok {
            wrong.push(format!(
                "{}: expected {}, got {:?}",
                v.name,
                v.expect,
                got.as_ref().map(|p| p.len())
            ));
        }
    }
    eprintln!("CCTV: {checked} vectors checked, {skipped} post-quantum hybrid vectors skipped");
    assert_eq!(skipped, 19);
    assert_eq!(checked, 124);
    assert!(
        wrong.is_empty(),
        "{} vectors wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
