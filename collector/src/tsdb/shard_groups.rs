//! A request's items grouped by shard, keeping their order inside a shard (a counting
//! sort: one allocation, however many shards), so a request locks each shard once. The
//! head (`append.rs`, `head::SHARDS`) and the raw-ref table (`raw_refs.rs`, its own 16
//! shards) both group this way.

/// `order[starts[sh]..starts[sh + 1]]` (the last shard: to the end) are the indexes of
/// shard `sh`'s items, in the order the items came.
pub struct ShardGroups<const N: usize> {
    starts: [usize; N],
    order: Vec<u32>,
}

impl<const N: usize> ShardGroups<N> {
    /// Groups `items`, `shard(item)` < `N` naming each one's shard.
    pub fn new<T>(items: &[T], shard: impl Fn(&T) -> usize) -> Self {
        let mut starts = [0usize; N];
        for it in items {
            starts[shard(it)] += 1;
        }
        let mut total = 0;
        for s in starts.iter_mut() {
            let n = *s;
            *s = total;
            total += n;
        }
        let mut order = vec![0u32; items.len()];
        let mut fill = starts;
        for (i, it) in items.iter().enumerate() {
            let sh = shard(it);
            order[fill[sh]] = i as u32;
            fill[sh] += 1;
        }
        ShardGroups { starts, order }
    }

    /// Each shard that has items, with the indexes of its items in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &[u32])> {
        (0..N)
            .map(|sh| {
                let end = self.starts.get(sh + 1).copied().unwrap_or(self.order.len());
                (sh, &self.order[self.starts[sh]..end])
            })
            .filter(|(_, members)| !members.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::ShardGroups;

    #[test]
    fn every_item_once_in_its_shard_in_order() {
        let items = [5usize, 0, 3, 5, 1, 0, 5];
        let g = ShardGroups::<6>::new(&items, |&x| x);
        let got: Vec<(usize, Vec<u32>)> = g.iter().map(|(sh, m)| (sh, m.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (0, vec![1, 5]),
                (1, vec![4]),
                (3, vec![2]),
                (5, vec![0, 3, 6])
            ]
        );
        assert_eq!(
            ShardGroups::<4>::new(&[] as &[usize], |&x| x)
                .iter()
                .count(),
            0
        );
    }
}
