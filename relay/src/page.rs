//! The live page at `GET /`: one self-contained HTML file (no external resources) that reads the
//! stream with `fetch`, parses it itself, and shows every event as it arrives, whatever its type (an
//! `EventSource` only delivers the types it has listeners for).

const TEMPLATE: &str = include_str!("page.html");
const SETTINGS_SLOT: &str = "/*SETTINGS*/null";

/// What the page needs to know about this relay.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageSettings {
    /// The type of events from standard input, which the page names.
    pub(crate) stdin_type: Option<String>,
    /// Whether the page may offer its publish form (not when publishing needs a token).
    pub(crate) open_publish: bool,
}

/// The page, with `settings` written into its script.
pub(crate) fn render(settings: &PageSettings) -> String {
    let json = serde_json::to_string(settings).expect("plain strings and booleans serialize");
    // `<` escaped, so no value can close the script element early.
    TEMPLATE.replacen(SETTINGS_SLOT, &json.replace('<', "\\u003c"), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_land_in_the_script_safely() {
        let page = render(&PageSettings { stdin_type: Some("</script><b>".into()), open_publish: false });
        assert!(!page.contains(SETTINGS_SLOT));
        assert!(page.contains(r#"{"stdinType":"\u003c/script>\u003cb>","openPublish":false}"#));
        assert_eq!(page.matches("</script>").count(), 1, "only the page's own closing tag");
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let page = render(&PageSettings { stdin_type: None, open_publish: true });
        for outside in ["http://", "https://", "//cdn", "@import"] {
            assert!(!page.contains(outside), "{outside}");
        }
        assert!(page.contains("fetch(streamPath"));
    }
}
