//! The C code of the documentation compiles: every ```c block of README.md
//! is built with the project's C flags against include/kuzzle.h and linked
//! against the library this test was built with, so that neither can drift
//! from the API.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The ```c blocks of a Markdown text, each with the line it starts on.
fn c_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (n, line) in markdown.lines().enumerate() {
        match open.as_mut() {
            None if line.trim_end() == "```c" => open = Some((n + 1, String::new())),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.extend(open.take()),
            Some((_, code)) => {
                code.push_str(line);
                code.push('\n');
            }
        }
    }
    assert!(open.is_none(), "a ```c block is not closed");
    blocks
}

/// Where the library this test was built with is: this test runs from
/// target/<profile>/deps, where `cargo test` builds libkuzzle.so and .a
/// (fresh; the copies in target/<profile> only come with `cargo build`).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let deps = exe.parent().expect("the test's directory");
    let dir = deps.parent().expect("the profile's directory");
    for candidate in [deps, dir] {
        if ["libkuzzle.so", "libkuzzle.dylib", "libkuzzle.a"]
            .iter()
            .any(|f| candidate.join(f).is_file())
        {
            return candidate.to_path_buf();
        }
    }
    panic!("no libkuzzle library next to {}", exe.display());
}

fn compile(source: &Path, lib_dir: &Path, out: &Path) -> std::process::Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(repo.join("include"))
        .arg(source)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lkuzzle")
        .arg("-o")
        .arg(out)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run cc ({e}): install a C compiler (bash scripts/setup-deps.sh)")
        })
}

#[test]
fn readme_c_blocks_compile_and_link() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let blocks = c_blocks(&readme);
    assert!(!blocks.is_empty(), "README.md has no ```c block");
    let lib_dir = library_dir();
    let work = lib_dir.join("doc-blocks");
    std::fs::create_dir_all(&work).expect("a directory for the blocks");
    for (line, code) in &blocks {
        let source = work.join(format!("readme-{line}.c"));
        std::fs::write(&source, code).expect("the block's source file");
        let out = compile(&source, &lib_dir, &work.join(format!("readme-{line}")));
        assert!(
            out.status.success(),
            "README.md's C block at line {line} does not build ({}):\n{}{}",
            source.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn blocks_are_found_as_written() {
    let text = "x\n```c\nint a;\n```\n```sh\nls\n```\n```c\nint b;\nint c;\n```\n";
    assert_eq!(
        c_blocks(text),
        [
            (2, "int a;\n".to_string()),
            (8, "int b;\nint c;\n".to_string())
        ]
    );
}
