//! Where accepted documents wait for delivery: in memory, or in the
//! on-disk spool (which then also keeps their outcomes until consumed).

use crate::spool::{NewDoc, Outcome, Spool, SpoolError, StoredDoc};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

/// One accepted document.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub seq: u64,
    pub index: String,
    pub collection: String,
    /// The `_id` as a JSON string literal (given, or generated at
    /// acceptance).
    pub id: String,
    /// The body's JSON text.
    pub body: String,
    /// When it was accepted in this process (the delivery timeout of
    /// memory mode counts from here).
    pub accepted: Instant,
    /// An attempt ended in doubt: any later failure report says so too.
    pub sent_in_doubt: bool,
}

impl Item {
    /// Bytes it holds, for the queue's bound.
    pub fn size(&self) -> usize {
        self.index.len() + self.collection.len() + self.id.len() + self.body.len() + 64
    }

    fn from_stored(d: StoredDoc) -> Item {
        Item {
            seq: d.seq,
            index: d.index,
            collection: d.collection,
            id: d.id,
            body: d.body,
            accepted: Instant::now(),
            sent_in_doubt: false,
        }
    }

    fn to_stored(&self) -> StoredDoc {
        StoredDoc {
            seq: self.seq,
            index: self.index.clone(),
            collection: self.collection.clone(),
            id: self.id.clone(),
            body: self.body.clone(),
        }
    }
}

pub(crate) enum Store {
    Memory(Mutex<VecDeque<Item>>),
    Spool(Spool),
}

impl Store {
    fn queue(q: &Mutex<VecDeque<Item>>) -> std::sync::MutexGuard<'_, VecDeque<Item>> {
        // Items are pushed and taken whole.
        q.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `docs` (index, collection, id literal, body), seqs from
    /// `next_seq` in memory mode (the spool numbers its own): the first seq.
    pub fn append(
        &self,
        index: &str,
        collection: &str,
        docs: &[(String, &str)],
        next_seq: impl FnOnce(usize) -> u64,
    ) -> Result<u64, SpoolError> {
        match self {
            Store::Memory(q) => {
                // Numbered under the queue's lock: the queue stays in seq
                // order, which the flush's watermark relies on.
                let mut q = Store::queue(q);
                let first = next_seq(docs.len());
                let now = Instant::now();
                for (k, (id, body)) in docs.iter().enumerate() {
                    q.push_back(Item {
                        seq: first + k as u64,
                        index: index.to_string(),
                        collection: collection.to_string(),
                        id: id.clone(),
                        body: body.to_string(),
                        accepted: now,
                        sent_in_doubt: false,
                    });
                }
                Ok(first)
            }
            Store::Spool(spool) => {
                let new: Vec<NewDoc> = docs
                    .iter()
                    .map(|(id, body)| NewDoc {
                        index,
                        collection,
                        id,
                        body,
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
                while let Some(item) = q.front() {
                    if out.len() >= max_docs || (!out.is_empty() && bytes + item.size() > max_bytes)
                    {
                        break;
                    }
                    bytes += item.size();
                    out.extend(q.pop_front());
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
                for item in items.into_iter().rev() {
                    q.push_front(item);
                }
            }
            Store::Spool(spool) => spool.requeue(items.iter().map(Item::to_stored).collect()),
        }
    }

    /// The oldest documents waiting (not in flight), to drop when full
    /// (memory mode only: a spool keeps what it accepted).
    pub fn drop_oldest(&self, n: usize) -> Vec<Item> {
        match self {
            Store::Memory(q) => {
                let mut q = Store::queue(q);
                let n = n.min(q.len());
                q.drain(..n).collect()
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
            Store::Memory(q) => Store::queue(q).front().map(|i| i.seq),
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
