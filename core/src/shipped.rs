//! The templates Baton ships with, compiled into the binary.

use crate::template::Template;

/// `(file name, contents)` of each shipped template.
pub const FILES: [(&str, &str); 4] = [
    (
        "discharge.toml",
        include_str!("../templates/discharge.toml"),
    ),
    ("consult.toml", include_str!("../templates/consult.toml")),
    (
        "shift_handoff.toml",
        include_str!("../templates/shift_handoff.toml"),
    ),
    (
        "nonformulary_med.toml",
        include_str!("../templates/nonformulary_med.toml"),
    ),
];

/// The shipped templates, checked.
pub fn templates() -> Vec<Template> {
    FILES
        .iter()
        .map(|(file, text)| {
            Template::from_toml(file, text)
                .expect("shipped templates are checked by the test suite")
        })
        .collect()
}
