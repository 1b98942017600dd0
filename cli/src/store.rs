//! Profiles and tokens on disk.
//!
//! Each profile is one JSON file, `<config dir>/profiles/<name>.json`, holding the servers it
//! talks to and, once logged in, the token pair. The directory is created 0700 and every file
//! is written 0600, atomically (temporary file + rename), so a crash never leaves half a token
//! file and no other user can read one. Token refreshes take an exclusive lock on
//! `<name>.lock`, so concurrent invocations never spend the same single-use refresh token twice.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The logged-in state of a profile.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The gateway that issued the tokens (they are never sent anywhere else).
    pub server: String,
    /// The login used (user name or email).
    pub login: String,
    /// The access token (a JWT).
    pub access_token: String,
    /// The refresh token (opaque, single use).
    pub refresh_token: String,
    /// When the access token expires, in seconds since the epoch.
    pub expires_at: i64,
}

/// One profile.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Profile {
    /// The gateway this profile uses when `--server` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The chat service this profile uses when `--chat-url` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_url: Option<String>,
    /// Tokens, when logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
}

/// The profiles under one configuration directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

fn io_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::Local(format!("{}: {e}", path.display()))
}

impl Store {
    /// The store in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Store { dir }
    }

    /// The default directory: `$XDG_CONFIG_HOME/authstack` (`~/.config/authstack` on Linux).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join("authstack"))
    }

    fn profiles_dir(&self) -> PathBuf {
        self.dir.join("profiles")
    }

    /// The file of profile `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.profiles_dir().join(format!("{name}.json"))
    }

    fn ensure_dir(&self) -> Result<PathBuf, CliError> {
        let dir = self.profiles_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_error(&dir, e))?;
        Ok(dir)
    }

    /// Reads profile `name` (empty when it does not exist yet).
    pub fn load(&self, name: &str) -> Result<Profile, CliError> {
        let path = self.path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| CliError::Local(format!("{} is not a profile: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profile::default()),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// Writes profile `name` atomically with mode 0600.
    pub fn save(&self, name: &str, profile: &Profile) -> Result<(), CliError> {
        let dir = self.ensure_dir()?;
        let path = self.path(name);
        let tmp = dir.join(format!(".{name}.json.{}", std::process::id()));
        let json = serde_json::to_vec_pretty(profile)
            .map_err(|e| CliError::Local(format!("encoding the profile: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // The mode above only applies to new files; make sure of it.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_error(&path, e)
        })
    }

    /// The names of every profile, sorted.
    pub fn names(&self) -> Result<Vec<String>, CliError> {
        let dir = self.profiles_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".json")?;
                (!stem.starts_with('.')).then(|| stem.to_owned())
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Takes the exclusive lock of profile `name` until the guard is dropped (blocks while
    /// another invocation holds it).
    pub fn lock(&self, name: &str) -> Result<File, CliError> {
        let dir = self.ensure_dir()?;
        let path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        file.lock().map_err(|e| io_error(&path, e))?;
        Ok(file)
    }
}

/// Whether `name` is usable as a profile name (it becomes a file name).
pub fn valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_written_0600_in_a_0700_directory_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("cfg"));
        assert_eq!(store.load("default").unwrap(), Profile::default());
        let profile = Profile {
            server: Some("http://a".into()),
            chat_url: None,
            session: Some(Session {
                server: "http://a".into(),
                login: "ann".into(),
                access_token: "at".into(),
                refresh_token: "rt".into(),
                expires_at: 1,
            }),
        };
        store.save("default", &profile).unwrap();
        assert_eq!(store.load("default").unwrap(), profile);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.path("default")), 0o600);
        assert_eq!(mode(&store.profiles_dir()), 0o700);
        assert_eq!(store.names().unwrap(), vec!["default".to_owned()]);
        let _guard = store.lock("default").unwrap();
    }

    #[test]
    fn profile_names_cannot_escape_the_directory() {
        for bad in ["", "../x", "a/b", ".hidden", "x y"] {
            assert!(!valid_profile_name(bad), "{bad}");
        }
        assert!(valid_profile_name("work-eu.1"));
    }
}
