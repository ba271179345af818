//! The order of versions of one document across batches in flight at once:
//! a document (index, collection, `_id`) is sent only when no earlier
//! version of it (a lower seq) still waits for its final outcome anywhere
//! (in another batch in flight, or put back to be sent again). Otherwise
//! an older version's resend could overwrite a newer one in storage.
//!
//! Every document taken for delivery is entered here, and leaves with its
//! final outcome; one put back to be sent again stays.

use super::store::Item;
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// The seqs without a final outcome of one document, lowest first; almost
/// always one.
#[derive(Debug)]
enum Seqs {
    One(u64),
    Many(Vec<u64>),
}

#[derive(Default)]
pub(super) struct Order {
    /// By a hash of (index, collection, `_id`): two documents sharing a
    /// hash only wait for each other, which is harmless and, at 64 bits,
    /// rare.
    unsettled: Mutex<FxHashMap<u64, Seqs>>,
}

fn key(item: &Item) -> u64 {
    let mut h = FxHasher::default();
    item.doc.index().hash(&mut h);
    item.doc.collection().hash(&mut h);
    item.id().hash(&mut h);
    h.finish()
}

impl Order {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<u64, Seqs>> {
        // Entered and removed whole: a panic leaves the map consistent.
        self.unsettled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Documents taken for delivery (again, for those put back: entered
    /// once).
    pub fn enter<'a>(&self, items: impl IntoIterator<Item = &'a Item>) {
        let mut map = self.lock();
        for item in items {
            let seq = item.seq();
            match map.entry(key(item)) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Seqs::One(seq));
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let seqs = e.get_mut();
                    match seqs {
                        Seqs::One(s) if *s == seq => {}
                        Seqs::One(s) => {
                            let mut v = vec![*s, seq];
                            v.sort_unstable();
                            *seqs = Seqs::Many(v);
                        }
                        Seqs::Many(v) => {
                            if let Err(at) = v.binary_search(&seq) {
                                v.insert(at, seq);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether an earlier version of `item` waits for its final outcome.
    fn behind(map: &FxHashMap<u64, Seqs>, item: &Item) -> bool {
        let first = match map.get(&key(item)) {
            Some(Seqs::One(s)) => *s,
            Some(Seqs::Many(v)) => v[0],
            None => return false,
        };
        first < item.seq()
    }

    /// Keeps in `group` (positions in `batch`) the documents no earlier
    /// version of which waits for its final outcome.
    pub fn keep_first_versions(&self, batch: &[Item], group: &mut Vec<usize>) {
        let map = self.lock();
        group.retain(|&k| !Order::behind(&map, &batch[k]));
    }

    #[cfg(test)]
    fn behind_earlier(&self, item: &Item) -> bool {
        Order::behind(&self.lock(), item)
    }

    /// Documents with their final outcome (or dropped): they no longer
    /// hold back later versions.
    pub fn leave<'a>(&self, items: impl IntoIterator<Item = &'a Item>) {
        let mut map = self.lock();
        for item in items {
            let k = key(item);
            let seq = item.seq();
            let emptied = match map.get_mut(&k) {
                Some(Seqs::One(s)) => *s == seq,
                Some(Seqs::Many(v)) => {
                    v.retain(|&s| s != seq);
                    if v.len() == 1 {
                        let only = v[0];
                        map.insert(k, Seqs::One(only));
                    }
                    false
                }
                None => false,
            };
            if emptied {
                map.remove(&k);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{StoredDoc, Target};
    use std::sync::Arc;
    use std::time::Instant;

    fn item(seq: u64, id: &str) -> Item {
        let literal = format!("\"{id}\"");
        Item {
            doc: StoredDoc {
                seq,
                target: Arc::new(Target {
                    index: "i".into(),
                    collection: "c".into(),
                }),
                text: format!("{literal}{{}}").into_boxed_str(),
                id_len: literal.len() as u32,
            },
            accepted: Instant::now(),
            sent_in_doubt: false,
        }
    }

    #[test]
    fn a_later_version_waits_for_every_earlier_one() {
        let order = Order::default();
        let (a1, b2, a3, a9) = (item(1, "a"), item(2, "b"), item(3, "a"), item(9, "a"));
        order.enter([&a3, &b2]);
        order.enter([&a1, &a9]);
        // Entered again (put back, taken again): once.
        order.enter([&a3]);
        assert!(!order.behind_earlier(&a1));
        assert!(order.behind_earlier(&a3) && order.behind_earlier(&a9));
        assert!(!order.behind_earlier(&b2));
        order.leave([&a1]);
        assert!(!order.behind_earlier(&a3) && order.behind_earlier(&a9));
        order.leave([&a3]);
        assert!(!order.behind_earlier(&a9));
        order.leave([&a9, &b2]);
        assert_eq!(order.len(), 0);
        // Another collection, same id: another document.
        let mut other = item(0, "a");
        other.doc.target = Arc::new(Target {
            index: "i".into(),
            collection: "d".into(),
        });
        order.enter([&other]);
        assert!(!order.behind_earlier(&a9));
    }
}
