//! Where accepted documents wait for delivery: in memory, or in the
//! on-disk spool (which then also keeps their outcomes until consumed).

use crate::spool::{NewDoc, Outcome, Spool, SpoolError, StoredDoc, Target};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One accepted document: the spool's form of it (seq, target, `_id`
/// literal and body in one text) and what delivery keeps of its attempts.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub doc: StoredDoc,
    /// When it was accepted in this process (the delivery timeout of
    /// memory mode counts from here).
    pub accepted: Instant,
    /// An attempt ended in doubt: any later failure report says so too.
    pub sent_in_doubt: bool,
}

impl Item {
    pub fn seq(&self) -> u64 {
        self.doc.seq
    }

    /// The `_id` as a JSON string literal (given, or generated at acceptance).
    pub fn id(&self) -> &str {
        self.doc.id()
    }

    /// Bytes it holds, for the queue's bound.
    pub fn size(&self) -> usize {
        let d = &self.doc;
        d.index().len() + d.collection().len() + d.text.len() + 64
    }

    fn from_stored(doc: StoredDoc) -> Item {
        Item {
            doc,
            accepted: Instant::now(),
            sent_in_doubt: false,
        }
    }
}

/// Memory mode's queue, and the target of the last document put in it.
#[derive(Default)]
pub(crate) struct Queue {
    items: VecDeque<Item>,
    last: Option<Arc<Target>>,
}

pub(crate) enum Store {
    Memory(Mutex<Queue>),
    Spool(Spool),
}

impl Store {
    fn queue(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
        // Items are pushed and taken whole.
        q.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `docs` (each its `_id` literal then its body, and the
    /// literal's length; memory mode takes them, the spool copies), seqs from `next_seq` in memory mode (the spool
    /// numbers its own): the first seq.
    pub fn append(
        &self,
        index: &str,
        collection: &str,
        docs: &mut [(Box<str>, u32)],
        next_seq: impl FnOnce(usize) -> u64,
    ) -> Result<u64, SpoolError> {
        match self {
            Store::Memory(q) => {
                // Numbered under the queue's lock: the queue stays in seq
                // order, which the flush's watermark relies on.
                let mut q = Store::queue(q);
                let q = &mut *q;
                let first = next_seq(docs.len());
                let now = Instant::now();
                let target = Target::shared(&mut q.last, index, collection);
                for (k, (text, id_len)) in docs.iter_mut().enumerate() {
                    q.items.push_back(Item {
                        doc: StoredDoc {
                            seq: first + k as u64,
                            target: target.clone(),
                            text: std::mem::take(text),
                            id_len: *id_len,
                        },
                        accepted: now,
                        sent_in_doubt: false,
                    });
                }
                Ok(first)
            }
            Store::Spool(spool) => {
                let new: Vec<NewDoc> = docs
                    .iter()
                    .map(|(text, id_len)| {
                        let (id, body) = text.split_at(*id_len as usize);
                        NewDoc {
                            index,
                            collection,
                            id,
                            body,
                        }
                    })
                    .collect();
                spool.append(&new)
            }
        }
    }

    /// The next documents to send, in seq order, those put back first.
    pub fn take(&self, max_docs: usize, max_bytes: usize) -> Result<Vec<Item>, SpoolError> {
        match self {
            Store::Memory(q) => {
                let mut q = Store::queue(q);
                let mut out = Vec::new();
                let mut bytes = 0;
                while let Some(item) = q.items.front() {
                    if out.len() >= max_docs || (!out.is_empty() && bytes + item.size() > max_bytes)
                    {
                        break;
                    }
                    bytes += item.size();
                    out.extend(q.items.pop_front());
                }
                Ok(out)
            }
            Store::Spool(spool) => Ok(spool
                .read_pending(max_docs, max_bytes)?
                .into_iter()
                .map(Item::from_stored)
                .collect()),
        }
    }

    /// Documents to send again later, before any other.
    pub fn put_back(&self, items: Vec<Item>) {
        match self {
            Store::Memory(q) => {
                let mut q = Store::queue(q);
                // Batches come back in any order (two in flight): merged
                // with those put back before them, the queue stays in seq
                // order, as the watermark and `Order` would have it.
                let Some(top) = items.iter().map(Item::seq).max() else {
                    return;
                };
                let mut front = items;
                while q.items.front().is_some_and(|i| i.seq() < top) {
                    front.extend(q.items.pop_front());
                }
                front.sort_unstable_by_key(Item::seq);
                for item in front.into_iter().rev() {
                    q.items.push_front(item);
                }
            }
            Store::Spool(spool) => spool.requeue(items.into_iter().map(|i| i.doc).collect()),
        }
    }

    /// The oldest documents waiting (not in flight), to drop when full
    /// (memory mode only: a spool keeps what it accepted).
    pub fn drop_oldest(&self, n: usize) -> Vec<Item> {
        match self {
            Store::Memory(q) => {
                let mut q = Store::queue(q);
                let n = n.min(q.items.len());
                q.items.drain(..n).collect()
            }
            Store::Spool(_) => Vec::new(),
        }
    }

    /// Final outcomes, kept (with a spool) before their reports are seen.
    pub fn outcomes(&self, outcomes: &[Outcome]) -> Result<(), SpoolError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Spool(spool) => spool.record_outcomes(outcomes),
        }
    }

    /// Reports the application has seen (a poll followed by another).
    pub fn consumed(&self, seqs: &[u64]) -> Result<(), SpoolError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Spool(spool) if !seqs.is_empty() => spool.consumed(seqs),
            Store::Spool(_) => Ok(()),
        }
    }

    /// The lowest seq waiting in memory mode; None when empty or spooled.
    pub fn front_seq(&self) -> Option<u64> {
        match self {
            Store::Memory(q) => Store::queue(q).items.front().map(Item::seq),
            Store::Spool(_) => None,
        }
    }

    pub fn spool(&self) -> Option<&Spool> {
        match self {
            Store::Memory(_) => None,
            Store::Spool(spool) => Some(spool),
        }
    }
}
