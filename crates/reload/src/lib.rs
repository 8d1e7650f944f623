//! Files that may change under a running service (webhook secrets, control tokens, the GitHub
//! App key, the control API's certificate): rotated without a restart.
//!
//! A [`Reloading`] value is read from its files once, at start, where an unusable file is an
//! error. Afterwards [`Reloading::get`] compares each file's (modification time, size) with what
//! it last read, a `stat` per call and no reading while nothing changed, and loads again when one
//! changed. A new version that does not load (a half-written pair, a typo) is logged and the last
//! good value kept, so a bad edit never takes a running service down or opens it up.
//!
//! One implementation for every such file: written once and tested here instead of in three
//! places.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// What a file looked like when read: (modification time, size); `None` when it was absent.
type Stamp = Option<(Option<SystemTime>, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

type Loader<T, E> = dyn Fn(&[PathBuf]) -> Result<T, E> + Send + Sync;

/// A value loaded from files, loaded again when they change (see the module docs).
pub struct Reloading<T, E> {
    paths: Vec<PathBuf>,
    /// What it is, for logs ("webhook secrets", "control API certificate").
    what: &'static str,
    load: Box<Loader<T, E>>,
    state: RwLock<(Vec<Stamp>, Arc<T>)>,
}

impl<T, E> std::fmt::Debug for Reloading<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value: it is usually a secret.
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish()
    }
}

impl<T, E: std::fmt::Display> Reloading<T, E> {
    /// Loads the value from `paths` now; the error is `load`'s.
    pub fn open(
        paths: Vec<PathBuf>,
        what: &'static str,
        load: impl Fn(&[PathBuf]) -> Result<T, E> + Send + Sync + 'static,
    ) -> Result<Self, E> {
        let stamps = paths.iter().map(|p| stamp(p)).collect();
        let value = load(&paths)?;
        Ok(Reloading {
            paths,
            what,
            load: Box::new(load),
            state: RwLock::new((stamps, Arc::new(value))),
        })
    }

    /// The files it is read from.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The current value: loaded again first when a file changed since the last read.
    pub fn get(&self) -> Arc<T> {
        let now: Vec<Stamp> = self.paths.iter().map(|p| stamp(p)).collect();
        let (then, value) = match self.state.read() {
            Ok(s) => (s.0.clone(), s.1.clone()),
            Err(p) => (p.get_ref().0.clone(), p.get_ref().1.clone()),
        };
        if now == then {
            return value;
        }
        let next = match (self.load)(&self.paths) {
            Ok(v) => {
                tracing::info!(what = self.what, paths = ?self.paths, "reloaded after the file changed");
                Arc::new(v)
            }
            Err(e) => {
                tracing::warn!(what = self.what, error = %e, "changed file unusable; keeping the value read before");
                value
            }
        };
        // The stamps are taken as seen before loading: a change made while loading is seen on
        // the next call, and a broken version is not re-read on every call.
        match self.state.write() {
            Ok(mut s) => *s = (now, next.clone()),
            Err(p) => *p.into_inner() = (now, next.clone()),
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn number(paths: &[PathBuf]) -> Result<u64, String> {
        let text = std::fs::read_to_string(&paths[0]).map_err(|e| e.to_string())?;
        text.trim().parse().map_err(|e| format!("{e}"))
    }

    /// Writes `text` so that the file's stamp changes even within one clock tick (the size
    /// differs, or the modification time is set forward).
    fn write(path: &Path, text: &str, tick: u64) {
        std::fs::write(path, text).expect("write");
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + tick))
            .expect("set mtime");
    }

    #[test]
    fn changes_are_read_and_a_broken_version_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n");
        write(&path, "1", 1);
        let loads = Arc::new(AtomicUsize::new(0));
        let counted = loads.clone();
        let r = Reloading::open(vec![path.clone()], "test number", move |p: &[PathBuf]| {
            counted.fetch_add(1, Ordering::SeqCst);
            number(p)
        })
        .expect("loads");
        assert_eq!(*r.get(), 1);
        assert_eq!(*r.get(), 1);
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "not read again while unchanged"
        );
        write(&path, "22", 2);
        assert_eq!(*r.get(), 22, "a change is read");
        write(&path, "not a number", 3);
        assert_eq!(*r.get(), 22, "a broken version keeps the last good value");
        assert_eq!(*r.get(), 22);
        assert_eq!(
            loads.load(Ordering::SeqCst),
            3,
            "a broken version is read once, not per call"
        );
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(*r.get(), 22, "a vanished file keeps the last good value");
        write(&path, "333", 4);
        assert_eq!(*r.get(), 333, "and a fixed file is read");
        assert!(
            !format!("{r:?}").contains("333"),
            "Debug never shows the value"
        );
    }

    #[test]
    fn an_unusable_file_at_start_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n");
        assert!(
            Reloading::open(vec![path.clone()], "test", number).is_err(),
            "missing"
        );
        write(&path, "x", 1);
        assert!(
            Reloading::open(vec![path], "test", number).is_err(),
            "unparsable"
        );
    }

    #[test]
    fn a_change_to_any_of_several_files_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&a, "1", 1);
        write(&b, "2", 1);
        let sum =
            |p: &[PathBuf]| -> Result<u64, String> { Ok(number(&p[..1])? + number(&p[1..])?) };
        let r = Reloading::open(vec![a, b.clone()], "pair", sum).expect("loads");
        assert_eq!(*r.get(), 3);
        write(&b, "40", 2);
        assert_eq!(*r.get(), 41);
    }
}
