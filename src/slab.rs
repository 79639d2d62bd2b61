//! A slab of values addressed by index, with a generation per slot so that
//! an event for a closed connection never reaches the one that reused its
//! slot. Freed slots are reused, so after warm-up inserting allocates nothing.
#![forbid(unsafe_code)]

pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

struct Slot<T> {
    gen: u32,
    value: Option<T>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`; returns its index and generation.
    pub fn insert(&mut self, value: T) -> (u32, u32) {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            let slot = &mut self.slots[i as usize];
            slot.gen = slot.gen.wrapping_add(1);
            slot.value = Some(value);
            (i, slot.gen)
        } else {
            self.slots.push(Slot {
                gen: 0,
                value: Some(value),
            });
            ((self.slots.len() - 1) as u32, 0)
        }
    }

    pub fn remove(&mut self, i: u32) -> Option<T> {
        let v = self.slots.get_mut(i as usize)?.value.take()?;
        self.free.push(i);
        self.len -= 1;
        Some(v)
    }

    #[inline]
    pub fn get(&self, i: u32) -> Option<&T> {
        self.slots.get(i as usize)?.value.as_ref()
    }

    #[inline]
    pub fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.slots.get_mut(i as usize)?.value.as_mut()
    }

    /// The value at `i` only if its generation is still `gen`.
    #[inline]
    pub fn get_mut_gen(&mut self, i: u32, gen: u32) -> Option<&mut T> {
        let s = self.slots.get_mut(i as usize)?;
        if s.gen == gen {
            s.value.as_mut()
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Indices of occupied slots.
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, _)| i as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_tell_reused_slots_apart() {
        let mut s = Slab::default();
        let (a, ga) = s.insert("a");
        s.remove(a);
        let (b, gb) = s.insert("b");
        assert_eq!(a, b);
        assert_ne!(ga, gb);
        assert!(s.get_mut_gen(a, ga).is_none());
        assert_eq!(s.get_mut_gen(b, gb), Some(&mut "b"));
        assert_eq!(s.len(), 1);
    }
}
