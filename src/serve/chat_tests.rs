use super::*;

fn stored(status: &str) -> ChatAccess {
    ChatAccess {
        channel: "telegram".into(),
        chat: "7".into(),
        status: status.into(),
        name: String::new(),
        decided_by: None,
        updated_at: 0,
    }
}

#[test]
fn an_empty_allowlist_lets_nobody_in_and_a_stored_denial_wins() {
    assert_eq!(access(None, &[], None, "7"), Access::Unknown);
    assert_eq!(
        access(None, &allowlist(Some(" 7, 8,")), None, "7"),
        Access::Allowed
    );
    assert_eq!(
        access(None, &allowlist(Some("77")), None, "7"),
        Access::Unknown
    );
    assert_eq!(access(None, &[], Some("7"), "7"), Access::Allowed);
    assert_eq!(
        access(Some(&stored("allowed")), &[], None, "7"),
        Access::Allowed
    );
    assert_eq!(
        access(Some(&stored("requested")), &[], None, "7"),
        Access::Requested
    );
    assert_eq!(
        access(Some(&stored("denied")), &allowlist(Some("7")), None, "7"),
        Access::Denied
    );
    assert!(allowlist(Some("")).is_empty() && allowlist(None).is_empty());
}

#[test]
fn commands_are_words_and_quotes_are_not_special() {
    assert_eq!(
        split_command("!RUN@claw_bot deploy \"; touch X #"),
        (
            "!run".to_owned(),
            vec![
                "deploy".to_owned(),
                "\";".to_owned(),
                "touch".to_owned(),
                "X".to_owned(),
                "#".to_owned()
            ]
        )
    );
    assert_eq!(split_command("").0, "");
}
