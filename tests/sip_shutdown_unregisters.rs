//! On SIGTERM srgate un-registers its proxy account (Expires: 0) before it exits, within the
//! 2 s bound the README gives (SIP behaviour), and exits 0.

mod common;

use std::time::Duration;

use common::{GatewayConfig, SIPP, Sipp, Srgate, Stopwatch, TestDir, peers_available};

/// srgate finishes un-registering (bounded to 2 s), then exits 0; 1 s of slack for
/// process teardown on a loaded machine.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(3);

#[test]
fn sigterm_unregisters_the_proxy_account_then_exits_0() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("shutdown-unregisters");
    let registrar = Sipp::spawn(
        "registrar_sees_unregister.xml",
        &[
            "-key",
            "user",
            "1000",
            "-key",
            "pass",
            "1234",
            "-key",
            "expires",
            "300",
            "-recv_timeout",
            "30000",
        ],
        dir.path(),
    );
    assert!(
        registrar.wait_listening(Duration::from_secs(5)),
        "SIPp registrar did not bind its port"
    );
    let mut srgate = Srgate::start(GatewayConfig::proxy(registrar.local_addr()), dir.path());
    assert!(
        srgate
            .wait_registered(true, Duration::from_secs(8))
            .is_some(),
        "srgate did not register at the SIPp registrar: {:?}",
        srgate.health()
    );

    let watch = Stopwatch::start();
    let (status, in_time) = srgate.stop();
    let took = watch.elapsed();
    assert!(in_time, "srgate did not exit after SIGTERM (killed)");
    assert!(
        took <= SHUTDOWN_BOUND,
        "srgate took {took:?} to exit after SIGTERM"
    );
    assert!(
        status.success(),
        "srgate exited with {status} after SIGTERM"
    );

    let run = registrar.wait(Duration::from_secs(10));
    run.assert_success("registrar saw REGISTER, then the un-REGISTER on SIGTERM");
}
