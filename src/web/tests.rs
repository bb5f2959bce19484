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
    // And the router serves each of them (its source names each path once; rustfmt may put the
    // path on a line of its own).
    let src: String = include_str!("mod.rs").split_whitespace().collect();
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

#[test]
fn the_origin_must_name_the_requests_host() {
    let h = |pairs: &[(&'static str, &'static str)]| {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    };
    let host = ("host", "dash.example:8200");
    assert!(same_origin(&h(&[host, ("origin", "http://dash.example:8200")])).is_ok());
    assert!(same_origin(&h(&[host, ("origin", "https://dash.example:8200")])).is_ok());
    assert!(same_origin(&h(&[host, ("referer", "http://dash.example:8200/runs")])).is_ok());
    assert!(same_origin(&h(&[host, ("origin", "http://evil.example")])).is_err());
    assert!(same_origin(&h(&[host, ("origin", "http://dash.example:8200.evil")])).is_err());
    assert!(same_origin(&h(&[host, ("origin", "null")])).is_err());
    assert!(same_origin(&h(&[host])).is_err());
    assert!(same_origin(&h(&[("origin", "http://dash.example:8200")])).is_err());
}
