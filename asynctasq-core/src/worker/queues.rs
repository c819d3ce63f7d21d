//! Choosing which queue to take tasks from: strict or weighted priority.

use crate::envelope::{excerpt, validate_queue_name};
use crate::error::WorkerError;

/// How a worker orders its queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Priority {
    /// Always take from the first queue that has ready tasks, in the order given: a lower queue
    /// runs only while every higher one is empty.
    #[default]
    Strict,
    /// Share fetches in proportion to weights (smooth weighted round-robin): every queue with
    /// ready tasks gets its share, so none starves, and an empty queue's share goes to the rest.
    Weighted,
}

/// One queue and its weight (weights matter only with [`Priority::Weighted`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue name.
    pub name: String,
    /// Its weight, at least 1.
    pub weight: u32,
}

impl QueueSpec {
    /// Parses `name` or `name:weight`.
    pub fn parse(spec: &str) -> Result<Self, WorkerError> {
        let bad = |reason: String| WorkerError::QueueSpec { spec: excerpt(spec), reason };
        let (name, weight) = match spec.trim().split_once(':') {
            None => (spec.trim(), 1),
            Some((name, w)) => {
                let weight: u32 = w.trim().parse().map_err(|_| bad(format!("weight `{}` is not a whole number", excerpt(w))))?;
                if weight == 0 {
                    return Err(bad("weight must be at least 1".into()));
                }
                (name.trim(), weight)
            }
        };
        validate_queue_name(name).map_err(|e| {
            bad(match e {
                crate::DriverError::Config(m) => m,
                other => other.to_string(),
            })
        })?;
        Ok(Self { name: name.to_owned(), weight })
    }

    /// Parses a comma-separated list such as `high,default,low` or `high:6,default:3,low:1`.
    /// Returns the specs and [`Priority::Weighted`] when any weight is given.
    pub fn parse_list(list: &str) -> Result<(Vec<Self>, Priority), WorkerError> {
        let specs = list.split(',').filter(|s| !s.trim().is_empty()).map(Self::parse).collect::<Result<Vec<_>, _>>()?;
        if specs.is_empty() {
            return Err(WorkerError::NoQueues);
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = specs.iter().find(|s| !seen.insert(s.name.as_str())) {
            return Err(WorkerError::QueueSpec { spec: excerpt(list), reason: format!("queue `{}` is listed twice", excerpt(&dup.name)) });
        }
        let weighted = list.contains(':');
        Ok((specs, if weighted { Priority::Weighted } else { Priority::Strict }))
    }
}

/// Produces, for each fetch, the order in which to try the queues.
#[derive(Debug)]
pub(crate) struct QueueOrder {
    specs: Vec<QueueSpec>,
    priority: Priority,
    /// Smooth weighted round-robin state, one entry per queue.
    current: Vec<i64>,
}

impl QueueOrder {
    pub(crate) fn new(specs: Vec<QueueSpec>, priority: Priority) -> Self {
        let current = vec![0; specs.len()];
        Self { specs, priority, current }
    }

    pub(crate) fn name(&self, i: usize) -> &str {
        &self.specs[i].name
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn specs(&self) -> &[QueueSpec] {
        &self.specs
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn priority(&self) -> Priority {
        self.priority
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    /// Queue indexes in the order to try for the next fetch.
    pub(crate) fn next(&mut self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.specs.len()).collect();
        if self.priority == Priority::Strict || self.specs.len() == 1 {
            return order;
        }
        // Smooth weighted round-robin (as in nginx): the pick rotates through the queues in
        // proportion to their weights; the rest follow by weight to fill the batch.
        let total: i64 = self.specs.iter().map(|s| i64::from(s.weight)).sum();
        for (c, s) in self.current.iter_mut().zip(&self.specs) {
            *c += i64::from(s.weight);
        }
        let pick = (0..self.specs.len()).max_by_key(|&i| (self.current[i], std::cmp::Reverse(i))).unwrap_or(0);
        self.current[pick] -= total;
        order.sort_by_key(|&i| (i != pick, std::cmp::Reverse(self.specs[i].weight), i));
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_order_picks_each_queue_in_proportion() {
        let (specs, priority) = QueueSpec::parse_list("high:6,default:3,low:1").expect("valid");
        assert_eq!(priority, Priority::Weighted);
        let mut order = QueueOrder::new(specs, priority);
        let mut firsts = [0; 3];
        for _ in 0..100 {
            firsts[order.next()[0]] += 1;
        }
        assert_eq!(firsts, [60, 30, 10]);
    }

    #[test]
    fn strict_order_is_the_given_order() {
        let (specs, priority) = QueueSpec::parse_list("high,default,low").expect("valid");
        assert_eq!(priority, Priority::Strict);
        let mut order = QueueOrder::new(specs, priority);
        assert!((0..10).all(|_| order.next() == vec![0, 1, 2]));
    }

    #[test]
    fn malformed_queue_specs_are_named_in_the_error() {
        for bad in ["high:0", "high:x", "", "a,a", "bad name", "x:1:2"] {
            let err = QueueSpec::parse_list(bad).expect_err("must be rejected");
            assert!(!err.to_string().is_empty());
        }
    }
}
