//! SRProxy's `content` conventions: the JSON of a remote invitation, and the `SipData`
//! and `UserData` an app's invite may carry in its content.

/// The SRProxy-style `content` of a remote invitation (SRProxy's conventions).
pub(super) fn invitation_content(id: &str, caller: &str, cus_data: Option<&str>) -> String {
    serde_json::json!({
        "Mode": 1,
        "Conference": 0,
        "ChanId": id,
        "DisplayName": caller,
        "SipData": cus_data.unwrap_or(""),
    })
    .to_string()
}

/// `SipData` and `UserData` of an app's SRProxy-style invite content, when it is JSON.
pub(super) fn content_fields(content: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(value) = content.and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
    else {
        return (None, None);
    };
    let field = |k: &str| {
        value
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_string)
    };
    (field("SipData"), field("UserData"))
}
