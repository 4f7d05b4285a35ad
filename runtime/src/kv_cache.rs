//! The key/value cache: per layer, one row of `kv_width` f32 per position for K and for V.

/// Keys and values of every position processed so far, for every layer.
pub struct KvCache {
    kv_width: usize,
    capacity: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `n_layers` layers holding up to `capacity` positions. The room is
    /// reserved up front where the system grants it (address space only: memory is committed
    /// as positions are written), so appending does not move the cache; where it does not,
    /// the cache grows as it fills.
    pub fn new(n_layers: usize, kv_width: usize, capacity: usize) -> KvCache {
        let room = || {
            (0..n_layers)
                .map(|_| {
                    let mut v = Vec::new();
                    // A refusal only means the vector grows on demand.
                    let _ = v.try_reserve_exact(capacity.saturating_mul(kv_width));
                    v
                })
                .collect()
        };
        KvCache {
            kv_width,
            capacity,
            keys: room(),
            values: room(),
            len: 0,
        }
    }

    /// Positions stored (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of positions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Width of one position's K or V.
    pub fn kv_width(&self) -> usize {
        self.kv_width
    }

    /// Appends `k` and `v` (each `tokens × kv_width`) to `layer`. The layer must be at `self.len()`
    /// positions before the call; [`KvCache::advance`] moves the shared length once all layers are
    /// written.
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        debug_assert_eq!(self.keys[layer].len(), self.len * self.kv_width);
        self.keys[layer].extend_from_slice(k);
        self.values[layer].extend_from_slice(v);
    }

    /// Keys of `layer` for positions `0..n` (row-major).
    pub fn keys(&self, layer: usize, n: usize) -> &[f32] {
        &self.keys[layer][..n * self.kv_width]
    }

    /// Values of `layer` for positions `0..n` (row-major).
    pub fn values(&self, layer: usize, n: usize) -> &[f32] {
        &self.values[layer][..n * self.kv_width]
    }

    /// Marks `tokens` more positions as stored.
    pub fn advance(&mut self, tokens: usize) {
        self.len += tokens;
    }

    /// Drops every position at or after `len` (e.g. to rewind a conversation).
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.len);
        for l in 0..self.keys.len() {
            self.keys[l].truncate(len * self.kv_width);
            self.values[l].truncate(len * self.kv_width);
        }
        self.len = len;
    }
}
