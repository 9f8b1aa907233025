//! The shipping cursor: the position up to which ClickHouse acknowledged
//! the journal, replaced atomically (write, fsync, rename, fsync the directory).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::{sync_dir, Position};

const FILE: &str = "cursor";

/// The stored cursor; the journal's start when none was stored. A damaged
/// cursor also means the start: shipping again is harmless (ClickHouse
/// collapses replays by event id), skipping is not.
pub fn load_cursor(dir: &Path) -> io::Result<Position> {
    let text = match fs::read_to_string(dir.join(FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Position::default()),
        Err(e) => return Err(e),
    };
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(segment)), Some(Ok(offset)), None) => Ok(Position { segment, offset }),
        _ => {
            tracing::warn!(
                path = %dir.join(FILE).display(),
                "journal cursor is damaged; shipping again from the oldest segment"
            );
            Ok(Position::default())
        }
    }
}

/// Stores `pos` durably.
pub fn store_cursor(dir: &Path, pos: Position) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    let mut f = fs::File::create(&tmp)?;
    writeln!(f, "{} {}", pos.segment, pos.offset)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(FILE))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_damage_means_start() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_cursor(dir.path()).unwrap(), Position::default());
        let p = Position {
            segment: 7,
            offset: 1234,
        };
        store_cursor(dir.path(), p).unwrap();
        assert_eq!(load_cursor(dir.path()).unwrap(), p);
        fs::write(dir.path().join(FILE), "7 12").unwrap();
        assert_eq!(
            load_cursor(dir.path()).unwrap(),
            Position {
                segment: 7,
                offset: 12
            }
        );
        fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert_eq!(load_cursor(dir.path()).unwrap(), Position::default());
    }
}
