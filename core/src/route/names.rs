//! Server-name indexes: exact names in a hash map, `*.suffix` names in a reversed-label trie.
//! A lookup costs about the length of the name, however many names the rules list.

use super::hasher::FastMap;

/// Names longer than this are lowercased on the heap (DNS names are at most 253 bytes).
const STACK_NAME: usize = 256;

/// Labels read right to left: `a.b.example.com` walks `com`, `example`, `b`, `a`.
#[derive(Debug, Default)]
struct LabelTrie {
    /// Node 0 is the root.
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Default)]
struct TrieNode {
    children: FastMap<Box<[u8]>, u32>,
    /// Atoms whose `*.suffix` ends at this node.
    atoms: Vec<u32>,
}

impl LabelTrie {
    fn insert(&mut self, suffix: &[u8], atom: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut node = 0usize;
        for label in suffix.rsplit(|&b| b == b'.') {
            let next = self.nodes.len() as u32;
            let child = *self.nodes[node]
                .children
                .entry(label.into())
                .or_insert(next);
            if child == next {
                self.nodes.push(TrieNode::default());
            }
            node = child as usize;
        }
        let atoms = &mut self.nodes[node].atoms;
        if !atoms.contains(&atom) {
            atoms.push(atom);
        }
    }

    /// Calls `hit` with the atoms of every suffix of `name` that leaves at least one label.
    fn walk(&self, name: &[u8], hit: &mut impl FnMut(u32)) {
        if self.nodes.is_empty() {
            return;
        }
        let mut node = 0usize;
        let mut end = name.len();
        loop {
            let start = name[..end]
                .iter()
                .rposition(|&b| b == b'.')
                .map_or(0, |i| i + 1);
            let Some(&child) = self.nodes[node].children.get(&name[start..end]) else {
                return;
            };
            node = child as usize;
            if start == 0 {
                return;
            }
            self.nodes[node].atoms.iter().for_each(|&a| hit(a));
            end = start - 1;
        }
    }
}

/// Every exact and wildcard server name of a rule set, case-folded or not.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    exact_folded: FastMap<Box<[u8]>, Vec<u32>>,
    exact_cased: FastMap<Box<[u8]>, Vec<u32>>,
    wild_folded: LabelTrie,
    wild_cased: LabelTrie,
    has_cased: bool,
    has_wild: bool,
}

impl NameIndex {
    /// Adds an exact name for `atom`.
    pub fn add_exact(&mut self, name: &str, ignore_case: bool, atom: u32) {
        let (map, key) = if ignore_case {
            (&mut self.exact_folded, name.to_ascii_lowercase())
        } else {
            self.has_cased = true;
            (&mut self.exact_cased, name.to_string())
        };
        let atoms = map.entry(key.into_bytes().into()).or_default();
        if !atoms.contains(&atom) {
            atoms.push(atom);
        }
    }

    /// Adds `*.suffix` for `atom`.
    pub fn add_wildcard(&mut self, suffix: &str, ignore_case: bool, atom: u32) {
        self.has_wild = true;
        if ignore_case {
            self.wild_folded
                .insert(suffix.to_ascii_lowercase().as_bytes(), atom);
        } else {
            self.has_cased = true;
            self.wild_cased.insert(suffix.as_bytes(), atom);
        }
    }

    /// Calls `hit` with every atom `name` matches.
    pub fn lookup(&self, name: &[u8], hit: &mut impl FnMut(u32)) {
        let mut stack = [0u8; STACK_NAME];
        let heap;
        let folded: &[u8] = if name.len() <= STACK_NAME {
            let buf = &mut stack[..name.len()];
            buf.copy_from_slice(name);
            buf.make_ascii_lowercase();
            buf
        } else {
            heap = name.to_ascii_lowercase();
            &heap
        };
        if let Some(atoms) = self.exact_folded.get(folded) {
            atoms.iter().for_each(|&a| hit(a));
        }
        if self.has_wild {
            self.wild_folded.walk(folded, hit);
        }
        if self.has_cased {
            if let Some(atoms) = self.exact_cased.get(name) {
                atoms.iter().for_each(|&a| hit(a));
            }
            self.wild_cased.walk(name, hit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(ix: &NameIndex, name: &str) -> Vec<u32> {
        let mut v = Vec::new();
        ix.lookup(name.as_bytes(), &mut |a| v.push(a));
        v.sort_unstable();
        v
    }

    #[test]
    fn exact_and_wildcard_names_fold_case_when_asked() {
        let mut ix = NameIndex::default();
        ix.add_exact("API.example.com", true, 1);
        ix.add_exact("Cased.example", false, 2);
        ix.add_wildcard("example.com", true, 3);
        ix.add_wildcard("b.example.com", true, 4);
        ix.add_wildcard("Up.example", false, 5);
        assert_eq!(hits(&ix, "api.EXAMPLE.com"), [1, 3]);
        assert_eq!(hits(&ix, "Cased.example"), [2]);
        assert_eq!(hits(&ix, "cased.example"), Vec::<u32>::new());
        assert_eq!(hits(&ix, "x.b.example.com"), [3, 4]);
        assert_eq!(hits(&ix, "b.example.com"), [3]);
        assert_eq!(hits(&ix, "example.com"), Vec::<u32>::new());
        assert_eq!(hits(&ix, "x.Up.example"), [5]);
        assert_eq!(hits(&ix, "x.up.example"), Vec::<u32>::new());
        assert_eq!(hits(&ix, ""), Vec::<u32>::new());
        assert_eq!(hits(&ix, ".example.com"), [3], "an empty label is a label");
        let long = format!("{}.example.com", "a".repeat(300));
        assert_eq!(hits(&ix, &long), [3]);
    }
}
