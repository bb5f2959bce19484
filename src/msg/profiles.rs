//! `profiles.yaml`: the seed's map from a profile name to a list of `{channel, target}`, read
//! with every problem reported at its position (nothing half-loaded, nothing silently skipped).

use std::path::{Path, PathBuf};

use crate::config::paths::Dirs;
use crate::diagnostic::{FileErrors, did_you_mean};
use crate::yaml::{self, Reader, Value};

pub const FILE_NAME: &str = "profiles.yaml";
const MAX_BYTES: u64 = 1024 * 1024;

/// One recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    pub channel: String,
    pub target: String,
}

/// A named list of recipients.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    pub name: String,
    pub targets: Vec<Target>,
}

/// The profiles and the file they came from (none when there is no file).
#[derive(Debug, Default)]
pub struct Profiles {
    pub path: Option<PathBuf>,
    pub profiles: Vec<Profile>,
}

impl Profiles {
    /// The profile `name`, or the seed's "Profile not found" with a suggestion.
    pub fn get(&self, name: &str) -> Result<&Profile, String> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                let mut m = format!("profile not found: {name}");
                if let Some(h) = did_you_mean(name, self.profiles.iter().map(|p| p.name.as_str())) {
                    m.push_str(&format!(" ({h})"));
                }
                if self.path.is_none() {
                    m.push_str(" (there is no profiles.yaml)");
                }
                m
            })
    }
}

/// Where `profiles.yaml` is: the config root's, else the data directory's.
pub fn path(dirs: &Dirs) -> Option<PathBuf> {
    [dirs.root.join(FILE_NAME), dirs.home.join(FILE_NAME)]
        .into_iter()
        .find(|p| p.exists())
}

pub fn load(dirs: &Dirs) -> Result<Profiles, FileErrors> {
    match path(dirs) {
        None => Ok(Profiles::default()),
        Some(p) => load_file(&p),
    }
}

pub fn load_file(path: &Path) -> Result<Profiles, FileErrors> {
    let src = yaml::read_file(path, MAX_BYTES, "profiles file")?;
    let mut r = Reader::new();
    let mut profiles = Vec::new();
    if !matches!(src.root.value, Value::Null) {
        for (name, list) in r.entries(&src.root, &[], "profiles.yaml") {
            let Value::Seq(items) = &list.value else {
                r.err(
                    list.pos,
                    format!(
                        "profile `{name}` must be a list of {{channel, target}}, found {}",
                        list.kind()
                    ),
                );
                continue;
            };
            let mut targets = Vec::new();
            for item in items {
                let mut channel = None;
                let mut target = None;
                for (k, v) in r.entries(item, &["channel", "target"], "a profile entry") {
                    match k {
                        "channel" => {
                            if let Some(c) = r.string(v, "channel") {
                                if super::CHANNELS.contains(&c.as_str()) {
                                    channel = Some(c);
                                } else {
                                    r.err_help(
                                        v.pos,
                                        format!("unknown channel `{c}`"),
                                        did_you_mean(&c, super::CHANNELS.iter().copied()),
                                    );
                                }
                            }
                        }
                        _ => target = r.string(v, "target"),
                    }
                }
                if matches!(item.value, Value::Map(_)) {
                    if item.get("channel").is_none() {
                        r.err(item.pos, "a profile entry needs `channel`");
                    }
                    if item.get("target").is_none() {
                        r.err(item.pos, "a profile entry needs `target`");
                    }
                }
                if let (Some(channel), Some(target)) = (channel, target) {
                    targets.push(Target { channel, target });
                }
            }
            profiles.push(Profile {
                name: name.to_owned(),
                targets,
            });
        }
    }
    r.finish(path, src.text)?;
    Ok(Profiles {
        path: Some(path.to_path_buf()),
        profiles,
    })
}
