//! The SIP stack alone, as a yardstick for `benches/sip_load.sh`: rsipstack (as vendored,
//! jemalloc as in warmline) answering every INVITE with a 200 and every BYE with a 200, with
//! no SDP, media, store, policy or log. What warmline adds per call is the difference between
//! its clean rate and this one's on the same box in the same run.
//!
//!   cargo run --release --example bare_uas -- 127.0.0.1:5990

use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog::{Dialog, DialogState};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::{HeadersExt, Method, StatusCode};
use rsipstack::transport::{TransportLayer, udp::UdpConnection};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .ok_or("usage: bare_uas IP:PORT")?
        .parse()?;
    let cancel = CancellationToken::new();
    let transport = TransportLayer::new(cancel.clone());
    let udp = UdpConnection::create_connection(addr, None, Some(cancel.child_token())).await?;
    transport.add_transport(udp.into());
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(cancel)
        .with_transport_layer(transport)
        .build();
    let mut incoming = endpoint.incoming_transactions()?;
    let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let (states, mut state_rx) = layer.new_dialog_state_channel();
    let contact = rsipstack::sip::Uri::try_from(format!("sip:bare@{addr}").as_str())?;

    let answering = layer.clone();
    tokio::spawn(async move {
        while let Some(state) = state_rx.recv().await {
            match state {
                DialogState::Calling(id) => {
                    if let Some(Dialog::Invite(d)) = answering.get_dialog(&id) {
                        let _ = d.accept(None, None);
                    }
                }
                DialogState::Terminated(id, _) => answering.remove_dialog(&id),
                _ => {}
            }
        }
    });
    tokio::spawn(async move { endpoint.serve().await });
    while let Some(mut tx) = incoming.recv().await {
        let layer = layer.clone();
        let states = states.clone();
        let contact = contact.clone();
        tokio::spawn(async move {
            let in_dialog = tx
                .original
                .to_header()
                .ok()
                .and_then(|h| h.tag().ok().flatten())
                .is_some();
            let _ = match (tx.original.method, in_dialog) {
                (Method::Invite, false) => {
                    match layer.get_or_create_server_invite(&tx, states, None, Some(contact)) {
                        Ok(mut d) => d.handle(&mut tx).await,
                        Err(_) => tx.reply(StatusCode::ServerInternalError).await,
                    }
                }
                (Method::Ack, _) => Ok(()),
                _ => match layer.match_dialog(&tx) {
                    Some(mut d) => d.handle(&mut tx).await,
                    None => tx.reply(StatusCode::CallTransactionDoesNotExist).await,
                },
            };
        });
    }
    Ok(())
}
