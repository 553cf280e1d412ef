//! Finding a TrueType font at run time and registering it with plotters.
//!
//! plotters' `ab_glyph` backend has no font of its own and no system lookup (that would need
//! fontconfig), so the crate registers one `.ttf` file under the `sans-serif` family, once per
//! process. SVG output names the family too and lets the viewer pick its own font; the registered
//! one is then only used to measure text for layout.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use plotters::style::{FontStyle, register_font};

use crate::ReportError;

/// Environment variable naming a `.ttf` file to use instead of the system lookup.
pub const FONT_ENV: &str = "DEXLAB_FONT";

/// Well-known locations of a regular sans-serif TTF (Debian/Ubuntu, Fedora, Arch, macOS), tried in
/// order before the directory scan.
const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/google-noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Directories scanned (recursively) for any `.ttf` when no candidate exists.
const SCAN_ROOTS: &[&str] = &["/usr/share/fonts", "/usr/local/share/fonts"];

/// Deep enough for `/usr/share/fonts/truetype/<family>/<file>` layouts, shallow enough that a
/// symlink loop or a huge tree cannot stall a report.
const SCAN_DEPTH: usize = 5;

/// The family name the charts ask for; plotters falls back from bold/italic to this normal style.
pub(crate) const FAMILY: &str = "sans-serif";

static REGISTERED: OnceLock<PathBuf> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Registers a font with plotters unless one already is, and returns the file it came from.
///
/// Only success is cached: a process that failed (no font installed) can succeed later, once
/// `scripts/setup.sh` has installed one.
pub fn ensure_font() -> Result<&'static Path, ReportError> {
    if let Some(path) = REGISTERED.get() {
        return Ok(path);
    }
    // The mutex makes "find, read, register" happen once even when threads race here; a poisoned
    // lock only means another thread's lookup panicked, which leaves nothing half-done.
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = REGISTERED.get() {
        return Ok(path);
    }
    let path = find_font(
        std::env::var_os(FONT_ENV),
        CANDIDATES.iter().map(Path::new),
        SCAN_ROOTS.iter().map(Path::new),
    )?;
    let bytes = std::fs::read(&path).map_err(|source| ReportError::FontRead {
        path: path.clone(),
        source,
    })?;
    if !looks_like_font(&bytes) {
        return Err(ReportError::FontInvalid { path });
    }
    // plotters keeps `&'static [u8]`; the font lives for the rest of the process anyway, and the
    // `OnceLock` makes this a single leak per process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| ReportError::FontInvalid { path: path.clone() })?;
    Ok(REGISTERED.get_or_init(|| path))
}

/// Picks the font file: the environment override if set, else the first existing candidate, else
/// the best `.ttf` found under the scan roots.
///
/// An override that does not exist is an error rather than silently ignored, so a typo in
/// `DEXLAB_FONT` is noticed.
pub(crate) fn find_font<'a>(
    env: Option<OsString>,
    candidates: impl IntoIterator<Item = &'a Path>,
    scan_roots: impl IntoIterator<Item = &'a Path>,
) -> Result<PathBuf, ReportError> {
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ReportError::FontEnvMissing { path })
        };
    }
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Ok(found.to_path_buf());
    }
    let mut scanned = Vec::new();
    let mut found = Vec::new();
    for root in scan_roots {
        scanned.push(root.display().to_string());
        scan_ttf(root, SCAN_DEPTH, &mut found);
    }
    // Prefer a regular upright sans face; ties broken by path so the choice is reproducible.
    found.sort_by_key(|p| (font_rank(p), p.clone()));
    found
        .into_iter()
        .next()
        .ok_or_else(|| ReportError::FontNotFound {
            searched: scanned.join(", "),
        })
}

fn scan_ttf(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // `file_type` does not follow symlinks, so a linked directory is never descended into.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if depth > 0 {
                scan_ttf(&path, depth - 1, out);
            }
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ttf"))
            && path.is_file()
        {
            out.push(path);
        }
    }
}

/// Lower is better: sans before others, regular before bold/italic/condensed/mono/symbol faces.
fn font_rank(path: &Path) -> u8 {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let odd = [
        "bold",
        "italic",
        "oblique",
        "light",
        "condensed",
        "mono",
        "math",
        "symbol",
        "emoji",
    ]
    .iter()
    .any(|w| name.contains(w));
    match (name.contains("sans"), odd) {
        (true, false) => 0,
        (false, false) => 1,
        (true, true) => 2,
        (false, true) => 3,
    }
}

/// TrueType, OpenType-CFF and collection magic numbers; catches a `DEXLAB_FONT` pointing at some
/// other file before its bytes are handed to plotters.
fn looks_like_font(bytes: &[u8]) -> bool {
    matches!(
        bytes.get(..4),
        Some([0, 1, 0, 0]) | Some(b"true") | Some(b"OTTO") | Some(b"ttcf")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_override_wins_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let font = dir.path().join("X.ttf");
        std::fs::write(&font, b"true").unwrap();
        let got = find_font(Some(font.clone().into()), [], []).unwrap();
        assert_eq!(got, font);

        let missing = dir.path().join("nope.ttf");
        let err = find_font(Some(missing.clone().into()), [], []).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(FONT_ENV) && msg.contains("nope.ttf"), "{msg}");
    }

    #[test]
    fn scan_prefers_regular_sans() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("truetype/fam");
        std::fs::create_dir_all(&sub).unwrap();
        for name in [
            "ASerif-Bold.ttf",
            "FooSans-Bold.ttf",
            "FooSans.ttf",
            "readme.txt",
        ] {
            std::fs::write(sub.join(name), b"").unwrap();
        }
        let got = find_font(None, [Path::new("/definitely/not/here.ttf")], [dir.path()]).unwrap();
        assert_eq!(got, sub.join("FooSans.ttf"));
    }

    #[test]
    fn nothing_found_points_at_setup_script() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_font(None, [], [dir.path()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("scripts/setup.sh"), "{msg}");
        assert!(msg.contains(FONT_ENV), "{msg}");
    }

    #[test]
    fn magic_numbers() {
        assert!(looks_like_font(&[0, 1, 0, 0, 9]));
        assert!(looks_like_font(b"OTTO...."));
        assert!(!looks_like_font(b"<svg"));
        assert!(!looks_like_font(b""));
    }
}
