//! Unit tests of the preset format: every bundled preset parses, errors
//! name the file, line and key, and an override directory wins.

use super::*;

const MINIMAL: &str = "id = \"x\"\nname = \"X\"\nversion_command = [\"x\", \"--version\"]\nsource = \"main.x\"\nrun = [\"x\", \"{source}\"]\n";

fn err(text: &str) -> String {
    Preset::parse(text, "x.toml", Some("x"))
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn every_bundled_preset_parses() {
    let ids = bundled::ids_in(None);
    assert!(ids.len() >= 12, "{ids:?}");
    for id in ids {
        let p = Preset::load_in(&id, None).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(p.id, id);
        assert_eq!(p.origin, format!("{id}.toml"));
        assert!(p.judge0_id.is_some(), "{id}");
        // Placeholders are filled in: {source} at load, {memory_mb} per step.
        let limits = p.run_step().limits(
            &crate::profile::Limits::default(),
            &LimitOverrides::default(),
        );
        for a in p.run_step().argv(&limits) {
            assert!(!a.contains('{'), "{id}: {a}");
        }
        if let Some(c) = p.compile_step() {
            assert!(c.template().iter().any(|a| a.contains(&p.source)), "{id}");
        }
    }
}

#[test]
fn minimal_preset_defaults() {
    let p = Preset::parse(MINIMAL, "x.toml", Some("x")).expect("parses");
    assert_eq!(p.run, ["x", "main.x"]);
    assert_eq!(p.compile, None);
    assert!(p.compile_step().is_none());
    assert_eq!(p.compile_profile, DEFAULT_PROFILE);
    assert_eq!(p.run_profile, DEFAULT_PROFILE);
    assert_eq!(p.run_step().cwd, WORKDIR);
    assert_eq!(p.image, None);
}

#[test]
fn unknown_key_is_named_with_its_place() {
    let e = err(&format!("{MINIMAL}colour = \"red\"\n"));
    assert!(e.starts_with("x.toml:6:"), "{e}");
    assert!(e.contains("colour"), "{e}");
    let e = err(&format!("{MINIMAL}[run_limits]\nmemroy = \"1G\"\n"));
    assert!(e.starts_with("x.toml:7:"), "{e}");
    assert!(e.contains("memroy"), "{e}");
}

#[test]
fn bad_unit_is_named_with_its_key() {
    let e = err(&format!("{MINIMAL}[run_limits]\nmemory = \"12Q\"\n"));
    assert!(e.starts_with("x.toml:7:"), "{e}");
    assert!(e.contains("run_limits.memory"), "{e}");
    assert!(e.contains("invalid size \"12Q\""), "{e}");
    let e = err(&format!("{MINIMAL}[compile_limits]\ncpu_time = \"fast\"\n"));
    assert!(e.contains("compile_limits.cpu_time"), "{e}");
    assert!(e.contains("invalid duration"), "{e}");
    let e = err(&format!("{MINIMAL}[run_limits]\nwall_time = \"0s\"\n"));
    assert!(
        e.contains("run_limits.wall_time: must be greater than zero"),
        "{e}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let e = err(&MINIMAL.replace("run = [\"x\", \"{source}\"]", "run = \"x\""));
    assert!(e.contains("x.toml:5:") && e.contains("run"), "{e}");
    let e = err(&format!("{MINIMAL}judge0_id = \"fifty\"\n"));
    assert!(e.contains("judge0_id"), "{e}");
}

#[test]
fn checks_ids_sources_argv_and_placeholders() {
    let e = Preset::parse(MINIMAL, "y.toml", Some("y"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("id") && e.contains("\"y\""), "{e}");
    let e = err(&MINIMAL.replace("main.x", "../main.x"));
    assert!(e.contains("source"), "{e}");
    let e = err(&MINIMAL.replace("run = [\"x\", \"{source}\"]", "run = []"));
    assert!(e.contains("run: must name a program"), "{e}");
    let e = err(&MINIMAL.replace("{source}", "{sauce}"));
    assert!(e.contains("unknown placeholder {sauce}"), "{e}");
    let e = err(&format!("{MINIMAL}compile_profile = \"ci\"\n"));
    assert!(
        e.contains("compile_profile: set without a compile command"),
        "{e}"
    );
    let e = err("id = \n");
    assert!(e.starts_with("x.toml:1:"), "{e}");
}

#[test]
fn memory_placeholder_follows_the_effective_limit() {
    let text = MINIMAL.replace("\"{source}\"", "\"-Xmx{memory_mb}m\", \"{source}\"")
        + "[run_limits]\nmemory = \"256M\"\n";
    let p = Preset::parse(&text, "x.toml", Some("x")).expect("parses");
    let step = p.run_step();
    let profile = crate::profile::Limits {
        memory: Some(512 << 20),
        ..Default::default()
    };
    let l = step.limits(&profile, &LimitOverrides::default());
    assert_eq!(step.argv(&l), ["x", "-Xmx256m", "main.x"]);
    // The caller's limit (sandbox exec --memory-limit) wins over the preset's.
    let caller = LimitOverrides {
        memory: Some(64 << 20),
        ..Default::default()
    };
    let l = step.limits(&profile, &caller);
    assert_eq!(step.argv(&l), ["x", "-Xmx64m", "main.x"]);
    // Environment values too; an unknown placeholder there is refused.
    let text = format!("{MINIMAL}[run_env]\nLIMIT = \"{{memory_mb}}MiB\"\nSRC = \"{{source}}\"\n");
    let p = Preset::parse(&text, "x.toml", Some("x")).expect("parses");
    let env = p.run_step().env(&l);
    assert!(env.contains(&("LIMIT".into(), "64MiB".into())), "{env:?}");
    assert!(env.contains(&("SRC".into(), "main.x".into())), "{env:?}");
    let e = err(&format!("{MINIMAL}[env]\nX = \"{{mem}}\"\n"));
    assert!(e.contains("env.X: unknown placeholder {mem}"), "{e}");
}

#[test]
fn override_dir_replaces_and_adds() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("c.toml"),
        MINIMAL
            .replace("\"x\"", "\"c\"")
            .replace("name = \"X\"", "name = \"Mine\""),
    )
    .unwrap();
    std::fs::write(dir.path().join("x.toml"), MINIMAL).unwrap();
    std::fs::write(dir.path().join("not an id.toml"), MINIMAL).unwrap();
    let p = Preset::load_in("c", Some(dir.path())).expect("override");
    assert_eq!(p.name, "Mine");
    assert_eq!(p.origin, dir.path().join("c.toml").display().to_string());
    // Without the directory: the bundled one.
    assert_eq!(Preset::load_in("c", None).unwrap().name, "C (GCC)");
    let ids = bundled::ids_in(Some(dir.path()));
    assert!(ids.contains(&"x".to_string()) && ids.contains(&"cpp17".to_string()));
    assert!(!ids.iter().any(|i| i.contains(' ')), "{ids:?}");
    // An override whose id differs from its file name is refused.
    std::fs::write(dir.path().join("go.toml"), MINIMAL).unwrap();
    let e = Preset::load_in("go", Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("go.toml") && e.contains("id"), "{e}");
    // An unknown id lists the available ones.
    let e = Preset::load_in("cobol", Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown language \"cobol\"") && e.contains("x"),
        "{e}"
    );
    // Unreadable (a directory): an error, not the bundled preset.
    std::fs::create_dir(dir.path().join("rust.toml")).unwrap();
    let e = Preset::load_in("rust", Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rust.toml: cannot read preset"), "{e}");
}

#[test]
fn version_line_prefers_stdout() {
    assert_eq!(version_line("\nv20.1\n", "x"), Some("v20.1".into()));
    assert_eq!(
        version_line("", "openjdk version \"17\"\nmore"),
        Some("openjdk version \"17\"".into())
    );
    assert_eq!(version_line(" \n", ""), None);
}
