//! `<data>/acme/`: the ACME account and the last certificate with its key, owner-only
//! (directory 0700, files 0600), written whole (temporary file, then rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::TlsError;

const ACCOUNT: &str = "account.json";
const CHAIN: &str = "certificate.pem";
const KEY: &str = "certificate.key";

/// The ACME cache directory.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Creates `<data>/acme/` (0700) when missing.
    pub fn open(data_dir: &Path) -> Result<Self, TlsError> {
        let dir = data_dir.join("acme");
        let fail = |source| TlsError::Write { path: dir.clone(), source };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        restrict(&dir, 0o700).map_err(fail)?;
        Ok(Self { dir })
    }

    /// The stored account (JSON credentials), if any.
    pub fn account(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(ACCOUNT)).ok()
    }

    /// Forgets the stored account (the CA no longer knows it); the next order makes a new one.
    pub fn forget_account(&self) {
        let _ = std::fs::remove_file(self.dir.join(ACCOUNT));
    }

    pub fn save_account(&self, json: &[u8]) -> Result<(), TlsError> {
        self.write(ACCOUNT, json)
    }

    /// The stored certificate chain and key (PEM), if both are there.
    pub fn certificate(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((std::fs::read(self.dir.join(CHAIN)).ok()?, std::fs::read(self.dir.join(KEY)).ok()?))
    }

    /// Stores a chain and its key (the key first: a chain is never there without it).
    pub fn save_certificate(&self, chain: &[u8], key: &[u8]) -> Result<(), TlsError> {
        self.write(KEY, key)?;
        self.write(CHAIN, chain)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TlsError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let fail = |source| TlsError::Write { path: path.clone(), source };
        let mut file = owner_only_file(&tmp).map_err(fail)?;
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)
    }
}

fn owner_only_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    restrict(path, 0o600)?;
    Ok(file)
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
