//! A set of seqs kept as disjoint inclusive ranges: outcomes and
//! consumptions arrive mostly in seq order, so the set stays a handful of
//! ranges whatever the number of seqs.

use std::collections::BTreeMap;

#[derive(Default, Debug, Clone)]
pub(super) struct RangeSet {
    /// start -> end (inclusive), disjoint and not adjacent.
    map: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub(super) fn contains(&self, seq: u64) -> bool {
        self.map
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &end)| end >= seq)
    }

    pub(super) fn insert(&mut self, seq: u64) {
        self.insert_range(seq, seq);
    }

    pub(super) fn insert_range(&mut self, mut start: u64, mut end: u64) {
        if start > end {
            return;
        }
        // Merge with a range that overlaps or touches on the left.
        if let Some((&s, &e)) = self.map.range(..=start).next_back() {
            if e.saturating_add(1) >= start {
                start = s;
                end = end.max(e);
                self.map.remove(&s);
            }
        }
        // And with every range that starts inside or right after.
        while let Some((&s, &e)) = self.map.range(start..).next() {
            if s > end.saturating_add(1) {
                break;
            }
            end = end.max(e);
            self.map.remove(&s);
        }
        self.map.insert(start, end);
    }

    /// Forgets every seq below `floor`.
    pub(super) fn remove_below(&mut self, floor: u64) {
        let mut keep = self.map.split_off(&floor);
        if let Some((_, &end)) = self.map.iter().next_back() {
            if end >= floor {
                keep.insert(floor, end);
            }
        }
        self.map = keep;
    }

    pub(super) fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &e)| (s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::RangeSet;

    #[test]
    fn merges_and_prunes() {
        let mut set = RangeSet::default();
        for seq in [5, 7, 6, 1, 3, 2, 10] {
            set.insert(seq);
        }
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(1, 3), (5, 7), (10, 10)]);
        set.insert_range(4, 9);
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(1, 10)]);
        assert!(set.contains(1) && set.contains(10) && !set.contains(11) && !set.contains(0));
        set.remove_below(4);
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(4, 10)]);
        set.remove_below(11);
        assert_eq!(set.ranges().count(), 0);
    }
}
