//! Writing a large document with the serializer and the kernel working at
//! once.
//!
//! A 100,000-node XIR is 226 MB. Written through a `BufWriter`, the
//! serializer waits while each buffer is copied into the page cache, which
//! was about 40% of the write. Here the serializer fills one buffer while a
//! second thread writes the one before it. Four buffers at most are alive,
//! and they are reused, so memory stays flat.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, channel, sync_channel};

use serde::Serialize;

/// Bytes per buffer handed to the writing thread.
const CHUNK: usize = 1 << 20;

/// [`crate::write_json_pretty`] to `out`, writing on a second thread.
/// The bytes are the same. The first error wins: the writer's, if it
/// failed, since the serializer then only sees the channel close. `out`
/// is flushed. If no thread can be started, it writes on this one.
pub fn write_json_pretty_threaded<T: Serialize, W: Write + Send>(
    doc: &T,
    out: &mut W,
) -> io::Result<()> {
    let threaded = std::thread::scope(|s| {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(2);
        let (empty_tx, empty_rx) = channel::<Vec<u8>>();
        let out = &mut *out;
        let writer = std::thread::Builder::new()
            .name("mx-write".into())
            .spawn_scoped(s, move || -> io::Result<()> {
                for mut buf in full_rx {
                    out.write_all(&buf)?;
                    buf.clear();
                    // The serializer may be gone already; the buffer is then
                    // simply dropped.
                    let _ = empty_tx.send(buf);
                }
                out.flush()
            })
            .ok()?;
        let mut chunks = Chunks {
            buf: Vec::with_capacity(CHUNK),
            full: full_tx,
            empty: empty_rx,
        };
        let serialized = crate::write_json_pretty(doc, &mut chunks).and_then(|()| chunks.send());
        // Closing the channel ends the writer's loop.
        drop(chunks);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writing thread panicked")));
        Some(written.and(serialized))
    });
    match threaded {
        Some(result) => result,
        None => {
            crate::write_json_pretty(doc, &mut *out)?;
            out.flush()
        }
    }
}

/// The serializer's side: fills a buffer, hands it over when full.
struct Chunks {
    buf: Vec<u8>,
    full: SyncSender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
}

impl Chunks {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = match self.empty.try_recv() {
            Ok(buf) => buf,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(CHUNK),
        };
        let full = std::mem::replace(&mut self.buf, next);
        self.full
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the writing thread stopped"))
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.buf.len() + data.len() > CHUNK {
            self.send()?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Buffers go over when full or at the end, never part-filled.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document of several megabytes: many buffers' worth, of the shapes
    /// the pretty formatter treats apart (objects, inline scalar arrays).
    fn big() -> serde_json::Value {
        let items: Vec<serde_json::Value> = (0..40_000)
            .map(|i| {
                serde_json::json!({
                    "name": format!("n{i}"),
                    "span": [i, i + 7],
                    "constraints": [{"property": "cores", "op": ">=", "value": i % 9}],
                })
            })
            .collect();
        serde_json::json!({ "xir": "0.1", "nodes": items })
    }

    #[test]
    fn the_threaded_writer_writes_the_same_bytes() {
        let doc = big();
        let mut out = Vec::new();
        write_json_pretty_threaded(&doc, &mut out).unwrap();
        let mut serial = Vec::new();
        crate::write_json_pretty(&doc, &mut serial).unwrap();
        assert!(out.len() > 4 * CHUNK, "{}", out.len());
        assert!(out == serial);
        // and small documents, under one buffer
        let mut small = Vec::new();
        write_json_pretty_threaded(&serde_json::json!({"a": [1, 2]}), &mut small).unwrap();
        assert_eq!(
            String::from_utf8(small).unwrap(),
            crate::to_json_pretty(&serde_json::json!({"a": [1, 2]}))
        );
    }

    /// A writer that fails part way (a full disk): its error comes back,
    /// and nothing hangs.
    struct FailsAfter(usize);

    impl Write for FailsAfter {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.0 < data.len() {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            self.0 -= data.len();
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writers_error_is_the_one_reported() {
        let doc = big();
        for limit in [0, 10, CHUNK + 5, 3 * CHUNK] {
            let err = write_json_pretty_threaded(&doc, &mut FailsAfter(limit)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{limit}: {err}");
        }
    }
}
