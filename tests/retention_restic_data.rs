//! Runs restic's own retention test suite (`TestApplyPolicy` and its golden files, copied to
//! `shared/restic-policy`) through `cairn::retention` and requires identical results: the same
//! kept snapshots in the same order, the same reason strings and the same counters.

use std::fs;
use std::path::{Path, PathBuf};

use cairn::commands::retention::{Duration, Policy, SnapshotInfo, apply_policy};
use chrono::DateTime;
use serde_json::{Map, Value, json};

fn data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/restic-policy");
    assert!(
        dir.is_dir(),
        "restic retention test data not found at {}; it is expected next to the repository \
         as shared/restic-policy",
        dir.display()
    );
    dir
}

fn load_json(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("invalid JSON in {}: {e}", path.display()))
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list of strings, got {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {s}"))
                .to_string()
        })
        .collect()
}

/// A snapshot as restic's test serialises it: `time`, `tree` (null), `paths`, then `tags` if
/// any. Built from the input data so it can be compared with the golden files as a whole.
fn restic_json(input: &Value) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), input["time"].clone());
    m.insert("tree".into(), Value::Null);
    m.insert(
        "paths".into(),
        input.get("paths").cloned().unwrap_or(Value::Null),
    );
    if let Some(tags) = input.get("tags")
        && !tags.as_array().is_some_and(|t| t.is_empty())
    {
        m.insert("tags".into(), tags.clone());
    }
    Value::Object(m)
}

fn policy_from_json(v: &Value) -> Policy {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("policy is not an object: {v}"));
    let mut p = Policy::default();
    for (key, value) in obj {
        let count = || {
            value
                .as_i64()
                .unwrap_or_else(|| panic!("{key} is not an integer: {value}"))
        };
        let duration = || {
            let s = value
                .as_str()
                .unwrap_or_else(|| panic!("{key} is not a string: {value}"));
            Some(
                s.parse::<Duration>()
                    .unwrap_or_else(|e| panic!("{key} = {s:?}: {e}")),
            )
        };
        match key.as_str() {
            "last" => p.last = count(),
            "hourly" => p.hourly = count(),
            "daily" => p.daily = count(),
            "weekly" => p.weekly = count(),
            "monthly" => p.monthly = count(),
            "yearly" => p.yearly = count(),
            "within" => p.within = duration(),
            "within_hourly" => p.within_hourly = duration(),
            "within_daily" => p.within_daily = duration(),
            "within_weekly" => p.within_weekly = duration(),
            "within_monthly" => p.within_monthly = duration(),
            "within_yearly" => p.within_yearly = duration(),
            "tags" => {
                p.tags = value
                    .as_array()
                    .unwrap_or_else(|| panic!("tags is not a list: {value}"))
                    .iter()
                    .map(string_list)
                    .collect()
            }
            other => panic!("unknown policy key {other:?} in policies.json"),
        }
    }
    p
}

#[test]
fn matches_restic_golden_files() {
    let dir = data_dir();

    let raw_snapshots = load_json(&dir.join("snapshots.json"));
    let raw_snapshots = raw_snapshots
        .as_array()
        .expect("snapshots.json is not a list");
    assert_eq!(raw_snapshots.len(), 103, "unexpected number of snapshots");
    let snapshots: Vec<SnapshotInfo> = raw_snapshots
        .iter()
        .map(|s| {
            let time = s["time"]
                .as_str()
                .unwrap_or_else(|| panic!("snapshot without time: {s}"));
            SnapshotInfo {
                time: DateTime::parse_from_rfc3339(time)
                    .unwrap_or_else(|e| panic!("bad time {time:?}: {e}")),
                tags: s.get("tags").map(string_list).unwrap_or_default(),
            }
        })
        .collect();

    let policies = load_json(&dir.join("policies.json"));
    let policies = policies.as_array().expect("policies.json is not a list");
    assert_eq!(policies.len(), 40, "unexpected number of policies");

    let mut failures = Vec::new();
    for (position, entry) in policies.iter().enumerate() {
        let n = entry["index"].as_u64().expect("policy without index");
        assert_eq!(n, position as u64, "policies.json is not in index order");
        let policy = policy_from_json(&entry["policy"]);
        let expected_path = dir.join(
            entry["expected"]
                .as_str()
                .expect("policy without expected file"),
        );
        let expected = load_json(&expected_path);

        let decision = apply_policy(&snapshots, &policy);

        // Every snapshot is decided exactly once.
        let mut all: Vec<usize> = decision
            .keep
            .iter()
            .chain(&decision.remove)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..snapshots.len()).collect::<Vec<_>>(),
            "policy {n}: keep and remove do not partition the input"
        );
        assert_eq!(
            decision.keep,
            decision.reasons.iter().map(|r| r.index).collect::<Vec<_>>(),
            "policy {n}: reasons are not aligned with keep"
        );

        let keep: Vec<Value> = decision
            .keep
            .iter()
            .map(|&i| restic_json(&raw_snapshots[i]))
            .collect();
        let reasons: Vec<Value> = decision
            .reasons
            .iter()
            .map(|r| {
                json!({
                    "snapshot": restic_json(&raw_snapshots[r.index]),
                    "matches": r.matches,
                    "counters": serde_json::to_value(r.counters).expect("counters serialise"),
                })
            })
            .collect();

        // restic writes `null` for an empty keep list and omits empty reasons.
        let expected_keep = match &expected["keep"] {
            Value::Null => Vec::new(),
            Value::Array(a) => a.clone(),
            other => panic!("policy {n}: unexpected keep {other}"),
        };
        let expected_reasons = match expected.get("reasons") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(other) => panic!("policy {n}: unexpected reasons {other}"),
        };

        if keep != expected_keep {
            failures.push(format!(
                "policy {n} ({}): kept {} snapshots, restic kept {}\n  ours:   {}\n  restic: {}",
                entry["policy"],
                keep.len(),
                expected_keep.len(),
                Value::Array(keep.clone()),
                Value::Array(expected_keep.clone()),
            ));
            continue;
        }
        if reasons.len() != expected_reasons.len() {
            failures.push(format!(
                "policy {n}: {} reasons, restic has {}",
                reasons.len(),
                expected_reasons.len()
            ));
            continue;
        }
        for (ours, theirs) in reasons.iter().zip(&expected_reasons) {
            if ours != theirs {
                failures.push(format!(
                    "policy {n} ({}): reason differs\n  ours:   {ours}\n  restic: {theirs}",
                    entry["policy"]
                ));
                break;
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} policies differ from restic:\n{}",
        failures.len(),
        policies.len(),
        failures.join("\n")
    );
}

/// The library keeps nothing for an empty policy (restic's `ApplyPolicy` does the same); the
/// command layer is responsible for turning that into a no-op.
#[test]
fn empty_policy_removes_everything_at_library_level() {
    let dir = data_dir();
    let raw = load_json(&dir.join("snapshots.json"));
    let snapshots: Vec<SnapshotInfo> = raw
        .as_array()
        .expect("snapshots.json is not a list")
        .iter()
        .map(|s| SnapshotInfo {
            time: DateTime::parse_from_rfc3339(s["time"].as_str().expect("time"))
                .expect("valid time"),
            tags: s.get("tags").map(string_list).unwrap_or_default(),
        })
        .collect();
    let policy = Policy::default();
    assert!(policy.is_empty());
    let decision = apply_policy(&snapshots, &policy);
    assert!(decision.keep.is_empty());
    assert!(decision.reasons.is_empty());
    assert_eq!(decision.remove.len(), snapshots.len());
}
