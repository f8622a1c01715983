//! The README is the crate's documentation on docs.rs, where only the crate is published: its links
//! and images must point somewhere from there too, and the program its tour shows must be the
//! example that compiles.

const README: &str = include_str!("../README.md");

/// The targets of every Markdown link and image: what follows `](` up to the closing parenthesis.
fn link_targets(markdown: &str) -> Vec<&str> {
    markdown.split("](").skip(1).map(|rest| rest.split(')').next().unwrap_or(rest)).collect()
}

#[test]
fn links_and_images_are_absolute() {
    let targets = link_targets(README);
    assert!(targets.len() >= 5, "found {targets:?}");
    let relative: Vec<&str> = targets.into_iter().filter(|t| !t.starts_with("https://")).collect();
    assert!(relative.is_empty(), "relative links break on docs.rs: {relative:?}");
}

#[test]
fn link_targets_are_found() {
    let markdown = "see [a](A.md) and ![b](https://x/b.png), not [`c`] or (d)";
    assert_eq!(link_targets(markdown), ["A.md", "https://x/b.png"]);
}

#[test]
fn the_tour_is_the_example_that_compiles() {
    let example = include_str!("../examples/tour.rs");
    let code = &example[example.find("use ").expect("the example's code")..];
    let shown = format!("```rust,no_run\n{code}```\n");
    assert!(README.contains(&shown), "the README's tour differs from examples/tour.rs");
}
