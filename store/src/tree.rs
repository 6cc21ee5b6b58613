//! The Merkle tree on disk: perfect subtrees at levels ≥
//! `MERKLE_STORED_LEVEL_MIN` in the node table, lower levels recomputed from
//! the records' stored hashes. Any RFC 9162 proof range is a handful of
//! perfect subtrees (`range_hash_from_perfect`), so proofs cost O(log n)
//! lookups and never load the ledger.

use annal_chain::{Hash32, Subtrees, node_hash, range_hash_from_perfect};
use redb::{ReadableTable, StorageError};

use crate::codec;
use crate::error::{Corruption, ReadError};
use crate::limits::MERKLE_STORED_LEVEL_MIN;
use crate::tail::LedgerTail;

const GROUP_LEAVES: u64 = 1 << MERKLE_STORED_LEVEL_MIN;

/// Appends `leaf` to a compact range (`peaks`, largest first, of a tree of
/// `size` leaves), calling `completed(level, index, hash)` for every perfect
/// subtree the append completes, from the leaf (level 0) up.
pub(crate) fn append_leaf(
    size: u64,
    peaks: &mut Vec<Hash32>,
    leaf: Hash32,
    completed: &mut dyn FnMut(u32, u64, Hash32),
) {
    debug_assert_eq!(peaks.len(), size.count_ones() as usize);
    let mut hash = leaf;
    let mut level = 0u32;
    let mut bits = size;
    completed(0, size, hash);
    while bits & 1 == 1 {
        let left = peaks.pop().expect("a set bit has a peak");
        hash = node_hash(&left, &hash);
        bits >>= 1;
        level += 1;
        completed(level, size >> level, hash);
    }
    peaks.push(hash);
}

/// Whether a completed subtree is kept in the node table.
pub(crate) fn stored_level(level: u32) -> bool {
    level >= MERKLE_STORED_LEVEL_MIN
}

/// The `merkle_nodes_by_end` key of the perfect subtree `index` at `level`: ledger,
/// the seq of its last leaf, level. Nodes are keyed in the order appends
/// complete them, so a ledger's new nodes are one ascending run.
pub(crate) fn node_key(id: u64, level: u8, index: u64) -> (u64, u64, u8) {
    checked_node_key(id, level, index).expect("a stored subtree ends at a seq")
}

/// `node_key`, or `None` for a `(level, index)` no tree has.
pub(crate) fn checked_node_key(id: u64, level: u8, index: u64) -> Option<(u64, u64, u8)> {
    let end = index.checked_add(1)?.checked_mul(1u64.checked_shl(u32::from(level))?)?;
    Some((id, end - 1, level))
}

/// The stored hash of the perfect subtree `index` at stored `level` of
/// ledger `id`: from its tail if the tail completed it, else from the node
/// table.
pub(crate) fn stored_node<N>(
    nodes: &N,
    tail: Option<&LedgerTail>,
    id: u64,
    level: u8,
    index: u64,
) -> Result<Option<[u8; 32]>, StorageError>
where
    N: ReadableTable<(u64, u64, u8), [u8; 32]>,
{
    if let Some(h) = tail.and_then(|t| t.node(level, index)) {
        return Ok(Some(h));
    }
    Ok(nodes.get(node_key(id, level, index))?.map(|v| v.value()))
}

/// Proof source over one read (or write) transaction's tables and the
/// ledger's tail (records and nodes not yet in those tables).
pub(crate) struct TreeView<'a, R, N> {
    id: u64,
    tenant: &'a str,
    ledger: &'a str,
    records: &'a R,
    nodes: &'a N,
    tail: Option<&'a LedgerTail>,
    /// The last aligned leaf group read: (group start, its leaf hashes).
    groups: Vec<(u64, Vec<Hash32>)>,
    pub(crate) error: Option<ReadError>,
}

impl<'a, R, N> TreeView<'a, R, N>
where
    R: ReadableTable<(u64, u64), &'static [u8]>,
    N: ReadableTable<(u64, u64, u8), [u8; 32]>,
{
    pub(crate) fn new(
        id: u64,
        tenant: &'a str,
        ledger: &'a str,
        records: &'a R,
        nodes: &'a N,
        tail: Option<&'a LedgerTail>,
    ) -> Self {
        TreeView { id, tenant, ledger, records, nodes, tail, groups: Vec::with_capacity(2), error: None }
    }

    fn corrupt(&mut self, seq: u64, what: &'static str) -> Hash32 {
        if self.error.is_none() {
            self.error = Some(ReadError::Corrupt(Corruption {
                tenant: self.tenant.to_owned(),
                ledger: self.ledger.to_owned(),
                seq: Some(seq),
                what,
            }));
        }
        Hash32::ZERO
    }

    fn storage(&mut self, e: redb::StorageError) -> Hash32 {
        if self.error.is_none() {
            self.error = Some(ReadError::Failed(e.to_string()));
        }
        Hash32::ZERO
    }

    fn group(&mut self, start: u64) -> Result<usize, Hash32> {
        if let Some(i) = self.groups.iter().position(|(s, _)| *s == start) {
            return Ok(i);
        }
        let mut leaves = Vec::with_capacity(GROUP_LEAVES as usize);
        let end = start + GROUP_LEAVES;
        // Seqs from the tail's first are read from the tail.
        let split = self.tail.map_or(end, |t| t.first.clamp(start, end));
        let range = match self.records.range((self.id, start)..(self.id, split)) {
            Ok(r) => r,
            Err(e) => return Err(self.storage(e)),
        };
        for entry in range {
            let (key, value) = match entry {
                Ok(kv) => kv,
                Err(e) => return Err(self.storage(e)),
            };
            let seq = key.value().1;
            if seq != start + leaves.len() as u64 {
                return Err(self.corrupt(seq, "record missing under the tree"));
            }
            match codec::peek_hash(value.value()) {
                Some(h) => leaves.push(Hash32::from_bytes(h)),
                None => return Err(self.corrupt(seq, "record value too short")),
            }
        }
        if let Some(tail) = self.tail
            && leaves.len() as u64 == split - start
        {
            for seq in split..end {
                let Some(value) = tail.get(seq) else { break };
                match codec::peek_hash(value) {
                    Some(h) => leaves.push(Hash32::from_bytes(h)),
                    None => return Err(self.corrupt(seq, "record value too short")),
                }
            }
        }
        if self.groups.len() == 2 {
            self.groups.remove(0);
        }
        self.groups.push((start, leaves));
        Ok(self.groups.len() - 1)
    }

    /// The perfect subtree over leaves `[index << level, (index + 1) << level)`.
    pub(crate) fn perfect(&mut self, level: u32, index: u64) -> Hash32 {
        if self.error.is_some() {
            return Hash32::ZERO;
        }
        let first = index << level;
        if stored_level(level) {
            let level_u8 = u8::try_from(level).expect("tree levels fit u8");
            return match stored_node(self.nodes, self.tail, self.id, level_u8, index) {
                Ok(Some(h)) => Hash32::from_bytes(h),
                Ok(None) => self.corrupt(first, "merkle node missing"),
                Err(e) => self.storage(e),
            };
        }
        let start = first - first % GROUP_LEAVES;
        let g = match self.group(start) {
            Ok(g) => g,
            Err(h) => return h,
        };
        let offset = (first - start) as usize;
        let width = 1usize << level;
        let leaves = &self.groups[g].1;
        if leaves.len() < offset + width {
            return self.corrupt(
                first + leaves.len().saturating_sub(offset) as u64,
                "record missing under the tree",
            );
        }
        let mut layer: Vec<Hash32> = leaves[offset..offset + width].to_vec();
        while layer.len() > 1 {
            layer = layer.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        layer[0]
    }

    /// Root of the first `size` leaves (size ≥ 1).
    pub(crate) fn root(&mut self, size: u64) -> Hash32 {
        self.subtree(0, size)
    }
}

impl<R, N> Subtrees for TreeView<'_, R, N>
where
    R: ReadableTable<(u64, u64), &'static [u8]>,
    N: ReadableTable<(u64, u64, u8), [u8; 32]>,
{
    fn subtree(&mut self, start: u64, end: u64) -> Hash32 {
        range_hash_from_perfect(start, end, &mut |level, index| self.perfect(level, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annal_chain::{CompactRange, MemoryTree};

    #[test]
    fn node_keys_sort_by_last_leaf_and_refuse_impossible_subtrees() {
        assert_eq!(node_key(7, 4, 0), (7, 15, 4));
        assert_eq!(node_key(7, 5, 2), (7, 95, 5));
        // The subtrees an append completes share its seq and sort by level.
        assert!(node_key(7, 4, 5) < node_key(7, 5, 2) && node_key(7, 5, 2) < node_key(7, 4, 6));
        assert_eq!(checked_node_key(7, 4, u64::MAX >> 4), None);
        assert_eq!(checked_node_key(7, 64, 0), None);
        assert_eq!(checked_node_key(7, 63, 1), None);
        assert_eq!(checked_node_key(7, 63, 0), Some((7, u64::MAX >> 1, 63)));
    }

    #[test]
    fn append_leaf_matches_chain_and_reports_every_node() {
        let mut peaks = Vec::new();
        let mut compact = CompactRange::new();
        let mut tree = MemoryTree::new();
        let mut nodes = std::collections::HashMap::new();
        for i in 0..100u64 {
            let leaf = Hash32::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes());
            append_leaf(i, &mut peaks, leaf, &mut |l, idx, h| {
                nodes.insert((l, idx), h);
            });
            compact.append(leaf);
            tree.append(leaf);
            assert_eq!(peaks.as_slice(), compact.peaks());
        }
        for ((level, index), hash) in nodes {
            let (start, end) = (index << level, (index + 1) << level);
            let expected = range_hash_from_perfect(start, end, &mut |l, i| {
                // Level-0 "perfect subtrees" are leaves; compute higher ones from the tree.
                let s = i << l;
                let e = (i + 1) << l;
                if l == 0 { tree.leaf(s).unwrap() } else { subtree_of(&tree, s, e) }
            });
            assert_eq!(hash, expected, "node {level}/{index}");
        }
    }

    fn subtree_of(tree: &MemoryTree, start: u64, end: u64) -> Hash32 {
        let mut layer: Vec<Hash32> = (start..end).map(|i| tree.leaf(i).unwrap()).collect();
        while layer.len() > 1 {
            layer = layer.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        layer[0]
    }
}
