//! Standalone mode: an INVITE must authenticate as a `[users]` entry (407 challenge), and a
//! call to an app user nobody is logged in as is answered 480 Temporarily Unavailable.

mod common;

use std::time::Duration;

use common::{GatewayConfig, SIPP, Sipp, Srgate, TestDir, peers_available};

const SIPP_BOUND: Duration = Duration::from_secs(20);

#[test]
fn invite_to_an_app_user_nobody_is_logged_in_as_gets_480() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("invite-offline-app-user");
    let srgate = Srgate::start(GatewayConfig::standalone(), dir.path());

    // 2001 is neither a [users] entry nor registered: an app user, and nobody is logged in
    let run = Sipp::call(
        "invite_offline_app_user.xml",
        srgate.sip_addr(),
        &[
            "-s", "2001", "-key", "caller", "1001", "-au", "1001", "-ap", "pw1001",
        ],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("INVITE from 1001 to offline app user 2001");
    let health = srgate.health().expect("srgate still answers /health");
    assert_eq!(health.calls, 0, "a refused INVITE left a call behind");
}
