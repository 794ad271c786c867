//! The hash chain: each record is chained to the one before it in its chain
//! by SHA-256 over (the previous hash || the record's canonical bytes), and
//! the first record of a chain to a hash of the chain's id, so records cannot
//! be moved between chains either. Everything here is pure, so that the
//! rules of verification are tested without a store.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A record sealed into its chain, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The chain (a writer's lane).
    pub chain: String,
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When it was written, ms since the epoch.
    pub at: i64,
    /// What happened (`notice.created`, `delivery.sent`, `consent.refused`, …).
    pub kind: String,
    /// Purpose of processing, for exports.
    pub purpose: Option<String>,
    /// The person's pseudonym.
    pub subject_ref: Option<String>,
    /// The notice concerned.
    pub notice_id: Option<String>,
    /// The canonical bytes the hash covers (every field above, and the detail).
    pub record: String,
    /// Hash of the record before (hex).
    pub prev_hash: String,
    /// This record's hash (hex).
    pub hash: String,
}

/// What a record says, before it is sealed: persons already pseudonymised.
#[derive(Clone, Debug)]
pub struct Fields {
    /// When, ms since the epoch.
    pub at: i64,
    /// What happened.
    pub kind: String,
    /// Purpose of processing.
    pub purpose: Option<String>,
    /// The person's pseudonym.
    pub subject_ref: Option<String>,
    /// The notice concerned.
    pub notice_id: Option<String>,
    /// Everything else (no raw personal codes).
    pub detail: Value,
}

/// The hash a chain's first record follows.
pub fn genesis(chain: &str) -> [u8; 32] {
    Sha256::digest(format!("proactive-audit-v1\n{chain}").as_bytes()).into()
}

/// SHA-256(previous hash || record bytes).
pub fn link(prev: &[u8; 32], record: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(record.as_bytes());
    h.finalize().into()
}

/// JSON with object keys sorted and no whitespace: the same value always
/// gives the same bytes, whatever order a map was built in.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The canonical bytes of a record at `seq` of `chain`.
pub fn record_bytes(chain: &str, seq: i64, f: &Fields) -> String {
    canonical_json(&serde_json::json!({
        "v": 1,
        "chain": chain,
        "seq": seq,
        "at": f.at,
        "kind": f.kind,
        "purpose": f.purpose,
        "subject": f.subject_ref,
        "notice": f.notice_id,
        "detail": f.detail,
    }))
}

/// One writer's chain as it stands: the next record follows `head` at `seq + 1`.
#[derive(Clone, Debug)]
pub struct Lane {
    /// Chain id.
    pub chain: String,
    /// Last sequence number written (0 for a new chain).
    pub seq: i64,
    /// Hash of the last record (the genesis hash for a new chain).
    pub head: [u8; 32],
}

impl Lane {
    /// A new, empty chain.
    pub fn new(chain: String) -> Lane {
        let head = genesis(&chain);
        Lane { chain, seq: 0, head }
    }

    /// Seals records onto the chain, advancing it.
    pub fn seal(&mut self, records: Vec<Fields>) -> Vec<Sealed> {
        records
            .into_iter()
            .map(|f| {
                self.seq += 1;
                let record = record_bytes(&self.chain, self.seq, &f);
                let prev = self.head;
                self.head = link(&prev, &record);
                Sealed {
                    chain: self.chain.clone(),
                    seq: self.seq,
                    at: f.at,
                    kind: f.kind,
                    purpose: f.purpose,
                    subject_ref: f.subject_ref,
                    notice_id: f.notice_id,
                    record,
                    prev_hash: hex::encode(prev),
                    hash: hex::encode(self.head),
                }
            })
            .collect()
    }
}

/// What is wrong with a chain, at its first broken record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The record's bytes no longer give its hash: it was edited.
    Edited {
        /// What differs.
        detail: String,
    },
    /// Records are missing before this one: deleted.
    Deleted {
        /// First missing sequence number.
        from: i64,
        /// Last missing sequence number.
        to: i64,
    },
    /// The record was written at another position, or does not follow the record before it: reordered (or inserted).
    Reordered {
        /// What differs.
        detail: String,
    },
    /// The chain has records but its head row is gone, so a deletion at its end could not be seen.
    Headless,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Edited { detail } => write!(f, "hash mismatch: the record was edited ({detail})"),
            Problem::Deleted { from, to } if from == to => write!(f, "gap in sequence: record {from} was deleted"),
            Problem::Deleted { from, to } => write!(f, "gap in sequence: records {from} to {to} were deleted"),
            Problem::Reordered { detail } => write!(f, "out of order: the record was moved ({detail})"),
            Problem::Headless => write!(f, "the chain's head row (audit_chains) was deleted"),
        }
    }
}

/// The first broken record of one chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Break {
    /// Chain id.
    pub chain: String,
    /// Sequence number where it breaks.
    pub seq: i64,
    /// What is wrong.
    #[serde(flatten)]
    pub problem: Problem,
}

/// Walks one chain's records (in stored sequence order, possibly in pages)
/// and stops at the first broken one.
#[derive(Debug)]
pub struct Walker {
    chain: String,
    expect_seq: i64,
    prev: [u8; 32],
    /// Records checked so far.
    pub checked: u64,
}

impl Walker {
    /// A walk from the start of `chain`.
    pub fn new(chain: &str) -> Walker {
        Walker { chain: chain.to_string(), expect_seq: 1, prev: genesis(chain), checked: 0 }
    }

    fn broken(&self, seq: i64, problem: Problem) -> Break {
        Break { chain: self.chain.clone(), seq, problem }
    }

    /// Checks the next stored record.
    pub fn step(&mut self, r: &Sealed) -> Result<(), Break> {
        if r.seq > self.expect_seq {
            return Err(self.broken(self.expect_seq, Problem::Deleted { from: self.expect_seq, to: r.seq - 1 }));
        }
        let stated: Option<Value> = serde_json::from_str(&r.record).ok();
        let said = |k: &str| stated.as_ref().and_then(|v| v.get(k)).cloned().unwrap_or(Value::Null);
        // Bytes that were written at another position still hash right; the
        // position they name gives them away.
        if r.hash == hex::encode(link(&decode(&r.prev_hash), &r.record))
            && (said("seq") != r.seq || said("chain") != r.chain.as_str())
        {
            return Err(self.broken(
                r.seq,
                Problem::Reordered {
                    detail: format!("stored at {} but written as {} of {}", r.seq, said("seq"), said("chain")),
                },
            ));
        }
        if r.hash != hex::encode(link(&decode(&r.prev_hash), &r.record)) {
            return Err(self.broken(r.seq, Problem::Edited { detail: "its bytes do not give its hash".into() }));
        }
        let columns = [
            ("at", Value::from(r.at)),
            ("kind", Value::from(r.kind.clone())),
            ("purpose", r.purpose.clone().map_or(Value::Null, Value::from)),
            ("subject", r.subject_ref.clone().map_or(Value::Null, Value::from)),
            ("notice", r.notice_id.clone().map_or(Value::Null, Value::from)),
        ];
        for (k, v) in columns {
            if said(k) != v {
                return Err(self.broken(
                    r.seq,
                    Problem::Edited { detail: format!("column {k} is {v} but the record says {}", said(k)) },
                ));
            }
        }
        if decode(&r.prev_hash) != self.prev {
            return Err(self.broken(
                r.seq,
                Problem::Reordered { detail: "it does not follow the record stored before it".into() },
            ));
        }
        self.prev = decode(&r.hash);
        self.expect_seq = r.seq + 1;
        self.checked += 1;
        Ok(())
    }

    /// Checks the end of the chain against its recorded head.
    pub fn finish(&self, head_seq: i64, head_hash: &str) -> Result<(), Break> {
        let last = self.expect_seq - 1;
        if head_seq > last {
            return Err(self.broken(last + 1, Problem::Deleted { from: last + 1, to: head_seq }));
        }
        if head_seq == last && head_seq > 0 && hex::encode(self.prev) != head_hash {
            return Err(self.broken(
                last,
                Problem::Edited { detail: "the chain's last record is not the one its head names".into() },
            ));
        }
        Ok(())
    }
}

fn decode(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(b) = hex::decode(h)
        && b.len() == 32
    {
        out.copy_from_slice(&b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(kind: &str, n: i64) -> Fields {
        Fields {
            at: 1_700_000_000_000 + n,
            kind: kind.into(),
            purpose: Some("birth".into()),
            subject_ref: Some(format!("ps_{n}")),
            notice_id: Some(format!("n{n}")),
            detail: serde_json::json!({ "b": n, "a": [1, {"z": 1, "y": 2}] }),
        }
    }

    fn chain(n: i64) -> Vec<Sealed> {
        Lane::new("w-test-1".into()).seal((1..=n).map(|i| fields("notice.created", i)).collect())
    }

    fn walk(rows: &[Sealed], head: (i64, &str)) -> Result<u64, Break> {
        let mut w = Walker::new("w-test-1");
        for r in rows {
            w.step(r)?;
        }
        w.finish(head.0, head.1)?;
        Ok(w.checked)
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"y":1,"x":2}],"c":"é"}}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"c":"é","d":[{"x":2,"y":1}]},"b":1}"#);
    }

    #[test]
    fn each_hash_is_sha256_over_the_previous_hash_and_the_record() {
        let rows = chain(3);
        assert_eq!(rows[0].prev_hash, hex::encode(genesis("w-test-1")));
        for w in rows.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        let mut h = Sha256::new();
        h.update(hex::decode(&rows[1].prev_hash).unwrap());
        h.update(rows[1].record.as_bytes());
        assert_eq!(rows[1].hash, hex::encode(h.finalize()));
        assert!(rows[1].record.contains(r#""seq":2"#) && rows[1].record.contains(r#""chain":"w-test-1""#));
        // The same records sealed again give the same hashes: nothing random goes in.
        assert_eq!(chain(3), rows);
        // Another chain with the same records gives other hashes.
        let other = Lane::new("w-test-2".into()).seal(vec![fields("notice.created", 1)]);
        assert_ne!(other[0].hash, rows[0].hash);
    }

    #[test]
    fn an_intact_chain_verifies_and_sealing_in_two_commits_is_one_chain() {
        let mut lane = Lane::new("w-test-1".into());
        let mut rows = lane.seal(vec![fields("a", 1), fields("b", 2)]);
        rows.extend(lane.seal(vec![fields("c", 3)]));
        assert_eq!(rows, Lane::new("w-test-1".into()).seal(vec![fields("a", 1), fields("b", 2), fields("c", 3)]));
        let head = rows[2].hash.clone();
        assert_eq!(walk(&rows, (3, &head)), Ok(3));
    }

    #[test]
    fn an_edit_a_deletion_and_a_reordering_are_each_named_at_the_first_broken_record() {
        let rows = chain(5);
        let head = rows[4].hash.clone();

        let mut edited = rows.clone();
        edited[2].record = edited[2].record.replace("notice.created", "notice.withdrawn");
        let b = walk(&edited, (5, &head)).unwrap_err();
        assert_eq!((b.seq, matches!(b.problem, Problem::Edited { .. })), (3, true), "{b:?}");

        let mut column = rows.clone();
        column[1].purpose = Some("death".into());
        let b = walk(&column, (5, &head)).unwrap_err();
        assert_eq!(b.seq, 2);
        assert!(b.problem.to_string().contains("column purpose"), "{}", b.problem);

        let mut deleted = rows.clone();
        deleted.remove(1);
        let b = walk(&deleted, (5, &head)).unwrap_err();
        assert_eq!(b, Break { chain: "w-test-1".into(), seq: 2, problem: Problem::Deleted { from: 2, to: 2 } });

        let b = walk(&rows[..4], (5, &head)).unwrap_err();
        assert_eq!(b.problem, Problem::Deleted { from: 5, to: 5 }, "a deleted last record is found by the head");

        // Swapping the positions of records 2 and 3 (their seq columns).
        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        swapped[1].seq = 2;
        swapped[2].seq = 3;
        let b = walk(&swapped, (5, &head)).unwrap_err();
        assert_eq!((b.seq, matches!(b.problem, Problem::Reordered { .. })), (2, true), "{b:?}");
        assert!(b.problem.to_string().contains("written as 3"), "{}", b.problem);
    }

    #[test]
    fn a_record_rehashed_after_an_edit_still_breaks_the_link_to_the_next() {
        let mut rows = chain(3);
        rows[1].record = rows[1].record.replace(r#""b":2"#, r#""b":9"#);
        rows[1].hash = hex::encode(link(&decode(&rows[1].prev_hash), &rows[1].record));
        let head = rows[2].hash.clone();
        let b = walk(&rows, (3, &head)).unwrap_err();
        assert_eq!(b.seq, 3, "the record after the rewritten one no longer follows it: {b:?}");
    }
}
