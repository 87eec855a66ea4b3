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

use crate::pretty::Pretty;

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
    with_writer(
        out,
        |w| crate::write_json_pretty(doc, w),
        |out| crate::write_json_pretty(doc, out),
    )
}

/// Runs `fill` with a sink whose buffers an `mx-write` thread writes to
/// `out`, then flushes `out`. `serial` does the same work on this thread
/// when no thread can be started.
fn with_writer<W: Write + Send>(
    out: &mut W,
    fill: impl FnOnce(&mut Chunks) -> io::Result<()>,
    serial: impl FnOnce(&mut W) -> io::Result<()>,
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
        let filled = fill(&mut chunks).and_then(|()| chunks.send());
        // Closing the channel ends the writer's loop.
        drop(chunks);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writing thread panicked")));
        Some(written.and(filled))
    });
    match threaded {
        Some(result) => result,
        None => {
            serial(&mut *out)?;
            out.flush()
        }
    }
}

/// Elements of `nodes` or `links` per piece of work.
const PIECE: usize = 2048;

/// [`write_json_pretty_threaded`] for an experiment, with its nodes and
/// links serialized on two threads: this one takes every other piece of
/// [`PIECE`] elements, an `mx-serialize` thread the others, and the pieces
/// go out in order. The bytes are those of [`crate::write_json_pretty`].
/// `doc`'s nodes and links are taken out while it writes and put back.
///
/// The rest of the document is serialized with both arrays empty, and the
/// elements are written where its `[]` stand. Those are found as a line
/// break, two spaces and the key: inside strings a line break is always
/// escaped, and deeper keys are indented further, so only the document's
/// own `nodes` and `links` match.
pub fn write_experiment_threaded<W: Write + Send>(
    doc: &mut crate::Experiment,
    out: &mut W,
) -> io::Result<()> {
    let nodes = std::mem::take(&mut doc.nodes);
    let links = std::mem::take(&mut doc.links);
    let shell = crate::to_json_pretty(&*doc);
    doc.nodes = nodes;
    doc.links = links;
    const NODES: &str = "\n  \"nodes\": []";
    const LINKS: &str = "\n  \"links\": []";
    let (Some(n), Some(l)) = (shell.find(NODES), shell.find(LINKS)) else {
        return write_json_pretty_threaded(&*doc, out);
    };
    if l < n {
        return write_json_pretty_threaded(&*doc, out);
    }
    // Where each array's `[` and `]` stand.
    let (n_open, n_close) = (n + NODES.len() - 2, n + NODES.len() - 1);
    let (l_open, l_close) = (l + LINKS.len() - 2, l + LINKS.len() - 1);
    let doc = &*doc;
    let mut pieces = Vec::new();
    for (i, _) in doc.nodes.chunks(PIECE).enumerate() {
        pieces.push(Piece::Nodes(i * PIECE));
    }
    for (i, _) in doc.links.chunks(PIECE).enumerate() {
        pieces.push(Piece::Links(i * PIECE));
    }
    let first_link = doc.nodes.len().div_ceil(PIECE);
    let shell = shell.as_bytes();
    let serialize = |p: &Piece, buf: &mut Vec<u8>| match *p {
        Piece::Nodes(at) => elements(
            &doc.nodes[at..(at + PIECE).min(doc.nodes.len())],
            at == 0,
            buf,
        ),
        Piece::Links(at) => elements(
            &doc.links[at..(at + PIECE).min(doc.links.len())],
            at == 0,
            buf,
        ),
    };
    let close = |len: usize| -> &'static [u8] { if len == 0 { b"]" } else { b"\n  ]" } };
    // Writes the pieces in order, the shell's text between them.
    let write_all = |w: &mut dyn Sink, next: &mut NextPiece| -> io::Result<()> {
        let mut own = Vec::new();
        let mut pieces_of = |range: std::ops::Range<usize>, w: &mut dyn Sink| {
            for j in range {
                let buf = next(j, &mut own)?;
                own = w.put(buf)?;
            }
            io::Result::Ok(())
        };
        w.write_all(&shell[..n_open + 1])?;
        pieces_of(0..first_link, w)?;
        w.write_all(close(doc.nodes.len()))?;
        w.write_all(&shell[n_close + 1..l_open + 1])?;
        pieces_of(first_link..pieces.len(), w)?;
        w.write_all(close(doc.links.len()))?;
        w.write_all(&shell[l_close + 1..])
    };
    let pieces = &pieces;
    with_writer(
        out,
        |w| {
            std::thread::scope(|s| {
                let (done_tx, done_rx) = sync_channel::<io::Result<Vec<u8>>>(2);
                let (free_tx, free_rx) = channel::<Vec<u8>>();
                let helper = std::thread::Builder::new()
                    .name("mx-serialize".into())
                    .spawn_scoped(s, move || {
                        for p in pieces.iter().skip(1).step_by(2) {
                            let mut buf = free_rx.try_recv().unwrap_or_default();
                            buf.clear();
                            let r = serialize(p, &mut buf).map(|()| buf);
                            if done_tx.send(r).is_err() {
                                break;
                            }
                        }
                    });
                let helped = helper.is_ok();
                let result = write_all(w, &mut |j, own| {
                    if helped && j % 2 == 1 {
                        let buf = done_rx
                            .recv()
                            .map_err(|_| io::Error::other("the serializing thread stopped"))??;
                        let _ = free_tx.send(std::mem::take(own));
                        Ok(buf)
                    } else {
                        let mut buf = std::mem::take(own);
                        buf.clear();
                        serialize(&pieces[j], &mut buf)?;
                        Ok(buf)
                    }
                });
                // An early error: the helper stops at its next send.
                drop(done_rx);
                result
            })
        },
        |out| {
            write_all(&mut Serial(out), &mut |j, own| {
                let mut buf = std::mem::take(own);
                buf.clear();
                serialize(&pieces[j], &mut buf)?;
                Ok(buf)
            })
        },
    )
}

/// Gives piece `j` serialized, given the buffer the last one came in.
type NextPiece<'a> = dyn FnMut(usize, &mut Vec<u8>) -> io::Result<Vec<u8>> + 'a;

/// A piece of work: up to [`PIECE`] elements from this index.
enum Piece {
    Nodes(usize),
    Links(usize),
}

/// Array elements as the pretty formatter writes them inside a top-level
/// array: a comma unless first, a line break, four spaces, the element
/// (written directly, [`crate::pretty`]).
fn elements<T: Pretty>(items: &[T], first: bool, buf: &mut Vec<u8>) -> io::Result<()> {
    for (i, item) in items.iter().enumerate() {
        buf.extend_from_slice(if first && i == 0 {
            b"\n    "
        } else {
            b",\n    "
        });
        item.pretty(buf, 3)?;
    }
    Ok(())
}

/// Where the pieces of an experiment go: a writer that takes whole
/// buffers as they are, and hands back one to fill next.
trait Sink: Write {
    fn put(&mut self, buf: Vec<u8>) -> io::Result<Vec<u8>>;
}

/// A piece goes to the writing thread as it is, not copied into a chunk:
/// 226 MB less copying for a 100,000-node experiment.
impl Sink for Chunks {
    fn put(&mut self, buf: Vec<u8>) -> io::Result<Vec<u8>> {
        if buf.len() < CHUNK / 4 {
            self.write_all(&buf)?;
            return Ok(buf);
        }
        self.send()?;
        // The next piece is about as large: a buffer that would have to
        // grow to it (copying as it doubles) is not worth keeping.
        let room = buf.capacity();
        let next = match self.empty.try_recv() {
            Ok(b) if b.capacity() >= room => b,
            _ => Vec::with_capacity(room),
        };
        self.full
            .send(buf)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the writing thread stopped"))?;
        Ok(next)
    }
}

/// The one-thread fallback.
struct Serial<'w, W: Write>(&'w mut W);

impl<W: Write> Write for Serial<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.write(data)
    }
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Sink for Serial<'_, W> {
    fn put(&mut self, buf: Vec<u8>) -> io::Result<Vec<u8>> {
        self.0.write_all(&buf)?;
        Ok(buf)
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

    /// An experiment of `n` nodes and `m` links, with what the formatter
    /// treats apart: labels, nested properties (one has a key `nodes` and
    /// a string holding the text the splice looks for), ingress, addresses.
    fn experiment(n: usize, m: usize) -> crate::Experiment {
        let nodes: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let mut v = serde_json::json!({
                    "name": format!("n{i}"),
                    "constraints": [{"property": "cores", "op": ">=", "value": 2, "span": [1, 9]}],
                    "span": [i, i + 3],
                });
                if i % 7 == 0 {
                    v["label"] = format!("N {i}").into();
                    v["properties"] = serde_json::json!({
                        "nodes": [], "deep": {"links": [], "x": [1, {"y": "\n  \"nodes\": []"}]}
                    });
                    v["ingress"] =
                        serde_json::json!([{"protocol": "tcp", "port": 22, "span": [0, 1]}]);
                }
                v
            })
            .collect();
        let links: Vec<serde_json::Value> = (0..m)
            .map(|i| {
                serde_json::json!({
                    "name": format!("l{i}"),
                    "endpoints": [
                        {"node": format!("n{}", i % n.max(1)), "socket": 0,
                         "addrs": [{"cidr": "10.0.0.0/31", "span": [4, 5]}]},
                        {"node": "n0", "socket": i},
                    ],
                    "constraints": [{"property": "capacity", "op": "==", "value": 100, "unit": "bps", "span": [2, 3]}],
                    "span": [i, i + 1],
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "xir": "0.1", "kind": "experiment", "name": "t",
            "source": {"path": "a\n  \"links\": [].mx"},
            "parameters": {"nodes": []},
            "constraints": [{"property": "routing", "op": "==", "value": "static", "span": [0, 1]}],
            "nodes": nodes, "links": links,
        }))
        .unwrap()
    }

    #[test]
    fn an_experiment_written_in_pieces_is_written_the_same() {
        // Whole pieces of these elements go to the writer as they are, a
        // last short one is copied: both ways are exercised below.
        let big = experiment(PIECE, PIECE);
        let (mut whole, mut short) = (Vec::new(), Vec::new());
        elements(&big.links, true, &mut whole).unwrap();
        elements(&big.links[..1], true, &mut short).unwrap();
        assert!(whole.len() >= CHUNK / 4 && short.len() < CHUNK / 4);
        for (n, m) in [
            (0, 0),
            (1, 0),
            (0, 3),
            (3, 2),
            (PIECE, 1),
            (PIECE + 1, 2 * PIECE + 5),
            (5000, 9000),
        ] {
            let mut doc = experiment(n, m);
            // the shell holds the two places the elements go (so the
            // pieces are what is tested, not the fallback)
            let mut shell = doc.clone();
            (shell.nodes, shell.links) = (Vec::new(), Vec::new());
            let shell = crate::to_json_pretty(&shell);
            assert!(shell.contains("\n  \"nodes\": []") && shell.contains("\n  \"links\": []"));
            let mut out = Vec::new();
            write_experiment_threaded(&mut doc, &mut out).unwrap();
            let mut serial = Vec::new();
            crate::write_json_pretty(&doc, &mut serial).unwrap();
            assert_eq!(doc.nodes.len(), n);
            assert_eq!(doc.links.len(), m);
            assert!(
                out == serial,
                "{n} nodes, {m} links:\n{}",
                String::from_utf8_lossy(&out[..out.len().min(3000)])
            );
        }
        let err =
            write_experiment_threaded(&mut experiment(5000, 9000), &mut FailsAfter(CHUNK + 1))
                .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
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
