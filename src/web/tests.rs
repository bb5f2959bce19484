use super::*;

#[test]
fn the_openapi_description_lists_every_api_path() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is JSON");
    let mut listed: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    listed.sort_unstable();
    let mut routed = API_PATHS.to_vec();
    routed.sort_unstable();
    assert_eq!(listed, routed);
    // And the router serves each of them (its source names each path once).
    let src = include_str!("mod.rs");
    for p in API_PATHS {
        assert!(
            src.contains(&format!(".route(\"{p}\"")),
            "{p} is not routed"
        );
    }
}

#[test]
fn cookies_are_found_by_exact_name() {
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::from_static("xclaw_session=evil; claw_session=abc; other=1"),
    );
    assert_eq!(cookie(&h, "claw_session"), Some("abc"));
    assert_eq!(cookie(&h, "__Host-claw_session"), None);
}
