//! The sticky, balanced assignor: a pure function from members (their
//! subscriptions and what they owned) and topics to a new assignment.
//!
//! Guarantees, for any input:
//! * every partition of a subscribed topic goes to exactly one member
//!   subscribed to that topic (none if nobody is);
//! * a member keeps a partition it owned unless balance needs it elsewhere;
//! * no member could take a partition from another that holds two or more
//!   partitions more than it does (with equal subscriptions: counts differ
//!   by at most one);
//! * the result depends only on the input (members are visited by id), so
//!   every agent computes the same assignment.

use std::collections::BTreeMap;

use crate::values::TopicAssignment;

/// A member as the assignor sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub topics: &'a [String],
    pub owned: &'a [TopicAssignment],
}

/// A topic to distribute.
#[derive(Debug, Clone)]
pub struct TopicShape {
    pub name: String,
    pub id: u64,
    pub partitions: u32,
}

type Tp = (u64, u32);

/// Assigns every partition of `topics`; returns each member's share, keyed
/// by member id (members with nothing get an empty list).
pub fn assign(
    members: &[Candidate<'_>],
    topics: &[TopicShape],
) -> BTreeMap<String, Vec<TopicAssignment>> {
    let mut order: Vec<&Candidate<'_>> = members.iter().collect();
    order.sort_by(|a, b| a.id.cmp(b.id));
    let names: BTreeMap<u64, &TopicShape> = topics.iter().map(|t| (t.id, t)).collect();
    // Who may own each topic's partitions: indices into `order`.
    let eligible: BTreeMap<u64, Vec<usize>> = topics
        .iter()
        .map(|t| {
            let who = (0..order.len())
                .filter(|&i| order[i].topics.iter().any(|s| s == &t.name))
                .collect();
            (t.id, who)
        })
        .collect();
    let mut owner: BTreeMap<Tp, usize> = BTreeMap::new();
    let mut count = vec![0usize; order.len()];
    // 1. Stickiness: keep what is still valid.
    for (i, m) in order.iter().enumerate() {
        for a in m.owned {
            let Some(t) = names.get(&a.topic_id) else {
                continue;
            };
            if !eligible[&t.id].contains(&i) {
                continue;
            }
            for &p in &a.partitions {
                if p < t.partitions && !owner.contains_key(&(t.id, p)) {
                    owner.insert((t.id, p), i);
                    count[i] += 1;
                }
            }
        }
    }
    // 2. Unowned partitions go to the least loaded eligible member.
    for t in topics {
        let who = &eligible[&t.id];
        for p in 0..t.partitions {
            if owner.contains_key(&(t.id, p)) {
                continue;
            }
            if let Some(&i) = who.iter().min_by_key(|&&i| (count[i], i)) {
                owner.insert((t.id, p), i);
                count[i] += 1;
            }
        }
    }
    // 3. Balance: move a partition while its owner holds two or more than an
    // eligible member. Each move lowers the sum of squared counts, so this ends.
    loop {
        let mut moved = false;
        for (tp, i) in owner.iter_mut() {
            let who = &eligible[&tp.0];
            let Some(&j) = who.iter().min_by_key(|&&j| (count[j], j)) else {
                continue;
            };
            if count[*i] > count[j] + 1 {
                count[*i] -= 1;
                count[j] += 1;
                *i = j;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Vec<TopicAssignment>> = order
        .iter()
        .map(|m| (m.id.to_owned(), Vec::new()))
        .collect();
    for ((topic_id, p), i) in owner {
        let list = out.entry(order[i].id.to_owned()).or_default();
        match list.last_mut() {
            Some(a) if a.topic_id == topic_id => a.partitions.push(p),
            _ => list.push(TopicAssignment {
                topic: names[&topic_id].name.clone(),
                topic_id,
                partitions: vec![p],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shape(name: &str, id: u64, partitions: u32) -> TopicShape {
        TopicShape {
            name: name.into(),
            id,
            partitions,
        }
    }

    fn counts(a: &BTreeMap<String, Vec<TopicAssignment>>) -> Vec<usize> {
        a.values()
            .map(|l| l.iter().map(|t| t.partitions.len()).sum())
            .collect()
    }

    #[test]
    fn twelve_partitions_over_three_members_then_two() {
        let subs = vec!["t".to_owned()];
        let topics = [shape("t", 1, 12)];
        let members: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|id| Candidate {
                id,
                topics: &subs,
                owned: &[],
            })
            .collect();
        let first = assign(&members, &topics);
        assert_eq!(counts(&first), [4, 4, 4]);
        // "b" leaves: a and c keep all they had and split b's four.
        let rest: Vec<_> = ["a", "c"]
            .iter()
            .map(|id| Candidate {
                id,
                topics: &subs,
                owned: &first[*id],
            })
            .collect();
        let second = assign(&rest, &topics);
        assert_eq!(counts(&second), [6, 6]);
        for id in ["a", "c"] {
            for p in &first[id][0].partitions {
                assert!(second[id][0].partitions.contains(p), "{id} kept {p}");
            }
        }
    }

    proptest! {
        #[test]
        fn every_partition_has_exactly_one_eligible_owner_and_load_is_balanced(
            n_members in 1usize..8,
            parts in proptest::collection::vec(1u32..20, 1..4),
            subs_mask in proptest::collection::vec(1u8..8, 8),
            prev_seed in any::<u64>(),
        ) {
            let topics: Vec<TopicShape> = parts.iter().enumerate()
                .map(|(i, &p)| shape(&format!("t{i}"), i as u64 + 10, p)).collect();
            let ids: Vec<String> = (0..n_members).map(|i| format!("m{i}")).collect();
            let subs: Vec<Vec<String>> = (0..n_members).map(|i| {
                topics.iter().enumerate()
                    .filter(|(j, _)| subs_mask[i] & (1 << (j % 3)) != 0)
                    .map(|(_, t)| t.name.clone()).collect()
            }).collect();
            // An arbitrary (even overlapping, invalid) previous assignment.
            let prev: Vec<Vec<TopicAssignment>> = (0..n_members).map(|i| {
                topics.iter().map(|t| TopicAssignment {
                    topic: t.name.clone(), topic_id: t.id,
                    partitions: (0..t.partitions + 2).filter(|p| (prev_seed >> ((p + i as u32) % 60)) & 1 == 1).collect(),
                }).collect()
            }).collect();
            let members: Vec<Candidate<'_>> = (0..n_members).map(|i| Candidate {
                id: &ids[i], topics: &subs[i], owned: &prev[i],
            }).collect();
            let out = assign(&members, &topics);
            let mut seen = BTreeMap::new();
            for (id, list) in &out {
                let i: usize = id[1..].parse().unwrap();
                for a in list {
                    prop_assert!(subs[i].contains(&a.topic), "only subscribers own a topic");
                    for &p in &a.partitions {
                        prop_assert!(seen.insert((a.topic_id, p), i).is_none(), "one owner");
                    }
                }
            }
            for t in &topics {
                let anyone = subs.iter().any(|s| s.contains(&t.name));
                for p in 0..t.partitions {
                    prop_assert_eq!(seen.contains_key(&(t.id, p)), anyone);
                }
            }
            // No member could take a partition from one holding 2+ more.
            let load: Vec<usize> = (0..n_members)
                .map(|i| seen.values().filter(|&&o| o == i).count()).collect();
            for (&(tid, _), &o) in &seen {
                let name = &topics.iter().find(|t| t.id == tid).unwrap().name;
                for j in 0..n_members {
                    if subs[j].contains(name) {
                        prop_assert!(load[o] <= load[j] + 1);
                    }
                }
            }
            // Deterministic.
            prop_assert_eq!(assign(&members, &topics), out);
        }
    }
}
