//! Group commit for line outputs: the audit trail and the one log line per RPC.
//!
//! Writing each line with its own `write(2)` made that system call (and, on a pipe, waking the
//! reader) a large share of a link's CPU time. A [`LineSink`] collects lines and writes all that
//! are pending with one call. A caller that must not go on before its line is written (an audit
//! record before the call's answer) takes a [`Ticket`] when it appends, yields once so that the
//! other calls ending in the same scheduler round can append theirs, and then writes the group
//! unless another caller already has. Every caller still returns only after its own line has
//! reached the operating system; at one call at a time this is exactly one write per line.

use std::{
    collections::VecDeque,
    io::Write,
    sync::{Mutex, PoisonError},
};

/// How many failed groups are remembered, so a caller whose line an earlier group carried learns
/// that it was lost. Callers check within a scheduler round or two of appending.
const FAILED_GROUPS_KEPT: usize = 64;

/// Lines waiting to be written together, and the writer they go to.
pub struct LineSink {
    pending: Mutex<Pending>,
    out: Mutex<Output>,
}

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineSink").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
    /// Sequence number of the last line appended.
    appended: u64,
    /// Sequence number of the last line handed to the writer.
    taken: u64,
    /// Sequence numbers (first, last) of recent groups the writer refused.
    failed: VecDeque<(u64, u64)>,
}

struct Output {
    writer: Box<dyn Write + Send>,
    /// The previous group's buffer, kept for its capacity.
    spare: Vec<u8>,
}

/// A line's place in its sink, to wait for it to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a line is only known to be written after `write_through`"]
pub struct Ticket(u64);

/// A group of lines the writer refused: they are not written.
#[derive(Debug)]
pub struct Lost {
    /// How many lines the group held.
    pub lines: usize,
    /// Why.
    pub error: std::io::Error,
}

impl LineSink {
    /// A sink writing to `writer`, which is flushed after every group.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            out: Mutex::new(Output {
                writer: Box::new(writer),
                spare: Vec::new(),
            }),
        }
    }

    /// Adds `line` (bytes ending in a newline) to the next group.
    pub fn append(&self, line: &[u8]) -> Ticket {
        let mut pending = self.pending();
        pending.bytes.extend_from_slice(line);
        pending.lines += 1;
        pending.appended += 1;
        Ticket(pending.appended)
    }

    /// Whether any line waits to be written.
    pub fn is_pending(&self) -> bool {
        let pending = self.pending();
        pending.appended > pending.taken
    }

    /// Returns once the line of `ticket` has been written, writing every pending line in one
    /// call unless an earlier group already carried it.
    pub fn write_through(&self, ticket: Ticket) -> Result<(), Lost> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Output { writer, spare } = &mut *out;
        let (lines, first, last) = {
            let mut pending = self.pending();
            if pending.taken >= ticket.0 {
                // An earlier group carried this line: it is written unless that group failed.
                return match pending
                    .failed
                    .iter()
                    .any(|(first, last)| (*first..=*last).contains(&ticket.0))
                {
                    false => Ok(()),
                    true => Err(Lost {
                        lines: 1,
                        error: std::io::Error::other(
                            "the group carrying this line was not written",
                        ),
                    }),
                };
            }
            let first = pending.taken + 1;
            pending.taken = pending.appended;
            std::mem::swap(&mut pending.bytes, spare);
            (std::mem::take(&mut pending.lines), first, pending.appended)
        };
        let written = writer.write_all(spare).and_then(|()| writer.flush());
        spare.clear();
        if written.is_err() {
            let mut pending = self.pending();
            if pending.failed.len() == FAILED_GROUPS_KEPT {
                pending.failed.pop_front();
            }
            pending.failed.push_back((first, last));
        }
        written.map_err(|error| Lost { lines, error })
    }

    /// Writes every pending line.
    pub fn flush(&self) -> Result<(), Lost> {
        let last = Ticket(self.pending().appended);
        self.write_through(last)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Lets the other tasks that are ready now run before this one goes on: the task wakes itself
/// and goes to the back of its worker's run queue. Between [`LineSink::append`] and
/// [`LineSink::write_through`], this is what lets the calls finishing in the same round share
/// one write. (`tokio::task::yield_now` waits for the next I/O poll instead, which spreads the
/// same calls over more rounds and more writes.)
pub async fn requeue() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records each `write` call separately, to count system calls.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn calls(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn lines_committed_in_one_round_share_one_write_and_keep_their_order() {
        let writes = Writes::default();
        let sink = Arc::new(LineSink::new(writes.clone()));
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let ticket = sink.append(format!("line {i}\n").as_bytes());
                    requeue().await;
                    sink.write_through(ticket)
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.is_ok_and(|written| written.is_ok()));
        }
        assert_eq!(writes.calls(), ["line 0\nline 1\nline 2\nline 3\nline 4\n"]);
        assert!(!sink.is_pending());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_line_is_written_alone() {
        let writes = Writes::default();
        let sink = LineSink::new(writes.clone());
        let first = sink.append(b"first\n");
        requeue().await;
        assert!(sink.write_through(first).is_ok());
        assert_eq!(writes.calls(), ["first\n"]);
        let second = sink.append(b"second\n");
        requeue().await;
        assert!(sink.write_through(second).is_ok());
        assert_eq!(writes.calls(), ["first\n", "second\n"]);
    }

    #[test]
    fn a_ticket_already_written_costs_no_write() {
        let writes = Writes::default();
        let sink = LineSink::new(writes.clone());
        let first = sink.append(b"a\n");
        let second = sink.append(b"b\n");
        assert!(sink.is_pending());
        assert!(sink.write_through(second).is_ok());
        assert!(sink.write_through(first).is_ok());
        assert!(sink.flush().is_ok());
        assert_eq!(writes.calls(), ["a\nb\n"]);
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_refused_group_reports_how_many_lines_it_lost() {
        let sink = LineSink::new(Broken);
        let _ = sink.append(b"a\n");
        let last = sink.append(b"b\n");
        let lost = sink.write_through(last).err();
        assert_eq!(
            lost.map(|l| (l.lines, l.error.to_string())),
            Some((2, "disk full".into()))
        );
        assert!(!sink.is_pending());
    }

    /// Refuses every write, as a full disk does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_caller_whose_line_a_failed_group_carried_hears_of_it() {
        let sink = LineSink::new(Full);
        let first = sink.append(b"a\n");
        let second = sink.append(b"b\n");
        assert!(sink.write_through(second).is_err(), "the caller that wrote");
        assert!(
            sink.write_through(first).is_err(),
            "the caller whose line it carried"
        );
    }
}
