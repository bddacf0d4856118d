//! The change marker of a network directory: an inotify watch. The kernel queues an
//! event while the writer's syscall runs, so once we hold the lock every change another
//! lock holder made before us is in the queue, named. Reading the queue is one `read`
//! when nothing happened, which is what makes trusting the index cheap.

use std::collections::HashSet;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

pub(crate) struct Watch {
    inotify: Inotify,
}

/// What happened in the directory since the last drain.
pub(crate) enum Changes {
    /// Names created, written, removed or renamed in or out; maybe none.
    Names(HashSet<String>),
    /// The queue overflowed, or the directory itself was removed or renamed: only a
    /// full read of the directory tells what it holds now.
    Lost,
}

impl Watch {
    /// Watches `dir`. Fails when the kernel refuses one more inotify instance or watch
    /// (`fs.inotify.max_user_instances`, `max_user_watches`).
    pub fn new(dir: &Path) -> Result<Watch, Errno> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // IN_CLOSE_WRITE rather than IN_MODIFY: a writer's content is complete when it
        // closes (an exit closes too), and we see one event per write, not one per chunk.
        inotify.add_watch(
            dir,
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_ONLYDIR,
        )?;
        Ok(Watch { inotify })
    }

    /// Everything queued since the last call.
    pub fn drain(&self) -> Changes {
        let mut names = HashSet::new();
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EAGAIN) => return Changes::Names(names),
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the IPAM directory's inotify queue failed; reading the directory instead");
                    return Changes::Lost;
                }
            };
            for event in events {
                let lost = AddWatchFlags::IN_Q_OVERFLOW
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF
                    | AddWatchFlags::IN_IGNORED;
                if event.mask.intersects(lost) {
                    return Changes::Lost;
                }
                if let Some(name) = event.name.and_then(|n| n.into_string().ok()) {
                    names.insert(name);
                }
            }
        }
    }
}
