//! Fuzzes the resource-map parser (shared/src/resources/map.rs): `.gandalf/resources.toml` comes
//! from the pull request being verified, so its author controls every byte. The input is the map,
//! optionally followed by a NUL and changed paths (one a line) to plan. Invariants: an error has at
//! least one problem and renders; a parsed map lists unique resources sorted by name, and any plan
//! only names enabled resources, levels hold the build set in dependency order, and `deploy` is a
//! subset of `affected`.
#![no_main]

use std::collections::{BTreeSet, HashMap};

use libfuzzer_sys::fuzz_target;
use shared::resources::ResourceMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (src, changed) = text.split_once('\0').unwrap_or((text, ""));
    let map = match ResourceMap::parse(src) {
        Ok(map) => map,
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error without a problem");
            let _ = e.render(".gandalf/resources.toml");
            return;
        }
    };
    let names: Vec<&str> = map.resources().iter().map(|r| r.name.as_str()).collect();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "not sorted and unique: {names:?}"
    );
    for r in map.resources() {
        assert!(
            r.depends_on.iter().all(|d| map.resource(d).is_some()),
            "unknown dependency kept"
        );
    }

    // Plan the given paths, and also one path per glob-ish string of the map, so that parsed maps
    // meet paths they actually claim.
    let mut paths: Vec<String> = changed.lines().map(str::to_string).collect();
    for r in map.resources() {
        paths.extend(r.paths.iter().map(|p| p.replace("**", "a/b").replace('*', "x")));
    }
    let plan = map.plan(&paths);
    let enabled: BTreeSet<&str> = map
        .resources()
        .iter()
        .filter(|r| r.enabled)
        .map(|r| r.name.as_str())
        .collect();
    assert!(plan.affected.windows(2).all(|w| w[0] < w[1]));
    assert!(
        plan.affected.iter().all(|a| enabled.contains(a.as_str())),
        "disabled or unknown resource affected"
    );
    assert!(
        plan.deploy.iter().all(|d| plan.affected.contains(d)),
        "deploys something unaffected"
    );
    assert_eq!(plan.reasons.len(), plan.affected.len());
    // Levels: every affected resource is built, nothing twice, and a resource comes after its
    // (transitive, through disabled ones) dependencies in the build set.
    let mut level_of: HashMap<&str, usize> = HashMap::new();
    for (i, level) in plan.levels.iter().enumerate() {
        assert!(!level.is_empty(), "an empty level");
        for n in level {
            assert!(enabled.contains(n.as_str()));
            assert!(level_of.insert(n, i).is_none(), "{n} built twice");
        }
    }
    assert!(
        plan.affected.iter().all(|a| level_of.contains_key(a.as_str())),
        "affected but not built"
    );
    for (name, &level) in &level_of {
        let r = map.resource(name).expect("built resources exist");
        for d in &r.depends_on {
            if let Some(&dl) = level_of.get(d.as_str()) {
                assert!(
                    dl < level,
                    "{name} (level {level}) built before its dependency {d} (level {dl})"
                );
            }
        }
    }
    let _ = plan.to_json();
});
