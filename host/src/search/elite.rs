//! The elite buffer of the `releq` strategy: the best `capacity` distinct
//! episodes seen so far (by final reward, distinct by their actions), for
//! self-imitation ([`super::agent::PpoAgent::update_with_elite`]). The agent
//! is pushed towards what it already found best, so its sampling noise
//! explores the neighbourhood of the best configurations.

use super::agent::Episode;

/// The best distinct episodes so far, best first.
#[derive(Debug, Clone, Default)]
pub struct EliteBuffer {
    capacity: usize,
    /// (reward, episode), sorted by decreasing reward.
    items: Vec<(f64, Episode)>,
}

impl EliteBuffer {
    /// An empty buffer keeping at most `capacity` episodes (0: keeps nothing).
    pub fn new(capacity: usize) -> Self {
        Self { capacity, items: Vec::with_capacity(capacity + 1) }
    }

    /// Offer an episode with its configuration's reward. Kept if it is among
    /// the best `capacity` and no kept episode took the same actions.
    pub fn offer(&mut self, reward: f64, episode: &Episode) {
        if self.capacity == 0 || self.items.iter().any(|(_, e)| e.actions == episode.actions) {
            return;
        }
        if self.items.len() == self.capacity && self.items.last().is_some_and(|(r, _)| *r >= reward) {
            return;
        }
        let at = self.items.partition_point(|(r, _)| *r >= reward);
        self.items.insert(at, (reward, episode.clone()));
        self.items.truncate(self.capacity);
    }

    /// The kept episodes, best first.
    pub fn episodes(&self) -> Vec<Episode> {
        self.items.iter().map(|(_, e)| e.clone()).collect()
    }

    /// Most episodes kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(actions: &[usize]) -> Episode {
        Episode { actions: actions.to_vec(), ..Episode::default() }
    }

    #[test]
    fn keeps_best_distinct() {
        let mut b = EliteBuffer::new(2);
        b.offer(0.1, &ep(&[1]));
        b.offer(0.5, &ep(&[2]));
        b.offer(0.9, &ep(&[2]));
        assert_eq!(b.len(), 2, "a repeat is not kept twice");
        b.offer(0.3, &ep(&[3]));
        b.offer(0.0, &ep(&[4]));
        let kept: Vec<Vec<usize>> = b.episodes().into_iter().map(|e| e.actions).collect();
        assert_eq!(kept, vec![vec![2], vec![3]]);
        b.clear();
        assert!(b.is_empty());
        let mut none = EliteBuffer::new(0);
        none.offer(1.0, &ep(&[1]));
        assert!(none.is_empty());
    }
}
