//! The CA's files: read whole or named as missing, key and PIN files
//! refused when others may read them, written so a crash leaves none torn.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{CaError, io_err};

/// A private key file that others can read, or anyone but its owner can
/// write, is refused: the signer does not start rather than go on with a
/// key others may have read. Read by the owner's group is allowed with a
/// warning: a Kubernetes Secret is mounted root-owned and group-readable
/// (`defaultMode: 0440`, `fsGroup`), the only way a non-root signer reads it.
pub(super) fn require_owner_only(path: &Path) -> Result<(), CaError> {
    let mode = fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o037 != 0 {
        return Err(CaError::LooseKey {
            path: path.to_path_buf(),
            mode,
        });
    }
    if mode & 0o040 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "a CA key or PIN file is readable by its group: right for a Kubernetes Secret mount, otherwise chmod 600 it"
        );
    }
    Ok(())
}

pub(super) fn read_required(path: &Path) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => CaError::Incomplete(path.to_path_buf()),
        _ => CaError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Writes `contents` to `dir/name` via a temp file + rename, so a crash never
/// leaves a truncated key or certificate behind.
pub(super) fn write_atomic(
    dir: &Path,
    name: &str,
    contents: &[u8],
    mode: u32,
) -> Result<(), CaError> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    // The umask may have narrowed the creation mode; make it exact.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all())
        .map_err(io_err(&tmp))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// Makes the renames in `dir` themselves durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), CaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
