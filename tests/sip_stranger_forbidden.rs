//! No open relay: in proxy mode, an INVITE from a source that is not `sip_svr` (here: another
//! port on 127.0.0.1) and carries no credentials is refused with 403, never challenged.

mod common;

use std::time::Duration;

use common::net::local;
use common::{GatewayConfig, SIPP, Sipp, Srgate, TestDir, free_ports, peers_available};

const SIPP_BOUND: Duration = Duration::from_secs(20);

#[test]
fn invite_from_a_stranger_in_proxy_mode_gets_403() {
    if !peers_available(&[SIPP]) {
        return;
    }
    let dir = TestDir::new("stranger-forbidden");
    // sip_svr is a port where nothing listens: the proxy account stays unregistered, which
    // does not matter here; the stranger (SIPp) sends from a different port, so srgate
    // must compare the source's address *and port* with sip_svr
    let [registrar_port] = free_ports::<1>();
    let srgate = Srgate::start(GatewayConfig::proxy(local(registrar_port)), dir.path());

    let run = Sipp::call(
        "invite_from_stranger.xml",
        srgate.sip_addr(),
        &["-s", "2001"],
        dir.path(),
        SIPP_BOUND,
    );
    run.assert_success("INVITE from a stranger");
    let health = srgate.health().expect("srgate still answers /health");
    assert_eq!(health.calls, 0, "a refused INVITE left a call behind");
}
