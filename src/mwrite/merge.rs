//! The ordered hand-off between workers: each request's results go into
//! the one result in input order, whichever worker finishes first.

use super::result::Fragment;
use std::sync::Mutex;

/// Puts the requests' results into the result in input order. The request
/// next in line writes straight into it, and most are (requests mostly end
/// in the order they were sent); one that ends early writes into a fragment
/// of its own, which waits for its turn (a few at most, with `concurrency`
/// requests in flight) and is then copied in.
pub(super) struct Merge {
    /// The result; `None` while the request next in line writes into it.
    all: Option<Fragment>,
    next: usize,
    parked: Vec<(usize, Fragment)>,
}

impl Merge {
    /// The result, its first request next in line.
    pub(super) fn new(all: Fragment) -> Merge {
        Merge {
            all: Some(all),
            next: 0,
            parked: Vec::new(),
        }
    }

    /// The whole result once all `n` requests handed theirs over; `None` if
    /// that did not happen (a bug: the caller then reports it, every
    /// document accounted for, rather than a result with some left out).
    pub(super) fn into_result(self, n: usize) -> Option<Fragment> {
        match (self.all, self.next == n && self.parked.is_empty()) {
            (Some(all), true) => Some(all),
            _ => None,
        }
    }

    /// Takes in the parked fragments whose turn has come.
    fn settle(&mut self) {
        let Some(all) = self.all.as_mut() else { return };
        while let Some(p) = self.parked.iter().position(|(j, _)| *j == self.next) {
            let (_, mut parked) = self.parked.swap_remove(p);
            all.absorb(&mut parked);
            self.next += 1;
        }
    }
}

pub(super) fn lock(merge: &Mutex<Merge>) -> std::sync::MutexGuard<'_, Merge> {
    // A worker that panicked left no item half-written: every write of a
    // whole item happens without the lock.
    merge.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where request `i`'s results go: chosen when the first one is written,
/// once Kuzzle answered, when it is most likely next in line.
pub(super) struct Sink<'m> {
    merge: &'m Mutex<Merge>,
    i: usize,
    chosen: bool,
    /// The result itself, lent while this request is next in line.
    direct: Option<Fragment>,
    /// The worker's own fragment otherwise (kept empty between requests,
    /// its capacity reused).
    own: Fragment,
}

impl<'m> Sink<'m> {
    pub(super) fn new(merge: &'m Mutex<Merge>, i: usize, own: Fragment) -> Sink<'m> {
        Sink {
            merge,
            i,
            chosen: false,
            direct: None,
            own,
        }
    }

    pub(super) fn out(&mut self) -> &mut Fragment {
        if !self.chosen {
            self.chosen = true;
            let mut merge = lock(self.merge);
            if merge.next == self.i {
                self.direct = merge.all.take();
            }
        }
        match &mut self.direct {
            Some(all) => all,
            None => &mut self.own,
        }
    }

    /// Every result of the request is written: hands them over, and gives
    /// back the worker's fragment, emptied, when it is free for reuse.
    pub(super) fn finish(self) -> Fragment {
        let mut merge = lock(self.merge);
        let mut own = self.own;
        match self.direct {
            Some(all) => {
                merge.all = Some(all);
                merge.next += 1;
            }
            None if merge.next == self.i && merge.all.is_some() => {
                if let Some(all) = merge.all.as_mut() {
                    all.absorb(&mut own);
                }
                merge.next += 1;
            }
            None => {
                let blank = own.blank();
                merge.parked.push((self.i, own));
                own = blank;
            }
        }
        merge.settle();
        own
    }
}
