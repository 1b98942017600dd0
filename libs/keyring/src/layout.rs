//! kubelet's mounted-Secret directory layout.
//!
//! kubelet writes a Secret volume as `..<timestamp>/` holding the files, a `..data` symlink to
//! it, and one user-visible symlink per key (`keyring.json -> ..data/keyring.json`). An update
//! writes a new timestamped directory and renames a fresh `..data_tmp` link over `..data`, so
//! readers always see a complete, consistent set of files. [`write_atomic`] reproduces that.

use std::collections::BTreeMap;
use std::path::Path;

use crate::KeyringError;

/// The symlink kubelet swaps atomically.
pub const DATA_LINK: &str = "..data";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `files` into `dir` exactly as kubelet updates a Secret volume.
pub fn write_atomic(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), KeyringError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let stamp = chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S%.9f");
    let version = format!("..{stamp}.{}", std::process::id());
    let version_dir = dir.join(&version);
    std::fs::create_dir(&version_dir).map_err(io(&version_dir))?;
    for (name, bytes) in files {
        if name.contains('/') || name.starts_with("..") {
            return Err(KeyringError::Io {
                path: name.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad file name"),
            });
        }
        let path = version_dir.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    let previous = std::fs::read_link(dir.join(DATA_LINK)).ok();

    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp).map_err(io(&tmp))?;
    let data = dir.join(DATA_LINK);
    std::fs::rename(&tmp, &data).map_err(io(&data))?;

    for name in files.keys() {
        let visible = dir.join(name);
        if std::fs::symlink_metadata(&visible).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(name), &visible)
                .map_err(io(&visible))?;
        }
    }
    // Remove user-visible links for keys that are gone, then the old version directory.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !files.contains_key(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if let Some(old) = previous
        && old != Path::new(&version)
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_are_atomic_and_old_versions_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        files.insert("keyring.json".to_string(), b"one".to_vec());
        files.insert("extra".to_string(), b"x".to_vec());
        write_atomic(dir.path(), &files).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("keyring.json")).unwrap(),
            b"one"
        );
        assert!(
            std::fs::symlink_metadata(dir.path().join("keyring.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );

        files.remove("extra");
        files.insert("keyring.json".to_string(), b"two".to_vec());
        write_atomic(dir.path(), &files).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("keyring.json")).unwrap(),
            b"two"
        );
        assert!(!dir.path().join("extra").exists());
        let versions = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("..") && n != DATA_LINK
            })
            .count();
        assert_eq!(versions, 1, "old version directory must be removed");
    }
}
